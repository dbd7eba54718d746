/* model/cuda/gpt2_cuda.cu — the CUDA backend of model/model.h (tg_cuda_backend_ops): the model's
 * life cycle (init, the activation layout, free) and its step (forward, the LM head and loss,
 * backward, gradient norm, AdamW). The state, the memory it holds and the precision are
 * described in gpt2_cuda.cuh; options, host staging and profiling live in the files it names. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/gpt2_cuda.cuh"

/* Rows of one LM-head logits buffer: a chunk, or the whole batch when that is smaller. */
static size_t head_chunk_rows(const cuda_impl *p) {
    const size_t BT = (size_t)p->B * p->T;
    return BT < (size_t)p->head_rows ? BT : (size_t)p->head_rows;
}

/* Lays out the activation buffer at base (or only sizes it when base is NULL). */
static size_t cuda_carve(cuda_impl *p, char *base) {
    const size_t B = (size_t)p->B, T = (size_t)p->T, C = (size_t)p->C, NH = (size_t)p->NH;
    const size_t BT = B * T, BTC = BT * C, xs = p->xs, ATT = B * NH * T * T;
    const size_t head_max = head_chunk_rows(p);
    size_t off = 0;
#define CARVE(ptr, bytes)                                                                      \
    do {                                                                                       \
        (ptr) = (decltype(ptr))(base ? base + off : NULL);                                     \
        off += ((size_t)(bytes) + TG_CUDA_ALIGN - 1) / TG_CUDA_ALIGN * TG_CUDA_ALIGN;          \
    } while (0)
    /* flash attention keeps no (T,T) matrices: only the row statistics */
    const size_t att_bytes = p->flash ? 0 : ATT * xs;
    void *sh_ln1 = NULL, *sh_ln2 = NULL, *sh_att = NULL, *sh_gelu = NULL;
    if (p->recompute >= 1) {
        CARVE(sh_ln1, BTC * xs);
        CARVE(sh_ln2, BTC * xs);
    }
    if (p->recompute >= 2) {
        if (att_bytes) CARVE(sh_att, att_bytes);
        CARVE(sh_gelu, 4 * BTC * xs);
    }
    CARVE(p->encoded, BTC * xs);
    for (int l = 0; l < p->L; l++) {
        cuda_layer_acts *a = &p->layers[l];
        if (p->recompute >= 1) {
            a->ln1 = sh_ln1;
            a->ln2 = sh_ln2;
        } else {
            CARVE(a->ln1, BTC * xs);
            CARVE(a->ln2, BTC * xs);
        }
        if (p->recompute >= 2) {
            a->att = sh_att;
            a->fch_gelu = sh_gelu;
        } else {
            if (att_bytes) CARVE(a->att, att_bytes);
            CARVE(a->fch_gelu, 4 * BTC * xs);
        }
        if (p->flash) CARVE(a->lse, B * NH * T * 4);
        CARVE(a->ln1_mean, BT * 4);
        CARVE(a->ln1_rstd, BT * 4);
        CARVE(a->qkvr, 3 * BTC * xs);
        CARVE(a->atty, BTC * xs);
        CARVE(a->res2, BTC * xs);
        CARVE(a->ln2_mean, BT * 4);
        CARVE(a->ln2_rstd, BT * 4);
        CARVE(a->fch, 4 * BTC * xs);
        CARVE(a->res3, BTC * xs);
    }
    CARVE(p->lnf, BTC * xs);
    CARVE(p->lnf_mean, BT * 4);
    CARVE(p->lnf_rstd, BT * 4);
    CARVE(p->logits, head_max * (size_t)p->Vp * xs);
    CARVE(p->lse, head_max * 4);
    CARVE(p->losses, BT * 4);
    CARVE(p->dres, BTC * xs);
    CARVE(p->s_btc, BTC * xs);
    CARVE(p->s_bt4c, 4 * BTC * xs);
    if (p->cudnn) CARVE(p->cudnn_ws, tg_cudnn_attn_workspace(p->cudnn));
    if (p->flash) {
        CARVE(p->s_delta, B * NH * T * 4);
    } else {
        CARVE(p->s_dqkvr, 3 * BTC * xs);
        CARVE(p->s_heads, BTC * xs);
        CARVE(p->s_datt, ATT * xs);
    }
    CARVE(p->s_partial, (size_t)TG_CUDA_COL_CHUNKS * 4 * C * 4);
    CARVE(p->blas.workspace, TG_CUDA_WORKSPACE_BYTES);
    CARVE(p->d_io, cuda_io_ints(p) * 4);
    CARVE(p->d_norm, (size_t)TG_CUDA_NORM_BLOCKS * 8);
#undef CARVE
    p->blas.workspace_bytes = TG_CUDA_WORKSPACE_BYTES;
    return off;
}

void cuda_free(tg_model *m) {
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p) return;
    /* Errors are ignored here: there is nobody to report them to, and freeing must go on. */
    if (p->stream) cudaStreamSynchronize(p->stream);
    tg_cudnn_attn_free(p->cudnn);
    cuda_prof_free(p->prof, p->log);
    cudaFree(p->params);
    cudaFree(p->grads);
    cudaFree(p->opt_mem);
    cudaFree(p->opt_chunks);
    cudaFree(p->ns_mem);
    cudaFree(p->act_mem);
    cuda_staging_free(p);
    tg_cuda_blas_free(&p->blas);
    if (p->ev_upload) cudaEventDestroy(p->ev_upload);
    if (p->stream) cudaStreamDestroy(p->stream);
    free(p->layers);
    free(p);
    m->impl = NULL;
}

