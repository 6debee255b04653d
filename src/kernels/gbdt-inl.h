/*
 * Gradient-boosting objectives (fl_gbdt_args, fl_kernels.h): FN(gbdt_chunk) over rows
 * [r0, r1), for one (dtype, ISA) instantiation.  Per row the gradient g and the (diagonal)
 * Hessian h of the loss with respect to the raw scores, written into preallocated buffers in
 * one pass: read the scores and labels (and weights), write g and h.  No include guard on
 * purpose.  Formulas and their derivations: docs/numerics.md ("Gradient boosting").
 *
 * Elementwise ops (one score per row), with r = x - y and e = exp(-|x|):
 *   logloss        g = cn sigma(x) - cp sigma(-x), h = (cp + cn) sigma(x) sigma(-x),
 *                  cp = w_pos y, cn = w_neg (1 - y)  (both sigmoids from e: no cancellation)
 *   focal          p = sigma(z_t), q = sigma(-z_t), z_t = +-x by the label, f = q^gamma:
 *                  g = a_t s f (gamma p log p - q),
 *                  h = a_t p f ((2 gamma + 1) q + gamma log p (q - gamma p))   (may be < 0)
 *   huber          g = r or delta sign(r), h = 1 or 0;  pseudo_huber: v = r / delta,
 *                  g = r / sqrt(1 + v^2), h = (1 + v^2)^(-3/2);  poisson: g = e^x - y,
 *                  h = e^x;  gaussian: g = r / var, h = 1 / var.
 * Softmax ops: L rows at a time as a tile of K class vectors (class-major memory is read as
 * it is, row-major rows are transposed into a scratch tile, FN(tile_transpose_in)); per row
 * m = max x, e_k = exp(x_k - m), s = sum e_k and, kept apart, so = the sum over the classes
 * other than the label (1 - p_y = so / s without cancellation):
 *   softmax        g_k = p_k - [k == y], h_k = p_k (1 - p_k)
 *   softmax_focal  A = q^gamma (gamma p_y log p_y / q - 1), q = 1 - p_y,
 *                  B = gamma p_y q^gamma (log p_y (1 - gamma p_y) + 2 q),
 *                  g_k = ([k == y] - p_k) A,
 *                  h_k = -p_k (1 - p_k) A + r_k^2 B,  r_y = 1, r_k = p_k / q (k != y)
 *                  (the (1 - p_y)^(gamma - 2) of the Hessian is carried by r_k^2: finite as
 *                  p_y -> 1); log p_y = x_y - m - log s with log s = log1p(so) when the label
 *                  holds the maximum, so log p_y keeps its relative accuracy near 0.
 * Then h = max(h w factor, hess_min) (focal ops with bce_bound: h first raised to
 * f p (1 - p), the cross entropy's Hessian weighted by the focal factor), g = g w, and both
 * times scale.
 */

#if !FL_IS_F32
typedef float FN(gb_vf) __attribute__((vector_size(FL_VBYTES / 2)));
#endif

/* the first n lanes of v into element i of p: R, or float when out_f32 (float64 only) */
static inline void FN(gb_store)(void *p, int out_f32, int64_t i, VR v, int64_t n)
{
#if !FL_IS_F32
    if (out_f32) {
        const FN(gb_vf) f = __builtin_convertvector(v, FN(gb_vf));
        float *d = (float *)p + i;
        if (n == L) memcpy(d, &f, sizeof f);
        else
            for (int64_t l = 0; l < n; l++) d[l] = f[l];
        return;
    }
#else
    (void)out_f32;
#endif
    if (n == L) FN(vstore)((R *)p + i, v);
    else FN(vstore_part)((R *)p + i, v, n);
}

static inline VR FN(gb_load)(const R *p, int64_t n)
{
    return n == L ? FN(vload)(p) : FN(vload_part)(p, n, 0);
}

/* sqrt lane by lane (the compiler makes one vector instruction of it) */
static inline VR FN(gb_sqrt)(VR v)
{
    VR r;
    for (int l = 0; l < FL_LANES; l++) r[l] = FL_IS_F32 ? sqrtf((float)v[l]) : sqrt(v[l]);
    return r;
}

