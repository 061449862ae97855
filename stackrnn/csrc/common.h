/* What the step kernels share, over a type `real`, with FN(name) naming it for it: included by steps.c once per
   type, before lstm.h and gru.h; never compiled alone.

   Shapes: B rows (the batch), H units, a step's gates (B, NH) for N gates in torch's order.
   Carry factors a (zoneout and padding: new = cell + a (old - cell)) are read at a[b * sb + j * sj] for strides
   sb, sj >= 0 (0 where a dimension is broadcast): (B, H), (B, 1) and a scalar all arrive as views. NULL: none. */

static inline real FN(sigmoid)(real x) { return 1 / (1 + FN(exp)(-x)); }
/* the g gate's tanh as the engine's torch path computes it (from the sigmoid of all four gates); tanh(c') is
   FN(tanh_exact), as torch.tanh there */
static inline real FN(tanh)(real x) { return 2 * FN(sigmoid)(2 * x) - 1; }

/* new = cell + a (old - cell), in place on cell (n values); a at a[j * sj]. In torch.lerp's two forms, so that
   a = 1 (padding, a zoned-out unit) gives old exactly and a = 0 the cell's value exactly. */
static void FN(carry)(int n, real *RESTRICT cell, const real *RESTRICT old, const real *a, long sj) {
    if (sj == 1) {
        for (int j = 0; j < n; j++) {
            real d = old[j] - cell[j];
            cell[j] = a[j] < (real)0.5 ? cell[j] + a[j] * d : old[j] - d * (1 - a[j]);
        }
    } else {
        real k = a[0];
        for (int j = 0; j < n; j++) {
            real d = old[j] - cell[j];
            cell[j] = k < (real)0.5 ? cell[j] + k * d : old[j] - d * (1 - k);
        }
    }
}

/* keep = grad * a, grad -= keep (n values): the share of a carried value's gradient that goes to the old value */
static void FN(split_carry)(int n, real *RESTRICT grad, real *RESTRICT keep, const real *a, long sj) {
    if (sj == 1) {
        for (int j = 0; j < n; j++) { keep[j] = grad[j] * a[j]; grad[j] -= keep[j]; }
    } else {
        real k = a[0];
        for (int j = 0; j < n; j++) { keep[j] = grad[j] * k; grad[j] -= keep[j]; }
    }
}

/* The end of a row's forward step, shared with and without layer norm: the carries of h and c (a_h, a_c: this
   row's factors, or NULL), and the next product's input x = h * m (recurrent dropout; m, x NULL without). */
static void FN(finish_row)(int H, real *RESTRICT h, real *RESTRICT c, const real *RESTRICT hp,
                           const real *RESTRICT cp, const real *a_h, long ah_sj, const real *a_c, long ac_sj,
                           const real *RESTRICT m, real *RESTRICT x) {
    if (a_h) FN(carry)(H, h, hp, a_h, ah_sj);
    if (a_c) FN(carry)(H, c, cp, a_c, ac_sj);
    if (x)
        for (int j = 0; j < H; j++) x[j] = h[j] * m[j];
}

/* The start of a row's backward step: the output's gradient joins h's (gh += go), then the carries keep their
   shares (kh, kc) for the previous state. */
static void FN(start_row_back)(int H, real *RESTRICT gh, real *RESTRICT gc, const real *RESTRICT go,
                               real *RESTRICT kh, real *RESTRICT kc, const real *a_h, long ah_sj, const real *a_c,
                               long ac_sj) {
    for (int j = 0; j < H; j++) gh[j] += go[j];
    if (a_h) FN(split_carry)(H, gh, kh, a_h, ah_sj);
    if (a_c) FN(split_carry)(H, gc, kc, a_c, ac_sj);
}

/* Its end: the previous c's gradient gets its carried share; h's buffer returns the carried share of h's (the
   product's part is added by the caller). */
static void FN(end_row_back)(int H, real *RESTRICT gh, real *RESTRICT gc, const real *RESTRICT kh,
                             const real *RESTRICT kc, int carry_h, int carry_c) {
    if (carry_c)
        for (int j = 0; j < H; j++) gc[j] += kc[j];
    if (carry_h)
        for (int j = 0; j < H; j++) gh[j] = kh[j];
}

/* Sums of n values in PARTS interleaved partial sums: without -ffast-math a compiler may not reorder one running
   sum, so a plain loop would add one value at a time. Independent partial sums vectorise, and 32 of them (two
   AVX-512 registers of floats, four AVX2) keep several additions in flight, where one waited on the last.
   They are held as vectors of the target's width (GEMM_VBYTES, set in steps.c with REAL_BYTES, the size of
   `real`), and so is their total: held in an array, GCC left the total as 31 scalar additions through memory,
   which took longer than the sum itself (and layer norm's statistics were half of a layer-normalised LSTM's
   step kernel). */
