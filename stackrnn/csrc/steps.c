/* One LSTM or GRU step's pointwise work, forward and backward, in one pass over memory.

   Compiled on first use by stackrnn/kernels.py and called through ctypes by stackrnn/engine.py, which runs the
   matrix products around it. PyTorch runs the same math as about ten separate kernels per step, each a pass over
   the step's gates; on a CPU those passes, not the arithmetic, are most of a small layer's step time.

   The kernels are written once, in common.h, lstm.h, gru.h, gemm.h and loops.h (and, for a whole weight,
   drop.h), over a type `real`, and built here twice: for float32 (the engine's fast path, exported as
   *_f32) and for float64 (*_f64: the same code, so that gradcheck in float64 checks the backward formulas that
   float32 training runs).

   A step's rows (the batch) are shared between OpenMP threads, as many as torch.get_num_threads() (which the
   engine passes in), fewer where a step is too small to pay for waking them. Built with gcc where torch brought
   its own libgomp.so.1 (Linux wheels), the library uses that runtime: the threads that ran the step's product
   then run its rows, already awake. Elsewhere it may get a runtime of its own (two LLVM runtimes in one process
   abort it), so kernels.py keeps an OpenMP build only after a trial run beside torch in a separate process.
   Built without OpenMP (a compiler without it), the pragmas are ignored and one thread runs every row.

   float's exp is our own (Cephes's polynomial on a 2^n range reduction, about 1 ulp) so that compilers vectorise
   the loops without -ffast-math, which would break NaN and infinity propagation. double uses libm's exp. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(_MSC_VER)
#define RESTRICT __restrict
#else
#define RESTRICT restrict
#endif

static inline float exp_f32(float x) {
    /* clamped so that 2^n below stays a float: from 88.38 up, n = 128 and the result is inf (exp overflows at
       88.72: sigmoid and tanh, all that use it, are then exact); written so that a NaN x stays NaN */
    x = x > 89.0f ? 89.0f : x;
    x = x < -87.3365478515625f ? -87.3365478515625f : x;
    float n = floorf(x * 1.44269504088896341f + 0.5f);    /* x = n ln2 + r, |r| <= ln2 / 2 */
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;  /* ln2 in two parts: r is exact */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    union { int32_t i; float f; } scale;
    scale.i = ((int32_t)n + 127) << 23;                   /* 2^n */
    return p * scale.f;
}

static inline double exp_f64(double x) { return exp(x); }

/* tanh to about 1 ulp, for tanh(c'): the odd Taylor series below 0.5 (its first dropped term is under 1e-7 of the
   value there), where 1 - 2 / (e^2x + 1) would lose relative precision to cancellation, and that above. */
static inline float tanh_exact_f32(float x) {
    float a = fabsf(x), x2 = x * x;
    float big = 1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f);
    float p = -1.45583438705e-3f;                   /* -929569 / 638512875 */
    p = p * x2 + 3.59212803657e-3f;                 /* 21844 / 6081075 */
    p = p * x2 - 8.86323552990e-3f;                 /* -1382 / 155925 */
    p = p * x2 + 2.18694885362e-2f;                 /* 62 / 2835 */
    p = p * x2 - 5.39682539683e-2f;                 /* -17 / 315 */
    p = p * x2 + 1.33333333333e-1f;                 /* 2 / 15 */
    p = p * x2 - 3.33333333333e-1f;                 /* -1 / 3 */
    float small = x + x * x2 * p;
    return a < 0.5f ? small : copysignf(big, x);   /* NaN: big, which is NaN */
}

static inline double tanh_exact_f64(double x) { return tanh(x); }

/* Units (B * H) per thread below which fewer threads share a step: waking one costs a few microseconds, about
   what a thread takes for this many units in the cheapest kernel (a plain LSTM's backward). */
#define MIN_UNITS_PER_THREAD 2048

/* The most threads a step may use: torch.get_num_threads(), which the engine passes before each pass
   (set_threads), so that the count follows torch.set_num_threads whichever OpenMP runtime this library got.
   Read and written atomically: Python threads may set it while another runs a step. */
static int max_threads = 1;
static int last_team = 0;  /* the team the last kernel with gradient sums ran on (kernel_team) */

