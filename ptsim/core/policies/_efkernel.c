/* ElasticFlow planner kernels for the compiled build (ptsim.native.KERNELS).
 *
 * Functions of ptsim/core/policies/elasticflow.py written as plain loops over the arrays; the
 * Python in elasticflow.py is their definition and what the pure-Python package runs
 * (elasticflow._Kernels pairs them):
 *
 *   level_change(table, cur, slots, delta, lo, hi) -> bool
 *       elasticflow._level_change: whether table[clip(cur[s])] != table[clip(cur[s] + delta[j])]
 *       for some s = slots[j] (slots ascending) with lo <= s < hi.
 *   plan_runs(fit_table, free, k_max, counts_ext, thr_ext, slot, need, last, monotone,
 *             by_period, max_cuts) -> None | False | (plan, q, point, slack)
 *       _Planner._plan_runs_py: None where it returns None, False where it returns _NO_LEVEL,
 *       else the plan and its shape. Every floating-point operation is the Python's, in the
 *       same order (no contraction into fused multiply-adds: the build passes
 *       -ffp-contract=off), so the answers are the same numbers.
 *   reserve(arr, row) -> None
 *       elasticflow._reserve: arr[:len(row)] -= row.
 *   summary(diff, after, by_period, hi) -> (nz, dnz, floor, steps)
 *       elasticflow._summary: where a trial's difference is not zero, its values there, the
 *       least of after + min(diff, 0) there, and the slots where it changes; diff is zero
 *       from slot hi on (the slots from there are not read).
 *   scan(cols, start, cur, diff, nz, dnz, steps, floor, check) -> (i, how)
 *       elasticflow._scan: the admission test's pass over the jobs that keep their plans.
 *       cols is the lane's (plans, kmax, top, tops, tables) lists (_Lane.cols); nz ascending
 *       and >= 0 (summary's), refused otherwise. Not checked, true of every lane by
 *       construction and relied on by the bound that skips a job's slot-by-slot look: no slot
 *       of plans[i] exceeds top[i] (a plan holds one of the job's GPU counts), and tables[i]
 *       never falls as the free GPUs grow (a fitting-level table, capped or not).
 *   swap(cur, diff, old, new) -> bool
 *       elasticflow._swap: cur[:len(old)] -= old; diff[:len(old)] += old;
 *       diff[:len(new)] -= new; whether old and new are of one length and equal.
 *   plus(a, b, n) -> array
 *       elasticflow._plus: a[:n] + b[:n], a new array (a and b of one length, at least n).
 *   without(arr, row, size, total) -> (cur, diff)
 *       elasticflow._without: arr + row in size slots (total past arr) and -row (zero
 *       after), two new arrays (size at least len(arr) and len(row)).
 *
 * tests/test_efkernel.py compares each with its Python on random inputs. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_2_0_API_VERSION
#include <numpy/arrayobject.h>
#include <math.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#define MAX_RUNS 256  /* runs of one plan: max_cuts + 1 at most */
#define MAX_LEVELS 64 /* GPU levels of one job (powers of two: 2^63 GPUs) */

static int
array_of(PyObject *obj, const char *name, int type, void **data, Py_ssize_t *len)
{
    if (!PyArray_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: a numpy array expected", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (PyArray_NDIM(a) != 1 || PyArray_TYPE(a) != type || !PyArray_IS_C_CONTIGUOUS(a)) {
        PyErr_Format(PyExc_TypeError, "%s: a contiguous 1-d %s array expected", name,
                     type == NPY_INT64 ? "int64" : "float64");
        return -1;
    }
    *data = PyArray_DATA(a);
    *len = PyArray_DIM(a, 0);
    return 0;
}

static inline int64_t
clipped(const int64_t *table, Py_ssize_t n, int64_t f)
{
    return table[f < 0 ? 0 : (f >= n ? n - 1 : f)];
}

/* a[r] -= b[r] for r < n where a and b do not overlap (restrict: the compiler vectorises it) */
static void
sub_apart(int64_t *restrict a, const int64_t *restrict b, Py_ssize_t n)
{
    for (Py_ssize_t r = 0; r < n; r++)
        a[r] -= b[r];
}

