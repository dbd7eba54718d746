/* model/cuda/llama_cuda.cu — the CUDA backend of model/model.h for model.arch=llama
 * (tg_cuda_llama_backend_ops): pre-RMSNorm blocks, RoPE, grouped-query attention, SwiGLU, no
 * biases, tied or untied LM head, over model/llama.h's flat parameter layout (the CPU backend's,
 * so checkpoints, ZeRO-1 sharding and the trainer see no difference).
 *
 * Everything that is not Llama's own is GPT-2's (gpt2_cuda.cu/.cuh): the state is a cuda_impl
 * followed by the fields below, so init of the device, the staging of inputs and of params /
 * grads / optimizer state, the chunked LM head with the cross-entropy (at tensor head_idx),
 * gradient norms, AdamW with fp32 master weights under bf16 and the cuBLASLt tuning are the same
 * code. Precision as GPT-2's on CUDA: activations X = bf16 (opt.bf16) or fp32, fp32 statistics
 * and accumulation, fp32 parameter gradients.
 *
 * Fusions: q|k|v are one matmul (q_proj, k_proj, v_proj are adjacent (C + 2KV, C) rows of the
 * flat buffer), and so are gate|up (2F, C); RoPE is applied while the q|k|v rows are laid out
 * for attention (llama_kernels.cu), its inverse while their gradients are laid back; the
 * residual add is fused into the RMSNorm after it. Attention is GPT-2's (cuBLASLt + softmax in
 * fp32; flash kernels or cuDNN SDPA in bf16). cuDNN takes the n_kv_head heads as they are
 * (grouped-query attention built into its graphs: RoPE is applied in the projection's layout, and
 * cuDNN sums dk, dv over each group); for the MHA kernels (flash, cuBLASLt) each KV head is
 * repeated over its group of query heads in the re-layout, and backward sums the group's
 * gradients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/gpt2_cuda.cuh"
#include "model/cuda/llama_ops.cuh"

extern "C" {
#include "model/llama.h"
}

/* Activations of one block; (B,T,C) X unless noted. */
typedef struct {
    void *ln1;       /* input_layernorm output */
    float *rstd1;    /* (B,T) */
    void *qkvr;      /* the attention input: flash (B,T,3C) (roped q | roped k | v, KV heads repeated);
                      * cuDNN (B,T,C+2KV) (roped q | roped k | v, NKV heads); cuBLASLt attention:
                      * q, k, v each (B,NH,T,HS) (attention.cu) */
    void *att;       /* cuBLASLt attention: (B,NH,T,T) softmax; else NULL */
    float *lse;      /* flash / cuDNN: (B,NH,T) */
    void *atty;      /* attention output before o_proj */
    void *res2;      /* residual after attention */
    void *ln2;       /* post_attention_layernorm output */
    float *rstd2;    /* (B,T) */
    void *gu;        /* (B,T,2F) gate | up */
    void *h;         /* (B,T,F) silu(gate) * up */
    void *res3;      /* block output */
} llama_layer_acts;

typedef struct {
    cuda_impl base; /* first: gpt2_cuda.cu's shared ops take m->impl as a cuda_impl */
    int NKV, HS, F, KV;
    float eps;
    llama_layer_acts *layers; /* L */
    float *rope_cos, *rope_sin; /* (T, HS/2) fp32, tg_llama_rope_tables */
    /* backward scratch (base has dres, s_btc and the attention scratch) */
    void *s_raw;  /* (B,T,C+2KV): the q|k|v projection (forward), its gradient (backward) */
    void *s_qkv3; /* (B,T,3C): cuBLASLt attention's input (forward), dqkv (backward) */
    void *s_dh;   /* (B,T,F) */
    void *s_dgu;  /* (B,T,2F) */
} llama_impl;

/* Lays out the activation buffer at base (or only sizes it when base is NULL). lnf_rstd is
 * final norm's rstd; lnf_mean, s_bt4c and the GPT-2 layers stay NULL. */
