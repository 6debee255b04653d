/*
 * Vector helpers and vector math (exp, log, log1p) for one (dtype, ISA) instantiation, and
 * the vector_math test hook (fl_vector_math).  Included by fl_isa_dtype.h with the template
 * parameters VR, VI, VX, R, L and FN(name) (suffixes name with dtype and ISA).  No include
 * guard on purpose.
 *
 * exp: Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, with n rounded by the
 * "magic number" addition (no float->int conversion, so NaN never reaches an integer
 * cast), a polynomial (degree 6 for float, 11 for double; Chebyshev fits whose error is far
 * below half an ulp on |r| <= 0.347) and the scale 2^n applied as two exact factors
 * 2^(n/2) * 2^(n - n/2), so results that land in the subnormal range are rounded once and
 * overflow becomes +inf naturally.  The input is clamped to a range slightly wider than
 * the representable result range; the clamp keeps NaN (a comparison with NaN is false).
 * Measured error against NumPy float64 exp: see tests/test_simd_math.py (<= 2 ulp).
 *
 * log1p (for the elementwise losses): argument u = 1 + y split into 2^k * f with
 * f in [sqrt(1/2), sqrt(2)), log f = 2 atanh(s), s = (f - 1)/(f + 1), odd series in s,
 * plus the classic correction (y - (u - 1)) / u for the rounding of 1 + y.
 */

