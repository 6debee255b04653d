# cython: language_level=3
"""Thin Cython layer over the C kernels in fl_kernels.c (declared in fl_kernels.pxd).

Callers (fastloss/_api.py) pass arrays that are already validated, C-contiguous and of
the working dtype; this layer only takes their data pointers, releases the GIL and calls C.
Keeping it this thin keeps the per-call overhead at a few hundred nanoseconds.
"""
cimport numpy as cnp
from libc.math cimport NAN
from libc.stdint cimport int64_t

from fl_kernels cimport *

cnp.import_array()

fl_init()


def _op_codes(int family):
    """{name: code} of one C op list (fl_kernel_list.h), read from fl_op_name."""
    cdef int op = 0
    cdef const char *name = fl_op_name(family, 0)
    codes = {}
    while name != NULL:
        codes[name.decode()] = op
        op += 1
        name = fl_op_name(family, op)
    return codes


def _tuning():
    cdef int i = 0
    cdef const char *name = fl_tuning_name(0)
    values = {}
    while name != NULL:
        values[name.decode()] = fl_tuning_value(i)
        i += 1
        name = fl_tuning_name(i)
    return values


# The op codes by name, as the C lists in fl_kernel_list.h define them.
ELEMENTWISE_OPS = _op_codes(FL_FAMILY_ELEMENTWISE)   # "bce_logits", ..., "kl_div_log_target"
CLASS_OPS = _op_codes(FL_FAMILY_CLASS)               # "cross_entropy", "focal", "nll"
EMBEDDING_OPS = _op_codes(FL_FAMILY_EMBEDDING)       # "cosine_embedding", ..., "multi_margin"
SOFTMAX_OPS = _op_codes(FL_FAMILY_SOFTMAX)           # "log_softmax", "softmax", "logsumexp"
REDUCTIONS = _op_codes(FL_FAMILY_REDUCTION)          # "none", "mean", "sum"
VECTOR_MATH_OPS = _op_codes(FL_FAMILY_VECTOR_MATH)   # "exp", "log", "log1p", ...
ROW_OPS = _op_codes(FL_FAMILY_ROW)                   # "rank", "entropy"
TIES = _op_codes(FL_FAMILY_TIES)                     # "argmax", "sklearn", "pessimistic"
# The flag bits of the box losses (fl_emb_args.flags, fl_kernels.h).
BOX_FLAGS = {
    "cxcywh": FL_BOX_CXCYWH,
    "grad2": FL_BOX_GRAD2,
    "undetached": FL_BOX_UNDETACHED,
    "alpha_mmdet": FL_BOX_ALPHA_MMDET,
    "alpha_yolo": FL_BOX_ALPHA_YOLO,
}


def _gbdt_ops():
    cdef int op = 0
    cdef const char *name = fl_gbdt_name(0)
    codes = {}
    while name != NULL:
        codes[name.decode()] = op
        op += 1
        name = fl_gbdt_name(op)
    return codes


GBDT_OPS = _gbdt_ops()                               # "logloss", ..., "gaussian"
# The kernels' tuning constants (fl_config.h), e.g. TUNING["small_c"]: rows of at most that
# many classes take the transposed-tile path.
TUNING = _tuning()


def simd_name():
    return fl_simd_name().decode()


def _built_simd():
    cdef int i = 0
    cdef const char *name = fl_simd_built(0)
    names = []
    while name != NULL:
        names.append(name.decode())
        i += 1
        name = fl_simd_built(i)
    return tuple(names)


# The SIMD paths compiled into this build, e.g. ("baseline", "avx2", "avx512") on x86-64 or
# ("baseline", "neon") on aarch64; the test-only "wide" is there only when built with
# FASTLOSS_BUILD_WIDE=1.  Whether the CPU runs a path is another matter: set_simd checks that.
BUILT_SIMD = _built_simd()


def set_simd(name):
    """Force a SIMD path ("baseline", "avx2", "avx512", "neon" (aarch64), or the test-only
    "wide": the AVX-512 code shape on the baseline ISA); ValueError if unknown, not built or
    the CPU lacks it."""
    cdef int rc = fl_set_simd(name.encode())
    if rc == -2 and name == "wide":
        raise ValueError(
            "SIMD path 'wide' was not built: it is test-only; rebuild with "
            "FASTLOSS_BUILD_WIDE=1 set (e.g. FASTLOSS_BUILD_WIDE=1 pip install .)"
        )
    if rc == -2:
        raise ValueError(f"SIMD path {name!r} was not built (this compiler or platform)")
    if rc != 0:
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


