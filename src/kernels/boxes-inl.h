/*
 * Bounding-box regression losses (fl_emb_args, rows of 4 coordinates; row kernels of the
 * embedding list): iou, generalized (GIoU), distance (DIoU), complete (CIoU), efficient (EIoU)
 * and focal-EIoU losses of matched box pairs, torchvision's formulas and eps placement
 * (docs/numerics.md, "Box losses"), and the elementwise Focal L1 loss of the EIoU paper.
 *
 * One pass per box: both boxes read, the loss and the gradients of both boxes (the second only
 * with FL_BOX_GRAD2) written.  L boxes at a time: their coordinates are gathered from the
 * (N, 4) rows into lanes (x1 of L boxes in one vector, ...), the formula runs on the lanes
 * with no branch, and the gradients are scattered back.  The backward pass is the reverse of
 * torchvision's forward, with torch's subgradients: torch.max / torch.min split a tie half and
 * half, the intersection's strict mask (x2' > x1') gives it no gradient where boxes only touch,
 * CIoU's alpha is a constant.  Focal-EIoU's weight IoU^gamma is a constant too unless
 * FL_BOX_UNDETACHED; its own gradient is then taken as 0 where the boxes do not overlap (IoU
 * and its gradient are 0 there; torch's pow backward gives NaN).
 *
 * p1 = eps; p2 = gamma (focal-EIoU); p3 = the eps of CIoU's alpha (CIoU: p1 is torchvision's
 * fixed 1e-7 of its IoU and diagonal); weight: (N,) per-box weights or NULL; flags: FL_BOX_*.
 * No include guard on purpose.
 */

/* torch.max(a, b)'s share of its gradient that goes to a: 1 (a > b), 1/2 (tie), 0 (a < b) */
static inline VR FN(box_share_max)(VR a, VR b)
{
    const VR half = FN(vsplat)((R)0.5), one = FN(vsplat)((R)1);
    return FN(vselect)(a > b, one, FN(vand)(a == b, half));
}

/* atan(num / den) on lanes, one division (Cephes' reductions and fits: float 3 ranges and a
 * degree-9 odd polynomial, <= 3 ulp; double a rational 4/5 fit and the pi/4 tail, <= 1 ulp;
 * tests/test_box_losses.py measures them): the range is chosen by comparing |num| with
 * |den| times the bounds, then one quotient is formed.  Like atan(num / den): +-pi/2 for a
 * zero den, NaN for 0/0, inf/inf or NaN. */
static inline VR FN(box_atan_ratio)(VR num, VR den)
{
    const VR one = FN(vsplat)((R)1);
    const VR n = FN(vselect)(num < 0, -num, num), d = FN(vselect)(den < 0, -den, den);
#if FL_IS_F32
    const VI big = n > (R)2.414213562373095f * d, mid = n > (R)0.4142135623730950f * d;
#else
    const VI big = n > (R)2.41421356237309504880 * d, mid = n > (R)0.66 * d;
#endif
    const VR y0 = FN(vselect)(big, FN(vsplat)((R)1.57079632679489661923),
                              FN(vand)(mid, FN(vsplat)((R)0.78539816339744830962)));
    const VR top = FN(vselect)(big, -d, FN(vselect)(mid, n - d, n));
    const VR bottom = FN(vselect)(big, n, FN(vselect)(mid, n + d, d));
    const VR xr = top / bottom;
    const VR z = xr * xr;
#if FL_IS_F32
    const VR p = (((8.05374449538e-2f * z - 1.38776856032e-1f) * z + 1.99777106478e-1f) * z -
                  3.33329491539e-1f) *
                     z * xr +
                 xr;
    const VR r = y0 + p;
#else
    const VR P = (((-8.750608600031904122785e-1 * z - 1.615753718733365076637e1) * z -
                   7.500855792314704667340e1) *
                      z -
                  1.228866684490136173410e2) *
                     z -
                 6.485021904942025371773e1;
    const VR Q = ((((z + 2.485846490142306297962e1) * z + 1.650270098316988542046e2) * z +
                   4.328810604912902668951e2) *
                      z +
                  4.853903996359136964868e2) *
                     z +
                 1.945506571482613964425e2;
    const VR tail = FN(vselect)(big, FN(vsplat)(6.123233995736765886130e-17),
                                FN(vand)(mid, FN(vsplat)(3.061616997868382943065e-17)));
    const VR r = y0 + ((xr * (z * P / Q) + xr) + tail);
#endif
    (void)one;
    return FN(vselect)((num < 0) ^ (den < 0), -r, r);
}

