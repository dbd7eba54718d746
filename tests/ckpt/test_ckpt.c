/* tests/ckpt/test_ckpt.c — checkpoint format, writer, crash safety, corruption detection.
 * Every case works in its own folder under argv[1] or $TG_TEST_TMP (default /tmp). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ckpt/writer.h"
#include "core/crc32c.h"
#include "core/rng.h"
#include "data/h5util.h"
#include "tg_test.h"

static char g_root[1024];
static tg_log g_lg = {0, 1, 0}; /* quiet: warnings still print */

static void mkdir_clean(const char *dir) {
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot prepare %s\n", dir);
}

static void case_dir(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", g_root, name);
    mkdir_clean(out);
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void read_text(const char *p, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *f = fopen(p, "r");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* A model state of shape c filled from seed; free with tg_ckpt_state_free. */
static void state_fake_shape(tg_ckpt_state *s, tg_gpt2_config c, uint64_t seed, int64_t step,
                             int with_adam, int with_master) {
    memset(s, 0, sizeof *s);
    tg_error err;
    if (tg_gpt2_config_finalize(&c, &err) != TG_OK) abort();
    s->model_cfg = c;
    size_t n = tg_ckpt_n_params(&c);
    tg_rng r;
    tg_rng_init(&r, seed);
    float **arrs[4] = {&s->params, &s->adam_m, &s->adam_v, &s->master};
    int want[4] = {1, with_adam, with_adam, with_master};
    for (int k = 0; k < 4; k++) {
        if (!want[k]) continue;
        *arrs[k] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++) (*arrs[k])[i] = tg_rng_normal(&r);
    }
    s->step = step;
    s->tokens_seen = step * 4096;
    s->rng_state = 0xFEDCBA9876543210ull ^ seed; /* > INT64_MAX: must survive as uint64 */
    s->world_size = 2;
    s->zero_stage = 1;
    s->n_loader_states = 2;
    s->loader_states = malloc(2 * sizeof *s->loader_states);
    for (int i = 0; i < 2; i++) {
        s->loader_states[i].seed = 1234;
        s->loader_states[i].position = (uint64_t)step * 8 + (uint64_t)i;
    }
    s->config_ini = strdup("[model]\nn_layer = 2\n[train]\nmax_steps = 10\n");
    s->tokenizer_hash = strdup("abc123");
    s->tokenizer_path = strdup("/data/tok.tiktoken");
}

/* A tiny model state (one chunk per dataset) filled from seed. */
static void state_fake(tg_ckpt_state *s, uint64_t seed, int64_t step, int with_adam,
                       int with_master) {
    tg_gpt2_config c = {.max_seq_len = 16, .vocab_size = 100, .n_layer = 2, .n_head = 2,
                        .n_embd = 16};
    state_fake_shape(s, c, seed, step, with_adam, with_master);
}

static int arrays_equal(const float *a, const float *b, size_t n) {
    if (!a || !b) return a == b;
    return memcmp(a, b, n * sizeof(float)) == 0;
}

static int states_equal(const tg_ckpt_state *a, const tg_ckpt_state *b) {
    size_t n = tg_ckpt_n_params(&a->model_cfg);
    return a->step == b->step && a->tokens_seen == b->tokens_seen &&
           a->rng_state == b->rng_state && a->world_size == b->world_size &&
           a->zero_stage == b->zero_stage &&
           memcmp(&a->model_cfg, &b->model_cfg, sizeof a->model_cfg) == 0 &&
           a->n_loader_states == b->n_loader_states &&
           memcmp(a->loader_states, b->loader_states,
                  (size_t)a->n_loader_states * sizeof *a->loader_states) == 0 &&
           strcmp(a->config_ini, b->config_ini) == 0 &&
           strcmp(a->tokenizer_hash, b->tokenizer_hash) == 0 &&
           strcmp(a->tokenizer_path, b->tokenizer_path) == 0 &&
           arrays_equal(a->params, b->params, n) && arrays_equal(a->adam_m, b->adam_m, n) &&
           arrays_equal(a->adam_v, b->adam_v, n) && arrays_equal(a->master, b->master, n);
}

/* Synchronous save through the writer (save + wait), as the trainer's final save does. */
static tg_status save_sync(tg_ckpt_writer *w, const tg_ckpt_state *s, tg_error *err) {
    double stall = -1;
    tg_status st = tg_ckpt_writer_save(w, s, &stall, err);
    if (st != TG_OK) return st;
    CHECK(stall >= 0);
    return tg_ckpt_writer_wait(w, err);
}

static void test_round_trip(void) {
    char dir[1200], path[1400], latest[1400], buf[256];
    tg_error err;
    case_dir(dir, sizeof dir, "roundtrip");
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 0, &g_lg, &err), &err);
    if (!w) return;
    /* with optimizer and master weights */
    tg_ckpt_state a, b;
    state_fake(&a, 1, 7, 1, 1);
    CHECK_OK(tg_ckpt_writer_reserve(w, &a.model_cfg, 1, 1, &err), &err);
    CHECK_OK(save_sync(w, &a, &err), &err);
    CHECK_OK(tg_ckpt_path(dir, 7, path, sizeof path, &err), &err);
    CHECK(strstr(path, "step_00000007.h5") != NULL);
    CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
    CHECK(states_equal(&a, &b));
    tg_ckpt_state_free(&b);
    snprintf(latest, sizeof latest, "%s/latest", dir);
    read_text(latest, buf, sizeof buf);
    CHECKF(strcmp(buf, "step_00000007.h5\n") == 0, "latest = '%s'", buf);
    tg_ckpt_state_free(&a);

    /* without optimizer state (step 0) and without master: NULLs survive as NULLs */
    state_fake(&a, 2, 8, 0, 0);
    CHECK_OK(save_sync(w, &a, &err), &err);
    CHECK_OK(tg_ckpt_path(dir, 8, path, sizeof path, &err), &err);
    CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
    CHECK(b.adam_m == NULL && b.adam_v == NULL && b.master == NULL);
    CHECK(states_equal(&a, &b));
    tg_ckpt_state_free(&b);
    read_text(latest, buf, sizeof buf);
    CHECKF(strcmp(buf, "step_00000008.h5\n") == 0, "latest = '%s'", buf);

    /* async: the caller's arrays may change right after save returns */
    tg_ckpt_state c;
    state_fake(&c, 3, 9, 1, 0);
    tg_ckpt_state copy;
    state_fake(&copy, 3, 9, 1, 0);
    double stall = -1;
    CHECK_OK(tg_ckpt_writer_save(w, &c, &stall, &err), &err);
    size_t n = tg_ckpt_n_params(&c.model_cfg);
    for (size_t i = 0; i < n; i++) c.params[i] = -1.0f;
    c.config_ini[0] = 'X';
    CHECK_OK(tg_ckpt_writer_wait(w, &err), &err);
    CHECK_OK(tg_ckpt_path(dir, 9, path, sizeof path, &err), &err);
    CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
    CHECK(states_equal(&copy, &b));
    tg_ckpt_state_free(&b);

    /* info: every dataset listed and ok, the header read (`ckpt info` prints it: tests/ckpt/cli.sh) */
    tg_ckpt_info info;
    CHECK_OK(tg_ckpt_info_read(path, &info, &err), &err);
    CHECK(info.n_bad == 0 && info.header_read && info.meta_ok);
    CHECK(info.state.step == 9 && info.state.params == NULL);
    CHECK(strstr(info.state.config_ini, "max_steps = 10") != NULL);
    int seen_fc = 0, seen_lnf = 0, all_ok = 1;
    for (int i = 0; i < info.n_datasets; i++) {
        seen_fc += strcmp(info.datasets[i].label, "/params/transformer.h.1.mlp.c_fc.weight") == 0;
        seen_lnf += strcmp(info.datasets[i].label, "/adam_v/transformer.ln_f.bias") == 0;
        all_ok &= info.datasets[i].crc_ok;
    }
    CHECK(seen_fc == 1 && seen_lnf == 1 && all_ok);
    CHECK(strcmp(info.datasets[0].label, "/config_ini") == 0);
    tg_ckpt_info_free(&info);
    char text[65536];

    /* equal states give byte-identical files (no timestamps): written twice, compared */
    char p2[1400];
    snprintf(p2, sizeof p2, "%s/again.h5", dir);
    CHECK_OK(tg_ckpt_write_file(p2, &copy, &err), &err);
    snprintf(text, sizeof text, "cmp -s '%s' '%s'", path, p2);
    CHECK(system(text) == 0);

    tg_ckpt_state_free(&a);
    tg_ckpt_state_free(&c);
    tg_ckpt_state_free(&copy);
    tg_ckpt_writer_free(w);
}

