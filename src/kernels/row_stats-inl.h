/*
 * Row statistics along the class axis of an (N, C, S) input, for one (dtype, ISA)
 * instantiation: the metrics' kernels (fl_row_op, FL_ROW_OPS).  Each op has three chunk
 * functions, one per loop shape of the class losses (FL_ROW_LAYOUT_*): FN(<op>_rows) (S == 1,
 * C > FL_SMALL_C: one row at a time), FN(<op>_small_rows) (S == 1: L rows transposed into a
 * scratch tile, FN(tile_transpose_in)) and FN(<op>_cols) (S > 1: tiles of L consecutive
 * positions, copied to a scratch tile up to FL_COLS_SCRATCH_C classes).  Each stores two
 * partial sums: [0] the sum of the per-sample values, [1] for rank the weight of the samples
 * kept (NaN when a target is out of range: fl_row_op then locates it).  One read of x; all
 * sums in a fixed order for a given shape.  No include guard on purpose.
 *
 * rank (error rate, top-k accuracy): per sample with target y and score s_y,
 *   gt = #{j : s_j > s_y},  lo = #{j < y : s_j == s_y},  hi = #{j > y : s_j == s_y},
 * rank = gt + lo (ties "argmax"), gt + hi ("sklearn") or gt + lo + hi ("pessimistic"); the
 * sample is a hit iff rank < top_k and none of its scores is NaN (a NaN compares false, so
 * it would otherwise rank nowhere).  No sort and no per-sample branch on the scores.
 *
 * entropy, of p = softmax(x) per sample: m = max_j x_j (NaN ignored), d_j = x_j - m,
 * e_j = exp(d_j); Z = sum e_j is 1 + R with R the sum of the e_j other than one e_j = 1 at the
 * max, kept apart (a dominant class makes R tiny, and 1 + R would round it away), and
 * T = sum e_j d_j over e_j != 0 (<= 0):
 *   H = log Z - T / Z = log1p(R) - T / Z          (two terms >= 0: no cancellation)
 *   dH/dx_k = -p_k (log p_k + H),  p_k = e_k / Z,  log p_k = d_k - log1p(R).
 * A masked class (x_k = -inf: e_k = 0) contributes 0 and gets gradient 0; NaN, +inf, or only
 * -inf in a sample make some d_j NaN, so H is NaN, and so is that sample's whole gradient.
 */

/* ---------------------------------------------------------------- shared */

static inline FL_VX FN(vsplat_x)(int64_t v)
{
    FL_VX r;
    for (int i = 0; i < FL_LANES; i++) r[i] = (FL_XLANE)v;
    return r;
}

static inline int64_t FN(hsum_i)(VI v)
{
    int64_t s = 0;
    for (int i = 0; i < FL_LANES; i++) s += (int64_t)v[i];
    return s;
}

/* Loads of a tile's class vector: all L lanes, or the first nl (the rest 0). */
#define FL_ROW_LOAD(p) (full ? FN(vload)(p) : FN(vload_part)((p), nl, 0))

/* ---------------------------------------------------------------- rank */

/* The counts of the L samples of a tile (negated: compares add -1). */
typedef struct {
    VI gt, lo, hi, nan;
} FN(rank_counts_t);

/* Tile of L samples whose class vectors lie xs apart; yv the target class per lane (-1: none,
 * such lanes are not used).  Two sweeps (the second from cache): the target's score per
 * lane by selects (a lane-by-lane gather from the freshly stored scratch would wait on
 * store forwarding), then the counts. */
FL_INLINE FN(rank_counts_t)
    FN(rank_tile)(const R *x, int64_t xs, int64_t C, int full, int64_t nl, FL_VX yv)
{
    const FL_VX one = FN(vsplat_x)(1);
    VR xy = FN(vsplat)(0);
    FL_VX cv = FN(vsplat_x)(0);
    for (int64_t c = 0; c < C; c++, cv += one)
        xy = FN(vselect)(cv == yv, FL_ROW_LOAD(x + c * xs), xy);
    FN(rank_counts_t) k;
    k.gt = k.lo = k.hi = k.nan = FN(vsplat_i)(0);
    cv = FN(vsplat_x)(0);
    for (int64_t c = 0; c < C; c++, cv += one) {
        const VR v = FL_ROW_LOAD(x + c * xs);
        const VI eq = v == xy;
        k.gt += v > xy;
        k.lo += eq & (cv < yv);
        k.hi += eq & (cv > yv);
        k.nan |= v != v;
    }
    return k;
}

