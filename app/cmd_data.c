/* app/cmd_data.c — `truthgpt prepare`, `truthgpt tokenizer train`, `truthgpt bench data`. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/cmds.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/status.h"
#include "core/timer.h"
#include "data/docs.h"
#include "data/loader.h"
#include "data/prepare.h"
#include "data/tokenizer.h"

/* ---- small argument helpers ---- */

static int parse_u64(const char *s, uint64_t *v) {
    char *e = NULL;
    errno = 0;
    unsigned long long x = strtoull(s, &e, 10);
    if (errno || !e || *e || s[0] == '-' || s[0] == 0) return 0;
    *v = x;
    return 1;
}

static int parse_int(const char *s, int *v) {
    uint64_t x;
    if (!parse_u64(s, &x) || x > INT32_MAX) return 0;
    *v = (int)x;
    return 1;
}

static int parse_double(const char *s, double *v) {
    char *e = NULL;
    errno = 0;
    *v = strtod(s, &e);
    return !errno && e && !*e && s[0];
}

static int parse_mode(const char *s, tg_input_mode *m) {
    if (!strcmp(s, "auto")) *m = TG_INPUT_AUTO;
    else if (!strcmp(s, "text")) *m = TG_INPUT_TEXT;
    else if (!strcmp(s, "jsonl")) *m = TG_INPUT_JSONL;
    else if (!strcmp(s, "fortune")) *m = TG_INPUT_FORTUNE;
    else return 0;
    return 1;
}

static int fail(const tg_error *err) {
    fprintf(stderr, "error: %s\n", err->msg);
    return 1;
}

/* ---- prepare ---- */

static void prepare_usage(void) {
    fprintf(stderr,
            "usage: truthgpt prepare --tokenizer FILE --out DIR [options] INPUT...\n"
            "  INPUT: text files (one document each) or .jsonl (one {\"text\": ...} per line)\n"
            "  --val-fraction F     fraction of documents for validation (default 0.01)\n"
            "  --shard-tokens N     tokens per shard (default 100000000)\n"
            "  --split-on-percent   inputs are fortune files: one document per '%%'-separated entry\n"
            "  --input-mode M       auto|text|jsonl|fortune (default auto: .jsonl -> jsonl)\n"
            "  --chunk-tokens N     HDF5 chunk length (default 65536)\n"
            "  --zstd-level L       1..22 (default 3)\n"
            "  --threads N          encoding threads (default: all cores)\n"
            "  -q                   no progress output\n");
}

typedef struct {
    tg_progress bar;
    double seconds; /* prepare's clock, the bar's clock */
    int started;
} progress_state;

static double prepare_clock(void *ctx) { return ((progress_state *)ctx)->seconds; }

static void fmt_count(double x, char *buf, size_t cap) {
    if (x >= 1e9) snprintf(buf, cap, "%.2fG", x / 1e9);
    else if (x >= 1e6) snprintf(buf, cap, "%.2fM", x / 1e6);
    else if (x >= 1e3) snprintf(buf, cap, "%.1fk", x / 1e3);
    else snprintf(buf, cap, "%.0f", x);
}

static void prepare_progress(void *ctx, const tg_prepare_progress *p) {
    progress_state *ps = ctx;
    ps->seconds = p->seconds;
    if (!ps->started) {
        tg_progress_init(&ps->bar, stderr, "prepare", "MB", (double)p->bytes_total, 1e6, prepare_clock, ps);
        ps->bar.t0 = 0;
        ps->started = 1;
    }
    char extra[64], tok[32];
    fmt_count((double)p->tokens, tok, sizeof tok);
    snprintf(extra, sizeof extra, "%s tokens", tok);
    double done = (double)(p->bytes_done > p->bytes_total ? p->bytes_total : p->bytes_done);
    if (p->done) tg_progress_finish(&ps->bar, done, extra);
    else tg_progress_update(&ps->bar, done, extra);
}

