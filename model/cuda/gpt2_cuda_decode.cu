/* model/cuda/gpt2_cuda_decode.cu — the KV-cache decoder of model/decode.h for GPT-2 on the CUDA
 * backend (tg_cuda_decoder_init in model/decode_backend.h).
 *
 * Device memory (one cudaMalloc, made at init): every layer's keys and values for T positions,
 * (L, T, C) each in the model's working dtype X (bf16 or fp32), and work buffers for up to T rows
 * (an append of n rows uses n of them). An append of n rows at positions [t0, t0 + n):
 *   the encoder's sum at absolute positions; per layer the forward's LayerNorm and matmul
 *   launchers (ops.cuh) at M = n, the new rows' keys and values copied into the cache, and
 *   attention of each new row over the cache positions [0, its own] (dec_attention_kernel, one
 *   block per head and row, fp32 softmax); then ln_f and the tied LM head for the last row only,
 *   into fp32 logits copied to the host.
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

extern "C" {
#include "model/decode_backend.h"
}

#define DEC_THREADS 256 /* attention block; a head size above it is refused */
#define DEC_ALIGN 256

typedef struct {
    tg_model *m;
    cuda_impl *p;
    int T, C, NH, hs, L, Vp;
    int len;             /* positions cached */
    char *mem;           /* device: everything below but the pinned buffers */
    void *k, *v;         /* (L, T, C) X: layer l, position t at (l * T + t) * C */
    void *res[2];        /* (T, C) X: the residual stream entering a layer, and leaving it */
    void *ln, *qkv, *atty, *proj, *res2, *fch, *fchg; /* (T, C), (T, 3C), (T, C) x 3, (T, 4C) x 2 */
    float *mean, *rstd;  /* (T) */
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

/* x (n, C) = wte[token] + wpe[t0 + r]: the encoder's sum, at absolute positions. */
template <typename X>
__global__ void dec_embed_kernel(X *x, const int32_t *in, const X *wte, const X *wpe, int n, int C) {
    const int t0 = in[0];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * C;
         i += (size_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / C), c = (int)(i % C);
        x[i] = tg_from_f32<X>(tg_to_f32(wte[(size_t)in[1 + r] * C + c]) + tg_to_f32(wpe[(size_t)(t0 + r) * C + c]));
    }
}

/* Cache rows t0 + r of one layer's k, v (T, C) <- the key and value thirds of qkv (n, 3C). */
template <typename X>
__global__ void dec_kv_store_kernel(X *k, X *v, const X *qkv, const int32_t *in, int n, int C) {
    const int t0 = in[0];
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)n * C;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / C, c = i % C;
        k[(t0 + r) * C + c] = qkv[r * 3 * C + C + c];
        v[(t0 + r) * C + c] = qkv[r * 3 * C + 2 * C + c];
    }
}

/* Head h = blockIdx.x of row r = blockIdx.y (position t = t0 + r) over the layer's cache
 * positions [0, t]: y = softmax(q . k / sqrt(hs)) v, in fp32, each sum in a fixed order (no
 * atomics). q is read from qkv (n, 3C), k and v from the cache (T, C); y is (n, C).
 * Shared memory: q (hs floats), red (DEC_THREADS floats), scores (t + 1 <= T floats). */
