/* model/cuda/cuda_decode.cu — the KV-cache decoder of model/decode.h on the CUDA backends, GPT-2
 * and Llama (tg_cuda_decoder_init in model/decode_backend.h).
 *
 * Device memory (one cudaMalloc, made at init): every layer's keys and values for T positions,
 * (L, T, KV) each in the model's working dtype X (bf16 or fp32), KV = n_kv_head * head size (C for
 * GPT-2; Llama's grouped-query attention keeps its small cache: keys after RoPE), and work buffers
 * for up to T rows (an append of n rows uses n of them); Llama adds RoPE's cos/sin tables, made as
 * the backend makes them (tg_llama_rope_tables: the same fp32 numbers). An append of n rows at
 * positions [t0, t0 + n), with the launchers of the model's forward at M = n:
 *   GPT-2: the encoder's sum at absolute positions; per layer LayerNorm, the qkv matmul, the new
 *     rows' keys and values copied into the cache, attention of each new row over the cache
 *     positions [0, its own] (dec_attention_kernel, one block per head and row, fp32 softmax),
 *     c_proj, LayerNorm, c_fc + GELU, c_proj; then ln_f and the tied LM head for the last row.
 *   Llama: embed_tokens; per layer RMSNorm, the fused q|k|v matmul, RoPE at the rows' absolute
 *     positions (tg_cuda_llama_rope_at), keys and values into the cache, the same attention with
 *     query head h reading KV head h / (NH / NKV), o_proj, RMSNorm (residual add fused), the fused
 *     gate|up matmul, SwiGLU, down_proj; then model.norm and the LM head (lm_head, or embed_tokens
 *     when tied) for the last row.
 *   The logits are converted to fp32 and copied to the host.
 * The position t0 and the token ids travel to the device in one small upload that the kernels
 * read, so one row's step is the same sequence of launches at every position: the second
 * one-row append captures it as a CUDA graph and later ones launch that graph (the first ran it
 * plainly, so that cuBLASLt's plans, and with opt.cuda.cublaslt_tune its timing, exist before
 * the capture). If the capture fails, the decoder says so through the model's log and keeps
 * launching the kernels one by one.
 *
 * A token's cost is the same at every position but for attention, which reads the t cached rows.
 * Logits match the full forward's to rounding, not bitwise: cuBLASLt may pick another algorithm
 * (another summation order) for another M, and attention sums in its own order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/gpt2_cuda.cuh"
#include "model/cuda/llama_ops.cuh"

extern "C" {
#include "model/decode_backend.h"
#include "model/llama.h"
}

#define DEC_THREADS 256 /* attention block; a head size above it is refused */
#define DEC_ALIGN 256

typedef struct {
    tg_model *m;
    cuda_impl *p;
    int llama;           /* model.arch=llama */
    int T, C, NH, NKV, hs, L, Vp;
    int KV;              /* NKV * hs: one position's keys (or values) in one layer */
    int QKV;             /* one row of the q|k|v projection: GPT-2 3C, Llama C + 2 KV */
    int F;               /* Llama's SwiGLU width */
    float eps;           /* Llama's RMSNorm epsilon */
    int len;             /* positions cached */
    char *mem;           /* device: everything below but the pinned buffers */
    void *k, *v;         /* (L, T, KV) X: layer l, position t at (l * T + t) * KV */
    void *res[2];        /* (T, C) X: the residual stream entering a layer, and leaving it */
    void *ln, *qkv, *atty, *proj, *res2; /* (T, C), (T, QKV), (T, C) x 3 */
    void *mlp, *mlp_h;   /* GPT-2: c_fc's output and its GELU, (T, 4C) each; Llama: gate|up (T, 2F)
                          * and silu(gate) * up (T, F) */
    float *mean, *rstd;  /* (T): LayerNorm's statistics (GPT-2), RMSNorm's rstd (Llama; mean unused) */
    float *rope_cos, *rope_sin; /* Llama: (T, hs/2) fp32 */
    void *logits_x;      /* (Vp) X */
    float *logits;       /* (Vp) fp32 (logits_x itself when X is float) */
    int32_t *d_in;       /* t0, then the n token ids (T + 1 ints) */
    int32_t *h_in;       /* pinned mirror of d_in */
    float *h_logits;     /* pinned (Vp) */
    size_t att_smem;     /* dynamic shared memory of dec_attention_kernel */
    cudaGraphExec_t graph; /* the one-row step */
    int graph_state;       /* 0: not captured yet, 1: graph ready, -1: plain launches */
    int warm;              /* a one-row step has run plainly (cuBLASLt's plans exist) */
} cuda_decoder;

