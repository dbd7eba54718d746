/* model/model.h — the one interface the trainer sees; CPU and CUDA backends live behind it.
 *
 * A tg_model owns, on its device: the parameters (working copy), the gradients, the optimizer
 * state for its shard, and the activations for one micro-batch of (B, T). All flat buffers are
 * n_padded elements long (n_params rounded up to opt.pad_multiple) so that data-parallel code can
 * cut them into equal shards; the padding is zero and stays zero.
 *
 * One training step, as the trainer drives it:
 *   tg_model_grads_zero
 *   for each micro-batch: tg_model_forward(inputs, targets); tg_model_backward(scale)
 *   (all-reduce / reduce-scatter of tg_model_grads())
 *   tg_model_grad_sqnorm -> clip factor;  tg_model_adamw(shard)
 *   (all-gather of tg_model_params() when the optimizer is sharded)
 *
 * model/ knows nothing of MPI, files, configs or the environment: every choice comes in
 * tg_model_options. */
#ifndef TG_MODEL_H
#define TG_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/status.h"
#include "model/gpt2.h"

typedef enum { TG_DEVICE_CPU = 0, TG_DEVICE_CUDA = 1 } tg_device_kind;
typedef enum { TG_DTYPE_F32 = 0, TG_DTYPE_BF16 = 1 } tg_dtype;

/* The attention implementation of the CUDA backend in bf16 (fp32 always takes the cuBLASLt +
 * softmax path: the exact reference). */
typedef enum {
    TG_CUDA_ATTN_CUDNN = 0, /* cuDNN's fused SDPA for full batches, the flash kernels for partial
                             * ones and for shapes cuDNN refuses */
    TG_CUDA_ATTN_FLASH = 1, /* the flash kernels (model/cuda/flash_attention.cu) */
    TG_CUDA_ATTN_NAIVE = 2  /* cuBLASLt matmuls and a softmax over the (T, T) matrix */
} tg_cuda_attention;

/* Choices of the CUDA backend (the CPU ignores them). Zero is each one's default, so a
 * zero-initialised struct is the default configuration. Values outside the documented ones make
 * tg_model_init fail with TG_ERR_ARG before any device is touched. */
typedef struct {
    tg_cuda_attention attention;
    int cudnn_atomics;  /* 1: cuDNN's attention backward may use dQ atomics: faster, not bitwise
                         * reproducible */
    int cudnn_tune;     /* 1: the first forward/backward times every attention plan cuDNN offers
                         * and keeps the fastest (not kept across processes) */
    int cublaslt_tune;  /* 1: the first call of each matmul shape times cuBLASLt's candidates and
                         * keeps the fastest; tg_model_tuning_get/set carry the choices */
    int unfused;        /* 1: bias, GELU and dGELU run as kernels of their own instead of in
                         * cuBLASLt's epilogues (to bisect a numerical difference) */
    int lmhead_rows;    /* rows per LM-head chunk (>= 0; 0: 8192): the logits exist for one chunk
                         * at a time, rows x padded vocab elements */
    int profile;        /* 1: a CUDA event before every op; per-category times through the logger
                         * when the model is freed (synchronises nothing inside a step) */
} tg_cuda_options;

typedef struct {
    tg_device_kind device;
    int cuda_device;    /* ordinal, CUDA only */
    int bf16;           /* bf16 working weights/activations, fp32 master weights (CUDA); the
                         * CPU reference emulates it (rounds where CUDA stores bf16) */
    int recompute;      /* CUDA only: recompute in backward instead of keeping: 0 nothing,
                         * 1 LayerNorm outputs (~1% time, 2 B*T*C per layer), 2 also GELU outputs */
    int B, T;           /* micro-batch shape; T <= cfg.max_seq_len */
    size_t pad_multiple;/* flat buffers are padded to a multiple of this (>= 1) */
    tg_cuda_options cuda;
    const tg_log *log;  /* the backend's diagnostics (NULL: stderr, unprefixed); must outlive
                         * the model */
} tg_model_options;

