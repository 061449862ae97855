/* The engine's matrix products: y (M, N) = add + a (M, K) b (K, N), in C with a register-blocked kernel.

   Included by steps.c once per type, after the GEMM_* register-block sizes it picks for the target. The BLAS
   that torch calls for a float32 product is MKL's, which on AMD processors runs its AVX2 code, not AVX-512:
   on this project's Zen 5 build machine (two cores) torch.mm ran the recurrence's 32-row products at 90-115
   GFLOPS and a layer's input projection and weight gradients (over all T * B rows) at 165-177, where oneDNN
   (torch.nn.LSTM's fused kernel) ran the same products at 300-400. This kernel ran them at 340-420 there.

   The method is the usual one (GotoBLAS, BLIS): b is packed once into panels of NR columns (GEMM_NRV vectors),
   each panel (K, NR) row-major and zero-padded past N; one tile of MR x NR outputs is kept in registers over all
   of K, each step of k one load of the panel's NR values and MR multiply-adds by a broadcast value of a. a is read
   where it is when its rows run along memory, and otherwise packed first, a block of rows at a time, into tiles
   of MR rows stored (K, MR). The vectors are GCC's vector extensions (GCC and clang), so the same code is AVX-512,
   AVX2, NEON or SSE2 for the machine it is built for (-march=native), with the register block chosen in steps.c
   to fit its registers.

   Every output is one tile's sum over all of K in order, whatever the threads: the result does not depend on
   how many threads share a product, nor on the split. Threads share a product's (panel, tile) pairs, panel by
   panel, so that each thread reads only its panels of b, which the recurrence's products read once a step.

   Strides are in values: a[m * sam + k * sak], b[k * sbk + n * sbn] (any, 0 included); y[m * ldy + n * syn], and
   add (NULL, or laid out as y but with rows ld_add apart, 0 for one row for all; it may be y itself). A column
   stride syn other than 1 writes y transposed (ldy 1): a weight's gradient dY^T X (G, D) is computed as
   (X^T dY)^T, so that the long side G is the product's N, which the panels cut into fewer partial ones than D.
   The caller allocates the packed forms (FN(packed_size), FN(tile_space)): matmul.py as torch tensors. */

typedef real FN(vec) __attribute__((vector_size(GEMM_VBYTES)));
typedef real FN(vec_u) __attribute__((vector_size(GEMM_VBYTES), aligned(sizeof(real))));  /* unaligned access */

#define VL ((int)(GEMM_VBYTES / sizeof(real)))  /* values per vector */
#define NR (GEMM_NRV * VL)                      /* columns per panel */
#define MR GEMM_MR                              /* rows per tile */

static int64_t FN(panels)(int64_t n) { return (n + NR - 1) / NR; }

/* Values in b's packed form (FN(pack_b)); 0 for an empty product. */
int64_t FN(packed_size)(int64_t K, int64_t N) { return FN(panels)(N) * NR * K; }

/* Panel p of b (K, N) into packed[p K NR ..]: (K, NR) row-major, zero past N. */
static void FN(pack_panel)(int64_t p, int64_t K, int64_t N, const real *b, int64_t sbk, int64_t sbn,
                           real *RESTRICT packed) {
    real *out = packed + p * K * NR;
    int64_t n0 = p * NR, nc = N - n0 < NR ? N - n0 : NR;
    if (sbn == 1) {  /* rows of b: copy NR values at a time */
        for (int64_t k = 0; k < K; k++) {
            const real *row = b + k * sbk + n0;
            for (int64_t j = 0; j < nc; j++) out[k * NR + j] = row[j];
            for (int64_t j = nc; j < NR; j++) out[k * NR + j] = 0;
        }
    } else {  /* columns of b run along memory (b = w^T): read each column a block of k at a time */
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            int64_t kc = K - k0 < 16 ? K - k0 : 16;
            for (int64_t j = 0; j < NR; j++) {
                const real *col = b + (n0 + j) * sbn + k0 * sbk;
                for (int64_t k = 0; k < kc; k++) out[(k0 + k) * NR + j] = j < nc ? col[k * sbk] : 0;
            }
        }
    }
}

/* Packs b (K, N) for FN(gemm_packed) into packed (FN(packed_size) values), its panels shared between threads. */
void FN(pack_b)(int64_t K, int64_t N, const real *b, int64_t sbk, int64_t sbn, real *packed) {
    int64_t np = FN(panels)(N);
    int threads = threads_for_values(K * N);
    if (threads > np) threads = (int)np;
    #pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int64_t p = 0; p < np; p++) FN(pack_panel)(p, K, N, b, sbk, sbn, packed);
}

