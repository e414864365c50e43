/* Float tests done on the bits, so they hold under -ffinite-math-only (which lets the compiler assume that no
 * float is inf or NaN, but not that no integer has a given pattern), and stay branch-free for vectorising. */
#ifndef MTNET_FLOATBITS_H
#define MTNET_FLOATBITS_H
#include <stdint.h>
#include <string.h>

static inline int32_t float_bits(float v) {
    int32_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

/* 1 for inf or NaN. */
static inline int32_t nonfinite(float v) { return (float_bits(v) & 0x7f800000) == 0x7f800000; }

/* 1 for NaN. */
static inline int32_t is_nan(float v) { return (float_bits(v) & 0x7fffffff) > 0x7f800000; }

/* v, or a NaN when bad: the exponent and quiet bits set by integer ops. */
static inline float poison(float v, int32_t bad) {
    int32_t b = float_bits(v) | (-bad & 0x7fc00000);
    memcpy(&v, &b, sizeof v);
    return v;
}

#endif
