/* The LSTM step kernels (gates i f g o, (B, 4H)), with and without layer norm; over a type `real`, included by
   steps.c after common.h. */

/* One row's gates, c and h (before the carry) from its pre (4H): writes g4 (4H), t (tanh(c')), c, h (H each). */
static void FN(lstm_row)(int H, const real *RESTRICT p, const real *RESTRICT cp, real *RESTRICT g4,
                         real *RESTRICT t, real *RESTRICT c, real *RESTRICT h) {
    for (int j = 0; j < H; j++) {
        real i = FN(sigmoid)(p[j]), f = FN(sigmoid)(p[H + j]), g = FN(tanh)(p[2 * H + j]);
        real o = FN(sigmoid)(p[3 * H + j]);
        g4[j] = i; g4[H + j] = f; g4[2 * H + j] = g; g4[3 * H + j] = o;
        real cj = f * cp[j] + i * g, tj = FN(tanh_exact)(cj);
        c[j] = cj; t[j] = tj; h[j] = o * tj;
    }
}

/* Forward.  pre (B, 4H): gi + h W_hh^T.  Writes act (B, 4H): sigmoid i f o and tanh g; tc (B, H): tanh(c');
   c_out, h_out (B, H): the new state after the carry; h_in (B, H), unless NULL: h_out * h_mask, the next step's
   product input (recurrent dropout). lstm_forward_rows: rows b0 .. b1 of it, by the calling thread. */
static void FN(lstm_forward_rows)(int b0, int b1, int H, const real *RESTRICT pre, const real *RESTRICT c_prev,
                                  const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj,
                                  const real *a_c, long ac_sb, long ac_sj, const real *RESTRICT h_mask,
                                  real *RESTRICT act, real *RESTRICT tc, real *RESTRICT c_out, real *RESTRICT h_out,
                                  real *RESTRICT h_in) {
    for (int b = b0; b < b1; b++) {
        const real *cp = c_prev + (long)b * H, *hp = h_prev + (long)b * H;
        real *c = c_out + (long)b * H, *h = h_out + (long)b * H;
        FN(lstm_row)(H, pre + (long)b * 4 * H, cp, act + (long)b * 4 * H, tc + (long)b * H, c, h);
        FN(finish_row)(H, h, c, hp, cp, a_h ? a_h + b * ah_sb : 0, ah_sj, a_c ? a_c + b * ac_sb : 0, ac_sj,
                       h_in ? h_mask + (long)b * H : 0, h_in ? h_in + (long)b * H : 0);
    }
}

void FN(lstm_forward_step)(int B, int H, const real *RESTRICT pre, const real *RESTRICT c_prev,
                           const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj, const real *a_c,
                           long ac_sb, long ac_sj, const real *RESTRICT h_mask, real *RESTRICT act,
                           real *RESTRICT tc, real *RESTRICT c_out, real *RESTRICT h_out, real *RESTRICT h_in) {
    int n = threads_for(B, H);
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_forward_rows)(CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), H, pre, c_prev, h_prev, a_h, ah_sb,
                              ah_sj, a_c, ac_sb, ac_sj, h_mask, act, tc, c_out, h_out, h_in);
}

/* One row's gates' gradient d_pre (4H) from what forward wrote (g4, t), the previous c (cp), h's gradient gh and
   the gradient dcn reaching c' other than through tanh(c') (layer norm's share), or NULL: h's part through
   tanh(c') directly. gc: in, c's own gradient; out, the previous c's. The sum goes into gc first, in a loop of
   its own: GCC left a single loop that tested dcn, or read it beside gc, scalar. */
