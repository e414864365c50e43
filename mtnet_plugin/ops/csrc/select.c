/* Temporal triplet cosine frame selection (Eq. 6-7 of Stergiou & Poppe, IJCNN 2021; spec #1-#5) in one pass:
 * the same indices as ops/frame_select.py's tensor version, which eager PyTorch runs as about twenty small
 * operators per call.
 *
 * Per sample n of x (N, C, T, P) (P = H' * W', contiguous): v_t = sum over P of x[n, :, t] (double sums),
 * c_t = <v_t, v_t+1> / (max(|v_t|, eps) * max(|v_t+1|, eps)), score of frame j + 1 = c_j + c_j+1 for
 * j < T - 2, all in double, rounded to a multiple of 2^-SCORE_BITS (rint: half to even, as torch.round) and
 * negated when `highest`; then the floor(T / 2) frames with the lowest scores, ties to the earlier frame, in
 * ascending order. T <= 2 keeps every frame. Samples are split over `threads` OpenMP threads.
 *
 * The eager, CUDA, traced and exported path (ops/frame_select.py) computes the same double scores and rounds
 * them the same way: summation orders differ between paths by ~1e-16, far below the rounding step (~1e-9), so
 * near-tied frames (low-motion clips) get the same rank on every path, and frames tied within the step go
 * to the earlier one everywhere (docs/design.md, "Frame selection: one answer on every path").
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "parallel.h"

#define COS_EPS 1e-6 /* spec #2 */
#define SCORE_BITS 30 /* ops/frame_select.py SCORE_BITS */

static int select_sample(const float *x, int64_t *idx, int64_t n, int64_t C, int64_t T, int64_t P, int64_t highest,
                         int64_t keep) {
    if (T <= 2) {
        for (int64_t t = 0; t < T; ++t) idx[n * keep + t] = t;
        return 0;
    }
    double *v = malloc(sizeof(double) * (C * T + T + T + T)); /* v (C, T), norms, cosines, scores */
    if (!v) return -1;
    double *norm = v + C * T, *cosv = norm + T, *score = cosv + T;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t t = 0; t < T; ++t) {
            const float *p = x + ((n * C + c) * T + t) * P;
            double acc = 0.0;
            for (int64_t k = 0; k < P; ++k) acc += p[k];
            v[c * T + t] = acc;
        }
    for (int64_t t = 0; t < T; ++t) {
        double acc = 0.0;
        for (int64_t c = 0; c < C; ++c) acc += v[c * T + t] * v[c * T + t];
        norm[t] = fmax(sqrt(acc), COS_EPS);
    }
    for (int64_t t = 0; t + 1 < T; ++t) {
        double dot = 0.0;
        for (int64_t c = 0; c < C; ++c) dot += v[c * T + t] * v[c * T + t + 1];
        cosv[t] = dot / (norm[t] * norm[t + 1]);
    }
    const int64_t m = T - 2; /* candidates: frames 1 .. T - 2 */
    for (int64_t j = 0; j < m; ++j) score[j] = (highest ? -1.0 : 1.0) * rint(ldexp(cosv[j] + cosv[j + 1], SCORE_BITS));
    /* Candidate j is kept when fewer than `keep` candidates come before it (lower score, or equal and earlier);
     * walking j upwards yields the kept frames in ascending order. m <= a few dozen: O(m^2) is nothing. */
    int64_t k = 0;
    for (int64_t j = 0; j < m && k < keep; ++j) {
        int64_t before = 0;
        for (int64_t i = 0; i < m; ++i) before += score[i] < score[j] || (score[i] == score[j] && i < j);
        if (before < keep) idx[n * keep + k++] = j + 1;
    }
    free(v);
    return 0;
}

static int select_range(const float *x, int64_t *idx, int64_t C, int64_t T, int64_t P, int64_t highest,
                        int64_t keep, int64_t b, int64_t e) {
    int failed = 0;
    for (int64_t n = b; n < e; ++n) failed |= select_sample(x, idx, n, C, T, P, highest, keep);
    return failed;
}

/* idx is (N, keep) with keep = floor(T / 2) (T when T <= 2). Returns 0, or -1 when memory ran out. */
int triplet_select_f32(const float *x, int64_t *idx, int64_t C, int64_t T, int64_t P, int64_t highest,
                       int64_t keep, int64_t n_begin, int64_t n_end, int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(n_begin, n_end, select_range(x, idx, C, T, P, highest, keep, b, e));
    return failed ? -1 : 0;
}
