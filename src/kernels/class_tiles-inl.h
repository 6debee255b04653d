/*
 * The class-axis sweeps over one tile of L samples, for one (dtype, ISA) instantiation:
 * FN(ce_index_tiles) (index targets, two tiles per sweep), FN(ce_index_tile),
 * FN(ce_prob_tile), FN(softmax_tile), and with FL_HAS_RAW_TILES the unshifted
 * FN(ce_index_tiles_raw).  The chunk functions that cut inputs into tiles are in
 * class_tile_chunks-inl.h.  Numerics: see ce_coef-inl.h.  No include guard on purpose.
 */

/* ---------------------------------------------------------------- tiles of L samples */
/* A tile holds L samples side by side: element (c, l) at x[c * xs + l].  Two sources:
 *  - (N, C, S) inputs: L consecutive positions s of one n, read in place (xs = S); the last
 *    tile of a row of S may be partial (nl < L lanes valid);
 *  - (N, C) inputs with small C: L rows transposed into an L1-resident scratch (xs = L),
 *    where a per-row kernel would pay its per-row overhead on only a few classes.
 * Every sweep is then a vector operation across samples, and the per-sample math
 * (FN(ce_index_coef), logs, reciprocals) runs once per L samples. */

#define FL_TILE_LOAD(p) (full ? FN(vload)(p) : FN(vload_part)((p), nl, 0))
#define FL_TILE_STORE(p, v)                 \
    do {                                    \
        if (full) FN(vstore)((p), (v));     \
        else FN(vstore_part)((p), (v), nl); \
    } while (0)
/* two-level summation: vector partial sums of FL_FLUSH classes added into a running vector */
#define FL_FLUSH_SUM(acc, part) \
    do {                        \
        (acc) += (part);        \
        (part) = FN(vsplat)(0); \
    } while (0)

#if !FL_HAS_MASK_REGS
#if FL_HAS_GATHER
FL_INLINE VR FN(gather)(VR src, const R *base, VX idx, VI mask)
{
    return FL_GATHER(src, base, idx, mask);
}
#endif
/* Per lane l, x[yv[l] * xs + l] (the tile's value at the lane's target class), and w[yv[l]];
 * lanes of no class (yv < 0: ignored, padding) get 0 and 1.  Without mask registers these
 * picks run once per tile instead of a select per class and accumulator: the class sweep's
 * accumulators then fit in the 16 AVX2 registers (selects per class spilled them to the
 * stack, and each class waited on a store-to-load round trip). */
static inline VR FN(tile_pick)(const R *x, int64_t xs, int64_t C, VX yv)
{
#if FL_HAS_GATHER
    if ((C - 1) * xs + L <= INT32_MAX)
        return FN(gather)(FN(vsplat)(0), x, yv * (FL_XLANE)xs + FN(viota)(), yv >= (FL_XLANE)0);
#else
    (void)C;
#endif
    R v[L];
    for (int l = 0; l < L; l++) {
        const int64_t y = (int64_t)yv[l];
        v[l] = y >= 0 ? x[y * xs + l] : (R)0;
    }
    VR r;
    memcpy(&r, v, sizeof r);
    return r;
}
static inline VR FN(class_pick)(const R *w, VX yv)
{
#if FL_HAS_GATHER
    return FN(gather)(FN(vsplat)((R)1), w, yv, yv >= (FL_XLANE)0);
#else
    R v[L];
    for (int l = 0; l < L; l++) {
        const int64_t y = (int64_t)yv[l];
        v[l] = y >= 0 ? w[y] : (R)1;
    }
    VR r;
    memcpy(&r, v, sizeof r);
    return r;
#endif
}
#endif

/* exp(x - m) of FN(ce_index_tiles)' class sweep (and of its e_y, which must equal the sweep's
 * value at y): without a gradient the exps only feed S, which holds an exact 1 */