int tg_cmd_prepare(int argc, char **argv) {
    tg_prepare_options o;
    tg_prepare_options_default(&o);
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int n_in = 0, quiet = 0, rc = 1;
    if (!inputs) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { prepare_usage(); rc = 0; goto done; }
        else if (!strcmp(a, "--tokenizer") && v) { o.tokenizer_path = v; i++; }
        else if (!strcmp(a, "--out") && v) { o.out_dir = v; i++; }
        else if (!strcmp(a, "--val-fraction") && v && parse_double(v, &o.val_fraction)) i++;
        else if (!strcmp(a, "--shard-tokens") && v && parse_u64(v, &o.shard_tokens)) i++;
        else if (!strcmp(a, "--chunk-tokens") && v && parse_u64(v, &o.chunk_tokens)) i++;
        else if (!strcmp(a, "--zstd-level") && v && parse_int(v, &o.zstd_level)) i++;
        else if (!strcmp(a, "--threads") && v && parse_int(v, &o.threads)) i++;
        else if (!strcmp(a, "--input-mode") && v && parse_mode(v, &o.mode)) i++;
        else if (!strcmp(a, "--split-on-percent")) o.mode = TG_INPUT_FORTUNE;
        else if (!strcmp(a, "-q")) quiet = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "prepare: bad option or value: %s\n", a);
            prepare_usage();
            rc = 2;
            goto done;
        } else inputs[n_in++] = a;
    }
    if (!o.tokenizer_path || !o.out_dir || n_in == 0) {
        fprintf(stderr, "prepare: --tokenizer, --out and at least one INPUT are required\n");
        prepare_usage();
        rc = 2;
        goto done;
    }
    o.inputs = inputs;
    o.n_inputs = n_in;
    tg_log lg = {0, 1, quiet ? 0 : 1};
    progress_state ps = {0};
    tg_prepare_result r;
    tg_error err = {0};
    if (tg_prepare_run(&o, &lg, quiet ? NULL : prepare_progress, &ps, &r, &err) != TG_OK) {
        rc = fail(&err);
        goto done;
    }
    double s = r.seconds > 1e-9 ? r.seconds : 1e-9;
    printf("prepare: %llu documents -> train %llu tokens (%llu docs, %d shards), val %llu tokens (%llu docs, %d shards) in %s\n",
           (unsigned long long)(r.train_docs + r.val_docs), (unsigned long long)r.train_tokens,
           (unsigned long long)r.train_docs, r.train_shards, (unsigned long long)r.val_tokens,
           (unsigned long long)r.val_docs, r.val_shards, o.out_dir);
    printf("prepare: vocab_size %d, eot_id %d; %.2f s, %.1f MB/s, %.2fM tokens/s\n", r.vocab_size,
           r.eot_id, r.seconds, (double)r.bytes / 1e6 / s,
           (double)(r.train_tokens + r.val_tokens) / 1e6 / s);
    printf("prepare: unigram entropy of the train split: %.4f nats/token\n", r.unigram_entropy);
    rc = 0;
done:
    free(inputs);
    return rc;
}

/* ---- tokenizer train ---- */

static void tokenizer_usage(void) {
    fprintf(stderr,
            "usage: truthgpt tokenizer train --vocab-size N --out FILE [options] INPUT...\n"
            "  learns byte-level BPE merges from INPUT (same input modes as prepare) and writes a\n"
            "  tiktoken rank file of N-1 tokens (vocab_size N includes the end-of-text token)\n"
            "  --split-on-percent | --input-mode auto|text|jsonl|fortune\n"
            "       truthgpt tokenizer encode FILE [INPUT]   ids of INPUT's bytes (default stdin)\n"
            "       truthgpt tokenizer decode FILE           bytes of the ids on stdin\n"
            "       truthgpt tokenizer info FILE             name, vocab_size, eot_id, hash\n");
}

static uint8_t *slurp(FILE *f, size_t *n) {
    size_t cap = 1 << 16, len = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
        if (len == cap) {
            uint8_t *nb = realloc(b, cap * 2);
            if (!nb) {
                free(b);
                return NULL;
            }
            b = nb;
            cap *= 2;
        }
    }
    *n = len;
    return b;
}