/* iou^gamma as torch.pow: 0^0 = 1, 0^gamma = 0, NaN for a negative iou (an inverted box) and
 * a fractional gamma */
static inline VR FN(box_pow)(VR iou, R gamma)
{
    if (gamma == 0) return FN(vsplat)((R)1);
    if (gamma == 1) return iou;
    if (gamma == 2) return iou * iou;
    if (gamma == (R)0.5) { /* the paper's gamma: a square root, vectorised by the compiler */
        R in[L], out[L];
        FN(vstore)(in, iou);
        for (int k = 0; k < L; k++)
            out[k] =
                FL_IS_F32 ? (R)__builtin_sqrtf((float)in[k]) : (R)__builtin_sqrt((double)in[k]);
        return FN(vload)(out);
    }
    const VR p = FN(vexp)(FN(vsplat)(gamma) * FN(vlog)(iou));
    return FN(vselect)(iou == 0, FN(vsplat)(0), p);
}

/* the box losses on the lanes: c = the 8 coordinates (boxes1 x1 y1 x2 y2, boxes2 ...) as xyxy;
 * *loss, and with grad the derivatives of the loss by the 8 coordinates into g */
static inline __attribute__((always_inline)) void
FN(box_lanes)(const fl_emb_args *a, const int op, const VR c[8], VR *loss, VR g[8], const int grad)
{
    const VR zero = FN(vsplat)(0), one = FN(vsplat)((R)1), half = FN(vsplat)((R)0.5);
    const VR two = FN(vsplat)((R)2);
    const VR x1 = c[0], y1 = c[1], x2 = c[2], y2 = c[3];
    const VR X1 = c[4], Y1 = c[5], X2 = c[6], Y2 = c[7];
    const R eps = (R)a->p1;
    const VR w1 = x2 - x1, h1 = y2 - y1, w2 = X2 - X1, h2 = Y2 - Y1;
    /* intersection keypoints (torch.max / torch.min: the value is the same on a tie) */
    const VR xk1 = FN(vselect)(x1 > X1, x1, X1), yk1 = FN(vselect)(y1 > Y1, y1, Y1);
    const VR xk2 = FN(vselect)(x2 < X2, x2, X2), yk2 = FN(vselect)(y2 < Y2, y2, Y2);
    const VI mask = (yk2 > yk1) & (xk2 > xk1);
    const VR ix = xk2 - xk1, iy = yk2 - yk1;
    const VR I = FN(vand)(mask, ix * iy);
    const VR U = w1 * h1 + w2 * h2 - I;
    const VR Ue = U + eps;
    const VR iou = I / Ue;
    /* smallest enclosing box */
    const VR xc1 = FN(vselect)(x1 < X1, x1, X1), yc1 = FN(vselect)(y1 < Y1, y1, Y1);
    const VR xc2 = FN(vselect)(x2 > X2, x2, X2), yc2 = FN(vselect)(y2 > Y2, y2, Y2);
    const VR cw = xc2 - xc1, ch = yc2 - yc1;
    /* adjoints: of iou, of U beside iou's, of cw, ch, the centre offsets and the sides */
    VR g_iou = -one, g_u = zero, g_cw = zero, g_ch = zero, g_dx = zero, g_dy = zero;
    VR g_w1 = zero, g_h1 = zero, g_w2 = zero, g_h2 = zero;
    VR L_ = one - iou;
    if (op == FL_BOX_GIOU) {
        const VR C = cw * ch, rce = one / (C + eps), q = (C - U) * rce;
        L_ = one - (iou - q);
        const VR g_c = (one - q) * rce; /* d q / d C */
        g_u = -rce;
        g_cw = g_c * ch;
        g_ch = g_c * cw;
    } else if (op != FL_BOX_IOU) {
        const VR dx = (x2 + x1) * half - (X1 + X2) * half, dy = (y2 + y1) * half - (Y1 + Y2) * half;
        const VR rho = dx * dx + dy * dy, rD = one / (cw * cw + ch * ch + eps), rd = rho * rD;
        L_ = one - iou + rd;
        const VR g_d = -rd * rD;
        g_cw = two * cw * g_d;
        g_ch = two * ch * g_d;
        g_dx = two * dx * rD;
        g_dy = two * dy * rD;
        if (op == FL_BOX_CIOU) {
            const VR K = FN(vsplat)((R)0.40528473456935108578) /* 4 / pi^2 */;
            /* atan(w2/h2) - atan(w1/h1) = atan((w2 h1 - w1 h2) / (h1 h2 + w1 w2)) where both
             * ratios are >= 0 (all sides >= 0, heights > 0, finite products): one atan; other
             * lanes (inverted or flat boxes) take the two atans */
            const VR num = w2 * h1 - w1 * h2, den = h1 * h2 + w1 * w2;
            const VI nice = (h1 > 0) & (h2 > 0) & (w1 >= 0) & (w2 >= 0) & (num == num) &
                            (den <= (R)(FL_IS_F32 ? FLT_MAX : DBL_MAX));
            VR t = FN(box_atan_ratio)(num, den);
            if (FN(vany)(~nice))
                t = FN(vselect)(nice, t, FN(box_atan_ratio)(w2, h2) - FN(box_atan_ratio)(w1, h1));
            const VR v = K * (t * t);
            const R ae = (R)a->p3;
            VR alpha;
            if (a->flags & FL_BOX_ALPHA_MMDET) alpha = FN(vand)(iou > (R)0.5, v / (one - iou + v));
            else if (a->flags & FL_BOX_ALPHA_YOLO) alpha = v / (v - iou + (one + ae));
            else alpha = v / (one - iou + v + ae);
            L_ = L_ + alpha * v;
            /* alpha is a constant: d (alpha v) = alpha K 2 t (d atan(w2/h2) - d atan(w1/h1)),
             * d atan(w/h) = (h dw - w dh) / (w^2 + h^2); NaN where h = 0, as torch's
             * (d/dw (w/h) = 1/h there) */
            const VR gt = alpha * K * (two * t), nan = FN(vsplat)((R)__builtin_nan(""));
            const VR s1 = gt / (w1 * w1 + h1 * h1), s2 = gt / (w2 * w2 + h2 * h2);
            g_w1 = FN(vselect)(h1 == 0, nan, -s1 * h1);
            g_h1 = FN(vselect)(h1 == 0, nan, s1 * w1);
            g_w2 = FN(vselect)(h2 == 0, nan, s2 * h2);
            g_h2 = FN(vselect)(h2 == 0, nan, -s2 * w2);
        } else if (op == FL_BOX_EIOU || op == FL_BOX_FOCAL_EIOU) {
            const VR dw = w1 - w2, dh = h1 - h2;
            const VR rcw = one / (cw * cw + eps), rch = one / (ch * ch + eps);
            const VR pw = dw * dw * rcw, ph = dh * dh * rch;
            L_ = L_ + pw + ph;
            const VR gdw = two * dw * rcw, gdh = two * dh * rch;
            g_w1 = gdw;
            g_w2 = -gdw;
            g_h1 = gdh;
            g_h2 = -gdh;
            g_cw = g_cw - two * cw * (pw * rcw);
            g_ch = g_ch - two * ch * (ph * rch);
            if (op == FL_BOX_FOCAL_EIOU) {
                const R gamma = (R)a->p2;
                const VR f = FN(box_pow)(iou, gamma);
                const VR E = L_;
                L_ = f * E;
                g_iou = -f;
                g_cw *= f;
                g_ch *= f;
                g_dx *= f;
                g_dy *= f;
                g_w1 *= f;
                g_w2 *= f;
                g_h1 *= f;
                g_h2 *= f;
                if (a->flags & FL_BOX_UNDETACHED) /* + E gamma iou^(gamma - 1), 0 at iou = 0 */
                    g_iou += FN(vand)(iou > 0, E * gamma * (f / iou));
            }
        }
    }
    *loss = L_;
    if (!grad) return;
    /* iou = I / (U + eps), U = A1 + A2 - I */
    const VR rue = one / Ue;
    const VR g_utot = g_u - g_iou * iou * rue;
    const VR g_i = g_iou * rue - g_utot;
    const VR g_ix = FN(vand)(mask, g_i * iy), g_iy = FN(vand)(mask, g_i * ix);
    g_w1 += g_utot * h1;
    g_h1 += g_utot * w1;
    g_w2 += g_utot * h2;
    g_h2 += g_utot * w2;
    /* shares of the first box in max(x1, X1), min(x2, X2), min(x1, X1), max(x2, X2) */
    const VR sk1x = FN(box_share_max)(x1, X1), sk1y = FN(box_share_max)(y1, Y1);
    const VR sk2x = FN(box_share_max)(X2, x2), sk2y = FN(box_share_max)(Y2, y2);
    const VR sc1x = FN(box_share_max)(X1, x1), sc1y = FN(box_share_max)(Y1, y1);
    const VR sc2x = FN(box_share_max)(x2, X2), sc2y = FN(box_share_max)(y2, Y2);
    const VR hx = half * g_dx, hy = half * g_dy;
    g[0] = -g_w1 + hx - sk1x * g_ix - sc1x * g_cw;
    g[1] = -g_h1 + hy - sk1y * g_iy - sc1y * g_ch;
    g[2] = g_w1 + hx + sk2x * g_ix + sc2x * g_cw;
    g[3] = g_h1 + hy + sk2y * g_iy + sc2y * g_ch;
    g[4] = -g_w2 - hx - (one - sk1x) * g_ix - (one - sc1x) * g_cw;
    g[5] = -g_h2 - hy - (one - sk1y) * g_iy - (one - sc1y) * g_ch;
    g[6] = g_w2 - hx + (one - sk2x) * g_ix + (one - sc2x) * g_cw;
    g[7] = g_h2 - hy + (one - sk2y) * g_iy + (one - sc2y) * g_ch;
}

