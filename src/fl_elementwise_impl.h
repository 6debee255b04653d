/*
 * Elementwise losses for one (dtype, ISA) instantiation.  No include guard on purpose.
 *
 * Each loss states its math once, as an inline vector function
 *     FN(ew_<loss>)(a, x, t, w, pw, p0, p1, &loss, &grad, &bad)
 * returning the per-element loss and d loss / d x (before the reduction scale); p0, p1 are
 * its logs / exps, computed ahead over a block by FN(pre0_<loss>) / FN(pre1_<loss>).  One
 * generic loop (FN(ew_loop), always inlined with the loss function as a constant) handles
 * weights, tails, gradient scaling, per-element outputs and the float64 partial sums.
 *
 * Numerics:
 *  - softplus(z) = max(z, 0) + log1p(exp(-|z|)) and the sigmoids are built from the single
 *    e = exp(-|x|): sigma(|x|) = 1/(1+e), sigma(-|x|) = e/(1+e) (tiny values stay accurate).
 *  - A term whose target coefficient is 0 contributes exactly 0, so x = +-inf with an
 *    agreeing target gives loss 0 and gradient 0 (torch's composed formula gives NaN).
 *  - Sigmoid focal loss: with q = 1 - p_t the gradient needs gamma q^(gamma-1) p (1-p);
 *    it is formed as gamma q^gamma * r with r = p (1-p) / q <= 1 (r = 1 at q = 0), so
 *    (1-p_t)^(gamma-1) never appears and every gamma >= 0 stays finite at saturation.
 */

#define VR FL_VR
#define VI FL_VI
#define VX FL_VX
#define R FL_REAL
#define L FL_LANES

/* (p0, p1): the transcendental parts of the loss, computed ahead over a block of vectors by
 * its pre functions, p0 = pre0(x, t) and then p1 = pre1(x, t, p0) (see FN(ew_loop)); zeros
 * for losses without them */
typedef void (*FN(ew_fn))(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1, VR *loss,
                          VR *grad, VI *bad);
typedef VR (*FN(ew_pre_fn))(VR x, VR t, VR p0);

/* e = exp(-|x|); returns sigma(x) and sigma(-x) */
static inline void FN(sigmoids)(VR x, VR e, VR *sig_pos, VR *sig_neg)
{
    const VR big = FN(vsplat)((R)1) / (e + (R)1), small = e * big;
    const VI neg = x < 0;
    *sig_pos = FN(vselect)(neg, small, big);
    *sig_neg = FN(vselect)(neg, big, small);
}

/* -|x| by setting the sign bit (NaN stays NaN) */
static inline VR FN(neg_abs)(VR x)
{
    return (VR)((VI)x | FN(vsplat_i)(FL_IS_F32 ? (int64_t)INT32_MIN : INT64_MIN));
}

/* |x| by clearing the sign bit */
static inline VR FN(vabs)(VR x)
{
    return (VR)((VI)x & FN(vsplat_i)(FL_IS_F32 ? (int64_t)INT32_MAX : INT64_MAX));
}

/* coef * value, with an exact 0 where coef == 0 (even if value is inf) */
static inline VR FN(zmul)(VR coef, VR value)
{
#ifdef FL_ZMUL
    return FL_ZMUL(coef, value);
#else
    return FN(vselect)(coef == 0, FN(vsplat)(0), coef * value);
#endif
}

/* cp max(-x, 0) + cn max(x, 0) as one product: only one of the two is nonzero, so it is
 * |x| times cp (x < 0) or cn (x >= 0), with an exact 0 where that coefficient is 0 (x = +-inf
 * with an agreeing target) */
static inline VR FN(relu_coef)(VR x, VR cp, VR cn) { return FN(vselect)(x < 0, cp, cn); }
static inline VR FN(relu_terms)(VR x, VR cp, VR cn)
{
    return FN(zmul)(FN(relu_coef)(x, cp, cn), FN(vabs)(x));
}

/* e = exp(-|x|), then log1p(e): shared by the logistic losses */
static inline VR FN(pre0_logistic)(VR x, VR t, VR unused)
{
    (void)t; (void)unused;
    return FN(vexp_nonpos)(FN(neg_abs)(x));
}
static inline VR FN(pre1_logistic)(VR x, VR t, VR e)
{
    (void)x; (void)t;
    return FN(vlog1p_unit)(e);
}