/* tokenizer encode|decode|info FILE [INPUT] */
static int tokenizer_tool(int argc, char **argv) {
    const char *verb = argv[1];
    if (argc < 3 || (strcmp(verb, "encode") && strcmp(verb, "decode") && strcmp(verb, "info"))) {
        tokenizer_usage();
        return 2;
    }
    tg_error err = {0};
    tg_tokenizer *t = NULL;
    uint8_t *text = NULL, *dec = NULL;
    uint32_t *ids = NULL;
    tg_tokens tk = {0};
    int rc = 1;
    if (tg_tokenizer_load(&t, argv[2], &err) != TG_OK) return fail(&err);
    if (!strcmp(verb, "info")) {
        printf("name %s\nvocab_size %d\neot_id %d\nsha256 %s\n", tg_tokenizer_name(t),
               tg_tokenizer_vocab_size(t), tg_tokenizer_eot_id(t), tg_tokenizer_hash(t));
        rc = 0;
        goto done;
    }
    FILE *in = stdin;
    if (argc > 3 && !(in = fopen(argv[3], "rb"))) {
        fprintf(stderr, "error: %s: cannot open: %s\n", argv[3], strerror(errno));
        goto done;
    }
    size_t n = 0;
    text = slurp(in, &n);
    if (in != stdin) fclose(in);
    if (!text) {
        fprintf(stderr, "error: out of memory reading the input\n");
        goto done;
    }
    if (!strcmp(verb, "encode")) {
        if (tg_tokenizer_encode(t, text, n, &tk, &err) != TG_OK) { rc = fail(&err); goto done; }
        for (size_t i = 0; i < tk.n; i++) printf(i + 1 < tk.n ? "%u " : "%u", tk.ids[i]);
        printf("\n");
    } else {
        size_t cap = n / 2 + 1, m = 0;
        ids = malloc(cap * sizeof *ids);
        char *p = (char *)text, *end = (char *)text + n;
        while (ids && p < end) {
            while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',')) p++;
            if (p >= end) break;
            char *e = NULL;
            unsigned long v = strtoul(p, &e, 10);
            if (e == p) {
                fprintf(stderr, "error: decode: not a token id at byte %zu of the input\n", (size_t)(p - (char *)text));
                goto done;
            }
            ids[m++] = (uint32_t)v;
            p = e;
        }
        size_t dn = 0;
        if (tg_tokenizer_decode(t, ids, m, &dec, &dn, &err) != TG_OK) { rc = fail(&err); goto done; }
        fwrite(dec, 1, dn, stdout);
    }
    rc = 0;
done:
    tg_tokenizer_free(t);
    tg_tokens_free(&tk);
    free(text);
    free(ids);
    free(dec);
    return rc;
}

typedef struct {
    tg_bpe_trainer *tr;
    uint64_t bytes;
    tg_progress bar;           /* reading: input bytes; then merges */
    uint64_t bytes_before;     /* of the earlier input files */
    tg_docs_progress where;    /* in the current file */
} train_ctx;

static tg_status train_doc(void *ctx, const uint8_t *doc, size_t n, tg_error *err) {
    train_ctx *c = ctx;
    c->bytes += n;
    tg_progress_update(&c->bar, (double)(c->bytes_before + c->where.offset), NULL);
    return tg_bpe_trainer_add(c->tr, doc, n, err);
}

static void merge_progress(void *ctx, int done, int total) {
    train_ctx *c = ctx;
    if (done == 0 && c->bar.total != total) {
        tg_progress_init(&c->bar, stderr, "tokenizer train: merges", "merges", total, 1, NULL, NULL);
    }
    tg_progress_update(&c->bar, done, NULL);
}

int tg_cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "encode") || !strcmp(argv[1], "decode") || !strcmp(argv[1], "info")))
        return tokenizer_tool(argc, argv);
    if (argc < 2 || strcmp(argv[1], "train") != 0) {
        tokenizer_usage();
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    int vocab = 0, n_in = 0, rc = 1;
    const char *out = NULL;
    tg_input_mode mode = TG_INPUT_AUTO;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    train_ctx c = {0};
    if (!inputs) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--vocab-size") && v && parse_int(v, &vocab)) i++;
        else if (!strcmp(a, "--out") && v) { out = v; i++; }
        else if (!strcmp(a, "--input-mode") && v && parse_mode(v, &mode)) i++;
        else if (!strcmp(a, "--split-on-percent")) mode = TG_INPUT_FORTUNE;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "tokenizer train: bad option or value: %s\n", a);
            tokenizer_usage();
            rc = 2;
            goto done;
        } else inputs[n_in++] = a;
    }
    if (vocab <= 0 || !out || n_in == 0) {
        fprintf(stderr, "tokenizer train: --vocab-size, --out and at least one INPUT are required\n");
        tokenizer_usage();
        rc = 2;
        goto done;
    }
    tg_log lg = {0, 1, 1};
    tg_error err = {0};
    double t0 = tg_now_ms();
    if (tg_bpe_trainer_init(&c.tr, &err) != TG_OK) { rc = fail(&err); goto done; }
    double in_bytes = 0;
    for (int i = 0; i < n_in; i++) {
        struct stat sb;
        if (stat(inputs[i], &sb) == 0) in_bytes += (double)sb.st_size;
    }
    tg_progress_init(&c.bar, stderr, "tokenizer train: reading", "MB", in_bytes, 1e6, NULL, NULL);
    for (int i = 0; i < n_in; i++) {
        struct stat sb;
        c.where = (tg_docs_progress){0};
        if (tg_docs_read(inputs[i], mode, &lg, train_doc, &c, &c.where, &err) != TG_OK) {
            rc = fail(&err);
            goto done;
        }
        if (stat(inputs[i], &sb) == 0) c.bytes_before += (uint64_t)sb.st_size;
    }
    tg_progress_finish(&c.bar, (double)c.bytes_before, NULL);
    c.bar.total = -1; /* the merge phase starts its own bar */
    tg_bpe_trainer_set_progress(c.tr, merge_progress, &c);
    int merges = 0;
    if (tg_bpe_trainer_save(c.tr, vocab, out, &lg, &merges, &err) != TG_OK) { rc = fail(&err); goto done; }
    if (c.bar.total >= 0) tg_progress_finish(&c.bar, merges, NULL);
    tg_tokenizer *t = NULL;
    if (tg_tokenizer_load(&t, out, &err) != TG_OK) { rc = fail(&err); goto done; }
    printf("tokenizer train: %.2f MB of text, %d merges -> %s (vocab_size %d, eot_id %d, sha256 %s) in %.2f s\n",
           (double)c.bytes / 1e6, merges, out, tg_tokenizer_vocab_size(t), tg_tokenizer_eot_id(t),
           tg_tokenizer_hash(t), (tg_now_ms() - t0) / 1e3);
    tg_tokenizer_free(t);
    rc = 0;
