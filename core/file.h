/* core/file.h — whole-file reads for small files (tokenizer vocabularies, tuning blobs). */
#ifndef TG_CORE_FILE_H
#define TG_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Reads all of `path` into a new buffer with a NUL after the last byte (so text can be parsed in
 * place); *out is the caller's to free(), *n the byte count without the NUL. On failure *out is
 * untouched and err names the path and the system's reason (TG_ERR_IO). */
tg_status tg_file_read(const char *path, uint8_t **out, size_t *n, tg_error *err);

#endif