static inline void FN(ew_bce_logits_full)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e,
                                          VR lg, VR *loss, VR *grad, VI *bad)
{
    const VR one = FN(vsplat)((R)1);
    VR s_pos, s_neg;
    FN(sigmoids)(x, e, &s_pos, &s_neg);
    const VR cp = pw * t, cn = one - t;
    /* x = NaN stays NaN even where both coefficients are 0 (pos_weight = 0, t = 1) */
    const VI xnan = x != x;
    /* cp softplus(-x) + cn softplus(x), softplus(+-x) = max(+-x, 0) + log1p(e); lg is finite,
     * so only the max terms need the exact 0 of a zero coefficient */
    *loss = FN(vselect)(xnan, x, w * (lg * (cp + cn) + FN(relu_terms)(x, cp, cn)));
    /* the sigmoids are finite: plain products */
    *grad = FN(vselect)(xnan, x, w * (cn * s_pos - cp * s_neg));
    (void)a; (void)bad;
}

/* BCE with logits without weights and pos_weight, when only the sum of the losses is wanted:
 * the loss minus its log1p(e) term (whose coefficient t + (1 - t) is then 1); FN(ew_loop)
 * adds the log1p(e) of many elements as the log of their product (logprod) */
static inline void FN(ew_bce_logits_lin)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e,
                                         VR unused, VR *loss, VR *grad, VI *bad)
{
    const VR one = FN(vsplat)((R)1);
    VR s_pos, s_neg;
    FN(sigmoids)(x, e, &s_pos, &s_neg);
    const VR cn = one - t;
    const VI xnan = x != x;
    *loss = FN(vselect)(xnan, x, FN(relu_terms)(x, t, cn));
    /* the sigmoids are finite: plain products */
    *grad = FN(vselect)(xnan, x, cn * s_pos - t * s_neg);
    (void)a; (void)w; (void)pw; (void)bad; (void)unused;
}

/* gamma_fixed >= 0: a compile-time gamma (the loop is specialised for torchvision's default
 * gamma = 2, so its tests leave the loop); < 0: read gamma from the arguments */
FL_INLINE void FN(sigmoid_focal_impl)(const fl_ew_args *a, VR x, VR t, VR e, VR lg, VR *loss,
                                      VR *grad, const R gamma_fixed, const int loss_only)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    const R alpha = (R)a->p1, gamma = gamma_fixed >= 0 ? gamma_fixed : (R)a->p2;
    VR p, pn;
    FN(sigmoids)(x, e, &p, &pn);
    const VR cn = one - t;
    /* ca, cb: the coefficients of sigma(|x|) = 1 / (1 + e) and of sigma(-|x|) = e / (1 + e)
     * in 1 - p_t = t sigma(-x) + (1 - t) sigma(x); ca is also the coefficient of |x| in
     * t max(-x, 0) + (1 - t) max(x, 0) */
    const VR ca = FN(relu_coef)(x, t, cn), cb = FN(relu_coef)(x, cn, t);
    /* t softplus(-x) + (1 - t) softplus(x), whose log1p(e) terms have coefficient 1 (the
     * max terms select ca again: the compiler shares the select) */
    const VR ce = lg + FN(relu_terms)(x, t, cn);
    /* loss only: sigma(|x|) (ca + cb e), without sigma(-|x|) itself (one multiply fewer);
     * the gradient needs both sigmoids anyway */
    const VR sig_abs = FN(relu_coef)(x, pn, p); /* 1 / (1 + e) */
    const VR q = loss_only ? sig_abs * (ca + cb * e) : t * pn + cn * p;
    VR f;                                                /* q^gamma, 0^0 = 1 */
    if (gamma == 0) f = one;
    else if (gamma == 1) f = q;
    else if (gamma == 2) f = q * q;
    else f = FN(vselect)(q == 0, zero, FN(vexp)(gamma * FN(vlog)(q)));
    VR r = p * pn / q;                                   /* p (1-p) / q in [0, 1] */
    r = FN(vselect)(q == 0, one, r);
    const VR tilt = FN(zmul)(r, gamma * ce * (one - 2 * t));
    /* alpha t + (1 - alpha)(1 - t), or 1 for alpha < 0 (no weighting): one FMA, no branch */
    const R a0 = alpha >= 0 ? 1 - alpha : 1, a1 = alpha >= 0 ? 2 * alpha - 1 : 0;
    const VR at = a0 + a1 * t;
    /* f == 0 only where q == 0 (then ce is finite: the infinite softplus has coefficient 0)
     * or q^gamma underflows (ce is then tiny): no 0 * inf to guard against */
    *loss = at * (f * ce);
    /* p - t written as (1-t) p - t (1-p): no cancellation when p rounds to 1 */
    *grad = at * f * ((cn * p - t * pn) + tilt);
}
#define FL_SIGMOID_FOCAL_FN(name, gamma_fixed, loss_only)                                  \
    static inline void FN(name)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e, VR lg,   \
                                VR *loss, VR *grad, VI *bad)                                 \
    {                                                                                        \
        FN(sigmoid_focal_impl)(a, x, t, e, lg, loss, grad, (R)(gamma_fixed), loss_only);     \
        (void)w; (void)pw; (void)bad;                                                        \
    }
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_any, -1, 0)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_any_loss, -1, 1)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_g2, 2, 0)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_g2_loss, 2, 1)
#undef FL_SIGMOID_FOCAL_FN

