/* The LSTM's time loops: every step of one direction in one call, the recurrence's matrix product by gemm.h,
   the pointwise work by lstm.h's step kernels. Over a type `real`, included by steps.c after lstm.h and gemm.h.

   Called from Python, the same loop costs about 25 us a step in the interpreter and ctypes, and torch's
   dispatch of each product: at hidden 256, batch 32, that is a sixth of a step. Here the loop runs in C. W_hh
   comes packed for gemm.h by the engine, once per pass (forward packs it as W_hh^T, backward as W_hh); the
   products' other side (h, or the gates' gradient) has its rows along memory, so gemm.h reads it in place and
   needs no room of its own. STACKRNN_KERNELS=steps keeps the engine's Python loop over the same step kernels and
   products instead, for comparison.

   Where every thread can have a chunk of the batch (loop_chunks, steps.c), each runs its own rows through all
   steps, products and step kernels alone (a row's recurrence reads no other row's), and the threads meet once, at
   the end. Otherwise the loop goes step by step, each step's product and kernel shared between the threads.
   Both give the same results, bit for bit: every product's sums and every row's work are the same either way.

   Shapes: T steps, B rows, H units, gates (B, 4H); every (T, ...) tensor in processing order (step s), but
   the input's product gi / xw (T, B, 4H), in time order (t = s, or T - 1 - s with `reverse`). Carry factors
   come with a step stride (in values) and the row and column strides of common.h: forward reads them in time
   order (at t), backward in processing order (at s; the engine hands them over flipped).
   All row-major and contiguous. */

/* y (M, N) = add + a (M, K) b for b packed by gemm.h's pack_b, a's and y's rows along memory; add NULL, or
   (M, N), which may be y. `alone`: by the calling thread (a chunk's rows), else shared between threads. */
static void FN(times_packed)(int alone, int M, int N, int K, const real *a, const real *packed, const real *add,
                             real *y) {
    if (alone)
        FN(gemm_rows)(M, N, K, a, K, packed, add, N, y, N);
    else
        FN(gemm_packed)(M, N, K, a, K, 1, packed, add, N, y, N, 1, 0);
}

/* y (rows, n) = add + x (rows, k) w^T, for w (n, k) packed by the caller as gemm.h's b = w^T (pack_b(k, n, w,
   1, k)). */
static void FN(times_wt)(int alone, int rows, int n, int k, const real *x, const real *packed, const real *add,
                         real *y) {
    FN(times_packed)(alone, rows, n, k, x, packed, add, y);
}

/* y (rows, k) = add + d (rows, n) w, for w (n, k) packed as gemm.h's b = w (pack_b(n, k, w, k, 1)). */
static void FN(times_w)(int alone, int rows, int n, int k, const real *d, const real *packed, const real *add,
                        real *y) {
    FN(times_packed)(alone, rows, k, n, d, packed, add, y);
}

/* The first product's input: h0, or with recurrent dropout h0 * mask, written into x0 (B * H values). */
static const real *FN(first_input)(long n, const real *h0, const real *mask, real *x0) {
    if (!mask) return h0;
    for (long j = 0; j < n; j++) x0[j] = h0[j] * mask[j];
    return x0;
}

/* The previous h's gradient into dh (B, H): d_z (B, N) w (w packed for times_w), times the recurrent dropout mask
   (or NULL), plus dh's own value where `direct` (the part a carry or a GRU's z passed straight back), else not.
   tmp (B, H): scratch. All for B rows from the pointers given (a chunk's, with `alone`). */
static void FN(previous_dh)(int alone, int B, int N, int H, const real *d_z, const real *w, int direct,
                            const real *mask, real *tmp, real *dh) {
    if (!mask) {
        FN(times_w)(alone, B, N, H, d_z, w, direct ? dh : 0, dh);
        return;
    }
    FN(times_w)(alone, B, N, H, d_z, w, 0, tmp);
    long n = (long)B * H;
    if (direct)
        for (long j = 0; j < n; j++) dh[j] += tmp[j] * mask[j];
    else
        for (long j = 0; j < n; j++) dh[j] = tmp[j] * mask[j];
}