done:
    tg_bpe_trainer_free(c.tr);
    free(inputs);
    return rc;
}

/* ---- bench data ---- */

static void bench_usage(void) {
    fprintf(stderr,
            "usage: truthgpt bench data --data GLOB [--batch 64] [--seq-len 1024] [--seconds 3]\n"
            "                           [--prefetch 4] [--rank 0 --world 1] [--seed 1]\n"
            "  prints tokens/s served per rank: first without prefetch (one core decoding),\n"
            "  then with a background prefetch thread\n");
}

static int bench_run(const tg_loader_options *o, double seconds, double *tps, tg_error *err) {
    tg_loader *l = NULL;
    int32_t *in = malloc((size_t)o->B * o->T * sizeof *in), *tg = malloc((size_t)o->B * o->T * sizeof *tg);
    int ok = 0;
    if (!in || !tg) { tg_error_set(err, TG_ERR_NOMEM, "out of memory"); goto done; }
    if (tg_loader_open(&l, o, err) != TG_OK) goto done;
    if (tg_loader_next(l, in, tg, err) != TG_OK) goto done; /* warm-up */
    double t0 = tg_now_ms(), t = 0;
    uint64_t steps = 0;
    do {
        if (tg_loader_next(l, in, tg, err) != TG_OK) goto done;
        steps++;
        t = (tg_now_ms() - t0) / 1e3;
    } while (t < seconds);
    *tps = (double)steps * o->B * o->T / t;
    ok = 1;
done:
    tg_loader_free(l);
    free(in);
    free(tg);
    return ok;
}

int tg_cmd_bench_data(int argc, char **argv) {
    tg_loader_options o = {.B = 64, .T = 1024, .rank = 0, .world = 1, .seed = 1, .shuffle = 1, .prefetch = 4};
    double seconds = 3;
    int seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--data") && v) { o.glob = v; i++; }
        else if (!strcmp(a, "--batch") && v && parse_int(v, &o.B)) i++;
        else if (!strcmp(a, "--seq-len") && v && parse_int(v, &o.T)) i++;
        else if (!strcmp(a, "--prefetch") && v && parse_int(v, &o.prefetch)) i++;
        else if (!strcmp(a, "--rank") && v && parse_int(v, &o.rank)) i++;
        else if (!strcmp(a, "--world") && v && parse_int(v, &o.world)) i++;
        else if (!strcmp(a, "--seed") && v && parse_int(v, &seed)) i++;
        else if (!strcmp(a, "--seconds") && v && parse_double(v, &seconds)) i++;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { bench_usage(); return 0; }
        else {
            fprintf(stderr, "bench data: bad option or value: %s\n", a);
            bench_usage();
            return 2;
        }
    }
    if (!o.glob || o.B <= 0 || o.T <= 0) {
        bench_usage();
        return 2;
    }
    o.seed = (uint64_t)seed;
    tg_error err = {0};
    double tps0 = 0, tps1 = 0;
    int P = o.prefetch;
    o.prefetch = 0;
    if (!bench_run(&o, seconds, &tps0, &err)) return fail(&err);
    o.prefetch = P > 0 ? P : 4;
    if (!bench_run(&o, seconds, &tps1, &err)) return fail(&err);
    printf("bench data: B=%d T=%d rank %d/%d: %.1fM tokens/s without prefetch (one core), "
           "%.1fM tokens/s served with prefetch=%d\n",
           o.B, o.T, o.rank, o.world, tps0 / 1e6, tps1 / 1e6, o.prefetch);
    return 0;
}
