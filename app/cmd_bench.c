/* `truthgpt bench [model|data|comm] ...` — benchmarks are commands, not timed tests.
 * bench model: full training steps (forward, backward, AdamW) on random tokens. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "core/rng.h"
#include "core/timer.h"
#include "model/model.h"
#include "train/config.h"
#include "train/dp_optim.h"
#include "train/trainer.h"

static void bench_usage(FILE *f) {
    fprintf(f,
            "usage: truthgpt bench [model] --config CONFIG [--batch B] [--seq-len T] [--steps N]\n"
            "                      [--warmup N] [--world N] [section.key=value ...]\n"
            "       truthgpt bench data --help\n"
            "       truthgpt bench comm --help\n"
            "       truthgpt bench ckpt --help\n"
            "\n"
            "bench model times training steps (forward + backward + AdamW, no gradient accumulation) on\n"
            "random tokens and prints ms/step, tokens/s, TFLOP/s (FLOPs/token = 6N + 12*L*C*T), MFU against\n"
            "the device's dense bf16 peak, and peak memory. device/precision/recompute come from the\n"
            "config's [train] keys. Then the model's bytes by kind (params, grads, optimizer state,\n"
            "activations) and what one rank would hold at each train.zero_stage with --world N ranks\n"
            "(default 8; docs/comm.md, \"Memory per rank\").\n");
}

int tg_cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "data") == 0) return tg_cmd_bench_data(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "comm") == 0) return tg_cmd_bench_comm(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "ckpt") == 0) return tg_cmd_bench_ckpt(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "model") == 0) return tg_cmd_bench_model(argc - 1, argv + 1);
    return tg_cmd_bench_model(argc, argv);
}

/* warmup + steps full training steps on one batch; ms[i] = the time of timed step i. */
static tg_status bench_steps(tg_model *m, const int32_t *inputs, const int32_t *targets, int B, size_t n,
                             int warmup, int steps, double *ms, tg_error *err) {
    tg_status st = TG_OK;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = tg_now_ms();
        float loss;
        double sq;
        TG_TRY(tg_model_grads_zero(m, err));
        TG_TRY(tg_model_forward(m, inputs, targets, B, err));
        TG_TRY(tg_model_backward(m, 1.0f, err));
        TG_TRY(tg_model_grad_sqnorm(m, 0, n, &sq, err));
        tg_adamw_args a = {.lo = 0, .hi = n, .lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                           .weight_decay = 0.1f, .grad_scale = sq > 1.0 ? (float)(1.0 / sqrt(sq)) : 1.0f,
                           .t = s + 1};
        TG_TRY(tg_model_adamw(m, &a, err));
        TG_TRY(tg_model_loss(m, &loss, err)); /* synchronises the device */
        double dt = tg_now_ms() - t0;
        if (s >= warmup) ms[s - warmup] = dt;
        if (!isfinite(loss)) TG_FAIL(err, TG_ERR_NUMERIC, "loss is %g at bench step %d", loss, s);
    }
cleanup:
    return st;
}

/* This model's bytes by kind, and per rank at each ZeRO stage for `world` ranks. */
static void bench_memory(const tg_model *m, int world) {
    tg_model_memory mm;
    tg_model_memory_get(m, &mm);
    printf("memory (bytes): params %zu, grads %zu, optimizer state %zu, activations %zu\n", mm.params, mm.grads,
           mm.optimizer, mm.activations);
    printf("per rank at world %d (projected; stages 2, 3: CPU backends, fp32):\n", world);
    printf("%-10s %-14s %-14s %-16s %-14s %-14s %s\n", "zero_stage", "params", "grads", "optimizer", "activations",
           "window", "total");
    for (int z = 0; z <= 3; z++) {
        tg_model_memory p;
        tg_dp_optim_memory_plan(m, z, world, &p);
        printf("%-10d %-14zu %-14zu %-16zu %-14zu %-14zu %zu\n", z, p.params, p.grads, p.optimizer, p.activations,
               p.window, p.params + p.grads + p.optimizer + p.activations);
    }
}

/* The median step's row of the table (and the device line above it). */
static tg_status bench_report(tg_model *m, double *ms, int steps, double tokens, double flops, tg_error *err) {
    tg_status st = TG_OK;
    /* median step time: robust to one slow step */
    for (int i = 1; i < steps; i++)
        for (int j = i; j > 0 && ms[j - 1] > ms[j]; j--) {
            double t = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = t;
        }
    double med = ms[steps / 2];
    tg_device_info di;
    TG_TRY(tg_model_device_info(m, &di, err));
    double tflops = flops / (med / 1e3) / 1e12;
    printf("device: %s; %s\n", di.name, tg_model_describe(m));
    /* alloc: what the model allocated (params, grads, optimizer, activations, workspaces), the
     * figure PyTorch's max_memory_allocated reports; device: total - free on the device (adds the
     * CUDA context and library modules) or, on CPU, the peak resident set. */
    printf("%-10s %-12s %-10s %-8s %-10s %-10s %s\n", "ms/step", "tokens/s", "TFLOP/s", "MFU", "alloc GB",
           "device GB", "(median)");
    char mfu[32];
    if (di.peak_bf16_tflops > 0) snprintf(mfu, sizeof mfu, "%.1f%%", 100.0 * tflops / di.peak_bf16_tflops);
    else snprintf(mfu, sizeof mfu, "n/a");
    printf("%-10.2f %-12.0f %-10.2f %-8s %-10.2f %.2f\n", med, tokens / (med / 1e3), tflops, mfu,
           (double)tg_model_device_bytes(m) / 1e9, (double)di.used_bytes / 1e9);
cleanup:
    return st;
}

