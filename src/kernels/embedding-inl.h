/*
 * Row losses (fl_emb_args): the embedding losses on rows of D features,
 * cosine_embedding_loss(x1, x2, y) and triplet_margin_loss(anchor, positive, negative), and
 * the classification margin losses on rows of C classes, multi_margin_loss,
 * multilabel_margin_loss and multilabel_soft_margin_loss.  One chunk function per loss,
 * FN(<name>_rows), over rows [r0, r1): a first sweep of the row's arrays accumulates the dot
 * products / norms (vector lanes, flushed into double every FL_FLUSH vectors), a second
 * writes the gradients of all the inputs at once.  Rows of a few thousand features stay in
 * L1/L2 between the two sweeps, so the arrays are read from memory once.  multi_margin_loss's
 * chunk function is in margin_tiles-inl.h (included below), which takes rows of few classes
 * through transposed tiles of L rows.  No include guard on purpose.
 */

/* Sums over a row of f(lane vectors): acc[k] += term k, flushed into double; tail lanes are
 * loaded with `fill` (chosen so that they contribute 0). */
#define FL_ROW_LOOP(D, ...)                                          \
    do {                                                             \
        int flush_ = 0;                                              \
        for (int64_t j = 0; j < (D); j += L) {                       \
            const int64_t n_ = (D) - j < L ? (D) - j : L;            \
            __VA_ARGS__;                                             \
            if (++flush_ == FL_FLUSH) {                              \
                for (int k_ = 0; k_ < 3; k_++) {                     \
                    tot[k_] += FN(hsum)(acc[k_]);                    \
                    acc[k_] = FN(vsplat)(0);                         \
                }                                                    \
                flush_ = 0;                                          \
            }                                                        \
        }                                                            \
        for (int k_ = 0; k_ < 3; k_++) tot[k_] += FN(hsum)(acc[k_]); \
    } while (0)
#define FL_LD(p, n, fill) ((n) == L ? FN(vload)(p) : FN(vload_part)((p), (n), (fill)))
#define FL_ST(p, v, n)                       \
    do {                                     \
        if ((n) == L) FN(vstore)((p), v);    \
        else FN(vstore_part)((p), (v), (n)); \
    } while (0)

/* the row's gradient multiplier: the uniform scale or the row's (grad_output of "none") */
static inline double FN(emb_scale)(const fl_emb_args *a, int64_t r)
{
    return a->grad_scale_rows ? ((const R *)a->grad_scale_rows)[r] : a->grad_scale;
}

/* cosine embedding, torch's: cos = <x1, x2> / sqrt((|x1|^2 + e) (|x2|^2 + e)),
 * loss = 1 - cos (y = 1), max(0, cos - margin) (y = -1), 0 (other y); p1 = margin, p2 = e */
static void FN(cosine_embedding_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    const int64_t D = a->D;
    const R *y = (const R *)a->target;
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *u = (const R *)a->a + r * D, *v = (const R *)a->b + r * D;
        VR acc[3] = {FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0)};
        double tot[3] = {0.0, 0.0, 0.0};
        FL_ROW_LOOP(D, {
            const VR uv = FL_LD(u + j, n_, 0), vv = FL_LD(v + j, n_, 0);
            acc[0] += uv * vv;
            acc[1] += uv * uv;
            acc[2] += vv * vv;
        });
        const double sq1 = tot[1] + a->p2, sq2 = tot[2] + a->p2, den = sqrt(sq1 * sq2);
        const double cos = tot[0] / den, yr = (double)y[r];
        double loss = 0.0, coef = 0.0;
        if (yr == 1.0) {
            loss = 1.0 - cos;
            coef = -1.0;
        } else if (yr == -1.0) {
            const double m = cos - a->p1;
            loss = m < 0 ? 0.0 : m; /* NaN stays */
            coef = m >= 0 ? 1.0 : 0.0;
        }
        total += loss;
        if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
        if (!a->grad_a) continue;
        coef *= FN(emb_scale)(a, r);
        /* d cos / d x1 = x2 / den - cos x1 / sq1, likewise x2 */
        const VR k_other = FN(vsplat)((R)(coef / den)), k1 = FN(vsplat)((R)(coef * cos / sq1)),
                 k2 = FN(vsplat)((R)(coef * cos / sq2));
        R *g1 = (R *)a->grad_a + r * D, *g2 = (R *)a->grad_b + r * D;
        for (int64_t j = 0; j < D; j += L) {
            const int64_t n_ = D - j < L ? D - j : L;
            const VR uv = FL_LD(u + j, n_, 0), vv = FL_LD(v + j, n_, 0);
            FL_ST(g1 + j, k_other * vv - k1 * uv, n_);
            FL_ST(g2 + j, k_other * uv - k2 * vv, n_);
        }
    }
    *partial = total;
}

