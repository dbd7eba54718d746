/* data/docs.c — see docs.h. */
#include "data/docs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

long long tg_utf8_invalid_offset(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* fast path: 8 ASCII bytes at a time */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        uint8_t c = p[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
        else return (long long)i;
        if (i + len > n) return (long long)i;
        uint32_t cp = c & (0xFF >> (len + 1));
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return (long long)i;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (long long)i;
        i += len;
    }
    return -1;
}

/* ---- a minimal JSON reader: enough to find a top-level "text" string ---- */

typedef struct {
    const uint8_t *p, *end, *start;
    const char *what; /* what was expected at the failure point */
} json_cur;

static void json_ws(json_cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) c->p++;
}

static int hex4(const uint8_t *p, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

static size_t put_utf8(uint8_t *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12); o[1] = (uint8_t)(0x80 | ((cp >> 6) & 63));
        o[2] = (uint8_t)(0x80 | (cp & 63)); return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18); o[1] = (uint8_t)(0x80 | ((cp >> 12) & 63));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 63)); o[3] = (uint8_t)(0x80 | (cp & 63)); return 4;
}

/* Parses a string at c->p (which is at '"'). If out is non-NULL, writes the decoded bytes there
 * (capacity >= the raw length) and their count to *out_n. Returns 0 on malformed input. */
static int json_string(json_cur *c, uint8_t *out, size_t *out_n) {
    if (c->p >= c->end || *c->p != '"') { c->what = "a string"; return 0; }
    c->p++;
    size_t o = 0;
    while (c->p < c->end) {
        uint8_t ch = *c->p++;
        if (ch == '"') { if (out_n) *out_n = o; return 1; }
        if (ch < 0x20) { c->what = "no control characters in strings"; return 0; }
        if (ch != '\\') { if (out) out[o] = ch; o++; continue; }
        if (c->p >= c->end) break;
        uint8_t e = *c->p++;
        uint8_t r;
        switch (e) {
        case '"': r = '"'; break;
        case '\\': r = '\\'; break;
        case '/': r = '/'; break;
        case 'b': r = '\b'; break;
        case 'f': r = '\f'; break;
        case 'n': r = '\n'; break;
        case 'r': r = '\r'; break;
        case 't': r = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (c->end - c->p < 4 || !hex4(c->p, &cp)) { c->what = "4 hex digits after \\u"; return 0; }
            c->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
                uint32_t lo;
                if (hex4(c->p + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    c->p += 6;
                }
            }
            /* a lone surrogate is kept as its 3-byte (CESU) form: bytes are bytes */
            uint8_t tmp[4];
            size_t k = put_utf8(tmp, cp);
            if (out) memcpy(out + o, tmp, k);
            o += k;
            continue;
        }
        default: c->what = "a valid escape"; return 0;
        }
        if (out) out[o] = r;
        o++;
    }
    c->what = "a closing quote";
    return 0;
}

static int json_value(json_cur *c, int depth);

static int json_literal(json_cur *c, const char *lit) {
    size_t n = strlen(lit);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0) { c->what = "a JSON value"; return 0; }
    c->p += n;
    return 1;
}