tg_status cuda_device_init(tg_model *m, cuda_impl *p, tg_error *err) {
    tg_status st = TG_OK;
    const tg_gpt2_config *cfg = &m->lay.cfg;
    int n_dev = 0;
    p->bf16 = m->opt.bf16 != 0;
    p->recompute = m->opt.recompute;
    p->xs = p->bf16 ? sizeof(tg_bf16) : sizeof(float);
    p->B = m->opt.B;
    p->T = m->opt.T;
    p->C = cfg->n_embd;
    p->NH = cfg->n_head;
    p->NKV = cfg->arch == TG_MODEL_ARCH_LLAMA ? cfg->n_kv_head : cfg->n_head;
    p->L = cfg->n_layer;
    p->V = cfg->vocab_size;
    p->Vp = cfg->padded_vocab_size;
    p->head_idx = TG_GPT2_WTE;
    TG_TRY(cuda_options_apply(p, &m->opt, err));

    TG_CUDA_CHECK(err, cudaGetDeviceCount(&n_dev));
    if (m->opt.cuda_device < 0 || m->opt.cuda_device >= n_dev)
        TG_FAIL(err, TG_ERR_CUDA, "cuda: device %d requested, %d visible", m->opt.cuda_device, n_dev);
    TG_CUDA_CHECK(err, cudaSetDevice(m->opt.cuda_device));
    TG_CUDA_CHECK(err, cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking));
    TG_CUDA_CHECK(err, cudaEventCreateWithFlags(&p->ev_upload, cudaEventDisableTiming));
    TG_CUBLAS_CHECK(err, cublasLtCreate(&p->blas.lt));
    if (m->opt.cuda.profile) TG_TRY(cuda_prof_init(&p->prof, err));
    TG_TRY(cuda_attention_init(p, &m->opt.cuda, err));

    TG_CUDA_CHECK(err, cudaMalloc(&p->params, m->n_padded * p->xs));
    TG_CUDA_CHECK(err, cudaMalloc(&p->grads, m->n_padded * sizeof(float)));
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->params, 0, m->n_padded * p->xs, p->stream));
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->grads, 0, m->n_padded * sizeof(float), p->stream));
cleanup:
    return st;
}

static tg_status cuda_init(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)calloc(1, sizeof(cuda_impl));
    TG_CHECK_ALLOC(err, p);
    m->impl = p;
    if (m->opt.recompute < 0 || m->opt.recompute > 2)
        TG_FAIL(err, TG_ERR_ARG, "cuda: recompute=%d: expected 0, 1 (LayerNorm) or 2 (LayerNorm + GELU)",
                m->opt.recompute);
    TG_TRY(cuda_device_init(m, p, err));

    p->layers = (cuda_layer_acts *)calloc((size_t)p->L, sizeof(cuda_layer_acts));
    TG_CHECK_ALLOC(err, p->layers);
    p->act_bytes = cuda_carve(p, NULL);
    TG_CUDA_CHECK(err, cudaMalloc(&p->act_mem, p->act_bytes));
    cuda_carve(p, p->act_mem);
    tg_cudnn_attn_set_workspace(p->cudnn, p->cudnn_ws);

    TG_TRY(cuda_staging_init(p, err));

    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
cleanup:
    if (st != TG_OK) cuda_free(m);
    return st;
}

void *cuda_params_ptr(tg_model *m, tg_dtype *dtype) {
    cuda_impl *p = (cuda_impl *)m->impl;
    if (dtype) *dtype = p->bf16 ? TG_DTYPE_BF16 : TG_DTYPE_F32;
    return p->params;
}

void *cuda_grads_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((cuda_impl *)m->impl)->grads;
}

void *cuda_stream(tg_model *m) { return (void *)((cuda_impl *)m->impl)->stream; }

tg_status cuda_grads_zero(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->grads, 0, m->n_padded * sizeof(float), p->stream));
cleanup:
    return st;
}

/* The working weights and the fp32 gradients of tensor k of block l (model/gpt2.h's indices). */
template <typename X> static const X *bwt(const tg_model *m, const cuda_impl *p, int l, tg_gpt2_block_tensor k) {
    return wt<X>(m, p, tg_gpt2_block_index(l, k));
}
static float *bgr(const tg_model *m, const cuda_impl *p, int l, tg_gpt2_block_tensor k) {
    return gr(m, p, tg_gpt2_block_index(l, k));
}

/* res = res_in + inp (N, K) @ w (K, C) + bias, then out = LN(res) * lw + lb (mean, rstd kept):
 * an output projection and the residual add and LayerNorm after it. The projection goes to
 * s_btc and the LayerNorm kernel adds it. (Adding res_in in the matmul's epilogue instead, as
 * cuBLASLt's C operand, moves about as much time into the matmuls as it saves in the LayerNorm:
 * no faster on an H200.) */
template <typename X>
static tg_status projection_residual_layernorm(cuda_impl *p, X *res, X *out, float *mean, float *rstd,
                                               const X *res_in, const X *inp, const X *w, const X *bias,
                                               int K, const X *lw, const X *lb, int N, tg_error *err) {
    tg_status st = TG_OK;
    const int C = p->C;
    const cudaStream_t s = p->stream;
    OP(P_MATMUL, tg_cuda_matmul_forward<X>(&p->blas, (X *)p->s_btc, inp, w, bias, N, K, C, s, err));
    OP(P_LAYERNORM, tg_cuda_residual_layernorm_forward<X>(res, out, mean, rstd, res_in, (const X *)p->s_btc, lw,
                                                          lb, N, C, s, err));
cleanup:
    return st;
}

