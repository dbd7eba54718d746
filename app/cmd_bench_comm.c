/* app/cmd_bench_comm.c — `truthgpt bench comm`: an nccl-tests-style table of all-reduce,
 * reduce-scatter and all-gather over a range of sizes, on whichever backend tg_comm runs
 * (MPI on host buffers; NCCL on device buffers with --device cuda). It uses tg_comm only,
 * the same interface the trainer uses, so what it measures is what training gets.
 *
 * Per size: an untimed correctness pass (rank-dependent values, exact expected results,
 * wrong elements counted over all ranks), then `warmup` untimed and `iters` timed runs on a
 * zeroed buffer (zeros stay zeros, so repeated in-place sums neither overflow nor slow down).
 * time = the slowest rank's mean; size = the whole in-place buffer (nccl-tests' convention);
 * algbw = size / time; busbw = algbw * 2(n-1)/n (all-reduce) or (n-1)/n (the other two). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "comm/comm.h"
#include "core/timer.h"

typedef enum { BENCH_ALL_REDUCE = 0, BENCH_REDUCE_SCATTER = 1, BENCH_ALL_GATHER = 2 } bench_coll;
static const char *const BENCH_COLL_NAMES[] = {"all_reduce", "reduce_scatter", "all_gather"};

typedef struct {
    size_t min_bytes, max_bytes;
    int iters, warmup, step;
    tg_comm_dtype dtype;
    int cuda;
} bench_comm_opts;

static void bench_comm_usage(FILE *f) {
    fprintf(f,
            "usage: truthgpt bench comm [options]   (launch with mpirun/srun for several ranks)\n"
            "  --min-bytes SIZE   smallest buffer (default 1K; suffixes K, M, G = 2^10, 2^20, 2^30)\n"
            "  --max-bytes SIZE   largest buffer (default 64M)\n"
            "  --step N           size factor between rows, 2 or 4 (default 2)\n"
            "  --iters N          timed iterations per size (default 20)\n"
            "  --warmup N         untimed iterations per size (default 5)\n"
            "  --dtype T          f32 | f64 | i64 | bf16 (bf16 needs --device cuda; default f32)\n"
            "  --device D         cpu (MPI, host buffers) | cuda (NCCL, device buffers); default cpu\n");
}

/* "64", "1K", "64M", "2G" (binary multiples; a trailing B is allowed). */
static int bench_parse_size(const char *s, size_t *out) {
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return -1;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm') mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g') mul = 1ull << 30, end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end != '\0' || v == 0 || v > (1ull << 40) / mul) return -1;
    *out = (size_t)(v * mul);
    return 0;
}

static int bench_parse_int(const char *s, int lo, int *out) {
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < lo || v > 1000000000L) return -1;
    *out = (int)v;
    return 0;
}

/* 0 ok, 2 usage error (message printed). */
static int bench_comm_parse(int argc, char **argv, bench_comm_opts *o) {
    *o = (bench_comm_opts){.min_bytes = 1 << 10, .max_bytes = 64 << 20, .iters = 20, .warmup = 5,
                           .step = 2, .dtype = TG_COMM_F32, .cuda = 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            bench_comm_usage(stdout);
            return 1;
        }
        if (!v) {
            fprintf(stderr, "truthgpt bench comm: unknown option or missing value: %s\n", a);
            bench_comm_usage(stderr);
            return 2;
        }
        if (strcmp(a, "--min-bytes") == 0) bad = bench_parse_size(v, &o->min_bytes);
        else if (strcmp(a, "--max-bytes") == 0) bad = bench_parse_size(v, &o->max_bytes);
        else if (strcmp(a, "--iters") == 0) bad = bench_parse_int(v, 1, &o->iters);
        else if (strcmp(a, "--warmup") == 0) bad = bench_parse_int(v, 0, &o->warmup);
        else if (strcmp(a, "--step") == 0) bad = bench_parse_int(v, 2, &o->step) || o->step > 4;
        else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(v, "f32") == 0) o->dtype = TG_COMM_F32;
            else if (strcmp(v, "f64") == 0) o->dtype = TG_COMM_F64;
            else if (strcmp(v, "i64") == 0) o->dtype = TG_COMM_I64;
            else if (strcmp(v, "bf16") == 0) o->dtype = TG_COMM_BF16;
            else bad = 1;
        } else if (strcmp(a, "--device") == 0) {
            if (strcmp(v, "cpu") == 0) o->cuda = 0;
            else if (strcmp(v, "cuda") == 0) o->cuda = 1;
            else bad = 1;
        } else {
            fprintf(stderr, "truthgpt bench comm: unknown option %s\n", a);
            bench_comm_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "truthgpt bench comm: bad value for %s: %s\n", a, v);
            bench_comm_usage(stderr);
            return 2;
        }
        i++;
    }
    if (o->min_bytes > o->max_bytes) {
        fprintf(stderr, "truthgpt bench comm: --min-bytes is larger than --max-bytes\n");
        return 2;
    }
    if (o->dtype == TG_COMM_BF16 && !o->cuda) {
        fprintf(stderr, "truthgpt bench comm: --dtype bf16 needs --device cuda (MPI has no bf16)\n");
        return 2;
    }
    return 0;
}

