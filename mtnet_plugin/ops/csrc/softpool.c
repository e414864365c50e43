/* SoftPool over 2x2 windows of each frame (Eq. 5 of Stergiou & Poppe, IJCNN 2021), fused on the CPU.
 *
 * One pass over the input per output plane: per window, the max, the exps, the weighted sums and the
 * division, where eager PyTorch needs about five passes over memory. Plain C99, no PyTorch headers, so it
 * compiles in about a second; mtnet_plugin/ops/native.py builds it on first use and calls it via ctypes.
 *
 * Geometry (spec #6): ceil mode, an overhanging window uses only its in-bounds elements, kh or kw is 1 for
 * a dimension of size 1. Numerics (spec numerics): each window's max m is subtracted before exp, and the
 * output is formed as m + sum_i w_i (x_i - m), the gradient's factor as 1 + ((x_i - m) - (out - m)), so that
 * windows of huge values (|x| ~ 1e8 .. 3e38) neither overflow nor lose the 1.
 *
 * A "plane" is one (n, c, output frame) of the output, contiguous (N, C, T_out, H2, W2). Its input frame is
 * frames[n * T_out + j] when frames is given (the T() of Eq. 4 fused into the pooling), else j. The input is
 * read through strides (in elements; W has stride 1). The entry points split [p_begin, p_end) across
 * `threads` OpenMP threads (parallel.h).
 *
 * Two layouts of the work: a wide plane is pooled row by row, the compiler vectorising along W; small planes
 * (the late stages' 14x14 and 7x7, whose rows are shorter than a vector) are pooled LANES planes at a time,
 * copied into a buffer with the planes interleaved, so that each vector holds one window position of LANES
 * planes.
 */
#include <stdint.h>
#include <string.h>

#include "floatbits.h"
#include "parallel.h"

/* e^d for d <= 0 (d is a logit minus its window max): Cody-Waite reduction d = k ln2 + r, |r| <= ln2 / 2,
 * and a degree-7 Taylor polynomial of e^r (relative error < 2e-8, below float rounding). Written without
 * libm calls or branches so that gcc vectorises the loops that use it. Below d = -87 the weight is exactly
 * 0 (torch's expf underflows to denormals there, then 0), so an element far below its window's max adds
 * nothing even when it is huge (e.g. -1e36). */
