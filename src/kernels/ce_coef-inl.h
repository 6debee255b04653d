/*
 * The class-axis losses' per-sample formulas, for one (dtype, ISA) instantiation:
 * FN(ce_index_coef), the one place where the cross-entropy / softmax focal loss math lives,
 * and FN(row_scale).  No include guard on purpose.
 *
 * Numerics shared by the class-axis kernels (class_rows-inl.h, class_tiles-inl.h):
 *  - Max shift: with m = max_c x_c every exponent is exp(x_c - m) <= 1, so 1e30-scale logits
 *    cannot overflow and the sum S = sum_c exp(x_c - m) is >= 1 (the max contributes 1).
 *    Exception: on AVX-512, the tiles of index-target losses without label smoothing (rows
 *    of up to FL_SMALL_C classes, and (N, C, d1..dk) inputs) whose logits are all small
 *    (|x| < 32 float, 256 double) are shifted by x_y instead, with no max pass
 *    (FN(ce_index_tiles_raw)).
 *  - -log p_c is formed as (m - x_c) + log S, in that bracketing: m - x_c is exact for nearby
 *    values and is the part that carries the information when logits share a huge offset.
 *  - For class-index targets the exp-sum is split into S = e_y + s_other, s_other summed over
 *    the classes c != y only.  Then 1 - p_y = s_other / S has no cancellation (focal loss
 *    needs it at p_y -> 1) and, when y is the arg-max (e_y == 1), -log p_y = log1p(s_other)
 *    keeps the tiny losses of confident, correct predictions instead of rounding them to 0.
 *  - NaN in a row reaches the exp-sum and makes that row (only) NaN; -inf logits give
 *    exp(-inf) = 0 exactly, so masked classes get probability 0 and gradient 0.
 *  - Sums over classes run in vector lanes of the working dtype and are flushed into double
 *    accumulators every FL_FLUSH vectors, so float32 rows of any length keep ~1e-7 relative
 *    error in S.
 *
 * One fused pass per row: sweep 1 reads the row from memory (max), sweep 2 re-reads it from
 * cache and writes exp(x - m) into the gradient buffer, sweep 3 rescales the gradient
 * buffer in cache.  For (N, C, d1..dk) inputs the same sweeps run over a tile of FL_LANES
 * consecutive spatial positions, which are contiguous, so no transposing copy is needed.
 */

/* The per-sample math of the index-target losses, for L samples at once (one per lane):
 * given dy = m - x_y, e_y = exp(-dy) (exactly as the sweep computed it), s_other =
 * sum_{c != y} exp(x_c - m), dsum = sum_c w_c (m - x_c) (only
 * with label smoothing), the target weight wy and the gradient scale gs, return the loss and
 * the coefficients of the gradient   g_c = A e_c - Bs w_c  (c != y),   g_y = Gy,
 * where e_c = exp(x_c - m).  This is the only place the cross-entropy / focal formulas live;
 * the row kernels call it with one lane used. */
typedef struct {
    VR loss, A, Bs, Gy, t;
} FN(ce_coef_t);

/* defer_log (a compile-time 0 or 1, only without class weights and focal term, where log S
 * enters the loss with coefficient 1): the loss is returned without its log S term, and t =
 * S - 1 for FN(logprod_add).  a_scale multiplies A: 1 (folded away) except in the unshifted
 * tiles, whose e_c are exp(x_c) and need a 1 / e_y.  It meets 1 / S before the gradient scale
 * and the loss factors do: there 1 / S can be as small as e^-64 / C (float32), and a tiny
 * gradient scale applied first would take A out of the normal range. */
FL_INLINE FN(ce_coef_t) FN(ce_index_coef)(const fl_ce_args *a, VR dy, VR e_y, VR s_other, VR dsum,
                                          VR wy, VR gs, VR a_scale, const int defer_log)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    FN(ce_coef_t) r;
    const VR S = s_other + e_y;
    const VR invS = one / S, invS_a = invS * a_scale;
    /* log S = log1p((e_y - 1) + s_other): when y holds the row max, e_y == 1 exactly and this
     * is log1p(s_other), which keeps the tiny loss of a confident, correct prediction */
    r.t = (e_y - one) + s_other;
    const VR logS = defer_log ? zero : FN(vlog1p_nonneg)(r.t);
    const VR nll = dy + logS;                 /* -log p_y, bracketed: offset first */
    const VR q = s_other * invS;              /* 1 - p_y, no cancellation */
    const VR p = e_y * invS;
    if (a->focal) {
        const R gamma = (R)a->gamma;
        VR f;                                 /* (1 - p)^gamma, 0^0 = 1 */
        if (gamma == 0) f = one;
        else if (gamma == 1) f = q;
        else if (gamma == 2) f = q * q;
        else f = FN(vselect)(q == 0, zero, FN(vexp)(gamma * FN(vlog)(q)));
        /* d/dx_j of -w q^g log p = K (p_j - [j == y]) with K = w q^g (1 + g p (-log p) / q);
         * (-log p) / q -> 1 as q -> 0, so q^(g-1) is never formed */
        const VR ratio = FN(vselect)(q > 0, nll / q, one);
        /* p (-log p) -> 0 as p -> 0 (masked target: nll = inf, p = 0) */
        const VR p_ratio = FN(vselect)(p == 0, zero, p * ratio);
        const VR K = wy * f * (one + gamma * p_ratio);
        r.loss = FN(vselect)(f == 0, zero, wy * f * nll);
        r.A = gs * K * invS_a;
        r.Bs = zero;
        r.Gy = -gs * K * q;
    } else {
        const R eps = (R)a->smoothing, epsC = (R)(a->smoothing / (double)a->C);
        const R W = (R)a->weight_sum;
        r.loss = (1 - eps) * wy * nll;
        r.A = gs * ((1 - eps) * wy + epsC * W) * invS_a;
        r.Bs = gs * epsC;
        r.Gy = -gs * (1 - eps) * wy * q;
        if (eps > 0) {
            /* sum_c w_c (-log p_c) = sum_c w_c (m - x_c) + W log S */
            r.loss += epsC * (dsum + W * logS);
            r.Gy += gs * epsC * (W * p - wy);
        }
    }
    return r;
}

static inline double FN(row_scale)(const fl_ce_args *a, int64_t i)
{
    return a->grad_scale_rows ? a->grad_scale_rows[i] : a->grad_scale;
}
