/* ckpt/ckpt.h — the checkpoint file format: writing, verified loading, `ckpt info`'s reading.
 *
 * A checkpoint is one HDF5 file <ckpt_dir>/step_XXXXXXXX.h5 (8-digit zero-padded step):
 *   /                      attributes: format="truthgpt-ckpt", format_version, step, tokens_seen,
 *                          rng_state, world_size, zero_stage, n_params, the model shape
 *                          (max_seq_len, vocab_size, padded_vocab_size, n_layer, n_head, n_embd),
 *                          tokenizer_hash, tokenizer_path, optimizer (only "muon"; absent:
 *                          AdamW), meta_crc32c (over all of those)
 *   /params/<HF name>      fp32, the tensor's own shape (model/gpt2.h), zstd-compressed
 *   /adam_m/<HF name>      AdamW first moment, GATHERED (full size; any world size can re-slice)
 *   /adam_v/<HF name>      AdamW second moment, gathered
 *   /master/<HF name>      read if present; the trainer never writes it: /params already holds
 *                          the exact fp32 values (the master weights where the working copy is bf16)
 *   /loader_states         uint64 (n_ranks, 2): [seed, position] per rank
 *   /config_ini            uint8: the effective config text (NUL-terminated)
 * Every dataset carries an attribute crc32c: CRC-32C of its raw (uncompressed, native) bytes,
 * verified on load. HDF5 metadata is written in the 1.8+ format, whose headers carry their own
 * checksums, so a flipped byte anywhere is caught either by HDF5 or by a crc32c mismatch.
 *
 * No timestamps are stored: equal states give byte-identical files.
 *
 * Writing is streamed: the compressed chunks (1 MiB of raw data each, compressed by a few threads
 * exactly as the zstd filter would) go in file order into step_XXXXXXXX.h5.tmp through HDF5's
 * direct chunk write. The .tmp is first reserved whole (fallocate of an upper bound: the raw
 * size plus a margin; skipped where unsupported), so a full disk is a plain ENOSPC ("disk full
 * ...") before HDF5 writes anything; then it is cut to its length, fsynced, renamed, the directory fsynced; then
 * <ckpt_dir>/latest (a text file holding the file name) is replaced the same way;
 * only then are checkpoints beyond `keep` deleted. A kill at any moment leaves every earlier
 * checkpoint intact. Resume never trusts `latest` alone: tg_ckpt_find_latest scans the directory
 * and verifies, so a corrupt newest file falls back to the previous one.
 *
 * Every HDF5 call holds tg_h5_lock() (data/h5util.h): HDF5 is shared with the loader's thread.
 * The asynchronous writer is in ckpt/writer.h, the CRC in core/crc32c.h. */
#ifndef TG_CKPT_H
#define TG_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/status.h"
#include "data/loader.h"
#include "model/gpt2.h"

#define TG_CKPT_FORMAT_NAME "truthgpt-ckpt" /* the root attribute `format` */
#define TG_CKPT_FORMAT_VERSION 1

/* Everything a checkpoint holds; all arrays are host memory. Arrays of n_params elements are in
 * the flat layout order of model/gpt2.h (tg_gpt2_layout of model_cfg); they are stored per
 * tensor under the Hugging Face names. */
typedef struct {
    int64_t step;                     /* optimizer steps completed */
    int64_t tokens_seen;
    uint64_t rng_state;               /* trainer RNG (core/rng.h) */
    int world_size, zero_stage;       /* of the run that saved it (informative on resume) */
    int n_loader_states;              /* one per rank */
    tg_loader_state *loader_states;
    char *config_ini;                 /* effective config text; NULL is stored as "" */
    char *tokenizer_hash;             /* may be NULL / "" */
    char *tokenizer_path;             /* tokenizer file the run used; may be NULL / "" */
    tg_gpt2_config model_cfg;         /* finalized (padded_vocab_size set) */
    float *params;                    /* n_params */
    float *adam_m, *adam_v;           /* n_params each, gathered; NULL = no optimizer state yet */
    int muon;                         /* 1: train.optimizer=muon (adam_m holds Muon's momentum for
                                       * the Muon matrices, adam_v zero there); stored as the root
                                       * attribute optimizer="muon", absent for AdamW */
    float *master;                    /* n_params or NULL (only when working weights are not fp32) */
} tg_ckpt_state;

