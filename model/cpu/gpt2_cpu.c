/* model/cpu/gpt2_cpu.c — the CPU reference backend of model/model.h: GPT-2 in fp32 with OpenMP.
 *
 * With opt.bf16 it emulates the CUDA backend's bf16 storage while still computing in fp32: the
 * forward and backward read bf16-rounded copies of the weights (params stay the fp32 masters
 * AdamW updates), and activations, logits and activation gradients are rounded to bf16 where the
 * CUDA backend stores them in bf16. It is the reference for bf16 loss curves: rounding alone moves
 * a training curve by a few percent (docs/cuda.md, "Known differences").
 *
 * Memory (all 64-byte aligned host buffers):
 *   params, grads    n_padded floats each; the padding [n_params, n_padded) stays zero.
 *   acts             one buffer carved into cpu_acts (forward activations kept for backward)
 *                    and cpu_scratch (backward temporaries, reused layer after layer).
 *   opt_m, opt_v     AdamW moments for the shard [opt_lo, opt_hi); params are the master weights.
 *   sh               sharded storage (tg_model_shard_storage): then grads (level 2) and params
 *                    (level 3) are NULL and forward/backward reach each segment through a window
 *                    (cpu_shard.h); AdamW, the norm and the getters work on the shard.
 * Results do not depend on the number of OpenMP threads (see cpu_kernels.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/backend.h"
#include "model/cpu/cpu_kernels.h"
#include "model/cpu/cpu_optim.h"
#include "model/cpu/cpu_shard.h"

/* Forward activations. L, B, T are the model's (opt.B rows are allocated; a forward may use
 * fewer, B_used, and then only the first B_used rows of each slice are written). */
typedef struct {
    float *encoded;   /* (B, T, C) */
    float *ln1;       /* (L, B, T, C) */
    float *ln1_mean;  /* (L, B, T) */
    float *ln1_rstd;  /* (L, B, T) */
    float *qkv;       /* (L, B, T, 3C) */
    float *atty;      /* (L, B, T, C) attention output before c_proj */
    float *att;       /* (L, B, NH, T, T) causal softmax, zeros above the diagonal */
    float *residual2; /* (L, B, T, C) after the attention residual add */
    float *ln2;       /* (L, B, T, C) */
    float *ln2_mean;  /* (L, B, T) */
    float *ln2_rstd;  /* (L, B, T) */
    float *fch;       /* (L, B, T, 4C) c_fc output, GELU input */
    float *fch_gelu;  /* (L, B, T, 4C) */
    float *residual3; /* (L, B, T, C) block output */
    float *lnf;       /* (B, T, C) */
    float *lnf_mean;  /* (B, T) */
    float *lnf_rstd;  /* (B, T) */
    float *logits;    /* (B, T, Vp) */
    float *lse;       /* (B, T) log-sum-exp over the real vocab */
    float *losses;    /* (B, T) per-position loss, 0 where the target is ignored */
    float *proj;      /* (B, T, C) c_proj outputs before their residual add */
} cpu_acts;

/* Backward temporaries, reused by every layer. */
typedef struct {
    float *dresidual; /* (B, T, C) gradient of the residual stream */
    float *dln;       /* (B, T, C) gradient of a LayerNorm output */
    float *datty;     /* (B, T, C) */
    float *dqkv;      /* (B, T, 3C) */
    float *dfch;      /* (B, T, 4C) gradient of the GELU output, then (in place) of its input */
    float *dlogits;   /* (B, T, Vp) */
    float *datt;      /* (B, NH, T) one attention row per (b, h) */
} cpu_scratch;

typedef struct {
    float *params, *grads; /* n_padded each */
    float *acts_mem;       /* the one activation allocation (acts + scratch) */
    size_t acts_floats;
    cpu_acts acts;
    cpu_scratch scr;
    int32_t *inputs, *targets; /* (B, T) copies from the last forward */
    int B_used;                /* rows of the last forward; 0 before any */
    int has_targets;
    int n_valid; /* targets != -1 in the last forward */
    float loss;  /* mean loss of the last forward */
    float *opt_m, *opt_v;
    size_t opt_lo, opt_hi;
    int opt_ready;
    float *wbf; /* opt.bf16 below level 3: the bf16-rounded working copy of params (n_padded) */
    int bf16;   /* opt.bf16 */
    tg_cpu_shard sh;
} cpu_impl;

