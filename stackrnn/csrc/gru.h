/* The GRU step kernels (gates r z n, (B, 3H)): r, z = sigmoid(gi_rz + gh_rz), n = tanh(gi_n + r gh_n),
   h' = (1 - z) n + z h, with gh = h W_hh^T + b_hh (or LN(h W_hh^T) g_hh + b_hh with layer norm), so that r
   scales b_hn too (torch.nn.GRU's cell). Over a type `real`, included by steps.c after common.h. */

/* One row's gates and new h (before the carry), from its gi and gh (3H each): writes r z (2H), n, gh's n block
   (which r's gradient reads) and h (H each). */
static void FN(gru_row)(int H, const real *RESTRICT xi, const real *RESTRICT xh, const real *RESTRICT hp,
                        real *RESTRICT g2, real *RESTRICT nb, real *RESTRICT gn, real *RESTRICT h) {
    for (int j = 0; j < H; j++) {
        real r = FN(sigmoid)(xi[j] + xh[j]), z = FN(sigmoid)(xi[H + j] + xh[H + j]);
        real n = FN(tanh_exact)(xi[2 * H + j] + r * xh[2 * H + j]);
        g2[j] = r; g2[H + j] = z; nb[j] = n; gn[j] = xh[2 * H + j];
        h[j] = n + z * (hp[j] - n);
    }
}

/* One row's backward, after start_row_back: from the new h's gradient gh (H), writes di and dg (3H), the
   gradients of gi and gh, and leaves in gh the part that goes straight to the previous h (through z, plus the
   carry's share kh when carry_h). */
static void FN(gru_row_back)(int H, const real *RESTRICT g2, const real *RESTRICT nb, const real *RESTRICT gn,
                             const real *RESTRICT hp, real *RESTRICT gh, const real *RESTRICT kh, int carry_h,
                             real *RESTRICT di, real *RESTRICT dg) {
    for (int j = 0; j < H; j++) {
        real r = g2[j], z = g2[H + j], n = nb[j], g = gh[j];
        real dn = g * (1 - z) * (1 - n * n);  /* n's argument */
        real dr = dn * gn[j] * r * (1 - r);
        real dz = g * (hp[j] - n) * z * (1 - z);
        di[j] = dr; di[H + j] = dz; di[2 * H + j] = dn;
        dg[j] = dr; dg[H + j] = dz; dg[2 * H + j] = dn * r;
        gh[j] = g * z + (carry_h ? kh[j] : 0);
    }
}

/* Forward.  gi, gh (B, 3H) as above.  Writes rz (B, 2H): r and z; n (B, H); ghn (B, H): gh's n block; h_out
   (B, H): the new h after the carry; h_in (B, H), unless NULL: h_out * h_mask, the next step's product input
   (recurrent dropout). */
void FN(gru_forward_step)(int B, int H, const real *RESTRICT gi, const real *RESTRICT gh,
                          const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj,
                          const real *RESTRICT h_mask, real *RESTRICT rz, real *RESTRICT n_out,
                          real *RESTRICT ghn, real *RESTRICT h_out, real *RESTRICT h_in) {
    #pragma omp parallel for schedule(static) num_threads(threads_for(B, H))
    for (int b = 0; b < B; b++) {
        const real *hp = h_prev + (long)b * H;
        real *h = h_out + (long)b * H;
        FN(gru_row)(H, gi + (long)b * 3 * H, gh + (long)b * 3 * H, hp, rz + (long)b * 2 * H, n_out + (long)b * H,
                    ghn + (long)b * H, h);
        FN(finish_row)(H, h, 0, hp, 0, a_h ? a_h + b * ah_sb : 0, ah_sj, 0, 0, h_in ? h_mask + (long)b * H : 0,
                       h_in ? h_in + (long)b * H : 0);
    }
}

/* One row's layer norm of z (3H): writes zn (3H) and rzs (3), and overwrites z with LN(z) g_hh + b_hh. */
static void FN(gru_ln_row)(int H, real *RESTRICT zb, real *RESTRICT znb, real *RESTRICT rzs,
                           const real *RESTRICT g_hh, const real *RESTRICT b_hh, real eps) {
    for (int k = 0; k < 3; k++) rzs[k] = FN(normalise)(H, zb + k * H, znb + k * H, eps);
    for (int j = 0; j < 3 * H; j++) zb[j] = znb[j] * g_hh[j] + (b_hh ? b_hh[j] : 0);
}

/* Forward with layer norm: z (B, 3H) is h W_hh^T as the product left it, and is overwritten with gh =
   LN(z) g_hh + b_hh (b_hh NULL without a bias). Also writes what backward reads: zn (B, 3H) and rzs (B, 3), each
   gate block of z normalised and its 1 / std. */
