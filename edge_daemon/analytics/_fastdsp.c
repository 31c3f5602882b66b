/* Optional C kernel for the ride-quality filters (edge_daemon/analytics/dsp.py).
 *
 * sosfilt(sos, x, zi) runs a cascade of second-order sections over every column of x in place,
 * the arithmetic of scipy.signal.sosfilt (direct form II transposed, same operations in the same
 * order, so the results are the same bits; built with -ffp-contract=off so no fused multiply-add
 * changes a rounding). It exists because scipy's sosfilt spends ~80 us per call validating and
 * reshaping before its loop, and a trip runs six of them: that fixed cost was a third of the
 * ride-quality time of a short trip. Columns are filtered side by side (x is samples x signals, the
 * layout of the car-frame array), so the per-section recurrences of the signals overlap in the CPU
 * instead of waiting on each other.
 *
 * No numpy headers: arrays arrive through the buffer protocol and must be C-contiguous float64;
 * dsp.py makes sure of that and falls back to scipy when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define MAX_SIGNALS 8
#define MAX_SECTIONS 16

/* One sample x through n_sections biquads (transposed direct form II, scipy's sosfilt order of
 * operations); z holds each section's two state words in turn and is updated in place. */
static inline double sos_step(const double *c, Py_ssize_t n_sections, double *z, double x) {
    for (Py_ssize_t s = 0; s < n_sections; s++, c += 6, z += 2) {
        double x_new = c[0] * x + z[0];
        z[0] = c[1] * x - c[4] * x_new + z[1];
        z[1] = c[2] * x - c[5] * x_new;
        x = x_new;
    }
    return x;
}


/* A float64 buffer into a zeroed view; on failure the view stays empty, so a caller may release
 * all its views at one exit whichever acquisition failed (PyBuffer_Release skips an empty view). */
