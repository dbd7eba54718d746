/* comm/comm_stage.c — the CUDA half of the "MPI on device buffers" backend (tg_comm_use_mpi_device):
 * one pinned host buffer per process, and the copies between it and device buffers on the
 * caller's compute stream. comm.c runs the MPI collectives on the pinned buffer in between.
 *
 * Ordering: the device-to-host copy is enqueued on the compute stream after the work that wrote
 * the buffer, and waited for before MPI reads the pinned memory; the host-to-device copy of the
 * result is enqueued on the same stream and not waited for, so later kernels on that stream see
 * the result and the host goes on. The next collective's wait, before MPI writes the pinned
 * buffer again, also covers that copy. */
#include <stdlib.h>

#include "comm/comm_internal.h"

#ifdef TG_HAVE_CUDA

#include <cuda_runtime.h>

struct tg_comm_stage {
    cudaStream_t stream; /* the compute stream (NULL = legacy default stream) */
    void *host;          /* pinned, cap bytes */
    size_t cap;
    int device;
};

tg_status tg_comm_stage_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_stage *s = calloc(1, sizeof *s);
    TG_CHECK_ALLOC(err, s);
    int n_dev = 0;
    TG_CUDA_CHECK(err, cudaGetDeviceCount(&n_dev));
    if (cuda_device < 0 || cuda_device >= n_dev)
        TG_FAIL(err, TG_ERR_ARG, "rank %d: CUDA device %d not in [0, %d)", c->rank, cuda_device, n_dev);
    TG_CUDA_CHECK(err, cudaSetDevice(cuda_device));
    s->device = cuda_device;
    s->stream = (cudaStream_t)compute_stream;
    c->stage = s;
    s = NULL;
cleanup:
    free(s);
    return st;
}

void tg_comm_stage_destroy(tg_comm *c) {
    tg_comm_stage *s = c->stage;
    if (!s) return;
    c->stage = NULL;
    if (s->host) {
        /* A host-to-device copy may still read it. The whole device, not the stream: the model
         * (and its stream) may already be gone. */
        cudaSetDevice(s->device);
        cudaDeviceSynchronize();
        cudaFreeHost(s->host);
    }
    free(s);
}

tg_status tg_comm_stage_wait(tg_comm *c, tg_error *err) {
    tg_status st = TG_OK;
    TG_CUDA_CHECK(err, cudaStreamSynchronize(c->stage->stream));
cleanup:
    return st;
}

tg_status tg_comm_stage_host(tg_comm *c, size_t bytes, void **host, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_stage *s = c->stage;
    if (bytes > s->cap) {
        TG_TRY(tg_comm_stage_wait(c, err)); /* no copy may still use the old buffer */
        if (s->host) cudaFreeHost(s->host);
        s->host = NULL;
        s->cap = 0;
        TG_CUDA_CHECK(err, cudaMallocHost(&s->host, bytes));
        s->cap = bytes;
    }
    *host = s->host;
cleanup:
    return st;
}

tg_status tg_comm_stage_copy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                             tg_error *err) {
    tg_status st = TG_OK;
    if (bytes)
        TG_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, bytes,
                                           to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
                                           c->stage->stream));
cleanup:
    return st;
}

tg_status tg_comm_stage_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    tg_status st = TG_OK;
    (void)c;
    TG_CUDA_CHECK(err, cudaMalloc(out, bytes ? bytes : 1));
cleanup:
    return st;
}

void tg_comm_stage_buf_free(tg_comm *c, void *p) {
    (void)c;
    cudaFree(p);
}

tg_status tg_comm_stage_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                               tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(tg_comm_stage_wait(c, err)); /* no copy of a collective may still use the buffer */
    if (bytes)
        TG_CUDA_CHECK(err, cudaMemcpy(dst, src, bytes,
                                      to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost));
cleanup:
    return st;
}

#else /* !TG_HAVE_CUDA */

static tg_status stage_missing(tg_error *err) {
    return tg_error_set(err, TG_ERR_UNSUPPORTED,
                        "truthgpt was built without CUDA (configure with -DTRUTHGPT_CUDA=ON)");
}

tg_status tg_comm_stage_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    (void)c, (void)cuda_device, (void)compute_stream;
    return stage_missing(err);
}
void tg_comm_stage_destroy(tg_comm *c) { (void)c; }
tg_status tg_comm_stage_wait(tg_comm *c, tg_error *err) {
    (void)c;
    return stage_missing(err);
}
tg_status tg_comm_stage_host(tg_comm *c, size_t bytes, void **host, tg_error *err) {
    (void)c, (void)bytes, (void)host;
    return stage_missing(err);
}
tg_status tg_comm_stage_copy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                             tg_error *err) {
    (void)c, (void)dst, (void)src, (void)bytes, (void)to_device;
    return stage_missing(err);
}
tg_status tg_comm_stage_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    (void)c, (void)bytes, (void)out;
    return stage_missing(err);
}
void tg_comm_stage_buf_free(tg_comm *c, void *p) { (void)c, (void)p; }
tg_status tg_comm_stage_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                               tg_error *err) {
    (void)c, (void)dst, (void)src, (void)bytes, (void)to_device;
    return stage_missing(err);
}

#endif
