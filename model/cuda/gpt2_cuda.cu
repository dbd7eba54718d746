/* model/cuda/gpt2_cuda.cu — the CUDA backend of model/model.h (tg_cuda_backend_ops).
 *
 * Device memory (one cudaMalloc each, made at init / opt_init, never inside a step):
 *   params   n_padded working weights, X = bf16 (opt.bf16) or fp32
 *   grads    n_padded fp32 (accumulated across micro-batches, reduced by the trainer)
 *   opt      m, v (+ fp32 master weights when X = bf16) for the shard [opt_lo, opt_hi)
 *   acts     every activation kept for backward, the backward scratch buffers, the cuBLASLt
 *            workspace, the uploaded token/target/bucket arrays and small tables.
 * Pinned host memory holds the upload staging area and the loss/norm read-backs.
 *
 * Precision: activations and their gradients are X; matmuls accumulate in fp32 (no TF32);
 * LayerNorm/softmax/cross-entropy statistics are fp32; parameter gradients are fp32.
 * A step synchronises the host only in tg_model_loss and tg_model_grad_sqnorm (which return
 * values), and in forward only if the previous forward's input upload is still pending. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/cuda/ops.cuh"

extern "C" {
#include "model/backend.h"
}

#define TG_CUDA_WORKSPACE_BYTES ((size_t)32 << 20)
#define TG_CUDA_CHUNK_ELEMS ((size_t)1 << 22) /* host<->device conversion chunk */
#define TG_CUDA_ALIGN 256

/* Activations of one transformer block; (B,T,C) unless noted, X unless fp32. With
 * opt.recompute >= 1, ln1 and ln2 point to one shared buffer each; with 2, att and fch_gelu too. */
typedef struct {
    void *ln1;                   /* LayerNorm 1 output */
    float *ln1_mean, *ln1_rstd;  /* (B,T) */
    void *qkvr;                  /* q, k, v each (B,NH,T,HS); flash: the qkv projection (B,T,3C) */
    void *att;                   /* (B,NH,T,T) causal softmax; NULL with flash attention */
    float *lse;                  /* flash: (B,NH,T) log2-sum-exp of the attention rows */
    void *atty;                  /* attention output before c_proj */
    void *res2;                  /* residual after attention */
    void *ln2;
    float *ln2_mean, *ln2_rstd;
    void *fch;                   /* (B,T,4C) c_fc output = GELU input */
    void *fch_gelu;              /* (B,T,4C) */
    void *res3;                  /* block output */
} cuda_layer_acts;

/* TG_CUDA_PROFILE=1: an event before every op on the stream; the time between two events is the
 * op's (kernels on one stream run in order), summed per phase and category and printed to stderr
 * when the model is freed. A diagnostic for `truthgpt bench`, not for training. */
enum { P_MATMUL, P_LMHEAD, P_ATTN, P_LAYERNORM, P_ELEMWISE, P_XENT, P_OPTIM, P_OTHER, P_NCAT };
static const char *const prof_cat_name[P_NCAT] = {
    "matmul (blocks)", "matmul (LM head)", "attention", "residual+layernorm", "gelu/bias/embed", "cross-entropy",
    "optimizer (norm+adamw)", "other (host, upload, idle)"};
#define TG_PROF_MAX_EVENTS 4096
typedef struct {
    int phase, n, steps; /* phase: 0 forward, 1 backward, 2 optimizer/other */
    cudaEvent_t ev[TG_PROF_MAX_EVENTS];
    unsigned char tag[TG_PROF_MAX_EVENTS]; /* cat * 3 + phase of the segment starting at ev[i] */
    double ms[P_NCAT * 3];
} cuda_prof;

typedef struct {
    int bf16;
    int recompute; /* opt.recompute: 0 keep everything, 1 recompute LayerNorm outputs, 2 also GELU
                    * (and the T x T attention probabilities) */
    int flash; /* attention by flash_attention.cu (bf16, supported head size, not TG_CUDA_ATTN=naive) */
    tg_cudnn_attn *cudnn; /* with flash: cuDNN SDPA for full batches (B_used == B), when it built */
    void *cudnn_ws;
    int cudnn_last;       /* the last forward's attention ran on cuDNN (its backward must too) */
    char note[256];       /* tg_model_describe */
    size_t xs; /* sizeof(X) */
    int B, T, C, NH, L, V, Vp;
    cudaStream_t stream;
    cudaEvent_t ev_upload; /* the last input upload has been read from h_io */
    tg_cuda_blas blas;

    void *params;  /* n_padded X */
    float *grads;  /* n_padded */
    float *opt_mem, *opt_m, *opt_v, *master;
    size_t opt_lo, opt_hi;
    tg_cuda_adamw_chunk *opt_chunks; /* the shard in per-tensor pieces (device) */
    int n_opt_chunks;
    int opt_ready;

    char *act_mem;
    size_t act_bytes;
    cuda_layer_acts *layers; /* L */
    void *encoded, *lnf;                 /* (B,T,C) */
    void *logits;                        /* (head_rows, Vp): one row chunk of the LM head */
    float *lnf_mean, *lnf_rstd, *losses; /* (B,T) */
    float *lse;                          /* (head_rows): log-sum-exp of the chunk's rows */
    int head_rows;                       /* rows per LM-head chunk (TG_CUDA_LMHEAD_ROWS) */
    /* backward scratch, reused by every layer */
    void *dres;    /* (B,T,C) gradient of the residual stream */
    void *s_btc;   /* (B,T,C): c_proj outputs (forward), LayerNorm-output gradients (backward) */
    void *s_bt4c;  /* (B,T,4C): qkv (forward), dfch then dqkv (backward) */
    void *s_dqkvr; /* 3 x (B,NH,T,HS) */
    void *s_heads; /* (B,NH,T,HS): attention y (forward), dy (backward) */
    void *s_datt;  /* (B,NH,T,T) */
    float *s_delta; /* flash: (B,NH,T) rowsum(dy * y) */
    float *s_partial; /* TG_CUDA_COL_CHUNKS x 4C column-reduction partials */
    int32_t *d_io;    /* mirror of h_io */
    double *d_norm;               /* TG_CUDA_NORM_BLOCKS */

    /* pinned host */
    char *h_mem;
    int32_t *h_io; /* tokens[BT] targets[BT] uniq[BT] seg[BT+1] pos[BT] */
    float *h_losses;
    double *h_norm;
    void *h_chunk; /* TG_CUDA_CHUNK_ELEMS * 4 bytes */
    int *h_count;  /* V, for the bucket sort (plain host memory) */

    /* state of the last forward */
    int B_used, has_targets, n_valid, n_uniq;
    int logits_valid;   /* the last forward's logits can be made (until backward) */
    int losses_ready;   /* losses hold the last forward's per-row losses */
    int backward_ready; /* a forward with targets whose backward has not run yet */
    cuda_prof *prof;    /* NULL unless TG_CUDA_PROFILE=1 */
} cuda_impl;

