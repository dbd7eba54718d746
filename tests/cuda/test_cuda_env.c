/* tests/cuda/test_cuda_env.c — the CUDA backend's environment switches (docs/cuda.md "Options"):
 * a value outside a switch's list makes tg_model_init fail with TG_ERR_ARG and a message that
 * names the switch and the accepted values, before any device is touched, so this test runs
 * on machines without a GPU too. Accepted values pass the parsing: init then succeeds on a
 * GPU machine, or fails with TG_ERR_CUDA (not TG_ERR_ARG) without one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "tg_test.h"

static tg_status init_with(const char *name, const char *value, tg_error *err) {
    tg_gpt2_config cfg = {.max_seq_len = 16, .vocab_size = 64, .n_layer = 1, .n_head = 2, .n_embd = 32};
    tg_model_options opt = {.device = TG_DEVICE_CUDA, .bf16 = 1, .B = 2, .T = 16, .pad_multiple = 64};
    tg_model *m = NULL;
    tg_error e0 = {0};
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &e0), &e0);
    setenv(name, value, 1);
    const tg_status st = tg_model_init(&m, &cfg, &opt, err);
    unsetenv(name);
    tg_model_free(m);
    return st;
}

int main(void) {
    static const struct {
        const char *name, *bad, *listed; /* a refused value, and what the message must list */
    } refused[] = {
        {"TG_CUDA_ATTN", "fast", "cudnn (default), flash, naive"},
        {"TG_CUDNN_DETERMINISTIC", "no", "1 (default), 0"},
        {"TG_CUDNN_TUNE", "yes", "0 (default), 1"},
        {"TG_CUDA_PROFILE", "true", "0 (default), 1"},
        {"TG_CUDA_FUSION", "false", "1 (default), 0"},
        {"TG_CUBLASLT_TUNE", "on", "0 (default), 1"},
        {"TG_CUDA_LMHEAD_ROWS", "12x", "row count"},
        {"TG_CUDA_LMHEAD_ROWS", "0", "row count"},
    };
    static const struct {
        const char *name, *value;
    } accepted[] = {
        {"TG_CUDA_ATTN", "naive"}, {"TG_CUDNN_DETERMINISTIC", "0"}, {"TG_CUDA_FUSION", "0"},
        {"TG_CUDA_LMHEAD_ROWS", "8"}, {"TG_CUDNN_TUNE", "1"},
    };
    tg_error err;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        memset(&err, 0, sizeof err);
        const tg_status st = init_with(refused[i].name, refused[i].bad, &err);
        CHECKF(st == TG_ERR_ARG, "%s=%s: status %s, expected TG_ERR_ARG", refused[i].name, refused[i].bad,
               tg_status_str(st));
        CHECKF(strstr(err.msg, refused[i].name) && strstr(err.msg, refused[i].listed),
               "%s=%s: message \"%s\" should name the switch and list \"%s\"", refused[i].name, refused[i].bad,
               err.msg, refused[i].listed);
        printf("refused %s=%s: %s\n", refused[i].name, refused[i].bad, err.msg);
    }
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        memset(&err, 0, sizeof err);
        const tg_status st = init_with(accepted[i].name, accepted[i].value, &err);
        CHECKF(st == TG_OK || st == TG_ERR_CUDA, "%s=%s: status %s (%s), expected OK or, without a GPU, TG_ERR_CUDA",
               accepted[i].name, accepted[i].value, tg_status_str(st), err.msg);
        printf("accepted %s=%s: %s\n", accepted[i].name, accepted[i].value, st == TG_OK ? "init ok" : err.msg);
    }
    TEST_MAIN_END();
}
