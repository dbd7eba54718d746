#include "train/config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* K_ENUM: an int-sized enum field, the index of the value in choices. K_RESUME: train.resume,
 * a keyword (auto | none) or a path (tg_resume_mode + resume_path). */
typedef enum { K_INT, K_I64, K_U64, K_F64, K_STR, K_ENUM, K_RESUME } key_type;

typedef struct {
    const char *section, *name;
    key_type type;
    size_t offset, size; /* size: for strings */
    double min, max;     /* numeric range (inclusive) */
    const char *choices; /* K_ENUM: "a|b|c" */
    const char *def;     /* default, as text */
    const char *help;
} key_spec;

#define F(field) offsetof(tg_config, field), sizeof(((tg_config *)0)->field)
static const key_spec KEYS[] = {
    {"model", "arch", K_ENUM, F(arch), 0, 0, "gpt2|llama", "gpt2", "architecture (docs/llama.md)"},
    {"model", "n_layer", K_INT, F(n_layer), 1, 1024, NULL, "12", "transformer blocks (L)"},
    {"model", "n_head", K_INT, F(n_head), 1, 1024, NULL, "12", "attention heads (NH)"},
    {"model", "n_embd", K_INT, F(n_embd), 1, 65536, NULL, "768", "channels (C); a multiple of n_head"},
    {"model", "seq_len", K_INT, F(seq_len), 1, 1 << 20, NULL, "1024", "sequence length (T)"},
    {"model", "vocab_size", K_INT, F(vocab_size), 0, 1 << 24, NULL, "0", "vocabulary (V); 0 = from the data"},
    {"model", "n_kv_head", K_INT, F(n_kv_head), 0, 1024, NULL, "0", "llama: key/value heads (GQA; 1 = MQA); 0 = n_head"},
    {"model", "ffn_dim", K_INT, F(ffn_dim), 0, 1 << 20, NULL, "0", "llama: SwiGLU hidden width (required)"},
    {"model", "rope_theta", K_F64, F(rope_theta), 1.000001, 1e12, NULL, "10000", "llama: RoPE base"},
    {"model", "norm_eps", K_F64, F(norm_eps), 1e-12, 0.1, NULL, "1e-5", "llama: RMSNorm epsilon"},
    {"model", "tie_embeddings", K_INT, F(tie_embeddings), 0, 1, NULL, "0", "llama: 1 = the LM head is embed_tokens"},
    {"model", "rope_factor", K_F64, F(rope_factor), 0, 1e6, NULL, "0", "llama: Llama 3 RoPE frequency scaling (HF rope_type llama3), >= 1; 0 = plain RoPE"},
    {"model", "rope_low_freq_factor", K_F64, F(rope_low_freq_factor), 1e-6, 1e6, NULL, "1", "llama: with rope_factor: wavelengths over original_max_pos/low are divided by rope_factor"},
    {"model", "rope_high_freq_factor", K_F64, F(rope_high_freq_factor), 1e-6, 1e6, NULL, "4", "llama: with rope_factor: wavelengths under original_max_pos/high are kept"},
    {"model", "rope_original_max_pos", K_INT, F(rope_original_max_pos), 1, 1 << 24, NULL, "8192", "llama: with rope_factor: the pretraining context"},
    {"data", "train", K_STR, F(train), 0, 0, NULL, "synthetic", "training shards (glob), a mixture 'a/*.h5:0.7,b/*.h5:0.3', or 'synthetic'"},
    {"data", "val", K_STR, F(val), 0, 0, NULL, "", "validation shards (glob); empty = none"},
    {"data", "tokenizer", K_STR, F(tokenizer), 0, 0, NULL, "", "tokenizer rank file (for samples)"},
    {"train", "device", K_ENUM, F(device), 0, 0, "auto|cpu|cuda", "auto", "auto = cuda when built with it and a GPU is present"},
    {"train", "precision", K_ENUM, F(precision), 0, 0, "bf16|fp32", "bf16", "CUDA precision (the CPU trains in fp32 unless train.cpu_emulate_bf16=1)"},
    {"train", "cpu_emulate_bf16", K_INT, F(cpu_emulate_bf16), 0, 1, NULL, "0", "CPU with precision=bf16: 1 = round to bf16 where CUDA stores bf16 (the reference for bf16 GPU curves)"},
    {"train", "recompute", K_INT, F(recompute), 0, 2, NULL, "0", "CUDA: recompute in backward: 1 LayerNorm outputs, 2 also GELU"},
    {"train", "micro_batch", K_INT, F(micro_batch), 1, 1 << 20, NULL, "4", "sequences per rank per micro-step (B)"},
    {"train", "total_batch_tokens", K_I64, F(total_batch_tokens), 0, 1e15, NULL, "0", "global batch in tokens; 0 = micro_batch*seq_len*world"},
    {"train", "max_steps", K_INT, F(max_steps), 1, 1e9, NULL, "100", "optimizer steps"},
    {"train", "lr", K_F64, F(lr), 0, 10, NULL, "6e-4", "peak learning rate"},
    {"train", "min_lr", K_F64, F(min_lr), 0, 10, NULL, "0", "final learning rate"},
    {"train", "warmup_steps", K_INT, F(warmup_steps), 0, 1e9, NULL, "0", "linear warmup steps"},
    {"train", "schedule", K_ENUM, F(schedule), 0, 0, "cosine|linear|constant|wsd", "cosine", "decay after warmup; wsd = warmup, stable, decay"},
    {"train", "decay_frac", K_F64, F(decay_frac), 0, 1, NULL, "0.2", "wsd: share of max_steps spent decaying to min_lr"},
    {"train", "decay_shape", K_ENUM, F(decay_shape), 0, 0, "linear|cosine|sqrt", "linear", "wsd: decay curve (sqrt = 1-sqrt(progress))"},
    {"train", "optimizer", K_ENUM, F(optimizer), 0, 0, "adamw|muon", "adamw", "adamw, or muon: Muon for the blocks' 2-D weight matrices and AdamW (lr, weight_decay, betas) for embeddings, head, norms and biases (zero_stage 0 or 1)"},
    {"train", "muon_lr", K_F64, F(muon_lr), 0, 10, NULL, "0.02", "muon: peak learning rate of the Muon matrices (follows train.schedule: scaled by the AdamW lr's factor)"},
    {"train", "muon_momentum", K_F64, F(muon_momentum), 0, 0.999999, NULL, "0.95", "muon: momentum (EMA of the gradients)"},
    {"train", "muon_nesterov", K_INT, F(muon_nesterov), 0, 1, NULL, "1", "muon: 1 = Nesterov momentum"},
    {"train", "muon_ns_steps", K_INT, F(muon_ns_steps), 1, 100, NULL, "5", "muon: Newton-Schulz iterations per step"},
    {"train", "muon_weight_decay", K_F64, F(muon_weight_decay), 0, 10, NULL, "0", "muon: decoupled decay of the Muon matrices (times muon_lr)"},
    {"train", "weight_decay", K_F64, F(weight_decay), 0, 10, NULL, "0.1", "AdamW decoupled decay (2-D weights only)"},
    {"train", "beta1", K_F64, F(beta1), 0, 0.999999, NULL, "0.9", "AdamW beta1"},
    {"train", "beta2", K_F64, F(beta2), 0, 0.999999999, NULL, "0.95", "AdamW beta2"},
    {"train", "eps", K_F64, F(eps), 1e-30, 1, NULL, "1e-8", "AdamW epsilon"},
    {"train", "grad_clip", K_F64, F(grad_clip), 0, 1e9, NULL, "1.0", "global-norm clip; 0 = off"},
    {"train", "seed", K_U64, F(seed), 0, 18446744073709551615.0, NULL, "1337", "seed for init and data order"},
    {"train", "eval_every", K_INT, F(eval_every), 0, 1e9, NULL, "0", "validation every N steps; 0 = off"},
    {"train", "eval_batches", K_INT, F(eval_batches), 1, 1e6, NULL, "8", "micro-batches per validation: the first eval_batches x micro_batch windows of data.val, split over the ranks"},
    {"train", "target_val_loss", K_F64, F(target_val_loss), 0, 1e9, NULL, "0", "end the run (with a checkpoint) at the first validation whose loss is at most this; 0 = off (time-to-loss runs, dev/ttl.sh)"},
    {"train", "log_every", K_INT, F(log_every), 1, 1e9, NULL, "1", "print a line every N steps"},
    {"train", "zero_stage", K_INT, F(zero_stage), 0, 3, NULL, "0", "shard over ranks: 1 AdamW state (ZeRO-1), 2 also gradients, 3 also parameters (2, 3: CPU only)"},
    {"train", "resume", K_RESUME, F(resume), 0, 0, "auto|none", "auto", "auto | none | checkpoint path: continue a run exactly (step, optimizer, data position); wins over init_from"},
    {"train", "init_from", K_STR, F(init_from), 0, 0, NULL, "", "new run from these weights (checkpoint or HF dir): fresh optimizer, step 0, data from the start; a run that resumes ignores it"},
    {"train", "eval_tasks", K_STR, F(eval_tasks), 0, 0, NULL, "", "multiple-choice tasks (HellaSwag JSONL) scored at eval_every, needs data.tokenizer; empty = none"},
    {"train", "sample_every", K_INT, F(sample_every), 0, 1e9, NULL, "0", "print a sample every N steps; 0 = off"},
    {"train", "sample_tokens", K_INT, F(sample_tokens), 1, 1e6, NULL, "64", "tokens per sample"},
    {"train", "nan_patience", K_INT, F(nan_patience), 1, 1e9, NULL, "5", "stop after N non-finite losses in a row"},
    {"train", "spike_sigma", K_F64, F(spike_sigma), 0, 1e6, NULL, "0", "loss spike: above the running mean by this many standard deviations; 0 = off"},
    {"train", "spike_window", K_INT, F(spike_window), 2, 1e6, NULL, "50", "steps in the spike detector's running mean and std (detection starts once full)"},
    {"train", "spike_action", K_ENUM, F(spike_action), 0, 0, "warn|skip|rollback", "warn", "on a spike: warn (log it, mark it in metrics.jsonl), skip the update too, or rollback: skip, and after spike_patience spikes reload the latest checkpoint"},
    {"train", "spike_patience", K_INT, F(spike_patience), 1, 1e9, NULL, "3", "spike_action=rollback: spikes (since the start or the last rollback) that trigger a rollback"},
    {"train", "spike_rollbacks", K_INT, F(spike_rollbacks), 1, 1e9, NULL, "3", "spike_action=rollback: stop with an error instead of rolling back a (spike_rollbacks+1)-th time"},
    {"train", "threads", K_INT, F(threads), 0, 4096, NULL, "0", "OpenMP threads per rank; 0 = cores / local ranks"},
    {"checkpoint", "every", K_INT, F(ckpt_every), 0, 1e9, NULL, "0", "save every N steps; 0 = at the end and on signals only"},
    {"checkpoint", "keep", K_INT, F(ckpt_keep), 1, 1e6, NULL, "3", "keep the newest K checkpoints"},
    {"comm", "timeout", K_F64, F(comm_timeout), 1e-3, 1e9, NULL, "120", "seconds a collective (MPI or NCCL) may wait for a peer rank before the job fails"},
    {"comm", "backend", K_ENUM, F(comm_backend), 0, 0, "nccl|mpi", "nccl", "GPU training's collectives: nccl (one rank per GPU) or mpi (device buffers staged through pinned host memory; ranks may share a GPU); CPU training always uses MPI"},
    {"run", "out_dir", K_STR, F(out_dir), 0, 0, NULL, "runs/default", "run directory (metrics, config, checkpoints)"},
    {"cuda", "attention", K_ENUM, F(cuda_attention), 0, 0, "cudnn|flash|naive", "cudnn", "bf16 attention: cuDNN SDPA, own flash kernels, or cuBLASLt + softmax (fp32 always uses the last)"},
    {"cuda", "cudnn_deterministic", K_INT, F(cuda_cudnn_deterministic), 0, 1, NULL, "1", "0 = cuDNN's faster attention backward with dQ atomics (not bitwise reproducible)"},
    {"cuda", "cudnn_tune", K_INT, F(cuda_cudnn_tune), 0, 1, NULL, "0", "1 = time every cuDNN attention plan on the first step, keep the fastest"},
    {"cuda", "cublaslt_tune", K_INT, F(cuda_cublaslt_tune), 0, 1, NULL, "0", "1 = time cuBLASLt's candidates per matmul shape, keep the fastest (saved for resumes)"},
    {"cuda", "fusion", K_INT, F(cuda_fusion), 0, 1, NULL, "1", "0 = bias, GELU and dGELU as separate kernels instead of cuBLASLt epilogues"},
    {"cuda", "lmhead_rows", K_INT, F(cuda_lmhead_rows), 1, 1 << 30, NULL, "8192", "rows per LM-head chunk (the logits buffer holds rows x padded vocab)"},
    {"cuda", "profile", K_INT, F(cuda_profile), 0, 1, NULL, "0", "1 = time every op with CUDA events; a table per category at the end"},
};
#undef F
#define N_KEYS (sizeof KEYS / sizeof KEYS[0])

