/* tests/data/test_loader.c — loader order semantics (determinism, epoch coverage, world-size
 * independence, disjoint ranks, exact continuation after a state restore, validation prefix)
 * and one test per bad shard, asserting the message. Shards are synthetic: token = position
 * (mod vocab), so a window is identified by its first token. */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "data/h5util.h"
#include "data/loader.h"
#include "data/shard.h"
#include "data/synthetic.h"
#include "test_util.h"
#include "tg_test.h"

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

/* Writes a shard of n tokens; token i = (base + i) % vocab, except tokens[bad_at] = bad_val. */
static void make_shard(const char *path, int64_t vocab, uint64_t n, uint64_t base, const char *hash,
                       int64_t bad_at, uint32_t bad_val) {
    tg_shard_info info = {.format_version = 1, .vocab_size = vocab, .eot_id = vocab - 1, .n_tokens = n, .n_docs = 1};
    snprintf(info.tokenizer_name, sizeof info.tokenizer_name, "synthetic");
    snprintf(info.tokenizer_hash, sizeof info.tokenizer_hash, "%s", hash);
    int db = tg_shard_dtype_bytes(vocab);
    void *tok = malloc(n * (uint64_t)db + 4);
    for (uint64_t i = 0; i < n; i++) {
        uint32_t v = (int64_t)i == bad_at ? bad_val : (uint32_t)((base + i) % (uint64_t)vocab);
        if (db == 2) ((uint16_t *)tok)[i] = (uint16_t)v;
        else ((uint32_t *)tok)[i] = v;
    }
    uint64_t doc0 = 0;
    tg_error err = {0};
    CHECK_OK(tg_shard_write(path, &info, "train", 0, tok, &doc0, 64, 3, &err), &err);
    free(tok);
}

static tg_loader_options opts(const char *glob, int B, int T, int rank, int world, int prefetch) {
    tg_loader_options o = {.glob = glob, .B = B, .T = T, .rank = rank, .world = world, .seed = 1234,
                           .shuffle = 1, .vocab_size = 0, .prefetch = prefetch, .block_tokens = 3 * T};
    return o;
}

/* Runs `steps` micro-batches and records each row's first token (the window id when token =
 * position) into out[step*B + row]; also checks targets = inputs shifted by one. */
static void collect(tg_loader *l, int B, int T, int steps, uint32_t *out) {
    int32_t *in = malloc((size_t)B * T * sizeof *in), *tg = malloc((size_t)B * T * sizeof *tg);
    tg_error err = {0};
    int shift_bad = 0;
    for (int s = 0; s < steps; s++) {
        tg_status st = tg_loader_next(l, in, tg, &err);
        CHECKF(st == TG_OK, "%s", err.msg);
        if (st != TG_OK) break;
        for (int b = 0; b < B; b++) {
            out[(size_t)s * B + b] = (uint32_t)in[(size_t)b * T];
            for (int t = 0; t < T; t++) {
                if (t + 1 < T && tg[(size_t)b * T + t] != in[(size_t)b * T + t + 1]) shift_bad++;
                if (tg[(size_t)b * T + t] != in[(size_t)b * T + t] + 1) shift_bad++; /* token = position */
            }
        }
    }
    CHECK(shift_bad == 0);
    free(in);
    free(tg);
}

/* Two shards of 1000 and 701 tokens, T=10 -> 99 + 70 = 169 windows; tokens = global positions
 * (second shard starts at 100000), uint32 (vocab 200000). */
