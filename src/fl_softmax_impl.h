/*
 * Softmax-family kernels for one (dtype, ISA) instantiation (see fl_vecmath_impl.h for the
 * template parameters).  No include guard on purpose.
 *
 * Numerics shared by every kernel here:
 *  - Max shift: with m = max_c x_c every exponent is exp(x_c - m) <= 1, so 1e30-scale logits
 *    cannot overflow and the sum S = sum_c exp(x_c - m) is >= 1 (the max contributes 1).
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
#ifndef FL_FLUSH
#define FL_FLUSH 64
#define FL_NLL_BLOCK 256
#endif

/* Per-sample scalar part of the index-target losses: given the row statistics, return the
 * loss and the coefficients of the gradient  g_c = A e_c - Bs w_c  (c != y),  g_y = Gy. */
typedef struct {
    double loss, A, Bs, Gy;
} FN(ce_coef_t);

static inline FN(ce_coef_t) FN(ce_index_coef)(const fl_ce_args *a, double dy, double s_other,
                                                double dsum, double wy, double gs)
{
    FN(ce_coef_t) r;
    const double e_y = exp(-dy);
    const double S = s_other + e_y;
    /* e_y == 1 exactly when y holds the row max: then S = 1 + s_other */
    const double logS = dy == 0 ? log1p(s_other) : log(S);
    const double nll = dy + logS;            /* -log p_y */
    const double q = s_other / S;            /* 1 - p_y, no cancellation */
    const double p = e_y / S;
    if (a->focal) {
        const double f = pow(q, a->gamma);   /* (1 - p)^gamma, 0^0 = 1 */
        /* d/dx_j of -w q^g log p = K (p_j - [j == y]) with
         * K = w q^g (1 + g p (-log p) / q); (-log p)/q -> 1 as q -> 0. */
        const double ratio = q > 0 ? nll / q : 1.0;
        const double K = wy * f * (1.0 + a->gamma * p * ratio);
        r.loss = wy * f * nll;
        r.A = gs * K / S;
        r.Bs = 0.0;
        r.Gy = -gs * K * q;
    } else {
        const double eps = a->smoothing, epsC = eps / (double)a->C;
        r.loss = (1.0 - eps) * wy * nll;
        r.A = gs * ((1.0 - eps) * wy + epsC * a->weight_sum) / S;
        r.Bs = gs * epsC;
        r.Gy = -gs * (1.0 - eps) * wy * q;
        if (eps > 0) {
            /* sum_c w_c (-log p_c) = sum_c w_c (m - x_c) + W log S */
            r.loss += epsC * (dsum + a->weight_sum * logS);
            r.Gy += gs * epsC * (a->weight_sum * p - wy);
        }
    }
    return r;
}

static inline double FN(row_scale)(const fl_ce_args *a, int64_t i)
{
    return a->grad_scale_rows ? a->grad_scale_rows[i] : a->grad_scale;
}

/* ---------------------------------------------------------------- class axis last (S == 1) */

static inline R FN(row_max)(const R *x, int64_t C)
{
    VR vm = FN(vsplat)((R)-__builtin_inf());
    int64_t c = 0;
    for (; c + L <= C; c += L) vm = FN(vmax)(vm, FN(vload)(x + c));
    if (c < C) vm = FN(vmax)(vm, FN(vload_part)(x + c, C - c, (R)-__builtin_inf()));
    return FN(hmax)(vm);
}

