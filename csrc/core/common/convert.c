/*
 * convert.c - byte swapping and scaling, written so that GCC vectorizes
 * the loops: in-place loops take one pointer, the others `restrict` ones.
 */
#include <math.h>
#include <string.h>

#include "convert.h"

/* The loops below are compiled twice on x86-64 with GCC: for AVX2 (32-byte
 * byte shuffles) and for the baseline (SSE2), picked once at load time by
 * the dynamic linker (an ifunc; glibc only). Elsewhere, one portable
 * version; also under ThreadSanitizer, whose instrumented ifunc resolvers
 * crash before it starts. No FMA: stored * scale + zero must round as
 * cfitsio rounds it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) && \
    !defined(__SANITIZE_THREAD__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define TF_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef TF_MULTIVERSION
#define TF_MULTIVERSION
#endif

int tf_conv_init(tf_conv *c, tf_dtype in, tf_dtype out, double scale, double zero,
                 int has_blank, int64_t blank) {
    memset(c, 0, sizeof *c);
    c->in = in;
    c->out = out;
    c->in_size = tf_dtype_size(in);
    c->out_size = tf_dtype_size(out);
    c->scale = scale;
    c->zero = zero;
    c->has_blank = has_blank && (in == TF_UINT8 || in == TF_INT16 || in == TF_INT32 ||
                                 in == TF_INT64);
    c->blank = blank;
    int unscaled = scale == 1.0 && zero == 0.0;
    if (in == out && (unscaled || (out != TF_FLOAT32 && out != TF_FLOAT64))) {
        c->kind = TF_CONV_SWAP;
        return 1;
    }
    if ((in == TF_UINT8 && out == TF_INT8) || (in == TF_INT16 && out == TF_UINT16) ||
        (in == TF_INT32 && out == TF_UINT32) || (in == TF_INT64 && out == TF_UINT64)) {
        c->kind = TF_CONV_FLIPSIGN;
        return 1;
    }
    if ((in == TF_INT16 && out == TF_INT32) || (in == TF_INT32 && out == TF_INT64)) {
        c->kind = TF_CONV_OFFSET;
        return 1;
    }
    if (out == TF_FLOAT32 || out == TF_FLOAT64) {
        c->kind = TF_CONV_SCALE;
        c->u64 = in == TF_INT64 && scale == 1.0 && zero == 9223372036854775808.0;
        return in != TF_INT8 && in != TF_UINT16 && in != TF_UINT32 && in != TF_UINT64;
    }
    return 0;
}

TF_MULTIVERSION static void swap16(void *p, size_t n) {
    uint16_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap16(q[i]);
}

TF_MULTIVERSION static void swap32(void *p, size_t n) {
    uint32_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap32(q[i]);
}

TF_MULTIVERSION static void swap64(void *p, size_t n) {
    uint64_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap64(q[i]);
}

TF_MULTIVERSION static void flip8(void *p, size_t n) {
    uint8_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] ^= 0x80u;
}

TF_MULTIVERSION static void flip16(void *p, size_t n) {
    uint16_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = (uint16_t)(__builtin_bswap16(q[i]) ^ 0x8000u);
}

TF_MULTIVERSION static void flip32(void *p, size_t n) {
    uint32_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap32(q[i]) ^ 0x80000000u;
}

TF_MULTIVERSION static void flip64(void *p, size_t n) {
    uint64_t *q = p;
    for (size_t i = 0; i < n; i++) q[i] = __builtin_bswap64(q[i]) ^ UINT64_C(0x8000000000000000);
}

TF_MULTIVERSION static void offset16(const void *restrict src, void *restrict dst, size_t n) {
    const uint16_t *s = src;
    int32_t *d = dst;
    for (size_t i = 0; i < n; i++) d[i] = (int32_t)(int16_t)__builtin_bswap16(s[i]) + 32768;
}

TF_MULTIVERSION static void offset32(const void *restrict src, void *restrict dst, size_t n) {
    const uint32_t *s = src;
    int64_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = (int64_t)(int32_t)__builtin_bswap32(s[i]) + INT64_C(2147483648);
}

/* Native value of stored element i, as each stored type decodes. */
#define LOAD_U8(s, i) ((const uint8_t *)(s))[i]
#define LOAD_I16(s, i) ((int16_t)__builtin_bswap16(((const uint16_t *)(s))[i]))
#define LOAD_I32(s, i) ((int32_t)__builtin_bswap32(((const uint32_t *)(s))[i]))
#define LOAD_I64(s, i) ((int64_t)__builtin_bswap64(((const uint64_t *)(s))[i]))
static inline float load_f32(const void *s, size_t i) {
    uint32_t u = __builtin_bswap32(((const uint32_t *)s)[i]);
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}
static inline double load_f64(const void *s, size_t i) {
    uint64_t u = __builtin_bswap64(((const uint64_t *)s)[i]);
    double v;
    memcpy(&v, &u, sizeof v);
    return v;
}
#define LOAD_F32(s, i) load_f32((s), (i))
#define LOAD_F64(s, i) load_f64((s), (i))

