/* model/cpu/llama_cpu.c — the CPU reference backend of model/model.h for arch = llama (fp32,
 * OpenMP): pre-RMSNorm blocks, RoPE, grouped-query attention, SwiGLU, tied or untied LM head.
 *
 * Shared with GPT-2 (model/cpu/cpu_kernels.h): the matmul core (tg_cpu_gemm), the causal
 * attention (tg_cpu_attention_forward/backward over a packed (B, T, 3C) q|k|v buffer, into which
 * the KV heads are expanded for grouped-query attention and whose gradient is summed back over
 * each group) and the cross-entropy. Llama's own kernels are in llama_kernels.h. The optimizer,
 * gradient norm and buffer handling follow gpt2_cpu.c's (same arithmetic, so both archs step
 * alike). bf16 emulation (opt.bf16) is not implemented for Llama and is refused at init.
 * Forward and backward reach the parameters and gradients one segment at a time (cpu_shard.h),
 * so sharded storage (ZeRO-2/3) works as it does for GPT-2.
 * Results do not depend on the number of OpenMP threads. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/cpu/cpu_kernels.h"
#include "model/cpu/cpu_optim.h"
#include "model/cpu/cpu_shard.h"
#include "model/cpu/llama_kernels.h"
#include "model/llama.h"

/* Forward activations, (L, ...) slices strided by the allocated rows opt.B. */
typedef struct {
    float *x0;     /* (B, T, C) embeddings */
    float *ln1;    /* (L, B, T, C) input_layernorm output */
    float *rstd1;  /* (L, B, T) */
    float *qkv;    /* (L, B, T, 3C) q and the expanded k (after RoPE), expanded v */
    float *atty;   /* (L, B, T, C) attention output before o_proj */
    float *att;    /* (L, B, NH, T, T) causal softmax */
    float *res2;   /* (L, B, T, C) after the attention residual add */
    float *ln2;    /* (L, B, T, C) */
    float *rstd2;  /* (L, B, T) */
    float *gate;   /* (L, B, T, F) */
    float *up;     /* (L, B, T, F) */
    float *h;      /* (L, B, T, F) silu(gate) * up */
    float *res3;   /* (L, B, T, C) block output */
    float *lnf;    /* (B, T, C) */
    float *rstdf;  /* (B, T) */
    float *logits; /* (B, T, Vp) */
    float *lse, *losses; /* (B, T) */
    /* scratch */
    float *kv;     /* (B, T, KV) k or v before expansion; their gradients in backward */
    float *proj;   /* (B, T, C) */
    float *dres;   /* (B, T, C) */
    float *dln;    /* (B, T, C) */
    float *datty;  /* (B, T, C) */
    float *dqkv;   /* (B, T, 3C) */
    float *dgate, *dup; /* (B, T, F) */
    float *dlogits;/* (B, T, Vp) */
    float *datt;   /* (B, NH, T) */
    float *rope_cos, *rope_sin; /* (T, hs/2) */
} llama_acts;

typedef struct {
    float *params, *grads;
    float *mem;
    size_t mem_floats;
    llama_acts a;
    int32_t *inputs, *targets;
    int B_used, has_targets, n_valid;
    float loss;
    float *opt_m, *opt_v;
    size_t opt_lo, opt_hi;
    int opt_ready;
    tg_cpu_shard sh;
} llama_impl;

/* The shard's parameters and gradients (element opt_lo at index 0). */
static float *shard_params(const llama_impl *p) { return p->sh.level == 3 ? p->sh.pshard : p->params + p->opt_lo; }
static float *shard_grads(const llama_impl *p) { return p->sh.level >= 2 ? p->sh.gshard : p->grads + p->opt_lo; }

/* One use of segment seg (cpu_shard.h); *lo: the segment's first element. */
static tg_status seg(tg_model *m, int k, int need, float **P, float **G, size_t *lo, tg_error *err) {
    llama_impl *p = m->impl;
    size_t hi;
    tg_model_segment(m, k, lo, &hi);
    return tg_cpu_seg_begin(m, &p->sh, k, need, p->params, p->grads, P, G, err);
}

