/*
 * Class-axis kernels over whole rows, (N, C) inputs with C > FL_SMALL_C (S == 1), for one
 * (dtype, ISA) instantiation: FN(ce_index_rows) (index targets: cross entropy, softmax focal
 * loss), FN(ce_prob_rows) (probability targets), FN(softmax_rows) (log_softmax, softmax,
 * logsumexp).  Numerics: see ce_coef-inl.h.  No include guard on purpose.
 */

/* ---------------------------------------------------------------- class axis last (S == 1) */

/* The exp sweep of a row is compute-bound and runs from cache; meanwhile the next row is
 * requested from memory (one prefetch per cache line), so the memory-bound max sweep of the
 * next row finds it on chip.  (sizeof(R) * L == 64 on AVX-512: one vector is one line.) */
#define FL_PREFETCH_NEXT_ROW(p, C)                                                      \
    do {                                                                                \
        if (((uintptr_t)(p) & 63) < sizeof(R) * L) __builtin_prefetch((p) + (C), 0, 3); \
    } while (0)

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
            if (__builtin_expect(c == yblock, 0))
                vs += FN(vselect)(iota == (FL_XLANE)(y - c), FN(vsplat)(0), e);
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
            const VR wv =
                w ? (n == L ? FN(vload)(w + c) : FN(vload_part)(w + c, n, 0)) : FN(vsplat)(1);
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
                S += FN(hsum)(vs);
                T += FN(hsum)(vT);
                D += FN(hsum)(vD);
                vs = zero;
                vT = zero;
                vD = zero;
                blk = 0;
            }
        }
        S += FN(hsum)(vs);
        T += FN(hsum)(vT);
        D += FN(hsum)(vD);
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
            if (++blk == FL_FLUSH) {
                S += FN(hsum)(vs);
                vs = FN(vsplat)(0);
                blk = 0;
            }
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
#undef FL_PREFETCH_NEXT_ROW