/* Tile t of a's rows m0 .. m0 + rows into packed tiles[t K MR ..]: (K, MR), zero past the rows. */
static void FN(pack_tile)(int64_t t, int64_t m0, int64_t rows, int64_t K, const real *a, int64_t sam, int64_t sak,
                          real *RESTRICT tiles) {
    real *out = tiles + t * K * MR;
    int64_t r0 = m0 + t * MR, mr = rows - t * MR < MR ? rows - t * MR : MR;
    if (sak == 1) {  /* rows of a along memory: a small transpose */
        for (int64_t m = 0; m < mr; m++) {
            const real *row = a + (r0 + m) * sam;
            for (int64_t k = 0; k < K; k++) out[k * MR + m] = row[k];
        }
    } else {
        for (int64_t k = 0; k < K; k++)
            for (int64_t m = 0; m < mr; m++) out[k * MR + m] = a[(r0 + m) * sam + k * sak];
    }
    for (int64_t m = mr; m < MR; m++)
        for (int64_t k = 0; k < K; k++) out[k * MR + m] = 0;
}

/* One tile: y[m, j] = add[m, j] + sum over k of rows[m][k step] panel[k, j], for the first mr rows and nc
   columns (the rest is padding: zero rows of a, the packing's zero columns of b). The MR x NR sums stay in
   registers. */
static void FN(kernel)(int64_t K, const real *const *rows, int64_t step, const real *RESTRICT panel, int mr,
                       int nc, const real *add, int64_t ld_add, real *y, int64_t ldy, int64_t syn) {
    const real *r[MR];
    for (int m = 0; m < MR; m++) r[m] = rows[m];
    FN(vec) sum[MR][GEMM_NRV];
    for (int m = 0; m < MR; m++)
        for (int v = 0; v < GEMM_NRV; v++) sum[m][v] = (FN(vec)){0};
    for (int64_t k = 0, at = 0; k < K; k++, at += step) {
        FN(vec) b[GEMM_NRV];
        for (int v = 0; v < GEMM_NRV; v++) b[v] = *(const FN(vec_u) *)(panel + k * NR + v * VL);
        for (int m = 0; m < MR; m++) {
            real a = r[m][at];
            for (int v = 0; v < GEMM_NRV; v++) sum[m][v] += a * b[v];
        }
    }
    for (int m = 0; m < mr; m++) {
        real *row = y + m * ldy;
        const real *from = add ? add + m * ld_add : 0;
        if (nc == NR && syn == 1) {
            for (int v = 0; v < GEMM_NRV; v++)
                *(FN(vec_u) *)(row + v * VL) = from ? *(const FN(vec_u) *)(from + v * VL) + sum[m][v] : sum[m][v];
        } else {  /* a partial panel, or y transposed: MR NR values against a tile's MR NR K multiply-adds */
            real part[NR];
            memcpy(part, sum[m], sizeof part);
            for (int j = 0; j < nc; j++) row[j * syn] = from ? from[j * syn] + part[j] : part[j];
        }
    }
}

/* One (panel p, tile) pair of a product: y's rows row .. row + mr, columns p NR .. (p + 1) NR, by FN(kernel), from
   a's rows where they are (tile NULL: a short last tile reads its last row again, and stores only its own) or from
   a packed tile. add and y as FN(gemm_packed) takes them. */
static void FN(pair)(int64_t K, int64_t N, int64_t p, int64_t row, int mr, const real *a, int64_t sam,
                     const real *tile, const real *packed, const real *add, int64_t ld_add, real *y, int64_t ldy,
                     int64_t syn) {
    int64_t n0 = p * NR;
    int nc = N - n0 < NR ? (int)(N - n0) : NR;
    const real *from[MR];
    for (int m = 0; m < MR; m++) from[m] = tile ? tile + m : a + (row + (m < mr ? m : mr - 1)) * sam;
    FN(kernel)(K, from, tile ? MR : 1, packed + p * K * NR, mr, nc, add ? add + row * ld_add + n0 * syn : 0, ld_add,
               y + row * ldy + n0 * syn, ldy, syn);
}

/* Rows of a packed per block: a block's tiles (this many rows of K values) stay in a core's L2 cache while every
   panel of b passes them. */
#define BLOCK_VALUES (1L << 17)