/* two-source shuffles of the AoS <-> SoA transposes: even / odd lanes of (a, b), and the
 * low / high halves of a and b interleaved */
#if L == 2
#define FL_BOX_EVEN {0, 2}
#define FL_BOX_ODD  {1, 3}
#define FL_BOX_LO   {0, 2}
#define FL_BOX_HI   {1, 3}
#elif L == 4
#define FL_BOX_EVEN {0, 2, 4, 6}
#define FL_BOX_ODD  {1, 3, 5, 7}
#define FL_BOX_LO   {0, 4, 1, 5}
#define FL_BOX_HI   {2, 6, 3, 7}
#elif L == 8
#define FL_BOX_EVEN {0, 2, 4, 6, 8, 10, 12, 14}
#define FL_BOX_ODD  {1, 3, 5, 7, 9, 11, 13, 15}
#define FL_BOX_LO   {0, 8, 1, 9, 2, 10, 3, 11}
#define FL_BOX_HI   {4, 12, 5, 13, 6, 14, 7, 15}
#elif L == 16
#define FL_BOX_EVEN {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#define FL_BOX_ODD  {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}
#define FL_BOX_LO   {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}
#define FL_BOX_HI   {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}
#else
#error "boxes-inl.h: unsupported lane count"
#endif

/* L boxes (4 L contiguous coordinates) -> c[j] = coordinate j of the L boxes */
static inline void FN(box_load)(const R *p, VR c[4])
{
    const VI even = FL_BOX_EVEN, odd = FL_BOX_ODD;
    const VR v0 = FN(vload)(p), v1 = FN(vload)(p + L), v2 = FN(vload)(p + 2 * L),
             v3 = FN(vload)(p + 3 * L);
    const VR a0 = __builtin_shuffle(v0, v1, even), a1 = __builtin_shuffle(v0, v1, odd);
    const VR a2 = __builtin_shuffle(v2, v3, even), a3 = __builtin_shuffle(v2, v3, odd);
    c[0] = __builtin_shuffle(a0, a2, even);
    c[1] = __builtin_shuffle(a1, a3, even);
    c[2] = __builtin_shuffle(a0, a2, odd);
    c[3] = __builtin_shuffle(a1, a3, odd);
}