/* The L targets from flat sample `base` (nl of them) as class lanes: -1 for ignored samples,
 * padding lanes and targets out of range (which set *bad).  Full tiles by vector compares
 * and a narrowing conversion (FN(tile_i64_t): class_tile_chunks-inl.h); lanes filled one by
 * one and read back as a vector would stall store forwarding. */
FL_INLINE FL_VX FN(rank_targets)(const fl_row_args *a, int64_t base, int64_t nl, int *bad)
{
    const int64_t *tg = a->target + base, ign = a->ignore_index, C = a->C;
    if (nl == L) {
        FN(tile_i64_t) t;
        memcpy(&t, tg, sizeof t);
        const FN(tile_i64_t) use = t != ign, out = use & ((t < 0) | (t >= C)), ok = use & ~out;
        int64_t any = 0;
        for (int l = 0; l < L; l++) any |= out[l];
        *bad |= any != 0;
        return __builtin_convertvector((t & ok) | ~ok, FL_VX); /* not used: -1 */
    }
    FL_XLANE ya[L];
    for (int l = 0; l < L; l++) {
        const int64_t y = l < nl ? tg[l] : ign;
        const int out = y != ign && (y < 0 || y >= C);
        *bad |= out;
        ya[l] = y == ign || out ? (FL_XLANE)-1 : (FL_XLANE)y;
    }
    FL_VX yv;
    memcpy(&yv, ya, sizeof yv);
    return yv;
}

/* Per-chunk accumulators of rank: unweighted counts per lane, or weighted sums per lane. */
typedef struct {
    VI hits, kept;             /* negated counts (no sample_weight) */
    double whits[L], wkept[L]; /* sums (sample_weight) */
    VI top_k;                  /* a->top_k in every lane */
} FN(rank_acc_t);

/* The hits / misses of a tile's samples from their counts: into the accumulators, out_rows
 * and rank_out. */
FL_INLINE void FN(rank_finish)(const fl_row_args *a, FN(rank_acc_t) * acc, int64_t base, int64_t nl,
                               FL_VX yv, FN(rank_counts_t) k)
{
    const VI sel = a->ties == FL_TIES_ARGMAX    ? k.lo
                   : a->ties == FL_TIES_SKLEARN ? k.hi
                                                : k.lo + k.hi;
    const VI rank = -(k.gt + sel); /* the counts are negated */
    const VI keep = yv >= FN(vsplat_x)(0);
    const VI hit = (rank < acc->top_k) & ~k.nan & keep;
    const VI counted = a->count_hits ? hit : keep & ~hit;
    R *out = (R *)a->out_rows;
    if (!a->sample_weight) {
        acc->hits += counted;
        acc->kept += keep;
        if (out) FN(vstore_part)(out + base, FN(vand)(counted, FN(vsplat)(1)), nl);
    } else {
        const double *sw = a->sample_weight + base;
        for (int l = 0; l < nl; l++) {
            const double w = keep[l] ? sw[l] : 0.0, v = counted[l] ? w : 0.0;
            acc->wkept[l] += w;
            acc->whits[l] += v;
            if (out) out[base + l] = (R)v;
        }
    }
    if (a->rank_out)
        for (int l = 0; l < nl; l++)
            a->rank_out[base + l] = keep[l] && !k.nan[l] ? (int64_t)rank[l] : -1;
}

static inline void FN(rank_acc_init)(const fl_row_args *a, FN(rank_acc_t) * acc)
{
    acc->hits = acc->kept = FN(vsplat_i)(0);
    acc->top_k = FN(vsplat_i)(a->top_k);
    for (int l = 0; l < L; l++) acc->whits[l] = acc->wkept[l] = 0.0;
}

static inline void FN(rank_acc_store)(const fl_row_args *a, const FN(rank_acc_t) * acc, int bad,
                                      double *partial)
{
    double hits = 0.0, kept = 0.0;
    if (a->sample_weight) {
        for (int l = 0; l < L; l++) {
            hits += acc->whits[l];
            kept += acc->wkept[l];
        }
    } else {
        hits = (double)-FN(hsum_i)(acc->hits);
        kept = (double)-FN(hsum_i)(acc->kept);
    }
    partial[0] = bad ? NAN : hits;
    partial[1] = bad ? NAN : kept;
}

