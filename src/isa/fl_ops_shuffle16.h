/*
 * The tile transposes' ops (FL_HAS_REG_TRANSPOSE, kernels/tiles-inl.h) for 16-byte vectors,
 * shared by isa/fl_ops_generic.h (the SSE2 baseline) and isa/fl_ops_neon.h: the interleaves,
 * as two-source shuffles of constant indices (unpcklps / unpcklpd on SSE2, zip1 / zip2 on
 * NEON), and the partial rows through the stack.  With one 128-bit lane the transpose needs
 * no lane picks.  Same two-pass inclusion as the ISA headers.  No include guard on purpose.
 */
#ifndef FL_OPS_UNDEF

/* clang's __builtin_shufflevector (GCC has it from 12 on only), GCC's __builtin_shuffle */
#if defined(__clang__)
#define FL_SHUFFLE2(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#else
#define FL_SHUFFLE2(a, b, ...) __builtin_shuffle((a), (b), (VI){__VA_ARGS__})
#endif
#if FL_IS_F32
#define FL_UNPACKLO(a, b)   FL_SHUFFLE2(a, b, 0, 4, 1, 5)
#define FL_UNPACKHI(a, b)   FL_SHUFFLE2(a, b, 2, 6, 3, 7)
#define FL_UNPACKLO64(a, b) FL_SHUFFLE2(a, b, 0, 1, 4, 5)
#define FL_UNPACKHI64(a, b) FL_SHUFFLE2(a, b, 2, 3, 6, 7)
#else
#define FL_UNPACKLO(a, b) FL_SHUFFLE2(a, b, 0, 2)
#define FL_UNPACKHI(a, b) FL_SHUFFLE2(a, b, 1, 3)
#endif
#define FL_MASK_LOAD(p, n)     FN(vload_part)((p), (n), 0)
#define FL_MASK_STORE(p, n, v) FN(vstore_part)((p), (v), (n))

#else /* FL_OPS_UNDEF */

#undef FL_SHUFFLE2
#undef FL_UNPACKLO
#undef FL_UNPACKHI
#undef FL_UNPACKLO64
#undef FL_UNPACKHI64
#undef FL_MASK_LOAD
#undef FL_MASK_STORE

#endif
