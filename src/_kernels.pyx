# cython: language_level=3
"""Thin Cython layer over the C kernels in fl_kernels.c.

Callers (fastloss/_backend.py) pass arrays that are already validated, C-contiguous and of
the working dtype; this layer only takes their data pointers, releases the GIL and calls C.
Keeping it this thin keeps the per-call overhead at a few hundred nanoseconds.
"""
cimport numpy as cnp
from libc.math cimport NAN
from libc.stdint cimport int64_t

cnp.import_array()


cdef extern from "fl_kernels.h" nogil:
    ctypedef struct fl_ce_args:
        int is_f64
        int64_t N, C, S
        const void *x
        const int64_t *target
        const void *target_prob
        const void *weight
        double weight_sum
        int64_t ignore_index
        double smoothing
        int focal
        double gamma
        void *grad
        const double *grad_scale_rows
        double grad_scale
        void *loss_rows

    ctypedef struct fl_softmax_args:
        int is_f64
        int64_t N, C, S
        int op
        const void *x
        void *out

    ctypedef struct fl_ew_args:
        int is_f64
        int op
        int64_t n
        const void *x
        const void *target
        const void *weight
        int64_t weight_period
        const void *pos_weight
        int64_t pos_weight_period
        double p1, p2
        void *grad
        const void *grad_scale_rows
        double grad_scale
        void *loss_rows

    enum:
        FL_BCE_LOGITS, FL_SIGMOID_FOCAL, FL_BCE, FL_MSE, FL_L1, FL_SMOOTH_L1, FL_HUBER,
        FL_KL_DIV, FL_KL_DIV_LOG_TARGET

    void fl_init()
    const char *fl_simd_name()
    int fl_set_simd(const char *name)
    int fl_openmp_enabled()
    int fl_max_threads()
    void fl_set_steal_test(int on)
    int64_t fl_check_targets(const int64_t *target, int64_t n, int64_t C, int64_t ignore_index,
                             const void *weight, int is_f64, double *weight_total, int nthreads)
    double fl_cross_entropy(const fl_ce_args *a, int nthreads)
    double fl_nll(const fl_ce_args *a, int nthreads)
    void fl_softmax(const fl_softmax_args *a, int nthreads)
    double fl_elementwise(const fl_ew_args *a, int nthreads, int *bad)
    void fl_vector_math(int op, int is_f64, int64_t n, const void *x, void *out)


fl_init()

LOG_SOFTMAX, SOFTMAX, LOGSUMEXP = 0, 1, 2
ELEMENTWISE_OPS = {
    "binary_cross_entropy_with_logits": FL_BCE_LOGITS, "sigmoid_focal_loss": FL_SIGMOID_FOCAL,
    "binary_cross_entropy": FL_BCE, "mse_loss": FL_MSE, "l1_loss": FL_L1,
    "smooth_l1_loss": FL_SMOOTH_L1, "huber_loss": FL_HUBER, "kl_div": FL_KL_DIV,
    "kl_div_log_target": FL_KL_DIV_LOG_TARGET,
}


def simd_name():
    return fl_simd_name().decode()


def set_simd(name):
    """Force a SIMD path ("baseline", "avx2", "avx512"); ValueError if the CPU lacks it."""
    if fl_set_simd(name.encode()) != 0:
        raise ValueError(f"SIMD path {name!r} is unknown or not supported by this CPU")


def openmp_enabled():
    return bool(fl_openmp_enabled())


def max_threads():
    return fl_max_threads()


def set_steal_test(bint on):
    """Test hook: with on, the first thread of every multi-threaded call takes the other
    threads' chunks (from the ends of their blocks) before its own, so that the work-taking
    paths of the thread driver run in every call (results must not change)."""
    fl_set_steal_test(on)


cdef inline const void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


CLASS_LOSS_KINDS = {"cross_entropy": 0, "focal_loss": 1, "nll_loss": 2}
REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}