/* || u - w + eps ||_p of one row, and for p = inf the number of lanes at the maximum
 * (p: 1, 2 vectorised; other finite p > 0 and inf scalar) */
static inline double FN(pdist)(const R *u, const R *w, int64_t D, double p, R eps, double *count)
{
    *count = 0.0;
    if (p == 2.0 || p == 1.0) {
        VR acc[3] = {FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0)};
        double tot[3] = {0.0, 0.0, 0.0};
        const VR e = FN(vsplat)(eps);
        if (p == 2.0) {
            FL_ROW_LOOP(D, {
                const VI valid = FN(viota)() < (FL_XLANE)n_;
                const VR d = FN(vand)(valid, FL_LD(u + j, n_, 0) - FL_LD(w + j, n_, 0) + e);
                acc[0] += d * d;
            });
            return sqrt(tot[0]);
        }
        FL_ROW_LOOP(D, {
            const VI valid = FN(viota)() < (FL_XLANE)n_;
            acc[0] += FN(vand)(valid, FN(vabs)(FL_LD(u + j, n_, 0) - FL_LD(w + j, n_, 0) + e));
        });
        return tot[0];
    }
    double s = 0.0;
    for (int64_t j = 0; j < D; j++) {
        const double d = fabs((double)(u[j] - w[j] + eps));
        if (p == (double)INFINITY) {
            if (d > s) {
                s = d;
                *count = 1.0;
            } else if (d == s) {
                *count += 1.0;
            }
        } else {
            s += pow(d, p);
        }
    }
    return p == (double)INFINITY ? s : pow(s, 1.0 / p);
}

/* d dist / d u at lane j of the row (v = u - w + eps): v / d (p = 2), sign(v) (p = 1),
 * sign(v) (|v| / d)^(p - 1) (0 where v = 0), sign(v) / count at the maxima (p = inf); 0
 * where d = 0 (torch's norm backward) */
static inline double FN(pdist_grad)(R vj, double d, double p, double count)
{
    const double v = (double)vj, s = (v > 0) - (v < 0);
    if (d == 0.0 || v == 0.0) return 0.0;
    if (p == 2.0) return v / d;
    if (p == 1.0) return s;
    if (p == (double)INFINITY) return fabs(v) == d ? s / count : 0.0;
    return s * pow(fabs(v) / d, p - 1.0);
}

/* triplet margin, torch's: max(0, margin + d(a, p) - d_neg), d = ||. - . + eps||_p,
 * d_neg = d(a, n), or with swap min(d(a, n), d(p, n)) (a tie shares the gradient half and
 * half, as torch.minimum); p1 = margin, p2 = p, p3 = eps, flags bit 0 = swap */