/* The shard's parameters and gradients (element lo of the shard at index 0). */
static float *cpu_shard_params(const cpu_impl *p) { return p->sh.level == 3 ? p->sh.pshard : p->params + p->opt_lo; }
static float *cpu_shard_grads(const cpu_impl *p) { return p->sh.level >= 2 ? p->sh.gshard : p->grads + p->opt_lo; }

/* One use of segment seg (cpu_shard.h): forward and backward read the bf16 copy where there is one. */
static tg_status cpu_seg(tg_model *m, int seg, int need, float **P, float **G, tg_error *err) {
    cpu_impl *p = m->impl;
    return tg_cpu_seg_begin(m, &p->sh, seg, need, p->wbf ? p->wbf : p->params, p->grads, P, G, err);
}

/* Rounds x (n floats) to bf16 when the model emulates bf16 storage. */
static void cpu_bf16(const cpu_impl *p, float *x, size_t n) {
    if (p->bf16) tg_cpu_round_bf16(x, n);
}

/* Parameter tensors of one block, in the layout's order. */
typedef struct {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} cpu_layer;

/* base: element lo of the flat buffer (a segment's P or G), so tensor k is at base + offset - lo. */
static cpu_layer cpu_layer_at(const tg_gpt2_layout *lay, float *base, size_t lo, int l) {
    const tg_tensor_info *t = &lay->tensors[tg_gpt2_block_index(l, TG_GPT2_LN1_W)];
#define AT(k) (base + (t[k].offset - lo))
    cpu_layer p = {AT(0), AT(1), AT(2), AT(3), AT(4), AT(5), AT(6), AT(7), AT(8), AT(9), AT(10), AT(11)};
#undef AT
    return p;
}

static float *cpu_tensor(const tg_gpt2_layout *lay, float *base, size_t lo, int idx) {
    return base + (lay->tensors[idx].offset - lo);
}

