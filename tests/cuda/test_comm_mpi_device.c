/* tests/cuda/test_comm_mpi_device.c — exact results of every data collective on the MPI-on-device
 * backend (tg_comm_use_mpi_device: device buffers staged through pinned host memory), run under
 * `mpirun -np N` for N = 1, 2, 4 with every rank on the same GPU (tests/cuda/CMakeLists.txt).
 * Values are small integers, so sums and averages over 1, 2 or 4 ranks are exact and compared
 * with ==. Exits 77 (skip) on every rank when there is no CUDA device. Built a second time as
 * tests/comm's test_comm_staged, with host memory in place of the device (no GPU needed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "tg_test.h"

static const tg_comm_dtype DTYPES[] = {TG_COMM_F32, TG_COMM_F64, TG_COMM_I64};
static const tg_comm_op OPS[] = {TG_COMM_SUM, TG_COMM_AVG, TG_COMM_MAX};
static const size_t COUNTS[] = {1, 3, 64, 1001, 300000};
#define SENTINEL 999.0

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

static double expect(tg_comm_dtype t, tg_comm_op op, int W, size_t i) {
    double sum = 0, mx = value(0, i);
    for (int r = 0; r < W; r++) {
        sum += value(r, i);
        if (value(r, i) > mx) mx = value(r, i);
    }
    if (op == TG_COMM_MAX) return mx;
    if (op == TG_COMM_SUM) return sum;
    if (t == TG_COMM_F32) return (double)((float)sum / (float)W);
    if (t == TG_COMM_I64) return (double)((int64_t)sum / W);
    return sum / W;
}

/* One collective on a device buffer of `elems` elements: host h -> device, collective, device -> h.
 * coll: 0 all_reduce, 1 reduce_scatter, 2 all_gather, 3 broadcast from `root`. */
static void run(tg_comm *c, int coll, void *h, size_t elems, size_t n, tg_comm_dtype t,
                tg_comm_op op, int root) {
    tg_error err = {0};
    size_t bytes = elems * tg_comm_dtype_size(t);
    void *d = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, bytes, &d, &err), &err);
    if (!d) return;
    CHECK_OK(tg_comm_buf_write(c, d, h, bytes, &err), &err);
    if (coll == 0) CHECK_OK(tg_comm_all_reduce(c, d, n, t, op, &err), &err);
    if (coll == 1) CHECK_OK(tg_comm_reduce_scatter(c, d, n, t, op, &err), &err);
    if (coll == 2) CHECK_OK(tg_comm_all_gather(c, d, n, t, &err), &err);
    if (coll == 3) CHECK_OK(tg_comm_broadcast(c, d, n, t, root, &err), &err);
    CHECK_OK(tg_comm_sync(c, &err), &err);
    CHECK_OK(tg_comm_buf_read(c, h, d, bytes, &err), &err);
    tg_comm_buf_free(c, d);
}

static void test_one(tg_comm *c, tg_comm_dtype t, size_t n, void *h) {
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    const char *dn = tg_comm_dtype_name(t);
    for (size_t oi = 0; oi < sizeof OPS / sizeof OPS[0]; oi++) {
        tg_comm_op op = OPS[oi];
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) put(h, t, i, value(R, i));
        run(c, 0, h, n, n, t, op, 0);
        for (size_t i = 0; i < n; i++) bad += get(h, t, i) != expect(t, op, W, i);
        CHECKF(bad == 0, "all_reduce %s op %d n %zu: %zu wrong", dn, (int)op, n, bad);
        bad = 0;
        for (size_t i = 0; i < (size_t)W * n; i++) put(h, t, i, value(R, i));
        run(c, 1, h, (size_t)W * n, n, t, op, 0);
        for (size_t j = 0; j < n; j++) bad += get(h, t, (size_t)R * n + j) != expect(t, op, W, (size_t)R * n + j);
        CHECKF(bad == 0, "reduce_scatter %s op %d n %zu: %zu wrong", dn, (int)op, n, bad);
    }
    size_t bad = 0;
    for (size_t i = 0; i < (size_t)W * n; i++) put(h, t, i, SENTINEL);
    for (size_t j = 0; j < n; j++) put(h, t, (size_t)R * n + j, value(R, j));
    run(c, 2, h, (size_t)W * n, n, t, TG_COMM_SUM, 0);
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < n; j++) bad += get(h, t, (size_t)r * n + j) != value(r, j);
    CHECKF(bad == 0, "all_gather %s n %zu: %zu wrong", dn, n, bad);
    for (int root = 0; root < W; root++) {
        bad = 0;
        for (size_t i = 0; i < n; i++) put(h, t, i, R == root ? value(root, i) : SENTINEL);
        run(c, 3, h, n, n, t, TG_COMM_SUM, root);
        for (size_t i = 0; i < n; i++) bad += get(h, t, i) != value(root, i);
        CHECKF(bad == 0, "broadcast %s n %zu root %d: %zu wrong", dn, n, root, bad);
    }
}

