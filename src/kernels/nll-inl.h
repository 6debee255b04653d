/*
 * NLL on log-probabilities (index targets), for one (dtype, ISA) instantiation:
 * FN(nll_chunk).  No include guard on purpose.
 */

/* NLL on log-probabilities: no exp, just a gather.  A unit is one sample n (all S positions).
 * Blocks of at most FL_NLL_BLOCK target entries: whole samples (as many as fit) when S <=
 * FL_NLL_BLOCK, else S positions of one sample at a time.  Every x_y of a block is gathered
 * before its gradient region (which may alias x) is zeroed -- in one memset where the region
 * is contiguous (whole samples: the usual (N, C) input is one block of rows) -- and the
 * target entries set.  The losses are added in index order whatever the blocks. */
static void FN(nll_chunk)(const void *args, int64_t n0, int64_t n1, double *partial)
{
    const fl_ce_args *a = (const fl_ce_args *)args;
    const int64_t C = a->C, S = a->S, ign = a->ignore_index;
    const R *w = (const R *)a->weight;
    R *loss_rows = (R *)a->loss_rows;
    const int64_t rows = S >= 1 && S <= FL_NLL_BLOCK ? FL_NLL_BLOCK / S : 1;
    double total = 0.0;
    R xy[FL_NLL_BLOCK];
    for (int64_t n = n0; n < n1; n += rows) {
        const int64_t nr = n1 - n < rows ? n1 - n : rows;
        const R *x = (const R *)a->x + n * C * S;
        R *g = a->grad ? (R *)a->grad + n * C * S : NULL;
        for (int64_t s0 = 0; s0 < S; s0 += FL_NLL_BLOCK) {
            const int64_t nb = S - s0 < FL_NLL_BLOCK ? S - s0 : FL_NLL_BLOCK;
            const int64_t *tg = a->target + n * S + s0;
            for (int64_t r = 0; r < nr; r++)
                for (int64_t s = 0; s < nb; s++) {
                    const int64_t y = tg[r * S + s];
                    xy[r * nb + s] = y == ign ? 0 : x[(r * C + y) * S + s0 + s];
                }
            if (g && nb == S) memset(g, 0, (size_t)(nr * C * S) * sizeof(R));
            else if (g)
                for (int64_t c = 0; c < C; c++) memset(g + c * S + s0, 0, (size_t)nb * sizeof(R));
            for (int64_t r = 0; r < nr; r++)
                for (int64_t s = 0; s < nb; s++) {
                    const int64_t i = (n + r) * S + s0 + s, y = tg[r * S + s];
                    double loss = 0.0;
                    if (y != ign) {
                        const double wy = w ? (double)w[y] : 1.0;
                        loss = -wy * (double)xy[r * nb + s];
                        if (g) g[(r * C + y) * S + s0 + s] = (R)(-wy * FN(row_scale)(a, i));
                    }
                    total += loss;
                    if (loss_rows) loss_rows[i] = (R)loss;
                }
        }
    }
    *partial = total;
}
