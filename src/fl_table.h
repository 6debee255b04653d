/*
 * Internal: the per-ISA dispatch tables shared by the driver (fl_kernels.c) and the per-ISA
 * translation units (isa/fl_isa_<name>.c), each of which instantiates every kernel for one ISA
 * and exports its table fl_table_<name>.  Not part of the API in fl_kernels.h.
 */
#ifndef FL_TABLE_H
#define FL_TABLE_H

#include <stdint.h>

#include "fl_kernels.h"
#include "fl_config.h"

/* avx2 and avx512 need GCC's `#pragma GCC target` on x86-64; elsewhere only base (+ wide). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FL_X86_DISPATCH 1
#else
#define FL_X86_DISPATCH 0
#endif
/* neon (Advanced SIMD, mandatory in ARMv8-A) on AArch64 with GCC or clang: no run-time check. */
#if defined(__aarch64__) && defined(__GNUC__)
#define FL_NEON_DISPATCH 1
#else
#define FL_NEON_DISPATCH 0
#endif

/* A chunk worker: runs units [u0, u1) of a kernel (rows, tiles or elements, by kernel) and
 * stores their partial sum (the row ops: partial[0] and partial[1], see fl_run_sums). */
typedef void (*fl_chunk_fn)(const void *args, int64_t u0, int64_t u1, double *partial);

/* The loop shapes of the row ops, as those of the class losses: rows (S == 1, C > FL_SMALL_C:
 * one unit per row), small_rows (S == 1: tiles of L rows transposed) and cols (S > 1: tiles of
 * L consecutive positions). */
enum { FL_ROW_LAYOUT_ROWS, FL_ROW_LAYOUT_SMALL_ROWS, FL_ROW_LAYOUT_COLS, FL_N_ROW_LAYOUTS };

/* One ISA's kernels; index [0] is float32, [1] is float64. */
typedef struct {
    const char *name;
    int vbytes; /* vector width: a column tile holds vbytes / sizeof(element) positions */
    fl_chunk_fn ce_index_rows[2], ce_index_cols[2], ce_prob_rows[2], ce_prob_cols[2];
    fl_chunk_fn softmax_rows[2], softmax_cols[2], nll[2];
    fl_chunk_fn ce_index_small_rows[2], ce_prob_small_rows[2], softmax_small_rows[2];
    fl_chunk_fn check_targets[2]; /* [1]: with float64 class weights */
    fl_chunk_fn elementwise[FL_N_ELEMENTWISE][2]; /* indexed by the FL_BCE_LOGITS... enum */
    fl_chunk_fn embedding[FL_N_EMBEDDING][2];     /* by FL_COSINE_EMBEDDING... */
    fl_chunk_fn row_ops[FL_N_ROW_OPS][FL_N_ROW_LAYOUTS][2]; /* [FL_RANK...][FL_ROW_LAYOUT_*] */
    fl_chunk_fn ctc[2];
    fl_chunk_fn gbdt[2]; /* kernels/gbdt-inl.h, every FL_GBDT_* op */
    void (*vector_math_f32)(int, int64_t, const float *, float *);
    void (*vector_math_f64)(int, int64_t, const double *, double *);
} fl_table;

/* Defined by isa/fl_isa_base.c, isa/fl_isa_wide.c (only when built with FL_BUILD_WIDE, i.e.
 * FASTLOSS_BUILD_WIDE=1), isa/fl_isa_avx2.c and isa/fl_isa_avx512.c (FL_X86_DISPATCH only) and
 * isa/fl_isa_neon.c (FL_NEON_DISPATCH only). */
extern const fl_table fl_table_base;
#ifdef FL_BUILD_WIDE
extern const fl_table fl_table_wide;
#endif
#if FL_X86_DISPATCH
extern const fl_table fl_table_avx2;
extern const fl_table fl_table_avx512;
#endif
#if FL_NEON_DISPATCH
extern const fl_table fl_table_neon;
#endif

/* The table of the ISA FL_TABLE_ISA (a macro rather than an argument, since FL_EW_SLOT's
 * arguments are fixed by its list); designated initializers, so no slot depends on order.
 * Used once by each isa/fl_isa_<name>.c after its instantiation. */
#define FL_PAIR(name) {FL_CAT3(name, f32, FL_TABLE_ISA), FL_CAT3(name, f64, FL_TABLE_ISA)}
#define FL_EW_SLOT(ID, name, chunk) [FL_##ID] = FL_PAIR(name##_chunk),
#define FL_EMB_SLOT(ID, name)       [FL_##ID] = FL_PAIR(name##_rows),
#define FL_ROW_SLOT(ID, name)                                             \
    [FL_##ID] = {[FL_ROW_LAYOUT_ROWS] = FL_PAIR(name##_rows),             \
                 [FL_ROW_LAYOUT_SMALL_ROWS] = FL_PAIR(name##_small_rows), \
                 [FL_ROW_LAYOUT_COLS] = FL_PAIR(name##_cols)},
#define FL_TABLE(label, vb)                                      \
    {.name = label,                                              \
     .vbytes = vb,                                               \
     .ce_index_rows = FL_PAIR(ce_index_rows),                    \
     .ce_index_cols = FL_PAIR(ce_index_cols),                    \
     .ce_prob_rows = FL_PAIR(ce_prob_rows),                      \
     .ce_prob_cols = FL_PAIR(ce_prob_cols),                      \
     .softmax_rows = FL_PAIR(softmax_rows),                      \
     .softmax_cols = FL_PAIR(softmax_cols),                      \
     .nll = FL_PAIR(nll_chunk),                                  \
     .ce_index_small_rows = FL_PAIR(ce_index_small_rows),        \
     .ce_prob_small_rows = FL_PAIR(ce_prob_small_rows),          \
     .softmax_small_rows = FL_PAIR(softmax_small_rows),          \
     .check_targets = FL_PAIR(check_targets_chunk),              \
     .elementwise = {FL_ELEMENTWISE_LOSSES(FL_EW_SLOT)},         \
     .embedding = {FL_EMBEDDING_LOSSES(FL_EMB_SLOT)},            \
     .row_ops = {FL_ROW_OPS(FL_ROW_SLOT)},                       \
     .ctc = FL_PAIR(ctc_chunk),                                  \
     .gbdt = FL_PAIR(gbdt_chunk),                                \
     .vector_math_f32 = FL_CAT3(vector_math, f32, FL_TABLE_ISA), \
     .vector_math_f64 = FL_CAT3(vector_math, f64, FL_TABLE_ISA)}

#endif