static void FN(lstm_row_back)(int H, const real *RESTRICT g4, const real *RESTRICT t, const real *RESTRICT cp,
                              const real *RESTRICT gh, real *RESTRICT gc, const real *RESTRICT dcn,
                              real *RESTRICT dp) {
    if (dcn)
        for (int j = 0; j < H; j++) gc[j] += dcn[j];
    else
        for (int j = 0; j < H; j++) gc[j] += gh[j] * g4[3 * H + j] * (1 - t[j] * t[j]);
    for (int j = 0; j < H; j++) {
        real i = g4[j], f = g4[H + j], g = g4[2 * H + j], o = g4[3 * H + j], dcj = gc[j];
        dp[j] = dcj * g * i * (1 - i);
        dp[H + j] = dcj * cp[j] * f * (1 - f);
        dp[2 * H + j] = dcj * i * (1 - g * g);
        dp[3 * H + j] = gh[j] * t[j] * o * (1 - o);
        gc[j] = dcj * f;
    }
}

/* Backward of one step, from what forward wrote (act, tc) and the cell state before the step (c_prev).
   d_out (B, H): the gradient of this step's output.  dh (B, H) in: the gradient of the new h from later steps;
   out: the part that goes straight to the previous h through the carry (meaningful only with a_h).
   dc (B, H) in: the gradient of the new c; out: the previous c's.  Writes d_pre (B, 4H), the gates' gradient
   before their activations: what W_hh, the biases and gi receive.  keep_h, keep_c (B, H): scratch.
   lstm_backward_rows: rows b0 .. b1 of it, by the calling thread. */
static void FN(lstm_backward_rows)(int b0, int b1, int H, const real *RESTRICT act, const real *RESTRICT tc,
                                   const real *RESTRICT c_prev, const real *a_h, long ah_sb, long ah_sj,
                                   const real *a_c, long ac_sb, long ac_sj, const real *RESTRICT d_out,
                                   real *RESTRICT dh, real *RESTRICT dc, real *RESTRICT d_pre,
                                   real *RESTRICT keep_h, real *RESTRICT keep_c) {
    for (int b = b0; b < b1; b++) {
        real *gh = dh + (long)b * H, *gc = dc + (long)b * H;
        real *kh = keep_h + (long)b * H, *kc = keep_c + (long)b * H;
        FN(start_row_back)(H, gh, gc, d_out + (long)b * H, kh, kc, a_h ? a_h + b * ah_sb : 0, ah_sj,
                           a_c ? a_c + b * ac_sb : 0, ac_sj);
        FN(lstm_row_back)(H, act + (long)b * 4 * H, tc + (long)b * H, c_prev + (long)b * H, gh, gc, 0,
                          d_pre + (long)b * 4 * H);
        FN(end_row_back)(H, gh, gc, kh, kc, a_h != 0, a_c != 0);
    }
}

void FN(lstm_backward_step)(int B, int H, const real *RESTRICT act, const real *RESTRICT tc,
                            const real *RESTRICT c_prev, const real *a_h, long ah_sb, long ah_sj, const real *a_c,
                            long ac_sb, long ac_sj, const real *RESTRICT d_out, real *RESTRICT dh,
                            real *RESTRICT dc, real *RESTRICT d_pre, real *RESTRICT keep_h,
                            real *RESTRICT keep_c) {
    int n = threads_for(B, H);
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_backward_rows)(CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), H, act, tc, c_prev, a_h, ah_sb,
                               ah_sj, a_c, ac_sb, ac_sj, d_out, dh, dc, d_pre, keep_h, keep_c);
}

