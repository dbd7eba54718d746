/* tests/data/test_prepare.c — prepare: content of the shards (decode back to the documents),
 * split, sharding, attributes + zstd filter seen by h5dump, byte-identical reruns, unigram
 * entropy, and the input problems (missing file, malformed JSONL, empty / non-UTF-8 input). */
#include <math.h>
#include <string.h>

#include "data/h5util.h"
#include "data/prepare.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "test_util.h"
#include "tg_test.h"

static const tg_log quiet = {0, 1, 0};

static const char *DOC_TXT = "A plain text file is one document.\nIt has two lines.\n";
static const char *JSONL =
    "{\"id\": 1, \"text\": \"first json doc\", \"meta\": {\"a\": [1, 2.5e3, null, true]}}\n"
    "\n"
    "{\"text\": \"second \\\"quoted\\\" caf\\u00e9 \\ud83d\\ude00\\n\"}\n"
    "{\"text\": \"third one\", \"x\": false}\n";
static const char *FORTUNE = "Fortune one.\n%\nFortune two,\n  with two lines.\n%\n%\nFortune three.\n";

/* The documents prepare should see, in order. */
static const char *expected_docs[] = {
    "A plain text file is one document.\nIt has two lines.\n",
    "first json doc",
    "second \"quoted\" caf\xc3\xa9 \xf0\x9f\x98\x80\n",
    "third one",
    "Fortune one.\n",
    "Fortune two,\n  with two lines.\n",
    "Fortune three.\n",
};
#define N_DOCS 7

static void make_tokenizer(void) {
    tg_error err = {0};
    tg_bpe_trainer *tr = NULL;
    CHECK_OK(tg_bpe_trainer_init(&tr, &err), &err);
    for (int i = 0; i < N_DOCS; i++)
        CHECK_OK(tg_bpe_trainer_add(tr, (const uint8_t *)expected_docs[i], strlen(expected_docs[i]), &err), &err);
    CHECK_OK(tg_bpe_trainer_save(tr, 300, tpath("tok.tiktoken"), &quiet, NULL, &err), &err);
    tg_bpe_trainer_free(tr);
}

static tg_status run_prepare(const char *out, const char *const *inputs, int n, tg_input_mode mode,
                             double val, uint64_t shard_tokens, int threads, tg_prepare_result *r,
                             tg_error *err) {
    tg_prepare_options o;
    tg_prepare_options_default(&o);
    o.tokenizer_path = tpath("tok.tiktoken");
    o.out_dir = out;
    o.inputs = inputs;
    o.n_inputs = n;
    o.mode = mode;
    o.val_fraction = val;
    o.shard_tokens = shard_tokens;
    o.chunk_tokens = 16;
    o.threads = threads;
    return tg_prepare_run(&o, &quiet, NULL, NULL, r, err);
}

/* Reads all tokens of DIR/split_*.h5 in order. */
static uint32_t *read_split(const char *dir, const char *split, int n_shards, size_t *n_out) {
    size_t n = 0, cap = 1 << 16;
    uint32_t *all = malloc(cap * sizeof *all);
    for (int s = 0; s < n_shards; s++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s_%06d.h5", dir, split, s);
        tg_shard_info info;
        tg_error err = {0};
        CHECK_OK(tg_shard_read_info(path, &info, &err), &err);
        if (err.code) break;
        CHECK(info.dtype_bytes == 2 && info.vocab_size == 300 && info.eot_id == 299);
        uint16_t *tmp = malloc(info.n_tokens * 2);
        tg_shard_handle h;
        tg_shard_handle_init(&h);
        CHECK_OK(tg_shard_read_tokens(&h, path, &info, 0, info.n_tokens, tmp, &err), &err);
        tg_shard_handle_close(&h);
        /* doc_offsets point at eot tokens */
        if (info.n_docs) {
            uint64_t *offs = malloc(info.n_docs * sizeof *offs);
            hid_t f;
            tg_h5_lock();
            f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
            CHECK_OK(tg_h5_read_1d(f, "doc_offsets", H5T_NATIVE_UINT64, offs, info.n_docs, &err), &err);
            H5Fclose(f);
            tg_h5_unlock();
            for (uint64_t d = 0; d < info.n_docs; d++) CHECK(offs[d] < info.n_tokens && tmp[offs[d]] == 299);
            free(offs);
        }
        for (uint64_t i = 0; i < info.n_tokens; i++) all[n++] = tmp[i];
        free(tmp);
    }
    *n_out = n;
    return all;
}

/* Splits tokens at eot and compares the decoded documents with expected_docs[which[k]]. */
static void check_docs(const tg_tokenizer *t, const uint32_t *ids, size_t n, const int *which, int n_which) {
    int k = 0;
    CHECK(n > 0 && ids[0] == 299);
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && ids[j] != 299) j++;
        uint8_t *dec = NULL;
        size_t dn = 0;
        tg_error err = {0};
        CHECK_OK(tg_tokenizer_decode(t, ids + i + 1, j - i - 1, &dec, &dn, &err), &err);
        CHECKF(k < n_which && dn == strlen(expected_docs[which[k]]) &&
                   memcmp(dec, expected_docs[which[k]], dn) == 0,
               "doc %d: '%.*s'", k, (int)dn, dec ? (char *)dec : "");
        free(dec);
        k++;
        i = j;
    }
    CHECKF(k == n_which, "%d docs, expected %d", k, n_which);
}

