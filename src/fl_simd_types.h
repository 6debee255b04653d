/*
 * fastloss SIMD types.
 *
 * Design: kernels are written once, in portable C with GCC/Clang vector extensions
 * with the native vector width of each
 * ISA (16 bytes baseline, 32 AVX2, 64 AVX-512; wider-than-native vectors make gcc scalarise
 * comparisons).  The same source is compiled several times under different `#pragma GCC target` regions
 * (see fl_kernels.c) and the best variant is picked once at import time.  No intrinsics, no
 * -march=native, no -ffast-math: inf/NaN semantics are preserved lane by lane.
 */
#ifndef FL_SIMD_TYPES_H
#define FL_SIMD_TYPES_H

#include <stdint.h>
#include <string.h>


#define FL_CAT2_(a, b) a##_##b
#define FL_CAT2(a, b) FL_CAT2_(a, b)
#define FL_CAT3(a, b, c) FL_CAT2(FL_CAT2(a, b), c)

#endif
