/* model/cuda/gpt2_cuda.cuh — internal to the CUDA backend of model/model.h: the state behind a
 * tg_model (cuda_impl) and what the backend's files share. gpt2_cuda.cu holds the model's life
 * cycle and its step (forward, backward, optimizer); gpt2_cuda_options.cu the checks of
 * tg_cuda_options and the choice of attention; gpt2_cuda_staging.cu the pinned host memory and
 * every copy between host and device; gpt2_cuda_profile.cu the per-op timing (opt.cuda.profile).
 *
 * Device memory (one cudaMalloc each, made at init / opt_init, never inside a step):
 *   params   n_padded working weights, X = bf16 (opt.bf16) or fp32
 *   grads    n_padded fp32 (accumulated across micro-batches, reduced by the trainer)
 *   opt      m, v (+ fp32 master weights when X = bf16) for the shard [opt_lo, opt_hi)
 *   ns       Muon's Newton-Schulz scratch, sized for the largest Muon matrix (made at opt_init
 *            whatever the optimizer, since opt_init is not told it: 2 (n k + n^2) + ~2k floats
 *            for the largest n x k matrix, n <= k, e.g. 22.5 MiB for GPT-2 124M)
 *   acts     every activation kept for backward, the backward scratch buffers, the cuBLASLt
 *            workspace, the uploaded token/target/bucket arrays and small tables.
 * Pinned host memory holds the upload staging area and the loss/norm read-backs.
 *
 * Precision: activations and their gradients are X; matmuls accumulate in fp32 (no TF32);
 * LayerNorm/softmax/cross-entropy statistics are fp32; parameter gradients are fp32.
 * A step synchronises the host only in tg_model_loss and tg_model_grad_sqnorm (which return
 * values), and in forward only if the previous forward's input upload is still pending. */
#ifndef TG_GPT2_CUDA_CUH
#define TG_GPT2_CUDA_CUH

#include "model/cuda/ops.cuh"

extern "C" {
#include "model/backend.h"
}

#define TG_CUDA_CHUNK_ELEMS ((size_t)1 << 22) /* host<->device conversion chunk */
#define TG_CUDA_WORKSPACE_BYTES ((size_t)32 << 20) /* cuBLASLt workspace */
#define TG_CUDA_ALIGN 256 /* of every buffer carved from act_mem */

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

/* Profile categories of the ops (gpt2_cuda_profile.cu). */
enum { P_MATMUL, P_LMHEAD, P_ATTN, P_LAYERNORM, P_ELEMWISE, P_XENT, P_OPTIM, P_OTHER, P_NCAT };
typedef struct cuda_prof cuda_prof;

typedef struct {
    int bf16;
    int recompute; /* opt.recompute: 0 keep everything, 1 recompute LayerNorm outputs, 2 also GELU
                    * (and the T x T attention probabilities) */
    int flash; /* attention by flash_attention.cu (bf16, supported head size, not TG_CUDA_ATTN_NAIVE) */
    tg_cudnn_attn *cudnn; /* with flash: cuDNN SDPA for full batches (B_used == B), when it built */
    void *cudnn_ws;
    int cudnn_last;       /* the last forward's attention ran on cuDNN (its backward must too) */
    char note[256];       /* tg_model_describe */
    size_t xs; /* sizeof(X) */
    int B, T, C, NH, L, V, Vp;
    int NKV; /* key/value heads of the attention (Llama's n_kv_head; GPT-2: NH) */
    int head_idx; /* the tensor the LM head reads (model/gpt2.h or model/llama.h index) */
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
    tg_cuda_ns_scratch ns; /* carved from ns_mem (NULL when the model has no Muon matrix) */
    void *ns_mem;
    size_t ns_bytes;

    char *act_mem;
    size_t act_bytes;
    cuda_layer_acts *layers; /* L */
    void *encoded, *lnf;                 /* (B,T,C) */
    void *logits;                        /* (head_rows, Vp): one row chunk of the LM head */
    float *lnf_mean, *lnf_rstd, *losses; /* (B,T) */
    float *lse;                          /* (head_rows): log-sum-exp of the chunk's rows */
    int head_rows;                       /* rows per LM-head chunk (opt.cuda.lmhead_rows) */
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
    cuda_prof *prof;    /* NULL unless opt.cuda.profile */
    const tg_log *log;  /* opt.log */
} cuda_impl;

