/*
 * Tile transposes and indexing, for one (dtype, ISA) instantiation: register transposes and
 * the transposing copies of small-C rows into tiles of L samples and back
 * (FN(tile_transpose_in), FN(tile_transpose_out)), and the tile index of an (N, C, S) input
 * (FN(tile_of)).  No include guard on purpose.
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
