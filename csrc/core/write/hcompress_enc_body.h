/*
 * hcompress_enc_body.h - the width-dependent half of hcompress_enc.c,
 * included by it twice: T, UT (its unsigned twin) and NAME(x) (a suffixed
 * name) are defined around each inclusion. Each function is cfitsio's of
 * the same name (fits_hcompress.c: htrans, shuffle, digitize, encode,
 * doencode, qtree_encode, qtree_onebit), with the output
 * state in `o` and the arithmetic that overflows done in UT, which wraps
 * as cfitsio's compiled int and LONGLONG code does.
 */

#define ADD(x, y) ((T)((UT)(x) + (UT)(y)))
#define SUB(x, y) ((T)((UT)(x) - (UT)(y)))
#define SHL(x, k) ((T)((UT)(x) << (k)))

/* The n elements a[0], a[n2], a[2 * n2], ...: even ones to the first
 * half, odd ones to the second (tmp holds n / 2). */
static void NAME(shuffle)(T a[], int n, int n2, T tmp[]) {
    T *p1, *p2, *pt;
    /* copy odd elements to tmp */
    pt = tmp;
    p1 = &a[n2];
    for (int i = 1; i < n; i += 2) {
        *pt++ = *p1;
        p1 += n2 + n2;
    }
    /* compress even elements into first half of a */
    p1 = &a[n2];
    p2 = &a[n2 + n2];
    for (int i = 2; i < n; i += 2) {
        *p1 = *p2;
        p1 += n2;
        p2 += n2 + n2;
    }
    /* put odd elements into 2nd half */
    pt = tmp;
    for (int i = 1; i < n; i += 2) {
        *p1 = *pt++;
        p1 += n2;
    }
}

/* H-transform of the nx x ny image a, in place: log2n levels, each
 * replacing 2x2 blocks by their sum and differences (rounded, the low bits
 * dropped) and shuffling them into quadrants. */
static int NAME(htrans)(T a[], int nx, int ny) {
    int nmax = nx > ny ? nx : ny;
    int log2n = ceil_log2(nmax);
    /* temporary storage for shuffling elements */
    T *tmp = malloc(sizeof(T) * (size_t)((nmax + 1) / 2));
    if (!tmp) return TF_HCENC_NOMEM;
    /* rounding and shifting masks */
    int shift = 0;
    T mask = -2, mask2 = SHL(mask, 1), prnd = 1, prnd2 = SHL(prnd, 1), nrnd2 = SUB(prnd2, 1);
    T h0, hx, hy, hc;
    int nxtop = nx, nytop = ny;
    for (int k = 0; k < log2n; k++) {
        int oddx = nxtop % 2, oddy = nytop % 2, i, j, s00, s10;
        for (i = 0; i < nxtop - oddx; i += 2) {
            s00 = i * ny;   /* a[i, j] */
            s10 = s00 + ny; /* a[i + 1, j] */
            for (j = 0; j < nytop - oddy; j += 2) {
                /* divide h0, hx, hy, hc by 2 (1 the first time through) */
                h0 = ADD(ADD(a[s10 + 1], a[s10]), ADD(a[s00 + 1], a[s00])) >> shift;
                hx = SUB(ADD(a[s10 + 1], a[s10]), ADD(a[s00 + 1], a[s00])) >> shift;
                hy = ADD(SUB(a[s10 + 1], a[s10]), SUB(a[s00 + 1], a[s00])) >> shift;
                hc = SUB(SUB(a[s10 + 1], a[s10]), SUB(a[s00 + 1], a[s00])) >> shift;
                /* throw away the 2 bottom bits of h0, bottom bit of hx, hy;
                 * nrnd2 = prnd2 - 1 rounds negative numbers the same way */
                a[s10 + 1] = hc;
                a[s10] = (hx >= 0 ? ADD(hx, prnd) : hx) & mask;
                a[s00 + 1] = (hy >= 0 ? ADD(hy, prnd) : hy) & mask;
                a[s00] = (h0 >= 0 ? ADD(h0, prnd2) : ADD(h0, nrnd2)) & mask2;
                s00 += 2;
                s10 += 2;
            }
            if (oddy) {
                /* last element of an odd row: s00 + 1, s10 + 1 are off edge */
                h0 = SHL(ADD(a[s10], a[s00]), 1 - shift);
                hx = SHL(SUB(a[s10], a[s00]), 1 - shift);
                a[s10] = (hx >= 0 ? ADD(hx, prnd) : hx) & mask;
                a[s00] = (h0 >= 0 ? ADD(h0, prnd2) : ADD(h0, nrnd2)) & mask2;
            }
        }
        if (oddx) {
            /* last row of an odd column: s10, s10 + 1 are off edge */
            s00 = i * ny;
            for (j = 0; j < nytop - oddy; j += 2) {
                h0 = SHL(ADD(a[s00 + 1], a[s00]), 1 - shift);
                hy = SHL(SUB(a[s00 + 1], a[s00]), 1 - shift);
                a[s00 + 1] = (hy >= 0 ? ADD(hy, prnd) : hy) & mask;
                a[s00] = (h0 >= 0 ? ADD(h0, prnd2) : ADD(h0, nrnd2)) & mask2;
                s00 += 2;
            }
            if (oddy) {
                /* corner element: s00 + 1, s10, s10 + 1 are off edge */
                h0 = SHL(a[s00], 2 - shift);
                a[s00] = (h0 >= 0 ? ADD(h0, prnd2) : ADD(h0, nrnd2)) & mask2;
            }
        }
        /* shuffle in each dimension to group coefficients by order */
        for (i = 0; i < nxtop; i++) NAME(shuffle)(&a[ny * i], nytop, 1, tmp);
        for (j = 0; j < nytop; j++) NAME(shuffle)(&a[j], nxtop, ny, tmp);
        /* image size halved (rounded up); the divisor doubles after the
         * first reduction, masks and rounding values after each */
        nxtop = (nxtop + 1) >> 1;
        nytop = (nytop + 1) >> 1;
        shift = 1;
        mask = mask2;
        prnd = prnd2;
        mask2 = SHL(mask2, 1);
        prnd2 = SHL(prnd2, 1);
        nrnd2 = SUB(prnd2, 1);
    }
    free(tmp);
    return TF_HCENC_OK;
}

