/*
 * wcs.c - an HDU's world coordinate system through wcslib.
 *
 * The header comes from the core's own parse (tf_header_load): the cards
 * are written back as 80-character keyrecords and given to wcspih, so
 * wcslib never sees the user's path, as cfitsio should not either. wcslib
 * does the projections, the spectral axes and the distortions it reads
 * from headers (SIP and TPV become its disprm); we only choose the
 * alternate description, apply wcsfix as astropy.wcs does by default, and
 * move between 0-based pixels (ours, astropy's origin 0) and wcslib's
 * 1-based ones.
 *
 * A wcsprm is not thread-safe, even to transform (wcss2p may set it up
 * again and writes scratch state), so each worker thread transforms with
 * its own copy (wcssub).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <wcslib/dis.h>
#include <wcslib/wcs.h>
#include <wcslib/wcserr.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include "../common/internal.h"

#define KEYREC 80
/* Highest SIP order the closed form takes (wcslib's own limit is 9). */
#define SIP_MAX 9
/* TPV's highest degree (PVi_0 .. PVi_39) and its monomials x0^a x1^b,
 * a + b <= 7, at mono(a + b, b). */
#define TPV_DEG 7
#define TPV_NM ((TPV_DEG + 1) * (TPV_DEG + 2) / 2)
#define mono(d, b) ((d) * ((d) + 1) / 2 + (b))
/* Points per wcslib call: its scratch arrays stay in cache. */
#define CHUNK 4096
/* Below this many points per thread, one thread is faster. */
#define MIN_PER_THREAD 20000

/* The gnomonic (TAN) projection of a 2-axis celestial WCS, without
 * distortion or with SIP, in closed form. wcslib goes world -> native spherical
 * (phi, theta) -> projection plane, with an atan2, an asin and two sincos
 * more per point than the composed formulas need; the common case of a
 * survey image gets these instead (tan_s2p, tan_p2s), from the constants
 * wcsset derived (Euler angles, the projection's r0 and offsets, CDELT*PC,
 * CRPIX), and agrees with wcslib to rounding. SIP's inverse is Newton's
 * method with the polynomials' exact derivatives, where wcslib's general
 * distortion code iterates with finite differences. */
typedef struct tan_fast {
    int on;
    int lng, lat;          /* world axes */
    double e0, s3, s4;     /* euler[0], cos and sin of euler[1] */
    double e1;             /* euler[1], degrees */
    double e2, sp, cp;     /* euler[2] (phi_p), its sin and cos */
    double r0, x0, y0;     /* prj.r0, prj.x0, prj.y0 */
    double m[4], inv[4];   /* CDELT*PC (world k, pixel i at [k*2+i]), its inverse */
    double crpix[2];       /* 1-based */
    /* SIP (TAN-SIP): u + A(u, v), v + B(u, v) on pixel offsets from CRPIX
     * before CDELT*PC; world -> pixel solves it by Newton's method. */
    int sip, sip_order;
    double sa[SIP_MAX + 1][SIP_MAX + 1], sb[SIP_MAX + 1][SIP_MAX + 1];
    /* TPV (TAN with wcslib's sequent TPV distortion): m and inv are PC
     * alone, and intermediate world coordinate k is tcdelt[k] * P_k(x0, x1)
     * with (x0, x1) = PC (p - CRPIX). P_k's coefficient of x0^a x1^b sits
     * at mono(a + b, b); tdx / tdy are the coefficients of its
     * derivatives, tr those of r, r^3, r^5, r^7 (r^2 = x0^2 + x1^2), and
     * tlin the inverse of the polynomials' linear part, Newton's start. */
    int tpv, tpv_deg, tpv_rad;
    double tc[2][TPV_NM], tdx[2][TPV_NM], tdy[2][TPV_NM], tr[2][4];
    double tcdelt[2], tlin[4];
} tan_fast;

struct tf_wcs {
    struct wcsprm wcs;      /* set (wcsset) */
    int img_naxis;
    int64_t img_shape[TF_MAX_DIMS]; /* NAXISn, FITS order */
    tan_fast tan;
};

static pthread_once_t err_once = PTHREAD_ONCE_INIT;
static void enable_errors(void) { wcserr_enable(1); }

/* Write card (key, value, type) as one 80-character keyrecord. Returns 0
 * for cards that wcspih has no use for (commentary, HIERARCH). */
static int put_keyrec(char *rec, const char *key, const char *value, char type) {
    size_t kl = strlen(key);
    if (kl == 0 || kl > 8 || type == TF_CARD_COMMENTARY) return 0;
    memset(rec, ' ', KEYREC);
    memcpy(rec, key, kl);
    rec[8] = '=';
    size_t p = 10;
    if (type == TF_CARD_STRING) {
        rec[p++] = '\'';
        for (const char *c = value; *c && p < KEYREC - 2; c++) {
            if (*c == '\'') {
                if (p >= KEYREC - 3) break;
                rec[p++] = '\'';
            }
            rec[p++] = *c;
        }
        rec[p++] = '\'';
    } else if (type != TF_CARD_UNDEFINED) {
        size_t vl = strlen(value);
        if (vl > KEYREC - p) vl = KEYREC - p;
        memcpy(rec + p, value, vl);
    }
    return 1;
}

/* The keywords whose rejection by wcspih changes the transformation: a
 * rejected one is an error, not a silently dropped card (astropy warns). */
