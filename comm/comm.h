/* comm/comm.h — collectives across the ranks of a job; knows nothing of transformers.
 *
 * Two backends behind one interface:
 *   MPI  — host buffers, MPI collectives (CPU training, and always the bootstrap);
 *   NCCL — device buffers, its own CUDA stream; the unique id goes out by MPI_Bcast.
 * Without a launcher (no OMPI_/PMIX_/PMI_ variables) MPI is not initialised at all and the
 * job is world size 1: every collective is then a local no-op (or copy).
 *
 * All collectives are in place. reduce_scatter: buf holds world*count elements on entry; on
 * return buf[rank*count .. +count) holds the reduced shard (other parts are undefined).
 * all_gather: buf[rank*count .. +count) holds this rank's part on entry; all of buf on return. */
#ifndef TG_COMM_H
#define TG_COMM_H

#include <stddef.h>

#include "core/status.h"

typedef enum { TG_COMM_MPI = 0, TG_COMM_NCCL = 1 } tg_comm_backend;
typedef enum { TG_COMM_F32 = 0, TG_COMM_BF16 = 1, TG_COMM_F64 = 2, TG_COMM_I64 = 3 } tg_comm_dtype;
typedef enum { TG_COMM_SUM = 0, TG_COMM_AVG = 1, TG_COMM_MAX = 2 } tg_comm_op;

typedef struct tg_comm tg_comm;

/* Initialises MPI when launched by mpirun/srun (or does nothing for a plain run).
 * argc/argv may be NULL. Safe to call once per process. */
tg_status tg_comm_init(tg_comm **out, int *argc, char ***argv, tg_error *err);
/* Finalises (MPI_Finalize when we initialised it). */
void tg_comm_free(tg_comm *c);

int tg_comm_rank(const tg_comm *c);
int tg_comm_world(const tg_comm *c);
int tg_comm_local_rank(const tg_comm *c);  /* rank among the ranks of this node */
int tg_comm_local_world(const tg_comm *c);
tg_comm_backend tg_comm_active_backend(const tg_comm *c);
const char *tg_comm_backend_name(const tg_comm *c);

/* Switches data collectives to NCCL on CUDA device `cuda_device` (the caller picked it from
 * the local rank). Fails with TG_ERR_UNSUPPORTED when built without CUDA. Creates the comm
 * stream; compute_stream (cudaStream_t, may be NULL) is what collectives wait on. */
tg_status tg_comm_use_nccl(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err);

/* Host-side collectives (always MPI), for scalars, metadata and CPU training. */
tg_status tg_comm_barrier(tg_comm *c, tg_error *err);
tg_status tg_comm_bcast_host(tg_comm *c, void *buf, size_t bytes, int root, tg_error *err);
tg_status tg_comm_allgather_host(tg_comm *c, void *buf, size_t count_per_rank, tg_comm_dtype t,
                                 tg_error *err); /* in place, like tg_comm_all_gather */
tg_status tg_comm_allreduce_host(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err);

/* Data collectives on the active backend's buffers (host for MPI, device for NCCL).
 * On NCCL they are enqueued on the comm stream after the compute stream's work so far and
 * return at once; tg_comm_sync makes the compute stream wait for them. */
tg_status tg_comm_allreduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                            tg_error *err);
tg_status tg_comm_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err);
tg_status tg_comm_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_error *err);
tg_status tg_comm_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                            tg_error *err);
tg_status tg_comm_sync(tg_comm *c, tg_error *err);

/* Ends the whole job now (MPI_Abort / ncclCommAbort) after this rank failed: prints
 * "rank R failed: msg" first. Does not return when MPI is up; returns otherwise. */
void tg_comm_abort(tg_comm *c, int code, const char *msg);

#endif