typedef struct tg_model tg_model;

/* Called during backward each time the gradients of [lo, hi) are complete (elements of the
 * flat buffer): once per layer from the last to the first, then once for the embeddings.
 * On CUDA the grads are complete on tg_model_stream() when the call is made (enqueue after it). */
typedef void (*tg_grad_ready_fn)(void *ctx, size_t lo, size_t hi);

/* Muon's hyperparameters (tg_adamw_args.muon): momentum, then Newton-Schulz orthogonalisation
 * of the update of each Muon matrix (tg_model_muon_tensor). */
typedef struct {
    float lr;           /* this step's Muon learning rate */
    float momentum;     /* EMA of the gradients: m = momentum*m + (1-momentum)*g */
    int nesterov;       /* 1: orthogonalise (1-momentum)*g + momentum*m instead of m */
    int ns_steps;       /* Newton-Schulz iterations (>= 1) */
    float weight_decay; /* decoupled, times lr */
} tg_muon_args;

typedef struct {
    size_t lo, hi;      /* shard of the flat buffer this rank updates */
    float lr;
    float beta1, beta2, eps;
    float weight_decay; /* decoupled; applied only to tensors with decay=1 */
    float grad_scale;   /* multiply grads by this first (clipping) */
    int t;              /* step number, 1-based, for bias correction */
    const tg_muon_args *muon; /* NULL: AdamW everywhere. Else Muon for the Muon matrices (see
                               * tg_model_muon_orth) and AdamW for the rest */
} tg_adamw_args;

tg_status tg_model_init(tg_model **out, const tg_gpt2_config *cfg, const tg_model_options *opt,
                        tg_error *err);
void tg_model_free(tg_model *m);

const tg_gpt2_layout *tg_model_layout(const tg_model *m);
size_t tg_model_n_padded(const tg_model *m);
const tg_model_options *tg_model_opts(const tg_model *m);

/* Copies n_params fp32 values from/to host memory (the canonical fp32 parameter values: the
 * master weights where there are master weights). */
tg_status tg_model_params_set(tg_model *m, const float *host, tg_error *err);
tg_status tg_model_params_get(tg_model *m, float *host, tg_error *err);
tg_status tg_model_grads_get(tg_model *m, float *host, tg_error *err); /* n_params fp32 */

/* Device pointers for communication: the working parameters and gradients, n_padded elements. */
void *tg_model_params(tg_model *m, tg_dtype *dtype);
void *tg_model_grads(tg_model *m, tg_dtype *dtype);
/* The CUDA stream the model computes on (cudaStream_t), NULL on CPU. */
void *tg_model_stream(tg_model *m);

void tg_model_set_grad_hook(tg_model *m, tg_grad_ready_fn fn, void *ctx);

tg_status tg_model_grads_zero(tg_model *m, tg_error *err);

/* Forward over inputs (B*T token ids, host memory); B_used <= opt.B rows. With targets
 * (host, same shape; -1 = ignore) it computes the mean cross-entropy, readable by
 * tg_model_loss. Keeps activations for backward. */
tg_status tg_model_forward(tg_model *m, const int32_t *inputs, const int32_t *targets, int B_used,
                           tg_error *err);
/* Mean loss of the last forward (synchronises on CUDA). */
tg_status tg_model_loss(tg_model *m, float *loss, tg_error *err);
/* Logits of the last forward, (B_used, T, Vp) fp32 on host — for sampling and tests. */
tg_status tg_model_logits_get(tg_model *m, float *host, tg_error *err);

/* Backward of the last forward; ADDS d(loss_scale * mean_loss)/d(params) into the gradients. */
tg_status tg_model_backward(tg_model *m, float loss_scale, tg_error *err);