static int core_keyword(const char *key) {
    /* Each followed by a digit (an axis or index), so that PCOUNT or
     * PSCAL1 are not taken for PCi_j or PSi_m. */
    static const char *indexed[] = {"CTYPE", "CRVAL", "CRPIX", "CDELT", "CD", "PC",
                                    "PV", "PS", "CROTA", "CUNIT", "A_", "B_", "AP_", "BP_",
                                    "DP", "DQ", "CPDIS", "CQDIS"};
    for (size_t i = 0; i < sizeof indexed / sizeof *indexed; i++) {
        size_t n = strlen(indexed[i]);
        if (strncmp(key, indexed[i], n) == 0 && key[n] >= '0' && key[n] <= '9') return 1;
    }
    /* LONPOLE, LATPOLE, and with an alternate letter. */
    if ((strncmp(key, "LONPOLE", 7) == 0 || strncmp(key, "LATPOLE", 7) == 0) &&
        (key[7] == 0 || (key[7] >= 'A' && key[7] <= 'Z' && key[8] == 0)))
        return 1;
    return 0;
}

/* After wcspih rejected keyrecords: find the first rejected one that
 * matters. wcspih with ctrl -1 removes the keyrecords it accepted from
 * its input, so what remains and looks like a WCS keyword was rejected. */
static int first_rejected(const char *header, int nkeyrec, char *key, char *card) {
    char *copy = malloc((size_t)nkeyrec * KEYREC + 1);
    if (!copy) return 0;
    memcpy(copy, header, (size_t)nkeyrec * KEYREC);
    copy[(size_t)nkeyrec * KEYREC] = 0;
    int nrej = 0, nwcs = 0, found = 0;
    struct wcsprm *tmp = NULL;
    if (wcspih(copy, nkeyrec, WCSHDR_all, -1, &nrej, &nwcs, &tmp) == 0) wcsvfree(&nwcs, &tmp);
    size_t len = strlen(copy);
    for (size_t off = 0; off + KEYREC <= len && !found; off += KEYREC) {
        char k[9];
        memcpy(k, copy + off, 8);
        k[8] = 0;
        for (int i = 7; i >= 0 && k[i] == ' '; i--) k[i] = 0;
        if (k[0] && core_keyword(k)) {
            strcpy(key, k);
            memcpy(card, copy + off, KEYREC);
            card[KEYREC] = 0;
            for (int i = KEYREC - 1; i >= 0 && card[i] == ' '; i--) card[i] = 0;
            found = 1;
        }
    }
    free(copy);
    return found;
}

/* Which keywords a wcsset failure points at, by wcslib's status. */
static const char *blame(int status) {
    switch (status) {
    case WCSERR_SINGULAR_MTX: return "PCi_j / CDi_j / CDELTi";
    case WCSERR_BAD_CTYPE: return "CTYPEi";
    case WCSERR_BAD_PARAM: return "CRVALi / PVi_m / LONPOLE / LATPOLE";
    case WCSERR_BAD_COORD_TRANS: return "CTYPEi / PVi_m / CRVALi";
    case WCSERR_ILL_COORD_TRANS: return "PVi_m / CRVALi";
    default: return "the WCS keywords";
    }
}

static void ctypes(const struct wcsprm *w, char *out, size_t n) {
    out[0] = 0;
    size_t used = 0;
    for (int i = 0; i < w->naxis && used + 1 < n; i++) {
        int k = snprintf(out + used, n - used, "%sCTYPE%d = '%s'", i ? ", " : "", i + 1,
                         w->ctype[i]);
        if (k < 0) break;
        used += (size_t)k;
    }
}

#define D2R (3.141592653589793238462643 / 180.0)
#define R2D (180.0 / 3.141592653589793238462643)

/* SIP coefficients from the header cards, when wcslib's prior distortion
 * is SIP on both axes, relative to CRPIX and unscaled (as wcspih sets it
 * up), and of order SIP_MAX at most. 0: not for the closed form. */
static int sip_setup(tan_fast *f, const struct wcsprm *w, tf_file *file, int ncards) {
    const struct disprm *d = w->lin.dispre;
    if (w->alt[0] && w->alt[0] != ' ') return 0;
    if (d->naxis != 2 || !d->dtype || !d->offset || !d->scale) return 0;
    for (int i = 0; i < 2; i++) {
        if (strcmp(d->dtype[i], "SIP") != 0) return 0;
        for (int j = 0; j < 2; j++)
            if (d->offset[i][j] != w->lin.crpix[j] || d->scale[i][j] != 1.0) return 0;
    }
    int order[2] = {-1, -1};
    for (int i = 0; i < ncards; i++) {
        const char *key, *value, *comment;
        char type;
        int p, q, n = 0;
        tf_header_card(file, i, &key, &value, &comment, &type);
        if (key[0] != 'A' && key[0] != 'B') continue;
        int b = key[0] == 'B';
        if (strcmp(key + 1, "_ORDER") == 0) {
            order[b] = atoi(value);
        } else if (sscanf(key + 1, "_%d_%d%n", &p, &q, &n) == 2 && key[1 + n] == 0) {
            if (p < 0 || q < 0 || p > SIP_MAX || q > SIP_MAX) return 0;
            char *end;
            double v = strtod(value, &end);
            if (end == value || !isfinite(v)) return 0;
            (b ? f->sb : f->sa)[p][q] = v;
        }
    }
    if (order[0] < 0 || order[1] < 0 || order[0] > SIP_MAX || order[1] > SIP_MAX) return 0;
    f->sip_order = order[0] > order[1] ? order[0] : order[1];
    /* wcslib ignores terms above A_ORDER / B_ORDER: so do we. */
    for (int p = 0; p <= SIP_MAX; p++)
        for (int q = 0; q <= SIP_MAX; q++) {
            if (p + q > order[0]) f->sa[p][q] = 0.0;
            if (p + q > order[1]) f->sb[p][q] = 0.0;
        }
    f->sip = 1;
    return 1;
}