static const key_spec *find_key(const char *section, const char *name, int *section_known) {
    *section_known = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(KEYS[i].section, section) != 0) continue;
        *section_known = 1;
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    }
    return NULL;
}

static void describe(const key_spec *k, char *buf, size_t cap) {
    switch (k->type) {
    case K_INT: case K_I64:
        snprintf(buf, cap, "an integer in [%.0f, %.0f]", k->min, k->max);
        break;
    case K_U64: /* the double max 2^64 stands for UINT64_MAX = 2^64-1, the largest accepted */
        if (k->max >= 18446744073709551615.0)
            snprintf(buf, cap, "an integer in [%.0f, 18446744073709551615] (2^64-1), decimal", k->min);
        else snprintf(buf, cap, "an integer in [%.0f, %.0f]", k->min, k->max);
        break;
    case K_F64: snprintf(buf, cap, "a number in [%g, %g]", k->min, k->max); break;
    case K_STR: snprintf(buf, cap, "a string of at most %zu bytes", k->size - 1); break;
    case K_ENUM: snprintf(buf, cap, "one of %s", k->choices); break;
    case K_RESUME: snprintf(buf, cap, "%s or a checkpoint path", k->choices); break;
    }
}

/* Index of v in "a|b|c", or -1. */
static int enum_index(const char *choices, const char *v) {
    size_t n = strlen(v);
    const char *p = choices;
    for (int i = 0; *p; i++) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return i;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

/* The choice at index i of "a|b|c" into buf ("?" when out of range). */
static const char *enum_name(const char *choices, int i, char *buf, size_t cap) {
    const char *p = choices;
    for (; i > 0 && p; i--) {
        p = strchr(p, '|');
        if (p) p++;
    }
    if (!p || i < 0) return "?";
    size_t len = strcspn(p, "|");
    snprintf(buf, cap, "%.*s", (int)(len < cap ? len : cap - 1), p);
    return buf;
}

/* Sets one key from text; `where` names the source for messages. */
static tg_status set_value(tg_config *c, const char *where, const char *section, const char *name,
                           const char *value, tg_error *err) {
    int section_known;
    const key_spec *k = find_key(section, name, &section_known);
    if (!section_known)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "%s: unknown section [%s] (known: model, data, train, checkpoint, comm, run, cuda)",
                            where, section);
    if (!k)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "%s: unknown key '%s.%s' (run `truthgpt train --help` for the keys)", where,
                            section, name);
    char *dst = (char *)c + k->offset;
    char what[128];
    describe(k, what, sizeof what);
    while (*value == ' ' || *value == '\t') value++;
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case K_INT: case K_I64: case K_U64: {
        double d;
        if (k->type == K_U64) {
            if (*value == '-') goto bad;
            unsigned long long u = strtoull(value, &end, 10);
            d = (double)u;
            if (end == value || *end || errno) goto bad;
            if (d < k->min || d > k->max) goto bad;
            *(uint64_t *)dst = (uint64_t)u;
            break;
        }
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno) goto bad;
        d = (double)v;
        if (d < k->min || d > k->max) goto bad;
        if (k->type == K_INT) *(int *)dst = (int)v;
        else *(int64_t *)dst = (int64_t)v;
        break;
    }
    case K_F64: {
        double v = strtod(value, &end);
        if (end == value || *end || errno || !isfinite(v) || v < k->min || v > k->max) goto bad;
        *(double *)dst = v;
        break;
    }
    case K_ENUM: {
        int i = enum_index(k->choices, value);
        if (i < 0 || k->size != sizeof(int)) goto bad; /* size: an enum field, not text */
        *(int *)dst = i;
        break;
    }
    case K_RESUME: {
        int i = enum_index(k->choices, value);
        if (strlen(value) >= sizeof c->resume_path) goto bad;
        c->resume = i < 0 ? TG_RESUME_PATH : (tg_resume_mode)i;
        snprintf(c->resume_path, sizeof c->resume_path, "%s", i < 0 ? value : "");
        break;
    }
    case K_STR:
        if (strlen(value) >= k->size) goto bad;
        snprintf(dst, k->size, "%s", value);
        break;
    }
    return TG_OK;