/* The first product's input for the chunk of rows b0..b1: its rows of h0 (h_all's row 0), or with h_mask their
   h0 * mask, written into spare's second half (spare: (2, B, H)). */
static inline const real *FN(chunk_input)(int b0, int b1, int H, long bh, const real *h_all, const real *h_mask,
                                          real *spare) {
    long o1 = (long)b0 * H;
    return FN(first_input)((long)(b1 - b0) * H, h_all + o1, h_mask ? h_mask + o1 : 0, spare ? spare + bh + o1 : 0);
}

/* A carry factor's values at time t, or NULL. */
static inline const real *FN(carry_at)(const real *a, long step, int t) { return a ? a + (long)t * step : 0; }

/* Forward over all steps: per step pre = gi[t] + h_in W_hh^T (w_hh: W_hh (4H, H) packed for times_wt), then
   lstm_forward_step.
   h_all, c_all (T + 1, B, H): row 0 holds h0 and c0 on entry, rows 1.. get every step's new state; act
   (T, B, 4H) and tc (T, B, H) as lstm_forward_step writes them; h_mask (B, H) or NULL. pre (B, 4H) and spare
   (2, B, H, with h_mask only): scratch. */
static void FN(lstm_forward_chunk)(int alone, int b0, int b1, int T, int B, int H, int reverse, const real *gi,
                                   const real *w_hh, const real *a_h, long ah_st, long ah_sb, long ah_sj,
                                   const real *a_c, long ac_st, long ac_sb, long ac_sj, const real *h_mask,
                                   real *pre, real *spare, real *act, real *tc, real *c_all, real *h_all) {
    long bh = (long)B * H, g = 4 * bh, o1 = (long)b0 * H, o4 = 4 * o1;  /* the chunk's first row's offsets */
    const real *h_in = FN(chunk_input)(b0, b1, H, bh, h_all, h_mask, spare);
    for (int s = 0; s < T; s++) {
        int t = reverse ? T - 1 - s : s;
        real *h_next = h_mask ? spare + (s % 2) * bh : 0;
        const real *ah = FN(carry_at)(a_h, ah_st, t), *ac = FN(carry_at)(a_c, ac_st, t);
        FN(times_wt)(alone, b1 - b0, 4 * H, H, h_in, w_hh, gi + t * g + o4, pre + o4);
        if (alone)
            FN(lstm_forward_rows)(b0, b1, H, pre, c_all + s * bh, h_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb, ac_sj,
                                  h_mask, act + s * g, tc + s * bh, c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        else
            FN(lstm_forward_step)(B, H, pre, c_all + s * bh, h_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb, ac_sj, h_mask,
                                  act + s * g, tc + s * bh, c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        h_in = (h_next ? h_next : h_all + (s + 1) * bh) + o1;
    }
}

void FN(lstm_forward_loop)(int T, int B, int H, int reverse, const real *gi, const real *w_hh, const real *a_h,
                           long ah_st, long ah_sb, long ah_sj, const real *a_c, long ac_st, long ac_sb, long ac_sj,
                           const real *h_mask, real *pre, real *spare, real *act, real *tc, real *c_all,
                           real *h_all) {
    int n = loop_chunks(B, H);
    if (n == 1) {  /* outside any region of ours: a step's own regions get the runtime's pool of awake threads */
        FN(lstm_forward_chunk)(0, 0, B, T, B, H, reverse, gi, w_hh, a_h, ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb, ac_sj,
                               h_mask, pre, spare, act, tc, c_all, h_all);
        return;
    }
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_forward_chunk)(1, CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), T, B, H, reverse, gi, w_hh, a_h,
                               ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb, ac_sj, h_mask, pre, spare, act, tc, c_all,
                               h_all);
}