def thread_stats():
    """The thread driver's contention guard: multi-threaded calls started, calls it ran on
    one thread instead, its trips, and its current back-off in seconds."""
    cdef int64_t s[4]
    fl_thread_stats(s)
    return {"parallel": s[0], "solo": s[1], "trips": s[2], "backoff_s": s[3] * 1e-9}


def thread_guard(str mode):
    """Test hook: "reset" the contention guard, "trip" it as a contended call would, or
    switch it "off" (until the next call of this function)."""
    modes = {"reset": 0, "trip": 1, "off": 2}
    if mode not in modes:
        raise ValueError(f"thread_guard: mode must be one of {tuple(modes)}, got {mode!r}")
    fl_thread_guard(modes[mode])


cdef inline const void *_ptr(object a):
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray>a)


def class_loss(int kind, cnp.ndarray x, int64_t N, int64_t C, int64_t S, object target,
               object target_prob, object weight, int64_t ignore_index, double smoothing,
               double gamma, int reduction, object grad_output, object grad, object loss_rows,
               int nthreads, object ranks=None):
    """One call for a validated class-axis loss (kind: a CLASS_OPS code, reduction: a
    REDUCTIONS code): checks the targets, forms the "mean"
    normaliser (sum of w[y] over non-ignored samples, or N*S for probability targets), then
    runs the fused pass.  With `ranks` (an int64 array of N*S, cross entropy / focal loss with
    index targets), the rank of each sample's target among its scores (argmax ties; -1 where
    ignored or NaN) is written from the same chunks.  Returns (reduced loss or None for
    "none", first bad target or -1)."""
    cdef fl_ce_args a
    cdef fl_row_args r
    cdef double kept = 0.0
    cdef int64_t rank_bad = -1
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
    a.focal = kind == FL_FOCAL
    a.gamma = gamma
    a.grad = <void *>_ptr(grad)
    a.grad_scale_rows = NULL
    if isinstance(grad_output, cnp.ndarray):
        a.grad_scale_rows = <const double *>cnp.PyArray_DATA(<cnp.ndarray>grad_output)
    else:
        go = grad_output
    a.loss_rows = <void *>_ptr(loss_rows)
    r.rank_out = NULL
    if ranks is not None:
        if kind == FL_NLL or a.target == NULL:
            raise ValueError("ranks: cross entropy or focal loss with class-index targets only")
        r.is_f64 = is_f64
        r.op = FL_RANK
        r.N = N
        r.C = C
        r.S = S
        r.x = a.x
        r.target = a.target
        r.ignore_index = ignore_index
        r.top_k = 1
        r.ties = FL_TIES_ARGMAX
        r.count_hits = 0
        r.sample_weight = NULL
        r.rank_out = <int64_t *>cnp.PyArray_DATA(<cnp.ndarray>ranks)
        r.kept_weight = &kept
        r.first_bad = &rank_bad
        r.inv_log_base = 1.0
        r.grad = NULL
        r.grad_scale_rows = NULL
        r.grad_scale = 0.0
        r.out_rows = NULL
    with nogil:
        if a.target != NULL:
            bad = fl_check_targets(a.target, N * S, C, ignore_index, a.weight, is_f64, &norm,
                                   nthreads)
        else:
            norm = <double>(N * S)
        if bad < 0:
            if reduction == FL_REDUCTION_MEAN:
                a.grad_scale = go / norm if norm != 0 else NAN
            else:
                a.grad_scale = go
            if kind == FL_NLL:
                total = fl_nll(&a, nthreads)
            elif r.rank_out != NULL:
                total = fl_cross_entropy_ranks(&a, &r, nthreads)
            else:
                total = fl_cross_entropy(&a, nthreads)
    if bad >= 0:
        return None, bad
    if reduction == FL_REDUCTION_NONE:
        return None, -1
    if reduction == FL_REDUCTION_MEAN:
        return (total / norm if norm != 0 else NAN), -1
    return total, -1


