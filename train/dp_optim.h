/* train/dp_optim.h — the data-parallel optimizer step: everything between "every rank has
 * run backward on its micro-batches" and "every rank holds the same updated parameters".
 *
 * It owns the ZeRO stage and everything that depends on it: which shard [lo, hi) of the flat
 * parameter buffer this rank updates, the gradient-bucket hook that starts reductions during
 * backward, the reduction (all-reduce or reduce-scatter), the global gradient norm, clipping,
 * the AdamW call (the math stays in model/), the parameter gather after the update, and the
 * checkpoint slices (what a save needs gathered and what a load must slice). The training loop
 * does not know the stage:
 *
 *     tg_dp_optim_zero_grad(o)
 *     for each micro-step k:  tg_dp_optim_micro_step_begin(o, k == last); forward; backward
 *     tg_dp_optim_step(o, &args, &result)
 *
 * Stages: 0 every rank keeps all of the optimizer state and all-reduces all gradients (on NCCL
 * bucket by bucket during the last micro-step's backward); 1 (ZeRO-1) the AdamW state is
 * sharded over the ranks: gradients are reduce-scattered, each rank updates its shard and the
 * parameters are all-gathered; 2 (ZeRO-2, CPU backends) the gradients too: init gives the model
 * sharded storage (tg_model_shard_storage), backward writes each segment's (layer's) gradients
 * into a window that the model hands to this module when the segment is done, which
 * reduce-scatters it into the owners' shards at once (every micro-step: accumulation happens in
 * the shard) and zero_grad clears only the shard; 3 (ZeRO-3, CPU backends) the parameters too:
 * the model keeps the shard of the fp32 parameters and asks this module to all-gather each
 * segment's parameters into a window before its forward and again before its backward
 * (blocking, no prefetch).
 *
 * Muon (options.muon; stages 0 and 1): each Muon matrix is orthogonalised whole by one rank, its
 * owner: the matrices are dealt out in layout order to contiguous ranges of the flat buffer, one
 * per rank, balanced by size. A step: the elementwise first phase on this rank's shard (AdamW
 * for the other tensors, Muon's momentum and the update U over the gradients; the momentum
 * lives in the AdamW m slot, so checkpoints and their slicing are unchanged); at stage 1 an
 * all-gather of U; each owner orthogonalises its matrices in place; an all-gather-v of the
 * owners' ranges (on device buffers, one broadcast per owner: NCCL has no uneven all-gather);
 * the shard's Muon update; the usual parameter gather. Every matrix is
 * computed by the same code on the same input whatever the stage and world size, so the
 * results are bitwise those of one rank. state_gather and state_load go through this module at every stage,
 * so checkpoints keep their gathered form and load at any stage and world size.
 *
 * Collective: every function that takes the object is called by every rank in the same order,
 * except tg_dp_optim_free and tg_dp_optim_log_memory. */
#ifndef TG_DP_OPTIM_H
#define TG_DP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "comm/comm.h"
#include "core/log.h"
#include "core/status.h"
#include "model/model.h"

typedef struct tg_dp_optim tg_dp_optim;

typedef struct {
    int zero_stage;              /* 0 to 3 (see the top of this file) */
    double beta1, beta2, eps;    /* AdamW */
    double weight_decay;         /* decoupled; the model applies it to 2-D weights only */
    double grad_clip;            /* clip the global gradient norm to this; 0 = off */
    int muon;                    /* 1: Muon for the Muon matrices (tg_model_muon_tensor), AdamW for the rest */
    double muon_momentum, muon_weight_decay;
    int muon_nesterov, muon_ns_steps;
} tg_dp_optim_options;

/* One optimizer step's inputs. loss_sum: this rank's sum of the micro-steps' mean losses. */
typedef struct {
    int step;       /* 1-based step number (AdamW's bias correction) */
    double lr;      /* this step's learning rate (the schedule is the loop's) */
    double muon_lr; /* this step's Muon learning rate (options.muon) */
    double loss_sum;
    int n_micro;    /* micro-steps per step on every rank */
    double skip_above; /* > 0: skip the update when the global loss exceeds it (a spike); 0 = never */
} tg_dp_optim_step_args;

typedef struct {
    double loss;    /* mean loss over all micro-steps of all ranks */
    double norm;    /* global gradient norm before clipping */
    int skipped;    /* 1: loss or norm not finite, the update was skipped (parameters unchanged) */
    int spike_skipped; /* 1: loss above skip_above, the update was skipped (parameters unchanged) */
} tg_dp_optim_result;

