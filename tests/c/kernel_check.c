/*
 * Kernel check driver: runs every C entry point of src/fl_kernels.h on the cases that
 * tests/c/make_cases.py wrote (inputs and the NumPy reference's expected outputs), on every
 * SIMD path this build has, and compares.  Built without Python, so that a cross-compiled
 * build (aarch64, run under qemu-user: tests/c/run_aarch64.sh) is tested the same way as a
 * native one.
 *
 * Each case is one kernel call as the Cython layer (src/_kernels.pyx) makes it: this driver
 * fills the same argument block from the recorded arguments.  Per path it runs the call with
 * one thread and with fl_max_threads() threads (OMP_NUM_THREADS), requires bit-identical
 * outputs, and compares them with the expected values at the tolerances of the Python tests
 * (tests/_helpers.py: rtol, and atol relative to the largest finite expected value).  The
 * vector math (exp, log, log1p) is measured in ulp against the host's float64 libm values,
 * with the bounds of docs/numerics.md.
 *
 * Usage: kernel_check CASES.bin [path ...]  (default: every built path).  Prints the default
 * path (fl_init) as show_config() does, one line per kernel and path, then "N passed, N failed";
 * exits nonzero on any mismatch.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fl_kernels.h"

enum { K_INT, K_REAL, K_ARRAY, K_NONE };
enum { T_F32, T_F64, T_I64 };

typedef struct {
    char name[32], alias[32];
    int kind, dtype, has_exp;
    int64_t i, n;
    double d;
    void *init, *exp, *buf, *saved;
} field;

typedef struct {
    char family[32], label[200];
    int nf, has_total;
    double rtol, atol, total;
    field *f;
} record;

static FILE *in;
static void rd(void *p, size_t n)
{
    if (fread(p, 1, n, in) != n) {
        fprintf(stderr, "kernel_check: truncated case file\n");
        exit(2);
    }
}
static void rd_str(char *dst, size_t cap)
{
    uint32_t n;
    rd(&n, 4);
    if (n >= cap) {
        fprintf(stderr, "kernel_check: string too long\n");
        exit(2);
    }
    rd(dst, n);
    dst[n] = 0;
}
static size_t elem_size(int dtype) { return dtype == T_F32 ? 4 : 8; }

static void read_record(record *r)
{
    uint32_t nf;
    uint8_t b;
    rd_str(r->family, sizeof r->family);
    rd_str(r->label, sizeof r->label);
    rd(&nf, 4);
    rd(&r->rtol, 8);
    rd(&r->atol, 8);
    rd(&b, 1);
    rd(&r->total, 8);
    r->has_total = b;
    r->nf = (int)nf;
    r->f = calloc(nf, sizeof(field));
    for (uint32_t k = 0; k < nf; k++) {
        field *f = &r->f[k];
        rd_str(f->name, sizeof f->name);
        rd(&b, 1);
        f->kind = b;
        if (f->kind == K_INT) rd(&f->i, 8);
        if (f->kind == K_REAL) rd(&f->d, 8);
        if (f->kind != K_ARRAY) continue;
        rd(&b, 1);
        f->dtype = b;
        rd(&f->n, 8);
        rd_str(f->alias, sizeof f->alias);
        const size_t bytes = (size_t)f->n * elem_size(f->dtype) + 8;
        f->init = malloc(bytes);
        f->buf = malloc(bytes);
        f->saved = malloc(bytes);
        rd(f->init, (size_t)f->n * elem_size(f->dtype));
        rd(&b, 1);
        f->has_exp = b;
        if (f->has_exp) {
            f->exp = malloc((size_t)f->n * 8 + 8);
            rd(f->exp, (size_t)f->n * 8);
        }
    }
}

static field *F(const record *r, const char *name)
{
    for (int k = 0; k < r->nf; k++)
        if (!strcmp(r->f[k].name, name)) return &r->f[k];
    return NULL;
}
/* the buffer of an array argument (NULL for None / absent) */
static void *P(const record *r, const char *name)
{
    field *f = F(r, name);
    if (!f || f->kind != K_ARRAY) return NULL;
    if (f->alias[0]) return P(r, f->alias);
    return f->buf;
}
static int64_t I(const record *r, const char *name)
{
    field *f = F(r, name);
    return !f ? 0 : f->kind == K_INT ? f->i : f->kind == K_REAL ? (int64_t)f->d : 0;
}
static double D(const record *r, const char *name)
{
    field *f = F(r, name);
    return !f ? 0.0 : f->kind == K_REAL ? f->d : f->kind == K_INT ? (double)f->i : 0.0;
}
static int is_array(const record *r, const char *name)
{
    field *f = F(r, name);
    return f && f->kind == K_ARRAY;
}
static int is_f64(const record *r, const char *name) { return F(r, name)->dtype == T_F64; }

