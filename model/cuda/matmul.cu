/* model/cuda/matmul.cu — cuBLASLt matmuls (bf16 or fp32 inputs, fp32 accumulation) with fused
 * bias / GELU epilogues, and the kernels that stand in for the epilogues when they are off or
 * unsupported: bias add, GELU forward/backward, bias gradient.
 *
 * Row-major to cuBLAS (column-major): a row-major (R, S) matrix is the column-major (S, R)
 * matrix with the same memory, so row-major D = op(A) @ op(B) is column-major
 * D^T = op(B)^T @ op(A)^T: cuBLAS's "A" is our B, its "B" is our A, m = N, n = M, k = K, and
 * the transpose flags carry over unchanged.
 *
 * One file (~850 lines) on purpose: the plan cache decides per shape whether an epilogue is fused
 * by cuBLASLt or falls back to the bias/GELU kernels here, and the tuning blobs serialise that same
 * cache; split apart, each half would have to export the other's internals. */
#include "model/cuda/ops.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TG_GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

static __device__ __forceinline__ float gelu_f(float x) {
    const float u = TG_GELU_SCALE * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

static __device__ __forceinline__ float gelu_grad_f(float x) {
    const float u = TG_GELU_SCALE * (x + 0.044715f * x * x * x);
    const float th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * TG_GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}

template <typename X> __global__ void bias_add_kernel(X *y, const X *bias, size_t n, int OC) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = tg_from_f32<X>(tg_to_f32(y[i]) + tg_to_f32(bias[i % (size_t)OC]));
}

template <typename X> __global__ void gelu_forward_kernel(X *out, const X *inp, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = tg_from_f32<X>(gelu_f(tg_to_f32(inp[i])));
}

template <typename X> __global__ void gelu_backward_kernel(X *d, const X *inp, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        d[i] = tg_from_f32<X>(tg_to_f32(d[i]) * gelu_grad_f(tg_to_f32(inp[i])));
}

/* Bias gradient: column sums of dy (N, OC) without atomics. grid (ceil(OC / (32 VEC)), chunks),
 * block (32, 8): thread (tx, ty) sums VEC adjacent columns (one 16-byte load per row when
 * VEC > 1) over the rows r0 + ty, r0 + ty + 8, ... of its chunk, so a warp reads 32 VEC
 * contiguous elements of a row and many rows are in flight; the 8 row lanes are then added in
 * order through shared memory into partial[chunk][c]. */
#define TG_COLSUM_ROWS 8
template <typename X, int VEC>
__global__ void __launch_bounds__(32 * TG_COLSUM_ROWS)
column_sum_partial_kernel(float *__restrict__ partial, const X *__restrict__ dy, int N, int OC) {
    typedef tg_vec<X, VEC> V;
    __shared__ float red[TG_COLSUM_ROWS][32 * VEC];
    const int nvec = OC / VEC, cv = blockIdx.x * 32 + threadIdx.x;
    const int per = (N + gridDim.y - 1) / gridDim.y;
    const int r0 = blockIdx.y * per, r1 = min(N, r0 + per);
    float s[VEC];
#pragma unroll
    for (int j = 0; j < VEC; j++) s[j] = 0.0f;
    if (cv < nvec) {
#pragma unroll 8
        for (int r = r0 + threadIdx.y; r < r1; r += TG_COLSUM_ROWS) {
            const V v = ((const V *)(dy + (size_t)r * OC))[cv];
#pragma unroll
            for (int j = 0; j < VEC; j++) s[j] += tg_to_f32(v.v[j]);
        }
    }
#pragma unroll
    for (int j = 0; j < VEC; j++) red[threadIdx.y][threadIdx.x * VEC + j] = s[j];
    __syncthreads();
    for (int e = threadIdx.y * 32 + threadIdx.x; e < 32 * VEC; e += 32 * TG_COLSUM_ROWS) {
        const int c = blockIdx.x * 32 * VEC + e;
        if (c < OC) {
            float sum = 0.0f;
#pragma unroll
            for (int k = 0; k < TG_COLSUM_ROWS; k++) sum += red[k][e];
            partial[(size_t)blockIdx.y * OC + c] = sum;
        }
    }
}

/* block (32, 32), grid ceil(width / 32), width = parts * seg: column i of the (chunks, width)
 * partials is summed by 32 row lanes (chunks k = ty, ty + 32, ...), then the lanes in order (a
 * fixed order), and added to outs.p[i / seg][i % seg]. */
typedef struct {
    float *p[3];
} colsum_outs;
__global__ void column_sum_finish_kernel(colsum_outs outs, const float *partial, int chunks, int seg,
                                         int width) {
    __shared__ float red[32][33];
    const int i = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (i < width) {
#pragma unroll 8
        for (int k = threadIdx.y; k < chunks; k += 32) s += partial[(size_t)k * width + i];
    }
    red[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && i < width) {
        float t = 0.0f;
        for (int k = 0; k < 32; k++) t += red[k][threadIdx.x];
        outs.p[i / seg][i % seg] += t;
    }
}