static int files_equal(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    char *x = read_all(a, &na), *y = read_all(b, &nb);
    int eq = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return eq;
}

static void test_prepare_content(void) {
    write_file(tpath("doc.txt"), DOC_TXT, strlen(DOC_TXT));
    write_file(tpath("docs.jsonl"), JSONL, strlen(JSONL));
    write_file(tpath("fortunes"), FORTUNE, strlen(FORTUNE));
    make_tokenizer();
    tg_tokenizer *t = NULL;
    tg_error err = {0};
    CHECK_OK(tg_tokenizer_load(&t, tpath("tok.tiktoken"), &err), &err);
    if (!t) return;
    /* text + jsonl in AUTO mode, then the fortune file in FORTUNE mode (two runs, same out dir
     * layout); val fraction 0.25 over 4 docs -> doc 3 is val. */
    const char *in1[] = {tpath("doc.txt"), tpath("docs.jsonl")};
    tg_prepare_result r;
    CHECK_OK(run_prepare(tpath("out1"), in1, 2, TG_INPUT_AUTO, 0.25, 24, 2, &r, &err), &err);
    CHECKF(r.train_docs == 3 && r.val_docs == 1, "train %llu val %llu", (unsigned long long)r.train_docs,
           (unsigned long long)r.val_docs);
    CHECK(r.train_shards == (int)((r.train_tokens + 23) / 24) && r.train_shards >= 2);
    CHECK(r.val_shards == 1);
    size_t n = 0;
    uint32_t *ids = read_split(tpath("out1"), "train", r.train_shards, &n);
    CHECK(n == r.train_tokens);
    int train_docs[] = {0, 1, 2};
    check_docs(t, ids, n, train_docs, 3);
    /* unigram entropy of the train split, recomputed */
    double counts[300] = {0}, H = 0;
    for (size_t i = 0; i < n; i++) counts[ids[i]]++;
    for (int i = 0; i < 300; i++)
        if (counts[i] > 0) H -= counts[i] / (double)n * log(counts[i] / (double)n);
    CHECKF(fabs(H - r.unigram_entropy) < 1e-9, "%g vs %g", H, r.unigram_entropy);
    free(ids);
    ids = read_split(tpath("out1"), "val", r.val_shards, &n);
    int val_docs[] = {3};
    check_docs(t, ids, n, val_docs, 1);
    free(ids);

    const char *in2[] = {tpath("fortunes")};
    CHECK_OK(run_prepare(tpath("out2"), in2, 1, TG_INPUT_FORTUNE, 0, 1000, 1, &r, &err), &err);
    CHECK(r.train_docs == 3 && r.val_docs == 0 && r.train_shards == 1 && r.val_shards == 0);
    ids = read_split(tpath("out2"), "train", 1, &n);
    int fdocs[] = {4, 5, 6};
    check_docs(t, ids, n, fdocs, 3);
    free(ids);

    /* Same inputs, different thread count -> byte-identical shards. */
    CHECK_OK(run_prepare(tpath("out3"), in1, 2, TG_INPUT_AUTO, 0.25, 24, 1, &r, &err), &err);
    char a[600], b[600];
    for (int s = 0; s < r.train_shards; s++) {
        snprintf(a, sizeof a, "%s/train_%06d.h5", tpath("out1"), s);
        snprintf(b, sizeof b, "%s/train_%06d.h5", tpath("out3"), s);
        CHECKF(files_equal(a, b), "%s differs from %s", a, b);
    }
    CHECK(files_equal(tpath("out1/val_000000.h5"), tpath("out3/val_000000.h5")));
    tg_tokenizer_free(t);
}

static void test_h5dump(void) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "h5dump -H -p %s/train_000000.h5 2>&1", tpath("out1"));
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    char *out = calloc(1, 1 << 16);
    size_t n = fread(out, 1, (1 << 16) - 1, p);
    pclose(p);
    out[n] = 0;
    CHECKF(strstr(out, "32015") != NULL, "no zstd filter in:\n%s", out);
    CHECK(strstr(out, "DATASET \"tokens\"") && strstr(out, "H5T_STD_U16LE"));
    CHECK(strstr(out, "DATASET \"doc_offsets\""));
    const char *attrs[] = {"format_version", "vocab_size", "eot_id", "tokenizer_name",
                           "tokenizer_hash", "n_tokens", "n_docs", "split", "shard_index"};
    for (int i = 0; i < 9; i++) {
        char a[100];
        snprintf(a, sizeof a, "ATTRIBUTE \"%s\"", attrs[i]);
        CHECKF(strstr(out, a) != NULL, "missing %s", a);
    }
    free(out);
}