/* A(u, v) and B(u, v), and with d their partial derivatives. */
static inline void sip_eval(const tan_fast *f, double u, double v, double *a, double *b,
                            double *d) {
    double up[SIP_MAX + 1], vp[SIP_MAX + 1];
    int n = f->sip_order;
    up[0] = vp[0] = 1.0;
    for (int k = 1; k <= n; k++) {
        up[k] = up[k - 1] * u;
        vp[k] = vp[k - 1] * v;
    }
    double fa = 0, fb = 0, au = 0, av = 0, bu = 0, bv = 0;
    for (int p = 0; p <= n; p++)
        for (int q = 0; p + q <= n; q++) {
            double ca = f->sa[p][q], cb = f->sb[p][q];
            if (ca == 0.0 && cb == 0.0) continue;
            double m = up[p] * vp[q];
            fa += ca * m;
            fb += cb * m;
            if (d) {
                double mu = p ? p * up[p - 1] * vp[q] : 0.0;
                double mv = q ? q * up[p] * vp[q - 1] : 0.0;
                au += ca * mu;
                av += ca * mv;
                bu += cb * mu;
                bv += cb * mv;
            }
        }
    *a = fa;
    *b = fb;
    if (d) {
        d[0] = au;
        d[1] = av;
        d[2] = bu;
        d[3] = bv;
    }
}

/* Solve u + A(u, v) = U, v + B(u, v) = V by Newton's method from (U, V).
 * 0 when it does not converge (far outside where the polynomial is
 * meant to hold). */
static int sip_invert(const tan_fast *f, double U, double V, double *pu, double *pv) {
    double u = U, v = V;
    for (int it = 0; it < 50; it++) {
        double a, b, d[4];
        sip_eval(f, u, v, &a, &b, d);
        double r1 = u + a - U, r2 = v + b - V;
        double j11 = 1.0 + d[0], j12 = d[1], j21 = d[2], j22 = 1.0 + d[3];
        double det = j11 * j22 - j12 * j21;
        if (det == 0.0 || !isfinite(det)) return 0;
        double du = (r1 * j22 - r2 * j12) / det, dv = (j11 * r2 - j21 * r1) / det;
        u -= du;
        v -= dv;
        if (!isfinite(u) || !isfinite(v)) return 0;
        if (fabs(du) + fabs(dv) <= 1e-13 * (1.0 + fabs(u) + fabs(v))) {
            *pu = u;
            *pv = v;
            return 1;
        }
    }
    return 0;
}

/* TPV from what wcsset made of it: the PVi_m of a TPV header become
 * wcslib's sequent distortion "TPV" on both celestial axes, evaluated as
 * its TPD polynomial of PVi_0 .. PVi_39 (dis.c, tpvset and tpd1..tpd7).
 * TPD orders a degree d's terms u^d, u^(d-1) v, ..., v^d, and an odd
 * degree's r^d after them: index tpd_base[d] + b for u^(d-b) v^b. Axis
 * k's variables (u, v) are the intermediate coordinates its axis map
 * names: (x0, x1) for the longitude, (x1, x0) for the latitude. 0: not
 * for the closed form (any offset, scale, auxiliary variables or inverse
 * polynomial: a DQia record set by hand, which wcslib takes as it is). */
static int tpv_setup(tan_fast *f, const struct wcsprm *w) {
    static const int tpd_base[TPV_DEG + 1] = {0, 1, 4, 7, 12, 17, 24, 31};
    static const int tpd_rad[4] = {3, 11, 23, 39};
    const struct disprm *d = w->lin.disseq;
    if (w->lin.dispre || d->naxis != 2 || !d->dtype || !d->Nhat || !d->axmap || !d->offset ||
        !d->scale || !d->iparm || !d->dparm || !d->docorr)
        return 0;
    int deg = 0;
    for (int k = 0; k < 2; k++) {
        if (strcmp(d->dtype[k], "TPV") != 0 || d->Nhat[k] != 2 || d->docorr[k] != 0) return 0;
        const int *ip = d->iparm[k];
        const double *p = d->dparm[k];
        if (!ip || !p || !d->axmap[k]) return 0;
        /* iparm: type, length, coefficient count, then TPD's forward and
         * inverse counts, auxiliary and radial flags (dis.c, I_TPD*). */
        int nco = ip[2];
        if (ip[1] < 7 || nco < 1 || nco > 40 || ip[3] != nco || ip[4] != 0 || ip[5] != 0) return 0;
        int a0 = d->axmap[k][0], a1 = d->axmap[k][1];
        if (!((a0 == 0 && a1 == 1) || (a0 == 1 && a1 == 0))) return 0;
        for (int j = 0; j < 2; j++)
            if (d->offset[k][j] != 0.0 || d->scale[k][j] != 1.0) return 0;
        for (int i = 0; i < nco; i++)
            if (!isfinite(p[i])) return 0;
        for (int dg = 0; dg <= TPV_DEG; dg++)
            for (int b = 0; b <= dg; b++) {
                int i = tpd_base[dg] + b;
                double c = i < nco ? p[i] : 0.0;
                if (c == 0.0) continue;
                /* u^(dg-b) v^b: with (u, v) = (x1, x0), x0^b x1^(dg-b). */
                f->tc[k][mono(dg, a0 == 0 ? b : dg - b)] = c;
                if (dg > deg) deg = dg;
            }
        for (int r = 0; r < 4; r++) {
            double c = tpd_rad[r] < nco ? p[tpd_rad[r]] : 0.0;
            f->tr[k][r] = c;
            if (c != 0.0) f->tpv_rad = 1;
        }
    }
    f->tpv_deg = deg;
    for (int k = 0; k < 2; k++)
        for (int dg = 1; dg <= deg; dg++)
            for (int b = 0; b <= dg; b++) {
                double c = f->tc[k][mono(dg, b)];
                int a = dg - b;
                if (a > 0) f->tdx[k][mono(dg - 1, b)] += a * c;
                if (b > 0) f->tdy[k][mono(dg - 1, b - 1)] += b * c;
            }
    /* Newton's start: the linear part (without r) solved exactly; the
     * identity when it is singular. */
    double a11 = f->tc[0][mono(1, 0)], a12 = f->tc[0][mono(1, 1)];
    double a21 = f->tc[1][mono(1, 0)], a22 = f->tc[1][mono(1, 1)];
    double det = a11 * a22 - a12 * a21;
    if (det != 0.0 && isfinite(det)) {
        f->tlin[0] = a22 / det;
        f->tlin[1] = -a12 / det;
        f->tlin[2] = -a21 / det;
        f->tlin[3] = a11 / det;
    } else {
        f->tlin[0] = f->tlin[3] = 1.0;
        f->tlin[1] = f->tlin[2] = 0.0;
    }
    f->tcdelt[0] = w->lin.cdelt[0];
    f->tcdelt[1] = w->lin.cdelt[1];
    if (f->tcdelt[0] == 0.0 || f->tcdelt[1] == 0.0) return 0;
    f->tpv = 1;
    return 1;
}