/* One row of lstm_ln_forward_step (its arguments, offset to the row; mx, rx, rz: the row's 4, rc: its 1). */
static void FN(lstm_ln_row)(int H, const real *RESTRICT zb, const real *RESTRICT xb, const real *RESTRICT g_ih,
                            const real *RESTRICT bias, const real *RESTRICT g_hh, const real *RESTRICT gain_c,
                            const real *RESTRICT shift_c, real eps, const real *RESTRICT cp, real *RESTRICT g4,
                            real *RESTRICT mx, real *RESTRICT rx, real *RESTRICT znb, real *RESTRICT rz,
                            real *RESTRICT t, real *RESTRICT cnb, real *RESTRICT rc, real *RESTRICT c,
                            real *RESTRICT h) {
    for (int k = 0; k < 4; k++) {  /* LN(xw) into g4: backward recomputes it from xw and its statistics */
        rx[k] = FN(moments)(H, xb + k * H, eps, mx + k);
        FN(standardise)(H, xb + k * H, g4 + k * H, mx[k], rx[k]);
        rz[k] = FN(normalise)(H, zb + k * H, znb + k * H, eps);
    }
    for (int j = 0; j < 4 * H; j++) g4[j] = g4[j] * g_ih[j] + znb[j] * g_hh[j];  /* pre, activated below */
    if (bias)
        for (int j = 0; j < 4 * H; j++) g4[j] += bias[j];
    for (int j = 0; j < H; j++) {
        real i = FN(sigmoid)(g4[j]), f = FN(sigmoid)(g4[H + j]), g = FN(tanh)(g4[2 * H + j]);
        real o = FN(sigmoid)(g4[3 * H + j]);
        g4[j] = i; g4[H + j] = f; g4[2 * H + j] = g; g4[3 * H + j] = o;
        c[j] = f * cp[j] + i * g;
    }
    *rc = FN(normalise)(H, c, cnb, eps);
    for (int j = 0; j < H; j++) {
        real tj = FN(tanh_exact)(cnb[j] * gain_c[j] + shift_c[j]);
        t[j] = tj; h[j] = g4[3 * H + j] * tj;
    }
}

/* Forward of a layer-normalised LSTM step: pre = LN(xw) g_ih + bias + LN(z) g_hh, each LN per gate block, from
   xw = x W_ih^T (B, 4H) of this step and z = h W_hh^T (B, 4H) as the product left it (bias: b_ih + b_hh, or
   NULL); h' = o tanh(LN(c') gain_c + shift_c).  As lstm_forward_step, and it also writes what backward reads:
   mx, rx (B, 4), the mean and 1 / std of each gate block of xw (backward normalises xw again from them, rather
   than forward keeping LN(xw), as large as xw, which backward has anyway); zn (B, 4H) and rz (B, 4), each gate
   block of z normalised and its 1 / std; cn (B, H) and rc (B), the same of c'. lstm_ln_forward_rows:
   rows b0 .. b1 of it, by the calling thread. */
static void FN(lstm_ln_forward_rows)(int b0, int b1, int H, const real *RESTRICT z, const real *RESTRICT xw,
                                     const real *RESTRICT g_ih, const real *RESTRICT bias,
                                     const real *RESTRICT g_hh, const real *RESTRICT gain_c,
                                     const real *RESTRICT shift_c, real eps, const real *RESTRICT c_prev,
                                     const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj,
                                     const real *a_c, long ac_sb, long ac_sj, const real *RESTRICT h_mask,
                                     real *RESTRICT act, real *RESTRICT mx, real *RESTRICT rx, real *RESTRICT zn,
                                     real *RESTRICT rz, real *RESTRICT tc, real *RESTRICT cn, real *RESTRICT rc,
                                     real *RESTRICT c_out, real *RESTRICT h_out, real *RESTRICT h_in) {
    for (int b = b0; b < b1; b++) {
        long r4 = (long)b * 4 * H, r1 = (long)b * H;
        real *c = c_out + r1, *h = h_out + r1;
        FN(lstm_ln_row)(H, z + r4, xw + r4, g_ih, bias, g_hh, gain_c, shift_c, eps, c_prev + r1, act + r4, mx + b * 4,
                        rx + b * 4, zn + r4, rz + b * 4, tc + r1, cn + r1, rc + b, c, h);
        FN(finish_row)(H, h, c, h_prev + r1, c_prev + r1, a_h ? a_h + b * ah_sb : 0, ah_sj,
                       a_c ? a_c + b * ac_sb : 0, ac_sj, h_in ? h_mask + r1 : 0, h_in ? h_in + r1 : 0);
    }
}