/* log x, log1p(-x) */
static inline VR FN(pre0_bce)(VR x, VR t, VR unused)
{
    (void)t; (void)unused;
    return FN(vlog)(x);
}
static inline VR FN(pre1_bce)(VR x, VR t, VR lx)
{
    (void)t; (void)lx;
    return FN(vlog1p)(-x);
}
static inline void FN(ew_bce)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR lx, VR l1x,
                              VR *loss, VR *grad, VI *bad)
{
    /* torch: loss = (t - 1) max(log1p(-x), -100) - t max(log x, -100),
     *        grad = (x - t) / max((1 - x) x, 1e-12f) */
    const VR one = FN(vsplat)((R)1), clamp = FN(vsplat)((R)-100);
    const VR lxc = FN(vselect)(lx < clamp, clamp, lx);
    const VR l1xc = FN(vselect)(l1x < clamp, clamp, l1x);
    *loss = w * ((t - one) * l1xc - t * lxc);
    VR den = (one - x) * x;
    const VR eps = FN(vsplat)((R)(double)1e-12f);
    den = FN(vselect)(den < eps, eps, den);
    *grad = w * (x - t) / den;
    *bad |= ~((x >= 0) & (x <= one)); /* outside [0, 1], or NaN */
    (void)a; (void)pw;
}

static inline void FN(ew_mse)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                              VR *loss, VR *grad, VI *bad)
{
    const VR d = x - t;
    *loss = d * d;
    *grad = 2 * d;
    (void)a; (void)w; (void)pw; (void)bad; (void)p0; (void)p1;
}

static inline VR FN(vsign)(VR d)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    VR s = FN(vselect)(d > 0, one, FN(vselect)(d < 0, -one, zero));
    return FN(vselect)(d != d, d, s); /* NaN stays NaN */
}

static inline void FN(ew_l1)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                             VR *loss, VR *grad, VI *bad)
{
    const VR d = x - t;
    *loss = FN(vabs)(d);
    *grad = FN(vsign)(d);
    (void)a; (void)w; (void)pw; (void)bad; (void)p0; (void)p1;
}

static inline void FN(ew_smooth_l1)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                                    VR *loss, VR *grad, VI *bad)
{
    const R beta = (R)a->p1;
    const VR d = x - t, z = FN(vabs)(d);
    if (beta == 0) {
        *loss = z;
        *grad = FN(vsign)(d);
    } else {
        const VI quad = z < beta;
        *loss = FN(vselect)(quad, (R)0.5 * d * d / beta, z - (R)0.5 * beta);
        *grad = FN(vselect)(quad, d / beta, FN(vsign)(d));
    }
    (void)w; (void)pw; (void)bad; (void)p0; (void)p1;
}