#if defined(__GNUC__)
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#else
#define LOAD(x) (x)
#define STORE(x, v) ((x) = (v))
#endif

/* Sets the most threads a step may use (n >= 1) and returns it; 0 built without OpenMP. */
int set_threads(int n) {
#ifdef _OPENMP
    if (n >= 1) STORE(max_threads, n);
    return LOAD(max_threads);
#else
    (void)n;
    return 0;
#endif
}

/* How many threads the last kernel with gradient sums (a layer norm's backward) ran on: for tests. */
int kernel_team(void) { return LOAD(last_team); }

/* Inside a parallel region: records the team's size (kernel_team). */
static void note_team(void) {
#ifdef _OPENMP
    if (omp_get_thread_num() == 0) STORE(last_team, omp_get_num_threads());
#else
    STORE(last_team, 1);
#endif
}

/* The values in `count` gradient sums of sizes[i] values each (common.h's partial sums). */
static long sum_of_sizes(int count, const long *sizes) {
    long total = 0;
    for (int i = 0; i < count; i++) total += sizes[i];
    return total;
}

/* How many threads share a step of B rows of H units. */
static int threads_for(int B, int H) {
    long most = (long)B * H / MIN_UNITS_PER_THREAD;
    int n = LOAD(max_threads);
    if (n > B) n = B;
    if (n > most) n = (int)most;
    return n < 1 ? 1 : n;
}

/* The first row of chunk c of B rows cut into n: chunk c is rows CHUNK_START(B, c, n) .. CHUNK_START(B, c + 1, n) */
#define CHUNK_START(B, c, n) ((int)((long)(B) * (c) / (n)))

/* Kernels over a whole weight (drop.h, gemm.h's packing) share it between threads in blocks of this many values (a
   multiple of 32), at least one block per thread: below that, waking a thread costs more than its share. */
#define WEIGHT_BLOCK ((int64_t)65536)

static int threads_for_values(int64_t n) {
    int64_t most = n / WEIGHT_BLOCK;
    int t = LOAD(max_threads);
    if (t > most) t = (int)most;
    return t < 1 ? 1 : t;
}

/* gemm.h's register block for the target: MR rows by NRV vectors of GEMM_VBYTES bytes, the MR x NRV sums, NRV
   vectors of b and a broadcast value held in registers: 24 of AVX-512's 32 (and of NEON's 32), 12 of AVX2's 16. */
#if defined(__AVX512F__)
#define GEMM_VBYTES 64
#define GEMM_MR 8
#define GEMM_NRV 3
#elif defined(__AVX__)
#define GEMM_VBYTES 32
#define GEMM_MR 6
#define GEMM_NRV 2
#elif defined(__aarch64__)
#define GEMM_VBYTES 16
#define GEMM_MR 8
#define GEMM_NRV 3
#else  /* SSE2 and the like: 16 registers of 16 bytes */
#define GEMM_VBYTES 16
#define GEMM_MR 4
#define GEMM_NRV 3
#endif

/* How many chunks of rows a time loop (loops.h) gives its threads, each thread its own rows through every step:
   a row's recurrence never reads another row, so they meet only at the end, where step by step they met twice a
   step (after the product and after the step kernel) and a step's rows moved between cores' caches. 1 (the loop
   then runs step by step, sharing each step's product and kernel) unless every thread allowed gets a chunk, of
   at least one register tile of rows: fewer rows than GEMM_MR per product would waste the tile's multiply-adds,
   and an idle thread the work the step-by-step loop would give it. Exported for tests. */
int loop_chunks(int B, int H) {
    int n = threads_for(B, H);
    return n > 1 && n == LOAD(max_threads) && B / n >= GEMM_MR ? n : 1;
}

#define real float
#define REAL_BYTES 4
#define FN(name) name##_f32
#include "common.h"
#include "lstm.h"
#include "gru.h"
#include "gemm.h"
#include "loops.h"
#include "drop.h"
#undef real
#undef REAL_BYTES
#undef FN

#define real double
#define REAL_BYTES 8
#define FN(name) name##_f64
#include "common.h"
#include "lstm.h"
#include "gru.h"
#include "gemm.h"
#include "loops.h"
#include "drop.h"
#undef real
#undef REAL_BYTES
#undef FN