void FN(lstm_ln_forward_step)(int B, int H, const real *RESTRICT z, const real *RESTRICT xw,
                              const real *RESTRICT g_ih, const real *RESTRICT bias, const real *RESTRICT g_hh,
                              const real *RESTRICT gain_c, const real *RESTRICT shift_c, real eps,
                              const real *RESTRICT c_prev, const real *RESTRICT h_prev, const real *a_h,
                              long ah_sb, long ah_sj, const real *a_c, long ac_sb, long ac_sj,
                              const real *RESTRICT h_mask, real *RESTRICT act, real *RESTRICT mx,
                              real *RESTRICT rx, real *RESTRICT zn, real *RESTRICT rz, real *RESTRICT tc,
                              real *RESTRICT cn, real *RESTRICT rc, real *RESTRICT c_out, real *RESTRICT h_out,
                              real *RESTRICT h_in) {
    int n = threads_for(B, H);
    #pragma omp parallel for schedule(static) num_threads(n)
    for (int c = 0; c < n; c++)
        FN(lstm_ln_forward_rows)(CHUNK_START(B, c, n), CHUNK_START(B, c + 1, n), H, z, xw, g_ih, bias, g_hh, gain_c,
                                 shift_c, eps, c_prev, h_prev, a_h, ah_sb, ah_sj, a_c, ac_sb, ac_sj, h_mask, act, mx,
                                 rx, zn, rz, tc, cn, rc, c_out, h_out, h_in);
}

/* One row of lstm_ln_backward_step after start_row_back (its arguments, offset to the row; xnb (4H): scratch, for
   LN(xw)); adds the row's share to the gradient sums d_g_ih, d_g_hh, d_bias (4H each; d_bias NULL without a bias),
   d_gain_c and d_shift_c (H). */
static void FN(lstm_ln_row_back)(int H, const real *RESTRICT g4, const real *RESTRICT t, const real *RESTRICT xb,
                                 const real *RESTRICT mx, const real *RESTRICT rx, real *RESTRICT xnb,
                                 const real *RESTRICT znb, const real *RESTRICT rz,
                                 const real *RESTRICT cnb,
                                 real rc, const real *RESTRICT g_ih, const real *RESTRICT g_hh,
                                 const real *RESTRICT gain_c, const real *RESTRICT cp, real *RESTRICT gh,
                                 real *RESTRICT gc, real *RESTRICT dp, real *RESTRICT dxb, real *RESTRICT dzb,
                                 real *RESTRICT d_g_ih, real *RESTRICT d_g_hh, real *RESTRICT d_bias,
                                 real *RESTRICT d_gain_c, real *RESTRICT d_shift_c, real *RESTRICT dcn) {
    for (int j = 0; j < H; j++) {  /* through tanh(LN(c') gain + shift) */
        real tj = t[j], dy = gh[j] * g4[3 * H + j] * (1 - tj * tj);
        d_gain_c[j] += dy * cnb[j];
        d_shift_c[j] += dy;
        dcn[j] = dy * gain_c[j];
    }
    FN(normalise_back)(H, dcn, cnb, rc);
    FN(lstm_row_back)(H, g4, t, cp, gh, gc, dcn, dp);
    for (int k = 0; k < 4; k++) FN(standardise)(H, xb + k * H, xnb + k * H, mx[k], rx[k]);
    for (int j = 0; j < 4 * H; j++) {  /* pre = xn g_ih + bias + zn g_hh */
        d_g_ih[j] += dp[j] * xnb[j];
        d_g_hh[j] += dp[j] * znb[j];
        dxb[j] = dp[j] * g_ih[j];
        dzb[j] = dp[j] * g_hh[j];
    }
    if (d_bias)
        for (int j = 0; j < 4 * H; j++) d_bias[j] += dp[j];
    for (int k = 0; k < 4; k++) {
        FN(normalise_back)(H, dxb + k * H, xnb + k * H, rx[k]);
        FN(normalise_back)(H, dzb + k * H, znb + k * H, rz[k]);
    }
}