static size_t llama_carve(llama_impl *q, char *base) {
    cuda_impl *p = &q->base;
    const size_t B = (size_t)p->B, T = (size_t)p->T, C = (size_t)p->C, NH = (size_t)p->NH, F = (size_t)q->F;
    const size_t BT = B * T, BTC = BT * C, xs = p->xs, ATT = B * NH * T * T, QKV = C + 2 * (size_t)q->KV;
    const size_t head_max = BT < (size_t)p->head_rows ? BT : (size_t)p->head_rows;
    const size_t half = (size_t)q->HS / 2;
    size_t off = 0;
#define CARVE(ptr, bytes)                                                                      \
    do {                                                                                       \
        (ptr) = (decltype(ptr))(base ? base + off : NULL);                                     \
        off += ((size_t)(bytes) + TG_CUDA_ALIGN - 1) / TG_CUDA_ALIGN * TG_CUDA_ALIGN;          \
    } while (0)
    CARVE(p->encoded, BTC * xs);
    for (int l = 0; l < p->L; l++) {
        llama_layer_acts *a = &q->layers[l];
        CARVE(a->ln1, BTC * xs);
        CARVE(a->rstd1, BT * 4);
        CARVE(a->qkvr, 3 * BTC * xs);
        if (p->flash) CARVE(a->lse, B * NH * T * 4);
        else CARVE(a->att, ATT * xs);
        CARVE(a->atty, BTC * xs);
        CARVE(a->res2, BTC * xs);
        CARVE(a->ln2, BTC * xs);
        CARVE(a->rstd2, BT * 4);
        CARVE(a->gu, 2 * BT * F * xs);
        CARVE(a->h, BT * F * xs);
        CARVE(a->res3, BTC * xs);
    }
    CARVE(p->lnf, BTC * xs);
    CARVE(p->lnf_rstd, BT * 4);
    CARVE(p->logits, head_max * (size_t)p->Vp * xs);
    CARVE(p->lse, head_max * 4);
    CARVE(p->losses, BT * 4);
    CARVE(p->dres, BTC * xs);
    CARVE(p->s_btc, BTC * xs);
    CARVE(q->s_raw, BT * QKV * xs);
    CARVE(q->s_qkv3, 3 * BTC * xs);
    CARVE(q->s_dh, BT * F * xs);
    CARVE(q->s_dgu, 2 * BT * F * xs);
    if (p->cudnn) CARVE(p->cudnn_ws, tg_cudnn_attn_workspace(p->cudnn));
    if (p->flash) {
        CARVE(p->s_delta, B * NH * T * 4);
    } else {
        CARVE(p->s_dqkvr, 3 * BTC * xs);
        CARVE(p->s_heads, BTC * xs);
        CARVE(p->s_datt, ATT * xs);
    }
    CARVE(p->s_partial, (size_t)TG_CUDA_COL_CHUNKS * C * 4); /* the RMSNorm weight-gradient partials */
    CARVE(p->blas.workspace, TG_CUDA_WORKSPACE_BYTES);
    CARVE(p->d_io, cuda_io_ints(p) * 4);
    CARVE(p->d_norm, (size_t)TG_CUDA_NORM_BLOCKS * 8);
    CARVE(q->rope_cos, T * half * 4);
    CARVE(q->rope_sin, T * half * 4);
#undef CARVE
    p->blas.workspace_bytes = TG_CUDA_WORKSPACE_BYTES;
    return off;
}

static void llama_free(tg_model *m) {
    llama_impl *q = (llama_impl *)m->impl;
    if (!q) return;
    free(q->layers);
    q->layers = NULL;
    cuda_free(m); /* the rest, and q itself */
}

