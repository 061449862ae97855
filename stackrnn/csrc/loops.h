/* The LSTM's time loops: every step of one direction in one call, the recurrence's matrix product by BLAS,
   the pointwise work by lstm.h's step kernels. Over a type `real`, included by steps.c after lstm.h.

   Called from Python, the same loop costs about 25 us a step in the interpreter and ctypes, and torch's
   dispatch of each product: at hidden 256, batch 32, that is a sixth of a step. Here the loop runs in C and
   calls the gemm that torch's own matrix products call (MKL's or OpenBLAS's sgemm_ / dgemm_, which kernels.py
   finds in torch's library and checks against torch.mm before it hands it over). Where there is none, or a
   large weight runs faster packed for oneDNN (engine.py's _Product), the engine keeps its Python loop over the
   same step kernels.

   Shapes: T steps, B rows, H units, gates (B, 4H); every (T, ...) tensor in processing order (step s), but
   the input's product gi / xw (T, B, 4H), in time order (t = s, or T - 1 - s with `reverse`). Carry factors
   come with a step stride (in values) and the row and column strides of common.h: forward reads them in time
   order (at t), backward in processing order (at s; the engine hands them over flipped).
   All row-major and contiguous. */

/* The gemm of BLAS's Fortran interface, column-major: c = alpha op(a) op(b) + beta c. Its integers are passed
   as pointers to 64-bit values, so that an LP64 BLAS (32-bit integers: it reads the low half, on the
   little-endian machines that kernels.py allows) and an ILP64 one read the same numbers. The last two
   arguments are the character arguments' hidden lengths, which C-written BLASes ignore. */
typedef void (*FN(gemm_fn))(const char *, const char *, const int64_t *, const int64_t *, const int64_t *,
                            const real *, const real *, const int64_t *, const real *, const int64_t *,
                            const real *, real *, const int64_t *, size_t, size_t);

/* Bands a product's output columns are cut into, one thread each: torch's count (max_threads), fewer where a band
   would get under MIN_COLUMNS_PER_THREAD columns or MIN_PRODUCT_PER_THREAD multiply-adds. MKL runs a thin product
   (a batch of rows times a weight) on one of torch's threads, or splits it poorly: at hidden 256, batch 32 on 2
   cores, 35 products took 235 us each from torch.mm and 180 us with their columns shared here. Each band's gemm
   runs inside this library's parallel region, where an OpenMP BLAS (MKL, OpenBLAS built with OpenMP) runs
   single-threaded as long as nested regions are off; where they are on (OMP_NESTED, OMP_MAX_ACTIVE_LEVELS above
   1), one call does the whole product, so that each band does not start a team of its own. */
#define MIN_COLUMNS_PER_THREAD 32
#define MIN_PRODUCT_PER_THREAD (1L << 18)

static int FN(product_bands)(int rows, int cols, int k) {
    double by_work = (double)rows * cols * k / MIN_PRODUCT_PER_THREAD;
    int n = LOAD(max_threads), by_columns = cols / MIN_COLUMNS_PER_THREAD;
#ifdef _OPENMP
    /* nested regions on: libgomp reports 2^31 - 1 active levels by default, yet runs no nested team unless
       OMP_NESTED or OMP_MAX_ACTIVE_LEVELS asks, and omp_get_nested() says which */
    if (omp_get_nested() && omp_get_max_active_levels() > 1) return 1;
#endif
    if (n > by_columns) n = by_columns;
    if (n > by_work) n = (int)by_work;
    return n < 1 ? 1 : n;
}

/* y (rows, M) = rows of b (K each) times op(a), plus y where `beta` is 1, all row-major; in column-major terms
   y^T = op(a) b^T, op(a) (M, K) stored as lda-spaced columns, op(a)'s row j at a + j a_step. Band i of the
   product's bands computes y's columns [M i / bands, M (i + 1) / bands). The bands are fixed by the count asked
   for, whatever team the runtime gives, so the result is too. */