/* the inverse of box_load */
static inline void FN(box_store)(R *p, const VR g[4])
{
    const VI lo = FL_BOX_LO, hi = FL_BOX_HI;
    const VR a0 = __builtin_shuffle(g[0], g[2], lo), a2 = __builtin_shuffle(g[0], g[2], hi);
    const VR a1 = __builtin_shuffle(g[1], g[3], lo), a3 = __builtin_shuffle(g[1], g[3], hi);
    FN(vstore)(p, __builtin_shuffle(a0, a1, lo));
    FN(vstore)(p + L, __builtin_shuffle(a0, a1, hi));
    FN(vstore)(p + 2 * L, __builtin_shuffle(a2, a3, lo));
    FN(vstore)(p + 3 * L, __builtin_shuffle(a2, a3, hi));
}

/* rows [r0, r1) of a box loss `op` (a compile-time constant in each chunk function below) */
static inline __attribute__((always_inline)) void
FN(box_rows)(const void *args, int64_t r0, int64_t r1, double *partial, const int op)
{
    const fl_emb_args *a = (const fl_emb_args *)args;
    const R *b1 = (const R *)a->a, *b2 = (const R *)a->b, *w = (const R *)a->weight;
    const R *gsr = (const R *)a->grad_scale_rows;
    R *lr = (R *)a->loss_rows, *g1 = (R *)a->grad_a;
    R *g2 = a->flags & FL_BOX_GRAD2 ? (R *)a->grad_b : NULL;
    const int grad = g1 != NULL, cxcywh = a->flags & FL_BOX_CXCYWH;
    const VR zero = FN(vsplat)(0), half = FN(vsplat)((R)0.5), gs = FN(vsplat)((R)a->grad_scale);
    VR acc = zero;
    double total = 0.0;
    int blk = 0;
    for (int64_t r = r0; r < r1; r += L) {
        const int64_t n = r1 - r < L ? r1 - r : L;
        VR c[8], g[8];
        if (n == L) {
            FN(box_load)(b1 + 4 * r, c);
            FN(box_load)(b2 + 4 * r, c + 4);
        } else { /* the tail: its boxes, then unit boxes (0, 0, 1, 1) */
            R t1[4 * L], t2[4 * L];
            for (int k = 0; k < 4 * L; k++) {
                const int in = k < 4 * n;
                t1[k] = in ? b1[4 * r + k] : (R)((k & 3) >= 2);
                t2[k] = in ? b2[4 * r + k] : (R)((k & 3) >= 2);
            }
            FN(box_load)(t1, c);
            FN(box_load)(t2, c + 4);
        }
        if (cxcywh) /* (cx, cy, w, h) -> (cx - w/2, cy - h/2, cx + w/2, cy + h/2) */
            for (int b = 0; b < 8; b += 4) {
                const VR cx = c[b], cy = c[b + 1], bw = c[b + 2], bh = c[b + 3];
                c[b] = cx - half * bw;
                c[b + 1] = cy - half * bh;
                c[b + 2] = cx + half * bw;
                c[b + 3] = cy + half * bh;
            }
        VR lv;
        FN(box_lanes)(a, op, c, &lv, g, grad);
        const VR wv = !w       ? FN(vsplat)((R)1)
                      : n == L ? FN(vload)(w + r)
                               : FN(vload_part)(w + r, n, 0);
        if (w) lv = wv * lv;
        if (n < L) lv = FN(vand)(FN(viota)() < (FL_XLANE)n, lv);
        acc += lv;
        if (lr) {
            if (n == L) FN(vstore)(lr + r, lv);
            else FN(vstore_part)(lr + r, lv, n);
        }
        if (++blk == FL_FLUSH) {
            total += FN(hsum)(acc);
            acc = zero;
            blk = 0;
        }
        if (!grad) continue;
        VR s = !gsr ? gs : n == L ? FN(vload)(gsr + r) : FN(vload_part)(gsr + r, n, 0);
        if (w) s *= wv;
        for (int j = 0; j < 8; j++) g[j] *= s;
        if (cxcywh) /* d/d(cx, cy, w, h) = (g1 + g2, ..., (g2 - g1) / 2, ...) */
            for (int b = 0; b < 8; b += 4) {
                const VR gx1 = g[b], gy1 = g[b + 1], gx2 = g[b + 2], gy2 = g[b + 3];
                g[b] = gx1 + gx2;
                g[b + 1] = gy1 + gy2;
                g[b + 2] = half * (gx2 - gx1);
                g[b + 3] = half * (gy2 - gy1);
            }
        if (n == L) {
            FN(box_store)(g1 + 4 * r, g);
            if (g2) FN(box_store)(g2 + 4 * r, g + 4);
        } else {
            R t[4 * L];
            FN(box_store)(t, g);
            memcpy(g1 + 4 * r, t, (size_t)(4 * n) * sizeof(R));
            if (g2) {
                FN(box_store)(t, g + 4);
                memcpy(g2 + 4 * r, t, (size_t)(4 * n) * sizeof(R));
            }
        }
    }
    *partial = total + FN(hsum)(acc);
}

