/* A program that does nothing: `nixld inspect` tests link it against libraries with every
 * search rule glibc has, and only inspect it. It names no file of its own, so the only
 * warnings a report of it has come from how it was linked. */

int main(void)
{
    return 0;
}