/* The gradient sums of lstm_ln_backward_step, in their order: d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c. */
static void FN(lstm_ln_sums)(int H, real *d_g_ih, real *d_g_hh, real *d_bias, real *d_gain_c, real *d_shift_c,
                             long *sizes, real **sums) {
    long n[5] = {4L * H, 4L * H, d_bias ? 4L * H : 0, H, H};
    real *at[5] = {d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c};
    for (int i = 0; i < 5; i++) sizes[i] = n[i], sums[i] = at[i];
}

/* Rows b0 .. b1 of lstm_ln_backward_step (its arguments), by the calling thread, adding into the gradient sums
   s[5] (lstm_ln_sums's order). */
static void FN(lstm_ln_backward_rows)(int b0, int b1, int H, const real *RESTRICT act, const real *RESTRICT tc,
                                      const real *RESTRICT xw, const real *RESTRICT mx, const real *RESTRICT rx,
                                      const real *RESTRICT zn, const real *RESTRICT rz, const real *RESTRICT cn,
                                      const real *RESTRICT rc, const real *RESTRICT g_ih,
                                      const real *RESTRICT g_hh, const real *RESTRICT gain_c,
                                      const real *RESTRICT c_prev, const real *a_h, long ah_sb, long ah_sj,
                                      const real *a_c, long ac_sb, long ac_sj, const real *RESTRICT d_out,
                                      real *RESTRICT dh, real *RESTRICT dc, real *RESTRICT d_pre,
                                      real *RESTRICT d_xw, real *RESTRICT d_z, real *const *s,
                                      real *RESTRICT keep_h, real *RESTRICT keep_c, real *RESTRICT scratch,
                                      real *RESTRICT xn) {
    for (int b = b0; b < b1; b++) {
        long r4 = (long)b * 4 * H, r1 = (long)b * H;
        real *gh = dh + r1, *gc = dc + r1, *kh = keep_h + r1, *kc = keep_c + r1;
        FN(start_row_back)(H, gh, gc, d_out + r1, kh, kc, a_h ? a_h + b * ah_sb : 0, ah_sj,
                           a_c ? a_c + b * ac_sb : 0, ac_sj);
        FN(lstm_ln_row_back)(H, act + r4, tc + r1, xw + r4, mx + b * 4, rx + b * 4, xn + r4, zn + r4, rz + b * 4,
                             cn + r1, rc[b], g_ih, g_hh, gain_c, c_prev + r1, gh, gc, d_pre + r4, d_xw + r4,
                             d_z + r4, s[0], s[1], s[2], s[3], s[4], scratch + r1);
        FN(end_row_back)(H, gh, gc, kh, kc, a_h != 0, a_c != 0);
    }
}

/* lstm_ln_backward_step's rows in n chunks, each adding into its own gradient sums (common.h's partial sums:
   chunk 0 into the sums themselves, every other chunk into its own block of part). With `whole` (one step on its
   own) the chunks' sums are zeroed first and added into the sums after; without, they carry over from call to call:
   lstm_ln_backward_loop zeroes them once and adds them once, so that no step passes them between cores. */
