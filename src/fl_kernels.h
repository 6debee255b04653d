/*
 * fastloss C kernel API (called from src/_kernels.pyx with the GIL released).
 *
 * Every array is C-contiguous and already validated by the Python layer.  Class-axis
 * inputs are viewed as (N, C, S): S = 1 for (N, C), S = d1*...*dk for (N, C, d1..dk).
 * Per-sample quantities are indexed n*S + s.  `x`, `grad`, `weight`, `target_prob` and
 * `loss_rows` point to the working dtype (float32 or float64, chosen by `is_f64`).
 *
 * Threading and determinism: work is cut into chunks whose size depends only on the shape
 * (never on the thread count); each chunk writes its own partial sum, and partial sums are
 * added in chunk order.  Results are therefore bit-identical for any number of threads.
 */
#ifndef FL_KERNELS_H
#define FL_KERNELS_H

#include <stdint.h>

#include "fl_kernel_list.h"

/* The op codes, from the lists in fl_kernel_list.h (each FL_N_* counts its list). */
#define FL_ENUM_ID(ID, ...)        FL_##ID,
#define FL_ENUM_REDUCTION(ID, ...) FL_REDUCTION_##ID,
#define FL_ENUM_VM(ID, ...)        FL_VM_##ID,
#define FL_ENUM_FAMILY(ID, ...)    FL_FAMILY_##ID,
#define FL_ENUM_TIES(ID, ...)      FL_TIES_##ID,
enum { FL_ELEMENTWISE_LOSSES(FL_ENUM_ID) FL_N_ELEMENTWISE };
enum { FL_CLASS_LOSSES(FL_ENUM_ID) FL_N_CLASS_LOSSES };
enum { FL_SOFTMAX_OPS(FL_ENUM_ID) FL_N_SOFTMAX_OPS };
enum { FL_EMBEDDING_LOSSES(FL_ENUM_ID) FL_N_EMBEDDING };
enum { FL_REDUCTIONS(FL_ENUM_REDUCTION) FL_N_REDUCTIONS };
enum { FL_VECTOR_MATH_OPS(FL_ENUM_VM) FL_N_VECTOR_MATH };
enum { FL_ROW_OPS(FL_ENUM_ID) FL_N_ROW_OPS };
enum { FL_TIE_POLICIES(FL_ENUM_TIES) FL_N_TIE_POLICIES };
enum { FL_OP_FAMILIES(FL_ENUM_FAMILY) FL_N_FAMILIES };
#undef FL_ENUM_ID
#undef FL_ENUM_REDUCTION
#undef FL_ENUM_VM
#undef FL_ENUM_FAMILY
#undef FL_ENUM_TIES

/* The name of op `op` of list `family` (FL_FAMILY_ELEMENTWISE, ...: "bce_logits", ...), or
 * NULL past the end of the list or for an unknown family. */
const char *fl_op_name(int family, int op);
/* The name of list `family` ("elementwise", "class", "softmax", "reduction", "vector_math",
 * "row", "ties"), or NULL past the end. */
const char *fl_family_name(int family);
/* Tuning constant i of FL_TUNING (fl_config.h): its name ("chunk_elems", ...), or NULL past
 * the end, and its value. */
const char *fl_tuning_name(int i);
int64_t fl_tuning_value(int i);

typedef struct {
    int is_f64;
    int64_t N, C, S;
    const void *x;              /* (N, C, S) logits */
    const int64_t *target;      /* (N, S) class indices, or NULL */
    const void *target_prob;    /* (N, C, S) class probabilities, or NULL */
    const void *weight;         /* (C,) class weights, or NULL */
    double weight_sum;          /* sum of weight (C if weight is NULL) */
    int64_t ignore_index;
    double smoothing;           /* label smoothing in [0, 1] */
    int focal;                  /* 1: softmax focal loss (index targets, no smoothing) */
    double gamma;               /* focal exponent */
    void *grad;                 /* (N, C, S) gradient output, or NULL (loss only); may equal x */
    const double *grad_scale_rows; /* (N*S) per-sample gradient multipliers, or NULL */
    double grad_scale;          /* uniform gradient multiplier when grad_scale_rows is NULL */
    void *loss_rows;            /* (N*S) per-sample losses, or NULL */
} fl_ce_args;

typedef struct {
    int is_f64;
    int64_t N, C, S;
    int op;                     /* FL_LOG_SOFTMAX, FL_SOFTMAX or FL_LOGSUMEXP */
    const void *x;              /* (N, C, S) */
    void *out;                  /* (N, C, S), or (N, S) for logsumexp */
} fl_softmax_args;