static tg_status llama_init(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    const tg_gpt2_config *c = &m->lay.cfg;
    llama_impl *q = (llama_impl *)calloc(1, sizeof(llama_impl));
    cuda_impl *p = NULL;
    float *inv = NULL, *tab = NULL;
    size_t half = 0, n = 0;
    TG_CHECK_ALLOC(err, q);
    m->impl = q;
    p = &q->base;
    if (m->opt.recompute != 0)
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "cuda: model.arch=llama keeps every activation (recompute=%d: only 0)",
                m->opt.recompute);
    TG_TRY(cuda_device_init(m, p, err));
    p->head_idx = tg_llama_head_index(c);
    q->NKV = c->n_kv_head;
    q->HS = c->n_embd / c->n_head;
    q->KV = q->NKV * q->HS;
    q->F = c->ffn_dim;
    q->eps = (float)c->norm_eps;
    {
        const size_t k = strlen(p->note);
        if (p->cudnn)
            snprintf(p->note + k, sizeof p->note - k,
                     ", llama (cuDNN reads the %d KV heads; for the flash kernels they are repeated over %d query "
                     "heads)", q->NKV, p->NH);
        else
            snprintf(p->note + k, sizeof p->note - k, ", llama (%d KV heads repeated over %d query heads)", q->NKV,
                     p->NH);
    }

    q->layers = (llama_layer_acts *)calloc((size_t)p->L, sizeof(llama_layer_acts));
    TG_CHECK_ALLOC(err, q->layers);
    p->act_bytes = llama_carve(q, NULL);
    TG_CUDA_CHECK(err, cudaMalloc(&p->act_mem, p->act_bytes));
    llama_carve(q, p->act_mem);
    tg_cudnn_attn_set_workspace(p->cudnn, p->cudnn_ws);
    TG_TRY(cuda_staging_init(p, err));

    /* RoPE's tables, made on the host exactly as the CPU backend makes them */
    half = (size_t)q->HS / 2;
    n = (size_t)p->T * half;
    inv = (float *)malloc(half * sizeof(float));
    tab = (float *)malloc(2 * n * sizeof(float));
    TG_CHECK_ALLOC(err, inv);
    TG_CHECK_ALLOC(err, tab);
    tg_llama_rope_inv_freq(c, inv);
    tg_llama_rope_tables(tab, tab + n, p->T, (int)half, inv);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(q->rope_cos, tab, n * sizeof(float), cudaMemcpyHostToDevice, p->stream));
    TG_CUDA_CHECK(err, cudaMemcpyAsync(q->rope_sin, tab + n, n * sizeof(float), cudaMemcpyHostToDevice, p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
cleanup:
    free(inv);
    free(tab);
    if (st != TG_OK) llama_free(m);
    return st;
}

/* out (N, OUT) = inp (N, IN) @ W^T for W (OUT, IN) as nn.Linear stores it: matmul.cu's
 * input-gradient form for an (IN', OUT') = (OUT, IN) weight, as GPT-2's tied LM head uses it. */
template <typename X>
static tg_status linear_forward(cuda_impl *p, X *out, const X *inp, const X *W, int N, int IN, int OUT,
                                tg_error *err) {
    tg_status st = TG_OK;
    OP(P_MATMUL, tg_cuda_matmul_backward_input<X>(&p->blas, out, inp, W, NULL, N, OUT, IN, p->stream, err));
cleanup:
    return st;
}

/* Its backward: dW (OUT, IN, fp32) += dout^T @ inp;  dinp (N, IN) = dout (N, OUT) @ W. */
template <typename X>
static tg_status linear_backward(cuda_impl *p, X *dinp, float *dW, const X *inp, const X *dout, const X *W, int N,
                                 int IN, int OUT, tg_error *err) {
    tg_status st = TG_OK;
    OP(P_MATMUL, tg_cuda_matmul_backward_weight<X>(&p->blas, dW, dout, inp, N, OUT, IN, p->stream, err));
    OP(P_MATMUL, tg_cuda_matmul_forward<X>(&p->blas, dinp, dout, W, NULL, N, OUT, IN, p->stream, err));
cleanup:
    return st;
}

template <typename X>
static tg_status forward_impl(tg_model *m, llama_impl *q, int Bu, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = &q->base;
    const int T = p->T, C = p->C, NH = p->NH, L = p->L, N = Bu * T, F = q->F, NKV = q->NKV, HS = q->HS;
    const int QKV = C + 2 * q->KV, nrm = tg_llama_norm_index(L);
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const float eps = q->eps;

    OP(P_ELEMWISE, tg_cuda_encoder_forward<X>((X *)p->encoded, p->d_io, wt<X>(m, p, TG_LLAMA_EMBED), NULL, Bu, T, C,
                                              s, err));
    OP(P_LAYERNORM, tg_cuda_residual_rmsnorm_forward<X>(NULL, (X *)q->layers[0].ln1, q->layers[0].rstd1,
                                                        (const X *)p->encoded, NULL,
                                                        wt<X>(m, p, tg_llama_block_index(0, TG_LLAMA_IN_NORM)), N, C,
                                                        eps, s, err));
    for (int l = 0; l < L; l++) {
        const llama_layer_acts *a = &q->layers[l];
        const auto w = [&](tg_llama_block_tensor k) { return wt<X>(m, p, tg_llama_block_index(l, k)); };
        const X *res_in = (const X *)(l == 0 ? p->encoded : q->layers[l - 1].res3);
        X *qkv3 = (X *)(p->flash ? a->qkvr : q->s_qkv3);
        /* q|k|v = ln1 @ [Wq; Wk; Wv]^T (N, C + 2KV) */
        TG_TRY(linear_forward<X>(p, (X *)q->s_raw, (const X *)a->ln1, w(TG_LLAMA_Q), N, C, QKV, err));
        if (p->flash && p->cudnn_last) {
            /* cuDNN reads the KV heads as they are: RoPE in the projection's layout, into qkvr */
            OP(P_ELEMWISE, tg_cuda_llama_rope<X>((X *)a->qkvr, (const X *)q->s_raw, q->rope_cos, q->rope_sin, Bu, T,
                                                 NH, NKV, HS, 0, s, err));
            OP(P_ATTN, tg_cudnn_attn_forward(p->cudnn, (tg_bf16 *)a->atty, a->lse, (const tg_bf16 *)a->qkvr, C, s,
                                             err));
        } else {
            /* RoPE, KV heads repeated: qkv3 (N, 3C) for the MHA kernels */
            OP(P_ELEMWISE, tg_cuda_llama_qkv_forward<X>(qkv3, (const X *)q->s_raw, q->rope_cos, q->rope_sin, Bu, T,
                                                        NH, NKV, HS, s, err));
            if (p->flash)
                OP(P_ATTN, tg_cuda_flash_attention_forward((tg_bf16 *)a->atty, a->lse, (const tg_bf16 *)a->qkvr, Bu,
                                                           T, C, NH, s, err));
            else
                OP(P_ATTN, tg_cuda_attention_forward<X>(bl, (X *)a->atty, (X *)a->qkvr, (X *)a->att,
                                                        (X *)p->s_heads, qkv3, Bu, T, C, NH, s, err));
        }
        /* res2 = res_in + atty @ Wo^T;  ln2 = RMSNorm(res2) */
        TG_TRY(linear_forward<X>(p, (X *)p->s_btc, (const X *)a->atty, w(TG_LLAMA_O), N, C, C, err));
        OP(P_LAYERNORM, tg_cuda_residual_rmsnorm_forward<X>((X *)a->res2, (X *)a->ln2, a->rstd2, res_in,
                                                            (const X *)p->s_btc, w(TG_LLAMA_POST_NORM), N, C, eps, s,
                                                            err));
        /* gate|up = ln2 @ [Wgate; Wup]^T (N, 2F);  h = silu(gate) * up */
        TG_TRY(linear_forward<X>(p, (X *)a->gu, (const X *)a->ln2, w(TG_LLAMA_GATE), N, C, 2 * F, err));
        OP(P_ELEMWISE, tg_cuda_swiglu_forward<X>((X *)a->h, (const X *)a->gu, N, F, s, err));
        /* res3 = res2 + h @ Wdown^T, and the next RMSNorm on it: block l+1's input_layernorm, or
         * model.norm */
        TG_TRY(linear_forward<X>(p, (X *)p->s_btc, (const X *)a->h, w(TG_LLAMA_DOWN), N, F, C, err));
        if (l + 1 < L) {
            const llama_layer_acts *nx = &q->layers[l + 1];
            OP(P_LAYERNORM, tg_cuda_residual_rmsnorm_forward<X>(
                                (X *)a->res3, (X *)nx->ln1, nx->rstd1, (const X *)a->res2, (const X *)p->s_btc,
                                wt<X>(m, p, tg_llama_block_index(l + 1, TG_LLAMA_IN_NORM)), N, C, eps, s, err));
        } else {
            OP(P_LAYERNORM, tg_cuda_residual_rmsnorm_forward<X>((X *)a->res3, (X *)p->lnf, p->lnf_rstd,
                                                                (const X *)a->res2, (const X *)p->s_btc,
                                                                wt<X>(m, p, nrm), N, C, eps, s, err));
        }
    }
    /* The LM head waits for tg_model_loss, tg_model_backward or tg_model_logits_get (cuda_lmhead). */
cleanup:
    return st;
}

template <typename X>
static tg_status backward_impl(tg_model *m, llama_impl *q, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = &q->base;
    const tg_gpt2_layout *lay = &m->lay;
    const int Bu = p->B_used, T = p->T, C = p->C, NH = p->NH, L = p->L, N = Bu * T;
    const int F = q->F, NKV = q->NKV, HS = q->HS, QKV = C + 2 * q->KV, nrm = tg_llama_norm_index(L);
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const size_t BT = (size_t)p->B * p->T;
    const int32_t *d_uniq = p->d_io + 2 * BT;
    const int32_t *d_seg = p->d_io + 3 * BT, *d_pos = p->d_io + 4 * BT + 1;
    /* d(loss_scale * mean over valid positions) / dlogits */
    const float dscale = p->n_valid ? loss_scale / (float)p->n_valid : 0.0f;
    X *dres = (X *)p->dres, *s_btc = (X *)p->s_btc, *dqkv3 = (X *)q->s_qkv3;

    prof_mark(p, P_ELEMWISE);
    TG_CUDA_CHECK(err, cudaMemsetAsync(dres, 0, (size_t)N * C * sizeof(X), s));
    /* LM head and loss, forward and backward: dlnf lands in s_btc */
    TG_TRY(cuda_lmhead<X>(m, p, HEAD_TRAIN, dscale, NULL, err));
    p->logits_valid = 0;
    OP(P_LAYERNORM, tg_cuda_rmsnorm_backward<X>(dres, gr(m, p, nrm), p->s_partial, s_btc,
                                                (const X *)q->layers[L - 1].res3, p->lnf_rstd, wt<X>(m, p, nrm), N, C,
                                                s, err));
    for (int l = L - 1; l >= 0; l--) {
        const llama_layer_acts *a = &q->layers[l];
        const auto w = [&](tg_llama_block_tensor k) { return wt<X>(m, p, tg_llama_block_index(l, k)); };
        const auto g = [&](tg_llama_block_tensor k) { return gr(m, p, tg_llama_block_index(l, k)); };
        const X *res_in = (const X *)(l == 0 ? p->encoded : q->layers[l - 1].res3);
        /* MLP (dres is d(res3)): dh = dres @ Wdown, dWdown += dres^T @ h */
        TG_TRY(linear_backward<X>(p, (X *)q->s_dh, g(TG_LLAMA_DOWN), (const X *)a->h, dres, w(TG_LLAMA_DOWN), N, F, C,
                                  err));
        OP(P_ELEMWISE, tg_cuda_swiglu_backward<X>((X *)q->s_dgu, (const X *)q->s_dh, (const X *)a->gu, N, F, s, err));
        /* gate_proj and up_proj together: their gradients are adjacent like their weights */
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_LLAMA_GATE), (const X *)a->ln2, (const X *)q->s_dgu,
                                  w(TG_LLAMA_GATE), N, C, 2 * F, err));
        /* through post_attention_layernorm plus the identity: dres becomes d(res2) */
        OP(P_LAYERNORM, tg_cuda_rmsnorm_backward<X>(dres, g(TG_LLAMA_POST_NORM), p->s_partial, s_btc,
                                                    (const X *)a->res2, a->rstd2, w(TG_LLAMA_POST_NORM), N, C, s,
                                                    err));
        /* attention output projection: datty in s_btc */
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_LLAMA_O), (const X *)a->atty, dres, w(TG_LLAMA_O), N, C, C, err));
        if (p->flash && p->cudnn_last) {
            /* cuDNN writes dq | dk | dv in the projection's layout, dk and dv summed over each group;
             * then RoPE is undone in place */
            OP(P_ATTN, tg_cudnn_attn_backward(p->cudnn, (tg_bf16 *)q->s_raw, (const tg_bf16 *)s_btc,
                                              (const tg_bf16 *)a->atty, (const tg_bf16 *)a->qkvr, a->lse, C, s, err));
            OP(P_ELEMWISE, tg_cuda_llama_rope<X>((X *)q->s_raw, (const X *)q->s_raw, q->rope_cos, q->rope_sin, Bu, T,
                                                 NH, NKV, HS, 1, s, err));
        } else {
            if (p->flash)
                OP(P_ATTN, tg_cuda_flash_attention_backward((tg_bf16 *)dqkv3, p->s_delta, (const tg_bf16 *)s_btc,
                                                            (const tg_bf16 *)a->atty, (const tg_bf16 *)a->qkvr, a->lse,
                                                            Bu, T, C, NH, s, err));
            else
                OP(P_ATTN, tg_cuda_attention_backward<X>(bl, dqkv3, (X *)p->s_dqkvr, (X *)p->s_datt, (X *)p->s_heads,
                                                         s_btc, (const X *)a->qkvr, (const X *)a->att, Bu, T, C, NH,
                                                         s, err));
            /* back to the projection's layout: RoPE undone, KV groups summed */
            OP(P_ELEMWISE, tg_cuda_llama_qkv_backward<X>((X *)q->s_raw, dqkv3, q->rope_cos, q->rope_sin, Bu, T, NH,
                                                         NKV, HS, s, err));
        }
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_LLAMA_Q), (const X *)a->ln1, (const X *)q->s_raw, w(TG_LLAMA_Q), N,
                                  C, QKV, err));
        /* through input_layernorm plus the identity: dres becomes d(block input) */
        OP(P_LAYERNORM, tg_cuda_rmsnorm_backward<X>(dres, g(TG_LLAMA_IN_NORM), p->s_partial, s_btc, res_in, a->rstd1,
                                                    w(TG_LLAMA_IN_NORM), N, C, s, err));
        tg_model_grad_ready(m, lay->layer_begin[l], lay->layer_begin[l + 1]);
    }
    OP(P_ELEMWISE, tg_cuda_encoder_backward<X>(gr(m, p, TG_LLAMA_EMBED), NULL, dres, d_uniq, d_seg, d_pos, p->n_uniq,
                                               Bu, T, C, s, err));
    /* Same hook order as the CPU backend: embeddings, then model.norm (and lm_head). */
    tg_model_grad_ready(m, 0, lay->layer_begin[0]);
    tg_model_grad_ready(m, lay->layer_begin[L], lay->n_params);
