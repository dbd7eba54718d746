/* interop/safetensors.c — safetensors reader and writer (see safetensors.h). JSON: jansson. */
#include "interop/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/fsio.h"

static const char *const k_dtype_names[] = {"F32", "BF16", "F16"};
static const size_t k_dtype_sizes[] = {4, 2, 2};

const char *tg_st_dtype_name(tg_st_dtype d) { return k_dtype_names[d]; }
size_t tg_st_dtype_size(tg_st_dtype d) { return k_dtype_sizes[d]; }

uint16_t tg_st_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float tg_st_bf16_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

float tg_st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            u = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp - 15 + 127) << 23) | (man << 13);
    }
    float x;
    memcpy(&x, &u, 4);
    return x;
}

void tg_st_file_free(tg_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

static int cmp_begin(const void *a, const void *b) {
    const tg_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* A non-negative JSON integer, or -1. */
static int64_t json_nonneg(const json_t *v) {
    if (!json_is_integer(v)) return -1;
    json_int_t x = json_integer_value(v);
    return x < 0 ? -1 : (int64_t)x;
}

static tg_status parse_tensor(tg_st_tensor *t, const char *name, json_t *v, size_t data_size,
                              const char *what, tg_error *err) {
    if (!json_is_object(v))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': header entry is not an object", what, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", what, name);
    int d = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(json_string_value(dt), k_dtype_names[i]) == 0) d = i;
    if (d < 0)
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: tensor '%s': unknown or unsupported dtype '%s' (accepted: F32, BF16, F16)",
                            what, name, json_string_value(dt));
    t->dtype = (tg_st_dtype)d;
    if (!json_is_array(shape) || json_array_size(shape) > TG_SAFETENSORS_MAX_DIMS)
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array of at most %d sizes",
                            what, name, TG_SAFETENSORS_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        int64_t s = json_nonneg(json_array_get(shape, (size_t)i));
        if (s < 0)
            return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                                what, name, i);
        t->shape[i] = s;
        if (__builtin_mul_overflow(numel, (uint64_t)s, &numel))
            return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': shape overflows", what, name);
    }
    t->numel = (int64_t)numel;
    if (!json_is_array(off) || json_array_size(off) != 2)
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': \"data_offsets\" is not [begin, end]", what, name);
    int64_t b = json_nonneg(json_array_get(off, 0)), e = json_nonneg(json_array_get(off, 1));
    if (b < 0 || e < 0)
        return tg_error_set(err, TG_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers",
                            what, name);
    if (b > e || (uint64_t)e > data_size)
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: tensor '%s': data_offsets [%lld, %lld] out of range (data section: %zu bytes)",
                            what, name, (long long)b, (long long)e, data_size);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)e;
    uint64_t want;
    if (__builtin_mul_overflow(numel, (uint64_t)k_dtype_sizes[d], &want) || want != t->end - t->begin)
        return tg_error_set(err, TG_ERR_FORMAT,
                            "%s: tensor '%s': byte span %llu does not match shape x dtype (%llu elements of %s)",
                            what, name, (unsigned long long)(t->end - t->begin), (unsigned long long)numel,
                            k_dtype_names[d]);
    return TG_OK;
}

tg_status tg_st_file_parse(tg_st_file *f, uint8_t *buf, size_t n, const char *what, tg_error *err) {
    tg_status st = TG_OK;
    json_t *root = NULL;
    memset(f, 0, sizeof *f);
    f->buf = buf;
    f->size = n;
    if (n < 8) TG_FAIL(err, TG_ERR_FORMAT, "%s: truncated: %zu bytes, shorter than the 8-byte header length", what, n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    if (hlen > TG_SAFETENSORS_MAX_HEADER)
        TG_FAIL(err, TG_ERR_FORMAT, "%s: header length %llu exceeds the limit of %u bytes", what,
                (unsigned long long)hlen, TG_SAFETENSORS_MAX_HEADER);
    if (hlen > n - 8)
        TG_FAIL(err, TG_ERR_FORMAT, "%s: truncated: header length %llu but only %zu bytes follow", what,
                (unsigned long long)hlen, n - 8);
    f->data = buf + 8 + hlen;
    f->data_size = n - 8 - (size_t)hlen;
    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) TG_FAIL(err, TG_ERR_FORMAT, "%s: header is not valid JSON: %s (column %d)", what, jerr.text, jerr.column);
    if (!json_is_object(root)) TG_FAIL(err, TG_ERR_FORMAT, "%s: header is not a JSON object", what);
    f->tensors = calloc(json_object_size(root) + 1, sizeof *f->tensors);
    TG_CHECK_ALLOC(err, f->tensors);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v)) TG_FAIL(err, TG_ERR_FORMAT, "%s: \"__metadata__\" is not an object", what);
            continue;
        }
        tg_st_tensor *t = &f->tensors[f->n];
        TG_TRY(parse_tensor(t, key, v, f->data_size, what, err));
        t->name = strdup(key);
        TG_CHECK_ALLOC(err, t->name);
        f->n++;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_begin);
    /* Sorted by begin, a tensor overlaps an earlier one iff it starts before the furthest end so
     * far; empty tensors take no bytes. */
    int far = -1;
    for (int i = 0; i < f->n; i++) {
        const tg_st_tensor *t = &f->tensors[i];
        if (t->end == t->begin) continue;
        if (far >= 0 && t->begin < f->tensors[far].end)
            TG_FAIL(err, TG_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap (bytes [%llu, %llu) and [%llu, %llu))",
                    what, f->tensors[far].name, t->name, (unsigned long long)f->tensors[far].begin,
                    (unsigned long long)f->tensors[far].end, (unsigned long long)t->begin,
                    (unsigned long long)t->end);
        if (far < 0 || t->end > f->tensors[far].end) far = i;
    }