#define FL_BOX_CHUNK(name, op)                                                             \
    static void FN(name##_rows)(const void *args, int64_t r0, int64_t r1, double *partial) \
    {                                                                                      \
        FN(box_rows)(args, r0, r1, partial, op);                                           \
    }
FL_BOX_CHUNK(box_iou, FL_BOX_IOU)
FL_BOX_CHUNK(box_giou, FL_BOX_GIOU)
FL_BOX_CHUNK(box_diou, FL_BOX_DIOU)
FL_BOX_CHUNK(box_ciou, FL_BOX_CIOU)
FL_BOX_CHUNK(box_eiou, FL_BOX_EIOU)
FL_BOX_CHUNK(box_focal_eiou, FL_BOX_FOCAL_EIOU)
#undef FL_BOX_CHUNK

/* Focal L1 (Zhang et al., Focal-EIoU paper), elementwise on x = |input - target|:
 * -alpha x^2 (2 ln(beta x) - 1) / 4 for x <= 1, -alpha ln(beta) x + (2 alpha ln(beta) + alpha) / 4
 * above; its derivative in x is -alpha x ln(beta x) (0 at x = 0), then -alpha ln(beta).
 * p1 = alpha, p2 = beta.  An elementwise loss (FL_ELEMENTWISE_LOSSES, CUSTOM) whose chunk
 * function is written here, on the generic loop of ew_loop-inl.h. */
static inline void FN(ew_focal_l1)(const fl_ew_args *a, VR x, VR t, VR w, VR pw, VR p0, VR p1,
                                   VR *loss, VR *grad, VI *bad)
{
    const R alpha = (R)a->p1, lnb = (R)log(a->p2);
    const VR one = FN(vsplat)((R)1), d = x - t;
    const VR z = FN(vselect)(d < 0, -d, d);
    const VI inner = z <= one;
    const VR zi = FN(vselect)(inner, z, one); /* log's argument kept in (0, 1] */
    const VR lz = FN(vlog)(zi) + lnb;          /* ln(beta x) */
    const VR in_loss = FN(vand)(zi > 0, (-alpha / 4) * (zi * zi) * (2 * lz - one));
    const VR out_loss = (-alpha * lnb) * z + (R)((2 * alpha * lnb + alpha) / 4);
    *loss = FN(vselect)(inner, in_loss, out_loss);
    const VR gz = FN(vselect)(inner, FN(vand)(zi > 0, -alpha * zi * lz), FN(vsplat)(-alpha * lnb));
    *grad = FN(vselect)(d < 0, -gz, FN(vand)(d > 0, gz)); /* NaN d: NaN from gz */
    *grad = FN(vselect)(d != d, d, *grad);
    (void)w;
    (void)pw;
    (void)p0;
    (void)p1;
    (void)bad;
}

static void FN(focal_l1_chunk)(const void *args, int64_t i0, int64_t i1, double *partial)
{
    const fl_ew_args *a_ = (const fl_ew_args *)args;
    if (a_->grad) FN(ew_loop)(a_, i0, i1, partial, FN(ew_focal_l1), 1, NULL, NULL, 0, NULL);
    else FN(ew_loop)(a_, i0, i1, partial, FN(ew_focal_l1), 0, NULL, NULL, 0, NULL);
}

#undef FL_BOX_EVEN
#undef FL_BOX_ODD
#undef FL_BOX_LO
#undef FL_BOX_HI