/* out = stored * scale + zero, computed in double as cfitsio does, so both
 * read paths agree bit for bit. Integer BLANK values become NaN. */
#define DEFINE_SCALE(name, LOAD, OUT_T, NAN_V)                                        \
    TF_MULTIVERSION static void name(const tf_conv *c, const void *restrict src,   \
                                     void *restrict dst,                            \
                                     size_t n) {                                    \
        OUT_T *d = dst;                                                              \
        const double scale = c->scale, zero = c->zero;                              \
        if (c->has_blank) {                                                          \
            const int64_t blank = c->blank;                                          \
            for (size_t i = 0; i < n; i++) {                                         \
                int64_t raw = (int64_t)LOAD(src, i);                                 \
                d[i] = raw == blank ? NAN_V : (OUT_T)((double)LOAD(src, i) * scale + zero); \
            }                                                                        \
        } else {                                                                     \
            for (size_t i = 0; i < n; i++) d[i] = (OUT_T)((double)LOAD(src, i) * scale + zero); \
        }                                                                            \
    }

#define DEFINE_SCALE_FLOAT(name, LOAD, OUT_T)                                         \
    TF_MULTIVERSION static void name(const tf_conv *c, const void *restrict src,   \
                                     void *restrict dst,                            \
                                     size_t n) {                                    \
        OUT_T *d = dst;                                                              \
        const double scale = c->scale, zero = c->zero;                              \
        for (size_t i = 0; i < n; i++) d[i] = (OUT_T)((double)LOAD(src, i) * scale + zero); \
    }

/* Stored int64 with BSCALE 1 and BZERO 2^63 (uint64 data, read as a float
 * on a torch without uint64): the unsigned value, rounded once, as cfitsio
 * gives it. stored * 1 + 2^63 in double rounds twice: 1 came out 0, and
 * above 2^53 one value in four differed in the last bit. BLANK is a
 * stored value. */
#define DEFINE_U64(name, OUT_T, NAN_V)                                                \
    TF_MULTIVERSION static void name(const tf_conv *c, const void *restrict src,   \
                                     void *restrict dst, size_t n) {                \
        const uint64_t *s = src;                                                     \
        OUT_T *d = dst;                                                              \
        const uint64_t sign = UINT64_C(0x8000000000000000);                          \
        if (c->has_blank) {                                                          \
            const uint64_t blank = (uint64_t)c->blank;                               \
            for (size_t i = 0; i < n; i++) {                                         \
                uint64_t raw = __builtin_bswap64(s[i]);                              \
                d[i] = raw == blank ? NAN_V : (OUT_T)(raw ^ sign);                   \
            }                                                                        \
        } else {                                                                     \
            for (size_t i = 0; i < n; i++) d[i] = (OUT_T)(__builtin_bswap64(s[i]) ^ sign); \
        }                                                                            \
    }

DEFINE_U64(u64_f32, float, NAN)
DEFINE_U64(u64_f64, double, (double)NAN)
DEFINE_SCALE(scale_u8_f32, LOAD_U8, float, NAN)
DEFINE_SCALE(scale_i16_f32, LOAD_I16, float, NAN)
DEFINE_SCALE(scale_i32_f64, LOAD_I32, double, (double)NAN)
DEFINE_SCALE(scale_i64_f64, LOAD_I64, double, (double)NAN)
DEFINE_SCALE(scale_u8_f64, LOAD_U8, double, (double)NAN)
DEFINE_SCALE(scale_i16_f64, LOAD_I16, double, (double)NAN)
DEFINE_SCALE(scale_i32_f32, LOAD_I32, float, NAN)
DEFINE_SCALE(scale_i64_f32, LOAD_I64, float, NAN)
DEFINE_SCALE_FLOAT(scale_f32_f32, LOAD_F32, float)
DEFINE_SCALE_FLOAT(scale_f64_f64, LOAD_F64, double)
DEFINE_SCALE_FLOAT(scale_f32_f64, LOAD_F32, double)
DEFINE_SCALE_FLOAT(scale_f64_f32, LOAD_F64, float)

void tf_convert(const tf_conv *c, const void *src, void *dst, size_t n) {
    switch (c->kind) {
    case TF_CONV_SWAP:
        if (src != dst) memcpy(dst, src, n * c->in_size);
        switch (c->in_size) {
        case 2: swap16(dst, n); break;
        case 4: swap32(dst, n); break;
        case 8: swap64(dst, n); break;
        default: break;
        }
        return;
    case TF_CONV_FLIPSIGN:
        if (src != dst) memcpy(dst, src, n * c->in_size);
        switch (c->in_size) {
        case 1: flip8(dst, n); break;
        case 2: flip16(dst, n); break;
        case 4: flip32(dst, n); break;
        default: flip64(dst, n); break;
        }
        return;
    case TF_CONV_OFFSET:
        if (c->in == TF_INT16) offset16(src, dst, n);
        else offset32(src, dst, n);
        return;
    case TF_CONV_SCALE: {
        int f32 = c->out == TF_FLOAT32;
        switch (c->in) {
        case TF_UINT8: (f32 ? scale_u8_f32 : scale_u8_f64)(c, src, dst, n); return;
        case TF_INT16: (f32 ? scale_i16_f32 : scale_i16_f64)(c, src, dst, n); return;
        case TF_INT32: (f32 ? scale_i32_f32 : scale_i32_f64)(c, src, dst, n); return;
        case TF_INT64:
            if (c->u64) (f32 ? u64_f32 : u64_f64)(c, src, dst, n);
            else (f32 ? scale_i64_f32 : scale_i64_f64)(c, src, dst, n);
            return;
        case TF_FLOAT32: (f32 ? scale_f32_f32 : scale_f32_f64)(c, src, dst, n); return;
        case TF_FLOAT64: (f32 ? scale_f64_f32 : scale_f64_f64)(c, src, dst, n); return;
        default: return;
        }
    }
    }
}