/* Round to a multiple of scale (when above 1). */
static void NAME(digitize)(T a[], int nx, int ny, int scale) {
    if (scale <= 1) return;
    /* (scale + 1) / 2 - 1 in cfitsio's wrapping int */
    T d = (int)((unsigned)scale + 1u) / 2 - 1, s = scale;
    T *end = a + (size_t)nx * ny;
    for (T *p = a; p < end; p++) *p = (*p > 0 ? ADD(*p, d) : SUB(*p, d)) / s;
}

/* The 4-bit codes of the 2x2 blocks of bit `bit` of the nx x ny array a
 * (rows n apart) into b: a[i, j] gives 8, a[i, j + 1] 4, a[i + 1, j] 2,
 * a[i + 1, j + 1] 1, missing ones at odd edges 0. CODE(p, k) is bit
 * `bit` of p moved to bit DOWN + k; the sum is shifted down by DOWN. */
#define ONEBIT_LOOPS(CODE, DOWN)                                                             \
    int i, j, k = 0; /* k is index of b[i/2, j/2] */                                         \
    for (i = 0; i < nx - 1; i += 2) {                                                        \
        const T *r0 = a + n * i, *r1 = r0 + n; /* a[i, .], a[i + 1, .] */                    \
        for (j = 0; j < ny - 1; j += 2)                                                      \
            b[k++] = (unsigned char)((CODE(r0[j], 3) | CODE(r0[j + 1], 2) | CODE(r1[j], 1) | \
                                      CODE(r1[j + 1], 0)) >> (DOWN));                        \
        if (j < ny) /* odd row length: the last element */                                   \
            b[k++] = (unsigned char)((CODE(r0[j], 3) | CODE(r1[j], 1)) >> (DOWN));           \
    }                                                                                        \
    if (i < nx) { /* odd column length: the last row */                                      \
        const T *r0 = a + n * i;                                                             \
        for (j = 0; j < ny - 1; j += 2)                                                      \
            b[k++] = (unsigned char)((CODE(r0[j], 3) | CODE(r0[j + 1], 2)) >> (DOWN));       \
        if (j < ny) /* both odd: the corner element */                                       \
            b[k++] = (unsigned char)(CODE(r0[j], 3) >> (DOWN));                              \
    }

/* cfitsio's masks (b0 = 1 << bit, b1 = b0 << 1, ...) in 64 bits, which
 * hold b3 for every plane of the 32-bit path and up to plane 60 of the
 * 64-bit one. (cfitsio's are as wide as T: b3 shifts out from plane 29 or
 * 61, and the arithmetic shift down gives codes above 15 from plane 28 or
 * 60; here every plane gets its 4 bits.) */