/* ------------------------------------------------------------------ the calls (as _kernels.pyx) */

static double run_class_loss(const record *r, int nt)
{
    fl_ce_args a;
    fl_row_args q;
    memset(&a, 0, sizeof a);
    memset(&q, 0, sizeof q);
    double kept = 0.0, norm, go = 1.0, wsum = 0.0, total = 0.0;
    int64_t rank_bad = -1, bad = -1;
    const int kind = (int)I(r, "kind"), reduction = (int)I(r, "reduction");
    a.is_f64 = is_f64(r, "x");
    a.N = I(r, "N");
    a.C = I(r, "C");
    a.S = I(r, "S");
    a.x = P(r, "x");
    a.target = P(r, "target");
    a.target_prob = P(r, "target_prob");
    a.weight = P(r, "weight");
    if (!a.weight) wsum = (double)a.C;
    else
        for (int64_t c = 0; c < a.C; c++)
            wsum += a.is_f64 ? ((const double *)a.weight)[c] : ((const float *)a.weight)[c];
    a.weight_sum = wsum;
    a.ignore_index = I(r, "ignore_index");
    a.smoothing = D(r, "smoothing");
    a.focal = kind == FL_FOCAL;
    a.gamma = D(r, "gamma");
    a.grad = P(r, "grad");
    if (is_array(r, "grad_output")) a.grad_scale_rows = P(r, "grad_output");
    else if (F(r, "grad_output")->kind != K_NONE) go = D(r, "grad_output");
    a.loss_rows = P(r, "loss_rows");
    if (is_array(r, "ranks")) {
        q.is_f64 = a.is_f64;
        q.op = FL_RANK;
        q.N = a.N;
        q.C = a.C;
        q.S = a.S;
        q.x = a.x;
        q.target = a.target;
        q.ignore_index = a.ignore_index;
        q.top_k = 1;
        q.ties = FL_TIES_ARGMAX;
        q.rank_out = P(r, "ranks");
        q.kept_weight = &kept;
        q.first_bad = &rank_bad;
        q.inv_log_base = 1.0;
    }
    if (a.target)
        bad = fl_check_targets(a.target, a.N * a.S, a.C, a.ignore_index, a.weight, a.is_f64, &norm,
                               nt);
    else norm = (double)(a.N * a.S);
    if (bad >= 0) return NAN;
    a.grad_scale = reduction == FL_REDUCTION_MEAN ? (norm != 0 ? go / norm : NAN) : go;
    if (kind == FL_NLL) total = fl_nll(&a, nt);
    else if (q.rank_out) total = fl_cross_entropy_ranks(&a, &q, nt);
    else total = fl_cross_entropy(&a, nt);
    return reduction == FL_REDUCTION_MEAN ? (norm != 0 ? total / norm : NAN) : total;
}

static double run_softmax(const record *r, int nt)
{
    fl_softmax_args a = {is_f64(r, "x"),  I(r, "N"), I(r, "C"),  I(r, "S"),
                         (int)I(r, "op"), P(r, "x"), P(r, "out")};
    fl_softmax(&a, nt);
    return NAN;
}