tg_status tg_cuda_column_sum_finish(float *const outs[3], const float *partial, int chunks, int seg,
                                    int parts, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    colsum_outs o = {{outs[0], parts > 1 ? outs[1] : NULL, parts > 2 ? outs[2] : NULL}};
    const int width = parts * seg;
    if (parts < 1 || parts > 3) TG_FAIL(err, TG_ERR_INTERNAL, "cuda column sums: %d parts (1..3)", parts);
    column_sum_finish_kernel<<<(width + 31) / 32, dim3(32, 32), 0, s>>>(o, partial, chunks, seg, width);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_bias_add(X *y, const X *bias, int N, int OC, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)N * OC;
    bias_add_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(y, bias, n, OC);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_gelu_forward(X *out, const X *inp, size_t n, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    gelu_forward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(out, inp, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_gelu_backward(X *d, const X *inp, size_t n, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    gelu_backward_kernel<X><<<tg_cuda_blocks(n), TG_CUDA_THREADS, 0, s>>>(d, inp, n);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

/* Chunks (row ranges) so that about 4096 blocks of 8 warps are in flight, at least 32 rows
 * each and within the partial buffer. Depends only on N, OC and VEC: the summation order is the
 * same on every device. */
static int colsum_chunks(int N, int tiles) {
    int chunks = (4096 + tiles - 1) / tiles;
    if (chunks > TG_CUDA_COL_CHUNKS) chunks = TG_CUDA_COL_CHUNKS;
    if (chunks > (N + 31) / 32) chunks = (N + 31) / 32;
    return chunks < 1 ? 1 : chunks;
}

template <typename X, int VEC>
static tg_status launch_bias_backward(float *dbias, float *partial, const X *dy, int N, int OC,
                                      cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const int tiles = (OC / VEC + 31) / 32;
    const dim3 grid(tiles, colsum_chunks(N, tiles));
    column_sum_partial_kernel<X, VEC><<<grid, dim3(32, TG_COLSUM_ROWS), 0, s>>>(partial, dy, N, OC);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_column_sum_finish(&dbias, partial, grid.y, OC, 1, s, err));
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_bias_backward(float *dbias, float *partial, const X *dy, int N, int OC,
                                cudaStream_t s, tg_error *err) {
    if (N <= 0 || OC <= 0) return TG_OK;
    if (OC % TG_VEC16(X) == 0 && tg_aligned(dy, 16))
        return launch_bias_backward<X, TG_VEC16(X)>(dbias, partial, dy, N, OC, s, err);
    return launch_bias_backward<X, 1>(dbias, partial, dy, N, OC, s, err);
}

/* Largest power of two (<= 256) dividing the address, the leading dimension and the batch
 * stride in bytes: what cuBLASLt may assume about every row of every batch. Parameter tensors
 * sit at arbitrary offsets of the flat buffer, so the heuristic must not assume its default
 * 256-byte alignment. */
static uint32_t alignment_of(const void *p, long long ld_bytes, long long stride_bytes) {
    uint64_t a = (uint64_t)(uintptr_t)p | 256u | (uint64_t)ld_bytes | (uint64_t)stride_bytes;
    return (uint32_t)(a & (~a + 1));
}

static size_t dtype_size(cudaDataType_t t) { return t == CUDA_R_32F ? 4 : 2; }

/* ---- cuBLASLt plans: descriptors and algorithm, made once per shape ----
 * Building the descriptors and asking the heuristic costs host time on every one of the ~150
 * matmuls of a step, so each distinct key keeps its plan in bl->cache; a call then only sets
 * the bias/aux pointers. */

#define TG_LT_CACHE_CAP 128 /* a GPT-2 run has a few dozen keys; past this, plans are per call */
#define TG_LT_TUNING_MAX (2 * TG_LT_CACHE_CAP) /* entries of a tuning blob: plans + unused presets */
#define TG_LT_TUNE_MAX 16   /* heuristic candidates asked for when tuning */
#define TG_LT_TUNE_RUNS 3   /* timed runs per candidate, after one warm-up; the fastest counts */

/* Everything the descriptors, the preference and so the algorithm depend on. The heuristic sees
 * no data pointers but the bias/aux ones in the descriptor, hence their alignments too. Filled
 * after a memset and compared with memcmp (no padding either way). */
typedef struct {
    int32_t ab, d, M, N, K, transA, transB, batch;
    int64_t strideA, strideB, strideD;
    int32_t epi, has_bias, has_aux, beta_zero;
    uint32_t align_a, align_b, align_c, align_d, align_bias, align_aux;
    uint64_t workspace;
} lt_key;

/* no_algo: cuBLASLt has no algorithm for the key (an answer that repeats, so it is kept too).
 * tuned: algo was picked by timing, here or in the process that made a tuning blob. */
typedef struct {
    lt_key key;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    int no_algo, tuned;
} lt_plan;

/* A (key, algorithm) pair taken from a tuning blob (tg_cuda_blas_tuning_set). */
typedef struct {
    lt_key key;
    cublasLtMatmulAlgo_t algo;
} lt_preset;

/* The head of a tuning blob (tg_cuda_blas_tuning_get; layout below, with the functions). */
#define TG_LT_TUNING_MAGIC 0x544c4754u /* "TGLT" */
#define TG_LT_TUNING_VERSION 1u
typedef struct {
    uint32_t magic, version;
    uint32_t key_bytes, algo_bytes; /* sizeof lt_key, sizeof cublasLtMatmulAlgo_t */
    uint64_t cublaslt_version;      /* cublasLtGetVersion() */
    int32_t cc_major, cc_minor, sms, n;
    char device[96];                /* cudaDeviceProp.name, NUL-padded */
} lt_tuning_head;

struct tg_cuda_lt_cache {
    int n, n_preset;
    lt_plan plan[TG_LT_CACHE_CAP];
    lt_preset preset[TG_LT_TUNING_MAX];
    int head_ready;      /* head: this process's tuning-blob head, made on first use */
    lt_tuning_head head;
};

/* The operands of one call: what the plan does not hold. */
typedef struct {
    cudaStream_t s;
    void *D;
    const void *A, *B;
    float alpha, beta;
    const void *bias;
    void *aux;
} lt_args;

static void plan_destroy(lt_plan *p) {
    if (p->lc) cublasLtMatrixLayoutDestroy(p->lc);
    if (p->lb) cublasLtMatrixLayoutDestroy(p->lb);
    if (p->la) cublasLtMatrixLayoutDestroy(p->la);
    if (p->op) cublasLtMatmulDescDestroy(p->op);
    p->op = NULL;
    p->la = p->lb = p->lc = NULL;
}

void tg_cuda_blas_free(tg_cuda_blas *bl) {
    if (!bl) return;
    if (bl->cache) {
        for (int i = 0; i < bl->cache->n; i++) plan_destroy(&bl->cache->plan[i]);
        free(bl->cache);
        bl->cache = NULL;
    }
    if (bl->lt) cublasLtDestroy(bl->lt);
    bl->lt = NULL;
}

/* D = alpha op(A) op(B) + beta C with the plan's descriptors (cuBLAS's A is our B). */
static cublasStatus_t plan_launch(const tg_cuda_blas *bl, const lt_plan *p,
                                  const cublasLtMatmulAlgo_t *algo, const lt_args *a) {
    return cublasLtMatmul(bl->lt, p->op, &a->alpha, a->B, p->la, a->A, p->lb, &a->beta, a->D, p->lc,
                          a->D, p->lc, algo, bl->workspace, bl->workspace_bytes, a->s);
}

/* Whether candidate h may stand in for the heuristic's pick h0. Beyond running (state) within
 * our workspace, it must be as reproducible run to run as h0: cuBLAS gives bitwise-identical
 * results per toolkit, architecture and SM count (one stream, or a user workspace: ours), split-K
 * included (its parts are summed in a fixed order: REDUCTION_SCHEME_INPLACE serialises them
 * with counters, the other schemes reduce in a separate pass), so those stay. What is out:
 * algorithms with CUBLASLT_ALGO_CAP_ATOMIC_SYNC, the one capability documented as atomics
 * ("synchronization via atomic counters", cuBLAS 12.2-12.x; gone in 13), and any whose
 * accumulator or input numerics differ from h0's (no reduced-precision shortcut). A capability
 * that cannot be read counts against the candidate. */
static int tune_candidate_ok(const cublasLtMatmulHeuristicResult_t *h,
                             const cublasLtMatmulHeuristicResult_t *h0, size_t workspace) {
    const uint64_t numerics = CUBLASLT_NUMERICAL_IMPL_FLAGS_ACCUMULATOR_TYPE_MASK |
                              CUBLASLT_NUMERICAL_IMPL_FLAGS_OP_INPUT_TYPE_MASK;
    uint64_t f = 0, f0 = 0;
    size_t written = 0;
    if (h->state != CUBLAS_STATUS_SUCCESS || h->workspaceSize > workspace) return 0;
#if CUBLAS_VER_MAJOR == 12 && CUBLAS_VER_MINOR >= 2
    {
        int32_t atomic_sync = 0;
        if (cublasLtMatmulAlgoCapGetAttribute(&h->algo, CUBLASLT_ALGO_CAP_ATOMIC_SYNC, &atomic_sync,
                                              sizeof atomic_sync, &written) != CUBLAS_STATUS_SUCCESS ||
            atomic_sync)
            return 0;
    }
#endif
    if (cublasLtMatmulAlgoCapGetAttribute(&h->algo, CUBLASLT_ALGO_CAP_NUMERICAL_IMPL_FLAGS, &f,
                                          sizeof f, &written) != CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulAlgoCapGetAttribute(&h0->algo, CUBLASLT_ALGO_CAP_NUMERICAL_IMPL_FLAGS, &f0,
                                          sizeof f0, &written) != CUBLAS_STATUS_SUCCESS)
        return 0;
    return (f & numerics) == (f0 & numerics);
}

/* Times heur[0] and the admissible others on the call's operands (1 warm-up + TG_LT_TUNE_RUNS
 * runs each, fastest run counts) and sets p->algo to the fastest. beta != 0
 * accumulates into D, so D is saved first and put back afterwards (also on an error, as far as it goes); outputs
 * written with beta == 0 (D, GELU_AUX's aux) are simply rewritten by the real call. When heur[0]
 * itself does not run, it stays: the real call then reports it as it would untuned. */
static tg_status lt_tune(const tg_cuda_blas *bl, lt_plan *p,
                         const cublasLtMatmulHeuristicResult_t *heur, int n, const lt_args *a,
                         tg_error *err) {
    tg_status st = TG_OK;
    const lt_key *k = &p->key;
    const size_t d_bytes =
        ((size_t)k->M * (size_t)k->N + (k->batch > 1 ? (size_t)(k->batch - 1) * (size_t)k->strideD : 0)) *
        dtype_size((cudaDataType_t)k->d);
    cudaEvent_t ev[TG_LT_TUNE_RUNS + 1] = {};
    void *saved = NULL;
    int cand[TG_LT_TUNE_MAX], n_cand = 0, n_timed = 0, best = 0;
    float t_first = 0.0f, t_best = 0.0f;
    cudaError_t ce;

    for (int i = 0; i < n && i < TG_LT_TUNE_MAX; i++)
        if (i == 0 || tune_candidate_ok(&heur[i], &heur[0], bl->workspace_bytes)) cand[n_cand++] = i;
    for (int e = 0; e <= TG_LT_TUNE_RUNS; e++) TG_CUDA_CHECK(err, cudaEventCreate(&ev[e]));
    if (a->beta != 0.0f) {
        ce = cudaMalloc(&saved, d_bytes);
        if (ce == cudaErrorMemoryAllocation) { /* not worth failing the run for: untuned */
            (void)cudaGetLastError();
            saved = NULL;
            tg_log_warn(bl->log, "cublaslt tune: M=%d N=%d K=%d: no memory to save D (%zu bytes), heuristic #0 kept",
                        k->M, k->N, k->K, d_bytes);
            goto cleanup;
        }
        if (ce != cudaSuccess) {
            saved = NULL;
            st = tg_error_set_at(err, TG_ERR_CUDA, __FILE__, __LINE__, "cudaMalloc(%zu) for cuBLASLt tuning: %s (%s)",
                                 d_bytes, cudaGetErrorString(ce), cudaGetErrorName(ce));
            goto cleanup;
        }
        TG_CUDA_CHECK(err, cudaMemcpyAsync(saved, a->D, d_bytes, cudaMemcpyDeviceToDevice, a->s));
    }
    for (int c = 0; c < n_cand; c++) {
        const cublasLtMatmulAlgo_t *algo = &heur[cand[c]].algo;
        int ok = plan_launch(bl, p, algo, a) == CUBLAS_STATUS_SUCCESS; /* warm-up */
        float t = 0.0f;
        if (ok) TG_CUDA_CHECK(err, cudaEventRecord(ev[0], a->s));
        for (int r = 0; ok && r < TG_LT_TUNE_RUNS; r++) {
            ok = plan_launch(bl, p, algo, a) == CUBLAS_STATUS_SUCCESS;
            if (ok) TG_CUDA_CHECK(err, cudaEventRecord(ev[r + 1], a->s));
        }
        if (!ok) {
            if (c == 0) break;
            (void)cudaGetLastError(); /* a refused launch must not surface at the next check */
            continue;
        }
        TG_CUDA_CHECK(err, cudaEventSynchronize(ev[TG_LT_TUNE_RUNS]));
        for (int r = 0; r < TG_LT_TUNE_RUNS; r++) {
            float ms = 0.0f;
            TG_CUDA_CHECK(err, cudaEventElapsedTime(&ms, ev[r], ev[r + 1]));
            if (r == 0 || ms < t) t = ms;
        }
        if (c == 0) t_first = t_best = t;
        else if (t < t_best) {
            t_best = t;
            best = cand[c];
        }
        n_timed++;
    }
    p->algo = heur[best].algo;
    p->tuned = n_timed > 0;
    if (n_timed)
        tg_log_info(bl->log, "cublaslt tune: M=%d N=%d K=%d tA=%d tB=%d epi=%d: heuristic #0 %.3f ms, best #%d %.3f ms (%d candidates)",
                k->M, k->N, k->K, k->transA, k->transB, k->epi, t_first, best, t_best, n_timed);
    if (saved) {
        TG_CUDA_CHECK(err, cudaMemcpyAsync(a->D, saved, d_bytes, cudaMemcpyDeviceToDevice, a->s));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(a->s));
        ce = cudaFree(saved);
        saved = NULL;
        if (ce != cudaSuccess) {
            st = tg_error_set_at(err, TG_ERR_CUDA, __FILE__, __LINE__, "cudaFree after cuBLASLt tuning: %s (%s)",
                                 cudaGetErrorString(ce), cudaGetErrorName(ce));
            goto cleanup;
        }
    }
cleanup:
    if (saved) { /* an error on the way: D back as far as the stream still works */
        (void)cudaMemcpyAsync(a->D, saved, d_bytes, cudaMemcpyDeviceToDevice, a->s);
        (void)cudaStreamSynchronize(a->s);
        (void)cudaFree(saved);
    }
    for (int e = 0; e <= TG_LT_TUNE_RUNS; e++)
        if (ev[e]) cudaEventDestroy(ev[e]);
    return st;
}

/* Makes p's descriptors from p->key (and the call's bias/aux pointers) and picks the algorithm:
 * preset (from a tuning blob) when cuBLASLt still accepts it for these descriptors, else the
 * heuristic's first, or with tune the fastest admissible candidate. p->no_algo = 1 when
 * cuBLASLt has none; *retry = 1 when the heuristic failed for an epilogue: no algorithm for this
 * call, but not a lasting answer. On any outcome the caller destroys p unless it keeps it. */
static tg_status plan_build(const tg_cuda_blas *bl, lt_plan *p, const lt_args *a, int tune,
                            const cublasLtMatmulAlgo_t *preset, int *retry, tg_error *err) {
    tg_status st = TG_OK;
    const lt_key *k = &p->key;
    const cudaDataType_t ab = (cudaDataType_t)k->ab, d = (cudaDataType_t)k->d;
    const cublasLtEpilogue_t epi = (cublasLtEpilogue_t)k->epi;
    const int M = k->M, N = k->N, K = k->K;
    const cublasOperation_t opa = k->transB ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS A = our B */
    const cublasOperation_t opb = k->transA ? CUBLAS_OP_T : CUBLAS_OP_N; /* cuBLAS B = our A */
    const long long lda = k->transB ? K : N, ldb = k->transA ? M : K, ldd = N; /* cuBLAS view */
    const uint64_t workspace = k->workspace;
    const void *bias = a->bias;
    void *aux = a->aux;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur[TG_LT_TUNE_MAX];
    int n_results = 0;
    cublasStatus_t hs;
    *retry = 0;

    TG_CUBLAS_CHECK(err, cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) {
        TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        if (bias) {
            const int32_t bias_type = (int32_t)ab; /* a bias is a parameter: the working type */
            TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
            TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
        }
        if (aux) {
            const int64_t aux_ld = N; /* aux has D's shape: column-major (N, M) */
            TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
            TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &aux_ld, sizeof aux_ld));
        }
    }
    /* Layouts of the stored matrices (column-major view). */
    if (k->transB) TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->la, ab, K, N, lda));
    else TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->la, ab, N, K, lda));
    if (k->transA) TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->lb, ab, M, K, ldb));
    else TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->lb, ab, K, M, ldb));
    TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutCreate(&p->lc, d, N, M, ldd));
    if (k->batch > 1) {
        const int32_t bc = k->batch;
        const int64_t sa = k->strideB, sb = k->strideA, sd = k->strideD;
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->la, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->la, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sa, sizeof sa));
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->lb, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sb, sizeof sb));
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
        TG_CUBLAS_CHECK(err, cublasLtMatrixLayoutSetAttribute(p->lc, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &sd, sizeof sd));
    }
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceCreate(&pref));
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof workspace));
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &k->align_a, sizeof k->align_a));
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &k->align_b, sizeof k->align_b));
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &k->align_c, sizeof k->align_c));
    TG_CUBLAS_CHECK(err, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align_d, sizeof k->align_d));
    if (preset) {
        cublasLtMatmulHeuristicResult_t chk;
        memset(&chk, 0, sizeof chk);
        hs = cublasLtMatmulAlgoCheck(bl->lt, p->op, p->la, p->lb, p->lc, p->lc, preset, &chk);
        if (hs == CUBLAS_STATUS_SUCCESS && chk.workspaceSize <= workspace) {
            p->algo = *preset;
            p->tuned = 1;
            goto cleanup;
        }
        tg_log_warn(bl->log, "cublaslt tuning: the saved algorithm for M=%d N=%d K=%d epi=%d is refused (%s): %s instead",
                    M, N, K, (int)epi, hs == CUBLAS_STATUS_SUCCESS ? "workspace" : cublasLtGetStatusString(hs),
                    tune ? "timing" : "the heuristic");
    }
    /* An epilogue the library cannot do for these types/shapes is not an error: the caller
     * falls back to separate kernels (and reports the plain matmul's error, if any). */
    hs = cublasLtMatmulAlgoGetHeuristic(bl->lt, p->op, p->la, p->lb, p->lc, p->lc, pref,
                                        tune ? TG_LT_TUNE_MAX : 1, heur, &n_results);
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED || (hs == CUBLAS_STATUS_SUCCESS && n_results == 0)) {
        p->no_algo = 1;
        goto cleanup;
    }
    if (hs != CUBLAS_STATUS_SUCCESS && epi != CUBLASLT_EPILOGUE_DEFAULT) {
        *retry = 1;
        goto cleanup;
    }
    if (hs != CUBLAS_STATUS_SUCCESS) {
        st = tg_error_set_at(err, TG_ERR_CUDA, __FILE__, __LINE__,
                             "cublasLtMatmulAlgoGetHeuristic(M=%d N=%d K=%d batch=%d epilogue=%d): %s",
                             M, N, K, k->batch, (int)epi, cublasLtGetStatusString(hs));
        goto cleanup;
    }
    p->algo = heur[0].algo;
    if (tune) TG_TRY(lt_tune(bl, p, heur, n_results, a, err));
