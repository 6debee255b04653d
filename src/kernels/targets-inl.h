/*
 * The class-index target check behind fl_check_targets, for one (dtype, ISA) instantiation.
 * No include guard on purpose.
 */

/* Target check (fl_check_targets): partial = sum of w[y] (or the count) over non-ignored
 * samples, NaN if a target is outside [0, C).  Compiled per ISA so that the unweighted count,
 * a branch-free loop, vectorises with 64-bit compares (SSE2 has none). */
static void FN(check_targets_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    const fl_target_args *a = (const fl_target_args *)args;
    const int64_t *t = a->target, ign = a->ignore_index;
    const uint64_t C = (uint64_t)a->C;
    if (!a->weight) {
        int64_t count = 0, wrong = 0;
        for (int64_t i = i0; i < i1; i++) {
            const int64_t use = t[i] != ign;
            count += use;
            wrong |= use & ((uint64_t)t[i] >= C);
        }
        *partial = wrong ? NAN : (double)count;
        return;
    }
    const R *w = (const R *)a->weight;
    double total = 0.0;
    int bad = 0;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t y = t[i];
        if (y == ign) continue;
        if ((uint64_t)y >= C) {
            bad = 1;
            continue;
        }
        total += (double)w[y];
    }
    *partial = bad ? NAN : total;
}
