/* train/tb.c — TensorBoard events writer (contract in tb.h). Record framing (TFRecord):
 * uint64 length, uint32 masked CRC-32C of the length, data, uint32 masked CRC-32C of the data,
 * all little-endian. */
#include "train/tb.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/crc32c.h"
#include "core/fsio.h"
#include "tensorboard.pb-c.h"
#include "train/config.h"

struct tg_tb {
    FILE *f;
    char path[TG_PATH_MAX + 96];
    int failed; /* a write failed (reported once) */
};

static uint32_t masked_crc(const void *p, size_t n) {
    uint32_t c = tg_crc32c(0, p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static void put_le(uint8_t *b, uint64_t v, int n) {
    for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
}

static int write_record(FILE *f, const uint8_t *data, size_t n) {
    uint8_t head[12], tail[4];
    put_le(head, n, 8);
    put_le(head + 8, masked_crc(head, 8), 4);
    put_le(tail, masked_crc(data, n), 4);
    return fwrite(head, 1, 12, f) == 12 && fwrite(data, 1, n, f) == n && fwrite(tail, 1, 4, f) == 4 ? 0 : -1;
}

static double wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static int write_event(FILE *f, const Tensorboard__Event *ev) {
    size_t n = tensorboard__event__get_packed_size(ev);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return -1;
    tensorboard__event__pack(ev, buf);
    int rc = write_record(f, buf, n);
    free(buf);
    return rc;
}

static int is_events_file(const char *name) { return strstr(name, "tfevents") != NULL && name[0] != '.'; }

/* Copies the summary events of steps <= last_step from an old events file into out (file_version
 * records are dropped: out has its own). A torn last record (killed run) ends the copy. */
static tg_status copy_events(const char *path, FILE *out, int64_t last_step, tg_error *err) {
    tg_status st = TG_OK;
    uint8_t *data = NULL;
    FILE *in = fopen(path, "rb");
    if (!in) return tg_error_set(err, TG_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    for (;;) {
        uint8_t head[12], tail[4];
        if (fread(head, 1, 12, in) != 12) break;
        uint64_t n = 0;
        for (int i = 0; i < 8; i++) n |= (uint64_t)head[i] << (8 * i);
        uint32_t hc = (uint32_t)head[8] | (uint32_t)head[9] << 8 | (uint32_t)head[10] << 16 | (uint32_t)head[11] << 24;
        if (hc != masked_crc(head, 8) || n > (1u << 30)) break;
        uint8_t *d = realloc(data, n ? n : 1);
        TG_CHECK_ALLOC(err, d);
        data = d;
        if (fread(data, 1, n, in) != n || fread(tail, 1, 4, in) != 4) break;
        uint32_t dc = (uint32_t)tail[0] | (uint32_t)tail[1] << 8 | (uint32_t)tail[2] << 16 | (uint32_t)tail[3] << 24;
        if (dc != masked_crc(data, n)) break;
        Tensorboard__Event *ev = tensorboard__event__unpack(NULL, n, data);
        if (!ev) break;
        int keep = ev->what_case == TENSORBOARD__EVENT__WHAT_SUMMARY && ev->step <= last_step;
        tensorboard__event__free_unpacked(ev, NULL);
        if (keep && write_record(out, data, n) != 0)
            TG_FAIL(err, TG_ERR_IO, "cannot write TensorBoard events: %s", strerror(errno));
    }
cleanup:
    free(data);
    fclose(in);
    return st;
}

tg_status tg_tb_open(tg_tb **out, const char *out_dir, int64_t resumed_step, tg_error *err) {
    tg_status st = TG_OK;
    char dir[TG_PATH_MAX + 8], tmp[TG_PATH_MAX + 32], old[TG_PATH_MAX + 300];
    DIR *d = NULL;
    tg_tb *tb = NULL;
    *out = NULL;
    snprintf(dir, sizeof dir, "%s/tb", out_dir);
    TG_TRY(tg_fs_mkdir_p(dir, err));
    tb = calloc(1, sizeof *tb);
    TG_CHECK_ALLOC(err, tb);
    double now = wall_time();
    snprintf(tmp, sizeof tmp, "%s/.events.tmp", dir);
    snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%lld.truthgpt.%ld", dir, (long long)now,
             (long)getpid());
    tb->f = fopen(tmp, "wb");
    if (!tb->f) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = now;
    ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
    ev.file_version = "brain.Event:2";
    if (write_event(tb->f, &ev) != 0) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    /* Older events files: copied (up to the resumed step) into the new one, then removed. */
    d = opendir(dir);
    if (!d) TG_FAIL(err, TG_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        if (!is_events_file(e->d_name)) continue;
        snprintf(old, sizeof old, "%s/%s", dir, e->d_name);
        if (resumed_step > 0) TG_TRY(copy_events(old, tb->f, resumed_step, err));
        if (unlink(old) != 0) TG_FAIL(err, TG_ERR_IO, "cannot remove %s: %s", old, strerror(errno));
    }
    if (fflush(tb->f) != 0) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, tb->path) != 0) TG_FAIL(err, TG_ERR_IO, "cannot rename %s: %s", tmp, strerror(errno));
    *out = tb;
    tb = NULL;
cleanup:
    if (d) closedir(d);
    tg_tb_free(tb);
    return st;
}

void tg_tb_free(tg_tb *tb) {
    if (!tb) return;
    if (tb->f) fclose(tb->f);
    free(tb);
}

static void emit(tg_tb *tb, int64_t step, Tensorboard__Summary__Value *v) {
    Tensorboard__Summary__Value *vals[1] = {v};
    Tensorboard__Summary sum = TENSORBOARD__SUMMARY__INIT;
    sum.n_value = 1;
    sum.value = vals;
    Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
    ev.wall_time = wall_time();
    ev.step = step;
    ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
    ev.summary = &sum;
    if ((write_event(tb->f, &ev) != 0 || fflush(tb->f) != 0) && !tb->failed) {
        tb->failed = 1;
        fprintf(stderr, "warning: cannot write %s: %s (TensorBoard events stop here)\n", tb->path, strerror(errno));
    }
}

void tg_tb_scalar(tg_tb *tb, int64_t step, const char *tag, double value) {
    if (!tb || tb->failed) return;
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
    v.simple_value = (float)value;
    emit(tb, step, &v);
}

void tg_tb_text(tg_tb *tb, int64_t step, const char *tag, const char *text, size_t n) {
    if (!tb || tb->failed) return;
    Tensorboard__SummaryMetadata__PluginData pd = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
    pd.plugin_name = "text";
    Tensorboard__SummaryMetadata md = TENSORBOARD__SUMMARY_METADATA__INIT;
    md.plugin_data = &pd;
    Tensorboard__TensorShapeProto__Dim dim = TENSORBOARD__TENSOR_SHAPE_PROTO__DIM__INIT;
    dim.size = 1;
    Tensorboard__TensorShapeProto__Dim *dims[1] = {&dim};
    Tensorboard__TensorShapeProto shape = TENSORBOARD__TENSOR_SHAPE_PROTO__INIT;
    shape.n_dim = 1;
    shape.dim = dims;
    ProtobufCBinaryData s = {.len = n, .data = (uint8_t *)text};
    Tensorboard__TensorProto t = TENSORBOARD__TENSOR_PROTO__INIT;
    t.dtype = 7; /* DT_STRING */
    t.tensor_shape = &shape;
    t.n_string_val = 1;
    t.string_val = &s;
    Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
    v.tag = (char *)tag;
    v.metadata = &md;
    v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_TENSOR;
    v.tensor = &t;
    emit(tb, step, &v);
}
