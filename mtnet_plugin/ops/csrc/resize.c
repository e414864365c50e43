/* Trilinear resize with align_corners=False (the I() of Eq. 3, Stergiou & Poppe, IJCNN 2021) and its adjoint,
 * for the upsampling of MTConv's prolonged branch; the same source positions and weights as PyTorch's
 * F.interpolate(mode="trilinear", size=...): src = max(in / out * (dst + 0.5) - 0.5, 0), neighbours
 * floor(src) and the next one (clamped at the edge).
 *
 * Separable, per (n, c) plane: W first (the only pass that gathers; it runs on the smallest tensor, the input
 * rows), then H, then T, the last two as weighted sums of whole contiguous rows / frames that the compiler
 * vectorises. The backward applies the transposed passes in reverse order. Planes are contiguous; the entry
 * points split [p_begin, p_end) across `threads` OpenMP threads (parallel.h), each with its own scratch.
 */
#include <stdint.h>
#include <stdlib.h>

#include "parallel.h"

typedef struct {
    int64_t *i0, *i1;
    float *l0, *l1;
} taps;

/* Source neighbours and weights of every output index of one dimension (PyTorch's float arithmetic). */
static int taps_make(taps *tp, int64_t in, int64_t out) { /* 0, or -1 when memory ran out */
    tp->i0 = malloc(sizeof(int64_t) * out);
    tp->i1 = malloc(sizeof(int64_t) * out);
    tp->l0 = malloc(sizeof(float) * out);
    tp->l1 = malloc(sizeof(float) * out);
    if (!tp->i0 || !tp->i1 || !tp->l0 || !tp->l1) return -1;
    const float scale = (float)in / (float)out;
    for (int64_t o = 0; o < out; ++o) {
        float src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
        int64_t i = (int64_t)src;
        tp->i0[o] = i;
        tp->i1[o] = i + (i < in - 1 ? 1 : 0);
        tp->l1[o] = src - (float)i;
        tp->l0[o] = 1.0f - tp->l1[o];
    }
    return 0;
}

static void taps_free(taps *tp) {
    free(tp->i0);
    free(tp->i1);
    free(tp->l0);
    free(tp->l1);
}

/* The three dimensions' taps and the two scratch buffers of one call: a (Ti, Hi, Wo), b (Ti, Ho, Wo). */
typedef struct {
    taps t, h, w;
    float *a, *b;
} plan;

static void plan_free(plan *pl) {
    taps_free(&pl->t);
    taps_free(&pl->h);
    taps_free(&pl->w);
    free(pl->a);
    free(pl->b);
}

/* 0, or -1 when memory ran out (then everything is freed). */
static int plan_make(plan *pl, int64_t Ti, int64_t Hi, int64_t Wi, int64_t To, int64_t Ho, int64_t Wo) {
    *pl = (plan){0};
    pl->a = malloc(sizeof(float) * Ti * Hi * Wo);
    pl->b = malloc(sizeof(float) * Ti * Ho * Wo);
    if (pl->a && pl->b && !taps_make(&pl->t, Ti, To) && !taps_make(&pl->h, Hi, Ho) && !taps_make(&pl->w, Wi, Wo))
        return 0;
    plan_free(pl);
    return -1;
}

/* y[k] = a * u[k] + b * v[k] over n contiguous elements. */
static inline void blend(float *restrict y, const float *restrict u, const float *restrict v, float a, float b,
                         int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] = a * u[k] + b * v[k];
}

/* y[k] += a * u[k]. */
static inline void axpy(float *restrict y, const float *restrict u, float a, int64_t n) {
    for (int64_t k = 0; k < n; ++k) y[k] += a * u[k];
}

