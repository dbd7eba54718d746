/* train/config.h — the run configuration: INI files (own parser, config.c) plus `section.key=value` overrides.
 *
 * Every key is described once in a table (config.c): section, name, type, range or choices,
 * default and help. Parsing rejects unknown sections/keys and malformed or out-of-range values,
 * naming the source ("configs/tiny.ini:12" or "command line"), the key and what is accepted. */
#ifndef TG_CONFIG_H
#define TG_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "core/fsio.h" /* TG_PATH_MAX */
#include "core/status.h"
#include "model/model.h" /* tg_cuda_attention */
#include "train/schedule.h"

/* Enum-valued keys are parsed to these at load; each enum lists its key's choices in order. */
typedef enum { TG_ARCH_GPT2 = 0, TG_ARCH_LLAMA } tg_arch;                          /* model.arch */
typedef enum { TG_DEVICE_PICK_AUTO = 0, TG_DEVICE_PICK_CPU, TG_DEVICE_PICK_CUDA } tg_device_pick; /* train.device */
typedef enum { TG_PRECISION_BF16 = 0, TG_PRECISION_FP32 } tg_precision;            /* train.precision */
typedef enum { TG_RESUME_AUTO = 0, TG_RESUME_NONE, TG_RESUME_PATH } tg_resume_mode; /* train.resume */
typedef enum { TG_COMM_PICK_NCCL = 0, TG_COMM_PICK_MPI } tg_comm_pick;              /* comm.backend */
typedef enum { TG_OPTIMIZER_ADAMW = 0, TG_OPTIMIZER_MUON } tg_optimizer;           /* train.optimizer */

typedef struct {
    /* [model] */
    tg_arch arch;
    int n_layer, n_head, n_embd;
    int seq_len;            /* T */
    int vocab_size;         /* 0 = from the data */
    int n_kv_head;          /* llama: KV heads (0 = n_head) */
    int ffn_dim;            /* llama: SwiGLU width */
    double rope_theta;      /* llama: RoPE base */
    double norm_eps;        /* llama: RMSNorm epsilon */
    int tie_embeddings;     /* llama: 1 = lm_head is embed_tokens */
    double rope_factor;     /* llama: Llama 3 RoPE scaling factor; 0 = plain RoPE */
    double rope_low_freq_factor, rope_high_freq_factor; /* llama: with rope_factor */
    int rope_original_max_pos;                          /* llama: with rope_factor */
    /* [data] */
    char train[TG_PATH_MAX]; /* shard glob, or "synthetic" */
    char val[TG_PATH_MAX];   /* shard glob, "" = none */
    char tokenizer[TG_PATH_MAX]; /* tokenizer file, for samples (optional) */
    char eval_tasks[TG_PATH_MAX]; /* [train] eval_tasks: HellaSwag-layout JSONL scored at eval_every; "" = none */
    /* [train] */
    tg_device_pick device;   /* auto | cpu | cuda */
    tg_precision precision;  /* bf16 | fp32 */
    int cpu_emulate_bf16;    /* CPU with bf16: round where the CUDA backend stores bf16 */
    int recompute;
    int micro_batch;         /* B per rank */
    int64_t total_batch_tokens;
    int max_steps;
    double lr, min_lr;
    int warmup_steps;
    tg_sched_kind schedule;  /* cosine | linear | constant | wsd (train/schedule.h) */
    double decay_frac;       /* wsd: share of max_steps decaying */
    tg_decay_shape decay_shape; /* wsd: linear | cosine | sqrt */
    double weight_decay, beta1, beta2, eps, grad_clip;
    tg_optimizer optimizer;  /* adamw | muon */
    double muon_lr, muon_momentum, muon_weight_decay;
    int muon_nesterov, muon_ns_steps;
    uint64_t seed;
    int eval_every, eval_batches, log_every;
    double target_val_loss;  /* > 0: stop at the first validation at or below it */
    int zero_stage;          /* 0 | 1 | 2 | 3 (docs/comm.md) */
    tg_resume_mode resume;   /* auto | none | a checkpoint path: */
    char resume_path[TG_PATH_MAX]; /* the path when resume is TG_RESUME_PATH, else "" */
    char init_from[TG_PATH_MAX]; /* weights to start a new run from (ckpt or HF dir); "" = none */
    int sample_every, sample_tokens;
    int nan_patience;        /* stop after this many non-finite losses in a row */
    double spike_sigma;      /* a loss above mean + spike_sigma * std of the last spike_window is a spike; 0 = off */
    int spike_window;        /* steps in the running mean and std */
    int spike_action;        /* 0 warn (log and mark), 1 skip (also leave the parameters unchanged), 2 rollback
                              * (skip, and after spike_patience spikes reload the latest checkpoint) */
    int spike_patience;      /* rollback: spikes since the start or the last rollback that trigger one */
    int spike_rollbacks;     /* rollback: at most this many rollbacks, then stop with an error */
    int threads;             /* OpenMP threads per rank; 0 = share of the cores */
    /* [checkpoint] */
    int ckpt_every;          /* steps; 0 = only at the end and on signals */
    int ckpt_keep;
    /* [comm] */
    double comm_timeout;     /* seconds a collective may wait for a peer (MPI, NCCL) */
    tg_comm_pick comm_backend; /* GPU training's collectives: nccl | mpi (staged device buffers) */
    /* [run] */
    char out_dir[TG_PATH_MAX];
    /* [cuda]: the CUDA backend's choices (model/model.h tg_cuda_options) */
    tg_cuda_attention cuda_attention; /* cudnn | flash | naive: model/model.h's enum, in its order */
    int cuda_cudnn_deterministic, cuda_cudnn_tune, cuda_cublaslt_tune, cuda_fusion, cuda_profile;
    int cuda_lmhead_rows;
} tg_config;

/* Fills the defaults. */
void tg_config_defaults(tg_config *c);

/* Reads an INI file over the current values. */
tg_status tg_config_load_file(tg_config *c, const char *path, tg_error *err);

/* Applies one "section.key=value" override (source = "command line"). */
tg_status tg_config_set_override(tg_config *c, const char *arg, tg_error *err);

/* The one loading path of every command: the file (if path), then each argv[i] that is a
 * `section.key=value` override (contains '=', does not start with '-'), in order, then
 * tg_config_validate. Other arguments are the caller's to parse. */
tg_status tg_config_load(tg_config *c, const char *path, int argc, char **argv, tg_error *err);

/* Cross-key checks after all sources are read (e.g. min_lr <= lr). */
tg_status tg_config_validate(const tg_config *c, tg_error *err);

/* Writes the effective config as INI (every key) — printed at start and saved in the run dir. */
void tg_config_write(const tg_config *c, FILE *f);
/* Same, into a malloc'd string (caller frees). */
char *tg_config_to_string(const tg_config *c);

/* One line per key for --help: "  section.key  (type, default X)  help". */
void tg_config_print_keys(FILE *f);

#endif
