/* comm/comm.c — launch detection, the MPI backend, and dispatch to the NCCL backend.
 *
 * A job is "launched" when a process manager left its variables in the environment
 * (OMPI_COMM_WORLD_SIZE: Open MPI's mpirun; PMIX_RANK: PMIx, i.e. srun --mpi=pmix or prterun;
 * PMI_RANK / PMI_SIZE: MPICH/hydra and srun --mpi=pmi2). Only then is MPI initialised: a
 * plain `truthgpt train` never touches MPI and runs as world size 1, where every collective
 * is a local no-op. TRUTHGPT_MPI=1/0 forces the decision either way. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/comm_internal.h"
#include "core/env.h"
#include "core/fault.h"
#include "core/timer.h"

/* Temporary buffers of the chunked reduce-scatter/all-gather hold at most this many elements. */
#define TG_COMM_TMP_ELEMS ((size_t)1 << 24)

/* ------------------------------------------------------------------------------------------ */
/* small helpers */

size_t tg_comm_dtype_size(tg_comm_dtype t) {
    switch (t) {
    case TG_COMM_F32: return 4;
    case TG_COMM_BF16: return 2;
    case TG_COMM_F64: return 8;
    case TG_COMM_I64: return 8;
    }
    return 0;
}

const char *tg_comm_dtype_name(tg_comm_dtype t) {
    switch (t) {
    case TG_COMM_F32: return "float";
    case TG_COMM_BF16: return "bfloat16";
    case TG_COMM_F64: return "double";
    case TG_COMM_I64: return "int64";
    }
    return "?";
}

static MPI_Datatype comm_mpi_type(tg_comm_dtype t) {
    switch (t) {
    case TG_COMM_F32: return MPI_FLOAT;
    case TG_COMM_F64: return MPI_DOUBLE;
    case TG_COMM_I64: return MPI_INT64_T;
    case TG_COMM_BF16: return MPI_UINT16_T; /* moved only: comm_begin refuses bf16 reductions */
    }
    return MPI_DATATYPE_NULL;
}

static size_t comm_min(size_t a, size_t b) { return a < b ? a : b; }

/* comm's environment: TRUTHGPT_COMM_TIMEOUT and, in test builds, the fault switch. */
static tg_status comm_read_env(tg_comm *c, tg_error *err) {
    tg_status st = TG_OK;
    long long fault_rank = -1;
    TG_TRY(tg_env_get_double("TRUTHGPT_COMM_TIMEOUT", &c->timeout_s, err));
    if (!(c->timeout_s > 0))
        TG_FAIL(err, TG_ERR_CONFIG, "TRUTHGPT_COMM_TIMEOUT must be > 0 seconds");
    TG_TRY(tg_fault_get(TG_FAULT_COMM_RANK, -1, &fault_rank, err));
    TG_TRY(tg_fault_get(TG_FAULT_COMM_AT, 0, &c->fault_at, err));
    c->fault_rank = fault_rank > INT_MAX ? INT_MAX : (int)fault_rank;
cleanup:
    return st;
}

/* Decides whether to initialise MPI (see the top of this file). srun without a PMI plugin
 * would silently start N independent world-size-1 jobs, so that case is an error. */
static tg_status comm_detect_launcher(int *launched, tg_error *err) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE"};
    int force = -1;
    *launched = 0;
    tg_status st = tg_env_get_flag("TRUTHGPT_MPI", &force, err);
    if (st != TG_OK) return st;
    if (force >= 0) {
        *launched = force;
        return TG_OK;
    }
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) {
            *launched = 1;
            return TG_OK;
        }
    }
    long long ntasks = 0; /* SLURM's variable: a value we cannot read is not ours to reject */
    if (tg_env_get_count("SLURM_STEP_NUM_TASKS", &ntasks, NULL) == TG_OK && ntasks > 1)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "srun started %lld tasks but left no PMI/PMIx environment, so they "
                            "cannot form one MPI job: use `srun --mpi=pmix ...` (or mpirun)",
                            ntasks);
    return TG_OK;
}

/* Every collective goes through here first: validates the arguments, counts the call and
 * fires the test-only fault switch (TRUTHGPT_FAULT_RANK / TRUTHGPT_FAULT_AT). */