static float *alloc_floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

static size_t carve(llama_acts *a, float *mem, const tg_gpt2_config *c, int B, int T) {
    const size_t L = (size_t)c->n_layer, C = (size_t)c->n_embd, NH = (size_t)c->n_head, F = (size_t)c->ffn_dim;
    const size_t Vp = (size_t)c->padded_vocab_size, BT = (size_t)B * (size_t)T;
    const size_t KV = (size_t)c->n_kv_head * (C / NH), half = C / NH / 2;
    size_t off = 0;
#define CARVE(ptr, n)                                                                              \
    do {                                                                                           \
        (ptr) = mem ? mem + off : NULL;                                                            \
        off += ((n) + 15) / 16 * 16;                                                               \
    } while (0)
    CARVE(a->x0, BT * C);
    CARVE(a->ln1, L * BT * C);
    CARVE(a->rstd1, L * BT);
    CARVE(a->qkv, L * BT * 3 * C);
    CARVE(a->atty, L * BT * C);
    CARVE(a->att, L * BT * NH * (size_t)T);
    CARVE(a->res2, L * BT * C);
    CARVE(a->ln2, L * BT * C);
    CARVE(a->rstd2, L * BT);
    CARVE(a->gate, L * BT * F);
    CARVE(a->up, L * BT * F);
    CARVE(a->h, L * BT * F);
    CARVE(a->res3, L * BT * C);
    CARVE(a->lnf, BT * C);
    CARVE(a->rstdf, BT);
    CARVE(a->logits, BT * Vp);
    CARVE(a->lse, BT);
    CARVE(a->losses, BT);
    CARVE(a->kv, BT * KV);
    CARVE(a->proj, BT * C);
    CARVE(a->dres, BT * C);
    CARVE(a->dln, BT * C);
    CARVE(a->datty, BT * C);
    CARVE(a->dqkv, BT * 3 * C);
    CARVE(a->dgate, BT * F);
    CARVE(a->dup, BT * F);
    CARVE(a->dlogits, BT * Vp);
    CARVE(a->datt, BT * NH);
    CARVE(a->rope_cos, (size_t)T * half);
    CARVE(a->rope_sin, (size_t)T * half);
#undef CARVE
    return off;
}

static void llama_free(tg_model *m) {
    llama_impl *p = m->impl;
    if (!p) return;
    free(p->params);
    free(p->grads);
    free(p->mem);
    free(p->inputs);
    free(p->targets);
    free(p->opt_m);
    free(p->opt_v);
    tg_cpu_shard_free(&p->sh);
    free(p);
    m->impl = NULL;
}

static tg_status llama_init(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    float *inv = NULL;
    if (m->opt.bf16)
        return tg_error_set(err, TG_ERR_UNSUPPORTED,
                            "model.arch=llama on the CPU trains in fp32 only (bf16 emulation is GPT-2's)");
    llama_impl *p = calloc(1, sizeof *p);
    TG_CHECK_ALLOC(err, p);
    m->impl = p;
    const tg_gpt2_config *c = &m->lay.cfg;
    const int B = m->opt.B, T = m->opt.T;
    p->params = alloc_floats(m->n_padded);
    p->grads = alloc_floats(m->n_padded);
    TG_CHECK_ALLOC(err, p->params);
    TG_CHECK_ALLOC(err, p->grads);
    p->mem_floats = carve(&p->a, NULL, c, B, T);
    p->mem = alloc_floats(p->mem_floats);
    TG_CHECK_ALLOC(err, p->mem);
    carve(&p->a, p->mem, c, B, T);
    p->inputs = calloc((size_t)B * T, sizeof *p->inputs);
    p->targets = calloc((size_t)B * T, sizeof *p->targets);
    TG_CHECK_ALLOC(err, p->inputs);
    TG_CHECK_ALLOC(err, p->targets);
    inv = malloc((size_t)(c->n_embd / c->n_head / 2) * sizeof *inv);
    TG_CHECK_ALLOC(err, inv);
    tg_llama_rope_inv_freq(c, inv);
    tg_llama_rope_tables(p->a.rope_cos, p->a.rope_sin, T, c->n_embd / c->n_head / 2, inv);
cleanup:
    free(inv);
    if (st != TG_OK) llama_free(m);
    return st;
}