static int json_value(json_cur *c, int depth) {
    json_ws(c);
    if (c->p >= c->end) { c->what = "a JSON value"; return 0; }
    if (depth > 64) { c->what = "less nesting"; return 0; }
    uint8_t ch = *c->p;
    if (ch == '"') return json_string(c, NULL, NULL);
    if (ch == '{' || ch == '[') {
        uint8_t close = ch == '{' ? '}' : ']';
        c->p++;
        json_ws(c);
        if (c->p < c->end && *c->p == close) { c->p++; return 1; }
        for (;;) {
            if (close == '}') {
                json_ws(c);
                if (!json_string(c, NULL, NULL)) return 0;
                json_ws(c);
                if (c->p >= c->end || *c->p != ':') { c->what = "':'"; return 0; }
                c->p++;
            }
            if (!json_value(c, depth + 1)) return 0;
            json_ws(c);
            if (c->p < c->end && *c->p == ',') { c->p++; continue; }
            if (c->p < c->end && *c->p == close) { c->p++; return 1; }
            c->what = close == '}' ? "',' or '}'" : "',' or ']'";
            return 0;
        }
    }
    if (ch == 't') return json_literal(c, "true");
    if (ch == 'f') return json_literal(c, "false");
    if (ch == 'n') return json_literal(c, "null");
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        const uint8_t *s = c->p;
        if (*c->p == '-') c->p++;
        while (c->p < c->end && ((*c->p >= '0' && *c->p <= '9') || *c->p == '.' || *c->p == 'e' ||
                                 *c->p == 'E' || *c->p == '+' || *c->p == '-'))
            c->p++;
        if (c->p == s + (*s == '-')) { c->what = "a number"; return 0; }
        return 1;
    }
    c->what = "a JSON value";
    return 0;
}

/* Parses one JSONL line; on success *text points into scratch (decoded) or *found = 0. */
static tg_status jsonl_line(const char *path, uint64_t lineno, const uint8_t *line, size_t n,
                            uint8_t *scratch, const uint8_t **text, size_t *text_n, tg_error *err) {
    json_cur c = {line, line + n, line, NULL};
    int found = 0;
    json_ws(&c);
    if (c.p >= c.end || *c.p != '{') { c.what = "'{' (each line must be a JSON object)"; goto bad; }
    c.p++;
    json_ws(&c);
    if (c.p < c.end && *c.p == '}') { c.p++; goto done; }
    for (;;) {
        json_ws(&c);
        const uint8_t *ks = c.p;
        if (!json_string(&c, NULL, NULL)) goto bad;
        int is_text = (c.p - ks) == 6 && memcmp(ks, "\"text\"", 6) == 0;
        json_ws(&c);
        if (c.p >= c.end || *c.p != ':') { c.what = "':'"; goto bad; }
        c.p++;
        json_ws(&c);
        if (is_text) {
            if (c.p >= c.end || *c.p != '"')
                return tg_error_set(err, TG_ERR_FORMAT, "%s:%llu: \"text\" is not a string", path,
                                    (unsigned long long)lineno);
            if (!json_string(&c, scratch, text_n)) goto bad;
            *text = scratch;
            found = 1;
        } else if (!json_value(&c, 1)) {
            goto bad;
        }
        json_ws(&c);
        if (c.p < c.end && *c.p == ',') { c.p++; continue; }
        if (c.p < c.end && *c.p == '}') { c.p++; break; }
        c.what = "',' or '}'";
        goto bad;
    }
done:
    json_ws(&c);
    if (c.p != c.end) { c.what = "end of line after the object"; goto bad; }
    if (!found)
        return tg_error_set(err, TG_ERR_FORMAT, "%s:%llu: no \"text\" field", path,
                            (unsigned long long)lineno);
    return TG_OK;
bad:
    return tg_error_set(err, TG_ERR_FORMAT, "%s:%llu: malformed JSON line (expected %s at column %zu)",
                        path, (unsigned long long)lineno, c.what ? c.what : "valid JSON",
                        (size_t)(c.p - c.start) + 1);
}

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && strcmp(s + n - k, suf) == 0;
}

typedef struct {
    tg_doc_fn fn;
    void *ctx;
    const char *path;
    tg_docs_progress *prog;
    uint64_t n_docs, n_bad_utf8;
    long long first_bad; /* offset in the file */
} doc_sink;

static tg_status emit(doc_sink *s, const uint8_t *doc, size_t n, size_t file_off, size_t end_off,
                      tg_error *err) {
    long long bad = tg_utf8_invalid_offset(doc, n);
    if (bad >= 0) {
        if (s->n_bad_utf8 == 0) s->first_bad = (long long)file_off + bad;
        s->n_bad_utf8++;
    }
    s->n_docs++;
    if (s->prog) {
        s->prog->n_docs = s->n_docs;
        s->prog->offset = end_off;
    }
    return s->fn(s->ctx, doc, n, err);
}