/* 64-byte aligned, zeroed. */
static float *cpu_alloc_floats(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    if (bytes == 0) bytes = 64;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

/* Lays out acts and scratch in mem (or only counts when mem is NULL); returns floats needed.
 * Each sub-buffer starts on a 64-byte boundary. */
static size_t cpu_carve(cpu_acts *a, cpu_scratch *s, float *mem, const tg_gpt2_config *cfg, int B,
                        int T) {
    const size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->n_embd, NH = (size_t)cfg->n_head;
    const size_t Vp = (size_t)cfg->padded_vocab_size, BT = (size_t)B * (size_t)T;
    size_t off = 0;
#define CARVE(ptr, n)                                                                          \
    do {                                                                                       \
        (ptr) = mem ? mem + off : NULL;                                                        \
        off += ((n) + 15) / 16 * 16;                                                           \
    } while (0)
    CARVE(a->encoded, BT * C);
    CARVE(a->ln1, L * BT * C);
    CARVE(a->ln1_mean, L * BT);
    CARVE(a->ln1_rstd, L * BT);
    CARVE(a->qkv, L * BT * 3 * C);
    CARVE(a->atty, L * BT * C);
    CARVE(a->att, L * BT * NH * (size_t)T);
    CARVE(a->residual2, L * BT * C);
    CARVE(a->ln2, L * BT * C);
    CARVE(a->ln2_mean, L * BT);
    CARVE(a->ln2_rstd, L * BT);
    CARVE(a->fch, L * BT * 4 * C);
    CARVE(a->fch_gelu, L * BT * 4 * C);
    CARVE(a->residual3, L * BT * C);
    CARVE(a->lnf, BT * C);
    CARVE(a->lnf_mean, BT);
    CARVE(a->lnf_rstd, BT);
    CARVE(a->logits, BT * Vp);
    CARVE(a->lse, BT);
    CARVE(a->losses, BT);
    CARVE(a->proj, BT * C);
    CARVE(s->dresidual, BT * C);
    CARVE(s->dln, BT * C);
    CARVE(s->datty, BT * C);
    CARVE(s->dqkv, BT * 3 * C);
    CARVE(s->dfch, BT * 4 * C);
    CARVE(s->dlogits, BT * Vp);
    CARVE(s->datt, BT * NH);
#undef CARVE
    return off;
}

static void cpu_free(tg_model *m) {
    cpu_impl *p = m->impl;
    if (!p) return;
    free(p->params);
    free(p->grads);
    free(p->acts_mem);
    free(p->inputs);
    free(p->targets);
    free(p->opt_m);
    free(p->opt_v);
    free(p->wbf);
    tg_cpu_shard_free(&p->sh);
    free(p);
    m->impl = NULL;
}

static tg_status cpu_init(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cpu_impl *p = calloc(1, sizeof *p);
    TG_CHECK_ALLOC(err, p);
    m->impl = p;
    /* opt.recompute is a CUDA option: this backend keeps all activations. opt.bf16 emulates bf16
     * storage (see the top of the file). */
    const int B = m->opt.B, T = m->opt.T;
    p->params = cpu_alloc_floats(m->n_padded);
    TG_CHECK_ALLOC(err, p->params);
    p->grads = cpu_alloc_floats(m->n_padded);
    TG_CHECK_ALLOC(err, p->grads);
    p->acts_floats = cpu_carve(&p->acts, &p->scr, NULL, &m->lay.cfg, B, T);
    p->acts_mem = cpu_alloc_floats(p->acts_floats);
    TG_CHECK_ALLOC(err, p->acts_mem);
    cpu_carve(&p->acts, &p->scr, p->acts_mem, &m->lay.cfg, B, T);
    p->inputs = calloc((size_t)B * T, sizeof *p->inputs);
    TG_CHECK_ALLOC(err, p->inputs);
    p->targets = calloc((size_t)B * T, sizeof *p->targets);
    TG_CHECK_ALLOC(err, p->targets);
    p->bf16 = m->opt.bf16;
    if (m->opt.bf16) {
        p->wbf = cpu_alloc_floats(m->n_padded);
        TG_CHECK_ALLOC(err, p->wbf);
    }
cleanup:
    if (st != TG_OK) cpu_free(m);
    return st;
}

/* With sharded storage only the shard's part of the host array moves (cpu_shard.h). */
static tg_status cpu_params_set(tg_model *m, const float *host, tg_error *err) {
    (void)err;
    cpu_impl *p = m->impl;
    size_t i0, i1;
    if (p->sh.level == 3) {
        tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
        memcpy(p->sh.pshard, host + i0, (i1 - i0) * sizeof(float));
    } else {
        memcpy(p->params, host, m->lay.n_params * sizeof(float));
    }
    return TG_OK;
}

static tg_status cpu_params_get(tg_model *m, float *host, tg_error *err) {
    (void)err;
    cpu_impl *p = m->impl;
    size_t i0, i1;
    if (p->sh.level == 3) {
        tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
        memcpy(host + i0, p->sh.pshard, (i1 - i0) * sizeof(float));
    } else {
        memcpy(host, p->params, m->lay.n_params * sizeof(float));
    }
    return TG_OK;
}

static tg_status cpu_grads_get(tg_model *m, float *host, tg_error *err) {
    (void)err;
    cpu_impl *p = m->impl;
    size_t i0, i1;
    if (p->sh.level >= 2) {
        tg_cpu_shard_host_range(&p->sh, m->lay.n_params, &i0, &i1);
        memcpy(host + i0, p->sh.gshard, (i1 - i0) * sizeof(float));
    } else {
        memcpy(host, p->grads, m->lay.n_params * sizeof(float));
    }
    return TG_OK;
}

static void *cpu_params_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((cpu_impl *)m->impl)->params;
}

static void *cpu_grads_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((cpu_impl *)m->impl)->grads;
}

static void *cpu_stream(tg_model *m) {
    (void)m;
    return NULL;
}

static tg_status cpu_grads_zero(tg_model *m, tg_error *err) {
    (void)err;
    cpu_impl *p = m->impl;
    if (p->sh.level >= 2) tg_cpu_zero(p->sh.gshard, p->sh.hi - p->sh.lo);
    else tg_cpu_zero(p->grads, m->n_padded);
    return TG_OK;
}