static double run_elementwise(const record *r, int nt)
{
    fl_ew_args a;
    int bad = 0;
    memset(&a, 0, sizeof a);
    a.is_f64 = is_f64(r, "x");
    a.op = (int)I(r, "op");
    a.n = F(r, "x")->n;
    a.x = P(r, "x");
    a.target = P(r, "target");
    a.weight = P(r, "weight");
    a.weight_period = I(r, "weight_period");
    a.pos_weight = P(r, "pos_weight");
    a.pos_weight_period = I(r, "pos_weight_period");
    a.p1 = D(r, "p1");
    a.p2 = D(r, "p2");
    a.grad = P(r, "grad");
    a.grad2 = P(r, "grad2");
    a.grad_scale_rows = P(r, "grad_scale_rows");
    a.grad_scale = D(r, "grad_scale");
    a.loss_rows = P(r, "loss_rows");
    return fl_elementwise(&a, nt, &bad);
}

static double run_embedding(const record *r, int nt)
{
    fl_emb_args s;
    memset(&s, 0, sizeof s);
    s.is_f64 = is_f64(r, "a");
    s.op = (int)I(r, "op");
    s.N = I(r, "N");
    s.D = I(r, "D");
    s.a = P(r, "a");
    s.b = P(r, "b");
    s.c = P(r, "c");
    s.target = P(r, "target");
    s.target_idx = P(r, "target_idx");
    s.weight = P(r, "weight");
    s.p1 = D(r, "p1");
    s.p2 = D(r, "p2");
    s.p3 = D(r, "p3");
    s.flags = (int)I(r, "flags");
    s.grad_a = P(r, "grad_a");
    s.grad_b = P(r, "grad_b");
    s.grad_c = P(r, "grad_c");
    s.grad_scale_rows = P(r, "grad_scale_rows");
    s.grad_scale = D(r, "grad_scale");
    s.loss_rows = P(r, "loss_rows");
    return fl_embedding(&s, nt);
}

static double run_ctc(const record *r, int nt)
{
    fl_ctc_args a;
    int failed = 0;
    memset(&a, 0, sizeof a);
    a.x_is_f32 = !is_f64(r, "x");
    a.is_f64 = I(r, "accumulate_f64") || !a.x_is_f32;
    a.from_logits = (int)I(r, "from_logits");
    a.zero_infinity = (int)I(r, "zero_infinity");
    a.T = I(r, "T");
    a.N = I(r, "N");
    a.C = I(r, "C");
    a.blank = I(r, "blank");
    a.x = P(r, "x");
    a.targets = P(r, "targets");
    a.target_offsets = P(r, "target_offsets");
    a.target_lengths = P(r, "target_lengths");
    a.input_lengths = P(r, "input_lengths");
    a.nll = P(r, "nll");
    a.grad = P(r, "grad");
    a.grad_scale = P(r, "grad_scale");
    a.failed = &failed;
    const double total = fl_ctc(&a, nt);
    return failed ? NAN : total;
}

static double run_row_op(const record *r, int nt)
{
    fl_row_args a;
    double kept = 0.0;
    int64_t bad = -1;
    memset(&a, 0, sizeof a);
    a.is_f64 = is_f64(r, "x");
    a.op = (int)I(r, "op");
    a.N = I(r, "N");
    a.C = I(r, "C");
    a.S = I(r, "S");
    a.x = P(r, "x");
    a.target = P(r, "target");
    a.ignore_index = I(r, "ignore_index");
    a.top_k = I(r, "top_k");
    a.ties = (int)I(r, "ties");
    a.count_hits = (int)I(r, "count_hits");
    a.sample_weight = P(r, "sample_weight");
    a.rank_out = P(r, "rank_out");
    a.kept_weight = &kept;
    a.first_bad = &bad;
    a.inv_log_base = D(r, "inv_log_base");
    a.grad = P(r, "grad");
    if (is_array(r, "grad_output")) a.grad_scale_rows = P(r, "grad_output");
    else a.grad_scale = D(r, "grad_output");
    a.out_rows = P(r, "out_rows");
    return fl_row_op(&a, nt);
}

