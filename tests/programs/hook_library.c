/* The shared libraries of the python-hook tests, one function each: FUNCTION() returns
 * CALLS() + ADD, or ADD alone when CALLS is not defined (a leaf). */
#ifdef CALLS
int CALLS(void);
#endif

int FUNCTION(void)
{
#ifdef CALLS
    return CALLS() + ADD;
#else
    return ADD;
#endif
}
