/* model/cpu/cpu_shard.c — segment windows of the CPU backends (contract in cpu_shard.h). */
#include "model/cpu/cpu_shard.h"

#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"

static float *shard_alloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}

tg_status tg_cpu_shard_init(tg_cpu_shard *s, const tg_model *m, int level, size_t lo, size_t hi, int bf16,
                            tg_error *err) {
    tg_status st = TG_OK;
    tg_cpu_shard_free(s);
    size_t win = 0;
    for (int k = 0; k < tg_model_n_segments(m); k++) {
        size_t a, b;
        tg_model_segment(m, k, &a, &b);
        if (b - a > win) win = b - a;
    }
    *s = (tg_cpu_shard){.level = level, .lo = lo, .hi = hi, .win = win, .bf16 = bf16};
    s->gshard = shard_alloc(hi - lo);
    s->gwin = shard_alloc(win);
    TG_CHECK_ALLOC(err, s->gshard);
    TG_CHECK_ALLOC(err, s->gwin);
    if (level == 3) {
        s->pshard = shard_alloc(hi - lo);
        s->pwin = shard_alloc(win);
        TG_CHECK_ALLOC(err, s->pshard);
        TG_CHECK_ALLOC(err, s->pwin);
    }
cleanup:
    if (st != TG_OK) tg_cpu_shard_free(s);
    return st;
}

void tg_cpu_shard_free(tg_cpu_shard *s) {
    free(s->pshard);
    free(s->gshard);
    free(s->pwin);
    free(s->gwin);
    memset(s, 0, sizeof *s);
}

tg_status tg_cpu_seg_begin(tg_model *m, tg_cpu_shard *s, int seg, int need, float *full_params, float *full_grads,
                           float **P, float **G, tg_error *err) {
    tg_status st = TG_OK;
    size_t lo, hi;
    tg_model_segment(m, seg, &lo, &hi);
    if (need & TG_CPU_SEG_PARAMS) {
        if (s->level == 3) {
            TG_TRY(m->shard_io.params_fill(m->shard_io.ctx, lo, hi, s->pwin, err));
            if (s->bf16) tg_cpu_round_bf16(s->pwin, hi - lo);
            *P = s->pwin;
        } else {
            *P = full_params + lo;
        }
    }
    if (need & TG_CPU_SEG_GRADS) {
        if (s->level >= 2) {
            memset(s->gwin, 0, (hi - lo) * sizeof(float));
            *G = s->gwin;
        } else {
            *G = full_grads + lo;
        }
    }
cleanup:
    return st;
}

tg_status tg_cpu_seg_end(tg_model *m, tg_cpu_shard *s, int seg, int need, tg_error *err) {
    if (!(need & TG_CPU_SEG_GRADS) || s->level < 2) return TG_OK;
    size_t lo, hi;
    tg_model_segment(m, seg, &lo, &hi);
    return m->shard_io.grads_flush(m->shard_io.ctx, lo, hi, s->gwin, err);
}

void tg_cpu_shard_host_range(const tg_cpu_shard *s, size_t n_params, size_t *i0, size_t *i1) {
    *i0 = s->lo < n_params ? s->lo : n_params;
    *i1 = s->hi < n_params ? s->hi : n_params;
}
