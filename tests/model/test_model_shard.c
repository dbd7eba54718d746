/* tests/model/test_model_shard.c — sharded storage (tg_model_shard_storage) on the CPU backend,
 * without MPI: a fake owner holds the full parameters and gradients on the host, fills the
 * parameter windows from them and adds the flushed gradient windows into them. Then the model
 * must compute the loss of a model with full buffers bit for bit, and the same gradients (up to
 * the order of two additions into the tied wte, flushed twice); forward and backward must ask
 * for every segment's parameters once per use (L + 3 in forward, L + 2 in backward: the
 * embedding backward needs none) and flush every segment used with gradients (L + 3).
 * Bad levels and a missing io are refused. */
#include <math.h>
#include <string.h>

#include "model/model.h"
#include "model/model_test_util.h"
#include "tg_test.h"

enum { L = 2, NH = 2, C = 32, T = 16, V = 64, B = 2 };

typedef struct {
    const float *P; /* full parameters */
    float *G;       /* full gradients, accumulated */
    int fills, flushes;
    size_t n_padded;
} owner;

static tg_status fill(void *ctx, size_t lo, size_t hi, float *win, tg_error *err) {
    owner *o = ctx;
    if (hi > o->n_padded || lo >= hi) return tg_error_set(err, TG_ERR_INTERNAL, "bad segment [%zu, %zu)", lo, hi);
    memcpy(win, o->P + lo, (hi - lo) * sizeof(float));
    o->fills++;
    return TG_OK;
}

static tg_status flush(void *ctx, size_t lo, size_t hi, float *win, tg_error *err) {
    owner *o = ctx;
    if (hi > o->n_padded || lo >= hi) return tg_error_set(err, TG_ERR_INTERNAL, "bad segment [%zu, %zu)", lo, hi);
    for (size_t i = lo; i < hi; i++) o->G[i] += win[i - lo];
    o->flushes++;
    return TG_OK;
}

static void test_level(int level) {
    tg_error err = {0};
    tg_model *ref = mt_model_new(L, NH, C, T, V, B, 64, 3), *m = mt_model_new(L, NH, C, T, V, B, 64, 3);
    if (!ref || !m) return;
    const size_t n = tg_model_n_padded(m), np = tg_model_layout(m)->n_params;
    float *P = mt_floats(n), *G = mt_floats(n), *Gref = mt_floats(n);
    CHECK_OK(tg_model_params_get(ref, P, &err), &err);
    owner o = {.P = P, .G = G, .n_padded = n};
    tg_shard_io io = {.params_fill = fill, .grads_flush = flush, .ctx = &o};
    CHECK_OK(tg_model_shard_storage(m, level, 0, n, &io, &err), &err);
    CHECK_OK(tg_model_opt_init(m, 0, n, &err), &err);
    CHECK_OK(tg_model_params_set(m, P, &err), &err);
    CHECK(tg_model_grads(m, NULL) == NULL && tg_model_shard_grads(m) != NULL);
    CHECK((tg_model_params(m, NULL) == NULL) == (level == 3));
    tg_model_memory mm;
    tg_model_memory_get(m, &mm);
    CHECK(mm.window > 0 && mm.grads == (n * 4 + mm.window));

    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 11);
    mt_tokens(tgt, B * T, V, 12);
    float l0 = 0, l1 = 0;
    CHECK_OK(tg_model_grads_zero(ref, &err), &err);
    CHECK_OK(tg_model_forward(ref, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_backward(ref, 1.0f, &err), &err);
    CHECK_OK(tg_model_loss(ref, &l0, &err), &err);
    CHECK_OK(tg_model_grads_get(ref, Gref, &err), &err);
    CHECK_OK(tg_model_grads_zero(m, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECKF(o.fills == (level == 3 ? L + 3 : 0), "level %d: %d fills in forward", level, o.fills);
    CHECK_OK(tg_model_backward(m, 1.0f, &err), &err);
    CHECKF(o.fills == (level == 3 ? 2 * L + 5 : 0), "level %d: %d fills in forward + backward", level, o.fills);
    CHECKF(o.flushes == L + 3, "level %d: %d flushes", level, o.flushes);
    CHECK_OK(tg_model_loss(m, &l1, &err), &err);
    CHECKF(l0 == l1, "level %d: loss %.9g, full buffers %.9g", level, l1, l0);
    double big = 0, worst = 0;
    for (size_t i = 0; i < np; i++) big = fmax(big, fabs((double)Gref[i]));
    for (size_t i = 0; i < np; i++) worst = fmax(worst, fabs((double)Gref[i] - G[i]) / big);
    CHECKF(big > 0 && worst < 1e-6, "level %d: gradients differ by %.3g (relative to the largest)", level, worst);
    /* Past wte (flushed twice) every gradient is the same bits. */
    size_t wte = tg_model_layout(m)->tensors[0].numel;
    CHECK(memcmp(Gref + wte, G + wte, (np - wte) * sizeof(float)) == 0);
    free(P);
    free(G);
    free(Gref);
    tg_model_free(ref);
    tg_model_free(m);
}

int main(void) {
    test_level(2);
    test_level(3);
    tg_error err = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 64, 3);
    if (m) {
        owner o = {0};
        tg_shard_io io = {.params_fill = fill, .grads_flush = flush, .ctx = &o};
        size_t n = tg_model_n_padded(m);
        CHECK(tg_model_shard_storage(m, 1, 0, n, &io, &err) == TG_ERR_ARG);
        CHECK(tg_model_shard_storage(m, 3, 0, n, NULL, &err) == TG_ERR_ARG);
        CHECK(tg_model_shard_storage(m, 2, 0, n + 1, &io, &err) == TG_ERR_ARG);
        io.params_fill = NULL;
        CHECK(tg_model_shard_storage(m, 3, 0, n, &io, &err) == TG_ERR_ARG);
        tg_model_free(m);
    }
    TEST_MAIN_END();
}
