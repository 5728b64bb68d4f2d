/*
 * hcompress_body.h - the width-dependent half of hcompress.c, included by
 * it twice: T, UT (its unsigned twin), NBITS and NAME(x) (a suffixed
 * name) are defined around each inclusion. Sums and differences wrap
 * through UT, as cfitsio's int and LONGLONG code does in practice.
 */

#define ADD(x, y) ((T)((UT)(x) + (UT)(y)))
#define SUB(x, y) ((T)((UT)(x) - (UT)(y)))
#define SHL(x, k) ((T)((UT)(x) << (k)))
#define MIN(x, y) ((x) < (y) ? (x) : (y))
#define MAX(x, y) ((x) > (y) ? (x) : (y))

/* OR plane `bit` of the block codes q (dense, ceil(nqx/2) x ceil(nqy/2))
 * into the nqx x nqy quadrant at a, rows n apart: code bit 8 to the top
 * left pixel of its block, 4 top right, 2 bottom left, 1 bottom right,
 * clipped at odd edges. Branch-free inside: low planes are noise. */
static void NAME(bitins)(const uint8_t *q, int nqx, int nqy, T *a, int64_t n, int bit) {
#define OR_BIT(p, v, k) ((p) = (T)((UT)(p) | (((UT)(v) >> (k)) & 1) << bit))
    for (int i = 0; i < nqx; i += 2) {
        T *r0 = a + (int64_t)i * n, *r1 = r0 + n;
        int j = 0;
        if (i + 1 < nqx) {
            for (; j + 1 < nqy; j += 2, q++) {
                OR_BIT(r0[j], *q, 3);
                OR_BIT(r0[j + 1], *q, 2);
                OR_BIT(r1[j], *q, 1);
                OR_BIT(r1[j + 1], *q, 0);
            }
            if (j < nqy) {
                OR_BIT(r0[j], *q, 3);
                OR_BIT(r1[j], *q, 1);
                q++;
            }
        } else {
            for (; j + 1 < nqy; j += 2, q++) {
                OR_BIT(r0[j], *q, 3);
                OR_BIT(r0[j + 1], *q, 2);
            }
            if (j < nqy) OR_BIT(r0[j], *q++, 3);
        }
    }
#undef OR_BIT
}

/* The n elements a[0], a[stride], ...: the first ceil(n/2) go to the even
 * places, the rest to the odd ones (the inverse of the encoder's shuffle). */
static void NAME(unshuffle)(T *a, int n, T *tmp) {
    const int half = (n + 1) >> 1;
    memcpy(tmp, a + half, sizeof(T) * (size_t)(n - half));
    for (int i = half - 1; i > 0; i--) a[2 * i] = a[i];
    for (int i = 1, k = 0; i < n; i += 2, k++) a[i] = tmp[k];
}

/* The same along columns, for the first `width` columns of rows `ny`
 * apart, moving whole rows (tmp holds (n - ceil(n/2)) * width). */
static void NAME(unshuffle_rows)(T *a, int n, int64_t ny, int width, T *tmp) {
    const int half = (n + 1) >> 1;
    const size_t row = sizeof(T) * (size_t)width;
    for (int i = half; i < n; i++) memcpy(tmp + (size_t)(i - half) * width, a + i * ny, row);
    for (int i = half - 1; i > 0; i--) memcpy(a + 2 * i * ny, a + i * ny, row);
    for (int i = 1, k = 0; i < n; i += 2, k++) memcpy(a + i * ny, tmp + (size_t)k * width, row);
}

/* Clamp the change s (rounded toward zero from diff / 2^k) to +-smax. */
static inline T NAME(nudge)(T diff, T coef, int k, T smax) {
    T s = SUB(diff, SHL(coef, k));
    s = s >= 0 ? s >> k : (T)(ADD(s, ((T)1 << k) - 1) >> k);
    return MAX(MIN(s, smax), -smax);
}

/* Smooth the nxtop x nytop coefficients (rows ny apart) toward values
 * interpolated from the neighbouring zones' means, each change within
 * scale / 2; edge zones stay. */
