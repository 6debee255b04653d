/*
 * fastloss build-wide configuration: the token-pasting helpers and every tuning constant of
 * the kernels and the thread driver, in one place.  FL_TUNING lists them for the Python side
 * (fl_tuning_name / fl_tuning_value, read into fastloss._kernels.TUNING at import).  The
 * reasons for the values, and their measurements, are in docs/performance.md.
 *
 * Design of the kernels: each is written once, in portable C with GCC/Clang vector
 * extensions of the native vector width of each ISA (16 bytes baseline, 32 AVX2, 64
 * AVX-512; wider-than-native vectors make gcc scalarise comparisons).  The same source is
 * compiled several times under different `#pragma GCC target` regions (see fl_kernels.c and
 * isa/fl_isa_<name>.c) and the best variant is picked once at import time.  No -march=native, no
 * -ffast-math: inf/NaN semantics are preserved lane by lane.
 */
#ifndef FL_CONFIG_H
#define FL_CONFIG_H

#include <stdint.h>
#include <string.h>

#define FL_CAT2_(a, b)   a##_##b
#define FL_CAT2(a, b)    FL_CAT2_(a, b)
#define FL_CAT3(a, b, c) FL_CAT2(FL_CAT2(a, b), c)

/* the vector math and the kernels' specialised bodies must inline into the loops (a call
 * passes vectors through memory) */
#define FL_INLINE static inline __attribute__((always_inline))

/* thread driver: elements per chunk of fl_run (chunk boundaries depend on the shape only) */
#define FL_CHUNK_ELEMS 32768
/* thread driver: chunks per thread at least (shorter calls use fewer threads: a thread that
 * has to be woken, or that shares its CPU with another process, costs more than it saves) */
#define FL_THREAD_CHUNKS 4
/* class targets: at least this many before their check runs on several threads */
#define FL_CHECK_THREAD_MIN 2097152
/* thread driver's contention guard: a multi-threaded call whose first thread, done with the
 * chunks, then waited more than FL_GUARD_WAIT_US and more than half its working time for the
 * others (a thread descheduled by another process, or spinning on a CPU it shares) makes the
 * following calls run on one thread for FL_GUARD_BACKOFF_MS, doubled on each repeat up to
 * FL_GUARD_BACKOFF_MAX_MS, and halved by each call that runs well */
#define FL_GUARD_WAIT_US        50
#define FL_GUARD_BACKOFF_MS     10
#define FL_GUARD_BACKOFF_MAX_MS 1000
/* rows of at most this many classes (S == 1) go through transposed tiles of L samples */
#define FL_SMALL_C 48
/* class sweeps and loops: vector-lane sums are flushed into double every FL_FLUSH vectors */
#define FL_FLUSH 64
/* NLL: target entries gathered per block */
#define FL_NLL_BLOCK 256
/* (N, C, d1..dk) tiles of up to this many classes are copied to a scratch tile first */
#define FL_COLS_SCRATCH_C 256
/* (N, C, d1..dk) tile copies: prefetch distance, in bytes */
#define FL_COLS_PREFETCH_BYTES 1024
/* unshifted small-C tiles (FL_HAS_RAW_TILES, class_tiles-inl.h): taken while every |x| of the
 * tiles is below the bound (e^-bound is normal, and R <= C e^(2 bound) finite: for C < 5e10
 * in float); after a failed try a chunk's next FL_RAW_WAIT tile groups take the shifted math */
#define FL_RAW_BOUND_F32 32.0f
#define FL_RAW_BOUND_F64 256.0
#define FL_RAW_WAIT      63
/* row ops (the metrics), small-C tiles: rows are requested this many tiles ahead */
#define FL_ROW_PREFETCH_TILES 4
/* elementwise loop: vectors per block (pre functions run over a whole block first) */
#define FL_EW_BLOCK 8
/* BCE on probabilities, sum only: window of elements checked for hard 0/1 targets, and
 * vectors whose log terms are taken as one log of their product */
#define FL_BCE_WIN   2048
#define FL_BCE_GROUP 4

/* X(name, value): the tuning constants exported to Python */
#define FL_TUNING(X)                                 \
    X(chunk_elems, FL_CHUNK_ELEMS)                   \
    X(thread_chunks, FL_THREAD_CHUNKS)               \
    X(check_thread_min, FL_CHECK_THREAD_MIN)         \
    X(guard_wait_us, FL_GUARD_WAIT_US)               \
    X(guard_backoff_ms, FL_GUARD_BACKOFF_MS)         \
    X(guard_backoff_max_ms, FL_GUARD_BACKOFF_MAX_MS) \
    X(small_c, FL_SMALL_C)                           \
    X(flush, FL_FLUSH)                               \
    X(nll_block, FL_NLL_BLOCK)                       \
    X(cols_scratch_c, FL_COLS_SCRATCH_C)             \
    X(cols_prefetch_bytes, FL_COLS_PREFETCH_BYTES)   \
    X(raw_wait, FL_RAW_WAIT)                         \
    X(ew_block, FL_EW_BLOCK)                         \
    X(bce_win, FL_BCE_WIN)                           \
    X(bce_group, FL_BCE_GROUP)                       \
    X(row_prefetch_tiles, FL_ROW_PREFETCH_TILES)

#endif