static void test_keep(void) {
    char dir[1200], path[1400];
    tg_error err;
    case_dir(dir, sizeof dir, "keep");
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 2, &g_lg, &err), &err);
    if (!w) return;
    for (int step = 1; step <= 5; step++) {
        tg_ckpt_state a;
        state_fake(&a, (uint64_t)step, step * 10, 1, 0);
        /* each written: back-to-back saves may replace a queued one (test_save_while_writing) */
        CHECK_OK(save_sync(w, &a, &err), &err);
        tg_ckpt_state_free(&a);
    }
    CHECK_OK(tg_ckpt_writer_wait(w, &err), &err);
    for (int step = 1; step <= 5; step++) {
        CHECK_OK(tg_ckpt_path(dir, step * 10, path, sizeof path, &err), &err);
        CHECKF(file_exists(path) == (step >= 4), "step %d exists=%d", step, file_exists(path));
    }
    int found = 0;
    CHECK_OK(tg_ckpt_find_latest(dir, &g_lg, path, sizeof path, &found, &err), &err);
    CHECK(found && strstr(path, "step_00000050.h5"));
    /* saving an earlier step (a run restarted from an older checkpoint) never deletes the later
     * files of the other run, and the new one is kept */
    tg_ckpt_state a;
    state_fake(&a, 9, 5, 1, 0);
    CHECK_OK(save_sync(w, &a, &err), &err);
    tg_ckpt_state_free(&a);
    int64_t want[3] = {5, 40, 50};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tg_ckpt_path(dir, want[i], path, sizeof path, &err), &err);
        CHECKF(file_exists(path), "step %d missing", (int)want[i]);
    }
    tg_ckpt_writer_free(w);
}

