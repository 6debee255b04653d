/*
 * Connectionist temporal classification (fl_ctc_args): FN(ctc_chunk) over samples [n0, n1).
 * R is the dtype of the recursion (float64 also for float32 input with float64 accumulation,
 * a->x_is_f32); the input and gradient rows are (T, N, C) in the input's dtype.
 *
 * Per sample, with S labels and T_n frames: a forward sweep over the frames reads each row
 * once (its log-sum-exp when from_logits, the softmax times the sample's gradient scale written
 * into the gradient row while the row is in L1) and keeps the emissions of the blank and of
 * the S labels (log-probabilities, in R); the alpha recursion runs over the whole table; the
 * beta recursion then walks the frames backwards with two rows, and the state occupancies of
 * each frame are subtracted from the gradient row at the blank and the labels.  So the input
 * is read once and the gradient written once; the extra memory is O(T_n * S) per thread.
 *
 * States are kept in two arrays per frame, the blank states b_0..b_S and the label states
 * a_0..a_{S-1} (extended state 2k is b_k, 2k + 1 is a_k), so both recursions are plain vector
 * loops over k with loads shifted by one:
 *   alpha: b'_k = lse(b_k, a_{k-1}) + y(blank),  a'_k = lse(a_k, b_k, a_{k-1} + sk_k) + y(l_k)
 *   beta (h = next frame's beta plus its emission):
 *          b_k = lse(hb_k, ha_k),                 a_k = lse(ha_k, hb_{k+1}, ha_{k+1} + sk_{k+1})
 * with sk_k = 0 where label k differs from label k - 1 (k >= 1) and -inf elsewhere.  Every
 * array has -inf in front of index 0 and beyond its end, so no loop has a boundary case.
 * No include guard on purpose.
 */

/* log(e^a + e^b) with the larger term factored out; -inf when both are -inf */
static inline VR FN(ctc_lse2)(VR a, VR b)
{
    const VR m = FN(vmax)(a, b), o = FL_MIN_OR_B(a, b);
    const VR r = m + FN(vlog1p_unit)(FN(vexp_nonpos_term)(o - m));
    return FN(vselect)((VI)(m == FN(vsplat)((R)-__builtin_inf())), m, r);
}

/* log(e^a + e^b + e^c): the maximum factored out, the other two terms found by min/max */
static inline VR FN(ctc_lse3)(VR a, VR b, VR c)
{
    const VR hi = FN(vmax)(a, b), lo = FL_MIN_OR_B(a, b);
    const VR m = FN(vmax)(hi, c), mid = FL_MIN_OR_B(hi, c);
    const VR y = FN(vexp_nonpos_term)(lo - m) + FN(vexp_nonpos_term)(mid - m);
    const VR r = m + FN(vlog1p_nonneg)(y);
    return FN(vselect)((VI)(m == FN(vsplat)((R)-__builtin_inf())), m, r);
}

/* Row t of sample n in R: the input itself, or (float32 input, float64 recursion) converted
 * into buf. */
static inline const R *FN(ctc_row)(const fl_ctc_args *a, int64_t off, R *buf)
{
#if FL_IS_F32
    (void)buf;
    return (const R *)a->x + off;
#else
    if (!a->x_is_f32) return (const R *)a->x + off;
    const float *src = (const float *)a->x + off;
    for (int64_t c = 0; c < a->C; c++) buf[c] = (R)src[c];
    return buf;
#endif
}

/* Stores the gradient row g (in R; the gradient itself unless converting) at off. */
static inline void FN(ctc_store_row)(const fl_ctc_args *a, int64_t off, const R *g)
{
#if FL_IS_F32
    (void)a, (void)off, (void)g;
#else
    if (!a->x_is_f32) return;
    float *dst = (float *)a->grad + off;
    for (int64_t c = 0; c < a->C; c++) dst[c] = (float)g[c];
#endif
}

static inline void FN(ctc_fill_row)(const fl_ctc_args *a, int64_t off, double v)
{
    if (a->x_is_f32)
        for (int64_t c = 0; c < a->C; c++) ((float *)a->grad)[off + c] = (float)v;
    else
        for (int64_t c = 0; c < a->C; c++) ((double *)a->grad)[off + c] = v;
}

