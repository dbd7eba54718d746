/* tests/comm/test_comm.c — exact results of every collective on the MPI backend.
 *
 * Run without a launcher (world size 1, MPI must stay uninitialised) and under
 * `mpirun -np N` for N = 1, 2, 4 (see CMakeLists.txt). Every rank checks its own results;
 * the process exits non-zero when any check on that rank fails, so mpirun fails too.
 * Values are small integers, so sums and averages by 1, 2 or 4 ranks are exact in every
 * dtype and the comparisons can be ==. */
#include <limits.h>
#include <mpi.h>
#include <stdint.h>
#include <string.h>

#include "comm/comm.h"
#include "tg_test.h"

static const tg_comm_dtype DTYPES[] = {TG_COMM_F32, TG_COMM_F64, TG_COMM_I64};
static const tg_comm_op OPS[] = {TG_COMM_SUM, TG_COMM_AVG, TG_COMM_MAX};
static const size_t COUNTS[] = {1, 2, 3, 7, 64, 1001};
#define SENTINEL 999.0

/* Rank r's value at global element i: small, signed, depends on both. */
static double value(int r, size_t i) { return (double)((r * 7 + (int)(i % 97) * 3) % 11) - 5.0; }

static void put(void *b, tg_comm_dtype t, size_t i, double v) {
    if (t == TG_COMM_F32) ((float *)b)[i] = (float)v;
    else if (t == TG_COMM_F64) ((double *)b)[i] = v;
    else ((int64_t *)b)[i] = (int64_t)v;
}

static double get(const void *b, tg_comm_dtype t, size_t i) {
    if (t == TG_COMM_F32) return ((const float *)b)[i];
    if (t == TG_COMM_F64) return ((const double *)b)[i];
    return (double)((const int64_t *)b)[i];
}

/* The reduction of value(0..W-1, i), computed the way the backend computes it. */
static double expect(tg_comm_dtype t, tg_comm_op op, int W, size_t i) {
    double sum = 0, mx = value(0, i);
    for (int r = 0; r < W; r++) {
        sum += value(r, i);
        if (value(r, i) > mx) mx = value(r, i);
    }
    if (op == TG_COMM_MAX) return mx;
    if (op == TG_COMM_SUM) return sum;
    if (t == TG_COMM_F32) return (double)((float)sum / (float)W);
    if (t == TG_COMM_I64) return (double)((int64_t)sum / W); /* truncates toward zero */
    return sum / W;
}

static const char *dname(tg_comm_dtype t) { return tg_comm_dtype_name(t); }

static void test_all_reduce(tg_comm *c, tg_comm_dtype t, tg_comm_op op, size_t n, int host) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    void *b = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, n * 8, &b, &err), &err);
    if (!b) return;
    for (size_t i = 0; i < n; i++) put(b, t, i, value(R, i));
    if (host) CHECK_OK(tg_comm_all_reduce_host(c, b, n, t, op, &err), &err);
    else CHECK_OK(tg_comm_all_reduce(c, b, n, t, op, &err), &err);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += get(b, t, i) != expect(t, op, W, i);
    CHECKF(bad == 0, "all_reduce%s %s op %d n %zu: %zu wrong", host ? "_host" : "", dname(t),
           (int)op, n, bad);
    tg_comm_buf_free(c, b);
}

/* buf holds W shards of n; shard R of the reduction must land at buf[R*n ..]. */
static void test_reduce_scatter(tg_comm *c, tg_comm_dtype t, tg_comm_op op, size_t n) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    void *b = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, (size_t)W * n * 8, &b, &err), &err);
    if (!b) return;
    for (size_t i = 0; i < (size_t)W * n; i++) put(b, t, i, value(R, i));
    CHECK_OK(tg_comm_reduce_scatter(c, b, n, t, op, &err), &err);
    size_t bad = 0;
    for (size_t j = 0; j < n; j++) {
        size_t i = (size_t)R * n + j;
        bad += get(b, t, i) != expect(t, op, W, i);
    }
    CHECKF(bad == 0, "reduce_scatter %s op %d n %zu: %zu wrong", dname(t), (int)op, n, bad);
    tg_comm_buf_free(c, b);
}