static const char *G;
static int T = 10;
enum { N_WIN = 169 };

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void test_order(void) {
    tg_error err = {0};
    tg_loader *a = NULL, *b = NULL;
    tg_loader_options o = opts(G, 1, T, 0, 1, 0);
    CHECK_OK(tg_loader_open(&a, &o, &err), &err);
    if (!a) return;
    CHECK(tg_loader_n_windows(a) == N_WIN);
    CHECK(tg_loader_n_tokens(a) == 1701);
    CHECK(tg_loader_vocab_size(a) == 200000 && tg_loader_eot_id(a) == 199999);
    CHECK(!strcmp(tg_loader_tokenizer_hash(a), HASH_A));
    /* one epoch at B=1 visits every window exactly once */
    uint32_t e0[N_WIN], e1[N_WIN], sorted[N_WIN];
    collect(a, 1, T, N_WIN, e0);
    collect(a, 1, T, N_WIN, e1);
    memcpy(sorted, e0, sizeof sorted);
    qsort(sorted, N_WIN, sizeof *sorted, cmp_u32);
    int cover = 1;
    for (int i = 0; i < N_WIN; i++) {
        uint32_t want = i < 99 ? (uint32_t)(i * T) : (uint32_t)(100000 + (i - 99) * T);
        if (sorted[i] != want) cover = 0;
    }
    CHECK(cover);
    CHECK(memcmp(e0, e1, sizeof e0) != 0); /* epochs differ */
    int in_order = 1;
    for (int i = 1; i < N_WIN; i++) if (e0[i] < e0[i - 1]) in_order = 0;
    CHECK(!in_order); /* it is shuffled */
    /* same seed -> same stream, with and without prefetch */
    tg_loader_options ob = opts(G, 1, T, 0, 1, 3);
    CHECK_OK(tg_loader_open(&b, &ob, &err), &err);
    if (b) {
        uint32_t x[2 * N_WIN];
        collect(b, 1, T, 2 * N_WIN, x);
        CHECK(memcmp(x, e0, sizeof e0) == 0 && memcmp(x + N_WIN, e1, sizeof e1) == 0);
        tg_loader_free(b);
    }
    /* another seed -> another order */
    ob.seed = 99;
    CHECK_OK(tg_loader_open(&b, &ob, &err), &err);
    if (b) {
        uint32_t x[N_WIN];
        collect(b, 1, T, N_WIN, x);
        CHECK(memcmp(x, e0, sizeof e0) != 0);
        tg_loader_free(b);
    }
    tg_loader_free(a);
}

/* W=1,B=8 and W=2,B=4 see the same global batches; the ranks' rows are disjoint. */
static void test_world_independence(void) {
    enum { STEPS = 50 }; /* 400 windows: crosses two epoch boundaries */
    tg_error err = {0};
    tg_loader *w1 = NULL, *r0 = NULL, *r1 = NULL;
    tg_loader_options o1 = opts(G, 8, T, 0, 1, 2), o2a = opts(G, 4, T, 0, 2, 2), o2b = opts(G, 4, T, 1, 2, 0);
    CHECK_OK(tg_loader_open(&w1, &o1, &err), &err);
    CHECK_OK(tg_loader_open(&r0, &o2a, &err), &err);
    CHECK_OK(tg_loader_open(&r1, &o2b, &err), &err);
    if (!w1 || !r0 || !r1) return;
    static uint32_t g[STEPS * 8], a[STEPS * 4], b[STEPS * 4];
    collect(w1, 8, T, STEPS, g);
    collect(r0, 4, T, STEPS, a);
    collect(r1, 4, T, STEPS, b);
    int same = 1, disjoint = 1;
    for (int s = 0; s < STEPS; s++) {
        if (memcmp(g + s * 8, a + s * 4, 16) || memcmp(g + s * 8 + 4, b + s * 4, 16)) same = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                if (a[s * 4 + i] == b[s * 4 + j]) disjoint = 0;
    }
    CHECK(same);
    CHECK(disjoint);
    /* within the first epoch (positions < 169), no window is served twice across ranks */
    uint32_t first[160];
    for (int s = 0; s < 20; s++) {
        memcpy(first + s * 8, a + s * 4, 16);
        memcpy(first + s * 8 + 4, b + s * 4, 16);
    }
    qsort(first, 160, sizeof *first, cmp_u32);
    int uniq = 1;
    for (int i = 1; i < 160; i++) if (first[i] == first[i - 1]) uniq = 0;
    CHECK(uniq);
    tg_loader_free(w1);
    tg_loader_free(r0);
    tg_loader_free(r1);
}

