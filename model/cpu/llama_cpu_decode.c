/* model/cpu/llama_cpu_decode.c — Llama's step of the KV-cache decoder (cpu_decode.h): the new
 * rows through RMSNorm, the projections, RoPE at their absolute positions (the full forward's
 * cos/sin tables), attention over the cache of n_kv_head heads, SwiGLU and the LM head, with the
 * full forward's kernels (model/cpu/llama_kernels.h), so the logits have its bits. */
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_decode.h"
#include "model/cpu/cpu_kernels.h"
#include "model/cpu/llama_kernels.h"
#include "model/llama.h"

enum { X, LN, RSTD, Q, ATTY, PROJ, RES2, GATE, UP, H, NBUFS };

static void llama_step(tg_cpu_decoder *d, const int32_t *ids, int n, float *logits) {
    const tg_gpt2_config *c = &d->lay->cfg;
    const int C = d->C, L = d->L, t0 = d->len, NH = d->NH, NKV = d->NKV, hs = d->hs, F = c->ffn_dim;
    const int KV = (int)d->kvd, half = hs / 2;
    const float eps = (float)c->norm_eps;
    const float *cos_t = d->table[0] + (size_t)t0 * half, *sin_t = d->table[1] + (size_t)t0 * half;
    float *const *b = d->buf;
    tg_llama_embed_forward(b[X], ids, tg_cpu_dec_tensor(d, TG_LLAMA_EMBED), n, C);
    for (int l = 0; l < L; l++) {
        const float *w[TG_LLAMA_BLOCK_TENSORS];
        for (int k = 0; k < TG_LLAMA_BLOCK_TENSORS; k++) w[k] = tg_cpu_dec_tensor(d, tg_llama_block_index(l, k));
        float *kc = tg_cpu_dec_k(d, l, t0), *vc = tg_cpu_dec_v(d, l, t0);
        tg_llama_rmsnorm_forward(b[LN], b[RSTD], b[X], w[TG_LLAMA_IN_NORM], n, C, eps);
        /* one "batch" of n rows whose position 0 is t0: the tables start at t0 */
        tg_llama_linear_forward(b[Q], (size_t)C, b[LN], w[TG_LLAMA_Q], n, C, C);
        tg_llama_rope(b[Q], (size_t)C, cos_t, sin_t, 1, n, NH, hs, 0);
        tg_llama_linear_forward(kc, (size_t)KV, b[LN], w[TG_LLAMA_K], n, C, KV);
        tg_llama_rope(kc, (size_t)KV, cos_t, sin_t, 1, n, NKV, hs, 0);
        tg_llama_linear_forward(vc, (size_t)KV, b[LN], w[TG_LLAMA_V], n, C, KV);
        tg_cpu_dec_attention(d, l, b[ATTY], b[Q], (size_t)C, t0, n);
        tg_llama_linear_forward(b[PROJ], (size_t)C, b[ATTY], w[TG_LLAMA_O], n, C, C);
        tg_cpu_residual_forward(b[RES2], b[X], b[PROJ], (size_t)n * C);
        tg_llama_rmsnorm_forward(b[LN], b[RSTD], b[RES2], w[TG_LLAMA_POST_NORM], n, C, eps);
        tg_llama_linear_forward(b[GATE], (size_t)F, b[LN], w[TG_LLAMA_GATE], n, C, F);
        tg_llama_linear_forward(b[UP], (size_t)F, b[LN], w[TG_LLAMA_UP], n, C, F);
        tg_llama_swiglu_forward(b[H], b[GATE], b[UP], (size_t)n * F);
        tg_llama_linear_forward(b[PROJ], (size_t)C, b[H], w[TG_LLAMA_DOWN], n, F, C);
        tg_cpu_residual_forward(b[X], b[RES2], b[PROJ], (size_t)n * C);
    }
    /* The LM head for the last row only. */
    tg_llama_rmsnorm_forward(b[LN], b[RSTD], b[X] + (size_t)(n - 1) * C, tg_cpu_dec_tensor(d, tg_llama_norm_index(L)),
                             1, C, eps);
    tg_llama_linear_forward(logits, (size_t)d->Vp, b[LN], tg_cpu_dec_tensor(d, tg_llama_head_index(c)), 1, C, d->Vp);
}

tg_status tg_cpu_dec_llama_setup(tg_cpu_decoder *d, tg_error *err) {
    const size_t C = (size_t)d->C, F = (size_t)d->lay->cfg.ffn_dim;
    const size_t rows[NBUFS] = {[X] = C,    [LN] = C,   [RSTD] = 1, [Q] = C,  [ATTY] = C,
                                [PROJ] = C, [RES2] = C, [GATE] = F, [UP] = F, [H] = F};
    d->nbufs = NBUFS;
    memcpy(d->per_row, rows, sizeof rows);
    d->step = llama_step;
    const size_t half = (size_t)d->hs / 2;
    d->table[0] = tg_cpu_dec_alloc((size_t)d->T * half);
    d->table[1] = tg_cpu_dec_alloc((size_t)d->T * half);
    float *inv = tg_cpu_dec_alloc(half);
    if (!d->table[0] || !d->table[1] || !inv) {
        free(inv);
        return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory for RoPE tables");
    }
    tg_llama_rope_inv_freq(&d->lay->cfg, inv); /* the full forward's tables, bit for bit */
    tg_llama_rope_tables(d->table[0], d->table[1], d->T, (int)half, inv);
    free(inv);
    return TG_OK;
}
