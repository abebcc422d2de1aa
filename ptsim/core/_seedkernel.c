/* Seeding kernels for the compiled build (ptsim.native.KERNELS).
 *
 *   seed_words(consts, entropy) -> ndarray (4 uint64)
 *       SeedSequence(np.array(entropy, dtype=np.uint32)).generate_state(4, np.uint64): the
 *       words PCG64 seeds itself with, for at most MAX_ENTROPY (a module constant) entropy
 *       words below 2**32 (seeding.seeded_rng).
 *   first_normals(consts, prefix, ks, sigma) -> list[float]
 *       seeding._first_normals's Python: for each k of ks, the first normal(0, sigma) draw of
 *       np.random.default_rng([*prefix, k]) (every word below 2**32).
 *   normals(consts, entropy, n, sigma) -> ndarray (n float64)
 *       np.random.default_rng(entropy).normal(0, sigma, size=n), for at most MAX_ENTROPY
 *       entropy words below 2**32 (seeding.seeded_normals).
 *
 * consts is seeding._KERNEL_CONSTS, SeedSequence's constants as a uint32 array (the two
 * hash constants' initial values and multipliers, the two mixing multipliers), written down
 * in one place. The seeding is SeedSequence's pool mixing and generate_state in unsigned
 * 32-bit arithmetic; a draw is PCG64's seeding and 64-bit output (the XSL-RR generator numpy's
 * PCG64 is) and numpy's own random_standard_normal from numpy's static library npyrandom
 * (shipped with numpy for extensions like this one; its bitgen_t interface is documented), so
 * every draw is the one numpy's Generator.standard_normal makes. tests/test_seeding.py
 * compares both with numpy on random seeds. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>
#include <numpy/random/distributions.h>
#include <stdint.h>
#include <string.h>

#define N_CONSTS 6 /* INIT_A, MULT_A, INIT_B, MULT_B, MIX_L, MIX_R */
#define POOL 4      /* SeedSequence's default pool size, in 32-bit words */

typedef __uint128_t u128;

/* PCG64's 128-bit LCG multiplier (O'Neill's PCG paper; numpy's PCG64 uses the same). */
#define PCG_MULT_HI 2549297995355413924ULL
#define PCG_MULT_LO 4865540595714422341ULL

typedef struct {
    u128 state;
    u128 inc;
} pcg_t;

static uint64_t
pcg_next64(void *st)
{
    pcg_t *p = (pcg_t *)st;
    p->state = p->state * (((u128)PCG_MULT_HI << 64) | PCG_MULT_LO) + p->inc;
    uint64_t hi = (uint64_t)(p->state >> 64);
    uint64_t x = hi ^ (uint64_t)p->state;
    unsigned rot = (unsigned)(hi >> 58);
    return (x >> rot) | (x << ((-rot) & 63u));
}

static uint32_t
pcg_next32(void *st)
{
    return (uint32_t)pcg_next64(st); /* not used by random_standard_normal */
}

static double
pcg_next_double(void *st)
{
    return (double)(pcg_next64(st) >> 11) * (1.0 / 9007199254740992.0);
}

/* SeedSequence's hashmix: h is the evolving hash constant, c[1] its multiplier */
static inline uint32_t
hashmix(uint32_t v, uint32_t *h, const uint32_t *c)
{
    v ^= *h;
    *h *= c[1];
    v *= *h;
    return v ^ (v >> 16);
}

static inline uint32_t
mix(uint32_t x, uint32_t y, const uint32_t *c)
{
    uint32_t r = c[4] * x - c[5] * y;
    return r ^ (r >> 16);
}

/* SeedSequence's mix_entropy: the pool of ``POOL`` words from ``n`` entropy words */
static void
pool_of(const uint32_t *c, const uint32_t *ent, Py_ssize_t n, uint32_t *pool)
{
    uint32_t h = c[0];
    for (int i = 0; i < POOL; i++)
        pool[i] = hashmix(i < n ? ent[i] : 0u, &h, c);
    for (int src = 0; src < POOL; src++)
        for (int dst = 0; dst < POOL; dst++)
            if (src != dst)
                pool[dst] = mix(pool[dst], hashmix(pool[src], &h, c), c);
    for (Py_ssize_t src = POOL; src < n; src++)
        for (int dst = 0; dst < POOL; dst++)
            pool[dst] = mix(pool[dst], hashmix(ent[src], &h, c), c);
}

/* SeedSequence.generate_state(4, uint64): eight 32-bit words, little-endian pairs */
static void
state_words(const uint32_t *c, const uint32_t *pool, uint64_t *out)
{
    uint32_t h = c[2];
    const uint32_t cb[2] = {0u, c[3]};
    for (int j = 0; j < 4; j++) {
        uint64_t lo = hashmix(pool[(2 * j) % POOL], &h, cb);
        uint64_t hi = hashmix(pool[(2 * j + 1) % POOL], &h, cb);
        out[j] = lo | (hi << 32);
    }
}

/* PCG64's seeding from SeedSequence's four words: state from the first two, increment from
 * the last two */
static void
pcg_seed(pcg_t *st, const uint64_t *seed)
{
    u128 initstate = ((u128)seed[0] << 64) | seed[1];
    u128 initseq = ((u128)seed[2] << 64) | seed[3];
    st->state = 0;
    st->inc = (initseq << 1) | 1u;
    pcg_next64(st);
    st->state += initstate;
    pcg_next64(st);
}