/* q^gamma for q in [0, 1], given log q (used only for gamma other than 0, 1, 2) */
static inline VR FN(gb_pow)(VR q, VR logq, R gamma)
{
    if (gamma == 0) return FN(vsplat)((R)1);
    if (gamma == 1) return q;
    if (gamma == 2) return q * q;
    return FN(vselect)(q == 0, FN(vsplat)(0), FN(vexp)(gamma * logq));
}

/* g and h of one vector of rows before the weights (op a compile-time constant); lanes with
 * an invalid label are set in *bad */
FL_INLINE void FN(gb_point)(const fl_gbdt_args *a, const int op, VR x, VR y, VR *g, VR *h, VI *bad)
{
    const VR one = FN(vsplat)((R)1), zero = FN(vsplat)(0);
    if (op == FL_GBDT_LOGLOSS) {
        const VR e = FN(vexp_nonpos)(FN(neg_abs)(x));
        VR sp, sn;
        FN(sigmoids)(x, e, &sp, &sn);
        const VR cp = (R)a->p1 * y, cn = (R)a->p2 * (one - y);
        *g = cn * sp - cp * sn;
        *h = (cp + cn) * (sp * sn);
    } else if (op == FL_GBDT_FOCAL) {
        const R alpha = (R)a->p1, gamma = (R)a->p2;
        const VI pos = y == one;
        *bad |= ~(pos | (y == zero));
        const VR zt = FN(vselect)(pos, x, -x);
        const VR e = FN(vexp_nonpos)(FN(neg_abs)(x)), lg = FN(vlog1p_unit)(e);
        VR p, q;
        FN(sigmoids)(zt, e, &p, &q);
        /* log p = -softplus(-z_t), log q = -softplus(z_t) */
        const VR logp = -(FL_MAX_OR_B(-zt, zero) + lg), logq = -(FL_MAX_OR_B(zt, zero) + lg);
        const VR f = FN(gb_pow)(q, logq, gamma);
        const VR at = alpha >= 0 ? FN(vselect)(pos, FN(vsplat)(alpha), FN(vsplat)(1 - alpha)) : one;
        const VR sgn = FN(vselect)(pos, one, -one);
        /* p log p and p (...) with an exact 0 where p == 0 (x = -+inf: log p = -inf) */
        *g = at * sgn * f * (gamma * FN(zmul)(p, logp) - q);
        VR hh = at * f * FN(zmul)(p, ((R)(2 * gamma + 1)) * q + gamma * logp * (q - gamma * p));
        if (a->bce_bound) {
            const VR fl = at * f * (p * q);
            hh = FN(vselect)(hh < fl, fl, hh);
        }
        *h = hh;
    } else if (op == FL_GBDT_HUBER) {
        const VR r = x - y, d = FN(vsplat)((R)a->p1);
        const VI in = FN(vabs)(r) <= d;
        *g = FN(vselect)(in, r, FN(vselect)(r < 0, -d, d));
        *h = FN(vselect)(in, one, zero);
    } else if (op == FL_GBDT_PSEUDO_HUBER) {
        /* v clamped so that v^2 stays finite: g -> delta sign(r) there anyway */
        const VR big = FN(vsplat)((R)(FL_IS_F32 ? 1e18 : 1e150));
        const R delta = (R)a->p1;
        VR v = (x - y) * (1 / delta);
        v = FL_MAX_OR_B(-big, FL_MIN_OR_B(big, v));
        const VR u = one + v * v, sq = FN(gb_sqrt)(u);
        *g = delta * v / sq;
        *h = one / (u * sq);
    } else if (op == FL_GBDT_POISSON) {
        const VR ex = FN(vexp)(x);
        *g = ex - y;
        *h = ex;
    } else { /* FL_GBDT_GAUSSIAN: p1 = 1 / variance */
        *g = (x - y) * (R)a->p1;
        *h = FN(vsplat)((R)a->p1);
    }
}

FL_INLINE void FN(gb_points)(const fl_gbdt_args *args, int64_t i0, int64_t i1, double *partial,
                             const int op)
{
    const fl_gbdt_args local = *args, *a = &local;
    const R *x = (const R *)a->x, *y = (const R *)a->y, *w = (const R *)a->weight;
    const VR hmin = FN(vsplat)((R)a->hess_min), sc = FN(vsplat)((R)a->scale);
    const int scaled = a->scale != 1, of = a->out_f32;
    VI bad = (VI)FN(vsplat)(0);
    for (int64_t i = i0; i < i1; i += L) {
        const int64_t n = i1 - i < L ? i1 - i : L;
        VR g, h;
        FN(gb_point)(a, op, FN(gb_load)(x + i, n), FN(gb_load)(y + i, n), &g, &h, &bad);
        if (w) {
            const VR wv = FN(gb_load)(w + i, n);
            g *= wv;
            h *= wv;
        }
        h = FN(vselect)(h < hmin, hmin, h); /* NaN stays NaN */
        if (scaled) {
            g *= sc;
            h *= sc;
        }
        FN(gb_store)(a->grad, of, i, g, n);
        FN(gb_store)(a->hess, of, i, h, n);
    }
    *partial = FN(vany)(bad) ? (double)__builtin_nan("") : 0.0;
}