/* a[r] -= b[r] for r < n, in order (a plain loop where a and b overlap) */
static void
subtract(int64_t *a, const int64_t *b, Py_ssize_t n)
{
    if (n <= 0)
        return;
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b, bytes = (uintptr_t)n * sizeof(int64_t);
    if (pa + bytes <= pb || pb + bytes <= pa) {
        sub_apart(a, b, n);
        return;
    }
    for (Py_ssize_t r = 0; r < n; r++)
        a[r] -= b[r];
}

/* the first j in [lo, n) with slots[j] >= bound (slots ascending) */
static Py_ssize_t
first_at(const int64_t *slots, Py_ssize_t lo, Py_ssize_t n, int64_t bound)
{
    Py_ssize_t hi = n;
    while (lo < hi) {
        Py_ssize_t m = lo + (hi - lo) / 2;
        if (slots[m] < bound)
            lo = m + 1;
        else
            hi = m;
    }
    return lo;
}

static PyObject *
level_change(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *table, *cur, *slots, *delta;
    Py_ssize_t nt, nc, ns, nd;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "level_change: 6 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "table", NPY_INT64, (void **)&table, &nt) < 0
        || array_of(args[1], "cur", NPY_INT64, (void **)&cur, &nc) < 0
        || array_of(args[2], "slots", NPY_INT64, (void **)&slots, &ns) < 0
        || array_of(args[3], "delta", NPY_INT64, (void **)&delta, &nd) < 0)
        return NULL;
    long long lo = PyLong_AsLongLong(args[4]);
    long long hi = PyLong_AsLongLong(args[5]);
    if (PyErr_Occurred())
        return NULL;
    if (nd != ns) {
        PyErr_SetString(PyExc_ValueError, "level_change: slots and delta differ in length");
        return NULL;
    }
    if (nt == 0)
        Py_RETURN_FALSE;
    Py_ssize_t a = 0, b = ns;
    while (a < b) { /* the first slot >= lo */
        Py_ssize_t m = a + (b - a) / 2;
        if (slots[m] < lo)
            a = m + 1;
        else
            b = m;
    }
    for (Py_ssize_t j = a; j < ns && slots[j] < hi; j++) {
        int64_t s = slots[j];
        if (s < 0 || s >= nc) {
            PyErr_SetString(PyExc_IndexError, "level_change: a slot outside cur");
            return NULL;
        }
        if (clipped(table, nt, cur[s]) != clipped(table, nt, cur[s] + delta[j]))
            Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

/* elasticflow._crossing: the count of leading terms whose running sum stays below need, or -1
 * for "too close to call" (None). */
static Py_ssize_t
crossing(const double *val, const Py_ssize_t *rep, Py_ssize_t n, double need, double tol)
{
    double acc = 0.0;
    Py_ssize_t count = 0;
    for (Py_ssize_t j = 0; j < n; j++) {
        double v = val[j];
        Py_ssize_t r = rep[j];
        double nxt = acc + v * (double)r;
        if (nxt >= need) {
            double c = ceil((need - acc) / v) - 1.0;
            if (c < 0.0)
                c = 0.0;
            if (c > (double)(r - 1))
                c = (double)(r - 1);
            Py_ssize_t m = (Py_ssize_t)c;
            if (acc + (double)m * v < need - tol && acc + (double)(m + 1) * v >= need + tol)
                return count + m;
            return -1;
        }
        acc = nxt;
        count += r;
    }
    return acc < need - tol ? count : -1;
}

/* reaches(level) of _plan_runs_py: 1, 0, or -1 for "too close to call" */
static int
reaches(Py_ssize_t level, Py_ssize_t top, double whole, const Py_ssize_t *held_v,
        const Py_ssize_t *held_n, Py_ssize_t nheld, const double *e, const double *thr,
        Py_ssize_t f_last, double last, double need, double tol)
{
    double total;
    if (level >= top) {
        total = whole;
    }
    else {
        total = 0.0;
        for (Py_ssize_t j = 0; j < nheld; j++)
            total += (double)held_n[j] * e[held_v[j] < level ? held_v[j] : level];
        total = total + thr[f_last < level ? f_last : level] * last;
    }
    if (fabs(total - need) <= tol)
        return -1;
    return total >= need;
}

static PyObject *
plan_runs(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *table, *freea, *counts;
    double *thr;
    Py_ssize_t nt, nf, ncounts, nthr;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "plan_runs: 11 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "fit_table", NPY_INT64, (void **)&table, &nt) < 0
        || array_of(args[1], "free", NPY_INT64, (void **)&freea, &nf) < 0
        || array_of(args[3], "counts_ext", NPY_INT64, (void **)&counts, &ncounts) < 0
        || array_of(args[4], "thr_ext", NPY_FLOAT64, (void **)&thr, &nthr) < 0)
        return NULL;
    Py_ssize_t k = PyLong_AsSsize_t(args[2]);
    double slot = PyFloat_AsDouble(args[5]);
    double need = PyFloat_AsDouble(args[6]);
    double last = PyFloat_AsDouble(args[7]);
    int monotone = PyObject_IsTrue(args[8]);
    int by_period = PyObject_IsTrue(args[9]);
    Py_ssize_t max_cuts = PyLong_AsSsize_t(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (k < 2 || k > nf || nt == 0 || ncounts != nthr || ncounts > MAX_LEVELS + 1
        || max_cuts < 0 || max_cuts >= MAX_RUNS) {
        PyErr_SetString(PyExc_ValueError,
                        "plan_runs: needs 2 <= k_max <= len(free), a fit table, as many rates "
                        "as counts and max_cuts < 256");
        return NULL;
    }
    Py_ssize_t top = ncounts - 1;
    if (top <= 0)
        Py_RETURN_NONE;
    /* runs of equal fitting level over the slots before the deadline's */
    Py_ssize_t starts[MAX_RUNS], lens[MAX_RUNS], vals[MAX_RUNS];
    Py_ssize_t nruns = 1;
    starts[0] = 0;
    vals[0] = (Py_ssize_t)clipped(table, nt, freea[0]);
    for (Py_ssize_t i = 1; i < k - 1; i++) {
        if (freea[i] == freea[i - 1])
            continue; /* the same free GPUs: the same fitting level */
        Py_ssize_t v = (Py_ssize_t)clipped(table, nt, freea[i]);
        if (v != vals[nruns - 1]) {
            if (nruns >= max_cuts) /* this would be cut number nruns */
                Py_RETURN_NONE;
            starts[nruns] = i;
            vals[nruns] = v;
            nruns++;
        }
    }
    for (Py_ssize_t j = 0; j < nruns; j++)
        lens[j] = (j + 1 < nruns ? starts[j + 1] : k - 1) - starts[j];
    Py_ssize_t f_last = (Py_ssize_t)clipped(table, nt, freea[k - 1]);
    int bad = f_last < 0 || f_last > top;
    for (Py_ssize_t j = 0; j < nruns; j++)
        bad |= vals[j] < 0 || vals[j] > top;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "plan_runs: a fit table entry outside the levels");
        return NULL;
    }

    double e[MAX_LEVELS + 1];
    Py_ssize_t per[MAX_LEVELS + 1];
    for (Py_ssize_t v = 0; v <= top; v++) {
        e[v] = thr[v] * slot;
        per[v] = 0;
    }
    for (Py_ssize_t j = 0; j < nruns; j++)
        per[vals[j]] += lens[j];
    Py_ssize_t held_v[MAX_LEVELS + 1], held_n[MAX_LEVELS + 1], nheld = 0;
    for (Py_ssize_t v = 0; v <= top; v++) {
        if (per[v]) {
            held_v[nheld] = v;
            held_n[nheld] = per[v];
            nheld++;
        }
    }
    double whole = 0.0;
    for (Py_ssize_t j = 0; j < nheld; j++)
        whole += (double)held_n[j] * e[held_v[j]];
    whole = whole + thr[f_last] * last;
    double tol = (double)(k + nruns + 64) * 2.3e-16;
    tol *= whole > need ? whole : need;