static void flip_byte(const char *path, long off) {
    int fd = open(path, O_RDWR);
    unsigned char c = 0;
    if (fd < 0 || pread(fd, &c, 1, off) != 1) abort();
    c ^= 0x10;
    if (pwrite(fd, &c, 1, off) != 1) abort();
    close(fd);
}

/* File offset of a dataset's first byte: contiguous -> H5Dget_offset, chunked -> first chunk. */
static long dataset_offset(const char *path, const char *name, int chunked) {
    long off = -1;
    tg_h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (!chunked) {
        haddr_t a = H5Dget_offset(d);
        if (a != HADDR_UNDEF) off = (long)a;
    } else {
        hsize_t coord[2] = {0, 0}, size = 0;
        haddr_t addr = 0;
        unsigned mask = 0;
        hid_t sp = H5Dget_space(d);
        if (H5Dget_chunk_info(d, sp, 0, coord, &mask, &addr, &size) >= 0)
            off = (long)(addr + size / 2);
        H5Sclose(sp);
    }
    H5Dclose(d);
    H5Fclose(f);
    tg_h5_unlock();
    return off;
}

/* Writes steps 1 and 2 into dir and returns the path of step 2 in newest. */
static void two_checkpoints(const char *dir, char *newest, size_t cap) {
    tg_error err;
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 0, &g_lg, &err), &err);
    if (!w) return;
    for (int step = 1; step <= 2; step++) {
        tg_ckpt_state a;
        state_fake(&a, (uint64_t)step, step, 1, 0);
        CHECK_OK(save_sync(w, &a, &err), &err);
        tg_ckpt_state_free(&a);
    }
    tg_ckpt_writer_free(w);
    CHECK_OK(tg_ckpt_path(dir, 2, newest, cap, &err), &err);
}