/* Sum of squares of the gradients over [lo, hi). */
tg_status tg_model_grad_sqnorm(tg_model *m, size_t lo, size_t hi, double *out, tg_error *err);

/* Allocates AdamW m, v (and fp32 master weights where the working copy is not fp32) for the
 * shard [lo, hi); zero moments. Call once after params_set. */
tg_status tg_model_opt_init(tg_model *m, size_t lo, size_t hi, tg_error *err);
/* Bytes of optimizer state this model holds (m, v, master; CUDA: also Muon's Newton-Schulz
 * scratch). */
size_t tg_model_opt_bytes(const tg_model *m);
/* Optimizer state of the shard to/from host (for checkpoints): m, v, master, each hi-lo fp32.
 * master may be NULL on get when the working copy is fp32 (then it equals the params). */
tg_status tg_model_opt_get(tg_model *m, float *mom, float *var, tg_error *err);
tg_status tg_model_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err);

/* AdamW over the shard [a->lo, a->hi) (must equal the opt_init shard). With a->muon, the
 * elements of Muon matrices in the shard instead get Muon's first phase: the momentum (kept in
 * the AdamW m slot; v stays zero) and the update to orthogonalise, written over their gradients. */
tg_status tg_model_adamw(tg_model *m, const tg_adamw_args *a, tg_error *err);

/* Muon (train.optimizer=muon) updates the 2-D weight matrices inside the blocks; embeddings,
 * the LM head, norms and biases stay on AdamW. A step is three calls, with the collectives of a
 * sharded run between them (train/dp_optim.c):
 *   tg_model_adamw(a with muon)   per element of the shard: momentum, update U into the grads;
 *   tg_model_muon_orth(lo, hi)    per whole matrix starting in [lo, hi) (this rank's matrices):
 *                                 grads = sqrt(max(1, fan_out/fan_in)) * NS(U), NS the quintic
 *                                 Newton-Schulz iteration on U/|U|_F in fp32;
 *   tg_model_muon_apply(a)        per element of the shard: p -= muon.lr * (grads + wd * p).
 * orth needs the full-length gradient buffer (no sharded gradients). Backends without Muon
 * answer tg_model_has_muon with 0 and the calls with TG_ERR_CONFIG. */
int tg_model_muon_tensor(const tg_tensor_info *t);
int tg_model_has_muon(const tg_model *m);
tg_status tg_model_muon_orth(tg_model *m, size_t lo, size_t hi, int ns_steps, tg_error *err);
tg_status tg_model_muon_apply(tg_model *m, const tg_adamw_args *a, tg_error *err);

/* Memory this model holds on its device, bytes (params, grads, optimizer, activations). */
size_t tg_model_device_bytes(const tg_model *m);

/* One line on how the backend computes: precision and, on CUDA, which attention implementation
 * it chose and why (e.g. "bf16, attention: cudnn sdpa (deterministic)"). Valid until free. */
const char *tg_model_describe(const tg_model *m);

/* Choices the backend made by timing (CUDA with opt.cuda.cublaslt_tune: cuBLASLt's algorithm per
 * matmul shape), which differ between processes and change the results' rounding. get: an
 * opaque malloc'd blob of the choices made so far (*blob = NULL, *len = 0 when none: the CPU
 * backend, or tuning off); set, before the first forward: make the same choices as the process
 * that got the blob, so a resumed run computes bit for bit as the run it continues. A blob from
 * another device model or library version is refused with TG_ERR_FORMAT and the reason, and
 * nothing changes. */
tg_status tg_model_tuning_get(tg_model *m, void **blob, size_t *len, tg_error *err);
tg_status tg_model_tuning_set(tg_model *m, const void *blob, size_t len, tg_error *err);

/* ---- sharded storage (ZeRO-2 and ZeRO-3; the CPU backends) ----
 * Forward and backward use the flat buffer one segment at a time: segment 0 is the embeddings
 * [0, layer_begin[0]), segment 1 + l layer l, segment L + 1 the rest [layer_begin[L], n_padded)
 * (final norm, an untied LM head, the padding). */