bad:
    /* a long value is cut in the message so that the key and the limit stay readable */
    return tg_error_set(err, TG_ERR_CONFIG, "%s: bad value '%.80s%s' for %s.%s: expected %s", where, value,
                        strlen(value) > 80 ? "..." : "", section, name, what);
}

void tg_config_defaults(tg_config *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        tg_status st = set_value(c, "defaults", KEYS[i].section, KEYS[i].name, KEYS[i].def, NULL);
        (void)st; /* the table's defaults are valid by construction (tested) */
    }
}

/* One line of a config file, newline included: the longest string value (TG_PATH_MAX - 1 bytes)
 * with its key, spaces and a comment fit. Longer lines are refused, never split. */
#define TG_CONFIG_LINE_MAX (TG_PATH_MAX + 256)

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* The INI subset the docs describe: [section], key = value, comments starting with # or ; on their
 * own line (or after whitespace), blank lines. Own code instead of libinih: Debian's inih is built
 * with a 200-byte line limit fixed at compile time, which split long paths silently. */
tg_status tg_config_load_file(tg_config *c, const char *path, tg_error *err) {
    tg_status st = TG_OK;
    struct stat sb;
    char *line = NULL;
    int *seen = NULL; /* line where each key of KEYS was set, 0 = not yet */
    FILE *f = fopen(path, "r");
    if (!f) return tg_error_set(err, TG_ERR_IO, "%s: cannot open config: %s", path, strerror(errno));
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        TG_FAIL(err, TG_ERR_CONFIG, "%s: not a config file (a directory or a device); a config must name at least the model",
                path);
    line = malloc(TG_CONFIG_LINE_MAX + 2);
    seen = calloc(N_KEYS, sizeof *seen);
    TG_CHECK_ALLOC(err, line);
    TG_CHECK_ALLOC(err, seen);
    char section[64] = "";
    int lineno = 0, model_keys = 0;
    while (fgets(line, TG_CONFIG_LINE_MAX + 2, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == TG_CONFIG_LINE_MAX + 1 && line[len - 1] != '\n')
            TG_FAIL(err, TG_ERR_CONFIG, "%s:%d: line longer than %d bytes (the limit of a config line)", path,
                    lineno, TG_CONFIG_LINE_MAX);
        char *s = trim(line);
        if (lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
            s = trim(s + 3); /* UTF-8 byte order mark */
        if (!*s || *s == '#' || *s == ';') continue;
        char where[TG_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || *trim(close + 1) || close - s - 1 >= (long)sizeof section)
                TG_FAIL(err, TG_ERR_CONFIG, "%s: malformed section header (expected [section])", where);
            *close = 0;
            snprintf(section, sizeof section, "%s", trim(s + 1));
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq || !section[0])
            TG_FAIL(err, TG_ERR_CONFIG, "%s: malformed line (expected 'key = value' after a [section])", where);
        *eq = 0;
        char *name = trim(s), *value = trim(eq + 1);
        /* an inline comment: whitespace then # or ; */
        for (char *p = value; *p; p++)
            if ((*p == '#' || *p == ';') && p > value && (p[-1] == ' ' || p[-1] == '\t')) {
                *p = 0;
                value = trim(value);
                break;
            }
        TG_TRY(set_value(c, where, section, name, value, err));
        int known;
        const key_spec *k = find_key(section, name, &known);
        size_t i = (size_t)(k - KEYS);
        if (seen[i])
            TG_FAIL(err, TG_ERR_CONFIG, "%s: duplicate key %s.%s (first set on line %d)", where, section, name,
                    seen[i]);
        seen[i] = lineno;
        if (strcmp(section, "model") == 0) model_keys++;
    }
    if (ferror(f)) TG_FAIL(err, TG_ERR_IO, "%s: read error: %s", path, strerror(errno));
    if (!model_keys)
        TG_FAIL(err, TG_ERR_CONFIG, "%s: no [model] keys: a config must name at least the model", path);
cleanup:
    free(line);
    free(seen);
    fclose(f);
    return st;
}

