/* tests/data/test_tokenizer.c — BPE training (hand-checked merges), tiktoken-format loading
 * and merge-by-rank semantics, exact round-trip of arbitrary bytes, load errors. */
#include <string.h>

#include "core/rng.h"
#include "data/tokenizer.h"
#include "test_util.h"
#include "tg_test.h"

static const tg_log quiet = {0, 1, 0};

static const uint8_t *piece(const tg_tokenizer *t, uint32_t id, size_t *n) {
    return tg_tokenizer_piece(t, id, n);
}

static int piece_is(const tg_tokenizer *t, uint32_t id, const char *s) {
    size_t n = 0;
    const uint8_t *p = piece(t, id, &n);
    return p && n == strlen(s) && memcmp(p, s, n) == 0;
}

static void test_sha256(void) {
    char h[65];
    tg_sha256_hex("abc", 3, h);
    CHECK(!strcmp(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    tg_sha256_hex("", 0, h);
    CHECK(!strcmp(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: 2 blocks */
    tg_sha256_hex(m, strlen(m), h);
    CHECK(!strcmp(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
}

/* Corpus "ab ab ab ab cd cd cd x" pre-splits into "ab" x1, " ab" x3, " cd" x3, " x" x1.
 * Pair counts: (a,b)=4, (' ',a)=3, (' ',c)=3, (c,d)=3, (' ',x)=1, so by hand:
 *   256 = "ab"   (count 4)
 *   257 = " c"   (count 3; ties with (' ',ab) and (c,d) -> smallest left id ' ', then right 'c' < 256)
 *   258 = " ab"  ((' ',256) beats (257,'d') on the left id)
 *   259 = " cd"
 *   260 = " x"   (count 1), then nothing is left to merge. */
static void test_train_small(void) {
    tg_error err = {0};
    tg_bpe_trainer *tr = NULL;
    CHECK_OK(tg_bpe_trainer_init(&tr, &err), &err);
    const char *corpus = "ab ab ab ab cd cd cd x";
    CHECK_OK(tg_bpe_trainer_add(tr, (const uint8_t *)corpus, strlen(corpus), &err), &err);
    int merges = -1;
    CHECK_OK(tg_bpe_trainer_save(tr, 300, tpath("small.tiktoken"), &quiet, &merges, &err), &err);
    tg_bpe_trainer_free(tr);
    CHECKF(merges == 5, "merges = %d", merges);
    tg_tokenizer *t = NULL;
    CHECK_OK(tg_tokenizer_load(&t, tpath("small.tiktoken"), &err), &err);
    if (!t) return;
    CHECK(tg_tokenizer_vocab_size(t) == 262);
    CHECK(tg_tokenizer_eot_id(t) == 261);
    CHECK(piece_is(t, 'a', "a"));
    CHECK(piece_is(t, 256, "ab"));
    CHECK(piece_is(t, 257, " c"));
    CHECK(piece_is(t, 258, " ab"));
    CHECK(piece_is(t, 259, " cd"));
    CHECK(piece_is(t, 260, " x"));
    CHECK(piece_is(t, 261, "<|endoftext|>"));
    tg_tokens ids = {0};
    CHECK_OK(tg_tokenizer_encode(t, (const uint8_t *)"ab cd ab x", 10, &ids, &err), &err);
    CHECKF(ids.n == 4 && ids.ids[0] == 256 && ids.ids[1] == 259 && ids.ids[2] == 258 && ids.ids[3] == 260,
           "n=%zu", ids.n);
    /* the content hash is the SHA-256 of the (canonical) file we wrote */
    size_t n = 0;
    char *file = read_all(tpath("small.tiktoken"), &n);
    char h[65];
    tg_sha256_hex(file, n, h);
    CHECK(!strcmp(h, tg_tokenizer_hash(t)));
    CHECK(!strcmp(tg_tokenizer_name(t), "small.tiktoken"));
    /* the first lines are the single bytes in byte order: "AA== 0" */
    CHECK(!strncmp(file, "AA== 0\nAQ== 1\n", 14));
    free(file);
    tg_tokens_free(&ids);
    tg_tokenizer_free(t);
}

/* A hand-written tiktoken file whose byte ranks are NOT the byte values (as in GPT-2's
 * r50k_base): ids must be the ranks, merges applied by lowest rank of the concatenation. */
static void test_rank_semantics(void) {
    char *buf = malloc(1 << 16);
    size_t o = 0;
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int b = 0; b < 256; b++) { /* byte b has rank 255 - b, listed in shuffled line order */
        int byte = (b * 7) % 256;   /* 7 is coprime with 256: a permutation of lines */
        uint32_t w = (uint32_t)byte << 16;
        o += (size_t)sprintf(buf + o, "%c%c== %d\n", b64[(w >> 18) & 63], b64[(w >> 12) & 63], 255 - byte);
    }
    /* base64: "he"=aGU= "ll"=bGw= "hell"=aGVsbA== " world"=IHdvcmxk */
    o += (size_t)sprintf(buf + o, "aGU= 256\nbGw= 257\naGVsbA== 258\nIHdvcmxk 259\n");
    write_file(tpath("ranks.tiktoken"), buf, o);
    free(buf);
    tg_error err = {0};
    tg_tokenizer *t = NULL;
    CHECK_OK(tg_tokenizer_load(&t, tpath("ranks.tiktoken"), &err), &err);
    if (!t) return;
    CHECK(tg_tokenizer_eot_id(t) == 260 && tg_tokenizer_vocab_size(t) == 261);
    tg_tokens ids = {0};
    /* "hello" -> he,l,l,o -> he,ll,o -> hell,o ; " world" is one token ; "!" is byte rank 255-'!' */
    CHECK_OK(tg_tokenizer_encode(t, (const uint8_t *)"hello world!", 12, &ids, &err), &err);
    CHECKF(ids.n == 4, "n=%zu", ids.n);
    if (ids.n == 4) {
        CHECK(ids.ids[0] == 258);
        CHECK(ids.ids[1] == (uint32_t)(255 - 'o'));
        CHECK(ids.ids[2] == 259);
        CHECK(ids.ids[3] == (uint32_t)(255 - '!'));
    }
    /* The GPT-2 pattern: "'s" splits off; " world" keeps its leading space only once. */
    ids.n = 0;
    CHECK_OK(tg_tokenizer_encode(t, (const uint8_t *)"he's  world", 11, &ids, &err), &err);
    /* pieces: "he" "'s" " " " world" -> 256 | ',s | ' ' | 259 */
    CHECKF(ids.n == 5 && ids.ids[0] == 256 && ids.ids[3] == (uint32_t)(255 - ' ') && ids.ids[4] == 259,
           "n=%zu", ids.n);
    tg_tokens_free(&ids);
    tg_tokenizer_free(t);
}

static void test_roundtrip(void) {
    tg_error err = {0};
    tg_bpe_trainer *tr = NULL;
    CHECK_OK(tg_bpe_trainer_init(&tr, &err), &err);
    const char *texts[] = {"The quick brown fox jumps over the lazy dog. ", "Ünïcödé wörds, 12345 числа 数字 ",
                           "it's we've they'll I'd   \n\n\t tabs ", "émoji 😀😀 and more émoji "};
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < 4; i++)
            CHECK_OK(tg_bpe_trainer_add(tr, (const uint8_t *)texts[i], strlen(texts[i]), &err), &err);
    CHECK_OK(tg_bpe_trainer_save(tr, 400, tpath("rt.tiktoken"), &quiet, NULL, &err), &err);
    tg_bpe_trainer_free(tr);
    tg_tokenizer *t = NULL;
    CHECK_OK(tg_tokenizer_load(&t, tpath("rt.tiktoken"), &err), &err);
    if (!t) return;
    tg_rng rng;
    tg_rng_init(&rng, 42);
    uint8_t buf[600];
    int bad = 0;
    for (int it = 0; it < 400; it++) {
        size_t n = tg_rng_below(&rng, 500);
        int mode = it % 3;
        for (size_t i = 0; i < n; i++) {
            if (mode == 0) buf[i] = (uint8_t)tg_rng_u32(&rng); /* arbitrary bytes, mostly invalid UTF-8 */
            else if (mode == 1) buf[i] = (uint8_t)(" aeiouxyz'.,\n\xc3\xa9\xe6\x95\xb0"[tg_rng_below(&rng, 18)]);
            else buf[i] = (uint8_t)texts[it % 4][tg_rng_below(&rng, strlen(texts[it % 4]))];
        }
        tg_tokens ids = {0};
        uint8_t *dec = NULL;
        size_t dn = 0;
        if (tg_tokenizer_encode(t, buf, n, &ids, &err) != TG_OK ||
            tg_tokenizer_decode(t, ids.ids, ids.n, &dec, &dn, &err) != TG_OK || dn != n ||
            memcmp(dec, buf, n) != 0)
            bad++;
        for (size_t i = 0; i < ids.n; i++)
            if (ids.ids[i] >= (uint32_t)tg_tokenizer_eot_id(t)) bad++;
        free(dec);
        tg_tokens_free(&ids);
    }
    CHECKF(bad == 0, "%d round-trip failures", bad);
    /* the cached encoder gives the same ids as the plain one, also on repeated pieces */
    tg_encode_cache *cache = NULL;
    CHECK_OK(tg_encode_cache_init(&cache, t, &err), &err);
    int diff = 0;
    for (int it = 0; it < 300 && cache; it++) {
        const char *src = texts[it % 4];
        size_t n = strlen(src), off = tg_rng_below(&rng, n), len = tg_rng_below(&rng, n - off + 1);
        tg_tokens x = {0}, y = {0};
        if (tg_tokenizer_encode(t, (const uint8_t *)src + off, len, &x, &err) != TG_OK ||
            tg_tokenizer_encode_cached(t, cache, (const uint8_t *)src + off, len, &y, &err) != TG_OK ||
            x.n != y.n || (x.n && memcmp(x.ids, y.ids, x.n * sizeof *x.ids) != 0))
            diff++;
        tg_tokens_free(&x);
        tg_tokens_free(&y);
    }
    CHECKF(diff == 0, "%d cached encodings differ", diff);
    tg_encode_cache_free(cache);
    /* merges actually compress text */
    tg_tokens ids = {0};
    CHECK_OK(tg_tokenizer_encode(t, (const uint8_t *)texts[0], strlen(texts[0]), &ids, &err), &err);
    CHECKF(ids.n < strlen(texts[0]) / 2, "%zu tokens for %zu bytes", ids.n, strlen(texts[0]));
    uint32_t bad_id = 99999;
    uint8_t *dec = NULL;
    size_t dn;
    CHECK(tg_tokenizer_decode(t, &bad_id, 1, &dec, &dn, &err) == TG_ERR_DATA);
    CHECK(strstr(err.msg, "99999") != NULL);
    tg_tokens_free(&ids);
    tg_tokenizer_free(t);
}

static void test_load_errors(void) {
    tg_error err = {0};
    tg_tokenizer *t = NULL;
    CHECK(tg_tokenizer_load(&t, tpath("nope.tiktoken"), &err) == TG_ERR_IO);
    CHECK(strstr(err.msg, "nope.tiktoken") && strstr(err.msg, "cannot open"));
    write_str(tpath("bad64.tiktoken"), "AA== 0\n!!!! 1\n");
    CHECK(tg_tokenizer_load(&t, tpath("bad64.tiktoken"), &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad64.tiktoken:2: invalid base64") != NULL, "%s", err.msg);
    write_str(tpath("few.tiktoken"), "AA== 0\nAQ== 1\n");
    CHECK(tg_tokenizer_load(&t, tpath("few.tiktoken"), &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "byte 0x02 has no token") != NULL, "%s", err.msg);
    write_str(tpath("empty.tiktoken"), "");
    CHECK(tg_tokenizer_load(&t, tpath("empty.tiktoken"), &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "empty rank file") != NULL, "%s", err.msg);
    CHECK(t == NULL);
}

int main(void) {
    tmpdir_make();
    test_sha256();
    test_train_small();
    test_rank_semantics();
    test_roundtrip();
    test_load_errors();
    tmpdir_remove();
    TEST_MAIN_END();
}
