/* comm/comm_nccl.c — the NCCL backend: device buffers, one comm stream per process.
 *
 * Ordering without device-wide syncs: before each collective an event is recorded on the
 * compute stream and the comm stream waits on it (so the collective sees the gradients
 * computed so far); tg_comm_sync records an event on the comm stream that the compute stream
 * waits on (so the optimizer sees the reduced values).
 *
 * No hangs: the communicator is non-blocking (config.blocking = 0), so init and calls may
 * return ncclInProgress and are then polled with ncclCommGetAsyncError; waits poll
 * ncclCommGetAsyncError + cudaStreamQuery. Both give up after c->timeout_s with TG_ERR_NCCL,
 * and the caller then ends the job with tg_comm_abort (ncclCommAbort + MPI_Abort). */
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"

#ifdef TG_HAVE_CUDA

#include <cuda_runtime.h>
#include <nccl.h>
#include <time.h>

#include "core/timer.h"

struct tg_comm_nccl {
    ncclComm_t comm;
    cudaStream_t stream;      /* the comm stream: every collective is enqueued here */
    cudaStream_t compute;     /* the trainer's stream (NULL = legacy default stream) */
    cudaEvent_t compute_done; /* recorded on compute before each collective */
    cudaEvent_t comm_done;    /* recorded on stream by tg_comm_sync */
    int device;
};

static tg_status nccl_fail(tg_error *err, const char *file, int line, const char *what,
                           ncclResult_t r, ncclComm_t comm) {
    const char *last = ncclGetLastError(comm);
    return tg_error_set_at(err, TG_ERR_NCCL, file, line, "%s: %s%s%s", what, ncclGetErrorString(r),
                           last && *last ? ": " : "", last ? last : "");
}

static void nccl_nap(void) {
    struct timespec ts = {0, 100 * 1000}; /* 100 us: cheap to poll, small added latency */
    nanosleep(&ts, NULL);
}

/* Polls a non-blocking communicator until its pending call settles (ncclSuccess), fails
 * (async error) or the timeout passes. */
static tg_status nccl_settle(tg_comm *c, ncclComm_t comm, const char *file, int line,
                             const char *what, tg_error *err) {
    double t0 = tg_now_ms();
    for (;;) {
        ncclResult_t state = ncclSuccess;
        ncclResult_t r = ncclCommGetAsyncError(comm, &state);
        if (r != ncclSuccess) return nccl_fail(err, file, line, "ncclCommGetAsyncError", r, comm);
        if (state == ncclSuccess) return TG_OK;
        if (state != ncclInProgress) return nccl_fail(err, file, line, what, state, comm);
        if (tg_now_ms() - t0 > c->timeout_s * 1e3)
            return tg_error_set_at(err, TG_ERR_NCCL, file, line,
                                   "%s: still in progress after %.0f s (timeout; a peer rank may "
                                   "have died)",
                                   what, c->timeout_s);
        nccl_nap();
    }
}

/* Checks an NCCL call on communicator `comm` (evaluated after the call, so init may pass the
 * handle it fills); ncclInProgress is polled to completion with the timeout. */