static double run_gbdt(const record *r, int nt)
{
    fl_gbdt_args a;
    int failed = 0;
    memset(&a, 0, sizeof a);
    a.is_f64 = is_f64(r, "x");
    a.out_f32 = a.is_f64 && !is_f64(r, "grad");
    a.op = (int)I(r, "op");
    a.n = F(r, "y")->n;
    a.K = I(r, "K");
    a.x_class_major = (int)I(r, "x_class_major");
    a.out_class_major = (int)I(r, "out_class_major");
    a.x = P(r, "x");
    a.y = P(r, "y");
    a.weight = P(r, "weight");
    a.class_weight = P(r, "class_weight");
    a.p1 = D(r, "p1");
    a.p2 = D(r, "p2");
    a.hess_factor = D(r, "hess_factor");
    a.hess_min = D(r, "hess_min");
    a.scale = D(r, "scale");
    a.bce_bound = (int)I(r, "bce_bound");
    a.grad = P(r, "grad");
    a.hess = P(r, "hess");
    a.failed = &failed;
    return fl_gbdt(&a, nt);
}

static double run_vector_math(const record *r, int nt)
{
    (void)nt;
    field *x = F(r, "x");
    fl_vector_math((int)I(r, "op"), x->dtype == T_F64, x->n, x->buf, F(r, "out")->buf);
    return NAN;
}

static const struct {
    const char *family;
    double (*run)(const record *, int);
} runners[] = {{"class_loss", run_class_loss},
               {"softmax", run_softmax},
               {"elementwise", run_elementwise},
               {"embedding", run_embedding},
               {"ctc", run_ctc},
               {"row_op", run_row_op},
               {"gbdt", run_gbdt},
               {"vector_math", run_vector_math}};

/* ------------------------------------------------------------------ comparisons */

static double get(const field *f, const void *p, int64_t i)
{
    return f->dtype == T_F32   ? ((const float *)p)[i]
           : f->dtype == T_F64 ? ((const double *)p)[i]
                               : (double)((const int64_t *)p)[i];
}

/* the worst |got - want| / (atol + rtol |want|) of a float array (> 1: a mismatch; non-finite
 * entries must match exactly: 1e300 if not), the tests' rule (tests/_helpers.py) */
static double float_err(const field *f, const void *got, const double *want, double rtol,
                        double atol, int dtype)
{
    double scale = 0.0, worst = 0.0;
    for (int64_t i = 0; i < f->n; i++)
        if (isfinite(want[i]) && fabs(want[i]) > scale) scale = fabs(want[i]);
    if (scale == 0.0) scale = 1.0;
    const double a = atol * scale + (dtype == T_F32 ? FLT_MIN : DBL_MIN);
    for (int64_t i = 0; i < f->n; i++) {
        const double g = get(f, got, i), w = want[i];
        if (!isfinite(w)) {
            if (!(isnan(w) ? isnan(g) : g == w)) return 1e300;
            continue;
        }
        if (!isfinite(g)) return 1e300;
        const double e = fabs(g - w) / (a + rtol * fabs(w));
        if (e > worst) worst = e;
    }
    return worst;
}

/* ulp error of fl_vector_math against float64 libm values: the worst over finite nonzero
 * expected results (as tests/test_simd_math.py); non-finite expectations must match */