cleanup:
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    return st;
}

/* The plan of key in the cache, or NULL. */
static lt_plan *cache_find(tg_cuda_lt_cache *cache, const lt_key *key) {
    for (int i = 0; i < cache->n; i++)
        if (memcmp(&cache->plan[i].key, key, sizeof *key) == 0) return &cache->plan[i];
    return NULL;
}

/* The cache, allocated on first use; NULL when that fails (plans are then per call). */
static tg_cuda_lt_cache *lt_cache(const tg_cuda_blas *bl) {
    if (!bl->cache) bl->cache = (tg_cuda_lt_cache *)calloc(1, sizeof *bl->cache);
    return bl->cache;
}

/* One cuBLASLt call; *no_algo = 1 (and TG_OK) when no algorithm supports the request. */
static tg_status lt_matmul(const tg_cuda_blas *bl, cudaStream_t s, cudaDataType_t ab,
                           cudaDataType_t d, void *D, const void *A, const void *B, int M, int N,
                           int K, int transA, int transB, float alpha, float beta, int batch,
                           long long strideA, long long strideB, long long strideD,
                           cublasLtEpilogue_t epi, const void *bias, void *aux, int *no_algo,
                           tg_error *err) {
    tg_status st = TG_OK;
    const long long abs_ = (long long)dtype_size(ab), ds = (long long)dtype_size(d);
    const long long lda = transB ? K : N, ldb = transA ? M : K, ldd = N; /* cuBLAS view */
    const lt_args args = {s, D, A, B, alpha, beta, bias, aux};
    tg_cuda_lt_cache *cache = lt_cache(bl);
    lt_plan local, *p = NULL;
    lt_key key;
    int retry = 0;
    cublasStatus_t hs;
    memset(&local, 0, sizeof local);
    memset(&key, 0, sizeof key);
    key.ab = (int32_t)ab;
    key.d = (int32_t)d;
    key.M = M;
    key.N = N;
    key.K = K;
    key.transA = transA;
    key.transB = transB;
    key.batch = batch;
    key.strideA = strideA;
    key.strideB = strideB;
    key.strideD = strideD;
    key.epi = (int32_t)epi;
    key.has_bias = bias != NULL;
    key.has_aux = aux != NULL;
    key.beta_zero = beta == 0.0f;
    key.align_a = alignment_of(B, lda * abs_, strideB * abs_); /* cuBLAS A = our B */
    key.align_b = alignment_of(A, ldb * abs_, strideA * abs_);
    key.align_d = alignment_of(D, ldd * ds, strideD * ds);
    key.align_c = key.align_d; /* beta's addend C is D itself */
    key.align_bias = bias ? alignment_of(bias, 0, 0) : 0;
    key.align_aux = aux ? alignment_of(aux, 0, 0) : 0;
    key.workspace = bl->workspace_bytes;
    *no_algo = 0;

    if (cache) p = cache_find(cache, &key);
    if (!p) {
        /* A new key is kept (and tuned, if asked, unless a tuning blob gave its algorithm) while
         * there is room; past that the plan lives for this call only, untuned. */
        const int room = cache && cache->n < TG_LT_CACHE_CAP;
        const cublasLtMatmulAlgo_t *preset = NULL;
        for (int i = 0; cache && i < cache->n_preset && !preset; i++)
            if (memcmp(&cache->preset[i].key, &key, sizeof key) == 0) preset = &cache->preset[i].algo;
        local.key = key;
        TG_TRY(plan_build(bl, &local, &args, room && bl->tune, preset, &retry, err));
        if (retry) {
            *no_algo = 1;
            goto cleanup;
        }
        if (room) {
            cache->plan[cache->n] = local;
            p = &cache->plan[cache->n++];
            memset(&local, 0, sizeof local); /* owned by the cache now */
        } else {
            p = &local;
        }
    }
    if (p->no_algo) {
        *no_algo = 1;
        goto cleanup;
    }
    if (epi != CUBLASLT_EPILOGUE_DEFAULT) { /* this call's vectors (aux's ld is in the key: N) */
        if (bias) TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        if (aux) TG_CUBLAS_CHECK(err, cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
    }
    hs = plan_launch(bl, p, &p->algo, &args);
    if (hs == CUBLAS_STATUS_NOT_SUPPORTED && epi != CUBLASLT_EPILOGUE_DEFAULT) {
        *no_algo = 1;
        goto cleanup;
    }
    if (hs != CUBLAS_STATUS_SUCCESS)
        st = tg_error_set_at(err, TG_ERR_CUDA, __FILE__, __LINE__,
                             "cublasLtMatmul(M=%d N=%d K=%d batch=%d epilogue=%d): %s", M, N, K,
                             batch, (int)epi, cublasLtGetStatusString(hs));
cleanup:
    plan_destroy(&local);
    return st;
}

/* ---- tuning blobs: the timed choices, for another process on the same device ----
 * Layout (native byte order; the same machine type reads it back): lt_tuning_head, then n
 * (lt_key, cublasLtMatmulAlgo_t) pairs. An algorithm is only meaningful for the cuBLASLt version
 * and device model that timed it, so both are in the head and must match; each one is checked
 * again with cublasLtMatmulAlgoCheck when its key is first used. */

/* The head for this process with n entries. cudaGetDeviceProperties is not free, and the
 * trainer asks for the blob after every step: the rest of the head is made once per cache. */
static tg_status tuning_head_fill(tg_cuda_lt_cache *cache, lt_tuning_head *h, int n, tg_error *err) {
    tg_status st = TG_OK;
    cudaDeviceProp prop;
    int dev = 0;
    static_assert(sizeof(lt_tuning_head) % 8 == 0, "entries follow the head unpadded");
    if (cache->head_ready) {
        *h = cache->head;
        h->n = n;
        return TG_OK;
    }
    memset(h, 0, sizeof *h);
    TG_CUDA_CHECK(err, cudaGetDevice(&dev));
    TG_CUDA_CHECK(err, cudaGetDeviceProperties(&prop, dev));
    h->magic = TG_LT_TUNING_MAGIC;
    h->version = TG_LT_TUNING_VERSION;
    h->key_bytes = (uint32_t)sizeof(lt_key);
    h->algo_bytes = (uint32_t)sizeof(cublasLtMatmulAlgo_t);
    h->cublaslt_version = (uint64_t)cublasLtGetVersion();
    h->cc_major = prop.major;
    h->cc_minor = prop.minor;
    h->sms = prop.multiProcessorCount;
    h->n = n;
    snprintf(h->device, sizeof h->device, "%.95s", prop.name);
    cache->head = *h;
    cache->head_ready = 1;
cleanup:
    return st;
}

/* The tuned plans, then the presets not used yet (so a blob taken back and got again loses
 * nothing: a resumed run that has not yet evaluated keeps the evaluation's choices). */
tg_status tg_cuda_blas_tuning_get(const tg_cuda_blas *bl, void **blob, size_t *len, tg_error *err) {
    tg_status st = TG_OK;
    tg_cuda_lt_cache *cache = bl->cache;
    const size_t pair = sizeof(lt_key) + sizeof(cublasLtMatmulAlgo_t);
    lt_tuning_head h;
    unsigned char *b = NULL, *q;
    int n = 0;
    *blob = NULL;
    *len = 0;
    if (!cache) return TG_OK;
    for (int i = 0; i < cache->n; i++) n += cache->plan[i].tuned;
    for (int i = 0; i < cache->n_preset; i++) n += !cache_find(cache, &cache->preset[i].key);
    if (n > TG_LT_TUNING_MAX) n = TG_LT_TUNING_MAX; /* what set takes back; the rest is timed again */
    if (n == 0) return TG_OK;
    TG_TRY(tuning_head_fill(cache, &h, n, err));
    b = (unsigned char *)malloc(sizeof h + (size_t)n * pair);
    if (!b) TG_FAIL(err, TG_ERR_NOMEM, "out of memory for a cuBLASLt tuning blob (%d entries)", n);
    memcpy(b, &h, sizeof h);
    q = b + sizeof h;
    for (int i = 0; i < cache->n; i++) { /* at most TG_LT_CACHE_CAP, below the cap: all fit */
        if (!cache->plan[i].tuned) continue;
        memcpy(q, &cache->plan[i].key, sizeof(lt_key));
        memcpy(q + sizeof(lt_key), &cache->plan[i].algo, sizeof(cublasLtMatmulAlgo_t));
        q += pair;
    }
    for (int i = 0; i < cache->n_preset && q < b + sizeof h + (size_t)n * pair; i++) { /* up to the cap */
        if (cache_find(cache, &cache->preset[i].key)) continue;
        memcpy(q, &cache->preset[i].key, sizeof(lt_key));
        memcpy(q + sizeof(lt_key), &cache->preset[i].algo, sizeof(cublasLtMatmulAlgo_t));
        q += pair;
    }
    *blob = b;
    *len = sizeof h + (size_t)n * pair;
    b = NULL;
cleanup:
    free(b);
    return st;
}

tg_status tg_cuda_blas_tuning_set(const tg_cuda_blas *bl, const void *blob, size_t len, tg_error *err) {
    tg_status st = TG_OK;
    const size_t pair = sizeof(lt_key) + sizeof(cublasLtMatmulAlgo_t);
    const unsigned char *q = (const unsigned char *)blob + sizeof(lt_tuning_head);
    tg_cuda_lt_cache *cache;
    lt_tuning_head h, mine;
    if (len < sizeof h) TG_FAIL(err, TG_ERR_FORMAT, "not a cuBLASLt tuning blob: %zu bytes, shorter than its header", len);
    memcpy(&h, blob, sizeof h);
    if (h.magic != TG_LT_TUNING_MAGIC) TG_FAIL(err, TG_ERR_FORMAT, "not a cuBLASLt tuning blob (bad magic)");
    if (h.version != TG_LT_TUNING_VERSION || h.key_bytes != sizeof(lt_key) ||
        h.algo_bytes != sizeof(cublasLtMatmulAlgo_t))
        TG_FAIL(err, TG_ERR_FORMAT, "cuBLASLt tuning blob of version %u (key %u, algo %u bytes); this build writes "
                "version %u (%zu, %zu)", h.version, h.key_bytes, h.algo_bytes, TG_LT_TUNING_VERSION, sizeof(lt_key),
                sizeof(cublasLtMatmulAlgo_t));
    if (h.n < 0 || h.n > TG_LT_TUNING_MAX || len != sizeof h + (size_t)h.n * pair)
        TG_FAIL(err, TG_ERR_FORMAT, "cuBLASLt tuning blob: %d entries do not match its %zu bytes", h.n, len);
    cache = lt_cache(bl);
    if (!cache) TG_FAIL(err, TG_ERR_NOMEM, "out of memory for the cuBLASLt plan cache");
    TG_TRY(tuning_head_fill(cache, &mine, 0, err));
    h.device[sizeof h.device - 1] = '\0';
    if (h.cublaslt_version != mine.cublaslt_version || h.cc_major != mine.cc_major || h.cc_minor != mine.cc_minor ||
        h.sms != mine.sms || strcmp(h.device, mine.device) != 0)
        TG_FAIL(err, TG_ERR_FORMAT, "cuBLASLt tuning blob made on %s (sm_%d%d, %d SMs, cuBLASLt %llu); this is %s "
                "(sm_%d%d, %d SMs, cuBLASLt %llu)", h.device, h.cc_major, h.cc_minor, h.sms,
                (unsigned long long)h.cublaslt_version, mine.device, mine.cc_major, mine.cc_minor, mine.sms,
                (unsigned long long)mine.cublaslt_version);
    cache->n_preset = h.n;
    for (int i = 0; i < h.n; i++, q += pair) {
        memcpy(&cache->preset[i].key, q, sizeof(lt_key));
        memcpy(&cache->preset[i].algo, q + sizeof(lt_key), sizeof(cublasLtMatmulAlgo_t));
    }
cleanup:
    return st;
}

typedef enum {
    TG_EPI_NONE = 0,
    TG_EPI_BIAS,      /* D = A@B + bias (bias: N, X) */
    TG_EPI_GELU_BIAS, /* aux = A@B + bias (pre-activation, X), D = gelu(aux) */
    TG_EPI_DGELU      /* D = (A@B) * gelu'(aux)   (aux: the stored pre-activation) */
} tg_cuda_epilogue;

/* The epilogue done by separate kernels, after a plain matmul into `pre`. */
template <typename X>
static tg_status unfused_epilogue(tg_cuda_epilogue epi, X *D, X *pre, const X *bias, X *aux,
                                  int M, int N, cudaStream_t s, tg_error *err) {
    tg_status st = TG_OK;
    const size_t n = (size_t)M * N;
    if (bias) TG_TRY(tg_cuda_bias_add<X>(pre, bias, M, N, s, err));
    if (epi == TG_EPI_GELU_BIAS) TG_TRY(tg_cuda_gelu_forward<X>(D, aux, n, s, err));
    if (epi == TG_EPI_DGELU) TG_TRY(tg_cuda_gelu_backward<X>(D, aux, n, s, err));
cleanup:
    return st;
}

/* Every matmul of the wrappers below: D[b] (M,N) = alpha * op(A[b]) (M,K) @ op(B[b]) (K,N) +
 * beta * D[b] with op = transpose when trans* is set (A is then stored (K,M), B stored (N,K)).
 * A and B have type ab (X); D has type d (X, or fp32 for weight gradients, with beta = 1 to
 * accumulate). Epilogues need batch == 1 and d == ab. */
static tg_status matmul(const tg_cuda_blas *bl, cudaStream_t s, cudaDataType_t ab, cudaDataType_t d, void *D,
                        const void *A, const void *B, int M, int N, int K, int transA, int transB, float alpha,
                        float beta, int batch, long long strideA, long long strideB, long long strideD,
                        tg_cuda_epilogue epi, const void *bias, void *aux, tg_error *err) {
    tg_status st = TG_OK;
    int no_algo = 0;
    cublasLtEpilogue_t lt_epi = CUBLASLT_EPILOGUE_DEFAULT;
    void *plain_out = D; /* where the unfused path's matmul writes */
    int fusable = 0;
    if (epi != TG_EPI_NONE && (batch != 1 || d != ab))
        TG_FAIL(err, TG_ERR_INTERNAL, "cuda matmul: epilogue %d needs batch 1 and D of the input type", (int)epi);
    if (epi == TG_EPI_BIAS) lt_epi = CUBLASLT_EPILOGUE_BIAS;
    if (epi == TG_EPI_GELU_BIAS) lt_epi = CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    if (epi == TG_EPI_DGELU) lt_epi = CUBLASLT_EPILOGUE_DGELU;
    if (epi == TG_EPI_GELU_BIAS) plain_out = aux;
    /* The bias and aux vectors are outside the alignment preferences the heuristic sees, and
     * cuBLASLt (like llm.c, which insists on it) needs them 16-byte aligned and the aux ld a
     * multiple of 8: a bias at an odd offset of the flat buffer (C % 8 != 0) takes the
     * unfused path instead of faulting. */
    fusable = (uintptr_t)bias % 16 == 0 && (uintptr_t)aux % 16 == 0 && (aux == NULL || N % 8 == 0);

    if (epi == TG_EPI_NONE || (bl->fuse && fusable)) {
        TG_TRY(lt_matmul(bl, s, ab, d, D, A, B, M, N, K, transA, transB, alpha, beta, batch,
                         strideA, strideB, strideD, lt_epi, bias, aux, &no_algo, err));
        if (!no_algo) goto cleanup;
        if (epi == TG_EPI_NONE)
            TG_FAIL(err, TG_ERR_CUDA,
                    "cuBLASLt: no algorithm for M=%d N=%d K=%d transA=%d transB=%d batch=%d "
                    "(types %d/%d)", M, N, K, transA, transB, batch, (int)ab, (int)d);
    }
    /* Unfused: plain matmul, then the epilogue's kernels. */
    TG_TRY(lt_matmul(bl, s, ab, d, plain_out, A, B, M, N, K, transA, transB, alpha, beta, 1, 0,
                     0, 0, CUBLASLT_EPILOGUE_DEFAULT, NULL, NULL, &no_algo, err));
    if (no_algo)
        TG_FAIL(err, TG_ERR_CUDA, "cuBLASLt: no algorithm for M=%d N=%d K=%d (types %d/%d)", M,
                N, K, (int)ab, (int)d);
    if (ab == CUDA_R_32F)
        TG_TRY(unfused_epilogue<float>(epi, (float *)D, (float *)plain_out, (const float *)bias,
                                       (float *)aux, M, N, s, err));
    else
        TG_TRY(unfused_epilogue<tg_bf16>(epi, (tg_bf16 *)D, (tg_bf16 *)plain_out,
                                         (const tg_bf16 *)bias, (tg_bf16 *)aux, M, N, s, err));
cleanup:
    return st;
}

template <typename X>
tg_status tg_cuda_matmul_forward(const tg_cuda_blas *bl, X *out, const X *inp, const X *w, const X *bias, int N,
                                 int IC, int OC, cudaStream_t s, tg_error *err) {
    const cudaDataType_t x = tg_cuda_type<X>::value;
    return matmul(bl, s, x, x, out, inp, w, N, OC, IC, 0, 0, 1.0f, 0.0f, 1, 0, 0, 0,
                  bias ? TG_EPI_BIAS : TG_EPI_NONE, bias, NULL, err);
}

template <typename X>
tg_status tg_cuda_matmul_forward_gelu(const tg_cuda_blas *bl, X *out, X *pre, const X *inp, const X *w,
                                      const X *bias, int N, int IC, int OC, cudaStream_t s, tg_error *err) {
    const cudaDataType_t x = tg_cuda_type<X>::value;
    return matmul(bl, s, x, x, out, inp, w, N, OC, IC, 0, 0, 1.0f, 0.0f, 1, 0, 0, 0, TG_EPI_GELU_BIAS, bias, pre,
                  err);
}

template <typename X>
tg_status tg_cuda_matmul_backward_input(const tg_cuda_blas *bl, X *dinp, const X *dout, const X *w,
                                        const X *gelu_pre, int N, int IC, int OC, cudaStream_t s, tg_error *err) {
    const cudaDataType_t x = tg_cuda_type<X>::value;
    return matmul(bl, s, x, x, dinp, dout, w, N, IC, OC, 0, 1, 1.0f, 0.0f, 1, 0, 0, 0,
                  gelu_pre ? TG_EPI_DGELU : TG_EPI_NONE, NULL, (void *)gelu_pre, err);
}

template <typename X>
tg_status tg_cuda_matmul_backward_weight(const tg_cuda_blas *bl, float *dw, const X *inp, const X *dout, int N,
                                         int IC, int OC, cudaStream_t s, tg_error *err) {
    return matmul(bl, s, tg_cuda_type<X>::value, CUDA_R_32F, dw, inp, dout, IC, OC, N, 1, 0, 1.0f, 1.0f, 1, 0, 0,
                  0, TG_EPI_NONE, NULL, NULL, err);
}

template <typename X>
tg_status tg_cuda_matmul_batched(const tg_cuda_blas *bl, X *D, const X *A, const X *B, int M, int N, int K,
                                 int transA, int transB, float alpha, int batch, long long strideA,
                                 long long strideB, long long strideD, cudaStream_t s, tg_error *err) {
    const cudaDataType_t x = tg_cuda_type<X>::value;
    return matmul(bl, s, x, x, D, A, B, M, N, K, transA, transB, alpha, 0.0f, batch, strideA, strideB, strideD,
                  TG_EPI_NONE, NULL, NULL, err);
}

#define TG_INSTANTIATE(X)                                                                      \
    template tg_status tg_cuda_matmul_forward<X>(const tg_cuda_blas *, X *, const X *, const X *, const X *, \
                                                 int, int, int, cudaStream_t, tg_error *);      \
    template tg_status tg_cuda_matmul_forward_gelu<X>(const tg_cuda_blas *, X *, X *, const X *, const X *, \
                                                      const X *, int, int, int, cudaStream_t, tg_error *); \
    template tg_status tg_cuda_matmul_backward_input<X>(const tg_cuda_blas *, X *, const X *, const X *, \
                                                        const X *, int, int, int, cudaStream_t, tg_error *); \
    template tg_status tg_cuda_matmul_backward_weight<X>(const tg_cuda_blas *, float *, const X *, const X *, \
                                                         int, int, int, cudaStream_t, tg_error *); \
    template tg_status tg_cuda_matmul_batched<X>(const tg_cuda_blas *, X *, const X *, const X *, int, int, int, \
                                                 int, int, float, int, long long, long long, long long, \
                                                 cudaStream_t, tg_error *);                     \
    template tg_status tg_cuda_bias_add<X>(X *, const X *, int, int, cudaStream_t, tg_error *);  \
    template tg_status tg_cuda_gelu_forward<X>(X *, const X *, size_t, cudaStream_t, tg_error *); \
    template tg_status tg_cuda_gelu_backward<X>(X *, const X *, size_t, cudaStream_t, tg_error *); \
    template tg_status tg_cuda_bias_backward<X>(float *, float *, const X *, int, int,          \
                                                cudaStream_t, tg_error *);
TG_INSTANTIATE(float)
TG_INSTANTIATE(tg_bf16)
