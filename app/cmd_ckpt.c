/* app/cmd_ckpt.c — `truthgpt ckpt info|latest` and `truthgpt sample`. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "train/sample.h"

static void ckpt_usage(void) {
    fprintf(stderr,
            "usage: truthgpt ckpt info FILE [--no-config] [--checksums]\n"
            "           print what a checkpoint holds (step, config, tensors, sizes) and verify\n"
            "           every dataset's checksum; exit 1 if any is bad\n"
            "       truthgpt ckpt latest DIR\n"
            "           print the newest checkpoint in DIR that verifies (what train.resume=auto\n"
            "           would pick); exit 1 if there is none\n"
            "       truthgpt ckpt diff A.h5 B.h5 [--tol X]\n"
            "           compare the parameters of two checkpoints\n");
}

/* `ckpt info`'s text: the header (once the reader got that far), one line per dataset read,
 * and the checksum verdict when the whole file was walked (ok = the walk succeeded). */
static void ckpt_info_print(const char *path, const tg_ckpt_info *in, int show_config, int ok) {
    const tg_ckpt_state *s = &in->state;
    const tg_gpt2_config *c = &s->model_cfg;
    if (!in->header_read) return;
    printf("checkpoint      %s (%.1f MB)\n", path, (double)in->file_bytes / 1e6);
    printf("format          %s v%" PRId64 "\n", TG_CKPT_FORMAT_NAME, in->format_version);
    printf("step            %" PRId64 "\n", s->step);
    printf("tokens_seen     %" PRId64 "\n", s->tokens_seen);
    printf("rng_state       0x%016" PRIx64 "\n", s->rng_state);
    printf("saved by        world_size=%d zero_stage=%d\n", s->world_size, s->zero_stage);
    printf("model           T=%d V=%d Vp=%d L=%d NH=%d C=%d  (%" PRId64 " parameters)\n", c->max_seq_len,
           c->vocab_size, c->padded_vocab_size, c->n_layer, c->n_head, c->n_embd, in->n_params);
    printf("optimizer       %s%s\n", in->has_adam ? "AdamW m, v (gathered)" : "none",
           in->has_master ? " + fp32 master weights" : "");
    printf("tokenizer       %s (hash %s)\n", s->tokenizer_path[0] ? s->tokenizer_path : "-",
           s->tokenizer_hash[0] ? s->tokenizer_hash : "-");
    for (int r = 0; r < s->n_loader_states; r++)
        printf("loader[%d]       seed=%" PRIu64 " position=%" PRIu64 "\n", r, s->loader_states[r].seed,
               s->loader_states[r].position);
    printf("root attributes crc32c %08x  %s\n", in->meta_crc32c, in->meta_ok ? "ok" : "BAD (checksum)");
    size_t ini = strlen(s->config_ini);
    if (show_config) printf("config:\n%s%s", s->config_ini, ini > 0 && s->config_ini[ini - 1] != '\n' ? "\n" : "");
    printf("datasets:\n");
    int n_ok = 0;
    for (int i = 0; i < in->n_datasets; i++) {
        const tg_ckpt_dataset_info *d = &in->datasets[i];
        char shape[64];
        if (d->ndim == 2)
            snprintf(shape, sizeof shape, "[%llu, %llu]", (unsigned long long)d->dims[0],
                     (unsigned long long)d->dims[1]);
        else
            snprintf(shape, sizeof shape, "[%llu]", (unsigned long long)d->dims[0]);
        const char *verdict = !d->readable ? "BAD (unreadable)" : !d->crc_ok ? "BAD (checksum)" : "ok";
        printf("  %-44s %-14s %12zu B %12llu B stored  crc32c %08x  %s\n", d->label, shape, d->bytes,
               (unsigned long long)d->stored_bytes, d->crc32c, verdict);
        if (!d->readable) printf("    (%s)\n", d->why.msg);
        n_ok += d->crc_ok;
    }
    if (!ok) return;
    if (in->n_bad == 0) printf("checksums: all %d datasets ok\n", n_ok);
    else printf("checksums: %d BAD, %d ok\n", in->n_bad, n_ok);
}