static double ulp_err(const field *out, const double *want, int *special_bad)
{
    double worst = 0.0;
    for (int64_t i = 0; i < out->n; i++) {
        const double g = get(out, out->buf, i), w = want[i];
        const double wr = out->dtype == T_F32 ? (double)(float)w : w;
        if (isnan(w)) {
            *special_bad |= !isnan(g);
            continue;
        }
        if (isinf(wr)) {
            const double top = out->dtype == T_F32 ? FLT_MAX : DBL_MAX;
            *special_bad |= !(g == wr || fabs(g) == top);
            continue;
        }
        if (wr == 0.0) continue;
        const double sp = out->dtype == T_F32
                              ? (double)(nextafterf((float)fabs(wr), INFINITY) - (float)fabs(wr))
                              : nextafter(fabs(wr), INFINITY) - fabs(wr);
        const double e = fabs(g - w) / sp;
        if (!(e <= worst)) worst = e; /* NaN output counts as the worst */
    }
    return worst;
}

/* ------------------------------------------------------------------ running */

static void reset(record *r)
{
    for (int k = 0; k < r->nf; k++) {
        field *f = &r->f[k];
        if (f->kind == K_ARRAY) memcpy(f->buf, f->init, (size_t)f->n * elem_size(f->dtype));
    }
}

typedef struct {
    char path[16], kernel[64];
    int cases, failed, ulp;
    double worst;
} summary;
static summary sums[512];
static int n_sums;

/* a kernel's summary line: the label's first word (the vector math: per dtype too) */
static summary *summary_of(const char *path, const char *label, int whole)
{
    char kernel[64];
    size_t n = whole ? strlen(label) : strcspn(label, " ");
    if (n >= sizeof kernel) n = sizeof kernel - 1;
    memcpy(kernel, label, n);
    kernel[n] = 0;
    for (int i = 0; i < n_sums; i++)
        if (!strcmp(sums[i].path, path) && !strcmp(sums[i].kernel, kernel)) return &sums[i];
    summary *s = &sums[n_sums++];
    snprintf(s->path, sizeof s->path, "%s", path);
    snprintf(s->kernel, sizeof s->kernel, "%s", kernel);
    return s;
}