/* Starts a profiled segment of category cat (no-op unless profiling). */
static void prof_mark(cuda_impl *p, int cat) {
    cuda_prof *pr = p->prof;
    if (!pr || pr->n >= TG_PROF_MAX_EVENTS) return;
    if (cudaEventRecord(pr->ev[pr->n], p->stream) != cudaSuccess) return;
    pr->tag[pr->n++] = (unsigned char)(cat * 3 + (cat == P_OPTIM || cat == P_OTHER ? 2 : pr->phase));
}

/* After a device sync: adds the closed segments to the totals; the last event stays open. */
static void prof_collect(cuda_impl *p) {
    cuda_prof *pr = p->prof;
    if (!pr || pr->n < 2) return;
    for (int i = 0; i + 1 < pr->n; i++) {
        float ms = 0.0f;
        if (cudaEventElapsedTime(&ms, pr->ev[i], pr->ev[i + 1]) == cudaSuccess && pr->steps >= 3)
            pr->ms[pr->tag[i]] += ms; /* the first 3 steps are warm-up */
    }
    cudaEvent_t last = pr->ev[pr->n - 1];
    pr->ev[pr->n - 1] = pr->ev[0];
    pr->ev[0] = last;
    pr->tag[0] = P_OTHER * 3 + 2;
    pr->n = 1;
    pr->steps++;
}

static void prof_print(const cuda_impl *p) {
    const cuda_prof *pr = p->prof;
    const int steps = pr->steps - 3;
    double total = 0.0;
    if (steps < 1) return;
    for (int k = 0; k < P_NCAT * 3; k++) total += pr->ms[k];
    fprintf(stderr, "cuda profile (TG_CUDA_PROFILE=1): %d steps after 3 warm-up, %.2f ms/step on the stream\n",
            steps, total / steps);
    fprintf(stderr, "  %-28s %10s %10s %10s %7s\n", "category", "fwd ms", "bwd ms", "other ms", "share");
    for (int c = 0; c < P_NCAT; c++) {
        const double f = pr->ms[c * 3] / steps, b = pr->ms[c * 3 + 1] / steps, o = pr->ms[c * 3 + 2] / steps;
        if (f + b + o == 0.0) continue;
        fprintf(stderr, "  %-28s %10.2f %10.2f %10.2f %6.1f%%\n", prof_cat_name[c], f, b, o,
                100.0 * (f + b + o) * steps / total);
    }
}

static size_t io_ints(const cuda_impl *p) { return 5 * (size_t)p->B * p->T + 1; }

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
    CARVE(p->d_io, io_ints(p) * 4);
    CARVE(p->d_norm, (size_t)TG_CUDA_NORM_BLOCKS * 8);
#undef CARVE
    p->blas.workspace_bytes = TG_CUDA_WORKSPACE_BYTES;
    return off;
}

static void cuda_free(tg_model *m) {
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p) return;
    /* Errors are ignored here: there is nobody to report them to, and freeing must go on. */
    if (p->stream) cudaStreamSynchronize(p->stream);
    tg_cudnn_attn_free(p->cudnn);
    if (p->prof) {
        prof_collect(p);
        prof_print(p);
        for (int i = 0; i < TG_PROF_MAX_EVENTS; i++)
            if (p->prof->ev[i]) cudaEventDestroy(p->prof->ev[i]);
        free(p->prof);
    }
    cudaFree(p->params);
    cudaFree(p->grads);
    cudaFree(p->opt_mem);
    cudaFree(p->opt_chunks);
    cudaFree(p->act_mem);
    if (p->h_mem) cudaFreeHost(p->h_mem);
    tg_cuda_blas_free(&p->blas);
    if (p->ev_upload) cudaEventDestroy(p->ev_upload);
    if (p->stream) cudaStreamDestroy(p->stream);
    free(p->h_count);
    free(p->layers);
    free(p);
    m->impl = NULL;
}

/* *choice = the index of the environment variable's value in names[0..n) (names[0], the
 * default, when unset); another value is an error that lists them. */
static tg_status env_choice(const char *name, const char *const *names, int n, int *choice, tg_error *err) {
    const char *v = getenv(name);
    char list[160] = "";
    *choice = 0;
    if (!v) return TG_OK;
    for (int i = 0; i < n; i++) {
        if (strcmp(v, names[i]) == 0) {
            *choice = i;
            return TG_OK;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s%s", i ? ", " : "", names[i],
                 i ? "" : " (default)");
    }
    return tg_error_set(err, TG_ERR_ARG, "%s=%s: expected one of %s", name, v, list);
}

enum { ATTN_CUDNN, ATTN_FLASH, ATTN_NAIVE };

/* The switches cuda_init needs beyond those kept in cuda_impl. */
typedef struct {
    int attn;          /* TG_CUDA_ATTN: ATTN_* */
    int deterministic; /* TG_CUDNN_DETERMINISTIC: cuDNN's backward without dQ atomics */
    int cudnn_tune;    /* TG_CUDNN_TUNE */
    int profile;       /* TG_CUDA_PROFILE */
} cuda_env;

/* Every environment switch of the backend (docs/cuda.md "Options"), read once here: the ones
 * the step uses into p, the rest into *e. A value outside a switch's list is TG_ERR_ARG naming
 * the accepted ones, so a typo cannot silently run the default. */