static tg_status comm_begin(tg_comm *c, const char *what, const void *buf, size_t count,
                            tg_comm_dtype t, tg_comm_op op, int on_mpi, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "%s: comm is NULL", what);
    if (tg_comm_dtype_size(t) == 0)
        return tg_error_set(err, TG_ERR_ARG, "%s: bad dtype %d", what, (int)t);
    if (op != TG_COMM_SUM && op != TG_COMM_AVG && op != TG_COMM_MAX)
        return tg_error_set(err, TG_ERR_ARG, "%s: bad reduction op %d", what, (int)op);
    if (count > 0 && buf == NULL)
        return tg_error_set(err, TG_ERR_ARG, "%s: buffer is NULL for %zu elements", what, count);
    if (on_mpi && t == TG_COMM_BF16)
        return tg_error_set(err, TG_ERR_UNSUPPORTED, "%s: bfloat16 is not supported on MPI", what);
    long long n = c->n_collectives++;
    if (TG_FAULT_ENABLED && c->fault_rank == c->rank && n >= c->fault_at)
        return tg_error_set(err, TG_ERR_INTERNAL,
                            "injected fault in %s (collective #%lld on rank %d, "
                            "TRUTHGPT_FAULT_RANK=%d)",
                            what, n, c->rank, c->fault_rank);
    return TG_OK;
}

/* AVG on MPI = SUM, then divide by the world size (integers truncate toward zero). */
static void comm_scale_avg(void *buf, size_t count, tg_comm_dtype t, int world) {
    if (t == TG_COMM_F32) {
        float *p = buf;
        for (size_t i = 0; i < count; i++) p[i] /= (float)world;
    } else if (t == TG_COMM_F64) {
        double *p = buf;
        for (size_t i = 0; i < count; i++) p[i] /= (double)world;
    } else if (t == TG_COMM_I64) {
        int64_t *p = buf;
        for (size_t i = 0; i < count; i++) p[i] /= world;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* MPI backend (host buffers). Callers ensure world > 1, count > 0 and a non-bf16 dtype. */

/* Waits for a non-blocking collective, so a stopped or dead peer becomes an error after
 * c->timeout_s (comm.timeout) instead of a hang. MPI_Test drives Open MPI's progress (and
 * yields inside with mpi_yield_when_idle): tested back to back for the first millisecond (most
 * collectives end there), then with 50 us sleeps so a long wait does not burn a core. */
static tg_status comm_mpi_wait(tg_comm *c, MPI_Request *req, const char *what, tg_error *err) {
    tg_status st = TG_OK;
    double t0 = tg_now_ms();
    for (unsigned long i = 0;; i++) {
        int done = 0;
        TG_MPI_CHECK(err, MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) break;
        if (i % 64 != 63) continue; /* the clock every 64 tests */
        double waited = tg_now_ms() - t0;
        if (waited > c->timeout_s * 1e3) {
            char peers[64];
            if (c->world == 2) snprintf(peers, sizeof peers, "peer rank %d", 1 - c->rank);
            else snprintf(peers, sizeof peers, "one of the other %d ranks", c->world - 1);
            TG_FAIL(err, TG_ERR_MPI,
                    "rank %d: MPI %s did not finish within %.0f s (comm.timeout): %s is stopped, "
                    "dead or far behind",
                    c->rank, what, c->timeout_s, peers);
        }
        if (waited >= 1.0) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
    }
cleanup:
    return st;
}

/* A non-blocking MPI collective call (its last argument the request) waited for with the timeout. */
#define COMM_MPI_RUN(c, what, err, icall_with_req)                                              \
    do {                                                                                       \
        MPI_Request req_ = MPI_REQUEST_NULL;                                                   \
        MPI_Request *rq_ = &req_;                                                              \
        TG_MPI_CHECK(err, icall_with_req);                                                     \
        TG_TRY(comm_mpi_wait(c, rq_, what, err));                                              \
    } while (0)

static tg_status comm_mpi_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                    tg_comm_op op, tg_error *err) {
    tg_status st = TG_OK;
    size_t es = tg_comm_dtype_size(t);
    MPI_Op mop = op == TG_COMM_MAX ? MPI_MAX : MPI_SUM;
    for (size_t off = 0, n; off < count; off += n) { /* chunks of at most INT_MAX elements */
        n = comm_min(count - off, c->mpi_max_count);
        COMM_MPI_RUN(c, "all_reduce", err, MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + off * es, (int)n,
                                                          comm_mpi_type(t), mop, c->mpi_world, rq_));
    }
    if (op == TG_COMM_AVG) comm_scale_avg(buf, count, t, c->world);
cleanup:
    return st;
}

