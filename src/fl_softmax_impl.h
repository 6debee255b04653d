/*
 * Softmax-family kernels for one (dtype, ISA) instantiation (see fl_vecmath_impl.h for the
 * template parameters).  No include guard on purpose.
 *
 * Numerics shared by every kernel here:
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

#define VR FL_VR
#define VI FL_VI
#define VX FL_VX
#define R FL_REAL
#define L FL_LANES

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
FL_INLINE FN(ce_coef_t) FN(ce_index_coef)(const fl_ce_args *a, VR dy, VR e_y, VR s_other,
                                                VR dsum, VR wy, VR gs, VR a_scale,
                                                const int defer_log)
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

/* ---------------------------------------------------------------- class axis last (S == 1) */

/* The exp sweep of a row is compute-bound and runs from cache; meanwhile the next row is
 * requested from memory (one prefetch per cache line), so the memory-bound max sweep of the
 * next row finds it on chip.  (sizeof(R) * L == 64 on AVX-512: one vector is one line.) */
#ifndef FL_PREFETCH_NEXT_ROW
#define FL_PREFETCH_NEXT_ROW(p, C)                                                      \
    do {                                                                                \
        if (((uintptr_t)(p) & 63) < sizeof(R) * L) __builtin_prefetch((p) + (C), 0, 3);  \
    } while (0)
#endif

/* the max ignores NaN; logsumexp's shortcut for infinite maxima must not */
static int FN(row_has_nan)(const R *x, int64_t C)
{
    for (int64_t c = 0; c < C; c++)
        if (x[c] != x[c]) return 1;
    return 0;
}

static inline R FN(row_max)(const R *x, int64_t C)
{
    /* four independent accumulators: the max is a latency chain otherwise */
    const VR ninf = FN(vsplat)((R)-__builtin_inf());
    VR m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
    int64_t c = 0;
    for (; c + 4 * L <= C; c += 4 * L) {
        m0 = FN(vmax)(m0, FN(vload)(x + c));
        m1 = FN(vmax)(m1, FN(vload)(x + c + L));
        m2 = FN(vmax)(m2, FN(vload)(x + c + 2 * L));
        m3 = FN(vmax)(m3, FN(vload)(x + c + 3 * L));
    }
    for (; c + L <= C; c += L) m0 = FN(vmax)(m0, FN(vload)(x + c));
    if (c < C) m1 = FN(vmax)(m1, FN(vload_part)(x + c, C - c, (R)-__builtin_inf()));
    return FN(hmax)(FN(vmax)(FN(vmax)(m0, m1), FN(vmax)(m2, m3)));
}

FL_INLINE void FN(ce_index_rows_)(const fl_ce_args *a, int64_t r0, int64_t r1, double *partial,
                                  const int with_grad)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const int smooth = !a->focal && a->smoothing > 0;
    const VX iota = FN(viota)();
    double total = 0.0;
    /* the max of row r + 1 is taken during the exp sweep of row r (its loads overlap that
     * compute-bound sweep; the next exp sweep then reads the row from L2) */
    int have_next = 0;
    R m_next = 0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->x + r * C;
        R *g = with_grad ? (R *)a->grad + r * C : NULL;
        const int64_t y = a->target[r];
        const int had_max = have_next;
        have_next = 0;
        if (y == a->ignore_index) {
            if (g) memset(g, 0, (size_t)C * sizeof(R));
            if (loss_rows) loss_rows[r] = 0;
            continue;
        }
        const R xy = x[y]; /* read before g (which may alias x) is written */
        const double wy = w ? (double)w[y] : 1.0;
        const R m = had_max ? m_next : FN(row_max)(x, C);
        const VR vm = FN(vsplat)(m);
        /* fuse: the next row is in this chunk.  Otherwise a chunk's last row requests the next
         * chunk's first row (usually next on this thread: static schedule) */
        const int fuse = r + 1 < r1, fetch = !fuse && r + 1 < a->N;
        const R *xn = x + C; /* read only when fuse */
        VR mn = FN(vsplat)((R)-__builtin_inf());
        VR vs = {0}, vd = {0};
        double s_other = 0.0, dsum = 0.0;
        int64_t c = 0;
        int blk = 0;
        const int64_t yblock = y - y % L; /* the one block where the target is excluded */
        for (; c + L <= C; c += L) {
            const VR xv = FN(vload)(x + c);
            if (fuse) mn = FN(vmax)(mn, FN(vload)(xn + c));
            else if (fetch) FL_PREFETCH_NEXT_ROW(x + c, C);
            const VR d = vm - xv; /* >= 0, +inf for masked logits */
            /* loss only: the exps just feed S, which holds an exact 1 */
            const VR e = g ? FN(vexp_nonpos)(xv - vm) : FN(vexp_nonpos_term)(xv - vm);
            if (g) FN(vstore)(g + c, e);
            if (__builtin_expect(c == yblock, 0)) vs += FN(vselect)(iota == (FL_XLANE)(y - c), FN(vsplat)(0), e);
            else vs += e;
            if (smooth) vd += w ? FN(vload)(w + c) * d : d;
            if (++blk == FL_FLUSH) {
                s_other += FN(hsum)(vs);
                dsum += FN(hsum)(vd);
                vs = FN(vsplat)(0);
                vd = FN(vsplat)(0);
                blk = 0;
            }
        }
        if (c < C) {
            const int64_t n = C - c;
            const VI valid = iota < (FL_XLANE)n;
            const VR d = FN(vselect)(valid, vm - FN(vload_part)(x + c, n, 0), FN(vsplat)(0));
            const VR e = g ? FN(vexp_nonpos)(-d) : FN(vexp_nonpos_term)(-d);
            if (fuse) mn = FN(vmax)(mn, FN(vload_part)(xn + c, n, (R)-__builtin_inf()));
            if (g) FN(vstore_part)(g + c, e, n);
            vs += FN(vselect)(valid & (iota != (FL_XLANE)(y - c)), e, FN(vsplat)(0));
            if (smooth) vd += w ? FN(vload_part)(w + c, n, 0) * d : d;
        }
        if (fuse) {
            have_next = 1;
            m_next = FN(hmax)(mn);
        }
        s_other += FN(hsum)(vs);
        dsum += FN(hsum)(vd);
        const VR dyv = FN(vsplat)(m - xy);
        const FN(ce_coef_t) k = FN(ce_index_coef)(
            a, dyv, FN(vexp_nonpos)(-dyv), FN(vsplat)((R)s_other), FN(vsplat)((R)dsum),
            FN(vsplat)((R)wy), FN(vsplat)((R)FN(row_scale)(a, r)), FN(vsplat)((R)1), 0);
        total += (double)k.loss[0];
        if (loss_rows) loss_rows[r] = k.loss[0];
        if (!g) continue;
        const R A = k.A[0], Bs = k.Bs[0];
        if (Bs != 0) {
            for (c = 0; c + L <= C; c += L) {
                const VR wc = w ? FN(vload)(w + c) : FN(vsplat)(1);
                FN(vstore)(g + c, FN(vload)(g + c) * A - wc * Bs);
            }
            for (; c < C; c++) g[c] = g[c] * A - (w ? w[c] : (R)1) * Bs;
        } else {
            for (c = 0; c + L <= C; c += L) FN(vstore)(g + c, FN(vload)(g + c) * A);
            for (; c < C; c++) g[c] = g[c] * A;
        }
        g[y] = k.Gy[0];
    }
    *partial = total;
}