/* runs one case on the active path; returns 1 if it passed */
static int check(record *r, const char *path, int verbose)
{
    double (*run)(const record *, int) = NULL;
    for (size_t i = 0; i < sizeof runners / sizeof *runners; i++)
        if (!strcmp(runners[i].family, r->family)) run = runners[i].run;
    if (!run) {
        fprintf(stderr, "kernel_check: unknown family %s\n", r->family);
        exit(2);
    }
    summary *s = summary_of(path, r->label, !strcmp(r->family, "vector_math"));
    s->cases++;
    s->ulp = !strcmp(r->family, "vector_math");
    int ok = 1;
    if (!strcmp(r->family, "vector_math")) {
        if (!F(r, "out")) { /* the output buffer, once */
            field *f = &r->f[r->nf++];
            *f = *F(r, "x");
            snprintf(f->name, sizeof f->name, "out");
            f->buf = malloc((size_t)f->n * elem_size(f->dtype) + 8);
        }
        reset(r);
        run(r, 1);
        int special_bad = 0;
        const double e = ulp_err(F(r, "out"), F(r, "want")->init, &special_bad);
        const double bound = D(r, "bound");
        if (e > s->worst) s->worst = e;
        ok = !special_bad && e <= bound;
        if (!ok || verbose)
            printf("  %-8s %-44s max %.3g ulp (bound %g)%s\n", path, r->label, e, bound,
                   special_bad ? ", special values differ" : "");
        s->failed += !ok;
        return ok;
    }
    const int nt = fl_max_threads();
    double total1 = 0.0, total = 0.0;
    for (int pass = 0; pass < 2; pass++) {
        reset(r);
        const double t = run(r, pass == 0 ? 1 : nt);
        if (pass == 0) {
            total1 = t;
            for (int k = 0; k < r->nf; k++)
                if (r->f[k].has_exp && !r->f[k].alias[0])
                    memcpy(r->f[k].saved, r->f[k].buf,
                           (size_t)r->f[k].n * elem_size(r->f[k].dtype));
        } else {
            total = t;
        }
    }
    char why[256] = "";
    if (memcmp(&total1, &total, sizeof total) && !(isnan(total1) && isnan(total)))
        snprintf(why, sizeof why, "sum differs between 1 and %d threads", nt);
    double worst = 0.0;
    for (int k = 0; k < r->nf; k++) {
        field *f = &r->f[k];
        if (!f->has_exp) continue;
        const void *got = f->alias[0] ? P(r, f->alias) : f->buf;
        if (!f->alias[0] && memcmp(f->saved, got, (size_t)f->n * elem_size(f->dtype)))
            snprintf(why, sizeof why, "%s differs between 1 and %d threads", f->name, nt);
        if (f->dtype == T_I64) {
            if (memcmp(got, f->exp, (size_t)f->n * 8))
                snprintf(why, sizeof why, "%s (integers) differs", f->name);
            continue;
        }
        const double e = float_err(f, got, (const double *)f->exp, r->rtol, r->atol, f->dtype);
        if (e > worst) worst = e;
        if (e > 1.0) snprintf(why, sizeof why, "%s: %.3g x the tolerance", f->name, e);
    }
    if (r->has_total) {
        field tf = {.n = 1, .dtype = T_F64};
        const double e = float_err(&tf, &total, &r->total, r->rtol, r->atol, T_F64);
        if (e > worst) worst = e;
        if (e > 1.0)
            snprintf(why, sizeof why, "sum %.17g, expected %.17g (%.3g x the tolerance)", total,
                     r->total, e);
    }
    if (worst > s->worst) s->worst = worst;
    ok = !why[0];
    s->failed += !ok;
    if (!ok || verbose) printf("  %-8s %-60s %s\n", path, r->label, ok ? "ok" : why);
    return ok;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: kernel_check CASES.bin [path ...]\n");
        return 2;
    }
    const int verbose = getenv("KERNEL_CHECK_VERBOSE") != NULL;
    in = fopen(argv[1], "rb");
    if (!in) {
        perror(argv[1]);
        return 2;
    }
    char magic[8];
    uint32_t n;
    rd(magic, 8);
    if (memcmp(magic, "FLCASES1", 8)) {
        fprintf(stderr, "kernel_check: not a case file\n");
        return 2;
    }
    rd(&n, 4);
    record *recs = calloc(n, sizeof(record));
    for (uint32_t i = 0; i < n; i++) {
        read_record(&recs[i]);
        recs[i].f = realloc(recs[i].f, (size_t)(recs[i].nf + 1) * sizeof(field));
    }
    fclose(in);

    fl_init();
    /* show_config()'s simd lines, from the C side */
    printf("       simd: %s\n simd_built: (", fl_simd_name());
    for (int i = 0; fl_simd_built(i); i++) printf("%s'%s'", i ? ", " : "", fl_simd_built(i));
    printf(")\n     openmp: %s\n    threads: %d\n", fl_openmp_enabled() ? "True" : "False",
           fl_max_threads());

    const char *paths[16];
    int n_paths = 0;
    if (argc > 2)
        for (int i = 2; i < argc && n_paths < 16; i++) paths[n_paths++] = argv[i];
    else
        for (int i = 0; fl_simd_built(i) && n_paths < 16; i++)
            if (strcmp(fl_simd_built(i), "wide")) paths[n_paths++] = fl_simd_built(i);
    int passed = 0, failed = 0;
    for (int p = 0; p < n_paths; p++) {
        if (fl_set_simd(paths[p]) != 0) {
            printf("path %s: not built or not supported here\n", paths[p]);
            failed++;
            continue;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (check(&recs[i], paths[p], verbose)) passed++;
            else failed++;
        }
    }
    for (int i = 0; i < n_sums; i++) {
        const summary *s = &sums[i];
        printf("%-8s %-34s %4d cases %s  worst %.3g %s\n", s->path, s->kernel, s->cases,
               s->failed ? "FAILED" : "ok    ", s->worst, s->ulp ? "ulp" : "x tolerance");
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