static tg_status cuda_env_read(cuda_impl *p, cuda_env *e, tg_error *err) {
    static const char *const off_on[] = {"0", "1"}, *const on_off[] = {"1", "0"},
                             *const attn[] = {"cudnn", "flash", "naive"};
    tg_status st = TG_OK;
    int v = 0;
    const char *rows = getenv("TG_CUDA_LMHEAD_ROWS");
    TG_TRY(env_choice("TG_CUDA_ATTN", attn, 3, &e->attn, err));
    TG_TRY(env_choice("TG_CUDNN_DETERMINISTIC", on_off, 2, &v, err));
    e->deterministic = v == 0;
    TG_TRY(env_choice("TG_CUDNN_TUNE", off_on, 2, &e->cudnn_tune, err));
    TG_TRY(env_choice("TG_CUDA_PROFILE", off_on, 2, &e->profile, err));
    /* TG_CUDA_FUSION=0 turns the cuBLASLt epilogues off (kernels instead): for bisecting. */
    TG_TRY(env_choice("TG_CUDA_FUSION", on_off, 2, &v, err));
    p->blas.fuse = v == 0;
    /* Opt-in: timing noise may pick other algorithms in a resumed process (the trainer keeps them). */
    TG_TRY(env_choice("TG_CUBLASLT_TUNE", off_on, 2, &p->blas.tune, err));
    /* The LM head runs in chunks of head_rows rows (see lmhead_impl). 8192 rows keep the matmuls
     * large (8192 x 50304 x 768) while the logits take 0.8 GB instead of 6.6 GB at B=64, T=1024. */
    p->head_rows = 8192;
    if (rows) {
        char *end = NULL;
        const long r = strtol(rows, &end, 10);
        if (end == rows || *end || r < 1 || r > (1L << 30))
            TG_FAIL(err, TG_ERR_ARG, "TG_CUDA_LMHEAD_ROWS=%s: expected a row count >= 1", rows);
        p->head_rows = (int)r;
    }
cleanup:
    return st;
}

static tg_status cuda_init(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)calloc(1, sizeof(cuda_impl));
    const tg_gpt2_config *cfg = &m->lay.cfg;
    cuda_env env;
    int n_dev = 0;
    size_t h_bytes = 0, BT = 0;
    TG_CHECK_ALLOC(err, p);
    m->impl = p;
    p->bf16 = m->opt.bf16 != 0;
    p->recompute = m->opt.recompute;
    p->xs = p->bf16 ? sizeof(tg_bf16) : sizeof(float);
    p->B = m->opt.B;
    p->T = m->opt.T;
    p->C = cfg->n_embd;
    p->NH = cfg->n_head;
    p->L = cfg->n_layer;
    p->V = cfg->vocab_size;
    p->Vp = cfg->padded_vocab_size;
    BT = (size_t)p->B * p->T;
    if (p->recompute < 0 || p->recompute > 2)
        TG_FAIL(err, TG_ERR_ARG, "cuda: recompute=%d: expected 0, 1 (LayerNorm) or 2 (LayerNorm + GELU)", p->recompute);
    TG_TRY(cuda_env_read(p, &env, err));

    TG_CUDA_CHECK(err, cudaGetDeviceCount(&n_dev));
    if (m->opt.cuda_device < 0 || m->opt.cuda_device >= n_dev)
        TG_FAIL(err, TG_ERR_CUDA, "cuda: device %d requested, %d visible", m->opt.cuda_device, n_dev);
    TG_CUDA_CHECK(err, cudaSetDevice(m->opt.cuda_device));
    TG_CUDA_CHECK(err, cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking));
    TG_CUDA_CHECK(err, cudaEventCreateWithFlags(&p->ev_upload, cudaEventDisableTiming));
    TG_CUBLAS_CHECK(err, cublasLtCreate(&p->blas.lt));
    if (env.profile) {
        p->prof = (cuda_prof *)calloc(1, sizeof(cuda_prof));
        TG_CHECK_ALLOC(err, p->prof);
        for (int i = 0; i < TG_PROF_MAX_EVENTS; i++) TG_CUDA_CHECK(err, cudaEventCreate(&p->prof->ev[i]));
    }
    /* Attention: TG_CUDA_ATTN = cudnn (default) | flash | naive. fp32 always takes the cuBLASLt +
     * softmax path ("naive"): it is the exact reference. cuDNN serves full batches; a partial
     * batch (B_used < B) and any shape cuDNN refuses run on flash_attention.cu. */
    {
        const int deterministic = env.deterministic, tune = env.cudnn_tune;
        char why[200] = "";
        p->flash = p->bf16 && tg_cuda_flash_supported(p->C / p->NH) && env.attn != ATTN_NAIVE;
        if (p->flash && env.attn == ATTN_CUDNN)
            TG_TRY(tg_cudnn_attn_init(&p->cudnn, p->B, p->T, p->NH, p->C / p->NH, deterministic, tune, why,
                                      sizeof why, err));
        if (p->cudnn) {
            const size_t v = tg_cudnn_version();
            snprintf(p->note, sizeof p->note,
                     "bf16, attention: cudnn sdpa (cuDNN %zu.%zu.%zu, %s%s; flash kernels for partial batches)",
                     v / 10000, v / 100 % 100, v % 100, deterministic ? "deterministic" : "non-deterministic backward",
                     tune ? ", plans autotuned" : "");
        }
        else if (p->flash)
            snprintf(p->note, sizeof p->note, "bf16, attention: flash kernels%s%s%s",
                     why[0] ? " (cudnn unavailable: " : "", why, why[0] ? ")" : "");
        else
            snprintf(p->note, sizeof p->note, "%s, attention: cuBLASLt + softmax (T x T)", p->bf16 ? "bf16" : "fp32");
        {
            const size_t n = strlen(p->note), v = cublasLtGetVersion();
            snprintf(p->note + n, sizeof p->note - n, ", cuBLASLt %zu.%zu.%zu", v / 10000, v / 100 % 100, v % 100);
        }
    }

    TG_CUDA_CHECK(err, cudaMalloc(&p->params, m->n_padded * p->xs));
    TG_CUDA_CHECK(err, cudaMalloc(&p->grads, m->n_padded * sizeof(float)));
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->params, 0, m->n_padded * p->xs, p->stream));
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->grads, 0, m->n_padded * sizeof(float), p->stream));

    p->layers = (cuda_layer_acts *)calloc((size_t)p->L, sizeof(cuda_layer_acts));
    TG_CHECK_ALLOC(err, p->layers);
    p->act_bytes = cuda_carve(p, NULL);
    TG_CUDA_CHECK(err, cudaMalloc(&p->act_mem, p->act_bytes));
    cuda_carve(p, p->act_mem);
    tg_cudnn_attn_set_workspace(p->cudnn, p->cudnn_ws);

    h_bytes = io_ints(p) * 4 + BT * 4 + TG_CUDA_NORM_BLOCKS * 8 + TG_CUDA_CHUNK_ELEMS * 4 + 4 * 64;
    TG_CUDA_CHECK(err, cudaMallocHost(&p->h_mem, h_bytes));
    {
        size_t off = 0;
        p->h_io = (int32_t *)(p->h_mem + off);
        off += (io_ints(p) * 4 + 63) / 64 * 64;
        p->h_losses = (float *)(p->h_mem + off);
        off += (BT * 4 + 63) / 64 * 64;
        p->h_norm = (double *)(p->h_mem + off);
        off += TG_CUDA_NORM_BLOCKS * 8;
        p->h_chunk = p->h_mem + off;
    }
    p->h_count = (int *)calloc((size_t)p->V, sizeof(int));
    TG_CHECK_ALLOC(err, p->h_count);

    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