static inline VR FN(vsplat)(R v)
{
    VR r = {0};
    return r + v;
}
static inline VI FN(vsplat_i)(int64_t v)
{
    VI r;
    for (int i = 0; i < FL_LANES; i++) r[i] = v;
    return r;
}
static inline VR FN(vload)(const R *p)
{
    VR v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void FN(vstore)(R *p, VR v) { memcpy(p, &v, sizeof v); }
/* Partial load: the first n lanes from p, the rest `fill`. */
/* Partial loads/stores of the first n <= FL_LANES lanes, as fixed-size copies of 8, 4, 2 and 1
 * elements selected by the bits of n: compiled to plain moves (a variable-length memcpy would
 * be a libc call per row tail; a per-lane conditional loop makes gcc 12 ICE). */
static inline void FN(copy_part)(R *restrict dst, const R *restrict src, int64_t n)
{
    if (n >= FL_LANES) {
        memcpy(dst, src, FL_LANES * sizeof(R));
        return;
    }
    int64_t o = 0;
#if FL_LANES > 8
    if (n & 8) {
        memcpy(dst + o, src + o, 8 * sizeof(R));
        o += 8;
    }
#endif
#if FL_LANES > 4
    if (n & 4) {
        memcpy(dst + o, src + o, 4 * sizeof(R));
        o += 4;
    }
#endif
    if (n & 2) {
        memcpy(dst + o, src + o, 2 * sizeof(R));
        o += 2;
    }
    if (n & 1) dst[o] = src[o];
}
static inline VR FN(vload_part)(const R *p, int64_t n, R fill)
{
    R tmp[FL_LANES];
    for (int i = 0; i < FL_LANES; i++) tmp[i] = fill;
    FN(copy_part)(tmp, p, n);
    VR v;
    memcpy(&v, tmp, sizeof v);
    return v;
}
static inline void FN(vstore_part)(R *p, VR v, int64_t n)
{
    R tmp[FL_LANES];
    memcpy(tmp, &v, sizeof v);
    FN(copy_part)(p, tmp, n);
}
static inline VR FN(vselect)(VI mask, VR a, VR b) { return (VR)(((VI)a & mask) | ((VI)b & ~mask)); }
/* v where mask is set, +0 elsewhere */
static inline VR FN(vand)(VI mask, VR v) { return (VR)((VI)v & mask); }
/* is any lane of the mask set? */
static inline int FN(vany)(VI m)
{
    int r = 0;
    for (int l = 0; l < FL_LANES; l++) r |= m[l] != 0;
    return r;
}
/* all-ones lanes where v > c, for v >= +0 or NaN (NaN: set) and c > 0: such v order as
 * their bit patterns, so this is the sign of bits(c) - bits(v), an integer subtraction and
 * shift (on Zen 4 a compare into a mask register takes an FMA-pipe slot; timings: see
 * docs/performance.md).  The
 * subtraction wraps (unsigned), so it cannot be turned back into a compare. */
#if FL_IS_F32
typedef uint32_t FN(vu_t) __attribute__((vector_size(sizeof(VI))));
#else
typedef uint64_t FN(vu_t) __attribute__((vector_size(sizeof(VI))));
#endif
static inline VI FN(gt_nonneg)(VR v, R c)
{
    const VI d = (VI)((FN(vu_t))FN(vsplat)(c) - (FN(vu_t))v);
#if FL_IS_F32 || FL_HAS_SRA64
    return d >> (8 * (int)sizeof(d[0]) - 1); /* arithmetic shift: vpsrad / vpsraq */
#else
    return d < 0; /* 64-bit lanes without AVX-512: a compare is the sign mask */
#endif
}
/* FL_MAX_OR_B(a, b) = a > b ? a : b and FL_MIN_OR_B(a, b) = a < b ? a : b (isa/fl_ops_*.h):
 * b when either is NaN, which is exactly the x86 maxps/minps rule, so one instruction where
 * available. */
/* max that ignores a NaN in `b` (NaN rows are caught by the exp-sum, not by the max). */
static inline VR FN(vmax)(VR a, VR b) { return FL_MAX_OR_B(b, a); }
static inline VI FN(viota_i)(void)
{
    VI v;
    for (int i = 0; i < FL_LANES; i++) v[i] = i;
    return v;
}
static inline FL_VX FN(viota)(void)
{
    FL_VX v;
    for (int i = 0; i < FL_LANES; i++) v[i] = i;
    return v;
}
/* Arithmetic shift right by k of small signed lanes.  Float lanes, and double lanes where
 * the ISA has 64-bit arithmetic shifts (FL_HAS_SRA64: AVX-512, NEON): native.  Otherwise
 * bias into the unsigned range, shift, unbias. */
#if FL_IS_F32 || FL_HAS_SRA64
#define FN_SRA(v, k) ((v) >> (k))
#else
#define FN_SRA(v, k)                                                     \
    ((VI)(((FL_VU)(v) + ((FL_VU){0} + (1ULL << 62))) >> (k)) - (VI){0} - \
     (int64_t)(1ULL << (62 - (k))))
#endif

static inline double FN(hsum)(VR v)
{
    double s = 0.0;
    for (int i = 0; i < FL_LANES; i++) s += (double)v[i];
    return s;
}
static inline R FN(hmax)(VR v)
{
    R m = v[0];
    for (int i = 1; i < FL_LANES; i++) m = v[i] > m ? v[i] : m;
    return m;
}

#if FL_IS_F32
#define FL_EXP_LO    (-104.0f)
#define FL_EXP_HI    (89.0f)
#define FL_MAGIC     12582912.0f /* 1.5 * 2^23 */
#define FL_LOG2E     1.44269504088896341f
#define FL_LN2_HI    0.693359375f
#define FL_LN2_LO    (-2.12194440e-4f)
#define FL_EXP_BIAS  127
#define FL_MANT_BITS 23
#else
#define FL_EXP_LO    (-760.0)
#define FL_EXP_HI    (720.0)
#define FL_MAGIC     6755399441055744.0 /* 1.5 * 2^52 */
#define FL_LOG2E     1.4426950408889634074
#define FL_LN2_HI    6.93147180369123816490e-01
#define FL_LN2_LO    1.90821492927058770002e-10
#define FL_EXP_BIAS  1023
#define FL_MANT_BITS 52
#endif

#if FL_HAS_EXP_TABLE
/* AVX-512: exp with a table of 2^(j/N) (N = 32 float, 16 double) held in two registers and
 * looked up by one two-source permute (AVX2 float: N = 8 in one register, below), so the polynomial
 * only covers |r| <= ln2 / (2N): degree 3 (float) / 7 (double) instead of 6 / 11, and the scale is
 * built by integer adds instead of vscalef.  x = (k/N) ln2 + r with k = N q + j; the table entry
 * for j is stored as bits(2^(j/N)) - (j << (mantissa bits - log2 N)), so that adding k << (mantissa
 * bits - log2 N) gives bits(2^q * 2^(j/N)) directly (k's low bits cancel).  Valid while the result
 * is a normal number: FL_EXP_TAB_LO <= x <= FL_EXP_TAB_HI (the callers check; NaN is fine:
 * it reaches the polynomial).  Entries are 2^(j/N) correctly rounded (mpmath); the error
 * is about 1 ulp (tests/test_simd_math.py). */
#if FL_IS_F32 && FL_EXP_TAB_REGS == 1
/* AVX2 (one 8-lane register, one vpermps): N = 8, the polynomial to degree 4 (the first
 * omitted term, r^5 / 120, is below 1.3e-9 at |r| = ln2 / 16); the entries are every fourth
 * of the 32-entry table below (2^(4j/32) = 2^(j/8), and j << 20 = 4j << 18) and the
 * reduction constants four times its own (exact) */
#define FL_EXP_TAB_BITS    3
#define FL_EXP_TAB_LO      (-87.0f)
#define FL_EXP_TAB_HI      (88.0f)
#define FL_EXP_TAB_INVN    11.5415602f  /* 8 / ln2 */
#define FL_EXP_TAB_LN2N_HI 0.086669922f /* ln2 / 8, 9 bits: k * hi is exact */
#define FL_EXP_TAB_LN2N_LO (-2.65243052e-05f)
#define FL_EXP_TAB_LN2N    0.086643398f /* ln2 / 8 rounded: relative error 2.7e-9 */
static const int32_t FN(exp_tab)[8] __attribute__((aligned(32))) = {
    0x3f800000, 0x3f7b95c2, 0x3f7837f0, 0x3f75fed7, 0x3f7504f3, 0x3f75672a, 0x3f7744fd, 0x3f7ac0c7};
#elif FL_IS_F32
#define FL_EXP_TAB_BITS    5
#define FL_EXP_TAB_LO      (-87.0f)
#define FL_EXP_TAB_HI      (88.0f)
#define FL_EXP_TAB_INVN    46.1662407f   /* 32 / ln2 */
#define FL_EXP_TAB_LN2N_HI 0.0216674805f /* ln2 / 32, 9 bits: k * hi is exact */
#define FL_EXP_TAB_LN2N_LO (-6.6310763e-06f)
#define FL_EXP_TAB_LN2N    0.0216608495f    /* ln2 / 32 rounded: relative error 2.7e-9 */
static const int32_t FN(exp_tab)[32] __attribute__((aligned(64))) = {
    0x3f800000, 0x3f7ecd87, 0x3f7daac3, 0x3f7c980f, 0x3f7b95c2, 0x3f7aa43a, 0x3f79c3d3, 0x3f78f4f0,
    0x3f7837f0, 0x3f778d3a, 0x3f76f532, 0x3f767043, 0x3f75fed7, 0x3f75a15b, 0x3f75583f, 0x3f7523f6,
    0x3f7504f3, 0x3f74fbaf, 0x3f7508a4, 0x3f752c4d, 0x3f75672a, 0x3f75b9be, 0x3f76248c, 0x3f76a81e,
    0x3f7744fd, 0x3f77fbb8, 0x3f78ccdf, 0x3f79b907, 0x3f7ac0c7, 0x3f7be4ba, 0x3f7d257d, 0x3f7e83b3};
#else
#define FL_EXP_TAB_BITS    4
#define FL_EXP_TAB_LO      (-708.0)
#define FL_EXP_TAB_HI      (709.0)
#define FL_EXP_TAB_INVN    23.083120654223414     /* 16 / ln2 */
#define FL_EXP_TAB_LN2N_HI 0.04332169878489367  /* ln2 / 16, 36 bits: k * hi is exact */
#define FL_EXP_TAB_LN2N_LO 1.0291218489310676e-13
#define FL_EXP_TAB_LN2N    0.04332169878499658     /* ln2 / 16 rounded: relative error 3.3e-17 */
static const int64_t FN(exp_tab)[16] __attribute__((aligned(64))) = {
    0x3ff0000000000000LL, 0x3fefb5586cf9890fLL, 0x3fef72b83c7d517bLL, 0x3fef387a6e756238LL,
    0x3fef06fe0a31b715LL, 0x3feedea64c123422LL, 0x3feebfdad5362a27LL, 0x3feeab07dd485429LL,
    0x3feea09e667f3bcdLL, 0x3feea11473eb0187LL, 0x3feeace5422aa0dbLL, 0x3feec49182a3f090LL,
    0x3feee89f995ad3adLL, 0x3fef199bdd85529cLL, 0x3fef5818dcfba487LL, 0x3fefa4afa2a490daLL};
#endif
/* one_step (a compile-time 0 or 1): r = x - k ln2/N by one FMA with ln2/N rounded, whose
 * error adds |x| times its relative error (above) to the result's relative error: 1.2e-17
 * absolute at most (at x = -1) for a term of a sum that holds an exact 1 */
FL_INLINE VR FN(vexp_table_impl)(VR x, const int one_step)
{
    const VR magic = FN(vsplat)(FL_MAGIC);
    const VR kb = x * (R)FL_EXP_TAB_INVN + magic; /* k in the low mantissa bits */
    const VR kf = kb - magic;
    VR r;
    if (one_step) {
        r = FL_FMA(-kf, FN(vsplat)((R)FL_EXP_TAB_LN2N), x); /* rounded once, also at -O1 */
    } else {
        r = x - kf * (R)FL_EXP_TAB_LN2N_HI;
        r = r - kf * (R)FL_EXP_TAB_LN2N_LO;
    }
    VR t0;
    memcpy(&t0, FN(exp_tab), sizeof t0);
#if FL_EXP_TAB_REGS == 1
    const VR entry = FL_PERMUTE1(t0, (VI)kb);
#else
    VR t1;
    memcpy(&t1, (const char *)FN(exp_tab) + sizeof t0, sizeof t1);
    const VR entry = FL_PERMUTE2(t0, (VI)kb, t1);
#endif
    const VR scale = (VR)((VI)entry + ((VI)kb << (FL_MANT_BITS - FL_EXP_TAB_BITS)));
#if FL_IS_F32 && FL_EXP_TAB_BITS == 3
    /* e^r - 1, Taylor to r^4 */
    const VR p = r + (r * r) * (0.5f + r * (1.0f / 6 + r * (1.0f / 24)));
#elif FL_IS_F32
    /* e^r - 1, Taylor to r^3: the first omitted term is below 2^-30 */
    const VR p = r + (r * r) * (0.5f + r * (1.0f / 6));
#else
    /* e^r - 1 to degree 6: Taylor to degree 7 with the r^7 term economized by Chebyshev's T7
     * over |r| <= ln2/32 (changes c1, c3, c5); error 8e-18 (mpmath) */
    VR q = FN(vsplat)(0.001388888888888889);
    q = q * r + 0.008333496279944298;
    q = q * r + 0.041666666666666664;
    q = q * r + 0.16666666662843235;
    q = q * r + 0.5;
    q = q * r + 1.0000000000000022;
    const VR p = r * q;
#endif
    return scale + scale * p;
}
FL_INLINE VR FN(vexp_table)(VR x) { return FN(vexp_table_impl)(x, 0); }
#endif

/* e^r for |r| <= ln2/2 (a little more: the reduction's rounding) */
FL_INLINE VR FN(vexp_poly_core)(VR r)
{
#if FL_IS_F32
    /* 1 + r + r^2 q(r), q a degree-4 Chebyshev fit of (e^r - 1 - r) / r^2 on |r| <= ln2/2
     * (made for this file with mpmath): relative error 1.1e-8 with these float coefficients */
    VR p = FN(vsplat)(1.39262504e-3f);
    p = p * r + 8.36323295e-3f;
    p = p * r + 4.16665524e-2f;
    p = p * r + 1.66665763e-1f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
#else
    /* the same form with q of degree 9: relative error 1.7e-17 */
    static const double c[12] = {2.5100472505694996e-08,
                                 2.7620201591031547e-07,
                                 2.7557268276905696e-06,
                                 2.4801521057868204e-05,
                                 0.00019841269863171557,
                                 0.0013888888917367081,
                                 0.008333333333330039,
                                 0.041666666666623824,
                                 0.16666666666666669,
                                 0.5000000000000001,
                                 1.0,
                                 1.0};
    VR p = FN(vsplat)(c[0]);
    for (int k = 1; k < 12; k++) p = p * r + c[k];
#endif
    return p;
}

/* exp(x) for x <= FL_EXP_HI or NaN: the reduction to |r| <= ln2/2 and a polynomial of
 * degree 6 / 11, for every input (used alone where there is no table) */
FL_INLINE VR FN(vexp_poly)(VR x)
{
    x = FL_MAX_OR_B(FN(vsplat)(FL_EXP_LO), x); /* NaN stays NaN */
    const VR magic = FN(vsplat)(FL_MAGIC);
    VR t = x * (R)FL_LOG2E + magic;
    VR n = t - magic;
    VI ni = (VI)t - (VI)magic;
    VR r = x - n * (R)FL_LN2_HI;
    r = r - n * (R)FL_LN2_LO;
    const VR p = FN(vexp_poly_core)(r);
#if FL_HAS_SCALEF
    (void)ni;
    return FL_SCALEF(p, n); /* p * 2^n in one instruction, rounded once (subnormals too) */
#else
    VI n1 = FN_SRA(ni, 1);
    VI n2 = ni - n1;
    VR s1 = (VR)((n1 + FL_EXP_BIAS) << FL_MANT_BITS);
    VR s2 = (VR)((n2 + FL_EXP_BIAS) << FL_MANT_BITS);
    return p * s1 * s2;
#endif
}

#if !FL_HAS_EXP_TABLE
/* Without the table (AVX2, baseline, NEON): where every lane's result is a normal number
 * (FL_EXP_NORM_LO <= x <= FL_EXP_NORM_HI, or NaN), FN(vexp_poly)'s reduction and polynomial
 * with one scale 2^n read off t's bits (the exponent bias is folded into the rounding
 * constant: t's low mantissa bits hold n + bias, and shifting them into the exponent field
 * pushes the constant's own bits out), instead of the two half scales that keep subnormal
 * results right: 2 integer operations instead of 7, and the same value (p 2^n is exact in
 * both).  FL_EXP_NORM_LO keeps n >= the least normal exponent. */
#if FL_IS_F32
#define FL_EXP_NORM_LO (-87.0f)
#define FL_EXP_NORM_HI (88.0f)
#else
#define FL_EXP_NORM_LO (-708.0)
#define FL_EXP_NORM_HI (709.0)
#endif
FL_INLINE VR FN(vexp_poly_normal)(VR x)
{
    const VR magic = FN(vsplat)(FL_MAGIC + FL_EXP_BIAS);
    const VR t = x * (R)FL_LOG2E + magic;
    const VR n = t - magic;
    VR r = x - n * (R)FL_LN2_HI;
    r = r - n * (R)FL_LN2_LO;
    const VR p = FN(vexp_poly_core)(r);
    return p * (VR)((VI)t << FL_MANT_BITS);
}
#endif

/* exp(x) for x <= 0 or NaN (the max-shifted exponents of a softmax): no overflow clamp. */
FL_INLINE VR FN(vexp_nonpos)(VR x)
{
#if FL_HAS_EXP_TABLE
    /* results that are normal numbers: all but extreme inputs such as -inf masks */
    if (__builtin_expect(!FL_ANY_LT(x, FN(vsplat)(FL_EXP_TAB_LO)), 1)) return FN(vexp_table)(x);
#else
    if (__builtin_expect(!FL_ANY_LT(x, FN(vsplat)(FL_EXP_NORM_LO)), 1))
        return FN(vexp_poly_normal)(x);
#endif
    return FN(vexp_poly)(x);
}

/* exp(x) for x <= 0 or NaN, as a term of a sum that also holds an exact 1 (a softmax
 * denominator whose terms are not kept): inputs below FL_EXP_TAB_LO (FL_EXP_NORM_LO) give
 * exp of that bound (1e-38 float, 3e-308 double) instead of a subnormal or 0, a difference
 * far below the sum's last bit.  No range test and branch per vector: a max clamps instead;
 * and, with the table, a one-FMA reduction. */
FL_INLINE VR FN(vexp_nonpos_term)(VR x)
{
#if FL_HAS_EXP_TABLE
    return FN(vexp_table_impl)(FL_MAX_OR_B(FN(vsplat)(FL_EXP_TAB_LO), x), 1); /* NaN stays NaN */
#else
    return FN(vexp_poly_normal)(FL_MAX_OR_B(FN(vsplat)(FL_EXP_NORM_LO), x));
#endif
}

FL_INLINE VR FN(vexp)(VR x)
{
#if FL_HAS_EXP_TABLE
    if (__builtin_expect(!FL_ANY_LT(x, FN(vsplat)(FL_EXP_TAB_LO)) &&
                             !FL_ANY_LT(FN(vsplat)(FL_EXP_TAB_HI), x),
                         1))
        return FN(vexp_table)(x);
#else
    if (__builtin_expect(!FL_ANY_LT(x, FN(vsplat)(FL_EXP_NORM_LO)) &&
                             !FL_ANY_LT(FN(vsplat)(FL_EXP_NORM_HI), x),
                         1))
        return FN(vexp_poly_normal)(x);
#endif
    return FN(vexp_poly)(FL_MIN_OR_B(FN(vsplat)(FL_EXP_HI), x));
}

/* 2 atanh(s) = log((1 + s) / (1 - s)) = 2 (s + s^3/3 + s^5/5 + ...) for |s| <= 0.1716, as
 * 2 s + s^3 q(s^2).  Float: the series to s^9 (next term < 3e-9 relative).  Double: q of
 * degree 6 interpolating (2 atanh(s) - 2 s) / s^3 at the 7 Chebyshev nodes of
 * z = s^2 in [0, 0.1716^2] (made for this file with mpmath): relative error of the result
 * 4.6e-18 with these double coefficients, where the series needs terms to s^19 (two more
 * FMAs) for 1e-17. */
FL_INLINE VR FN(atanh2)(VR s)
{
    const VR s2 = s * s;
#if FL_IS_F32
    VR q = FN(vsplat)((R)(2.0 / 9));
    q = q * s2 + (R)(2.0 / 7);
    q = q * s2 + (R)(2.0 / 5);
    q = q * s2 + (R)(2.0 / 3);
#else
    static const double c[7] = {0.14616449685043406, 0.15331721600556042, 0.18182889125261723,
                                0.2222221113479508,  0.28571428625975487, 0.39999999999899505,
                                0.666666666666667};
    VR q = FN(vsplat)(c[0]);
    for (int i = 1; i < 7; i++) q = q * s2 + c[i];
#endif
    /* one multiply and one FMA after q (2 s is exact) */
    const VR s3 = s * s2;
    return s3 * q + (s + s);
}

/* log(u) + corr, where corr is a small correction already relative to u (0 for a plain log).
 * u = 2^k f with f in [sqrt(1/2), sqrt(2)); log f = 2 atanh(s), s = (f - 1)/(f + 1).
 * Subnormal u is first scaled by 2^FL_SUBN_SHIFT.  Special values: log(+inf) = +inf,
 * log(0) = -inf, log(u < 0) = NaN, NaN propagates. */
#if FL_IS_F32
#define FL_SUBN_SHIFT 24
#define FL_NORM_MIN   1.17549435e-38f
#else
#define FL_SUBN_SHIFT 54
#define FL_NORM_MIN   2.2250738585072014e-308
#endif
/* `special` (a compile-time constant) 0: u is known to be a normal positive finite number,
 * and the subnormal scaling and special-value selects are left out */
FL_INLINE VR FN(vlog_impl)(VR u, VR corr, const int special)
{
    const VR one = FN(vsplat)((R)1);
    const VI subn = special ? (u < FL_NORM_MIN) & (u > 0) : (VI)FN(vsplat)(0);
    const VR us = special ? FN(vselect)(subn, u * (R)(1ULL << FL_SUBN_SHIFT), u) : u;
#if FL_IS_F32
    const VI sqrt_half_bits = FN(vsplat_i)(0x3f3504f3); /* 0.70710677f */
#else
    const VI sqrt_half_bits = FN(vsplat_i)(0x3fe6a09e667f3bcdLL);
#endif
    VI ui = (VI)us;
    VI off = ui - sqrt_half_bits;
    VI k = FN_SRA(off, FL_MANT_BITS);           /* exponent relative to sqrt(1/2) */
    VI fi = ui - (k << FL_MANT_BITS);
    VR f = (VR)fi;
    /* exact int -> float conversion of small |k| by the magic-number trick (no cvt needed) */
    const VR kmagic = FN(vsplat)(FL_MAGIC);
    VR kf = (VR)((VI)kmagic + k) - kmagic;
    if (special) kf = FN(vselect)(subn, kf - (R)FL_SUBN_SHIFT, kf);
    VR s = (f - one) / (f + one);
    VR logf_ = FN(atanh2)(s);
    VR res = kf * (R)FL_LN2_HI + (logf_ + corr + kf * (R)FL_LN2_LO);
    if (!special) return res;
    const VR inf = FN(vsplat)((R)__builtin_inf());
    res = FN(vselect)(u == inf, inf, res);
    res = FN(vselect)(u == 0, -inf, res);
    res = FN(vselect)(u < 0, FN(vsplat)((R)__builtin_nan("")), res);
    res = FN(vselect)(u != u, u, res);
    return res;
}
static inline VR FN(vlog_plus)(VR u, VR corr) { return FN(vlog_impl)(u, corr, 1); }

#if FL_HAS_F32_LOG_TABLE
/* AVX-512 float log of a normal positive finite u, plus corr (small, relative to u): table
 * driven, no division.  u = 2^k z with z in [0.7083, 1.4167) (the octave starting at the bit
 * pattern FL_LOG_OFF); the top 5 bits of z's offset pick one of 32 intervals, whose entry
 * holds invc ~ 1/centre and -log(invc) as hi + lo (mpmath); r = z invc - 1 (one FMA, |r| <=
 * 0.0153) and log z = -log(invc) + log1p(r), log1p by its Taylor polynomial to r^4 (error
 * below 2e-10, relative 3e-9 in the interval holding 1, whose entry is exactly 1 and 0 so
 * that logs of values near 1 keep their relative accuracy). */
#define FL_LOG_OFF 0x3f355556
static const int32_t FN(log_tab)[3][32] __attribute__((aligned(64))) = {
    {0x3fb2bc0b, 0x3faeeb0b, 0x3fab42e6, 0x3fa7c117, 0x3fa46351, 0x3fa12772, 0x3f9e0b86,
     0x3f9b0dba, 0x3f982c62, 0x3f9565ee, 0x3f92b8ee, 0x3f902409, 0x3f8da5fe, 0x3f8b3da4,
     0x3f88e9e5, 0x3f86a9bb, 0x3f847c34, 0x3f82606c, 0x3f800000, 0x3f7980a5, 0x3f7220c9,
     0x3f6b2d51, 0x3f649d2b, 0x3f5e6840, 0x3f588754, 0x3f52f3e9, 0x3f4da82a, 0x3f489ed2,
     0x3f43d31f, 0x3f3f40bf, 0x3f3ae3c5, 0x3f36b89f},
    {0xbeaaf133, 0xbe9fe430, 0xbe9512f7, 0xbe8a7b08, 0xbe801a14, 0xbe6bdbce, 0xbe57e8f7,
     0xbe4457ae, 0xbe312458, 0xbe1e4b74, 0xbe0bc9cc, 0xbdf3387b, 0xbdcf7faa, 0xbdac63a4,
     0xbd89df29, 0xbd4fda2b, 0xbd0d116b, 0xbc96b5ea, 0x00000000, 0x3cd29a81, 0x3d6430db,
     0x3dadc00b, 0x3de7b760, 0x3e100b1d, 0x3e2b793e, 0x3e46302d, 0x3e603936, 0x3e799cfd,
     0x3e8931be, 0x3e954a12, 0x3ea11af2, 0x3eaca796},
    {0x326ad976, 0xb11834da, 0xb2279c0d, 0x3271eb3d, 0x32561758, 0xb1db72d5, 0x319093cb,
     0xb15def58, 0x30cb2efd, 0xb1ccf3a7, 0x31a52cb9, 0xb1380885, 0x312abab6, 0xb14a8e3f,
     0x300a8cec, 0x30e5a8a8, 0x2f0b08d7, 0x306e71c8, 0x00000000, 0xb001dc6a, 0x308ff62f,
     0x2dbcbc1e, 0xb119a0cd, 0xb1a1cc9d, 0xb1636a2a, 0x31a1e9ae, 0x2f626ec6, 0xb1ba0cc9,
     0xb2579fa8, 0xb176c5ea, 0x320052a1, 0x31037e10}};
FL_INLINE VR FN(vlog_table)(VR u, VR corr)
{
    const VI bits = (VI)u;
    const VI tmp = bits - FL_LOG_OFF;
    const VI k = tmp >> 23;                             /* exponent relative to the octave */
    const VR z = (VR)(bits - (tmp & (int32_t)0xff800000));
    const VI j = tmp >> 18;                             /* the permutes read its low 5 bits */
    VR t[6];
    memcpy(t, FN(log_tab), sizeof t);
    const VR invc = FL_PERMUTE2(t[0], j, t[1]);
    const VR lc_hi = FL_PERMUTE2(t[2], j, t[3]), lc_lo = FL_PERMUTE2(t[4], j, t[5]);
    const VR kf = __builtin_convertvector(k, VR);
    const VR r = FL_FMA(z, invc, FN(vsplat)(-1.0f)); /* exact */
    const VR r2 = r * r;
    const VR q = (-0.5f + r * (1.0f / 3)) + r2 * -0.25f;
    const VR hi = kf * (R)FL_LN2_HI + lc_hi;
    const VR lo = kf * (R)FL_LN2_LO + lc_lo + corr;
    return hi + (r + (r2 * q + lo));
}
#undef FL_LOG_OFF
#endif

/* log(u) + corr for u a normal positive finite number: the table (AVX-512 float), else the
 * atanh form without its special cases */
FL_INLINE VR FN(vlog_normal)(VR u, VR corr)
{
#if FL_HAS_F32_LOG_TABLE
    return FN(vlog_table)(u, corr);
#else
    return FN(vlog_impl)(u, corr, 0);
#endif
}

/* Vectors of normal positive finite numbers (tested with one compare where AVX-512 has it)
 * skip the special cases. */
static inline VR FN(vlog)(VR u)
{
#if FL_HAS_NORMAL_CHECK
    if (__builtin_expect(!FL_ANY_NOT_NORMAL_POS(u), 1)) return FN(vlog_normal)(u, FN(vsplat)(0));
#endif
    return FN(vlog_plus)(u, FN(vsplat)(0));
}

/* log(1 + y): the rounding error of u = 1 + y is put back as (y - (u - 1)) / u. */
static inline VR FN(vlog1p)(VR y)
{
    const VR one = FN(vsplat)((R)1);
    const VR u = one + y;
#if FL_HAS_F32_LOG_TABLE && FL_HAS_RCP14
    /* the correction is below half an ulp of u, but for tiny y about as large as the result:
     * the 14-bit reciprocal with one Newton step (28 bits) instead of a division */
    if (__builtin_expect(!FL_ANY_NOT_NORMAL_POS(u), 1)) {
        VR rc = FL_RCP14(u);
        rc = FL_FMA(rc, FL_FMA(-u, rc, one), rc);
        return FN(vlog_table)(u, (y - (u - one)) * rc);
    }
#elif FL_HAS_NORMAL_CHECK
    if (__builtin_expect(!FL_ANY_NOT_NORMAL_POS(u), 1))
        return FN(vlog_impl)(u, (y - (u - one)) / u, 0);
#endif
    VR corr = (y - (u - one)) / u;
    corr = FN(vselect)(corr != corr, FN(vsplat)(0), corr); /* u = inf: handled in vlog_plus */
    return FN(vlog_plus)(u, corr);
}

/* log(1 + y) for y >= 0 (finite) or NaN: cross entropy's log S = log1p(S - 1), one division
 * and no special cases.  Below sqrt(2) - 1, log1p(y) = 2 atanh(y / (2 + y)) exactly (as in
 * FN(vlog1p_unit)); above, u = 1 + y = 2^k f as in FN(vlog_plus), and the rounding of u is
 * put back as (y - (u - 1)) / u, a term below 1.5 ulp of the result (log u >= 0.34), which on
 * AVX-512 takes the 14-bit reciprocal estimate instead of a second division. */
FL_INLINE VR FN(vlog1p_nonneg)(VR y)
{
    const VR one = FN(vsplat)((R)1);
    const VR u = one + y;
    const VI big = FN(gt_nonneg)(y, (R)0.41421356237309503);
#if FL_IS_F32
    const VI sqrt_half_bits = FN(vsplat_i)(0x3f3504f3);
#else
    const VI sqrt_half_bits = FN(vsplat_i)(0x3fe6a09e667f3bcdLL);
#endif
    const VI ui = (VI)u;
    const VI k = FN_SRA(ui - sqrt_half_bits, FL_MANT_BITS) & big;
    const VR f = (VR)(ui - (k << FL_MANT_BITS));
    const VR kmagic = FN(vsplat)(FL_MAGIC);
    const VR kf = (VR)((VI)kmagic + k) - kmagic;
    const VR s = FN(vselect)(big, f - one, y) / FN(vselect)(big, f + one, y + (R)2);
#if FL_HAS_RCP14
    const VR corr = FN(vand)(big, (y - (u - one)) * FL_RCP14(u));
#else
    const VR corr = FN(vand)(big, (y - (u - one)) / u);
#endif
    return kf * (R)FL_LN2_HI + (FN(atanh2)(s) + corr + kf * (R)FL_LN2_LO);
}

/* Sums of log1p(t_i), t_i >= 0, as one log1p of a product: T <- (1 + T)(1 + t) - 1 =
 * T t + (T + t) per term, and log1p(T) once for many terms.  Every term of the update is >= 0
 * (no cancellation), so T keeps a relative error of about two ulp per factor and tiny t keep
 * their relative accuracy, as separate log1p calls would; the caller bounds the number of
 * factors so that 1 + T stays finite. */
FL_INLINE VR FN(log1p_prod_step)(VR T, VR t) { return T * t + (T + t); }

/* log(1 + e) for e in [0, 1] or NaN (softplus's log1p(exp(-|x|))): one division, no special
 * cases.  log1p(y) = 2 atanh(y / (2 + y)) exactly; for e > sqrt(2) - 1 the argument is first
 * halved, log1p(e) = log 2 + log1p((e - 1) / 2) = log 2 + 2 atanh((e - 1) / (e + 3)), so
 * |s| <= 0.1716 in both branches.  The branches differ only in selected constants (no
 * multiplications by 0.5 or by a 0/1 factor). */
FL_INLINE VR FN(vlog1p_unit)(VR e)
{
    const VI big = FN(gt_nonneg)(e, (R)0.41421356237309503);
    /* the constants of the big branch where big is set, 0 elsewhere (e - 0 and e + 2 + 0 are
     * exact; e + 2 + 1 is e + 3 rounded once: both lie in [2, 4)) */
    const VR one_b = FN(vand)(big, FN(vsplat)((R)1));
    const VR s = (e - one_b) / ((e + (R)2) + one_b);
    return FN(vand)(big, FN(vsplat)((R)FL_LN2_HI)) +
           (FN(atanh2)(s) + FN(vand)(big, FN(vsplat)((R)FL_LN2_LO)));
}

#undef FL_SUBN_SHIFT
#undef FL_NORM_MIN
#undef FL_EXP_LO
#undef FL_EXP_TAB_BITS
#undef FL_EXP_TAB_LO
#undef FL_EXP_TAB_HI
#undef FL_EXP_TAB_INVN
#undef FL_EXP_TAB_LN2N_HI
#undef FL_EXP_TAB_LN2N_LO
#undef FL_EXP_TAB_LN2N
#undef FL_EXP_HI
#undef FL_EXP_NORM_LO
#undef FL_EXP_NORM_HI
#undef FL_MAGIC
#undef FL_LOG2E
#undef FL_LN2_HI
#undef FL_LN2_LO
#undef FL_EXP_BIAS
#undef FL_MANT_BITS
#undef FN_SRA