/* bf16 moves (all_gather, broadcast) bit for bit; bf16 reductions are refused. */
static void test_bf16(tg_comm *c) {
    tg_error err = {0};
    int R = tg_comm_rank(c), W = tg_comm_world(c);
    enum { N = 777 };
    uint16_t *h = malloc((size_t)W * N * sizeof *h);
    CHECK(h != NULL);
    if (!h) return;
    for (size_t i = 0; i < (size_t)W * N; i++) h[i] = 0xffff;
    for (size_t j = 0; j < N; j++) h[(size_t)R * N + j] = (uint16_t)(0x3f80 + R * 13 + (int)(j % 101));
    run(c, 2, h, (size_t)W * N, N, TG_COMM_BF16, TG_COMM_SUM, 0);
    size_t bad = 0;
    for (int r = 0; r < W; r++)
        for (size_t j = 0; j < N; j++) bad += h[(size_t)r * N + j] != (uint16_t)(0x3f80 + r * 13 + (int)(j % 101));
    CHECKF(bad == 0, "all_gather bf16: %zu wrong", bad);
    void *d = NULL;
    CHECK_OK(tg_comm_buf_alloc(c, N * 2, &d, &err), &err);
    CHECK(tg_comm_all_reduce(c, d, N, TG_COMM_BF16, TG_COMM_SUM, &err) == TG_ERR_UNSUPPORTED);
    CHECK(tg_comm_reduce_scatter(c, d, N / (size_t)W, TG_COMM_BF16, TG_COMM_SUM, &err) == TG_ERR_UNSUPPORTED);
    tg_comm_buf_free(c, d);
    free(h);
}

int main(int argc, char **argv) {
    tg_error err = {0};
    tg_comm *c = NULL;
    int n_dev = 0, dev = -1;
    CHECK_OK(tg_comm_init(&c, &argc, &argv, &err), &err);
    if (!c) TEST_MAIN_END();
#ifdef TG_COMM_FAKE_STAGE
    n_dev = 1; /* test_comm_staged: comm_stage.c replaced by host memory (tests/comm/fake_stage.c) */
#else
    if (tg_comm_cuda_device_count(&n_dev, &err) != TG_OK) {
        printf("SKIP: no CUDA device (%s)\n", err.msg);
        tg_comm_free(c);
        return 77;
    }
#endif
    int W = tg_comm_world(c);
    CHECK_OK(tg_comm_pick_cuda_device_shared(c, n_dev, &dev, &err), &err);
    CHECK(dev == tg_comm_local_rank(c) % n_dev);
    CHECK_OK(tg_comm_use_mpi_device(c, dev, NULL, &err), &err);
    CHECK(tg_comm_active_backend(c) == TG_COMM_MPI_DEVICE);
    CHECK(tg_comm_use_nccl(c, dev, NULL, &err) == TG_ERR_ARG);
    size_t max_n = COUNTS[sizeof COUNTS / sizeof COUNTS[0] - 1];
    void *h = malloc((size_t)W * max_n * 8);
    CHECK(h != NULL);
    for (int pass = 0; h && pass < 2; pass++) {
        /* the second pass with at most 3 elements per MPI call: the chunked paths, on staged data */
        if (pass == 1) tg_comm_set_mpi_max_count(c, 3);
        for (size_t di = 0; di < sizeof DTYPES / sizeof DTYPES[0]; di++)
            for (size_t ci = 0; ci < sizeof COUNTS / sizeof COUNTS[0]; ci++)
                if (pass == 0 || COUNTS[ci] <= 1001) test_one(c, DTYPES[di], COUNTS[ci], h);
    }
    tg_comm_set_mpi_max_count(c, 0);
    test_bf16(c);
    CHECK_OK(tg_comm_wait(c, &err), &err);
    free(h);
    printf("rank %d of %d: MPI on device buffers checked on CUDA device %d (%s)\n", tg_comm_rank(c), W, dev,
           tg_comm_backend_name(c));
    tg_comm_free(c);
    TEST_MAIN_END();
}