static int forward_range(const float *x, float *out, int64_t Ti, int64_t Hi, int64_t Wi, int64_t To, int64_t Ho,
                         int64_t Wo, int64_t C, int64_t osN, int64_t osC, int64_t p_begin, int64_t p_end) {
    plan pl;
    if (plan_make(&pl, Ti, Hi, Wi, To, Ho, Wo)) return -1;
    const taps t = pl.t, h = pl.h, w = pl.w;
    float *a = pl.a, *b = pl.b;
    for (int64_t p = p_begin; p < p_end; ++p) {
        const float *xp = x + p * Ti * Hi * Wi;
        float *op = out + (p / C) * osN + (p % C) * osC;
        for (int64_t r = 0; r < Ti * Hi; ++r) { /* W: (Ti, Hi, Wi) -> (Ti, Hi, Wo) */
            const float *row = xp + r * Wi;
            float *ar = a + r * Wo;
            for (int64_t k = 0; k < Wo; ++k) ar[k] = w.l0[k] * row[w.i0[k]] + w.l1[k] * row[w.i1[k]];
        }
        for (int64_t f = 0; f < Ti; ++f) /* H: -> (Ti, Ho, Wo) */
            for (int64_t k = 0; k < Ho; ++k)
                blend(b + (f * Ho + k) * Wo, a + (f * Hi + h.i0[k]) * Wo, a + (f * Hi + h.i1[k]) * Wo, h.l0[k],
                      h.l1[k], Wo);
        for (int64_t k = 0; k < To; ++k) /* T: -> (To, Ho, Wo) */
            blend(op + k * Ho * Wo, b + t.i0[k] * Ho * Wo, b + t.i1[k] * Ho * Wo, t.l0[k], t.l1[k], Ho * Wo);
    }
    plan_free(&pl);
    return 0;
}

static int backward_range(const float *grad, float *grad_x, int64_t Ti, int64_t Hi, int64_t Wi, int64_t To,
                          int64_t Ho, int64_t Wo, int64_t p_begin, int64_t p_end) {
    plan pl;
    if (plan_make(&pl, Ti, Hi, Wi, To, Ho, Wo)) return -1;
    const taps t = pl.t, h = pl.h, w = pl.w;
    float *a = pl.a, *b = pl.b;
    for (int64_t p = p_begin; p < p_end; ++p) {
        const float *gp = grad + p * To * Ho * Wo;
        float *gx = grad_x + p * Ti * Hi * Wi;
        for (int64_t k = 0; k < Ti * Ho * Wo; ++k) b[k] = 0.0f;
        for (int64_t k = 0; k < To; ++k) { /* T^T: (To, Ho, Wo) -> (Ti, Ho, Wo) */
            axpy(b + t.i0[k] * Ho * Wo, gp + k * Ho * Wo, t.l0[k], Ho * Wo);
            axpy(b + t.i1[k] * Ho * Wo, gp + k * Ho * Wo, t.l1[k], Ho * Wo);
        }
        for (int64_t k = 0; k < Ti * Hi * Wo; ++k) a[k] = 0.0f;
        for (int64_t f = 0; f < Ti; ++f) /* H^T: -> (Ti, Hi, Wo) */
            for (int64_t k = 0; k < Ho; ++k) {
                axpy(a + (f * Hi + h.i0[k]) * Wo, b + (f * Ho + k) * Wo, h.l0[k], Wo);
                axpy(a + (f * Hi + h.i1[k]) * Wo, b + (f * Ho + k) * Wo, h.l1[k], Wo);
            }
        for (int64_t r = 0; r < Ti * Hi; ++r) { /* W^T: -> (Ti, Hi, Wi) */
            float *row = gx + r * Wi;
            const float *ar = a + r * Wo;
            for (int64_t k = 0; k < Wi; ++k) row[k] = 0.0f;
            for (int64_t k = 0; k < Wo; ++k) {
                row[w.i0[k]] += w.l0[k] * ar[k];
                row[w.i1[k]] += w.l1[k] * ar[k];
            }
        }
    }
    plan_free(&pl);
    return 0;
}

/* ---- entry points: 0, or -1 when memory ran out ---- */

/* out's plane p = (n, c) starts at out + n * osN + c * osC (a slot of a larger tensor is fine); C channels. */
int trilinear_forward_f32(const float *x, float *out, int64_t Ti, int64_t Hi, int64_t Wi, int64_t To, int64_t Ho,
                          int64_t Wo, int64_t C, int64_t osN, int64_t osC, int64_t p_begin, int64_t p_end,
                          int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(p_begin, p_end, forward_range(x, out, Ti, Hi, Wi, To, Ho, Wo, C, osN, osC, b, e));
    return failed ? -1 : 0;
}

/* grad_x = the adjoint of the forward applied to grad (contiguous (P, To, Ho, Wo)); grad_x is overwritten. */
int trilinear_backward_f32(const float *grad, float *grad_x, int64_t Ti, int64_t Hi, int64_t Wi, int64_t To,
                           int64_t Ho, int64_t Wo, int64_t p_begin, int64_t p_end, int64_t threads) {
    int failed = 0;
    PARALLEL_CHUNKS(p_begin, p_end, backward_range(grad, grad_x, Ti, Hi, Wi, To, Ho, Wo, b, e));
    return failed ? -1 : 0;
}