/* The newest checkpoint is damaged: load fails naming the problem, find_latest falls back. */
static void expect_fallback(const char *dir, const char *newest, const char *what) {
    tg_error err;
    tg_ckpt_state b;
    tg_status st = tg_ckpt_load(newest, &b, &err);
    CHECKF(st != TG_OK, "%s: load of a damaged file succeeded", what);
    if (st != TG_OK) fprintf(stderr, "(expected) %s: %s\n", what, err.msg);
    CHECK(tg_ckpt_verify(newest, &err) != TG_OK);
    char path[1400];
    int found = 0;
    CHECK_OK(tg_ckpt_find_latest(dir, &g_lg, path, sizeof path, &found, &err), &err);
    CHECKF(found && strstr(path, "step_00000001.h5"), "%s: fallback found=%d %s", what, found,
           found ? path : "");
    if (found) {
        CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
        CHECK(b.step == 1);
        tg_ckpt_state_free(&b);
    }
    found = 0;
    CHECK_OK(tg_ckpt_load_latest(dir, &g_lg, &b, path, sizeof path, &found, &err), &err);
    CHECKF(found && b.step == 1 && b.params && strstr(path, "step_00000001.h5"),
           "%s: load_latest found=%d step=%d", what, found, (int)b.step);
    tg_ckpt_state_free(&b);
}

static void test_corruption(void) {
    char dir[1200], newest[1400];
    /* a flipped byte in an uncompressed dataset: caught by its crc32c */
    case_dir(dir, sizeof dir, "flip_plain");
    two_checkpoints(dir, newest, sizeof newest);
    long off = dataset_offset(newest, "loader_states", 0);
    CHECK(off > 0);
    if (off > 0) {
        flip_byte(newest, off + 3);
        expect_fallback(dir, newest, "flipped loader_states byte");
        tg_error err;
        tg_ckpt_state b;
        CHECK(tg_ckpt_load(newest, &b, &err) == TG_ERR_FORMAT && strstr(err.msg, "checksum"));
    }
    /* a flipped byte inside a compressed tensor */
    case_dir(dir, sizeof dir, "flip_tensor");
    two_checkpoints(dir, newest, sizeof newest);
    off = dataset_offset(newest, "adam_m/transformer.wte.weight", 1);
    CHECK(off > 0);
    if (off > 0) {
        flip_byte(newest, off);
        expect_fallback(dir, newest, "flipped tensor byte");
        tg_error err;
        tg_ckpt_info info;
        CHECK_OK(tg_ckpt_info_read(newest, &info, &err), &err);
        CHECK(info.n_bad == 1);
        int bad_at = -1;
        for (int i = 0; i < info.n_datasets; i++)
            if (!info.datasets[i].crc_ok) bad_at = i;
        CHECK(bad_at >= 0 && strcmp(info.datasets[bad_at].label, "/adam_m/transformer.wte.weight") == 0);
        tg_ckpt_info_free(&info);
    }
    /* a truncated file */
    case_dir(dir, sizeof dir, "truncated");
    two_checkpoints(dir, newest, sizeof newest);
    struct stat sb;
    CHECK(stat(newest, &sb) == 0);
    CHECK(truncate(newest, sb.st_size / 2) == 0);
    expect_fallback(dir, newest, "truncated file");
    /* only damaged checkpoints: nothing found, no error */
    char other[1400];
    tg_error err;
    CHECK_OK(tg_ckpt_path(dir, 1, other, sizeof other, &err), &err);
    CHECK(truncate(other, 100) == 0);
    int found = 1;
    char path[1400];
    CHECK_OK(tg_ckpt_find_latest(dir, &g_lg, path, sizeof path, &found, &err), &err);
    CHECK(found == 0);
    /* a missing directory: nothing found, no error */
    snprintf(other, sizeof other, "%s/does/not/exist", g_root);
    found = 1;
    CHECK_OK(tg_ckpt_find_latest(other, &g_lg, path, sizeof path, &found, &err), &err);
    CHECK(found == 0);
    /* a file that is not a checkpoint */
    snprintf(other, sizeof other, "%s/step_00000099.h5", dir);
    FILE *f = fopen(other, "w");
    fputs("hello", f);
    fclose(f);
    tg_ckpt_state b;
    CHECK(tg_ckpt_load(other, &b, &err) != TG_OK);
    /* every error path above closed what it opened (LSan cannot see HDF5 handles: H5close frees them) */
    tg_h5_lock();
    ssize_t open_objs = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    tg_h5_unlock();
    CHECKF(open_objs == 0, "%ld HDF5 objects left open after the corrupt checkpoints", (long)open_objs);
}