/* ---- kernels (in[0] = t0, in[1 + r] = token of row r) ---- */

/* x (n, C) = wte[token] + wpe[t0 + r]: the encoder's sum, at absolute positions; wpe NULL (Llama's
 * embed_tokens): x = wte[token], as encoder.cu copies it. */
template <typename X>
__global__ void dec_embed_kernel(X *x, const int32_t *in, const X *wte, const X *wpe, int n, int C) {
    const int t0 = in[0];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * C;
         i += (size_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / C), c = (int)(i % C);
        const X e = wte[(size_t)in[1 + r] * C + c];
        x[i] = wpe ? tg_from_f32<X>(tg_to_f32(e) + tg_to_f32(wpe[(size_t)(t0 + r) * C + c])) : e;
    }
}

/* Cache rows t0 + r of one layer's k, v (T, KV) <- columns [koff, koff + KV) (keys) and
 * [koff + KV, koff + 2 KV) (values) of the projection rows qkv (n, ldq). */
template <typename X>
__global__ void dec_kv_store_kernel(X *k, X *v, const X *qkv, int ldq, int koff, const int32_t *in, int n, int KV) {
    const int t0 = in[0];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * KV;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / KV, c = i % KV;
        k[(t0 + r) * KV + c] = qkv[r * ldq + koff + c];
        v[(t0 + r) * KV + c] = qkv[r * ldq + koff + KV + c];
    }
}

/* Query head h = blockIdx.x of row r = blockIdx.y (position t = t0 + r) over the layer's cache
 * positions [0, t] of KV head h / group: y = softmax(q . k / sqrt(hs)) v, in fp32, each sum in a
 * fixed order (no atomics). q is read from the projection rows qkv (n, ldq) at column h * hs, k
 * and v from the cache (T, KV); y is (n, NH * hs), NH = gridDim.x.
 * Shared memory: q (hs floats), red (DEC_THREADS floats), scores (t + 1 <= T floats). */
template <typename X>
__global__ void __launch_bounds__(DEC_THREADS)
    dec_attention_kernel(X *y, const X *qkv, int ldq, const X *k, const X *v, int KV, int group, const int32_t *in,
                         int hs, float scale) {
    extern __shared__ float sm[];
    float *q = sm, *red = sm + hs, *score = red + DEC_THREADS;
    const int h = blockIdx.x, r = blockIdx.y, t = in[0] + r, C = gridDim.x * hs;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nwarps = DEC_THREADS / 32;
    const X *qr = qkv + (size_t)r * ldq + (size_t)h * hs;
    const X *kh = k + (size_t)(h / group) * hs, *vh = v + (size_t)(h / group) * hs;
    for (int d = tid; d < hs; d += DEC_THREADS) q[d] = tg_to_f32(qr[d]) * scale;
    __syncthreads();
    /* scores: one warp per cached position, its lanes along the head */
    float mx = -INFINITY;
    for (int j = warp; j <= t; j += nwarps) {
        const X *kj = kh + (size_t)j * KV;
        float s = 0.0f;
        for (int d = lane; d < hs; d += 32) s += q[d] * tg_to_f32(kj[d]);
        s = tg_warp_sum(s); /* every lane holds the sum */
        if (lane == 0) score[j] = s;
        mx = fmaxf(mx, s);
    }
    if (lane == 0) red[warp] = mx;
    __syncthreads();
    mx = red[0];
    for (int w = 1; w < nwarps; w++) mx = fmaxf(mx, red[w]);
    __syncthreads(); /* red is reused below */
    float sum = 0.0f;
    for (int j = tid; j <= t; j += DEC_THREADS) {
        const float e = expf(score[j] - mx);
        score[j] = e;
        sum += e;
    }
    sum = tg_warp_sum(sum);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    float total = 0.0f;
    for (int w = 0; w < nwarps; w++) total += red[w];
    __syncthreads(); /* red is reused below; score is complete */
    /* y: thread (part, d) sums positions part, part + parts, ... of channel d; then the parts
     * are added in order */
    const int parts = DEC_THREADS / hs, d = tid % hs, part = tid / hs;
    float acc = 0.0f;
    if (part < parts)
        for (int j = part; j <= t; j += parts) acc += score[j] * tg_to_f32(vh[(size_t)j * KV + d]);
    red[tid] = acc;
    __syncthreads();
    if (tid < hs) {
        float o = 0.0f;
        for (int pp = 0; pp < parts; pp++) o += red[pp * hs + tid];
        y[(size_t)r * C + (size_t)h * hs + tid] = tg_from_f32<X>(o / total);
    }
}