/* Elementwise losses: x and target share one shape of n elements. */
typedef struct {
    int is_f64;
    int op;                     /* FL_BCE_LOGITS, ... */
    int64_t n;
    const void *x, *target;
    /* weight / pos_weight: NULL, or an array repeating with the given period along the flat
     * index (a weight broadcast over leading axes is periodic; period n = full array) */
    const void *weight;
    int64_t weight_period;
    const void *pos_weight;
    int64_t pos_weight_period;
    double p1, p2;              /* alpha, gamma (sigmoid focal); beta / delta */
    void *grad;                 /* (n,) or NULL */
    void *grad2; /* (n,): the second input's gradient (FL_EW_PAIR losses), or NULL */
    const void
        *grad_scale_rows; /* (n,) per-element gradient multipliers (working dtype), or NULL */
    double grad_scale;
    void *loss_rows; /* (n,) per-element losses, or NULL */
} fl_ew_args;

/* Returns the sum of the per-element losses; *bad is set to 1 when an input violates the
 * loss's domain (binary_cross_entropy: input outside [0, 1] or NaN). */
double fl_elementwise(const fl_ew_args *a, int nthreads, int *bad);

/* Row losses (FL_EMBEDDING_LOSSES) on N rows of D features (or classes): a, b (and c) are
 * (N, D) arrays of the working dtype, target (N,) or (N, D) of it or NULL; one loss per row.
 * The margin losses read only a (the input, D = C classes) and their class indices
 * target_idx; a row holding an index out of range gets loss NaN and makes the returned sum
 * NaN (the caller then locates it). */
typedef struct {
    int is_f64;
    int op;                        /* FL_COSINE_EMBEDDING, ..., FL_MULTILABEL_SOFT_MARGIN */
    int64_t N, D;
    const void *a, *b, *c;         /* (N, D); c NULL when the loss has two inputs */
    const void *target;            /* (N,) or NULL; multilabel_soft_margin: (N, C) */
    const int64_t *target_idx;     /* multi_margin: (N,) class indices; multilabel_margin:
                                      (N, C) index lists ended by the first -1; else NULL */
    const void *weight;            /* (C,) class weights (multi_margin,
                                      multilabel_soft_margin), or NULL */
    double p1, p2, p3;             /* cosine: margin, epsilon; triplet: margin, p, eps;
                                      multi_margin: margin, p (1 or 2) */
    int flags;                     /* triplet: bit 0 = swap */
    void *grad_a, *grad_b, *grad_c; /* (N, D) gradients of a, b, c, all those it has or none
                                       (NULL: loss only) */
    const void *grad_scale_rows;   /* (N,) per-row gradient multipliers, or NULL */
    double grad_scale;
    void *loss_rows;               /* (N,) per-row losses, or NULL */
} fl_emb_args;

/* Returns the sum of the per-row losses. */
double fl_embedding(const fl_emb_args *a, int nthreads);

/* CTC loss (kernels/ctc-inl.h) of N samples of (T, N, C) log-probabilities or logits x:
 * sample n has input_lengths[n] <= T frames and target_lengths[n] labels starting at
 * targets[target_offsets[n]] (all checked: in [0, C), none equal to blank).  Stores each
 * sample's negative log-likelihood (inf when no alignment exists, NaN for NaN input) in
 * nll[n].  With grad ((T, N, C), may be x), writes d(nll_n)/dx times grad_scale[n] (frames
 * at or past input_lengths[n]: 0; infeasible samples: NaN, or 0 with zero_infinity).  The
 * recursion runs in double when is_f64 (also for float32 x: x_is_f32).  *failed is set
 * when a thread could not allocate its O(T * S) scratch; returns the sum of nll. */
typedef struct {
    int is_f64;                    /* dtype of the recursion */
    int x_is_f32;                  /* dtype of x and grad: float32 (else float64) */
    int from_logits, zero_infinity;
    int64_t T, N, C, blank;
    const void *x;
    const int64_t *targets, *target_offsets, *target_lengths, *input_lengths;
    double *nll;                   /* (N,) out */
    void *grad;                    /* (T, N, C) or NULL */
    const double *grad_scale;      /* (N,) per-sample gradient multipliers (with grad) */
    int *failed;                   /* out */
} fl_ctc_args;

double fl_ctc(const fl_ctc_args *a, int nthreads);