/* Only this rank's part is valid on entry (the rest holds a sentinel); all parts on return. */
static void test_all_gather(tg_comm *c, tg_comm_dtype t, size_t n, int host) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    void *b = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, (size_t)W * n * 8, &b, &err), &err);
    if (!b) return;
    for (size_t i = 0; i < (size_t)W * n; i++) put(b, t, i, SENTINEL);
    for (size_t j = 0; j < n; j++) put(b, t, (size_t)R * n + j, value(R, j));
    if (host) CHECK_OK(tg_comm_all_gather_host(c, b, n, t, &err), &err);
    else CHECK_OK(tg_comm_all_gather(c, b, n, t, &err), &err);
    size_t bad = 0;
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < n; j++) bad += get(b, t, (size_t)r * n + j) != value(r, j);
    CHECKF(bad == 0, "all_gather%s %s n %zu: %zu wrong", host ? "_host" : "", dname(t), n, bad);
    tg_comm_buf_free(c, b);
}

static void test_broadcast(tg_comm *c, tg_comm_dtype t, size_t n) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    void *b = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, n * 8, &b, &err), &err);
    if (!b) return;
    for (int root = 0; root < W; root++) {
        for (size_t i = 0; i < n; i++) put(b, t, i, R == root ? value(root, i) : SENTINEL);
        CHECK_OK(tg_comm_broadcast(c, b, n, t, root, &err), &err);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += get(b, t, i) != value(root, i);
        CHECKF(bad == 0, "broadcast %s n %zu root %d: %zu wrong", dname(t), n, root, bad);
    }
    tg_comm_buf_free(c, b);
}

static void test_broadcast_host(tg_comm *c, size_t bytes) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    unsigned char *b = malloc(bytes);
    CHECK(b != NULL);
    if (!b) return;
    for (int root = 0; root < W; root++) {
        for (size_t i = 0; i < bytes; i++) b[i] = R == root ? (unsigned char)(i * 31 + (size_t)root) : 0;
        CHECK_OK(tg_comm_broadcast_host(c, b, bytes, root, &err), &err);
        size_t bad = 0;
        for (size_t i = 0; i < bytes; i++) bad += b[i] != (unsigned char)(i * 31 + (size_t)root);
        CHECKF(bad == 0, "broadcast_host %zu bytes root %d: %zu wrong", bytes, root, bad);
    }
    free(b);
}

/* Uneven parts: rank r owns (r * 3 + n) % 5 elements (zeros included), consecutively.
 * reduce_scatter_v: this rank's part must hold the reduction; all_gather_v (from a separate
 * part buffer, and in place): every part must arrive. */
static void test_v(tg_comm *c, tg_comm_dtype t, tg_comm_op op, size_t n) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    size_t counts[16], total = 0, mine = 0;
    CHECK(W <= 16);
    if (W > 16) return;
    for (int r = 0; r < W; r++) {
        counts[r] = ((size_t)r * 3 + n) % 5;
        if (r == R) mine = total;
        total += counts[r];
    }
    char *b = malloc((total + 1) * 8), *part = malloc((counts[R] + 1) * 8);
    CHECK(b && part);
    if (!b || !part) goto done;
    for (size_t i = 0; i < total; i++) put(b, t, i, value(R, i));
    CHECK_OK(tg_comm_reduce_scatter_v(c, b, counts, t, op, &err), &err);
    size_t bad = 0;
    for (size_t j = 0; j < counts[R]; j++) bad += get(b, t, mine + j) != expect(t, op, W, mine + j);
    CHECKF(bad == 0, "reduce_scatter_v %s op %d n %zu: %zu wrong", dname(t), (int)op, n, bad);
    for (int inplace = 0; inplace < 2; inplace++) {
        for (size_t i = 0; i < total; i++) put(b, t, i, SENTINEL);
        void *src = inplace ? b + mine * tg_comm_dtype_size(t) : part;
        for (size_t j = 0; j < counts[R]; j++) put(src, t, j, value(R, j));
        CHECK_OK(tg_comm_all_gather_v(c, src, b, counts, t, &err), &err);
        bad = 0;
        for (int r = 0, off = 0; r < W; off += (int)counts[r], r++)
            for (size_t j = 0; j < counts[r]; j++) bad += get(b, t, (size_t)off + j) != value(r, j);
        CHECKF(bad == 0, "all_gather_v %s n %zu in place %d: %zu wrong", dname(t), n, inplace, bad);
    }
done:
    free(b);
    free(part);
}

/* All collectives, dtypes, ops and odd counts; run once per MPI chunk limit. */
static void test_collectives(tg_comm *c) {
    for (size_t di = 0; di < sizeof DTYPES / sizeof DTYPES[0]; di++) {
        tg_comm_dtype t = DTYPES[di];
        for (size_t ci = 0; ci < sizeof COUNTS / sizeof COUNTS[0]; ci++) {
            size_t n = COUNTS[ci];
            for (size_t oi = 0; oi < sizeof OPS / sizeof OPS[0]; oi++) {
                test_all_reduce(c, t, OPS[oi], n, 0);
                test_all_reduce(c, t, OPS[oi], n, 1);
                test_reduce_scatter(c, t, OPS[oi], n);
                test_v(c, t, OPS[oi], n);
            }
            test_all_gather(c, t, n, 0);
            test_all_gather(c, t, n, 1);
            test_broadcast(c, t, n);
        }
    }
    test_broadcast_host(c, 1);
    test_broadcast_host(c, 1234);
}