/* P_0 and P_1 at (x, y), and with d their partial derivatives
 * (dP0/dx, dP0/dy, dP1/dx, dP1/dy), for a polynomial of degree n. Inlined
 * for each n (tpv_eval), so that the loops unroll: a third of the
 * instructions of one loop for every degree. */
static inline __attribute__((always_inline)) void
tpv_eval_n(const tan_fast *f, double x, double y, double *p, double *d, const int n) {
    double m[TPV_NM];
    const int nm = mono(n + 1, 0);
    m[0] = 1.0;
    _Pragma("GCC unroll 8") for (int dg = 1; dg <= n; dg++) {
        const double *prev = m + mono(dg - 1, 0);
        double *cur = m + mono(dg, 0);
        _Pragma("GCC unroll 8") for (int b = 0; b < dg; b++) cur[b] = prev[b] * x;
        cur[dg] = prev[dg - 1] * y;
    }
    double p0 = 0, p1 = 0;
    _Pragma("GCC unroll 36") for (int i = 0; i < nm; i++) {
        p0 += f->tc[0][i] * m[i];
        p1 += f->tc[1][i] * m[i];
    }
    if (d) {
        int nd = mono(n, 0);
        double d0 = 0, d1 = 0, d2 = 0, d3 = 0;
        _Pragma("GCC unroll 36") for (int i = 0; i < nd; i++) {
            d0 += f->tdx[0][i] * m[i];
            d1 += f->tdy[0][i] * m[i];
            d2 += f->tdx[1][i] * m[i];
            d3 += f->tdy[1][i] * m[i];
        }
        d[0] = d0;
        d[1] = d1;
        d[2] = d2;
        d[3] = d3;
    }
    if (f->tpv_rad) {
        double s = x * x + y * y, r = sqrt(s);
        const double *c0 = f->tr[0], *c1 = f->tr[1];
        p0 += r * (c0[0] + s * (c0[1] + s * (c0[2] + s * c0[3])));
        p1 += r * (c1[0] + s * (c1[1] + s * (c1[2] + s * c1[3])));
        if (d && r > 0.0) {
            /* d r^n / dx = n r^(n-2) x; at r = 0 the derivative of r has
             * no value, and Newton's step uses the polynomial's alone. */
            double g0 = (c0[0] + s * (3 * c0[1] + s * (5 * c0[2] + s * 7 * c0[3]))) / r;
            double g1 = (c1[0] + s * (3 * c1[1] + s * (5 * c1[2] + s * 7 * c1[3]))) / r;
            d[0] += g0 * x;
            d[1] += g0 * y;
            d[2] += g1 * x;
            d[3] += g1 * y;
        }
    }
    p[0] = p0;
    p[1] = p1;
}

static void tpv_eval(const tan_fast *f, double x, double y, double *p, double *d) {
    switch (f->tpv_deg) {
    case 0: case 1: tpv_eval_n(f, x, y, p, d, 1); break;
    case 2: tpv_eval_n(f, x, y, p, d, 2); break;
    case 3: tpv_eval_n(f, x, y, p, d, 3); break;
    case 4: tpv_eval_n(f, x, y, p, d, 4); break;
    case 5: tpv_eval_n(f, x, y, p, d, 5); break;
    case 6: tpv_eval_n(f, x, y, p, d, 6); break;
    default: tpv_eval_n(f, x, y, p, d, 7); break;
    }
}

/* Intermediate world coordinates (img, lin axis order) -> pixel offsets
 * from CRPIX: solve P(x, y) = img / cdelt by Newton's method from the
 * linear part's solution, then (u, v) = PC^-1 (x, y). Converged when the
 * pixel is within about 1e-12 (plus rounding far out), or a step moves it
 * by at most 1e-10; 0 when that does not happen within 30 steps. */