/* A restored state continues exactly where an uninterrupted run goes. */
static void test_restore(void) {
    enum { STEPS = 60, CUT = 23 };
    tg_error err = {0};
    tg_loader *l = NULL, *m = NULL;
    tg_loader_options o = opts(G, 3, T, 1, 2, 4);
    CHECK_OK(tg_loader_open(&l, &o, &err), &err);
    if (!l) return;
    static uint32_t full[STEPS * 3], part[STEPS * 3];
    collect(l, 3, T, CUT, full);
    tg_loader_state s;
    tg_loader_state_get(l, &s);
    CHECK(s.seed == 1234 && s.position == (uint64_t)CUT * 2 * 3);
    collect(l, 3, T, STEPS - CUT, full + CUT * 3);
    /* a fresh loader (another prefetch depth) restored to the cut */
    o.prefetch = 1;
    CHECK_OK(tg_loader_open(&m, &o, &err), &err);
    if (m) {
        collect(m, 3, T, 5, part); /* read something else first; state_set discards it */
        CHECK_OK(tg_loader_state_set(m, &s, &err), &err);
        collect(m, 3, T, STEPS - CUT, part + CUT * 3);
        CHECK(memcmp(full + CUT * 3, part + CUT * 3, (STEPS - CUT) * 3 * sizeof *full) == 0);
        tg_loader_free(m);
    }
    /* and the same loader rewound */
    CHECK_OK(tg_loader_state_set(l, &s, &err), &err);
    collect(l, 3, T, STEPS - CUT, part + CUT * 3);
    CHECK(memcmp(full + CUT * 3, part + CUT * 3, (STEPS - CUT) * 3 * sizeof *full) == 0);
    tg_loader_free(l);
}

/* A state saved at world 2 (B=4) resumes at world 1 (B=8) on the same global batches. */
static void test_resume_other_world(void) {
    tg_error err = {0};
    tg_loader *r0 = NULL, *r1 = NULL, *w1 = NULL, *ref = NULL;
    tg_loader_options a = opts(G, 4, T, 0, 2, 2), b = opts(G, 4, T, 1, 2, 2), c = opts(G, 8, T, 0, 1, 2);
    CHECK_OK(tg_loader_open(&r0, &a, &err), &err);
    CHECK_OK(tg_loader_open(&r1, &b, &err), &err);
    CHECK_OK(tg_loader_open(&w1, &c, &err), &err);
    CHECK_OK(tg_loader_open(&ref, &c, &err), &err);
    if (!r0 || !r1 || !w1 || !ref) return;
    uint32_t x[7 * 4], y[7 * 4], g[37 * 8], z[30 * 8];
    collect(r0, 4, T, 7, x);
    collect(r1, 4, T, 7, y);
    tg_loader_state s0, s1;
    tg_loader_state_get(r0, &s0);
    tg_loader_state_get(r1, &s1);
    CHECK(s0.position == s1.position && s0.position == 7 * 8);
    CHECK_OK(tg_loader_state_set(w1, &s0, &err), &err);
    collect(w1, 8, T, 30, z);
    collect(ref, 8, T, 37, g);
    CHECK(memcmp(z, g + 7 * 8, sizeof z) == 0);
    tg_loader_free(r0);
    tg_loader_free(r1);
    tg_loader_free(w1);
    tg_loader_free(ref);
}

/* shuffle=0: windows in file order from position 0; resetting gives the same subset. */
static void test_validation(void) {
    tg_error err = {0};
    tg_loader *l = NULL;
    tg_loader_options o = opts(G, 4, T, 0, 1, 2);
    o.shuffle = 0;
    CHECK_OK(tg_loader_open(&l, &o, &err), &err);
    if (!l) return;
    uint32_t x[8], y[8];
    collect(l, 4, T, 2, x);
    for (int i = 0; i < 8; i++) CHECK(x[i] == (uint32_t)(i * T));
    tg_loader_state s = {1234, 0};
    CHECK_OK(tg_loader_state_set(l, &s, &err), &err);
    collect(l, 4, T, 2, y);
    CHECK(memcmp(x, y, sizeof x) == 0);
    tg_loader_free(l);
}