static void test_bad_inputs(void) {
    tg_error err = {0};
    tg_prepare_result r;
    /* missing input: an error naming the file, and nothing written */
    const char *in_missing[] = {tpath("doc.txt"), tpath("missing.txt")};
    CHECK(run_prepare(tpath("bad1"), in_missing, 2, TG_INPUT_AUTO, 0, 100, 1, &r, &err) == TG_ERR_IO);
    CHECKF(strstr(err.msg, "missing.txt: cannot open: No such file") != NULL, "%s", err.msg);
    /* malformed JSONL, with the line number */
    write_str(tpath("bad.jsonl"), "{\"text\": \"ok\"}\n{\"text\": \"unterminated}\n");
    const char *in_bad[] = {tpath("bad.jsonl")};
    CHECK(run_prepare(tpath("bad2"), in_bad, 1, TG_INPUT_AUTO, 0, 100, 1, &r, &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad.jsonl:2: malformed JSON line") != NULL, "%s", err.msg);
    write_str(tpath("bad3.jsonl"), "{\"text\": \"ok\"}\n\n[1, 2]\n");
    const char *in_bad3[] = {tpath("bad3.jsonl")};
    CHECK(run_prepare(tpath("bad3"), in_bad3, 1, TG_INPUT_AUTO, 0, 100, 1, &r, &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad3.jsonl:3: malformed JSON line (expected '{'") != NULL, "%s", err.msg);
    write_str(tpath("bad4.jsonl"), "{\"body\": \"no text\"}\n");
    const char *in_bad4[] = {tpath("bad4.jsonl")};
    CHECK(run_prepare(tpath("bad4"), in_bad4, 1, TG_INPUT_AUTO, 0, 100, 1, &r, &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad4.jsonl:1: no \"text\" field") != NULL, "%s", err.msg);
    write_str(tpath("bad5.jsonl"), "{\"text\": 12}\n");
    const char *in_bad5[] = {tpath("bad5.jsonl")};
    CHECK(run_prepare(tpath("bad5"), in_bad5, 1, TG_INPUT_AUTO, 0, 100, 1, &r, &err) == TG_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad5.jsonl:1: \"text\" is not a string") != NULL, "%s", err.msg);
    /* empty input: warned, other inputs still prepared */
    write_str(tpath("empty.txt"), "");
    const char *in_empty[] = {tpath("empty.txt"), tpath("doc.txt")};
    const tg_log lg = {0, 1, 1};
    tg_prepare_options o;
    tg_prepare_options_default(&o);
    o.tokenizer_path = tpath("tok.tiktoken");
    o.out_dir = tpath("bad6");
    o.inputs = in_empty;
    o.n_inputs = 2;
    o.val_fraction = 0;
    stderr_begin();
    tg_status st = tg_prepare_run(&o, &lg, NULL, NULL, &r, &err);
    char *msg = stderr_end();
    CHECK(st == TG_OK && r.train_docs == 1);
    CHECKF(msg && strstr(msg, "empty.txt: empty input"), "%s", msg);
    free(msg);
    /* only empty input: an error */
    o.inputs = in_empty;
    o.n_inputs = 1;
    stderr_begin();
    st = tg_prepare_run(&o, &lg, NULL, NULL, &r, &err);
    free(stderr_end());
    CHECK(st == TG_ERR_DATA && strstr(err.msg, "no documents"));
    /* non-UTF-8: warned with the offset, and the bytes survive exactly */
    const char latin1[] = "caf\xe9 cr\xe8me and \xff\xfe bytes\n";
    write_file(tpath("latin1.txt"), latin1, sizeof latin1 - 1);
    const char *in_l1[] = {tpath("latin1.txt")};
    o.inputs = in_l1;
    o.n_inputs = 1;
    o.out_dir = tpath("bad7");
    stderr_begin();
    st = tg_prepare_run(&o, &lg, NULL, NULL, &r, &err);
    msg = stderr_end();
    CHECK(st == TG_OK);
    CHECKF(msg && strstr(msg, "latin1.txt: 1 document(s) not valid UTF-8 (first bad byte at offset 3)"), "%s", msg);
    free(msg);
    size_t n = 0;
    uint32_t *ids = read_split(tpath("bad7"), "train", 1, &n);
    tg_tokenizer *t = NULL;
    CHECK_OK(tg_tokenizer_load(&t, tpath("tok.tiktoken"), &err), &err);
    uint8_t *dec = NULL;
    size_t dn = 0;
    if (t && n > 0) {
        CHECK_OK(tg_tokenizer_decode(t, ids + 1, n - 1, &dec, &dn, &err), &err);
        CHECK(dn == sizeof latin1 - 1 && memcmp(dec, latin1, dn) == 0);
    }
    free(dec);
    free(ids);
    tg_tokenizer_free(t);
    /* bad options */
    o.val_fraction = 1.5;
    CHECK(tg_prepare_run(&o, &lg, NULL, NULL, &r, &err) == TG_ERR_ARG && strstr(err.msg, "--val-fraction"));
}

int main(void) {
    tmpdir_make();
    test_prepare_content();
    test_h5dump();
    test_bad_inputs();
    tmpdir_remove();
    TEST_MAIN_END();
}