template <typename X>
static tg_status forward_impl(tg_model *m, cuda_impl *p, int Bu, tg_error *err) {
    tg_status st = TG_OK;
    const int T = p->T, C = p->C, NH = p->NH, L = p->L, N = Bu * T;
    const int lnf_w = tg_gpt2_final_index(L, TG_GPT2_LNF_W), lnf_b = tg_gpt2_final_index(L, TG_GPT2_LNF_B);
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int32_t *d_tokens = p->d_io;

    OP(P_ELEMWISE, tg_cuda_encoder_forward<X>((X *)p->encoded, d_tokens, wt<X>(m, p, TG_GPT2_WTE),
                                              wt<X>(m, p, TG_GPT2_WPE), Bu, T, C, s, err));
    OP(P_LAYERNORM, tg_cuda_residual_layernorm_forward<X>(NULL, (X *)p->layers[0].ln1, p->layers[0].ln1_mean,
                                                 p->layers[0].ln1_rstd, (const X *)p->encoded, NULL,
                                                 bwt<X>(m, p, 0, TG_GPT2_LN1_W), bwt<X>(m, p, 0, TG_GPT2_LN1_B), N, C, s,
                                                 err));
    for (int l = 0; l < L; l++) {
        const cuda_layer_acts *a = &p->layers[l];
        const auto w = [&](tg_gpt2_block_tensor k) { return bwt<X>(m, p, l, k); };
        const X *res_in = (const X *)(l == 0 ? p->encoded : p->layers[l - 1].res3);
        /* qkv = ln1 @ Wqkv + b  (N, 3C); flash attention reads it in place */
        OP(P_MATMUL, tg_cuda_matmul_forward<X>(bl, (X *)(p->flash ? a->qkvr : p->s_bt4c), (const X *)a->ln1,
                                               w(TG_GPT2_QKV_W), w(TG_GPT2_QKV_B), N, C,
                                               3 * C, s, err));
        if (p->flash && p->cudnn_last)
            OP(P_ATTN, tg_cudnn_attn_forward(p->cudnn, (tg_bf16 *)a->atty, a->lse, (const tg_bf16 *)a->qkvr, C,
                                             s, err));
        else if (p->flash)
            OP(P_ATTN, tg_cuda_flash_attention_forward((tg_bf16 *)a->atty, a->lse, (const tg_bf16 *)a->qkvr,
                                                       Bu, T, C, NH, s, err));
        else
            OP(P_ATTN, tg_cuda_attention_forward<X>(bl, (X *)a->atty, (X *)a->qkvr, (X *)a->att,
                                                    (X *)p->s_heads, (const X *)p->s_bt4c, Bu, T, C, NH, s, err));
        /* res2 = res_in + atty @ Wproj + b, and ln2 = LN(res2) */
        TG_TRY(projection_residual_layernorm<X>(p, (X *)a->res2, (X *)a->ln2, a->ln2_mean, a->ln2_rstd, res_in,
                                                (const X *)a->atty, w(TG_GPT2_ATTPROJ_W), w(TG_GPT2_ATTPROJ_B),
                                                C, w(TG_GPT2_LN2_W), w(TG_GPT2_LN2_B), N, err));
        /* fch = ln2 @ Wfc + b (kept), fch_gelu = gelu(fch)  (N, 4C) */
        OP(P_MATMUL, tg_cuda_matmul_forward_gelu<X>(bl, (X *)a->fch_gelu, (X *)a->fch, (const X *)a->ln2,
                                                    w(TG_GPT2_FC_W), w(TG_GPT2_FC_B), N,
                                                    C, 4 * C, s, err));
        /* res3 = res2 + fch_gelu @ Wfcproj + b, and the next LayerNorm on it: ln_1 of block l+1,
         * or ln_f */
        if (l + 1 < L) {
            const cuda_layer_acts *n = &p->layers[l + 1];
            TG_TRY(projection_residual_layernorm<X>(p, (X *)a->res3, (X *)n->ln1, n->ln1_mean, n->ln1_rstd,
                                                    (const X *)a->res2, (const X *)a->fch_gelu, w(TG_GPT2_FCPROJ_W),
                                                    w(TG_GPT2_FCPROJ_B), 4 * C, bwt<X>(m, p, l + 1, TG_GPT2_LN1_W),
                                                    bwt<X>(m, p, l + 1, TG_GPT2_LN1_B), N, err));
        } else {
            TG_TRY(projection_residual_layernorm<X>(p, (X *)a->res3, (X *)p->lnf, p->lnf_mean, p->lnf_rstd,
                                                    (const X *)a->res2, (const X *)a->fch_gelu, w(TG_GPT2_FCPROJ_W),
                                                    w(TG_GPT2_FCPROJ_B), 4 * C, wt<X>(m, p, lnf_w),
                                                    wt<X>(m, p, lnf_b), N, err));
        }
    }
    /* The LM head waits for tg_model_loss, tg_model_backward or tg_model_logits_get (cuda_lmhead). */
cleanup:
    return st;
}

