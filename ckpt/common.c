/* ckpt/common.c — what the writing and reading halves of the format share (ckpt/internal.h). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/internal.h"

void ck_close(hid_t *id) {
    if (*id < 0) return;
    tg_h5_lock();
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    H5Eclear2(H5E_DEFAULT);
    tg_h5_unlock();
    *id = -1;
}


/* HDF5 (Debian's build is thread-safe underneath) keeps the "print errors" switch per thread:
 * switch it off in whichever thread writes or reads, so the library never prints. */
void ck_h5_quiet(void) {
    tg_h5_lock();
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tg_h5_unlock();
}

char *ck_strdup(const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

char *ck_meta_text(const tg_ckpt_state *s, int64_t n_params, int has_adam, int has_master) {
    const tg_gpt2_config *c = &s->model_cfg;
    const char *th = s->tokenizer_hash ? s->tokenizer_hash : "";
    const char *tp = s->tokenizer_path ? s->tokenizer_path : "";
    const char *fmt = "format=%s\nversion=%d\nstep=%" PRId64 "\ntokens_seen=%" PRId64
                      "\nrng_state=%" PRIu64 "\nworld_size=%d\nzero_stage=%d\nn_params=%" PRId64
                      "\nmodel=%d,%d,%d,%d,%d,%d\nhas_adam=%d\nhas_master=%d\n"
                      "tokenizer_hash=%s\ntokenizer_path=%s\n";
#define CK_META_ARGS                                                                           \
    CK_FORMAT_NAME, TG_CKPT_FORMAT_VERSION, s->step, s->tokens_seen, s->rng_state,             \
        s->world_size, s->zero_stage, n_params, c->max_seq_len, c->vocab_size,                 \
        c->padded_vocab_size, c->n_layer, c->n_head, c->n_embd, has_adam, has_master, th, tp
    int n = snprintf(NULL, 0, fmt, CK_META_ARGS);
    /* Llama's keys follow GPT-2's text, so GPT-2 files keep their checksums. */
    const char *lfmt = "arch=llama\nllama=%d,%d,%d,%.17g,%.17g\n";
#define CK_LLAMA_ARGS c->n_kv_head, c->ffn_dim, c->tie_embeddings, c->rope_theta, c->norm_eps
    /* and the RoPE scaling only when there is one, so files without it keep theirs */
    const char *rfmt = "rope_scaling=llama3,%.17g,%.17g,%.17g,%d\n";
#define CK_ROPE_ARGS c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos
    const int llama = c->arch == TG_MODEL_ARCH_LLAMA, rope = llama && c->rope_factor != 0;
    const int nl = llama ? snprintf(NULL, 0, lfmt, CK_LLAMA_ARGS) : 0;
    const int nr = rope ? snprintf(NULL, 0, rfmt, CK_ROPE_ARGS) : 0;
    /* Muon's key follows too, so AdamW files keep theirs. */
    const char *mu = s->muon ? "optimizer=muon\n" : "";
    const size_t nm = strlen(mu);
    char *t = malloc((size_t)n + (size_t)nl + (size_t)nr + nm + 1);
    if (t) snprintf(t, (size_t)n + 1, fmt, CK_META_ARGS);
    if (t && llama) snprintf(t + n, (size_t)nl + 1, lfmt, CK_LLAMA_ARGS);
    if (t && rope) snprintf(t + n + nl, (size_t)nr + 1, rfmt, CK_ROPE_ARGS);
    if (t) memcpy(t + n + nl + nr, mu, nm + 1);
#undef CK_ROPE_ARGS
#undef CK_LLAMA_ARGS
#undef CK_META_ARGS
    return t;
}

tg_status tg_ckpt_path(const char *ckpt_dir, int64_t step, char *path, size_t cap, tg_error *err) {
    int n = snprintf(path, cap, "%s/step_%08" PRId64 ".h5", ckpt_dir, step);
    if (n < 0 || (size_t)n >= cap)
        return tg_error_set(err, TG_ERR_ARG, "checkpoint path too long (dir %s)", ckpt_dir);
    return TG_OK;
}

size_t tg_ckpt_n_params(const tg_gpt2_config *cfg) {
    tg_gpt2_layout lay;
    tg_error e;
    if (tg_gpt2_layout_init(&lay, cfg, &e) != TG_OK) return 0;
    size_t n = lay.n_params;
    tg_gpt2_layout_free(&lay);
    return n;
}

void tg_ckpt_state_free(tg_ckpt_state *s) {
    if (!s) return;
    free(s->loader_states);
    free(s->config_ini);
    free(s->tokenizer_hash);
    free(s->tokenizer_path);
    free(s->params);
    free(s->adam_m);
    free(s->adam_v);
    free(s->master);
    memset(s, 0, sizeof *s);
}