static inline void FN(ew_huber)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                                VR *loss, VR *grad, VI *bad)
{
    const R delta = (R)a->p1;
    const VR d = x - t, z = FN(vabs)(d);
    const VI quad = z < delta;
    *loss = FN(vselect)(quad, (R)0.5 * d * d, delta * (z - (R)0.5 * delta));
    *grad = FN(vselect)(quad, d, delta * FN(vsign)(d));
    (void)w; (void)pw; (void)bad; (void)p0; (void)p1;
}

static inline VR FN(pre0_kl_div)(VR x, VR t, VR unused)
{
    (void)x; (void)unused;
    return FN(vlog)(t);
}
static inline void FN(ew_kl_div)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR lt, VR unused,
                                 VR *loss, VR *grad, VI *bad)
{
    /* t (log t - x), 0 where t == 0 (unless x is NaN); NaN for t < 0 */
    const VR v = t * (lt - x);
    *loss = FN(vselect)((t == 0) & (x == x), FN(vsplat)(0), v);
    *grad = -t;
    (void)a; (void)w; (void)pw; (void)bad; (void)unused;
}

static inline VR FN(pre0_kl_div_log_target)(VR x, VR t, VR unused)
{
    (void)x; (void)unused;
    return FN(vexp)(t);
}
static inline void FN(ew_kl_div_log_target)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR et,
                                            VR unused, VR *loss, VR *grad, VI *bad)
{
    /* exp(t) (t - x), 0 where exp(t) == 0 (unless x is NaN) */
    *loss = FN(vselect)((et == 0) & (x == x), FN(vsplat)(0), et * (t - x));
    *grad = -et;
    (void)a; (void)w; (void)pw; (void)bad; (void)unused;
}

/* Vectors per block of FN(ew_loop).  A loss with a "pre" function (logs, exps) gets it run
 * over the whole block first, then the rest of its formula per vector: one vector's complete
 * formula is a dependency chain of ~80 operations, longer than the out-of-order window can
 * overlap, whereas short independent chains back to back keep the FP pipes busy (sigmoid
 * focal float64, loss only: 34 -> 27 ms per 8.4M elements on one Zen 4 core). */

/* logprod (a compile-time 0 or 1): the losses f returns leave out a term log1p(p0) with
 * coefficient 1, and the loop adds those terms as the log of their product
 * (FN(log1p_prod_step)): one log1p(T) per FL_FLUSH vectors (1 + T <= 2^64) instead of one
 * log per vector */