/* The temporary of the chunked reduce-scatter/all-gather: world chunks of *k elements, *k as many
 * as one MPI call may pass for all ranks together and TG_COMM_TMP_ELEMS allows (at least 1). */
static tg_status comm_chunk_alloc(const tg_comm *c, size_t count, size_t es, size_t *k, char **tmp,
                                  tg_error *err) {
    tg_status st = TG_OK;
    size_t W = (size_t)c->world;
    *k = comm_min(comm_min(count, c->mpi_max_count / W), TG_COMM_TMP_ELEMS / W);
    if (*k == 0) *k = 1;
    *tmp = malloc(W * *k * es);
    TG_CHECK_ALLOC(err, *tmp);
cleanup:
    return st;
}

/* In place: buf holds world*count elements; shard r (elements [r*count, (r+1)*count)) of the
 * reduction lands in buf[rank*count ..]. Small enough: one in-place MPI_Reduce_scatter_block
 * (result at buf[0]) then a memmove. Larger: chunks [off, off+n) of every shard are packed
 * into a temporary, reduced, and the own chunk copied back (it was already consumed). */
static tg_status comm_mpi_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                         tg_comm_op op, tg_error *err) {
    tg_status st = TG_OK;
    size_t es = tg_comm_dtype_size(t), W = (size_t)c->world, R = (size_t)c->rank;
    MPI_Op mop = op == TG_COMM_MAX ? MPI_MAX : MPI_SUM;
    char *b = buf, *tmp = NULL;
    if (count <= c->mpi_max_count / W) {
        COMM_MPI_RUN(c, "reduce_scatter", err, MPI_Ireduce_scatter_block(MPI_IN_PLACE, b, (int)count,
                                                   comm_mpi_type(t), mop, c->mpi_world, rq_));
        if (R > 0) memmove(b + R * count * es, b, count * es);
    } else {
        size_t k = 0;
        TG_TRY(comm_chunk_alloc(c, count, es, &k, &tmp, err));
        for (size_t off = 0, n; off < count; off += n) {
            n = comm_min(k, count - off);
            for (size_t r = 0; r < W; r++) memcpy(tmp + r * n * es, b + (r * count + off) * es, n * es);
            COMM_MPI_RUN(c, "reduce_scatter", err, MPI_Ireduce_scatter_block(MPI_IN_PLACE, tmp, (int)n,
                                                       comm_mpi_type(t), mop, c->mpi_world, rq_));
            memcpy(b + (R * count + off) * es, tmp, n * es);
        }
    }
    if (op == TG_COMM_AVG) comm_scale_avg(b + R * count * es, count, t, c->world);
cleanup:
    free(tmp);
    return st;
}

/* In place: buf[rank*count ..] holds this rank's part; all of buf (world*count) on return.
 * Chunked like reduce_scatter when a call would pass more than mpi_max_count elements. */
static tg_status comm_mpi_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t,
                                     tg_error *err) {
    tg_status st = TG_OK;
    size_t es = tg_comm_dtype_size(t), W = (size_t)c->world, R = (size_t)c->rank;
    char *b = buf, *tmp = NULL;
    if (count <= c->mpi_max_count / W) {
        COMM_MPI_RUN(c, "all_gather", err, MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, b, (int)count,
                                                          comm_mpi_type(t), c->mpi_world, rq_));
    } else {
        size_t k = 0;
        TG_TRY(comm_chunk_alloc(c, count, es, &k, &tmp, err));
        for (size_t off = 0, n; off < count; off += n) {
            n = comm_min(k, count - off);
            memcpy(tmp + R * n * es, b + (R * count + off) * es, n * es);
            COMM_MPI_RUN(c, "all_gather", err, MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, tmp, (int)n,
                                                              comm_mpi_type(t), c->mpi_world, rq_));
            for (size_t r = 0; r < W; r++) memcpy(b + (r * count + off) * es, tmp + r * n * es, n * es);
        }
    }
cleanup:
    free(tmp);
    return st;
}