/* Errors that every rank hits the same way (so nothing hangs). */
static void test_errors(tg_comm *c) {
    tg_error err = {0};
    int W = tg_comm_world(c);
    uint16_t h[8] = {0};
    float f[4] = {1, 2, 3, 4};
    CHECK(tg_comm_all_reduce(c, h, 8, TG_COMM_BF16, TG_COMM_SUM, &err) == TG_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "bfloat16") != NULL);
    CHECK(tg_comm_all_reduce_host(c, h, 8, TG_COMM_BF16, TG_COMM_SUM, &err) == TG_ERR_UNSUPPORTED);
    CHECK(tg_comm_all_reduce(c, NULL, 4, TG_COMM_F32, TG_COMM_SUM, &err) == TG_ERR_ARG);
    CHECK(tg_comm_all_reduce(c, f, 4, TG_COMM_F32, (tg_comm_op)9, &err) == TG_ERR_ARG);
    CHECK(tg_comm_broadcast(c, f, 4, TG_COMM_F32, W, &err) == TG_ERR_ARG);
    CHECK(tg_comm_broadcast(c, f, 4, TG_COMM_F32, -1, &err) == TG_ERR_ARG);
    CHECK(tg_comm_broadcast_host(c, f, 4, W, &err) == TG_ERR_ARG);
    /* count 0 is a valid no-op; buf may be NULL then */
    CHECK_OK(tg_comm_all_reduce(c, NULL, 0, TG_COMM_F32, TG_COMM_SUM, &err), &err);
    CHECK_OK(tg_comm_reduce_scatter(c, NULL, 0, TG_COMM_F64, TG_COMM_AVG, &err), &err);
    CHECK_OK(tg_comm_all_gather(c, NULL, 0, TG_COMM_I64, &err), &err);
    CHECK_OK(tg_comm_barrier(c, &err), &err);
    /* MPI collectives are complete on return: sync/wait are no-ops */
    CHECK_OK(tg_comm_sync(c, &err), &err);
    CHECK_OK(tg_comm_wait(c, &err), &err);
    CHECK(tg_comm_wait_stream(c, NULL, &err) == TG_ERR_UNSUPPORTED);
    if (!tg_comm_have_nccl()) {
        int n = -1;
        CHECK(tg_comm_use_nccl(c, 0, NULL, &err) == TG_ERR_UNSUPPORTED);
        CHECK(strstr(err.msg, "without CUDA") != NULL);
        CHECK(tg_comm_cuda_device_count(&n, &err) == TG_ERR_UNSUPPORTED && n == 0);
    }
    CHECK(tg_comm_active_backend(c) == TG_COMM_MPI);
}

/* Device and thread assignment from the local rank. */
static void test_placement(tg_comm *c) {
    tg_error err = {0};
    int LR = tg_comm_local_rank(c), LW = tg_comm_local_world(c);
    int dev = -1;
    CHECK_OK(tg_comm_pick_cuda_device(c, 8 > LW ? 8 : LW, &dev, &err), &err);
    CHECK(dev == LR);
    CHECK(tg_comm_pick_cuda_device(c, 0, &dev, &err) == TG_ERR_CONFIG);
    if (LW > 1) {
        CHECK(tg_comm_pick_cuda_device(c, LW - 1, &dev, &err) == TG_ERR_CONFIG);
        CHECKF(strstr(err.msg, "only") != NULL, "message: %s", err.msg);
    }
    CHECK(tg_comm_cpu_threads(c, 1) == 1);
    CHECK(tg_comm_cpu_threads(c, 0) == 1);
    CHECK(tg_comm_cpu_threads(NULL, 6) == 6);
    /* the local ranks' shares add up to the cores (all ranks are on this node here) */
    int64_t share = tg_comm_cpu_threads(c, 7), total = share;
    CHECK_OK(tg_comm_all_reduce_host(c, &total, 1, TG_COMM_I64, TG_COMM_SUM, &err), &err);
    CHECKF(total == (LW <= 7 ? 7 : LW), "threads add up to %lld", (long long)total);
    CHECK(share >= 1 && share <= 7);
}

