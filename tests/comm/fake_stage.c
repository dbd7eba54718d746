/* tests/comm/fake_stage.c — a host-memory stand-in for comm/comm_stage.c, so that comm.c's "MPI on
 * device buffers" path (which part goes to the pinned buffer, which part comes back, the chunked
 * MPI calls on it) is checked on machines without a GPU: "device" buffers are malloc'd and the
 * copies are memcpy. The pinned buffer starts filled with garbage, as cudaMallocHost's may. Only
 * for test_comm_staged (tests/comm/CMakeLists.txt); the real CUDA code runs in the cuda tests. */
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"

struct tg_comm_stage {
    void *host;
    size_t cap;
};

tg_status tg_comm_stage_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    tg_status st = TG_OK;
    (void)cuda_device, (void)compute_stream;
    c->stage = calloc(1, sizeof *c->stage);
    TG_CHECK_ALLOC(err, c->stage);
cleanup:
    return st;
}

void tg_comm_stage_destroy(tg_comm *c) {
    if (!c->stage) return;
    free(c->stage->host);
    free(c->stage);
    c->stage = NULL;
}

tg_status tg_comm_stage_host(tg_comm *c, size_t bytes, void **host, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm_stage *s = c->stage;
    if (bytes > s->cap) {
        free(s->host);
        s->cap = 0;
        s->host = malloc(bytes);
        TG_CHECK_ALLOC(err, s->host);
        memset(s->host, 0xab, bytes);
        s->cap = bytes;
    }
    *host = s->host;
cleanup:
    return st;
}

tg_status tg_comm_stage_copy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                             tg_error *err) {
    (void)c, (void)to_device, (void)err;
    if (bytes) memcpy(dst, src, bytes);
    return TG_OK;
}

tg_status tg_comm_stage_wait(tg_comm *c, tg_error *err) {
    (void)c, (void)err;
    return TG_OK;
}

tg_status tg_comm_stage_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    tg_status st = TG_OK;
    (void)c;
    *out = malloc(bytes ? bytes : 1);
    TG_CHECK_ALLOC(err, *out);
cleanup:
    return st;
}

void tg_comm_stage_buf_free(tg_comm *c, void *p) {
    (void)c;
    free(p);
}

tg_status tg_comm_stage_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                               tg_error *err) {
    (void)c, (void)to_device, (void)err;
    if (bytes) memcpy(dst, src, bytes);
    return TG_OK;
}