static tg_status cpu_forward(tg_model *m, const int32_t *inputs, const int32_t *targets,
                             int B_used, tg_error *err) {
    cpu_impl *p = m->impl;
    const tg_gpt2_layout *lay = &m->lay;
    const int L = lay->cfg.n_layer, C = lay->cfg.n_embd, NH = lay->cfg.n_head;
    const int lnf_w = tg_gpt2_final_index(L, TG_GPT2_LNF_W), lnf_b = tg_gpt2_final_index(L, TG_GPT2_LNF_B);
    const int V = lay->cfg.vocab_size, Vp = lay->cfg.padded_vocab_size;
    const int B = B_used, T = m->opt.T, BT = B * T;
    /* Per-layer slices are strided by the allocated rows, not by B_used. */
    const size_t sBTC = (size_t)m->opt.B * T * C, sBT = (size_t)m->opt.B * T;
    const size_t sATT = sBT * (size_t)NH * T;

    for (int i = 0; i < BT; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return tg_error_set(err, TG_ERR_DATA, "model: input token %d at %d outside [0, %d)",
                                (int)inputs[i], i, V);
        if (targets && (targets[i] < -1 || targets[i] >= V))
            return tg_error_set(err, TG_ERR_DATA, "model: target %d at %d outside [-1, %d)",
                                (int)targets[i], i, V);
    }
    p->B_used = 0; /* invalid until this forward completes */
    memcpy(p->inputs, inputs, (size_t)BT * sizeof *inputs);
    if (targets) memcpy(p->targets, targets, (size_t)BT * sizeof *targets);
    else for (int i = 0; i < BT; i++) p->targets[i] = -1;

    tg_status st = TG_OK;
    cpu_acts *a = &p->acts;
    float *P = NULL;
    size_t lo = 0, hi = 0;
    /* The bf16 working copy of the (fp32 master) weights, for forward and backward. Made at every
     * forward, not when AdamW runs: the trainer also writes params directly (ZeRO-1 all-gather).
     * With sharded parameters each window is rounded as it is filled instead. */
    if (p->wbf) {
        memcpy(p->wbf, p->params, m->n_padded * sizeof(float));
        tg_cpu_round_bf16(p->wbf, m->n_padded);
    }
    TG_TRY(cpu_seg(m, 0, TG_CPU_SEG_PARAMS, &P, NULL, err));
    tg_cpu_encoder_forward(a->encoded, p->inputs, cpu_tensor(lay, P, 0, 0), cpu_tensor(lay, P, 0, 1), B, T, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, TG_CPU_SEG_PARAMS, err));
    cpu_bf16(p, a->encoded, (size_t)BT * C);
    for (int l = 0; l < L; l++) {
        TG_TRY(cpu_seg(m, 1 + l, TG_CPU_SEG_PARAMS, &P, NULL, err));
        cpu_layer w = cpu_layer_at(lay, P, lay->layer_begin[l], l);
        const float *x = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * sBTC;
        float *ln1 = a->ln1 + l * sBTC, *qkv = a->qkv + l * 3 * sBTC, *atty = a->atty + l * sBTC;
        float *att = a->att + l * sATT, *res2 = a->residual2 + l * sBTC, *ln2 = a->ln2 + l * sBTC;
        float *fch = a->fch + l * 4 * sBTC, *fch_gelu = a->fch_gelu + l * 4 * sBTC;
        float *res3 = a->residual3 + l * sBTC;
        tg_cpu_layernorm_forward(ln1, a->ln1_mean + l * sBT, a->ln1_rstd + l * sBT, x, w.ln1w,
                                 w.ln1b, BT, C);
        cpu_bf16(p, ln1, (size_t)BT * C);
        tg_cpu_matmul_forward(qkv, ln1, w.qkvw, w.qkvb, BT, C, 3 * C);
        cpu_bf16(p, qkv, (size_t)BT * 3 * C);
        tg_cpu_attention_forward(atty, att, qkv, B, T, C, NH);
        cpu_bf16(p, atty, (size_t)BT * C);
        tg_cpu_matmul_forward(a->proj, atty, w.attprojw, w.attprojb, BT, C, C);
        cpu_bf16(p, a->proj, (size_t)BT * C);
        tg_cpu_residual_forward(res2, x, a->proj, (size_t)BT * C);
        cpu_bf16(p, res2, (size_t)BT * C);
        tg_cpu_layernorm_forward(ln2, a->ln2_mean + l * sBT, a->ln2_rstd + l * sBT, res2, w.ln2w,
                                 w.ln2b, BT, C);
        cpu_bf16(p, ln2, (size_t)BT * C);
        tg_cpu_matmul_forward(fch, ln2, w.fcw, w.fcb, BT, C, 4 * C);
        tg_cpu_gelu_forward(fch_gelu, fch, (size_t)BT * 4 * C);
        cpu_bf16(p, fch, (size_t)BT * 4 * C);
        cpu_bf16(p, fch_gelu, (size_t)BT * 4 * C);
        tg_cpu_matmul_forward(a->proj, fch_gelu, w.fcprojw, w.fcprojb, BT, 4 * C, C);
        cpu_bf16(p, a->proj, (size_t)BT * C);
        tg_cpu_residual_forward(res3, res2, a->proj, (size_t)BT * C);
        cpu_bf16(p, res3, (size_t)BT * C);
        TG_TRY(tg_cpu_seg_end(m, &p->sh, 1 + l, TG_CPU_SEG_PARAMS, err));
    }
    TG_TRY(cpu_seg(m, L + 1, TG_CPU_SEG_PARAMS, &P, NULL, err));
    tg_model_segment(m, L + 1, &lo, &hi);
    tg_cpu_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, a->residual3 + (size_t)(L - 1) * sBTC,
                             cpu_tensor(lay, P, lo, lnf_w), cpu_tensor(lay, P, lo, lnf_b), BT, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, L + 1, TG_CPU_SEG_PARAMS, err));
    cpu_bf16(p, a->lnf, (size_t)BT * C);
    /* logits = lnf @ wte^T over all Vp columns (padded ones unused); the GEMM packs wte (Vp, C)
     * as a transposed B, no copy of it. */
    TG_TRY(cpu_seg(m, 0, TG_CPU_SEG_PARAMS, &P, NULL, err));
    tg_cpu_gemm_strided(a->logits, (size_t)Vp, a->lnf, (size_t)C, 1, cpu_tensor(lay, P, 0, 0), 1,
                        (size_t)C, NULL, BT, Vp, C, 0);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, TG_CPU_SEG_PARAMS, err));
    cpu_bf16(p, a->logits, (size_t)BT * Vp);

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

