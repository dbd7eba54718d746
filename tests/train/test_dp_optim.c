/* train/dp_optim: the data-parallel optimizer step, on its own (no trainer). At world size 1 and
 * under mpirun with 2 ranks: ZeRO stages 0 to 3 reach the same parameters and moments after a
 * few steps with accumulation and clipping; a gathered state loads into an optimizer of another
 * stage and gathers back bit for bit; a non-finite loss skips the update and leaves the
 * parameters as they were; an unknown stage, or shards that do not divide the padded buffer,
 * are refused before any work. */
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

/* Is element i of a state copy (params, m, v of n each) a key bias? Its gradient is zero in exact
 * arithmetic (softmax ignores a per-row constant), so it is rounding noise, which Adam turns into
 * lr-sized steps: a different summation order (stages 2 and 3 add each micro-step into the
 * shard) moves it by that noise. dp_equivalence.sh compares these apart, loosely, too. */
static int key_bias(const tg_model *m, size_t n, size_t i) {
    const tg_gpt2_layout *lay = tg_model_layout(m);
    i %= n;
    for (int l = 0; l < lay->cfg.n_layer; l++) {
        size_t k0 = lay->tensors[tg_gpt2_block_index(l, TG_GPT2_QKV_B)].offset + (size_t)lay->cfg.n_embd;
        if (i >= k0 && i < k0 + (size_t)lay->cfg.n_embd) return 1;
    }
    return 0;
}