static inline float exp_nonpos(float d) {
    const int32_t live = d >= -87.0f;
    d = __builtin_fmaxf(d, -87.0f);
    float kf = (float)(int)(d * 1.44269504088896341f - 0.5f); /* round half down, d <= 0 */
    float r = d - kf * 0.693145751953125f - kf * 1.428606765330187045e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = (((int32_t)kf + 127) << 23) * live; /* 2^k, or +0.0 when not live */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* fmaxf: with -ffinite-math-only it becomes one vector max (which may drop a NaN: see nonfinite). */
static inline float max2(float a, float b) { return __builtin_fmaxf(a, b); }

/* x_i - m, floored at -88: below -87 the weight is 0 anyway, and the floor keeps 0 * (x_i - m) at 0 when
 * x_i - m overflows to -inf (x_i = -3e38 beside m = 3e38). */
static inline float shifted(float x, float m) { return max2(x - m, -88.0f); }

/* Eq. 5 on one window of four values: the shifted values d_i = x_i - m, their weights e_i (times w_i: 1, or 0
 * for a missing element of an edge window, which repeats element 0), their sum, q = out - m, m itself, and
 * whether a value is inf or NaN (such a window gets a NaN output and NaN gradients, as in eager PyTorch,
 * where inf - inf = NaN). Inlined into every vectorised loop. */
typedef struct {
    float d[4], e[4], den, q, m;
    int32_t bad;
} window4;

static inline window4 softpool4(float a, float b, float c, float d, float wb, float wc, float wd) {
    window4 r;
    r.bad = nonfinite(a) | nonfinite(b) | nonfinite(c) | nonfinite(d);
    r.m = max2(max2(a, b), max2(c, d));
    r.d[0] = shifted(a, r.m), r.d[1] = shifted(b, r.m), r.d[2] = shifted(c, r.m), r.d[3] = shifted(d, r.m);
    r.e[0] = exp_nonpos(r.d[0]), r.e[1] = wb * exp_nonpos(r.d[1]);
    r.e[2] = wc * exp_nonpos(r.d[2]), r.e[3] = wd * exp_nonpos(r.d[3]);
    r.den = r.e[0] + r.e[1] + r.e[2] + r.e[3];
    r.q = (r.e[0] * r.d[0] + r.e[1] * r.d[1] + r.e[2] * r.d[2] + r.e[3] * r.d[3]) / r.den;
    return r;
}

/* The gradient of window r's element k, grad * w_k * (1 + x_k - out) (SoftPool's Eq. 6), w_k = e_k / den. */
static inline float softpool4_grad(const window4 *r, float grad, int k) {
    return poison(grad / r->den, r->bad) * r->e[k] * (1.0f + (r->d[k] - r->q));
}

/* Forward of one window of up to 4 elements: out = sum_i e_i x_i / sum_i e_i, e_i = exp(x_i - max). */
static inline float window_fwd(const float *v, int n) {
    float m = v[0];
    for (int i = 1; i < n; ++i) m = max2(m, v[i]);
    float num = 0.0f, den = 0.0f;
    int32_t bad = 0;
    for (int i = 0; i < n; ++i) {
        float d = shifted(v[i], m), e = exp_nonpos(d);
        num += e * d;
        den += e;
        bad |= nonfinite(v[i]);
    }
    return poison(m + num / den, bad);
}

/* Backward of one window: g_i = grad * w_i * (1 + x_i - out), w_i = e_i / sum_j e_j (SoftPool's Eq. 6). */
static inline void window_bwd(const float *v, int n, float grad, float *g) {
    float m = v[0];
    for (int i = 1; i < n; ++i) m = max2(m, v[i]);
    float d[4], e[4], num = 0.0f, den = 0.0f;
    int32_t bad = 0;
    for (int i = 0; i < n; ++i) {
        d[i] = shifted(v[i], m);
        e[i] = exp_nonpos(d[i]);
        num += e[i] * d[i];
        den += e[i];
        bad |= nonfinite(v[i]);
    }
    float q = num / den, scale = poison(grad / den, bad); /* q = out - m */
    for (int i = 0; i < n; ++i) g[i] = scale * e[i] * (1.0f + (d[i] - q));
}

#define LANES 8
#define SMALL_PLANE 1024 /* H * W up to this (and W2 < 16) takes the interleaved path */

typedef struct {
    const float *x;
    const int64_t *frames;
    int64_t C, T_in, T_out, H, W, sN, sC, sT, sH, kh, kw;
} geometry;

/* Input plane of output plane p, and (via t) its frame. */
static const float *plane_input(const geometry *g, int64_t p, int64_t *t) {
    int64_t j = p % g->T_out, c = (p / g->T_out) % g->C, n = p / (g->T_out * g->C);
    *t = g->frames ? g->frames[n * g->T_out + j] : j;
    return g->x + n * g->sN + c * g->sC + *t * g->sT;
}

/* Offset of plane p's frame in the contiguous (N, C, T_in, H, W) gradient. */
static int64_t grad_plane_offset(const geometry *g, int64_t p) {
    int64_t t, n = p / (g->T_out * g->C), c = (p / g->T_out) % g->C;
    plane_input(g, p, &t);
    return ((n * g->C + c) * g->T_in + t) * g->H * g->W;
}

static int is_small(const geometry *g) {
    return g->H * g->W <= SMALL_PLANE && (g->W + g->kw - 1) / g->kw < 16;
}

/* The (up to 4) in-bounds elements of window (i, j), as offsets from the plane origin in units of (row, col). */
static int window_cells(const geometry *g, int64_t i, int64_t j, int64_t rows[4], int64_t cols[4]) {
    int n = 0;
    for (int64_t a = 0; a < g->kh; ++a)
        for (int64_t b = 0; b < g->kw; ++b)
            if (i * g->kh + a < g->H && j * g->kw + b < g->W) {
                rows[n] = i * g->kh + a;
                cols[n++] = j * g->kw + b;
            }
    return n;
}

/* ---- row by row: one wide plane ---- */

static void rows_forward(const geometry *g, const float *restrict in, float *restrict o) {
    const int64_t H2 = (g->H + g->kh - 1) / g->kh, W2 = (g->W + g->kw - 1) / g->kw;
    const int64_t Hf = g->H / g->kh, Wf = g->W / g->kw, sH = g->sH;
    for (int64_t i = 0; i < H2; ++i) {
        float *restrict oi = o + i * W2;
        int64_t j0 = 0;
        if (g->kh == 2 && g->kw == 2 && i < Hf) { /* the bulk: full 2x2 windows, vectorised along W */
            const float *restrict r0 = in + 2 * i * sH, *restrict r1 = r0 + sH;
            for (int64_t j = 0; j < Wf; ++j) {
                window4 r = softpool4(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], 1.0f, 1.0f, 1.0f);
                oi[j] = poison(r.m + r.q, r.bad);
            }
            j0 = Wf;
        }
        for (int64_t j = j0; j < W2; ++j) { /* edges and 1-wide windows */
            int64_t rows[4], cols[4];
            float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
            int n = window_cells(g, i, j, rows, cols);
            for (int k = 0; k < n; ++k) v[k] = in[rows[k] * sH + cols[k]];
            oi[j] = window_fwd(v, n);
        }
    }
}

