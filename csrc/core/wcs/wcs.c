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

#include <wcslib/wcs.h>
#include <wcslib/wcserr.h>
#include <wcslib/wcsfix.h>
#include <wcslib/wcshdr.h>

#include "../common/internal.h"

#define KEYREC 80
/* Points per wcslib call: its scratch arrays stay in cache. */
#define CHUNK 4096
/* Below this many points per thread, one thread is faster. */
#define MIN_PER_THREAD 20000

struct tf_wcs {
    struct wcsprm wcs;      /* set (wcsset) */
    int img_naxis;
    int64_t img_shape[TF_MAX_DIMS]; /* NAXISn, FITS order */
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
    int to_world;
    const double *in;
    double *out;
    int64_t n;
    int status;       /* wcslib's */
    char msg[512];
} job;

/* Transform job->n points with a private copy of the wcsprm when `copy`,
 * else with src itself (cast: the single-threaded path owns it). */
static void run_job(job *j, int copy) {
    struct wcsprm local;
    struct wcsprm *wp = (struct wcsprm *)j->src;
    int nax = j->src->naxis;
    double *scratch = NULL;
    int *stat = NULL;
    j->status = 0;
    if (copy) {
        memset(&local, 0, sizeof local);
        local.flag = -1;
        if ((j->status = wcssub(1, j->src, NULL, NULL, &local)) != 0 ||
            (j->status = wcsset(&local)) != 0) {
            snprintf(j->msg, sizeof j->msg, "%s",
                     local.err ? local.err->msg : wcs_errmsg[j->status]);
            wcsfree(&local);
            return;
        }
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
                     double *out, int64_t n, int threads) {
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
        jobs[t] = (job){.src = &w->wcs, .to_world = to_world, .in = in + at * nax,
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