/* ---- the step ---- */

template <typename X> static const X *dec_w(const cuda_decoder *d, int idx) { return wt<X>(d->m, d->p, idx); }

/* Layer l's cache of keys and of values. */
template <typename X> static X *dec_k(const cuda_decoder *d, int l) { return (X *)d->k + (size_t)l * d->T * d->KV; }
template <typename X> static X *dec_v(const cuda_decoder *d, int l) { return (X *)d->v + (size_t)l * d->T * d->KV; }

/* The new rows' keys and values (in the projection rows qkv at column C) into layer l's cache,
 * then attention of each new row over it into atty. */
template <typename X> static tg_status dec_attend(cuda_decoder *d, int l, int n, tg_error *err) {
    tg_status st = TG_OK;
    const cudaStream_t s = d->p->stream;
    const float scale = 1.0f / sqrtf((float)d->hs);
    X *kl = dec_k<X>(d, l), *vl = dec_v<X>(d, l);
    dec_kv_store_kernel<X><<<tg_cuda_blocks((size_t)n * d->KV), TG_CUDA_THREADS, 0, s>>>(
        kl, vl, (const X *)d->qkv, d->QKV, d->C, d->d_in, n, d->KV);
    TG_CUDA_LAUNCH_CHECK(err);
    dec_attention_kernel<X><<<dim3((unsigned)d->NH, (unsigned)n), DEC_THREADS, d->att_smem, s>>>(
        (X *)d->atty, (const X *)d->qkv, d->QKV, kl, vl, d->KV, d->NH / d->NKV, d->d_in, d->hs, scale);
    TG_CUDA_LAUNCH_CHECK(err);
cleanup:
    return st;
}

/* GPT-2's n rows from the embeddings to ln_f's output in ln. */
template <typename X> static tg_status dec_gpt2_layers(cuda_decoder *d, int n, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = d->p;
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int C = d->C, L = d->L;
    X *ln = (X *)d->ln, *qkv = (X *)d->qkv, *atty = (X *)d->atty, *proj = (X *)d->proj, *res2 = (X *)d->res2;
    X *fch = (X *)d->mlp, *fchg = (X *)d->mlp_h;
    dec_embed_kernel<X><<<tg_cuda_blocks((size_t)n * C), TG_CUDA_THREADS, 0, s>>>(
        (X *)d->res[0], d->d_in, dec_w<X>(d, TG_GPT2_WTE), dec_w<X>(d, TG_GPT2_WPE), n, C);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_residual_layernorm_forward<X>(NULL, ln, d->mean, d->rstd, (const X *)d->res[0], NULL,
                                                 dec_w<X>(d, tg_gpt2_block_index(0, TG_GPT2_LN1_W)),
                                                 dec_w<X>(d, tg_gpt2_block_index(0, TG_GPT2_LN1_B)), n, C, s, err));
    for (int l = 0; l < L; l++) {
        const auto w = [&](tg_gpt2_block_tensor k) { return dec_w<X>(d, tg_gpt2_block_index(l, k)); };
        const X *x_in = (const X *)d->res[l % 2];
        X *x_out = (X *)d->res[(l + 1) % 2];
        TG_TRY(tg_cuda_matmul_forward<X>(bl, qkv, ln, w(TG_GPT2_QKV_W), w(TG_GPT2_QKV_B), n, C, 3 * C, s, err));
        TG_TRY(dec_attend<X>(d, l, n, err));
        /* res2 = x_in + atty @ Wproj + b; ln = LN2(res2) */
        TG_TRY(tg_cuda_matmul_forward<X>(bl, proj, atty, w(TG_GPT2_ATTPROJ_W), w(TG_GPT2_ATTPROJ_B), n, C, C, s, err));
        TG_TRY(tg_cuda_residual_layernorm_forward<X>(res2, ln, d->mean, d->rstd, x_in, proj, w(TG_GPT2_LN2_W),
                                                     w(TG_GPT2_LN2_B), n, C, s, err));
        TG_TRY(tg_cuda_matmul_forward_gelu<X>(bl, fchg, fch, ln, w(TG_GPT2_FC_W), w(TG_GPT2_FC_B), n, C, 4 * C, s,
                                              err));
        /* x_out = res2 + fchg @ Wfcproj + b; ln = the next LayerNorm of x_out (ln_1 of l + 1, or ln_f) */
        TG_TRY(tg_cuda_matmul_forward<X>(bl, proj, fchg, w(TG_GPT2_FCPROJ_W), w(TG_GPT2_FCPROJ_B), n, 4 * C, C, s,
                                         err));
        const int last = l + 1 == L;
        const X *nw = dec_w<X>(d, last ? tg_gpt2_final_index(L, TG_GPT2_LNF_W)
                                       : tg_gpt2_block_index(l + 1, TG_GPT2_LN1_W));
        const X *nb = dec_w<X>(d, last ? tg_gpt2_final_index(L, TG_GPT2_LNF_B)
                                       : tg_gpt2_block_index(l + 1, TG_GPT2_LN1_B));
        TG_TRY(tg_cuda_residual_layernorm_forward<X>(x_out, ln, d->mean, d->rstd, res2, proj, nw, nb, n, C, s, err));
    }