tg_status tg_config_set_override(tg_config *c, const char *arg, tg_error *err) {
    const char *eq = strchr(arg, '=');
    const char *dot = strchr(arg, '.');
    if (!eq || !dot || dot > eq || dot == arg || dot + 1 == eq)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "command line: '%s' is not a section.key=value override", arg);
    char section[64], name[64];
    size_t ls = (size_t)(dot - arg), ln = (size_t)(eq - dot - 1);
    if (ls >= sizeof section || ln >= sizeof name)
        return tg_error_set(err, TG_ERR_CONFIG, "command line: key too long in '%s'", arg);
    memcpy(section, arg, ls);
    section[ls] = 0;
    memcpy(name, dot + 1, ln);
    name[ln] = 0;
    return set_value(c, "command line", section, name, eq + 1, err);
}

tg_status tg_config_validate(const tg_config *c, tg_error *err) {
    if (c->n_embd % c->n_head)
        return tg_error_set(err, TG_ERR_CONFIG, "model.n_embd (%d) must be a multiple of model.n_head (%d)",
                            c->n_embd, c->n_head);
    if (c->arch == TG_ARCH_LLAMA) {
        if (c->n_kv_head && c->n_head % c->n_kv_head)
            return tg_error_set(err, TG_ERR_CONFIG, "model.n_head (%d) must be a multiple of model.n_kv_head (%d)",
                                c->n_head, c->n_kv_head);
        if ((c->n_embd / c->n_head) % 2)
            return tg_error_set(err, TG_ERR_CONFIG,
                                "model.arch=llama: the head size model.n_embd/model.n_head (%d) must be even (RoPE)",
                                c->n_embd / c->n_head);
        if (c->ffn_dim <= 0)
            return tg_error_set(err, TG_ERR_CONFIG, "model.arch=llama needs model.ffn_dim > 0");
        if (c->rope_factor != 0 && c->rope_factor < 1)
            return tg_error_set(err, TG_ERR_CONFIG, "model.rope_factor (%g) must be >= 1 (or 0: plain RoPE)",
                                c->rope_factor);
        if (c->rope_factor != 0 && !(c->rope_low_freq_factor < c->rope_high_freq_factor))
            return tg_error_set(err, TG_ERR_CONFIG,
                                "model.rope_low_freq_factor (%g) must be below model.rope_high_freq_factor (%g)",
                                c->rope_low_freq_factor, c->rope_high_freq_factor);
    } else if (c->n_kv_head || c->ffn_dim || c->tie_embeddings || c->rope_factor) {
        return tg_error_set(err, TG_ERR_CONFIG,
                            "model.n_kv_head, model.ffn_dim, model.tie_embeddings and model.rope_factor are "
                            "model.arch=llama keys "
                            "(GPT-2 always ties its head)");
    }
    if (c->min_lr > c->lr)
        return tg_error_set(err, TG_ERR_CONFIG, "train.min_lr (%g) must not exceed train.lr (%g)", c->min_lr,
                            c->lr);
    if (c->optimizer == TG_OPTIMIZER_MUON && c->zero_stage >= 2)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.optimizer=muon needs train.zero_stage 0 or 1 (got %d): Muon orthogonalises whole "
                            "matrices from the full gradient buffer, which stages 2 and 3 shard",
                            c->zero_stage);
    if (!c->out_dir[0]) return tg_error_set(err, TG_ERR_CONFIG, "run.out_dir must not be empty");
    if (!c->train[0]) return tg_error_set(err, TG_ERR_CONFIG, "data.train must not be empty");
    return TG_OK;
}

