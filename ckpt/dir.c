/* ckpt/dir.c — the checkpoint directory: step_*.h5 names, `latest`, pruning to `keep`, and the
 * choice of the newest checkpoint that verifies. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/internal.h"
#include "core/fsio.h"

/* Is name exactly "step_<digits>.h5" with at least 8 digits? Sets *step. */
static int ck_parse_name(const char *name, int64_t *step) {
    if (strncmp(name, "step_", 5) != 0) return 0;
    const char *p = name + 5;
    int nd = 0;
    int64_t v = 0;
    while (*p >= '0' && *p <= '9') {
        if (v > (INT64_MAX - 9) / 10) return 0;
        v = v * 10 + (*p - '0');
        p++;
        nd++;
    }
    if (nd < 8 || strcmp(p, ".h5") != 0) return 0;
    *step = v;
    return 1;
}

static int ck_entry_cmp_desc(const void *a, const void *b) {
    int64_t x = ((const ck_entry *)a)->step, y = ((const ck_entry *)b)->step;
    return (x < y) - (x > y);
}

tg_status ck_list(const char *dir, ck_entry **out, int *n_out, tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0, cap = 0;
    DIR *d = opendir(dir);
    *out = NULL;
    *n_out = 0;
    if (!d) {
        if (errno == ENOENT) return TG_OK;
        return tg_error_set(err, TG_ERR_IO, "opendir %s: %s", dir, strerror(errno));
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t step;
        if (!ck_parse_name(de->d_name, &step) || strlen(de->d_name) >= sizeof e->name) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ck_entry *ne = realloc(e, (size_t)cap * sizeof *e);
            TG_CHECK_ALLOC(err, ne);
            e = ne;
        }
        e[n].step = step;
        snprintf(e[n].name, sizeof e[n].name, "%s", de->d_name);
        n++;
    }
    if (n > 1) qsort(e, (size_t)n, sizeof *e, ck_entry_cmp_desc);
    *out = e;
    *n_out = n;
    e = NULL;
cleanup:
    closedir(d);
    free(e);
    return st;
}

/* <dir>/latest := name (one line), crash-safely (tg_fs_file_replace). */
tg_status ck_latest_write(const char *dir, const char *name, tg_error *err) {
    char dst[TG_PATH_MAX], line[300];
    if (snprintf(dst, sizeof dst, "%s/latest", dir) >= (int)sizeof dst)
        return tg_error_set(err, TG_ERR_ARG, "checkpoint dir path too long: %s", dir);
    const int n = snprintf(line, sizeof line, "%s\n", name);
    return tg_fs_file_replace(dst, line, (size_t)n, 0, err);
}

/* Keeps newest_step (complete, and pointed to by `latest` when this runs) and the keep-1
 * checkpoints before it; deletes older ones. Files of later steps (left by another run) are
 * neither counted nor touched. */
tg_status ck_prune(const char *dir, int keep, int64_t newest_step, const tg_log *lg,
              tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0, kept = 0;
    if (keep <= 0) return TG_OK;
    TG_TRY(ck_list(dir, &e, &n, err));
    for (int i = 0; i < n; i++) { /* newest first */
        if (e[i].step > newest_step) continue;
        if (kept < keep) {
            kept++;
            continue;
        }
        char p[TG_PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", dir, e[i].name) >= (int)sizeof p) continue;
        if (unlink(p) != 0 && errno != ENOENT)
            TG_FAIL(err, TG_ERR_IO, "delete old checkpoint %s: %s", p, strerror(errno));
        tg_log_debug(lg, "checkpoint: deleted %s (keep=%d)", p, keep);
    }
cleanup:
    free(e);
    return st;
}

/* The newest checkpoint in ckpt_dir that verifies (st_out == NULL) or loads (st_out != NULL). */
static tg_status ck_latest(const char *ckpt_dir, const tg_log *lg, tg_ckpt_state *st_out,
                           char *path, size_t cap, int *found, tg_error *err) {
    tg_status st = TG_OK;
    ck_entry *e = NULL;
    int n = 0;
    *found = 0;
    TG_TRY(ck_list(ckpt_dir, &e, &n, err));
    for (int i = 0; i < n; i++) {
        char p[TG_PATH_MAX];
        tg_error verr;
        if (snprintf(p, sizeof p, "%s/%s", ckpt_dir, e[i].name) >= (int)sizeof p) continue;
        tg_status vst = st_out ? tg_ckpt_load(p, st_out, &verr) : tg_ckpt_verify(p, &verr);
        if (vst != TG_OK) {
            tg_log_warn(lg, "%s; %s", verr.msg,
                        i + 1 < n ? "falling back to an older checkpoint" : "no older checkpoint");
            continue;
        }
        if (snprintf(path, cap, "%s", p) >= (int)cap) {
            if (st_out) tg_ckpt_state_free(st_out);
            TG_FAIL(err, TG_ERR_ARG, "checkpoint path does not fit (%zu bytes): %s", cap, p);
        }
        *found = 1;
        break;
    }
cleanup:
    free(e);
    return st;
}

tg_status tg_ckpt_find_latest(const char *ckpt_dir, const tg_log *lg, char *path, size_t cap,
                              int *found, tg_error *err) {
    return ck_latest(ckpt_dir, lg, NULL, path, cap, found, err);
}

tg_status tg_ckpt_load_latest(const char *ckpt_dir, const tg_log *lg, tg_ckpt_state *st,
                              char *path, size_t cap, int *found, tg_error *err) {
    memset(st, 0, sizeof *st);
    return ck_latest(ckpt_dir, lg, st, path, cap, found, err);
}