static inline __attribute__((always_inline)) void
FN(ew_loop)(const fl_ew_args *args, int64_t i0, int64_t i1, double *partial, FN(ew_fn) f,
            const int with_grad, FN(ew_pre_fn) pre0, FN(ew_pre_fn) pre1, const int logprod)
{
    /* a private copy: the loss parameters (alpha, gamma, ...) cannot alias the output
     * stores, so the compiler need not reload them after every store */
    const fl_ew_args local = *args, *a = &local;
    const R *x = (const R *)a->x, *t = (const R *)a->target;
    const R *w = (const R *)a->weight, *pw = (const R *)a->pos_weight;
    const R *gsr = (const R *)a->grad_scale_rows;
    R *g = with_grad ? (R *)a->grad : NULL, *lr = (R *)a->loss_rows;
    const R gs = (R)a->grad_scale;
    const VR one = FN(vsplat)((R)1), zero = FN(vsplat)(0);
    const VX iota = FN(viota)();
    /* segments never cross a period boundary of weight/pos_weight, so inside a segment the
     * weights are contiguous too */
    int64_t period = INT64_MAX;
    if (w && a->weight_period < period) period = a->weight_period;
    if (pw && a->pos_weight_period < period) period = a->pos_weight_period;
    VR acc = zero, T = zero;
    VI bad = (VI)zero;
    double total = 0.0;
    int blk = 0;
    for (int64_t s0 = i0; s0 < i1;) {
        const int64_t j = period == INT64_MAX ? 0 : s0 % period;
        int64_t s1 = period == INT64_MAX ? i1 : s0 + (period - j);
        if (s1 > i1) s1 = i1;
        const R *ws = w ? w + s0 % a->weight_period : NULL;
        const R *pws = pw ? pw + s0 % a->pos_weight_period : NULL;
        for (int64_t b0 = s0; b0 < s1; b0 += FL_EW_BLOCK * L) {
            const int64_t b1 = s1 - b0 < FL_EW_BLOCK * L ? s1 : b0 + FL_EW_BLOCK * L;
#define FL_N(i) (b1 - (i) < L ? b1 - (i) : L)
#define FL_LD(p, n, fill) ((n) == L ? FN(vload)(p) : FN(vload_part)((p), (n), (fill)))
            /* each pre function as its own loop over the block: chains of one kind back to
             * back (all exps, then all logs) */
            VR p0[FL_EW_BLOCK], p1[FL_EW_BLOCK];
#define FL_PRE_LOOP(out, fn, prev)                                                         \
    for (int64_t i = b0, k = 0; i < b1; i += L, k++)                                       \
        out[k] = fn(FL_LD(x + i, FL_N(i), (R)0.5), FL_LD(t + i, FL_N(i), (R)0.5), prev)
            if (pre0) FL_PRE_LOOP(p0, pre0, zero);
            if (pre1) FL_PRE_LOOP(p1, pre1, p0[k]);
#undef FL_PRE_LOOP
            for (int64_t i = b0, k = 0; i < b1; i += L, k++) {
                const int64_t n = FL_N(i), o = i - s0;
                const int full = n == L;
                const VR xv = FL_LD(x + i, n, (R)0.5), tv = FL_LD(t + i, n, (R)0.5);
                const VR wv = ws ? FL_LD(ws + o, n, 0) : one;
                const VR pwv = pws ? FL_LD(pws + o, n, 0) : one;
                VR lv, gv;
                VI bv = (VI)zero;
                f(a, xv, tv, wv, pwv, pre0 ? p0[k] : zero, pre1 ? p1[k] : zero, &lv, &gv, &bv);
                VR lp = logprod ? p0[k] : zero;
                if (!full) {
                    const VI valid = iota < (FL_XLANE)n;
                    lv = FN(vselect)(valid, lv, zero);
                    if (logprod) lp = FN(vselect)(valid, lp, zero);
                    bv &= valid;
                }
                if (logprod) T = FN(log1p_prod_step)(T, lp);
                bad |= bv;
                acc += lv;
                if (lr) {
                    if (full) FN(vstore)(lr + i, lv); else FN(vstore_part)(lr + i, lv, n);
                }
                if (g) {
                    gv *= gsr ? FL_LD(gsr + i, n, 0) : FN(vsplat)(gs);
                    if (full) FN(vstore)(g + i, gv); else FN(vstore_part)(g + i, gv, n);
                }
                if (++blk == FL_FLUSH) {
                    if (logprod) {
                        acc += FN(vlog1p_nonneg)(T);
                        T = zero;
                    }
                    total += FN(hsum)(acc);
                    acc = zero;
                    blk = 0;
                }
            }
#undef FL_LD
#undef FL_N
        }
        s0 = s1;
    }
    if (logprod && blk) acc += FN(vlog1p_nonneg)(T);
    total += FN(hsum)(acc);
    *partial = FN(vany)(bad) ? (double)__builtin_nan("") : total;
}

/* two copies of each loop: with a gradient, and loss only (where the compiler drops the
 * gradient math altogether; f_loss may also compute the loss another way) */