static void FN(ce_index_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    if (a->grad) FN(ce_index_rows_)(a, r0, r1, partial, 1);
    else FN(ce_index_rows_)(a, r0, r1, partial, 0);
}

static void FN(ce_prob_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const R keep = (R)(1.0 - a->smoothing), add = (R)(a->smoothing / (double)C);
    const VX iota = FN(viota)();
    const VR zero = FN(vsplat)(0);
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->x + r * C;
        const R *t = (const R *)a->target_prob + r * C;
        R *g = a->grad ? (R *)a->grad + r * C : NULL;
        const R m = FN(row_max)(x, C);
        const VR vm = FN(vsplat)(m);
        VR vs = zero, vT = zero, vD = zero;
        double S = 0.0, T = 0.0, D = 0.0;
        int64_t c = 0;
        int blk = 0;
        for (; c < C; c += L) {
            const int64_t n = C - c < L ? C - c : L;
            const VI valid = iota < (FL_XLANE)n;
            const VR xv = n == L ? FN(vload)(x + c) : FN(vload_part)(x + c, n, m);
            if (r + 1 < a->N) {
                FL_PREFETCH_NEXT_ROW(x + c, C);
                FL_PREFETCH_NEXT_ROW(t + c, C);
            }
            const VR tv = n == L ? FN(vload)(t + c) : FN(vload_part)(t + c, n, 0);
            const VR wv = w ? (n == L ? FN(vload)(w + c) : FN(vload_part)(w + c, n, 0)) : FN(vsplat)(1);
            const VR d = vm - xv;
            const VR e = FN(vselect)(valid, FN(vexp_nonpos)(xv - vm), zero);
            if (g) FN(vstore_part)(g + c, e, n);
            const VR tp = tv * keep + add;   /* smoothed target */
            const VR wt = FN(vselect)(valid, wv * tp, zero);
            vs += e;
            vT += wt;
            /* a zero target contributes 0 even where -log p = inf (masked logit) */
            vD += FN(vselect)(wt == 0, zero, wt * d); /* 0 * inf: a zero target ignores -inf */
            if (++blk == FL_FLUSH) {
                S += FN(hsum)(vs); T += FN(hsum)(vT); D += FN(hsum)(vD);
                vs = zero; vT = zero; vD = zero;
                blk = 0;
            }
        }
        S += FN(hsum)(vs); T += FN(hsum)(vT); D += FN(hsum)(vD);
        const double loss = T == 0 ? D : D + T * log(S); /* all-zero target: 0, as per class */
        total += loss;
        if (loss_rows) loss_rows[r] = (R)loss;
        if (!g) continue;
        /* g_c = gs (T p_c - w_c t'_c) */
        const double gs = FN(row_scale)(a, r);
        const R A = (R)(gs * T / S), Bt = (R)gs;
        for (c = 0; c + L <= C; c += L) {
            const VR wv = w ? FN(vload)(w + c) : FN(vsplat)(1);
            const VR tp = FN(vload)(t + c) * keep + add;
            FN(vstore)(g + c, FN(vload)(g + c) * A - wv * tp * Bt);
        }
        for (; c < C; c++) g[c] = g[c] * A - (w ? w[c] : (R)1) * (t[c] * keep + add) * Bt;
    }
    *partial = total;
}

static void FN(softmax_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_softmax_args *a = (const fl_softmax_args *)args;
    const int64_t C = a->C;
    const VX iota = FN(viota)();
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->x + r * C;
        const R m = FN(row_max)(x, C);
        if (a->op == FL_LOGSUMEXP && (m == (R)__builtin_inf() || m == (R)-__builtin_inf()) &&
            !FN(row_has_nan)(x, C)) {
            ((R *)a->out)[r] = m; /* all -inf: -inf; any +inf: +inf (like torch.logsumexp) */
            continue;
        }
        R *o = a->op == FL_LOGSUMEXP ? NULL : (R *)a->out + r * C;
        const VR vm = FN(vsplat)(m);
        VR vs = FN(vsplat)(0);
        double S = 0.0;
        int64_t c = 0;
        int blk = 0;
        for (; c < C; c += L) {
            const int64_t n = C - c < L ? C - c : L;
            if (r + 1 < a->N) FL_PREFETCH_NEXT_ROW(x + c, C);
            const VR xv = n == L ? FN(vload)(x + c) : FN(vload_part)(x + c, n, m);
            VR e = FN(vexp_nonpos)(xv - vm);
            e = FN(vselect)(iota < (FL_XLANE)n, e, FN(vsplat)(0));
            if (a->op == FL_SOFTMAX) FN(vstore_part)(o + c, e, n);
            vs += e;
            if (++blk == FL_FLUSH) { S += FN(hsum)(vs); vs = FN(vsplat)(0); blk = 0; }
        }
        S += FN(hsum)(vs);
        const double logS = log(S);
        if (a->op == FL_LOGSUMEXP) {
            ((R *)a->out)[r] = (R)((double)m + logS);
        } else if (a->op == FL_SOFTMAX) {
            const R inv = (R)(1.0 / S);
            for (c = 0; c + L <= C; c += L) FN(vstore)(o + c, FN(vload)(o + c) * inv);
            for (; c < C; c++) o[c] *= inv;
        } else {
            const R ls = (R)logS;
            for (c = 0; c + L <= C; c += L) FN(vstore)(o + c, (FN(vload)(x + c) - m) - ls);
            for (; c < C; c++) o[c] = (x[c] - m) - ls;
        }
    }
    (void)partial;
}

/* ---------------------------------------------------------------- tiles of L samples */
/* A tile holds L samples side by side: element (c, l) at x[c * xs + l].  Two sources:
 *  - (N, C, S) inputs: L consecutive positions s of one n, read in place (xs = S); the last
 *    tile of a row of S may be partial (nl < L lanes valid);
 *  - (N, C) inputs with small C: L rows transposed into an L1-resident scratch (xs = L),
 *    where a per-row kernel would pay its per-row overhead on only a few classes.
 * Every sweep is then a vector operation across samples, and the per-sample math
 * (FN(ce_index_coef), logs, reciprocals) runs once per L samples. */

#define FL_TILE_LOAD(p) (full ? FN(vload)(p) : FN(vload_part)((p), nl, 0))
#define FL_TILE_STORE(p, v)                               \
    do {                                                  \
        if (full) FN(vstore)((p), (v));                   \
        else FN(vstore_part)((p), (v), nl);               \
    } while (0)
/* two-level summation: vector partial sums of FL_FLUSH classes added into a running vector */
#define FL_FLUSH_SUM(acc, part) do { (acc) += (part); (part) = FN(vsplat)(0); } while (0)