static int tpv_invert(const tan_fast *f, const double *img, double *pu, double *pv) {
    double X = img[0] / f->tcdelt[0], Y = img[1] / f->tcdelt[1];
    double bx = X - f->tc[0][0], by = Y - f->tc[1][0];
    double x = f->tlin[0] * bx + f->tlin[1] * by, y = f->tlin[2] * bx + f->tlin[3] * by;
    double prev = 0.0;
    for (int it = 0; it < 30; it++) {
        double p[2], d[4];
        tpv_eval(f, x, y, p, d);
        double r1 = p[0] - X, r2 = p[1] - Y;
        double det = d[0] * d[3] - d[1] * d[2];
        if (det == 0.0 || !isfinite(det)) return 0;
        double dx = (r1 * d[3] - r2 * d[1]) / det, dy = (d[0] * r2 - d[2] * r1) / det;
        x -= dx;
        y -= dy;
        if (!isfinite(x) || !isfinite(y)) return 0;
        double su = f->inv[0] * dx + f->inv[1] * dy, sv = f->inv[2] * dx + f->inv[3] * dy;
        double u = f->inv[0] * x + f->inv[1] * y, v = f->inv[2] * x + f->inv[3] * y;
        /* Converging quadratically, the error left after a step of h is
         * about K h^2, K = h / h_prev^2: done when that or h is small. */
        double h = fabs(su) + fabs(sv), tol = 1e-10 + 1e-15 * (fabs(u) + fabs(v));
        int done = h <= tol || (it > 0 && h < 1e-3 * prev && h * (h / (prev * prev)) * h <= 0.01 * tol);
        prev = h;
        if (done) {
            *pu = u;
            *pv = v;
            return 1;
        }
    }
    return 0;
}

/* Take the closed-form TAN path when the WCS is exactly what it covers:
 * two celestial axes, TAN, no distortion but SIP or TPV (alone), and a
 * native pole that is not the celestial one (euler[4] != 0; wcslib
 * handles that rotation apart, with its own longitude normalisation). */
static void tan_setup(tf_wcs *t, tf_file *file, int ncards) {
    struct wcsprm *w = &t->wcs;
    tan_fast *f = &t->tan;
    memset(f, 0, sizeof *f);
    if (w->naxis != 2 || w->lng < 0 || w->lat < 0 || w->cubeface >= 0) return;
    /* wcsset turned a TPV projection into TAN and a sequent distortion. */
    if (strcmp(w->cel.prj.code, "TAN") != 0) return;
    if (w->lin.disseq ? !tpv_setup(f, w) : w->lin.dispre && !sip_setup(f, w, file, ncards))
        return;
    const double *e = w->cel.euler;
    if (e[4] == 0.0) return;
    /* With a sequent distortion wcslib applies CDELT after it. */
    const double *pc = w->lin.pc, *cd = w->lin.cdelt;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 2; i++) f->m[k * 2 + i] = (f->tpv ? 1.0 : cd[k]) * pc[k * 2 + i];
    double det = f->m[0] * f->m[3] - f->m[1] * f->m[2];
    if (det == 0.0 || !isfinite(det)) return;
    f->inv[0] = f->m[3] / det;
    f->inv[1] = -f->m[1] / det;
    f->inv[2] = -f->m[2] / det;
    f->inv[3] = f->m[0] / det;
    f->lng = w->lng;
    f->lat = w->lat;
    f->e0 = e[0];
    f->e1 = e[1];
    f->s3 = e[3];
    f->s4 = e[4];
    f->e2 = e[2];
    f->sp = sin(e[2] * D2R);
    f->cp = cos(e[2] * D2R);
    f->r0 = w->cel.prj.r0;
    f->x0 = w->cel.prj.x0;
    f->y0 = w->cel.prj.y0;
    f->crpix[0] = w->lin.crpix[0];
    f->crpix[1] = w->lin.crpix[1];
    f->on = 1;
}

/* World -> 0-based pixel. The native direction of (lng, lat) is
 * (X, Y, Z) = (cos theta cos(phi - phi_p), cos theta sin(phi - phi_p),
 * sin theta), as in wcslib's sphs2x; TAN's r = r0 cot theta with
 * phi = phi_p + atan2(Y, X) composes to the two lines below. theta <= 0
 * is outside the projection (wcslib's bounds check): NaN. A TPV point
 * whose Newton iteration fails is left NaN, listed in retry and counted
 * in the return value. */
static int64_t tan_s2p(const tan_fast *f, const double *in, double *out, int64_t n,
                       int64_t *retry) {
    int64_t nretry = 0;
    for (int64_t k = 0; k < n; k++) {
        const double *wd = in + 2 * k;
        double sl, cl, sa, ca;
        double dl = (wd[f->lng] - f->e0) * D2R, la = wd[f->lat] * D2R;
        sl = sin(dl);
        cl = cos(dl);
        sa = sin(la);
        ca = cos(la);
        double X = sa * f->s4 - ca * f->s3 * cl;
        double Y = -ca * sl;
        double Z = sa * f->s3 + ca * f->s4 * cl;
        double *o = out + 2 * k;
        if (!(Z > 0.0)) {
            o[0] = o[1] = NAN;
            continue;
        }
        double q = f->r0 / Z;
        double img[2];
        img[f->lng] = q * (f->sp * X + f->cp * Y) - f->x0;
        img[f->lat] = -q * (f->cp * X - f->sp * Y) - f->y0;
        double u, v;
        if (f->tpv) {
            if (!tpv_invert(f, img, &u, &v)) {
                /* wcslib's own iteration decides (run_job). */
                o[0] = o[1] = NAN;
                if (retry) retry[nretry] = k;
                nretry++;
                continue;
            }
        } else {
            u = f->inv[0] * img[0] + f->inv[1] * img[1];
            v = f->inv[2] * img[0] + f->inv[3] * img[1];
            if (f->sip && !sip_invert(f, u, v, &u, &v)) {
                o[0] = o[1] = NAN;
                continue;
            }
        }
        o[0] = u + f->crpix[0] - 1.0;
        o[1] = v + f->crpix[1] - 1.0;
    }
    return nretry;
}