/* The LM head (weight p->head_idx, (Vp, C): GPT-2's tied wte; Llama's lm_head or its tied
 * embed_tokens) and the loss over the last forward's N rows, in chunks of head_rows rows, so
 * that logits exist for one chunk at a time. Deferred from forward because only the caller's next
 * call says what is needed:
 *   HEAD_LOSS    the per-row losses (an evaluation, or tg_model_loss before backward)
 *   HEAD_TRAIN   the losses and the backward through the head, chunk by chunk: dlogits =
 *                dscale * (softmax - onehot) in place, dwte += dlogits^T @ lnf (fp32, chunks
 *                added in order), dlnf = dlogits @ wte into s_btc.
 *   HEAD_LOGITS  the logits, downloaded into host (N, Vp) fp32 (synchronises) */
template <typename X>
tg_status cuda_lmhead(tg_model *m, cuda_impl *p, int mode, float dscale, float *host, tg_error *err) {
    tg_status st = TG_OK;
    const int C = p->C, V = p->V, Vp = p->Vp, N = p->B_used * p->T;
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int32_t *d_targets = p->d_io + (size_t)p->B * p->T;
    const X *wte = wt<X>(m, p, p->head_idx);
    X *logits = (X *)p->logits;
    for (int r0 = 0; r0 < N; r0 += p->head_rows) {
        const int rows = N - r0 < p->head_rows ? N - r0 : p->head_rows;
        const X *lnf = (const X *)p->lnf + (size_t)r0 * C;
        /* logits (rows, Vp) = lnf @ wte^T (padded rows of wte are zero): the tied head is the
         * input gradient's matmul of a linear layer whose weight (Vp, C) is wte */
        if (mode == HEAD_TRAIN) prof_phase(p, 0);
        OP(P_LMHEAD, tg_cuda_matmul_backward_input<X>(bl, logits, lnf, wte, NULL, rows, Vp, C, s, err));
        if (mode == HEAD_LOGITS) {
            TG_TRY(cuda_download_x(p, host + (size_t)r0 * Vp, logits, (size_t)rows * Vp, err));
        } else if (mode == HEAD_LOSS) {
            OP(P_XENT, tg_cuda_crossentropy_forward<X>(p->losses + r0, NULL, logits, d_targets + r0, rows, V,
                                                       Vp, s, err));
        } else {
            OP(P_XENT, tg_cuda_crossentropy_forward<X>(p->losses + r0, p->lse, logits, d_targets + r0, rows, V,
                                                       Vp, s, err));
            prof_phase(p, 1);
            OP(P_XENT, tg_cuda_crossentropy_backward<X>(logits, p->lse, d_targets + r0, dscale, rows, V, Vp, s,
                                                        err));
            /* dwte (Vp, C) += dlogits^T @ lnf;  dlnf (rows, C) = dlogits @ wte */
            OP(P_LMHEAD, tg_cuda_matmul_backward_weight<X>(bl, gr(m, p, p->head_idx), logits, lnf, rows, Vp, C, s,
                                                           err));
            OP(P_LMHEAD, tg_cuda_matmul_forward<X>(bl, (X *)p->s_btc + (size_t)r0 * C, logits, wte, NULL, rows, Vp,
                                                   C, s, err));
        }
    }
    if (mode != HEAD_LOGITS) p->losses_ready = 1;
cleanup:
    return st;
}

/* The backward of out (N, OC) = inp (N, IC) @ w (IC, OC) + bias, given dout:
 *   dw (IC, OC, fp32) += inp^T @ dout;  dbias (fp32) += column sums of dout, unless dbias is NULL
 *   (a bias whose gradient a LayerNorm backward sums);  dinp = dout @ w^T, times gelu'(gelu_in)
 *   in the matmul's epilogue when gelu_in is given (inp was gelu(gelu_in)). */
template <typename X>
static tg_status linear_backward(cuda_impl *p, X *dinp, float *dw, float *dbias, const X *inp, const X *dout,
                                 const X *w, const X *gelu_in, int N, int IC, int OC, tg_error *err) {
    tg_status st = TG_OK;
    const cudaStream_t s = p->stream;
    OP(P_MATMUL, tg_cuda_matmul_backward_weight<X>(&p->blas, dw, inp, dout, N, IC, OC, s, err));
    if (dbias) OP(P_ELEMWISE, tg_cuda_bias_backward<X>(dbias, p->s_partial, dout, N, OC, s, err));
    OP(P_MATMUL, tg_cuda_matmul_backward_input<X>(&p->blas, dinp, dout, w, gelu_in, N, IC, OC, s, err));
cleanup:
    return st;
}