cleanup:
    return st;
}

static tg_status llama_forward(tg_model *m, const int32_t *inputs, const int32_t *targets, int B_used,
                               tg_error *err) {
    tg_status st = TG_OK;
    llama_impl *q = (llama_impl *)m->impl;
    cuda_impl *p = &q->base;
    TG_TRY(cuda_forward_begin(p, inputs, targets, B_used, err));
    if (p->bf16) TG_TRY(forward_impl<tg_bf16>(m, q, B_used, err));
    else TG_TRY(forward_impl<float>(m, q, B_used, err));
    cuda_forward_end(p, targets, B_used);
cleanup:
    return st;
}

static tg_status llama_backward(tg_model *m, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    llama_impl *q = (llama_impl *)m->impl;
    cuda_impl *p = &q->base;
    TG_TRY(cuda_backward_begin(p, err));
    if (p->bf16) TG_TRY(backward_impl<tg_bf16>(m, q, loss_scale, err));
    else TG_TRY(backward_impl<float>(m, q, loss_scale, err));
cleanup:
    return st;
}

/* Positional: the order of struct tg_backend_ops in model/backend.h. */
extern "C" const tg_backend_ops tg_cuda_llama_backend_ops = {
    "cuda",
    llama_init,
    llama_free,
    cuda_params_set,
    cuda_params_get,
    cuda_grads_get,
    cuda_params_ptr,
    cuda_grads_ptr,
    cuda_stream,
    cuda_grads_zero,
    llama_forward,
    cuda_loss,
    cuda_logits_get,
    llama_backward,
    cuda_grad_sqnorm,
    cuda_opt_init,
    cuda_opt_bytes,
    cuda_opt_get,
    cuda_opt_set,
    cuda_adamw,
    cuda_device_bytes,
    cuda_describe,
    cuda_tuning_get,
    cuda_tuning_set,
    NULL, /* shard_storage: ZeRO-2/3 are the CPU backends' (tg_model_shard_storage refuses) */
    NULL,
    NULL,
    cuda_muon_orth, /* gpt2_cuda.cu's, shared: the shape scale follows lay.cfg.arch */
    cuda_muon_apply,
    NULL, /* memory: model.c derives it */
};