static tg_status cpu_loss(tg_model *m, float *loss, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->B_used || !p->has_targets)
        return tg_error_set(err, TG_ERR_ARG, "model: loss needs a forward with targets first");
    *loss = p->loss;
    return TG_OK;
}

static tg_status cpu_logits_get(tg_model *m, float *host, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->B_used) return tg_error_set(err, TG_ERR_ARG, "model: logits_get before any forward");
    memcpy(host, p->acts.logits,
           (size_t)p->B_used * m->opt.T * m->lay.cfg.padded_vocab_size * sizeof(float));
    return TG_OK;
}

static tg_status cpu_backward(tg_model *m, float loss_scale, tg_error *err) {
    cpu_impl *p = m->impl;
    const tg_gpt2_layout *lay = &m->lay;
    const int L = lay->cfg.n_layer, C = lay->cfg.n_embd, NH = lay->cfg.n_head;
    const int lnf_w = tg_gpt2_final_index(L, TG_GPT2_LNF_W), lnf_b = tg_gpt2_final_index(L, TG_GPT2_LNF_B);
    const int V = lay->cfg.vocab_size, Vp = lay->cfg.padded_vocab_size;
    const int B = p->B_used, T = m->opt.T, BT = B * T;
    const size_t sBTC = (size_t)m->opt.B * T * C, sBT = (size_t)m->opt.B * T;
    const size_t sATT = sBT * (size_t)NH * T;
    if (!B || !p->has_targets)
        return tg_error_set(err, TG_ERR_ARG, "model: backward needs a forward with targets first");

    tg_status st = TG_OK;
    cpu_acts *a = &p->acts;
    cpu_scratch *s = &p->scr;
    float *P = NULL, *G = NULL; /* the segment in use (cpu_seg; wbf was set by forward) */
    const int PG = TG_CPU_SEG_PARAMS | TG_CPU_SEG_GRADS;
    size_t lo = 0, hi = 0;
    /* d(loss_scale * mean over valid positions) / dlogits */
    const float dscale = p->n_valid ? loss_scale / (float)p->n_valid : 0.0f;
    tg_cpu_crossentropy_backward(s->dlogits, a->logits, a->lse, p->targets, dscale, BT, V, Vp);
    cpu_bf16(p, s->dlogits, (size_t)BT * Vp);
    /* LM head, real vocab only (padded columns have zero gradient): dlnf = dlogits @ wte,
     * dwte += dlogits^T @ lnf. */
    TG_TRY(cpu_seg(m, 0, PG, &P, &G, err));
    tg_cpu_gemm(s->dln, (size_t)C, s->dlogits, (size_t)Vp, 1, cpu_tensor(lay, P, 0, 0), (size_t)C, NULL, BT, C, V, 0);
    tg_cpu_gemm(cpu_tensor(lay, G, 0, 0), (size_t)C, s->dlogits, 1, (size_t)Vp, a->lnf, (size_t)C, NULL, V, C, BT, 1);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, PG, err));
    memset(s->dresidual, 0, (size_t)BT * C * sizeof(float));
    TG_TRY(cpu_seg(m, L + 1, PG, &P, &G, err));
    tg_model_segment(m, L + 1, &lo, &hi);
    tg_cpu_layernorm_backward(s->dresidual, cpu_tensor(lay, G, lo, lnf_w),
                              cpu_tensor(lay, G, lo, lnf_b), s->dln,
                              a->residual3 + (size_t)(L - 1) * sBTC,
                              cpu_tensor(lay, P, lo, lnf_w), a->lnf_mean, a->lnf_rstd, BT, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, L + 1, PG, err));

    for (int l = L - 1; l >= 0; l--) {
        TG_TRY(cpu_seg(m, 1 + l, PG, &P, &G, err));
        cpu_layer w = cpu_layer_at(lay, P, lay->layer_begin[l], l), g = cpu_layer_at(lay, G, lay->layer_begin[l], l);
        const float *x = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * sBTC;
        const float *ln1 = a->ln1 + l * sBTC, *qkv = a->qkv + l * 3 * sBTC;
        const float *atty = a->atty + l * sBTC, *att = a->att + l * sATT;
        const float *res2 = a->residual2 + l * sBTC, *ln2 = a->ln2 + l * sBTC;
        const float *fch = a->fch + l * 4 * sBTC, *fch_gelu = a->fch_gelu + l * 4 * sBTC;
        /* dresidual is d/d(residual3): it flows into the MLP output projection... */
        cpu_bf16(p, s->dresidual, (size_t)BT * C);
        tg_cpu_matmul_backward(s->dfch, g.fcprojw, g.fcprojb, s->dresidual, fch_gelu, w.fcprojw,
                               BT, 4 * C, C);
        tg_cpu_gelu_backward(s->dfch, fch, (size_t)BT * 4 * C);
        cpu_bf16(p, s->dfch, (size_t)BT * 4 * C);
        tg_cpu_matmul_backward(s->dln, g.fcw, g.fcb, s->dfch, ln2, w.fcw, BT, C, 4 * C);
        cpu_bf16(p, s->dln, (size_t)BT * C);
        /* ...and, through the identity branch plus ln_2, becomes d/d(residual2). */
        tg_cpu_layernorm_backward(s->dresidual, g.ln2w, g.ln2b, s->dln, res2, w.ln2w,
                                  a->ln2_mean + l * sBT, a->ln2_rstd + l * sBT, BT, C);
        cpu_bf16(p, s->dresidual, (size_t)BT * C);
        tg_cpu_matmul_backward(s->datty, g.attprojw, g.attprojb, s->dresidual, atty, w.attprojw,
                               BT, C, C);
        cpu_bf16(p, s->datty, (size_t)BT * C);
        tg_cpu_attention_backward(s->dqkv, s->datt, s->datty, qkv, att, B, T, C, NH);
        cpu_bf16(p, s->dqkv, (size_t)BT * 3 * C);
        tg_cpu_matmul_backward(s->dln, g.qkvw, g.qkvb, s->dqkv, ln1, w.qkvw, BT, C, 3 * C);
        cpu_bf16(p, s->dln, (size_t)BT * C);
        /* now d/d(x), the block input */
        tg_cpu_layernorm_backward(s->dresidual, g.ln1w, g.ln1b, s->dln, x, w.ln1w,
                                  a->ln1_mean + l * sBT, a->ln1_rstd + l * sBT, BT, C);
        TG_TRY(tg_cpu_seg_end(m, &p->sh, 1 + l, PG, err));
        tg_model_grad_ready(m, lay->layer_begin[l], lay->layer_begin[l + 1]);
    }
    TG_TRY(cpu_seg(m, 0, TG_CPU_SEG_GRADS, NULL, &G, err));
    tg_cpu_encoder_backward(cpu_tensor(lay, G, 0, 0), cpu_tensor(lay, G, 0, 1), s->dresidual, p->inputs, B, T, C);
    TG_TRY(tg_cpu_seg_end(m, &p->sh, 0, TG_CPU_SEG_GRADS, err));
    tg_model_grad_ready(m, 0, lay->layer_begin[0]);
    tg_model_grad_ready(m, lay->layer_begin[L], lay->n_params);