static void FN(triplet_margin_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    const int64_t D = a->D;
    const double p = a->p2;
    const R eps = (R)a->p3;
    const int swap = a->flags & 1;
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->a + r * D, *pos = (const R *)a->b + r * D,
                *neg = (const R *)a->c + r * D;
        double c_ap, c_an, c_pn = 0.0;
        const double d_ap = FN(pdist)(x, pos, D, p, eps, &c_ap);
        const double d_an = FN(pdist)(x, neg, D, p, eps, &c_an);
        const double d_pn = swap ? FN(pdist)(pos, neg, D, p, eps, &c_pn) : 0.0;
        double d_neg = d_an, share = 1.0; /* share of d(a, n) in the gradient of d_neg */
        if (swap) {
            d_neg = d_an < d_pn ? d_an : d_pn;
            share = d_an < d_pn ? 1.0 : d_an == d_pn ? 0.5 : 0.0;
            if (d_an != d_an || d_pn != d_pn) d_neg = NAN;
        }
        const double arg = a->p1 + d_ap - d_neg;
        const double loss = arg < 0 ? 0.0 : arg; /* NaN stays */
        total += loss;
        if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
        if (!a->grad_a) continue;
        const double c = (arg >= 0 ? 1.0 : 0.0) * FN(emb_scale)(a, r);
        R *ga = (R *)a->grad_a + r * D, *gp = (R *)a->grad_b + r * D, *gn = (R *)a->grad_c + r * D;
        if (p == 2.0) { /* the common case, vectorised: G = v / d */
            const VR e = FN(vsplat)(eps);
            const VR k_ap = FN(vsplat)((R)(d_ap == 0.0 ? 0.0 : c / d_ap));
            const VR k_an = FN(vsplat)((R)(d_an == 0.0 ? 0.0 : c * share / d_an));
            const VR k_pn = FN(vsplat)((R)(!swap || d_pn == 0.0 ? 0.0 : c * (1 - share) / d_pn));
            for (int64_t j = 0; j < D; j += L) {
                const int64_t n_ = D - j < L ? D - j : L;
                const VR xv = FL_LD(x + j, n_, 0), pv = FL_LD(pos + j, n_, 0),
                         nv = FL_LD(neg + j, n_, 0);
                const VR g_ap = k_ap * (xv - pv + e), g_an = k_an * (xv - nv + e),
                         g_pn = k_pn * (pv - nv + e);
                FL_ST(ga + j, g_ap - g_an, n_);
                FL_ST(gp + j, -g_ap - g_pn, n_);
                FL_ST(gn + j, g_an + g_pn, n_);
            }
            continue;
        }
        for (int64_t j = 0; j < D; j++) {
            const double g_ap = c * FN(pdist_grad)(x[j] - pos[j] + eps, d_ap, p, c_ap);
            const double g_an = c * share * FN(pdist_grad)(x[j] - neg[j] + eps, d_an, p, c_an);
            const double g_pn =
                swap ? c * (1 - share) * FN(pdist_grad)(pos[j] - neg[j] + eps, d_pn, p, c_pn) : 0.0;
            ga[j] = (R)(g_ap - g_an);
            gp[j] = (R)(-g_ap - g_pn);
            gn[j] = (R)(g_an + g_pn);
        }
    }
    *partial = total;
}

/* ---------------------------------------------------------------- classification margins */

/* the hinge max(z, 0) with NaN kept, and torch's strict subgradient: d (1 if z > 0, else 0;
 * NaN for NaN z), d the slope where z > 0 (1 for p = 1, 2z for p = 2) */
static inline VR FN(hinge)(VR z) { return FN(vselect)(z < 0, FN(vsplat)(0), z); }
static inline VR FN(hinge_slope)(VR z, VR d) { return FN(vselect)(z != z, z, FN(vand)(z > 0, d)); }

/* multi-class margin, torch's: per row (1/C) w[y] sum_{i != y} max(0, margin - x_y + x_i)^p,
 * p = 1 or 2; gradient (strict z > 0) w[y] slope_i / C on x_i, minus their sum on x_y.  One
 * row at a time: one sweep sums the terms and the slopes, a second writes the gradient; lane
 * y is masked out of both.  p1 = margin, p2 = p; target_idx (N,), weight (C,) or NULL.
 * Returns the sum of the losses of rows [r0, r1).  The chunk function FN(multi_margin_rows)
 * (margin_tiles-inl.h) takes rows of few classes through transposed tiles instead. */
