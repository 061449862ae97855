/* The GRU step kernels (gates r z n, (B, 3H)): r, z = sigmoid(gi_rz + gh_rz), n = tanh(gi_n + r gh_n),
   h' = (1 - z) n + z h, with gh = h W_hh^T + b_hh, so that r scales b_hn too (torch.nn.GRU's cell). Over a type
   `real`, included by steps.c after common.h. */

/* Forward.  gi, gh (B, 3H) as above.  Writes rz (B, 2H): r and z; n (B, H); ghn (B, H): gh's n block, which
   r's gradient reads; h_out (B, H): the new h after the carry; h_in (B, H), unless NULL: h_out * h_mask, the next step's
   product input (recurrent dropout). */
void FN(gru_forward_step)(int B, int H, const real *RESTRICT gi, const real *RESTRICT gh,
                          const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj,
                          const real *RESTRICT h_mask, real *RESTRICT rz, real *RESTRICT n_out,
                          real *RESTRICT ghn, real *RESTRICT h_out, real *RESTRICT h_in) {
    for (int b = 0; b < B; b++) {
        const real *xi = gi + (long)b * 3 * H, *xh = gh + (long)b * 3 * H, *hp = h_prev + (long)b * H;
        real *g2 = rz + (long)b * 2 * H, *nb = n_out + (long)b * H, *gn = ghn + (long)b * H;
        real *h = h_out + (long)b * H;
        for (int j = 0; j < H; j++) {
            real r = FN(sigmoid)(xi[j] + xh[j]), z = FN(sigmoid)(xi[H + j] + xh[H + j]);
            real n = FN(tanh_exact)(xi[2 * H + j] + r * xh[2 * H + j]);
            g2[j] = r; g2[H + j] = z; nb[j] = n; gn[j] = xh[2 * H + j];
            h[j] = n + z * (hp[j] - n);
        }
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
                           const real *RESTRICT ghn, const real *RESTRICT h_prev, const real *a_h, long ah_sb, long ah_sj,
                           const real *RESTRICT d_out, real *RESTRICT dh, real *RESTRICT d_gi,
                           real *RESTRICT d_gh, real *RESTRICT keep_h) {
    for (int b = 0; b < B; b++) {
        const real *g2 = rz + (long)b * 2 * H, *nb = n_in + (long)b * H, *gn = ghn + (long)b * H;
        const real *hp = h_prev + (long)b * H;
        const real *go = d_out + (long)b * H;
        real *gh = dh + (long)b * H, *di = d_gi + (long)b * 3 * H, *dg = d_gh + (long)b * 3 * H;
        real *kh = keep_h + (long)b * H;
        FN(start_row_back)(H, gh, 0, go, kh, 0, a_h ? a_h + b * ah_sb : 0, ah_sj, 0, 0);
        for (int j = 0; j < H; j++) {
            real r = g2[j], z = g2[H + j], n = nb[j], g = gh[j];
            real dn = g * (1 - z) * (1 - n * n);          /* n's argument */
            real dr = dn * gn[j] * r * (1 - r);
            real dz = g * (hp[j] - n) * z * (1 - z);
            di[j] = dr; di[H + j] = dz; di[2 * H + j] = dn;
            dg[j] = dr; dg[H + j] = dz; dg[2 * H + j] = dn * r;
            gh[j] = g * z + (a_h ? kh[j] : 0);
        }
    }
}