/* The start of the crash cases: case folder `name` (path in dir) holding a complete checkpoint of
 * step 1; p1 and p2 get the paths of step 1 and of step 2, the save the case then breaks.
 * Returns 0 when no writer could be made (already a failed check). */
static int one_checkpoint(char *dir, size_t dir_cap, const char *name, char *p1, char *p2,
                          size_t path_cap) {
    tg_error err;
    case_dir(dir, dir_cap, name);
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 1, &g_lg, &err), &err);
    if (!w) return 0;
    tg_ckpt_state a;
    state_fake(&a, 1, 1, 1, 0);
    CHECK_OK(save_sync(w, &a, &err), &err);
    tg_ckpt_state_free(&a);
    tg_ckpt_writer_free(w);
    CHECK_OK(tg_ckpt_path(dir, 1, p1, path_cap, &err), &err);
    CHECK_OK(tg_ckpt_path(dir, 2, p2, path_cap, &err), &err);
    return 1;
}

/* A save of step `failed` went wrong: no file of it is left, complete or temporary, and `latest`
 * in dir still names step `kept`. */
static void expect_failed_save(const char *dir, int64_t failed, int64_t kept) {
    char path[1400], tmp[1500], latest[1400], buf[256], want[64];
    tg_error err;
    CHECK_OK(tg_ckpt_path(dir, failed, path, sizeof path, &err), &err);
    CHECK(!file_exists(path));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));
    snprintf(latest, sizeof latest, "%s/latest", dir);
    read_text(latest, buf, sizeof buf);
    snprintf(want, sizeof want, "step_%08" PRId64 ".h5\n", kept);
    CHECKF(strcmp(buf, want) == 0, "latest = '%s', want '%s'", buf, want);
}

/* kill -9 while the background thread is in the middle of writing step 2. */
static void test_kill_mid_write(void) {
    char dir[1200], p1[1400], p2[1400], tmp[1500], latest[1400], buf[256];
    tg_error err;
    if (!one_checkpoint(dir, sizeof dir, "kill9", p1, p2, sizeof p1)) return;
    snprintf(tmp, sizeof tmp, "%s.tmp", p2);

    pid_t pid = fork();
    if (pid == 0) {
        setenv("TRUTHGPT_CKPT_SLOW_MS", "200", 1); /* ~80 datasets: the write takes ~16 s */
        tg_ckpt_writer *cw = NULL;
        tg_ckpt_state s;
        state_fake(&s, 2, 2, 1, 0);
        if (tg_ckpt_writer_init(&cw, dir, 1, NULL, &err) != TG_OK) _exit(3);
        double stall;
        if (tg_ckpt_writer_save(cw, &s, &stall, &err) != TG_OK) _exit(4);
        tg_ckpt_writer_wait(cw, &err);
        _exit(5); /* not reached: killed first */
    }
    /* wait until the temporary file exists and has grown, then kill */
    struct stat sb;
    int seen = 0;
    for (int i = 0; i < 1000 && !seen; i++) {
        if (stat(tmp, &sb) == 0 && sb.st_size > 4096) seen = 1;
        else usleep(10000);
    }
    CHECK(seen);
    usleep(300000);
    kill(pid, SIGKILL);
    int wst = 0;
    waitpid(pid, &wst, 0);
    CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    CHECK(!file_exists(p2));
    CHECK(file_exists(tmp)); /* the kill did land mid-write */
    snprintf(latest, sizeof latest, "%s/latest", dir);
    read_text(latest, buf, sizeof buf);
    CHECKF(strcmp(buf, "step_00000001.h5\n") == 0, "latest = '%s'", buf);
    tg_ckpt_state b;
    CHECK_OK(tg_ckpt_load(p1, &b, &err), &err);
    CHECK(b.step == 1);
    tg_ckpt_state_free(&b);
    int found = 0;
    char path[1400];
    CHECK_OK(tg_ckpt_find_latest(dir, &g_lg, path, sizeof path, &found, &err), &err);
    CHECK(found && strcmp(path, p1) == 0);
    /* the next run's writer removes the leftover and carries on */
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 1, &g_lg, &err), &err);
    CHECK(!file_exists(tmp));
    tg_ckpt_state a;
    state_fake(&a, 3, 3, 1, 0);
    CHECK_OK(save_sync(w, &a, &err), &err);
    tg_ckpt_state_free(&a);
    tg_ckpt_writer_free(w);
    CHECK(!file_exists(p1)); /* keep=1 */
    read_text(latest, buf, sizeof buf);
    CHECKF(strcmp(buf, "step_00000003.h5\n") == 0, "latest = '%s'", buf);
}