static void FN(rank_small_rows)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C;
    R xt[FL_SMALL_C * L];
    FN(rank_acc_t) acc;
    FN(rank_acc_init)(a, &acc);
    int bad = 0;
    for (int64_t u = u0; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        FN(tile_transpose_in)(xt, (const R *)a->x + base * C, C, C, nl);
        const FL_VX yv = FN(rank_targets)(a, base, nl, &bad);
        FN(rank_finish)(a, &acc, base, nl, yv, FN(rank_tile)(xt, L, C, 1, L, yv));
    }
    FN(rank_acc_store)(a, &acc, bad, partial);
}

static void FN(rank_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C, S = a->S;
    R xt[FL_COLS_SCRATCH_C * L];
    FN(rank_acc_t) acc;
    FN(rank_acc_init)(a, &acc);
    int bad = 0;
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const R *x = (const R *)a->x + n * C * S + s0;
        const int64_t base = n * S + s0;
        const FL_VX yv = FN(rank_targets)(a, base, nl, &bad);
        FN(rank_counts_t) k;
        if (nl == L && C <= FL_COLS_SCRATCH_C) { /* the prefetching copy: see tile_copy_in */
            FN(tile_copy_in)(xt, x, S, C);
            k = FN(rank_tile)(xt, L, C, 1, L, yv);
        } else {
            k = FN(rank_tile)(x, S, C, nl == L, nl, yv);
        }
        FN(rank_finish)(a, &acc, base, nl, yv, k);
    }
    FN(rank_acc_store)(a, &acc, bad, partial);
}

/* Counts of x[0..n) against xy (negated, per lane). */
static inline void FN(rank_span)(const R *x, int64_t n, VR xy, VI *gt, VI *eq, VI *nan)
{
    int64_t c = 0;
    for (; c + L <= n; c += L) {
        const VR v = FN(vload)(x + c);
        *gt += v > xy;
        *eq += v == xy;
        *nan |= v != v;
    }
    if (c < n) {
        const VR v = FN(vload_part)(x + c, n - c, 0);
        const VI valid = FN(viota)() < (FL_XLANE)(n - c);
        *gt += (v > xy) & valid;
        *eq += (v == xy) & valid;
        *nan |= (v != v) & valid;
    }
}

/* Long rows: the classes before the target counted apart from the rest, so the tie counts
 * need no class-index compare. */
static void FN(rank_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C;
    R *out = (R *)a->out_rows;
    double hits = 0.0, kept = 0.0;
    int bad = 0;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t y = a->target[r];
        if (y == a->ignore_index || y < 0 || y >= C) {
            bad |= y != a->ignore_index;
            if (out) out[r] = 0;
            if (a->rank_out) a->rank_out[r] = -1;
            continue;
        }
        const R *x = (const R *)a->x + r * C;
        const R sy = x[y];
        const VR xy = FN(vsplat)(sy);
        VI gt = FN(vsplat_i)(0), lo = gt, eq = gt, nanv = gt;
        FN(rank_span)(x, y, xy, &gt, &lo, &nanv);
        FN(rank_span)(x + y, C - y, xy, &gt, &eq, &nanv);
        const int64_t g = -FN(hsum_i)(gt), l = -FN(hsum_i)(lo);
        const int64_t h = -FN(hsum_i)(eq) - (sy == sy); /* the target itself */
        const int has_nan = FN(vany)(nanv);
        const int64_t rank = g + (a->ties == FL_TIES_ARGMAX    ? l
                                  : a->ties == FL_TIES_SKLEARN ? h
                                                               : l + h);
        const int hit = !has_nan && rank < a->top_k;
        const double w = a->sample_weight ? a->sample_weight[r] : 1.0;
        const double v = hit == a->count_hits ? w : 0.0;
        kept += w;
        hits += v;
        if (out) out[r] = (R)v;
        if (a->rank_out) a->rank_out[r] = has_nan ? -1 : rank;
    }
    partial[0] = bad ? NAN : hits;
    partial[1] = bad ? NAN : kept;
}

/* ---------------------------------------------------------------- entropy */

/* The per-lane gradient scales of nl samples from `base` (0 in padding lanes). */
static inline VR FN(row_lane_scales)(const fl_row_args *a, int64_t base, int64_t nl)
{
    if (a->grad_scale_rows) {
        R tmp[L];
        for (int l = 0; l < L; l++) tmp[l] = l < nl ? (R)a->grad_scale_rows[base + l] : (R)0;
        VR gs;
        memcpy(&gs, tmp, sizeof gs);
        return gs;
    }
    return FN(vselect)(FN(viota)() < (FL_XLANE)nl, FN(vsplat)((R)a->grad_scale), FN(vsplat)(0));
}

