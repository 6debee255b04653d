# cython: language_level=3
# The C kernel API (fl_kernels.h), declared once for Cython (cimported by src/_kernels.pyx).
# The op codes are the C enums generated from fl_kernel_list.h; only the ones the Cython code
# tests are named here, and the op dictionaries are built at import from fl_op_name (no code
# or name is repeated).
from libc.stdint cimport int64_t


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

    ctypedef struct fl_emb_args:
        int is_f64
        int op
        int64_t N, D
        const void *a
        const void *b
        const void *c
        const void *target
        const int64_t *target_idx
        const void *weight
        double p1, p2, p3
        int flags
        void *grad_a
        void *grad_b
        void *grad_c
        const void *grad_scale_rows
        double grad_scale
        void *loss_rows

    ctypedef struct fl_ctc_args:
        int is_f64
        int x_is_f32
        int from_logits, zero_infinity
        int64_t T, N, C, blank
        const void *x
        const int64_t *targets
        const int64_t *target_offsets
        const int64_t *target_lengths
        const int64_t *input_lengths
        double *nll
        void *grad
        const double *grad_scale
        int *failed

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
        void *grad2
        const void *grad_scale_rows
        double grad_scale
        void *loss_rows

    ctypedef struct fl_row_args:
        int is_f64
        int op
        int64_t N, C, S
        const void *x
        const int64_t *target
        int64_t ignore_index
        int64_t top_k
        int ties
        int count_hits
        const double *sample_weight
        int64_t *rank_out
        double *kept_weight
        int64_t *first_bad
        double inv_log_base
        void *grad
        const double *grad_scale_rows
        double grad_scale
        void *out_rows

    ctypedef struct fl_gbdt_args:
        int is_f64
        int out_f32
        int op
        int64_t n, K
        int x_class_major, out_class_major
        const void *x
        const void *y
        const void *weight
        const void *class_weight
        double p1, p2
        double hess_factor, hess_min, scale
        int bce_bound
        void *grad
        void *hess
        int *failed

    enum:
        FL_FAMILY_ELEMENTWISE, FL_FAMILY_CLASS, FL_FAMILY_EMBEDDING, FL_FAMILY_SOFTMAX,
        FL_FAMILY_REDUCTION, FL_FAMILY_VECTOR_MATH, FL_FAMILY_ROW, FL_FAMILY_TIES
        FL_FOCAL, FL_NLL, FL_RANK, FL_TIES_ARGMAX
        FL_REDUCTION_NONE, FL_REDUCTION_MEAN
        FL_BOX_CXCYWH, FL_BOX_GRAD2, FL_BOX_UNDETACHED, FL_BOX_ALPHA_MMDET, FL_BOX_ALPHA_YOLO

    const char *fl_op_name(int family, int op)
    const char *fl_tuning_name(int i)
    int64_t fl_tuning_value(int i)

    void fl_init()
    const char *fl_simd_name()
    int fl_set_simd(const char *name)
    const char *fl_simd_built(int i)
    int fl_openmp_enabled()
    int fl_max_threads()
    void fl_set_steal_test(int on)
    void fl_thread_stats(int64_t out[4])
    void fl_thread_guard(int mode)
    int64_t fl_check_targets(const int64_t *target, int64_t n, int64_t C, int64_t ignore_index,
                             const void *weight, int is_f64, double *weight_total, int nthreads)
    double fl_cross_entropy(const fl_ce_args *a, int nthreads)
    double fl_nll(const fl_ce_args *a, int nthreads)
    void fl_softmax(const fl_softmax_args *a, int nthreads)
    double fl_elementwise(const fl_ew_args *a, int nthreads, int *bad)
    double fl_embedding(const fl_emb_args *a, int nthreads)
    double fl_ctc(const fl_ctc_args *a, int nthreads)
    void fl_vector_math(int op, int is_f64, int64_t n, const void *x, void *out)
    double fl_row_op(const fl_row_args *a, int nthreads)
    const char *fl_gbdt_name(int op)
    double fl_gbdt(const fl_gbdt_args *a, int nthreads)
    double fl_cross_entropy_ranks(const fl_ce_args *a, const fl_row_args *r, int nthreads)