#define REACHES(level)                                                                        \
    reaches((level), top, whole, held_v, held_n, nheld, e, thr, f_last, last, need, tol)
    Py_ssize_t q = -1;
    int full = monotone ? REACHES(top) : 1;
    if (full < 0)
        Py_RETURN_NONE;
    if (full) {
        for (Py_ssize_t level = 1; level <= top; level++) {
            int ok = REACHES(level);
            if (ok < 0)
                Py_RETURN_NONE;
            if (ok) {
                q = level;
                break;
            }
        }
    }
#undef REACHES
    if (q <= 0)
        Py_RETURN_FALSE;

    /* backward from the deadline's slot at level q: the latest start */
    double bval[MAX_RUNS + 1];
    Py_ssize_t brep[MAX_RUNS + 1];
    bval[0] = thr[f_last < q ? f_last : q] * last;
    brep[0] = 1;
    for (Py_ssize_t j = 0; j < nruns; j++) {
        Py_ssize_t v = vals[nruns - 1 - j];
        bval[j + 1] = e[v < q ? v : q];
        brep[j + 1] = lens[nruns - 1 - j];
    }
    Py_ssize_t behind = crossing(bval, brep, nruns + 1, need, tol);
    if (behind < 0)
        Py_RETURN_NONE;
    Py_ssize_t point = k - 1 - behind;
    double slack = monotone && point >= 0 && !by_period ? 0.5 * tol : -INFINITY;
    Py_ssize_t shape_point = point;
    if (by_period && point > 0) {
        /* back to where the free GPUs last changed, in the run holding point or at its start */
        Py_ssize_t bound = point < k - 2 ? point : k - 2;
        Py_ssize_t i = -1;
        for (Py_ssize_t j = 0; j < nruns && starts[j] <= bound; j++)
            i = j;
        Py_ssize_t s0 = i >= 0 ? starts[i] : 0;
        Py_ssize_t moved = s0;
        for (Py_ssize_t j = point; j > s0; j--) {
            if (freea[j] != freea[j - 1]) {
                moved = j;
                break;
            }
        }
        point = moved;
    }

    /* forward: level q - 1 before point, q from it; the slot where the job is done */
    Py_ssize_t steps[2 * MAX_RUNS + 1], spans[2 * MAX_RUNS + 1], nsteps = 0;
    double sval[2 * MAX_RUNS + 1];
    for (Py_ssize_t j = 0; j < nruns; j++) {
        Py_ssize_t start = starts[j], n = lens[j], v = vals[j];
        Py_ssize_t below = v < q - 1 ? v : q - 1, at_q = v < q ? v : q;
        if (start < point && point < start + n) {
            steps[nsteps] = below;
            spans[nsteps++] = point - start;
            steps[nsteps] = at_q;
            spans[nsteps++] = start + n - point;
        }
        else {
            steps[nsteps] = start < point ? below : at_q;
            spans[nsteps++] = n;
        }
    }
    for (Py_ssize_t j = 0; j < nsteps; j++)
        sval[j] = e[steps[j]];
    Py_ssize_t ahead = crossing(sval, spans, nsteps, need, tol);
    if (ahead < 0)
        Py_RETURN_NONE;
    npy_intp size;
    if (ahead >= k - 1) {
        steps[nsteps] = f_last < q ? f_last : q;
        spans[nsteps++] = 1;
        size = k;
    }
    else {
        size = ahead + 1;
    }
    PyObject *out = PyArray_SimpleNew(1, &size, NPY_INT64);
    if (out == NULL)
        return NULL;
    int64_t *o = (int64_t *)PyArray_DATA((PyArrayObject *)out);
    npy_intp w = 0;
    for (Py_ssize_t j = 0; j < nsteps && w < size; j++) {
        npy_intp n = spans[j] < size - w ? spans[j] : size - w;
        if (n <= 0)
            continue;
        int64_t c = counts[steps[j]];
        for (npy_intp r = 0; r < n; r++)
            o[w + r] = c;
        w += n;
    }
    PyObject *tup = PyTuple_New(4);
    PyObject *pq = PyLong_FromSsize_t(q), *pp = PyLong_FromSsize_t(shape_point);
    PyObject *ps = PyFloat_FromDouble(slack);
    if (tup == NULL || pq == NULL || pp == NULL || ps == NULL) {
        Py_XDECREF(tup);
        Py_XDECREF(pq);
        Py_XDECREF(pp);
        Py_XDECREF(ps);
        Py_DECREF(out);
        return NULL;
    }
    PyTuple_SET_ITEM(tup, 0, out);
    PyTuple_SET_ITEM(tup, 1, pq);
    PyTuple_SET_ITEM(tup, 2, pp);
    PyTuple_SET_ITEM(tup, 3, ps);
    return tup;
}