cleanup:
    if (st != TG_OK) cuda_free(m);
    return st;
}

/* ---- host <-> device copies (outside the step; these synchronise) ---- */

/* dev (X) [0, n) <- host fp32 */
static tg_status upload_params(cuda_impl *p, void *dev, const float *host, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    tg_bf16 *stage = (tg_bf16 *)p->h_chunk;
    if (!p->bf16) {
        TG_CUDA_CHECK(err, cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        goto cleanup;
    }
    for (size_t i0 = 0; i0 < n; i0 += TG_CUDA_CHUNK_ELEMS) {
        const size_t k = n - i0 < TG_CUDA_CHUNK_ELEMS ? n - i0 : TG_CUDA_CHUNK_ELEMS;
        for (size_t i = 0; i < k; i++) stage[i] = __float2bfloat16_rn(host[i0 + i]);
        TG_CUDA_CHECK(err, cudaMemcpyAsync((tg_bf16 *)dev + i0, stage, k * sizeof(tg_bf16),
                                           cudaMemcpyHostToDevice, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream)); /* before stage is refilled */
    }
cleanup:
    return st;
}

/* host fp32 [0, n) <- dev (X) */
static tg_status download_x(cuda_impl *p, float *host, const void *dev, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    const tg_bf16 *stage = (const tg_bf16 *)p->h_chunk;
    if (!p->bf16) {
        TG_CUDA_CHECK(err, cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        goto cleanup;
    }
    for (size_t i0 = 0; i0 < n; i0 += TG_CUDA_CHUNK_ELEMS) {
        const size_t k = n - i0 < TG_CUDA_CHUNK_ELEMS ? n - i0 : TG_CUDA_CHUNK_ELEMS;
        TG_CUDA_CHECK(err, cudaMemcpyAsync(p->h_chunk, (const tg_bf16 *)dev + i0, k * sizeof(tg_bf16),
                                           cudaMemcpyDeviceToHost, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        for (size_t i = 0; i < k; i++) host[i0 + i] = __bfloat162float(stage[i]);
    }
cleanup:
    return st;
}

static tg_status copy_f32(cuda_impl *p, void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                          tg_error *err) {
    tg_status st = TG_OK;
    if (n == 0) goto cleanup;
    TG_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, n * sizeof(float), kind, p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
cleanup:
    return st;
}

/* Elements of the master shard that are real parameters: [opt_lo, min(opt_hi, n_params)). */
static size_t master_real(const tg_model *m, const cuda_impl *p) {
    const size_t hi = p->opt_hi < m->lay.n_params ? p->opt_hi : m->lay.n_params;
    return hi > p->opt_lo ? hi - p->opt_lo : 0;
}

static tg_status cuda_params_set(tg_model *m, const float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(upload_params(p, p->params, host, m->lay.n_params, err));
    if (p->master)
        TG_TRY(copy_f32(p, p->master, host + p->opt_lo, master_real(m, p), cudaMemcpyHostToDevice, err));
cleanup:
    return st;
}

static tg_status cuda_params_get(tg_model *m, float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(download_x(p, host, p->params, m->lay.n_params, err));
    if (p->master)
        TG_TRY(copy_f32(p, host + p->opt_lo, p->master, master_real(m, p), cudaMemcpyDeviceToHost, err));
cleanup:
    return st;
}

static tg_status cuda_grads_get(tg_model *m, float *host, tg_error *err) {
    cuda_impl *p = (cuda_impl *)m->impl;
    return copy_f32(p, host, p->grads, m->lay.n_params, cudaMemcpyDeviceToHost, err);
}

static void *cuda_params_ptr(tg_model *m, tg_dtype *dtype) {
    cuda_impl *p = (cuda_impl *)m->impl;
    if (dtype) *dtype = p->bf16 ? TG_DTYPE_BF16 : TG_DTYPE_F32;
    return p->params;
}

static void *cuda_grads_ptr(tg_model *m, tg_dtype *dtype) {
    if (dtype) *dtype = TG_DTYPE_F32;
    return ((cuda_impl *)m->impl)->grads;
}

static void *cuda_stream(tg_model *m) { return (void *)((cuda_impl *)m->impl)->stream; }

static tg_status cuda_grads_zero(tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_CUDA_CHECK(err, cudaMemsetAsync(p->grads, 0, m->n_padded * sizeof(float), p->stream));
cleanup:
    return st;
}

/* ---- forward / backward ---- */

template <typename X> static const X *wt(const tg_model *m, const cuda_impl *p, int idx) {
    return (const X *)p->params + m->lay.tensors[idx].offset;
}
static float *gr(const tg_model *m, const cuda_impl *p, int idx) {
    return p->grads + m->lay.tensors[idx].offset;
}

/* Tensor indices inside a block (the layout's order, model/gpt2.h). */
enum { LN1W, LN1B, QKVW, QKVB, ATTPROJW, ATTPROJB, LN2W, LN2B, FCW, FCB, FCPROJW, FCPROJB };

/* One op of the flat forward/backward lists: marks its profile category, then runs it. */
#define OP(cat, call)                                                                          \
    do {                                                                                       \
        prof_mark(p, cat);                                                                     \
        TG_TRY(call);                                                                          \
    } while (0)

/* res = res_in + inp (N, K) @ w (K, C) + bias, then out = LN(res) * lw + lb (mean, rstd kept):
 * an output projection and the residual add and LayerNorm after it. The projection goes to
 * s_btc and the LayerNorm kernel adds it. (Adding res_in in the matmul's epilogue instead, as
 * cuBLASLt's C operand, saved 1.0 ms of LayerNorm and cost 0.5 ms of matmul: docs/performance.md.) */
template <typename X>
static tg_status projection_residual_layernorm(cuda_impl *p, X *res, X *out, float *mean, float *rstd,
                                               const X *res_in, const void *inp, const X *w, const X *bias,
                                               int K, const X *lw, const X *lb, int N, tg_error *err) {
    tg_status st = TG_OK;
    const int C = p->C;
    const cudaDataType_t dt = tg_cuda_type<X>::value;
    const cudaStream_t s = p->stream;
    OP(P_MATMUL, tg_cuda_matmul(&p->blas, s, dt, dt, p->s_btc, inp, w, N, C, K, 0, 0, 1.0f, 0.0f, 1, 0, 0, 0,
                                TG_EPI_BIAS, bias, NULL, err));
    OP(P_LAYERNORM, tg_cuda_residual_layernorm_forward<X>(res, out, mean, rstd, res_in, (const X *)p->s_btc, lw,
                                                          lb, N, C, s, err));
cleanup:
    return st;
}

template <typename X>
static tg_status forward_impl(tg_model *m, cuda_impl *p, int Bu, tg_error *err) {
    tg_status st = TG_OK;
    const int T = p->T, C = p->C, NH = p->NH, L = p->L, N = Bu * T;
    const int lnf = 2 + 12 * L; /* ln_f.weight; ln_f.bias follows */
    const cudaDataType_t dt = tg_cuda_type<X>::value;
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int32_t *d_tokens = p->d_io;

    OP(P_ELEMWISE, tg_cuda_encoder_forward<X>((X *)p->encoded, d_tokens, wt<X>(m, p, 0), wt<X>(m, p, 1),
                                      Bu, T, C, s, err));
    OP(P_LAYERNORM, tg_cuda_residual_layernorm_forward<X>(NULL, (X *)p->layers[0].ln1, p->layers[0].ln1_mean,
                                                 p->layers[0].ln1_rstd, (const X *)p->encoded, NULL,
                                                 wt<X>(m, p, 2 + LN1W), wt<X>(m, p, 2 + LN1B), N, C, s, err));
    for (int l = 0; l < L; l++) {
        const cuda_layer_acts *a = &p->layers[l];
        const int t0 = 2 + 12 * l;
        const X *res_in = (const X *)(l == 0 ? p->encoded : p->layers[l - 1].res3);
        /* qkv = ln1 @ Wqkv + b  (N, 3C); flash attention reads it in place */
        OP(P_MATMUL, tg_cuda_matmul(bl, s, dt, dt, p->flash ? a->qkvr : p->s_bt4c, a->ln1,
                                    wt<X>(m, p, t0 + QKVW), N, 3 * C, C, 0, 0, 1.0f, 0.0f, 1, 0, 0, 0,
                                    TG_EPI_BIAS, wt<X>(m, p, t0 + QKVB), NULL, err));
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
                                                a->atty, wt<X>(m, p, t0 + ATTPROJW), wt<X>(m, p, t0 + ATTPROJB),
                                                C, wt<X>(m, p, t0 + LN2W), wt<X>(m, p, t0 + LN2B), N, err));
        /* fch = ln2 @ Wfc + b (kept), fch_gelu = gelu(fch)  (N, 4C) */
        OP(P_MATMUL, tg_cuda_matmul(bl, s, dt, dt, a->fch_gelu, a->ln2, wt<X>(m, p, t0 + FCW), N, 4 * C, C,
                              0, 0, 1.0f, 0.0f, 1, 0, 0, 0, TG_EPI_GELU_BIAS, wt<X>(m, p, t0 + FCB),
                              a->fch, err));
        /* res3 = res2 + fch_gelu @ Wfcproj + b, and the next LayerNorm on it: ln_1 of block l+1,
         * or ln_f */
        if (l + 1 < L) {
            const cuda_layer_acts *n = &p->layers[l + 1];
            TG_TRY(projection_residual_layernorm<X>(p, (X *)a->res3, (X *)n->ln1, n->ln1_mean, n->ln1_rstd,
                                                    (const X *)a->res2, a->fch_gelu, wt<X>(m, p, t0 + FCPROJW),
                                                    wt<X>(m, p, t0 + FCPROJB), 4 * C, wt<X>(m, p, t0 + 12 + LN1W),
                                                    wt<X>(m, p, t0 + 12 + LN1B), N, err));
        } else {
            TG_TRY(projection_residual_layernorm<X>(p, (X *)a->res3, (X *)p->lnf, p->lnf_mean, p->lnf_rstd,
                                                    (const X *)a->res2, a->fch_gelu, wt<X>(m, p, t0 + FCPROJW),
                                                    wt<X>(m, p, t0 + FCPROJB), 4 * C, wt<X>(m, p, lnf),
                                                    wt<X>(m, p, lnf + 1), N, err));
        }
    }
    /* The LM head waits for tg_model_loss, tg_model_backward or tg_model_logits_get (lmhead_impl). */
cleanup:
    return st;
}

/* The tied LM head and the loss over the last forward's N rows, in chunks of head_rows rows, so
 * that logits exist for one chunk at a time. Deferred from forward because only the caller's next
 * call says what is needed:
 *   HEAD_LOSS    the per-row losses (an evaluation, or tg_model_loss before backward)
 *   HEAD_TRAIN   the losses and the backward through the head, chunk by chunk: dlogits =
 *                dscale * (softmax - onehot) in place, dwte += dlogits^T @ lnf (fp32, chunks
 *                added in order), dlnf = dlogits @ wte into s_btc.
 *   HEAD_LOGITS  the logits, downloaded into host (N, Vp) fp32 (synchronises) */
enum { HEAD_LOSS, HEAD_TRAIN, HEAD_LOGITS };
template <typename X>
static tg_status lmhead_impl(tg_model *m, cuda_impl *p, int mode, float dscale, float *host, tg_error *err) {
    tg_status st = TG_OK;
    const int C = p->C, V = p->V, Vp = p->Vp, N = p->B_used * p->T;
    const cudaDataType_t dt = tg_cuda_type<X>::value;
    const cudaStream_t s = p->stream;
    const tg_cuda_blas *bl = &p->blas;
    const int32_t *d_targets = p->d_io + (size_t)p->B * p->T;
    const X *wte = wt<X>(m, p, 0);
    X *logits = (X *)p->logits;
    for (int r0 = 0; r0 < N; r0 += p->head_rows) {
        const int rows = N - r0 < p->head_rows ? N - r0 : p->head_rows;
        const X *lnf = (const X *)p->lnf + (size_t)r0 * C;
        /* logits (rows, Vp) = lnf @ wte^T (padded rows of wte are zero) */
        if (p->prof && mode == HEAD_TRAIN) p->prof->phase = 0;
        OP(P_LMHEAD, tg_cuda_matmul(bl, s, dt, dt, logits, lnf, wte, rows, Vp, C, 0, 1, 1.0f, 0.0f, 1, 0, 0, 0,
                                    TG_EPI_NONE, NULL, NULL, err));
        if (mode == HEAD_LOGITS) {
            TG_TRY(download_x(p, host + (size_t)r0 * Vp, logits, (size_t)rows * Vp, err));
        } else if (mode == HEAD_LOSS) {
            OP(P_XENT, tg_cuda_crossentropy_forward<X>(p->losses + r0, NULL, logits, d_targets + r0, rows, V,
                                                       Vp, s, err));
        } else {
            OP(P_XENT, tg_cuda_crossentropy_forward<X>(p->losses + r0, p->lse, logits, d_targets + r0, rows, V,
                                                       Vp, s, err));
            if (p->prof) p->prof->phase = 1;
            OP(P_XENT, tg_cuda_crossentropy_backward<X>(logits, p->lse, d_targets + r0, dscale, rows, V, Vp, s,
                                                        err));
            OP(P_LMHEAD, tg_cuda_matmul(bl, s, dt, CUDA_R_32F, gr(m, p, 0), logits, lnf, Vp, C, rows, 1, 0, 1.0f,
                                        1.0f, 1, 0, 0, 0, TG_EPI_NONE, NULL, NULL, err));
            OP(P_LMHEAD, tg_cuda_matmul(bl, s, dt, dt, (X *)p->s_btc + (size_t)r0 * C, logits, wte, rows, C, Vp, 0,
                                        0, 1.0f, 0.0f, 1, 0, 0, 0, TG_EPI_NONE, NULL, NULL, err));
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
    const cudaDataType_t dt = tg_cuda_type<X>::value;
    const cudaStream_t s = p->stream;
    OP(P_MATMUL, tg_cuda_matmul(&p->blas, s, dt, CUDA_R_32F, dw, inp, dout, IC, OC, N, 1, 0, 1.0f, 1.0f, 1, 0, 0, 0,
                                TG_EPI_NONE, NULL, NULL, err));
    if (dbias) OP(P_ELEMWISE, tg_cuda_bias_backward<X>(dbias, p->s_partial, dout, N, OC, s, err));
    OP(P_MATMUL, tg_cuda_matmul(&p->blas, s, dt, dt, dinp, dout, w, N, IC, OC, 0, 1, 1.0f, 0.0f, 1, 0, 0, 0,
                                gelu_in ? TG_EPI_DGELU : TG_EPI_NONE, NULL, (void *)gelu_in, err));
cleanup:
    return st;
}

template <typename X>
static tg_status backward_impl(tg_model *m, cuda_impl *p, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    const tg_gpt2_layout *lay = &m->lay;
    const int Bu = p->B_used, T = p->T, C = p->C, NH = p->NH, L = p->L;
    const int N = Bu * T, lnf = 2 + 12 * L;
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
    TG_TRY(lmhead_impl<X>(m, p, HEAD_TRAIN, dscale, NULL, err));
    p->logits_valid = 0;
    /* Every LayerNorm backward below also sums the residual gradient it leaves in dres over the
     * rows: that is the bias gradient of the projection (c_proj) whose output was added into
     * that residual, so those bias gradients need no pass of their own. */
    OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, gr(m, p, lnf), gr(m, p, lnf + 1),
                                                  gr(m, p, 2 + 12 * (L - 1) + FCPROJB), p->s_partial, s_btc,
                                                  (const X *)p->layers[L - 1].res3, p->lnf_mean, p->lnf_rstd,
                                                  wt<X>(m, p, lnf), N, C, s, err));

    for (int l = L - 1; l >= 0; l--) {
        const cuda_layer_acts *a = &p->layers[l];
        const int t0 = 2 + 12 * l;
        const X *res_in = (const X *)(l == 0 ? p->encoded : p->layers[l - 1].res3);
        X *dqkv = s_bt4c; /* (N, 3C) */
        /* dres is now d(res3): MLP output projection (its bias gradient is already done) */
        if (p->recompute >= 2)
            OP(P_ELEMWISE, tg_cuda_gelu_forward<X>((X *)a->fch_gelu, (const X *)a->fch, (size_t)N * 4 * C, s, err));
        /* dfch = (dres @ Wfcproj^T) * gelu'(fch) */
        TG_TRY(linear_backward<X>(p, s_bt4c, gr(m, p, t0 + FCPROJW), NULL, (const X *)a->fch_gelu, dres,
                                  wt<X>(m, p, t0 + FCPROJW), (const X *)a->fch, N, 4 * C, C, err));
        if (p->recompute >= 1)
            OP(P_LAYERNORM, tg_cuda_layernorm_apply<X>((X *)a->ln2, (const X *)a->res2, a->ln2_mean, a->ln2_rstd,
                                              wt<X>(m, p, t0 + LN2W), wt<X>(m, p, t0 + LN2B), N, C, s, err));
        TG_TRY(linear_backward<X>(p, s_btc, gr(m, p, t0 + FCW), gr(m, p, t0 + FCB), (const X *)a->ln2, s_bt4c,
                                  wt<X>(m, p, t0 + FCW), NULL, N, C, 4 * C, err));
        /* through ln_2 plus the identity: dres becomes d(res2) */
        OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, gr(m, p, t0 + LN2W), gr(m, p, t0 + LN2B),
                                                      gr(m, p, t0 + ATTPROJB), p->s_partial, s_btc,
                                                      (const X *)a->res2, a->ln2_mean, a->ln2_rstd,
                                                      wt<X>(m, p, t0 + LN2W), N, C, s, err));
        /* attention output projection */
        TG_TRY(linear_backward<X>(p, s_btc, gr(m, p, t0 + ATTPROJW), NULL, (const X *)a->atty, dres,
                                  wt<X>(m, p, t0 + ATTPROJW), NULL, N, C, C, err));
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
                                              wt<X>(m, p, t0 + LN1W), wt<X>(m, p, t0 + LN1B), N, C, s, err));
        TG_TRY(linear_backward<X>(p, s_btc, gr(m, p, t0 + QKVW), gr(m, p, t0 + QKVB), (const X *)a->ln1, dqkv,
                                  wt<X>(m, p, t0 + QKVW), NULL, N, C, 3 * C, err));
        /* through ln_1 plus the identity: dres becomes d(block input) = d(res3 of block l-1) */
        OP(P_LAYERNORM, tg_cuda_layernorm_backward<X>(dres, gr(m, p, t0 + LN1W), gr(m, p, t0 + LN1B),
                                                      l > 0 ? gr(m, p, t0 - 12 + FCPROJB) : NULL, p->s_partial,
                                                      s_btc, res_in, a->ln1_mean, a->ln1_rstd,
                                                      wt<X>(m, p, t0 + LN1W), N, C, s, err));
        tg_model_grad_ready(m, lay->layer_begin[l], lay->layer_begin[l + 1]);
    }
    OP(P_ELEMWISE, tg_cuda_encoder_backward<X>(gr(m, p, 0), gr(m, p, 1), dres, d_uniq, d_seg, d_pos,
                                       p->n_uniq, Bu, T, C, s, err));
    /* Same hook order as the CPU backend: embeddings, then ln_f (complete since the start). */
    tg_model_grad_ready(m, 0, lay->layer_begin[0]);
    tg_model_grad_ready(m, lay->layer_begin[L], lay->n_params);