static tg_status comm_mpi_broadcast(tg_comm *c, void *buf, size_t count, MPI_Datatype type, size_t es,
                                int root, tg_error *err) {
    tg_status st = TG_OK;
    for (size_t off = 0, n; off < count; off += n) {
        n = comm_min(count - off, c->mpi_max_count);
        COMM_MPI_RUN(c, "broadcast", err, MPI_Ibcast((char *)buf + off * es, (int)n, type, root, c->mpi_world, rq_));
    }
cleanup:
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* lifecycle */

tg_status tg_comm_init(tg_comm **out, int *argc, char ***argv, tg_error *err) {
    tg_status st = TG_OK;
    tg_comm *c = NULL;
    if (!out) return tg_error_set(err, TG_ERR_ARG, "tg_comm_init: out is NULL");
    *out = NULL;
    c = calloc(1, sizeof *c);
    TG_CHECK_ALLOC(err, c);
    c->world = c->local_world = 1;
    c->mpi_world = c->mpi_local = MPI_COMM_NULL;
    c->backend = TG_COMM_MPI;
    c->mpi_max_count = INT_MAX;
    c->timeout_s = 120.0;
    c->fault_rank = -1;
    TG_TRY(comm_read_env(c, err));

    int launched = 0, already = 0, finalized = 0;
    TG_TRY(comm_detect_launcher(&launched, err));
    TG_MPI_CHECK(err, MPI_Initialized(&already));
    TG_MPI_CHECK(err, MPI_Finalized(&finalized));
    if (finalized) TG_FAIL(err, TG_ERR_MPI, "tg_comm_init: MPI was already finalized");
    if (launched || already) {
        if (!already) {
            /* FUNNELED: only the main thread calls MPI (OpenMP threads never do). */
            int provided = 0;
            TG_MPI_CHECK(err, MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
            c->mpi_owned = 1;
        }
        c->mpi_up = 1;
        /* Our own communicator, so that errors come back as codes instead of aborting. */
        TG_MPI_CHECK(err, MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi_world));
        TG_MPI_CHECK(err, MPI_Comm_set_errhandler(c->mpi_world, MPI_ERRORS_RETURN));
        TG_MPI_CHECK(err, MPI_Comm_rank(c->mpi_world, &c->rank));
        TG_MPI_CHECK(err, MPI_Comm_size(c->mpi_world, &c->world));
        TG_MPI_CHECK(err, MPI_Comm_split_type(c->mpi_world, MPI_COMM_TYPE_SHARED, c->rank,
                                              MPI_INFO_NULL, &c->mpi_local));
        TG_MPI_CHECK(err, MPI_Comm_rank(c->mpi_local, &c->local_rank));
        TG_MPI_CHECK(err, MPI_Comm_size(c->mpi_local, &c->local_world));
    }
    *out = c;
    c = NULL;
cleanup:
    /* On failure MPI stays initialised on purpose: the other ranks may be inside a collective,
     * and tg_comm_abort(NULL, ...) can still end the whole job. */
    free(c);
    return st;
}

void tg_comm_free(tg_comm *c) {
    if (!c) return;
    if (c->nccl) tg_comm_nccl_destroy(c);
    if (c->stage) tg_comm_stage_destroy(c);
    if (c->mpi_up) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) {
            if (c->mpi_local != MPI_COMM_NULL) MPI_Comm_free(&c->mpi_local);
            if (c->mpi_world != MPI_COMM_NULL) MPI_Comm_free(&c->mpi_world);
            if (c->mpi_owned) MPI_Finalize();
        }
    }
    free(c);
}

int tg_comm_rank(const tg_comm *c) { return c ? c->rank : 0; }
int tg_comm_world(const tg_comm *c) { return c ? c->world : 1; }
int tg_comm_local_rank(const tg_comm *c) { return c ? c->local_rank : 0; }
int tg_comm_local_world(const tg_comm *c) { return c ? c->local_world : 1; }
tg_comm_backend tg_comm_active_backend(const tg_comm *c) { return c ? c->backend : TG_COMM_MPI; }

const char *tg_comm_backend_name(const tg_comm *c) {
    if (c && c->backend == TG_COMM_NCCL) return "nccl";
    if (c && c->backend == TG_COMM_MPI_DEVICE) return "mpi (device buffers staged through pinned host memory)";
    return (c && c->mpi_up) ? "mpi" : "mpi (not launched, world size 1)";
}

void tg_comm_set_timeout(tg_comm *c, double seconds) {
    if (c && seconds > 0) c->timeout_s = seconds;
}

void tg_comm_set_mpi_max_count(tg_comm *c, size_t max_count) {
    if (c) c->mpi_max_count = (max_count == 0 || max_count > INT_MAX) ? (size_t)INT_MAX : max_count;
}