static int
writeable(PyObject *obj, const char *fn, const char *name)
{
    if (!PyArray_ISWRITEABLE((PyArrayObject *)obj)) {
        PyErr_Format(PyExc_ValueError, "%s: %s is read-only", fn, name);
        return -1;
    }
    return 0;
}

static PyObject *
reserve(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *arr, *row;
    Py_ssize_t na, nr;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "reserve: 2 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "arr", NPY_INT64, (void **)&arr, &na) < 0
        || array_of(args[1], "row", NPY_INT64, (void **)&row, &nr) < 0)
        return NULL;
    if (writeable(args[0], "reserve", "arr") < 0)
        return NULL;
    if (nr > na) {
        PyErr_SetString(PyExc_ValueError, "reserve: row longer than arr");
        return NULL;
    }
    subtract(arr, row, nr);
    Py_RETURN_NONE;
}

static PyObject *
swap(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *cur, *diff, *old, *new;
    Py_ssize_t nc, nd, no, nn;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "swap: 4 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "cur", NPY_INT64, (void **)&cur, &nc) < 0
        || array_of(args[1], "diff", NPY_INT64, (void **)&diff, &nd) < 0
        || array_of(args[2], "old", NPY_INT64, (void **)&old, &no) < 0
        || array_of(args[3], "new", NPY_INT64, (void **)&new, &nn) < 0)
        return NULL;
    if (writeable(args[0], "swap", "cur") < 0 || writeable(args[1], "swap", "diff") < 0)
        return NULL;
    if (no > nc || no > nd || nn > nd) {
        PyErr_SetString(PyExc_ValueError, "swap: a plan longer than cur or diff");
        return NULL;
    }
    int same = no == nn;
    for (Py_ssize_t r = 0; r < no; r++) {
        cur[r] -= old[r];
        diff[r] += old[r];
    }
    for (Py_ssize_t r = 0; r < nn; r++) {
        diff[r] -= new[r];
        if (same && new[r] != old[r])
            same = 0;
    }
    return PyBool_FromLong(same);
}