/* base: element lo of the flat buffer (a segment's P or G). */
static float *tensor(const tg_model *m, float *base, size_t lo, int idx) {
    return base + (m->lay.tensors[idx].offset - lo);
}
static float *block(const tg_model *m, float *base, size_t lo, int l, tg_llama_block_tensor k) {
    return tensor(m, base, lo, tg_llama_block_index(l, k));
}
/* The segment holding tensor idx: the embeddings' or the final one. */
static int seg_of(const tg_model *m, int idx) {
    return m->lay.tensors[idx].offset < m->lay.layer_begin[0] ? 0 : m->lay.cfg.n_layer + 1;
}

static tg_status llama_forward(tg_model *m, const int32_t *inputs, const int32_t *targets, int B_used,
                               tg_error *err) {
    llama_impl *p = m->impl;
    const tg_gpt2_config *c = &m->lay.cfg;
    const int L = c->n_layer, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, hs = C / NH, F = c->ffn_dim;
    const int KV = NKV * hs, V = c->vocab_size, Vp = c->padded_vocab_size;
    const int B = B_used, T = m->opt.T, BT = B * T;
    const size_t sBTC = (size_t)m->opt.B * T * C, sBT = (size_t)m->opt.B * T, sBTF = sBT * (size_t)F;
    const size_t sATT = sBT * (size_t)NH * T;
    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return tg_error_set(err, TG_ERR_DATA, "model: input token %d at %d outside [0, %d)", (int)inputs[i], i, V);
        if (targets && (targets[i] < -1 || targets[i] >= V))
            return tg_error_set(err, TG_ERR_DATA, "model: target %d at %d outside [-1, %d)", (int)targets[i], i, V);
    }
    p->B_used = 0;
    memcpy(p->inputs, inputs, (size_t)BT * sizeof *inputs);
    if (targets) memcpy(p->targets, targets, (size_t)BT * sizeof *targets);
    else for (int i = 0; i < BT; i++) p->targets[i] = -1;

    tg_status st = TG_OK;
    llama_acts *a = &p->a;
    float *w = NULL;
    size_t lo = 0;
    const float eps = (float)c->norm_eps;
    const int PR = TG_CPU_SEG_PARAMS, head = tg_llama_head_index(c);
    TG_TRY(seg(m, 0, PR, &w, NULL, &lo, err));
    tg_llama_embed_forward(a->x0, p->inputs, tensor(m, w, lo, TG_LLAMA_EMBED), BT, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, PR, err));
    for (int l = 0; l < L; l++) {
        TG_TRY(seg(m, 1 + l, PR, &w, NULL, &lo, err));
        const float *x = l == 0 ? a->x0 : a->res3 + (size_t)(l - 1) * sBTC;
        float *ln1 = a->ln1 + l * sBTC, *qkv = a->qkv + l * 3 * sBTC, *atty = a->atty + l * sBTC;
        float *res2 = a->res2 + l * sBTC, *ln2 = a->ln2 + l * sBTC, *res3 = a->res3 + l * sBTC;
        float *gate = a->gate + l * sBTF, *up = a->up + l * sBTF, *h = a->h + l * sBTF;
        tg_llama_rmsnorm_forward(ln1, a->rstd1 + l * sBT, x, block(m, w, lo, l, TG_LLAMA_IN_NORM), BT, C, eps);
        tg_llama_linear_forward(qkv, 3 * (size_t)C, ln1, block(m, w, lo, l, TG_LLAMA_Q), BT, C, C);
        tg_llama_rope(qkv, 3 * (size_t)C, a->rope_cos, a->rope_sin, B, T, NH, hs, 0);
        tg_llama_linear_forward(a->kv, (size_t)KV, ln1, block(m, w, lo, l, TG_LLAMA_K), BT, C, KV);
        tg_llama_rope(a->kv, (size_t)KV, a->rope_cos, a->rope_sin, B, T, NKV, hs, 0);
        tg_llama_kv_expand(qkv + C, 3 * (size_t)C, a->kv, (size_t)KV, BT, NH, NKV, hs);
        tg_llama_linear_forward(a->kv, (size_t)KV, ln1, block(m, w, lo, l, TG_LLAMA_V), BT, C, KV);
        tg_llama_kv_expand(qkv + 2 * C, 3 * (size_t)C, a->kv, (size_t)KV, BT, NH, NKV, hs);
        tg_cpu_attention_forward(atty, a->att + l * sATT, qkv, B, T, C, NH);
        tg_llama_linear_forward(a->proj, (size_t)C, atty, block(m, w, lo, l, TG_LLAMA_O), BT, C, C);
        tg_cpu_residual_forward(res2, x, a->proj, (size_t)BT * C);
        tg_llama_rmsnorm_forward(ln2, a->rstd2 + l * sBT, res2, block(m, w, lo, l, TG_LLAMA_POST_NORM), BT, C, eps);
        tg_llama_linear_forward(gate, (size_t)F, ln2, block(m, w, lo, l, TG_LLAMA_GATE), BT, C, F);
        tg_llama_linear_forward(up, (size_t)F, ln2, block(m, w, lo, l, TG_LLAMA_UP), BT, C, F);
        tg_llama_swiglu_forward(h, gate, up, (size_t)BT * F);
        tg_llama_linear_forward(a->proj, (size_t)C, h, block(m, w, lo, l, TG_LLAMA_DOWN), BT, F, C);
        tg_cpu_residual_forward(res3, res2, a->proj, (size_t)BT * C);
        TG_TRY(tg_cpu_seg_end(m, &p->sh, 1 + l, PR, err));
    }
    TG_TRY(seg(m, L + 1, PR, &w, NULL, &lo, err));
    tg_llama_rmsnorm_forward(a->lnf, a->rstdf, a->res3 + (size_t)(L - 1) * sBTC,
                             tensor(m, w, lo, tg_llama_norm_index(L)), BT, C, eps);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, L + 1, PR, err));
    /* all Vp columns (the padded ones are unused) */
    TG_TRY(seg(m, seg_of(m, head), PR, &w, NULL, &lo, err));
    tg_llama_linear_forward(a->logits, (size_t)Vp, a->lnf, tensor(m, w, lo, head), BT, C, Vp);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, seg_of(m, head), PR, err));
    p->has_targets = targets != NULL;
    p->n_valid = 0;
    p->loss = 0.0f;
    if (targets) {
        tg_cpu_crossentropy_forward(a->losses, a->lse, a->logits, p->targets, BT, V, Vp);
        double sum = 0.0; /* serial, in position order: thread-count independent */
        for (int i = 0; i < BT; i++) {
            if (p->targets[i] < 0) continue;
            sum += a->losses[i];
            p->n_valid++;
        }
        p->loss = p->n_valid ? (float)(sum / p->n_valid) : 0.0f;
    }
    p->B_used = B;