/* uint16 shards (vocab <= 65536) take the same path. */
static void test_uint16(void) {
    make_shard(tpath("u16_000.h5"), 50257, 5000, 0, HASH_A, -1, 0);
    tg_error err = {0};
    tg_loader *l = NULL;
    tg_loader_options o = opts(tpath("u16_*.h5"), 2, 16, 0, 1, 2);
    o.vocab_size = 50257;
    CHECK_OK(tg_loader_open(&l, &o, &err), &err);
    if (!l) return;
    uint32_t x[20];
    collect(l, 2, 16, 10, x);
    for (int i = 0; i < 20; i++) CHECK(x[i] % 16 == 0 && x[i] < 5000);
    tg_loader_free(l);
}

/* h5py writes attributes as variable-length UTF-8 strings; they must read like ours. */
static void test_h5py_style_attrs(void) {
    make_shard(tpath("py_000.h5"), 300, 500, 0, HASH_A, -1, 0);
    tg_h5_lock();
    hid_t f = H5Fopen(tpath("py_000.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    H5Adelete(f, "tokenizer_hash");
    hid_t a = H5Acreate2(f, "tokenizer_hash", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char *v = "cccc\xc3\xa9";
    CHECK(H5Awrite(a, t, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Fclose(f);
    tg_h5_unlock();
    tg_error err = {0};
    tg_loader *l = NULL;
    tg_loader_options o = opts(tpath("py_000.h5"), 2, T, 0, 1, 0);
    CHECK_OK(tg_loader_open(&l, &o, &err), &err);
    if (l) CHECK(!strcmp(tg_loader_tokenizer_hash(l), "cccc\xc3\xa9"));
    tg_loader_free(l);
}

/* Expects tg_loader_open (and, if it succeeds, the first tg_loader_next) to fail with code and
 * a message containing each of the given strings. */
static void expect_fail(const char *glob, int Tw, int vocab, tg_status code, const char *s1, const char *s2) {
    tg_error err = {0};
    tg_loader *l = NULL;
    tg_loader_options o = opts(glob, 2, Tw, 0, 1, 1);
    o.vocab_size = vocab;
    tg_status st = tg_loader_open(&l, &o, &err);
    if (st == TG_OK) {
        int32_t in[2 * 64], tg[2 * 64];
        for (int i = 0; i < 200 && st == TG_OK; i++) st = tg_loader_next(l, in, tg, &err);
        tg_loader_free(l);
    }
    CHECKF(st == code, "%s: got %s (%s)", glob, tg_status_str(st), err.msg);
    CHECKF(strstr(err.msg, s1) != NULL, "'%s' not in: %s", s1, err.msg);
    if (s2) CHECKF(strstr(err.msg, s2) != NULL, "'%s' not in: %s", s2, err.msg);
    /* every error path closes what it opened (LSan cannot see HDF5 handles: H5close frees them) */
    tg_h5_lock();
    ssize_t open_objs = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    tg_h5_unlock();
    CHECKF(open_objs == 0, "%s: %ld HDF5 objects left open", glob, (long)open_objs);
}

/* A file with the shard layout but something wrong, written with the raw helpers. */
static void make_raw(const char *path, int with_tokens, hid_t tok_type, size_t n, int with_vocab) {
    tg_error err = {0};
    tg_h5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    uint32_t data[64] = {0};
    uint64_t d0 = 0;
    if (with_tokens) CHECK_OK(tg_h5_write_1d(f, "tokens", H5T_NATIVE_UINT32, tok_type, data, n, 0, 3, &err), &err);
    CHECK_OK(tg_h5_write_1d(f, "doc_offsets", H5T_NATIVE_UINT64, H5T_STD_U64LE, &d0, 1, 0, 3, &err), &err);
    CHECK_OK(tg_h5_attr_write_i64(f, "format_version", TG_SHARD_FORMAT_VERSION, &err), &err);
    if (with_vocab) CHECK_OK(tg_h5_attr_write_i64(f, "vocab_size", 300, &err), &err);
    CHECK_OK(tg_h5_attr_write_i64(f, "eot_id", 299, &err), &err);
    CHECK_OK(tg_h5_attr_write_str(f, "tokenizer_name", "x", &err), &err);
    CHECK_OK(tg_h5_attr_write_str(f, "tokenizer_hash", HASH_A, &err), &err);
    CHECK_OK(tg_h5_attr_write_i64(f, "n_tokens", (int64_t)n, &err), &err);
    CHECK_OK(tg_h5_attr_write_i64(f, "n_docs", 1, &err), &err);
    H5Fclose(f);
    tg_h5_unlock();
}

static void test_bad_shards(void) {
    char pat[600];
    /* missing / unmatched */
    expect_fail(tpath("nothing_*.h5"), T, 0, TG_ERR_IO, "nothing_*.h5: no files match", NULL);
    expect_fail(tpath("absent.h5"), T, 0, TG_ERR_IO, "absent.h5: cannot open: No such file", NULL);
    /* unreadable (skipped as root, who can read anything) */
    make_shard(tpath("noperm.h5"), 300, 100, 0, HASH_A, -1, 0);
    chmod(tpath("noperm.h5"), 0);
    if (geteuid() != 0) expect_fail(tpath("noperm.h5"), T, 0, TG_ERR_IO, "noperm.h5: cannot open: Permission denied", NULL);
    /* not HDF5 */
    write_str(tpath("text.h5"), "just some text, not HDF5\n");
    expect_fail(tpath("text.h5"), T, 0, TG_ERR_FORMAT, "text.h5: not an HDF5 file", NULL);
    /* truncated HDF5 */
    make_shard(tpath("full.h5"), 300, 3000, 0, HASH_A, -1, 0);
    size_t n = 0;
    char *full = read_all(tpath("full.h5"), &n);
    write_file(tpath("trunc.h5"), full, n / 2);
    free(full);
    expect_fail(tpath("trunc.h5"), T, 0, TG_ERR_HDF5, "trunc.h5: ", "truncated file");
    /* missing dataset, missing attribute, wrong dtype, empty dataset */
    make_raw(tpath("nodset.h5"), 0, H5T_STD_U16LE, 0, 1);
    expect_fail(tpath("nodset.h5"), T, 0, TG_ERR_FORMAT, "nodset.h5: missing dataset 'tokens'", NULL);
    make_raw(tpath("noattr.h5"), 1, H5T_STD_U16LE, 50, 0);
    expect_fail(tpath("noattr.h5"), T, 0, TG_ERR_FORMAT, "noattr.h5: missing attribute 'vocab_size'", NULL);
    make_raw(tpath("dtype.h5"), 1, H5T_IEEE_F32LE, 50, 1);
    expect_fail(tpath("dtype.h5"), T, 0, TG_ERR_FORMAT, "dtype.h5: dataset 'tokens' has dtype float32; expected uint16", NULL);
    make_raw(tpath("dtype2.h5"), 1, H5T_STD_I32LE, 50, 1);
    expect_fail(tpath("dtype2.h5"), T, 0, TG_ERR_FORMAT, "dtype2.h5: dataset 'tokens' has dtype int32; expected uint16", NULL);
    make_raw(tpath("empty.h5"), 1, H5T_STD_U16LE, 0, 1);
    expect_fail(tpath("empty.h5"), T, 0, TG_ERR_FORMAT, "empty.h5: dataset 'tokens' is empty", NULL);
    /* token id >= vocab_size, found when its chunk is read */
    make_shard(tpath("oob.h5"), 300, 2000, 0, HASH_A, 1234, 300);
    expect_fail(tpath("oob.h5"), T, 0, TG_ERR_DATA, "oob.h5: token id 300 at position 1234 >= vocab_size 300", NULL);
    /* vocab mismatch between shards, tokenizer mismatch, mismatch with the config */
    make_shard(tpath("mix_a_0.h5"), 300, 500, 0, HASH_A, -1, 0);
    make_shard(tpath("mix_a_1.h5"), 400, 500, 0, HASH_A, -1, 0);
    snprintf(pat, sizeof pat, "%s", tpath("mix_a_*.h5"));
    expect_fail(pat, T, 0, TG_ERR_DATA, "mix_a_1.h5: vocab_size 400 differs from", "mix_a_0.h5's 300");
    make_shard(tpath("mix_b_0.h5"), 300, 500, 0, HASH_A, -1, 0);
    make_shard(tpath("mix_b_1.h5"), 300, 500, 0, "bbbb", -1, 0);
    snprintf(pat, sizeof pat, "%s", tpath("mix_b_*.h5"));
    expect_fail(pat, T, 0, TG_ERR_DATA, "mix_b_1.h5: tokenizer hash bbbb", "differs from");
    expect_fail(tpath("mix_a_0.h5"), T, 50257, TG_ERR_DATA, "mix_a_0.h5: vocab_size 300 does not match the model's vocab_size 50257", NULL);
    /* shard shorter than T+1 */
    make_shard(tpath("short.h5"), 300, 10, 0, HASH_A, -1, 0);
    expect_fail(tpath("short.h5"), 10, 0, TG_ERR_DATA, "short.h5: shard has 10 tokens, shorter than one window of T+1 = 11", NULL);
}

/* glob "synthetic": the stream of data/synthetic.h through the loader's interface: its batches,
 * world independence, a restored position, a validation stream of its own, no tokenizer. */
static void test_synthetic(void) {
    enum { B = 4, TS = 16, STEPS = 6 };
    tg_error err = {0};
    tg_loader *w2 = NULL, *w1 = NULL, *val = NULL;
    tg_loader_options o = opts(TG_LOADER_SYNTHETIC, B, TS, 1, 2, 4);
    CHECK_OK(tg_loader_open(&w2, &o, &err), &err);
    tg_loader_options o1 = opts(TG_LOADER_SYNTHETIC, 2 * B, TS, 0, 1, 0);
    o1.vocab_size = 300;
    CHECK_OK(tg_loader_open(&w1, &o1, &err), &err);
    o.shuffle = 0;
    CHECK_OK(tg_loader_open(&val, &o, &err), &err);
    if (!w2 || !w1 || !val) return;
    CHECK(tg_loader_vocab_size(w2) == TG_SYNTHETIC_VOCAB && tg_loader_vocab_size(w1) == 300);
    CHECK(tg_loader_eot_id(w2) == -1 && strcmp(tg_loader_tokenizer_hash(w2), "") == 0);
    CHECK(tg_loader_n_windows(w2) == 0);
    int32_t in[2 * B * TS], tg[2 * B * TS], ein[B * TS], etg[B * TS];
    int match = 1;
    for (int s = 0; s < STEPS; s++) {
        CHECK_OK(tg_loader_next(w2, in, tg, &err), &err);
        tg_synthetic_fill(1234, (uint64_t)s * 2 * B, 1, B, TS, TG_SYNTHETIC_VOCAB, ein, etg);
        match &= memcmp(in, ein, sizeof ein) == 0 && memcmp(tg, etg, sizeof etg) == 0;
    }
    CHECK(match);
    tg_loader_state st;
    tg_loader_state_get(w2, &st);
    CHECK(st.seed == 1234 && st.position == (uint64_t)STEPS * 2 * B);
    st.position = 2 * B; /* back to step 1 */
    CHECK_OK(tg_loader_state_set(w2, &st, &err), &err);
    CHECK_OK(tg_loader_next(w2, in, tg, &err), &err);
    tg_synthetic_fill(1234, 2 * B, 1, B, TS, TG_SYNTHETIC_VOCAB, ein, etg);
    CHECK(memcmp(in, ein, sizeof ein) == 0);
    /* world 1 with 2B rows sees rank 0's and rank 1's rows of the same slice */
    CHECK_OK(tg_loader_next(w1, in, tg, &err), &err);
    int32_t r1[B * TS], t1[B * TS];
    tg_synthetic_fill(1234, 0, 1, B, TS, 300, r1, t1);
    CHECK(memcmp(in + B * TS, r1, sizeof r1) == 0);
    /* validation: another stream (seed hashed), read from wherever it is set */
    tg_loader_state vs;
    tg_loader_state_get(val, &vs);
    CHECK(vs.seed != 1234);
    CHECK_OK(tg_loader_next(val, in, tg, &err), &err);
    tg_synthetic_fill(vs.seed, 0, 1, B, TS, TG_SYNTHETIC_VOCAB, ein, etg);
    CHECK(memcmp(in, ein, sizeof ein) == 0);
    tg_loader_free(w2);
    tg_loader_free(w1);
    tg_loader_free(val);
}

/* Mixture of s_000.h5 (tokens < 100000) and s_001.h5 (tokens >= 100000), weights 0.7 / 0.3. */
static char MIX[1400];
static tg_loader_options mix_opts(int B, int rank, int world, int prefetch) {
    tg_loader_options o = opts(MIX, B, T, rank, world, prefetch);
    o.block_tokens = 1000 * T; /* one block per shard: the proportion test stays fast */
    return o;
}

static void test_mixture(void) {
    tg_error err = {0};
    /* proportions: N rows, source 0 expected 0.7 N; 4 binomial sigmas = 4 sqrt(N 0.7 0.3) = 232 */
    enum { PB = 8, PSTEPS = 2000, N = PB * PSTEPS };
    static uint32_t rows[N];
    tg_loader *l = NULL;
    tg_loader_options o = mix_opts(PB, 0, 1, 2);
    CHECK_OK(tg_loader_open(&l, &o, &err), &err);
    if (!l) return;
    CHECK(tg_loader_vocab_size(l) == 200000 && !strcmp(tg_loader_tokenizer_hash(l), HASH_A));
    CHECK(tg_loader_n_windows(l) == 99 + 70);
    collect(l, PB, T, PSTEPS, rows);
    tg_loader_free(l);
    int n0 = 0;
    for (int i = 0; i < N; i++) n0 += rows[i] < 100000;
    double sigma = sqrt(N * 0.7 * 0.3);
    CHECKF(fabs(n0 - 0.7 * N) <= 4 * sigma, "source 0 got %d of %d rows, expected %.0f +- %.0f", n0, N,
           0.7 * N, 4 * sigma);
    /* each source walks its own epoch: its first 99 (resp. 70) rows are distinct windows */
    uint32_t seen0[99], seen1[70];
    int k0 = 0, k1 = 0;
    for (int i = 0; i < N && (k0 < 99 || k1 < 70); i++) {
        if (rows[i] < 100000 && k0 < 99) seen0[k0++] = rows[i];
        else if (rows[i] >= 100000 && k1 < 70) seen1[k1++] = rows[i];
    }
    qsort(seen0, 99, sizeof *seen0, cmp_u32);
    qsort(seen1, 70, sizeof *seen1, cmp_u32);
    int uniq = 1;
    for (int i = 1; i < 99; i++) if (seen0[i] == seen0[i - 1]) uniq = 0;
    for (int i = 1; i < 70; i++) if (seen1[i] == seen1[i - 1]) uniq = 0;
    CHECK(uniq);

    /* world independence: world 1 (B=8) and world 2 (B=4 each) serve the same global rows */
    enum { STEPS = 50 };
    static uint32_t g[STEPS * 8], a[STEPS * 4], b[STEPS * 4];
    tg_loader *w1 = NULL, *r0 = NULL, *r1 = NULL;
    tg_loader_options o1 = mix_opts(8, 0, 1, 2), o2a = mix_opts(4, 0, 2, 0), o2b = mix_opts(4, 1, 2, 3);
    CHECK_OK(tg_loader_open(&w1, &o1, &err), &err);
    CHECK_OK(tg_loader_open(&r0, &o2a, &err), &err);
    CHECK_OK(tg_loader_open(&r1, &o2b, &err), &err);
    if (!w1 || !r0 || !r1) return;
    collect(w1, 8, T, STEPS, g);
    collect(r0, 4, T, STEPS, a);
    collect(r1, 4, T, STEPS, b);
    int same = 1;
    for (int s = 0; s < STEPS; s++)
        if (memcmp(g + s * 8, a + s * 4, 16) || memcmp(g + s * 8 + 4, b + s * 4, 16)) same = 0;
    CHECK(same);
    CHECK(memcmp(g, rows, sizeof g) == 0); /* and the same as the prefetching B=8 loader above */

    /* resume: the state of world 2 after CUT steps, restored into fresh and rewound loaders */
    enum { CUT = 17 };
    tg_loader_state s0;
    tg_loader_free(r0);
    r0 = NULL;
    CHECK_OK(tg_loader_open(&r0, &o2a, &err), &err);
    if (!r0) return;
    collect(r0, 4, T, CUT, a);
    tg_loader_state_get(r0, &s0);
    CHECK(s0.seed == 1234 && s0.position == (uint64_t)CUT * 8);
    tg_loader *m = NULL;
    tg_loader_options om = mix_opts(4, 1, 2, 1);
    CHECK_OK(tg_loader_open(&m, &om, &err), &err);
    if (m) {
        collect(m, 4, T, 3, b); /* read something first; state_set discards it */
        CHECK_OK(tg_loader_state_set(m, &s0, &err), &err);
        collect(m, 4, T, STEPS - CUT, b);
        int ok = 1;
        for (int s = CUT; s < STEPS; s++)
            if (memcmp(g + s * 8 + 4, b + (s - CUT) * 4, 16)) ok = 0;
        CHECK(ok);
        tg_loader_free(m);
    }
    CHECK_OK(tg_loader_state_set(w1, &s0, &err), &err); /* world 1 rewound to world 2's state */
    static uint32_t z[(STEPS - CUT) * 8];
    collect(w1, 8, T, STEPS - CUT, z);
    CHECK(memcmp(z, g + CUT * 8, sizeof z) == 0);
    tg_loader_free(w1);
    tg_loader_free(r0);
    tg_loader_free(r1);

    /* errors */
    static char spec[1400];
    const char *dir = tpath("");
    snprintf(spec, sizeof spec, "%ss_000.h5:0.5,%smix_b.h5:0.5", dir, dir);
    expect_fail(spec, T, 0, TG_ERR_DATA, "tokenizer hash bbbb", "all sources must be tokenized alike");
    snprintf(spec, sizeof spec, "%ss_000.h5:0", dir);
    expect_fail(spec, T, 0, TG_ERR_CONFIG, "weight \"0\" is not a number > 0", NULL);
    snprintf(spec, sizeof spec, "%ss_000.h5:-1,%ss_001.h5:1", dir, dir);
    expect_fail(spec, T, 0, TG_ERR_CONFIG, "weight \"-1\" is not a number > 0", NULL);
    snprintf(spec, sizeof spec, "%ss_000.h5:,%ss_001.h5:1", dir, dir);
    expect_fail(spec, T, 0, TG_ERR_CONFIG, "weight \"\" is not a number > 0", NULL);
    snprintf(spec, sizeof spec, "%ss_000.h5:0.7,%ss_001.h5", dir, dir);
    expect_fail(spec, T, 0, TG_ERR_CONFIG, "source 2", "has no \":weight\"");
    snprintf(spec, sizeof spec, "%ss_000.h5:0.7,:0.3", dir);
    expect_fail(spec, T, 0, TG_ERR_CONFIG, "source 2 has no glob", NULL);
    snprintf(spec, sizeof spec, "%ss_000.h5:0.7,%snone_*.h5:0.3", dir, dir);
    expect_fail(spec, T, 0, TG_ERR_IO, "no files match", NULL);
    expect_fail("synthetic:1", T, 0, TG_ERR_CONFIG, "cannot be a mixture source", NULL);
}

int main(void) {
    tmpdir_make();
    make_shard(tpath("s_000.h5"), 200000, 1000, 0, HASH_A, -1, 0);
    make_shard(tpath("s_001.h5"), 200000, 701, 100000, HASH_A, -1, 0);
    G = tpath("s_*.h5");
    static char gbuf[600];
    snprintf(gbuf, sizeof gbuf, "%s", G);
    G = gbuf;
    test_order();
    test_world_independence();
    test_restore();
    test_resume_other_world();
    test_validation();
    test_uint16();
    test_h5py_style_attrs();
    test_bad_shards();
    test_synthetic();
    make_shard(tpath("mix_b.h5"), 200000, 500, 0, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", -1, 0);
    snprintf(MIX, sizeof MIX, "%s:0.7,", tpath("s_000.h5"));
    snprintf(MIX + strlen(MIX), sizeof MIX - strlen(MIX), "%s:0.3", tpath("s_001.h5"));
    test_mixture();
    tmpdir_remove();
    TEST_MAIN_END();
}