void FN(gru_ln_forward_step)(int B, int H, const real *RESTRICT gi, real *RESTRICT z, const real *RESTRICT g_hh,
                             const real *RESTRICT b_hh, real eps, const real *RESTRICT h_prev, const real *a_h,
                             long ah_sb, long ah_sj, const real *RESTRICT h_mask, real *RESTRICT rz,
                             real *RESTRICT n_out, real *RESTRICT ghn, real *RESTRICT zn, real *RESTRICT rzs,
                             real *RESTRICT h_out, real *RESTRICT h_in) {
    #pragma omp parallel for schedule(static) num_threads(threads_for(B, H))
    for (int b = 0; b < B; b++) {
        real *zb = z + (long)b * 3 * H, *h = h_out + (long)b * H;
        const real *hp = h_prev + (long)b * H;
        FN(gru_ln_row)(H, zb, zn + (long)b * 3 * H, rzs + b * 3, g_hh, b_hh, eps);
        FN(gru_row)(H, gi + (long)b * 3 * H, zb, hp, rz + (long)b * 2 * H, n_out + (long)b * H, ghn + (long)b * H,
                    h);
        FN(finish_row)(H, h, 0, hp, 0, a_h ? a_h + b * ah_sb : 0, ah_sj, 0, 0, h_in ? h_mask + (long)b * H : 0,
                       h_in ? h_in + (long)b * H : 0);
    }
}

/* Backward of one step, from what forward wrote (rz, n, ghn) and the h before the step (h_prev, after its carry).
   d_out (B, H): the gradient of this step's output.  dh (B, H) in: the gradient of the new h from later steps;
   out: the part that goes straight to the previous h, through z and through the carry (the product's part is
   added by the caller).  Writes d_gi (B, 3H), what gi receives, and d_gh (B, 3H), what h W_hh^T + b_hh
   receives.  keep_h (B, H): scratch. */
void FN(gru_backward_step)(int B, int H, const real *RESTRICT rz, const real *RESTRICT n_in,
                           const real *RESTRICT ghn, const real *RESTRICT h_prev, const real *a_h, long ah_sb,
                           long ah_sj, const real *RESTRICT d_out, real *RESTRICT dh, real *RESTRICT d_gi,
                           real *RESTRICT d_gh, real *RESTRICT keep_h) {
    #pragma omp parallel for schedule(static) num_threads(threads_for(B, H))
    for (int b = 0; b < B; b++) {
        real *gh = dh + (long)b * H, *kh = keep_h + (long)b * H;
        FN(start_row_back)(H, gh, 0, d_out + (long)b * H, kh, 0, a_h ? a_h + b * ah_sb : 0, ah_sj, 0, 0);
        FN(gru_row_back)(H, rz + (long)b * 2 * H, n_in + (long)b * H, ghn + (long)b * H, h_prev + (long)b * H, gh,
                         kh, a_h != 0, d_gi + (long)b * 3 * H, d_gh + (long)b * 3 * H);
    }
}

/* One row's gradient through gh = LN(z) g_hh + b_hh: from dg (3H), writes dzb (3H) and adds to d_g_hh (3H). */
static void FN(gru_ln_row_back)(int H, const real *RESTRICT dg, const real *RESTRICT znb, const real *RESTRICT rzs,
                                const real *RESTRICT g_hh, real *RESTRICT dzb, real *RESTRICT d_g_hh) {
    for (int j = 0; j < 3 * H; j++) {
        d_g_hh[j] += dg[j] * znb[j];
        dzb[j] = dg[j] * g_hh[j];
    }
    for (int k = 0; k < 3; k++) FN(normalise_back)(H, dzb + k * H, znb + k * H, rzs[k]);
}

/* Backward with layer norm: as gru_backward_step, and also writes d_z (B, 3H), the gradient of h W_hh^T (what
   W_hh and the previous h receive), and adds this step's share to d_g_hh (3H). */
void FN(gru_ln_backward_step)(int B, int H, const real *RESTRICT rz, const real *RESTRICT n_in,
                              const real *RESTRICT ghn, const real *RESTRICT zn, const real *RESTRICT rzs,
                              const real *RESTRICT g_hh, const real *RESTRICT h_prev, const real *a_h, long ah_sb,
                              long ah_sj, const real *RESTRICT d_out, real *RESTRICT dh, real *RESTRICT d_gi,
                              real *RESTRICT d_gh, real *RESTRICT d_z, real *RESTRICT d_g_hh,
                              real *RESTRICT keep_h) {
    long size = 3L * H;  /* d_g_hh: each chunk of rows adds into its own, as lstm_ln_backward_step's sums */
    real *sums[1] = {d_g_hh};
    int n = threads_for(B, H);
    real *part = FN(partial_sums)(&n, 1, &size);
    #pragma omp parallel num_threads(n)
    {
        note_team();
        #pragma omp for schedule(static)
        for (int chunk = 0; chunk < n; chunk++) {
            real *s;
            FN(sums_of)(chunk, part, 1, &size, sums, &s, 1);
            for (int b = (int)((long)B * chunk / n); b < (int)((long)B * (chunk + 1) / n); b++) {
                real *gh = dh + (long)b * H, *kh = keep_h + (long)b * H, *dg = d_gh + (long)b * 3 * H;
                FN(start_row_back)(H, gh, 0, d_out + (long)b * H, kh, 0, a_h ? a_h + b * ah_sb : 0, ah_sj, 0, 0);
                FN(gru_row_back)(H, rz + (long)b * 2 * H, n_in + (long)b * H, ghn + (long)b * H,
                                 h_prev + (long)b * H, gh, kh, a_h != 0, d_gi + (long)b * 3 * H, dg);
                FN(gru_ln_row_back)(H, dg, zn + (long)b * 3 * H, rzs + b * 3, g_hh, d_z + (long)b * 3 * H, s);
            }
        }
        FN(add_partial_sums)(n, part, 1, &size, sums);
    }
    free(part);
}