int tg_cmd_bench_model(int argc, char **argv) {
    tg_config cfg;
    tg_error err = {0};
    tg_model *m = NULL;
    int32_t *inputs = NULL, *targets = NULL;
    float *params = NULL;
    double *ms = NULL;
    int B = 0, T = 0, steps = 20, warmup = 3, world = 8, rc = 1;
    const char *cfg_path = NULL;
    tg_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--config") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "--batch") && i + 1 < argc) {
            B = atoi(argv[++i]);
        } else if (!strcmp(a, "--seq-len") && i + 1 < argc) {
            T = atoi(argv[++i]);
        } else if (!strcmp(a, "--steps") && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (!strcmp(a, "--warmup") && i + 1 < argc) {
            warmup = atoi(argv[++i]);
        } else if (!strcmp(a, "--world") && i + 1 < argc) {
            world = atoi(argv[++i]);
        } else if (a[0] != '-' && strchr(a, '=')) {
            continue; /* applied after the file */
        } else {
            fprintf(stderr, "truthgpt bench: unknown or incomplete option '%s'\n\n", a);
            bench_usage(stderr);
            return 2;
        }
    }
    if (tg_config_load(&cfg, cfg_path, argc - 1, argv + 1, &err) != TG_OK) goto fail;
    if (B <= 0) B = cfg.micro_batch;
    if (T <= 0) T = cfg.seq_len;
    if (steps < 1 || warmup < 0 || world < 1) {
        fprintf(stderr, "truthgpt bench: --steps and --world must be >= 1 and --warmup >= 0\n");
        return 2;
    }
    {
        tg_gpt2_config mc = tg_train_model_config(&cfg, cfg.vocab_size ? cfg.vocab_size : 50257, T);
        if (tg_gpt2_config_finalize(&mc, &err) != TG_OK) goto fail;
        tg_device_kind dev = tg_train_device(&cfg);
        tg_model_options mo = {.device = dev, .bf16 = dev == TG_DEVICE_CUDA && cfg.precision == TG_PRECISION_BF16, .recompute = cfg.recompute,
                               .B = B, .T = T, .pad_multiple = 64, .cuda = tg_train_cuda_options(&cfg)};
        if (tg_model_init(&m, &mc, &mo, &err) != TG_OK) goto fail;
        const tg_gpt2_layout *lay = tg_model_layout(m);
        size_t n = tg_model_n_padded(m);
        params = calloc(n, sizeof *params);
        inputs = malloc((size_t)B * T * sizeof *inputs);
        targets = malloc((size_t)B * T * sizeof *targets);
        ms = calloc((size_t)steps, sizeof *ms);
        if (!params || !inputs || !targets || !ms) {
            tg_error_set(&err, TG_ERR_NOMEM, "out of memory");
            goto fail;
        }
        tg_gpt2_params_init(lay, params, cfg.seed);
        if (tg_model_params_set(m, params, &err) != TG_OK) goto fail;
        if (tg_model_opt_init(m, 0, n, &err) != TG_OK) goto fail;
        tg_rng r;
        tg_rng_init(&r, cfg.seed);
        for (int i = 0; i < B * T; i++) {
            inputs[i] = (int32_t)tg_rng_below(&r, (uint64_t)mc.vocab_size);
            targets[i] = (int32_t)tg_rng_below(&r, (uint64_t)mc.vocab_size);
        }
        const double tokens = (double)B * T, flops = tg_gpt2_flops_per_token(lay, T) * tokens;
        printf("bench model: gpt2 L=%d NH=%d C=%d V=%d, %.1fM params, B=%d T=%d, device %s%s, %d steps (+%d warmup)\n",
               mc.n_layer, mc.n_head, mc.n_embd, mc.vocab_size, (double)lay->n_params / 1e6, B, T,
               dev == TG_DEVICE_CUDA ? "cuda" : "cpu",
               dev == TG_DEVICE_CUDA ? (mo.bf16 ? " bf16" : " fp32") : (omp_get_max_threads() > 1 ? " (OpenMP)" : ""),
               steps, warmup);
        fflush(stdout);
        if (bench_steps(m, inputs, targets, B, n, warmup, steps, ms, &err) != TG_OK) goto fail;
        if (bench_report(m, ms, steps, tokens, flops, &err) != TG_OK) goto fail;
        bench_memory(m, world);
        rc = 0;
    }
    goto done;
fail:
    fprintf(stderr, "truthgpt bench: %s\n", err.msg);
    rc = 1;
done:
    tg_model_free(m);
    free(params);
    free(inputs);
    free(targets);
    free(ms);
    return rc;
}