template <typename X>
__global__ void __launch_bounds__(DEC_THREADS)
    dec_attention_kernel(X *y, const X *qkv, const X *k, const X *v, const int32_t *in, int C, int hs, float scale) {
    extern __shared__ float sm[];
    float *q = sm, *red = sm + hs, *score = red + DEC_THREADS;
    const int h = blockIdx.x, r = blockIdx.y, t = in[0] + r;
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nwarps = DEC_THREADS / 32;
    const X *qr = qkv + (size_t)r * 3 * C + (size_t)h * hs;
    const X *kh = k + (size_t)h * hs, *vh = v + (size_t)h * hs;
    for (int d = tid; d < hs; d += DEC_THREADS) q[d] = tg_to_f32(qr[d]) * scale;
    __syncthreads();
    /* scores: one warp per cached position, its lanes along the head */
    float mx = -INFINITY;
    for (int j = warp; j <= t; j += nwarps) {
        const X *kj = kh + (size_t)j * C;
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
        for (int j = part; j <= t; j += parts) acc += score[j] * tg_to_f32(vh[(size_t)j * C + d]);
    red[tid] = acc;
    __syncthreads();
    if (tid < hs) {
        float o = 0.0f;
        for (int pp = 0; pp < parts; pp++) o += red[pp * hs + tid];
        y[(size_t)r * C + (size_t)h * hs + tid] = tg_from_f32<X>(o / total);
    }
}

/* ---- the step ---- */

template <typename X> static const X *dec_w(const cuda_decoder *d, int idx) {
    return (const X *)d->p->params + d->m->lay.tensors[idx].offset;
}
template <typename X> static const X *dec_bw(const cuda_decoder *d, int l, tg_gpt2_block_tensor k) {
    return dec_w<X>(d, tg_gpt2_block_index(l, k));
}

/* Enqueues an append of n rows on the model's stream, from the upload of h_in[0, n + 1) to the
 * download of the last row's fp32 logits into h_logits; synchronises nothing (so that the
 * one-row step can be captured). */
template <typename X>
static tg_status dec_enqueue(cuda_decoder *d, int n, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = d->p;
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int C = d->C, L = d->L, Vp = d->Vp, T = d->T;
    const size_t nc = (size_t)n * C;
    const float scale = 1.0f / sqrtf((float)d->hs);
    X *ln = (X *)d->ln, *qkv = (X *)d->qkv, *atty = (X *)d->atty, *proj = (X *)d->proj, *res2 = (X *)d->res2;
    X *fch = (X *)d->fch, *fchg = (X *)d->fchg;
    const X *wte = dec_w<X>(d, TG_GPT2_WTE);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(d->d_in, d->h_in, (size_t)(n + 1) * sizeof(int32_t), cudaMemcpyHostToDevice, s));
    dec_embed_kernel<X><<<tg_cuda_blocks(nc), TG_CUDA_THREADS, 0, s>>>((X *)d->res[0], d->d_in, wte,
                                                                       dec_w<X>(d, TG_GPT2_WPE), n, C);
    TG_CUDA_LAUNCH_CHECK(err);
    TG_TRY(tg_cuda_residual_layernorm_forward<X>(NULL, ln, d->mean, d->rstd, (const X *)d->res[0], NULL,
                                                 dec_bw<X>(d, 0, TG_GPT2_LN1_W), dec_bw<X>(d, 0, TG_GPT2_LN1_B), n,
                                                 C, s, err));
    for (int l = 0; l < L; l++) {
        const auto w = [&](tg_gpt2_block_tensor k) { return dec_bw<X>(d, l, k); };
        const X *x_in = (const X *)d->res[l % 2];
        X *x_out = (X *)d->res[(l + 1) % 2];
        X *kl = (X *)d->k + (size_t)l * T * C, *vl = (X *)d->v + (size_t)l * T * C;
        TG_TRY(tg_cuda_matmul_forward<X>(bl, qkv, ln, w(TG_GPT2_QKV_W), w(TG_GPT2_QKV_B), n, C, 3 * C, s, err));
        dec_kv_store_kernel<X><<<tg_cuda_blocks(nc), TG_CUDA_THREADS, 0, s>>>(kl, vl, qkv, d->d_in, n, C);
        TG_CUDA_LAUNCH_CHECK(err);
        dec_attention_kernel<X><<<dim3((unsigned)d->NH, (unsigned)n), DEC_THREADS, d->att_smem, s>>>(
            atty, qkv, kl, vl, d->d_in, C, d->hs, scale);
        TG_CUDA_LAUNCH_CHECK(err);
        /* res2 = x_in + atty @ Wproj + b; ln = LN2(res2) */
        TG_TRY(tg_cuda_matmul_forward<X>(bl, proj, atty, w(TG_GPT2_ATTPROJ_W), w(TG_GPT2_ATTPROJ_B), n, C, C, s, err));
        TG_TRY(tg_cuda_residual_layernorm_forward<X>(res2, ln, d->mean, d->rstd, x_in, proj, w(TG_GPT2_LN2_W),
                                                     w(TG_GPT2_LN2_B), n, C, s, err));
        TG_TRY(tg_cuda_matmul_forward_gelu<X>(bl, fchg, fch, ln, w(TG_GPT2_FC_W), w(TG_GPT2_FC_B), n, C, 4 * C, s,
                                              err));
        /* x_out = res2 + fchg @ Wfcproj + b; ln = the next LayerNorm of x_out (ln_1 of l + 1, or ln_f) */
        TG_TRY(tg_cuda_matmul_forward<X>(bl, proj, fchg, w(TG_GPT2_FCPROJ_W), w(TG_GPT2_FCPROJ_B), n, 4 * C, C, s,
                                         err));
        const X *nw = l + 1 < L ? dec_bw<X>(d, l + 1, TG_GPT2_LN1_W) : dec_w<X>(d, tg_gpt2_final_index(L, TG_GPT2_LNF_W));
        const X *nb = l + 1 < L ? dec_bw<X>(d, l + 1, TG_GPT2_LN1_B) : dec_w<X>(d, tg_gpt2_final_index(L, TG_GPT2_LNF_B));
        TG_TRY(tg_cuda_residual_layernorm_forward<X>(x_out, ln, d->mean, d->rstd, res2, proj, nw, nb, n, C, s, err));
    }
    /* The tied LM head for the last row, as lmhead_impl computes it: logits (1, Vp) = lnf @ wte^T */
    TG_TRY(tg_cuda_matmul_backward_input<X>(bl, (X *)d->logits_x, ln + (size_t)(n - 1) * C, wte, NULL, 1, Vp, C, s,
                                            err));
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
    const size_t T = (size_t)d->T, C = (size_t)d->C, L = (size_t)d->L;
    size_t off = 0;
    void *res0 = NULL, *res1 = NULL;
#define CARVE(ptr, bytes)                                                                      \
    do {                                                                                       \
        (ptr) = (decltype(ptr))(base ? base + off : NULL);                                     \
        off += ((size_t)(bytes) + DEC_ALIGN - 1) / DEC_ALIGN * DEC_ALIGN;                      \
    } while (0)
    CARVE(d->k, L * T * C * xs);
    CARVE(d->v, L * T * C * xs);
    CARVE(res0, T * C * xs);
    CARVE(res1, T * C * xs);
    d->res[0] = res0;
    d->res[1] = res1;
    CARVE(d->ln, T * C * xs);
    CARVE(d->qkv, 3 * T * C * xs);
    CARVE(d->atty, T * C * xs);
    CARVE(d->proj, T * C * xs);
    CARVE(d->res2, T * C * xs);
    CARVE(d->fch, 4 * T * C * xs);
    CARVE(d->fchg, 4 * T * C * xs);
    CARVE(d->mean, T * 4);
    CARVE(d->rstd, T * 4);
    CARVE(d->logits_x, (size_t)d->Vp * xs);
    if (xs == sizeof(float)) d->logits = (float *)d->logits_x;
    else CARVE(d->logits, (size_t)d->Vp * 4);
    CARVE(d->d_in, (T + 1) * 4);
#undef CARVE
    return off;
}

extern "C" tg_status tg_cuda_decoder_init(void **out, const tg_decoder_ops **ops, tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const tg_gpt2_config *c = &m->lay.cfg;
    cuda_decoder *d = NULL;
    int dev = 0, smem_max = 0;
    *out = NULL;
    if (m->ops != &tg_cuda_backend_ops)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: the CUDA KV cache is GPT-2's only (this model runs on the %s "
                "backend)", m->ops->name);
    if (c->n_embd / c->n_head > DEC_THREADS)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: head size %d above %d", c->n_embd / c->n_head, DEC_THREADS);
    d = (cuda_decoder *)calloc(1, sizeof *d);
    TG_CHECK_ALLOC(err, d);
    d->m = m;
    d->p = p;
    d->T = p->T, d->C = p->C, d->NH = p->NH, d->hs = p->C / p->NH, d->L = p->L, d->Vp = p->Vp;
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
