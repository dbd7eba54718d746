/* tests/cuda/test_cuda_options.c — the CUDA backend's options (tg_model_options.cuda): a value
 * outside an option's range makes tg_model_init fail with TG_ERR_ARG and a message that names
 * the option and the accepted values, before any device is touched, so this test runs on
 * machines without a GPU too. Accepted values pass the checks: init then succeeds on a GPU
 * machine, or fails with TG_ERR_CUDA (not TG_ERR_ARG) without one. (The config keys of the
 * [cuda] section that fill these options are checked at load: tests/train/test_config.c.) */
#include <stdio.h>
#include <string.h>

#include "model/model.h"
#include "tg_test.h"

static tg_status init_with(const tg_cuda_options *co, tg_error *err) {
    tg_gpt2_config cfg = {.max_seq_len = 16, .vocab_size = 64, .n_layer = 1, .n_head = 2, .n_embd = 32};
    tg_model_options opt = {.device = TG_DEVICE_CUDA, .bf16 = 1, .B = 2, .T = 16, .pad_multiple = 64, .cuda = *co};
    tg_model *m = NULL;
    tg_error e0 = {0};
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &e0), &e0);
    const tg_status st = tg_model_init(&m, &cfg, &opt, err);
    tg_model_free(m);
    return st;
}

int main(void) {
    static const struct {
        const char *what, *listed; /* the option, and what the message must list */
        tg_cuda_options co;
    } refused[] = {
        {"attention=3", "0 (cudnn), 1 (flash) or 2 (naive)", {.attention = (tg_cuda_attention)3}},
        {"attention=-1", "0 (cudnn), 1 (flash) or 2 (naive)", {.attention = (tg_cuda_attention)-1}},
        {"cudnn_atomics=2", "0 or 1", {.cudnn_atomics = 2}},
        {"cudnn_tune=-1", "0 or 1", {.cudnn_tune = -1}},
        {"cublaslt_tune=2", "0 or 1", {.cublaslt_tune = 2}},
        {"unfused=7", "0 or 1", {.unfused = 7}},
        {"profile=2", "0 or 1", {.profile = 2}},
        {"lmhead_rows=-1", "row count", {.lmhead_rows = -1}},
    };
    static const struct {
        const char *what;
        tg_cuda_options co;
    } accepted[] = {
        {"defaults", {0}},
        {"attention=naive", {.attention = TG_CUDA_ATTN_NAIVE}},
        {"attention=flash, unfused", {.attention = TG_CUDA_ATTN_FLASH, .unfused = 1}},
        {"cudnn_atomics, cudnn_tune", {.cudnn_atomics = 1, .cudnn_tune = 1}},
        {"lmhead_rows=8, cublaslt_tune, profile", {.cublaslt_tune = 1, .lmhead_rows = 8, .profile = 1}},
    };
    tg_error err;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        memset(&err, 0, sizeof err);
        const tg_status st = init_with(&refused[i].co, &err);
        CHECKF(st == TG_ERR_ARG, "%s: status %s, expected TG_ERR_ARG", refused[i].what, tg_status_str(st));
        CHECKF(strstr(err.msg, refused[i].what) && strstr(err.msg, refused[i].listed),
               "%s: message \"%s\" should name the option and list \"%s\"", refused[i].what, err.msg,
               refused[i].listed);
        printf("refused %s: %s\n", refused[i].what, err.msg);
    }
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        memset(&err, 0, sizeof err);
        const tg_status st = init_with(&accepted[i].co, &err);
        CHECKF(st == TG_OK || st == TG_ERR_CUDA, "%s: status %s (%s), expected OK or, without a GPU, TG_ERR_CUDA",
               accepted[i].what, tg_status_str(st), err.msg);
        printf("accepted %s: %s\n", accepted[i].what, st == TG_OK ? "init ok" : err.msg);
    }
    TEST_MAIN_END();
}