def class_loss(int kind, cnp.ndarray x, int64_t N, int64_t C, int64_t S, object target,
               object target_prob, object weight, int64_t ignore_index, double smoothing,
               double gamma, int reduction, object grad_output, object grad, object loss_rows,
               int nthreads):
    """One call for a validated class-axis loss: checks the targets, forms the "mean"
    normaliser (sum of w[y] over non-ignored samples, or N*S for probability targets), then
    runs the fused pass.  Returns (reduced loss or None for "none", first bad target or -1)."""
    cdef fl_ce_args a
    cdef double total = 0.0, norm, go = 1.0, wsum = 0.0
    cdef int64_t bad = -1, c
    cdef bint is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    a.is_f64 = is_f64
    a.N = N
    a.C = C
    a.S = S
    a.x = cnp.PyArray_DATA(x)
    a.target = <const int64_t *>_ptr(target)
    a.target_prob = _ptr(target_prob)
    a.weight = _ptr(weight)
    if a.weight == NULL:
        wsum = <double>C
    elif is_f64:
        for c in range(C):
            wsum += (<const double *>a.weight)[c]
    else:
        for c in range(C):
            wsum += (<const float *>a.weight)[c]
    a.weight_sum = wsum
    a.ignore_index = ignore_index
    a.smoothing = smoothing
    a.focal = kind == 1
    a.gamma = gamma
    a.grad = <void *>_ptr(grad)
    a.grad_scale_rows = NULL
    if isinstance(grad_output, cnp.ndarray):
        a.grad_scale_rows = <const double *>cnp.PyArray_DATA(<cnp.ndarray>grad_output)
    else:
        go = grad_output
    a.loss_rows = <void *>_ptr(loss_rows)
    with nogil:
        if a.target != NULL:
            bad = fl_check_targets(a.target, N * S, C, ignore_index, a.weight, is_f64, &norm,
                                   nthreads)
        else:
            norm = <double>(N * S)
        if bad < 0:
            if reduction == 1:
                a.grad_scale = go / norm if norm != 0 else NAN
            else:
                a.grad_scale = go
            if kind == 2:
                total = fl_nll(&a, nthreads)
            else:
                total = fl_cross_entropy(&a, nthreads)
    if bad >= 0:
        return None, bad
    if reduction == 0:
        return None, -1
    if reduction == 1:
        return (total / norm if norm != 0 else NAN), -1
    return total, -1


def softmax(cnp.ndarray x, int64_t N, int64_t C, int64_t S, cnp.ndarray out, int op,
            int nthreads):
    cdef fl_softmax_args a
    a.is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    a.N = N
    a.C = C
    a.S = S
    a.op = op
    a.x = cnp.PyArray_DATA(x)
    a.out = cnp.PyArray_DATA(out)
    with nogil:
        fl_softmax(&a, nthreads)


def elementwise(int op, cnp.ndarray x, cnp.ndarray target, object weight, int64_t weight_period,
                object pos_weight, int64_t pos_weight_period, double p1, double p2, object grad,
                object grad_scale_rows, double grad_scale, object loss_rows, int nthreads):
    """Fused elementwise loss (+ gradient); returns (sum of losses, domain error flag)."""
    cdef fl_ew_args a
    cdef double total
    cdef int bad = 0
    a.is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    a.op = op
    a.n = cnp.PyArray_SIZE(x)
    a.x = cnp.PyArray_DATA(x)
    a.target = cnp.PyArray_DATA(target)
    a.weight = _ptr(weight)
    a.weight_period = weight_period
    a.pos_weight = _ptr(pos_weight)
    a.pos_weight_period = pos_weight_period
    a.p1 = p1
    a.p2 = p2
    a.grad = <void *>_ptr(grad)
    a.grad_scale_rows = _ptr(grad_scale_rows)
    a.grad_scale = grad_scale
    a.loss_rows = <void *>_ptr(loss_rows)
    with nogil:
        total = fl_elementwise(&a, nthreads, &bad)
    return total, bool(bad)


VECTOR_MATH_OPS = {"exp": 0, "log": 1, "log1p": 2, "log1p_unit": 3, "log1p_nonneg": 4}


def vector_math(str name, cnp.ndarray x):
    """The kernels' own vector exp/log/log1p applied elementwise (C-contiguous float32/float64
    input) on the active SIMD path: exposed so the tests can measure their accuracy."""
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, [cnp.PyArray_SIZE(x)], cnp.PyArray_TYPE(x), 0)
    cdef int op = VECTOR_MATH_OPS[name]
    cdef bint is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        fl_vector_math(op, is_f64, cnp.PyArray_SIZE(x), cnp.PyArray_DATA(x), cnp.PyArray_DATA(out))
    return out.reshape((<object>x).shape)