static void rows_backward(const geometry *g, const float *restrict in, const float *restrict gr,
                          float *restrict gx) {
    const int64_t H2 = (g->H + g->kh - 1) / g->kh, W2 = (g->W + g->kw - 1) / g->kw;
    const int64_t Hf = g->H / g->kh, Wf = g->W / g->kw, sH = g->sH, W = g->W;
    for (int64_t i = 0; i < H2; ++i) {
        const float *restrict gi = gr + i * W2;
        int64_t j0 = 0;
        if (g->kh == 2 && g->kw == 2 && i < Hf) {
            const float *restrict r0 = in + 2 * i * sH, *restrict r1 = r0 + sH;
            float *restrict q0 = gx + 2 * i * W, *restrict q1 = q0 + W;
            for (int64_t j = 0; j < Wf; ++j) {
                window4 r = softpool4(r0[2 * j], r0[2 * j + 1], r1[2 * j], r1[2 * j + 1], 1.0f, 1.0f, 1.0f);
                q0[2 * j] = softpool4_grad(&r, gi[j], 0);
                q0[2 * j + 1] = softpool4_grad(&r, gi[j], 1);
                q1[2 * j] = softpool4_grad(&r, gi[j], 2);
                q1[2 * j + 1] = softpool4_grad(&r, gi[j], 3);
            }
            j0 = Wf;
        }
        for (int64_t j = j0; j < W2; ++j) {
            int64_t rows[4], cols[4];
            float v[4] = {0.0f, 0.0f, 0.0f, 0.0f}, gv[4];
            int n = window_cells(g, i, j, rows, cols);
            for (int k = 0; k < n; ++k) v[k] = in[rows[k] * sH + cols[k]];
            window_bwd(v, n, gi[j], gv);
            for (int k = 0; k < n; ++k) gx[rows[k] * W + cols[k]] = gv[k];
        }
    }
}

/* ---- LANES small planes at once, interleaved: buf[(row * W + col) * LANES + lane] ---- */

static void lanes_load(const geometry *g, const float *const ins[LANES], float *restrict buf) {
    for (int l = 0; l < LANES; ++l)
        for (int64_t r = 0; r < g->H; ++r)
            for (int64_t c = 0; c < g->W; ++c) buf[(r * g->W + c) * LANES + l] = ins[l][r * g->sH + c];
}

