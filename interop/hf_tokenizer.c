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

/* ---- import ---- */

/* UTF-8 GPT-2 unicode string -> bytes; -1 if a character is not in the byte map. */
static long from_unicode(const int inv[512], const char *s, uint8_t *out) {
    long n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c;
        if (*p < 0x80) {
            c = *p++;
        } else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
            c = ((unsigned)(p[0] & 0x1f) << 6) | (p[1] & 0x3f);
            p += 2;
        } else {
            return -1;
        }
        if (c >= 512 || inv[c] < 0) return -1;
        out[n++] = (uint8_t)inv[c];
    }
    return n;
}

/* dst := a + b; 0 if it does not fit in cap bytes. */
static int join(char *dst, size_t cap, const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na + nb + 1 > cap) return 0;
    memcpy(dst, a, na);
    memcpy(dst + na, b, nb + 1);
    return 1;
}

static void b64(const uint8_t *s, size_t n, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *out++ = tbl[v >> 18];
        *out++ = tbl[(v >> 12) & 63];
        *out++ = tbl[(v >> 6) & 63];
        *out++ = tbl[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
        *out++ = tbl[v >> 18];
        *out++ = tbl[(v >> 12) & 63];
        *out++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = 0;
}

/* Every merge, of tokenizer.json's model.merges (mj) and of merges.txt if given, must join two
 * tokens of vocab into a third. */
static tg_status merges_check(json_t *vocab, json_t *mj, const char *src, const char *merges_txt, tg_error *err) {
    tg_status st = TG_OK;
    FILE *mf = NULL;
    char *line = NULL;
    size_t idx;
    json_t *v;
    json_array_foreach(mj, idx, v) {
        const char *a = NULL, *b = NULL;
        char buf[4096];
        if (json_is_array(v)) {
            a = json_string_value(json_array_get(v, 0));
            b = json_string_value(json_array_get(v, 1));
        } else if (json_is_string(v)) {
            snprintf(buf, sizeof buf, "%s", json_string_value(v));
            char *sp = strchr(buf, ' ');
            if (sp) {
                *sp = 0;
                a = buf;
                b = sp + 1;
            }
        }
        char joined[8192];
        if (!a || !b || !join(joined, sizeof joined, a, b))
            TG_FAIL(err, TG_ERR_FORMAT, "%s: merge %zu is not a pair", src, idx);
        if (!json_object_get(vocab, a) || !json_object_get(vocab, b) || !json_object_get(vocab, joined))
            TG_FAIL(err, TG_ERR_FORMAT, "%s: merge %zu ('%s' '%s') does not join two tokens into a third", src, idx, a, b);
    }
    if (merges_txt) {
        mf = fopen(merges_txt, "r");
        if (!mf) TG_FAIL(err, TG_ERR_IO, "cannot open %s", merges_txt);
        size_t lcap = 0;
        ssize_t len;
        long ln = 0;
        while ((len = getline(&line, &lcap, mf)) >= 0) {
            ln++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0 || (ln == 1 && strncmp(line, "#version", 8) == 0)) continue;
            char *sp = strchr(line, ' ');
            if (!sp) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: not 'a b'", merges_txt, ln);
            *sp = 0;
            char joined[8192];
            if (!join(joined, sizeof joined, line, sp + 1)) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: too long", merges_txt, ln);
            if (!json_object_get(vocab, line) || !json_object_get(vocab, sp + 1) || !json_object_get(vocab, joined))
                TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: merge does not join two tokens into a third", merges_txt, ln);
        }
    }
cleanup:
    if (mf) fclose(mf);
    free(line);
    return st;
}