/* max_rel over the elements that are not key biases; *kb_abs: largest |a-b| over those that are. */
static double max_rel_nokb(const tg_model *m, const float *a, const float *b, size_t n, double *kb_abs) {
    double worst = 0;
    *kb_abs = 0;
    for (size_t i = 0; i < 3 * n; i++) {
        double d = key_bias(m, n, i) ? 0 : max_rel(a + i, b + i, 1);
        if (key_bias(m, n, i)) *kb_abs = fmax(*kb_abs, fabs((double)a[i] - b[i]));
        if (d > worst || isnan(d)) worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* Largest |g0 - g| / max|g0| over this rank's shard of the reduced gradients (stage 0 holds
 * all of them, summed; the sharded stages their shard). */
static double grad_diff(run *r0, run *r) {
    tg_error err = {0};
    size_t lo, hi, n = tg_model_layout(r0->model)->n_params;
    tg_dp_optim_shard(r->opt, &lo, &hi);
    if (hi > n) hi = n;
    float *g0 = calloc(n, sizeof *g0), *g = calloc(n, sizeof *g);
    CHECK_OK(tg_model_grads_get(r0->model, g0, &err), &err);
    CHECK_OK(tg_model_grads_get(r->model, g, &err), &err);
    double big = 0, worst = 0;
    for (size_t i = lo; i < hi; i++) big = fmax(big, fabs((double)g0[i]));
    for (size_t i = lo; i < hi; i++) worst = fmax(worst, fabs((double)g0[i] - g[i]) / big);
    free(g0);
    free(g);
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
    run s0, s1, s2, s3;
    run_open(&s0, comm, 0);
    run_open(&s1, comm, 1);
    run_open(&s2, comm, 2);
    run_open(&s3, comm, 3);
    run *sharded[3] = {&s1, &s2, &s3};
    size_t lo, hi;
    tg_dp_optim_shard(s1.opt, &lo, &hi);
    CHECK(hi - lo == tg_model_n_padded(s1.model) / (size_t)tg_comm_world(comm));
    for (int step = 1; step <= STEPS; step++) {
        tg_dp_optim_result a = run_step(&s0, comm, step, 0);
        CHECKF(!a.skipped && isfinite(a.norm) && a.norm > 0.5, "step %d (norm %g: clipping must act)", step, a.norm);
        for (int k = 0; k < 3; k++) {
            tg_dp_optim_result b = run_step(sharded[k], comm, step, 0);
            CHECKF(!b.skipped && fabs(a.loss - b.loss) <= 1e-6 * fabs(a.loss) && fabs(a.norm - b.norm) <= 1e-5 * a.norm,
                   "step %d: stage 0 loss %.9g norm %.9g, stage %d loss %.9g norm %.9g", step, a.loss, a.norm, k + 1,
                   b.loss, b.norm);
            double gd = grad_diff(&s0, sharded[k]);
            CHECKF(gd < 1e-5, "step %d: stage %d's reduced gradients differ from stage 0's by %.3g", step, k + 1, gd);
        }
    }
    size_t n = 0;
    float *st0 = state_copy(&s0, &n), *st1 = state_copy(&s1, &n);
    double d = max_rel(st0, st1, 3 * n);
    CHECKF(d < 1e-5, "stage 0 and stage 1 states differ by %.3g (relative)", d);
    for (int k = 1; k < 3; k++) {
        float *stk = state_copy(sharded[k], &n);
        double kb = 0;
        d = max_rel_nokb(s0.model, st0, stk, n, &kb);
        /* The gradients agree to rounding (above); Adam divides by sqrt(v), so elements with small
         * gradients move by lr-scaled rounding differences: a looser bound than stage 1's. */
        CHECKF(d < 1e-3, "stage 0 and stage %d states differ by %.3g (relative)", k + 1, d);
        CHECKF(kb < 1e-4, "stage 0 and stage %d key biases differ by %.3g", k + 1, kb);
        free(stk);
    }
    /* Stages 2 and 3 sum in the same order: the same bits. */
    float *st2 = state_copy(&s2, &n), *st3 = state_copy(&s3, &n);
    CHECK(memcmp(st2, st3, 3 * n * sizeof(float)) == 0);
    free(st2);
    free(st3);

    /* Stage 1's gathered state into stage-0 and stage-3 optimizers, and back out: the same bits. */
    run x, x3;
    run_open(&x, comm, 0);
    run_open(&x3, comm, 3);
    CHECK_OK(tg_dp_optim_state_load(x.opt, st1, st1 + n, st1 + 2 * n, &err), &err);
    CHECK_OK(tg_dp_optim_state_load(x3.opt, st1, st1 + n, st1 + 2 * n, &err), &err);
    float *stx = state_copy(&x, &n), *stx3 = state_copy(&x3, &n);
    CHECK(memcmp(stx, st1, 3 * n * sizeof(float)) == 0);
    CHECK(memcmp(stx3, st1, 3 * n * sizeof(float)) == 0);

    /* A non-finite loss: skipped, parameters and moments untouched (stage 1 and stage 3). */
    tg_dp_optim_result bad = run_step(&s1, comm, STEPS + 1, 1);
    CHECK(bad.skipped == 1 && isnan(bad.loss));
    float *after = state_copy(&s1, &n);
    CHECK(memcmp(after, st1, 3 * n * sizeof(float)) == 0);
    float *before3 = state_copy(&s3, &n);
    bad = run_step(&s3, comm, STEPS + 1, 1);
    CHECK(bad.skipped == 1 && isnan(bad.loss));
    float *after3 = state_copy(&s3, &n);
    CHECK(memcmp(after3, before3, 3 * n * sizeof(float)) == 0);
    free(before3);
    free(after3);

    /* Stages that do not exist are refused, before any allocation in the model. */
    tg_dp_optim *o2 = NULL;
    tg_dp_optim_options o = {.zero_stage = 4};
    CHECK(tg_dp_optim_init(&o2, s0.model, comm, &o, &err) == TG_ERR_CONFIG && o2 == NULL);
    CHECKF(strstr(err.msg, "zero_stage=4") != NULL, "%s", err.msg);
    /* Shards must divide the padded buffer: a model padded to 1 with an odd count (585 here)
     * does not at world 2. */
    if (tg_comm_world(comm) > 1) {
        tg_model *m1 = mt_model_new(1, 1, 3, T, V, B, 1, 1);
        CHECK(tg_model_n_padded(m1) % (size_t)tg_comm_world(comm) != 0);
        for (int z = 1; z <= 3; z++) {
            o.zero_stage = z;
            CHECK(tg_dp_optim_init(&o2, m1, comm, &o, &err) == TG_ERR_CONFIG && o2 == NULL);
            CHECKF(strstr(err.msg, "equal shards") != NULL, "%s", err.msg);
        }
        tg_model_free(m1);
    }

    free(st0);
    free(st1);
    free(stx);
    free(stx3);
    free(after);
    run_close(&x);
    run_close(&x3);
    run_close(&s0);
    run_close(&s1);
    run_close(&s2);
    run_close(&s3);
    tg_comm_free(comm);
    TEST_MAIN_END();
}
