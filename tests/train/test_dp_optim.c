/* train/dp_optim: the data-parallel optimizer step, on its own (no trainer). At world size 1 and
 * under mpirun with 2 ranks: ZeRO stages 0 and 1 reach the same parameters and moments after a
 * few steps with accumulation; a gathered state loads into an optimizer of the other stage and
 * gathers back bit for bit; a non-finite loss skips the update and leaves the parameters as
 * they were; an unknown stage is refused before any work. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "model/model.h"
#include "model/model_test_util.h"
#include "tg_test.h"
#include "train/dp_optim.h"

enum { L = 2, NH = 2, C = 32, T = 16, V = 64, B = 2, STEPS = 3, ACCUM = 2 };

typedef struct {
    tg_model *model;
    tg_dp_optim *opt;
} run;

static void run_open(run *r, tg_comm *comm, int stage) {
    tg_error err = {0};
    memset(r, 0, sizeof *r);
    r->model = mt_model_new(L, NH, C, T, V, B, (size_t)tg_comm_world(comm) * 64, 1);
    tg_dp_optim_options o = {.zero_stage = stage, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8,
                             .weight_decay = 0.1, .grad_clip = 0.5};
    CHECK_OK(tg_dp_optim_init(&r->opt, r->model, comm, &o, &err), &err);
    CHECK_OK(tg_dp_optim_params_init(r->opt, 7, &err), &err);
}

static void run_close(run *r) {
    tg_dp_optim_free(r->opt);
    tg_model_free(r->model);
}

/* One optimizer step on this rank's batches of `step` (different on every rank). */
static tg_dp_optim_result run_step(run *r, tg_comm *comm, int step, int poison) {
    tg_error err = {0};
    int32_t in[B * T], tgt[B * T];
    double loss_sum = 0;
    CHECK_OK(tg_dp_optim_zero_grad(r->opt, &err), &err);
    for (int k = 0; k < ACCUM; k++) {
        float l = 0;
        uint64_t seed = 1000u * (uint64_t)step + 10u * (uint64_t)tg_comm_rank(comm) + (uint64_t)k;
        mt_tokens(in, B * T, V, seed);
        mt_tokens(tgt, B * T, V, seed + 5);
        tg_dp_optim_micro_step_begin(r->opt, k == ACCUM - 1);
        CHECK_OK(tg_model_forward(r->model, in, tgt, B, &err), &err);
        CHECK_OK(tg_model_backward(r->model, 1.0f / (float)(ACCUM * tg_comm_world(comm)), &err), &err);
        CHECK_OK(tg_model_loss(r->model, &l, &err), &err);
        loss_sum += l;
    }
    if (poison) loss_sum = NAN;
    tg_dp_optim_step_args a = {.step = step, .lr = 1e-2, .loss_sum = loss_sum, .n_micro = ACCUM};
    tg_dp_optim_result res = {0};
    CHECK_OK(tg_dp_optim_step(r->opt, &a, &res, &err), &err);
    return res;
}

/* Largest |a-b| / max(|a|, 1e-3) over n floats. */
static double max_rel(const float *a, const float *b, size_t n) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(fabs((double)a[i]), 1e-3);
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* A copy of the gathered state (params, m, v back to back, n_params each). */
static float *state_copy(run *r, size_t *n) {
    tg_error err = {0};
    tg_dp_optim_state s;
    CHECK_OK(tg_dp_optim_state_gather(r->opt, &s, &err), &err);
    *n = s.n_params;
    float *c = malloc(3 * s.n_params * sizeof *c);
    memcpy(c, s.params, s.n_params * sizeof *c);
    memcpy(c + s.n_params, s.adam_m, s.n_params * sizeof *c);
    memcpy(c + 2 * s.n_params, s.adam_v, s.n_params * sizeof *c);
    return c;
}

int main(int argc, char **argv) {
    tg_comm *comm = NULL;
    tg_error err = {0};
    CHECK_OK(tg_comm_init(&comm, &argc, &argv, &err), &err);
    if (!comm) return 1;
    run s0, s1;
    run_open(&s0, comm, 0);
    run_open(&s1, comm, 1);
    size_t lo, hi;
    tg_dp_optim_shard(s1.opt, &lo, &hi);
    CHECK(hi - lo == tg_model_n_padded(s1.model) / (size_t)tg_comm_world(comm));
    for (int step = 1; step <= STEPS; step++) {
        tg_dp_optim_result a = run_step(&s0, comm, step, 0), b = run_step(&s1, comm, step, 0);
        CHECKF(!a.skipped && !b.skipped && isfinite(a.norm) && a.norm > 0, "step %d", step);
        CHECKF(fabs(a.loss - b.loss) <= 1e-6 * fabs(a.loss) && fabs(a.norm - b.norm) <= 1e-5 * a.norm,
               "step %d: stage 0 loss %.9g norm %.9g, stage 1 loss %.9g norm %.9g", step, a.loss, a.norm,
               b.loss, b.norm);
    }
    size_t n = 0;
    float *st0 = state_copy(&s0, &n), *st1 = state_copy(&s1, &n);
    double d = max_rel(st0, st1, 3 * n);
    CHECKF(d < 1e-5, "stage 0 and stage 1 states differ by %.3g (relative)", d);

    /* Stage 1's gathered state into a stage-0 optimizer, and back out: the same bits. */
    run x;
    run_open(&x, comm, 0);
    CHECK_OK(tg_dp_optim_state_load(x.opt, st1, st1 + n, st1 + 2 * n, &err), &err);
    float *stx = state_copy(&x, &n);
    CHECK(memcmp(stx, st1, 3 * n * sizeof(float)) == 0);

    /* A non-finite loss: skipped, parameters and moments untouched. */
    tg_dp_optim_result bad = run_step(&s1, comm, STEPS + 1, 1);
    CHECK(bad.skipped == 1 && isnan(bad.loss));
    float *after = state_copy(&s1, &n);
    CHECK(memcmp(after, st1, 3 * n * sizeof(float)) == 0);

    /* Stages this build does not have are refused, before any allocation in the model. */
    tg_dp_optim *o2 = NULL;
    tg_dp_optim_options o = {.zero_stage = 2};
    CHECK(tg_dp_optim_init(&o2, s0.model, comm, &o, &err) == TG_ERR_CONFIG && o2 == NULL);
    CHECKF(strstr(err.msg, "zero_stage=2") != NULL, "%s", err.msg);

    free(st0);
    free(st1);
    free(stx);
    free(after);
    run_close(&x);
    run_close(&s0);
    run_close(&s1);
    tg_comm_free(comm);
    TEST_MAIN_END();
}