static inline VR FN(tile_max)(const R *x, int64_t xs, int64_t C, int full, int64_t nl)
{
    VR m0 = FN(vsplat)((R)-__builtin_inf()), m1 = m0;
    int64_t c = 0;
    for (; c + 2 <= C; c += 2) {
        m0 = FN(vmax)(m0, FL_TILE_LOAD(x + c * xs));
        m1 = FN(vmax)(m1, FL_TILE_LOAD(x + (c + 1) * xs));
    }
    if (c < C) m0 = FN(vmax)(m0, FL_TILE_LOAD(x + c * xs));
    /* a lane that is NaN in one accumulator only must not matter: both ignore NaN */
    return FN(vmax)(m0, m1);
}

/* The end of FN(ce_index_tiles) for the per-lane coefficients k[j]: the gradient pass over
 * the exps that the sweep stored in g (if any), g_c = A e_c - Bs w_c (c != y), Gy at y, 0 in
 * skipped lanes; and the losses (and t) of the non-skipped lanes. */
FL_INLINE void FN(ce_tiles_finish)(const fl_ce_args *a, R *const *gp, int64_t xs, int full,
                                   int64_t nl, const VX *yv, const VI *skip,
                                   const FN(ce_coef_t) *k, VR *loss, VR *t, const int NT)
{
    const R *w = (const R *)a->weight;
    const int smooth = !a->focal && a->smoothing > 0;
    const VR zero = FN(vsplat)(0);
    for (int64_t c = 0; gp[0] && c < a->C; c++) {
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++) {
            VR gv = FL_TILE_LOAD(gp[j] + c * xs) * k[j].A;
            if (smooth) gv -= k[j].Bs * (w ? w[c] : (R)1);
#ifdef FL_LANE_EQ
            gv = FL_KMOV(gv, FL_LANE_EQ(yv[j], c), k[j].Gy);
#else
            gv = FN(vselect)(yv[j] == (FL_XLANE)c, k[j].Gy, gv);
#endif
            FL_TILE_STORE(gp[j] + c * xs, FN(vselect)(skip[j], zero, gv));
        }
    }
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++) {
        loss[j] = FN(vselect)(skip[j], zero, k[j].loss);
        if (t) t[j] = FN(vselect)(skip[j], zero, k[j].t);
    }
}

#if defined(FL_ABSMAX) && defined(FL_PERMUTE2)
/* Index targets without label smoothing (AVX-512): while every |x| of the tiles is below
 * FL_RAW_BOUND the exponentials need no shift.  e_c = exp(x_c) is then a normal number, and
 * R = sum_{c != y} e_c / e_y = sum_{c != y} exp(x_c - x_y) is finite: the tile math shifted by
 * x_y instead of the max, i.e. dy = 0, e_y = 1, s_other = R, and log1p(R) keeps a confident
 * prediction's tiny loss as the shifted math does; the gradient's A takes a 1 / e_y.  This
 * saves the max pass and, per element, the subtraction and the range test or clamp (float64
 * 1048576 x 10, 2 threads: loss only 3.96 -> 3.67 ms, with the gradient 10.70 -> 10.21 ms).
 * The table exp reduces x in one step with ln2/N rounded, so it returns
 * exp(x (1 - d)) (d = that rounding's relative error, 3.3e-17 double, 2.7e-9 float, below
 * half an ulp) to about an ulp: e_c / e_y is exp((x_c - x_y)(1 - d)), the error of a
 * difference's rounding (half an ulp of x_c - x_y) that the shifted math has in x_c - m.
 * The bound is checked by vrange (NaN ignored: NaN lanes make NaN losses here as in the
 * shifted math), in the sweep for the loss only and before it with a gradient; returns 0,
 * having written nothing, when a tile fails it. */
#if FL_IS_F32
#define FL_RAW_BOUND 32.0f /* e^-32 is normal; R <= C e^64 is finite for C < 5e10 */
#else
#define FL_RAW_BOUND 256.0 /* e^-256 is normal; R <= C e^512 */
#endif
/* after a failed attempt the next FL_RAW_WAIT tile groups of the chunk go straight to the
 * shifted math, so inputs whose logits exceed the bound redo one group in FL_RAW_WAIT + 1 */
FL_INLINE int FN(ce_index_tiles_raw)(const fl_ce_args *a, const R *const *xp, R *const *gp,
                                     int64_t xs, int full, int64_t nl, const VX *yv,
                                     const VI *skip, const VR *gs, VR *loss, VR *t, const int NT)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    const int with_g = gp[0] != NULL;
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    VR big[2], vs[2], s_other[2], wy[2], ey[2];
    /* every lane of both tiles' max |x| below the bound */
#define FL_RAW_IN_BOUND()                                                                  \
    (FL_ANY_LT(FL_ABSMAX(big[0], big[NT - 1]), FN(vsplat)(FL_RAW_BOUND)) ==                \
     (FL_KMASK)((1ull << L) - 1))
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++) {
        big[j] = vs[j] = s_other[j] = zero;
        wy[j] = ey[j] = one; /* lanes of no class: ignored and padding */
    }
    if (with_g) { /* the bound first: the sweep stores into g, which may be x */
        for (int64_t c = 0; c < C; c++)
#pragma GCC unroll 2
            for (int j = 0; j < NT; j++) big[j] = FL_ABSMAX(big[j], FL_TILE_LOAD(xp[j] + c * xs));
        if (!FL_RAW_IN_BOUND()) return 0;
    }
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++) {
            const VR xc = FL_TILE_LOAD(xp[j] + c * xs);
            if (!with_g) big[j] = FL_ABSMAX(big[j], xc);
            const VR e = FN(vexp_table_impl)(xc, 1);
            if (with_g) FL_TILE_STORE(gp[j] + c * xs, e);
            const FL_KMASK is_y = FL_LANE_EQ(yv[j], c);
            ey[j] = FL_KMOV(ey[j], is_y, e);
            if (w) wy[j] = FL_KMOV(wy[j], is_y, FN(vsplat)(w[c]));
            vs[j] = FL_KADD(vs[j], (FL_KMASK)~is_y, vs[j], e);
        }
        if (++blk == FL_FLUSH) {
            for (int j = 0; j < NT; j++) FL_FLUSH_SUM(s_other[j], vs[j]);
            blk = 0;
        }
    }
    if (!with_g && !FL_RAW_IN_BOUND()) return 0;
#undef FL_RAW_IN_BOUND
    FN(ce_coef_t) k[2];
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++) {
        const VR inv_ey = one / ey[j];
        /* the stored e_c are exp(x_c), not exp(x_c - x_y): A takes the 1 / e_y */
        k[j] = FN(ce_index_coef)(a, zero, one, (s_other[j] + vs[j]) * inv_ey, zero, wy[j], gs[j],
                                 inv_ey, t != NULL);
    }
    FN(ce_tiles_finish)(a, gp, xs, full, nl, yv, skip, k, loss, t, NT);
    return 1;
}
#endif