cleanup:
    return st;
}

static tg_status cpu_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err) {
    const cpu_impl *p = m->impl;
    if (p->sh.level < 2) return tg_cpu_sqnorm(p->grads, lo, hi, out, err);
    if (lo < p->sh.lo || hi > p->sh.hi)
        return tg_error_set(err, TG_ERR_ARG, "model: grad_sqnorm [%zu, %zu) outside the gradient shard [%zu, %zu)",
                            lo, hi, p->sh.lo, p->sh.hi);
    return tg_cpu_sqnorm(p->sh.gshard, lo - p->sh.lo, hi - p->sh.lo, out, err);
}

static tg_status cpu_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    cpu_impl *p = m->impl;
    free(p->opt_m);
    free(p->opt_v);
    p->opt_ready = 0;
    if (p->sh.level >= 2 && (lo != p->sh.lo || hi != p->sh.hi))
        TG_FAIL(err, TG_ERR_ARG, "model: opt_init shard [%zu, %zu) != the sharded storage's [%zu, %zu)", lo, hi,
                p->sh.lo, p->sh.hi);
    p->opt_m = cpu_alloc_floats(hi - lo);
    p->opt_v = cpu_alloc_floats(hi - lo);
    TG_CHECK_ALLOC(err, p->opt_m);
    TG_CHECK_ALLOC(err, p->opt_v);
    p->opt_lo = lo;
    p->opt_hi = hi;
    p->opt_ready = 1;