/* The box losses (FL_BOX_IOU ... FL_BOX_FOCAL_EIOU) in fl_emb_args: a, b = (N, 4) boxes1,
 * boxes2, D = 4, weight = (N,) per-box weights or NULL, p1 = eps, p2 = gamma (focal EIoU),
 * p3 = eps of CIoU's alpha, grad_a / grad_b = their gradients (grad_b written only with
 * FL_BOX_GRAD2), flags = these bits: */
enum {
    FL_BOX_CXCYWH = 1,     /* boxes are (cx, cy, w, h), else (x1, y1, x2, y2) */
    FL_BOX_GRAD2 = 2,      /* write the gradient of boxes2 into grad_b */
    FL_BOX_UNDETACHED = 4, /* focal EIoU: differentiate its weight IoU^gamma too */
    FL_BOX_ALPHA_MMDET = 8, /* CIoU alpha: mmdetection's (IoU > 0.5) v / (1 - IoU + v) */
    FL_BOX_ALPHA_YOLO = 16  /* CIoU alpha: YOLO's v / (v - IoU + (1 + eps)) */
};

/* Gradient-boosting objectives (kernels/gbdt-inl.h): per row, the gradient and the (diagonal)
 * Hessian of a loss with respect to the raw scores, into preallocated buffers; X(ID, name),
 * enum FL_GBDT_<ID>.  logloss: binary cross entropy on logits (p1 = weight of the positive
 * term, p2 = of the negative one); focal: sigmoid focal loss (p1 = alpha, < 0: none; p2 =
 * gamma; labels 0 or 1); softmax / softmax_focal: K classes per row (labels: class indices
 * stored as numbers; p2 = gamma); huber / pseudo_huber (p1 = delta); poisson (log link);
 * gaussian (p1 = 1 / variance). */
#define FL_GBDT_OPS(X)              \
    X(LOGLOSS, logloss)             \
    X(FOCAL, focal)                 \
    X(SOFTMAX, softmax)             \
    X(SOFTMAX_FOCAL, softmax_focal) \
    X(HUBER, huber)                 \
    X(PSEUDO_HUBER, pseudo_huber)   \
    X(POISSON, poisson)             \
    X(GAUSSIAN, gaussian)
#define FL_ENUM_GBDT(ID, ...) FL_GBDT_##ID,
enum { FL_GBDT_OPS(FL_ENUM_GBDT) FL_N_GBDT };
#undef FL_ENUM_GBDT

/* The name of gradient-boosting op `op` ("logloss", ...), or NULL past the end. */
const char *fl_gbdt_name(int op);

/* One call of fl_gbdt.  x (n,) or, for the softmax ops, (n, K) in row-major or class-major
 * (K, n) memory; y (n,) labels; weight (n,) sample weights or NULL; class_weight (K,) or NULL
 * (softmax ops; each row's gradient and Hessian are multiplied by the weight of its label).
 * x, y, weight and class_weight have the working dtype; grad and hess too, or float32 when
 * out_f32 (float64 input only).  Per element: h = max(h * w * hess_factor, hess_min) (the
 * factor: softmax ops only; focal ops with bce_bound: h first raised to the Hessian of the
 * cross entropy weighted by the focal factor), then g and h times scale. */
typedef struct {
    int is_f64;
    int out_f32;                        /* float32 grad and hess from float64 input */
    int op;                             /* FL_GBDT_* */
    int64_t n, K;                       /* rows; classes (softmax ops, else 1) */
    int x_class_major, out_class_major; /* (K, n) memory instead of (n, K) */
    const void *x, *y, *weight, *class_weight;
    double p1, p2;
    double hess_factor, hess_min, scale;
    int bce_bound;
    void *grad, *hess;
    int *failed; /* out: a thread could not allocate its scratch tile */
} fl_gbdt_args;

/* Returns 0, or NaN when a label is invalid for the op (a class index that is not an integer
 * in [0, K), a focal label other than 0 / 1); the caller then locates it. */
double fl_gbdt(const fl_gbdt_args *a, int nthreads);

/* The vector math itself, elementwise, on the active SIMD path (for tests of its accuracy):
 * op is an FL_VM_* code (FL_VECTOR_MATH_OPS). */
void fl_vector_math(int op, int is_f64, int64_t n, const void *x, void *out);

/* Runtime configuration. */
void fl_init(void);
const char *fl_simd_name(void); /* "avx512", "avx2", "neon", "baseline" or "wide" */
int fl_set_simd(const char *name); /* force a path ("baseline", "avx2", "avx512", "neon", or the
                                      test-only "wide"); 0 on success, -1 if unknown or
                                      the CPU lacks it, -2 if this build does not have
                                      it ("wide" without FASTLOSS_BUILD_WIDE=1) */