/* With the gradient, A = gs K / (e_y S) = gs K / V with V = e_y + s_other in [e^-bound,
 * C e^bound]: where the shifted math's 1 / S lies in [1 / C, 1], this one spans e^(2 bound)
 * more, so a gradient scale gs (times K <= w (1 + gamma)) near either end of the range could
 * take A out of it.  Those calls (and per-sample scales, not scanned) keep the shifted math:
 * the initial FL_RAW_WAIT countdown of a chunk, INT_MAX for them (never reaches 0). */
static inline int FN(raw_wait_start)(const fl_ce_args *a, int with_grad)
{
#ifndef FL_RAW_BOUND
    (void)a; (void)with_grad;
    return 0;
#else
    if (!with_grad) return 0;
    if (a->grad_scale_rows) return INT_MAX;
    if (a->grad_scale == 0) return 0; /* every gradient entry is an exact 0 */
    double wmax = 1, wmin = 1;
    if (a->weight) {
        wmax = 0;
        wmin = HUGE_VAL;
        for (int64_t c = 0; c < a->C; c++) {
            const double w = fabs((double)((const R *)a->weight)[c]);
            if (w > wmax) wmax = w;
            if (w > 0 && w < wmin) wmin = w;
        }
    }
    const double g = fabs(a->grad_scale), e = exp((double)FL_RAW_BOUND);
    const double hi = g * wmax * (1 + (a->focal ? a->gamma : 0)) * e;
    const double lo = g * wmin / (e * (double)a->C);
    const double big = FL_IS_F32 ? FLT_MAX : DBL_MAX, small = FL_IS_F32 ? FLT_MIN : DBL_MIN;
    return hi < big / 16 && lo > small ? 0 : INT_MAX;
#endif
}

/* Index targets, NT tiles (a compile-time 1 or 2) in one class sweep: one tile's chain of
 * max -> exp -> sums -> per-lane formula is longer than the out-of-order window overlaps, and
 * two independent chains side by side keep the pipes busy (1048576 x 10 float32 loss only,
 * one core: 6.9 -> 6.0 ms).  Per tile j: x[j] (class c of lane l at x[j][c * xs + l]), g[j]
 * (or NULL), yv[j] target class per lane (-1: none), skip[j] lanes to zero (ignored /
 * padding), gs[j] gradient scale per lane; writes the per-lane losses to loss[j].  With t
 * (not NULL; no weights, no focal term) loss[j] leaves out log S and t[j] receives S - 1
 * (0 in skipped lanes) for FN(logprod_add).  raw_wait: the caller's FL_RAW_WAIT countdown,
 * 0 at the start of a chunk. */
FL_INLINE void FN(ce_index_tiles)(const fl_ce_args *a, const R *const *x, int64_t xs,
                                  R *const *g, int full, int64_t nl, const VX *yv,
                                  const VI *skip, const VR *gs, VR *loss, VR *t, int *raw_wait,
                                  const int NT)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    const int smooth = !a->focal && a->smoothing > 0;
    const VR zero = FN(vsplat)(0);
    const int with_g = g[0] != NULL; /* all tiles or none */
    const R *xp[2] = {x[0], x[NT - 1]};
    R *gp[2] = {g[0], g[NT - 1]};
#if defined(FL_ABSMAX) && defined(FL_PERMUTE2)
    if (!smooth) {
        if (*raw_wait > 0) --*raw_wait;
        else if (FN(ce_index_tiles_raw)(a, xp, gp, xs, full, nl, yv, skip, gs, loss, t, NT)) return;
        else *raw_wait = FL_RAW_WAIT;
    }
#else
    (void)raw_wait;
#endif
    VR vm[2], vs[2], vd[2], s_other[2], dsum[2], xy[2], wy[2], ey[2];
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++) {
        vm[j] = FN(tile_max)(xp[j], xs, C, full, nl);
        vs[j] = vd[j] = s_other[j] = dsum[j] = xy[j] = zero;
        /* x and weight at the target, picked up in the class sweep (lanes that match no
         * class, i.e. ignored and padding lanes, keep 0 and 1): no per-lane gather, and x_y
         * is read before the gradient (which may alias x) overwrites it */
        wy[j] = ey[j] = FN(vsplat)((R)1);
    }
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++) {
            const VR xc = FL_TILE_LOAD(xp[j] + c * xs);
            /* without a gradient the exps only feed S, which holds an exact 1 */
            const VR e = with_g ? FN(vexp_nonpos)(xc - vm[j]) : FN(vexp_nonpos_term)(xc - vm[j]);
            if (with_g) FL_TILE_STORE(gp[j] + c * xs, e);
#ifdef FL_LANE_EQ
            const FL_KMASK is_y = FL_LANE_EQ(yv[j], c);
            xy[j] = FL_KMOV(xy[j], is_y, xc);
            ey[j] = FL_KMOV(ey[j], is_y, e); /* exp(x_y - m): no second exp per tile */
            if (w) wy[j] = FL_KMOV(wy[j], is_y, FN(vsplat)(w[c]));
            vs[j] = FL_KADD(vs[j], (FL_KMASK)~is_y, vs[j], e);
#else
            const VI is_y = yv[j] == (FL_XLANE)c;
            xy[j] = FN(vselect)(is_y, xc, xy[j]);
            ey[j] = FN(vselect)(is_y, e, ey[j]);
            if (w) wy[j] = FN(vselect)(is_y, FN(vsplat)(w[c]), wy[j]);
            vs[j] += FN(vselect)(is_y, zero, e);
#endif
            if (smooth) vd[j] += w ? (vm[j] - xc) * w[c] : vm[j] - xc;
        }
        if (++blk == FL_FLUSH) {
            for (int j = 0; j < NT; j++) {
                FL_FLUSH_SUM(s_other[j], vs[j]);
                FL_FLUSH_SUM(dsum[j], vd[j]);
            }
            blk = 0;
        }
    }
    FN(ce_coef_t) k[2];
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++)
        k[j] = FN(ce_index_coef)(a, vm[j] - xy[j], ey[j], s_other[j] + vs[j], dsum[j] + vd[j],
                                 wy[j], gs[j], FN(vsplat)((R)1), t != NULL);
    FN(ce_tiles_finish)(a, gp, xs, full, nl, yv, skip, k, loss, t, NT);
}

/* One tile of FN(ce_index_tiles); returns the per-lane loss. */
FL_INLINE VR FN(ce_index_tile)(const fl_ce_args *a, const R *x, int64_t xs, R *g, int full,
                               int64_t nl, VX yv, VI skip, VR gs, VR *t, int *raw_wait)
{
    VR loss;
    FN(ce_index_tiles)(a, &x, xs, &g, full, nl, &yv, &skip, &gs, &loss, t, raw_wait, 1);
    return loss;
}