/* A full disk, simulated with RLIMIT_FSIZE in a child (writes then fail with EFBIG): a clear
 * error, no partial file, the older checkpoint and `latest` intact. */
static void test_disk_full(void) {
    char dir[1200], p1[1400], p2[1400], msg_path[1400];
    tg_error err;
    if (!one_checkpoint(dir, sizeof dir, "diskfull", p1, p2, sizeof p1)) return;
    struct stat sb;
    CHECK(stat(p1, &sb) == 0);
    snprintf(msg_path, sizeof msg_path, "%s/../diskfull.msg", dir);

    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {(rlim_t)sb.st_size / 3, (rlim_t)sb.st_size / 3};
        FILE *mf = fopen(msg_path, "w"); /* opened before the limit matters */
        if (!mf || setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        tg_ckpt_writer *cw = NULL;
        tg_ckpt_state s;
        state_fake(&s, 2, 2, 1, 0);
        if (tg_ckpt_writer_init(&cw, dir, 1, NULL, &err) != TG_OK) _exit(4);
        double stall;
        tg_status st = tg_ckpt_writer_save(cw, &s, &stall, &err);
        if (st == TG_OK) st = tg_ckpt_writer_wait(cw, &err);
        fprintf(mf, "%s", err.msg);
        fclose(mf);
        _exit(st == TG_OK ? 5 : 0);
    }
    int wst = 0;
    waitpid(pid, &wst, 0);
    CHECKF(WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "child status %d", wst);
    char msg[4096];
    read_text(msg_path, msg, sizeof msg);
    fprintf(stderr, "(expected) disk full: %s\n", msg);
    CHECKF(strstr(msg, "File too large") || strstr(msg, "No space left"), "message: %s", msg);
    CHECK(strstr(msg, "step_00000002.h5") != NULL);
    expect_failed_save(dir, 2, 1);
    tg_ckpt_state b;
    CHECK_OK(tg_ckpt_load(p1, &b, &err), &err);
    tg_ckpt_state_free(&b);
}

/* A really full disk where this process may mount a small tmpfs (root in a container that
 * allows it); skipped elsewhere. Saves until the disk is full: ENOSPC is a clear error, the
 * complete checkpoints and `latest` survive, and no partial file is left. */
