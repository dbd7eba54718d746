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

/* TG_COMM_MPI_DEVICE: MPI on device buffers, staged through pinned host memory (tg_comm_use_mpi_device). */
typedef enum { TG_COMM_MPI = 0, TG_COMM_NCCL = 1, TG_COMM_MPI_DEVICE = 2 } tg_comm_backend;
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
 * stream; compute_stream (cudaStream_t, may be NULL) is what collectives wait on. Makes
 * cuda_device current. Collective: every rank calls it (the NCCL id goes out by MPI). */
tg_status tg_comm_use_nccl(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err);

/* Switches data collectives to MPI on CUDA device buffers (device `cuda_device`, made current):
 * each one copies its input into a pinned host buffer on compute_stream (cudaStream_t, NULL =
 * legacy default stream), waits for that copy, runs the MPI collective there and enqueues the
 * copy of the result back on compute_stream, so later work on that stream sees it. No NCCL, so
 * several ranks may share one device. Reductions take f32/f64/i64 (bf16: TG_ERR_UNSUPPORTED);
 * all_gather and broadcast move bf16 too. The pinned buffer grows to the largest collective
 * (all of buf). TG_ERR_UNSUPPORTED when built without CUDA. Not collective. */
tg_status tg_comm_use_mpi_device(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err);
/* Device for this rank when ranks may share devices (TG_COMM_MPI_DEVICE): local rank modulo
 * n_devices. Fails (TG_ERR_CONFIG) when n_devices < 1. */
tg_status tg_comm_pick_cuda_device_shared(const tg_comm *c, int n_devices, int *device, tg_error *err);

/* Host-side collectives (always MPI), for scalars, metadata and CPU training. */
tg_status tg_comm_barrier(tg_comm *c, tg_error *err);
tg_status tg_comm_broadcast_host(tg_comm *c, void *buf, size_t bytes, int root, tg_error *err);
tg_status tg_comm_all_gather_host(tg_comm *c, void *buf, size_t count_per_rank, tg_comm_dtype t,
                                 tg_error *err); /* in place, like tg_comm_all_gather */
tg_status tg_comm_all_reduce_host(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err);

/* Data collectives on the active backend's buffers (host for MPI, device for NCCL and MPI_DEVICE).
 * On NCCL they are enqueued on the comm stream after the compute stream's work so far and
 * return at once; tg_comm_sync makes the compute stream wait for them. */
tg_status tg_comm_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                            tg_error *err);
tg_status tg_comm_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err);
tg_status tg_comm_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_error *err);
tg_status tg_comm_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                            tg_error *err);
tg_status tg_comm_sync(tg_comm *c, tg_error *err);

/* Uneven variants (MPI backend, host buffers; TG_ERR_UNSUPPORTED on NCCL), for a buffer cut at
 * boundaries that are not multiples of the world size, e.g. one layer's slice of the flat buffer
 * split by the ranks' ZeRO shards. counts[r] (world entries, zeros allowed) elements belong to
 * rank r, consecutively: rank r's part starts at counts[0] + ... + counts[r-1]. The total must
 * fit one MPI call (INT_MAX elements; TG_ERR_ARG otherwise).
 * reduce_scatter_v: buf holds every part on entry; on return this rank's part holds the
 * reduction (the other parts are undefined). all_gather_v: part (counts[rank] elements; it may
 * be this rank's place in buf) is this rank's; on return buf holds every rank's part. */
tg_status tg_comm_reduce_scatter_v(tg_comm *c, void *buf, const size_t *counts, tg_comm_dtype t, tg_comm_op op,
                                   tg_error *err);
tg_status tg_comm_all_gather_v(tg_comm *c, const void *part, void *buf, const size_t *counts, tg_comm_dtype t,
                               tg_error *err);

/* Ends the whole job now (MPI_Abort / ncclCommAbort) after this rank failed: prints
 * "truthgpt: rank R failed: msg" to stderr first. c may be NULL (init failed). Does not
 * return when MPI is up; returns otherwise (then the caller exits with `code`). */
void tg_comm_abort(tg_comm *c, int code, const char *msg);

/* ---- additions (see docs/comm.md) ---- */

/* Device for this rank: *device = local rank. Fails (TG_ERR_CONFIG, saying so) when this
 * node runs more ranks than it has devices, or n_devices < 1. */
tg_status tg_comm_pick_cuda_device(const tg_comm *c, int n_devices, int *device, tg_error *err);
/* This rank's share of the node's n_cores for OpenMP: the cores split evenly among the local
 * ranks (the first n_cores % local_world ranks get one more); at least 1. */
int tg_comm_cpu_threads(const tg_comm *c, int n_cores);
/* Number of visible CUDA devices. TG_ERR_UNSUPPORTED when built without CUDA, TG_ERR_CUDA
 * (with the driver's reason) when there is none. */
tg_status tg_comm_cuda_device_count(int *n, tg_error *err);
/* 1 when built with CUDA + NCCL, else 0. */
int tg_comm_have_nccl(void);

/* Waits (polling, no blocking device sync) until all collectives enqueued on the comm stream
 * are done; fails with TG_ERR_NCCL on an NCCL async error or after the timeout (a peer rank
 * died or hangs). No-op on MPI, whose collectives are complete on return; on MPI_DEVICE it
 * waits for the compute stream (the copies of results back to the device). */
tg_status tg_comm_wait(tg_comm *c, tg_error *err);
/* The same wait for any CUDA stream (cudaStream_t; NULL = legacy default stream), e.g. the
 * compute stream after tg_comm_sync, so an NCCL hang surfaces as an error, not a hang.
 * Without NCCL active: TG_ERR_UNSUPPORTED. */
tg_status tg_comm_wait_stream(tg_comm *c, void *stream, tg_error *err);
/* Timeout of the waits above, in seconds (default 120 or env TRUTHGPT_COMM_TIMEOUT; `truthgpt
 * train` sets its config key comm.timeout here). */
void tg_comm_set_timeout(tg_comm *c, double seconds);
/* Largest element count passed to one MPI call (default INT_MAX; larger counts are chunked).
 * Tests lower it to exercise the chunking on small buffers. 0 restores the default. */
void tg_comm_set_mpi_max_count(tg_comm *c, size_t max_count);

/* Buffers for the data collectives of the active backend: host memory on MPI, device memory
 * on NCCL and MPI_DEVICE (allocated on the comm's device). For benchmarks and tests; the trainer uses its
 * own allocations. write/read copy from/to host memory and first wait for the comm stream,
 * so no collective is still using the buffer. */
tg_status tg_comm_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err);
void tg_comm_buf_free(tg_comm *c, void *p);
tg_status tg_comm_buf_write(tg_comm *c, void *dst, const void *src_host, size_t bytes, tg_error *err);
tg_status tg_comm_buf_read(tg_comm *c, void *dst_host, const void *src, size_t bytes, tg_error *err);
size_t tg_comm_dtype_size(tg_comm_dtype t);
const char *tg_comm_dtype_name(tg_comm_dtype t);

#endif