cleanup:
    return st;
}

static tg_status llama_backward(tg_model *m, float loss_scale, tg_error *err) {
    llama_impl *p = m->impl;
    const tg_gpt2_config *c = &m->lay.cfg;
    const int L = c->n_layer, C = c->n_embd, NH = c->n_head, NKV = c->n_kv_head, hs = C / NH, F = c->ffn_dim;
    const int KV = NKV * hs, V = c->vocab_size, Vp = c->padded_vocab_size;
    const int B = p->B_used, T = m->opt.T, BT = B * T;
    const size_t sBTC = (size_t)m->opt.B * T * C, sBT = (size_t)m->opt.B * T, sBTF = sBT * (size_t)F;
    const size_t sATT = sBT * (size_t)NH * T;
    if (!B || !p->has_targets)
        return tg_error_set(err, TG_ERR_ARG, "model: backward needs a forward with targets first");
    tg_status st = TG_OK;
    llama_acts *a = &p->a;
    float *w = NULL, *g = NULL;
    size_t lo = 0;
    const int PG = TG_CPU_SEG_PARAMS | TG_CPU_SEG_GRADS;
    const float dscale = p->n_valid ? loss_scale / (float)p->n_valid : 0.0f;
    tg_cpu_crossentropy_backward(a->dlogits, a->logits, a->lse, p->targets, dscale, BT, V, Vp);
    /* LM head over the real vocab (padded columns have zero gradient) */
    const int head = tg_llama_head_index(c), nrm = tg_llama_norm_index(L);
    TG_TRY(seg(m, seg_of(m, head), PG, &w, &g, &lo, err));
    tg_llama_linear_backward(a->dln, tensor(m, g, lo, head), a->dlogits, (size_t)Vp, a->lnf, tensor(m, w, lo, head), BT, C,
                             V, 0);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, seg_of(m, head), PG, err));
    memset(a->dres, 0, (size_t)BT * C * sizeof(float));
    TG_TRY(seg(m, L + 1, PG, &w, &g, &lo, err));
    tg_llama_rmsnorm_backward(a->dres, tensor(m, g, lo, nrm), a->dln, a->res3 + (size_t)(L - 1) * sBTC,
                              tensor(m, w, lo, nrm), a->rstdf, BT, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, L + 1, PG, err));
    for (int l = L - 1; l >= 0; l--) {
        TG_TRY(seg(m, 1 + l, PG, &w, &g, &lo, err));
        const float *x = l == 0 ? a->x0 : a->res3 + (size_t)(l - 1) * sBTC;
        const float *ln1 = a->ln1 + l * sBTC, *qkv = a->qkv + l * 3 * sBTC, *atty = a->atty + l * sBTC;
        const float *res2 = a->res2 + l * sBTC, *ln2 = a->ln2 + l * sBTC;
        const float *gate = a->gate + l * sBTF, *up = a->up + l * sBTF, *h = a->h + l * sBTF;
        /* MLP: dres is d/d(res3) */
        tg_llama_linear_backward(a->dgate, block(m, g, lo, l, TG_LLAMA_DOWN), a->dres, (size_t)C, h,
                                 block(m, w, lo, l, TG_LLAMA_DOWN), BT, F, C, 0);
        tg_llama_swiglu_backward(a->dgate, a->dup, a->dgate, gate, up, (size_t)BT * F);
        tg_llama_linear_backward(a->dln, block(m, g, lo, l, TG_LLAMA_GATE), a->dgate, (size_t)F, ln2,
                                 block(m, w, lo, l, TG_LLAMA_GATE), BT, C, F, 0);
        tg_llama_linear_backward(a->dln, block(m, g, lo, l, TG_LLAMA_UP), a->dup, (size_t)F, ln2,
                                 block(m, w, lo, l, TG_LLAMA_UP), BT, C, F, 1);
        tg_llama_rmsnorm_backward(a->dres, block(m, g, lo, l, TG_LLAMA_POST_NORM), a->dln, res2,
                                  block(m, w, lo, l, TG_LLAMA_POST_NORM), a->rstd2 + l * sBT, BT, C);
        /* attention: dres is now d/d(res2) */
        tg_llama_linear_backward(a->datty, block(m, g, lo, l, TG_LLAMA_O), a->dres, (size_t)C, atty,
                                 block(m, w, lo, l, TG_LLAMA_O), BT, C, C, 0);
        tg_cpu_attention_backward(a->dqkv, a->datt, a->datty, qkv, a->att + l * sATT, B, T, C, NH);
        /* q: undo RoPE on the gradient, then its projection */
        tg_llama_rope(a->dqkv, 3 * (size_t)C, a->rope_cos, a->rope_sin, B, T, NH, hs, 1);
        tg_llama_linear_backward(a->dln, block(m, g, lo, l, TG_LLAMA_Q), a->dqkv, 3 * (size_t)C, ln1,
                                 block(m, w, lo, l, TG_LLAMA_Q), BT, C, C, 0);
        /* k: sum over the group, undo RoPE; v: sum over the group */
        tg_llama_kv_reduce(a->kv, a->dqkv + C, 3 * (size_t)C, BT, NH, NKV, hs);
        tg_llama_rope(a->kv, (size_t)KV, a->rope_cos, a->rope_sin, B, T, NKV, hs, 1);
        tg_llama_linear_backward(a->dln, block(m, g, lo, l, TG_LLAMA_K), a->kv, (size_t)KV, ln1,
                                 block(m, w, lo, l, TG_LLAMA_K), BT, C, KV, 1);
        tg_llama_kv_reduce(a->kv, a->dqkv + 2 * C, 3 * (size_t)C, BT, NH, NKV, hs);
        tg_llama_linear_backward(a->dln, block(m, g, lo, l, TG_LLAMA_V), a->kv, (size_t)KV, ln1,
                                 block(m, w, lo, l, TG_LLAMA_V), BT, C, KV, 1);
        tg_llama_rmsnorm_backward(a->dres, block(m, g, lo, l, TG_LLAMA_IN_NORM), a->dln, x,
                                  block(m, w, lo, l, TG_LLAMA_IN_NORM), a->rstd1 + l * sBT, BT, C);
        TG_TRY(tg_cpu_seg_end(m, &p->sh, 1 + l, PG, err));
        tg_model_grad_ready(m, m->lay.layer_begin[l], m->lay.layer_begin[l + 1]);
    }
    TG_TRY(seg(m, 0, TG_CPU_SEG_GRADS, NULL, &g, &lo, err));
    tg_llama_embed_backward(tensor(m, g, lo, TG_LLAMA_EMBED), a->dres, p->inputs, BT, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, TG_CPU_SEG_GRADS, err));
    tg_model_grad_ready(m, 0, m->lay.layer_begin[0]);
    tg_model_grad_ready(m, m->lay.layer_begin[L], m->lay.n_params);
