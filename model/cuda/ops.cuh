/* model/cuda/ops.cuh — the CUDA backend's op launchers (one .cu per op family).
 *
 * Every launcher enqueues its kernels on `s` and returns at once (no host synchronisation),
 * checking each launch; X is the working dtype (float, or tg_bf16 for mixed precision) and is
 * instantiated for both in the op's .cu. Shapes: N = B*T rows; C channels; row-major.
 * Gradients of parameters are fp32 and are ACCUMULATED (+=), as tg_model_backward adds.
 * Reductions over rows never use atomics: results are bitwise reproducible run to run. */
#ifndef TG_CUDA_OPS_CUH
#define TG_CUDA_OPS_CUH

#include "model/cuda/common.cuh"

/* ---- matmul.cu: cuBLASLt and the linear-layer helpers ---- */

struct tg_cuda_lt_cache; /* matmul.cu */

typedef struct {
    cublasLtHandle_t lt;
    void *workspace; /* device, workspace_bytes */
    size_t workspace_bytes;
    int fuse;        /* 1: bias/GELU/dGELU in cuBLASLt epilogues; 0: separate kernels */
    int tune;        /* 1: the first call of a shape times cuBLASLt's candidates, keeps the fastest */
    const tg_log *log; /* where tuning says what it picked (NULL: stderr) */
    /* The descriptors and algorithm of each matmul shape, made on first use (so mutable: the
     * launchers take the struct const) and kept until tg_cuda_blas_free. NULL: none yet. One
     * thread at a time. */
    mutable struct tg_cuda_lt_cache *cache;
} tg_cuda_blas;

/* Destroys the cached descriptors and the cuBLASLt handle and frees the cache, leaving lt and
 * cache NULL; the workspace belongs to the caller. Safe on a zeroed struct, and twice. */
void tg_cuda_blas_free(tg_cuda_blas *bl);
/* The algorithms picked by timing so far (with bl->tune, or taken from a blob), as a malloc'd
 * blob for tg_cuda_blas_tuning_set in another process; *blob = NULL, *len = 0 when there are
 * none. The blob names the device model and cuBLASLt version it is valid for. */
tg_status tg_cuda_blas_tuning_get(const tg_cuda_blas *bl, void **blob, size_t *len, tg_error *err);
/* Takes such a blob: a matmul whose key is in it uses its algorithm (when cublasLtMatmulAlgoCheck
 * accepts it for the call's descriptors; else the usual choice, said through bl->log) instead of the
 * heuristic or timing. Only plans made after this call are affected, so call it before the
 * first matmul. TG_ERR_FORMAT, with the reason, for a blob that is not one or that was made
 * with another device model or cuBLASLt version; nothing changes then. */
tg_status tg_cuda_blas_tuning_set(const tg_cuda_blas *bl, const void *blob, size_t len, tg_error *err);

/* The matmuls of the backend, all row-major with fp32 accumulation (CUBLAS_COMPUTE_32F: no
 * TF32). Linear layers keep their weight as w (IC, OC) (Hugging Face's Conv1D layout), so a
 * layer is out = inp @ w + bias. Bias, GELU and dGELU run in cuBLASLt's epilogues where the
 * library has an algorithm for them (and bl->fuse), else as the kernels below, with the same
 * result. The plan of each shape is cached in bl; with bl->tune its first call also times the
 * candidates on these operands (synchronises s; an accumulated output is saved and restored
 * around the timing). */

/* out (N, OC) = inp (N, IC) @ w (IC, OC), + bias (OC) unless bias is NULL. */
template <typename X>
tg_status tg_cuda_matmul_forward(const tg_cuda_blas *bl, X *out, const X *inp, const X *w, const X *bias, int N,
                                 int IC, int OC, cudaStream_t s, tg_error *err);
/* pre (N, OC) = inp @ w + bias (kept for the backward), out = gelu(pre). */
template <typename X>
tg_status tg_cuda_matmul_forward_gelu(const tg_cuda_blas *bl, X *out, X *pre, const X *inp, const X *w,
                                      const X *bias, int N, int IC, int OC, cudaStream_t s, tg_error *err);
/* dinp (N, IC) = dout (N, OC) @ w^T for w (IC, OC); times gelu'(gelu_pre) elementwise when
 * gelu_pre (N, IC) is given (the layer's input was gelu(gelu_pre)). */
