/* interop/hf_tokenizer.c — tokenizer.json from a tiktoken rank tokenizer (see hf_tokenizer.h). */
#include "interop/hf_tokenizer.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsio.h"

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100.. in order. */
static void byte_map(unsigned cp[256]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        cp[b] = printable ? (unsigned)b : 256u + (unsigned)n++;
    }
}

/* The byte string as GPT-2's unicode string (UTF-8; at most 2 bytes per input byte). */
static void to_unicode(const unsigned cp[256], const uint8_t *s, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        unsigned c = cp[s[i]];
        if (c < 0x80) {
            *out++ = (char)c;
        } else {
            *out++ = (char)(0xc0 | (c >> 6));
            *out++ = (char)(0x80 | (c & 0x3f));
        }
    }
    *out = 0;
}

typedef struct {
    int rank, a, b;
} merge;

static int cmp_merge(const void *x, const void *y) {
    const merge *p = x, *q = y;
    if (p->rank != q->rank) return p->rank - q->rank;
    if (p->a != q->a) return p->a - q->a;
    return p->b - q->b;
}

static tg_status write_json(const char *dir, const char *name, json_t *j, tg_error *err) {
    char path[TG_PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return tg_error_set(err, TG_ERR_ARG, "path too long: %s/%s", dir, name);
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    if (!s) return tg_error_set(err, TG_ERR_NOMEM, "out of memory writing %s", path);
    tg_status st = tg_fs_file_replace(path, s, strlen(s), 0, err);
    free(s);
    return st;
}

tg_status tg_hf_tokenizer_write(const char *dir, const tg_tokenizer *t, int n_positions, tg_error *err) {
    tg_status st = TG_OK;
    unsigned cp[256];
    byte_map(cp);
    const int N = tg_tokenizer_eot_id(t);
    json_t *vocab = json_object(), *merges = json_array(), *root = NULL, *cfg = NULL;
    char *u = NULL, *ua = NULL, *ub = NULL;
    merge *m = NULL;
    size_t nm = 0, cap = 1024;
    m = malloc(cap * sizeof *m);
    TG_CHECK_ALLOC(err, vocab);
    TG_CHECK_ALLOC(err, merges);
    TG_CHECK_ALLOC(err, m);
    size_t maxlen = 0;
    for (int id = 0; id < N; id++) {
        size_t len;
        tg_tokenizer_piece(t, (uint32_t)id, &len);
        if (len > maxlen) maxlen = len;
    }
    u = malloc(2 * maxlen + 1);
    ua = malloc(2 * maxlen + 1);
    ub = malloc(2 * maxlen + 1);
    TG_CHECK_ALLOC(err, u);
    TG_CHECK_ALLOC(err, ua);
    TG_CHECK_ALLOC(err, ub);
    for (int id = 0; id < N; id++) {
        size_t len;
        const uint8_t *p = tg_tokenizer_piece(t, (uint32_t)id, &len);
        to_unicode(cp, p, len, u);
        json_object_set_new(vocab, u, json_integer(id));
    }
    for (int id = 0; id < N; id++) {
        size_t len;
        const uint8_t *p = tg_tokenizer_piece(t, (uint32_t)id, &len);
        for (size_t k = 1; k < len; k++) {
            to_unicode(cp, p, k, ua);
            to_unicode(cp, p + k, len - k, ub);
            json_t *a = json_object_get(vocab, ua), *b = json_object_get(vocab, ub);
            if (!a || !b) continue;
            if (nm == cap) {
                merge *g = realloc(m, 2 * cap * sizeof *m);
                TG_CHECK_ALLOC(err, g);
                m = g;
                cap *= 2;
            }
            m[nm++] = (merge){id, (int)json_integer_value(a), (int)json_integer_value(b)};
        }
    }
    qsort(m, nm, sizeof *m, cmp_merge);
    for (size_t i = 0; i < nm; i++) {
        size_t la, lb;
        const uint8_t *pa = tg_tokenizer_piece(t, (uint32_t)m[i].a, &la), *pb = tg_tokenizer_piece(t, (uint32_t)m[i].b, &lb);
        to_unicode(cp, pa, la, ua);
        to_unicode(cp, pb, lb, ub);
        json_array_append_new(merges, json_pack("[s,s]", ua, ub));
    }
    root = json_pack(
        "{s:s,s:n,s:n,s:[{s:i,s:s,s:b,s:b,s:b,s:b,s:b}],s:n,"
        "s:{s:s,s:b,s:b,s:b},s:{s:s,s:b,s:b,s:b},s:{s:s,s:b,s:b,s:b},"
        "s:{s:s,s:n,s:n,s:s,s:s,s:b,s:b,s:b,s:O,s:O}}",
        "version", "1.0", "truncation", "padding", "added_tokens", "id", N, "content", "<|endoftext|>",
        "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 1, "special", 1, "normalizer",
        "pre_tokenizer", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
        "post_processor", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1,
        "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1, "use_regex", 1,
        "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
        "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges", merges);
    TG_CHECK_ALLOC(err, root);
    TG_TRY(tg_fs_mkdir_p(dir, err));
    TG_TRY(write_json(dir, "tokenizer.json", root, err));
    cfg = json_pack("{s:s,s:s,s:s,s:i,s:b,s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "bos_token",
                    "<|endoftext|>", "eos_token", "<|endoftext|>", "model_max_length", n_positions,
                    "add_prefix_space", 0, "clean_up_tokenization_spaces", 0);
    TG_CHECK_ALLOC(err, cfg);
    TG_TRY(write_json(dir, "tokenizer_config.json", cfg, err));
cleanup:
    json_decref(vocab);
    json_decref(merges);
    json_decref(root);
    json_decref(cfg);
    free(m);
    free(u);
    free(ua);
    free(ub);
    return st;
}