/* atan2 through atan of a ratio at most 1 in size: glibc's atan2 costs
 * about twice its atan (callgrind), and the quotient's rounding moves the
 * angle by about one unit in the last place. atan2's sign conventions for
 * zeros do not matter here: y = -0 with x < 0 gives +pi, the same
 * longitude after normalisation. */
static inline double atan2_via_atan(double y, double x) {
    const double pi = 3.141592653589793238462643;
    if (fabs(x) >= fabs(y)) {
        if (x == 0.0) return 0.0; /* both zero */
        double a = atan(y / x);
        if (x < 0.0) a += y >= 0.0 ? pi : -pi;
        return a;
    }
    return (y > 0.0 ? pi / 2 : -pi / 2) - atan(x / y);
}

/* 0-based pixel -> world: the inverse, with wcslib's longitude
 * normalisation (sphx2s). */
static void tan_p2s(const tan_fast *f, const double *in, double *out, int64_t n) {
    for (int64_t k = 0; k < n; k++) {
        const double *p = in + 2 * k;
        double px = p[0] + 1.0 - f->crpix[0], py = p[1] + 1.0 - f->crpix[1];
        if (f->sip) {
            double a, b;
            sip_eval(f, px, py, &a, &b, NULL);
            px += a;
            py += b;
        }
        double img[2] = {f->m[0] * px + f->m[1] * py, f->m[2] * px + f->m[3] * py};
        if (f->tpv) {
            double t[2];
            tpv_eval(f, img[0], img[1], t, NULL);
            img[0] = f->tcdelt[0] * t[0];
            img[1] = f->tcdelt[1] * t[1];
        }
        double x = img[f->lng] + f->x0, y = img[f->lat] + f->y0;
        /* The native direction, scaled by r0 / sin theta > 0. */
        double n0 = -y, n1 = x, n2 = f->r0;
        double a = n0 * f->cp + n1 * f->sp, b = n1 * f->cp - n0 * f->sp;
        double c0 = -f->s3 * a + f->s4 * n2, c1 = -b, c2 = f->s4 * a + f->s3 * n2;
        double dlng;
        if (c0 != 0.0 || c1 != 0.0) {
            dlng = atan2_via_atan(c1, c0) * R2D;
        } else {
            /* At a pole: wcslib's change of origin of longitude. */
            double phi = (x == 0.0 && y == 0.0) ? 0.0 : atan2(x, -y) * R2D;
            dlng = f->e1 < 90.0 ? phi - f->e2 + 180.0 : -(phi - f->e2);
        }
        double lng = f->e0 + dlng;
        if (f->e0 >= 0.0) {
            if (lng < 0.0) lng += 360.0;
        } else if (lng > 0.0) {
            lng -= 360.0;
        }
        if (lng > 360.0) lng -= 360.0;
        else if (lng < -360.0) lng += 360.0;
        double *o = out + 2 * k;
        o[f->lng] = lng;
        o[f->lat] = atan2_via_atan(c2, sqrt(c0 * c0 + c1 * c1)) * R2D;
    }
}

