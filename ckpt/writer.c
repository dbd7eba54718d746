/* ckpt/writer.c — the asynchronous checkpoint writer (see writer.h): the caller's state is copied
 * into reused host buffers, then a thread writes the file, `latest`, and prunes. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ckpt/internal.h"
#include "ckpt/writer.h"
#include "core/fsio.h"
#include "core/timer.h"

struct tg_ckpt_writer {
    char dir[TG_PATH_MAX];
    int keep;
    tg_log lg;
    int has_lg;
    pthread_t thread;
    int running;              /* a thread was started and not yet joined */
    tg_status result;         /* of the last joined write */
    tg_error result_err;
    double last_write_s;
    /* The writer's own copy of the state being written; its arrays point into buf[] (reused
     * across saves: params, adam_m, adam_v, master) or are NULL when absent. */
    tg_ckpt_state s;
    float *buf[4];
    size_t cap_buf[4];        /* elements allocated in buf[i] */
    tg_loader_state *buf_loader;
    int cap_loader;
};

tg_status tg_ckpt_writer_init(tg_ckpt_writer **out, const char *ckpt_dir, int keep,
                              const tg_log *lg, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_writer *w = NULL;
    DIR *d = NULL;
    *out = NULL;
    w = calloc(1, sizeof *w);
    TG_CHECK_ALLOC(err, w);
    if (snprintf(w->dir, sizeof w->dir, "%s", ckpt_dir) >= (int)sizeof w->dir)
        TG_FAIL(err, TG_ERR_ARG, "checkpoint dir path too long: %s", ckpt_dir);
    w->keep = keep;
    if (lg) {
        w->lg = *lg;
        w->has_lg = 1;
    }
    TG_TRY(tg_fs_mkdir_p(ckpt_dir, err));
    TG_TRY(tg_h5_zstd_register(err));
    /* Remove leftovers of writes that were killed (they were never renamed into place). */
    d = opendir(ckpt_dir);
    if (!d) TG_FAIL(err, TG_ERR_IO, "opendir %s: %s", ckpt_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0 &&
            (strncmp(de->d_name, "step_", 5) == 0 || strcmp(de->d_name, "latest.tmp") == 0)) {
            char p[TG_PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", ckpt_dir, de->d_name) < (int)sizeof p) {
                unlink(p);
                tg_log_debug(lg, "checkpoint: removed stale %s", p);
            }
        }
    }
    *out = w;
    w = NULL;
cleanup:
    if (d) closedir(d);
    free(w);
    return st;
}

static void *ck_writer_main(void *arg) {
    tg_ckpt_writer *w = arg;
    tg_status st = TG_OK;
    tg_error *err = &w->result_err;
    char path[TG_PATH_MAX];
    const tg_log *lg = w->has_lg ? &w->lg : NULL;
    double t0 = tg_now_ms();
    TG_TRY(tg_ckpt_path(w->dir, w->s.step, path, sizeof path, err));
    TG_TRY(tg_ckpt_write_file(path, &w->s, err));
    TG_TRY(ck_latest_write(w->dir, strrchr(path, '/') + 1, err));
    TG_TRY(ck_prune(w->dir, w->keep, w->s.step, lg, err));
    w->last_write_s = (tg_now_ms() - t0) * 1e-3;
    tg_log_info(lg, "checkpoint: wrote %s in %.2f s (background)", path, w->last_write_s);
cleanup:
    w->result = st;
    return NULL;
}

static tg_status ck_writer_join(tg_ckpt_writer *w, tg_error *err) {
    if (!w->running) return TG_OK;
    pthread_join(w->thread, NULL);
    w->running = 0;
    tg_status st = w->result;
    if (st != TG_OK && err) *err = w->result_err;
    w->result = TG_OK; /* reported once */
    return st;
}

tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err) { return ck_writer_join(w, err); }

double tg_ckpt_writer_last_write_s(const tg_ckpt_writer *w) { return w->last_write_s; }

/* Host buffers of checkpoint size (GBs): 2 MiB aligned and marked for transparent huge pages,
 * so that first touching them (the first save's copy, which stalls training) takes 512x fewer
 * page faults. Freed with free(). */
