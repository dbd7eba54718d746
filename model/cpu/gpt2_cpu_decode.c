/* model/cpu/gpt2_cpu_decode.c — the KV-cache decoder of model/decode.h on the CPU kernels. The
 * per-layer cache is the qkv rows of every position so far; a new block of n rows runs LayerNorm,
 * matmuls and GELU through the same kernels as the full forward (whose per-element results do not
 * depend on the row count) and attends over the cache with the full forward's loop order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/cpu/cpu_kernels.h"
#include "model/decode.h"
#include "model/gpt2.h"

struct tg_decoder {
    const float *params;
    const tg_gpt2_layout *lay;
    int T, L, C, NH, V, Vp;
    int len;        /* positions cached */
    float *qkv;     /* (L, T, 3C): the cache (q is kept too: simpler, same layout as the forward) */
    int cap;        /* rows of the work buffers */
    float *x, *ln, *mean, *rstd, *atty, *proj, *res2, *fch, *fchg, *att;
};

static float *dec_alloc(size_t n) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}

static void dec_free_work(tg_decoder *d) {
    free(d->x), free(d->ln), free(d->mean), free(d->rstd), free(d->atty), free(d->proj);
    free(d->res2), free(d->fch), free(d->fchg), free(d->att);
    d->x = d->ln = d->mean = d->rstd = d->atty = d->proj = d->res2 = d->fch = d->fchg = d->att = NULL;
    d->cap = 0;
}

static tg_status dec_reserve(tg_decoder *d, int n, tg_error *err) {
    if (n <= d->cap) return TG_OK;
    dec_free_work(d);
    const size_t N = (size_t)n, C = (size_t)d->C;
    d->x = dec_alloc(N * C), d->ln = dec_alloc(N * C), d->mean = dec_alloc(N), d->rstd = dec_alloc(N);
    d->atty = dec_alloc(N * C), d->proj = dec_alloc(N * C), d->res2 = dec_alloc(N * C);
    d->fch = dec_alloc(N * 4 * C), d->fchg = dec_alloc(N * 4 * C), d->att = dec_alloc(N * (size_t)d->NH * d->T);
    if (!d->x || !d->ln || !d->mean || !d->rstd || !d->atty || !d->proj || !d->res2 || !d->fch || !d->fchg ||
        !d->att) {
        dec_free_work(d);
        return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory for %d rows", n);
    }
    d->cap = n;
    return TG_OK;
}

tg_status tg_decoder_init(tg_decoder **out, tg_model *m, tg_error *err) {
    *out = NULL;
    const tg_model_options *o = tg_model_opts(m);
    if (o->device != TG_DEVICE_CPU || o->bf16)
        return tg_error_set(err, TG_ERR_ARG, "decoder: the KV cache needs the CPU backend in fp32");
    tg_dtype dt;
    const float *params = tg_model_params(m, &dt);
    if (dt != TG_DTYPE_F32) return tg_error_set(err, TG_ERR_ARG, "decoder: parameters must be fp32");
    if (!params) return tg_error_set(err, TG_ERR_ARG, "decoder: the parameters are sharded (ZeRO-3), not all here");
    tg_decoder *d = calloc(1, sizeof *d);
    if (!d) return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory");
    d->params = params;
    d->lay = tg_model_layout(m);
    d->T = o->T, d->L = d->lay->cfg.n_layer, d->C = d->lay->cfg.n_embd, d->NH = d->lay->cfg.n_head;
    d->V = d->lay->cfg.vocab_size, d->Vp = d->lay->cfg.padded_vocab_size;
    d->qkv = dec_alloc((size_t)d->L * d->T * 3 * d->C);
    if (!d->qkv) {
        tg_decoder_free(d);
        return tg_error_set(err, TG_ERR_NOMEM, "decoder: out of memory for the KV cache");
    }
    *out = d;
    return TG_OK;
}

void tg_decoder_free(tg_decoder *d) {
    if (!d) return;
    dec_free_work(d);
    free(d->qkv);
    free(d);
}

int tg_decoder_len(const tg_decoder *d) { return d->len; }

static const float *dec_tensor(const tg_decoder *d, int idx) { return d->params + d->lay->tensors[idx].offset; }

/* Rows [t0, t0+n) of one layer's cache attend causally over [0, t]: the loop of
 * tg_cpu_attention_forward for those rows. */