cleanup:
    return st;
}

static tg_status llama_loss(tg_model *m, float *loss, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->B_used || !p->has_targets)
        return tg_error_set(err, TG_ERR_ARG, "model: loss needs a forward with targets first");
    *loss = p->loss;
    return TG_OK;
}

static tg_status llama_logits_get(tg_model *m, float *host, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->B_used) return tg_error_set(err, TG_ERR_ARG, "model: logits_get before any forward");
    memcpy(host, p->a.logits, (size_t)p->B_used * m->opt.T * m->lay.cfg.padded_vocab_size * sizeof(float));
    return TG_OK;
}

/* With sharded storage only the shard's part of the host array moves (cpu_shard.h). */
static tg_status llama_params_set(tg_model *m, const float *host, tg_error *err) {
    (void)err;
    llama_impl *p = m->impl;
    size_t i0, i1;
    tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
    if (p->sh.level == 3) memcpy(p->sh.pshard, host + i0, (i1 - i0) * sizeof(float));
    else memcpy(p->params, host, m->lay.n_params * sizeof(float));
    return TG_OK;
}
static tg_status llama_params_get(tg_model *m, float *host, tg_error *err) {
    (void)err;
    llama_impl *p = m->impl;
    size_t i0, i1;
    tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
    if (p->sh.level == 3) memcpy(host + i0, p->sh.pshard, (i1 - i0) * sizeof(float));
    else memcpy(host, p->params, m->lay.n_params * sizeof(float));
    return TG_OK;
}
static tg_status llama_grads_get(tg_model *m, float *host, tg_error *err) {
    (void)err;
    llama_impl *p = m->impl;
    size_t i0, i1;
    tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
    if (p->sh.level >= 2) memcpy(host + i0, p->sh.gshard, (i1 - i0) * sizeof(float));
    else memcpy(host, p->grads, m->lay.n_params * sizeof(float));
    return TG_OK;
}
static void *llama_params_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((llama_impl *)m->impl)->params;
}
static void *llama_grads_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((llama_impl *)m->impl)->grads;
}
static void *llama_stream(tg_model *m) {
    (void)m;
    return NULL;
}
static tg_status llama_grads_zero(tg_model *m, tg_error *err) {
    (void)err;
    llama_impl *p = m->impl;
    if (p->sh.level >= 2) memset(p->sh.gshard, 0, (p->sh.hi - p->sh.lo) * sizeof(float));
    else memset(p->grads, 0, m->n_padded * sizeof(float));
    return TG_OK;
}

