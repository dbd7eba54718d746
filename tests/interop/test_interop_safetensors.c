/* tests/interop/test_interop_safetensors.c — safetensors: write/read round trip (F32, BF16) and
 * malformed files, each refused with TG_ERR_FORMAT and a message naming what is wrong. Also run
 * under ASan: none of the malformed files may read out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "interop/safetensors.h"
#include "tg_test.h"

/* A file image: 8-byte length, the header text, then data_size zero bytes; len_override replaces
 * the length field when non-zero. */
static uint8_t *image(const char *hdr, size_t data_size, uint64_t len_override, size_t *n) {
    size_t h = strlen(hdr);
    *n = 8 + h + data_size;
    uint8_t *b = calloc(*n, 1);
    uint64_t len = len_override ? len_override : h;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(len >> (8 * i));
    memcpy(b + 8, hdr, h);
    return b;
}

/* Parses the image and checks it is refused with a message containing want. */
static void refused(const char *kind, const char *hdr, size_t data_size, uint64_t len_override, size_t cut,
                    const char *want) {
    size_t n;
    uint8_t *b = image(hdr, data_size, len_override, &n);
    if (cut) n = cut; /* truncated file */
    /* a copy of exactly n bytes, so that ASan sees any read past the end */
    uint8_t *exact = malloc(n ? n : 1);
    memcpy(exact, b, n);
    free(b);
    tg_st_file f;
    tg_error err = {0};
    tg_status st = tg_st_file_parse(&f, exact, n, kind, &err);
    CHECKF(st == TG_ERR_FORMAT, "%s: status %s", kind, tg_status_str(st));
    CHECKF(strstr(err.msg, want) != NULL, "%s: message '%s' lacks '%s'", kind, err.msg, want);
    printf("refused %-22s %s\n", kind, err.msg);
}

static void test_malformed(void) {
    const char *ok1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    refused("header-too-long", ok1, 8, 200000000ull, 0, "exceeds the limit");
    refused("shorter-than-8", ok1, 8, 0, 5, "truncated");
    refused("header-truncated", ok1, 0, 0, 20, "truncated");
    refused("data-truncated", ok1, 8, 0, 8 + strlen(ok1) + 4, "out of range");
    refused("bad-json", "{\"a\":{\"dtype\":\"F32\",", 8, 0, 0, "not valid JSON");
    refused("not-an-object", "[1,2,3]", 0, 0, 0, "not a JSON object");
    refused("duplicate-names",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
            "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, 0, 0, "duplicate");
    refused("unknown-dtype", "{\"w\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, 0,
            "tensor 'w': unknown or unsupported dtype 'Q4'");
    refused("offsets-out-of-range", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, 0, 0,
            "tensor 'w': data_offsets [0, 16] out of range");
    refused("offsets-reversed", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8, 0, 0,
            "out of range");
    refused("span-not-shape-x-dtype", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
            0, "tensor 'w': byte span 8 does not match");
    refused("overlapping",
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
            "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[2,2]},"
            "\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
            8, 0, 0, "overlap");
    refused("negative-shape", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0, 0,
            "tensor 'w': shape[0]");
    refused("shape-overflow",
            "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, 0, 0,
            "overflows");
    refused("missing-offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, 0, "data_offsets");
    refused("bad-metadata", "{\"__metadata__\":5}", 0, 0, 0, "__metadata__");
}

static void test_round_trip(const char *dir) {
    float a[6] = {1.0f, -2.5f, 3.14159265f, 1e-8f, -0.0f, 65504.0f};
    float b[4] = {0.1f, 0.2f, -0.3f, 1.0f / 3.0f};
    tg_st_entry e[3] = {
        {"h.0.attn.c_attn.weight", TG_ST_F32, 2, {2, 3}, a},
        {"scalar", TG_ST_BF16, 0, {0}, b},
        {"b", TG_ST_BF16, 1, {4}, b},
    };
    char path[1200];
    snprintf(path, sizeof path, "%s/rt.safetensors", dir);
    tg_error err = {0};
    CHECK_OK(tg_st_file_write(path, e, 3, &err), &err);
    tg_st_file f;
    CHECK_OK(tg_st_file_open(&f, path, &err), &err);
    CHECK(f.n == 3);
    CHECK((8 + (f.data - f.buf - 8)) % 8 == 0); /* header padded to 8 */
    const tg_st_tensor *t = tg_st_file_find(&f, "h.0.attn.c_attn.weight");
    CHECK(t && t->dtype == TG_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    float out[6];
    if (t) {
        tg_st_tensor_read_f32(&f, t, out);
        CHECK(memcmp(out, a, sizeof a) == 0);
    }
    t = tg_st_file_find(&f, "b");
    CHECK(t && t->dtype == TG_ST_BF16 && t->numel == 4);
    if (t) {
        tg_st_tensor_read_f32(&f, t, out);
        for (int i = 0; i < 4; i++) {
            CHECKF(out[i] == tg_st_bf16_to_f32(tg_st_f32_to_bf16(b[i])), "bf16 %d", i);
            CHECKF(fabsf(out[i] - b[i]) <= fabsf(b[i]) / 256, "bf16 rel %d: %g vs %g", i, out[i], b[i]);
        }
    }
    t = tg_st_file_find(&f, "scalar");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    CHECK(tg_st_file_find(&f, "nope") == NULL);
    tg_st_file_free(&f);
    /* writing a duplicate name is refused */
    tg_st_entry dup[2] = {e[2], e[2]};
    CHECK(tg_st_file_write(path, dup, 2, &err) == TG_ERR_ARG);
    /* a missing file is an I/O error naming it */
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    CHECK(tg_st_file_open(&f, path, &err) == TG_ERR_IO && strstr(err.msg, "missing.safetensors"));
    /* fp16 decoding: 1.0, -2.0, smallest subnormal, 65504, inf */
    CHECK(tg_st_f16_to_f32(0x3c00) == 1.0f);
    CHECK(tg_st_f16_to_f32(0xc000) == -2.0f);
    CHECK(tg_st_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    CHECK(tg_st_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(isinf(tg_st_f16_to_f32(0x7c00)));
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : getenv("TG_TEST_TMP");
    if (!dir) dir = "/tmp";
    test_malformed();
    test_round_trip(dir);
    TEST_MAIN_END();
}
