/* Eval-mode BatchNorm (+ ReLU) as one affine pass per plane, written straight into a slot of another tensor:
 * MTConv's local branch a_L = g(BN(z_L)) (Eq. 3) lands in its place in the concatenation of Eq. 2, so eval
 * mode needs neither a separate BN output nor torch.cat. scale = gamma / sqrt(var + eps) and
 * shift = beta - mean * scale come from the caller.
 *
 * z is contiguous (N, C, plane); out's plane p = (n, c) starts at out + n * osN + c * plane. The entry point
 * splits [p_begin, p_end) across `threads` OpenMP threads (parallel.h).
 */
#include <stdint.h>

#include "floatbits.h"
#include "parallel.h"

static void range(const float *z, float *out, const float *scale, const float *shift, int64_t C, int64_t plane,
                  int64_t osN, int64_t relu, int64_t p, int64_t p_end) {
    for (; p < p_end; ++p) {
        const int64_t c = p % C;
        const float a = scale[c], b = shift[c];
        const float *restrict src = z + p * plane;
        float *restrict dst = out + (p / C) * osN + c * plane;
        if (relu) {
            for (int64_t k = 0; k < plane; ++k) {
                const float y = src[k] * a + b;
                dst[k] = poison(y > 0.0f ? y : 0.0f, is_nan(y)); /* a NaN stays NaN, as in torch's ReLU */
            }
        } else {
            for (int64_t k = 0; k < plane; ++k) dst[k] = src[k] * a + b;
        }
    }
}

int affine_act_f32(const float *z, float *out, const float *scale, const float *shift, int64_t C, int64_t plane,
                   int64_t osN, int64_t relu, int64_t p_begin, int64_t p_end, int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(p_begin, p_end, (range(z, out, scale, shift, C, plane, osN, relu, b, e), 0));
    return failed;
}