/* Probability targets t (same tile layout as x).  Returns the per-lane loss. */
static inline VR FN(ce_prob_tile)(const fl_ce_args *a, const R *x, const R *t, int64_t xs, R *g,
                                  int full, int64_t nl, VR gs)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    const R keep = (R)(1.0 - a->smoothing), add = (R)(a->smoothing / (double)C);
    const VR zero = FN(vsplat)(0);
    const VR vm = FN(tile_max)(x, xs, C, full, nl);
    VR vs = zero, vT = zero, vD = zero, S = zero, T = zero, D = zero;
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
        const VR xc = FL_TILE_LOAD(x + c * xs);
        const VR d = vm - xc;
        const VR e = FN(vexp_nonpos)(xc - vm);
        if (g) FL_TILE_STORE(g + c * xs, e);
        const VR tp = FL_TILE_LOAD(t + c * xs) * keep + add;
        const VR wt = w ? tp * w[c] : tp;
        vs += e;
        vT += wt;
        vD += FN(vselect)(wt == 0, zero, wt * d); /* 0 * inf: a zero target ignores -inf */
        if (++blk == FL_FLUSH) {
            FL_FLUSH_SUM(S, vs); FL_FLUSH_SUM(T, vT); FL_FLUSH_SUM(D, vD);
            blk = 0;
        }
    }
    S += vs; T += vT; D += vD;
    if (g) {
        const VR A = gs * T / S;
        for (int64_t c = 0; c < C; c++) {
            const VR tp = FL_TILE_LOAD(t + c * xs) * keep + add;
            const VR wt = w ? tp * w[c] : tp;
            FL_TILE_STORE(g + c * xs, FL_TILE_LOAD(g + c * xs) * A - wt * gs);
        }
    }
    /* an all-zero target row gives 0 (each class term is 0), even if S is NaN */
    return D + T * FN(vlog)(FN(vselect)(T == 0, FN(vsplat)((R)1), S));
}

/* log_softmax / softmax over the tile's classes, or logsumexp into out[l]. */
static inline void FN(softmax_tile)(int op, const R *x, int64_t xs, R *o, int64_t C, int full,
                                    int64_t nl)
{
    const VR vm = FN(tile_max)(x, xs, C, full, nl);
    VR vs = FN(vsplat)(0), S = FN(vsplat)(0);
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
        const VR e = FN(vexp_nonpos)(FL_TILE_LOAD(x + c * xs) - vm);
        if (op == FL_SOFTMAX) FL_TILE_STORE(o + c * xs, e);
        vs += e;
        if (++blk == FL_FLUSH) { FL_FLUSH_SUM(S, vs); blk = 0; }
    }
    S += vs;
    const VR logS = FN(vlog)(S);
    if (op == FL_LOGSUMEXP) {
        const VR inf = FN(vsplat)((R)__builtin_inf());
        /* all -inf: -inf; any +inf: +inf (like torch.logsumexp), unless the lane holds a NaN
         * (the max skips NaN; vm + logS is NaN in these lanes) */
        VI shortcut = (vm == inf) | (vm == -inf);
        if (FN(vany)(shortcut))
            for (int64_t c = 0; c < C; c++) {
                const VR xc = FL_TILE_LOAD(x + c * xs);
                shortcut &= xc == xc;
            }
        FL_TILE_STORE(o, FN(vselect)(shortcut, vm, vm + logS));
    } else if (op == FL_SOFTMAX) {
        const VR inv = FN(vsplat)((R)1) / S;
        for (int64_t c = 0; c < C; c++) FL_TILE_STORE(o + c * xs, FL_TILE_LOAD(o + c * xs) * inv);
    } else {
        for (int64_t c = 0; c < C; c++)
            FL_TILE_STORE(o + c * xs, (FL_TILE_LOAD(x + c * xs) - vm) - logS);
    }
}

#ifdef FL_SHUF128
/* v[0..L-1] := its transpose, in registers; only v[0..need-1] are formed (the rest are left
 * unspecified).  Interleaves inside 128-bit lanes first (elements, then 64-bit pairs for
 * float), after which u[G q + m] holds in its 128-bit lane k the column G k + m of rows
 * G q .. G q + G - 1 (G = 128-bit lane width in elements); then a 4 x 4 transpose of whole
 * 128-bit lanes per m.  Zen 4 runs the in-lane shuffles beside the FMAs, whereas a
 * two-source lane-crossing permute takes an FMA slot: 64 of those for 16 x 16 floats were
 * a fifth of the small-C loss time; this network has 32 lane-crossing shuffles (16 for
 * 8 x 8 doubles) and skips the ones whose outputs are not needed. */
FL_INLINE void FN(transpose_regs)(VR *v, int need)
{
#if FL_IS_F32
    enum { G = 4 };
    VR t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        u[4 * q] = FL_UNPACKLO64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = FL_UNPACKHI64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = FL_UNPACKLO64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = FL_UNPACKHI64(t[4 * q + 1], t[4 * q + 3]);
    }
#else
    enum { G = 2 };
    VR u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        u[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#endif
    /* 0x88 picks 128-bit lanes (0, 2) of a and of b, 0xdd lanes (1, 3) */
#pragma GCC unroll 4
    for (int m = 0; m < G; m++) {
        if (m >= need) break;
        const VR a = u[m], b = u[G + m], c = u[2 * G + m], d = u[3 * G + m];
        const VR e0 = FL_SHUF128(a, b, 0x88), f0 = FL_SHUF128(c, d, 0x88);
        v[m] = FL_SHUF128(e0, f0, 0x88);
        if (2 * G + m < need) v[2 * G + m] = FL_SHUF128(e0, f0, 0xdd);
        if (G + m < need) {
            const VR e1 = FL_SHUF128(a, b, 0xdd), f1 = FL_SHUF128(c, d, 0xdd);
            v[G + m] = FL_SHUF128(e1, f1, 0x88);
            if (3 * G + m < need) v[3 * G + m] = FL_SHUF128(e1, f1, 0xdd);
        }
    }
}
#endif

/* dst[c * L + l] = src[l * src_stride + c] for l < nl (padding lanes get 0), c < C. */
static inline void FN(tile_transpose_in)(R *restrict dst, const R *restrict src, int64_t src_stride,
                                         int64_t C, int64_t nl)
{
#ifdef FL_SHUF128
    /* full tiles: blocks of L classes, each row read by one masked load (no access past
     * column C) */
    if (nl == L) {
        for (int64_t c0 = 0; c0 < C; c0 += L) {
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) v[l] = FL_MASK_LOAD(src + l * src_stride + c0, w);
            FN(transpose_regs)(v, w);
#pragma GCC unroll 16
            for (int j = 0; j < L; j++)
                if (j < w) FN(vstore)(dst + (c0 + j) * L, v[j]);
        }
        return;
    }
#endif
    for (int l = 0; l < nl; l++) {
        const R *row = src + l * src_stride;
        for (int64_t c = 0; c < C; c++) dst[c * L + l] = row[c];
    }
    for (int l = (int)nl; l < L; l++)
        for (int64_t c = 0; c < C; c++) dst[c * L + l] = 0;
}

/* dst[l * dst_stride + c] = src[c * L + l] for l < nl, c < C. */
static inline void FN(tile_transpose_out)(R *restrict dst, int64_t dst_stride, const R *restrict src,
                                          int64_t C, int64_t nl)
{
#ifdef FL_SHUF128
    if (nl == L) {
        for (int64_t c0 = 0; c0 < C; c0 += L) {
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
            /* columns >= w of the rows are not stored: any values do for their classes */
#pragma GCC unroll 16
            for (int j = 0; j < L; j++) v[j] = FN(vload)(src + (c0 + (j < w ? j : 0)) * L);
            FN(transpose_regs)(v, L);
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) FL_MASK_STORE(dst + l * dst_stride + c0, w, v[l]);
        }
        return;
    }