/* Backward over all steps, in reverse: per step lstm_backward_step, then the previous h's gradient through the
   product. Carries here are in processing order (read at step s). d_out (T, B, H): the outputs' gradients.
   dh, dc (B, H): in, the final state's gradients; out, h0's and c0's. Writes d_z (T, B, 4H), the gradient of
   every step's pre (what W_hh, the biases and gi receive). w_hh: W_hh packed for times_w; keep_h, keep_c, tmp
   (B, H): scratch. */
static void FN(lstm_backward_chunk)(int alone, int b0, int b1, int T, int B, int H, const real *w_hh,
                                    const real *act, const real *tc, const real *c_all, const real *a_h, long ah_st,
                                    long ah_sb, long ah_sj, const real *a_c, long ac_st, long ac_sb, long ac_sj,
                                    const real *h_mask, const real *d_out, real *dh, real *dc, real *d_z,
                                    real *keep_h, real *keep_c, real *tmp) {
    long bh = (long)B * H, g = 4 * bh, o1 = (long)b0 * H, o4 = 4 * o1;
    for (int s = T - 1; s >= 0; s--) {
        const real *ah = FN(carry_at)(a_h, ah_st, s), *ac = FN(carry_at)(a_c, ac_st, s);
        if (alone)
            FN(lstm_backward_rows)(b0, b1, H, act + s * g, tc + s * bh, c_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb,
                                   ac_sj, d_out + s * bh, dh, dc, d_z + s * g, keep_h, keep_c);
        else
            FN(lstm_backward_step)(B, H, act + s * g, tc + s * bh, c_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb, ac_sj,
                                   d_out + s * bh, dh, dc, d_z + s * g, keep_h, keep_c);
        FN(previous_dh)(alone, b1 - b0, 4 * H, H, d_z + s * g + o4, w_hh, a_h != 0, h_mask ? h_mask + o1 : 0,
                        tmp ? tmp + o1 : 0, dh + o1);
    }
}

void FN(lstm_backward_loop)(int T, int B, int H, const real *w_hh, const real *act, const real *tc,
                            const real *c_all, const real *a_h, long ah_st, long ah_sb, long ah_sj,
                            const real *a_c, long ac_st, long ac_sb, long ac_sj, const real *h_mask,
                            const real *d_out, real *dh, real *dc, real *d_z, real *keep_h, real *keep_c,
                            real *tmp) {
    int n = loop_chunks(B, H);
    if (n == 1) {  /* as lstm_forward_loop */
        FN(lstm_backward_chunk)(0, 0, B, T, B, H, w_hh, act, tc, c_all, a_h, ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb,
                                ac_sj, h_mask, d_out, dh, dc, d_z, keep_h, keep_c, tmp);
        return;
    }
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_backward_chunk)(1, CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), T, B, H, w_hh, act, tc, c_all,
                                a_h, ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb, ac_sj, h_mask, d_out, dh, dc, d_z,
                                keep_h, keep_c, tmp);
}

/* Forward of the layer-normalised LSTM over all steps: per step z = h_in W_hh^T, then lstm_ln_forward_step on
   xw[t] (x W_ih^T, (T, B, 4H) in time order). As lstm_forward_loop, with lstm_ln_forward_step's gains and what
   it writes per step: mx, rx, rz (T, B, 4), zn (T, B, 4H), cn (T, B, H), rc (T, B). z (B, 4H): scratch. */
