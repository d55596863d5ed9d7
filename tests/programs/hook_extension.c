/* A Python extension module for the python-hook tests: MODULE.value() returns CALLS(), a
 * function of a shared library the loader must find first. Built against the stable ABI of
 * Python 3.8, so that one build imports in every Python the tests use. */
#define Py_LIMITED_API 0x03080000
#include <Python.h>

#define JOIN(a, b) a##b
#define INIT_FUNCTION(name) JOIN(PyInit_, name)
#define QUOTE(name) #name
#define NAME(name) QUOTE(name)

int CALLS(void);

static PyObject *value(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyLong_FromLong(CALLS());
}

static PyMethodDef methods[] = {{"value", value, METH_NOARGS, NULL}, {NULL, NULL, 0, NULL}};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, NAME(MODULE), NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC INIT_FUNCTION(MODULE)(void)
{
    return PyModule_Create(&definition);
}