static double FN(multi_margin_row_range)(const fl_emb_args *a, int64_t r0, int64_t r1)
{
    const int64_t C = a->D;
    const int sq = a->p2 == 2.0;
    const R *wt = (const R *)a->weight;
    const VR two = FN(vsplat)((R)2), one = FN(vsplat)((R)1);
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->a + r * C;
        const int64_t y = a->target_idx[r];
        if (y < 0 || y >= C) { /* the caller raises */
            total = NAN;
            if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)NAN;
            continue;
        }
        const double wy = wt ? (double)wt[y] : 1.0;
        if (C < L) { /* a row shorter than a vector: scalar beats masked partial loads */
            const R b = (R)a->p1 - x[y];
            R s0 = 0, s1 = 0;
            for (int64_t j = 0; j < C; j++) {
                const R z = b + x[j], h = z < 0 ? 0 : z;
                if (j == y) continue;
                s0 += sq ? h * h : h;
                s1 += z != z ? z : z > 0 ? (sq ? 2 * z : 1) : 0;
            }
            const double loss = wy * (double)s0 / (double)C;
            total += loss;
            if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
            if (!a->grad_a) continue;
            const double k = wy * FN(emb_scale)(a, r) / (double)C;
            R *g = (R *)a->grad_a + r * C;
            for (int64_t j = 0; j < C; j++) {
                const R z = b + x[j];
                g[j] = (R)k * (z != z ? z : z > 0 ? (sq ? 2 * z : 1) : 0);
            }
            g[y] = (R)(-k * (double)s1);
            continue;
        }
        const VR base = FN(vsplat)((R)a->p1 - x[y]);
        VR acc[3] = {FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0)};
        double tot[3] = {0.0, 0.0, 0.0};
        FL_ROW_LOOP(C, {
            const VI m = (FN(viota)() < (FL_XLANE)n_) & (FN(viota)() != (FL_XLANE)(y - j));
            const VR z = base + FL_LD(x + j, n_, 0), h = FN(hinge)(z);
            acc[0] += FN(vand)(m, sq ? h * h : h);
            acc[1] += FN(vand)(m, FN(hinge_slope)(z, sq ? two * z : one));
        });
        const double loss = wy * tot[0] / (double)C;
        total += loss;
        if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
        if (!a->grad_a) continue;
        const double k = wy * FN(emb_scale)(a, r) / (double)C;
        const VR kv = FN(vsplat)((R)k);
        R *g = (R *)a->grad_a + r * C;
        for (int64_t j = 0; j < C; j += L) {
            const int64_t n_ = C - j < L ? C - j : L;
            const VI m = FN(viota)() != (FL_XLANE)(y - j);
            const VR z = base + FL_LD(x + j, n_, 0);
            FL_ST(g + j, FN(vand)(m, kv * FN(hinge_slope)(z, sq ? two * z : one)), n_);
        }
        g[y] = (R)(-k * tot[1]);
    }
    return total;
}

#include "margin_tiles-inl.h"

/* multi-label margin, torch's: a row's target lists class indices up to its first -1 (every
 * entry must lie in [-1, C)); for each listed slot j (duplicates count twice) and each class
 * i not listed, max(0, 1 - x_j + x_i); the row's sum / C.  Gradient (strict z > 0): +1/C on
 * x_i and -1/C on x_j per active pair, accumulated as counts in the gradient row and scaled
 * at the end.  Each listed slot is one vector sweep of the row against a 0/1 "not listed"
 * row of the working dtype (a stack buffer for small C, else one allocation per chunk). */