cleanup:
    return st;
}

static size_t cpu_opt_bytes(const tg_model *m) {
    const cpu_impl *p = m->impl;
    return p->opt_ready ? 2 * (p->opt_hi - p->opt_lo) * sizeof(float) : 0;
}

static tg_status cpu_opt_get(tg_model *m, float *mom, float *var, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->opt_ready) return tg_error_set(err, TG_ERR_ARG, "model: opt_get before opt_init");
    memcpy(mom, p->opt_m, (p->opt_hi - p->opt_lo) * sizeof(float));
    memcpy(var, p->opt_v, (p->opt_hi - p->opt_lo) * sizeof(float));
    return TG_OK;
}

static tg_status cpu_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->opt_ready) return tg_error_set(err, TG_ERR_ARG, "model: opt_set before opt_init");
    memcpy(p->opt_m, mom, (p->opt_hi - p->opt_lo) * sizeof(float));
    memcpy(p->opt_v, var, (p->opt_hi - p->opt_lo) * sizeof(float));
    return TG_OK;
}

static tg_cpu_optim cpu_optim_view(tg_model *m) {
    cpu_impl *p = m->impl;
    return (tg_cpu_optim){.lay = &m->lay, .params = cpu_shard_params(p), .grads = cpu_shard_grads(p),
                          .m = p->opt_m, .v = p->opt_v, .lo = p->opt_lo, .hi = p->opt_hi};
}

static tg_status cpu_adamw(tg_model *m, const tg_adamw_args *a, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->opt_ready || a->lo != p->opt_lo || a->hi != p->opt_hi)
        return tg_error_set(err, TG_ERR_ARG, "model: adamw shard [%zu, %zu) != opt_init shard [%zu, %zu)",
                            a->lo, a->hi, p->opt_lo, p->opt_hi);
    if (a->t < 1) return tg_error_set(err, TG_ERR_ARG, "model: adamw step t=%d must be >= 1", a->t);
    tg_cpu_optim o = cpu_optim_view(m);
    return tg_cpu_optim_adamw(&o, a, err);
}