static void FN(ce_index_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const int smooth = !a->focal && a->smoothing > 0;
    const VX iota = FN(viota)();
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->x + r * C;
        R *g = a->grad ? (R *)a->grad + r * C : NULL;
        const int64_t y = a->target[r];
        if (y == a->ignore_index) {
            if (g) memset(g, 0, (size_t)C * sizeof(R));
            if (loss_rows) loss_rows[r] = 0;
            continue;
        }
        const R xy = x[y]; /* read before g (which may alias x) is written */
        const double wy = w ? (double)w[y] : 1.0;
        const R m = FN(row_max)(x, C);
        const VR vm = FN(vsplat)(m);
        VR vs = {0}, vd = {0};
        double s_other = 0.0, dsum = 0.0;
        int64_t c = 0;
        int blk = 0;
        for (; c + L <= C; c += L) {
            const VR d = vm - FN(vload)(x + c); /* >= 0, +inf for masked logits */
            const VR e = FN(vexp)(-d);
            if (g) FN(vstore)(g + c, e);
            vs += FN(vselect)(iota == (FL_XLANE)(y - c), FN(vsplat)(0), e);
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
            const VR e = FN(vexp)(-d);
            if (g) FN(vstore_part)(g + c, e, n);
            vs += FN(vselect)(valid & (iota != (FL_XLANE)(y - c)), e, FN(vsplat)(0));
            if (smooth) vd += w ? FN(vload_part)(w + c, n, 0) * d : d;
        }
        s_other += FN(hsum)(vs);
        dsum += FN(hsum)(vd);
        const double gs = FN(row_scale)(a, r);
        const FN(ce_coef_t) k = FN(ce_index_coef)(a, (double)m - (double)xy, s_other, dsum, wy, gs);
        total += k.loss;
        if (loss_rows) loss_rows[r] = (R)k.loss;
        if (!g) continue;
        const R A = (R)k.A, Bs = (R)k.Bs;
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
        g[y] = (R)k.Gy;
    }
    *partial = total;
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
            const VR tv = n == L ? FN(vload)(t + c) : FN(vload_part)(t + c, n, 0);
            const VR wv = w ? (n == L ? FN(vload)(w + c) : FN(vload_part)(w + c, n, 0)) : FN(vsplat)(1);
            const VR d = vm - xv;
            const VR e = FN(vselect)(valid, FN(vexp)(-d), zero);
            if (g) FN(vstore_part)(g + c, e, n);
            const VR tp = tv * keep + add;   /* smoothed target */
            const VR wt = FN(vselect)(valid, wv * tp, zero);
            vs += e;
            vT += wt;
            /* a zero target contributes 0 even where -log p = inf (masked logit) */
            vD += FN(vselect)(tp == 0, zero, wt * d);
            if (++blk == FL_FLUSH) {
                S += FN(hsum)(vs); T += FN(hsum)(vT); D += FN(hsum)(vD);
                vs = zero; vT = zero; vD = zero;
                blk = 0;
            }
        }
        S += FN(hsum)(vs); T += FN(hsum)(vT); D += FN(hsum)(vD);
        const double loss = D + T * log(S);
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
        if (a->op == FL_LOGSUMEXP && (m == (R)__builtin_inf() || m == (R)-__builtin_inf())) {
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
            const VR xv = n == L ? FN(vload)(x + c) : FN(vload_part)(x + c, n, m);
            VR e = FN(vexp)(xv - vm);
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

/* ------------------------------------------- class axis strided: (N, C, S) tiles over S */
/* A work unit is one tile: FL_LANES consecutive positions s of one sample n. */

static inline void FN(tile_of)(int64_t u, int64_t S, int64_t *n, int64_t *s0, int64_t *nl)
{
    const int64_t tiles = (S + L - 1) / L;
    *n = u / tiles;
    *s0 = (u % tiles) * L;
    *nl = S - *s0 < L ? S - *s0 : L;
}

#define FL_TILE_LOAD(p) (full ? FN(vload)(p) : FN(vload_part)((p), nl, 0))
#define FL_TILE_STORE(p, v)                               \
    do {                                                  \
        if (full) FN(vstore)((p), (v));                   \
        else FN(vstore_part)((p), (v), nl);               \
    } while (0)

static inline VR FN(tile_max)(const R *x, int64_t C, int64_t S, int full, int64_t nl)
{
    VR vm = FN(vsplat)((R)-__builtin_inf());
    for (int64_t c = 0; c < C; c++) vm = FN(vmax)(vm, FL_TILE_LOAD(x + c * S));
    return vm;
}

static void FN(ce_index_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const int smooth = !a->focal && a->smoothing > 0;
    double total = 0.0;
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const int full = nl == L;
        const R *x = (const R *)a->x + n * C * S + s0;
        R *g = a->grad ? (R *)a->grad + n * C * S + s0 : NULL;
        const int64_t *tg = a->target + n * S + s0;
        VX yv;
        VI skip;   /* per lane: target class (-1 when not used), 1s where the lane is skipped */
        R xy[L];
        for (int l = 0; l < L; l++) {
            const int use = l < nl && tg[l] != a->ignore_index;
            yv[l] = use ? tg[l] : -1;
            skip[l] = use ? 0 : -1;
            xy[l] = use ? x[tg[l] * S + l] : 0; /* read before g (may alias x) is written */
        }
        const VR vm = FN(tile_max)(x, C, S, full, nl);
        VR vs = FN(vsplat)(0), vd = FN(vsplat)(0);
        double s_other[L] = {0}, dsum[L] = {0};
        int blk = 0;
        for (int64_t c = 0; c < C; c++) {
            const VR d = vm - FL_TILE_LOAD(x + c * S);
            const VR e = FN(vexp)(-d);
            if (g) FL_TILE_STORE(g + c * S, e);
            vs += FN(vselect)(yv == (FL_XLANE)c, FN(vsplat)(0), e);
            if (smooth) vd += w ? d * w[c] : d;
            if (++blk == FL_FLUSH || c == C - 1) {
                for (int l = 0; l < L; l++) { s_other[l] += vs[l]; dsum[l] += vd[l]; }
                vs = FN(vsplat)(0); vd = FN(vsplat)(0);
                blk = 0;
            }
        }
        VR A = FN(vsplat)(0), Bs = FN(vsplat)(0), Gy = FN(vsplat)(0);
        for (int l = 0; l < nl; l++) {
            const int64_t i = n * S + s0 + l;
            if (skip[l]) {
                if (loss_rows) loss_rows[i] = 0;
                continue;
            }
            const double wy = w ? (double)w[(int64_t)yv[l]] : 1.0;
            const FN(ce_coef_t) k = FN(ce_index_coef)(a, (double)vm[l] - (double)xy[l], s_other[l],
                                                      dsum[l], wy, FN(row_scale)(a, i));
            total += k.loss;
            if (loss_rows) loss_rows[i] = (R)k.loss;
            A[l] = (R)k.A; Bs[l] = (R)k.Bs; Gy[l] = (R)k.Gy;
        }
        if (!g) continue;
        for (int64_t c = 0; c < C; c++) {
            VR gv = FL_TILE_LOAD(g + c * S) * A;
            if (smooth) gv -= Bs * (w ? w[c] : (R)1);
            gv = FN(vselect)(yv == (FL_XLANE)c, Gy, gv);
            gv = FN(vselect)(skip, FN(vsplat)(0), gv);
            FL_TILE_STORE(g + c * S, gv);
        }
    }
    *partial = total;
}