static void test_disk_full_tmpfs(void) {
    char dir[1200], cmd[2600], path[1400];
    tg_error err;
    case_dir(dir, sizeof dir, "tmpfs");
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=900k tmpfs '%s' 2>/dev/null", dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "note: cannot mount a tmpfs here; the tmpfs disk-full case is skipped\n");
        return;
    }
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 0, &g_lg, &err), &err);
    int last_ok = 0;
    tg_status st = TG_OK;
    for (int step = 1; step <= 10 && w && st == TG_OK; step++) {
        tg_ckpt_state a;
        state_fake(&a, (uint64_t)step, step, 1, 0);
        st = save_sync(w, &a, &err);
        tg_ckpt_state_free(&a);
        if (st == TG_OK) last_ok = step;
    }
    tg_ckpt_writer_free(w);
    CHECK(st != TG_OK);
    CHECK(last_ok >= 1);
    fprintf(stderr, "(expected) tmpfs full after %d checkpoints: %.300s\n", last_ok, err.msg);
    CHECKF(strstr(err.msg, "disk full") && strstr(err.msg, "No space left"), "message: %s", err.msg);
    for (int step = 1; step <= last_ok; step++) {
        CHECK_OK(tg_ckpt_path(dir, step, path, sizeof path, &err), &err);
        CHECK_OK(tg_ckpt_verify(path, &err), &err);
    }
    expect_failed_save(dir, last_ok + 1, last_ok);
    snprintf(cmd, sizeof cmd, "umount '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_crc32c(void) {
    /* the standard check value of CRC-32C */
    CHECK(tg_crc32c(0, "123456789", 9) == 0xE3069283u);
    /* continuing equals one pass */
    uint32_t c = tg_crc32c(0, "12345", 5);
    CHECK(tg_crc32c(c, "6789", 4) == 0xE3069283u);
}

/* A shape whose datasets span several 1 MiB chunks (wte: 3000 x 256 = 3 chunks, the last one
 * partial), more chunks in all than the writer's ring has slots: written streamed, it loads
 * bitwise, verifies, and writing it again gives the same bytes. */
static void test_streamed_chunks(void) {
    char dir[1200], p1[1400], p2[1400], cmd[3000];
    tg_error err;
    case_dir(dir, sizeof dir, "streamed");
    tg_gpt2_config c = {.max_seq_len = 64, .vocab_size = 3000, .n_layer = 2, .n_head = 4,
                        .n_embd = 256};
    tg_ckpt_state a, b;
    state_fake_shape(&a, c, 77, 5, 1, 1);
    snprintf(p1, sizeof p1, "%s/one.h5", dir);
    snprintf(p2, sizeof p2, "%s/two.h5", dir);
    CHECK_OK(tg_ckpt_write_file(p1, &a, &err), &err);
    CHECK_OK(tg_ckpt_verify(p1, &err), &err);
    CHECK_OK(tg_ckpt_load(p1, &b, &err), &err);
    CHECK(states_equal(&a, &b));
    CHECK_OK(tg_ckpt_write_file(p2, &a, &err), &err);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", p1, p2);
    CHECK(system(cmd) == 0);
    /* the reservation is given back: the file is no larger than its HDF5 end of file */
    struct stat sb;
    CHECK(stat(p1, &sb) == 0);
    CHECK(sb.st_size < (off_t)(4 * tg_ckpt_n_params(&a.model_cfg) * sizeof(float)));
    tg_ckpt_state_free(&a);
    tg_ckpt_state_free(&b);
}

/* A state with no tokenizer (NULL hash and path) is written with empty strings. */
static void test_null_tokenizer(void) {
    char dir[1200], path[1400];
    tg_error err;
    case_dir(dir, sizeof dir, "notok");
    tg_ckpt_state a, b;
    state_fake(&a, 5, 3, 0, 0);
    free(a.tokenizer_hash);
    free(a.tokenizer_path);
    a.tokenizer_hash = a.tokenizer_path = NULL;
    snprintf(path, sizeof path, "%s/x.h5", dir);
    CHECK_OK(tg_ckpt_write_file(path, &a, &err), &err);
    CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
    CHECK(b.tokenizer_hash && b.tokenizer_hash[0] == '\0');
    CHECK(b.tokenizer_path && b.tokenizer_path[0] == '\0');
    CHECK(arrays_equal(a.params, b.params, tg_ckpt_n_params(&a.model_cfg)));
    tg_ckpt_state_free(&a);
    tg_ckpt_state_free(&b);
}

/* Holds the write of one step on the writer's thread until released (tg_ckpt_writer_set_hook). */
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int64_t hold_step;
    int holding, released, timed_out;
    int64_t begun[16];
    int n_begun;
} hold_ctl;