template <typename X>
tg_status tg_cuda_matmul_backward_input(const tg_cuda_blas *bl, X *dinp, const X *dout, const X *w,
                                        const X *gelu_pre, int N, int IC, int OC, cudaStream_t s, tg_error *err);
/* dw (IC, OC, fp32) += inp (N, IC)^T @ dout (N, OC). */
template <typename X>
tg_status tg_cuda_matmul_backward_weight(const tg_cuda_blas *bl, float *dw, const X *inp, const X *dout, int N,
                                         int IC, int OC, cudaStream_t s, tg_error *err);
/* For each of `batch` matrices b: D[b] (M, N) = alpha * op(A[b]) (M, K) @ op(B[b]) (K, N), with
 * op = transpose where trans* is set (A then stored (K, M), B stored (N, K)); the b-th matrix
 * of each starts stride* elements after the previous one. */
template <typename X>
tg_status tg_cuda_matmul_batched(const tg_cuda_blas *bl, X *D, const X *A, const X *B, int M, int N, int K,
                                 int transA, int transB, float alpha, int batch, long long strideA,
                                 long long strideB, long long strideD, cudaStream_t s, tg_error *err);

/* y (N, OC) += bias (OC) */
template <typename X>
tg_status tg_cuda_bias_add(X *y, const X *bias, int N, int OC, cudaStream_t s, tg_error *err);
/* out = gelu(inp), n elements (tanh approximation, as GPT-2). */
template <typename X>
tg_status tg_cuda_gelu_forward(X *out, const X *inp, size_t n, cudaStream_t s, tg_error *err);
/* d *= gelu'(inp), in place. */
template <typename X>
tg_status tg_cuda_gelu_backward(X *d, const X *inp, size_t n, cudaStream_t s, tg_error *err);
/* dbias (OC, fp32) += column sums of dy (N, OC). partial: TG_CUDA_COL_CHUNKS * OC floats. */
template <typename X>
tg_status tg_cuda_bias_backward(float *dbias, float *partial, const X *dy, int N, int OC,
                                cudaStream_t s, tg_error *err);
/* The second pass of the deterministic column reductions: outs[k][c] (fp32) += the sum over
 * `chunks` rows of partial (chunks, parts * seg) at column k * seg + c, for c < seg, k < parts
 * (1..3; outs[k] for k >= parts is not read). The rows are added in a fixed order. */
tg_status tg_cuda_column_sum_finish(float *const outs[3], const float *partial, int chunks, int seg,
                                    int parts, cudaStream_t s, tg_error *err);
/* Row chunks of the deterministic column reductions (bias and LayerNorm weight grads). */
#define TG_CUDA_COL_CHUNKS 1024

/* ---- encoder.cu ---- */

/* out (B,T,C) = wte[tokens] + wpe[t] (wpe NULL: wte[tokens] alone) */
template <typename X>
tg_status tg_cuda_encoder_forward(X *out, const int32_t *tokens, const X *wte, const X *wpe,
                                  int B, int T, int C, cudaStream_t s, tg_error *err);
/* dwpe[t] += sum_b dout[b,t] (unless dwpe is NULL);  dwte[tok] += sum of dout over the positions holding tok.
 * The positions are pre-bucketed on the host: uniq[k] is a token, its positions are
 * pos[seg[k] .. seg[k+1]) (ascending), k < n_uniq. Deterministic, no atomics. */
template <typename X>
tg_status tg_cuda_encoder_backward(float *dwte, float *dwpe, const X *dout, const int32_t *uniq,
                                   const int32_t *seg, const int32_t *pos, int n_uniq, int B,
                                   int T, int C, cudaStream_t s, tg_error *err);

/* ---- layernorm.cu (eps 1e-5, biased variance, as GPT-2) ---- */

/* res = a + b (when b != NULL; else x = a and res is not written);  out = LN(x) * w + bias.
 * mean, rstd: (N) fp32, kept for backward. */
template <typename X>
tg_status tg_cuda_residual_layernorm_forward(X *res, X *out, float *mean, float *rstd,
                                             const X *a, const X *b, const X *w, const X *bias,
                                             int N, int C, cudaStream_t s, tg_error *err);
/* out = (x - mean) * rstd * w + bias with stored statistics (recompute in backward). */
template <typename X>
tg_status tg_cuda_layernorm_apply(X *out, const X *x, const float *mean, const float *rstd,
                                  const X *w, const X *bias, int N, int C, cudaStream_t s,
                                  tg_error *err);