static void FN(ce_prob_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const R keep = (R)(1.0 - a->smoothing), add = (R)(a->smoothing / (double)C);
    const VR zero = FN(vsplat)(0);
    double total = 0.0;
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const int full = nl == L;
        const R *x = (const R *)a->x + n * C * S + s0;
        const R *t = (const R *)a->target_prob + n * C * S + s0;
        R *g = a->grad ? (R *)a->grad + n * C * S + s0 : NULL;
        const VR vm = FN(tile_max)(x, C, S, full, nl);
        VR vs = zero, vT = zero, vD = zero;
        double Sd[L] = {0}, Td[L] = {0}, Dd[L] = {0};
        int blk = 0;
        for (int64_t c = 0; c < C; c++) {
            const VR d = vm - FL_TILE_LOAD(x + c * S);
            const VR e = FN(vexp)(-d);
            if (g) FL_TILE_STORE(g + c * S, e);
            const VR tp = FL_TILE_LOAD(t + c * S) * keep + add;
            const VR wt = w ? tp * w[c] : tp;
            vs += e;
            vT += wt;
            vD += FN(vselect)(tp == 0, zero, wt * d);
            if (++blk == FL_FLUSH || c == C - 1) {
                for (int l = 0; l < L; l++) { Sd[l] += vs[l]; Td[l] += vT[l]; Dd[l] += vD[l]; }
                vs = zero; vT = zero; vD = zero;
                blk = 0;
            }
        }
        VR A = zero, B = zero;
        for (int l = 0; l < nl; l++) {
            const int64_t i = n * S + s0 + l;
            const double loss = Dd[l] + Td[l] * log(Sd[l]);
            total += loss;
            if (loss_rows) loss_rows[i] = (R)loss;
            const double gs = FN(row_scale)(a, i);
            A[l] = (R)(gs * Td[l] / Sd[l]);
            B[l] = (R)gs;
        }
        if (!g) continue;
        for (int64_t c = 0; c < C; c++) {
            const VR tp = FL_TILE_LOAD(t + c * S) * keep + add;
            const VR wt = w ? tp * w[c] : tp;
            FL_TILE_STORE(g + c * S, FL_TILE_LOAD(g + c * S) * A - wt * B);
        }
    }
    *partial = total;
}