template <typename X>
static tg_status backward_impl(tg_model *m, cuda_impl *p, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    const tg_gpt2_layout *lay = &m->lay;
    const int Bu = p->B_used, T = p->T, C = p->C, NH = p->NH, L = p->L;
    const int N = Bu * T;
    const int lnf_w = tg_gpt2_final_index(L, TG_GPT2_LNF_W), lnf_b = tg_gpt2_final_index(L, TG_GPT2_LNF_B);
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const size_t BT = (size_t)p->B * p->T;
    const int32_t *d_uniq = p->d_io + 2 * BT;
    const int32_t *d_seg = p->d_io + 3 * BT, *d_pos = p->d_io + 4 * BT + 1;
    /* d(loss_scale * mean over valid positions) / dlogits */
    const float dscale = p->n_valid ? loss_scale / (float)p->n_valid : 0.0f;
    X *dres = (X *)p->dres, *s_btc = (X *)p->s_btc, *s_bt4c = (X *)p->s_bt4c;

    prof_mark(p, P_ELEMWISE);
    TG_CUDA_CHECK(err, cudaMemsetAsync(dres, 0, (size_t)N * C * sizeof(X), s));
    /* LM head and loss, forward and backward: dlnf lands in s_btc */
    TG_TRY(cuda_lmhead<X>(m, p, HEAD_TRAIN, dscale, NULL, err));
    p->logits_valid = 0;
    /* Every LayerNorm backward below also sums the residual gradient it leaves in dres over the
     * rows: that is the bias gradient of the projection (c_proj) whose output was added into
     * that residual, so those bias gradients need no pass of their own. */
    OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, gr(m, p, lnf_w), gr(m, p, lnf_b),
                                                  bgr(m, p, L - 1, TG_GPT2_FCPROJ_B), p->s_partial, s_btc,
                                                  (const X *)p->layers[L - 1].res3, p->lnf_mean, p->lnf_rstd,
                                                  wt<X>(m, p, lnf_w), N, C, s, err));

    for (int l = L - 1; l >= 0; l--) {
        const cuda_layer_acts *a = &p->layers[l];
        const auto w = [&](tg_gpt2_block_tensor k) { return bwt<X>(m, p, l, k); };
        const auto g = [&](tg_gpt2_block_tensor k) { return bgr(m, p, l, k); };
        const X *res_in = (const X *)(l == 0 ? p->encoded : p->layers[l - 1].res3);
        X *dqkv = s_bt4c; /* (N, 3C) */
        /* dres is now d(res3): MLP output projection (its bias gradient is already done) */
        if (p->recompute >= 2)
            OP(P_ELEMWISE, tg_cuda_gelu_forward<X>((X *)a->fch_gelu, (const X *)a->fch, (size_t)N * 4 * C, s, err));
        /* dfch = (dres @ Wfcproj^T) * gelu'(fch) */
        TG_TRY(linear_backward<X>(p, s_bt4c, g(TG_GPT2_FCPROJ_W), NULL, (const X *)a->fch_gelu, dres,
                                  w(TG_GPT2_FCPROJ_W), (const X *)a->fch, N, 4 * C, C, err));
        if (p->recompute >= 1)
            OP(P_LAYERNORM, tg_cuda_layernorm_apply<X>((X *)a->ln2, (const X *)a->res2, a->ln2_mean, a->ln2_rstd,
                                              w(TG_GPT2_LN2_W), w(TG_GPT2_LN2_B), N, C, s, err));
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_GPT2_FC_W), g(TG_GPT2_FC_B), (const X *)a->ln2, s_bt4c,
                                  w(TG_GPT2_FC_W), NULL, N, C, 4 * C, err));
        /* through ln_2 plus the identity: dres becomes d(res2) */
        OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, g(TG_GPT2_LN2_W), g(TG_GPT2_LN2_B),
                                                      g(TG_GPT2_ATTPROJ_B), p->s_partial, s_btc,
                                                      (const X *)a->res2, a->ln2_mean, a->ln2_rstd,
                                                      w(TG_GPT2_LN2_W), N, C, s, err));
        /* attention output projection */
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_GPT2_ATTPROJ_W), NULL, (const X *)a->atty, dres,
                                  w(TG_GPT2_ATTPROJ_W), NULL, N, C, C, err));
        if (p->flash && p->cudnn_last) {
            OP(P_ATTN, tg_cudnn_attn_backward(p->cudnn, (tg_bf16 *)dqkv, (const tg_bf16 *)s_btc,
                                              (const tg_bf16 *)a->atty, (const tg_bf16 *)a->qkvr, a->lse, C, s,
                                              err));
        } else if (p->flash) {
            OP(P_ATTN, tg_cuda_flash_attention_backward((tg_bf16 *)dqkv, p->s_delta, (const tg_bf16 *)s_btc,
                                                        (const tg_bf16 *)a->atty, (const tg_bf16 *)a->qkvr,
                                                        a->lse, Bu, T, C, NH, s, err));
        } else {
            if (p->recompute >= 2)
                OP(P_ATTN, tg_cuda_attention_probs<X>(bl, (X *)a->att, (const X *)a->qkvr, Bu, T, C, NH, s, err));
            OP(P_ATTN, tg_cuda_attention_backward<X>(bl, dqkv, (X *)p->s_dqkvr, (X *)p->s_datt, (X *)p->s_heads,
                                                     s_btc, (const X *)a->qkvr, (const X *)a->att, Bu, T, C,
                                                     NH, s, err));
        }
        /* qkv projection, from dqkv */
        if (p->recompute >= 1)
            OP(P_LAYERNORM, tg_cuda_layernorm_apply<X>((X *)a->ln1, res_in, a->ln1_mean, a->ln1_rstd,
                                              w(TG_GPT2_LN1_W), w(TG_GPT2_LN1_B), N, C, s, err));
        TG_TRY(linear_backward<X>(p, s_btc, g(TG_GPT2_QKV_W), g(TG_GPT2_QKV_B), (const X *)a->ln1, dqkv,
                                  w(TG_GPT2_QKV_W), NULL, N, C, 3 * C, err));
        /* through ln_1 plus the identity: dres becomes d(block input) = d(res3 of block l-1) */
        OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, g(TG_GPT2_LN1_W), g(TG_GPT2_LN1_B),
                                                      l > 0 ? bgr(m, p, l - 1, TG_GPT2_FCPROJ_B) : NULL, p->s_partial,
                                                      s_btc, res_in, a->ln1_mean, a->ln1_rstd,
                                                      w(TG_GPT2_LN1_W), N, C, s, err));
        tg_model_grad_ready(m, lay->layer_begin[l], lay->layer_begin[l + 1]);
    }
    OP(P_ELEMWISE, tg_cuda_encoder_backward<X>(gr(m, p, TG_GPT2_WTE), gr(m, p, TG_GPT2_WPE), dres, d_uniq, d_seg,
                                               d_pos, p->n_uniq, Bu, T, C, s, err));
    /* Same hook order as the CPU backend: embeddings, then ln_f (complete since the start). */
    tg_model_grad_ready(m, 0, lay->layer_begin[0]);
    tg_model_grad_ready(m, lay->layer_begin[L], lay->n_params);