static tg_status cpu_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->grads)
        return tg_error_set(err, TG_ERR_CONFIG, "train.optimizer=muon needs the full gradient buffer: "
                            "use train.zero_stage 0 or 1");
    return tg_cpu_muon_orth(&m->lay, p->grads, lo, hi, ns_steps, err);
}

static tg_status cpu_muon_apply(tg_model *m, const tg_adamw_args *a, tg_error *err) {
    cpu_impl *p = m->impl;
    if (!p->opt_ready || a->lo != p->opt_lo || a->hi != p->opt_hi)
        return tg_error_set(err, TG_ERR_ARG, "model: muon shard [%zu, %zu) != opt_init shard [%zu, %zu)",
                            a->lo, a->hi, p->opt_lo, p->opt_hi);
    tg_cpu_optim o = cpu_optim_view(m);
    tg_cpu_muon_apply(&o, a);
    return TG_OK;
}

static const char *cpu_describe(const tg_model *m) {
    return ((const cpu_impl *)m->impl)->bf16 ? "fp32 reference (OpenMP), emulating bf16 storage"
                                             : "fp32 reference (OpenMP)";
}

static void cpu_memory(const tg_model *m, tg_model_memory *out) {
    const cpu_impl *p = m->impl;
    const size_t F = sizeof(float), shard = p->sh.hi - p->sh.lo;
    out->params = (p->params ? m->n_padded : 0) * F + (p->wbf ? m->n_padded : 0) * F +
                  (p->sh.pshard ? shard + p->sh.win : 0) * F;
    out->grads = (p->grads ? m->n_padded : 0) * F + (p->sh.gshard ? shard + p->sh.win : 0) * F;
    out->optimizer = cpu_opt_bytes(m);
    out->activations = p->acts_floats * F;
    out->window = p->sh.win * F;
}

static size_t cpu_device_bytes(const tg_model *m) {
    tg_model_memory mem;
    cpu_memory(m, &mem);
    return mem.params + mem.grads + mem.optimizer + mem.activations;
}

static tg_status cpu_shard_storage(tg_model *m, int level, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    cpu_impl *p = m->impl;
    TG_TRY(tg_cpu_shard_init(&p->sh, m, level, lo, hi, p->bf16, err));
    free(p->grads);
    p->grads = NULL;
    if (level == 3) { /* the windows are rounded as they are filled */
        free(p->params);
        free(p->wbf);
        p->params = p->wbf = NULL;
    }
cleanup:
    return st;
}

static float *cpu_shard_params_op(tg_model *m) {
    const cpu_impl *p = m->impl;
    return p->sh.level == 3 ? p->sh.pshard : p->sh.level == 2 ? p->params + p->sh.lo : NULL;
}

static float *cpu_shard_grads_op(tg_model *m) { return ((cpu_impl *)m->impl)->sh.gshard; }

const tg_backend_ops tg_cpu_backend_ops = {
    .name = "cpu",
    .init = cpu_init,
    .free = cpu_free,
    .params_set = cpu_params_set,
    .params_get = cpu_params_get,
    .grads_get = cpu_grads_get,
    .params = cpu_params_ptr,
    .grads = cpu_grads_ptr,
    .stream = cpu_stream,
    .grads_zero = cpu_grads_zero,
    .forward = cpu_forward,
    .loss = cpu_loss,
    .logits_get = cpu_logits_get,
    .backward = cpu_backward,
    .grad_sqnorm = cpu_grad_sqnorm,
    .opt_init = cpu_opt_init,
    .opt_bytes = cpu_opt_bytes,
    .opt_get = cpu_opt_get,
    .opt_set = cpu_opt_set,
    .adamw = cpu_adamw,
    .muon_orth = cpu_muon_orth,
    .muon_apply = cpu_muon_apply,
    .device_bytes = cpu_device_bytes,
    .describe = cpu_describe,
    .shard_storage = cpu_shard_storage,
    .shard_params = cpu_shard_params_op,
    .shard_grads = cpu_shard_grads_op,
    .memory = cpu_memory,
};