/* ---- gpt2_cuda.cu: what llama_cuda.cu (tg_cuda_llama_backend_ops) shares with GPT-2. A Llama
 * model's impl is a cuda_impl followed by its own state (its first member), so these take it
 * as they are; everything they touch is architecture-neutral (the flat buffers, the layout's
 * tensor table, the LM head at p->head_idx, the staging). ---- */

/* The fields of p from m (shapes, options, head_idx = GPT-2's wte), then the device: stream,
 * upload event, cuBLASLt, profiling, attention (cuda_attention_init), params and grads (zeroed).
 * The caller checks opt.recompute, carves act_mem and calls cuda_staging_init. */
tg_status cuda_device_init(tg_model *m, cuda_impl *p, tg_error *err);
/* Frees everything cuda_device_init, the carve and the staging made, and m->impl itself. */
void cuda_free(tg_model *m);
/* The LM head and the loss over the last forward's rows (gpt2_cuda.cu tells the modes):
 * HEAD_LOSS, HEAD_TRAIN (dlnf lands in s_btc; dhead accumulated) or HEAD_LOGITS (to host). */
enum { HEAD_LOSS, HEAD_TRAIN, HEAD_LOGITS };
template <typename X>
tg_status cuda_lmhead(tg_model *m, cuda_impl *p, int mode, float dscale, float *host, tg_error *err);
/* The backend ops of these names in model/backend.h. */
void *cuda_params_ptr(tg_model *m, tg_dtype *dtype);
void *cuda_grads_ptr(tg_model *m, tg_dtype *dtype);
void *cuda_stream(tg_model *m);
tg_status cuda_grads_zero(tg_model *m, tg_error *err);
tg_status cuda_loss(tg_model *m, float *loss, tg_error *err);
tg_status cuda_logits_get(tg_model *m, float *host, tg_error *err);
tg_status cuda_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err);
tg_status cuda_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err);
size_t cuda_opt_bytes(const tg_model *m);
tg_status cuda_adamw(tg_model *m, const tg_adamw_args *a, tg_error *err);
tg_status cuda_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err);
tg_status cuda_muon_apply(tg_model *m, const tg_adamw_args *a, tg_error *err);
const char *cuda_describe(const tg_model *m);
tg_status cuda_tuning_get(tg_model *m, void **blob, size_t *len, tg_error *err);
tg_status cuda_tuning_set(tg_model *m, const void *blob, size_t len, tg_error *err);
size_t cuda_device_bytes(const tg_model *m);

/* ---- gpt2_cuda_options.cu ---- */

/* Checks opt->cuda (TG_ERR_ARG naming the option and the accepted values) and sets the choices
 * that need no device into p: the matmul switches, the LM-head chunk, p->log. */
tg_status cuda_options_apply(cuda_impl *p, const tg_model_options *opt, tg_error *err);
/* On the current device: p->flash, p->cudnn (cuDNN's SDPA where the options and the shape allow
 * it; with p->NKV key/value heads, reading q | k | v rows of (NH + 2 NKV) HS) and the description
 * in p->note. */
tg_status cuda_attention_init(cuda_impl *p, const tg_cuda_options *o, tg_error *err);

/* ---- gpt2_cuda_profile.cu: a CUDA event before every op on the stream; the time between two
 * events is the op's (kernels on one stream run in order), summed per phase and category and
 * reported through the logger when the model is freed. A diagnostic, not for training. ---- */