/* class k of a tile: class-major rows (stride xs = n, nl rows) or the transposed tile */
static inline VR FN(gb_col)(const R *xt, int64_t k, int64_t xs, int64_t nl)
{
    return FN(gb_load)(xt + k * xs, nl);
}

/* row-major output of a tile: the tile t (K x L) transposed into rows i.., as R or float */
static inline void FN(gb_tile_out)(void *p, int out_f32, int64_t i, int64_t K, const R *t,
                                   int64_t nl)
{
#if !FL_IS_F32
    if (out_f32) {
        float *d = (float *)p + i * K;
        for (int64_t l = 0; l < nl; l++)
            for (int64_t k = 0; k < K; k++) d[l * K + k] = (float)t[k * L + l];
        return;
    }
#else
    (void)out_f32;
#endif
    FN(tile_transpose_out)((R *)p + i * K, t, K, nl);
}

#define FL_GB_STACK_K 64
#define FL_GB_MAGIC   ((R)(FL_IS_F32 ? 12582912.0 : 6755399441055744.0)) /* 1.5 * 2^mantissa */

FL_INLINE void FN(gb_softmax)(const fl_gbdt_args *args, int64_t r0, int64_t r1, double *partial,
                              const int focal)
{
    const fl_gbdt_args local = *args, *a = &local;
    const int64_t n = a->n, K = a->K;
    const R *x = (const R *)a->x, *y = (const R *)a->y;
    const R *sw = (const R *)a->weight, *cw = (const R *)a->class_weight;
    const R gamma = (R)a->p2, factor = (R)a->hess_factor;
    const VR one = FN(vsplat)((R)1), zero = FN(vsplat)(0), magic = FN(vsplat)(FL_GB_MAGIC);
    const VR hmin = FN(vsplat)((R)a->hess_min), sc = FN(vsplat)((R)a->scale);
    const int scaled = a->scale != 1, of = a->out_f32, bce = a->bce_bound;
    const int xcm = a->x_class_major, ocm = a->out_class_major;
    R stack[4 * FL_GB_STACK_K * FL_LANES] __attribute__((aligned(64)));
    R *E = stack;
    if (K > FL_GB_STACK_K && !(E = (R *)malloc((size_t)(4 * K * L) * sizeof(R)))) {
        *a->failed = 1;
        *partial = (double)__builtin_nan("");
        return;
    }
    R *X = E + K * L, *G = X + K * L, *H = G + K * L;
    int bad = 0;
    for (int64_t i = r0; i < r1; i += L) {
        const int64_t nl = r1 - i < L ? r1 - i : L;
        /* labels (-1: none, for padding lanes and invalid labels) and row weights: a label
         * is valid when in [0, K) and integral (equal to itself rounded by the magic-number
         * addition, exact below 2^22; fl_gbdt's callers keep K below that) */
        const VR yraw = FN(gb_load)(y + i, nl);
        const VI lane = FN(viota)() < (FL_XLANE)nl;
        const VI ok = lane & (yraw >= 0) & (yraw < (R)K) & (((yraw + magic) - magic) == yraw);
        bad |= FN(vany)(lane & ~ok);
        const VR yv = FN(vselect)(ok, yraw, -one);
        VR wv = sw ? FN(gb_load)(sw + i, nl) : one;
        if (cw) {
            R wl[FL_LANES];
            for (int64_t l = 0; l < L; l++) wl[l] = ok[l] ? cw[(int64_t)yv[l]] : 0;
            wv *= FN(vload)(wl);
        }
        wv = FN(vand)(ok, wv);
        const VR hw = wv * factor;
        const R *xt = x + i;
        int64_t xs = n;
        if (!xcm) {
            FN(tile_transpose_in)(X, x + i * K, K, K, nl);
            xt = X;
            xs = L;
        }
        const int64_t cl = xcm ? nl : L; /* lanes to load */
        VR m = FN(gb_col)(xt, 0, xs, cl);
        for (int64_t k = 1; k < K; k++) m = FN(vmax)(m, FN(gb_col)(xt, k, xs, cl));
        VR s = zero, so = zero, ey = zero, dy = zero;
        for (int64_t k = 0; k < K; k++) {
            const VR d = FN(gb_col)(xt, k, xs, cl) - m, e = FN(vexp_nonpos)(d);
            const VI yk = yv == (R)k;
            FN(vstore)(E + k * L, e);
            s += e;
            so += FN(vselect)(yk, zero, e);
            if (focal) {
                ey += FN(vand)(yk, e);
                dy += FN(vand)(yk, d);
            }
        }
        const VR inv = one / s;
        VR A = zero, B = zero, q = zero, f = one, rinv = zero;
        if (focal) {
            const VR py = ey * inv;
            q = so * inv;
            /* log s: log1p(so) when the label holds the maximum (e_y = 1) */
            const VR ls = FN(vselect)(ey == one, FN(vlog1p)(so), FN(vlog)(s));
            const VR lp = dy - ls;
            const VI none = so == 0;
            f = gamma == 0 || gamma == 1 || gamma == 2
                    ? FN(gb_pow)(q, zero, gamma)
                    : FN(vselect)(none, zero, FN(vexp)(gamma * (FN(vlog)(so) - ls)));
            const VR lpq = FN(vselect)(none, -one, lp / q); /* log p / q -> -1 as q -> 0 */
            A = f * (gamma * py * lpq - one);
            B = gamma * py * f * (lp * (one - gamma * py) + (q + q));
            rinv = FN(vselect)(none, zero, one / so);
        }
        for (int64_t k = 0; k < K; k++) {
            const VR e = FN(vload)(E + k * L), p = e * inv;
            const VI yk = yv == (R)k;
            const VR omp = FN(vselect)(yk, so * inv, one - p); /* 1 - p_k */
            VR g, h;
            if (focal) {
                g = FN(vselect)(yk, q, -p) * A;
                const VR r = FN(vselect)(yk, one, e * rinv);
                h = r * r * B - p * omp * A;
                if (bce) {
                    const VR fl = f * (p * omp);
                    h = FN(vselect)(h < fl, fl, h);
                }
            } else {
                g = FN(vselect)(yk, -omp, p);
                h = p * omp;
            }
            g *= wv;
            h *= hw;
            h = FN(vselect)(h < hmin, hmin, h);
            if (scaled) {
                g *= sc;
                h *= sc;
            }
            if (ocm) {
                FN(gb_store)(a->grad, of, k * n + i, g, nl);
                FN(gb_store)(a->hess, of, k * n + i, h, nl);
            } else {
                FN(vstore)(G + k * L, g);
                FN(vstore)(H + k * L, h);
            }
        }
        if (!ocm) {
            FN(gb_tile_out)(a->grad, of, i, K, G, nl);
            FN(gb_tile_out)(a->hess, of, i, K, H, nl);
        }
    }
    if (E != stack) free(E);
    *partial = bad ? (double)__builtin_nan("") : 0.0;
}
#undef FL_GB_STACK_K
#undef FL_GB_MAGIC

static void FN(gbdt_chunk)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_gbdt_args *a = (const fl_gbdt_args *)args;
    switch (a->op) {
    case FL_GBDT_LOGLOSS:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_LOGLOSS);
        break;
    case FL_GBDT_FOCAL:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_FOCAL);
        break;
    case FL_GBDT_HUBER:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_HUBER);
        break;
    case FL_GBDT_PSEUDO_HUBER:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_PSEUDO_HUBER);
        break;
    case FL_GBDT_POISSON:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_POISSON);
        break;
    case FL_GBDT_GAUSSIAN:
        FN(gb_points)(a, u0, u1, partial, FL_GBDT_GAUSSIAN);
        break;
    case FL_GBDT_SOFTMAX:
        FN(gb_softmax)(a, u0, u1, partial, 0);
        break;
    case FL_GBDT_SOFTMAX_FOCAL:
        FN(gb_softmax)(a, u0, u1, partial, 1);
        break;
    default:
        *partial = (double)__builtin_nan("");
    }
}
