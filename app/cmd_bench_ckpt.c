/* app/cmd_bench_ckpt.c — `truthgpt bench ckpt`: write and read speed of one checkpoint of a model
 * shape (default: configs/gpt2-124m.ini) holding what the trainer saves: random params and AdamW
 * moments, one loader state, the config text. Write = tg_ckpt_write_file (streamed: compress,
 * write, fsync, rename); read = tg_ckpt_load (read, decompress, verify every CRC).
 * MB/s counts the raw (uncompressed) tensor bytes, 1 MB = 1e6 bytes.
 * dev/ckpt_h5py_bench.py times h5py writing the same datasets from the file this leaves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "core/rng.h"
#include "core/timer.h"
#include "train/config.h"
#include "train/trainer.h"

static void bench_ckpt_usage(FILE *f) {
    fprintf(f,
            "usage: truthgpt bench ckpt [--config CONFIG] [--out FILE] [--repeat N] [section.key=value ...]\n"
            "\n"
            "Writes and reads back a checkpoint of the config's model shape (default\n"
            "configs/gpt2-124m.ini; model.* keys change it) with random params and AdamW state, and\n"
            "prints MB/s (raw tensor bytes, 1e6) of the write (compress + write + fsync + rename)\n"
            "and of the verified read. --out: the file (default /tmp/truthgpt-bench-ckpt.h5; kept, so\n"
            "dev/ckpt_h5py_bench.py can write the same datasets with h5py). --repeat: runs (default 3);\n"
            "the median is printed.\n");
}

static int bench_ckpt_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int tg_cmd_bench_ckpt(int argc, char **argv) {
    tg_config cfg;
    tg_error err = {0};
    tg_ckpt_state s = {0};
    tg_loader_state ls = {.seed = 1, .position = 0};
    const char *cfg_path = "configs/gpt2-124m.ini", *out = "/tmp/truthgpt-bench-ckpt.h5";
    int repeat = 3, rc = 1;
    double tw[16], tr[16];
    tg_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            bench_ckpt_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--config") && i + 1 < argc) {
            cfg_path = argv[++i];
        } else if (!strcmp(a, "--out") && i + 1 < argc) {
            out = argv[++i];
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (a[0] != '-' && strchr(a, '=')) {
            continue; /* applied after the file */
        } else {
            fprintf(stderr, "truthgpt bench ckpt: unknown or incomplete option '%s'\n\n", a);
            bench_ckpt_usage(stderr);
            return 2;
        }
    }
    if (repeat < 1 || repeat > 16) {
        fprintf(stderr, "truthgpt bench ckpt: --repeat must be 1..16\n");
        return 2;
    }
    if (tg_config_load(&cfg, cfg_path, argc - 1, argv + 1, &err) != TG_OK) goto fail;
    s.model_cfg = tg_train_model_config(&cfg, cfg.vocab_size ? cfg.vocab_size : 50257, cfg.seq_len);
    if (tg_gpt2_config_finalize(&s.model_cfg, &err) != TG_OK) goto fail;
    size_t n = tg_ckpt_n_params(&s.model_cfg);
    if (n == 0) {
        tg_error_set(&err, TG_ERR_ARG, "bad model shape");
        goto fail;
    }
    s.params = malloc(n * sizeof(float));
    s.adam_m = malloc(n * sizeof(float));
    s.adam_v = malloc(n * sizeof(float));
    if (!s.params || !s.adam_m || !s.adam_v) {
        tg_error_set(&err, TG_ERR_NOMEM, "out of memory");
        goto fail;
    }
    {
        tg_gpt2_layout lay;
        if (tg_gpt2_layout_init(&lay, &s.model_cfg, &err) != TG_OK) goto fail;
        tg_gpt2_params_init(&lay, s.params, cfg.seed);
        tg_gpt2_layout_free(&lay);
    }
    tg_rng r;
    tg_rng_init(&r, cfg.seed + 1);
    for (size_t i = 0; i < n; i++) { /* moments of a few hundred steps: small, v = a square */
        float g = 1e-3f * tg_rng_normal(&r);
        s.adam_m[i] = g;
        s.adam_v[i] = g * g + 1e-3f * g * tg_rng_normal(&r) * 1e-3f;
    }
    s.step = 1000;
    s.rng_state = 42;
    s.world_size = 1;
    s.n_loader_states = 1;
    s.loader_states = &ls;
    s.config_ini = s.tokenizer_hash = s.tokenizer_path = "";
    const double raw_mb = 3.0 * (double)n * sizeof(float) / 1e6;
    printf("bench ckpt: gpt2 L=%d NH=%d C=%d V=%d, %.1fM params, params + adam_m + adam_v = %.1f MB raw, "
           "%d runs -> %s\n",
           s.model_cfg.n_layer, s.model_cfg.n_head, s.model_cfg.n_embd, s.model_cfg.vocab_size,
           (double)n / 1e6, raw_mb, repeat, out);
    fflush(stdout);
    for (int k = 0; k < repeat; k++) {
        double t0 = tg_now_ms();
        if (tg_ckpt_write_file(out, &s, &err) != TG_OK) goto fail;
        tw[k] = (tg_now_ms() - t0) * 1e-3;
        tg_ckpt_state back = {0};
        t0 = tg_now_ms();
        tg_status st = tg_ckpt_load(out, &back, &err);
        tr[k] = (tg_now_ms() - t0) * 1e-3;
        int same = st == TG_OK && memcmp(back.adam_v, s.adam_v, n * sizeof(float)) == 0;
        tg_ckpt_state_free(&back);
        if (st != TG_OK) goto fail;
        if (!same) {
            tg_error_set(&err, TG_ERR_INTERNAL, "read back differs from what was written");
            goto fail;
        }
    }
    struct stat sb;
    double file_mb = stat(out, &sb) == 0 ? (double)sb.st_size / 1e6 : 0;
    qsort(tw, (size_t)repeat, sizeof *tw, bench_ckpt_cmp);
    qsort(tr, (size_t)repeat, sizeof *tr, bench_ckpt_cmp);
    double mw = tw[repeat / 2], mr = tr[repeat / 2];
    printf("file %.1f MB (%.2fx compression)\n", file_mb, file_mb > 0 ? raw_mb / file_mb : 0);
    printf("write %.2f s  %.1f MB/s   (min %.2f s)\n", mw, raw_mb / mw, tw[0]);
    printf("read  %.2f s  %.1f MB/s   (min %.2f s)\n", mr, raw_mb / mr, tr[0]);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "truthgpt bench ckpt: %s\n", err.msg);
    rc = 1;
done:
    free(s.params);
    free(s.adam_m);
    free(s.adam_v);
    return rc;
}
