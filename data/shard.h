/* data/shard.h — the token shard format shared by prepare (writer) and the loader (reader).
 *
 * One HDF5 file per shard, DIR/{train,val}_NNNNNN.h5, root group holds:
 *   tokens       1-D, uint16 (H5T_STD_U16LE) when vocab_size <= 65536, else uint32 (U32LE);
 *                chunked, zstd (filter 32015) then HDF5's Fletcher-32 checksum per
 *                chunk (checked by HDF5 on every read); each document is preceded by eot_id.
 *   doc_offsets  1-D uint64 (chunked, zstd + Fletcher-32 like tokens): index in `tokens` of the eot that starts each document beginning in
 *                this shard (a document may continue into the next shard).
 *   attributes   format_version (=2; version 1 had no checksums and is refused), vocab_size, eot_id, tokenizer_name, tokenizer_hash,
 *                n_tokens, n_docs, split ("train"/"val"), shard_index.
 * No timestamps are stored: equal inputs give byte-identical files. */
#ifndef TG_SHARD_H
#define TG_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define TG_SHARD_FORMAT_VERSION 2

typedef struct {
    int64_t format_version;
    int64_t vocab_size;
    int64_t eot_id;
    char tokenizer_name[256];
    char tokenizer_hash[128];
    uint64_t n_tokens; /* length of `tokens` (the dataset, checked against the attribute) */
    uint64_t n_docs;
    int dtype_bytes;   /* 2 or 4 */
    uint64_t chunk;    /* chunk length of `tokens` */
} tg_shard_info;

/* Bytes per token id for a vocabulary: 2 if every id fits in uint16, else 4. */
static inline int tg_shard_dtype_bytes(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

/* Writes one shard file atomically (path.tmp, then rename). tokens has dtype_bytes per element
 * (tg_shard_dtype_bytes(info->vocab_size)); info->n_tokens/n_docs give the lengths. */
tg_status tg_shard_write(const char *path, const tg_shard_info *info, const char *split,
                         int shard_index, const void *tokens, const uint64_t *doc_offsets,
                         uint64_t chunk_tokens, int zstd_level, tg_error *err);

/* Opens path and reads + validates its metadata (every problem is an error naming the file:
 * missing/unreadable, not HDF5, truncated, missing dataset/attribute, wrong dtype, empty). */
tg_status tg_shard_read_info(const char *path, tg_shard_info *info, tg_error *err);

/* Reads tokens[start, start+n) of the shard into out (info->dtype_bytes per element, native
 * endianness), checking every id < vocab_size as it is read (TG_ERR_DATA naming the file and
 * the position otherwise). The shard stays open in *h between calls (zero-initialise it with
 * tg_shard_handle_init; close with tg_shard_handle_close). Takes tg_h5_lock. */
typedef struct {
    char path[4096];
    int64_t file, dset; /* hid_t */
    int open;
} tg_shard_handle;

void tg_shard_handle_init(tg_shard_handle *h);
tg_status tg_shard_read_tokens(tg_shard_handle *h, const char *path, const tg_shard_info *info,
                               uint64_t start, uint64_t n, void *out, tg_error *err);
void tg_shard_handle_close(tg_shard_handle *h);

/* Checks a whole shard: metadata (as tg_shard_read_info, filled into *info), every chunk of
 * tokens (HDF5 verifies each chunk's Fletcher-32; ids < vocab_size) and doc_offsets (strictly
 * increasing, < n_tokens). TG_OK or the first problem, naming the file. */
tg_status tg_shard_verify(const char *path, tg_shard_info *info, tg_error *err);

#endif