#define TG_NCCL_CHECK(c, comm, err, call)                                                      \
    do {                                                                                       \
        ncclResult_t r_ = (call);                                                              \
        if (r_ == ncclInProgress) {                                                            \
            st = nccl_settle((c), (comm), __FILE__, __LINE__, #call, (err));                   \
            if (st != TG_OK) goto cleanup;                                                     \
        } else if (r_ != ncclSuccess) {                                                        \
            st = nccl_fail((err), __FILE__, __LINE__, #call, r_, (comm));                      \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

static ncclDataType_t nccl_type(tg_comm_dtype t) {
    switch (t) {
    case TG_COMM_F32: return ncclFloat32;
    case TG_COMM_BF16: return ncclBfloat16;
    case TG_COMM_F64: return ncclFloat64;
    case TG_COMM_I64: return ncclInt64;
    }
    return ncclFloat32;
}

static ncclRedOp_t nccl_op(tg_comm_op op) {
    switch (op) {
    case TG_COMM_SUM: return ncclSum;
    case TG_COMM_AVG: return ncclAvg;
    case TG_COMM_MAX: return ncclMax;
    }
    return ncclSum;
}

/* Fails fast when an earlier collective already hit an asynchronous error. */
static tg_status nccl_peek(tg_comm *c, tg_error *err) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(c->nccl->comm, &state);
    if (r != ncclSuccess)
        return nccl_fail(err, __FILE__, __LINE__, "ncclCommGetAsyncError", r, c->nccl->comm);
    if (state != ncclSuccess && state != ncclInProgress)
        return nccl_fail(err, __FILE__, __LINE__, "NCCL asynchronous error", state, c->nccl->comm);
    return TG_OK;
}

/* The comm stream waits for the compute stream's work so far (event, no host sync). */
static tg_status nccl_begin(tg_comm *c, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    TG_TRY(nccl_peek(c, err));
    TG_CUDA_CHECK(err, cudaEventRecord(nc->compute_done, nc->compute));
    TG_CUDA_CHECK(err, cudaStreamWaitEvent(nc->stream, nc->compute_done, 0));
cleanup:
    return st;
}

static void nccl_release(tg_comm_nccl *nc, int abort) {
    if (!nc) return;
    if (nc->comm) {
        if (abort) ncclCommAbort(nc->comm);
        else ncclCommDestroy(nc->comm);
    }
    if (nc->compute_done) cudaEventDestroy(nc->compute_done);
    if (nc->comm_done) cudaEventDestroy(nc->comm_done);
    if (nc->stream) cudaStreamDestroy(nc->stream);
    free(nc);
}

tg_status tg_comm_nccl_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = calloc(1, sizeof *nc);
    TG_CHECK_ALLOC(err, nc);
    nc->device = cuda_device;
    nc->compute = (cudaStream_t)compute_stream;
    int n_dev = 0, prio_lo = 0, prio_hi = 0;
    TG_CUDA_CHECK(err, cudaGetDeviceCount(&n_dev));
    if (cuda_device < 0 || cuda_device >= n_dev)
        TG_FAIL(err, TG_ERR_ARG, "CUDA device %d not in [0, %d)", cuda_device, n_dev);
    TG_CUDA_CHECK(err, cudaSetDevice(cuda_device));
    /* Non-blocking (never implicitly ordered after the legacy default stream) and of the
     * highest priority, so gradient all-reduces interleave promptly with backward kernels. */
    TG_CUDA_CHECK(err, cudaDeviceGetStreamPriorityRange(&prio_lo, &prio_hi));
    TG_CUDA_CHECK(err, cudaStreamCreateWithPriority(&nc->stream, cudaStreamNonBlocking, prio_hi));
    TG_CUDA_CHECK(err, cudaEventCreateWithFlags(&nc->compute_done, cudaEventDisableTiming));
    TG_CUDA_CHECK(err, cudaEventCreateWithFlags(&nc->comm_done, cudaEventDisableTiming));

    /* Rank 0 makes the unique id, MPI carries it to the others. If rank 0 fails here the
     * others wait in MPI_Bcast until rank 0's tg_comm_abort ends the job. */
    ncclUniqueId id;
    memset(&id, 0, sizeof id);
    if (c->rank == 0) TG_NCCL_CHECK(c, NULL, err, ncclGetUniqueId(&id));
    if (c->world > 1)
        TG_MPI_CHECK(err, MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, c->mpi_world));
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;
    TG_NCCL_CHECK(c, nc->comm, err, ncclCommInitRankConfig(&nc->comm, c->world, id, c->rank, &cfg));
    c->nccl = nc;
    nc = NULL;
cleanup:
    nccl_release(nc, 1);
    return st;
}

void tg_comm_nccl_destroy(tg_comm *c) {
    tg_comm_nccl *nc = c->nccl;
    if (!nc) return;
    c->nccl = NULL;
    /* Finalize flushes pending work; if it fails or times out, abort instead of destroy. */
    int abort = 0;
    if (nc->comm) {
        tg_error e;
        ncclResult_t r = ncclCommFinalize(nc->comm);
        if (r == ncclInProgress) abort = nccl_settle(c, nc->comm, __FILE__, __LINE__,
                                                     "ncclCommFinalize", &e) != TG_OK;
        else abort = r != ncclSuccess;
    }
    nccl_release(nc, abort);
}

void tg_comm_nccl_abort(tg_comm *c) {
    if (!c->nccl) return;
    if (c->nccl->comm) ncclCommAbort(c->nccl->comm); /* stops kernels waiting on dead peers */
    c->nccl->comm = NULL;
}

tg_status tg_comm_nccl_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                 tg_comm_op op, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    TG_TRY(nccl_begin(c, err));
    TG_NCCL_CHECK(c, nc->comm, err,
                  ncclAllReduce(buf, buf, count, nccl_type(t), nccl_op(op), nc->comm, nc->stream));
cleanup:
    return st;
}

/* In place as NCCL defines it: recvbuff = sendbuff + rank*recvcount. */
tg_status tg_comm_nccl_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                      tg_comm_op op, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    char *shard = (char *)buf + (size_t)c->rank * count * tg_comm_dtype_size(t);
    TG_TRY(nccl_begin(c, err));
    TG_NCCL_CHECK(c, nc->comm, err,
                  ncclReduceScatter(buf, shard, count, nccl_type(t), nccl_op(op), nc->comm,
                                    nc->stream));
cleanup:
    return st;
}

/* In place as NCCL defines it: sendbuff = recvbuff + rank*sendcount. */
tg_status tg_comm_nccl_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                  tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    char *part = (char *)buf + (size_t)c->rank * count * tg_comm_dtype_size(t);
    TG_TRY(nccl_begin(c, err));
    TG_NCCL_CHECK(c, nc->comm, err,
                  ncclAllGather(part, buf, count, nccl_type(t), nc->comm, nc->stream));
cleanup:
    return st;
}

