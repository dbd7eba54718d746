/* ckpt/writer.c — the asynchronous checkpoint writer (see writer.h): the caller's state is copied
 * into one of two reused host snapshots, and a thread writes the file, `latest`, and prunes. */
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

/* A host snapshot of one state: its arrays point into buf[] (reused across saves: params,
 * adam_m, adam_v, master) or are NULL when absent. */
typedef struct {
    tg_ckpt_state s;
    float *buf[4];
    size_t cap_buf[4];        /* elements allocated in buf[i] */
    tg_loader_state *buf_loader;
    int cap_loader;
    int busy;                 /* being filled, queued or written: not to be reused */
} ck_snap;

struct tg_ckpt_writer {
    char dir[TG_PATH_MAX];
    int keep;
    tg_log lg;
    int has_lg;
    /* One thread writes the queued snapshots, one at a time, in the order of their steps. Two
     * snapshots: a save copies into the one not being written, so it never waits for a write;
     * a save while both are taken (one written, one queued) replaces the queued one. */
    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* queued / writing / quit changed */
    ck_snap snap[2];
    int queue[2], n_queued;   /* snapshots to write, oldest first */
    int writing;              /* snapshot index, -1: none */
    int quit;
    tg_status result;         /* first failure not yet reported */
    tg_error result_err;
    double last_write_s;
    void (*hook)(void *arg, int64_t step);
    void *hook_arg;
};

/* The writing thread: takes the queued snapshot, writes it, `latest`, prunes; until quit. */
static void *ck_writer_main(void *arg);

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
    w->writing = -1;
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
    if (pthread_mutex_init(&w->mu, NULL) != 0) TG_FAIL(err, TG_ERR_INTERNAL, "pthread_mutex_init");
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        TG_FAIL(err, TG_ERR_INTERNAL, "pthread_cond_init");
    }
    if (pthread_create(&w->thread, NULL, ck_writer_main, w) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        TG_FAIL(err, TG_ERR_INTERNAL, "checkpoint: cannot start the writer thread");
    }
    w->thread_started = 1;
    *out = w;
    w = NULL;
cleanup:
    if (d) closedir(d);
    free(w);
    return st;
}

static tg_status ck_write_one(tg_ckpt_writer *w, const tg_ckpt_state *s, double *secs, tg_error *err) {
    tg_status st = TG_OK;
    char path[TG_PATH_MAX];
    const tg_log *lg = w->has_lg ? &w->lg : NULL;
    double t0 = tg_now_ms();
    TG_TRY(tg_ckpt_path(w->dir, s->step, path, sizeof path, err));
    TG_TRY(tg_ckpt_write_file(path, s, err));
    TG_TRY(ck_latest_write(w->dir, strrchr(path, '/') + 1, err));
    TG_TRY(ck_prune(w->dir, w->keep, s->step, lg, err));
    *secs = (tg_now_ms() - t0) * 1e-3;
    tg_log_info(lg, "checkpoint: wrote %s in %.2f s (background)", path, *secs);
cleanup:
    return st;
}

static void *ck_writer_main(void *arg) {
    tg_ckpt_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->n_queued == 0 && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->n_queued == 0) break; /* quit, and nothing left to write */
        const int i = w->queue[0];
        w->queue[0] = w->queue[1];
        w->n_queued--;
        w->writing = i;
        pthread_mutex_unlock(&w->mu);
        if (w->hook) w->hook(w->hook_arg, w->snap[i].s.step);
        tg_error e = {0};
        double secs = 0;
        tg_status st = ck_write_one(w, &w->snap[i].s, &secs, &e);
        pthread_mutex_lock(&w->mu);
        if (st == TG_OK) w->last_write_s = secs;
        if (st != TG_OK && w->result == TG_OK) {
            w->result = st;
            w->result_err = e;
        }
        w->writing = -1;
        w->snap[i].busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* The failure of an earlier write, reported once; call with mu held. */
static tg_status ck_take_result(tg_ckpt_writer *w, tg_error *err) {
    tg_status st = w->result;
    if (st != TG_OK && err) *err = w->result_err;
    w->result = TG_OK;
    return st;
}

tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err) {
    pthread_mutex_lock(&w->mu);
    while (w->n_queued > 0 || w->writing >= 0) pthread_cond_wait(&w->cv, &w->mu);
    tg_status st = ck_take_result(w, err);
    pthread_mutex_unlock(&w->mu);
    return st;
}

double tg_ckpt_writer_last_write_s(tg_ckpt_writer *w) {
    pthread_mutex_lock(&w->mu);
    double s = w->last_write_s;
    pthread_mutex_unlock(&w->mu);
    return s;
}

void tg_ckpt_writer_set_hook(tg_ckpt_writer *w, void (*fn)(void *arg, int64_t step), void *arg) {
    pthread_mutex_lock(&w->mu);
    w->hook = fn;
    w->hook_arg = arg;
    pthread_mutex_unlock(&w->mu);
}

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

/* Allocates and touches snapshot k's buffers for n params (want[] of params, m, v, master). */
static tg_status ck_snap_reserve(ck_snap *sn, size_t n, const int want[4], tg_error *err) {
    tg_status st = TG_OK;
    for (int k = 0; k < 4; k++) {
        if (!want[k] || (sn->buf[k] && sn->cap_buf[k] >= n)) continue;
        free(sn->buf[k]);
        sn->cap_buf[k] = 0;
        sn->buf[k] = ck_alloc_floats(n);
        TG_CHECK_ALLOC(err, sn->buf[k]);
        sn->cap_buf[k] = n;
        memset(sn->buf[k], 0, n * sizeof(float)); /* fault the pages in now, not at a save */
    }
cleanup:
    return st;
}

tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err) {
    tg_status st = TG_OK;
    size_t n = tg_ckpt_n_params(cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    const int want[4] = {1, with_adam, with_adam, with_master};
    /* Both snapshots: a save that comes while a write runs copies into the second, and first
     * touching GBs of fresh pages there would stall training several times longer than the copy. */
    for (int k = 0; k < 2 && st == TG_OK; k++) {
        pthread_mutex_lock(&w->mu);
        while (w->snap[k].busy) pthread_cond_wait(&w->cv, &w->mu);
        w->snap[k].busy = 1;
        pthread_mutex_unlock(&w->mu);
        st = ck_snap_reserve(&w->snap[k], n, want, err);
        pthread_mutex_lock(&w->mu);
        w->snap[k].busy = 0;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
cleanup:
    return st;
}

/* Copies in into snapshot sn (its buffers grown as needed). */
static tg_status ck_snap_fill(ck_snap *sn, const tg_ckpt_state *in, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_state *s = &sn->s;
    free(s->config_ini);
    free(s->tokenizer_hash);
    free(s->tokenizer_path);
    *s = *in; /* scalars; every pointer is replaced below by the snapshot's own copy */
    s->config_ini = s->tokenizer_hash = s->tokenizer_path = NULL;
    s->params = s->adam_m = s->adam_v = s->master = NULL;
    s->loader_states = sn->buf_loader;
    TG_TRY(ck_copy_f32(&s->params, &sn->buf[0], &sn->cap_buf[0], in->params, n, err));
    TG_TRY(ck_copy_f32(&s->adam_m, &sn->buf[1], &sn->cap_buf[1], in->adam_m, n, err));
    TG_TRY(ck_copy_f32(&s->adam_v, &sn->buf[2], &sn->cap_buf[2], in->adam_v, n, err));
    TG_TRY(ck_copy_f32(&s->master, &sn->buf[3], &sn->cap_buf[3], in->master, n, err));
    if (in->n_loader_states > sn->cap_loader) {
        free(sn->buf_loader);
        sn->cap_loader = 0;
        sn->buf_loader = s->loader_states = malloc((size_t)in->n_loader_states * sizeof *s->loader_states);
        TG_CHECK_ALLOC(err, s->loader_states);
        sn->cap_loader = in->n_loader_states;
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
cleanup:
    return st;
}

tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *in, double *stall_ms,
                              tg_error *err) {
    tg_status st = TG_OK;
    double t0 = tg_now_ms();
    const tg_log *lg = w->has_lg ? &w->lg : NULL;
    int k = -1, locked = 0;
    size_t n = tg_ckpt_n_params(&in->model_cfg);
    if (n == 0) TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad model config");
    if (!in->params) TG_FAIL(err, TG_ERR_ARG, "checkpoint: state has no params");
    if ((in->adam_m == NULL) != (in->adam_v == NULL))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: adam_m and adam_v must both be set or both NULL");
    if (in->n_loader_states < 0 || (in->n_loader_states > 0 && !in->loader_states))
        TG_FAIL(err, TG_ERR_ARG, "checkpoint: bad loader states");

    pthread_mutex_lock(&w->mu);
    locked = 1;
    TG_TRY(ck_take_result(w, err));
    if (!w->snap[0].busy) k = 0;
    else if (!w->snap[1].busy) k = 1;
    else if (w->n_queued > 0) { /* both taken: the newer state replaces the newest queued one */
        k = w->queue[--w->n_queued];
        tg_log_warn(lg, "checkpoint: step %lld is dropped unwritten, replaced by step %lld (the write of step "
                    "%lld is still running: checkpoint.every is shorter than a write)",
                    (long long)w->snap[k].s.step, (long long)in->step,
                    (long long)(w->writing >= 0 ? w->snap[w->writing].s.step : -1));
    } else {
        TG_FAIL(err, TG_ERR_INTERNAL, "checkpoint: no free snapshot"); /* saves are not concurrent */
    }
    if (k == 1 && !w->snap[1].buf[0])
        tg_log_info(lg, "checkpoint: a save during the write of step %lld: allocating a second host snapshot "
                    "(%.0f MB)", (long long)(w->writing >= 0 ? w->snap[w->writing].s.step : -1),
                    (double)n * sizeof(float) * (in->adam_m ? 3 : 1) / 1e6);
    w->snap[k].busy = 1; /* the thread does not touch it until it is queued */
    pthread_mutex_unlock(&w->mu);
    locked = 0;

    st = ck_snap_fill(&w->snap[k], in, n, err);

    pthread_mutex_lock(&w->mu);
    if (st == TG_OK) {
        w->queue[w->n_queued++] = k;
        pthread_cond_broadcast(&w->cv);
    } else {
        w->snap[k].busy = 0;
    }
    pthread_mutex_unlock(&w->mu);
cleanup:
    if (locked) pthread_mutex_unlock(&w->mu);
    if (stall_ms) *stall_ms = tg_now_ms() - t0;
    return st;
}

void tg_ckpt_writer_free(tg_ckpt_writer *w) {
    if (!w) return;
    if (w->thread_started) {
        pthread_mutex_lock(&w->mu);
        w->quit = 1; /* the thread writes what is queued, then ends */
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->thread, NULL);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    for (int j = 0; j < 2; j++) {
        ck_snap *sn = &w->snap[j];
        for (int i = 0; i < 4; i++) free(sn->buf[i]);
        free(sn->buf_loader);
        free(sn->s.config_ini);
        free(sn->s.tokenizer_hash);
        free(sn->s.tokenizer_path);
    }
    free(w);
}