cleanup:
    return st;
}

tg_status cuda_forward_begin(cuda_impl *p, const int32_t *inputs, const int32_t *targets, int B_used,
                             tg_error *err) {
    tg_status st = TG_OK;
    const int N = B_used * p->T;
    TG_TRY(cuda_inputs_check(p, inputs, targets, N, err));
    p->B_used = 0; /* invalid until this forward is enqueued */
    p->logits_valid = 0;
    p->losses_ready = 0;
    p->backward_ready = 0;
    TG_TRY(cuda_stage_inputs(p, inputs, targets, N, err));
    prof_phase(p, 0);
    p->cudnn_last = p->cudnn != NULL && B_used == p->B;
cleanup:
    return st;
}

void cuda_forward_end(cuda_impl *p, const int32_t *targets, int B_used) {
    p->B_used = B_used;
    p->has_targets = targets != NULL;
    p->logits_valid = 1;
    p->backward_ready = targets != NULL;
}

tg_status cuda_backward_begin(cuda_impl *p, tg_error *err) {
    tg_status st = TG_OK;
    if (!p->backward_ready)
        TG_FAIL(err, TG_ERR_ARG, "model: backward needs a forward with targets first (once per forward)");
    p->backward_ready = 0;
    prof_phase(p, 1);
cleanup:
    return st;
}

static tg_status cuda_forward(tg_model *m, const int32_t *inputs, const int32_t *targets,
                              int B_used, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(cuda_forward_begin(p, inputs, targets, B_used, err));
    if (p->bf16) TG_TRY(forward_impl<tg_bf16>(m, p, B_used, err));
    else TG_TRY(forward_impl<float>(m, p, B_used, err));
    cuda_forward_end(p, targets, B_used);
cleanup:
    return st;
}

tg_status cuda_loss(tg_model *m, float *loss, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const int N = p->B_used * p->T;
    double sum = 0.0;
    if (!p->B_used || !p->has_targets)
        TG_FAIL(err, TG_ERR_ARG, "model: loss needs a forward with targets first");
    if (!p->losses_ready) {
        if (p->bf16) TG_TRY(cuda_lmhead<tg_bf16>(m, p, HEAD_LOSS, 0.0f, NULL, err));
        else TG_TRY(cuda_lmhead<float>(m, p, HEAD_LOSS, 0.0f, NULL, err));
    }
    prof_mark(p, P_OTHER);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(p->h_losses, p->losses, (size_t)N * sizeof(float),
                                       cudaMemcpyDeviceToHost, p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
    cuda_prof_collect(p->prof);
    for (int i = 0; i < N; i++) sum += p->h_losses[i]; /* ignored positions hold 0 */
    *loss = p->n_valid ? (float)(sum / p->n_valid) : 0.0f;
cleanup:
    return st;
}

tg_status cuda_logits_get(tg_model *m, float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p->logits_valid)
        TG_FAIL(err, TG_ERR_ARG, "model: logits_get needs a forward (and no backward since: on CUDA "
                                 "backward overwrites the logits with their gradient)");
    if (p->bf16) TG_TRY(cuda_lmhead<tg_bf16>(m, p, HEAD_LOGITS, 0.0f, host, err));
    else TG_TRY(cuda_lmhead<float>(m, p, HEAD_LOGITS, 0.0f, host, err));
cleanup:
    return st;
}

static tg_status cuda_backward(tg_model *m, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(cuda_backward_begin(p, err));
    if (p->bf16) TG_TRY(backward_impl<tg_bf16>(m, p, loss_scale, err));
    else TG_TRY(backward_impl<float>(m, p, loss_scale, err));
cleanup:
    return st;
}