/* Rank r's value at element i: small integers, so sums over up to 42 ranks are exact even
 * in bf16 (<= 256), and a misplaced block shows up as a different value. */
static double bench_value(int r, size_t i) { return (double)((r * 3 + (int)(i % 7)) % 7); }

static void bench_put(void *b, tg_comm_dtype t, size_t i, double v) {
    if (t == TG_COMM_F32) ((float *)b)[i] = (float)v;
    else if (t == TG_COMM_F64) ((double *)b)[i] = v;
    else if (t == TG_COMM_I64) ((int64_t *)b)[i] = (int64_t)v;
    else { /* bf16 = the top half of an f32; exact for these small integers */
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        ((uint16_t *)b)[i] = (uint16_t)(u >> 16);
    }
}

static double bench_get(const void *b, tg_comm_dtype t, size_t i) {
    if (t == TG_COMM_F32) return ((const float *)b)[i];
    if (t == TG_COMM_F64) return ((const double *)b)[i];
    if (t == TG_COMM_I64) return (double)((const int64_t *)b)[i];
    uint32_t u = (uint32_t)((const uint16_t *)b)[i] << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One collective on buf: n_total elements in all (for reduce-scatter/all-gather, world shards
 * of n_total/world). */
static tg_status bench_run(tg_comm *c, bench_coll coll, void *buf, size_t n_total,
                           tg_comm_dtype t, tg_error *err) {
    size_t shard = n_total / (size_t)tg_comm_world(c);
    if (coll == BENCH_ALL_REDUCE) return tg_comm_all_reduce(c, buf, n_total, t, TG_COMM_SUM, err);
    if (coll == BENCH_REDUCE_SCATTER)
        return tg_comm_reduce_scatter(c, buf, shard, t, TG_COMM_SUM, err);
    return tg_comm_all_gather(c, buf, shard, t, err);
}

/* The untimed correctness pass: *wrong = wrong elements summed over all ranks. */
static tg_status bench_check(tg_comm *c, bench_coll coll, void *buf, void *host, size_t n_total,
                             tg_comm_dtype t, int64_t *wrong, tg_error *err) {
    tg_status st = TG_OK;
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    size_t es = tg_comm_dtype_size(t), shard = n_total / (size_t)W, mine = (size_t)R * shard;
    for (size_t i = 0; i < n_total; i++) {
        int own = coll != BENCH_ALL_GATHER || (i >= mine && i < mine + shard);
        bench_put(host, t, i, own ? bench_value(R, i) : -1.0); /* -1: not this rank's part */
    }
    TG_TRY(tg_comm_buf_write(c, buf, host, n_total * es, err));
    TG_TRY(bench_run(c, coll, buf, n_total, t, err));
    TG_TRY(tg_comm_buf_read(c, host, buf, n_total * es, err));
    int64_t bad = 0;
    size_t lo = coll == BENCH_REDUCE_SCATTER ? mine : 0;
    size_t hi = coll == BENCH_REDUCE_SCATTER ? mine + shard : n_total;
    for (size_t i = lo; i < hi; i++) {
        double want = 0;
        if (coll == BENCH_ALL_GATHER) want = bench_value((int)(i / shard), i);
        else
            for (int r = 0; r < W; r++) want += bench_value(r, i);
        bad += bench_get(host, t, i) != want;
    }
    TG_TRY(tg_comm_all_reduce_host(c, &bad, 1, TG_COMM_I64, TG_COMM_SUM, err));
    *wrong = bad;
cleanup:
    return st;
}

/* Mean time per call in microseconds, the slowest rank's. */
static tg_status bench_time(tg_comm *c, bench_coll coll, void *buf, void *host, size_t n_total,
                            tg_comm_dtype t, const bench_comm_opts *o, double *us, tg_error *err) {
    tg_status st = TG_OK;
    memset(host, 0, n_total * tg_comm_dtype_size(t)); /* all-zero bits = 0 in every dtype */
    TG_TRY(tg_comm_buf_write(c, buf, host, n_total * tg_comm_dtype_size(t), err));
    for (int i = 0; i < o->warmup; i++) TG_TRY(bench_run(c, coll, buf, n_total, t, err));
    TG_TRY(tg_comm_wait(c, err));
    TG_TRY(tg_comm_barrier(c, err));
    double t0 = tg_now_ms();
    for (int i = 0; i < o->iters; i++) TG_TRY(bench_run(c, coll, buf, n_total, t, err));
    TG_TRY(tg_comm_wait(c, err));
    double mean_us = (tg_now_ms() - t0) * 1e3 / o->iters;
    TG_TRY(tg_comm_all_reduce_host(c, &mean_us, 1, TG_COMM_F64, TG_COMM_MAX, err));
    *us = mean_us;
cleanup:
    return st;
}

static tg_status bench_comm_run(tg_comm *c, const bench_comm_opts *o, int64_t *total_wrong,
                                tg_error *err) {
    tg_status st = TG_OK;
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    size_t es = tg_comm_dtype_size(o->dtype);
    void *buf = NULL, *host = NULL;
    if (o->cuda) {
        int n_dev = 0, dev = 0;
        TG_TRY(tg_comm_cuda_device_count(&n_dev, err));
        TG_TRY(tg_comm_pick_cuda_device(c, n_dev, &dev, err));
        TG_TRY(tg_comm_use_nccl(c, dev, NULL, err));
    }
    TG_TRY(tg_comm_buf_alloc(c, o->max_bytes, &buf, err));
    host = malloc(o->max_bytes);
    TG_CHECK_ALLOC(err, host);
    *total_wrong = 0;
    if (R == 0) {
        printf("# truthgpt bench comm: backend %s, %d rank(s), dtype %s, %d iters, %d warmup\n",
               tg_comm_backend_name(c), W, tg_comm_dtype_name(o->dtype), o->iters, o->warmup);
        printf("# size = the whole in-place buffer; busbw factor: all_reduce 2(n-1)/n, "
               "reduce_scatter and all_gather (n-1)/n\n");
    }
    double bw_sum = 0;
    int bw_n = 0;
    for (int coll = 0; coll < 3; coll++) {
        double factor = W > 1 ? (double)(W - 1) / W : 0.0;
        if (coll == BENCH_ALL_REDUCE) factor *= 2;
        if (R == 0) {
            printf("#\n# %s (%s)\n", BENCH_COLL_NAMES[coll],
                   coll == BENCH_ALL_GATHER ? "none" : "sum");
            printf("# %12s %12s %8s %10s %9s %9s %7s\n", "size(B)", "count", "type", "time(us)",
                   "algbw", "busbw", "#wrong");
            printf("# %12s %12s %8s %10s %9s %9s %7s\n", "", "(elements)", "", "", "(GB/s)",
                   "(GB/s)", "");
        }
        for (size_t bytes = o->min_bytes; bytes <= o->max_bytes; bytes *= (size_t)o->step) {
            size_t n_total = bytes / es;
            if (coll != BENCH_ALL_REDUCE) n_total -= n_total % (size_t)W; /* whole shards */
            if (n_total == 0) continue;
            int64_t wrong = 0;
            double us = 0;
            TG_TRY(bench_check(c, (bench_coll)coll, buf, host, n_total, o->dtype, &wrong, err));
            TG_TRY(bench_time(c, (bench_coll)coll, buf, host, n_total, o->dtype, o, &us, err));
            double size = (double)(n_total * es);
            double algbw = us > 0 ? size / us * 1e-3 : 0.0; /* B/us = MB/s; /1e3 = GB/s */
            double busbw = algbw * factor;
            *total_wrong += wrong;
            bw_sum += busbw;
            bw_n++;
            if (R == 0)
                printf("  %12zu %12zu %8s %10.2f %9.3f %9.3f %7lld\n", n_total * es, n_total,
                       tg_comm_dtype_name(o->dtype), us, algbw, busbw, (long long)wrong);
            if (bytes > o->max_bytes / (size_t)o->step) break; /* no overflow past max */
        }
    }
    if (R == 0) {
        printf("#\n# wrong elements: %lld (%s)\n", (long long)*total_wrong,
               *total_wrong ? "FAIL" : "OK");
        printf("# avg busbw: %.3f GB/s\n", bw_n ? bw_sum / bw_n : 0.0);
        fflush(stdout);
    }
cleanup:
    tg_comm_buf_free(c, buf);
    free(host);
    return st;
}

int tg_cmd_bench_comm(int argc, char **argv) {
    bench_comm_opts o;
    int rc = bench_comm_parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    tg_error err = {0};
    tg_comm *c = NULL;
    if (tg_comm_init(&c, NULL, NULL, &err) != TG_OK) {
        tg_comm_abort(NULL, 1, err.msg); /* ends the job when MPI is up; returns otherwise */
        return 1;
    }
    int64_t wrong = 0;
    if (bench_comm_run(c, &o, &wrong, &err) != TG_OK) {
        if (o.cuda && (err.code == TG_ERR_UNSUPPORTED || err.code == TG_ERR_CUDA)) tg_error_prefix(&err, "bench comm --device cuda: ");
        tg_comm_abort(c, 1, err.msg); /* one rank's failure must not leave the others hanging */
        tg_comm_free(c);
        return 1;
    }
    tg_comm_free(c);
    return wrong ? 1 : 0;
}