int tg_cmd_ckpt(int argc, char **argv) {
    tg_error err = {0};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        ckpt_usage();
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "diff") == 0) return tg_cmd_ckpt_diff(argc - 1, argv + 1);
    if (argc < 3) {
        ckpt_usage();
        return 2;
    }
    const char *sub = argv[1], *file = argv[2];
    if (strcmp(sub, "info") == 0) {
        int show_config = 1;
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--no-config") == 0) {
                show_config = 0;
            } else if (strcmp(argv[i], "--checksums") == 0) {
                /* accepted for scripts: the per-dataset crc32c lines are always printed */
            } else {
                fprintf(stderr, "truthgpt ckpt info: unknown option %s\n", argv[i]);
                ckpt_usage();
                return 2;
            }
        }
        tg_ckpt_info info;
        tg_status st = tg_ckpt_info_read(file, &info, &err);
        ckpt_info_print(file, &info, show_config, st == TG_OK);
        int n_bad = info.n_bad;
        tg_ckpt_info_free(&info);
        if (st != TG_OK) {
            fflush(stdout);
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        return n_bad ? 1 : 0;
    }
    if (strcmp(sub, "latest") == 0 && argc == 3) {
        tg_log lg = {0, 1, 1};
        char path[4096];
        int found = 0;
        if (tg_ckpt_find_latest(file, &lg, path, sizeof path, &found, &err) != TG_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        if (!found) {
            fprintf(stderr, "no valid checkpoint in %s\n", file);
            return 1;
        }
        printf("%s\n", path);
        return 0;
    }
    ckpt_usage();
    return 2;
}

/* ------------------------------------------------------------------------------------------ */

static void sample_usage(void) {
    fprintf(stderr,
            "usage: truthgpt sample FILE --prompt TEXT --tokens N [--temperature T] [--top-k K]\n"
            "                       [--seed S] [--tokenizer FILE] [--device cpu|cuda]\n"
            "  Generates N tokens after TEXT with the checkpoint's weights. temperature 0 is greedy\n"
            "  (default 1.0); top-k 0 keeps the whole vocabulary (default 40); seed default 1337.\n"
            "  The tokenizer defaults to the file recorded in the checkpoint.\n");
}