tg_status tg_comm_pick_cuda_device(const tg_comm *c, int n_devices, int *device, tg_error *err) {
    int lr = tg_comm_local_rank(c), lw = tg_comm_local_world(c);
    if (!device) return tg_error_set(err, TG_ERR_ARG, "tg_comm_pick_cuda_device: device is NULL");
    if (n_devices < 1)
        return tg_error_set(err, TG_ERR_CONFIG, "rank %d: no CUDA devices on this node",
                            tg_comm_rank(c));
    if (lw > n_devices)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "%d ranks run on this node but it has only %d CUDA device(s): launch at "
                            "most %d ranks per node (e.g. mpirun --npernode %d)",
                            lw, n_devices, n_devices, n_devices);
    *device = lr;
    return TG_OK;
}

tg_status tg_comm_pick_cuda_device_shared(const tg_comm *c, int n_devices, int *device, tg_error *err) {
    if (!device) return tg_error_set(err, TG_ERR_ARG, "tg_comm_pick_cuda_device_shared: device is NULL");
    if (n_devices < 1)
        return tg_error_set(err, TG_ERR_CONFIG, "rank %d: no CUDA devices on this node", tg_comm_rank(c));
    *device = tg_comm_local_rank(c) % n_devices;
    return TG_OK;
}

int tg_comm_cpu_threads(const tg_comm *c, int n_cores) {
    int lr = tg_comm_local_rank(c), lw = tg_comm_local_world(c);
    if (n_cores < 1 || lw < 1) return 1;
    int n = n_cores / lw + (lr < n_cores % lw ? 1 : 0);
    return n < 1 ? 1 : n;
}