static int
word_of(PyObject *obj, const char *what, uint32_t *out)
{
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if ((v == (unsigned long long)-1 && PyErr_Occurred()) || v > 0xFFFFFFFFULL) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s must be an int in [0, 2**32)", what);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static const uint32_t *
consts_of(PyObject *obj, const char *fn)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: consts must be a numpy array", fn);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_NDIM(a) != 1 || PyArray_TYPE(a) != NPY_UINT32 || !PyArray_IS_C_CONTIGUOUS(a)
        || PyArray_DIM(a, 0) != N_CONSTS) {
        PyErr_Format(PyExc_TypeError, "%s: consts must be a contiguous uint32 array of %d words",
                     fn, N_CONSTS);
        return NULL;
    }
    return (const uint32_t *)PyArray_DATA(a);
}

/* the words of a sequence of ints below 2**32 (at most ``cap``); -1 with an error set */
static Py_ssize_t
words_of(PyObject *obj, const char *what, uint32_t *out, Py_ssize_t cap)
{
    PyObject *seq = PySequence_Fast(obj, "a sequence of ints expected");
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > cap) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "%s: at most %zd words", what, cap);
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t i = 0; i < n; i++)
        if (word_of(items[i], what, &out[i]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    Py_DECREF(seq);
    return n;
}

#define MAX_ENTROPY 64

/* SeedSequence(entropy).generate_state(4, uint64) into ``seed``, from the Python arguments
 * consts and entropy of function ``fn``; -1 with an error set */
static int
seed_of(PyObject *consts, PyObject *entropy, const char *fn, const char *what, uint64_t *seed)
{
    const uint32_t *c = consts_of(consts, fn);
    if (c == NULL)
        return -1;
    uint32_t ent[MAX_ENTROPY], pool[POOL];
    Py_ssize_t n = words_of(entropy, what, ent, MAX_ENTROPY);
    if (n < 0)
        return -1;
    pool_of(c, ent, n, pool);
    state_words(c, pool, seed);
    return 0;
}

static PyObject *
seed_words(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seed_words: 2 arguments expected");
        return NULL;
    }
    uint64_t seed[4];
    if (seed_of(args[0], args[1], "seed_words", "seed_words: an entropy word", seed) < 0)
        return NULL;
    npy_intp dims[1] = {4};
    PyObject *out = PyArray_SimpleNew(1, dims, NPY_UINT64);
    if (out == NULL)
        return NULL;
    memcpy(PyArray_DATA((PyArrayObject *)out), seed, sizeof(seed));
    return out;
}

static PyObject *
first_normals(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "first_normals: 4 arguments expected");
        return NULL;
    }
    const uint32_t *c = consts_of(args[0], "first_normals");
    if (c == NULL)
        return NULL;
    uint32_t ent[MAX_ENTROPY];
    Py_ssize_t n_prefix = words_of(args[1], "first_normals: a prefix word", ent, MAX_ENTROPY - 1);
    if (n_prefix < 0)
        return NULL;
    double sigma = PyFloat_AsDouble(args[3]);
    if (sigma == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *seq = PySequence_Fast(args[2], "first_normals: ks must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    pcg_t st;
    bitgen_t bg = {&st, pcg_next64, pcg_next32, pcg_next_double, pcg_next64};
    for (Py_ssize_t i = 0; i < n; i++) {
        uint32_t pool[POOL];
        uint64_t seed[4];
        if (word_of(items[i], "first_normals: a k", &ent[n_prefix]) < 0) {
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        pool_of(c, ent, n_prefix + 1, pool);
        state_words(c, pool, seed);
        pcg_seed(&st, seed);
        /* numpy's normal(loc, scale) is loc + scale * standard_normal() */
        PyObject *f = PyFloat_FromDouble(0.0 + sigma * random_standard_normal(&bg));
        if (f == NULL) {
            Py_DECREF(out);
            Py_DECREF(seq);
            return NULL;
        }
        PyList_SET_ITEM(out, i, f);
    }
    Py_DECREF(seq);
    return out;
}

static PyObject *
normals(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "normals: 4 arguments expected");
        return NULL;
    }
    uint64_t seed[4];
    if (seed_of(args[0], args[1], "normals", "normals: an entropy word", seed) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "normals: n must be >= 0");
        return NULL;
    }
    double sigma = PyFloat_AsDouble(args[3]);
    if (sigma == -1.0 && PyErr_Occurred())
        return NULL;
    pcg_t st;
    pcg_seed(&st, seed);
    bitgen_t bg = {&st, pcg_next64, pcg_next32, pcg_next_double, pcg_next64};
    npy_intp dims[1] = {n};
    PyObject *out = PyArray_SimpleNew(1, dims, NPY_FLOAT64);
    if (out == NULL)
        return NULL;
    double *x = (double *)PyArray_DATA((PyArrayObject *)out);
    for (Py_ssize_t i = 0; i < n; i++)
        x[i] = 0.0 + sigma * random_standard_normal(&bg); /* numpy's normal(0, sigma) */
    return out;
}

static PyMethodDef methods[] = {
    {"seed_words", (PyCFunction)(void (*)(void))seed_words, METH_FASTCALL,
     "SeedSequence(entropy).generate_state(4, uint64) for words below 2**32 (see the file)."},
    {"first_normals", (PyCFunction)(void (*)(void))first_normals, METH_FASTCALL,
     "The first normal(0, sigma) draw of default_rng([*prefix, k]) for each k (see the file)."},
    {"normals", (PyCFunction)(void (*)(void))normals, METH_FASTCALL,
     "default_rng(entropy).normal(0, sigma, size=n) for words below 2**32 (see the file)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_seedkernel", "Seeding kernels of the compiled build.", -1, methods,
};

PyMODINIT_FUNC
PyInit__seedkernel(void)
{
    import_array();
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "MAX_ENTROPY", MAX_ENTROPY) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