static tg_status llama_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err) {
    const llama_impl *p = m->impl;
    if (p->sh.level < 2) return tg_cpu_sqnorm(p->grads, lo, hi, out, err);
    if (lo < p->sh.lo || hi > p->sh.hi)
        return tg_error_set(err, TG_ERR_ARG, "model: grad_sqnorm [%zu, %zu) outside the gradient shard [%zu, %zu)",
                            lo, hi, p->sh.lo, p->sh.hi);
    return tg_cpu_sqnorm(p->sh.gshard, lo - p->sh.lo, hi - p->sh.lo, out, err);
}

static tg_status llama_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    llama_impl *p = m->impl;
    free(p->opt_m);
    free(p->opt_v);
    p->opt_ready = 0;
    if (p->sh.level >= 2 && (lo != p->sh.lo || hi != p->sh.hi))
        TG_FAIL(err, TG_ERR_ARG, "model: opt_init shard [%zu, %zu) != the sharded storage's [%zu, %zu)", lo, hi,
                p->sh.lo, p->sh.hi);
    p->opt_m = alloc_floats(hi - lo);
    p->opt_v = alloc_floats(hi - lo);
    TG_CHECK_ALLOC(err, p->opt_m);
    TG_CHECK_ALLOC(err, p->opt_v);
    p->opt_lo = lo;
    p->opt_hi = hi;
    p->opt_ready = 1;
