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
 * G q .. G q + G - 1 (G = 128-bit lane width in elements); then a transpose of whole 128-bit
 * lanes per m: none with one lane (16-byte vectors: the 4 x 4 float / 2 x 2 double transpose
 * is done), one two-source lane pick per output with two (AVX2), and a 4 x 4 of lanes with
 * four (AVX-512).  Zen 4 runs the in-lane shuffles beside the FMAs, whereas a two-source
 * lane-crossing permute takes an FMA slot: 64 of those for 16 x 16 floats were a fifth of the
 * small-C loss time; this network has 32 lane-crossing shuffles (16 for 8 x 8 doubles) and
 * skips the ones whose outputs are not needed. */
FL_INLINE void FN(transpose_regs)(VR *v, int need)
{
    enum { G = 16 / (int)sizeof(R), NLANES = FL_VBYTES / 16 };
#if FL_IS_F32
    VR t[L], u[L];
#pragma GCC unroll 8
    for (int i = 0; i < L / 2; i++) {
        t[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        t[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int q = 0; q < L / 4; q++) {
        u[4 * q] = FL_UNPACKLO64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = FL_UNPACKHI64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = FL_UNPACKLO64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = FL_UNPACKHI64(t[4 * q + 1], t[4 * q + 3]);
    }
#else
    VR u[L];
#pragma GCC unroll 4
    for (int i = 0; i < L / 2; i++) {
        u[2 * i] = FL_UNPACKLO(v[2 * i], v[2 * i + 1]);
        u[2 * i + 1] = FL_UNPACKHI(v[2 * i], v[2 * i + 1]);
    }
#endif
#if FL_VBYTES == 16
    (void)need;
#pragma GCC unroll 4
    for (int m = 0; m < G; m++) v[m] = u[m];
#elif FL_VBYTES == 32
    /* 0x20 picks the low 128-bit lanes of a and b, 0x31 the high ones */
#pragma GCC unroll 4
    for (int m = 0; m < G; m++) {
        if (m >= need) break;
        v[m] = FL_PERM128(u[m], u[G + m], 0x20);
        if (G + m < need) v[G + m] = FL_PERM128(u[m], u[G + m], 0x31);
    }
#else
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
#endif
}
#endif

/* The cache lines of x[0..n), requested ahead (prefetches never fault, so past the end of
 * an array too). */
static inline void FN(prefetch_span)(const R *p, int64_t n)
{
    const char *b = (const char *)p, *e = (const char *)(p + n);
    for (; b < e; b += 64) __builtin_prefetch(b, 0, 3);
}

/* dst[c * L + l] = src[l * src_stride + c] for l < nl (padding lanes get 0), c < C.  A full
 * tile whose row loads are all masked (C < L) first requests the rows FL_ROW_PREFETCH_TILES
 * tiles ahead: masked loads run at about half the memory bandwidth from DRAM without (the
 * hardware prefetcher does not follow them as it follows plain loads; on Zen 5 the C = 10
 * cross entropy took 2.5x as long), whereas with plain loads in the tile the prefetches only
 * cost (8% at C = 10 on AVX2). */
static inline void FN(tile_transpose_in)(R *restrict dst, const R *restrict src, int64_t src_stride,
                                         int64_t C, int64_t nl)
{
#if FL_HAS_REG_TRANSPOSE
    /* full tiles: blocks of L classes, each row read by one vector load.  The partial block
     * of w < L classes: with fast masked loads (AVX2, AVX-512) a masked load of its w
     * (whole-vector loads there read past the row and cross more cache lines: error_rate at
     * C = 10 took 7-10% longer); otherwise a whole-vector load whose lanes past column C
     * (the next row's first classes) are not used, a partial copy only where it would reach
     * past the tile's last element. */
    if (nl == L) {
        if (FL_HAS_FAST_MASK_LOADS && C < L) /* every row load masked */
            FN(prefetch_span)(src + FL_ROW_PREFETCH_TILES * L * src_stride, L * src_stride);
        const int64_t end = (L - 1) * src_stride + C;
        for (int64_t c0 = 0; c0 < C; c0 += L) {
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) {
                const int64_t o = l * src_stride + c0;
                if (w == L || (!FL_HAS_FAST_MASK_LOADS && o + L <= end)) v[l] = FN(vload)(src + o);
                else v[l] = FL_MASK_LOAD(src + o, w);
            }
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

/* dst[l * C + c] = src[c * L + l] for l < nl, c < C (rows of C elements, contiguous).  With
 * register transposes, plain stores: each row's vector of a block of classes is stored
 * whole, its lanes past the row's end landing on the next rows' first classes, which the tile
 * stores after it (the partial block of classes goes first, and rows go in order); only where
 * a vector would reach past the tile's rows it is masked.  The AVX-512 masked stores of the
 * partial rows wrote to memory at about half the speed (multi_margin C = 10 fwd+bwd 2.94 ->
 * 1.58 ms at 262144 rows, one thread), and AVX2 has no fast masked store on AMD. */
static inline void FN(tile_transpose_out)(R *restrict dst, const R *restrict src, int64_t C,
                                          int64_t nl)
{
#if FL_HAS_REG_TRANSPOSE
    if (nl == L) {
        const int64_t nb = (C + L - 1) / L, rem = C % L;
        for (int64_t i = 0; i < nb; i++) {
            /* blocks: the partial one (from C - rem) first, then the full ones */
            const int64_t c0 = rem ? (i == 0 ? C - rem : (i - 1) * L) : i * L;
            const int w = (int)(C - c0 < L ? C - c0 : L);
            VR v[L];
            /* columns >= w of the rows hold any values: the stores after them overwrite them */
#pragma GCC unroll 16
            for (int j = 0; j < L; j++) v[j] = FN(vload)(src + (c0 + (j < w ? j : 0)) * L);
            FN(transpose_regs)(v, L);
#pragma GCC unroll 16
            for (int l = 0; l < L; l++) {
                R *p = dst + l * C + c0;
                if (w == L || l * C + c0 + L <= L * C) FN(vstore)(p, v[l]);
                else FL_MASK_STORE(p, w, v[l]);
            }
        }
        return;
    }
#endif
    for (int l = 0; l < nl; l++) {
        R *row = dst + l * C;
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