cleanup:
    json_decref(root);
    if (st != TG_OK) tg_st_file_free(f);
    return st;
}

tg_status tg_st_file_open(tg_st_file *f, const char *path, tg_error *err) {
    uint8_t *buf = NULL;
    size_t n = 0;
    memset(f, 0, sizeof *f);
    tg_status st = tg_file_read(path, &buf, &n, err);
    if (st != TG_OK) return st;
    return tg_st_file_parse(f, buf, n, path, err);
}

const tg_st_tensor *tg_st_file_find(const tg_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

void tg_st_tensor_read_f32(const tg_st_file *f, const tg_st_tensor *t, float *out) {
    const uint8_t *p = f->data + t->begin;
    for (int64_t i = 0; i < t->numel; i++) {
        if (t->dtype == TG_ST_F32) {
            memcpy(&out[i], p + 4 * i, 4);
        } else {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            out[i] = t->dtype == TG_ST_BF16 ? tg_st_bf16_to_f32(h) : tg_st_f16_to_f32(h);
        }
    }
}

tg_status tg_st_file_write(const char *path, const tg_st_entry *e, int n, tg_error *err) {
    tg_status st = TG_OK;
    json_t *root = json_object();
    char *hdr = NULL;
    uint8_t *buf = NULL;
    TG_CHECK_ALLOC(err, root);
    json_t *meta = json_pack("{s:s}", "format", "pt");
    TG_CHECK_ALLOC(err, meta);
    json_object_set_new(root, "__metadata__", meta);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].dtype == TG_ST_F16)
            TG_FAIL(err, TG_ERR_ARG, "%s: tensor '%s': writing F16 is not supported (F32 or BF16)", path, e[i].name);
        if (json_object_get(root, e[i].name)) TG_FAIL(err, TG_ERR_ARG, "%s: duplicate tensor '%s'", path, e[i].name);
        json_t *shape = json_array();
        TG_CHECK_ALLOC(err, shape);
        uint64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) {
            json_array_append_new(shape, json_integer(e[i].shape[d]));
            numel *= (uint64_t)e[i].shape[d];
        }
        uint64_t bytes = numel * tg_st_dtype_size(e[i].dtype);
        json_t *ent = json_pack("{s:s,s:o,s:[I,I]}", "dtype", tg_st_dtype_name(e[i].dtype), "shape", shape,
                                "data_offsets", (json_int_t)off, (json_int_t)(off + bytes));
        TG_CHECK_ALLOC(err, ent);
        json_object_set_new(root, e[i].name, ent);
        off += bytes;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    TG_CHECK_ALLOC(err, hdr);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    buf = malloc(8 + padded + off);
    TG_CHECK_ALLOC(err, buf);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, hdr, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    uint8_t *p = buf + 8 + padded;
    for (int i = 0; i < n; i++) {
        int64_t numel = 1;
        for (int d = 0; d < e[i].ndim; d++) numel *= e[i].shape[d];
        if (e[i].dtype == TG_ST_F32) {
            memcpy(p, e[i].data, (size_t)numel * 4);
            p += numel * 4;
        } else {
            for (int64_t j = 0; j < numel; j++) {
                uint16_t h = tg_st_f32_to_bf16(e[i].data[j]);
                *p++ = (uint8_t)h;
                *p++ = (uint8_t)(h >> 8);
            }
        }
    }
    TG_TRY(tg_fs_file_replace(path, buf, 8 + padded + off, 0, err));
cleanup:
    free(buf);
    free(hdr);
    json_decref(root);
    return st;
}