cleanup:
    return st;
}

/* out (n, OUT) = inp (n, IN) @ W^T for W (OUT, IN) as nn.Linear stores it: matmul.cu's
 * input-gradient form, as llama_cuda.cu's linear_forward calls it. */
template <typename X>
static tg_status dec_linear(cuda_decoder *d, X *out, const X *inp, const X *W, int n, int IN, int OUT, tg_error *err) {
    return tg_cuda_matmul_backward_input<X>(&d->p->blas, out, inp, W, NULL, n, OUT, IN, d->p->stream, err);
}

/* Llama's n rows from embed_tokens to model.norm's output in ln: llama_cuda.cu's forward_impl
 * op for op, with RoPE at the absolute positions and attention over the cache. */
template <typename X> static tg_status dec_llama_layers(cuda_decoder *d, int n, tg_error *err) {
    tg_status st = TG_OK;
    const cudaStream_t s = d->p->stream;
    const int C = d->C, L = d->L, F = d->F;
    const float eps = d->eps;
    X *ln = (X *)d->ln, *qkv = (X *)d->qkv, *atty = (X *)d->atty, *proj = (X *)d->proj, *res2 = (X *)d->res2;
    X *gu = (X *)d->mlp, *h = (X *)d->mlp_h;
    dec_embed_kernel<X><<<tg_cuda_blocks((size_t)n * C), TG_CUDA_THREADS, 0, s>>>(
        (X *)d->res[0], d->d_in, dec_w<X>(d, TG_LLAMA_EMBED), NULL, n, C);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_residual_rmsnorm_forward<X>(NULL, ln, d->rstd, (const X *)d->res[0], NULL,
                                               dec_w<X>(d, tg_llama_block_index(0, TG_LLAMA_IN_NORM)), n, C, eps, s,
                                               err));
    for (int l = 0; l < L; l++) {
        const auto w = [&](tg_llama_block_tensor k) { return dec_w<X>(d, tg_llama_block_index(l, k)); };
        const X *x_in = (const X *)d->res[l % 2];
        X *x_out = (X *)d->res[(l + 1) % 2];
        /* q|k|v (n, C + 2KV) = ln @ [Wq; Wk; Wv]^T (adjacent in the flat buffer), q and k rotated
         * in place at their positions: keys enter the cache rotated, as attention reads them */
        TG_TRY(dec_linear<X>(d, qkv, ln, w(TG_LLAMA_Q), n, C, d->QKV, err));
        TG_TRY(tg_cuda_llama_rope_at<X>(qkv, qkv, d->rope_cos, d->rope_sin, d->d_in, n, d->NH, d->NKV, d->hs, s,
                                        err));
        TG_TRY(dec_attend<X>(d, l, n, err));
        /* res2 = x_in + atty @ Wo^T;  ln = RMSNorm(res2) */
        TG_TRY(dec_linear<X>(d, proj, atty, w(TG_LLAMA_O), n, C, C, err));
        TG_TRY(tg_cuda_residual_rmsnorm_forward<X>(res2, ln, d->rstd, x_in, proj, w(TG_LLAMA_POST_NORM), n, C, eps, s,
                                                   err));
        /* gate|up (n, 2F) = ln @ [Wgate; Wup]^T;  h = silu(gate) * up */
        TG_TRY(dec_linear<X>(d, gu, ln, w(TG_LLAMA_GATE), n, C, 2 * F, err));
        TG_TRY(tg_cuda_swiglu_forward<X>(h, gu, n, F, s, err));
        /* x_out = res2 + h @ Wdown^T;  ln = the next RMSNorm of x_out (input_layernorm of l + 1, or
         * model.norm) */
        TG_TRY(dec_linear<X>(d, proj, h, w(TG_LLAMA_DOWN), n, F, C, err));
        const X *nw = dec_w<X>(d, l + 1 < L ? tg_llama_block_index(l + 1, TG_LLAMA_IN_NORM) : tg_llama_norm_index(L));
        TG_TRY(tg_cuda_residual_rmsnorm_forward<X>(x_out, ln, d->rstd, res2, proj, nw, n, C, eps, s, err));
    }