static void FN(lstm_ln_forward_chunk)(int alone, int b0, int b1, int T, int B, int H, int reverse, const real *xw,
                                      const real *w_hh, const real *g_ih, const real *bias, const real *g_hh,
                                      const real *gain_c, const real *shift_c, real eps, const real *a_h,
                                      long ah_st, long ah_sb, long ah_sj, const real *a_c, long ac_st, long ac_sb,
                                      long ac_sj, const real *h_mask, real *z, real *spare, real *act, real *mx,
                                      real *rx, real *zn, real *rz, real *tc, real *cn, real *rc, real *c_all,
                                      real *h_all) {
    long bh = (long)B * H, g = 4 * bh, o1 = (long)b0 * H, o4 = 4 * o1;
    const real *h_in = FN(chunk_input)(b0, b1, H, bh, h_all, h_mask, spare);
    for (int s = 0; s < T; s++) {
        int t = reverse ? T - 1 - s : s;
        real *h_next = h_mask ? spare + (s % 2) * bh : 0;
        const real *ah = FN(carry_at)(a_h, ah_st, t), *ac = FN(carry_at)(a_c, ac_st, t);
        FN(times_wt)(alone, b1 - b0, 4 * H, H, h_in, w_hh, 0, z + o4);
        if (alone)
            FN(lstm_ln_forward_rows)(b0, b1, H, z, xw + t * g, g_ih, bias, g_hh, gain_c, shift_c, eps, c_all + s * bh,
                                     h_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb, ac_sj, h_mask, act + s * g,
                                     mx + s * 4L * B, rx + s * 4L * B, zn + s * g, rz + s * 4L * B, tc + s * bh,
                                     cn + s * bh, rc + (long)s * B, c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        else
            FN(lstm_ln_forward_step)(B, H, z, xw + t * g, g_ih, bias, g_hh, gain_c, shift_c, eps, c_all + s * bh,
                                     h_all + s * bh, ah, ah_sb, ah_sj, ac, ac_sb, ac_sj, h_mask, act + s * g,
                                     mx + s * 4L * B, rx + s * 4L * B, zn + s * g, rz + s * 4L * B, tc + s * bh,
                                     cn + s * bh, rc + (long)s * B, c_all + (s + 1) * bh, h_all + (s + 1) * bh, h_next);
        h_in = (h_next ? h_next : h_all + (s + 1) * bh) + o1;
    }
}

void FN(lstm_ln_forward_loop)(int T, int B, int H, int reverse, const real *xw, const real *w_hh,
                              const real *g_ih, const real *bias, const real *g_hh, const real *gain_c,
                              const real *shift_c, real eps, const real *a_h, long ah_st, long ah_sb, long ah_sj,
                              const real *a_c, long ac_st, long ac_sb, long ac_sj, const real *h_mask, real *z,
                              real *spare, real *act, real *mx, real *rx, real *zn, real *rz, real *tc, real *cn,
                              real *rc, real *c_all, real *h_all) {
    int n = loop_chunks(B, H);
    if (n == 1) {  /* as lstm_forward_loop */
        FN(lstm_ln_forward_chunk)(0, 0, B, T, B, H, reverse, xw, w_hh, g_ih, bias, g_hh, gain_c, shift_c, eps, a_h,
                                  ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb, ac_sj, h_mask, z, spare, act, mx, rx, zn, rz,
                                  tc, cn, rc, c_all, h_all);
        return;
    }
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_ln_forward_chunk)(1, CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), T, B, H, reverse, xw, w_hh,
                                  g_ih, bias, g_hh, gain_c, shift_c, eps, a_h, ah_st, ah_sb, ah_sj, a_c, ac_st, ac_sb,
                                  ac_sj, h_mask, z, spare, act, mx, rx, zn, rz, tc, cn, rc, c_all, h_all);
}

/* Its backward, in reverse: per step lstm_ln_backward_step (its arguments, per step where forward wrote them
   per step; xw in time order, carries in processing order), then the previous h's gradient from d_z[s].
   Writes d_xw and d_z (T, B, 4H, processing order) and sums the gains' gradients as lstm_ln_backward_step, but
   each chunk of rows into its own sums over all steps, added together once at the end: passing them between
   cores at every step took longer than a step's own work.
   d_pre, xn (B, 4H), keep_h, keep_c, scratch, tmp (B, H): scratch. */