tg_status tg_docs_read(const char *path, tg_input_mode mode, const tg_log *lg, tg_doc_fn fn,
                       void *ctx, tg_docs_progress *prog, tg_error *err) {
    tg_status st = TG_OK;
    int fd = -1;
    uint8_t *map = NULL, *scratch = NULL;
    size_t size = 0;
    doc_sink s = {fn, ctx, path, prog, 0, 0, -1};
    if (prog) memset(prog, 0, sizeof *prog);
    if (mode == TG_INPUT_AUTO) mode = has_suffix(path, ".jsonl") ? TG_INPUT_JSONL : TG_INPUT_TEXT;
    fd = open(path, O_RDONLY);
    if (fd < 0) TG_FAIL(err, TG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) TG_FAIL(err, TG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) TG_FAIL(err, TG_ERR_IO, "%s: is a directory", path);
    size = (size_t)sb.st_size;
    if (size == 0) {
        tg_log_warn(lg, "%s: empty input (no documents)", path);
        goto cleanup;
    }
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        TG_FAIL(err, TG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    }
    madvise(map, size, MADV_SEQUENTIAL);
    if (mode == TG_INPUT_TEXT) {
        TG_TRY(emit(&s, map, size, 0, size, err));
    } else if (mode == TG_INPUT_FORTUNE) {
        size_t doc_start = 0;
        for (size_t p = 0; p <= size;) {
            size_t e = p;
            while (e < size && map[e] != '\n') e++;
            size_t le = e > p && map[e - 1] == '\r' ? e - 1 : e;
            int sep = (le == p + 1 && map[p] == '%');
            if (sep || e >= size) {
                size_t doc_end = sep ? p : size;
                int blank = 1;
                for (size_t i = doc_start; i < doc_end && blank; i++)
                    if (map[i] != ' ' && map[i] != '\n' && map[i] != '\t' && map[i] != '\r') blank = 0;
                if (!blank) TG_TRY(emit(&s, map + doc_start, doc_end - doc_start, doc_start, e, err));
                doc_start = e + 1;
            }
            if (e >= size) break;
            p = e + 1;
        }
    } else { /* JSONL */
        uint64_t lineno = 0;
        size_t scratch_cap = 0;
        for (size_t p = 0; p < size;) {
            size_t e = p;
            const uint8_t *nl = memchr(map + p, '\n', size - p);
            e = nl ? (size_t)(nl - map) : size;
            lineno++;
            size_t n = e - p;
            int blank = 1;
            for (size_t i = p; i < e && blank; i++)
                if (map[i] != ' ' && map[i] != '\t' && map[i] != '\r') blank = 0;
            if (!blank) {
                if (n + 4 > scratch_cap) {
                    free(scratch);
                    scratch_cap = n + 4 > 65536 ? n + 4 : 65536;
                    scratch = malloc(scratch_cap);
                    TG_CHECK_ALLOC(err, scratch);
                }
                const uint8_t *text = NULL;
                size_t text_n = 0;
                TG_TRY(jsonl_line(path, lineno, map + p, n, scratch, &text, &text_n, err));
                if (text_n > 0) TG_TRY(emit(&s, text, text_n, p, e, err));
            }
            p = e + 1;
        }
        if (s.n_docs == 0) tg_log_warn(lg, "%s: no non-empty \"text\" in any line", path);
    }
    if (s.n_bad_utf8)
        tg_log_warn(lg, "%s: %llu document(s) not valid UTF-8 (first bad byte at offset %lld); "
                    "encoding the bytes as they are", path, (unsigned long long)s.n_bad_utf8, s.first_bad);
cleanup:
    if (prog && st == TG_OK) prog->offset = size;
    if (map) munmap(map, size);
    if (fd >= 0) close(fd);
    free(scratch);
    return st;
}