tg_status cuda_prof_init(cuda_prof **out, tg_error *err);
/* Starts a segment of category cat on s. */
void cuda_prof_mark(cuda_prof *pr, cudaStream_t s, int cat);
/* The phase of the segments that follow: 0 forward, 1 backward (the optimizer and host
 * categories count as "other" whatever the phase). */
void cuda_prof_phase(cuda_prof *pr, int phase);
/* After a device sync: adds the closed segments to the totals. */
void cuda_prof_collect(cuda_prof *pr);
/* Collects, reports the table through log and frees (NULL: nothing). */
void cuda_prof_free(cuda_prof *pr, const tg_log *log);

static inline void prof_mark(cuda_impl *p, int cat) {
    if (p->prof) cuda_prof_mark(p->prof, p->stream, cat);
}
static inline void prof_phase(cuda_impl *p, int phase) {
    if (p->prof) cuda_prof_phase(p->prof, phase);
}

/* The working weights and the fp32 gradients of tensor idx of the model's layout. */
template <typename X> static inline const X *wt(const tg_model *m, const cuda_impl *p, int idx) {
    return (const X *)p->params + m->lay.tensors[idx].offset;
}
static inline float *gr(const tg_model *m, const cuda_impl *p, int idx) {
    return p->grads + m->lay.tensors[idx].offset;
}

/* One op of the flat forward/backward lists: marks its profile category, then runs it (needs
 * p, st and a cleanup label in scope). */
#define OP(cat, call)                                                                          \
    do {                                                                                       \
        prof_mark(p, cat);                                                                     \
        TG_TRY(call);                                                                          \
    } while (0)

/* The bookkeeping around an architecture's forward and backward, shared by gpt2_cuda.cu and
 * llama_cuda.cu. cuda_forward_begin checks and uploads the inputs, invalidates the last
 * forward's state and picks the attention path (cudnn_last); cuda_forward_end records the
 * forward once it is enqueued. cuda_backward_begin refuses a backward without a forward with
 * targets (one per forward). */
tg_status cuda_forward_begin(cuda_impl *p, const int32_t *inputs, const int32_t *targets, int B_used,
                             tg_error *err);
void cuda_forward_end(cuda_impl *p, const int32_t *targets, int B_used);
tg_status cuda_backward_begin(cuda_impl *p, tg_error *err);

/* ---- gpt2_cuda_staging.cu: host <-> device (outside the step, these synchronise; except
 * cuda_stage_inputs, which enqueues) ---- */

/* int32 elements of the input upload (h_io, d_io): tokens[BT] targets[BT] uniq[BT] seg[BT+1]
 * pos[BT]. */
size_t cuda_io_ints(const cuda_impl *p);
/* The pinned staging memory and the bucket-sort counts; freed by cuda_staging_free. */
tg_status cuda_staging_init(cuda_impl *p, tg_error *err);
void cuda_staging_free(cuda_impl *p);
/* TG_ERR_DATA unless every input id is in [0, V) and every target in [-1, V) (N rows). */
tg_status cuda_inputs_check(const cuda_impl *p, const int32_t *inputs, const int32_t *targets, int N,
                            tg_error *err);
/* Fills h_io with one forward's checked inputs (tokens, targets and the buckets of the wte
 * backward) and enqueues its upload into d_io; sets p->n_valid and p->n_uniq. */
tg_status cuda_stage_inputs(cuda_impl *p, const int32_t *inputs, const int32_t *targets, int N, tg_error *err);
/* host fp32 [0, n) <- dev (X) */
tg_status cuda_download_x(cuda_impl *p, float *host, const void *dev, size_t n, tg_error *err);
/* The backend ops of the same names in model/backend.h. */
tg_status cuda_params_set(tg_model *m, const float *host, tg_error *err);
tg_status cuda_params_get(tg_model *m, float *host, tg_error *err);
tg_status cuda_grads_get(tg_model *m, float *host, tg_error *err);
tg_status cuda_opt_get(tg_model *m, float *mom, float *var, tg_error *err);
tg_status cuda_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err);

#endif
