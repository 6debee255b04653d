/*
 * The elementwise losses' math, for one (dtype, ISA) instantiation: the file a new
 * elementwise loss touches (with its line in fl_kernel_list.h).  No include guard on purpose.
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

/* (p0, p1): the transcendental parts of the loss, computed ahead over a block of vectors by
 * its pre functions, p0 = pre0(x, t) and then p1 = pre1(x, t, p0) (see FN(ew_loop)); zeros
 * for losses without them */
typedef void (*FN(ew_fn))(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1, VR *loss,
                          VR *grad, VI *bad);
typedef VR (*FN(ew_pre_fn))(VR x, VR t, VR p0);
/* losses with two differentiable inputs (PAIR in fl_kernel_list.h): also d loss / d (the
 * second one), which is t or w, as the loss says */
typedef void (*FN(ew2_fn))(const fl_ew_args *a, VR x, VR t, VR w, VR p0, VR *loss, VR *grad,
                           VR *grad2, VI *bad);

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
static inline VR FN(zmul)(VR coef, VR value) { return FL_ZMUL(coef, value); /* isa/fl_ops_*.h */ }

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
    (void)t;
    (void)unused;
    return FN(vexp_nonpos)(FN(neg_abs)(x));
}
static inline VR FN(pre1_logistic)(VR x, VR t, VR e)
{
    (void)x;
    (void)t;
    return FN(vlog1p_unit)(e);
}

static inline void FN(ew_bce_logits_full)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e, VR lg,
                                          VR *loss, VR *grad, VI *bad)
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
    (void)a;
    (void)bad;
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
    (void)a;
    (void)w;
    (void)pw;
    (void)bad;
    (void)unused;
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
    static inline void FN(name)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e, VR lg, \
                                VR *loss, VR *grad, VI *bad)                               \
    {                                                                                      \
        FN(sigmoid_focal_impl)(a, x, t, e, lg, loss, grad, (R)(gamma_fixed), loss_only);   \
        (void)w;                                                                           \
        (void)pw;                                                                          \
        (void)bad;                                                                         \
    }
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_any, -1, 0)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_any_loss, -1, 1)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_g2, 2, 0)
FL_SIGMOID_FOCAL_FN(ew_sigmoid_focal_g2_loss, 2, 1)
#undef FL_SIGMOID_FOCAL_FN

/* log x, log1p(-x) */
static inline VR FN(pre0_bce)(VR x, VR t, VR unused)
{
    (void)t;
    (void)unused;
    return FN(vlog)(x);
}
static inline VR FN(pre1_bce)(VR x, VR t, VR lx)
{
    (void)t;
    (void)lx;
    return FN(vlog1p)(-x);
}
static inline void FN(ew_bce)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR lx, VR l1x, VR *loss,
                              VR *grad, VI *bad)
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
    (void)a;
    (void)pw;
}

static inline void FN(ew_mse)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1, VR *loss,
                              VR *grad, VI *bad)
{
    const VR d = x - t;
    *loss = w * (d * d);
    *grad = w * (2 * d);
    (void)a;
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
}

static inline VR FN(vsign)(VR d)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    VR s = FN(vselect)(d > 0, one, FN(vselect)(d < 0, -one, zero));
    return FN(vselect)(d != d, d, s); /* NaN stays NaN */
}

static inline void FN(ew_l1)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1, VR *loss,
                             VR *grad, VI *bad)
{
    const VR d = x - t;
    *loss = w * FN(vabs)(d);
    *grad = w * FN(vsign)(d);
    (void)a;
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
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
    (void)w;
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
}

static inline void FN(ew_huber)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                                VR *loss, VR *grad, VI *bad)
{
    const R delta = (R)a->p1;
    const VR d = x - t, z = FN(vabs)(d);
    const VI quad = z < delta;
    *loss = w * FN(vselect)(quad, (R)0.5 * d * d, delta * (z - (R)0.5 * delta));
    *grad = w * FN(vselect)(quad, d, delta * FN(vsign)(d));
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
}

/* soft margin: softplus(-v) of the margin v = t x, as max(-v, 0) + log1p(exp(-|v|)): finite
 * where torch's literal log1p(exp(-v)) overflows (v < -88 in float32); gradient
 * -t sigma(-v).  The pre functions are the logistic ones, of v. */
static inline VR FN(pre0_soft_margin)(VR x, VR t, VR unused)
{
    (void)unused;
    return FN(vexp_nonpos)(FN(neg_abs)(t * x));
}
static inline VR FN(pre1_soft_margin)(VR x, VR t, VR e)
{
    (void)x;
    (void)t;
    return FN(vlog1p_unit)(e);
}
static inline void FN(ew_soft_margin)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR e, VR lg,
                                      VR *loss, VR *grad, VI *bad)
{
    const VR v = t * x;
    VR s_pos, s_neg;
    FN(sigmoids)(v, e, &s_pos, &s_neg);
    /* a NaN v makes e and lg NaN, which carry it into the loss */
    *loss = FN(vselect)(v < 0, -v, FN(vsplat)((R)0)) + lg;
    *grad = -t * s_neg;
    (void)a;
    (void)w;
    (void)pw;
    (void)bad;
    (void)s_pos;
}

static inline VR FN(pre0_kl_div)(VR x, VR t, VR unused)
{
    (void)x;
    (void)unused;
    return FN(vlog)(t);
}
static inline void FN(ew_kl_div)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR lt, VR unused,
                                 VR *loss, VR *grad, VI *bad)
{
    /* t (log t - x), 0 where t == 0 (unless x is NaN); NaN for t < 0 */
    const VR v = t * (lt - x);
    *loss = FN(vselect)((t == 0) & (x == x), FN(vsplat)(0), v);
    *grad = -t;
    (void)a;
    (void)w;
    (void)pw;
    (void)bad;
    (void)unused;
}