#endif
    for (int l = 0; l < nl; l++) {
        R *row = dst + l * dst_stride;
        for (int64_t c = 0; c < C; c++) row[c] = src[c * L + l];
    }
}

static inline void FN(tile_of)(int64_t u, int64_t S, int64_t *n, int64_t *s0, int64_t *nl)
{
    const int64_t tiles = (S + L - 1) / L;
    *n = u / tiles;
    *s0 = (u % tiles) * L;
    *nl = S - *s0 < L ? S - *s0 : L;
}

/* Target check (fl_check_targets): partial = sum of w[y] (or the count) over non-ignored
 * samples, NaN if a target is outside [0, C).  Compiled per ISA so that the unweighted count,
 * a branch-free loop, vectorises with 64-bit compares (SSE2 has none). */
static void FN(check_targets_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    const fl_target_args *a = (const fl_target_args *)args;
    const int64_t *t = a->target, ign = a->ignore_index;
    const uint64_t C = (uint64_t)a->C;
    if (!a->weight) {
        int64_t count = 0, wrong = 0;
        for (int64_t i = i0; i < i1; i++) {
            const int64_t use = t[i] != ign;
            count += use;
            wrong |= use & ((uint64_t)t[i] >= C);
        }
        *partial = wrong ? NAN : (double)count;
        return;
    }
    const R *w = (const R *)a->weight;
    double total = 0.0;
    int bad = 0;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t y = t[i];
        if (y == ign) continue;
        if ((uint64_t)y >= C) { bad = 1; continue; }
        total += (double)w[y];
    }
    *partial = bad ? NAN : total;
}

/* Per-lane values of an index-target tile of nl samples starting at sample `base`: the target
 * class (-1 for ignored and padding lanes), the mask of lanes whose loss and gradient are 0,
 * and the gradient scale. */
typedef struct {
    VX yv;
    VI skip;
    VR gs;
} FN(index_lanes_t);

/* The gradient scale of the nl samples from `base` (0 in padding lanes): the common uniform
 * scale as one vector select (lanes filled one by one and read back as a vector would stall
 * store forwarding) */
static inline VR FN(lane_scales)(const fl_ce_args *a, int64_t base, int64_t nl)
{
    if (a->grad_scale_rows) { /* per-sample scales (grad_output of reduction "none") */
        R tmp[L];
        for (int l = 0; l < L; l++) tmp[l] = l < nl ? (R)a->grad_scale_rows[base + l] : (R)0;
        VR gs;
        memcpy(&gs, tmp, sizeof gs);
        return gs;
    }
    return FN(vselect)(FN(viota)() < (FL_XLANE)nl, FN(vsplat)((R)a->grad_scale), FN(vsplat)(0));
}

/* L int64 targets of a full tile as one (possibly double-width) vector */
typedef int64_t FN(tile_i64_t) __attribute__((vector_size(L * sizeof(int64_t))));

FL_INLINE FN(index_lanes_t) FN(index_lanes)(const fl_ce_args *a, const int64_t *tg,
                                            int64_t base, int64_t nl)
{
    typedef __typeof__(((VI){0})[0]) lane_int;
    typedef lane_int FN(tile_lane_int_t) __attribute__((vector_size(sizeof(VI))));
    const int64_t ign = a->ignore_index;
    FN(index_lanes_t) r;
    if (nl == L) {
        /* vector compares and narrowing conversions: a lane-by-lane fill of arrays read back
         * as vectors would stall store forwarding */
        FN(tile_i64_t) t;
        memcpy(&t, tg, sizeof t);
        const FN(tile_i64_t) use = t != ign; /* -1 / 0 */
        r.yv = __builtin_convertvector((t & use) | ~use, VX); /* ignored: -1 */
        r.skip = (VI)__builtin_convertvector(~use, FN(tile_lane_int_t));
    } else {
        FL_XLANE ya[L];
        lane_int sk[L];
        for (int l = 0; l < L; l++) {
            const int use = l < nl && tg[l] != ign;
            ya[l] = use ? (FL_XLANE)tg[l] : (FL_XLANE)-1;
            sk[l] = use ? 0 : (lane_int)-1;
        }
        memcpy(&r.yv, ya, sizeof r.yv);
        memcpy(&r.skip, sk, sizeof r.skip);
    }
    r.gs = FN(lane_scales)(a, base, nl);
    return r;
}

/* Per-chunk loss sums kept per lane in double (a vector add per tile instead of a serial
 * horizontal sum), added in lane order at the end: still a fixed order for a given shape. */
static inline void FN(acc_lanes)(double *acc, VR v)
{
    for (int l = 0; l < L; l++) acc[l] += (double)v[l];
}
static inline double FN(acc_total)(const double *acc)
{
    double s = 0.0;
    for (int l = 0; l < L; l++) s += acc[l];
    return s;
}

/* The sum of log S over samples as the log of a product (FN(log1p_prod_step)), when only
 * that sum is wanted and log S enters each loss with coefficient 1 (no class weights, no focal
 * term, no per-sample losses): t = S - 1 per lane and tile, and one log1p per G tiles instead
 * of one per tile (the log was a sixth of the float64 C = 10 loss time); 1 + T <= C^G stays
 * finite. */
typedef struct {
    VR T;
    int n, G;
    R thr;
} FN(logprod_t);
static inline FN(logprod_t) FN(logprod_init)(int64_t C)
{
    FN(logprod_t) p;
    p.T = FN(vsplat)(0);
    p.n = 0;
    /* log of a bound below the largest finite number; at most 16 (float) / 64 (double)
     * factors keep T's rounding error near 2G ulp */
    const int cap = FL_IS_F32 ? 16 : 64;
    const double g = (FL_IS_F32 ? 80.0 : 700.0) / log((double)(C > 2 ? C : 2));
    p.G = g >= cap ? cap : (int)g;
#ifdef FL_RAW_BOUND
    /* the unshifted tiles' factors 1 + R reach C e^(2 FL_RAW_BOUND), not C: a product above
     * thr is flushed before the next factor can take it past the largest finite number */
    const double log2_factor = log2((double)(C > 2 ? C : 2)) + 2.0 * FL_RAW_BOUND / log(2.0);
    p.thr = (R)ldexp(1.0, (FL_IS_F32 ? 127 : 1023) - (int)ceil(log2_factor));
#else
    p.thr = (R)__builtin_inf();
#endif
    return p;
}
static inline void FN(logprod_flush)(FN(logprod_t) *p, double *acc)
{
    if (!p->n) return;
    FN(acc_lanes)(acc, FN(vlog1p_nonneg)(p->T));
    p->T = FN(vsplat)(0);
    p->n = 0;
}
static inline void FN(logprod_add)(FN(logprod_t) *p, double *acc, VR t)
{
    p->T = FN(log1p_prod_step)(p->T, t);
#ifdef FL_RAW_BOUND
    if (++p->n == p->G || FL_ANY_LT(FN(vsplat)(p->thr), p->T)) FN(logprod_flush)(p, acc);
#else
    if (++p->n == p->G) FN(logprod_flush)(p, acc);
#endif
}