/* dx += dLN/dx;  dw, db (fp32) += ... ; and when dsum != NULL, dsum (fp32, C) += the column
 * sums of the updated dx (the bias gradient of the projection whose output was added into this
 * residual, fused here to save a pass over dx). partial: TG_CUDA_COL_CHUNKS * 4C floats.
 * Rows of at most 1024 (bf16) / 512 (fp32) channels take the register kernel, longer ones the
 * row-cache kernel (layernorm.cu). */
template <typename X>
tg_status tg_cuda_layernorm_backward(X *dx, float *dw, float *db, float *dsum, float *partial,
                                     const X *dout, const X *x, const float *mean,
                                     const float *rstd, const X *w, int N, int C, cudaStream_t s,
                                     tg_error *err);

/* ---- attention.cu: causal self-attention through cuBLASLt strided-batched matmuls ----
 * qkvr holds q, k, v one after the other, each (B, NH, T, HS); att is (B, NH, T, T) softmax
 * probabilities, zero above the diagonal. */

/* qkv (B,T,3C) -> qkvr, att, out (B,T,C).  y: (B,NH,T,HS) scratch. */
template <typename X>
tg_status tg_cuda_attention_forward(const tg_cuda_blas *bl, X *out, X *qkvr, X *att, X *y,
                                    const X *qkv, int B, int T, int C, int NH, cudaStream_t s,
                                    tg_error *err);
/* Recomputes att from qkvr (for opt.recompute). */
template <typename X>
tg_status tg_cuda_attention_probs(const tg_cuda_blas *bl, X *att, const X *qkvr, int B, int T,
                                  int C, int NH, cudaStream_t s, tg_error *err);
/* dout (B,T,C) -> dqkv (B,T,3C).  Scratch: dqkvr (3BTC), datt (B,NH,T,T), dy (BTC). */
template <typename X>
tg_status tg_cuda_attention_backward(const tg_cuda_blas *bl, X *dqkv, X *dqkvr, X *datt, X *dy,
                                     const X *dout, const X *qkvr, const X *att, int B, int T,
                                     int C, int NH, cudaStream_t s, tg_error *err);

/* ---- flash_attention.cu: causal attention without the T x T matrix (bf16, sm_80+) ----
 * q, k, v are read in place from qkv (B, T, 3C); y is (B, T, C); lse (B, NH, T) fp32 holds the
 * log2-sum-exp of each row's scaled scores for backward. Head sizes 16, 32, 64. */
int tg_cuda_flash_supported(int head_size);
tg_status tg_cuda_flash_attention_forward(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T,
                                          int C, int NH, cudaStream_t s, tg_error *err);
/* dy (B,T,C) -> dqkv (B,T,3C) (overwritten). delta: (B, NH, T) fp32 scratch. */
tg_status tg_cuda_flash_attention_backward(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy,
                                           const tg_bf16 *y, const tg_bf16 *qkv, const float *lse,
                                           int B, int T, int C, int NH, cudaStream_t s, tg_error *err);
/* The same without the cp.async double buffering: the same arithmetic and bits, slower; for
 * tests, as the reference that the pipelining reads every tile after it landed. */
tg_status tg_cuda_flash_attention_forward_plain(tg_bf16 *y, float *lse, const tg_bf16 *qkv, int B, int T, int C,
                                                int NH, cudaStream_t s, tg_error *err);
tg_status tg_cuda_flash_attention_backward_plain(tg_bf16 *dqkv, float *delta, const tg_bf16 *dy, const tg_bf16 *y,
                                                 const tg_bf16 *qkv, const float *lse, int B, int T, int C, int NH,
                                                 cudaStream_t s, tg_error *err);

/* ---- cudnn_attention.cpp: the same through cuDNN's fused SDPA (see cudnn_attention.h) ---- */
#include "model/cuda/cudnn_attention.h"

/* ---- classifier.cu: softmax cross-entropy over the real vocab V of Vp padded columns ---- */

/* Per row: loss = logsumexp(logits[0:V)) - logits[target] (0 when target == -1); the
 * log-sum-exp into lse too when lse != NULL. */
template <typename X>
tg_status tg_cuda_crossentropy_forward(float *losses, float *lse, const X *logits,
                                       const int32_t *targets, int N, int V, int Vp,
                                       cudaStream_t s, tg_error *err);
/* In place: logits <- dscale * (softmax - onehot) for valid rows (softmax from the forward's
 * lse), 0 for ignored rows and for the padded columns [V, Vp). */