int tf_wcs_load(tf_file *f, int hdu, const char *alt, tf_wcs **out) {
    int rc = TF_OK, ncards = 0, nrej = 0, nwcs = 0;
    char *header = NULL;
    struct wcsprm *all = NULL;
    tf_wcs *w = NULL;
    char a = ' ';
    RETURN_ERROR_IF(!out, f, TF_EINVAL, "tf_wcs_load: out is NULL");
    *out = NULL;
    if (alt && alt[0] && alt[0] != ' ') {
        RETURN_ERROR_IF(alt[1] || alt[0] < 'A' || alt[0] > 'Z', f, TF_EINVAL,
                        "alternate WCS must be \"\" or one letter A-Z, not \"%s\"", alt);
        a = alt[0];
    }
    pthread_once(&err_once, enable_errors);

    tf_hdu_info info;
    FORWARD_IF_ERROR(tf_hdu_info_get(f, hdu, &info));
    FORWARD_IF_ERROR(tf_header_load(f, hdu, &ncards));
    header = malloc((size_t)(ncards + 1) * KEYREC + 1);
    GOTO_ERROR_IF(!header, f, TF_ENOMEM, "no memory for the header of the WCS");
    int nkeyrec = 0;
    for (int i = 0; i < ncards; i++) {
        const char *key, *value, *comment;
        char type;
        tf_header_card(f, i, &key, &value, &comment, &type);
        nkeyrec += put_keyrec(header + (size_t)nkeyrec * KEYREC, key, value, type);
    }
    memcpy(header + (size_t)nkeyrec * KEYREC, "END", 3);
    memset(header + (size_t)nkeyrec * KEYREC + 3, ' ', KEYREC - 3);
    nkeyrec++;
    header[(size_t)nkeyrec * KEYREC] = 0;

    int st = wcspih(header, nkeyrec, WCSHDR_all, 0, &nrej, &nwcs, &all);
    GOTO_ERROR_IF(st == WCSHDRERR_MEMORY, f, TF_ENOMEM, "no memory to parse the WCS");
    GOTO_ERROR_IF(st, f, TF_EINVAL, "wcslib could not parse the header (wcspih status %d)", st);
    if (nrej > 0) {
        char key[9], card[KEYREC + 1];
        GOTO_ERROR_IF(first_rejected(header, nkeyrec, key, card), f, TF_EINVAL,
                      "WCS keyword %s rejected by wcslib: \"%s\"", key, card);
    }
    /* "WCS" or "WCS A", for messages. */
    char label[6] = "WCS";
    if (a != ' ') { label[3] = ' '; label[4] = a; label[5] = 0; }
    int which = -1;
    for (int i = 0; i < nwcs; i++)
        if (all[i].alt[0] == a || (a == ' ' && all[i].alt[0] == 0)) which = i;
    GOTO_ERROR_IF(which < 0, f, TF_EINVAL, "no %s in the header%s", label,
                  a == ' ' ? " (no CTYPE, CRVAL, CRPIX, CDELT, CD or PC keywords)" : "");

    w = calloc(1, sizeof *w);
    GOTO_ERROR_IF(!w, f, TF_ENOMEM, "no memory for the WCS");
    w->wcs.flag = -1;
    st = wcssub(1, all + which, NULL, NULL, &w->wcs);
    GOTO_ERROR_IF(st, f, st == WCSERR_MEMORY ? TF_ENOMEM : TF_EINVAL, "wcslib: %s",
                  w->wcs.err ? w->wcs.err->msg : wcs_errmsg[st]);

    if (info.kind == TF_HDU_IMAGE) {
        w->img_naxis = info.ndim;
        for (int i = 0; i < info.ndim; i++) w->img_shape[i] = info.shape[info.ndim - 1 - i];
    }
    /* astropy.wcs fixes every header it reads (WCS(fix=True)): the same
     * fixes, with no unsafe unit translations. Failures are only warnings
     * there: they are ignored here too. */
    {
        int naxisn[TF_MAX_DIMS];
        int stat[NWCSFIX];
        struct wcserr einfo[NWCSFIX];
        memset(einfo, 0, sizeof einfo);
        for (int i = 0; i < w->img_naxis; i++)
            naxisn[i] = w->img_shape[i] > 2147483647 ? 2147483647 : (int)w->img_shape[i];
        wcsfixi(0, w->img_naxis == w->wcs.naxis ? naxisn : NULL, &w->wcs, stat, einfo);
        for (int i = 0; i < NWCSFIX; i++) free(einfo[i].msg);
    }
    st = wcsset(&w->wcs);
    if (st) {
        char types[512];
        ctypes(&w->wcs, types, sizeof types);
        GOTO_ERROR_IF(1, f, st == WCSERR_MEMORY ? TF_ENOMEM : TF_EINVAL,
                      "%s cannot be set up, check %s (%s): wcslib: %s", label, blame(st), types,
                      w->wcs.err ? w->wcs.err->msg : wcs_errmsg[st]);
    }
    tan_setup(w, f, ncards);
    *out = w;
    w = NULL;
cleanup:
    if (all) wcsvfree(&nwcs, &all);
    free(header);
    tf_wcs_free(w);
    return rc;
}

void tf_wcs_free(tf_wcs *w) {
    if (!w) return;
    wcsfree(&w->wcs);
    free(w);
}

int tf_wcs_naxis(const tf_wcs *w) { return w->wcs.naxis; }

void tf_wcs_image_shape(const tf_wcs *w, int *n, int64_t *naxisn) {
    *n = w->img_naxis;
    for (int i = 0; i < w->img_naxis; i++) naxisn[i] = w->img_shape[i];
}

int tf_wcs_axis(const tf_wcs *w, int i, const char **ctype, const char **cunit,
                double *crval, double *crpix, double *scale) {
    if (i < 0 || i >= w->wcs.naxis) return TF_EINVAL;
    int n = w->wcs.naxis;
    if (ctype) *ctype = w->wcs.ctype[i];
    if (cunit) *cunit = w->wcs.cunit[i];
    if (crval) *crval = w->wcs.crval[i];
    if (crpix) *crpix = w->wcs.crpix[i];
    if (scale) {
        /* After wcsset, lin.piximg is CDELT*PC (or CD) in row-major order:
         * world axis k, pixel axis i at [k*n + i]. wcslib leaves it NULL
         * when PC is unity: then it is CDELT alone. */
        const struct linprm *lin = &w->wcs.lin;
        double s = 0;
        for (int k = 0; k < n; k++) {
            double m = lin->piximg ? lin->piximg[k * n + i]
                                   : (k == i ? lin->cdelt[k] : 0.0);
            s += m * m;
        }
        *scale = sqrt(s);
    }
    return TF_OK;
}

typedef struct job {
    const struct wcsprm *src;
    const tan_fast *tan;    /* on: the closed form instead of wcslib */
    int to_world;
    const double *in;
    double *out;
    int64_t n;
    int status;       /* wcslib's */
    char msg[512];
} job;

/* A thread's own copy of the wcsprm, set up; 0 with job->status set. */
static int copy_wcs(job *j, struct wcsprm *local) {
    memset(local, 0, sizeof *local);
    local->flag = -1;
    if ((j->status = wcssub(1, j->src, NULL, NULL, local)) != 0 ||
        (j->status = wcsset(local)) != 0) {
        snprintf(j->msg, sizeof j->msg, "%s", local->err ? local->err->msg : wcs_errmsg[j->status]);
        wcsfree(local);
        return 0;
    }
    return 1;
}

/* Transform job->n points with a private copy of the wcsprm when `copy`,
 * else with src itself (cast: the single-threaded path owns it). */