cleanup:
    return st;
}

static size_t llama_opt_bytes(const tg_model *m) {
    const llama_impl *p = m->impl;
    return p->opt_ready ? 2 * (p->opt_hi - p->opt_lo) * sizeof(float) : 0;
}

static tg_status llama_opt_get(tg_model *m, float *mom, float *var, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->opt_ready) return tg_error_set(err, TG_ERR_ARG, "model: opt_get before opt_init");
    memcpy(mom, p->opt_m, (p->opt_hi - p->opt_lo) * sizeof(float));
    memcpy(var, p->opt_v, (p->opt_hi - p->opt_lo) * sizeof(float));
    return TG_OK;
}

static tg_status llama_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->opt_ready) return tg_error_set(err, TG_ERR_ARG, "model: opt_set before opt_init");
    memcpy(p->opt_m, mom, (p->opt_hi - p->opt_lo) * sizeof(float));
    memcpy(p->opt_v, var, (p->opt_hi - p->opt_lo) * sizeof(float));
    return TG_OK;
}

static tg_cpu_optim llama_optim_view(tg_model *m) {
    llama_impl *p = m->impl;
    return (tg_cpu_optim){.lay = &m->lay, .params = shard_params(p), .grads = shard_grads(p),
                          .m = p->opt_m, .v = p->opt_v, .lo = p->opt_lo, .hi = p->opt_hi};
}

static tg_status llama_adamw(tg_model *m, const tg_adamw_args *ar, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->opt_ready || ar->lo != p->opt_lo || ar->hi != p->opt_hi)
        return tg_error_set(err, TG_ERR_ARG, "model: adamw shard [%zu, %zu) != opt_init shard [%zu, %zu)", ar->lo,
                            ar->hi, p->opt_lo, p->opt_hi);
    if (ar->t < 1) return tg_error_set(err, TG_ERR_ARG, "model: adamw step t=%d must be >= 1", ar->t);
    tg_cpu_optim o = llama_optim_view(m);
    return tg_cpu_optim_adamw(&o, ar, err);
}