static int get_f64(PyObject *obj, Py_buffer *view, int writable, const char *name) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0)
        return -1;
    if (view->itemsize != 8 || view->format == NULL || strcmp(view->format, "d") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be float64", name);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static PyObject *sosfilt(PyObject *self, PyObject *args) {
    PyObject *sos_obj, *x_obj, *zi_obj;
    if (!PyArg_ParseTuple(args, "OOO", &sos_obj, &x_obj, &zi_obj))
        return NULL;
    Py_buffer sos = {0}, x = {0}, zi = {0};
    PyObject *result = NULL;
    if (get_f64(sos_obj, &sos, 0, "sos") < 0 || get_f64(x_obj, &x, 1, "x") < 0
        || get_f64(zi_obj, &zi, 1, "zi") < 0)
        goto done;
    Py_ssize_t n_sections = sos.len / (6 * 8);
    Py_ssize_t n_signals = x.ndim == 2 ? x.shape[1] : 1;
    Py_ssize_t n_samples = x.ndim >= 1 ? x.shape[0] : 0;
    if (sos.len != n_sections * 6 * 8 || n_sections < 1 || n_sections > MAX_SECTIONS) {
        PyErr_SetString(PyExc_ValueError, "sos must be (n_sections, 6), 1 to 16 sections");
    } else if (x.ndim < 1 || x.ndim > 2 || n_signals < 1 || n_signals > MAX_SIGNALS) {
        PyErr_SetString(PyExc_ValueError, "x must be (n_samples,) or (n_samples, n_signals <= 8)");
    } else if (zi.len != n_signals * n_sections * 2 * 8) {
        PyErr_SetString(PyExc_ValueError, "zi must be (n_signals, n_sections, 2)");
    } else {
        const double *c = (const double *)sos.buf;
        double *px = (double *)x.buf;
        double *z = (double *)zi.buf; /* z[(i * n_sections + s) * 2 + k] */
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t n = 0; n < n_samples; n++, px += n_signals) {
            for (Py_ssize_t i = 0; i < n_signals; i++) {
                px[i] = sos_step(c, n_sections, z + i * n_sections * 2, px[i]);
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
done:
    PyBuffer_Release(&sos);
    PyBuffer_Release(&x);
    PyBuffer_Release(&zi);
    return result;
}


/* lowpass_filtfilt(sos, zi_unit, x, out): scipy's sosfiltfilt(sos, x, padlen=edge) with odd
 * extension, where out has len(x) + 2 * edge items: out receives the extension, is filtered forwards
 * from the steady state zi_unit * out[0], then backwards from zi_unit * out[-1]. The caller keeps
 * out[edge:-edge]. The backward pass runs over the array from its end instead of over a reversed
 * copy: the same operations on the same values. */
static PyObject *lowpass_filtfilt(PyObject *self, PyObject *args) {
    PyObject *sos_obj, *zi_obj, *x_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OOOO", &sos_obj, &zi_obj, &x_obj, &out_obj))
        return NULL;
    Py_buffer sos = {0}, zu = {0}, x = {0}, out = {0};
    PyObject *result = NULL;
    if (get_f64(sos_obj, &sos, 0, "sos") < 0 || get_f64(zi_obj, &zu, 0, "zi_unit") < 0
        || get_f64(x_obj, &x, 0, "x") < 0 || get_f64(out_obj, &out, 1, "out") < 0)
        goto done;
    Py_ssize_t n_sections = sos.len / (6 * 8);
    Py_ssize_t n = x.len / 8, m = out.len / 8, edge = (m - n) / 2;
    if (sos.len != n_sections * 6 * 8 || n_sections < 1 || n_sections > MAX_SECTIONS
        || zu.len != n_sections * 2 * 8) {
        PyErr_SetString(PyExc_ValueError, "sos must be (n_sections, 6) and zi_unit (n_sections, 2)");
    } else if (n < 2 || edge < 0 || edge >= n || m != n + 2 * edge) {
        PyErr_SetString(PyExc_ValueError, "out must have len(x) + 2 * edge items, edge < len(x)");
    } else {
        const double *c = (const double *)sos.buf, *u = (const double *)zu.buf, *px = (const double *)x.buf;
        double *y = (double *)out.buf;
        double z[MAX_SECTIONS][2];
        Py_BEGIN_ALLOW_THREADS
        /* odd extension: 2 * x[0] - x[edge:0:-1], x, 2 * x[-1] - x[-2:-(edge + 2):-1] */
        for (Py_ssize_t k = 0; k < edge; k++) {
            y[k] = 2 * px[0] - px[edge - k];
            y[edge + n + k] = 2 * px[n - 1] - px[n - 2 - k];
        }
        memcpy(y + edge, px, (size_t)n * sizeof(double));
        for (int pass = 0; pass < 2; pass++) {
            Py_ssize_t i = pass ? m - 1 : 0, step = pass ? -1 : 1;
            double x0 = y[i];
            for (Py_ssize_t s = 0; s < n_sections; s++) {
                z[s][0] = u[2 * s] * x0;
                z[s][1] = u[2 * s + 1] * x0;
            }
            for (Py_ssize_t k = 0; k < m; k++, i += step) {
                y[i] = sos_step(c, n_sections, &z[0][0], y[i]);
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
done:
    PyBuffer_Release(&sos);
    PyBuffer_Release(&zu);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

/* ls_slope(a, window, scale, out): out[window // 2 + i] = (sum_k k a[i+k] - c sum_k a[i+k]) * scale
 * for every full window (c = (window - 1) / 2, scale = rate / sum_k (k - c)^2), from the running sums
 * s0 = cumsum(a) and s1 = cumsum(k * a), in the order numpy evaluates ride_quality.jerk's
 * expression (sequential sums, the same products and differences). Other items of out untouched. */
static PyObject *ls_slope(PyObject *self, PyObject *args) {
    PyObject *a_obj, *out_obj;
    Py_ssize_t w;
    double rate, denom;
    if (!PyArg_ParseTuple(args, "OnddO", &a_obj, &w, &rate, &denom, &out_obj))
        return NULL;
    Py_buffer a = {0}, out = {0};
    PyObject *result = NULL;
    if (get_f64(a_obj, &a, 0, "a") < 0 || get_f64(out_obj, &out, 1, "out") < 0)
        goto done;
    Py_ssize_t m = a.len / 8;
    if (out.len != a.len || w < 1 || w > m) {
        PyErr_SetString(PyExc_ValueError, "out must be as long as a, 1 <= window <= len(a)");
    } else {
        const double *pa = (const double *)a.buf;
        double *po = (double *)out.buf;
        double *s0 = PyMem_RawMalloc((size_t)(m + 1) * 2 * sizeof(double));
        if (s0 == NULL) {
            PyErr_NoMemory();
        } else {
            double *s1 = s0 + m + 1;
            double c = (double)(w - 1) / 2;
            Py_BEGIN_ALLOW_THREADS
            s0[0] = 0.0;
            s1[0] = 0.0;
            for (Py_ssize_t i = 0; i < m; i++) {
                s0[i + 1] = s0[i] + pa[i];
                s1[i + 1] = s1[i] + (double)i * pa[i];
            }
            for (Py_ssize_t i = 0; i + w <= m; i++) {
                double win0 = s0[i + w] - s0[i];
                double win1 = s1[i + w] - s1[i] - (double)i * win0;
                po[w / 2 + i] = (win1 - c * win0) * rate / denom;
            }
            Py_END_ALLOW_THREADS
            PyMem_RawFree(s0);
            result = Py_None;
            Py_INCREF(result);
        }
    }
done:
    PyBuffer_Release(&a);
    PyBuffer_Release(&out);
    return result;
}

/* half_cycle_peaks(x, out) -> count: the signed extreme of each stretch between sign-bit changes,
 * first and last (partial) stretches left out, as ride_quality.half_cycle_peaks computes it with
 * reduceat: max of a stretch with the sign bit clear, min of one with it set, NaN if it holds one. */
static PyObject *half_cycle_peaks(PyObject *self, PyObject *args) {
    PyObject *x_obj, *out_obj;
    if (!PyArg_ParseTuple(args, "OO", &x_obj, &out_obj))
        return NULL;
    Py_buffer x = {0}, out = {0};
    PyObject *result = NULL;
    if (get_f64(x_obj, &x, 0, "x") < 0 || get_f64(out_obj, &out, 1, "out") < 0)
        goto done;
    Py_ssize_t n = x.len / 8, count = 0;
    if (out.len < x.len) {
        PyErr_SetString(PyExc_ValueError, "out must be at least as long as x");
    } else {
        const double *px = (const double *)x.buf;
        double *po = (double *)out.buf;
        Py_ssize_t i = 1;
        while (i < n && signbit(px[i]) == signbit(px[i - 1]))  /* skip the first, partial stretch */
            i++;
        while (i < n) {
            int neg = signbit(px[i]) != 0;
            double ext = px[i];
            Py_ssize_t j = i + 1;
            for (; j < n && (signbit(px[j]) != 0) == neg; j++) {
                double v = px[j];
                if (isnan(ext))
                    continue;
                if (isnan(v) || (neg ? v < ext : v > ext))
                    ext = v;
            }
            if (j == n)
                break; /* the last stretch is partial too */
            po[count++] = ext;
            i = j;
        }
        result = PyLong_FromSsize_t(count);
    }
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"sosfilt", sosfilt, METH_VARARGS,
     "sosfilt(sos, x, zi): filter the columns of x (n_samples[, n_signals]) in place; zi "
     "(n_signals, n_sections, 2) is the state, updated. scipy.signal.sosfilt's arithmetic."},
    {"lowpass_filtfilt", lowpass_filtfilt, METH_VARARGS,
     "lowpass_filtfilt(sos, zi_unit, x, out): zero-phase filtering with odd extension into out "
     "(len(x) + 2 * edge); scipy.signal.sosfiltfilt's arithmetic."},
    {"ls_slope", ls_slope, METH_VARARGS,
     "ls_slope(a, window, rate, denom, out): least-squares slope over centred windows into out."},
    {"half_cycle_peaks", half_cycle_peaks, METH_VARARGS,
     "half_cycle_peaks(x, out) -> count: signed extreme of each full stretch between sign changes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastdsp", "C kernel for the ride-quality filters (optional; see _fastdsp.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastdsp(void) { return PyModule_Create(&module_def); }
