/* Estimator kernels for the compiled build (ptsim.native.KERNELS).
 *
 *   tail_moments_x(mu, sigma, e0, e1, done) -> (tail, mean, second)
 *       estimator._tail_moments_x_py with exps = (e0, e1).
 *   planned_exact(mu, sigma, e0, e1, done, z) -> float | None
 *       estimator._planned_exact_py with exps = (e0, e1).
 *
 * The Python functions are the definitions and what the pure package runs; these are the same
 * floating-point operations in the same order, on libm's log, erfc and sqrt (which CPython's
 * math.log, math.erfc and math.sqrt call for these arguments), compiled without contraction
 * into fused multiply-adds (-ffp-contract=off), so the answers are the same numbers. What they
 * save is the Python calls around them: a module attribute and a call per erfc and log, and a
 * float object per intermediate. Errors are Python's: ZeroDivisionError for sigma == 0,
 * ValueError for the log of done <= 0. tests/test_estimator.py compares both on random and
 * edge-case inputs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>

static double sqrt2; /* estimator._SQRT2: math.sqrt(2.0) */

/* math.log(x) for a float x, or -1 with ValueError set (x <= 0, -inf) */
static int
py_log(double x, double *out)
{
    if (x > 0.0 || isnan(x)) {
        *out = log(x); /* log(+inf) = +inf, log(nan) = nan, as math.log */
        return 0;
    }
    PyErr_SetString(PyExc_ValueError, "math domain error");
    return -1;
}

static int
floats(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want, double *out)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", want, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < want; i++) {
        out[i] = PyFloat_AsDouble(args[i]);
        if (out[i] == -1.0 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

/* z = (log(done) - mu) / sigma, as Python evaluates it */
static int
standardised(double mu, double sigma, double done, double *z)
{
    double lg;
    if (py_log(done, &lg) < 0)
        return -1;
    if (sigma == 0.0) {
        PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
        return -1;
    }
    *z = (lg - mu) / sigma;
    return 0;
}

static PyObject *
tail_moments_x(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    double a[5];
    if (floats(args, nargs, 5, a) < 0)
        return NULL;
    double mu = a[0], sigma = a[1], e0 = a[2], e1 = a[3], done = a[4], z;
    if (standardised(mu, sigma, done, &z) < 0)
        return NULL;
    double tail = 0.5 * erfc(z / sqrt2);
    if (tail < 1e-12)
        return Py_BuildValue("(ddd)", tail, Py_NAN, Py_NAN);
    /* tail >= 1e-12 here: no division by zero */
    double mean = e0 * (0.5 * erfc(-(sigma - z) / sqrt2)) / tail;
    double second = e1 * (0.5 * erfc(-(2.0 * sigma - z) / sqrt2)) / tail;
    return Py_BuildValue("(ddd)", tail, mean, second);
}

static PyObject *
planned_exact(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    double a[6];
    if (floats(args, nargs, 6, a) < 0)
        return NULL;
    double mu = a[0], sigma = a[1], e0 = a[2], e1 = a[3], done = a[4], zq = a[5], zd;
    if (!(done > 0.0))
        Py_RETURN_NONE;
    if (standardised(mu, sigma, done, &zd) < 0)
        return NULL;
    double tail = 0.5 * erfc(zd / sqrt2);
    if (!(tail >= 1e-10))
        Py_RETURN_NONE;
    double mean = e0 * (0.5 * erfc(-(sigma - zd) / sqrt2)) / tail;
    double second = e1 * (0.5 * erfc(-(2.0 * sigma - zd) / sqrt2)) / tail;
    double top = done > mean ? done : mean;  /* max(mean, done): the first unless done is larger */
    double var = second - mean * mean;
    double pos = 0.0 > var ? 0.0 : var;      /* max(var, 0.0) */
    return PyFloat_FromDouble((top - done) + zq * sqrt(pos));
}

static PyMethodDef methods[] = {
    {"tail_moments_x", (PyCFunction)(void (*)(void))tail_moments_x, METH_FASTCALL,
     "estimator._tail_moments_x_py(mu, sigma, (e0, e1), done)."},
    {"planned_exact", (PyCFunction)(void (*)(void))planned_exact, METH_FASTCALL,
     "estimator._planned_exact_py(mu, sigma, (e0, e1), done, z)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_estkernel", "Estimator kernels (compiled build).", -1, methods,
};

PyMODINIT_FUNC
PyInit__estkernel(void)
{
    sqrt2 = sqrt(2.0);
    return PyModule_Create(&module);
}