/* Threads for a product of M x N x K multiply-adds in (panel, tile) pairs: each at least MIN_PRODUCT_PER_THREAD
   of them (waking a thread costs a few microseconds). */
#define MIN_PRODUCT_PER_THREAD (1L << 18)

static int FN(gemm_threads)(int64_t M, int64_t N, int64_t K, int64_t pairs) {
    double by_work = (double)M * N * K / MIN_PRODUCT_PER_THREAD;
    int n = LOAD(max_threads);
    if (n > by_work) n = (int)by_work;
    if (n > pairs) n = (int)pairs;
    return n < 1 ? 1 : n;
}

static int64_t FN(block_rows)(int64_t M, int64_t K) {
    int64_t rows = K > 0 ? BLOCK_VALUES / K / MR * MR : M;
    if (rows < MR) rows = MR;
    return rows < M ? rows : (M + MR - 1) / MR * MR;
}

/* Values FN(gemm_packed) needs as room: a block's packed tiles where a's rows do not run along memory (sak != 1),
   else none. */
int64_t FN(tile_space)(int64_t M, int64_t K, int64_t sak) { return sak == 1 ? 0 : FN(block_rows)(M, K) * K; }

/* y (M, N) = add + a (M, K) b, b packed by FN(pack_b), with the strides above. tiles: room for
   FN(tile_space)(M, K, sak) values.

   Where a's rows run along memory (sak 1: the recurrence's products, a layer's input and its gradient) the kernel
   reads them where they are: the recurrence's products are too small to pay for packing them (at hidden 256, a
   product took 25% longer with it). Otherwise (a^T of a weight gradient, say) each block of rows is packed into
   tiles first, so that every step of k reads MR values side by side. */
void FN(gemm_packed)(int64_t M, int64_t N, int64_t K, const real *a, int64_t sam, int64_t sak,
                     const real *packed, const real *add, int64_t ld_add, real *y, int64_t ldy, int64_t syn,
                     real *RESTRICT tiles) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  /* an empty sum: y = add, or 0 */
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) y[m * ldy + j * syn] = add ? add[m * ld_add + j * syn] : 0;
        return;
    }
    int direct = sak == 1;
    int64_t block = FN(block_rows)(M, K), np = FN(panels)(N);
    int threads = FN(gemm_threads)(M < block ? M : block, N, K, np * (block / MR));
    #pragma omp parallel num_threads(threads) if (threads > 1)
    for (int64_t m0 = 0; m0 < M; m0 += block) {
        int64_t rows = M - m0 < block ? M - m0 : block, nt = (rows + MR - 1) / MR;
        if (!direct) {
            #pragma omp for schedule(static)
            for (int64_t t = 0; t < nt; t++) FN(pack_tile)(t, m0, rows, K, a, sam, sak, tiles);
            /* the loop's barrier: every tile is packed before any is read */
        }
        #pragma omp for schedule(static)
        for (int64_t pair = 0; pair < np * nt; pair++) {
            int64_t p = pair / nt, t = pair % nt;
            int mr = rows - t * MR < MR ? (int)(rows - t * MR) : MR;
            FN(pair)(K, N, p, m0 + t * MR, mr, a, sam, direct ? 0 : tiles + t * K * MR, packed, add, ld_add, y, ldy,
                     syn);
        }
        /* and this one's: the block's tiles are all read before the next block overwrites them */
    }
}

/* y (M, N) = add + a (M, K) b as FN(gemm_packed), for a's rows along memory (sak 1), by the calling thread alone:
   the product of one chunk of rows in loops.h's time loops, whose threads each run their own. The same sums in
   the same order as FN(gemm_packed): the same result. */
static void FN(gemm_rows)(int64_t M, int64_t N, int64_t K, const real *a, int64_t sam, const real *packed,
                          const real *add, int64_t ld_add, real *y, int64_t ldy) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        FN(gemm_packed)(M, N, K, a, sam, 1, packed, add, ld_add, y, ldy, 1, 0);  /* no threads for an empty sum */
        return;
    }
    int64_t np = FN(panels)(N);
    for (int64_t p = 0; p < np; p++)
        for (int64_t row = 0; row < M; row += MR)
            FN(pair)(K, N, p, row, M - row < MR ? (int)(M - row) : MR, a, sam, 0, packed, add, ld_add, y, ldy, 1);
}

#undef VL
#undef NR
#undef MR
#undef BLOCK_VALUES
#undef MIN_PRODUCT_PER_THREAD