static PyObject *
new_i64(Py_ssize_t n, int64_t **data)
{
    npy_intp size = n;
    PyObject *out = PyArray_SimpleNew(1, &size, NPY_INT64);
    if (out != NULL)
        *data = (int64_t *)PyArray_DATA((PyArrayObject *)out);
    return out;
}

static PyObject *
summary(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *diff, *after;
    Py_ssize_t nd, na;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "summary: 4 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "diff", NPY_INT64, (void **)&diff, &nd) < 0
        || array_of(args[1], "after", NPY_INT64, (void **)&after, &na) < 0)
        return NULL;
    int by_period = PyObject_IsTrue(args[2]);
    if (by_period < 0)
        return NULL;
    Py_ssize_t hi = PyLong_AsSsize_t(args[3]);
    if (hi == -1 && PyErr_Occurred())
        return NULL;
    if (na < nd) {
        PyErr_SetString(PyExc_ValueError, "summary: after shorter than diff");
        return NULL;
    }
    if (hi < 0) {
        PyErr_SetString(PyExc_ValueError, "summary: hi < 0");
        return NULL;
    }
    /* diff is zero past its last non-zero slot (most of a long horizon; zero from hi on
       already): stop there */
    Py_ssize_t end = hi < nd ? hi : nd;
    while (end > 0 && diff[end - 1] == 0)
        end--;
    Py_ssize_t stop = end < nd ? end + 1 : nd; /* the slot after the last non-zero may change */
    Py_ssize_t count = 0, changes = 0;
    for (Py_ssize_t s = 0; s < end; s++)
        count += diff[s] != 0;
    if (by_period)
        for (Py_ssize_t s = 1; s < stop; s++)
            changes += diff[s] != diff[s - 1];
    int64_t *nz, *dnz, *steps;
    PyObject *o_nz = new_i64(count, &nz);
    PyObject *o_dnz = o_nz ? new_i64(count, &dnz) : NULL;
    PyObject *o_steps = o_dnz ? new_i64(by_period ? changes : 0, &steps) : NULL;
    if (o_steps == NULL) {
        Py_XDECREF(o_nz);
        Py_XDECREF(o_dnz);
        return NULL;
    }
    long long floor = INT64_MAX;
    Py_ssize_t j = 0, c = 0;
    for (Py_ssize_t s = 0; s < stop; s++) {
        int64_t d = diff[s];
        if (d != 0) {
            nz[j] = s;
            dnz[j++] = d;
            long long low = after[s] + (d < 0 ? d : 0);
            if (low < floor)
                floor = low;
        }
        if (by_period && s > 0 && d != diff[s - 1])
            steps[c++] = s;
    }
    return Py_BuildValue("(NNLN)", o_nz, o_dnz, floor, o_steps);
}