/* The unit function `name` as four copies of the always-inlined name_(a, u0, u1, partial,
 * with_grad, defer): with a gradient or loss only (where the compiler drops the gradient
 * math), each with or without the deferred log S of FN(logprod_t). */
#define FL_GRAD_SPLIT(name)                                                                \
    static void FN(name)(const void *args, int64_t u0, int64_t u1, double *partial)        \
    {                                                                                      \
        const fl_ce_args *a_ = (const fl_ce_args *)args;                                   \
        const int defer_ = !a_->loss_rows && !a_->weight && !a_->focal;                    \
        if (a_->grad) {                                                                    \
            if (defer_) FN(name##_)(a_, u0, u1, partial, 1, 1);                            \
            else FN(name##_)(a_, u0, u1, partial, 1, 0);                                   \
        } else {                                                                           \
            if (defer_) FN(name##_)(a_, u0, u1, partial, 0, 1);                            \
            else FN(name##_)(a_, u0, u1, partial, 0, 0);                                   \
        }                                                                                  \
    }

/* (N, C, S) tiles: the C class vectors of a tile lie S elements apart, a multiple of 4 KiB for
 * the usual image sizes, so they all map to the same cache sets and evict each other between
 * the sweeps.  Up to FL_COLS_SCRATCH_C classes, a full tile is first copied (one vector per
 * class) into a contiguous L1 scratch, the sweeps run there, and the gradient is copied out
 * once. */
/* C streams S apart are more than the hardware prefetchers follow: each class vector's line a
 * few tiles ahead is requested explicitly (prefetches past the end of the array are harmless) */
static inline void FN(tile_copy_in)(R *restrict dst, const R *restrict src, int64_t stride,
                                    int64_t C)
{
    for (int64_t c = 0; c < C; c++) {
        __builtin_prefetch(src + c * stride + FL_COLS_PREFETCH_BYTES / (int64_t)sizeof(R), 0, 3);
        FN(vstore)(dst + c * L, FN(vload)(src + c * stride));
    }
}
static inline void FN(tile_copy_out)(R *restrict dst, int64_t stride, const R *restrict src,
                                     int64_t C)
{
    for (int64_t c = 0; c < C; c++) {
        __builtin_prefetch(dst + c * stride + FL_COLS_PREFETCH_BYTES / (int64_t)sizeof(R), 1, 3);
        FN(vstore)(dst + c * stride, FN(vload)(src + c * L));
    }
}

FL_INLINE void FN(ce_index_cols_)(const fl_ce_args *a, int64_t u0, int64_t u1, double *partial,
                                  const int with_grad, const int defer)
{
    const int64_t C = a->C, S = a->S;
    R *loss_rows = (R *)a->loss_rows;
    R xt[FL_COLS_SCRATCH_C * L];
    double acc[L] = {0};
    FN(logprod_t) lp = FN(logprod_init)(C);
    VR t;
    int raw_wait = FN(raw_wait_start)(a, with_grad);
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const R *x = (const R *)a->x + n * C * S + s0;
        R *g = with_grad ? (R *)a->grad + n * C * S + s0 : NULL;
        const int64_t base = n * S + s0;
        const int64_t *tg = a->target + base;
        const FN(index_lanes_t) k = FN(index_lanes)(a, tg, base, nl);
        VR loss;
        if (nl == L && C <= FL_COLS_SCRATCH_C) {
            FN(tile_copy_in)(xt, x, S, C);
            loss = FN(ce_index_tile)(a, xt, L, g ? xt : NULL, 1, L, k.yv, k.skip, k.gs,
                                     defer ? &t : NULL, &raw_wait);
            if (g) FN(tile_copy_out)(g, S, xt, C);
        } else {
            loss = FN(ce_index_tile)(a, x, S, g, nl == L, nl, k.yv, k.skip, k.gs,
                                     defer ? &t : NULL, &raw_wait);
        }
        if (loss_rows) FN(vstore_part)(loss_rows + base, loss, nl);
        FN(acc_lanes)(acc, loss);
        if (defer) FN(logprod_add)(&lp, acc, t);
    }
    if (defer) FN(logprod_flush)(&lp, acc);
    *partial = FN(acc_total)(acc);
}

FL_GRAD_SPLIT(ce_index_cols)

/* Small C, class axis last: L rows at a time through a transposed scratch tile, two full
 * tiles per sweep (FN(ce_index_tiles)), then the rest one by one. */
FL_INLINE void FN(ce_index_small_rows_)(const fl_ce_args *a, int64_t u0, int64_t u1,
                                         double *partial, const int with_grad, const int defer)
{
    const int64_t C = a->C;
    R *loss_rows = (R *)a->loss_rows;
    R xt[2][FL_SMALL_C * L];
    double acc[L] = {0};
    FN(logprod_t) lp = FN(logprod_init)(C);
    VR t[2];
    int raw_wait = FN(raw_wait_start)(a, with_grad);
    int64_t u = u0;
    for (; u + 1 < u1 && (u + 2) * L <= a->N; u += 2) {
        const int64_t base = u * L;
        const R *x[2] = {xt[0], xt[1]};
        R *g[2] = {with_grad ? xt[0] : NULL, with_grad ? xt[1] : NULL};
        VX yv[2];
        VI skip[2];
        VR gs[2], loss[2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const int64_t b = base + j * L;
            FN(tile_transpose_in)(xt[j], (const R *)a->x + b * C, C, C, L);
            const FN(index_lanes_t) k = FN(index_lanes)(a, a->target + b, b, L);
            yv[j] = k.yv;
            skip[j] = k.skip;
            gs[j] = k.gs;
        }
        FN(ce_index_tiles)(a, x, L, g, 1, L, yv, skip, gs, loss, defer ? t : NULL, &raw_wait, 2);
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++) {
            const int64_t b = base + j * L;
            if (with_grad) FN(tile_transpose_out)((R *)a->grad + b * C, C, xt[j], C, L);
            if (loss_rows) FN(vstore)(loss_rows + b, loss[j]);
            FN(acc_lanes)(acc, loss[j]);
            if (defer) FN(logprod_add)(&lp, acc, t[j]);
        }
    }
    for (; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        FN(tile_transpose_in)(xt[0], (const R *)a->x + base * C, C, C, nl);
        const FN(index_lanes_t) k = FN(index_lanes)(a, a->target + base, base, nl);
        const VR loss = FN(ce_index_tile)(a, xt[0], L, with_grad ? xt[0] : NULL, 1, L, k.yv,
                                          k.skip, k.gs, defer ? t : NULL, &raw_wait);
        if (with_grad) FN(tile_transpose_out)((R *)a->grad + base * C, C, xt[0], C, nl);
        if (loss_rows) FN(vstore_part)(loss_rows + base, loss, nl);
        FN(acc_lanes)(acc, loss);
        if (defer) FN(logprod_add)(&lp, acc, t[0]);
    }
    if (defer) FN(logprod_flush)(&lp, acc);
    *partial = FN(acc_total)(acc);
}

FL_GRAD_SPLIT(ce_index_small_rows)

static void FN(ce_prob_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S;
    R *loss_rows = (R *)a->loss_rows;
    R xt[FL_COLS_SCRATCH_C * L], tt[FL_COLS_SCRATCH_C * L];
    double acc[L] = {0};
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const int64_t off = n * C * S + s0, base = n * S + s0;
        const VR gsv = FN(lane_scales)(a, base, nl);
        const R *x = (const R *)a->x + off, *t = (const R *)a->target_prob + off;
        R *g = a->grad ? (R *)a->grad + off : NULL;
        VR loss;
        if (nl == L && C <= FL_COLS_SCRATCH_C) {
            FN(tile_copy_in)(xt, x, S, C);
            FN(tile_copy_in)(tt, t, S, C);
            loss = FN(ce_prob_tile)(a, xt, tt, L, g ? xt : NULL, 1, L, gsv);
            if (g) FN(tile_copy_out)(g, S, xt, C);
        } else {
            loss = FN(ce_prob_tile)(a, x, t, S, g, nl == L, nl, gsv);
        }
        loss = FN(vselect)(FN(viota)() < (FL_XLANE)nl, loss, FN(vsplat)(0));
        if (loss_rows) FN(vstore_part)(loss_rows + base, loss, nl);
        FN(acc_lanes)(acc, loss);
    }
    *partial = FN(acc_total)(acc);
}

static void FN(ce_prob_small_rows)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C;
    R *loss_rows = (R *)a->loss_rows;
    R xt[FL_SMALL_C * L], tt[FL_SMALL_C * L];
    double acc[L] = {0};
    for (int64_t u = u0; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        const R *x = (const R *)a->x + base * C, *t = (const R *)a->target_prob + base * C;
        R *g = a->grad ? (R *)a->grad + base * C : NULL;
        FN(tile_transpose_in)(xt, x, C, C, nl);
        FN(tile_transpose_in)(tt, t, C, C, nl);
        const VR gsv = FN(lane_scales)(a, base, nl);
        VR loss = FN(ce_prob_tile)(a, xt, tt, L, g ? xt : NULL, 1, L, gsv);
        if (g) FN(tile_transpose_out)(g, C, xt, C, nl);
        loss = FN(vselect)(FN(viota)() < (FL_XLANE)nl, loss, FN(vsplat)(0));
        if (loss_rows) FN(vstore_part)(loss_rows + base, loss, nl);
        FN(acc_lanes)(acc, loss);
    }
    *partial = FN(acc_total)(acc);
}