template <typename X>
tg_status tg_cuda_crossentropy_backward(X *logits, const float *lse, const int32_t *targets,
                                        float dscale, int N, int V, int Vp, cudaStream_t s,
                                        tg_error *err);

/* ---- adamw.cu ---- */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    float bc1, bc2; /* 1 - beta^t */
    int muon;       /* 1: chunks with muon set get Muon's momentum phase instead (model.h) */
    float momentum; /* Muon's */
    int nesterov;
} tg_cuda_adamw_hp;

/* A piece of the optimizer shard inside one tensor: elements [start, start + len) of the flat
 * buffers, len <= TG_CUDA_ADAMW_CHUNK, decay = the tensor's decay flag (0 for the padding),
 * muon = the tensor is a Muon matrix (tg_model_muon_tensor). */
typedef struct {
    unsigned long long start;
    unsigned int len;
    int decay;
    int muon;
} tg_cuda_adamw_chunk;
#define TG_CUDA_ADAMW_CHUNK 4096

/* Over the shard [lo, hi) of the flat buffers, given as chunks that cover it once: params (X,
 * full), grads (fp32, full), m, v, master (fp32, hi-lo, indexed i - lo; master NULL when X is
 * float: params are the master). Decoupled weight decay where the chunk's decay is 1. With
 * hp->muon, a chunk of a Muon matrix instead gets Muon's first phase, the CPU's arithmetic
 * operation for operation (no contraction into FMAs, so the same bits from the same inputs):
 * g' = g * grad_scale, m = momentum * m + (1 - momentum) * g', and the update written over its
 * gradients, (1 - momentum) * g' + momentum * m with Nesterov, else m; params and v untouched. */
template <typename X>
tg_status tg_cuda_adamw(X *params, float *master, float *grads, float *m, float *v,
                        size_t lo, const tg_cuda_adamw_chunk *chunks, int n_chunks,
                        const tg_cuda_adamw_hp *hp, cudaStream_t s, tg_error *err);

/* ---- muon.cu: Muon's orthogonalisation and update ---- */

/* Device scratch of the Newton-Schulz iteration, sized for the largest matrix it is given:
 * partial TG_CUDA_NORM_BLOCKS doubles, inv one float, X and Y n*k floats, A and B n*n floats
 * (n <= k the matrix's sides). */
typedef struct {
    double *partial;
    float *inv;
    float *X, *Y, *A, *B;
} tg_cuda_ns_scratch;

/* G (rows x cols fp32, row-major, device) <- scale * NS(G / (|G|_F + 1e-7)) in place: the
 * quintic Newton-Schulz iteration (a, b, c) = (3.4445, -4.7750, 2.0315), `steps` times, in fp32
 * (cuBLASLt matmuls with fp32 accumulation, no TF32), on the transpose when rows > cols so that
 * the Gram matrix is the smaller one. The CPU's algorithm (tg_cpu_newton_schulz) step for step;
 * only the summation orders of the norm and the matmuls differ. Enqueued on s, no host sync. */
tg_status tg_cuda_newton_schulz(const tg_cuda_blas *bl, float *G, int rows, int cols, int steps, float scale,
                                const tg_cuda_ns_scratch *ns, cudaStream_t s, tg_error *err);
/* Muon's last phase over the chunks of Muon matrices (others are skipped): p -= lr * (grads +
 * wd * p) on the master (or the fp32 params when master is NULL) and the working copy, the
 * CPU's arithmetic operation for operation. Layout as tg_cuda_adamw. */
template <typename X>
tg_status tg_cuda_muon_apply(X *params, float *master, const float *grads, size_t lo,
                             const tg_cuda_adamw_chunk *chunks, int n_chunks, float lr, float wd,
                             cudaStream_t s, tg_error *err);
/* dst[i] = (float)src[i] */
template <typename X>
tg_status tg_cuda_to_f32(float *dst, const X *src, size_t n, cudaStream_t s, tg_error *err);

/* ---- global_norm.cu ---- */

#define TG_CUDA_NORM_BLOCKS 1024
/* partial[k] (double, TG_CUDA_NORM_BLOCKS) = sum of g[i]^2 over block k's part of [lo, hi);
 * the host adds them in order (deterministic). */
tg_status tg_cuda_sqnorm_partials(double *partial, const float *g, size_t lo, size_t hi,
                                  cudaStream_t s, tg_error *err);

#endif