static void hold_hook(void *arg, int64_t step) {
    hold_ctl *h = arg;
    pthread_mutex_lock(&h->mu);
    if (h->n_begun < 16) h->begun[h->n_begun++] = step;
    if (step == h->hold_step) {
        h->holding = 1;
        pthread_cond_broadcast(&h->cv);
        /* A bound for a broken writer only (a save that waits for this write would otherwise
         * hang the test): the test releases the hold as soon as its saves returned. */
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 60;
        while (!h->released && !h->timed_out)
            if (pthread_cond_timedwait(&h->cv, &h->mu, &dl) == ETIMEDOUT) h->timed_out = 1;
        h->holding = 0;
    }
    pthread_mutex_unlock(&h->mu);
}

/* Saves while a write is in progress return without waiting for it: the second goes to the
 * other snapshot; a third, while the second is still queued, replaces it (step 2 is never
 * written). Events, not timing: the write of step 1 is held by the hook until the saves are done. */
static void test_save_while_writing(void) {
    char dir[1200], path[1400], latest[1400], buf[256];
    tg_error err;
    case_dir(dir, sizeof dir, "overlap");
    tg_ckpt_writer *w = NULL;
    CHECK_OK(tg_ckpt_writer_init(&w, dir, 0, &g_lg, &err), &err);
    if (!w) return;
    hold_ctl h = {.hold_step = 1};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    tg_ckpt_writer_set_hook(w, hold_hook, &h);
    tg_ckpt_state s[4];
    for (int k = 1; k <= 3; k++) state_fake(&s[k], (uint64_t)(100 + k), k, 1, 0);
    double stall = -1;
    CHECK_OK(tg_ckpt_writer_save(w, &s[1], &stall, &err), &err);
    pthread_mutex_lock(&h.mu);
    while (!h.holding) pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);
    /* the write of step 1 has begun and is held: these saves must not wait for it */
    CHECK_OK(tg_ckpt_writer_save(w, &s[2], &stall, &err), &err);
    CHECK_OK(tg_ckpt_writer_save(w, &s[3], &stall, &err), &err);
    pthread_mutex_lock(&h.mu);
    int still_held = h.holding && !h.timed_out;
    h.released = 1;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    CHECKF(still_held, "a save waited for the write in progress (hook timed out: %d)", h.timed_out);
    CHECK_OK(tg_ckpt_writer_wait(w, &err), &err);
    tg_ckpt_writer_free(w);
    CHECKF(h.n_begun == 2 && h.begun[0] == 1 && h.begun[1] == 3, "writes begun: %d (%lld, %lld)",
           h.n_begun, (long long)h.begun[0], (long long)(h.n_begun > 1 ? h.begun[1] : -1));
    int64_t want[3] = {1, 2, 3};
    for (int i = 0; i < 3; i++) {
        CHECK_OK(tg_ckpt_path(dir, want[i], path, sizeof path, &err), &err);
        CHECKF(file_exists(path) == (want[i] != 2), "step %d exists=%d", (int)want[i], file_exists(path));
        if (want[i] == 2) continue;
        tg_ckpt_state b;
        CHECK_OK(tg_ckpt_load(path, &b, &err), &err);
        CHECK(states_equal(&s[want[i]], &b));
        tg_ckpt_state_free(&b);
    }
    snprintf(latest, sizeof latest, "%s/latest", dir);
    read_text(latest, buf, sizeof buf);
    CHECKF(strcmp(buf, "step_00000003.h5\n") == 0, "latest = '%s'", buf);
    for (int k = 1; k <= 3; k++) tg_ckpt_state_free(&s[k]);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : getenv("TG_TEST_TMP");
    snprintf(g_root, sizeof g_root, "%s/tg_ckpt_test_%d", base ? base : "/tmp", (int)getpid());
    mkdir_clean(g_root);
    test_crc32c();
    test_round_trip();
    test_keep();
    test_streamed_chunks();
    test_null_tokenizer();
    test_save_while_writing();
    test_corruption();
    test_kill_mid_write();
    test_disk_full();
    test_disk_full_tmpfs();
    if (tg_test_failed == 0) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_root);
    }
    TEST_MAIN_END();
}