def softmax(cnp.ndarray x, int64_t N, int64_t C, int64_t S, cnp.ndarray out, int op,
            int nthreads):
    """Softmax-family op (a SOFTMAX_OPS code) along the class axis of (N, C, S) into out."""
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
                object grad_scale_rows, double grad_scale, object loss_rows, int nthreads,
                object grad2=None):
    """Fused elementwise loss (+ gradient) for op, an ELEMENTWISE_OPS code; returns (sum of
    losses, domain error flag)."""
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
    a.grad2 = <void *>_ptr(grad2)
    a.grad_scale_rows = _ptr(grad_scale_rows)
    a.grad_scale = grad_scale
    a.loss_rows = <void *>_ptr(loss_rows)
    with nogil:
        total = fl_elementwise(&a, nthreads, &bad)
    return total, bool(bad)


def embedding(int op, cnp.ndarray a, object b, object c, object target, int64_t N,
              int64_t D, double p1, double p2, double p3, int flags, object grad_a,
              object grad_b, object grad_c, object grad_scale_rows, double grad_scale,
              object loss_rows, int nthreads, object target_idx=None, object weight=None):
    """Row loss (an EMBEDDING_OPS code) over N rows of D features of the (N, D) arrays a,
    b (and c, or None); target (working dtype) or None; int64 class indices target_idx or
    None; class weight (D,) or None; gradients all or none.  Returns the sum of the per-row
    losses (NaN when a row's class index is out of range: the caller locates it)."""
    cdef fl_emb_args s
    cdef double total
    s.is_f64 = cnp.PyArray_TYPE(a) == cnp.NPY_DOUBLE
    s.op = op
    s.N = N
    s.D = D
    s.a = cnp.PyArray_DATA(a)
    s.b = _ptr(b)
    s.c = _ptr(c)
    s.target = _ptr(target)
    s.target_idx = <const int64_t *>_ptr(target_idx)
    s.weight = _ptr(weight)
    s.p1 = p1
    s.p2 = p2
    s.p3 = p3
    s.flags = flags
    s.grad_a = <void *>_ptr(grad_a)
    s.grad_b = <void *>_ptr(grad_b)
    s.grad_c = <void *>_ptr(grad_c)
    s.grad_scale_rows = _ptr(grad_scale_rows)
    s.grad_scale = grad_scale
    s.loss_rows = <void *>_ptr(loss_rows)
    with nogil:
        total = fl_embedding(&s, nthreads)
    return total


def ctc(cnp.ndarray x, cnp.ndarray targets, cnp.ndarray target_offsets,
        cnp.ndarray target_lengths, cnp.ndarray input_lengths, int64_t blank, bint from_logits,
        bint zero_infinity, bint accumulate_f64, cnp.ndarray nll, object grad,
        object grad_scale, int nthreads):
    """CTC loss of (T, N, C) x (float32/float64, C-contiguous): int64 targets (concatenated),
    target_offsets, target_lengths and input_lengths (N,), all checked; writes the per-sample
    negative log-likelihoods into the float64 nll (N,) and, with grad (x's shape and dtype, may
    be x), the gradient times the float64 grad_scale (N,).  Returns the sum of nll; raises
    MemoryError when the per-thread scratch could not be allocated."""
    cdef fl_ctc_args a
    cdef double total
    cdef int failed = 0
    a.x_is_f32 = cnp.PyArray_TYPE(x) == cnp.NPY_FLOAT
    a.is_f64 = accumulate_f64 or not a.x_is_f32
    a.from_logits = from_logits
    a.zero_infinity = zero_infinity
    a.T = x.shape[0]
    a.N = x.shape[1]
    a.C = x.shape[2]
    a.blank = blank
    a.x = cnp.PyArray_DATA(x)
    a.targets = <const int64_t *>cnp.PyArray_DATA(targets)
    a.target_offsets = <const int64_t *>cnp.PyArray_DATA(target_offsets)
    a.target_lengths = <const int64_t *>cnp.PyArray_DATA(target_lengths)
    a.input_lengths = <const int64_t *>cnp.PyArray_DATA(input_lengths)
    a.nll = <double *>cnp.PyArray_DATA(nll)
    a.grad = <void *>_ptr(grad)
    a.grad_scale = <const double *>_ptr(grad_scale)
    a.failed = &failed
    with nogil:
        total = fl_ctc(&a, nthreads)
    if failed:
        raise MemoryError("ctc_loss: could not allocate the per-thread alignment tables")
    return total


