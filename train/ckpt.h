/* train/ckpt.h — checkpoints: file format, asynchronous writer, verified loading.
 *
 * A checkpoint is one HDF5 file <ckpt_dir>/step_XXXXXXXX.h5 (8-digit zero-padded step):
 *   /                      attributes: format="truthgpt-ckpt", format_version, step, tokens_seen,
 *                          rng_state, world_size, zero_stage, n_params, the model shape
 *                          (max_seq_len, vocab_size, padded_vocab_size, n_layer, n_head, n_embd),
 *                          tokenizer_hash, tokenizer_path, meta_crc32c (over all of those)
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
 * Crash safety: the file is built in memory (HDF5 core driver), then written as
 * step_XXXXXXXX.h5.tmp with plain write()s (a full disk is a plain ENOSPC: "disk full ..."),
 * fsynced, renamed, the directory fsynced; then <ckpt_dir>/latest (a text file holding the file name) is replaced the same way;
 * only then are checkpoints beyond `keep` deleted. A kill at any moment leaves every earlier
 * checkpoint intact. Resume never trusts `latest` alone: tg_ckpt_find_latest scans the directory
 * and verifies, so a corrupt newest file falls back to the previous one.
 *
 * Every HDF5 call holds tg_h5_lock() (data/h5util.h): HDF5 is shared with the loader's thread. */
#ifndef TG_CKPT_H
#define TG_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/log.h"
#include "core/status.h"
#include "data/loader.h"
#include "model/gpt2.h"

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
    float *master;                    /* n_params or NULL (only when working weights are not fp32) */
} tg_ckpt_state;

/* Frees every array/string of a state filled by tg_ckpt_load and zeroes it. */
void tg_ckpt_state_free(tg_ckpt_state *st);

/* Elements of one parameter-sized array for cfg (n_params of its layout), 0 on a bad cfg. */
size_t tg_ckpt_n_params(const tg_gpt2_config *cfg);

/* "<ckpt_dir>/step_XXXXXXXX.h5" into path; TG_ERR_ARG if it does not fit. */
tg_status tg_ckpt_path(const char *ckpt_dir, int64_t step, char *path, size_t cap, tg_error *err);

/* ---- writing ---- */
typedef struct tg_ckpt_writer tg_ckpt_writer;

/* Creates ckpt_dir (and parents) if needed and removes stale *.tmp files of earlier killed writes.
 * keep: number of newest checkpoints to keep (<= 0: keep all). lg is used from the background
 * thread for progress lines (may be NULL). */
tg_status tg_ckpt_writer_init(tg_ckpt_writer **w, const char *ckpt_dir, int keep, const tg_log *lg,
                              tg_error *err);

/* Copies st's arrays and strings into the writer's own host buffers, then returns; a background
 * thread builds the file in memory and writes step_XXXXXXXX.h5 (tmp name, fsync, rename, then latest, then deletes beyond keep).
 * If the previous write is still running, waits for it first. *stall_ms (may be NULL) = time this
 * call blocked the caller (wait + copy). A failure of the previous write is returned here (and
 * the new state is then not saved), or by tg_ckpt_writer_wait.
 * Host memory: the copy of the state (kept between saves) plus, while writing, one file image
 * (about the compressed checkpoint size).
 * Test hook: env TRUTHGPT_CKPT_SLOW_MS=N writes in 64 KiB pieces N ms apart (kill -9 tests). */
tg_status tg_ckpt_writer_save(tg_ckpt_writer *w, const tg_ckpt_state *st, double *stall_ms,
                              tg_error *err);

/* Optional, at start-up: allocates (and touches) the writer's host buffers for a model of cfg now,
 * so the first save stalls training only for the copy. Waits for a write in flight. */
tg_status tg_ckpt_writer_reserve(tg_ckpt_writer *w, const tg_gpt2_config *cfg, int with_adam,
                                 int with_master, tg_error *err);

/* Waits for the write in flight (if any) and returns its status. */
tg_status tg_ckpt_writer_wait(tg_ckpt_writer *w, tg_error *err);

/* Seconds the last completed background write took (0 before the first). */
double tg_ckpt_writer_last_write_s(const tg_ckpt_writer *w);

/* Waits for the write in flight (its error, if any, is dropped: call wait first to see it). */
void tg_ckpt_writer_free(tg_ckpt_writer *w);

/* Synchronous write of st to exactly `path` (tmp + fsync + rename + dir fsync; no `latest`, no
 * deletion). The writer uses this from its thread; tests and tools may call it directly. */
tg_status tg_ckpt_write_file(const char *path, const tg_ckpt_state *st, tg_error *err);

/* path := buf[0, n), crash-safely, as checkpoints are written: <path>.tmp written and fsynced,
 * renamed over path, the directory fsynced. A failure removes the .tmp and leaves path as it
 * was. For the trainer's other files that must never be seen half-written. */
tg_status tg_ckpt_file_replace(const char *path, const void *buf, size_t n, tg_error *err);

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

/* Prints what a checkpoint holds to out: metadata, config text, one line per tensor (shape,
 * bytes, stored bytes, crc32c, ok/BAD). show_config: include the config text. *n_bad (may be
 * NULL) = datasets whose checksum failed; those are reported, not returned as an error. */
tg_status tg_ckpt_describe(const char *path, FILE *out, int show_config, int *n_bad,
                           tg_error *err);

/* CRC-32C (Castagnoli) of n bytes, continuing from crc (start with 0). */
uint32_t tg_crc32c(uint32_t crc, const void *data, size_t n);

#endif