static float *ck_alloc_floats(size_t n) {
    void *p = NULL;
    size_t bytes = n * sizeof(float), align = (size_t)2 << 20;
    if (bytes < align) return malloc(bytes ? bytes : 1);
    if (posix_memalign(&p, align, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    (void)madvise(p, bytes / align * align, MADV_HUGEPAGE); /* a hint: failure is harmless */
#endif
    return p;
}

/* Copies n floats into the reusable buffer *buf (grown to n) and returns it in *dst; a NULL
 * src gives *dst = NULL (the array is absent from this checkpoint) and keeps the buffer. */
static tg_status ck_copy_f32(float **dst, float **buf, size_t *cap, const float *src, size_t n,
                             tg_error *err) {
    tg_status st = TG_OK;
    *dst = NULL;
    if (!src) return TG_OK;
    if (!*buf || *cap < n) {
        free(*buf);
        *cap = 0;
        *buf = ck_alloc_floats(n);
        TG_CHECK_ALLOC(err, *buf);
        *cap = n;
    }
    memcpy(*buf, src, n * sizeof(float));
    *dst = *buf;
cleanup:
    return st;
}

tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(ck_writer_join(w, err));
    size_t n = tg_ckpt_n_params(cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    int want[4] = {1, with_adam, with_adam, with_master};
    for (int k = 0; k < 4; k++) {
        if (!want[k] || (w->buf[k] && w->cap_buf[k] >= n)) continue;
        free(w->buf[k]);
        w->cap_buf[k] = 0;
        w->buf[k] = ck_alloc_floats(n);
        TG_CHECK_ALLOC(err, w->buf[k]);
        w->cap_buf[k] = n;
        memset(w->buf[k], 0, n * sizeof(float)); /* fault the pages in now, not at a save */
    }
cleanup:
    return st;
}

tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *in, double *stall_ms,
                              tg_error *err) {
    tg_status st = TG_OK;
    double t0 = tg_now_ms();
    tg_ckpt_state *s = &w->s;
    TG_TRY(ck_writer_join(w, err));
    size_t n = tg_ckpt_n_params(&in->model_cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    if (!in->params) TG_FAIL(err, TG_ERR_ARG, "checkpoint: state has no params");
    if ((in->adam_m == NULL) != (in->adam_v == NULL))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: adam_m and adam_v must both be set or both NULL");
    if (in->n_loader_states < 0 || (in->n_loader_states > 0 && !in->loader_states))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad loader states");

    free(s->config_ini);
    free(s->tokenizer_hash);
    free(s->tokenizer_path);
    *s = *in; /* scalars; every pointer is replaced below by the writer's own copy */
    s->config_ini = s->tokenizer_hash = s->tokenizer_path = NULL;
    s->loader_states = w->buf_loader;
    TG_TRY(ck_copy_f32(&s->params, &w->buf[0], &w->cap_buf[0], in->params, n, err));
    TG_TRY(ck_copy_f32(&s->adam_m, &w->buf[1], &w->cap_buf[1], in->adam_m, n, err));
    TG_TRY(ck_copy_f32(&s->adam_v, &w->buf[2], &w->cap_buf[2], in->adam_v, n, err));
    TG_TRY(ck_copy_f32(&s->master, &w->buf[3], &w->cap_buf[3], in->master, n, err));
    if (in->n_loader_states > w->cap_loader) {
        free(w->buf_loader);
        w->cap_loader = 0;
        w->buf_loader = s->loader_states = malloc((size_t)in->n_loader_states * sizeof *s->loader_states);
        TG_CHECK_ALLOC(err, s->loader_states);
        w->cap_loader = in->n_loader_states;
    }
    if (in->n_loader_states > 0)
        memcpy(s->loader_states, in->loader_states,
               (size_t)in->n_loader_states * sizeof *s->loader_states);
    s->config_ini = ck_strdup(in->config_ini);
    TG_CHECK_ALLOC(err, s->config_ini);
    s->tokenizer_hash = ck_strdup(in->tokenizer_hash);
    TG_CHECK_ALLOC(err, s->tokenizer_hash);
    s->tokenizer_path = ck_strdup(in->tokenizer_path);
    TG_CHECK_ALLOC(err, s->tokenizer_path);
    w->result = TG_OK;
    if (pthread_create(&w->thread, NULL, ck_writer_main, w) != 0)
        TG_FAIL(err, TG_ERR_INTERNAL, "checkpoint: cannot start the writer thread");
    w->running = 1;
cleanup:
    if (stall_ms) *stall_ms = tg_now_ms() - t0;
    return st;
}

void tg_ckpt_writer_free(tg_ckpt_writer *w) {
    if (!w) return;
    (void)ck_writer_join(w, NULL);
    for (int i = 0; i < 4; i++) free(w->buf[i]);
    free(w->buf_loader);
    free(w->s.config_ini);
    free(w->s.tokenizer_hash);
    free(w->s.tokenizer_path);
    free(w);
}
