/* app/cmd_sample.c — `truthgpt sample`: text from a checkpoint. */
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/ckpt_tokenizer.h"
#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "train/sample.h"

static void sample_usage(void) {
    fprintf(stderr,
            "usage: truthgpt sample FILE --prompt TEXT --tokens N [--temperature T] [--top-k K]\n"
            "                       [--top-p P] [--stop-at-eot] [--seed S] [--tokenizer FILE]\n"
            "                       [--device cpu|cuda] [--no-cache]\n"
            "  Generates N tokens after TEXT with the checkpoint's weights. temperature 0 is greedy\n"
            "  (default 1.0); top-k 0 keeps the whole vocabulary (default 40); top-p (nucleus, default 1\n"
            "  = off); --stop-at-eot ends at the end-of-text token; seed default 1337.\n"
            "  A KV cache (CPU and CUDA) makes each token cost the same whatever its position;\n"
            "  prompt + N must then fit the model's seq_len. --no-cache recomputes the whole window per\n"
            "  token instead, sliding it past seq_len (no top-p / stop there).\n"
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

typedef struct {
    const char *file, *prompt, *tok_path, *device;
    long n_tokens, top_k, seed;
    float temperature, top_p;
    int stop_at_eot, no_cache;
} sample_args;

/* -1: parsed; otherwise the exit code (usage printed). */
static int sample_args_parse(int argc, char **argv, sample_args *o) {
    *o = (sample_args){.device = "cpu", .n_tokens = -1, .top_k = 40, .seed = 1337, .temperature = 1.0f, .top_p = 1.0f};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        long v;
        if (strcmp(a, "--prompt") == 0 && has_val) {
            o->prompt = argv[++i];
        } else if (strcmp(a, "--tokens") == 0 && has_val && parse_int(argv[i + 1], 0, 1 << 24, &v)) {
            o->n_tokens = v;
            i++;
        } else if (strcmp(a, "--top-k") == 0 && has_val && parse_int(argv[i + 1], 0, 1 << 24, &v)) {
            o->top_k = v;
            i++;
        } else if (strcmp(a, "--seed") == 0 && has_val && parse_int(argv[i + 1], 0, LONG_MAX, &v)) {
            o->seed = v;
            i++;
        } else if (strcmp(a, "--temperature") == 0 && has_val) {
            char *end;
            o->temperature = strtof(argv[++i], &end);
            if (*end || !(o->temperature >= 0.0f) || !isfinite(o->temperature)) {
                fprintf(stderr, "truthgpt sample: bad --temperature %s\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--top-p") == 0 && has_val) {
            char *end;
            o->top_p = strtof(argv[++i], &end);
            if (*end || !(o->top_p > 0.0f && o->top_p <= 1.0f)) {
                fprintf(stderr, "truthgpt sample: bad --top-p %s (0 < P <= 1)\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--stop-at-eot") == 0) {
            o->stop_at_eot = 1;
        } else if (strcmp(a, "--no-cache") == 0) {
            o->no_cache = 1;
        } else if (strcmp(a, "--tokenizer") == 0 && has_val) {
            o->tok_path = argv[++i];
        } else if (strcmp(a, "--device") == 0 && has_val) {
            o->device = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            sample_usage();
            return 0;
        } else if (a[0] != '-' && !o->file) {
            o->file = a;
        } else {
            fprintf(stderr, "truthgpt sample: bad argument %s\n", a);
            sample_usage();
            return 2;
        }
    }
    if (!o->file || !o->prompt || o->n_tokens < 0 ||
        (strcmp(o->device, "cpu") != 0 && strcmp(o->device, "cuda") != 0)) {
        sample_usage();
        return 2;
    }

    return -1;
}

int tg_cmd_sample(int argc, char **argv) {
    tg_status st = TG_OK;
    tg_error err = {0};
    tg_log lg = {0, 1, 1};
    tg_ckpt_state ck = {0};
    tg_tokenizer *tok = NULL;
    tg_model *m = NULL;
    tg_tokens ids = {0};
    sample_args o;
    int rc = sample_args_parse(argc, argv, &o);
    if (rc >= 0) return rc;
    const char *file = o.file, *prompt = o.prompt, *tok_path = o.tok_path, *device = o.device;
    long n_tokens = o.n_tokens, top_k = o.top_k, seed = o.seed;
    float temperature = o.temperature;
    TG_TRY(tg_ckpt_load(file, &ck, &err));
    const tg_gpt2_config *cfg = &ck.model_cfg;
    TG_TRY(tg_app_ckpt_tokenizer(&ck, file, tok_path, &lg, &tok, &err));
    int V_tok = tg_tokenizer_vocab_size(tok);
    TG_TRY(tg_tokenizer_encode(tok, (const uint8_t *)prompt, strlen(prompt), &ids, &err));
    if (ids.n == 0) TG_TRY(tg_tokens_push(&ids, (uint32_t)tg_tokenizer_eot_id(tok), &err));
    /* The context a forward sees is at most T tokens; a shorter model T saves time. */
    size_t want = ids.n + (size_t)n_tokens;
    /* the KV cache: model/decode.h (GPT-2 and Llama, CPU and CUDA) */
    const int cached = !o.no_cache;
    if (cached && want > (size_t)cfg->max_seq_len)
        TG_FAIL(&err, TG_ERR_ARG,
                "--tokens %ld after a %zu-token prompt exceeds the model's seq_len %d (at most %ld new tokens; "
                "--no-cache slides the window instead)",
                n_tokens, ids.n, cfg->max_seq_len, (long)cfg->max_seq_len - (long)ids.n);
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
    tg_log_info(&lg, "sample: step %" PRId64 " checkpoint, %zu prompt tokens, T=%d, %s, %s", ck.step, ids.n, T,
                device, cached ? "KV cache" : "full recompute");
    fputs(prompt, stdout);
    fflush(stdout);
    double t0 = tg_now_ms();
    /* Only ids the tokenizer can decode are candidates (a model may have spare vocab rows). */
    tg_sample_options so = {.n_tokens = (int)n_tokens, .temperature = temperature, .top_k = (int)top_k,
                            .vocab_limit = V_tok, .top_p = o.top_p,
                            .stop_id = o.stop_at_eot ? tg_tokenizer_eot_id(tok) : -1};
    int made = (int)n_tokens;
    if (cached) TG_TRY(tg_sample_generate_cached(m, &ids, &so, &rng, emit_piece, tok, &made, &err));
    else TG_TRY(tg_sample_generate(m, &ids, &so, &rng, emit_piece, tok, &err));
    fputc('\n', stdout);
    fflush(stdout); /* before the stderr summary line */
    double dt = (tg_now_ms() - t0) * 1e-3;
    tg_log_info(&lg, "sample: %d tokens in %.2f s (%.1f tok/s)", made, dt, dt > 0 ? (double)made / dt : 0.0);
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
