/* train/trainer.h — one training run: config + comm in, metrics/checkpoints out.
 * Ties model/ (compute), data/ (batches), comm/ (ranks) and the checkpoint module together. */
#ifndef TG_TRAINER_H
#define TG_TRAINER_H

#include <signal.h>

#include "comm/comm.h"
#include "core/log.h"
#include "core/status.h"
#include "model/model.h"
#include "train/config.h"

/* Exit code of a run stopped by SIGTERM/SIGUSR1/SIGINT after saving: "requeue me"
 * (EX_TEMPFAIL). scripts/slurm/train.sbatch requeues the job on it. */
#define TG_EXIT_REQUEUE 75

typedef struct {
    volatile sig_atomic_t *stop_requested; /* set by a signal handler; checked after each step */
} tg_train_hooks;

/* train.device resolved: auto = CUDA when built with it and a GPU is visible, else CPU. */
tg_device_kind tg_train_device(const tg_config *cfg);
/* The [cuda] section as the model's options. */
tg_cuda_options tg_train_cuda_options(const tg_config *cfg);
/* The model configuration of cfg's [model] keys (arch and, for Llama, its keys), for sequences of
 * T tokens over vocab_size tokens; not yet finalized. */
tg_gpt2_config tg_train_model_config(const tg_config *cfg, int vocab_size, int T);

/* Runs the training loop. On success *stopped is 1 if a stop request ended it early (after
 * saving a checkpoint), else 0. */
tg_status tg_train_run(const tg_config *cfg, tg_comm *comm, const tg_log *lg, const tg_train_hooks *hooks,
                       int *stopped, tg_error *err);

#endif