tg_status tg_comm_nccl_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                                 tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    TG_TRY(nccl_begin(c, err));
    TG_NCCL_CHECK(c, nc->comm, err,
                  ncclBroadcast(buf, buf, count, nccl_type(t), root, nc->comm, nc->stream));
cleanup:
    return st;
}

tg_status tg_comm_nccl_sync(tg_comm *c, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    TG_TRY(nccl_peek(c, err));
    TG_CUDA_CHECK(err, cudaEventRecord(nc->comm_done, nc->stream));
    TG_CUDA_CHECK(err, cudaStreamWaitEvent(nc->compute, nc->comm_done, 0));
cleanup:
    return st;
}

/* Polls instead of cudaStreamSynchronize, so that a dead peer (whose collective never
 * completes) becomes TG_ERR_NCCL after the timeout rather than a hang. */
tg_status tg_comm_nccl_wait(tg_comm *c, void *stream, int comm_stream, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_nccl *nc = c->nccl;
    cudaStream_t s = comm_stream ? nc->stream : (cudaStream_t)stream;
    double t0 = tg_now_ms();
    for (;;) {
        TG_TRY(nccl_peek(c, err));
        cudaError_t q = cudaStreamQuery(s);
        if (q == cudaSuccess) break;
        if (q != cudaErrorNotReady)
            TG_FAIL(err, TG_ERR_CUDA, "cudaStreamQuery: %s (%s)", cudaGetErrorName(q),
                    cudaGetErrorString(q));
        if (tg_now_ms() - t0 > c->timeout_s * 1e3)
            TG_FAIL(err, TG_ERR_NCCL,
                    "rank %d: timed out after %.0f s waiting for the %s stream (NCCL collectives "
                    "did not finish: a peer rank died or hangs; comm.timeout or "
                    "TRUTHGPT_COMM_TIMEOUT sets the limit)",
                    c->rank, c->timeout_s, comm_stream ? "comm" : "given");
        nccl_nap();
    }
cleanup:
    return st;
}

tg_status tg_comm_nccl_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    tg_status st = TG_OK;
    (void)c;
    TG_CUDA_CHECK(err, cudaMalloc(out, bytes ? bytes : 1));
cleanup:
    return st;
}

void tg_comm_nccl_buf_free(tg_comm *c, void *p) {
    (void)c;
    cudaFree(p);
}

tg_status tg_comm_nccl_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                              tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(tg_comm_nccl_wait(c, NULL, 1, err)); /* no collective may still use the buffer */
    if (bytes)
        TG_CUDA_CHECK(err, cudaMemcpy(dst, src, bytes,
                                      to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
cleanup:
    return st;
}

tg_status tg_comm_cuda_device_count(int *n, tg_error *err) {
    *n = 0;
    cudaError_t e = cudaGetDeviceCount(n);
    if (e != cudaSuccess) {
        *n = 0;
        return tg_error_set(err, TG_ERR_CUDA, "no usable CUDA device: cudaGetDeviceCount: %s (%s)",
                            cudaGetErrorName(e), cudaGetErrorString(e));
    }
    if (*n < 1) return tg_error_set(err, TG_ERR_CUDA, "no CUDA device found");
    return TG_OK;
}

#else /* !TG_HAVE_CUDA: every NCCL entry point says so */

static tg_status nccl_missing(tg_error *err) {
    return tg_error_set(err, TG_ERR_UNSUPPORTED,
                        "truthgpt was built without CUDA/NCCL (configure with -DTRUTHGPT_CUDA=ON)");
}

tg_status tg_comm_nccl_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    (void)c, (void)cuda_device, (void)compute_stream;
    return nccl_missing(err);
}
void tg_comm_nccl_destroy(tg_comm *c) { (void)c; }
void tg_comm_nccl_abort(tg_comm *c) { (void)c; }
tg_status tg_comm_nccl_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                 tg_comm_op op, tg_error *err) {
    (void)c, (void)buf, (void)count, (void)t, (void)op;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                      tg_comm_op op, tg_error *err) {
    (void)c, (void)buf, (void)count, (void)t, (void)op;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                  tg_error *err) {
    (void)c, (void)buf, (void)count, (void)t;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                                 tg_error *err) {
    (void)c, (void)buf, (void)count, (void)t, (void)root;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_sync(tg_comm *c, tg_error *err) {
    (void)c;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_wait(tg_comm *c, void *stream, int comm_stream, tg_error *err) {
    (void)c, (void)stream, (void)comm_stream;
    return nccl_missing(err);
}
tg_status tg_comm_nccl_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    (void)c, (void)bytes, (void)out;
    return nccl_missing(err);
}
void tg_comm_nccl_buf_free(tg_comm *c, void *p) { (void)c, (void)p; }
tg_status tg_comm_nccl_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                              tg_error *err) {
    (void)c, (void)dst, (void)src, (void)bytes, (void)to_device;
    return nccl_missing(err);
}
tg_status tg_comm_cuda_device_count(int *n, tg_error *err) {
    if (n) *n = 0;
    return nccl_missing(err);
}

#endif
