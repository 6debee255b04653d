/*
 * Tile machinery of the class-axis kernels, for one (dtype, ISA) instantiation: register
 * transposes and the transposing copies of small-C rows into tiles (FN(tile_transpose_in),
 * FN(tile_transpose_out)), the (N, C, S) tile copies (FN(tile_copy_in), FN(tile_copy_out)),
 * the tile index (FN(tile_of)) and the per-lane targets and gradient scales of a tile
 * (FN(index_lanes), FN(lane_scales)), the per-lane loss sums (FN(acc_lanes)).  No include
 * guard on purpose.
 */

#if FL_HAS_REG_TRANSPOSE
/* v[0..L-1] := its transpose, in registers; only v[0..need-1] are formed (the rest are left
 * unspecified).  Interleaves inside 128-bit lanes first (elements, then 64-bit pairs for
 * float), after which u[G q + m] holds in its 128-bit lane k the column G k + m of rows
 * G q .. G q + G - 1 (G = 128-bit lane width in elements); then a 4 x 4 transpose of whole
 * 128-bit lanes per m.  Zen 4 runs the in-lane shuffles beside the FMAs, whereas a
 * two-source lane-crossing permute takes an FMA slot: 64 of those for 16 x 16 floats were
 * a fifth of the small-C loss time; this network has 32 lane-crossing shuffles (16 for
 * 8 x 8 doubles) and skips the ones whose outputs are not needed. */
FL_INLINE void FN(transpose_regs)(VR *v, int need)
{
#if FL_IS_F32
    enum { G = 4 };
    VR t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        u[4 * q] = FL_UNPACKLO64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = FL_UNPACKHI64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = FL_UNPACKLO64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = FL_UNPACKHI64(t[4 * q + 1], t[4 * q + 3]);
    }
#else
    enum { G = 2 };
    VR u[8];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        u[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        u[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#endif
    /* 0x88 picks 128-bit lanes (0, 2) of a and of b, 0xdd lanes (1, 3) */
#pragma GCC unroll 4
    for (int m = 0; m < G; m++) {
        if (m >= need) break;
        const VR a = u[m], b = u[G + m], c = u[2 * G + m], d = u[3 * G + m];
        const VR e0 = FL_SHUF128(a, b, 0x88), f0 = FL_SHUF128(c, d, 0x88);
        v[m] = FL_SHUF128(e0, f0, 0x88);
        if (2 * G + m < need) v[2 * G + m] = FL_SHUF128(e0, f0, 0xdd);
        if (G + m < need) {
            const VR e1 = FL_SHUF128(a, b, 0xdd), f1 = FL_SHUF128(c, d, 0xdd);
            v[G + m] = FL_SHUF128(e1, f1, 0x88);
            if (3 * G + m < need) v[3 * G + m] = FL_SHUF128(e1, f1, 0xdd);
        }
    }
}
#endif

/* dst[c * L + l] = src[l * src_stride + c] for l < nl (padding lanes get 0), c < C. */
static inline void FN(tile_transpose_in)(R *restrict dst, const R *restrict src, int64_t src_stride,
                                         int64_t C, int64_t nl)
{
#if FL_HAS_REG_TRANSPOSE
    /* full tiles: blocks of L classes, each row read by one masked load (no access past
     * column C) */
    if (nl == L) {
        for (int64_t c0 = 0; c0 < C; c0 += L) {
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) v[l] = FL_MASK_LOAD(src + l * src_stride + c0, w);
            FN(transpose_regs)(v, w);
#pragma GCC unroll 16
            for (int j = 0; j < L; j++)
                if (j < w) FN(vstore)(dst + (c0 + j) * L, v[j]);
        }
        return;
    }
#endif
    for (int l = 0; l < nl; l++) {
        const R *row = src + l * src_stride;
        for (int64_t c = 0; c < C; c++) dst[c * L + l] = row[c];
    }
    for (int l = (int)nl; l < L; l++)
        for (int64_t c = 0; c < C; c++) dst[c * L + l] = 0;
}

/* dst[l * dst_stride + c] = src[c * L + l] for l < nl, c < C. */
static inline void FN(tile_transpose_out)(R *restrict dst, int64_t dst_stride,
                                          const R *restrict src, int64_t C, int64_t nl)
{
#if FL_HAS_REG_TRANSPOSE
    if (nl == L) {
        for (int64_t c0 = 0; c0 < C; c0 += L) {
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
            /* columns >= w of the rows are not stored: any values do for their classes */
#pragma GCC unroll 16
            for (int j = 0; j < L; j++) v[j] = FN(vload)(src + (c0 + (j < w ? j : 0)) * L);
            FN(transpose_regs)(v, L);
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) FL_MASK_STORE(dst + l * dst_stride + c0, w, v[l]);
        }
        return;
    }
#endif
    for (int l = 0; l < nl; l++) {
        R *row = dst + l * dst_stride;
        for (int64_t c = 0; c < C; c++) row[c] = src[c * L + l];
    }
}

static inline void FN(tile_of)(int64_t u, int64_t S, int64_t *n, int64_t *s0, int64_t *nl)
{
    const int64_t tiles = (S + L - 1) / L;
    *n = u / tiles;
    *s0 = (u % tiles) * L;
    *nl = S - *s0 < L ? S - *s0 : L;
}

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