cleanup:
    return st;
}

/* Groups the positions of each distinct token for the deterministic wte backward:
 * uniq[k] ascending, positions pos[seg[k] .. seg[k+1]) ascending. Returns the count. */
static int bucket_tokens(cuda_impl *p, const int32_t *tokens, int N, int32_t *uniq, int32_t *seg,
                         int32_t *pos) {
    int *cnt = p->h_count, k = 0, off = 0;
    memset(cnt, 0, (size_t)p->V * sizeof *cnt);
    for (int i = 0; i < N; i++) cnt[tokens[i]]++;
    for (int v = 0; v < p->V; v++) {
        if (!cnt[v]) continue;
        uniq[k] = v;
        seg[k] = off;
        off += cnt[v];
        cnt[v] = seg[k]; /* now the write cursor of token v */
        k++;
    }
    seg[k] = off;
    for (int i = 0; i < N; i++) pos[cnt[tokens[i]]++] = i;
    return k;
}

static tg_status cuda_forward(tg_model *m, const int32_t *inputs, const int32_t *targets,
                              int B_used, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const int N = B_used * p->T, V = p->V;
    const size_t BT = (size_t)p->B * p->T;
    int32_t *h_tok = p->h_io, *h_tgt = p->h_io + BT;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            TG_FAIL(err, TG_ERR_DATA, "model: input token %d at %d outside [0, %d)", (int)inputs[i], i, V);
        if (targets && (targets[i] < -1 || targets[i] >= V))
            TG_FAIL(err, TG_ERR_DATA, "model: target %d at %d outside [-1, %d)", (int)targets[i], i, V);
    }
    p->B_used = 0; /* invalid until this forward is enqueued */
    p->logits_valid = 0;
    p->losses_ready = 0;
    p->backward_ready = 0;
    /* The staging area may still be read by the previous upload (only if the host runs ahead). */
    TG_CUDA_CHECK(err, cudaEventSynchronize(p->ev_upload));
    memcpy(h_tok, inputs, (size_t)N * sizeof *inputs);
    p->n_valid = 0;
    p->n_uniq = 0;
    if (targets) {
        memcpy(h_tgt, targets, (size_t)N * sizeof *targets);
        for (int i = 0; i < N; i++) p->n_valid += targets[i] >= 0;
        p->n_uniq = bucket_tokens(p, inputs, N, p->h_io + 2 * BT, p->h_io + 3 * BT, p->h_io + 4 * BT + 1);
    }
    prof_mark(p, P_OTHER);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(p->d_io, p->h_io, io_ints(p) * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, p->stream));
    TG_CUDA_CHECK(err, cudaEventRecord(p->ev_upload, p->stream));
    if (p->prof) p->prof->phase = 0;
    p->cudnn_last = p->cudnn != NULL && B_used == p->B;
    if (p->bf16) TG_TRY(forward_impl<tg_bf16>(m, p, B_used, err));
    else TG_TRY(forward_impl<float>(m, p, B_used, err));
    p->B_used = B_used;
    p->has_targets = targets != NULL;
    p->logits_valid = 1;
    p->backward_ready = targets != NULL;
