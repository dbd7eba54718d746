/* comm/comm_internal.h — the tg_comm struct and the NCCL backend's entry points, shared by
 * comm.c (launch detection, MPI, dispatch) and comm_nccl.c (NCCL + CUDA). Not public. */
#ifndef TG_COMM_INTERNAL_H
#define TG_COMM_INTERNAL_H

#include <mpi.h>

#include "comm/comm.h"

/* Checks an MPI call; on failure records file:line, the call and MPI's error string. */
#define TG_MPI_CHECK(err, call)                                                                \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) {                                                              \
            char s_[MPI_MAX_ERROR_STRING] = "";                                                \
            int n_ = 0;                                                                        \
            MPI_Error_string(rc_, s_, &n_);                                                    \
            st = tg_error_set_at((err), TG_ERR_MPI, __FILE__, __LINE__, "%s: %s", #call, s_);  \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

/* Checks a CUDA runtime call (in the CUDA builds of comm_nccl.c and comm_stage.c, which include
 * cuda_runtime.h); on failure records file:line, the call and CUDA's error name and string. */
#define TG_CUDA_CHECK(err, call)                                                               \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess) {                                                               \
            st = tg_error_set_at((err), TG_ERR_CUDA, __FILE__, __LINE__, "%s: %s (%s)", #call, \
                                 cudaGetErrorName(e_), cudaGetErrorString(e_));                \
            goto cleanup;                                                                      \
        }                                                                                      \
    } while (0)

typedef struct tg_comm_nccl tg_comm_nccl; /* defined in comm_nccl.c */
typedef struct tg_comm_stage tg_comm_stage; /* defined in comm_stage.c */

struct tg_comm {
    int rank, world;             /* in the job (MPI_COMM_WORLD order) */
    int local_rank, local_world; /* among the ranks sharing this node's memory */
    int mpi_up;                  /* MPI is initialised and usable (a launcher was detected) */
    int mpi_owned;               /* we called MPI_Init, so we call MPI_Finalize */
    MPI_Comm mpi_world;          /* dup of MPI_COMM_WORLD with MPI_ERRORS_RETURN */
    MPI_Comm mpi_local;          /* MPI_Comm_split_type(SHARED) of mpi_world */
    tg_comm_backend backend;
    size_t mpi_max_count;        /* elements per MPI call; larger counts are chunked */
    double timeout_s;            /* NCCL wait timeout */
    long long n_collectives;     /* collectives issued so far (for the fault switch) */
    int fault_rank;              /* TRUTHGPT_FAULT_RANK, -1 when unset */
    long long fault_at;          /* TRUTHGPT_FAULT_AT: fail from this collective on (0-based) */
    tg_comm_nccl *nccl;          /* NULL until tg_comm_use_nccl */
    tg_comm_stage *stage;        /* NULL until tg_comm_use_mpi_device */
};

/* NCCL backend (comm_nccl.c). Without CUDA these are stubs returning TG_ERR_UNSUPPORTED.
 * Each collective assumes the dtype/op/arguments were validated by the caller. */
tg_status tg_comm_nccl_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err);
void tg_comm_nccl_destroy(tg_comm *c);
void tg_comm_nccl_abort(tg_comm *c);
tg_status tg_comm_nccl_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                 tg_comm_op op, tg_error *err);
tg_status tg_comm_nccl_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                      tg_comm_op op, tg_error *err);
tg_status tg_comm_nccl_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                  tg_error *err);
tg_status tg_comm_nccl_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                                 tg_error *err);
tg_status tg_comm_nccl_sync(tg_comm *c, tg_error *err);
tg_status tg_comm_nccl_wait(tg_comm *c, void *stream, int comm_stream, tg_error *err);
tg_status tg_comm_nccl_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err);
void tg_comm_nccl_buf_free(tg_comm *c, void *p);
tg_status tg_comm_nccl_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                              tg_error *err);

/* MPI on device buffers (comm_stage.c): a pinned host buffer and the copies to and from it on
 * the compute stream. Without CUDA these are stubs returning TG_ERR_UNSUPPORTED.
 * stage_host: the pinned buffer, grown to at least `bytes` (waits for pending copies first);
 * stage_copy: enqueues one copy on the compute stream; stage_wait: waits for that stream. */
tg_status tg_comm_stage_create(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err);
void tg_comm_stage_destroy(tg_comm *c);
tg_status tg_comm_stage_host(tg_comm *c, size_t bytes, void **host, tg_error *err);
tg_status tg_comm_stage_copy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                             tg_error *err);
tg_status tg_comm_stage_wait(tg_comm *c, tg_error *err);
tg_status tg_comm_stage_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err);
void tg_comm_stage_buf_free(tg_comm *c, void *p);
tg_status tg_comm_stage_memcpy(tg_comm *c, void *dst, const void *src, size_t bytes, int to_device,
                               tg_error *err);

#endif