tg_status tg_hf_tokenizer_import(const char *tokenizer_json, const char *vocab_json, const char *merges_txt,
                                 const char *out, tg_error *err) {
    tg_status st = TG_OK;
    json_t *root = NULL;
    const char *src = tokenizer_json ? tokenizer_json : vocab_json;
    char **tok = NULL;       /* id -> token string (borrowed from root) */
    uint8_t *bytes = NULL;
    char *text = NULL, *enc = NULL;
    size_t cap_text = 0, n_text = 0;
    unsigned cp[256];
    int inv[512];
    byte_map(cp);
    for (int i = 0; i < 512; i++) inv[i] = -1;
    for (int b = 0; b < 256; b++) inv[cp[b]] = b;
    json_error_t jerr;
    if (!src) TG_FAIL(err, TG_ERR_ARG, "tokenizer import: give tokenizer.json or vocab.json");
    root = json_load_file(src, 0, &jerr);
    if (!root) TG_FAIL(err, TG_ERR_FORMAT, "%s: not valid JSON: %s (line %d)", src, jerr.text, jerr.line);
    json_t *vocab = root, *specials = NULL;
    if (tokenizer_json) {
        json_t *model = json_object_get(root, "model");
        json_t *type = json_object_get(model, "type");
        if (!json_is_string(type) || strcmp(json_string_value(type), "BPE") != 0)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: model.type is not BPE (only byte-level BPE is supported)", src);
        json_t *pt = json_object_get(root, "pre_tokenizer");
        json_t *ptt = json_object_get(pt, "type");
        if (!json_is_string(ptt) || strcmp(json_string_value(ptt), "ByteLevel") != 0)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: pre_tokenizer is not ByteLevel (GPT-2 style is required)", src);
        vocab = json_object_get(model, "vocab");
        specials = json_object_get(root, "added_tokens");
    }
    if (!json_is_object(vocab)) TG_FAIL(err, TG_ERR_FORMAT, "%s: no vocab object", src);
    size_t nv = json_object_size(vocab);
    tok = calloc(nv + 1, sizeof *tok);
    TG_CHECK_ALLOC(err, tok);
    int eot = -1;
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || (size_t)id >= nv || tok[id])
            TG_FAIL(err, TG_ERR_FORMAT, "%s: token '%s' has id %lld: ids must be 0..%zu, each once", src, key,
                    (long long)id, nv - 1);
        tok[id] = (char *)key;
    }
    /* The end of text: a special token (added_tokens) or "<|endoftext|>" in the vocab. */
    size_t idx;
    json_array_foreach(specials, idx, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *content = json_string_value(json_object_get(v, "content"));
        if ((size_t)id == nv && eot < 0) {
            eot = (int)id;
            continue;
        }
        if (id >= 0 && (size_t)id < nv && content && strcmp(tok[id], content) == 0 && (size_t)id == nv - 1) {
            eot = (int)id;
            continue;
        }
        TG_FAIL(err, TG_ERR_FORMAT, "%s: special token '%s' (id %lld): only one end-of-text token after the "
                "last rank is supported", src, content ? content : "?", (long long)id);
    }
    if (eot < 0 && nv > 0 && strcmp(tok[nv - 1], "<|endoftext|>") == 0) eot = (int)nv - 1;
    int N = eot >= 0 && (size_t)eot == nv - 1 ? (int)nv - 1 : (int)nv;
    size_t maxlen = 0;
    for (int id = 0; id < N; id++)
        if (strlen(tok[id]) > maxlen) maxlen = strlen(tok[id]);
    bytes = malloc(maxlen + 1);
    enc = malloc(2 * maxlen + 8);
    TG_CHECK_ALLOC(err, bytes);
    TG_CHECK_ALLOC(err, enc);
    int single[256] = {0};
    for (int id = 0; id < N; id++) {
        long n = from_unicode(inv, tok[id], bytes);
        if (n <= 0) TG_FAIL(err, TG_ERR_FORMAT, "%s: token '%s' (id %d) is not in GPT-2's byte-to-unicode map", src, tok[id], id);
        if (n == 1) single[bytes[0]] = 1;
        b64(bytes, (size_t)n, enc);
        size_t need = strlen(enc) + 16;
        if (n_text + need > cap_text) {
            cap_text = 2 * (n_text + need);
            char *g = realloc(text, cap_text);
            TG_CHECK_ALLOC(err, g);
            text = g;
        }
        n_text += (size_t)sprintf(text + n_text, "%s %d\n", enc, id);
    }
    for (int b = 0; b < 256; b++)
        if (!single[b]) TG_FAIL(err, TG_ERR_FORMAT, "%s: the single byte 0x%02x has no token", src, b);
    /* merges: each line "a b" must join two tokens into a third */
    TG_TRY(merges_check(vocab, tokenizer_json ? json_object_get(json_object_get(root, "model"), "merges") : NULL, src,
                        merges_txt, err));
    TG_TRY(tg_fs_file_replace(out, text ? text : "", n_text, 0, err));
cleanup:
    free(tok);
    free(bytes);
    free(enc);
    free(text);
    json_decref(root);
    return st;
}