static void FN(softmax_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_softmax_args *a = (const fl_softmax_args *)args;
    const int64_t C = a->C, S = a->S;
    R xt[FL_COLS_SCRATCH_C * L];
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const R *x = (const R *)a->x + n * C * S + s0;
        R *o = (R *)a->out + (a->op == FL_LOGSUMEXP ? n * S : n * C * S) + s0;
        if (nl == L && C <= FL_COLS_SCRATCH_C) {
            /* in place in the scratch: each class is read before it is overwritten */
            FN(tile_copy_in)(xt, x, S, C);
            if (a->op == FL_LOGSUMEXP) {
                FN(softmax_tile)(a->op, xt, L, o, C, 1, L);
            } else {
                FN(softmax_tile)(a->op, xt, L, xt, C, 1, L);
                FN(tile_copy_out)(o, S, xt, C);
            }
        } else {
            FN(softmax_tile)(a->op, x, S, o, C, nl == L, nl);
        }
    }
    (void)partial;
}

static void FN(softmax_small_rows)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_softmax_args *a = (const fl_softmax_args *)args;
    const int64_t C = a->C;
    R xt[FL_SMALL_C * L], ot[FL_SMALL_C * L];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        const R *x = (const R *)a->x + base * C;
        FN(tile_transpose_in)(xt, x, C, C, nl);
        FN(softmax_tile)(a->op, xt, L, ot, C, 1, L);
        if (a->op == FL_LOGSUMEXP) {
            FN(vstore_part)((R *)a->out + base, FN(vload)(ot), nl);
        } else {
            FN(tile_transpose_out)((R *)a->out + base * C, C, ot, C, nl);
        }
    }
    (void)partial;
}

/* NLL on log-probabilities: no exp, just a gather.  A unit is one sample n (all S positions).
 * Blocks of at most FL_NLL_BLOCK target entries: whole samples (as many as fit) when S <=
 * FL_NLL_BLOCK, else S positions of one sample at a time.  Every x_y of a block is gathered
 * before its gradient region (which may alias x) is zeroed -- in one memset where the region
 * is contiguous (whole samples: the usual (N, C) input is one block of rows) -- and the
 * target entries set.  The losses are added in index order whatever the blocks. */
static void FN(nll_chunk)(const void *args, int64_t n0, int64_t n1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S, ign = a->ignore_index;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const int64_t rows = S >= 1 && S <= FL_NLL_BLOCK ? FL_NLL_BLOCK / S : 1;
    double total = 0.0;
    R xy[FL_NLL_BLOCK];
    for (int64_t n = n0; n < n1; n += rows) {
        const int64_t nr = n1 - n < rows ? n1 - n : rows;
        const R *x = (const R *)a->x + n * C * S;
        R *g = a->grad ? (R *)a->grad + n * C * S : NULL;
        for (int64_t s0 = 0; s0 < S; s0 += FL_NLL_BLOCK) {
            const int64_t nb = S - s0 < FL_NLL_BLOCK ? S - s0 : FL_NLL_BLOCK;
            const int64_t *tg = a->target + n * S + s0;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t s = 0; s < nb; s++) {
                    const int64_t y = tg[r * S + s];
                    xy[r * nb + s] = y == ign ? 0 : x[(r * C + y) * S + s0 + s];
                }
            if (g && nb == S) memset(g, 0, (size_t)(nr * C * S) * sizeof(R));
            else if (g)
                for (int64_t c = 0; c < C; c++) memset(g + c * S + s0, 0, (size_t)nb * sizeof(R));
            for (int64_t r = 0; r < nr; r++)
                for (int64_t s = 0; s < nb; s++) {
                    const int64_t i = (n + r) * S + s0 + s, y = tg[r * S + s];
                    double loss = 0.0;
                    if (y != ign) {
                        const double wy = w ? (double)w[y] : 1.0;
                        loss = -wy * (double)xy[r * nb + s];
                        if (g) g[(r * C + y) * S + s0 + s] = (R)(-wy * FN(row_scale)(a, i));
                    }
                    total += loss;
                    if (loss_rows) loss_rows[i] = (R)loss;
                }
        }
    }
    *partial = total;
}

#undef FL_TILE_LOAD
#undef FL_RAW_BOUND
#undef FL_TILE_STORE
#undef FL_GRAD_SPLIT
#undef VR
#undef VI
#undef VX
#undef R
#undef L