/* Window (i, j)'s elements as buffer offsets; a missing element (edge window) repeats element 0 with weight 0. */
static int lanes_window(const geometry *g, int64_t i, int64_t j, int64_t off[4], float wt[4]) {
    int64_t rows[4] = {0, 0, 0, 0}, cols[4] = {0, 0, 0, 0};
    int n = window_cells(g, i, j, rows, cols);
    for (int k = 0; k < 4; ++k) {
        off[k] = (rows[k < n ? k : 0] * g->W + cols[k < n ? k : 0]) * LANES;
        wt[k] = k < n ? 1.0f : 0.0f;
    }
    return n;
}

static void lanes_forward(const geometry *g, const float *restrict buf, float *restrict obuf) {
    const int64_t H2 = (g->H + g->kh - 1) / g->kh, W2 = (g->W + g->kw - 1) / g->kw;
    for (int64_t i = 0; i < H2; ++i)
        for (int64_t j = 0; j < W2; ++j) {
            int64_t off[4];
            float wt[4];
            lanes_window(g, i, j, off, wt);
            const float *e0 = buf + off[0], *e1 = buf + off[1], *e2 = buf + off[2], *e3 = buf + off[3];
            float *restrict o = obuf + (i * W2 + j) * LANES;
            for (int l = 0; l < LANES; ++l) { /* one vector: window (i, j) of LANES planes */
                window4 r = softpool4(e0[l], e1[l], e2[l], e3[l], wt[1], wt[2], wt[3]);
                o[l] = poison(r.m + r.q, r.bad);
            }
        }
}

static void lanes_backward(const geometry *g, const float *restrict buf, const float *restrict gbuf,
                           float *restrict gxbuf) {
    const int64_t H2 = (g->H + g->kh - 1) / g->kh, W2 = (g->W + g->kw - 1) / g->kw;
    float sink[3][LANES]; /* where the gradients of missing elements go: no two stores share an address */
    for (int64_t i = 0; i < H2; ++i)
        for (int64_t j = 0; j < W2; ++j) {
            int64_t off[4];
            float wt[4];
            int n = lanes_window(g, i, j, off, wt);
            const float *e0 = buf + off[0], *e1 = buf + off[1], *e2 = buf + off[2], *e3 = buf + off[3];
            float *restrict q0 = gxbuf + off[0], *restrict q1 = n > 1 ? gxbuf + off[1] : sink[0];
            float *restrict q2 = n > 2 ? gxbuf + off[2] : sink[1], *restrict q3 = n > 3 ? gxbuf + off[3] : sink[2];
            const float *gi = gbuf + (i * W2 + j) * LANES;
            for (int l = 0; l < LANES; ++l) {
                window4 r = softpool4(e0[l], e1[l], e2[l], e3[l], wt[1], wt[2], wt[3]);
                q0[l] = softpool4_grad(&r, gi[l], 0);
                q1[l] = softpool4_grad(&r, gi[l], 1);
                q2[l] = softpool4_grad(&r, gi[l], 2);
                q3[l] = softpool4_grad(&r, gi[l], 3);
            }
        }
}

/* ---- plane ranges ---- */

static void forward_range(const geometry *g, float *out, int64_t p, int64_t p_end) {
    const int64_t plane_out = ((g->H + g->kh - 1) / g->kh) * ((g->W + g->kw - 1) / g->kw);
    int64_t t;
    if (!is_small(g)) {
        for (; p < p_end; ++p) rows_forward(g, plane_input(g, p, &t), out + p * plane_out);
        return;
    }
    float buf[SMALL_PLANE * LANES], obuf[SMALL_PLANE * LANES]; /* on the stack: 64 KB, first-touched once */
    for (; p < p_end; p += LANES) {
        const float *ins[LANES];
        int lanes = p_end - p < LANES ? (int)(p_end - p) : LANES;
        for (int l = 0; l < LANES; ++l) ins[l] = plane_input(g, p + (l < lanes ? l : 0), &t);
        lanes_load(g, ins, buf);
        lanes_forward(g, buf, obuf);
        for (int l = 0; l < lanes; ++l)
            for (int64_t q = 0; q < plane_out; ++q) out[(p + l) * plane_out + q] = obuf[q * LANES + l];
    }
}

