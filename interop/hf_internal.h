/* interop/hf_internal.h — internal: the Hugging Face directory plumbing that the GPT-2 (hf.c) and
 * Llama (hf_llama.c) mappings share: paths, config.json reading and writing, and the weight
 * files (model.safetensors, or the shards of model.safetensors.index.json). */
#ifndef TG_INTEROP_HF_INTERNAL_H
#define TG_INTEROP_HF_INTERNAL_H

#include <jansson.h>

#include "core/status.h"
#include "interop/safetensors.h"
#include "model/gpt2.h"

/* out (TG_PATH_MAX) = dir/name. */
tg_status tg_hf_path_join(char *out, const char *dir, const char *name, tg_error *err);
/* Writes dir/name: j as indented JSON with a final newline, crash-safely. */
tg_status tg_hf_json_write(const char *dir, const char *name, json_t *j, tg_error *err);
/* root[key] (or root[alt]) as an integer in [1, 2^30]; TG_ERR_FORMAT naming path and key. */
tg_status tg_hf_cfg_int(json_t *root, const char *key, const char *alt, int *out, const char *path, tg_error *err);

typedef struct {
    int n;
    tg_st_file *files;
    char **names; /* file names inside the directory, for messages */
} tg_hf_shards;

/* Opens dir/model.safetensors, or every shard named in dir/model.safetensors.index.json. */
tg_status tg_hf_shards_open(tg_hf_shards *s, const char *dir, tg_error *err);
void tg_hf_shards_free(tg_hf_shards *s);
/* The tensor called name in any shard (its shard in *file), or NULL. */
const tg_st_tensor *tg_hf_shards_find(const tg_hf_shards *s, const char *name, int *file);

int tg_hf_ends_with(const char *s, const char *suffix);

/* The safetensors entries of lay's tensors over params, in the table's order, with the
 * vocabulary-sized tensors (rows == padded_vocab_size outside the layers) cut to vocab_size rows.
 * *out is malloc'ed (lay->n_tensors entries). */
tg_status tg_hf_entries(const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype, tg_st_entry **out,
                        tg_error *err);

/* Reads tensor ti of lay (HF name hf_name; vocabulary-sized tensors have vocab_size rows in the
 * file, the padding rows stay as they are in p) into p. TG_ERR_FORMAT when it is missing or its
 * shape differs. */
tg_status tg_hf_read_tensor(const tg_hf_shards *sh, const char *dir, const tg_gpt2_layout *lay, int ti,
                            const char *hf_name, float *p, tg_error *err);

/* Llama (hf_llama.c). root: the parsed config.json at path (model_type llama). */
tg_status tg_hf_llama_export(const char *dir, const tg_gpt2_layout *lay, const float *params, tg_st_dtype dtype,
                             int eos_id, tg_error *err);
tg_status tg_hf_llama_import(const char *dir, json_t *root, const char *path, tg_gpt2_config *cfg, float **params,
                             tg_error *err);

#endif