/* Prints each sampled token's bytes as it comes. */
static void emit_piece(void *ctx, uint32_t id) {
    size_t len = 0;
    const uint8_t *piece = tg_tokenizer_piece(ctx, id, &len);
    if (piece) fwrite(piece, 1, len, stdout);
    fflush(stdout);
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

int tg_cmd_sample(int argc, char **argv) {
    tg_status st = TG_OK;
    tg_error err = {0};
    tg_log lg = {0, 1, 1};
    const char *file = NULL, *prompt = NULL, *tok_path = NULL, *device = "cpu";
    long n_tokens = -1, top_k = 40, seed = 1337;
    float temperature = 1.0f;
    tg_ckpt_state ck = {0};
    tg_tokenizer *tok = NULL;
    tg_model *m = NULL;
    tg_tokens ids = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        long v;
        if (strcmp(a, "--prompt") == 0 && has_val) {
            prompt = argv[++i];
        } else if (strcmp(a, "--tokens") == 0 && has_val && parse_int(argv[i + 1], 0, 1 << 24, &v)) {
            n_tokens = v;
            i++;
        } else if (strcmp(a, "--top-k") == 0 && has_val && parse_int(argv[i + 1], 0, 1 << 24, &v)) {
            top_k = v;
            i++;
        } else if (strcmp(a, "--seed") == 0 && has_val && parse_int(argv[i + 1], 0, LONG_MAX, &v)) {
            seed = v;
            i++;
        } else if (strcmp(a, "--temperature") == 0 && has_val) {
            char *end;
            temperature = strtof(argv[++i], &end);
            if (*end || !(temperature >= 0.0f) || !isfinite(temperature)) {
                fprintf(stderr, "truthgpt sample: bad --temperature %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--tokenizer") == 0 && has_val) {
            tok_path = argv[++i];
        } else if (strcmp(a, "--device") == 0 && has_val) {
            device = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sample_usage();
            return 0;
        } else if (a[0] != '-' && !file) {
            file = a;
        } else {
            fprintf(stderr, "truthgpt sample: bad argument %s\n", a);
            sample_usage();
            return 2;
        }
    }
    if (!file || !prompt || n_tokens < 0 ||
        (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)) {
        sample_usage();
        return 2;
    }

    TG_TRY(tg_ckpt_load(file, &ck, &err));
    const tg_gpt2_config *cfg = &ck.model_cfg;
    if (!tok_path) tok_path = ck.tokenizer_path;
    if (!tok_path || !tok_path[0])
        TG_FAIL(&err, TG_ERR_ARG, "%s records no tokenizer file; pass --tokenizer FILE", file);
    TG_TRY(tg_tokenizer_load(&tok, tok_path, &err));
    if (ck.tokenizer_hash && ck.tokenizer_hash[0] &&
        strcmp(ck.tokenizer_hash, tg_tokenizer_hash(tok)) != 0)
        tg_log_warn(&lg, "tokenizer %s (hash %.12s...) is not the one the model was trained with "
                         "(hash %.12s...)", tok_path, tg_tokenizer_hash(tok), ck.tokenizer_hash);
    int V = cfg->vocab_size;
    if (tg_tokenizer_vocab_size(tok) > V)
        TG_FAIL(&err, TG_ERR_DATA, "tokenizer %s has %d tokens but the model only %d", tok_path,
                tg_tokenizer_vocab_size(tok), V);

    int V_tok = tg_tokenizer_vocab_size(tok);
    TG_TRY(tg_tokenizer_encode(tok, (const uint8_t *)prompt, strlen(prompt), &ids, &err));
    if (ids.n == 0) TG_TRY(tg_tokens_push(&ids, (uint32_t)tg_tokenizer_eot_id(tok), &err));
    /* The context a forward sees is at most T tokens; a shorter model T saves time. */
    size_t want = ids.n + (size_t)n_tokens;
    int T = want < (size_t)cfg->max_seq_len ? (int)want : cfg->max_seq_len;
    tg_model_options opt = {0};
    opt.device = strcmp(device, "cuda") == 0 ? TG_DEVICE_CUDA : TG_DEVICE_CPU;
    opt.B = 1;
    opt.T = T;
    opt.pad_multiple = 1;
    TG_TRY(tg_model_init(&m, cfg, &opt, &err));
    /* the canonical fp32 values are the master weights where there are any */
    TG_TRY(tg_model_params_set(m, ck.master ? ck.master : ck.params, &err));

    tg_rng rng;
    tg_rng_init(&rng, (uint64_t)seed);
    tg_log_info(&lg, "sample: step %" PRId64 " checkpoint, %zu prompt tokens, T=%d, %s",
                ck.step, ids.n, T, device);
    fputs(prompt, stdout);
    fflush(stdout);
    double t0 = tg_now_ms();
    /* Only ids the tokenizer can decode are candidates (a model may have spare vocab rows). */
    tg_sample_options so = {.n_tokens = (int)n_tokens, .temperature = temperature, .top_k = (int)top_k,
                            .vocab_limit = V_tok};
    TG_TRY(tg_sample_generate(m, &ids, &so, &rng, emit_piece, tok, &err));
    fputc('\n', stdout);
    fflush(stdout); /* before the stderr summary line */
    double dt = (tg_now_ms() - t0) * 1e-3;
    tg_log_info(&lg, "sample: %ld tokens in %.2f s (%.1f tok/s)", n_tokens, dt,
                dt > 0 ? (double)n_tokens / dt : 0.0);
cleanup:
    if (st != TG_OK) {
        fflush(stdout);
        fprintf(stderr, "error: %s\n", err.msg);
    }
    tg_tokens_free(&ids);
    tg_model_free(m);
    tg_tokenizer_free(tok);
    tg_ckpt_state_free(&ck);
    return st == TG_OK ? 0 : 1;
}