const char *fl_simd_built(int i); /* name of the i-th path compiled into this build, or
                                     NULL past the end */
int fl_openmp_enabled(void);
int fl_max_threads(void);
/* the thread driver's contention guard: counters {multi-threaded calls, calls run on one
 * thread by the guard, trips, current back-off in ns}; fl_thread_guard resets it (0),
 * trips it as a contended call would (1), or switches it off until the next call (2) */
void fl_thread_stats(int64_t out[4]);
void fl_thread_guard(int mode);
void fl_set_steal_test(int on); /* test hook: thread 0 starts on the other threads'
                                    chunks (see fl_run) */

/* Checks class-index targets (each in [0, C) or == ignore_index) and returns the index of
 * the first bad one, or -1.  On success stores sum_i w[y_i] over non-ignored samples. */
int64_t fl_check_targets(const int64_t *target, int64_t n, int64_t C, int64_t ignore_index,
                         const void *weight, int is_f64, double *weight_total, int nthreads);

/* Internal: the argument block of the per-ISA target check behind fl_check_targets. */
typedef struct {
    const int64_t *target;
    int64_t C, ignore_index;
    const void *weight; /* (C,) in the working dtype, or NULL */
} fl_target_args;

/* Cross entropy / softmax focal loss.  Returns the (unnormalised) sum of per-sample losses. */
double fl_cross_entropy(const fl_ce_args *a, int nthreads);

/* NLL on log-probabilities (index targets). Same argument block, x = log-probabilities. */
double fl_nll(const fl_ce_args *a, int nthreads);

void fl_softmax(const fl_softmax_args *a, int nthreads);

/* Row statistics along the class axis of (N, C, S) scores (kernels/row_stats-inl.h).
 * FL_RANK: per sample (index n*S + s) with a target that is not ignore_index, whether the
 * target is among the top_k scores under the tie policy `ties` (a sample whose scores hold a
 * NaN never is); out_rows receives sample_weight times the hit (count_hits) or the miss,
 * 0 for ignored samples; the return value is their sum, *kept_weight the sum of the weights
 * of the samples not ignored, *first_bad the index of the first target outside [0, C) that
 * is not ignore_index (-1: none; the sums are then meaningless).  rank_out, if not NULL,
 * receives each sample's rank under the tie policy (0: the top score), -1 for ignored
 * samples and for samples with a NaN score.
 * FL_ENTROPY: per sample, H = -sum_c p_c log p_c of p = softmax over the class axis, times
 * inv_log_base, into out_rows; returns their sum; with grad, dH/dx times the per-sample
 * scale (grad_scale_rows, or grad_scale) into grad (which may be x). */
typedef struct {
    int is_f64;
    int op;                      /* FL_RANK or FL_ENTROPY */
    int64_t N, C, S;
    const void *x;               /* (N, C, S) scores (rank) or logits (entropy) */
    /* rank */
    const int64_t *target;       /* (N*S) class indices */
    int64_t ignore_index;
    int64_t top_k;               /* >= 1 */
    int ties;                    /* FL_TIES_ARGMAX, FL_TIES_SKLEARN or FL_TIES_PESSIMISTIC */
    int count_hits;              /* 1: hits (accuracy), 0: misses (error rate) */
    const double *sample_weight; /* (N*S) finite weights >= 0, or NULL (all 1) */
    int64_t *rank_out;           /* (N*S) or NULL */
    double *kept_weight;         /* out */
    int64_t *first_bad;          /* out */
    /* entropy */
    double inv_log_base;         /* 1 / log(base) (1: nats) */
    void *grad;                  /* (N, C, S) or NULL */
    const double *grad_scale_rows; /* (N*S) per-sample gradient multipliers, or NULL */
    double grad_scale;           /* uniform gradient multiplier when grad_scale_rows is NULL */
    /* both */
    void *out_rows;              /* (N*S) per-sample values (working dtype), or NULL */
} fl_row_args;

/* Runs row op a->op; returns the sum of the per-sample values (see fl_row_args). */
double fl_row_op(const fl_row_args *a, int nthreads);

/* fl_cross_entropy (index targets, already checked) with the FL_RANK op `r` (its rank_out)
 * over the same chunks, the scores read from memory once. */
double fl_cross_entropy_ranks(const fl_ce_args *a, const fl_row_args *r, int nthreads);

#endif