static inline void FN(ctc_add)(const fl_ctc_args *a, int64_t i, double v)
{
    if (a->x_is_f32) ((float *)a->grad)[i] += (float)v;
    else ((double *)a->grad)[i] += v;
}

/* log sum exp of a row of C values; with g, g = scale * softmax(x) (g may be x) */
static R FN(ctc_row_lse)(const R *x, int64_t C, R *g, double scale)
{
    const R m = FN(row_max)(x, C);
    if (!(m > -__builtin_inf() && m < __builtin_inf())) return (R)__builtin_nan(""); /* NaN row */
    const VR vm = FN(vsplat)(m);
    VR acc0 = FN(vsplat)(0), acc1 = FN(vsplat)(0);
    double s = 0.0;
    int64_t c = 0;
    for (int blk = 0; c + 2 * L <= C; c += 2 * L) {
        const VR e0 = FN(vexp_nonpos)(FN(vload)(x + c) - vm);
        const VR e1 = FN(vexp_nonpos)(FN(vload)(x + c + L) - vm);
        acc0 += e0;
        acc1 += e1;
        if (g) {
            FN(vstore)(g + c, e0);
            FN(vstore)(g + c + L, e1);
        }
        if (++blk == FL_FLUSH) { /* keep the float32 partial sums short */
            s += FN(hsum)(acc0 + acc1);
            acc0 = acc1 = FN(vsplat)(0);
            blk = 0;
        }
    }
    for (; c < C; c += L) {
        const int64_t n = C - c < L ? C - c : L;
        const VR e = FN(vexp_nonpos)(FN(vload_part)(x + c, n, m) - vm);
        acc0 += n == L ? e : FN(vload_part)((const R *)&e, n, 0);
        if (g) FN(vstore_part)(g + c, e, n);
    }
    s += FN(hsum)(acc0 + acc1);
    if (g) {
        const VR f = FN(vsplat)((R)(scale / s));
        for (c = 0; c + L <= C; c += L) FN(vstore)(g + c, FN(vload)(g + c) * f);
        for (; c < C; c++) g[c] = (R)(g[c] * (scale / s));
    }
    return (R)((double)m + log(s));
}

/* row stride of one state array: a -inf in front, the states, -inf up to a whole vector past
 * the end (reads of index k + 1 and vector tails stay inside) */
static inline int64_t FN(ctc_stride)(int64_t S) { return 1 + (S + 1 + L - 1) / L * L + L; }

