/* A weight's transposed copy, for the engine's backward products: dz (B, 4H) W_hh needs W_hh^T row-major to be
   packed for oneDNN, once per backward pass.

   Included by steps.c once per type. PyTorch's strided copy (w.t().contiguous()) took 8 to 19 ms for a
   1024-unit layer's W_hh (16 MB) on two cores, part of what the engine lost to torch.nn at that size: it
   reads along one side and writes 4 KB apart along the other. Here a tile of TILE x TILE values is read row by
   row into a local buffer and written out row by row, so that both sides run along memory: 7 ms against 12 for
   PyTorch on the same two cores, 4.5 ms in a C harness.

   out (cols, rows) = in (rows, cols)^T, both row-major and contiguous; the tiles' rows are shared between up to
   set_threads() threads (threads_for_values in steps.c). */

#ifndef TILE
#define TILE 16
#endif

void FN(transpose)(int64_t rows, int64_t cols, const real *RESTRICT in, real *RESTRICT out) {
    int64_t tiles = (rows + TILE - 1) / TILE;
    #pragma omp parallel for schedule(static) num_threads(threads_for_values(rows * cols))
    for (int64_t t = 0; t < tiles; t++) {
        int64_t i0 = t * TILE, ni = rows - i0 < TILE ? rows - i0 : TILE;
        real buf[TILE][TILE];
        for (int64_t j0 = 0; j0 < cols; j0 += TILE) {
            int64_t nj = cols - j0 < TILE ? cols - j0 : TILE;
            if (ni == TILE && nj == TILE) {  /* whole tiles: fixed bounds, which the compiler unrolls */
                for (int i = 0; i < TILE; i++)
                    for (int j = 0; j < TILE; j++) buf[j][i] = in[(i0 + i) * cols + j0 + j];
                for (int j = 0; j < TILE; j++)
                    for (int i = 0; i < TILE; i++) out[(j0 + j) * rows + i0 + i] = buf[j][i];
            } else {
                for (int64_t i = 0; i < ni; i++)
                    for (int64_t j = 0; j < nj; j++) out[(j0 + j) * rows + i0 + i] = in[(i0 + i) * cols + j0 + j];
            }
        }
    }
}