#define DEFINE_SWAP_STRIDED(name, T, BSWAP)                                             \
    static void name(const char *restrict src, size_t stride, void *restrict dst, size_t n) { \
        T *d = dst;                                                                      \
        for (size_t i = 0; i < n; i++) {                                                 \
            T v;                                                                         \
            memcpy(&v, src + i * stride, sizeof v);                                      \
            d[i] = BSWAP(v);                                                             \
        }                                                                                \
    }
DEFINE_SWAP_STRIDED(swap16_strided, uint16_t, __builtin_bswap16)
DEFINE_SWAP_STRIDED(swap32_strided, uint32_t, __builtin_bswap32)
DEFINE_SWAP_STRIDED(swap64_strided, uint64_t, __builtin_bswap64)

int tf_convert_strided(const tf_conv *c, const void *src, size_t stride, void *dst, size_t n) {
    if (c->kind != TF_CONV_SWAP) return 0;
    switch (c->in_size) {
    case 2: swap16_strided(src, stride, dst, n); return 1;
    case 4: swap32_strided(src, stride, dst, n); return 1;
    case 8: swap64_strided(src, stride, dst, n); return 1;
    default: return 0;
    }
}

/* ---- the write direction: native values to stored big-endian ones ---- */

#define DEFINE_STORE(name, T, BSWAP, TOP)                                                 \
    TF_MULTIVERSION static void name(const void *restrict src, void *restrict dst,        \
                                     size_t n, T flip) {                                 \
        const T *s = src;                                                                \
        T *d = dst;                                                                      \
        for (size_t i = 0; i < n; i++) d[i] = BSWAP((T)(s[i] ^ flip));                   \
    }
#define NOSWAP8(v) (v)
DEFINE_STORE(store8, uint8_t, NOSWAP8, 0x80u)
DEFINE_STORE(store16, uint16_t, __builtin_bswap16, 0x8000u)
DEFINE_STORE(store32, uint32_t, __builtin_bswap32, 0x80000000u)
DEFINE_STORE(store64, uint64_t, __builtin_bswap64, UINT64_C(0x8000000000000000))

void tf_store_be(const void *src, void *dst, size_t n, size_t size, int flip) {
    switch (size) {
    case 1:
        if (flip) store8(src, dst, n, 0x80u);
        else memcpy(dst, src, n);
        return;
    case 2: store16(src, dst, n, flip ? 0x8000u : 0); return;
    case 4: store32(src, dst, n, flip ? 0x80000000u : 0); return;
    default: store64(src, dst, n, flip ? UINT64_C(0x8000000000000000) : 0); return;
    }
}

/* Sum of big-endian 32-bit words, wide (the caller folds). n a multiple
 * of 4. 2^32 words of at most 2^32 - 1 fit in 64 bits, and no caller
 * passes that many. */
TF_MULTIVERSION static uint64_t sum_be32(const void *p, size_t n) {
    const uint32_t *q = p;
    uint64_t s = 0;
    for (size_t i = 0; i < n / 4; i++) s += __builtin_bswap32(q[i]);
    return s;
}

uint32_t tf_ones_sum(uint32_t sum, const void *p, size_t n) {
    uint64_t s = sum;
    const unsigned char *c = p;
    for (size_t done = 0; done + 4 <= n;) {
        size_t take = (n - done) & ~(size_t)3;
        if (take > ((size_t)1 << 30)) take = (size_t)1 << 30;
        s += sum_be32(c + done, take);
        s = (s & 0xFFFFFFFFu) + (s >> 32);
        done += take;
    }
    size_t tail = n & 3;
    if (tail) {
        unsigned char last[4] = {0, 0, 0, 0};
        memcpy(last, c + n - tail, tail);
        s += ((uint32_t)last[0] << 24) | ((uint32_t)last[1] << 16) | ((uint32_t)last[2] << 8) |
             last[3];
    }
    while (s >> 32) s = (s & 0xFFFFFFFFu) + (s >> 32);
    return (uint32_t)s;
}

uint32_t tf_ones_add(uint32_t a, uint32_t b) {
    uint64_t s = (uint64_t)a + b;
    return (uint32_t)((s & 0xFFFFFFFFu) + (s >> 32));
}
