/* CPU backend end to end: the loss at init is ~ln(V) (the real vocab, not Vp), and AdamW
 * overfits one fixed batch to near-zero loss. */
#include <math.h>
#include <stdio.h>

#include "core/timer.h"
#include "model_test_util.h"

static void test_loss_at_init(void) {
    tg_error err = {0};
    /* V=200 -> Vp=256: ln(200)=5.30, ln(256)=5.55, so the padded columns entering the softmax
     * would be caught. */
    enum { L = 2, NH = 4, C = 64, T = 32, V = 200, B = 4 };
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 1, 11);
    if (!m) return;
    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 1);
    mt_tokens(tgt, B * T, V, 2);
    float loss = NAN;
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_loss(m, &loss, &err), &err);
    printf("loss at init %.4f, ln(V) = %.4f\n", loss, log((double)V));
    CHECKF(fabs(loss - log((double)V)) < 0.1, "loss %.4f, expected ~%.4f", loss, log((double)V));
    tg_model_free(m);
}

static void test_overfit_one_batch(void) {
    tg_error err = {0};
    enum { L = 2, NH = 2, C = 32, T = 16, V = 64, B = 4, STEPS = 250 };
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 1, 12);
    if (!m) return;
    const size_t n = tg_model_n_padded(m);
    int32_t seq[B * T + 1], tgt[B * T];
    mt_tokens(seq, B * T + 1, V, 3);
    for (int i = 0; i < B * T; i++) tgt[i] = seq[i + 1];
    CHECK_OK(tg_model_opt_init(m, 0, n, &err), &err);
    tg_adamw_args a = {.lo = 0, .hi = n, .lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.0f, .grad_scale = 1.0f};
    float first = NAN, loss = NAN;
    const double t0 = tg_now_ms();
    for (int step = 1; step <= STEPS; step++) {
        CHECK_OK(tg_model_grads_zero(m, &err), &err);
        CHECK_OK(tg_model_forward(m, seq, tgt, B, &err), &err);
        CHECK_OK(tg_model_loss(m, &loss, &err), &err);
        CHECK_OK(tg_model_backward(m, 1.0f, &err), &err);
        a.t = step;
        CHECK_OK(tg_model_adamw(m, &a, &err), &err);
        if (step == 1) first = loss;
        if (step % 50 == 0) printf("step %d loss %.4f\n", step, loss);
    }
    printf("overfit: loss %.4f -> %.4f in %d steps (%.0f ms)\n", first, loss, STEPS,
           tg_now_ms() - t0);
    CHECKF(loss < 0.05f, "final loss %.4f", loss);
    tg_model_free(m);
}

int main(void) {
    test_loss_at_init();
    test_overfit_one_batch();
    TEST_MAIN_END();
}