static void run_job(job *j, int copy) {
    struct wcsprm local;
    struct wcsprm *wp = (struct wcsprm *)j->src;
    int nax = j->src->naxis;
    double *scratch = NULL;
    int *stat = NULL;
    int64_t *retry = NULL;
    j->status = 0;
    if (j->tan && j->tan->on && (j->to_world || !j->tan->tpv)) {
        /* Reads only constants: no copy, no scratch. */
        if (j->to_world) tan_p2s(j->tan, j->in, j->out, j->n);
        else tan_s2p(j->tan, j->in, j->out, j->n, NULL);
        return;
    }
    if (j->tan && j->tan->on) {
        /* TPV back from the sky: the points Newton's method leaves go to
         * wcslib one by one, which converges or fails as in astropy. */
        if (!(retry = malloc(CHUNK * sizeof *retry))) {
            j->status = WCSERR_MEMORY;
            snprintf(j->msg, sizeof j->msg, "no memory for the transformation");
            return;
        }
        for (int64_t s = 0; s < j->n && !j->status; s += CHUNK) {
            int64_t m = j->n - s < CHUNK ? j->n - s : CHUNK;
            const double *in = j->in + 2 * s;
            double *out = j->out + 2 * s;
            int64_t nr = tan_s2p(j->tan, in, out, m, retry);
            for (int64_t r = 0; r < nr && !j->status; r++) {
                if (copy && wp == j->src && !copy_wcs(j, &local)) break;
                if (copy) wp = &local;
                double phi, theta, img[2];
                int stat;
                int64_t k = retry[r];
                int st = wcss2p(wp, 1, 2, in + 2 * k, &phi, &theta, img, out + 2 * k, &stat);
                if (st == WCSERR_BAD_WORLD) {
                    out[2 * k] = out[2 * k + 1] = NAN;
                } else if (st) {
                    j->status = st;
                    snprintf(j->msg, sizeof j->msg, "%s", wp->err ? wp->err->msg : wcs_errmsg[st]);
                } else {
                    out[2 * k] -= 1.0;
                    out[2 * k + 1] -= 1.0;
                }
            }
        }
        free(retry);
        if (copy && wp != j->src) wcsfree(&local);
        return;
    }
    if (copy) {
        if (!copy_wcs(j, &local)) return;
        wp = &local;
    }
    size_t chunk = j->n < CHUNK ? (size_t)j->n : CHUNK;
    if (chunk == 0) chunk = 1;
    /* phi, theta, imgcrd and the 1-based pixels. */
    scratch = malloc(chunk * (2 + 2 * (size_t)nax) * sizeof(double));
    stat = malloc(chunk * sizeof(int));
    if (!scratch || !stat) {
        j->status = WCSERR_MEMORY;
        snprintf(j->msg, sizeof j->msg, "no memory for the transformation");
        goto done;
    }
    double *phi = scratch, *theta = phi + chunk, *img = theta + chunk, *pix = img + chunk * nax;
    for (int64_t s = 0; s < j->n; s += (int64_t)chunk) {
        int m = (int)(j->n - s < (int64_t)chunk ? j->n - s : (int64_t)chunk);
        const double *in = j->in + s * nax;
        double *out = j->out + s * nax;
        int st;
        if (j->to_world) {
            for (int64_t k = 0; k < (int64_t)m * nax; k++) pix[k] = in[k] + 1.0;
            st = wcsp2s(wp, m, nax, pix, img, phi, theta, out, stat);
        } else {
            st = wcss2p(wp, m, nax, in, phi, theta, img, out, stat);
            for (int64_t k = 0; k < (int64_t)m * nax; k++) out[k] -= 1.0;
        }
        if (st == WCSERR_BAD_PIX || st == WCSERR_BAD_WORLD) {
            /* Points outside the projection: NaN, as astropy gives. */
            for (int k = 0; k < m; k++)
                if (stat[k])
                    for (int c = 0; c < nax; c++) out[(int64_t)k * nax + c] = NAN;
        } else if (st) {
            j->status = st;
            snprintf(j->msg, sizeof j->msg, "%s", wp->err ? wp->err->msg : wcs_errmsg[st]);
            goto done;
        }
    }
done:
    free(scratch);
    free(stat);
    if (copy) wcsfree(&local);
}

static void *worker(void *arg) {
    run_job(arg, 1);
    return NULL;
}

int tf_wcs_transform(tf_file *f, const tf_wcs *w, int to_world, const double *in,
                     double *out, int64_t n, int threads, int flags) {
    RETURN_ERROR_IF(!w || (n > 0 && (!in || !out)), f, TF_EINVAL, "tf_wcs_transform: NULL argument");
    if (n <= 0) return TF_OK;
    int nt = tf_auto_threads(threads);
    int64_t most = n / MIN_PER_THREAD;
    if (most < 1) most = 1;
    if (nt > most) nt = (int)most;
    if (nt > TF_MAX_THREADS) nt = TF_MAX_THREADS;
    job jobs[TF_MAX_THREADS];
    int nax = w->wcs.naxis;
    int64_t per = (n + nt - 1) / nt, at = 0;
    for (int t = 0; t < nt; t++) {
        int64_t k = n - at < per ? n - at : per;
        jobs[t] = (job){.src = &w->wcs, .tan = (flags & TF_WCS_WCSLIB) ? NULL : &w->tan, .to_world = to_world, .in = in + at * nax,
                        .out = out + at * nax, .n = k};
        at += k;
    }
    if (nt == 1) {
        /* The caller's tf_wcs is used by this thread only. */
        run_job(&jobs[0], 0);
    } else {
        tf_run_jobs(worker, jobs, sizeof(job), nt);
    }
    for (int t = 0; t < nt; t++) {
        RETURN_ERROR_IF(jobs[t].status == WCSERR_MEMORY, f, TF_ENOMEM, "wcslib: %s", jobs[t].msg);
        RETURN_ERROR_IF(jobs[t].status, f, TF_EINVAL, "wcslib: %s", jobs[t].msg);
    }
    return TF_OK;
}