/* -p (log p + H) for one class vector, 0 where e = 0 unless H is NaN (then the sample's whole
 * gradient is NaN). */
static inline VR FN(entropy_grad)(VR d, VR e, VR inv_z, VR log_z, VR h, VR gs)
{
    const VR g = -(e * inv_z) * ((d - log_z) + h) * gs;
    return FN(vselect)((e == 0) & (h == h), FN(vsplat)(0), g);
}

/* H of the L samples of a tile whose class vectors lie xs apart, and with g (not NULL; may be
 * x) the gradient times gs per lane, written in the same layout.  et (not NULL: a scratch tile
 * of C vectors) keeps the exps of the sum sweep for the gradient sweep. */
FL_INLINE VR FN(entropy_tile)(const R *x, int64_t xs, int64_t C, int full, int64_t nl, R *g, VR gs,
                              R *et)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    VR m = FN(vsplat)((R)-__builtin_inf());
    for (int64_t c = 0; c < C; c++) m = FN(vmax)(m, FL_ROW_LOAD(x + c * xs));
    /* two-level sums: FL_FLUSH classes in a vector, then added to the running one */
    VR rest = zero, t = zero, nmax = zero, rest_p = zero, t_p = zero;
    int blk = 0;
    for (int64_t c = 0; c < C; c++) {
        const VR d = FL_ROW_LOAD(x + c * xs) - m;
        const VR e = FN(vexp_nonpos)(d);
        if (g && et) FN(vstore)(et + c * L, e);
        const VI at_max = d == zero;
        rest_p += FN(vselect)(at_max, zero, e);
        nmax += FN(vand)(at_max, one);
        t_p += FN(vselect)(e != zero, e * d, zero); /* 0 * -inf: a masked class adds 0 */
        if (++blk == FL_FLUSH) {
            rest += rest_p;
            t += t_p;
            rest_p = t_p = zero;
            blk = 0;
        }
    }
    rest += rest_p + (nmax - one); /* nmax is 0 only where H is NaN anyway */
    t += t_p;
    const VR inv_z = one / (one + rest), log_z = FN(vlog1p_nonneg)(rest);
    const VR h = log_z - t * inv_z;
    if (g)
        for (int64_t c = 0; c < C; c++) {
            const VR d = FL_ROW_LOAD(x + c * xs) - m;
            const VR e = et ? FN(vload)(et + c * L) : FN(vexp_nonpos)(d);
            const VR gv = FN(entropy_grad)(d, e, inv_z, log_z, h, gs);
            if (full) FN(vstore)(g + c * xs, gv);
            else FN(vstore_part)(g + c * xs, gv, nl);
        }
    return h;
}

/* the tile's values into out_rows and the per-lane sums (padding lanes left out: a lane loop,
 * since a vector select of lanes < nl here makes gcc 12 ICE on SSE2 float64) */
static inline void FN(entropy_store)(const fl_row_args *a, double *acc, int64_t base, int64_t nl,
                                     VR h)
{
    h = h * (R)a->inv_log_base;
    if (a->out_rows) FN(vstore_part)((R *)a->out_rows + base, h, nl);
    for (int l = 0; l < nl; l++) acc[l] += (double)h[l];
}

static void FN(entropy_small_rows)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C;
    R xt[FL_SMALL_C * L], et[FL_SMALL_C * L];
    double acc[L] = {0};
    for (int64_t u = u0; u < u1; u++) {
        const int64_t base = u * L, nl = a->N - base < L ? a->N - base : L;
        FN(tile_transpose_in)(xt, (const R *)a->x + base * C, C, C, nl);
        const VR gs = a->grad ? FN(row_lane_scales)(a, base, nl) : FN(vsplat)(0);
        const VR h = FN(entropy_tile)(xt, L, C, 1, L, a->grad ? xt : NULL, gs, et);
        if (a->grad) FN(tile_transpose_out)((R *)a->grad + base * C, xt, C, nl);
        FN(entropy_store)(a, acc, base, nl, h);
    }
    partial[0] = FN(acc_total)(acc);
    partial[1] = 0.0;
}