static PyObject *
plus(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *a, *b, *o;
    Py_ssize_t na, nb;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "plus: 3 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "a", NPY_INT64, (void **)&a, &na) < 0
        || array_of(args[1], "b", NPY_INT64, (void **)&b, &nb) < 0)
        return NULL;
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (na != nb) {
        PyErr_SetString(PyExc_ValueError, "plus: a and b differ in length");
        return NULL;
    }
    if (n < 0 || n > na) {
        PyErr_SetString(PyExc_ValueError, "plus: n outside 0..len(a)");
        return NULL;
    }
    PyObject *out = new_i64(n, &o);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t r = 0; r < n; r++)
        o[r] = a[r] + b[r];
    return out;
}

static PyObject *
without(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *arr, *row, *cur, *diff;
    Py_ssize_t na, nr;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "without: 4 arguments expected");
        return NULL;
    }
    if (array_of(args[0], "arr", NPY_INT64, (void **)&arr, &na) < 0
        || array_of(args[1], "row", NPY_INT64, (void **)&row, &nr) < 0)
        return NULL;
    Py_ssize_t size = PyLong_AsSsize_t(args[2]);
    long long total = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (size < na || size < nr) {
        PyErr_SetString(PyExc_ValueError, "without: size shorter than arr or row");
        return NULL;
    }
    PyObject *o_cur = new_i64(size, &cur);
    PyObject *o_diff = o_cur ? new_i64(size, &diff) : NULL;
    if (o_diff == NULL) {
        Py_XDECREF(o_cur);
        return NULL;
    }
    memcpy(cur, arr, (size_t)na * sizeof(int64_t));
    for (Py_ssize_t r = na; r < size; r++)
        cur[r] = total;
    for (Py_ssize_t r = 0; r < nr; r++) {
        cur[r] += row[r];
        diff[r] = -row[r];
    }
    memset(diff + nr, 0, (size_t)(size - nr) * sizeof(int64_t));
    PyObject *out = PyTuple_New(2);
    if (out == NULL) {
        Py_DECREF(o_cur);
        Py_DECREF(o_diff);
        return NULL;
    }
    PyTuple_SET_ITEM(out, 0, o_cur);
    PyTuple_SET_ITEM(out, 1, o_diff);
    return out;
}

/* column k of the lane's columns (a tuple of lists, _Lane.cols), of length n when n >= 0
   (borrowed) */
static PyObject *
lane_column(PyObject *cols, Py_ssize_t k, const char *name, Py_ssize_t n)
{
    PyObject *v = PyTuple_GET_ITEM(cols, k);
    if (!PyList_Check(v) || (n >= 0 && PyList_GET_SIZE(v) != n)) {
        PyErr_Format(PyExc_TypeError, "scan: lane.%s: a list of the lane's length expected", name);
        return NULL;
    }
    return v;
}

enum { SCAN_END, SCAN_ALL_KEPT, SCAN_GROW, SCAN_CHANGE, SCAN_STEPS };