static void FN(softmax_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_softmax_args *a = (const fl_softmax_args *)args;
    const int64_t C = a->C, S = a->S;
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const int full = nl == L;
        const R *x = (const R *)a->x + n * C * S + s0;
        R *o = a->op == FL_LOGSUMEXP ? (R *)a->out + n * S + s0 : (R *)a->out + n * C * S + s0;
        const VR vm = FN(tile_max)(x, C, S, full, nl);
        VR vs = FN(vsplat)(0);
        double Sd[L] = {0};
        int blk = 0;
        for (int64_t c = 0; c < C; c++) {
            const VR e = FN(vexp)(FL_TILE_LOAD(x + c * S) - vm);
            if (a->op == FL_SOFTMAX) FL_TILE_STORE(o + c * S, e);
            vs += e;
            if (++blk == FL_FLUSH || c == C - 1) {
                for (int l = 0; l < L; l++) Sd[l] += vs[l];
                vs = FN(vsplat)(0);
                blk = 0;
            }
        }
        VR inv = FN(vsplat)(0), ls = FN(vsplat)(0);
        for (int l = 0; l < nl; l++) {
            const double lg = log(Sd[l]);
            if (a->op == FL_LOGSUMEXP) {
                const R m = vm[l];
                o[l] = (m == (R)__builtin_inf() || m == (R)-__builtin_inf()) ? m : (R)((double)m + lg);
            }
            inv[l] = (R)(1.0 / Sd[l]);
            ls[l] = (R)lg;
        }
        if (a->op == FL_SOFTMAX) {
            for (int64_t c = 0; c < C; c++) FL_TILE_STORE(o + c * S, FL_TILE_LOAD(o + c * S) * inv);
        } else if (a->op == FL_LOG_SOFTMAX) {
            for (int64_t c = 0; c < C; c++)
                FL_TILE_STORE(o + c * S, (FL_TILE_LOAD(x + c * S) - vm) - ls);
        }
    }
    (void)partial;
}


/* NLL on log-probabilities: no exp, just a gather.  A unit is one sample n (all S positions):
 * its gradient block is zeroed and the S target entries set. */
static void FN(nll_units)(const void *args, int64_t n0, int64_t n1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    double total = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        const R *x = (const R *)a->x + n * C * S;
        R *g = a->grad ? (R *)a->grad + n * C * S : NULL;
        R xy[FL_NLL_BLOCK];
        for (int64_t s0 = 0; s0 < S; s0 += FL_NLL_BLOCK) {
            const int64_t nb = S - s0 < FL_NLL_BLOCK ? S - s0 : FL_NLL_BLOCK;
            /* gather every x_y of this block before the gradient (which may alias x) is zeroed */
            for (int64_t s = 0; s < nb; s++) {
                const int64_t y = a->target[n * S + s0 + s];
                xy[s] = y == a->ignore_index ? 0 : x[y * S + s0 + s];
            }
            if (g) for (int64_t c = 0; c < C; c++) memset(g + c * S + s0, 0, (size_t)nb * sizeof(R));
            for (int64_t s = 0; s < nb; s++) {
                const int64_t i = n * S + s0 + s, y = a->target[i];
                double loss = 0.0;
                if (y != a->ignore_index) {
                    const double wy = w ? (double)w[y] : 1.0;
                    loss = -wy * (double)xy[s];
                    if (g) g[y * S + s0 + s] = (R)(-wy * FN(row_scale)(a, i));
                }
                total += loss;
                if (loss_rows) loss_rows[i] = (R)loss;
            }
        }
    }
    *partial = total;
}

#undef FL_TILE_LOAD
#undef FL_TILE_STORE
#undef VR
#undef VI
#undef VX
#undef R
#undef L