static void NAME(qtree_onebit_masks)(const T a[], int n, int nx, int ny, unsigned char b[],
                                     int bit) {
    const uint64_t m0 = (uint64_t)1 << bit, m1 = m0 << 1, m2 = m0 << 2, m3 = m0 << 3;
    const uint64_t mk[4] = {m0, m1, m2, m3};
#define CODE(p, k) (((uint64_t)(UT)(p) << (k)) & mk[k])
    ONEBIT_LOOPS(CODE, bit)
#undef CODE
}

/* Planes 61 and 62 of the 64-bit path: each bit shifted down instead. */
static void NAME(qtree_onebit_high)(const T a[], int n, int nx, int ny, unsigned char b[],
                                    int bit) {
#define CODE(p, k) ((((UT)(p) >> bit) & 1) << (k))
    ONEBIT_LOOPS(CODE, 0)
#undef CODE
}

static void NAME(qtree_onebit)(const T a[], int n, int nx, int ny, unsigned char b[], int bit) {
    if (bit + 3 < 64 && !TF_HCENC_TEST_HIGH) NAME(qtree_onebit_masks)(a, n, nx, ny, b, bit);
    else NAME(qtree_onebit_high)(a, n, nx, ny, b, bit);
}
#undef ONEBIT_LOOPS

/* Bit planes nbitplanes - 1 .. 0 of the nqx x nqy quadrant a (rows n
 * apart), each as a quadtree (its Huffman codes, the top level last, in
 * reverse order) or, where that would be longer, a bitmap. */
static void NAME(qtree_encode)(hc_out *o, const T a[], int n, int nqx, int nqy, int nbitplanes,
                               const hc_work *w) {
    unsigned char *scratch = w->scratch, *reduced = w->reduced, *buffer = w->buffer;
    /* log2n is log2 of max(nqx, nqy) rounded up to next power of 2 */
    int log2n = ceil_log2(nqx > nqy ? nqx : nqy);
    /* buffer size: half the blocks, rounded up */
    int bmax = (((nqx + 1) / 2) * ((nqy + 1) / 2) + 1) / 2;
    /* encode each bit plane, starting with the top */
    for (int bit = nbitplanes - 1; bit >= 0 && !o->overflow; bit--) {
        int b = 0;
        o->bitbuffer = 0;
        o->bits_to_go3 = 0;
        /* on first pass copy a to scratch */
        NAME(qtree_onebit)(a, n, nqx, nqy, scratch, bit);
        int nx = (nqx + 1) >> 1, ny = (nqy + 1) >> 1;
        /* copy non-zero values to the buffer, written in reverse order;
         * a full buffer means the quadtree expands the data: bitmap */
        int expands = bufcopy(o, scratch, nx * ny, buffer, &b, bmax);
        const unsigned char *level = scratch;
        for (int k = 1; k < log2n && !expands; k++) { /* log2n reductions */
            qtree_reduce(level, ny, nx, ny, reduced);
            level = reduced;
            nx = (nx + 1) >> 1;
            ny = (ny + 1) >> 1;
            expands = bufcopy(o, reduced, nx * ny, buffer, &b, bmax);
        }
        if (expands) {
            write_bdirect(o, nqx, nqy, scratch);
            continue;
        }
        /* the quadtree code, then the buffer in reverse order */
        output_nybble(o, 0xF);
        if (o->bits_to_go3 > 0) /* the last few bits */
            output_nbits(o, (int)(o->bitbuffer & ((1u << o->bits_to_go3) - 1)), o->bits_to_go3);
        else if (b == 0) /* a zero nybble when there are no 1s at all */
            output_huffman(o, 0);
        output_rbytes(o, buffer, b);
    }
}

/* The four quadrants' bit planes, then a zero nybble to end them. */
static void NAME(doencode)(hc_out *o, T a[], int nx, int ny, const unsigned char nbitplanes[3],
                           const hc_work *w) {
    int nx2 = (nx + 1) / 2, ny2 = (ny + 1) / 2;
    start_outputing_bits(o);
    NAME(qtree_encode)(o, &a[0], ny, nx2, ny2, nbitplanes[0], w);
    NAME(qtree_encode)(o, &a[ny2], ny, nx2, ny / 2, nbitplanes[1], w);
    NAME(qtree_encode)(o, &a[ny * nx2], ny, nx / 2, ny2, nbitplanes[1], w);
    NAME(qtree_encode)(o, &a[ny * nx2 + ny2], ny, nx / 2, ny / 2, nbitplanes[2], w);
    output_nybble(o, 0); /* EOF symbol */
    done_outputing_bits(o);
}