def vector_math(str name, cnp.ndarray x):
    """The kernels' own vector exp/log/log1p applied elementwise (C-contiguous float32/float64
    input) on the active SIMD path: exposed so the tests can measure their accuracy."""
    cdef cnp.ndarray out = cnp.PyArray_EMPTY(1, [cnp.PyArray_SIZE(x)], cnp.PyArray_TYPE(x), 0)
    cdef int op = VECTOR_MATH_OPS[name]
    cdef bint is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        fl_vector_math(op, is_f64, cnp.PyArray_SIZE(x), cnp.PyArray_DATA(x), cnp.PyArray_DATA(out))
    return out.reshape((<object>x).shape)


def row_op(int op, cnp.ndarray x, int64_t N, int64_t C, int64_t S, object target,
           int64_t ignore_index, int64_t top_k, int ties, bint count_hits, object sample_weight,
           object rank_out, double inv_log_base, object grad, object grad_output,
           object out_rows, int nthreads):
    """A row statistic (op: a ROW_OPS code) along the class axis of (N, C, S) x.  "rank":
    int64 targets (N*S), top_k >= 1 (at most C), ties a TIES code, count_hits (accuracy) or
    misses (error rate), float64 sample_weight or None, an int64 rank_out or None.
    "entropy": inv_log_base, grad (or None), grad_output a float64 array of per-sample scales
    or a float.  out_rows: per-sample values (working dtype) or None.  Returns (sum of the
    per-sample values, kept weight, first bad target or -1)."""
    cdef fl_row_args a
    cdef double total, kept = 0.0
    cdef int64_t bad = -1
    a.is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    a.op = op
    a.N = N
    a.C = C
    a.S = S
    a.x = cnp.PyArray_DATA(x)
    a.target = <const int64_t *>_ptr(target)
    a.ignore_index = ignore_index
    a.top_k = top_k
    a.ties = ties
    a.count_hits = count_hits
    a.sample_weight = <const double *>_ptr(sample_weight)
    a.rank_out = <int64_t *>_ptr(rank_out)
    a.kept_weight = &kept
    a.first_bad = &bad
    a.inv_log_base = inv_log_base
    a.grad = <void *>_ptr(grad)
    a.grad_scale_rows = NULL
    a.grad_scale = 0.0
    if isinstance(grad_output, cnp.ndarray):
        a.grad_scale_rows = <const double *>cnp.PyArray_DATA(<cnp.ndarray>grad_output)
    elif grad_output is not None:
        a.grad_scale = grad_output
    a.out_rows = <void *>_ptr(out_rows)
    with nogil:
        total = fl_row_op(&a, nthreads)
    return total, kept, bad


def gbdt(int op, cnp.ndarray x, cnp.ndarray y, object weight, object class_weight, int64_t K,
         bint x_class_major, double p1, double p2, double hess_factor, double hess_min,
         double scale, bint bce_bound, cnp.ndarray grad, cnp.ndarray hess,
         bint out_class_major, int nthreads):
    """Gradient and Hessian of a gradient-boosting objective (op: a GBDT_OPS code) into grad
    and hess.  x: n scores, or n rows of K (row-major, or class-major with x_class_major);
    y, weight (n,) and class_weight (K,) or None of x's dtype; grad and hess of x's dtype or,
    for float64 x, float32; all contiguous and validated.  Returns False when a label was
    invalid for the op (the caller locates it); raises MemoryError when a scratch tile could
    not be allocated."""
    cdef fl_gbdt_args a
    cdef double total
    cdef int failed = 0
    a.is_f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    a.out_f32 = a.is_f64 and cnp.PyArray_TYPE(grad) == cnp.NPY_FLOAT
    a.op = op
    a.n = cnp.PyArray_SIZE(y)
    a.K = K
    a.x_class_major = x_class_major
    a.out_class_major = out_class_major
    a.x = cnp.PyArray_DATA(x)
    a.y = cnp.PyArray_DATA(y)
    a.weight = _ptr(weight)
    a.class_weight = _ptr(class_weight)
    a.p1 = p1
    a.p2 = p2
    a.hess_factor = hess_factor
    a.hess_min = hess_min
    a.scale = scale
    a.bce_bound = bce_bound
    a.grad = cnp.PyArray_DATA(grad)
    a.hess = cnp.PyArray_DATA(hess)
    a.failed = &failed
    with nogil:
        total = fl_gbdt(&a, nthreads)
    if failed:
        raise MemoryError("gbdt: could not allocate a scratch tile")
    return total == 0
