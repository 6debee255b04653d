/*
 * fastloss kernel driver: run-time dispatch, threading, entry points, op and tuning names.
 *
 * Each kernel body lives once in kernels/<family>-inl.h.  isa/fl_isa_<name>.c compiles it once
 * per ISA, each with its primitives header isa/fl_ops_<isa>.h (ops and FL_HAS_* capability
 * flags), and exports that ISA's dispatch table fl_table_<name> (fl_table.h):
 *   base   - the compiler's default target (SSE2 on x86-64, NEON on arm64, ...)
 *   avx2   - AVX2 + FMA                      (x86-64 with GCC only)
 *   avx512 - AVX-512 F/DQ/VL/BW + AVX2 + FMA (x86-64 with GCC only)
 *   neon   - AArch64 Advanced SIMD, 16-byte vectors with intrinsics where they pay
 *            (AArch64 with GCC or clang only)
 *   wide   - the avx512 code shape (64-byte vectors) on the baseline ISA, for tests only;
 *            built only with FASTLOSS_BUILD_WIDE=1 (setup.py then defines FL_BUILD_WIDE)
 * and fl_init() picks the best one the CPU supports once, at import.  The environment
 * variable FASTLOSS_SIMD=baseline|avx2|avx512|neon|wide forces a path (tests use it to cover all).
 *
 * Threads: fl_run() cuts the work into chunks of about FL_CHUNK_ELEMS elements.  The chunk
 * boundaries depend on the shape only, each chunk returns its own partial sum and the
 * partials are added in chunk order, so results are bit-identical for any thread count
 * and whichever thread runs a chunk.  Each thread gets at least FL_THREAD_CHUNKS chunks' worth
 * of elements, so inputs below 2 * FL_THREAD_CHUNKS chunks never start a thread.
 * Each thread owns a contiguous block of chunks, as with a static schedule, and when it is
 * done takes the chunks the other threads have not reached yet from the ends of their
 * blocks (fl_take): a thread that the machine slows down (other processes on its CPU,
 * a preempted vCPU) no longer holds the whole call up.
 */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "fl_table.h" /* fl_kernels.h, fl_config.h, the per-ISA tables */

/* ------------------------------------------------------------------ op and tuning names */

#define FL_NAME_STR_(name, ...) #name,
#define FL_NAME_STR(ID, ...)    FL_NAME_STR_(__VA_ARGS__, )
#define FL_NAME_ARRAY(FAMILY, name, list) \
    static const char *const fl_names_##name[] = {list(FL_NAME_STR)};
FL_OP_FAMILIES(FL_NAME_ARRAY)
#undef FL_NAME_ARRAY

