/* interop/safetensors.h — the safetensors file format (Hugging Face's weight files): an 8-byte
 * little-endian header length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets":
 * [begin, end]}, optional "__metadata__": {string: string}}), then the raw little-endian data;
 * offsets count from the first byte after the header.
 *
 * The reader refuses, naming the tensor or the field, every file it cannot trust: a header over
 * TG_SAFETENSORS_MAX_HEADER bytes, a file shorter than its header, bad JSON, duplicate names, an
 * unknown dtype, a malformed shape, offsets out of range, a byte span that is not shape x dtype,
 * and overlapping tensors. Tensors are read from memory; the whole file is loaded. */
#ifndef TG_INTEROP_SAFETENSORS_H
#define TG_INTEROP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define TG_SAFETENSORS_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, as the reference reader */
#define TG_SAFETENSORS_MAX_DIMS 8

typedef enum { TG_ST_F32 = 0, TG_ST_BF16, TG_ST_F16 } tg_st_dtype;

/* "F32", "BF16", "F16"; size in bytes of one element. */
const char *tg_st_dtype_name(tg_st_dtype d);
size_t tg_st_dtype_size(tg_st_dtype d);

typedef struct {
    char *name;
    tg_st_dtype dtype;
    int ndim;
    int64_t shape[TG_SAFETENSORS_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* byte span in the data section */
} tg_st_tensor;

typedef struct {
    uint8_t *buf; /* the whole file */
    size_t size;
    const uint8_t *data; /* buf + 8 + header length */
    size_t data_size;
    tg_st_tensor *tensors; /* in file order of their offsets */
    int n;
} tg_st_file;

/* Parses buf[0, n) (the file's bytes), taking ownership of buf (freed by tg_st_file_free, also on
 * failure). `what` names the file in messages. TG_ERR_FORMAT with the reason on a malformed file. */
tg_status tg_st_file_parse(tg_st_file *f, uint8_t *buf, size_t n, const char *what, tg_error *err);
/* Reads and parses path. */
tg_status tg_st_file_open(tg_st_file *f, const char *path, tg_error *err);
void tg_st_file_free(tg_st_file *f);

/* The tensor called name, or NULL. */
const tg_st_tensor *tg_st_file_find(const tg_st_file *f, const char *name);

/* Converts t's elements to fp32 into out[0, t->numel). */
void tg_st_tensor_read_f32(const tg_st_file *f, const tg_st_tensor *t, float *out);

/* One tensor to write: fp32 values in row-major order, stored as dtype (F32 or BF16, rounded to
 * nearest even; F16 is refused). */
typedef struct {
    const char *name;
    tg_st_dtype dtype;
    int ndim;
    int64_t shape[TG_SAFETENSORS_MAX_DIMS];
    const float *data;
} tg_st_entry;

/* Writes the tensors to path crash-safely (tmp + fsync + rename), in the given order, with
 * "__metadata__": {"format": "pt"} so that transformers accepts the file. The header is padded
 * with spaces to a multiple of 8 bytes, as the reference writer does. */
tg_status tg_st_file_write(const char *path, const tg_st_entry *e, int n, tg_error *err);

/* fp32 <-> bf16/fp16 conversions used here and by the tests. */
uint16_t tg_st_f32_to_bf16(float x);
float tg_st_bf16_to_f32(uint16_t b);
float tg_st_f16_to_f32(uint16_t h);

#endif