static void FN(ctc_fill)(R *p, int64_t n, R v)
{
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

/* One sample: returns its negative log-likelihood (inf if infeasible, NaN for NaN input). */
static double FN(ctc_sample)(const fl_ctc_args *a, int64_t n, R *mem, R *rowbuf, double *aoff)
{
    const int64_t C = a->C, N = a->N, Tn = a->input_lengths[n], S = a->target_lengths[n];
    const int64_t *lab = a->targets + a->target_offsets[n], blank = a->blank;
    const int with_grad = a->grad != NULL;
    const double scale = with_grad ? a->grad_scale[n] : 0.0;
    const R ninf = (R)-__builtin_inf();
    const int64_t P = FN(ctc_stride)(S);
    /* mem: sk (P), eb (T), ea (T x P), alpha (T x 2P: a then b), beta (4P: a, b, ha, hb) */
    R *sk = mem, *eb = sk + P, *ea = eb + a->T, *alpha = ea + a->T * P,
      *beta = alpha + 2 * a->T * P;
    /* the arrays' data start one element in: index -1 is a -inf */
#define FL_EA(t) (ea + (t) * P + 1)
#define FL_AA(t) (alpha + (t) * 2 * P + 1)
#define FL_AB(t) (alpha + (t) * 2 * P + P + 1)
    int nan_seen = 0;

    /* forward sweep over the rows: emissions, and the softmax part of the gradient */
    FN(ctc_fill)(sk, P, ninf);
    for (int64_t k = 1; k < S; k++) sk[1 + k] = lab[k] != lab[k - 1] ? 0 : ninf;
    for (int64_t t = 0; t < a->T; t++) {
        const int64_t off = (t * N + n) * C;
        if (t >= Tn) {
            if (with_grad) FN(ctc_fill_row)(a, off, 0.0);
            continue;
        }
        R *e = FL_EA(t);
        FN(ctc_fill)(e - 1, P, ninf);
        const R *x = FN(ctc_row)(a, off, rowbuf);
        R lse = 0;
        eb[t] = x[blank];
        for (int64_t k = 0; k < S; k++) e[k] = x[lab[k]];
        if (a->from_logits) {
            R *g = NULL;
            if (with_grad) g = (!FL_IS_F32 && a->x_is_f32) ? rowbuf : (R *)a->grad + off;
            lse = FN(ctc_row_lse)(x, C, g, scale);
            if (g) FN(ctc_store_row)(a, off, g);
        } else if (with_grad) {
            FN(ctc_fill_row)(a, off, 0.0);
        }
        eb[t] -= lse;
        nan_seen |= eb[t] != eb[t];
        for (int64_t k = 0; k < S; k++) {
            e[k] -= lse;
            nan_seen |= e[k] != e[k];
        }
    }

    double ll;
    if (Tn == 0) {
        ll = S == 0 ? 0.0 : -__builtin_inf();
    } else {
        /* alpha.  Row t is stored minus aoff[t] (double): each new row is shifted by the
         * maximum of the row before, so the stored values stay near 0 and float32 rows keep
         * their absolute accuracy over thousands of frames */
        FN(ctc_fill)(alpha, 2 * P * Tn, ninf);
        FL_AB(0)[0] = eb[0];
        if (S > 0) FL_AA(0)[0] = FL_EA(0)[0];
        aoff[0] = 0.0;
        R prev_max = S > 0 && FL_EA(0)[0] > eb[0] ? FL_EA(0)[0] : eb[0];
        for (int64_t t = 1; t < Tn; t++) {
            const R *pa = FL_AA(t - 1), *pb = FL_AB(t - 1), *e = FL_EA(t);
            R *na = FL_AA(t), *nb = FL_AB(t);
            const R shift = prev_max > ninf ? prev_max : 0; /* all -inf: stays so */
            aoff[t] = aoff[t - 1] + shift;
            const VR veb = FN(vsplat)(eb[t] - shift), vshift = FN(vsplat)(shift);
            VR vmx = FN(vsplat)(ninf);
            for (int64_t k = 0; k < S; k += L) {
                const VR pak = FN(vload)(pa + k), pak1 = FN(vload)(pa + k - 1);
                const VR skip = pak1 + FN(vload)(sk + 1 + k);
                const VR v =
                    FN(ctc_lse3)(pak, FN(vload)(pb + k), skip) + (FN(vload)(e + k) - vshift);
                vmx = FN(vmax)(vmx, v);
                FN(vstore)(na + k, v);
            }
            for (int64_t k = 0; k <= S; k += L) {
                const VR v = FN(ctc_lse2)(FN(vload)(pb + k), FN(vload)(pa + k - 1)) + veb;
                vmx = FN(vmax)(vmx, v);
                FN(vstore)(nb + k, v);
            }
            /* the lanes past the ends computed -inf from -inf: the pads stay -inf */
            prev_max = FN(hmax)(vmx);
        }
        const double lb = FL_AB(Tn - 1)[S], la = S > 0 ? FL_AA(Tn - 1)[S - 1] : -__builtin_inf();
        const double hi = lb > la ? lb : la, lo = lb > la ? la : lb;
        ll = hi == -__builtin_inf() ? hi : aoff[Tn - 1] + hi + log1p(exp(lo - hi));
    }
    if (nan_seen) ll = __builtin_nan("");
    const int infeasible = ll == -__builtin_inf();

    if (with_grad && Tn > 0) {
        if (nan_seen || (infeasible && !a->zero_infinity)) {
            for (int64_t t = 0; t < Tn; t++)
                FN(ctc_fill_row)(a, (t * N + n) * C, __builtin_nan(""));
        } else if (infeasible) {
            for (int64_t t = 0; t < Tn; t++) FN(ctc_fill_row)(a, (t * N + n) * C, 0.0);
        } else {
            R *ba = beta + 1, *bb = beta + P + 1, *ha = beta + 2 * P + 1, *hb = beta + 3 * P + 1;
            FN(ctc_fill)(beta, 4 * P, ninf);
            double boff = 0.0; /* the stored beta row is beta minus boff */
            for (int64_t t = Tn - 1; t >= 0; t--) {
                if (t == Tn - 1) {
                    bb[S] = 0;
                    if (S > 0) ba[S - 1] = 0;
                } else {
                    const R *e = FL_EA(t + 1);
                    const VR veb = FN(vsplat)(eb[t + 1]);
                    VR vmx = FN(vsplat)(ninf);
                    for (int64_t k = 0; k < S; k += L) {
                        const VR v = FN(vload)(ba + k) + FN(vload)(e + k);
                        vmx = FN(vmax)(vmx, v);
                        FN(vstore)(ha + k, v);
                    }
                    for (int64_t k = 0; k <= S; k += L) {
                        const VR v = FN(vload)(bb + k) + veb;
                        vmx = FN(vmax)(vmx, v);
                        FN(vstore)(hb + k, v);
                    }
                    /* shift h by its maximum (the beta row's scale); a feasible sample has
                     * a finite one */
                    const R mx = FN(hmax)(vmx), shift = mx > ninf ? mx : 0;
                    const VR vshift = FN(vsplat)(shift);
                    boff += shift;
                    for (int64_t k = 0; k <= S; k += L) {
                        const VR v = FN(ctc_lse2)(FN(vload)(hb + k), FN(vload)(ha + k));
                        FN(vstore)(bb + k, v - vshift);
                    }
                    for (int64_t k = 0; k < S; k += L) {
                        const VR skip = FN(vload)(ha + k + 1) + FN(vload)(sk + 2 + k);
                        const VR v = FN(ctc_lse3)(FN(vload)(ha + k), FN(vload)(hb + k + 1), skip);
                        FN(vstore)(ba + k, v - vshift);
                    }
                }
                /* occupancies: exp(alpha + beta - ll), subtracted at the blank and the labels;
                 * the offsets and ll meet in double, rounded once */
                const int64_t off = (t * N + n) * C;
                const VR vll = FN(vsplat)((R)(ll - aoff[t] - boff));
                const R *aa = FL_AA(t), *ab = FL_AB(t);
                double blank_total = 0.0;
                for (int64_t k = 0; k <= S; k += L) {
                    const int64_t m = S + 1 - k < L ? S + 1 - k : L;
                    const VR gb = FN(vexp)(FN(vload)(ab + k) + FN(vload)(bb + k) - vll);
                    blank_total += FN(hsum)(m == L ? gb : FN(vload_part)((const R *)&gb, m, 0));
                }
                FN(ctc_add)(a, off + blank, -scale * blank_total);
                for (int64_t k = 0; k < S; k += L) {
                    const int64_t m = S - k < L ? S - k : L;
                    R gk[L];
                    FN(vstore)(gk, FN(vexp)(FN(vload)(aa + k) + FN(vload)(ba + k) - vll));
                    for (int64_t j = 0; j < m; j++)
                        FN(ctc_add)(a, off + lab[k + j], -scale * gk[j]);
                }
            }
        }
    }
#undef FL_EA
#undef FL_AA
#undef FL_AB
    return -ll;
}

static void FN(ctc_chunk)(const void *args, int64_t n0, int64_t n1, double *partial)
{
    const fl_ctc_args *a = (const fl_ctc_args *)args;
    int64_t S_max = 0;
    for (int64_t n = n0; n < n1; n++)
        if (a->target_lengths[n] > S_max) S_max = a->target_lengths[n];
    const int64_t P = FN(ctc_stride)(S_max);
    const size_t cells = (size_t)(P + a->T + a->T * P + 2 * a->T * P + 4 * P + a->C + L);
    R *mem = (R *)malloc(cells * sizeof(R));
    if (!mem) {
        __atomic_store_n(a->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    R *rowbuf = mem + (cells - (size_t)a->C - L);
    double *aoff = (double *)malloc((size_t)(a->T > 0 ? a->T : 1) * sizeof(double));
    if (!aoff) {
        free(mem);
        __atomic_store_n(a->failed, 1, __ATOMIC_RELAXED);
        return;
    }
    double total = 0.0;
    for (int64_t n = n0; n < n1; n++) {
        const double nll = FN(ctc_sample)(a, n, mem, rowbuf, aoff);
        a->nll[n] = nll;
        total += nll;
    }
    free(mem);
    free(aoff);
    *partial = total;
}