static void backward_range(const geometry *g, const float *grad, float *grad_x, int64_t p, int64_t p_end) {
    const int64_t plane_out = ((g->H + g->kh - 1) / g->kh) * ((g->W + g->kw - 1) / g->kw), plane_in = g->H * g->W;
    int64_t t;
    if (!is_small(g)) {
        for (; p < p_end; ++p)
            rows_backward(g, plane_input(g, p, &t), grad + p * plane_out, grad_x + grad_plane_offset(g, p));
        return;
    }
    /* On the stack (96 KB): a malloc'd buffer this size is returned to the system at free and page-faults anew
     * on every call, which made this path 4x slower. */
    float buf[SMALL_PLANE * LANES], gbuf[SMALL_PLANE * LANES], gxbuf[SMALL_PLANE * LANES];
    for (; p < p_end; p += LANES) {
        const float *ins[LANES];
        int lanes = p_end - p < LANES ? (int)(p_end - p) : LANES;
        for (int l = 0; l < LANES; ++l) ins[l] = plane_input(g, p + (l < lanes ? l : 0), &t);
        lanes_load(g, ins, buf);
        for (int l = 0; l < LANES; ++l)
            for (int64_t q = 0; q < plane_out; ++q) gbuf[q * LANES + l] = grad[(p + (l < lanes ? l : 0)) * plane_out + q];
        lanes_backward(g, buf, gbuf, gxbuf);
        for (int l = 0; l < lanes; ++l) {
            float *gx = grad_x + grad_plane_offset(g, p + l);
            for (int64_t q = 0; q < plane_in; ++q) gx[q] = gxbuf[q * LANES + l];
        }
    }
}

/* ---- entry points: they return 0 (an int, like the resize kernel's, which can run out of memory) ---- */

int softpool2d_forward_f32(const float *x, float *out, const int64_t *frames, int64_t C, int64_t T_out, int64_t H,
                           int64_t W, int64_t sN, int64_t sC, int64_t sT, int64_t sH, int64_t kh, int64_t kw,
                           int64_t p_begin, int64_t p_end, int64_t threads) {
    const geometry g = {x, frames, C, 0, T_out, H, W, sN, sC, sT, sH, kh, kw};
    int failed = 0;
    PARALLEL_CHUNKS(p_begin, p_end, (forward_range(&g, out, b, e), 0));
    return failed;
}

/* grad_x is contiguous (N, C, T_in, H, W); only the planes' frames are written (the caller zeroes it when
 * frames skip some). Frames of one sample must be distinct. */
int softpool2d_backward_f32(const float *x, const float *grad, float *grad_x, const int64_t *frames, int64_t C,
                            int64_t T_in, int64_t T_out, int64_t H, int64_t W, int64_t sN, int64_t sC, int64_t sT,
                            int64_t sH, int64_t kh, int64_t kw, int64_t p_begin, int64_t p_end, int64_t threads) {
    const geometry g = {x, frames, C, T_in, T_out, H, W, sN, sC, sT, sH, kh, kw};
    int failed = 0;
    PARALLEL_CHUNKS(p_begin, p_end, (backward_range(&g, grad, grad_x, b, e), 0));
    return failed;
}

/* The size of the team the entry points get for `threads` (1 without OpenMP): lets tests see the parallel path. */
int team_size(int64_t threads) {
    int size = 1;
    (void)threads;
#pragma omp parallel num_threads((int)threads) if (threads > 1)
    {
#ifdef _OPENMP
#pragma omp single
        size = omp_get_num_threads();
#endif
    }
    return size;
}
