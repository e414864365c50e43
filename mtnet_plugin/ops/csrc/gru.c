/* The recurrence of one GRU layer (the recurrent unit of Squeeze and Recursion, Eq. 9-10 of Stergiou & Poppe,
 * IJCNN 2021; PyTorch's nn.GRU equations and gate order r, z, n), forward and backward, h_0 = 0:
 *
 *   r = sigmoid(gi_r + W_hr h + b_hr)        z = sigmoid(gi_z + W_hz h + b_hz)
 *   n = tanh(gi_n + r * (W_hn h + b_hn))     h' = (1 - z) * n + z * h
 *
 * gi (N, T, 3H) holds the input projections W_i x_t + b_i of every step, computed by the caller with one
 * matrix product; the caller also forms the weight gradients from dgi and dgh with matrix products. What is
 * left here is the sequential part, which eager PyTorch runs as a dozen small operators per step. Sequences
 * of a batch are independent: the entry points split the batch over `threads` OpenMP threads (parallel.h).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "parallel.h"

static inline float sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

/* y = W_hh h + b_hh for one step, from the transposed weights wt (H, 3H): y += h[k] * wt[k, :] row by row, a
 * contiguous multiply-add the compiler vectorises (a dot product per output would need reassociation). */
static void hidden_proj(const float *restrict wt, const float *restrict b, const float *restrict h,
                        float *restrict y, int64_t H) {
    for (int64_t j = 0; j < 3 * H; ++j) y[j] = b[j];
    for (int64_t k = 0; k < H; ++k) {
        const float *restrict row = wt + k * 3 * H;
        const float a = h[k];
        for (int64_t j = 0; j < 3 * H; ++j) y[j] += a * row[j];
    }
}

/* Sequence n. Saves r, z, n and gh_n = W_hn h + b_hn per step when `saved` is non-NULL ((N, T, 4H)). */
static int forward_seq(const float *gi, const float *w_hh_t, const float *b_hh, float *out, float *saved, int64_t n,
                       int64_t T, int64_t H) {
    float *gh = malloc(sizeof(float) * 4 * H), *zero = gh + 3 * H;
    if (!gh) return -1;
    for (int64_t k = 0; k < H; ++k) zero[k] = 0.0f;
    const float *h = zero;
    for (int64_t t = 0; t < T; ++t) {
        const float *g = gi + (n * T + t) * 3 * H;
        float *ht = out + (n * T + t) * H, *s = saved ? saved + (n * T + t) * 4 * H : NULL;
        hidden_proj(w_hh_t, b_hh, h, gh, H);
        for (int64_t k = 0; k < H; ++k) {
            const float r = sigmoid(g[k] + gh[k]), z = sigmoid(g[H + k] + gh[H + k]);
            const float nn = tanhf(g[2 * H + k] + r * gh[2 * H + k]);
            ht[k] = (1.0f - z) * nn + z * h[k];
            if (s) s[k] = r, s[H + k] = z, s[2 * H + k] = nn, s[3 * H + k] = gh[2 * H + k];
        }
        h = ht;
    }
    free(gh);
    return 0;
}

/* Sequence n in reverse: dgi (N, T, 3H) = gradient of the input projections, dgh (N, T, 3H) = gradient of
 * W_hh h + b_hh; dout (N, T, H) is the gradient of the layer's outputs. */
static int backward_seq(const float *dout, const float *w_hh, const float *out, const float *saved, float *dgi,
                        float *dgh, int64_t n, int64_t T, int64_t H) {
    float *dh = malloc(sizeof(float) * 2 * H), *dnext = dh + H;
    if (!dh) return -1;
    for (int64_t k = 0; k < H; ++k) dnext[k] = 0.0f;
    for (int64_t t = T - 1; t >= 0; --t) {
        const float *s = saved + (n * T + t) * 4 * H, *go = dout + (n * T + t) * H;
        const float *hp = t > 0 ? out + (n * T + t - 1) * H : NULL;
        float *di = dgi + (n * T + t) * 3 * H, *dg = dgh + (n * T + t) * 3 * H;
        for (int64_t k = 0; k < H; ++k) {
            const float r = s[k], z = s[H + k], nn = s[2 * H + k], ghn = s[3 * H + k];
            const float d = go[k] + dnext[k], h_prev = hp ? hp[k] : 0.0f;
            const float dn = d * (1.0f - z) * (1.0f - nn * nn);  /* through tanh */
            const float dz = d * (h_prev - nn) * z * (1.0f - z); /* through sigmoid */
            const float dr = dn * ghn * r * (1.0f - r);
            di[k] = dr, di[H + k] = dz, di[2 * H + k] = dn;
            dg[k] = dr, dg[H + k] = dz, dg[2 * H + k] = dn * r;
            dh[k] = d * z; /* the direct path h -> h' */
        }
        for (int64_t j = 0; j < 3 * H; ++j) { /* dh += W_hh^T dg, row by row */
            const float *row = w_hh + j * H, a = dg[j];
            for (int64_t k = 0; k < H; ++k) dh[k] += a * row[k];
        }
        for (int64_t k = 0; k < H; ++k) dnext[k] = dh[k];
    }
    free(dh);
    return 0;
}

static int forward_range(const float *gi, const float *w_hh_t, const float *b_hh, float *out, float *saved,
                         int64_t T, int64_t H, int64_t b, int64_t e) {
    int failed = 0;
    for (int64_t n = b; n < e; ++n) failed |= forward_seq(gi, w_hh_t, b_hh, out, saved, n, T, H);
    return failed;
}

static int backward_range(const float *dout, const float *w_hh, const float *out, const float *saved, float *dgi,
                          float *dgh, int64_t T, int64_t H, int64_t b, int64_t e) {
    int failed = 0;
    for (int64_t n = b; n < e; ++n) failed |= backward_seq(dout, w_hh, out, saved, dgi, dgh, n, T, H);
    return failed;
}

/* ---- entry points: 0, or -1 when memory ran out; w_hh is (3H, H) as nn.GRU keeps it ---- */

/* w_hh_t is W_hh transposed, (H, 3H) contiguous. */
int gru_layer_forward_f32(const float *gi, const float *w_hh_t, const float *b_hh, float *out, float *saved,
                          int64_t T, int64_t H, int64_t n_begin, int64_t n_end, int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(n_begin, n_end, forward_range(gi, w_hh_t, b_hh, out, saved, T, H, b, e));
    return failed ? -1 : 0;
}

int gru_layer_backward_f32(const float *dout, const float *w_hh, const float *out, const float *saved, float *dgi,
                           float *dgh, int64_t T, int64_t H, int64_t n_begin, int64_t n_end, int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(n_begin, n_end, backward_range(dout, w_hh, out, saved, dgi, dgh, T, H, b, e));
    return failed ? -1 : 0;
}
