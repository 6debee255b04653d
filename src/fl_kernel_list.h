/*
 * The single list of fastloss's kernels and op codes.  Everything that names an op is
 * generated from these X-macro lists: the C enums (fl_kernels.h), the per-ISA dispatch tables
 * (designated initializers, fl_table.h), the chunk functions of the generic elementwise
 * losses (kernels/ew_loop-inl.h) and the name strings that the Cython module reads at import
 * (fl_op_name), from which it builds its op dictionaries.  Op codes follow list order; nothing
 * else depends on it.
 *
 * Elementwise losses: X(ID, name, chunk).  ID gives the enum FL_<ID>, name the Python-visible
 * name and the kernel names (FN(ew_<name>), FN(<name>_chunk)).  chunk says how the chunk
 * function FN(<name>_chunk) is made:
 *   PLAIN   generated: FN(ew_<name>) in FN(ew_loop), no pre functions
 *   PRE0    generated: FN(ew_<name>) with FN(pre0_<name>)
 *   PRE01   generated: FN(ew_<name>) with FN(pre0_<name>) and FN(pre1_<name>)
 *   CUSTOM  hand-written in kernels/ew_loop-inl.h (specialised fast paths), or with its
 *           family's kernels (focal_l1: kernels/boxes-inl.h)
 *   PAIR    generated: FN(ew2_<name>), two differentiable inputs (fl_ew_args.grad2)
 * Adding a plain elementwise loss: FN(ew_<name>) (and its pre functions) in
 * kernels/ew_losses-inl.h, plus one line here.
 */
#ifndef FL_KERNEL_LIST_H
#define FL_KERNEL_LIST_H

#define FL_ELEMENTWISE_LOSSES(X)                  \
    X(BCE_LOGITS, bce_logits, CUSTOM)             \
    X(SIGMOID_FOCAL, sigmoid_focal, CUSTOM)       \
    X(BCE, bce, CUSTOM)                           \
    X(MSE, mse, PLAIN)                            \
    X(L1, l1, PLAIN)                              \
    X(SMOOTH_L1, smooth_l1, PLAIN)                \
    X(HUBER, huber, PLAIN)                        \
    X(KL_DIV, kl_div, PRE0)                       \
    X(KL_DIV_LOG_TARGET, kl_div_log_target, PRE0) \
    X(SOFT_MARGIN, soft_margin, PRE01)            \
    X(POISSON_NLL, poisson_nll, PRE0)             \
    X(POISSON_NLL_RATE, poisson_nll_rate, PLAIN)  \
    X(HINGE_EMBEDDING, hinge_embedding, PLAIN)    \
    X(MARGIN_RANKING, margin_ranking, PAIR)       \
    X(GAUSSIAN_NLL, gaussian_nll, PAIR)           \
    X(FOCAL_L1, focal_l1, CUSTOM)

/* Losses along a class axis, (N, C, d1..dk) inputs: X(ID, name), enum FL_<ID>. */
#define FL_CLASS_LOSSES(X)          \
    X(CROSS_ENTROPY, cross_entropy) \
    X(FOCAL, focal)                 \
    X(NLL, nll)

/* Row losses on rows of D features or C classes (kernels/embedding-inl.h, FN(<name>_rows)):
 * the embedding losses and the classification margin losses; and the box losses on rows of 4
 * coordinates (kernels/boxes-inl.h).  X(ID, name), enum FL_<ID>. */
#define FL_EMBEDDING_LOSSES(X)                        \
    X(COSINE_EMBEDDING, cosine_embedding)             \
    X(TRIPLET_MARGIN, triplet_margin)                 \
    X(MULTI_MARGIN, multi_margin)                     \
    X(MULTILABEL_MARGIN, multilabel_margin)           \
    X(MULTILABEL_SOFT_MARGIN, multilabel_soft_margin) \
    X(BOX_IOU, box_iou)                               \
    X(BOX_GIOU, box_giou)                             \
    X(BOX_DIOU, box_diou)                             \
    X(BOX_CIOU, box_ciou)                             \
    X(BOX_EIOU, box_eiou)                             \
    X(BOX_FOCAL_EIOU, box_focal_eiou)

/* Softmax-family ops along the class axis: X(ID, name), enum FL_<ID>. */
#define FL_SOFTMAX_OPS(X)       \
    X(LOG_SOFTMAX, log_softmax) \
    X(SOFTMAX, softmax)         \
    X(LOGSUMEXP, logsumexp)

/* Row statistics along the class axis (the metrics), kernels/row_stats-inl.h: X(ID, name),
 * enum FL_<ID>.  rank: the target's rank among its sample's scores (error rate, top-k
 * accuracy); entropy: Shannon entropy of softmax(x) and its gradient. */
#define FL_ROW_OPS(X) \
    X(RANK, rank)     \
    X(ENTROPY, entropy)

/* Tie policies of the rank op: X(ID, name), enum FL_TIES_<ID>.  Which classes scored equal to
 * the target rank above it: those of lower index (argmax: np.argmax's choice), of higher
 * index (sklearn: top_k_accuracy_score's order), or all (pessimistic). */
#define FL_TIE_POLICIES(X) \
    X(ARGMAX, argmax)      \
    X(SKLEARN, sklearn)    \
    X(PESSIMISTIC, pessimistic)

/* Reductions: X(ID, name), enum FL_REDUCTION_<ID>. */
#define FL_REDUCTIONS(X) \
    X(NONE, none)        \
    X(MEAN, mean)        \
    X(SUM, sum)

/* The kernels' vector math, exposed for accuracy tests (fl_vector_math): X(ID, name), enum
 * FL_VM_<ID>.  log1p_unit: argument in [0, 1] (softplus's); log1p_nonneg: argument >= 0. */
#define FL_VECTOR_MATH_OPS(X) \
    X(EXP, exp)               \
    X(LOG, log)               \
    X(LOG1P, log1p)           \
    X(LOG1P_UNIT, log1p_unit) \
    X(LOG1P_NONNEG, log1p_nonneg)

/* The lists themselves, for fl_op_name(family, op): X(FAMILY, name, list). */
#define FL_OP_FAMILIES(X)                              \
    X(ELEMENTWISE, elementwise, FL_ELEMENTWISE_LOSSES) \
    X(CLASS, class, FL_CLASS_LOSSES)                   \
    X(EMBEDDING, embedding, FL_EMBEDDING_LOSSES)       \
    X(SOFTMAX, softmax, FL_SOFTMAX_OPS)                \
    X(REDUCTION, reduction, FL_REDUCTIONS)             \
    X(VECTOR_MATH, vector_math, FL_VECTOR_MATH_OPS)    \
    X(ROW, row, FL_ROW_OPS)                            \
    X(TIES, ties, FL_TIE_POLICIES)

#endif
