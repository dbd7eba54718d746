/* train/init_from.h — train.init_from: the starting weights of a new run, from a truthgpt
 * checkpoint or a Hugging Face GPT-2 directory (interop/hf.h). Only the weights are taken: the
 * optimizer starts fresh, the step at 0, the data at its start (train.resume continues a run). */
#ifndef TG_TRAIN_INIT_FROM_H
#define TG_TRAIN_INIT_FROM_H

#include "core/status.h"
#include "model/gpt2.h"

/* Loads the weights at path (a directory: HF; a file: checkpoint) into *params (malloc'ed,
 * n_params of want's layout). A model other than want (arch, shapes, Llama's keys) is
 * TG_ERR_CONFIG naming each differing key (model.n_layer, ...); for Llama seq_len may differ
 * (RoPE has no position table). */
tg_status tg_init_from_load(const char *path, const tg_gpt2_config *want, float **params, tg_error *err);

#endif