static void FN(banded_gemm)(void *gemm, const char *op, int64_t M, int64_t rows, int64_t K, const real *a,
                            int64_t a_step, int64_t lda, const real *b, real beta, real *y) {
    int bands = FN(product_bands)((int)rows, (int)M, (int)K);
    real one = 1;
    #pragma omp parallel for schedule(static) num_threads(bands) if (bands > 1)
    for (int band = 0; band < bands; band++) {
        int64_t j0 = M * band / bands, m = M * (band + 1) / bands - j0;
        ((FN(gemm_fn))gemm)(op, "N", &m, &rows, &K, &one, a + j0 * a_step, &lda, b, &K, &beta, y + j0, &M, 1, 1);
    }
}

/* y (rows, n) = x (rows, k) w^T, plus y where `accumulate`; w (n, k): y^T = w x^T, a band from rows of w. */
static void FN(times_wt)(void *gemm, int rows, int n, int k, const real *x, const real *w, int accumulate,
                         real *y) {
    FN(banded_gemm)(gemm, "T", n, rows, k, w, k, k, x, accumulate ? 1 : 0, y);
}

/* y (rows, k) = d (rows, n) w, plus y where `accumulate`; w (n, k): y^T = w^T d^T, a band from columns of w. */
static void FN(times_w)(void *gemm, int rows, int n, int k, const real *d, const real *w, int accumulate,
                        real *y) {
    FN(banded_gemm)(gemm, "N", k, rows, n, w, 1, k, d, accumulate ? 1 : 0, y);
}

/* times_wt and times_w on their own, for kernels.py's check of the gemm it found, and for tests. */
void FN(blas_times_wt)(void *gemm, int rows, int n, int k, const real *x, const real *w, int accumulate,
                       real *y) {
    FN(times_wt)(gemm, rows, n, k, x, w, accumulate, y);
}

void FN(blas_times_w)(void *gemm, int rows, int n, int k, const real *d, const real *w, int accumulate,
                      real *y) {
    FN(times_w)(gemm, rows, n, k, d, w, accumulate, y);
}

/* The first product's input: h0, or with recurrent dropout h0 * mask, written into x0 (B * H values). */
static const real *FN(first_input)(long n, const real *h0, const real *mask, real *x0) {
    if (!mask) return h0;
    for (long j = 0; j < n; j++) x0[j] = h0[j] * mask[j];
    return x0;
}

/* The previous h's gradient into dh (B, H): d_z (B, N) w, times the recurrent dropout mask (or NULL), plus dh's
   own value where `direct` (the part a carry or a GRU's z passed straight back), else not. tmp (B, H): scratch. */
static void FN(previous_dh)(void *gemm, int B, int N, int H, const real *d_z, const real *w, int direct,
                            const real *mask, real *tmp, real *dh) {
    if (!mask) {
        FN(times_w)(gemm, B, N, H, d_z, w, direct, dh);
        return;
    }
    FN(times_w)(gemm, B, N, H, d_z, w, 0, tmp);
    long n = (long)B * H;
    if (direct)
        for (long j = 0; j < n; j++) dh[j] += tmp[j] * mask[j];
    else
        for (long j = 0; j < n; j++) dh[j] = tmp[j] * mask[j];
}

/* A carry factor's values at time t, or NULL. */
static inline const real *FN(carry_at)(const real *a, long step, int t) { return a ? a + (long)t * step : 0; }

/* Forward over all steps: per step pre = gi[t] + h_in W_hh^T (w_hh (4H, H)), then lstm_forward_step.
   h_all, c_all (T + 1, B, H): row 0 holds h0 and c0 on entry, rows 1.. get every step's new state; act
   (T, B, 4H) and tc (T, B, H) as lstm_forward_step writes them; h_mask (B, H) or NULL. pre (B, 4H) and spare
   (2, B, H, with h_mask only): scratch. */
