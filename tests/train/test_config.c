/* Config parsing: defaults valid, file + overrides, errors name source and key, round trip. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tg_test.h"
#include "train/config.h"

int main(void) {
    tg_config c, d;
    tg_error err = {0};
    tg_config_defaults(&c);
    CHECK_OK(tg_config_validate(&c, &err), &err);
    CHECK(c.n_layer == 12 && c.seq_len == 1024 && c.lr == 6e-4 && c.schedule == TG_SCHED_COSINE &&
          c.device == TG_DEVICE_PICK_AUTO && c.resume == TG_RESUME_AUTO);

    CHECK_OK(tg_config_set_override(&c, "train.lr=1e-3", &err), &err);
    CHECK(c.lr == 1e-3);
    CHECK_OK(tg_config_set_override(&c, "train.seed=18446744073709551615", &err), &err);
    CHECK(c.seed == 18446744073709551615ull);
    CHECK_OK(tg_config_set_override(&c, "data.val=", &err), &err);
    CHECK(c.val[0] == 0);

    CHECK(tg_config_set_override(&c, "train.lr=abc", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "train.lr") && strstr(err.msg, "command line"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "train.micro_batch=0", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "an integer in [1,"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "train.micro_batch=3.5", &err) == TG_ERR_CONFIG);
    CHECK(tg_config_set_override(&c, "train.seed=-1", &err) == TG_ERR_CONFIG);
    CHECK(tg_config_set_override(&c, "train.lr=nan", &err) == TG_ERR_CONFIG);
    CHECK(tg_config_set_override(&c, "train.nope=1", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "unknown key 'train.nope'"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "lr=1", &err) == TG_ERR_CONFIG);
    /* ZeRO stages: 0 to 3; anything else is refused with the range. */
    CHECK_OK(tg_config_set_override(&c, "train.zero_stage=3", &err), &err);
    CHECK(c.zero_stage == 3);
    CHECK(tg_config_set_override(&c, "train.zero_stage=4", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "train.zero_stage") && strstr(err.msg, "[0, 3]"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "train.zero_stage=-1", &err) == TG_ERR_CONFIG);
    CHECK_OK(tg_config_set_override(&c, "train.zero_stage=0", &err), &err);
    CHECK(tg_config_set_override(&c, "train.device=tpu", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "one of auto|cpu|cuda"), "%s", err.msg);
    /* Enum keys are parsed at load; train.resume takes a keyword or a path. */
    CHECK_OK(tg_config_set_override(&c, "train.schedule=constant", &err), &err);
    CHECK(c.schedule == TG_SCHED_CONSTANT);
    CHECK_OK(tg_config_set_override(&c, "train.schedule=wsd", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "train.decay_shape=sqrt", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "train.decay_frac=0.3", &err), &err);
    CHECK(c.schedule == TG_SCHED_WSD && c.decay_shape == TG_DECAY_SQRT && c.decay_frac == 0.3);
    CHECK(tg_config_set_override(&c, "train.decay_frac=1.5", &err) != TG_OK);
    CHECK_OK(tg_config_set_override(&c, "train.precision=fp32", &err), &err);
    CHECK(c.precision == TG_PRECISION_FP32);
    CHECK_OK(tg_config_set_override(&c, "train.resume=runs/x/checkpoints/step_00000008.h5", &err), &err);
    CHECK(c.resume == TG_RESUME_PATH && strcmp(c.resume_path, "runs/x/checkpoints/step_00000008.h5") == 0);
    CHECK_OK(tg_config_set_override(&c, "train.resume=none", &err), &err);
    CHECK(c.resume == TG_RESUME_NONE && c.resume_path[0] == 0);
    CHECK(c.comm_timeout == 120);
    CHECK_OK(tg_config_set_override(&c, "comm.timeout=12.5", &err), &err);
    CHECK(c.comm_timeout == 12.5);
    CHECK(tg_config_set_override(&c, "comm.timeout=0", &err) == TG_ERR_CONFIG);

    /* [cuda]: the CUDA backend's choices, checked at load like every key. */
    tg_config_defaults(&c);
    CHECK(c.cuda_attention == TG_CUDA_ATTN_CUDNN && c.cuda_cudnn_deterministic == 1 && c.cuda_fusion == 1 &&
          c.cuda_lmhead_rows == 8192 && !c.cuda_cudnn_tune && !c.cuda_cublaslt_tune && !c.cuda_profile &&
          !c.cpu_emulate_bf16);
    CHECK_OK(tg_config_set_override(&c, "cuda.attention=naive", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "cuda.cudnn_deterministic=0", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "cuda.lmhead_rows=192", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "train.cpu_emulate_bf16=1", &err), &err);
    CHECK(c.cuda_attention == TG_CUDA_ATTN_NAIVE && c.cuda_cudnn_deterministic == 0 && c.cuda_lmhead_rows == 192 &&
          c.cpu_emulate_bf16 == 1);
    CHECK(tg_config_set_override(&c, "cuda.attention=fast", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "cuda.attention") && strstr(err.msg, "one of cudnn|flash|naive"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "cuda.lmhead_rows=0", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "cuda.lmhead_rows") && strstr(err.msg, "an integer in [1,"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "cuda.cublaslt_tune=yes", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "an integer in [0, 1]"), "%s", err.msg);
    CHECK(tg_config_set_override(&c, "cuda.fusion=2", &err) == TG_ERR_CONFIG);
    CHECK(tg_config_set_override(&c, "train.cpu_emulate_bf16=2", &err) == TG_ERR_CONFIG);
    CHECK(tg_config_set_override(&c, "cuda.flash_pipe=0", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "unknown key 'cuda.flash_pipe'"), "%s", err.msg);

    /* A file: values, line numbers in errors. */
    const char *path = "test_config_tmp.ini";
    FILE *f = fopen(path, "w");
    fprintf(f, "# comment\n[model]\nn_layer = 3\n\n[train]\nmax_steps = 7\nlr = 1e-4\nmin_lr = 1e-3\n");
    fclose(f);
    tg_config_defaults(&c);
    CHECK_OK(tg_config_load_file(&c, path, &err), &err);
    CHECK(c.n_layer == 3 && c.max_steps == 7);
    CHECK(tg_config_validate(&c, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "train.min_lr"), "%s", err.msg);
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 3\n[optim]\nlr = 1\n");
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "test_config_tmp.ini:4") && strstr(err.msg, "[optim]"), "%s", err.msg);

    /* The first error in a file wins, even when later lines are fine. */
    f = fopen(path, "w");
    fprintf(f, "[train]\nmax_steps = -3\nlr = 0.1\n");
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "test_config_tmp.ini:2: bad value '-3' for train.max_steps"), "%s", err.msg);

    /* Issue 25 item 3: what is not a config is refused; a config must name the model. */
    tg_config_defaults(&c);
    CHECK(tg_config_load_file(&c, ".", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "not a config file"), "%s", err.msg);
    CHECK(tg_config_load_file(&c, "/dev/null", &err) == TG_ERR_CONFIG);
    f = fopen(path, "w");
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "a config must name at least the model"), "%s", err.msg);
    f = fopen(path, "w");
    fprintf(f, "[train]\nmax_steps = 3\n");
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "a config must name at least the model"), "%s", err.msg);
    /* Long lines: a 295-byte data.train line is read whole; byte 200 being a space changes nothing. */
    char longval[4200];
    memset(longval, 'a', 280);
    longval[280] = 0;
    memcpy(longval + 180, "/x y/", 5);
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 2\n[data]\ntrain = %s\n[run]\nout_dir = r\n", longval);
    fclose(f);
    tg_config_defaults(&c);
    CHECK_OK(tg_config_load_file(&c, path, &err), &err);
    CHECK(strcmp(c.train, longval) == 0 && strcmp(c.out_dir, "r") == 0);
    /* The longest string (4095 bytes) fits; 4096 is refused by key; a line past the line limit by line. */
    memset(longval, 'b', 4095);
    longval[4095] = 0;
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 2\n[data]\ntrain = %s  # a comment\n", longval);
    fclose(f);
    CHECK_OK(tg_config_load_file(&c, path, &err), &err);
    CHECK(strlen(c.train) == 4095);
    longval[4095] = 'b';
    longval[4096] = 0;
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 2\n[data]\ntrain = %s\n", longval);
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, ":4: bad value") && strstr(err.msg, "data.train"), "%.80s", err.msg);
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 2\n[data]\ntrain = %s%s\n", longval, longval);
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "test_config_tmp.ini:4: line longer than"), "%s", err.msg);
    /* Integers are decimal: 010 is ten, 08 is eight, 0x10 is refused. */
    CHECK_OK(tg_config_set_override(&c, "train.max_steps=010", &err), &err);
    CHECK(c.max_steps == 10);
    CHECK_OK(tg_config_set_override(&c, "train.max_steps=08", &err), &err);
    CHECK(c.max_steps == 8);
    CHECK(tg_config_set_override(&c, "train.max_steps=0x10", &err) == TG_ERR_CONFIG);
    CHECK_OK(tg_config_set_override(&c, "train.seed=0100", &err), &err);
    CHECK(c.seed == 100);
    CHECK(tg_config_set_override(&c, "train.seed=0x10", &err) == TG_ERR_CONFIG);
    /* The seed's range as printed is the range accepted: 2^64-1 is the largest (item 12). */
    CHECK_OK(tg_config_set_override(&c, "train.seed=18446744073709551615", &err), &err);
    CHECK(tg_config_set_override(&c, "train.seed=18446744073709551616", &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "[0, 18446744073709551615]"), "%s", err.msg);
    /* A key set twice is refused with both lines. */
    f = fopen(path, "w");
    fprintf(f, "[model]\nn_layer = 2\n[train]\nmax_steps = 3\nlr = 1e-3\nmax_steps = 4\n");
    fclose(f);
    CHECK(tg_config_load_file(&c, path, &err) == TG_ERR_CONFIG);
    CHECKF(strstr(err.msg, "test_config_tmp.ini:6: duplicate key train.max_steps (first set on line 4)"), "%s",
           err.msg);

    /* Round trip: the written config reads back to the same values. */
    tg_config_defaults(&c);
    CHECK_OK(tg_config_set_override(&c, "train.lr=0.00123456789", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "run.out_dir=/tmp/x y", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "train.schedule=linear", &err), &err);
    CHECK_OK(tg_config_set_override(&c, "train.resume=/tmp/a b.h5", &err), &err);
    f = fopen(path, "w");
    tg_config_write(&c, f);
    fclose(f);
    tg_config_defaults(&d);
    CHECK_OK(tg_config_load_file(&d, path, &err), &err);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    remove(path);
    TEST_MAIN_END();
}
