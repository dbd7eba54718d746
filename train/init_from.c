/* train/init_from.c — train.init_from (see init_from.h). */
#include "train/init_from.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ckpt/ckpt.h"
#include "interop/hf.h"

tg_status tg_init_from_load(const char *path, const tg_gpt2_config *want, float **params, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_state cs = {0};
    tg_gpt2_config got = {0};
    float *p = NULL;
    struct stat sb;
    *params = NULL;
    if (stat(path, &sb) != 0) TG_FAIL(err, TG_ERR_IO, "train.init_from: %s does not exist", path);
    if (S_ISDIR(sb.st_mode)) {
        TG_TRY(tg_hf_import(path, &got, &p, err));
    } else {
        TG_TRY(tg_ckpt_load(path, &cs, err));
        got = cs.model_cfg;
        p = cs.params;
        cs.params = NULL;
    }
    char diff[512] = "";
    size_t n = 0;
#define CMP(field, key)                                                                        \
    if (got.field != want->field && n < sizeof diff)                                           \
        n += (size_t)snprintf(diff + n, sizeof diff - n, "%s%s %d (config: %d)", n ? ", " : "", key, got.field, want->field);
    CMP(n_layer, "model.n_layer")
    CMP(n_head, "model.n_head")
    CMP(n_embd, "model.n_embd")
    /* Llama has no position table: any seq_len takes the same weights (a model imported with a
     * 131072-position config fine-tunes at 2048) */
    const int both_llama = got.arch == TG_MODEL_ARCH_LLAMA && want->arch == TG_MODEL_ARCH_LLAMA;
    if (!both_llama) {
        CMP(max_seq_len, "model.seq_len")
    }
    CMP(vocab_size, "model.vocab_size")
    CMP(n_kv_head, "model.n_kv_head")
    CMP(ffn_dim, "model.ffn_dim")
    CMP(tie_embeddings, "model.tie_embeddings")
    CMP(rope_original_max_pos, "model.rope_original_max_pos")
#undef CMP
#define CMPF(field, key)                                                                       \
    if (got.field != want->field && n < sizeof diff)                                           \
        n += (size_t)snprintf(diff + n, sizeof diff - n, "%s%s %g (config: %g)", n ? ", " : "", key, got.field, want->field);
    CMPF(rope_theta, "model.rope_theta")
    CMPF(norm_eps, "model.norm_eps")
    CMPF(rope_factor, "model.rope_factor")
    CMPF(rope_low_freq_factor, "model.rope_low_freq_factor")
    CMPF(rope_high_freq_factor, "model.rope_high_freq_factor")
#undef CMPF
    if (got.arch != want->arch && n < sizeof diff)
        n += (size_t)snprintf(diff + n, sizeof diff - n, "%smodel.arch %s (config: %s)", n ? ", " : "",
                              got.arch == TG_MODEL_ARCH_LLAMA ? "llama" : "gpt2",
                              want->arch == TG_MODEL_ARCH_LLAMA ? "llama" : "gpt2");
    if (diff[0]) TG_FAIL(err, TG_ERR_CONFIG, "train.init_from %s: the model's shape differs from the config: %s", path, diff);
    *params = p;
    p = NULL;
cleanup:
    free(p);
    tg_ckpt_state_free(&cs);
    return st;
}