#define FL_NAME_CASE(FAMILY, name, list)                                      \
    case FL_FAMILY_##FAMILY:                                                  \
        return op < (int)(sizeof(fl_names_##name) / sizeof(*fl_names_##name)) \
                   ? fl_names_##name[op]                                      \
                   : NULL;
const char *fl_op_name(int family, int op)
{
    if (op < 0) return NULL;
    switch (family) {
        FL_OP_FAMILIES(FL_NAME_CASE)
    }
    return NULL;
}
#undef FL_NAME_CASE

static const char *const fl_family_names[] = {FL_OP_FAMILIES(FL_NAME_STR)};

const char *fl_family_name(int family)
{
    return family >= 0 && family < FL_N_FAMILIES ? fl_family_names[family] : NULL;
}
#undef FL_NAME_STR
#undef FL_NAME_STR_

#define FL_TUNING_NAME(name, value)  #name,
#define FL_TUNING_VALUE(name, value) (int64_t)(value),
static const char *const fl_tuning_names[] = {FL_TUNING(FL_TUNING_NAME)};
static const int64_t fl_tuning_values[] = {FL_TUNING(FL_TUNING_VALUE)};
#undef FL_TUNING_NAME
#undef FL_TUNING_VALUE
#define FL_N_TUNING ((int)(sizeof(fl_tuning_values) / sizeof(*fl_tuning_values)))

const char *fl_tuning_name(int i) { return i >= 0 && i < FL_N_TUNING ? fl_tuning_names[i] : NULL; }
int64_t fl_tuning_value(int i) { return i >= 0 && i < FL_N_TUNING ? fl_tuning_values[i] : 0; }

static const fl_table *fl_active = &fl_table_base;

/* The paths this build has, in the order fl_simd_built lists them. */
static const fl_table *const fl_built[] = {
    &fl_table_base,
#if FL_X86_DISPATCH
    &fl_table_avx2, &fl_table_avx512,
#endif
#if FL_NEON_DISPATCH
    &fl_table_neon,
#endif
#ifdef FL_BUILD_WIDE
    &fl_table_wide,
#endif
};
#define FL_N_BUILT ((int)(sizeof(fl_built) / sizeof(*fl_built)))

const char *fl_simd_built(int i) { return i >= 0 && i < FL_N_BUILT ? fl_built[i]->name : NULL; }

static int fl_cpu_has(const char *name)
{
#if FL_X86_DISPATCH
    __builtin_cpu_init();
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
#if FL_NEON_DISPATCH
    if (!strcmp(name, "neon")) return 1; /* Advanced SIMD is mandatory in ARMv8-A */
#endif
    return !strcmp(name, "baseline") || !strcmp(name, "wide");
}

int fl_set_simd(const char *name)
{
    static const char *const known[] = {"baseline", "avx2", "avx512", "neon", "wide"};
    int is_known = 0;
    for (int i = 0; i < (int)(sizeof(known) / sizeof(*known)); i++)
        is_known |= !strcmp(name, known[i]);
    if (!is_known) return -1;
    for (int i = 0; i < FL_N_BUILT; i++) {
        if (strcmp(name, fl_built[i]->name)) continue;
        if (!fl_cpu_has(name)) return -1;
        fl_active = fl_built[i];
        return 0;
    }
    return -2;
}

void fl_init(void)
{
    static const char *order[] = {"avx512", "avx2", "neon", "baseline"};
    for (int i = 0; i < (int)(sizeof(order) / sizeof(*order)); i++)
        if (fl_set_simd(order[i]) == 0) return;
}

const char *fl_simd_name(void) { return fl_active->name; }

int fl_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fl_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* A thread's block of chunks [front, back) as one 64-bit word (front in the low half): its
 * owner takes chunks from the front, the others from the back, each by one compare-and-swap,
 * so every chunk is run exactly once.  One cache line per block. */
typedef struct {
    uint64_t fb;
    char pad[64 - sizeof(uint64_t)];
} fl_block;

static int fl_take(fl_block *blk, int from_back, int64_t *k)
{
    uint64_t old = __atomic_load_n(&blk->fb, __ATOMIC_RELAXED);
    for (;;) {
        const uint64_t f = old & 0xffffffffu, b = old >> 32;
        if (f >= b) return 0;
        const uint64_t next = from_back ? ((b - 1) << 32) | f : (b << 32) | (f + 1);
        /* relaxed: the claim only needs the atomicity; the partials are read after the
         * parallel region's closing barrier */
        if (__atomic_compare_exchange_n(&blk->fb, &old, next, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            *k = (int64_t)(from_back ? b - 1 : f);
            return 1;
        }
    }
}

/* Test hook (fl_set_steal_test): thread 0 first takes the other blocks' chunks from their
 * backs and only then its own, so that every call runs chunks through both ends. */
static int fl_steal_test = 0;
void fl_set_steal_test(int on) { fl_steal_test = on != 0; }

/* The contention guard (FL_GUARD_* in fl_config.h): monotonic nanoseconds before which
 * multi-threaded calls run on one thread, the current back-off, and counters for
 * fl_thread_stats.  Shared by all callers: relaxed atomics, a lost update only shifts a
 * back-off. */
static int64_t fl_solo_until_ns = 0, fl_backoff_ns = 0;
static int64_t fl_stat[3]; /* multi-threaded calls, calls the guard ran on one thread, trips */
static int fl_guard_off = 0; /* test hook: fl_thread_guard(2) */

static int64_t fl_now_ns(void)
{
#ifdef _OPENMP
    return (int64_t)(omp_get_wtime() * 1e9);
#else
    return 0;
#endif
}

static void fl_guard_trip(int64_t now)
{
    int64_t b = __atomic_load_n(&fl_backoff_ns, __ATOMIC_RELAXED) * 2;
    if (b < (int64_t)FL_GUARD_BACKOFF_MS * 1000000) b = (int64_t)FL_GUARD_BACKOFF_MS * 1000000;
    if (b > (int64_t)FL_GUARD_BACKOFF_MAX_MS * 1000000)
        b = (int64_t)FL_GUARD_BACKOFF_MAX_MS * 1000000;
    __atomic_store_n(&fl_backoff_ns, b, __ATOMIC_RELAXED);
    __atomic_store_n(&fl_solo_until_ns, now + b, __ATOMIC_RELAXED);
    __atomic_fetch_add(&fl_stat[2], 1, __ATOMIC_RELAXED);
}

/* a call that ran well on several threads halves the back-off */
static void fl_guard_calm(void)
{
    const int64_t b = __atomic_load_n(&fl_backoff_ns, __ATOMIC_RELAXED) / 2;
    if (b || __atomic_load_n(&fl_backoff_ns, __ATOMIC_RELAXED))
        __atomic_store_n(&fl_backoff_ns, b < (int64_t)FL_GUARD_BACKOFF_MS * 1000000 ? 0 : b,
                         __ATOMIC_RELAXED);
}

void fl_thread_stats(int64_t out[4])
{
    for (int i = 0; i < 3; i++) out[i] = __atomic_load_n(&fl_stat[i], __ATOMIC_RELAXED);
    out[3] = __atomic_load_n(&fl_backoff_ns, __ATOMIC_RELAXED);
}

void fl_thread_guard(int mode)
{
    if (mode == 1) {
        fl_guard_trip(fl_now_ns());
        return;
    }
    __atomic_store_n(&fl_solo_until_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fl_backoff_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&fl_guard_off, mode == 2, __ATOMIC_RELAXED);
}

/* Chunk k of fl_run. */
static inline void fl_run_chunk(fl_chunk_fn fn, const void *args, int64_t k, int64_t per_chunk,
                                int64_t n_units, double *partial)
{
    const int64_t u0 = k * per_chunk, u1 = n_units - u0 > per_chunk ? u0 + per_chunk : n_units;
    fn(args, u0, u1, partial);
}

/* Partial sums a chunk function may store (fl_run_sums). */
#define FL_RUN_MAX_SUMS 2

/* Runs fn over [0, n_units) in deterministic chunks, each storing nsums (<= FL_RUN_MAX_SUMS)
 * partial sums; totals[i] receives the ordered sum of the partials i of the chunks. */
static void fl_run_sums(fl_chunk_fn fn, const void *args, int64_t n_units, int64_t unit_elems,
                        int nthreads, int nsums, double *totals)
{
    for (int i = 0; i < nsums; i++) totals[i] = 0.0;
    if (n_units <= 0) return;
    int64_t per_chunk = FL_CHUNK_ELEMS / (unit_elems > 0 ? unit_elems : 1);
    if (per_chunk < 1) per_chunk = 1;
    /* chunk indices fit the 32-bit halves of fl_block (bigger chunks beyond 2^32 of them) */
    if (n_units / per_chunk >= (int64_t)UINT32_MAX) per_chunk = n_units / (UINT32_MAX - 1) + 1;
    const int64_t nchunks = (n_units + per_chunk - 1) / per_chunk;
    if (nchunks == 1) {
        double p[FL_RUN_MAX_SUMS] = {0.0};
        fn(args, 0, n_units, p);
        for (int i = 0; i < nsums; i++) totals[i] = p[i];
        return;
    }
    double stack_partials[64 * FL_RUN_MAX_SUMS];
    double *partials = nchunks <= 64 ? stack_partials
                                     : (double *)malloc((size_t)(nchunks * nsums) * sizeof(double));
    if (!partials) { /* out of memory for the partials: same chunks, serially */
        for (int64_t k = 0; k < nchunks; k++) {
            double p[FL_RUN_MAX_SUMS] = {0.0};
            fl_run_chunk(fn, args, k, per_chunk, n_units, p);
            for (int i = 0; i < nsums; i++) totals[i] += p[i];
        }
        return;
    }
    int nt = nthreads < 1 ? 1 : nthreads;
    /* at least FL_THREAD_CHUNKS chunks' worth of elements per thread (units bigger than a
     * chunk, e.g. a CTC sample, count for what they hold) */
    const double chunk_equiv =
        (double)n_units * (double)(unit_elems > 0 ? unit_elems : 1) / (double)FL_CHUNK_ELEMS;
    int64_t most = (int64_t)(chunk_equiv / FL_THREAD_CHUNKS);
    if (most > nchunks) most = nchunks;
    if (nt > most) nt = most < 1 ? 1 : (int)most;
    fl_block stack_blocks[8];
    fl_block *blocks = stack_blocks;
    if (nt > 8 && !(blocks = (fl_block *)malloc((size_t)nt * sizeof(fl_block)))) nt = 1;
    int64_t t0 = 0;
    if (nt > 1) {
        t0 = fl_now_ns();
        const int solo = t0 < __atomic_load_n(&fl_solo_until_ns, __ATOMIC_RELAXED);
        __atomic_fetch_add(&fl_stat[solo ? 1 : 0], 1, __ATOMIC_RELAXED);
        if (solo) nt = 1;
    }
    if (nt == 1) {
        /* never enters the OpenMP runtime: libgomp's thread pool does not survive fork(), so
         * a forked child (which fastloss runs single-threaded) must not touch it */
        for (int64_t k = 0; k < nchunks; k++)
            fl_run_chunk(fn, args, k, per_chunk, n_units, partials + k * nsums);
    } else {
        for (int t = 0; t < nt; t++) {
            const uint64_t f = (uint64_t)(nchunks * t / nt), b = (uint64_t)(nchunks * (t + 1) / nt);
            blocks[t].fb = (b << 32) | f;
        }
        const int steal_first = fl_steal_test;
        int64_t t_first_done = t0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
#endif
        {
#ifdef _OPENMP
            const int t = omp_get_thread_num();
#else
            const int t = 0;
#endif
            int64_t k;
            /* the own block from its front, then the others' from their backs (all nt
             * blocks: the runtime may have started fewer threads than asked) */
            for (int pass = 0; pass < 2; pass++) {
                const int own = (pass == 0) != (steal_first && t == 0);
                for (int j = own ? 0 : 1; j < (own ? 1 : nt); j++)
                    while (fl_take(&blocks[(t + j) % nt], !own, &k))
                        fl_run_chunk(fn, args, k, per_chunk, n_units, partials + k * nsums);
            }
            if (t == 0) t_first_done = fl_now_ns();
        }
        /* how long thread 0, out of chunks, waited for the others to finish */
        const int64_t t1 = fl_now_ns(), waited = t1 - t_first_done;
        if (waited > (int64_t)FL_GUARD_WAIT_US * 1000 && 2 * waited > t_first_done - t0 &&
            !__atomic_load_n(&fl_guard_off, __ATOMIC_RELAXED))
            fl_guard_trip(t1);
        else fl_guard_calm();
    }
    if (blocks != stack_blocks) free(blocks);
    for (int64_t k = 0; k < nchunks; k++)
        for (int i = 0; i < nsums; i++) totals[i] += partials[k * nsums + i];
    if (partials != stack_partials) free(partials);
}

/* Runs fn over [0, n_units) in deterministic chunks; returns the ordered sum of partials. */
static double fl_run(fl_chunk_fn fn, const void *args, int64_t n_units, int64_t unit_elems,
                     int nthreads)
{
    double total;
    fl_run_sums(fn, args, n_units, unit_elems, nthreads, 1, &total);
    return total;
}

/* ------------------------------------------------------------------ target checking */

int64_t fl_check_targets(const int64_t *target, int64_t n, int64_t C, int64_t ignore_index,
                         const void *weight, int is_f64, double *weight_total, int nthreads)
{
    const fl_target_args a = {target, C, ignore_index, weight};
    /* a target is one 8-byte read and a compare: threads only for many of them */
    const double total = fl_run(fl_active->check_targets[is_f64 ? 1 : 0], &a, n, 1,
                                n < FL_CHECK_THREAD_MIN ? 1 : nthreads);
    *weight_total = total;
    if (!isnan(total)) return -1;
    for (int64_t i = 0; i < n; i++) /* slow path: locate the first bad target */
        if (target[i] != ignore_index && (target[i] < 0 || target[i] >= C)) return i;
    return -1; /* NaN came from the weights, not from a target */
}

/* ------------------------------------------------------------------ entry points */

/* Picks the loop shape: per-row sweeps for long class rows, tiles of L samples otherwise. */
static double fl_run_class_axis(fl_chunk_fn rows, fl_chunk_fn small_rows, fl_chunk_fn cols,
                                const void *args, int is_f64, int64_t N, int64_t C, int64_t S,
                                int nthreads)
{
    const int64_t lanes = fl_active->vbytes / (is_f64 ? 8 : 4);
    if (S == 1 && C > FL_SMALL_C) return fl_run(rows, args, N, C, nthreads);
    if (S == 1) return fl_run(small_rows, args, (N + lanes - 1) / lanes, C * lanes, nthreads);
    return fl_run(cols, args, N * ((S + lanes - 1) / lanes), C * lanes, nthreads);
}

double fl_cross_entropy(const fl_ce_args *a, int nthreads)
{
    const int k = a->is_f64 ? 1 : 0;
    const fl_table *t = fl_active;
    if (a->target_prob)
        return fl_run_class_axis(t->ce_prob_rows[k], t->ce_prob_small_rows[k], t->ce_prob_cols[k],
                                 a, a->is_f64, a->N, a->C, a->S, nthreads);
    return fl_run_class_axis(t->ce_index_rows[k], t->ce_index_small_rows[k], t->ce_index_cols[k], a,
                             a->is_f64, a->N, a->C, a->S, nthreads);
}

/* Cross entropy / focal loss with the targets' ranks of the same chunks: each chunk runs the
 * loss's chunk function and then the rank op's (the other way round when the gradient
 * overwrites the scores in place), so the second read of the chunk (32768 elements) comes
 * from cache.  The two use the same units in each layout (fl_run_class_axis / fl_row_op).
 * The Python layer uses it for the row layout only (small-C tiles: a separate rank pass was
 * faster, docs/performance.md). */
typedef struct {
    const fl_ce_args *ce;
    const fl_row_args *rank;
    fl_chunk_fn ce_fn, rank_fn;
} fl_ce_rank_args;

static void fl_ce_rank_chunk(const void *args, int64_t u0, int64_t u1, double *partial)
{
    const fl_ce_rank_args *c = (const fl_ce_rank_args *)args;
    double rank_sums[FL_RUN_MAX_SUMS] = {0.0};
    if (c->ce->grad == c->ce->x) { /* in place: rank the scores before they are overwritten */
        c->rank_fn(c->rank, u0, u1, rank_sums);
        c->ce_fn(c->ce, u0, u1, partial);
    } else {
        c->ce_fn(c->ce, u0, u1, partial);
        c->rank_fn(c->rank, u0, u1, rank_sums);
    }
}

double fl_cross_entropy_ranks(const fl_ce_args *a, const fl_row_args *r, int nthreads)
{
    const int k = a->is_f64 ? 1 : 0;
    const fl_table *t = fl_active;
    const int layout = a->S == 1 && a->C > FL_SMALL_C ? FL_ROW_LAYOUT_ROWS
                       : a->S == 1                    ? FL_ROW_LAYOUT_SMALL_ROWS
                                                      : FL_ROW_LAYOUT_COLS;
    const fl_chunk_fn ce_fns[] = {[FL_ROW_LAYOUT_ROWS] = t->ce_index_rows[k],
                                  [FL_ROW_LAYOUT_SMALL_ROWS] = t->ce_index_small_rows[k],
                                  [FL_ROW_LAYOUT_COLS] = t->ce_index_cols[k]};
    const fl_ce_rank_args c = {a, r, ce_fns[layout], t->row_ops[FL_RANK][layout][k]};
    return fl_run_class_axis(fl_ce_rank_chunk, fl_ce_rank_chunk, fl_ce_rank_chunk, &c, a->is_f64,
                             a->N, a->C, a->S, nthreads);
}

double fl_nll(const fl_ce_args *a, int nthreads)
{
    return fl_run(fl_active->nll[a->is_f64 ? 1 : 0], a, a->N, a->C * a->S, nthreads);
}

void fl_softmax(const fl_softmax_args *a, int nthreads)
{
    const int k = a->is_f64 ? 1 : 0;
    const fl_table *t = fl_active;
    fl_run_class_axis(t->softmax_rows[k], t->softmax_small_rows[k], t->softmax_cols[k], a,
                      a->is_f64, a->N, a->C, a->S, nthreads);
}

double fl_elementwise(const fl_ew_args *a, int nthreads, int *bad)
{
    *bad = 0;
    if (a->op < 0 || a->op >= FL_N_ELEMENTWISE) {
        *bad = 1;
        return NAN;
    }
    const double total =
        fl_run(fl_active->elementwise[a->op][a->is_f64 ? 1 : 0], a, a->n, 1, nthreads);
    if (a->op == FL_BCE && isnan(total)) {
        /* a chunk flagged an input outside [0, 1] (or the loss is NaN for another reason) */
        for (int64_t i = 0; i < a->n && !*bad; i++) {
            const double v = a->is_f64 ? ((const double *)a->x)[i] : ((const float *)a->x)[i];
            *bad = !(v >= 0 && v <= 1);
        }
    }
    if (a->op == FL_GAUSSIAN_NLL && isnan(total)) {
        /* a chunk flagged a negative var (or the loss is NaN for another reason) */
        for (int64_t i = 0; i < a->weight_period && !*bad; i++) {
            const double v =
                a->is_f64 ? ((const double *)a->weight)[i] : ((const float *)a->weight)[i];
            *bad = v < 0;
        }
    }
    return total;
}

double fl_embedding(const fl_emb_args *a, int nthreads)
{
    if (a->op < 0 || a->op >= FL_N_EMBEDDING) return NAN;
    return fl_run(fl_active->embedding[a->op][a->is_f64 ? 1 : 0], a, a->N, a->D, nthreads);
}

double fl_ctc(const fl_ctc_args *a, int nthreads)
{
    /* a unit is a sample; its cost grows with T (C + the states), so big samples are chunks
     * of their own and threads take them one at a time */
    int64_t S_max = 0;
    for (int64_t n = 0; n < a->N; n++)
        if (a->target_lengths[n] > S_max) S_max = a->target_lengths[n];
    const int64_t unit = a->T * (a->C + 16 * (S_max + 1));
    return fl_run(fl_active->ctc[a->is_f64 ? 1 : 0], a, a->N, unit, nthreads);
}

#define FL_GBDT_NAME(ID, name) #name,
static const char *const fl_gbdt_names[] = {FL_GBDT_OPS(FL_GBDT_NAME)};
#undef FL_GBDT_NAME

const char *fl_gbdt_name(int op) { return op >= 0 && op < FL_N_GBDT ? fl_gbdt_names[op] : NULL; }

double fl_gbdt(const fl_gbdt_args *a, int nthreads)
{
    if (a->op < 0 || a->op >= FL_N_GBDT) return NAN;
    /* units are rows: a softmax row is K elements, the other ops' rows one */
    const int rows = a->op == FL_GBDT_SOFTMAX || a->op == FL_GBDT_SOFTMAX_FOCAL;
    return fl_run(fl_active->gbdt[a->is_f64 ? 1 : 0], a, a->n, rows ? a->K : 1, nthreads);
}

double fl_row_op(const fl_row_args *a, int nthreads)
{
    const int k = a->is_f64 ? 1 : 0;
    const int64_t N = a->N, C = a->C, S = a->S, lanes = fl_active->vbytes / (a->is_f64 ? 8 : 4);
    fl_chunk_fn const(*fns)[2] = fl_active->row_ops[a->op];
    double sums[2];
    if (S == 1 && C > FL_SMALL_C)
        fl_run_sums(fns[FL_ROW_LAYOUT_ROWS][k], a, N, C, nthreads, 2, sums);
    else if (S == 1)
        fl_run_sums(fns[FL_ROW_LAYOUT_SMALL_ROWS][k], a, (N + lanes - 1) / lanes, C * lanes,
                    nthreads, 2, sums);
    else
        fl_run_sums(fns[FL_ROW_LAYOUT_COLS][k], a, N * ((S + lanes - 1) / lanes), C * lanes,
                    nthreads, 2, sums);
    if (a->op == FL_RANK) {
        *a->kept_weight = sums[1];
        *a->first_bad = -1;
        /* a chunk that met a target out of range returned NaN sums (weights are finite) */
        if (isnan(sums[1]))
            for (int64_t i = 0; i < N * S && *a->first_bad < 0; i++)
                if (a->target[i] != a->ignore_index && (a->target[i] < 0 || a->target[i] >= C))
                    *a->first_bad = i;
    }
    return sums[0];
}

void fl_vector_math(int op, int is_f64, int64_t n, const void *x, void *out)
{
    if (is_f64) fl_active->vector_math_f64(op, n, (const double *)x, (double *)out);
    else fl_active->vector_math_f32(op, n, (const float *)x, (float *)out);
}