static void NAME(hsmooth)(T *a, int nxtop, int nytop, int64_t ny, int scale) {
    const T smax = (T)(scale >> 1);
    if (smax <= 0) return;
    const int64_t ny2 = 2 * ny;
    for (int i = 2; i < nxtop - 2; i += 2) { /* x slopes */
        T *p = a + i * ny, *px = p + ny;
        for (int j = 0; j < nytop; j += 2) {
            T hm = p[j - ny2], h0 = p[j], hp = p[j + ny2];
            T dmax = SHL(MAX(MIN(SUB(hp, h0), SUB(h0, hm)), 0), 2);
            T dmin = SHL(MIN(MAX(SUB(hp, h0), SUB(h0, hm)), 0), 2);
            if (dmin < dmax) {
                T diff = MAX(MIN(SUB(hp, hm), dmax), dmin);
                px[j] = ADD(px[j], NAME(nudge)(diff, px[j], 3, smax));
            }
        }
    }
    for (int i = 0; i < nxtop; i += 2) { /* y slopes */
        T *p = a + i * ny;
        for (int j = 2; j < nytop - 2; j += 2) {
            T hm = p[j - 2], h0 = p[j], hp = p[j + 2];
            T dmax = SHL(MAX(MIN(SUB(hp, h0), SUB(h0, hm)), 0), 2);
            T dmin = SHL(MIN(MAX(SUB(hp, h0), SUB(h0, hm)), 0), 2);
            if (dmin < dmax) {
                T diff = MAX(MIN(SUB(hp, hm), dmax), dmin);
                p[j + 1] = ADD(p[j + 1], NAME(nudge)(diff, p[j + 1], 3, smax));
            }
        }
    }
    for (int i = 2; i < nxtop - 2; i += 2) { /* curvatures */
        T *p = a + i * ny, *px = p + ny;
        for (int j = 2; j < nytop - 2; j += 2) {
            T hmm = p[j - ny2 - 2], hpm = p[j + ny2 - 2], hmp = p[j - ny2 + 2];
            T hpp = p[j + ny2 + 2], h0 = p[j];
            T diff = SUB(SUB(ADD(hpp, hmm), hmp), hpm);
            T hx2 = SHL(px[j], 1), hy2 = SHL(p[j + 1], 1);
            T m1 = MIN(SUB(SUB(MAX(SUB(hpp, h0), 0), hx2), hy2),
                       SUB(ADD(MAX(SUB(h0, hpm), 0), hx2), hy2));
            T m2 = MIN(ADD(SUB(MAX(SUB(h0, hmp), 0), hx2), hy2),
                       ADD(ADD(MAX(SUB(hmm, h0), 0), hx2), hy2));
            T dmax = SHL(MIN(m1, m2), 4);
            m1 = MAX(SUB(SUB(MIN(SUB(hpp, h0), 0), hx2), hy2),
                     SUB(ADD(MIN(SUB(h0, hpm), 0), hx2), hy2));
            m2 = MAX(ADD(SUB(MIN(SUB(h0, hmp), 0), hx2), hy2),
                     ADD(ADD(MIN(SUB(hmm, h0), 0), hx2), hy2));
            T dmin = SHL(MAX(m1, m2), 4);
            if (dmin < dmax) {
                diff = MAX(MIN(diff, dmax), dmin);
                px[j + 1] = ADD(px[j + 1], NAME(nudge)(diff, px[j + 1], 6, smax));
            }
        }
    }
}

/* x rounded to a multiple of the mask's bit, halves away from zero as
 * cfitsio rounds them (pr for x >= 0, nr below). */
#define ROUND(x, pr, nr, mask) ((T)(ADD(x, (x) >= 0 ? (pr) : (nr)) & (mask)))

