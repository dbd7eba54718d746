/* model/cpu/gpt2_cpu_decode.c — GPT-2's step of the KV-cache decoder (cpu_decode.h): a block of
 * n new rows runs LayerNorm, matmuls and GELU through the same kernels as the full forward (whose
 * per-element results do not depend on the row count), keeps its keys and values in the cache
 * and attends over it with the full forward's loop. */
#include <string.h>

#include "model/cpu/cpu_decode.h"
#include "model/cpu/cpu_kernels.h"

enum { X, LN, MEAN, RSTD, QKV, ATTY, PROJ, RES2, FCH, FCHG, NBUFS };

static void gpt2_step(tg_cpu_decoder *d, const int32_t *ids, int n, float *logits) {
    const int C = d->C, L = d->L, t0 = d->len;
    const size_t C3 = 3 * (size_t)C;
    float *const *b = d->buf;
    const float *wte = tg_cpu_dec_tensor(d, TG_GPT2_WTE), *wpe = tg_cpu_dec_tensor(d, TG_GPT2_WPE);
    for (int r = 0; r < n; r++) { /* the encoder's sum, at absolute positions */
        const float *we = wte + (size_t)ids[r] * C, *pe = wpe + (size_t)(t0 + r) * C;
        float *o = b[X] + (size_t)r * C;
        for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
    for (int l = 0; l < L; l++) {
        const float *w[TG_GPT2_BLOCK_TENSORS];
        for (int k = 0; k < TG_GPT2_BLOCK_TENSORS; k++) w[k] = tg_cpu_dec_tensor(d, tg_gpt2_block_index(l, k));
        tg_cpu_layernorm_forward(b[LN], b[MEAN], b[RSTD], b[X], w[TG_GPT2_LN1_W], w[TG_GPT2_LN1_B], n, C);
        tg_cpu_matmul_forward(b[QKV], b[LN], w[TG_GPT2_QKV_W], w[TG_GPT2_QKV_B], n, C, 3 * C);
        float *kc = tg_cpu_dec_k(d, l, t0), *vc = tg_cpu_dec_v(d, l, t0);
        for (int r = 0; r < n; r++) {
            memcpy(kc + (size_t)r * C, b[QKV] + r * C3 + C, (size_t)C * sizeof(float));
            memcpy(vc + (size_t)r * C, b[QKV] + r * C3 + 2 * (size_t)C, (size_t)C * sizeof(float));
        }
        tg_cpu_dec_attention(d, l, b[ATTY], b[QKV], C3, t0, n);
        tg_cpu_matmul_forward(b[PROJ], b[ATTY], w[TG_GPT2_ATTPROJ_W], w[TG_GPT2_ATTPROJ_B], n, C, C);
        tg_cpu_residual_forward(b[RES2], b[X], b[PROJ], (size_t)n * C);
        tg_cpu_layernorm_forward(b[LN], b[MEAN], b[RSTD], b[RES2], w[TG_GPT2_LN2_W], w[TG_GPT2_LN2_B], n, C);
        tg_cpu_matmul_forward(b[FCH], b[LN], w[TG_GPT2_FC_W], w[TG_GPT2_FC_B], n, C, 4 * C);
        tg_cpu_gelu_forward(b[FCHG], b[FCH], (size_t)n * 4 * C);
        tg_cpu_matmul_forward(b[PROJ], b[FCHG], w[TG_GPT2_FCPROJ_W], w[TG_GPT2_FCPROJ_B], n, 4 * C, C);
        tg_cpu_residual_forward(b[X], b[RES2], b[PROJ], (size_t)n * C);
    }
    /* The LM head for the last row only. */
    const float *last = b[X] + (size_t)(n - 1) * C;
    tg_cpu_layernorm_forward(b[LN], b[MEAN], b[RSTD], last, tg_cpu_dec_tensor(d, tg_gpt2_final_index(L, TG_GPT2_LNF_W)),
                             tg_cpu_dec_tensor(d, tg_gpt2_final_index(L, TG_GPT2_LNF_B)), 1, C);
    /* wte (Vp, C) read as a transposed B, as the full forward does: same sums, bitwise. */
    tg_cpu_gemm_strided(logits, (size_t)d->Vp, b[LN], (size_t)C, 1, wte, 1, (size_t)C, NULL, 1, d->Vp, C, 0);
}

tg_status tg_cpu_dec_gpt2_setup(tg_cpu_decoder *d, tg_error *err) {
    (void)err;
    const size_t C = (size_t)d->C;
    const size_t rows[NBUFS] = {[X] = C,        [LN] = C,   [MEAN] = 1,    [RSTD] = 1,     [QKV] = 3 * C,
                                [ATTY] = C,     [PROJ] = C, [RES2] = C,    [FCH] = 4 * C,  [FCHG] = 4 * C};
    d->nbufs = NBUFS;
    memcpy(d->per_row, rows, sizeof rows);
    d->step = gpt2_step;
    return TG_OK;
}