static tg_status llama_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->grads)
        return tg_error_set(err, TG_ERR_CONFIG, "train.optimizer=muon needs the full gradient buffer: "
                            "use train.zero_stage 0 or 1");
    return tg_cpu_muon_orth(&m->lay, p->grads, lo, hi, ns_steps, err);
}

static tg_status llama_muon_apply(tg_model *m, const tg_adamw_args *ar, tg_error *err) {
    llama_impl *p = m->impl;
    if (!p->opt_ready || ar->lo != p->opt_lo || ar->hi != p->opt_hi)
        return tg_error_set(err, TG_ERR_ARG, "model: muon shard [%zu, %zu) != opt_init shard [%zu, %zu)", ar->lo,
                            ar->hi, p->opt_lo, p->opt_hi);
    tg_cpu_optim o = llama_optim_view(m);
    tg_cpu_muon_apply(&o, ar);
    return TG_OK;
}

static const char *llama_describe(const tg_model *m) {
    (void)m;
    return "fp32 reference (OpenMP), llama";
}

static void llama_memory(const tg_model *m, tg_model_memory *out) {
    const llama_impl *p = m->impl;
    const size_t F = sizeof(float), shard = p->sh.hi - p->sh.lo;
    out->params = (p->params ? m->n_padded : 0) * F + (p->sh.pshard ? shard + p->sh.win : 0) * F;
    out->grads = (p->grads ? m->n_padded : 0) * F + (p->sh.gshard ? shard + p->sh.win : 0) * F;
    out->optimizer = llama_opt_bytes(m);
    out->activations = p->mem_floats * F;
    out->window = p->sh.win * F;
}

static size_t llama_device_bytes(const tg_model *m) {
    tg_model_memory mem;
    llama_memory(m, &mem);
    return mem.params + mem.grads + mem.optimizer + mem.activations;
}

static tg_status llama_shard_storage(tg_model *m, int level, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    llama_impl *p = m->impl;
    TG_TRY(tg_cpu_shard_init(&p->sh, m, level, lo, hi, 0, err));
    free(p->grads);
    p->grads = NULL;
    if (level == 3) {
        free(p->params);
        p->params = NULL;
    }
cleanup:
    return st;
}

static float *llama_shard_params_op(tg_model *m) {
    const llama_impl *p = m->impl;
    return p->sh.level == 3 ? p->sh.pshard : p->sh.level == 2 ? p->params + p->sh.lo : NULL;
}

static float *llama_shard_grads_op(tg_model *m) { return ((llama_impl *)m->impl)->sh.gshard; }

const tg_backend_ops tg_cpu_llama_backend_ops = {
    .name = "cpu",
    .init = llama_init,
    .free = llama_free,
    .params_set = llama_params_set,
    .params_get = llama_params_get,
    .grads_get = llama_grads_get,
    .params = llama_params_ptr,
    .grads = llama_grads_ptr,
    .stream = llama_stream,
    .grads_zero = llama_grads_zero,
    .forward = llama_forward,
    .loss = llama_loss,
    .logits_get = llama_logits_get,
    .backward = llama_backward,
    .grad_sqnorm = llama_grad_sqnorm,
    .opt_init = llama_opt_init,
    .opt_bytes = llama_opt_bytes,
    .opt_get = llama_opt_get,
    .opt_set = llama_opt_set,
    .adamw = llama_adamw,
    .muon_orth = llama_muon_orth,
    .muon_apply = llama_muon_apply,
    .device_bytes = llama_device_bytes,
    .describe = llama_describe,
    .shard_storage = llama_shard_storage,
    .shard_params = llama_shard_params_op,
    .shard_grads = llama_shard_grads_op,
    .memory = llama_memory,
};