#define PARTS 32
#define SUM_VL (GEMM_VBYTES / REAL_BYTES)  /* values per vector */
#define SUM_NV (PARTS / SUM_VL)             /* vectors of partial sums */

typedef real FN(sumv) __attribute__((vector_size(GEMM_VBYTES)));
typedef real FN(sumv_u) __attribute__((vector_size(GEMM_VBYTES), aligned(REAL_BYTES)));  /* unaligned access */
typedef real FN(lanes16) __attribute__((vector_size(16 * REAL_BYTES)));
typedef real FN(lanes8) __attribute__((vector_size(8 * REAL_BYTES)));
typedef real FN(lanes4) __attribute__((vector_size(4 * REAL_BYTES)));
typedef real FN(lanes2) __attribute__((vector_size(2 * REAL_BYTES)));

/* FN(total_N)(v): the total of an N-lane vector, pairwise: lane k + lane k + N/2 (its halves added as vectors of
   the half's type, no lane moved but the one addition), then the same for the N/2 lanes, down to two. */
static inline real FN(total_2)(const FN(lanes2) *v) { return (*v)[0] + (*v)[1]; }
#define TOTAL_OF_HALVES(n, half)                                                                    \
    static inline real FN(total_##n)(const FN(lanes##n) *v) {                                      \
        FN(lanes##half) lo, hi;                                                                     \
        memcpy(&lo, v, sizeof lo), memcpy(&hi, (const char *)v + sizeof lo, sizeof hi);             \
        lo += hi;                                                                                    \
        return FN(total_##half)(&lo);                                                                \
    }
TOTAL_OF_HALVES(4, 2)
TOTAL_OF_HALVES(8, 4)
TOTAL_OF_HALVES(16, 8)

/* The partial sums' total, pairwise, the same order every time: part[k] += part[k + w] for w = 16, 8, ..., 1,
   where part[k] is lane k % SUM_VL of vector k / SUM_VL: across the vectors, then across part[0]'s lanes (the
   total_N of its width). */
static real FN(total)(FN(sumv) *part) {
    for (int w = SUM_NV / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++) part[k] += part[k + w];
    return _Generic(part, FN(lanes16) *: FN(total_16), FN(lanes8) *: FN(total_8), FN(lanes4) *: FN(total_4),
                    FN(lanes2) *: FN(total_2))(part);
}

/* x[j ..] as PARTS values in vectors: all of them where PARTS remain (`left`), else the `left` there and zeros
   (which leave a partial sum as it is: a sum that starts at +0 never holds -0) */
static inline void FN(load_parts)(const real *RESTRICT x, int left, FN(sumv) *v) {
    if (left >= PARTS) {
        for (int i = 0; i < SUM_NV; i++) v[i] = *(const FN(sumv_u) *)(x + i * SUM_VL);
        return;
    }
    real tail[PARTS] = {0};
    for (int k = 0; k < left; k++) tail[k] = x[k];
    memcpy(v, tail, sizeof tail);
}

static real FN(sum)(int n, const real *RESTRICT x) {
    FN(sumv) part[SUM_NV] = {{0}}, v[SUM_NV];
    for (int j = 0; j < n; j += PARTS) {
        FN(load_parts)(x + j, n - j, v);
        for (int i = 0; i < SUM_NV; i++) part[i] += v[i];
    }
    return FN(total)(part);
}

/* sum of (x - shift)^2: as FN(sum), but the tail padded with `shift` (which adds (shift - shift)^2 = +0), so that
   every value goes through the same expression, which the compiler may fuse into one multiply-add */
static real FN(sum_sq)(int n, const real *RESTRICT x, real shift) {
    FN(sumv) part[SUM_NV] = {{0}}, v[SUM_NV];
    for (int j = 0; j < n; j += PARTS) {
        if (n - j >= PARTS) {
            FN(load_parts)(x + j, PARTS, v);
        } else {
            real tail[PARTS];
            for (int k = 0; k < PARTS; k++) tail[k] = j + k < n ? x[j + k] : shift;
            FN(load_parts)(tail, PARTS, v);
        }
        for (int i = 0; i < SUM_NV; i++) part[i] += (v[i] - shift) * (v[i] - shift);
    }
    return FN(total)(part);
}

/* sum of x, and of x y, in one pass: as FN(sum) */
static void FN(sum_and_dot)(int n, const real *RESTRICT x, const real *RESTRICT y, real *sum, real *dot) {
    FN(sumv) part[SUM_NV] = {{0}}, part_xy[SUM_NV] = {{0}}, xv[SUM_NV], yv[SUM_NV];
    for (int j = 0; j < n; j += PARTS) {
        FN(load_parts)(x + j, n - j, xv);
        FN(load_parts)(y + j, n - j, yv);
        for (int i = 0; i < SUM_NV; i++) part[i] += xv[i], part_xy[i] += xv[i] * yv[i];
    }
    *sum = FN(total)(part);
    *dot = FN(total)(part_xy);
}

/* Layer norm's statistics of n values x (population variance, as torch's layer_norm): returns rstd =
   1 / sqrt(var + eps) and writes the mean. The mean first, then the variance about it, so that it does not
   cancel. */
static real FN(moments)(int n, const real *RESTRICT x, real eps, real *mean) {
    real m = FN(sum)(n, x) / n;
    *mean = m;
    return 1 / sqrt(FN(sum_sq)(n, x, m) / n + eps);
}

/* xn = (x - mean) rstd (n values) */
static void FN(standardise)(int n, const real *RESTRICT x, real *RESTRICT xn, real mean, real rstd) {
    for (int j = 0; j < n; j++) xn[j] = (x[j] - mean) * rstd;
}

/* Layer norm of n values x: writes xn = (x - mean) rstd, returns rstd. */
static real FN(normalise)(int n, const real *RESTRICT x, real *RESTRICT xn, real eps) {
    real mean, rstd = FN(moments)(n, x, eps, &mean);
    FN(standardise)(n, x, xn, mean, rstd);
    return rstd;
}

/* The input gradient of layer norm from the normalised values xn and rstd: in place on g (n values),
   g <- rstd (g - mean(g) - xn mean(g xn)). */
static void FN(normalise_back)(int n, real *RESTRICT g, const real *RESTRICT xn, real rstd) {
    real s, sx;
    FN(sum_and_dot)(n, g, xn, &s, &sx);
    s /= n, sx /= n;
    for (int j = 0; j < n; j++) g[j] = rstd * (g[j] - s - xn[j] * sx);
}

/* Gradient sums that every row adds to (a gain's gradient, say), shared between threads. A step's rows are cut
   into n chunks, one per thread asked for, whatever team the runtime gives: chunk 0 adds into the sums
   themselves, every other chunk into zeroed sums of its own, which are then added to them in chunk order, each
   value by one thread. So a given n gives the same result every run. `count` sums of sizes[i] values (0: the
   sum is absent).

   partial_sums: room for chunks 1 .. n - 1's sums (the caller frees it); where there is none, *n becomes 1. */
static real *FN(partial_sums)(int *n, int count, const long *sizes) {
    long total = sum_of_sizes(count, sizes);
    real *part = *n > 1 && total ? (real *)malloc((size_t)(*n - 1) * total * sizeof(real)) : 0;
    if (!part) *n = 1;
    return part;
}

/* Where chunk c adds: s[i] = sums[i] for chunk 0, else its own part of `part`, zeroed here where `zero` (by the
   thread that will add into it). */
static void FN(sums_of)(int c, real *part, int count, const long *sizes, real *const *sums, real **s, int zero) {
    long total = sum_of_sizes(count, sizes), at = 0;
    for (int i = 0; i < count; i++) {
        s[i] = c == 0 ? sums[i] : (sizes[i] ? part + (long)(c - 1) * total + at : 0);
        if (c > 0 && zero)
            for (long j = 0; j < sizes[i]; j++) s[i][j] = 0;
        at += sizes[i];
    }
}

/* Inside the parallel region, called by every thread of the team after the chunks' loop (whose implicit barrier
   it relies on: that loop must never take `nowait`), or outside any, by one thread: chunks 1 .. n - 1's sums
   into sums[i], in chunk order, the values shared between the team by worksharing loops that every thread meets
   in the same order. */
static void FN(add_partial_sums)(int n, const real *part, int count, const long *sizes, real *const *sums) {
    long total = sum_of_sizes(count, sizes), at = 0;
    for (int i = 0; i < count; i++) {
        real *sum = sums[i];
        #pragma omp for schedule(static)
        for (long j = 0; j < sizes[i]; j++) {
            real v = sum[j];
            for (int c = 1; c < n; c++) v += part[(long)(c - 1) * total + at + j];
            sum[j] = v;
        }
        at += sizes[i];
    }
}