#define FL_EW_CHUNK2(name, f_grad, f_loss, pre0, pre1)                                     \
    static void FN(name##_chunk)(const void *args, int64_t i0, int64_t i1, double *partial) \
    {                                                                                      \
        const fl_ew_args *a_ = (const fl_ew_args *)args;                                   \
        if (a_->grad) FN(ew_loop)(a_, i0, i1, partial, f_grad, 1, pre0, pre1, 0);          \
        else FN(ew_loop)(a_, i0, i1, partial, f_loss, 0, pre0, pre1, 0);                   \
    }
#define FL_EW_CHUNK(name, pre0, pre1) FL_EW_CHUNK2(name, FN(ew_##name), FN(ew_##name), pre0, pre1)
FL_EW_CHUNK(bce_logits_full, FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(sigmoid_focal_g2, FN(ew_sigmoid_focal_g2), FN(ew_sigmoid_focal_g2_loss),
             FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(sigmoid_focal_any, FN(ew_sigmoid_focal_any), FN(ew_sigmoid_focal_any_loss),
             FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(bce_plain, FN(ew_bce), FN(ew_bce), FN(pre0_bce), FN(pre1_bce))
FL_EW_CHUNK(mse, NULL, NULL)
FL_EW_CHUNK(l1, NULL, NULL)
FL_EW_CHUNK(smooth_l1, NULL, NULL)
FL_EW_CHUNK(huber, NULL, NULL)
FL_EW_CHUNK(kl_div, FN(pre0_kl_div), NULL)
FL_EW_CHUNK(kl_div_log_target, FN(pre0_kl_div_log_target), NULL)
#undef FL_EW_CHUNK
#undef FL_EW_CHUNK2

/* BCE on probabilities, only the sum wanted (no weights, no per-element losses or gradient
 * scales): in a window of FL_BCE_WIN elements whose targets are all exactly 0 or 1, every
 * term is -max(log q, -100) with q = x (t = 1) or 1 - x (t = 0), and the terms of
 * FL_BCE_GROUP vectors are taken, per lane, as one log of their product
 * P = prod max(q, e^-100) instead of two logs per element.  Where P > 1/2 its log is
 * log1p(-D) with D = 1 - P summed as D += d P_before (d = 1 - q: 1 - x for t = 1, x for t = 0;
 * every term >= 0), so confident predictions keep their relative accuracy; elsewhere
 * |log P| >= log 2 and P's few roundings stay a few ulp of it.  Double: P >= e^-400 is always
 * normal; float: a group whose P is not (an x below about 1e-38 somewhere) takes the
 * per-element formula, as do windows with other targets and the tail.  Windows start at
 * multiples of FL_BCE_WIN (fl_run's chunks do), so results do not depend on threads. */

/* are all of t[0 .. FL_BCE_WIN) exactly 0 or 1? (stops at the first block that is not) */
static inline int FN(bce_hard_window)(const R *t)
{
    const VR one = FN(vsplat)((R)1), zero = FN(vsplat)(0);
    for (int64_t i = 0; i < FL_BCE_WIN; i += 8 * L) {
        VI ok = ~(VI)zero;
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const VR tv = FN(vload)(t + i + k * L);
            ok &= (tv == zero) | (tv == one);
        }
        if (FN(vany)(~ok)) return 0;
    }
    return 1;
}

static inline __attribute__((always_inline)) void
FN(bce_sum_loop)(const fl_ew_args *args, int64_t i0, int64_t i1, double *partial,
                 const int with_grad)
{
    const fl_ew_args local = *args, *a = &local;
    const R *x = (const R *)a->x, *t = (const R *)a->target;
    R *g = with_grad ? (R *)a->grad : NULL;
    const VR one = FN(vsplat)((R)1), zero = FN(vsplat)(0), gs = FN(vsplat)((R)a->grad_scale);
    const VR q_min = FN(vsplat)((R)3.7200759760208361e-44); /* e^-100: log clamped at -100 */
    const VR half = FN(vsplat)((R)0.5);
    const R norm_min = FL_IS_F32 ? (R)1.17549435e-38f : (R)2.2250738585072014e-308;
    double total = 0.0;
    int any_bad = 0;
    for (int64_t w0 = i0; w0 < i1; w0 += FL_BCE_WIN) {
        const int64_t w1 = i1 - w0 < FL_BCE_WIN ? i1 : w0 + FL_BCE_WIN;
        if (w1 - w0 < FL_BCE_WIN || !FN(bce_hard_window)(t + w0)) {
            double p;
            FN(ew_loop)(a, w0, w1, &p, FN(ew_bce), with_grad, FN(pre0_bce), FN(pre1_bce), 0);
            total += p;
            continue;
        }
        VR acc = zero;
        VI bad = (VI)zero;
        for (int64_t i = w0; i < w1; i += FL_BCE_GROUP * L) {
            /* kept for the fallback: the gradient may overwrite x (grad_out=input) */
            VR xs[FL_BCE_GROUP], ts[FL_BCE_GROUP];
            VR P = one, D = zero;
#pragma GCC unroll 4
            for (int k = 0; k < FL_BCE_GROUP; k++) {
                const VR xv = xs[k] = FN(vload)(x + i + k * L);
                const VR tv = ts[k] = FN(vload)(t + i + k * L);
                const VI is1 = tv == one;
                const VR omx = one - xv;
                D += FN(vselect)(is1, omx, xv) * P;
                P *= FN_MAX_OR_B(q_min, FN(vselect)(is1, xv, omx)); /* NaN stays NaN */
                /* the gradient and the domain check, from the per-element formula (its loss
                 * is not used here) */
                VR lv, gv;
                FN(ew_bce)(a, xv, tv, one, one, zero, zero, &lv, &gv, &bad);
                if (with_grad) FN(vstore)(g + i + k * L, gv * gs);
                (void)lv;
            }
            if (FL_IS_F32 && FN(vany)(P < norm_min)) {
#pragma GCC unroll 4
                for (int k = 0; k < FL_BCE_GROUP; k++) {
                    const VR lx = FN(pre0_bce)(xs[k], ts[k], zero);
                    VR lv, gv;
                    VI unused = (VI)zero;
                    FN(ew_bce)(a, xs[k], ts[k], one, one, lx, FN(pre1_bce)(xs[k], ts[k], lx),
                               &lv, &gv, &unused);
                    acc += lv;
                }
                continue;
            }
            /* log P, or log1p(-D) = log u + (-D - (u - 1)) / u with u = 1 - D in [1/2, 1]
             * (u - 1 exact) where P > 1/2 */
            const VI big = P > half;
            const VR u = FN(vselect)(big, one - D, P);
            acc -= FN(vlog_normal)(u, FN(vand)(big, ((zero - D) - (u - one)) / u));
        }
        total += FN(hsum)(acc);
        any_bad |= FN(vany)(bad);
    }
    *partial = any_bad ? (double)__builtin_nan("") : total;
}

static void FN(bce_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    const fl_ew_args *a = (const fl_ew_args *)args;
    if (a->weight || a->loss_rows || a->grad_scale_rows)
        FN(bce_plain_chunk)(args, i0, i1, partial);
    else if (a->grad) FN(bce_sum_loop)(a, i0, i1, partial, 1);
    else FN(bce_sum_loop)(a, i0, i1, partial, 0);
}

/* only the sum wanted and no weights: the log1p(exp(-|x|)) terms as one log of a product */
static void FN(bce_logits_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    const fl_ew_args *a = (const fl_ew_args *)args;
    if (a->weight || a->pos_weight || a->loss_rows)
        FN(bce_logits_full_chunk)(args, i0, i1, partial);
    else if (a->grad)
        FN(ew_loop)(a, i0, i1, partial, FN(ew_bce_logits_lin), 1, FN(pre0_logistic), NULL, 1);
    else FN(ew_loop)(a, i0, i1, partial, FN(ew_bce_logits_lin), 0, FN(pre0_logistic), NULL, 1);
}

static void FN(sigmoid_focal_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    if ((R)((const fl_ew_args *)args)->p2 == 2) FN(sigmoid_focal_g2_chunk)(args, i0, i1, partial);
    else FN(sigmoid_focal_any_chunk)(args, i0, i1, partial);
}

static void FN(vector_math)(int op, int64_t n, const R *x, R *out)
{
    for (int64_t i = 0; i < n; i += L) {
        const int64_t k = n - i < L ? n - i : L;
        const VR v = k == L ? FN(vload)(x + i) : FN(vload_part)(x + i, k, 0);
        const VR r = op == FL_VM_EXP ? FN(vexp)(v) : op == FL_VM_LOG ? FN(vlog)(v)
                   : op == FL_VM_LOG1P ? FN(vlog1p)(v) : op == FL_VM_LOG1P_UNIT ? FN(vlog1p_unit)(v)
                   : FN(vlog1p_nonneg)(v);
        FN(vstore_part)(out + i, r, k);
    }
}

#undef VR
#undef VI
#undef VX
#undef R
#undef L
#undef FN_MAX_OR_B /* defined in fl_vecmath_impl.h */
#undef FN_MIN_OR_B