/* The full-length host copies a checkpoint holds, valid until the next state_gather/free:
 * params, adam_m, adam_v are n_padded fp32 each, exact fp32 (master) values everywhere. */
typedef struct {
    const float *params, *adam_m, *adam_v;
    size_t n_params, n_padded;
} tg_dp_optim_state;

/* Takes a model whose flat buffers are padded to a multiple of 64 * world (so every shard is
 * equally long), with comm already on its final backend (tg_comm_use_nccl done where wanted).
 * Allocates this rank's optimizer shard in the model (tg_model_opt_init) and the host staging
 * of checkpoints. Neither model nor comm is owned. TG_ERR_CONFIG for an unknown stage. */
tg_status tg_dp_optim_init(tg_dp_optim **out, tg_model *model, tg_comm *comm, const tg_dp_optim_options *opts,
                           tg_error *err);
void tg_dp_optim_free(tg_dp_optim *o);

/* The shard [*lo, *hi) of the flat buffer this rank's optimizer updates ([0, n_padded) at stage 0). */
void tg_dp_optim_shard(const tg_dp_optim *o, size_t *lo, size_t *hi);

/* Sets the parameters of a fresh run: the seeded GPT-2 init, identical on every rank (no
 * broadcast needed). Also fills the fp32 master weights of the shard exactly. */
tg_status tg_dp_optim_params_init(tg_dp_optim *o, uint64_t seed, tg_error *err);

/* Starts a step: clears the gradients this rank accumulates into. */
tg_status tg_dp_optim_zero_grad(tg_dp_optim *o, tg_error *err);

/* Call before each micro-step's forward. last = 1 on the step's final micro-step: its backward
 * completes the gradients, so the gradient-bucket hook may start reducing them during it. */
void tg_dp_optim_micro_step_begin(tg_dp_optim *o, int last);

/* The gradient-bucket hook (a tg_grad_ready_fn, ctx = the tg_dp_optim): backward finished
 * the gradients of [lo, hi). Installed on the model by micro_step_begin when the stage and
 * backend reduce during backward (stage 0 on NCCL: all-reduce the bucket now). Errors surface
 * at the next tg_comm_sync inside tg_dp_optim_step. */
void tg_dp_optim_on_grads_ready(void *ctx, size_t lo, size_t hi);

/* After the last micro-step's backward: reduces the gradients, computes the global norm and
 * the mean loss (one host all-reduce), and unless either is non-finite clips to grad_clip,
 * runs AdamW on the shard and gathers the updated parameters onto every rank. */
tg_status tg_dp_optim_step(tg_dp_optim *o, const tg_dp_optim_step_args *a, tg_dp_optim_result *r,
                           tg_error *err);

/* For a checkpoint: the full parameters and AdamW moments on every rank (gathering the
 * shards at stage 1). */
tg_status tg_dp_optim_state_gather(tg_dp_optim *o, tg_dp_optim_state *out, tg_error *err);

/* From a checkpoint, at any stage and world size: params (n_params fp32, required) into the
 * model; adam_m / adam_v (n_params fp32 each, gathered, or both NULL: zero moments) sliced to
 * this rank's shard. */
tg_status tg_dp_optim_state_load(tg_dp_optim *o, const float *params, const float *adam_m, const float *adam_v,
                                 tg_error *err);

/* Logs this rank's memory by kind (every rank prints): "memory rank R (zero_stage=Z, world W):
 * params P B, grads G B, optimizer state O B, activations A B, segment window X B, ...". */
void tg_dp_optim_log_memory(const tg_dp_optim *o, const tg_log *lg);

/* What one rank would hold at `stage` and `world` (train pads to 64 * world), projected from m,
 * a model without sharded storage whose optimizer covers all of it (tg_model_opt_init(0,
 * n_padded)): bytes per element of each kind times the elements each stage keeps (stage 1: the
 * optimizer shard; 2: also the gradient shard + one segment window; 3: also the parameter
 * shard + one window; window = the longest segment). Activations do not change. It is what
 * tg_dp_optim_log_memory reports for the CPU backends in fp32. */
void tg_dp_optim_memory_plan(const tg_model *m, int stage, int world, tg_model_memory *out);

#endif