tg_status cuda_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    double sum = 0.0;
    if (lo < hi) {
        prof_mark(p, P_OPTIM);
        TG_TRY(tg_cuda_sqnorm_partials(p->d_norm, p->grads, lo, hi, p->stream, err));
        TG_CUDA_CHECK(err, cudaMemcpyAsync(p->h_norm, p->d_norm, TG_CUDA_NORM_BLOCKS * sizeof(double),
                                           cudaMemcpyDeviceToHost, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        for (int k = 0; k < TG_CUDA_NORM_BLOCKS; k++) sum += p->h_norm[k];
    }
    *out = sum;
cleanup:
    return st;
}

/* The shard [lo, hi) as AdamW chunks (out NULL: only counts them). Tensor k spans
 * [offset_k, offset_{k+1}), the last one up to n_params; the padding from n_params on does not
 * decay and is no Muon matrix. */
static int adamw_chunks(const tg_gpt2_layout *lay, size_t lo, size_t hi, tg_cuda_adamw_chunk *out) {
    int n = 0;
    for (int k = 0; k <= lay->n_tensors; k++) {
        const size_t a0 = k == 0 ? 0 : k < lay->n_tensors ? lay->tensors[k].offset : lay->n_params;
        const size_t a1 = k + 1 < lay->n_tensors ? lay->tensors[k + 1].offset : k < lay->n_tensors ? lay->n_params : hi;
        const int decay = k < lay->n_tensors ? lay->tensors[k].decay : 0;
        const int muon = k < lay->n_tensors ? tg_model_muon_tensor(&lay->tensors[k]) : 0;
        const size_t e = a1 < hi ? a1 : hi;
        for (size_t b = a0 > lo ? a0 : lo; b < e; b += TG_CUDA_ADAMW_CHUNK) {
            if (out) {
                out[n].start = b;
                out[n].len = (unsigned int)(e - b < TG_CUDA_ADAMW_CHUNK ? e - b : TG_CUDA_ADAMW_CHUNK);
                out[n].decay = decay;
                out[n].muon = muon;
            }
            n++;
        }
    }
    return n;
}

/* Muon's Newton-Schulz scratch for the largest Muon matrix of the model (any rank may be dealt
 * any matrix, whatever its optimizer shard), carved into the pieces of tg_cuda_ns_scratch, each
 * at a multiple of TG_CUDA_ALIGN bytes. base NULL: only the size. */
static size_t ns_carve(const tg_gpt2_layout *lay, tg_cuda_ns_scratch *ns, char *base) {
    size_t nk = 0, nn = 0, off = 0;
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        if (!tg_model_muon_tensor(t)) continue;
        const size_t a = (size_t)t->shape[0], b = (size_t)t->shape[1], small = a < b ? a : b;
        if (a * b > nk) nk = a * b;
        if (small * small > nn) nn = small * small;
    }
    if (nk == 0) return 0;
#define NS_CARVE(ptr, bytes)                                                                   \
    do {                                                                                       \
        if (base) (ptr) = (decltype(ptr))(base + off);                                         \
        off += ((bytes) + TG_CUDA_ALIGN - 1) / TG_CUDA_ALIGN * TG_CUDA_ALIGN;                  \
    } while (0)
    NS_CARVE(ns->partial, (size_t)TG_CUDA_NORM_BLOCKS * sizeof(double));
    NS_CARVE(ns->inv, sizeof(float));
    NS_CARVE(ns->X, nk * sizeof(float));
    NS_CARVE(ns->Y, nk * sizeof(float));
    NS_CARVE(ns->A, nn * sizeof(float));
    NS_CARVE(ns->B, nn * sizeof(float));
#undef NS_CARVE
    return off;
}

tg_status cuda_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = hi - lo, nbuf = p->bf16 ? 3 : 2;
    tg_cuda_adamw_chunk *chunks = NULL;
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
    TG_CUDA_CHECK(err, cudaFree(p->opt_mem));
    TG_CUDA_CHECK(err, cudaFree(p->opt_chunks));
    TG_CUDA_CHECK(err, cudaFree(p->ns_mem));
    p->opt_mem = p->opt_m = p->opt_v = p->master = NULL;
    p->opt_chunks = NULL;
    p->n_opt_chunks = 0;
    p->opt_ready = 0;
    p->ns_mem = NULL;
    p->ns_bytes = 0;
    memset(&p->ns, 0, sizeof p->ns);
    /* Allocated here, not in the step, like every other device buffer. */
    p->ns_bytes = ns_carve(&m->lay, &p->ns, NULL);
    if (p->ns_bytes) {
        TG_CUDA_CHECK(err, cudaMalloc(&p->ns_mem, p->ns_bytes));
        ns_carve(&m->lay, &p->ns, (char *)p->ns_mem);
    }
    if (n > 0) {
        const int nc = adamw_chunks(&m->lay, lo, hi, NULL);
        chunks = (tg_cuda_adamw_chunk *)malloc((size_t)nc * sizeof *chunks);
        TG_CHECK_ALLOC(err, chunks);
        adamw_chunks(&m->lay, lo, hi, chunks);
        TG_CUDA_CHECK(err, cudaMalloc(&p->opt_chunks, (size_t)nc * sizeof *chunks));
        TG_CUDA_CHECK(err, cudaMemcpy(p->opt_chunks, chunks, (size_t)nc * sizeof *chunks, cudaMemcpyHostToDevice));
        p->n_opt_chunks = nc;
        TG_CUDA_CHECK(err, cudaMalloc(&p->opt_mem, nbuf * n * sizeof(float)));
        p->opt_m = p->opt_mem;
        p->opt_v = p->opt_mem + n;
        TG_CUDA_CHECK(err, cudaMemsetAsync(p->opt_mem, 0, 2 * n * sizeof(float), p->stream));
        if (p->bf16) {
            /* Masters start as the working copy; a params_set after opt_init makes them exact. */
            p->master = p->opt_mem + 2 * n;
            TG_TRY(tg_cuda_to_f32<tg_bf16>(p->master, (const tg_bf16 *)p->params + lo, n, p->stream, err));
        }
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
    }
    p->opt_lo = lo;
    p->opt_hi = hi;
    p->opt_ready = 1;
cleanup:
    free(chunks);
    return st;
}

size_t cuda_opt_bytes(const tg_model *m) {
    const cuda_impl *p = (const cuda_impl *)m->impl;
    return p->opt_ready ? (p->bf16 ? 3 : 2) * (p->opt_hi - p->opt_lo) * sizeof(float) + p->ns_bytes : 0;
}