static void dec_attention(float *out, float *attbuf, const float *qkv, int t0, int n, int C, int NH, int T) {
    const int hs = C / NH;
    const float scale = 1.0f / sqrtf((float)hs);
    if ((long)n * NH * (t0 + n) * hs < (1L << 15)) { /* a short cache: cheaper than an OpenMP fork and join */
        for (int r = 0; r < n; r++)
            for (int h = 0; h < NH; h++)
                tg_cpu_attention_row(out + (size_t)r * C + (size_t)h * hs, attbuf + ((size_t)r * NH + h) * T, qkv,
                                     C, h, hs, t0 + r, scale);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int r = 0; r < n; r++)
        for (int h = 0; h < NH; h++)
            tg_cpu_attention_row(out + (size_t)r * C + (size_t)h * hs, attbuf + ((size_t)r * NH + h) * T, qkv, C, h,
                                 hs, t0 + r, scale);
}

tg_status tg_decoder_append(tg_decoder *d, const int32_t *ids, int n, float *logits, tg_error *err) {
    tg_status st = TG_OK;
    if (n < 1) return tg_error_set(err, TG_ERR_ARG, "decoder: nothing to append");
    if (d->len + n > d->T)
        return tg_error_set(err, TG_ERR_ARG, "decoder: %d + %d tokens exceed the model's sequence length %d", d->len,
                            n, d->T);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->V)
            return tg_error_set(err, TG_ERR_DATA, "decoder: token %d outside [0, %d)", (int)ids[i], d->V);
    TG_TRY(dec_reserve(d, n, err));
    const int C = d->C, L = d->L, t0 = d->len;
    const size_t C3 = 3 * (size_t)C;
    const float *wte = dec_tensor(d, TG_GPT2_WTE), *wpe = dec_tensor(d, TG_GPT2_WPE);
    for (int r = 0; r < n; r++) { /* the encoder's sum, at absolute positions */
        const float *we = wte + (size_t)ids[r] * C, *pe = wpe + (size_t)(t0 + r) * C;
        float *o = d->x + (size_t)r * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
    for (int l = 0; l < L; l++) {
        const float *w[TG_GPT2_BLOCK_TENSORS];
        for (int k = 0; k < TG_GPT2_BLOCK_TENSORS; k++) w[k] = dec_tensor(d, tg_gpt2_block_index(l, k));
        float *qkv = d->qkv + (size_t)l * d->T * C3;
        tg_cpu_layernorm_forward(d->ln, d->mean, d->rstd, d->x, w[TG_GPT2_LN1_W], w[TG_GPT2_LN1_B], n, C);
        tg_cpu_matmul_forward(qkv + (size_t)t0 * C3, d->ln, w[TG_GPT2_QKV_W], w[TG_GPT2_QKV_B], n, C, 3 * C);
        dec_attention(d->atty, d->att, qkv, t0, n, C, d->NH, d->T);
        tg_cpu_matmul_forward(d->proj, d->atty, w[TG_GPT2_ATTPROJ_W], w[TG_GPT2_ATTPROJ_B], n, C, C);
        tg_cpu_residual_forward(d->res2, d->x, d->proj, (size_t)n * C);
        tg_cpu_layernorm_forward(d->ln, d->mean, d->rstd, d->res2, w[TG_GPT2_LN2_W], w[TG_GPT2_LN2_B], n, C);
        tg_cpu_matmul_forward(d->fch, d->ln, w[TG_GPT2_FC_W], w[TG_GPT2_FC_B], n, C, 4 * C);
        tg_cpu_gelu_forward(d->fchg, d->fch, (size_t)n * 4 * C);
        tg_cpu_matmul_forward(d->proj, d->fchg, w[TG_GPT2_FCPROJ_W], w[TG_GPT2_FCPROJ_B], n, 4 * C, C);
        tg_cpu_residual_forward(d->x, d->res2, d->proj, (size_t)n * C);
    }
    /* The LM head for the last row only. */
    const float *last = d->x + (size_t)(n - 1) * C;
    tg_cpu_layernorm_forward(d->ln, d->mean, d->rstd, last, dec_tensor(d, tg_gpt2_final_index(L, TG_GPT2_LNF_W)),
                             dec_tensor(d, tg_gpt2_final_index(L, TG_GPT2_LNF_B)), 1, C);
    /* wte (Vp, C) read as a transposed B, as the full forward does: same sums, bitwise. */
    tg_cpu_gemm_strided(logits, (size_t)d->Vp, d->ln, (size_t)C, 1, dec_tensor(d, TG_GPT2_WTE), 1, (size_t)C, NULL, 1,
                        d->Vp, C, 0);
    d->len += n;
cleanup:
    return st;
}