static PyObject *
scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int64_t *cur, *diff, *nz, *dnz, *steps;
    Py_ssize_t ncur, ndiff, nnz, ndnz, nsteps;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "scan: 9 arguments expected");
        return NULL;
    }
    if (array_of(args[2], "cur", NPY_INT64, (void **)&cur, &ncur) < 0
        || array_of(args[3], "diff", NPY_INT64, (void **)&diff, &ndiff) < 0
        || array_of(args[4], "nz", NPY_INT64, (void **)&nz, &nnz) < 0
        || array_of(args[5], "dnz", NPY_INT64, (void **)&dnz, &ndnz) < 0
        || array_of(args[6], "steps", NPY_INT64, (void **)&steps, &nsteps) < 0)
        return NULL;
    if (writeable(args[2], "scan", "cur") < 0)
        return NULL;
    if (nnz != ndnz || ndiff != ncur) {
        PyErr_SetString(PyExc_ValueError, "scan: nz and dnz, or cur and diff, differ in length");
        return NULL;
    }
    if (nnz && nz[0] < 0) {
        PyErr_SetString(PyExc_IndexError, "scan: a negative slot in nz");
        return NULL;
    }
    for (Py_ssize_t j = 1; j < nnz; j++) {
        if (nz[j] <= nz[j - 1]) {
            PyErr_SetString(PyExc_ValueError, "scan: nz not ascending");
            return NULL;
        }
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    long long floor = PyLong_AsLongLong(args[7]);
    int check = PyObject_IsTrue(args[8]);
    if (PyErr_Occurred() || check < 0)
        return NULL;
    PyObject *cols = args[0], *result = NULL;
    if (!PyTuple_Check(cols) || PyTuple_GET_SIZE(cols) != 5) {
        PyErr_SetString(PyExc_TypeError, "scan: the lane's five columns expected (_Lane.cols)");
        return NULL;
    }
    PyObject *plans = lane_column(cols, 0, "plans", -1);
    if (plans == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(plans);
    PyObject *kmax = lane_column(cols, 1, "kmax", n);
    PyObject *top = kmax ? lane_column(cols, 2, "top", n) : NULL;
    PyObject *tops = top ? lane_column(cols, 3, "tops", n + 1) : NULL;
    PyObject *tables = tops ? lane_column(cols, 4, "tables", n) : NULL;
    if (tables == NULL)
        return NULL;
    if (start < 0 || start > n) {
        PyErr_SetString(PyExc_IndexError, "scan: start outside the lane");
        goto done;
    }
    /* low: a lower bound on cur[s] + min(dnz[j], 0) over the slots s = nz[j] inside cur, for
       the job at i (exact at the start, then less each passed job's largest count, which no
       slot of its row exceeds; exact again after a job's slots are looked at one by one). A
       fitting-level table never falls as the free GPUs grow (``_Levels.fit_table``, capped
       or not), so where it already gives its largest level at low, no slot can change the
       job's level: the slot-by-slot look is skipped with the same answer. */
    long long low = LLONG_MAX;
    for (Py_ssize_t j = 0; j < nnz && nz[j] < ncur; j++) {
        long long v = cur[nz[j]] + (dnz[j] < 0 ? dnz[j] : 0);
        if (v < low)
            low = v;
    }
    int how = SCAN_END;
    Py_ssize_t i;
    for (i = start; i < n; i++) {
        long long tops_i = PyLong_AsLongLong(PyList_GET_ITEM(tops, i));
        if (tops_i == -1 && PyErr_Occurred())
            goto done;
        if (check) {
            if (tops_i <= floor && nsteps == 0) {
                how = SCAN_ALL_KEPT;
                break;
            }
            check = 0;
        }
        PyObject *was = PyList_GET_ITEM(plans, i);
        if (!PyTuple_Check(was) || PyTuple_GET_SIZE(was) != 2) {
            PyErr_SetString(PyExc_TypeError, "scan: a plan is not an (ok, row) pair");
            goto done;
        }
        int ok = PyObject_IsTrue(PyTuple_GET_ITEM(was, 0));
        int64_t *row;
        Py_ssize_t nrow;
        if (ok < 0 || array_of(PyTuple_GET_ITEM(was, 1), "row", NPY_INT64, (void **)&row, &nrow) < 0)
            goto done;
        Py_ssize_t k_max = PyLong_AsSsize_t(PyList_GET_ITEM(kmax, i));
        long long top_i = PyLong_AsLongLong(PyList_GET_ITEM(top, i));
        if (PyErr_Occurred())
            goto done;
        Py_ssize_t span = ok ? (k_max > 0 ? k_max : 0) : (k_max > nrow ? k_max : nrow);
        if ((span > nrow ? span : nrow) > ncur) {
            how = SCAN_GROW;
            break;
        }
        if (top_i > floor) {
            int64_t *table;
            Py_ssize_t nt;
            if (array_of(PyList_GET_ITEM(tables, i), "table", NPY_INT64, (void **)&table, &nt) < 0)
                goto done;
            int changed = 0;
            /* nz ascending and >= 0 (checked above): the slots before span, all inside cur */
            Py_ssize_t jend = nt > 0 ? first_at(nz, 0, nnz, span) : 0;
            if (jend > 0 && clipped(table, nt, low) != table[nt - 1]) {
                long long least = LLONG_MAX;
                for (Py_ssize_t j = 0; j < nnz && nz[j] < ncur; j++) {
                    int64_t s = nz[j], d = dnz[j];
                    long long v = cur[s] + (d < 0 ? d : 0);
                    if (v < least)
                        least = v;
                    if (j < jend && clipped(table, nt, cur[s]) != clipped(table, nt, cur[s] + d)) {
                        changed = 1;
                        break;
                    }
                }
                low = least;
            }
            if (changed) {
                how = SCAN_CHANGE;
                break;
            }
        }
        if (nsteps && ok) {
            int moved = 0;
            for (Py_ssize_t j = 0; j < nsteps && steps[j] < k_max; j++) {
                int64_t s = steps[j];
                if (s < 1 || s >= ncur) {
                    PyErr_SetString(PyExc_IndexError, "scan: a step outside cur");
                    goto done;
                }
                int was_change = cur[s] != cur[s - 1];
                int now_change = cur[s] + diff[s] != cur[s - 1] + diff[s - 1];
                if (was_change != now_change) {
                    moved = 1;
                    break;
                }
            }
            if (moved) {
                how = SCAN_STEPS;
                break;
            }
        }
        subtract(cur, row, nrow);
        if (low != LLONG_MAX)
            low -= top_i > 0 ? top_i : 0;
        long long tops_next = PyLong_AsLongLong(PyList_GET_ITEM(tops, i + 1));
        if (tops_next == -1 && PyErr_Occurred())
            goto done;
        if (tops_next < tops_i)
            check = 1;
    }
    PyObject *at = PyLong_FromSsize_t(i), *why = PyLong_FromLong(how);
    if (at != NULL && why != NULL)
        result = PyTuple_Pack(2, at, why);
    Py_XDECREF(at);
    Py_XDECREF(why);
done:
    return result;
}

static PyMethodDef methods[] = {
    {"level_change", (PyCFunction)(void (*)(void))level_change, METH_FASTCALL,
     "Whether a fitting-level table changes at some slot in [lo, hi)."},
    {"plan_runs", (PyCFunction)(void (*)(void))plan_runs, METH_FASTCALL,
     "One job's plan on runs of equal fitting level (elasticflow._Planner._plan_runs_py)."},
    {"reserve", (PyCFunction)(void (*)(void))reserve, METH_FASTCALL,
     "arr[:len(row)] -= row (elasticflow._reserve)."},
    {"summary", (PyCFunction)(void (*)(void))summary, METH_FASTCALL,
     "Where a trial's diff is not zero, its values there, the floor and the steps "
     "(elasticflow._summary)."},
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "_Trial.run's pass over the jobs that keep their plans (elasticflow._scan)."},
    {"swap", (PyCFunction)(void (*)(void))swap, METH_FASTCALL,
     "A re-planned job's new plan in place of its old one (elasticflow._swap)."},
    {"plus", (PyCFunction)(void (*)(void))plus, METH_FASTCALL,
     "a[:n] + b[:n], a new array (elasticflow._plus)."},
    {"without", (PyCFunction)(void (*)(void))without, METH_FASTCALL,
     "A newcomer's free GPUs without it and the difference it makes (elasticflow._without)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_efkernel", "ElasticFlow planner kernels (compiled build).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__efkernel(void)
{
    import_array();
    return PyModule_Create(&module);
}
