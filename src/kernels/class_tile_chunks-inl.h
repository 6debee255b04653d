/*
 * Class-axis chunk functions over tiles of L samples, for one (dtype, ISA) instantiation:
 * (N, C) inputs with C <= FL_SMALL_C, transposed into tiles (FN(ce_index_small_rows),
 * FN(ce_prob_small_rows), FN(softmax_small_rows)), and (N, C, d1..dk) inputs, whose tiles are
 * L consecutive positions (FN(ce_index_cols), FN(ce_prob_cols), FN(softmax_cols)); and their
 * helpers: the per-lane targets and gradient scales of a tile (FN(index_lanes)), per-lane
 * loss sums (FN(acc_lanes)), the sum of log S over tiles as one log of a product
 * (FN(logprod_t)), the (N, C, S) tile copies (FN(tile_copy_in), FN(tile_copy_out)).  The
 * sweeps over a tile are in class_tiles-inl.h.  No include guard on purpose.
 */

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

FL_INLINE FN(index_lanes_t)
    FN(index_lanes)(const fl_ce_args *a, const int64_t *tg, int64_t base, int64_t nl)
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
        r.skip = (VI) __builtin_convertvector(~use, FN(tile_lane_int_t));
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
#if FL_HAS_RAW_TILES
    /* the unshifted tiles' factors 1 + R reach C e^(2 FL_RAW_BOUND), not C: a product above
     * thr is flushed before the next factor can take it past the largest finite number */
    const double log2_factor = log2((double)(C > 2 ? C : 2)) + 2.0 * FL_RAW_BOUND / log(2.0);
    p.thr = (R)ldexp(1.0, (FL_IS_F32 ? 127 : 1023) - (int)ceil(log2_factor));
#else
    p.thr = (R)__builtin_inf();
#endif
    return p;
}
static inline void FN(logprod_flush)(FN(logprod_t) * p, double *acc)
{
    if (!p->n) return;
    FN(acc_lanes)(acc, FN(vlog1p_nonneg)(p->T));
    p->T = FN(vsplat)(0);
    p->n = 0;
}
static inline void FN(logprod_add)(FN(logprod_t) * p, double *acc, VR t)
{
    p->T = FN(log1p_prod_step)(p->T, t);
#if FL_HAS_RAW_TILES
    if (++p->n == p->G || FL_ANY_LT(FN(vsplat)(p->thr), p->T)) FN(logprod_flush)(p, acc);
#else
    if (++p->n == p->G) FN(logprod_flush)(p, acc);
#endif
}

/* The unit function `name` as four copies of the always-inlined name_(a, u0, u1, partial,
 * with_grad, defer): with a gradient or loss only (where the compiler drops the gradient
 * math), each with or without the deferred log S of FN(logprod_t). */
#define FL_GRAD_SPLIT(name)                                                         \
    static void FN(name)(const void *args, int64_t u0, int64_t u1, double *partial) \
    {                                                                               \
        const fl_ce_args *a_ = (const fl_ce_args *)args;                            \
        const int defer_ = !a_->loss_rows && !a_->weight && !a_->focal;             \
        if (a_->grad) {                                                             \
            if (defer_) FN(name##_)(a_, u0, u1, partial, 1, 1);                     \
            else FN(name##_)(a_, u0, u1, partial, 1, 0);                            \
        } else {                                                                    \
            if (defer_) FN(name##_)(a_, u0, u1, partial, 0, 1);                     \
            else FN(name##_)(a_, u0, u1, partial, 0, 0);                            \
        }                                                                           \
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
            loss = FN(ce_index_tile)(a, x, S, g, nl == L, nl, k.yv, k.skip, k.gs, defer ? &t : NULL,
                                     &raw_wait);
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
            if (with_grad) FN(tile_transpose_out)((R *)a->grad + b * C, xt[j], C, L);
            if (loss_rows) FN(vstore)(loss_rows + b, loss[j]);
            FN(acc_lanes)(acc, loss[j]);
            if (defer) FN(logprod_add)(&lp, acc, t[j]);
        }
    }
    for (; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        FN(tile_transpose_in)(xt[0], (const R *)a->x + base * C, C, C, nl);
        const FN(index_lanes_t) k = FN(index_lanes)(a, a->target + base, base, nl);
        const VR loss = FN(ce_index_tile)(a, xt[0], L, with_grad ? xt[0] : NULL, 1, L, k.yv, k.skip,
                                          k.gs, defer ? t : NULL, &raw_wait);
        if (with_grad) FN(tile_transpose_out)((R *)a->grad + base * C, xt[0], C, nl);
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
        if (g) FN(tile_transpose_out)(g, xt, C, nl);
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
            FN(tile_transpose_out)((R *)a->out + base * C, ot, C, nl);
        }
    }
    (void)partial;
}

#undef FL_GRAD_SPLIT