/* The header, the coded magnitudes, then the sign bits. */
static int NAME(encode)(hc_out *o, T a[], int nx, int ny, int scale) {
    int nel = nx * ny, nx2 = (nx + 1) / 2, ny2 = (ny + 1) / 2;
    /* the sign bits (8 per byte, zeroed), then the quadtree's work areas
     * for the first (largest) quadrant, bmax as qtree_encode computes it */
    int bmax = (((nx2 + 1) / 2) * ((ny2 + 1) / 2) + 1) / 2;
    size_t nsignbytes = ((size_t)nel + 7) / 8;
    unsigned char *signbits = calloc(1, nsignbytes + 5 * (size_t)bmax);
    if (!signbits) return TF_HCENC_NOMEM;
    hc_work w;
    w.scratch = signbits + nsignbytes;
    w.reduced = w.scratch + 2 * (size_t)bmax;
    w.buffer = w.reduced + 2 * (size_t)bmax;

    qwrite(o, code_magic, sizeof(code_magic));
    writeint(o, nx); /* size of image */
    writeint(o, ny);
    writeint(o, scale); /* scale factor for digitization */
    /* the first value (sum of all pixels: the only one that does not
     * compress well) */
    writelonglong(o, (long long)a[0]);
    a[0] = 0;

    /* one sign bit per non-zero value (1: negative), 8 to a byte, first
     * at the top; the values become magnitudes (the negation wraps, as
     * cfitsio's). Branch-free: noise has random signs. */
    int nsign = 0, nbits = 0;
    unsigned cur = 0;
    for (int i = 0; i < nel; i++) {
        T v = a[i];
        unsigned neg = v < 0, nz = v != 0;
        cur = cur << nz | neg;
        nbits += (int)nz;
        a[i] = neg ? (T)((UT)0 - (UT)v) : v;
        if (nbits == 8) { /* this byte is full: the next one */
            signbits[nsign++] = (unsigned char)cur;
            cur = 0;
            nbits = 0;
        }
    }
    if (nbits > 0) /* the last byte's bits at its top */
        signbits[nsign++] = (unsigned char)(cur << (8 - nbits));

    /* bit planes of quadrants 0 = bottom left, 1 = bottom right or top
     * left, 2 = top right: the bits of their largest values */
    T vmax[3] = {0, 0, 0};
    for (int k = 0; k < nx; k++) { /* row k: columns below ny2, the rest */
        const T *row = a + (size_t)k * ny;
        int q = k >= nx2;
        T m0 = vmax[q], m1 = vmax[q + 1];
        for (int j = 0; j < ny2; j++) m0 = row[j] > m0 ? row[j] : m0;
        for (int j = ny2; j < ny; j++) m1 = row[j] > m1 ? row[j] : m1;
        vmax[q] = m0;
        vmax[q + 1] = m1;
    }
    unsigned char nbitplanes[3];
    for (int q = 0; q < 3; q++)
        for (nbitplanes[q] = 0; vmax[q] > 0; vmax[q] >>= 1, nbitplanes[q]++) {}
    qwrite(o, nbitplanes, sizeof(nbitplanes));

    if (!o->overflow) NAME(doencode)(o, a, nx, ny, nbitplanes, &w);
    if (nsign > 0) qwrite(o, signbits, (size_t)nsign);
    free(signbits);
    return o->overflow ? TF_HCENC_FULL : TF_HCENC_OK;
}

/* tf_hcompress, tf_hcompress64 (hcompress_enc.h) */
int NAME(tf_hcompress)(T *a, int ny, int nx, int scale, char *out, long *nbytes) {
    int st = check_args(a, ny, nx, out, nbytes);
    if (st) {
        if (nbytes) *nbytes = 0;
        return st;
    }
    hc_out o = {(unsigned char *)out, 0, *nbytes > 0 ? *nbytes : 0, 0, 0, 8, 0, 0};
    st = NAME(htrans)(a, nx, ny);
    if (!st) {
        NAME(digitize)(a, nx, ny, scale);
        st = NAME(encode)(&o, a, nx, ny, scale);
    }
    *nbytes = st ? 0 : o.n;
    return st;
}

#undef ADD
#undef SUB
#undef SHL