cleanup:
    return st;
}

/* Enqueues an append of n rows on the model's stream, from the upload of h_in[0, n + 1) to the
 * download of the last row's fp32 logits into h_logits; synchronises nothing (so that the
 * one-row step can be captured). */
template <typename X>
static tg_status dec_enqueue(cuda_decoder *d, int n, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = d->p;
    const cudaStream_t s = p->stream;
    const int C = d->C, Vp = d->Vp;
    TG_CUDA_CHECK(err, cudaMemcpyAsync(d->d_in, d->h_in, (size_t)(n + 1) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    if (d->llama) TG_TRY(dec_llama_layers<X>(d, n, err));
    else TG_TRY(dec_gpt2_layers<X>(d, n, err));
    /* The LM head for the last row, as cuda_lmhead computes it: logits (1, Vp) = ln @ W^T with W
     * (Vp, C) the tensor at p->head_idx (GPT-2's wte; Llama's lm_head or its tied embed_tokens) */
    TG_TRY(tg_cuda_matmul_backward_input<X>(&p->blas, (X *)d->logits_x, (const X *)d->ln + (size_t)(n - 1) * C,
                                            dec_w<X>(d, p->head_idx), NULL, 1, Vp, C, s, err));
    if ((void *)d->logits != d->logits_x)
        TG_TRY(tg_cuda_to_f32<X>(d->logits, (const X *)d->logits_x, (size_t)Vp, s, err));
    TG_CUDA_CHECK(err, cudaMemcpyAsync(d->h_logits, d->logits, (size_t)Vp * sizeof(float), cudaMemcpyDeviceToHost, s));
cleanup:
    return st;
}

static tg_status dec_enqueue_x(cuda_decoder *d, int n, tg_error *err) {
    return d->p->bf16 ? dec_enqueue<tg_bf16>(d, n, err) : dec_enqueue<float>(d, n, err);
}

/* Captures the one-row step into d->graph (graph_state 1), or gives up on graphs (graph_state
 * -1, said through the log) when the capture fails: the step then runs as plain launches. */
static void dec_capture(cuda_decoder *d) {
    tg_error cerr;
    memset(&cerr, 0, sizeof cerr);
    cudaGraph_t g = NULL;
    const cudaStream_t s = d->p->stream;
    cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed);
    tg_status st = e == cudaSuccess ? dec_enqueue_x(d, 1, &cerr) : TG_ERR_CUDA;
    if (e == cudaSuccess) {
        const cudaError_t e2 = cudaStreamEndCapture(s, &g); /* ends the capture even after a failed enqueue */
        if (e2 != cudaSuccess && st == TG_OK) e = e2, st = TG_ERR_CUDA;
    }
    if (st == TG_OK && (e = cudaGraphInstantiate(&d->graph, g, 0)) != cudaSuccess) st = TG_ERR_CUDA;
    if (g) cudaGraphDestroy(g);
    if (st == TG_OK) {
        d->graph_state = 1;
        return;
    }
    d->graph = NULL;
    d->graph_state = -1;
    (void)cudaGetLastError(); /* the capture's error is not the next launch's */
    tg_log_warn(d->p->log, "decoder: no CUDA graph for the one-token step (%s); launching its kernels one by one",
                e != cudaSuccess ? cudaGetErrorString(e) : cerr.msg);
}

static void dec_free(void *impl) {
    cuda_decoder *d = (cuda_decoder *)impl;
    if (!d) return;
    /* Errors are ignored here: there is nobody to report them to, and freeing must go on. */
    cudaStreamSynchronize(d->p->stream);
    if (d->graph) cudaGraphExecDestroy(d->graph);
    cudaFree(d->mem);
    cudaFreeHost(d->h_in);
    cudaFreeHost(d->h_logits);
    free(d);
}

static tg_status dec_append(void *impl, const int32_t *ids, int n, float *logits, tg_error *err) {
    tg_status st = TG_OK;
    cuda_decoder *d = (cuda_decoder *)impl;
    /* the previous append synchronised: nothing reads h_in or writes h_logits now */
    d->h_in[0] = d->len;
    memcpy(d->h_in + 1, ids, (size_t)n * sizeof(int32_t));
    if (n == 1 && d->warm && d->graph_state == 0) dec_capture(d);
    if (n == 1 && d->graph_state == 1) {
        TG_CUDA_CHECK(err, cudaGraphLaunch(d->graph, d->p->stream));
    } else {
        TG_TRY(dec_enqueue_x(d, n, err));
        if (n == 1) d->warm = 1;
    }
    TG_CUDA_CHECK(err, cudaStreamSynchronize(d->p->stream));
    memcpy(logits, d->h_logits, (size_t)d->Vp * sizeof(float));
    d->len += n;
cleanup:
    return st;
}

static const tg_decoder_ops cuda_decoder_ops = {"cuda", dec_free, dec_append};

/* Lays out the device memory at base (or only sizes it when base is NULL). */
static size_t dec_carve(cuda_decoder *d, char *base, size_t xs) {
    const size_t T = (size_t)d->T, C = (size_t)d->C, L = (size_t)d->L, KV = (size_t)d->KV;
    /* widths of the MLP's two buffers: c_fc and its GELU (4C each), or gate|up (2F) and h (F) */
    const size_t mlp = d->llama ? 2 * (size_t)d->F : 4 * C, mlp_h = d->llama ? (size_t)d->F : 4 * C;
    const size_t half = (size_t)d->hs / 2;
    size_t off = 0;
    void *res0 = NULL, *res1 = NULL;
#define CARVE(ptr, bytes)                                                                      \
    do {                                                                                       \
        (ptr) = (decltype(ptr))(base ? base + off : NULL);                                     \
        off += ((size_t)(bytes) + DEC_ALIGN - 1) / DEC_ALIGN * DEC_ALIGN;                      \
    } while (0)
    CARVE(d->k, L * T * KV * xs);
    CARVE(d->v, L * T * KV * xs);
    CARVE(res0, T * C * xs);
    CARVE(res1, T * C * xs);
    d->res[0] = res0;
    d->res[1] = res1;
    CARVE(d->ln, T * C * xs);
    CARVE(d->qkv, T * (size_t)d->QKV * xs);
    CARVE(d->atty, T * C * xs);
    CARVE(d->proj, T * C * xs);
    CARVE(d->res2, T * C * xs);
    CARVE(d->mlp, T * mlp * xs);
    CARVE(d->mlp_h, T * mlp_h * xs);
    if (!d->llama) CARVE(d->mean, T * 4);
    CARVE(d->rstd, T * 4);
    if (d->llama) {
        CARVE(d->rope_cos, T * half * 4);
        CARVE(d->rope_sin, T * half * 4);
    }
    CARVE(d->logits_x, (size_t)d->Vp * xs);
    if (xs == sizeof(float)) d->logits = (float *)d->logits_x;
    else CARVE(d->logits, (size_t)d->Vp * 4);
    CARVE(d->d_in, (T + 1) * 4);
#undef CARVE
    return off;
}

/* Llama: RoPE's tables for positions [0, T), made on the host exactly as llama_cuda.cu makes the
 * forward's (the same fp32 numbers), into rope_cos and rope_sin. */
static tg_status dec_rope_tables(cuda_decoder *d, tg_error *err) {
    tg_status st = TG_OK;
    const size_t half = (size_t)d->hs / 2, n = (size_t)d->T * half;
    float *inv = (float *)malloc(half * sizeof(float)), *tab = (float *)malloc(2 * n * sizeof(float));
    TG_CHECK_ALLOC(err, inv);
    TG_CHECK_ALLOC(err, tab);
    tg_llama_rope_inv_freq(&d->m->lay.cfg, inv);
    tg_llama_rope_tables(tab, tab + n, d->T, (int)half, inv);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(d->rope_cos, tab, n * sizeof(float), cudaMemcpyHostToDevice, d->p->stream));
    TG_CUDA_CHECK(err, cudaMemcpyAsync(d->rope_sin, tab + n, n * sizeof(float), cudaMemcpyHostToDevice, d->p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(d->p->stream)); /* before tab is freed */
cleanup:
    free(inv);
    free(tab);
    return st;
}

extern "C" tg_status tg_cuda_decoder_init(void **out, const tg_decoder_ops **ops, tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl; /* Llama's impl starts with its cuda_impl */
    const tg_gpt2_config *c = &m->lay.cfg;
    cuda_decoder *d = NULL;
    int dev = 0, smem_max = 0;
    *out = NULL;
    if (m->ops != &tg_cuda_backend_ops && m->ops != &tg_cuda_llama_backend_ops)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: no CUDA KV cache for the %s backend", m->ops->name);
    if (c->n_embd / c->n_head > DEC_THREADS)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: head size %d above %d", c->n_embd / c->n_head, DEC_THREADS);
    d = (cuda_decoder *)calloc(1, sizeof *d);
    TG_CHECK_ALLOC(err, d);
    d->m = m;
    d->p = p;
    d->llama = m->ops == &tg_cuda_llama_backend_ops;
    d->T = p->T, d->C = p->C, d->NH = p->NH, d->NKV = p->NKV, d->hs = p->C / p->NH, d->L = p->L, d->Vp = p->Vp;
    d->KV = d->NKV * d->hs;
    d->QKV = d->llama ? d->C + 2 * d->KV : 3 * d->C;
    d->F = d->llama ? c->ffn_dim : 0;
    d->eps = (float)c->norm_eps;
    d->att_smem = (size_t)(d->hs + DEC_THREADS + d->T) * sizeof(float);
    TG_CUDA_CHECK(err, cudaGetDevice(&dev));
    TG_CUDA_CHECK(err, cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (d->att_smem > (size_t)smem_max)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: T=%d needs %zu bytes of shared memory per block, the device has %d",
                d->T, d->att_smem, smem_max);
    if (d->att_smem > 48 * 1024) {
        if (p->bf16)
            TG_CUDA_CHECK(err, cudaFuncSetAttribute(dec_attention_kernel<tg_bf16>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)d->att_smem));
        else
            TG_CUDA_CHECK(err, cudaFuncSetAttribute(dec_attention_kernel<float>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)d->att_smem));
    }
    {
        const size_t bytes = dec_carve(d, NULL, p->xs);
        TG_CUDA_CHECK(err, cudaMalloc(&d->mem, bytes));
        dec_carve(d, d->mem, p->xs);
    }
    if (d->llama) TG_TRY(dec_rope_tables(d, err));
    TG_CUDA_CHECK(err, cudaMallocHost(&d->h_in, ((size_t)d->T + 1) * sizeof(int32_t)));
    TG_CUDA_CHECK(err, cudaMallocHost(&d->h_logits, (size_t)d->Vp * sizeof(float)));
    *out = d;
    *ops = &cuda_decoder_ops;
    d = NULL;
cleanup:
    if (d) {
        cudaFree(d->mem);
        cudaFreeHost(d->h_in);
        cudaFreeHost(d->h_logits);
        free(d);
    }
    return st;
}