static inline VR FN(pre0_kl_div_log_target)(VR x, VR t, VR unused)
{
    (void)x;
    (void)unused;
    return FN(vexp)(t);
}
static inline void FN(ew_kl_div_log_target)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR et,
                                            VR unused, VR *loss, VR *grad, VI *bad)
{
    /* exp(t) (t - x), 0 where exp(t) == 0 (unless x is NaN) */
    *loss = FN(vselect)((et == 0) & (x == x), FN(vsplat)(0), et * (t - x));
    *grad = -et;
    (void)a;
    (void)w;
    (void)pw;
    (void)bad;
    (void)unused;
}

/* Poisson NLL's Stirling term (torch's full=True): t log t - t + log(2 pi t) / 2 where t > 1,
 * else 0; no gradient */
static inline VR FN(poisson_stirling)(VR t)
{
    const VR lt = FN(vlog)(t);
    const VR s = t * lt - t + (R)0.5 * (lt + (R)1.8378770664093453); /* log(2 pi) */
    return FN(vselect)(t > 1, s, FN(vsplat)(0));
}

/* t * v, 0 where t == 0 (also where v is infinite: a zero count contributes nothing) */
static inline VR FN(times_count)(VR t, VR v) { return FN(vselect)(t == 0, FN(vsplat)(0), t * v); }

/* Poisson NLL on log rates (log_input=True): exp(x) - t x, gradient exp(x) - t; p1 = full */
static inline VR FN(pre0_poisson_nll)(VR x, VR t, VR unused)
{
    (void)t;
    (void)unused;
    return FN(vexp)(x);
}
static inline void FN(ew_poisson_nll)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR ex,
                                      VR unused, VR *loss, VR *grad, VI *bad)
{
    *loss = ex - FN(times_count)(t, x);
    if (a->p1 != 0) *loss += FN(poisson_stirling)(t);
    *grad = ex - t;
    (void)w;
    (void)pw;
    (void)bad;
    (void)unused;
}

/* Poisson NLL on rates (log_input=False): x - t log(x + eps), gradient 1 - t / (x + eps)
 * (t = 0: x and 1); p1 = full, p2 = eps */
static inline void FN(ew_poisson_nll_rate)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0,
                                           VR p1, VR *loss, VR *grad, VI *bad)
{
    const VR u = x + (R)a->p2;
    *loss = x - FN(times_count)(t, FN(vlog)(u));
    if (a->p1 != 0) *loss += FN(poisson_stirling)(t);
    *grad = (R)1 - FN(times_count)(t, (R)1 / u);
    (void)w;
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
}

/* hinge embedding, torch's: where(t != 1, max(0, margin - x), 0) + where(t != -1, x, 0), so a
 * target other than +-1 gets both terms; the max passes its gradient at margin - x = 0 (torch's
 * clamp_min backward) and keeps a NaN; p1 = margin */
static inline void FN(ew_hinge_embedding)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0,
                                          VR p1, VR *loss, VR *grad, VI *bad)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    const VR m = (R)a->p1 - x;
    const VI hinge = t != one, linear = t != -one;
    *loss = FN(vselect)(hinge, FN(vselect)(m < 0, zero, m), zero) + FN(vand)(linear, x);
    *grad = FN(vselect)(hinge & (m >= 0), -one, zero) + FN(vand)(linear, one);
    (void)w;
    (void)pw;
    (void)bad;
    (void)p0;
    (void)p1;
}

/* margin ranking, torch's: max(0, margin - y (x1 - x2)) with x = x1, t = x2 and the target y
 * in the w stream; d/dx1 = -y and d/dx2 = y where the argument is >= 0 (torch's clamp_min
 * passes the gradient at 0), else 0; a NaN argument keeps the loss NaN and gradient 0;
 * p1 = margin */
static inline void FN(ew2_margin_ranking)(const fl_ew_args *a, VR x, VR t, VR w, VR p0, VR *loss,
                                          VR *grad, VR *grad2, VI *bad)
{
    const VR zero = FN(vsplat)(0);
    const VR arg = (R)a->p1 - w * (x - t);
    *loss = FN(vselect)(arg < 0, zero, arg);
    *grad = FN(vselect)(arg >= 0, -w, zero);
    *grad2 = -*grad;
    (void)p0;
    (void)bad;
}

/* Gaussian NLL, torch's: (log v + (x - t)^2 / v) / 2 [+ log(2 pi) / 2 with p1 = full] with
 * v = max(var, eps = p2) (a NaN var stays NaN) and var in the w stream; d/dx = (x - t) / v,
 * d/dvar = (1/v - (x - t)^2 / v^2) / 2 taken at the clamped v (torch's straight-through
 * clamp); a negative var is a domain error */
static inline void FN(ew2_gaussian_nll)(const fl_ew_args *a, VR x, VR t, VR w, VR p0, VR *loss,
                                        VR *grad, VR *grad2, VI *bad)
{
    const R eps = (R)a->p2;
    const VR v = FN(vselect)(w < eps, FN(vsplat)(eps), w), d = x - t, r = (R)1 / v;
    const VR q = d * r;
    *loss = (R)0.5 * (FN(vlog)(v) + d * q);
    if (a->p1 != 0) *loss += (R)0.91893853320467274; /* log(2 pi) / 2 */
    *grad = q;
    *grad2 = (R)0.5 * (r - q * q);
    *bad |= w < 0;
    (void)p0;
}
