/*
 * The elementwise loop and the elementwise chunk functions, for one (dtype, ISA)
 * instantiation: FN(ew_loop) runs a loss of ew_losses-inl.h over a chunk; the chunk functions
 * FN(<name>_chunk) of the losses of FL_ELEMENTWISE_LOSSES (fl_kernel_list.h) are generated
 * from that list, except the CUSTOM ones written here (specialised fast paths: BCE with
 * logits and BCE sums as logs of products, sigmoid focal loss with gamma = 2).  No include
 * guard on purpose.
 */

/* Vectors per block of FN(ew_loop).  A loss with a "pre" function (logs, exps) gets it run
 * over the whole block first, then the rest of its formula per vector: one vector's complete
 * formula is a dependency chain of ~80 operations, longer than the out-of-order window can
 * overlap, whereas short independent chains back to back keep the FP pipes busy (timings: see
 * docs/performance.md).  The block size FL_EW_BLOCK is in fl_config.h. */

/* logprod (a compile-time 0 or 1): the losses f returns leave out a term log1p(p0) with
 * coefficient 1, and the loop adds those terms as the log of their product
 * (FN(log1p_prod_step)): one log1p(T) per FL_FLUSH vectors (1 + T <= 2^64) instead of one
 * log per vector */
static inline __attribute__((always_inline)) void
FN(ew_loop)(const fl_ew_args *args, int64_t i0, int64_t i1, double *partial, FN(ew_fn) f,
            const int with_grad, FN(ew_pre_fn) pre0, FN(ew_pre_fn) pre1, const int logprod,
            FN(ew2_fn) f2)
{
    /* a private copy: the loss parameters (alpha, gamma, ...) cannot alias the output
     * stores, so the compiler need not reload them after every store */
    const fl_ew_args local = *args, *a = &local;
    const R *x = (const R *)a->x, *t = (const R *)a->target;
    const R *w = (const R *)a->weight, *pw = (const R *)a->pos_weight;
    const R *gsr = (const R *)a->grad_scale_rows;
    R *g = with_grad ? (R *)a->grad : NULL, *lr = (R *)a->loss_rows;
    R *g2 = with_grad && f2 ? (R *)a->grad2 : NULL;
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
#define FL_N(i)           (b1 - (i) < L ? b1 - (i) : L)
#define FL_LD(p, n, fill) ((n) == L ? FN(vload)(p) : FN(vload_part)((p), (n), (fill)))
            /* each pre function as its own loop over the block: chains of one kind back to
             * back (all exps, then all logs) */
            VR p0[FL_EW_BLOCK], p1[FL_EW_BLOCK];
#define FL_PRE_LOOP(out, fn, prev)                   \
    for (int64_t i = b0, k = 0; i < b1; i += L, k++) \
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
                VR lv, gv, g2v = zero;
                VI bv = (VI)zero;
                if (f2) f2(a, xv, tv, wv, pre0 ? p0[k] : zero, &lv, &gv, &g2v, &bv);
                else f(a, xv, tv, wv, pwv, pre0 ? p0[k] : zero, pre1 ? p1[k] : zero, &lv, &gv, &bv);
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
                    if (full) FN(vstore)(lr + i, lv);
                    else FN(vstore_part)(lr + i, lv, n);
                }
                if (g) {
                    const VR sv = gsr ? FL_LD(gsr + i, n, 0) : FN(vsplat)(gs);
                    gv *= sv;
                    if (full) FN(vstore)(g + i, gv);
                    else FN(vstore_part)(g + i, gv, n);
                    if (g2) {
                        g2v *= sv;
                        if (full) FN(vstore)(g2 + i, g2v);
                        else FN(vstore_part)(g2 + i, g2v, n);
                    }
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
#define FL_EW_CHUNK2(name, f_grad, f_loss, pre0, pre1)                                      \
    static void FN(name##_chunk)(const void *args, int64_t i0, int64_t i1, double *partial) \
    {                                                                                       \
        const fl_ew_args *a_ = (const fl_ew_args *)args;                                    \
        if (a_->grad) FN(ew_loop)(a_, i0, i1, partial, f_grad, 1, pre0, pre1, 0, NULL);     \
        else FN(ew_loop)(a_, i0, i1, partial, f_loss, 0, pre0, pre1, 0, NULL);              \
    }
#define FL_EW_CHUNK(name, pre0, pre1) FL_EW_CHUNK2(name, FN(ew_##name), FN(ew_##name), pre0, pre1)

/* the CUSTOM losses' general paths (their chunk functions, below, pick the fast paths) */
FL_EW_CHUNK(bce_logits_full, FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(sigmoid_focal_g2, FN(ew_sigmoid_focal_g2), FN(ew_sigmoid_focal_g2_loss),
             FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(sigmoid_focal_any, FN(ew_sigmoid_focal_any), FN(ew_sigmoid_focal_any_loss),
             FN(pre0_logistic), FN(pre1_logistic))
FL_EW_CHUNK2(bce_plain, FN(ew_bce), FN(ew_bce), FN(pre0_bce), FN(pre1_bce))

/* the chunk functions of the list's generated losses (fl_kernel_list.h: PLAIN, PRE0, PRE01) */
#define FL_EW_CHUNK_PLAIN(name)  FL_EW_CHUNK(name, NULL, NULL)
#define FL_EW_CHUNK_PRE0(name)   FL_EW_CHUNK(name, FN(pre0_##name), NULL)
#define FL_EW_CHUNK_PRE01(name)  FL_EW_CHUNK(name, FN(pre0_##name), FN(pre1_##name))
#define FL_EW_CHUNK_CUSTOM(name) /* written here */
/* two differentiable inputs: FN(ew2_<name>), no pre functions (its transcendental parts may
 * need w, which those do not see) */
#define FL_EW_CHUNK_PAIR(name)                                                                  \
    static void FN(name##_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)     \
    {                                                                                           \
        const fl_ew_args *a_ = (const fl_ew_args *)args;                                        \
        if (a_->grad) FN(ew_loop)(a_, i0, i1, partial, NULL, 1, NULL, NULL, 0, FN(ew2_##name)); \
        else FN(ew_loop)(a_, i0, i1, partial, NULL, 0, NULL, NULL, 0, FN(ew2_##name));          \
    }
#define FL_EW_CHUNK_OF(ID, name, chunk) FL_EW_CHUNK_##chunk(name)
FL_ELEMENTWISE_LOSSES(FL_EW_CHUNK_OF)
#undef FL_EW_CHUNK_OF
#undef FL_EW_CHUNK_PLAIN
#undef FL_EW_CHUNK_PRE0
#undef FL_EW_CHUNK_PRE01
#undef FL_EW_CHUNK_CUSTOM
#undef FL_EW_CHUNK_PAIR

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

static inline __attribute__((always_inline)) void FN(bce_sum_loop)(const fl_ew_args *args,
                                                                   int64_t i0, int64_t i1,
                                                                   double *partial,
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
            FN(ew_loop)(a, w0, w1, &p, FN(ew_bce), with_grad, FN(pre0_bce), FN(pre1_bce), 0, NULL);
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
                P *= FL_MAX_OR_B(q_min, FN(vselect)(is1, xv, omx)); /* NaN stays NaN */
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
                    FN(ew_bce)(a, xs[k], ts[k], one, one, lx, FN(pre1_bce)(xs[k], ts[k], lx), &lv,
                               &gv, &unused);
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
    if (a->weight || a->loss_rows || a->grad_scale_rows) FN(bce_plain_chunk)(args, i0, i1, partial);
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
        FN(ew_loop)(a, i0, i1, partial, FN(ew_bce_logits_lin), 1, FN(pre0_logistic), NULL, 1, NULL);
    else
        FN(ew_loop)(a, i0, i1, partial, FN(ew_bce_logits_lin), 0, FN(pre0_logistic), NULL, 1, NULL);
}

static void FN(sigmoid_focal_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    if ((R)((const fl_ew_args *)args)->p2 == 2) FN(sigmoid_focal_g2_chunk)(args, i0, i1, partial);
    else FN(sigmoid_focal_any_chunk)(args, i0, i1, partial);
}