FL_INLINE VR FN(sweep_exp)(VR d, const int with_g)
{
    return with_g ? FN(vexp_nonpos)(d) : FN(vexp_nonpos_term)(d);
}

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
                                   const FN(ce_coef_t) * k, VR *loss, VR *t, const int NT)
{
    const R *w = (const R *)a->weight;
    const int smooth = !a->focal && a->smoothing > 0;
    const VR zero = FN(vsplat)(0);
    for (int64_t c = 0; gp[0] && c < a->C; c++) {
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++) {
            VR gv = FL_TILE_LOAD(gp[j] + c * xs) * k[j].A;
            if (smooth) gv -= k[j].Bs * (w ? w[c] : (R)1);
#if FL_HAS_MASK_REGS
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

#if FL_HAS_RAW_TILES
/* Index targets without label smoothing (AVX-512): while every |x| of the tiles is below
 * FL_RAW_BOUND the exponentials need no shift.  e_c = exp(x_c) is then a normal number, and
 * R = sum_{c != y} e_c / e_y = sum_{c != y} exp(x_c - x_y) is finite: the tile math shifted by
 * x_y instead of the max, i.e. dy = 0, e_y = 1, s_other = R, and log1p(R) keeps a confident
 * prediction's tiny loss as the shifted math does; the gradient's A takes a 1 / e_y.  This
 * saves the max pass and, per element, the subtraction and the range test or clamp (timings:
 * see docs/performance.md).
 * The table exp reduces x in one step with ln2/N rounded, so it returns
 * exp(x (1 - d)) (d = that rounding's relative error, 3.3e-17 double, 2.7e-9 float, below
 * half an ulp) to about an ulp: e_c / e_y is exp((x_c - x_y)(1 - d)), the error of a
 * difference's rounding (half an ulp of x_c - x_y) that the shifted math has in x_c - m.
 * The bound is checked by vrange (NaN ignored: NaN lanes make NaN losses here as in the
 * shifted math), in the sweep for the loss only and before it with a gradient; returns 0,
 * having written nothing, when a tile fails it.  FL_RAW_BOUND: fl_config.h (per dtype). */
/* after a failed attempt the next FL_RAW_WAIT tile groups of the chunk go straight to the
 * shifted math, so inputs whose logits exceed the bound redo one group in FL_RAW_WAIT + 1 */
FL_INLINE int FN(ce_index_tiles_raw)(const fl_ce_args *a, const R *const *xp, R *const *gp,
                                     int64_t xs, int full, int64_t nl, const VX *yv, const VI *skip,
                                     const VR *gs, VR *loss, VR *t, const int NT)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    const int with_g = gp[0] != NULL;
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    VR big[2], vs[2], s_other[2], wy[2], ey[2];
    /* every lane of both tiles' max |x| below the bound */
#define FL_RAW_IN_BOUND()                                                   \
    (FL_ANY_LT(FL_ABSMAX(big[0], big[NT - 1]), FN(vsplat)(FL_RAW_BOUND)) == \
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
#if !FL_HAS_RAW_TILES
    (void)a;
    (void)with_grad;
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
 * two independent chains side by side keep the pipes busy (timings: see docs/performance.md).
 * Per tile j: x[j] (class c of lane l at x[j][c * xs + l]), g[j]
 * (or NULL), yv[j] target class per lane (-1: none), skip[j] lanes to zero (ignored /
 * padding), gs[j] gradient scale per lane; writes the per-lane losses to loss[j].  With t
 * (not NULL; no weights, no focal term) loss[j] leaves out log S and t[j] receives S - 1
 * (0 in skipped lanes) for FN(logprod_add).  raw_wait: the caller's FL_RAW_WAIT countdown,
 * 0 at the start of a chunk. */
FL_INLINE void FN(ce_index_tiles)(const fl_ce_args *a, const R *const *x, int64_t xs, R *const *g,
                                  int full, int64_t nl, const VX *yv, const VI *skip, const VR *gs,
                                  VR *loss, VR *t, int *raw_wait, const int NT)
{
    const int64_t C = a->C;
    const R *w = (const R *)a->weight;
    const int smooth = !a->focal && a->smoothing > 0;
    const VR zero = FN(vsplat)(0);
    const int with_g = g[0] != NULL; /* all tiles or none */
    const R *xp[2] = {x[0], x[NT - 1]};
    R *gp[2] = {g[0], g[NT - 1]};
#if FL_HAS_RAW_TILES
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
#if !FL_HAS_MASK_REGS
        xy[j] = FN(tile_pick)(xp[j], xs, C, yv[j]);
        if (w) wy[j] = FN(class_pick)(w, yv[j]);
#endif
    }
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
#pragma GCC unroll 2
        for (int j = 0; j < NT; j++) {
            const VR xc = FL_TILE_LOAD(xp[j] + c * xs);
            const VR e = FN(sweep_exp)(xc - vm[j], with_g);
            if (with_g) FL_TILE_STORE(gp[j] + c * xs, e);
#if FL_HAS_MASK_REGS
            const FL_KMASK is_y = FL_LANE_EQ(yv[j], c);
            xy[j] = FL_KMOV(xy[j], is_y, xc);
            ey[j] = FL_KMOV(ey[j], is_y, e); /* exp(x_y - m): no second exp per tile */
            if (w) wy[j] = FL_KMOV(wy[j], is_y, FN(vsplat)(w[c]));
            vs[j] = FL_KADD(vs[j], (FL_KMASK)~is_y, vs[j], e);
#else
            vs[j] += FN(vselect)(yv[j] == (FL_XLANE)c, zero, e);
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
#if !FL_HAS_MASK_REGS
    /* e_y as the sweep would have computed it (the same function of the same x_y - m) */
#pragma GCC unroll 2
    for (int j = 0; j < NT; j++) {
        const VR dx = xy[j] - vm[j];
        const VR e = FN(sweep_exp)(dx, with_g);
        ey[j] = FN(vselect)(yv[j] < (FL_XLANE)0, FN(vsplat)((R)1), e);
    }
#endif
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
            FL_FLUSH_SUM(S, vs);
            FL_FLUSH_SUM(T, vT);
            FL_FLUSH_SUM(D, vD);
            blk = 0;
        }
    }
    S += vs;
    T += vT;
    D += vD;
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
        if (++blk == FL_FLUSH) {
            FL_FLUSH_SUM(S, vs);
            blk = 0;
        }
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

#undef FL_TILE_LOAD
#undef FL_TILE_STORE
#undef FL_FLUSH_SUM