static void FN(lstm_ln_backward_chunks)(int n, real *part, int whole, int B, int H, const real *RESTRICT act,
                                        const real *RESTRICT tc, const real *RESTRICT xw, const real *RESTRICT mx,
                                        const real *RESTRICT rx, const real *RESTRICT zn, const real *RESTRICT rz,
                                        const real *RESTRICT cn, const real *RESTRICT rc,
                                        const real *RESTRICT g_ih, const real *RESTRICT g_hh,
                                        const real *RESTRICT gain_c, const real *RESTRICT c_prev, const real *a_h,
                                        long ah_sb, long ah_sj, const real *a_c, long ac_sb, long ac_sj,
                                        const real *RESTRICT d_out, real *RESTRICT dh, real *RESTRICT dc,
                                        real *RESTRICT d_pre, real *RESTRICT d_xw, real *RESTRICT d_z,
                                        real *RESTRICT d_g_ih, real *RESTRICT d_g_hh, real *RESTRICT d_bias,
                                        real *RESTRICT d_gain_c, real *RESTRICT d_shift_c, real *RESTRICT keep_h,
                                        real *RESTRICT keep_c, real *RESTRICT scratch, real *RESTRICT xn) {
    long sizes[5];
    real *sums[5];
    FN(lstm_ln_sums)(H, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, sizes, sums);
    #pragma omp parallel num_threads(n)
    {
        note_team();
        #pragma omp for schedule(static)
        for (int chunk = 0; chunk < n; chunk++) {
            real *s[5];
            FN(sums_of)(chunk, part, 5, sizes, sums, s, whole);
            FN(lstm_ln_backward_rows)(CHUNK_START(B, chunk, n), CHUNK_START(B, chunk + 1, n), H, act, tc, xw, mx, rx,
                                      zn, rz, cn, rc, g_ih, g_hh, gain_c, c_prev, a_h, ah_sb, ah_sj, a_c, ac_sb,
                                      ac_sj, d_out, dh, dc, d_pre, d_xw, d_z, s, keep_h, keep_c, scratch, xn);
        }
        if (whole) FN(add_partial_sums)(n, part, 5, sizes, sums);
    }
}

/* Backward of lstm_ln_forward_step, as lstm_backward_step, from what forward saved and xw (B, 4H), the step's
   x W_ih^T as forward received it. Writes d_pre (B, 4H), the gradient of pre; d_xw (B, 4H), that of x W_ih^T
   (what W_ih and x receive); d_z (B, 4H), that of z = h W_hh^T (what W_hh and the previous h receive); adds this
   step's share to the gradients of the gains and shifts: d_g_ih, d_g_hh, d_bias (4H; d_bias NULL without a
   bias), d_gain_c and d_shift_c (H). keep_h, keep_c, scratch (B, H) and xn (B, 4H): scratch. */
void FN(lstm_ln_backward_step)(int B, int H, const real *RESTRICT act, const real *RESTRICT tc,
                               const real *RESTRICT xw, const real *RESTRICT mx, const real *RESTRICT rx,
                               const real *RESTRICT zn,
                               const real *RESTRICT rz, const real *RESTRICT cn, const real *RESTRICT rc,
                               const real *RESTRICT g_ih, const real *RESTRICT g_hh, const real *RESTRICT gain_c,
                               const real *RESTRICT c_prev, const real *a_h, long ah_sb, long ah_sj,
                               const real *a_c, long ac_sb, long ac_sj, const real *RESTRICT d_out,
                               real *RESTRICT dh, real *RESTRICT dc, real *RESTRICT d_pre, real *RESTRICT d_xw,
                               real *RESTRICT d_z, real *RESTRICT d_g_ih, real *RESTRICT d_g_hh,
                               real *RESTRICT d_bias, real *RESTRICT d_gain_c, real *RESTRICT d_shift_c,
                               real *RESTRICT keep_h, real *RESTRICT keep_c, real *RESTRICT scratch,
                               real *RESTRICT xn) {
    long sizes[5];
    real *sums[5];
    FN(lstm_ln_sums)(H, d_g_ih, d_g_hh, d_bias, d_gain_c, d_shift_c, sizes, sums);
    int n = threads_for(B, H);
    real *part = FN(partial_sums)(&n, 5, sizes);
    FN(lstm_ln_backward_chunks)(n, part, 1, B, H, act, tc, xw, mx, rx, zn, rz, cn, rc, g_ih, g_hh, gain_c, c_prev,
                                a_h, ah_sb, ah_sj, a_c, ac_sb, ac_sj, d_out, dh, dc, d_pre, d_xw, d_z, d_g_ih, d_g_hh,
                                d_bias, d_gain_c, d_shift_c, keep_h, keep_c, scratch, xn);
    free(part);
}