int tg_comm_have_nccl(void) {
#ifdef TG_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

tg_status tg_comm_use_nccl(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_use_nccl: comm is NULL");
    if (c->nccl) return tg_error_set(err, TG_ERR_ARG, "tg_comm_use_nccl: NCCL is already active");
    if (c->stage) return tg_error_set(err, TG_ERR_ARG, "tg_comm_use_nccl: MPI on device buffers is active");
    tg_status st = tg_comm_nccl_create(c, cuda_device, compute_stream, err);
    if (st == TG_OK) c->backend = TG_COMM_NCCL;
    return st;
}

tg_status tg_comm_use_mpi_device(tg_comm *c, int cuda_device, void *compute_stream, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_use_mpi_device: comm is NULL");
    if (c->nccl || c->stage)
        return tg_error_set(err, TG_ERR_ARG, "tg_comm_use_mpi_device: a device backend is already active");
    tg_status st = tg_comm_stage_create(c, cuda_device, compute_stream, err);
    if (st == TG_OK) c->backend = TG_COMM_MPI_DEVICE;
    return st;
}

void tg_comm_abort(tg_comm *c, int code, const char *msg) {
    int rank = c ? c->rank : 0, up = 0, finalized = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&finalized);
    if (!c && up && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    fprintf(stderr, "truthgpt: rank %d failed: %s\n", rank, msg ? msg : "(no message)");
    fflush(stderr);
    if (c && c->nccl) tg_comm_nccl_abort(c); /* so no kernel keeps waiting for a dead peer */
    if (up && !finalized) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}

/* ------------------------------------------------------------------------------------------ */
/* host collectives: always MPI, host memory */

tg_status tg_comm_barrier(tg_comm *c, tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(comm_begin(c, "barrier", NULL, 0, TG_COMM_F32, TG_COMM_SUM, 1, err));
    if (c->world > 1) COMM_MPI_RUN(c, "barrier", err, MPI_Ibarrier(c->mpi_world, rq_));
cleanup:
    return st;
}

tg_status tg_comm_broadcast_host(tg_comm *c, void *buf, size_t bytes, int root, tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(comm_begin(c, "broadcast_host", buf, bytes, TG_COMM_F32, TG_COMM_SUM, 1, err));
    if (root < 0 || root >= c->world)
        TG_FAIL(err, TG_ERR_ARG, "broadcast_host: root %d not in [0, %d)", root, c->world);
    if (c->world > 1 && bytes > 0) TG_TRY(comm_mpi_broadcast(c, buf, bytes, MPI_BYTE, 1, root, err));
cleanup:
    return st;
}

tg_status tg_comm_all_gather_host(tg_comm *c, void *buf, size_t count_per_rank, tg_comm_dtype t,
                                 tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(comm_begin(c, "all_gather_host", buf, count_per_rank, t, TG_COMM_SUM, 1, err));
    if (c->world > 1 && count_per_rank > 0)
        TG_TRY(comm_mpi_all_gather(c, buf, count_per_rank, t, err));
cleanup:
    return st;
}

tg_status tg_comm_all_reduce_host(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(comm_begin(c, "all_reduce_host", buf, count, t, op, 1, err));
    if (c->world > 1 && count > 0) TG_TRY(comm_mpi_all_reduce(c, buf, count, t, op, err));
cleanup:
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* data collectives: the active backend */

typedef enum { COMM_ALL_REDUCE, COMM_REDUCE_SCATTER, COMM_ALL_GATHER, COMM_BROADCAST } comm_coll;

static tg_status comm_staged_run(tg_comm *c, comm_coll coll, void *buf, size_t count,
                                 tg_comm_dtype t, tg_comm_op op, int root, tg_error *err);

/* The one flow of every data collective: validate and count the call; nothing to move for zero
 * elements or on MPI at world size 1; else the active backend. `root` is broadcast's only. */
static tg_status comm_data_run(tg_comm *c, comm_coll coll, const char *what, void *buf,
                               size_t count, tg_comm_dtype t, tg_comm_op op, int root,
                               tg_error *err) {
    tg_status st = TG_OK;
    /* bf16 is refused on MPI, except as data moved (not reduced) between device buffers. */
    int reduces = coll == COMM_ALL_REDUCE || coll == COMM_REDUCE_SCATTER;
    TG_TRY(comm_begin(c, what, buf, count, t, op, c && !c->nccl && (!c->stage || reduces), err));
    if (coll == COMM_BROADCAST && (root < 0 || root >= c->world))
        TG_FAIL(err, TG_ERR_ARG, "%s: root %d not in [0, %d)", what, root, c->world);
    if (count == 0 || (!c->nccl && c->world == 1)) goto cleanup;
    if (c->stage) {
        st = comm_staged_run(c, coll, buf, count, t, op, root, err);
        goto cleanup;
    }
    switch (coll) {
    case COMM_ALL_REDUCE:
        st = c->nccl ? tg_comm_nccl_all_reduce(c, buf, count, t, op, err)
                     : comm_mpi_all_reduce(c, buf, count, t, op, err);
        break;
    case COMM_REDUCE_SCATTER:
        st = c->nccl ? tg_comm_nccl_reduce_scatter(c, buf, count, t, op, err)
                     : comm_mpi_reduce_scatter(c, buf, count, t, op, err);
        break;
    case COMM_ALL_GATHER:
        st = c->nccl ? tg_comm_nccl_all_gather(c, buf, count, t, err)
                     : comm_mpi_all_gather(c, buf, count, t, err);
        break;
    case COMM_BROADCAST:
        st = c->nccl ? tg_comm_nccl_broadcast(c, buf, count, t, root, err)
                     : comm_mpi_broadcast(c, buf, count, comm_mpi_type(t), tg_comm_dtype_size(t),
                                      root, err);
        break;
    }
cleanup:
    return st;
}

/* MPI on device buffers: the part of buf this rank contributes goes to the pinned buffer (at the
 * same offset), MPI runs there as on host memory, and the part of the result this rank keeps
 * goes back (reduce_scatter: its shard; all_gather: all of it). The wait before MPI also covers
 * the previous collective's copy back, which read the same pinned buffer. */
static tg_status comm_staged_run(tg_comm *c, comm_coll coll, void *buf, size_t count,
                                 tg_comm_dtype t, tg_comm_op op, int root, tg_error *err) {
    tg_status st = TG_OK;
    size_t es = tg_comm_dtype_size(t), W = (size_t)c->world, R = (size_t)c->rank;
    int sharded = coll == COMM_REDUCE_SCATTER || coll == COMM_ALL_GATHER;
    size_t total = (sharded ? W : 1) * count * es;
    size_t in_off = 0, in_len = total, out_off = 0, out_len = total;
    if (coll == COMM_REDUCE_SCATTER) out_off = R * count * es, out_len = count * es;
    if (coll == COMM_ALL_GATHER) in_off = R * count * es, in_len = count * es;
    if (coll == COMM_BROADCAST && c->rank != root) in_len = 0;
    char *h = NULL, *d = buf;
    TG_TRY(tg_comm_stage_host(c, total, (void **)&h, err));
    TG_TRY(tg_comm_stage_copy(c, h + in_off, d + in_off, in_len, 0, err));
    TG_TRY(tg_comm_stage_wait(c, err));
    switch (coll) {
    case COMM_ALL_REDUCE: TG_TRY(comm_mpi_all_reduce(c, h, count, t, op, err)); break;
    case COMM_REDUCE_SCATTER: TG_TRY(comm_mpi_reduce_scatter(c, h, count, t, op, err)); break;
    case COMM_ALL_GATHER: TG_TRY(comm_mpi_all_gather(c, h, count, t, err)); break;
    case COMM_BROADCAST: TG_TRY(comm_mpi_broadcast(c, h, count, comm_mpi_type(t), es, root, err)); break;
    }
    TG_TRY(tg_comm_stage_copy(c, d + out_off, h + out_off, out_len, 1, err));
cleanup:
    return st;
}

tg_status tg_comm_all_reduce(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                            tg_error *err) {
    return comm_data_run(c, COMM_ALL_REDUCE, "all_reduce", buf, count, t, op, 0, err);
}

tg_status tg_comm_reduce_scatter(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_comm_op op,
                                 tg_error *err) {
    return comm_data_run(c, COMM_REDUCE_SCATTER, "reduce_scatter", buf, count, t, op, 0, err);
}

tg_status tg_comm_all_gather(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, tg_error *err) {
    return comm_data_run(c, COMM_ALL_GATHER, "all_gather", buf, count, t, TG_COMM_SUM, 0, err);
}

tg_status tg_comm_broadcast(tg_comm *c, void *buf, size_t count, tg_comm_dtype t, int root,
                            tg_error *err) {
    return comm_data_run(c, COMM_BROADCAST, "broadcast", buf, count, t, TG_COMM_SUM, root, err);
}

/* The int counts and displacements of a v-collective; TG_ERR_ARG when the total exceeds INT_MAX. */
static tg_status comm_v_counts(const tg_comm *c, const char *what, const size_t *counts, int *icounts, int *idispls,
                               size_t *total, tg_error *err) {
    size_t off = 0;
    for (int r = 0; r < c->world; r++) {
        if (counts[r] > (size_t)INT_MAX - off)
            return tg_error_set(err, TG_ERR_ARG, "%s: more than %d elements in one call", what, INT_MAX);
        icounts[r] = (int)counts[r];
        idispls[r] = (int)off;
        off += counts[r];
    }
    *total = off;
    return TG_OK;
}

/* The shared steps of the v-collectives: arguments, the per-rank int arrays (freed by the caller). */
static tg_status comm_v_begin(tg_comm *c, const char *what, const void *buf, const size_t *counts, tg_comm_dtype t,
                              tg_comm_op op, int **icounts, int **idispls, size_t *total, tg_error *err) {
    tg_status st = TG_OK;
    *icounts = *idispls = NULL;
    if (!c || !counts) return tg_error_set(err, TG_ERR_ARG, "%s: NULL comm or counts", what);
    if (c->nccl) return tg_error_set(err, TG_ERR_UNSUPPORTED, "%s: MPI (host buffers) only, NCCL is active", what);
    *icounts = malloc((size_t)c->world * sizeof(int));
    *idispls = malloc((size_t)c->world * sizeof(int));
    TG_CHECK_ALLOC(err, *icounts);
    TG_CHECK_ALLOC(err, *idispls);
    TG_TRY(comm_v_counts(c, what, counts, *icounts, *idispls, total, err));
    TG_TRY(comm_begin(c, what, buf, *total, t, op, 1, err));
cleanup:
    return st;
}

tg_status tg_comm_reduce_scatter_v(tg_comm *c, void *buf, const size_t *counts, tg_comm_dtype t, tg_comm_op op,
                                   tg_error *err) {
    tg_status st = TG_OK;
    int *ic = NULL, *id = NULL;
    size_t total = 0;
    TG_TRY(comm_v_begin(c, "reduce_scatter_v", buf, counts, t, op, &ic, &id, &total, err));
    if (c->world > 1 && total > 0) {
        size_t es = tg_comm_dtype_size(t), R = (size_t)c->rank;
        char *b = buf;
        COMM_MPI_RUN(c, "reduce_scatter_v", err, MPI_Ireduce_scatter(MPI_IN_PLACE, b, ic, comm_mpi_type(t),
                                                     op == TG_COMM_MAX ? MPI_MAX : MPI_SUM, c->mpi_world, rq_));
        /* in place, MPI leaves the result at the start of buf */
        if (id[R] > 0 && counts[R] > 0) memmove(b + (size_t)id[R] * es, b, counts[R] * es);
        if (op == TG_COMM_AVG) comm_scale_avg(b + (size_t)id[R] * es, counts[R], t, c->world);
    }
cleanup:
    free(ic);
    free(id);
    return st;
}

tg_status tg_comm_all_gather_v(tg_comm *c, const void *part, void *buf, const size_t *counts, tg_comm_dtype t,
                               tg_error *err) {
    tg_status st = TG_OK;
    int *ic = NULL, *id = NULL;
    size_t total = 0;
    TG_TRY(comm_v_begin(c, "all_gather_v", buf, counts, t, TG_COMM_SUM, &ic, &id, &total, err));
    size_t es = tg_comm_dtype_size(t), R = (size_t)c->rank;
    if (counts[R] > 0) {
        if (!part) TG_FAIL(err, TG_ERR_ARG, "all_gather_v: part is NULL for %zu elements", counts[R]);
        char *dst = (char *)buf + (size_t)id[R] * es;
        if (dst != part) memmove(dst, part, counts[R] * es);
    }
    if (c->world > 1 && total > 0)
        COMM_MPI_RUN(c, "all_gather_v", err, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, ic, id,
                                                             comm_mpi_type(t), c->mpi_world, rq_));
cleanup:
    free(ic);
    free(id);
    return st;
}

tg_status tg_comm_sync(tg_comm *c, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_sync: comm is NULL");
    return c->nccl ? tg_comm_nccl_sync(c, err) : TG_OK;
}

tg_status tg_comm_wait(tg_comm *c, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_wait: comm is NULL");
    if (c->stage) return tg_comm_stage_wait(c, err);
    return c->nccl ? tg_comm_nccl_wait(c, NULL, 1, err) : TG_OK;
}

tg_status tg_comm_wait_stream(tg_comm *c, void *stream, tg_error *err) {
    if (!c || !c->nccl)
        return tg_error_set(err, TG_ERR_UNSUPPORTED, "tg_comm_wait_stream: NCCL is not active");
    return tg_comm_nccl_wait(c, stream, 0, err);
}

/* ------------------------------------------------------------------------------------------ */
/* buffers of the active backend */

tg_status tg_comm_buf_alloc(tg_comm *c, size_t bytes, void **out, tg_error *err) {
    tg_status st = TG_OK;
    if (!c || !out) return tg_error_set(err, TG_ERR_ARG, "tg_comm_buf_alloc: NULL argument");
    *out = NULL;
    if (c->nccl) return tg_comm_nccl_buf_alloc(c, bytes, out, err);
    if (c->stage) return tg_comm_stage_buf_alloc(c, bytes, out, err);
    void *p = malloc(bytes ? bytes : 1);
    TG_CHECK_ALLOC(err, p);
    *out = p;
cleanup:
    return st;
}

void tg_comm_buf_free(tg_comm *c, void *p) {
    if (!p) return;
    if (c && c->nccl) tg_comm_nccl_buf_free(c, p);
    else if (c && c->stage) tg_comm_stage_buf_free(c, p);
    else free(p);
}

tg_status tg_comm_buf_write(tg_comm *c, void *dst, const void *src_host, size_t bytes, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_buf_write: comm is NULL");
    if (c->nccl) return tg_comm_nccl_memcpy(c, dst, src_host, bytes, 1, err);
    if (c->stage) return tg_comm_stage_memcpy(c, dst, src_host, bytes, 1, err);
    if (bytes) memcpy(dst, src_host, bytes);
    return TG_OK;
}

tg_status tg_comm_buf_read(tg_comm *c, void *dst_host, const void *src, size_t bytes, tg_error *err) {
    if (!c) return tg_error_set(err, TG_ERR_ARG, "tg_comm_buf_read: comm is NULL");
    if (c->nccl) return tg_comm_nccl_memcpy(c, dst_host, src, bytes, 0, err);
    if (c->stage) return tg_comm_stage_memcpy(c, dst_host, src, bytes, 0, err);
    if (bytes) memcpy(dst_host, src, bytes);
    return TG_OK;
}