static void FN(entropy_cols)(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C, S = a->S;
    R xt[FL_COLS_SCRATCH_C * L], et[FL_COLS_SCRATCH_C * L];
    double acc[L] = {0};
    for (int64_t u = u0; u < u1; u++) {
        int64_t n, s0, nl;
        FN(tile_of)(u, S, &n, &s0, &nl);
        const int64_t off = n * C * S + s0, base = n * S + s0;
        const R *x = (const R *)a->x + off;
        R *g = a->grad ? (R *)a->grad + off : NULL;
        const VR gs = g ? FN(row_lane_scales)(a, base, nl) : FN(vsplat)(0);
        VR h;
        if (nl == L && C <= FL_COLS_SCRATCH_C) {
            FN(tile_copy_in)(xt, x, S, C);
            h = FN(entropy_tile)(xt, L, C, 1, L, g ? xt : NULL, gs, et);
            if (g) FN(tile_copy_out)(g, S, xt, C);
        } else {
            h = FN(entropy_tile)(x, S, C, nl == L, nl, g, gs, NULL);
        }
        FN(entropy_store)(a, acc, base, nl, h);
    }
    partial[0] = FN(acc_total)(acc);
    partial[1] = 0.0;
}

/* Long rows: the max, then the sums (flushed into double every FL_FLUSH vectors), the
 * per-row formula in double, and with a gradient a third sweep from cache. */
static void FN(entropy_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_row_args *a = (const fl_row_args *)args;
    const int64_t C = a->C;
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1);
    const R ninf = (R)-__builtin_inf();
    /* the exps of the sum sweep wait in g for the gradient sweep, unless g is x */
    const int keep_e = a->grad && a->grad != a->x;
    double total = 0.0;
    for (int64_t r = r0; r < r1; r++) {
        const R *x = (const R *)a->x + r * C;
        R *g = a->grad ? (R *)a->grad + r * C : NULL;
        const R m = FN(row_max)(x, C);
        const VR vm = FN(vsplat)(m);
        VR rest_p = zero, t_p = zero, nmax_p = zero;
        double rest = 0.0, t = 0.0, nmax = 0.0;
        int blk = 0;
        for (int64_t c = 0; c < C; c += L) {
            /* the tail's missing lanes as -inf: e = 0, no contribution */
            const int64_t n = C - c < L ? C - c : L;
            const VR d = (n == L ? FN(vload)(x + c) : FN(vload_part)(x + c, n, ninf)) - vm;
            const VR e = FN(vexp_nonpos)(d);
            if (keep_e) {
                if (n == L) FN(vstore)(g + c, e);
                else FN(vstore_part)(g + c, e, n);
            }
            const VI at_max = d == zero;
            rest_p += FN(vselect)(at_max, zero, e);
            nmax_p += FN(vand)(at_max, one);
            t_p += FN(vselect)(e != zero, e * d, zero);
            if (++blk == FL_FLUSH || c + L >= C) {
                rest += FN(hsum)(rest_p);
                t += FN(hsum)(t_p);
                nmax += FN(hsum)(nmax_p);
                rest_p = t_p = nmax_p = zero;
                blk = 0;
            }
        }
        rest += nmax - 1.0;
        const double log_z = log1p(rest), h = log_z - t / (1.0 + rest);
        const double hv = h * a->inv_log_base;
        total += hv;
        if (a->out_rows) ((R *)a->out_rows)[r] = (R)hv;
        if (!g) continue;
        const double gs = a->grad_scale_rows ? a->grad_scale_rows[r] : a->grad_scale;
        const VR inv_z = FN(vsplat)((R)(1.0 / (1.0 + rest))), lz = FN(vsplat)((R)log_z),
                 hh = FN(vsplat)((R)h), gsv = FN(vsplat)((R)gs);
        for (int64_t c = 0; c < C; c += L) {
            const int64_t n = C - c < L ? C - c : L;
            const VR d = (n == L ? FN(vload)(x + c) : FN(vload_part)(x + c, n, ninf)) - vm;
            const VR e = !keep_e  ? FN(vexp_nonpos)(d)
                         : n == L ? FN(vload)(g + c)
                                  : FN(vload_part)(g + c, n, 0);
            const VR gv = FN(entropy_grad)(d, e, inv_z, lz, hh, gsv);
            if (n == L) FN(vstore)(g + c, gv);
            else FN(vstore_part)(g + c, gv, n);
        }
    }
    partial[0] = total;
    partial[1] = 0.0;
}

#undef FL_ROW_LOAD