void FN(lstm_forward_loop)(void *gemm, int T, int B, int H, int reverse, const real *gi, const real *w_hh,
                           const real *a_h, long ah_st, long ah_sb, long ah_sj, const real *a_c, long ac_st,
                           long ac_sb, long ac_sj, const real *h_mask, real *pre, real *spare, real *act,
                           real *tc, real *c_all, real *h_all) {
    long bh = (long)B * H, g = 4 * bh;
    const real *h_in = FN(first_input)(bh, h_all, h_mask, spare + bh);
    for (int s = 0; s < T; s++) {
        int t = reverse ? T - 1 - s : s;
        real *h_next = h_mask ? spare + (s % 2) * bh : 0;
        memcpy(pre, gi + t * g, g * sizeof(real));
        FN(times_wt)(gemm, B, 4 * H, H, h_in, w_hh, 1, pre);
        FN(lstm_forward_step)(B, H, pre, c_all + s * bh, h_all + s * bh, FN(carry_at)(a_h, ah_st, t), ah_sb, ah_sj,
                              FN(carry_at)(a_c, ac_st, t), ac_sb, ac_sj, h_mask, act + s * g, tc + s * bh,
                              c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        h_in = h_next ? h_next : h_all + (s + 1) * bh;
    }
}

/* Backward over all steps, in reverse: per step lstm_backward_step, then the previous h's gradient through the
   product. Carries here are in processing order (read at step s). d_out (T, B, H): the outputs' gradients.
   dh, dc (B, H): in, the final state's gradients; out, h0's and c0's. Writes d_z (T, B, 4H), the gradient of
   every step's pre (what W_hh, the biases and gi receive). keep_h, keep_c, tmp (B, H): scratch. */
void FN(lstm_backward_loop)(void *gemm, int T, int B, int H, const real *w_hh, const real *act, const real *tc,
                            const real *c_all, const real *a_h, long ah_st, long ah_sb, long ah_sj,
                            const real *a_c, long ac_st, long ac_sb, long ac_sj, const real *h_mask,
                            const real *d_out, real *dh, real *dc, real *d_z, real *keep_h, real *keep_c,
                            real *tmp) {
    long bh = (long)B * H, g = 4 * bh;
    for (int s = T - 1; s >= 0; s--) {
        FN(lstm_backward_step)(B, H, act + s * g, tc + s * bh, c_all + s * bh, FN(carry_at)(a_h, ah_st, s), ah_sb,
                               ah_sj, FN(carry_at)(a_c, ac_st, s), ac_sb, ac_sj, d_out + s * bh, dh, dc, d_z + s * g,
                               keep_h, keep_c);
        FN(previous_dh)(gemm, B, 4 * H, H, d_z + s * g, w_hh, a_h != 0, h_mask, tmp, dh);
    }
}

/* Forward of the layer-normalised LSTM over all steps: per step z = h_in W_hh^T, then lstm_ln_forward_step on
   xw[t] (x W_ih^T, (T, B, 4H) in time order). As lstm_forward_loop, with lstm_ln_forward_step's gains and what
   it writes per step: mx, rx, rz (T, B, 4), zn (T, B, 4H), cn (T, B, H), rc (T, B). z (B, 4H): scratch. */
void FN(lstm_ln_forward_loop)(void *gemm, int T, int B, int H, int reverse, const real *xw, const real *w_hh,
                              const real *g_ih, const real *bias, const real *g_hh, const real *gain_c,
                              const real *shift_c, real eps, const real *a_h, long ah_st, long ah_sb, long ah_sj,
                              const real *a_c, long ac_st, long ac_sb, long ac_sj, const real *h_mask, real *z,
                              real *spare, real *act, real *mx, real *rx, real *zn, real *rz, real *tc, real *cn,
                              real *rc, real *c_all, real *h_all) {
    long bh = (long)B * H, g = 4 * bh;
    const real *h_in = FN(first_input)(bh, h_all, h_mask, spare + bh);
    for (int s = 0; s < T; s++) {
        int t = reverse ? T - 1 - s : s;
        real *h_next = h_mask ? spare + (s % 2) * bh : 0;
        FN(times_wt)(gemm, B, 4 * H, H, h_in, w_hh, 0, z);
        FN(lstm_ln_forward_step)(B, H, z, xw + t * g, g_ih, bias, g_hh, gain_c, shift_c, eps, c_all + s * bh,
                                 h_all + s * bh, FN(carry_at)(a_h, ah_st, t), ah_sb, ah_sj,
                                 FN(carry_at)(a_c, ac_st, t), ac_sb, ac_sj, h_mask, act + s * g, mx + s * 4L * B,
                                 rx + s * 4L * B, zn + s * g, rz + s * 4L * B, tc + s * bh, cn + s * bh,
                                 rc + (long)s * B, c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        h_in = h_next ? h_next : h_all + (s + 1) * bh;
    }
}

/* Its backward, in reverse: per step lstm_ln_backward_step (its arguments, per step where forward wrote them
   per step; xw in time order, carries in processing order), then the previous h's gradient from d_z[s].
   Writes d_xw and d_z (T, B, 4H, processing order) and sums the gains' gradients as lstm_ln_backward_step, but
   each chunk of rows into its own sums over all steps, added together once at the end: passing them between
   cores at every step took longer than a step's own work.
   d_pre, xn (B, 4H), keep_h, keep_c, scratch, tmp (B, H): scratch. */
void FN(lstm_ln_backward_loop)(void *gemm, int T, int B, int H, int reverse, const real *w_hh, const real *act,
                               const real *tc, const real *xw, const real *mx, const real *rx, const real *zn,
                               const real *rz, const real *cn, const real *rc, const real *g_ih,
                               const real *g_hh, const real *gain_c, const real *c_all, const real *a_h,
                               long ah_st, long ah_sb, long ah_sj, const real *a_c, long ac_st, long ac_sb,
                               long ac_sj, const real *h_mask, const real *d_out, real *dh, real *dc,
                               real *d_pre, real *d_xw, real *d_z, real *d_g_ih, real *d_g_hh, real *d_bias,
                               real *d_gain_c, real *d_shift_c, real *keep_h, real *keep_c, real *scratch,
                               real *xn, real *tmp) {
    long bh = (long)B * H, g = 4 * bh, sizes[5];
    real *sums[5], *s_c[5];
    FN(lstm_ln_sums)(H, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, sizes, sums);
    int n = threads_for(B, H);
    real *part = FN(partial_sums)(&n, 5, sizes);
    for (int c = 1; c < n; c++) FN(sums_of)(c, part, 5, sizes, sums, s_c, 1);  /* zeroed once for all steps */
    for (int s = T - 1; s >= 0; s--) {
        int t = reverse ? T - 1 - s : s;
        FN(lstm_ln_backward_chunks)(n, part, 0, B, H, act + s * g, tc + s * bh, xw + t * g, mx + s * 4L * B,
                                    rx + s * 4L * B, zn + s * g, rz + s * 4L * B, cn + s * bh, rc + (long)s * B,
                                    g_ih, g_hh, gain_c, c_all + s * bh, FN(carry_at)(a_h, ah_st, s), ah_sb, ah_sj,
                                    FN(carry_at)(a_c, ac_st, s), ac_sb, ac_sj, d_out + s * bh, dh, dc, d_pre,
                                    d_xw + s * g, d_z + s * g, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, keep_h,
                                    keep_c, scratch, xn);
        FN(previous_dh)(gemm, B, 4 * H, H, d_z + s * g, w_hh, a_h != 0, h_mask, tmp, dh);
    }
    FN(add_partial_sums)(n, part, 5, sizes, sums);  /* by this thread alone: outside a parallel region */
    free(part);
}
