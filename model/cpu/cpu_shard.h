/* model/cpu/cpu_shard.h — where the CPU backends (gpt2_cpu.c, llama_cpu.c) find a segment's
 * parameters and gradients: in their full buffers, or, with sharded storage
 * (tg_model_shard_storage), in segment windows filled and flushed through m->shard_io.
 *
 * A backend brackets each use of a segment with tg_cpu_seg_begin / tg_cpu_seg_end; tensor k of
 * segment [lo, hi) is then at P + (offset_k - lo) (and G + ...). With full buffers P and G point
 * into them and seg_end does nothing, so the arithmetic is that of plain base + offset. */
#ifndef TG_CPU_SHARD_H
#define TG_CPU_SHARD_H

#include <stddef.h>

#include "model/backend.h"

enum { TG_CPU_SEG_PARAMS = 1, TG_CPU_SEG_GRADS = 2 };

typedef struct {
    int level;              /* 0: full buffers; 2: sharded gradients; 3: parameters too */
    size_t lo, hi;          /* the shard (levels 2 and 3) */
    float *pshard, *gshard; /* hi - lo floats each (pshard: level 3) */
    float *pwin, *gwin;     /* one segment each (pwin: level 3) */
    size_t win;             /* floats per window: the longest segment */
    int bf16;               /* round the parameter window to bf16 (the working copy of opt.bf16) */
} tg_cpu_shard;

/* Allocates the shard and the windows (zeroed) for level 2 or 3. The backend frees its own full
 * buffers afterwards (level 2: grads; 3: params and grads). */
tg_status tg_cpu_shard_init(tg_cpu_shard *s, const tg_model *m, int level, size_t lo, size_t hi, int bf16,
                            tg_error *err);
void tg_cpu_shard_free(tg_cpu_shard *s);

/* One use of segment seg. need: TG_CPU_SEG_PARAMS and/or TG_CPU_SEG_GRADS. *P (may be NULL
 * without PARAMS): the segment's working parameters (full_params + lo, or the filled window);
 * *G: where this use adds its gradients (full_grads + lo, or the zeroed window). */
tg_status tg_cpu_seg_begin(tg_model *m, tg_cpu_shard *s, int seg, int need, float *full_params, float *full_grads,
                           float **P, float **G, tg_error *err);
/* Ends the use: with sharded gradients and GRADS, flushes the window (m->shard_io.grads_flush). */
tg_status tg_cpu_seg_end(tg_model *m, tg_cpu_shard *s, int seg, int need, tg_error *err);

/* Index in the host array of the elements a sharded params_set/get or grads_get moves:
 * [*i0, *i1) = [lo, hi) clipped to n_params. */
void tg_cpu_shard_host_range(const tg_cpu_shard *s, size_t n_params, size_t *i0, size_t *i1);

#endif