/* Invert the H-transform of the nx x ny coefficients in place. */
static void NAME(hinv)(T *a, int nx, int ny, int smooth, int scale, T *tmp) {
    const int log2n = ceil_log2(nx > ny ? nx : ny);
    /* cfitsio's 1 << (log2n - 1); for a 1 x 1 tile the shift count is -1,
     * which x86 takes modulo the width: kept, it zeroes that one pixel */
    T bit0 = (T)((UT)1 << ((log2n - 1) & (NBITS - 1)));
    T bit1 = SHL(bit0, 1), bit2 = SHL(bit0, 2);
    T mask0 = SUB(0, bit0), mask1 = SHL(mask0, 1), mask2 = SHL(mask0, 2);
    T prnd0 = bit0 >> 1, prnd1 = bit1 >> 1, prnd2 = bit2 >> 1;
    T nrnd0 = SUB(prnd0, 1), nrnd1 = SUB(prnd1, 1), nrnd2 = SUB(prnd2, 1);
    int shift = 1;
    a[0] = ROUND(a[0], prnd2, nrnd2, mask2);
    int nxtop = 1, nytop = 1, nxf = nx, nyf = ny;
    int64_t c = (int64_t)1 << log2n;
    for (int k = log2n - 1; k >= 0; k--) {
        c >>= 1;
        nxtop = 2 * nxtop - (nxf <= c);
        nytop = 2 * nytop - (nyf <= c);
        if (nxf > c) nxf -= (int)c;
        if (nyf > c) nyf -= (int)c;
        if (k == 0) { /* the last level divides by 4, and prnd0 is 0 */
            nrnd0 = 0;
            shift = 2;
        }
        for (int i = 0; i < nxtop; i++) NAME(unshuffle)(a + (int64_t)ny * i, nytop, tmp);
        NAME(unshuffle_rows)(a, nxtop, ny, nytop, tmp);
        if (smooth) NAME(hsmooth)(a, nxtop, nytop, ny, scale);
        for (int i = 0; i < nxtop; i += 2) {
            T *r0 = a + (int64_t)ny * i, *r1 = r0 + ny;
            const int two_rows = i + 1 < nxtop;
            int j = 0;
            if (two_rows) {
                for (; j + 1 < nytop; j += 2) {
                    T h0 = r0[j], hx = r1[j], hy = r0[j + 1], hc = r1[j + 1];
                    hx = ROUND(hx, prnd1, nrnd1, mask1);
                    hy = ROUND(hy, prnd1, nrnd1, mask1);
                    hc = ROUND(hc, prnd0, nrnd0, mask0);
                    /* bit0 of hc goes to hx, hy; bits 0, 1 of all three to h0 */
                    T lowbit0 = hc & bit0;
                    hx = hx >= 0 ? SUB(hx, lowbit0) : ADD(hx, lowbit0);
                    hy = hy >= 0 ? SUB(hy, lowbit0) : ADD(hy, lowbit0);
                    T lowbit1 = (hc ^ hx ^ hy) & bit1;
                    h0 = h0 >= 0 ? SUB(ADD(h0, lowbit0), lowbit1)
                                 : ADD(h0, lowbit0 == 0 ? lowbit1 : SUB(lowbit0, lowbit1));
                    r1[j + 1] = (T)(ADD(ADD(h0, hx), ADD(hy, hc)) >> shift);
                    r1[j] = (T)(SUB(ADD(h0, hx), ADD(hy, hc)) >> shift);
                    r0[j + 1] = (T)(SUB(ADD(h0, hy), ADD(hx, hc)) >> shift);
                    r0[j] = (T)(ADD(SUB(SUB(h0, hx), hy), hc) >> shift);
                }
                if (j < nytop) { /* odd row length: the last column */
                    T h0 = r0[j], hx = ROUND(r1[j], prnd1, nrnd1, mask1);
                    T lowbit1 = hx & bit1;
                    h0 = h0 >= 0 ? SUB(h0, lowbit1) : ADD(h0, lowbit1);
                    r1[j] = (T)(ADD(h0, hx) >> shift);
                    r0[j] = (T)(SUB(h0, hx) >> shift);
                }
            } else { /* odd column length: the last row */
                for (; j + 1 < nytop; j += 2) {
                    T h0 = r0[j], hy = ROUND(r0[j + 1], prnd1, nrnd1, mask1);
                    T lowbit1 = hy & bit1;
                    h0 = h0 >= 0 ? SUB(h0, lowbit1) : ADD(h0, lowbit1);
                    r0[j + 1] = (T)(ADD(h0, hy) >> shift);
                    r0[j] = (T)(SUB(h0, hy) >> shift);
                }
                if (j < nytop) r0[j] = (T)(r0[j] >> shift); /* the corner */
            }
        }
        bit1 = bit0;
        bit0 = bit0 >> 1;
        mask1 = mask0;
        mask0 = mask0 >> 1;
        prnd1 = prnd0;
        prnd0 = prnd0 >> 1;
        nrnd1 = nrnd0;
        nrnd0 = SUB(prnd0, 1);
    }
}

/* Planes, signs, sum, scale, inverse transform: the nx x ny pixels of a
 * stream whose header h has been read, into a (zeroed here). */
static int NAME(decode)(bitin *b, const header *h, int smooth, T *a, T *tmp, uint8_t *q,
                        size_t qcap) {
    const size_t n = (size_t)h->nx * (size_t)h->ny;
    memset(a, 0, sizeof(T) * n);
    quadrant quad[4];
    quadrants(h, quad);
    for (int k = 0; k < 4; k++) {
        const quadrant *Q = &quad[k];
        int most = Q->nqx > Q->nqy ? Q->nqx : Q->nqy;
        int log2n = most > 1 ? ceil_log2(most) : 0;
        for (int bit = Q->planes - 1; bit >= 0; bit--) {
            int st = plane_codes(b, q, qcap, Q->nqx, Q->nqy, log2n);
            if (st) return st;
            if (overrun(b)) return TF_HCOMP_SHORT;
            NAME(bitins)(q, Q->nqx, Q->nqy, a + Q->off, h->ny, bit);
        }
    }
    if (take(b, 4) != 0) return overrun(b) ? TF_HCOMP_SHORT : TF_HCOMP_BAD;
    if (overrun(b)) return TF_HCOMP_SHORT;
    /* signs, from the next byte */
    if (b->nb & 7) take(b, b->nb & 7);
    for (size_t i = 0; i < n; i++) {
        if (!a[i]) continue;
        if (b->nb < 1) refill(b);
        if (b->buf >> 63) a[i] = SUB(0, a[i]);
        b->buf <<= 1;
        b->nb--;
    }
    if (overrun(b)) return TF_HCOMP_SHORT;
    a[0] = (T)h->sum;
    if (h->scale > 1)
        for (size_t i = 0; i < n; i++) a[i] = (T)((UT)a[i] * (UT)(T)h->scale);
    NAME(hinv)(a, h->nx, h->ny, smooth, h->scale, tmp);
    return TF_HCOMP_OK;
}

#undef ADD
#undef SUB
#undef SHL
#undef MIN
#undef MAX
#undef ROUND