tg_status cuda_adamw(tg_model *m, const tg_adamw_args *a, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    tg_cuda_adamw_hp hp;
    if (!p->opt_ready || a->lo != p->opt_lo || a->hi != p->opt_hi)
        TG_FAIL(err, TG_ERR_ARG, "model: adamw shard [%zu, %zu) != opt_init shard [%zu, %zu)", a->lo,
                a->hi, p->opt_lo, p->opt_hi);
    if (a->t < 1) TG_FAIL(err, TG_ERR_ARG, "model: adamw step t=%d must be >= 1", a->t);
    hp.lr = a->lr;
    hp.beta1 = a->beta1;
    hp.beta2 = a->beta2;
    hp.eps = a->eps;
    hp.weight_decay = a->weight_decay;
    hp.grad_scale = a->grad_scale;
    hp.bc1 = (float)(1.0 - pow((double)a->beta1, a->t)); /* as the CPU reference */
    hp.bc2 = (float)(1.0 - pow((double)a->beta2, a->t));
    hp.muon = a->muon != NULL;
    hp.momentum = a->muon ? a->muon->momentum : 0.0f;
    hp.nesterov = a->muon ? a->muon->nesterov : 0;
    prof_mark(p, P_OPTIM);
    if (p->bf16)
        TG_TRY(tg_cuda_adamw<tg_bf16>((tg_bf16 *)p->params, p->master, p->grads, p->opt_m, p->opt_v,
                                      a->lo, p->opt_chunks, p->n_opt_chunks, &hp,
                                      p->stream, err));
    else
        TG_TRY(tg_cuda_adamw<float>((float *)p->params, NULL, p->grads, p->opt_m, p->opt_v, a->lo,
                                    p->opt_chunks, p->n_opt_chunks, &hp,
                                    p->stream, err));
cleanup:
    return st;
}

/* Each Muon matrix starting in [lo, hi), whole, on the full gradient buffer (the CUDA backend
 * has no sharded storage): grads = sqrt(max(1, fan_out / fan_in)) * NS(U). */
tg_status cuda_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const tg_gpt2_layout *lay = &m->lay;
    if (!p->opt_ready) TG_FAIL(err, TG_ERR_ARG, "model: muon_orth before opt_init");
    prof_mark(p, P_OPTIM);
    for (int k = 0; k < lay->n_tensors; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        if (!tg_model_muon_tensor(t) || t->offset < lo || t->offset >= hi) continue;
        /* GPT-2 stores weights (in, out) (HF Conv1D), Llama (out, in) (nn.Linear); the scale is
         * computed on the host exactly as the CPU backend computes it. */
        const int llama = lay->cfg.arch == TG_MODEL_ARCH_LLAMA;
        const int fan_out = llama ? t->shape[0] : t->shape[1], fan_in = llama ? t->shape[1] : t->shape[0];
        const float scale = fan_out > fan_in ? sqrtf((float)fan_out / (float)fan_in) : 1.0f;
        TG_TRY(tg_cuda_newton_schulz(&p->blas, p->grads + t->offset, t->shape[0], t->shape[1], ns_steps, scale,
                                     &p->ns, p->stream, err));
    }
cleanup:
    return st;
}

tg_status cuda_muon_apply(tg_model *m, const tg_adamw_args *a, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p->opt_ready || a->lo != p->opt_lo || a->hi != p->opt_hi)
        TG_FAIL(err, TG_ERR_ARG, "model: muon shard [%zu, %zu) != opt_init shard [%zu, %zu)", a->lo, a->hi,
                p->opt_lo, p->opt_hi);
    prof_mark(p, P_OPTIM);
    if (p->bf16)
        TG_TRY(tg_cuda_muon_apply<tg_bf16>((tg_bf16 *)p->params, p->master, p->grads, a->lo, p->opt_chunks,
                                           p->n_opt_chunks, a->muon->lr, a->muon->weight_decay, p->stream, err));
    else
        TG_TRY(tg_cuda_muon_apply<float>((float *)p->params, NULL, p->grads, a->lo, p->opt_chunks,
                                         p->n_opt_chunks, a->muon->lr, a->muon->weight_decay, p->stream, err));
cleanup:
    return st;
}

const char *cuda_describe(const tg_model *m) { return ((const cuda_impl *)m->impl)->note; }

tg_status cuda_tuning_get(tg_model *m, void **blob, size_t *len, tg_error *err) {
    return tg_cuda_blas_tuning_get(&((cuda_impl *)m->impl)->blas, blob, len, err);
}
tg_status cuda_tuning_set(tg_model *m, const void *blob, size_t len, tg_error *err) {
    return tg_cuda_blas_tuning_set(&((cuda_impl *)m->impl)->blas, blob, len, err);
}

size_t cuda_device_bytes(const tg_model *m) {
    const cuda_impl *p = (const cuda_impl *)m->impl;
    return m->n_padded * (p->xs + sizeof(float)) + p->act_bytes + cuda_opt_bytes(m);
}

/* Positional: the order of struct tg_backend_ops in model/backend.h. */
extern "C" const tg_backend_ops tg_cuda_backend_ops = {
    "cuda",
    cuda_init,
    cuda_free,
    cuda_params_set,
    cuda_params_get,
    cuda_grads_get,
    cuda_params_ptr,
    cuda_grads_ptr,
    cuda_stream,
    cuda_grads_zero,
    cuda_forward,
    cuda_loss,
    cuda_logits_get,
    cuda_backward,
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
    cuda_muon_orth,
    cuda_muon_apply,
    NULL, /* memory: model.c derives it */
};

template tg_status cuda_lmhead<float>(tg_model *, cuda_impl *, int, float, float *, tg_error *);
template tg_status cuda_lmhead<tg_bf16>(tg_model *, cuda_impl *, int, float, float *, tg_error *);
