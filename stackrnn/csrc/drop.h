/* DropConnect on a weight matrix (AWD-LSTM's weight drop on W_hh), forward and backward, in one pass each.

   Included by steps.c once per type. regularizers.py draws the random words with torch (so a seeded generator
   gives the same mask whichever path runs) and decides, as its `_below` does, how many bits make one element's
   draw; here each element reads its draw straight from the words, so the mask is never built as a tensor:

     bits 1:  kept where bit (i mod 16) of the words' uint16 number i / 16 is set (probability 1/2), read here as
              bit (i mod 32) of uint32 number i / 32, the same bit on a little-endian machine (the only kind
              regularizers.py calls this on);
     bits 8:  kept where the words' uint8 number i is below `threshold`;
     bits 16: kept where the words' int16 number i is below `threshold` (threshold already offset by -32768).

   PyTorch ran the same thing as six passes over W_hh (unpack the bits, compare, cast, scale, multiply, and the
   backward's multiply) with a 4-byte mask saved for the backward: at hidden 1024 that was about 10 ms a layer
   per forward pass on two cores. This reads W_hh (or its gradient) once and writes the result once.

   out = in * (keep ? scale : 0), for n values; in and out may be the same array (no restrict on them); in NULL
   writes the mask's values themselves, keep ? scale : 0 (zoneout's keep factors, with scale 1: regularizers.py's
   zoneout_factors). Shared between up to set_threads() threads in blocks of WEIGHT_BLOCK values (steps.c), a
   multiple of 32 so that bits 1 never splits a word. */

#define IN(i) (in ? in[i] : (real)1)  /* loop-invariant: GCC makes a loop of each case */

void FN(drop_connect)(int64_t n, int bits, int threshold, const void *words, real scale, const real *in, real *out) {
    int64_t blocks = (n + WEIGHT_BLOCK - 1) / WEIGHT_BLOCK;
    #pragma omp parallel for schedule(static) num_threads(threads_for_values(n))
    for (int64_t b = 0; b < blocks; b++) {
        int64_t start = b * WEIGHT_BLOCK, end = start + WEIGHT_BLOCK < n ? start + WEIGHT_BLOCK : n;
        /* out = in * m with m = scale or 0, as PyTorch's weight * mask computes it (so -0.0 and NaN alike), and
           as a product rather than a choice: GCC vectorises the product, and left the choice 6x slower */
        if (bits == 1) {
            const uint32_t *w = (const uint32_t *)words;  /* uint16 number k is bits 16k.. on little-endian */
            int64_t i = start;
            for (; i + 32 <= end; i += 32) {
                uint32_t word = w[i >> 5];
                for (int j = 0; j < 32; j++) out[i + j] = IN(i + j) * ((real)((word >> j) & 1u) * scale);
            }
            for (; i < end; i++) out[i] = IN(i) * ((real)((w[i >> 5] >> (i & 31)) & 1u) * scale);
        } else if (bits == 8) {
            const uint8_t *u = (const uint8_t *)words;
            for (int64_t i = start; i < end; i++) out[i] = IN(i) * ((real)(u[i] < threshold) * scale);
        } else {
            const int16_t *u = (const int16_t *)words;
            for (int64_t i = start; i < end; i++) out[i] = IN(i) * ((real)(u[i] < threshold) * scale);
        }
    }
}

#undef IN