/* Frees every array/string of a state filled by tg_ckpt_load and zeroes it. */
void tg_ckpt_state_free(tg_ckpt_state *st);

/* Elements of one parameter-sized array for cfg (n_params of its layout), 0 on a bad cfg. */
size_t tg_ckpt_n_params(const tg_gpt2_config *cfg);

/* "<ckpt_dir>/step_XXXXXXXX.h5" into path; TG_ERR_ARG if it does not fit. */
tg_status tg_ckpt_path(const char *ckpt_dir, int64_t step, char *path, size_t cap, tg_error *err);

/* Writes st to exactly `path`, synchronously and crash-safely (tmp + fsync + rename + dir fsync,
 * core/fsio.h; no `latest`, no deletion). The writer uses this from its thread; tests and tools
 * may call it directly.
 * Host memory: 4 MiB of compression buffers per core (at most 16), not the file.
 * Test hooks (test builds): env TRUTHGPT_CKPT_SLOW_MS=N sleeps N ms after each dataset;
 * TRUTHGPT_CKPT_HOLD_STEP=N blocks the write of step N half way (kill -9 tests). */
tg_status tg_ckpt_write_file(const char *path, const tg_ckpt_state *st, tg_error *err);

/* ---- reading ---- */

/* Loads a checkpoint into st (zeroed first; free with tg_ckpt_state_free), verifying the format
 * version and every checksum. Corruption -> TG_ERR_FORMAT (or TG_ERR_HDF5) naming the dataset. */
tg_status tg_ckpt_load(const char *path, tg_ckpt_state *st, tg_error *err);

/* Reads and checksums every dataset without keeping the data (memory: one tensor). */
tg_status tg_ckpt_verify(const char *path, tg_error *err);

/* resume=auto: the newest step_*.h5 in ckpt_dir that verifies; corrupt ones are skipped with a
 * tg_log_warn naming the reason. path receives its full path; none -> *found = 0 and TG_OK
 * (also when ckpt_dir does not exist). */
tg_status tg_ckpt_find_latest(const char *ckpt_dir, const tg_log *lg, char *path, size_t cap,
                              int *found, tg_error *err);

/* Same choice, loading it in the same pass (find_latest + load reads the file twice): on
 * *found = 1, st holds it (free with tg_ckpt_state_free); otherwise st is zeroed. */
tg_status tg_ckpt_load_latest(const char *ckpt_dir, const tg_log *lg, tg_ckpt_state *st,
                              char *path, size_t cap, int *found, tg_error *err);

/* ---- what `ckpt info` shows ---- */

/* One dataset as read back. */
typedef struct {
    char label[TG_GPT2_MAX_NAME + 32]; /* "/params/<HF name>", "/config_ini", ... */
    int ndim;
    uint64_t dims[2];
    size_t bytes;                      /* raw (uncompressed) */
    uint64_t stored_bytes;             /* in the file */
    uint32_t crc32c;                   /* as stored */
    int readable;                      /* 0: HDF5 could not read it (why: the reason) */
    int crc_ok;                        /* readable and its data matches crc32c */
    tg_error why;
} tg_ckpt_dataset_info;

/* Everything `ckpt info` prints: the state's scalars and strings (state.params, adam_m, adam_v,
 * master stay NULL), the format's own fields, and every dataset in file order (config_ini,
 * loader_states, then each tensor group). */
typedef struct {
    tg_ckpt_state state;
    uint64_t file_bytes;
    int64_t format_version;
    int64_t n_params;                  /* as stored (checked against the model shape) */
    int has_adam, has_master;
    uint32_t meta_crc32c;              /* as stored */
    int meta_ok;                       /* the root attributes match it */
    int header_read;                   /* state and the fields above are filled */
    int n_datasets, cap_datasets;
    tg_ckpt_dataset_info *datasets;
    int n_bad;                         /* datasets (and root attributes) that failed */
} tg_ckpt_info;

/* Reads every dataset of a checkpoint and checks every checksum, keeping one entry per dataset.
 * A checksum mismatch or unreadable tensor is recorded (n_bad), not returned; a file that cannot
 * be walked (not a checkpoint, a missing dataset, ...) is an error, and info then holds what was
 * read before it (header_read says whether the header is complete). Free with tg_ckpt_info_free. */
tg_status tg_ckpt_info_read(const char *path, tg_ckpt_info *info, tg_error *err);
void tg_ckpt_info_free(tg_ckpt_info *info);

#endif