#define FL_MLM_STACK 16384 /* bytes */
static void FN(multilabel_margin_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    const int64_t C = a->D;
    if (C <= 0) { /* (the caller computes rows of no classes on the reference) */
        *partial = 0.0;
        return;
    }
    /* per row, 1 for the classes not listed and 0 for the listed ones, in the working dtype
     * so that the sweeps below read it as lanes */
    R stack_keep[FL_MLM_STACK / sizeof(R)];
    R *keep =
        C <= (int64_t)(FL_MLM_STACK / sizeof(R)) ? stack_keep : (R *)malloc((size_t)C * sizeof(R));
    if (!keep) { /* out of memory: NaN, as a bad row */
        *partial = NAN;
        return;
    }
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->a + r * C;
        const int64_t *t = a->target_idx + r * C;
        int64_t n_listed = C;
        int bad = 0;
        for (int64_t k = 0; k < C; k++) {
            bad |= t[k] < -1 || t[k] >= C;
            if (t[k] == -1 && n_listed == C) n_listed = k;
        }
        if (bad) { /* the caller raises */
            total = NAN;
            if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)NAN;
            continue;
        }
        for (int64_t i = 0; i < C; i++) keep[i] = 1;
        for (int64_t k = 0; k < n_listed; k++) keep[t[k]] = 0;
        R *g = a->grad_a ? (R *)a->grad_a + r * C : NULL;
        if (g) memset(g, 0, (size_t)C * sizeof(R));
        double sum = 0.0;
        /* each listed target j (duplicates again, as torch) against every class not listed:
         * max(0, 1 - x_j + x_i), slope 1 where z > 0 (torch's strict test), NaN kept */
        for (int64_t k = 0; k < n_listed; k++) {
            const int64_t jt = t[k];
            const VR base = FN(vsplat)((R)1 - x[jt]);
            VR sacc = zero, cacc = zero;
            for (int64_t i = 0; i < C; i += L) {
                const int64_t n_ = C - i < L ? C - i : L;
                const VI kept = FL_LD(keep + i, n_, 0) != zero;
                const VR z = base + FL_LD(x + i, n_, 0);
                sacc += FN(vand)(kept, FN(vselect)(z < 0, zero, z));
                if (g) {
                    const VR s = FN(vand)(kept, FN(vselect)(z > 0, one, FN(vand)(z != z, z)));
                    FL_ST(g + i, FL_LD(g + i, n_, 0) + s, n_);
                    cacc += s;
                }
            }
            sum += FN(hsum)(sacc);
            if (g) g[jt] -= (R)FN(hsum)(cacc);
        }
        const double loss = sum / (double)C;
        total += loss;
        if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
        if (!g) continue;
        const VR kv = FN(vsplat)((R)(FN(emb_scale)(a, r) / (double)C));
        for (int64_t i = 0; i < C; i += L) {
            const int64_t n_ = C - i < L ? C - i : L;
            FL_ST(g + i, FL_LD(g + i, n_, 0) * kv, n_);
        }
    }
    if (keep != stack_keep) free(keep);
    *partial = total;
}

/* multi-label soft margin, torch's: per row (1/C) sum_c w_c [t softplus(-x) + (1 - t)
 * softplus(x)] (BCE with logits averaged over the classes), gradient w_c ((1 - t) sigma(x) -
 * t sigma(-x)) / C; softplus and the sigmoids from one e = exp(-|x|) (the logistic helpers
 * of ew_losses-inl.h), a term of coefficient 0 exactly 0 (x = +-inf with an agreeing target:
 * loss 0, not NaN).  One sweep writes the loss terms and the gradient.  target (N, C),
 * weight (C,) or NULL. */
static void FN(multilabel_soft_margin_rows)(const void *args, int64_t r0, int64_t r1,
                                            double *partial)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    const int64_t C = a->D;
    const R *wt = (const R *)a->weight;
    const VR one = FN(vsplat)((R)1);
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->a + r * C, *tr = (const R *)a->target + r * C;
        R *g = a->grad_a ? (R *)a->grad_a + r * C : NULL;
        const VR kv = FN(vsplat)((R)(g ? FN(emb_scale)(a, r) / (double)C : 0.0));
        VR acc[3] = {FN(vsplat)(0), FN(vsplat)(0), FN(vsplat)(0)};
        double tot[3] = {0.0, 0.0, 0.0};
        FL_ROW_LOOP(C, {
            const VI valid = FN(viota)() < (FL_XLANE)n_;
            const VR xv = FL_LD(x + j, n_, 0), tv = FL_LD(tr + j, n_, 0);
            const VR w = wt ? FL_LD(wt + j, n_, 0) : one;
            const VR e = FN(vexp_nonpos)(FN(neg_abs)(xv)), lg = FN(vlog1p_unit)(e);
            const VR cn = one - tv;
            const VI xnan = xv != xv;
            const VR term = FN(vselect)(xnan, xv, w * (lg + FN(relu_terms)(xv, tv, cn)));
            acc[0] += FN(vand)(valid, term);
            if (g) {
                VR s_pos, s_neg;
                FN(sigmoids)(xv, e, &s_pos, &s_neg);
                FL_ST(g + j, FN(vselect)(xnan, xv, kv * w * (cn * s_pos - tv * s_neg)), n_);
            }
        });
        const double loss = tot[0] / (double)C;
        total += loss;
        if (a->loss_rows) ((R *)a->loss_rows)[r] = (R)loss;
    }
    *partial = total;
}

#undef FL_MLM_STACK
#undef FL_ROW_LOOP
#undef FL_LD
#undef FL_ST