int tg_model_n_segments(const tg_model *m);
void tg_model_segment(const tg_model *m, int seg, size_t *lo, size_t *hi);

/* What a model with sharded storage asks of its owner during forward and backward. Called on
 * the thread that called forward/backward, in the same order on every rank that runs the same
 * model on the same shapes, so the owner may run collectives inside. An error ends the forward
 * or backward with it. */
typedef struct {
    /* Level 3, before each use of a segment's parameters: write the fp32 parameters of
     * [lo, hi) to win[0, hi - lo). */
    tg_status (*params_fill)(void *ctx, size_t lo, size_t hi, float *win, tg_error *err);
    /* Levels 2 and 3, after each use of a segment's gradients: win[0, hi - lo) holds this use's
     * contributions (this rank's) to the gradients of [lo, hi); add their sum over the ranks to
     * tg_model_shard_grads (win may be overwritten: the backend zeroes it before its next use). A segment may be
     * flushed more than once per backward (GPT-2's tied wte: after the LM head and after the
     * embedding). */
    tg_status (*grads_flush)(void *ctx, size_t lo, size_t hi, float *win, tg_error *err);
    void *ctx;
} tg_shard_io;

/* Switches the model to sharded storage: call once, right after tg_model_init, before
 * opt_init (same [lo, hi)) and params_set.
 *   level 2: the full gradient buffer is freed; gradients exist as the shard [lo, hi) (summed
 *            into by io->grads_flush's owner) and one segment-long window backward writes into;
 *   level 3: the parameters too: the shard [lo, hi) of the fp32 parameters and one
 *            segment-long window that io->params_fill fills before each use.
 * Then tg_model_params (level 3) and tg_model_grads return NULL; params_set/params_get (level 3)
 * and grads_get move only the elements of [lo, hi) of the host array; grads_zero, grad_sqnorm
 * (a range inside the shard), adamw and opt_* work on the shard. io is copied.
 * TG_ERR_CONFIG on a backend without it (CUDA), TG_ERR_ARG for another level or a bad shard. */
tg_status tg_model_shard_storage(tg_model *m, int level, size_t lo, size_t hi, const tg_shard_io *io,
                                 tg_error *err);
/* The shard's parameters and gradients (hi - lo floats each, host) after tg_model_shard_storage:
 * level 2 parameters point into the full buffer. NULL without sharded storage. */
float *tg_model_shard_params(tg_model *m);
float *tg_model_shard_grads(tg_model *m);

/* Bytes this model holds, by kind (windows and working copies count with what they hold). */
typedef struct {
    size_t params;      /* working parameters (full, or shard + window), bf16 copies */
    size_t grads;       /* full gradients, or shard + window */
    size_t optimizer;   /* tg_model_opt_bytes */
    size_t activations; /* activations and backward scratch for (B, T) */
    size_t window;      /* one segment window (sharded storage; counted in params/grads), else 0 */
} tg_model_memory;
void tg_model_memory_get(const tg_model *m, tg_model_memory *out);

/* Is the CUDA backend compiled in? */
int tg_model_cuda_available(void);
/* The model's device: name, dense bf16 peak (TFLOP/s; 0 when unknown, e.g. CPUs) and the bytes
 * in use on it now (CUDA: total - free, which after a step is the step's peak since a step does
 * not allocate; CPU: the process's peak resident set). */
typedef struct {
    char name[128];
    double peak_bf16_tflops;
    size_t used_bytes, total_bytes;
} tg_device_info;
tg_status tg_model_device_info(const tg_model *m, tg_device_info *info, tg_error *err);

/* Number of CUDA devices visible (0 without CUDA support, a driver or a GPU). */
int tg_model_cuda_device_count(void);

#endif