static void FN(lstm_ln_backward_chunk)(int b0, int b1, real *const *sums, int T, int B, int H, int reverse,
                                       const real *w_hh, const real *act, const real *tc, const real *xw,
                                       const real *mx, const real *rx, const real *zn, const real *rz,
                                       const real *cn, const real *rc, const real *g_ih, const real *g_hh,
                                       const real *gain_c, const real *c_all, const real *a_h, long ah_st,
                                       long ah_sb, long ah_sj, const real *a_c, long ac_st, long ac_sb, long ac_sj,
                                       const real *h_mask, const real *d_out, real *dh, real *dc, real *d_pre,
                                       real *d_xw, real *d_z, real *keep_h, real *keep_c, real *scratch, real *xn,
                                       real *tmp) {
    long bh = (long)B * H, g = 4 * bh, o1 = (long)b0 * H, o4 = 4 * o1;
    for (int s = T - 1; s >= 0; s--) {
        int t = reverse ? T - 1 - s : s;
        FN(lstm_ln_backward_rows)(b0, b1, H, act + s * g, tc + s * bh, xw + t * g, mx + s * 4L * B, rx + s * 4L * B,
                                  zn + s * g, rz + s * 4L * B, cn + s * bh, rc + (long)s * B, g_ih, g_hh, gain_c,
                                  c_all + s * bh, FN(carry_at)(a_h, ah_st, s), ah_sb, ah_sj,
                                  FN(carry_at)(a_c, ac_st, s), ac_sb, ac_sj, d_out + s * bh, dh, dc, d_pre,
                                  d_xw + s * g, d_z + s * g, sums, keep_h, keep_c, scratch, xn);
        FN(previous_dh)(1, b1 - b0, 4 * H, H, d_z + s * g + o4, w_hh, a_h != 0, h_mask ? h_mask + o1 : 0,
                        tmp ? tmp + o1 : 0, dh + o1);
    }
}

void FN(lstm_ln_backward_loop)(int T, int B, int H, int reverse, const real *w_hh, const real *act,
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
    if (n > 1 && n == loop_chunks(B, H)) {  /* each thread its chunk of rows through every step */
        #pragma omp parallel for schedule(static) num_threads(n)
        for (int c = 0; c < n; c++) {
            real *s[5];
            note_team();
            FN(sums_of)(c, part, 5, sizes, sums, s, 0);
            FN(lstm_ln_backward_chunk)(CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), s, T, B, H, reverse, w_hh, act,
                                       tc, xw, mx, rx, zn, rz, cn, rc, g_ih, g_hh, gain_c, c_all, a_h, ah_st, ah_sb,
                                       ah_sj, a_c, ac_st, ac_sb, ac_sj, h_mask, d_out, dh, dc, d_pre, d_xw, d_z,
                                       keep_h, keep_c, scratch, xn, tmp);
        }
    } else {  /* step by step, the same chunks of rows sharing each step */
        for (int s = T - 1; s >= 0; s--) {
            int t = reverse ? T - 1 - s : s;
            FN(lstm_ln_backward_chunks)(n, part, 0, B, H, act + s * g, tc + s * bh, xw + t * g, mx + s * 4L * B,
                                        rx + s * 4L * B, zn + s * g, rz + s * 4L * B, cn + s * bh, rc + (long)s * B,
                                        g_ih, g_hh, gain_c, c_all + s * bh, FN(carry_at)(a_h, ah_st, s), ah_sb,
                                        ah_sj, FN(carry_at)(a_c, ac_st, s), ac_sb, ac_sj, d_out + s * bh, dh, dc,
                                        d_pre, d_xw + s * g, d_z + s * g, d_g_ih, d_g_hh, d_bias, d_gain_c,
                                        d_shift_c, keep_h, keep_c, scratch, xn);
            FN(previous_dh)(0, B, 4 * H, H, d_z + s * g, w_hh, a_h != 0, h_mask, tmp, dh);
        }
    }
    FN(add_partial_sums)(n, part, 5, sizes, sums);  /* by this thread alone: outside a parallel region */
    free(part);
}