tg_status tg_config_load(tg_config *c, const char *path, int argc, char **argv, tg_error *err) {
    tg_status st = TG_OK;
    if (path) TG_TRY(tg_config_load_file(c, path, err));
    for (int i = 0; i < argc; i++)
        if (argv[i][0] != '-' && strchr(argv[i], '=')) TG_TRY(tg_config_set_override(c, argv[i], err));
    TG_TRY(tg_config_validate(c, err));
cleanup:
    return st;
}

static void write_value(const tg_config *c, const key_spec *k, FILE *f) {
    const char *src = (const char *)c + k->offset;
    switch (k->type) {
    case K_INT: fprintf(f, "%d", *(const int *)src); break;
    case K_I64: fprintf(f, "%lld", (long long)*(const int64_t *)src); break;
    case K_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)src); break;
    case K_F64: {
        /* shortest text that reads back to the same double */
        double v = *(const double *)src;
        char buf[64];
        for (int prec = 6; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) break;
        }
        fputs(buf, f);
        break;
    }
    case K_STR: fprintf(f, "%s", src); break;
    case K_ENUM: {
        char name[64];
        fputs(enum_name(k->choices, *(const int *)src, name, sizeof name), f);
        break;
    }
    case K_RESUME: {
        char name[64];
        fputs(c->resume == TG_RESUME_PATH ? c->resume_path : enum_name(k->choices, (int)c->resume, name, sizeof name), f);
        break;
    }
    }
}

void tg_config_write(const tg_config *c, FILE *f) {
    const char *section = "";
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strcmp(section, KEYS[i].section) != 0) {
            section = KEYS[i].section;
            fprintf(f, "%s[%s]\n", i ? "\n" : "", section);
        }
        fprintf(f, "%s = ", KEYS[i].name);
        write_value(c, &KEYS[i], f);
        fputc('\n', f);
    }
}

char *tg_config_to_string(const tg_config *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    tg_config_write(c, f);
    fclose(f);
    return buf;
}

void tg_config_print_keys(FILE *f) {
    for (size_t i = 0; i < N_KEYS; i++) {
        char key[64], what[128];
        snprintf(key, sizeof key, "%s.%s", KEYS[i].section, KEYS[i].name);
        describe(&KEYS[i], what, sizeof what);
        fprintf(f, "  %-26s %s (default %s%s%s)\n      %s\n", key, KEYS[i].help,
                KEYS[i].def[0] ? "" : "\"", KEYS[i].def, KEYS[i].def[0] ? "" : "\"", what);
    }
}
