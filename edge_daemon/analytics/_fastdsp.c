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

#define MAX_SIGNALS 8
#define MAX_SECTIONS 16

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
    Py_buffer sos, x, zi;
    if (get_f64(sos_obj, &sos, 0, "sos") < 0)
        return NULL;
    if (get_f64(x_obj, &x, 1, "x") < 0) {
        PyBuffer_Release(&sos);
        return NULL;
    }
    if (get_f64(zi_obj, &zi, 1, "zi") < 0) {
        PyBuffer_Release(&sos);
        PyBuffer_Release(&x);
        return NULL;
    }
    Py_ssize_t n_sections = sos.len / (6 * 8);
    Py_ssize_t n_signals = x.ndim == 2 ? x.shape[1] : 1;
    Py_ssize_t n_samples = x.ndim >= 1 ? x.shape[0] : 0;
    PyObject *result = NULL;
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
                double x_cur = px[i];
                double *zs = z + i * n_sections * 2;
                for (Py_ssize_t s = 0; s < n_sections; s++, zs += 2) {
                    const double *b = c + s * 6;
                    double x_new = b[0] * x_cur + zs[0];
                    zs[0] = b[1] * x_cur - b[4] * x_new + zs[1];
                    zs[1] = b[2] * x_cur - b[5] * x_new;
                    x_cur = x_new;
                }
                px[i] = x_cur;
            }
        }
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&sos);
    PyBuffer_Release(&x);
    PyBuffer_Release(&zi);
    return result;
}

static PyMethodDef methods[] = {
    {"sosfilt", sosfilt, METH_VARARGS,
     "sosfilt(sos, x, zi): filter the columns of x (n_samples[, n_signals]) in place; zi "
     "(n_signals, n_sections, 2) is the state, updated. scipy.signal.sosfilt's arithmetic."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_fastdsp", "C kernel for the ride-quality filters (optional; see _fastdsp.c).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__fastdsp(void) { return PyModule_Create(&module_def); }
