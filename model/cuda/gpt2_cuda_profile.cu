/* model/cuda/gpt2_cuda_profile.cu — per-op timing of the CUDA backend (opt.cuda.profile; see
 * gpt2_cuda.cuh). Events are recorded on the compute stream and read only after a sync the step
 * makes anyway (tg_model_loss), so profiling adds no host synchronisation to a step. */
#include <stdlib.h>

#include "model/cuda/gpt2_cuda.cuh"

#define TG_PROF_MAX_EVENTS 4096
#define TG_PROF_WARMUP 3 /* steps left out of the totals: plans and caches are made in them */

static const char *const prof_cat_name[P_NCAT] = {
    "matmul (blocks)", "matmul (LM head)", "attention", "residual+layernorm", "gelu/bias/embed", "cross-entropy",
    "optimizer (norm+adamw)", "other (host, upload, idle)"};

struct cuda_prof {
    int phase, n, steps; /* phase: 0 forward, 1 backward, 2 optimizer/other */
    cudaEvent_t ev[TG_PROF_MAX_EVENTS];
    unsigned char tag[TG_PROF_MAX_EVENTS]; /* cat * 3 + phase of the segment starting at ev[i] */
    double ms[P_NCAT * 3];
};

tg_status cuda_prof_init(cuda_prof **out, tg_error *err) {
    tg_status st = TG_OK;
    cuda_prof *pr = (cuda_prof *)calloc(1, sizeof(cuda_prof));
    *out = pr;
    TG_CHECK_ALLOC(err, pr);
    for (int i = 0; i < TG_PROF_MAX_EVENTS; i++) TG_CUDA_CHECK(err, cudaEventCreate(&pr->ev[i]));
cleanup:
    return st;
}

void cuda_prof_mark(cuda_prof *pr, cudaStream_t s, int cat) {
    if (pr->n >= TG_PROF_MAX_EVENTS) return;
    if (cudaEventRecord(pr->ev[pr->n], s) != cudaSuccess) return;
    pr->tag[pr->n++] = (unsigned char)(cat * 3 + (cat == P_OPTIM || cat == P_OTHER ? 2 : pr->phase));
}

void cuda_prof_phase(cuda_prof *pr, int phase) { pr->phase = phase; }

/* The last event stays open: it starts the next step's first segment. */
void cuda_prof_collect(cuda_prof *pr) {
    if (!pr || pr->n < 2) return;
    for (int i = 0; i + 1 < pr->n; i++) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, pr->ev[i], pr->ev[i + 1]) == cudaSuccess && pr->steps >= TG_PROF_WARMUP)
            pr->ms[pr->tag[i]] += ms;
    }
    cudaEvent_t last = pr->ev[pr->n - 1];
    pr->ev[pr->n - 1] = pr->ev[0];
    pr->ev[0] = last;
    pr->tag[0] = P_OTHER * 3 + 2;
    pr->n = 1;
    pr->steps++;
}

static void prof_report(const cuda_prof *pr, const tg_log *log) {
    const int steps = pr->steps - TG_PROF_WARMUP;
    double total = 0.0;
    if (steps < 1) return;
    for (int k = 0; k < P_NCAT * 3; k++) total += pr->ms[k];
    tg_log_info(log, "cuda profile: %d steps after %d warm-up, %.2f ms/step on the stream", steps, TG_PROF_WARMUP,
                total / steps);
    tg_log_info(log, "  %-28s %10s %10s %10s %7s", "category", "fwd ms", "bwd ms", "other ms", "share");
    for (int c = 0; c < P_NCAT; c++) {
        const double f = pr->ms[c * 3] / steps, b = pr->ms[c * 3 + 1] / steps, o = pr->ms[c * 3 + 2] / steps;
        if (f + b + o == 0.0) continue;
        tg_log_info(log, "  %-28s %10.2f %10.2f %10.2f %6.1f%%", prof_cat_name[c], f, b, o,
                    100.0 * (f + b + o) * steps / total);
    }
}

void cuda_prof_free(cuda_prof *pr, const tg_log *log) {
    if (!pr) return;
    cuda_prof_collect(pr);
    prof_report(pr, log);
    for (int i = 0; i < TG_PROF_MAX_EVENTS; i++)
        if (pr->ev[i]) cudaEventDestroy(pr->ev[i]);
    free(pr);
}
