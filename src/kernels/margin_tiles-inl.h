/*
 * multi_margin_loss's chunk function, FN(multi_margin_rows), for one (dtype, ISA)
 * instantiation: rows of few classes (FN(mm_tiled)) go through tiles of L rows transposed into
 * an L1 scratch (FN(tile_transpose_in), tiles-inl.h), where each lane is one row and the
 * per-row math is plain vector code per class column; longer rows, and the rows of a tile
 * holding a target out of range, one at a time (FN(multi_margin_row_range),
 * embedding-inl.h).  A row shorter than a vector costs the row loop a partial load and two
 * horizontal sums (about 15 ns at C = 10 against 1.4 ns of memory traffic); a tile costs two
 * transposes and about four vector operations per class for L rows.  Included by
 * embedding-inl.h.  No include guard on purpose.
 */

/* Whether rows of C classes take the tiles (up to FL_SMALL_C, the scratch): rows that end in
 * a partial vector always (the row loop's partial loads and stores through the stack cost
 * about 20 ns a row), and rows of one or two whole vectors of 8 or more lanes; longer
 * whole-vector rows, and whole-vector rows of 2 or 4 lanes, are faster one at a time (the
 * 2- and 4-lane rule was measured when the 16-byte paths transposed tiles by scalar copies;
 * they transpose in registers now).  Timings: docs/performance.md. */
static inline int FN(mm_tiled)(int64_t C)
{
    return C >= 1 && C <= FL_SMALL_C && (C % L != 0 || (L >= 8 && C <= 2 * L));
}

/* One tile: class c of lane l at xt[c * L + l], yv the target class per lane (-1 in padding
 * lanes: no class is theirs), gs the gradient scale per lane.  Returns the per-lane losses
 * (padding lanes: anything) and, with_g, overwrites xt with the gradient tile.  x_y and w_y
 * come from one select per class; the terms and slopes of class y are masked out of the sums
 * (z = margin there), its gradient is minus the sum of the others'. */
FL_INLINE VR FN(mm_tile)(const fl_emb_args *a, R *xt, int64_t C, VX yv, VR gs, const int with_g,
                         const int sq)
{
    const R *wt = (const R *)a->weight;
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1), two = FN(vsplat)((R)2);
    VR xy = zero, wy = one;
    for (int64_t c = 0; c < C; c++) {
        const VI is_y = yv == (FL_XLANE)c;
        xy = FN(vselect)(is_y, FN(vload)(xt + c * L), xy);
        if (wt) wy = FN(vselect)(is_y, FN(vsplat)(wt[c]), wy);
    }
    const VR b = FN(vsplat)((R)a->p1) - xy, cv = FN(vsplat)((R)C);
    const VR k = with_g ? wy * gs / cv : zero;
    VR s0 = zero, s1 = zero;
    for (int64_t c = 0; c < C; c++) {
        const VI not_y = yv != (FL_XLANE)c;
        const VR z = b + FN(vload)(xt + c * L), h = FN(hinge)(z);
        s0 += FN(vand)(not_y, sq ? h * h : h);
        if (with_g) {
            const VR d = FN(hinge_slope)(z, sq ? two * z : one);
            s1 += FN(vand)(not_y, d);
            FN(vstore)(xt + c * L, k * d);
        }
    }
    if (with_g) {
        const VR gy = -(k * s1);
        for (int64_t c = 0; c < C; c++)
            FN(vstore)(xt + c * L, FN(vselect)(yv == (FL_XLANE)c, gy, FN(vload)(xt + c * L)));
    }
    return wy * s0 / cv;
}

/* Rows [r0, r1) in tiles of L (the last one partial), the losses summed per lane in double;
 * returns their sum. */
FL_INLINE double FN(mm_tiles)(const fl_emb_args *a, int64_t r0, int64_t r1, const int with_g,
                              const int sq)
{
    const int64_t C = a->D;
    const R *x = (const R *)a->a;
    R *g = (R *)a->grad_a, *loss_rows = (R *)a->loss_rows;
    const R *gsr = (const R *)a->grad_scale_rows;
    R xt[FL_SMALL_C * L];
    double acc[L] = {0}, rest = 0.0;
    for (int64_t base = r0; base < r1; base += L) {
        const int64_t nl = r1 - base < L ? r1 - base : L;
        const int64_t *tg = a->target_idx + base;
        int bad = 0;
        for (int64_t l = 0; l < nl; l++) bad |= (uint64_t)tg[l] >= (uint64_t)C;
        if (bad) { /* the row loop marks them NaN (the caller raises) */
            rest += FN(multi_margin_row_range)(a, base, base + nl);
            continue;
        }
        VX yv;
        if (nl == L) {
            FN(tile_i64_t) t;
            memcpy(&t, tg, sizeof t);
            yv = __builtin_convertvector(t, VX);
        } else {
            FL_XLANE ya[L];
            for (int l = 0; l < L; l++) ya[l] = l < nl ? (FL_XLANE)tg[l] : (FL_XLANE)-1;
            memcpy(&yv, ya, sizeof yv);
        }
        VR gs = FN(vsplat)(0);
        if (with_g)
            gs = !gsr      ? FN(vsplat)((R)a->grad_scale)
                 : nl == L ? FN(vload)(gsr + base)
                           : FN(vload_part)(gsr + base, nl, 0);
        FN(tile_transpose_in)(xt, x + base * C, C, C, nl);
        VR loss = FN(mm_tile)(a, xt, C, yv, gs, with_g, sq);
        if (with_g) FN(tile_transpose_out)(g + base * C, xt, C, nl);
        if (nl < L) loss = FN(vselect)(FN(viota)() < (FL_XLANE)nl, loss, FN(vsplat)(0));
        if (loss_rows) {
            if (nl == L) FN(vstore)(loss_rows + base, loss);
            else FN(vstore_part)(loss_rows + base, loss, nl);
        }
        FN(acc_lanes)(acc, loss);
    }
    return FN(acc_total)(acc) + rest;
}

static void FN(multi_margin_rows)(const void *args, int64_t r0, int64_t r1, double *partial)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    if (!FN(mm_tiled)(a->D)) {
        *partial = FN(multi_margin_row_range)(a, r0, r1);
        return;
    }
    const int sq = a->p2 == 2.0;
    if (a->grad_a) *partial = sq ? FN(mm_tiles)(a, r0, r1, 1, 1) : FN(mm_tiles)(a, r0, r1, 1, 0);
    else *partial = sq ? FN(mm_tiles)(a, r0, r1, 0, 1) : FN(mm_tiles)(a, r0, r1, 0, 0);
}