cleanup:
    return st;
}

static tg_status cuda_loss(tg_model *m, float *loss, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const int N = p->B_used * p->T;
    double sum = 0.0;
    if (!p->B_used || !p->has_targets)
        TG_FAIL(err, TG_ERR_ARG, "model: loss needs a forward with targets first");
    if (!p->losses_ready) {
        if (p->bf16) TG_TRY(lmhead_impl<tg_bf16>(m, p, HEAD_LOSS, 0.0f, NULL, err));
        else TG_TRY(lmhead_impl<float>(m, p, HEAD_LOSS, 0.0f, NULL, err));
    }
    prof_mark(p, P_OTHER);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(p->h_losses, p->losses, (size_t)N * sizeof(float),
                                       cudaMemcpyDeviceToHost, p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
    prof_collect(p);
    for (int i = 0; i < N; i++) sum += p->h_losses[i]; /* ignored positions hold 0 */
    *loss = p->n_valid ? (float)(sum / p->n_valid) : 0.0f;
cleanup:
    return st;
}

static tg_status cuda_logits_get(tg_model *m, float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p->logits_valid)
        TG_FAIL(err, TG_ERR_ARG, "model: logits_get needs a forward (and no backward since: on CUDA "
                                 "backward overwrites the logits with their gradient)");
    if (p->bf16) TG_TRY(lmhead_impl<tg_bf16>(m, p, HEAD_LOGITS, 0.0f, host, err));
    else TG_TRY(lmhead_impl<float>(m, p, HEAD_LOGITS, 0.0f, host, err));
cleanup:
    return st;
}