/* NCCL on one GPU, world size 1 (the test runs it only without mpirun): the collectives run
 * for real on device buffers (identity results at world 1), through host staging. Without a
 * GPU, switching to NCCL must fail cleanly and leave MPI active. */
static void test_nccl_world1(tg_comm *c) {
    tg_error err = {0};
    int n_dev = 0;
    if (tg_comm_cuda_device_count(&n_dev, &err) != TG_OK) {
        CHECK(tg_comm_use_nccl(c, 0, NULL, &err) != TG_OK);
        CHECK(tg_comm_active_backend(c) == TG_COMM_MPI);
        printf("no CUDA device: NCCL section skipped (%s)\n", err.msg);
        return;
    }
    int dev = -1;
    CHECK_OK(tg_comm_pick_cuda_device(c, n_dev, &dev, &err), &err);
    CHECK_OK(tg_comm_use_nccl(c, dev, NULL, &err), &err);
    if (tg_comm_active_backend(c) != TG_COMM_NCCL) return;
    CHECK(strcmp(tg_comm_backend_name(c), "nccl") == 0);
    enum { N = 1001 };
    float h[N], back[N];
    uint16_t hb[N], bb[N];
    void *d = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, N * sizeof(float), &d, &err), &err);
    if (!d) return;
    for (int i = 0; i < N; i++) h[i] = (float)value(0, (size_t)i), hb[i] = (uint16_t)(0x3f80 + i % 7);
    for (size_t oi = 0; oi < sizeof OPS / sizeof OPS[0]; oi++) {
        CHECK_OK(tg_comm_buf_write(c, d, h, sizeof h, &err), &err);
        CHECK_OK(tg_comm_all_reduce(c, d, N, TG_COMM_F32, OPS[oi], &err), &err);
        CHECK_OK(tg_comm_reduce_scatter(c, d, N, TG_COMM_F32, OPS[oi], &err), &err);
        CHECK_OK(tg_comm_all_gather(c, d, N, TG_COMM_F32, &err), &err);
        CHECK_OK(tg_comm_broadcast(c, d, N, TG_COMM_F32, 0, &err), &err);
        CHECK_OK(tg_comm_sync(c, &err), &err);
        CHECK_OK(tg_comm_wait_stream(c, NULL, &err), &err);
        CHECK_OK(tg_comm_wait(c, &err), &err);
        CHECK_OK(tg_comm_buf_read(c, back, d, sizeof back, &err), &err);
        CHECK(memcmp(h, back, sizeof h) == 0);
    }
    /* bf16 is fine on NCCL */
    CHECK_OK(tg_comm_buf_write(c, d, hb, sizeof hb, &err), &err);
    CHECK_OK(tg_comm_all_reduce(c, d, N, TG_COMM_BF16, TG_COMM_SUM, &err), &err);
    CHECK_OK(tg_comm_buf_read(c, bb, d, sizeof bb, &err), &err);
    CHECK(memcmp(hb, bb, sizeof hb) == 0);
    tg_comm_buf_free(c, d);
    printf("NCCL section ran on CUDA device %d\n", dev);
}

int main(int argc, char **argv) {
    tg_error err = {0};
    tg_comm *c = NULL;
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    int launched = ws != NULL, expect_world = ws ? atoi(ws) : 1, mpi_up = -1;

    CHECK_OK(tg_comm_init(&c, &argc, &argv, &err), &err);
    if (!c) TEST_MAIN_END();
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    MPI_Initialized(&mpi_up);
    CHECKF(mpi_up == launched, "MPI initialised: %d, launched: %d", mpi_up, launched);
    CHECK(W == expect_world);
    CHECK(R >= 0 && R < W);
    /* mpirun in the tests starts every rank on this one node */
    CHECK(tg_comm_local_world(c) == W);
    CHECK(tg_comm_local_rank(c) == R);
    CHECK(strncmp(tg_comm_backend_name(c), "mpi", 3) == 0);

    test_placement(c);
    test_errors(c);
    test_collectives(c);
    /* again with at most 3 elements per MPI call, so every chunked path runs */
    tg_comm_set_mpi_max_count(c, 3);
    test_collectives(c);
    tg_comm_set_mpi_max_count(c, 0);
    test_all_reduce(c, TG_COMM_F32, TG_COMM_SUM, 5, 0);
    if (tg_comm_have_nccl() && W == 1 && !launched) test_nccl_world1(c);

    tg_comm_free(c);
    if (launched) {
        int fin = 0;
        MPI_Finalized(&fin);
        CHECK(fin == 1);
    }
    if (tg_test_failed) fprintf(stderr, "rank %d of %d: failures above\n", R, W);
    TEST_MAIN_END();
}