static tg_status cuda_backward(tg_model *m, float loss_scale, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    if (!p->backward_ready)
        TG_FAIL(err, TG_ERR_ARG, "model: backward needs a forward with targets first (once per forward)");
    p->backward_ready = 0;
    if (p->prof) p->prof->phase = 1;
    if (p->bf16) TG_TRY(backward_impl<tg_bf16>(m, p, loss_scale, err));
    else TG_TRY(backward_impl<float>(m, p, loss_scale, err));
cleanup:
    return st;
}

static tg_status cuda_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err) {
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
 * decay. */
static int adamw_chunks(const tg_gpt2_layout *lay, size_t lo, size_t hi, tg_cuda_adamw_chunk *out) {
    int n = 0;
    for (int k = 0; k <= lay->n_tensors; k++) {
        const size_t a0 = k == 0 ? 0 : k < lay->n_tensors ? lay->tensors[k].offset : lay->n_params;
        const size_t a1 = k + 1 < lay->n_tensors ? lay->tensors[k + 1].offset : k < lay->n_tensors ? lay->n_params : hi;
        const int decay = k < lay->n_tensors ? lay->tensors[k].decay : 0;
        const size_t e = a1 < hi ? a1 : hi;
        for (size_t b = a0 > lo ? a0 : lo; b < e; b += TG_CUDA_ADAMW_CHUNK) {
            if (out) {
                out[n].start = b;
                out[n].len = (unsigned int)(e - b < TG_CUDA_ADAMW_CHUNK ? e - b : TG_CUDA_ADAMW_CHUNK);
                out[n].decay = decay;
            }
            n++;
        }
    }
    return n;
}

static tg_status cuda_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = hi - lo, nbuf = p->bf16 ? 3 : 2;
    tg_cuda_adamw_chunk *chunks = NULL;
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
    TG_CUDA_CHECK(err, cudaFree(p->opt_mem));
    TG_CUDA_CHECK(err, cudaFree(p->opt_chunks));
    p->opt_mem = p->opt_m = p->opt_v = p->master = NULL;
    p->opt_chunks = NULL;
    p->n_opt_chunks = 0;
    p->opt_ready = 0;
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

static size_t cuda_opt_bytes(const tg_model *m) {
    const cuda_impl *p = (const cuda_impl *)m->impl;
    return p->opt_ready ? (p->bf16 ? 3 : 2) * (p->opt_hi - p->opt_lo) * sizeof(float) : 0;
}

static tg_status cuda_opt_get(tg_model *m, float *mom, float *var, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = p->opt_hi - p->opt_lo;
    if (!p->opt_ready) TG_FAIL(err, TG_ERR_ARG, "model: opt_get before opt_init");
    TG_TRY(copy_f32(p, mom, p->opt_m, n, cudaMemcpyDeviceToHost, err));
    TG_TRY(copy_f32(p, var, p->opt_v, n, cudaMemcpyDeviceToHost, err));
cleanup:
    return st;
}

static tg_status cuda_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = p->opt_hi - p->opt_lo;
    if (!p->opt_ready) TG_FAIL(err, TG_ERR_ARG, "model: opt_set before opt_init");
    TG_TRY(copy_f32(p, p->opt_m, mom, n, cudaMemcpyHostToDevice, err));
    TG_TRY(copy_f32(p, p->opt_v, var, n, cudaMemcpyHostToDevice, err));
cleanup:
    return st;
}

static tg_status cuda_adamw(tg_model *m, const tg_adamw_args *a, tg_error *err) {
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

static const char *cuda_describe(const tg_model *m) { return ((const cuda_impl *)m->impl)->note; }

static tg_status cuda_tuning_get(tg_model *m, void **blob, size_t *len, tg_error *err) {
    return tg_cuda_blas_tuning_get(&((cuda_impl *)m->impl)->blas, blob, len, err);
}
static tg_status cuda_tuning_set(tg_model *m, const void *blob, size_t len, tg_error *err) {
    return tg_cuda_blas_tuning_set(&((cuda_impl *)m->impl)->blas, blob, len, err);
}

static size_t cuda_device_bytes(const tg_model *m) {
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
};
