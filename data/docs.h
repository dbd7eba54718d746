/* data/docs.h — reading documents out of input files for `prepare` and `tokenizer train`.
 *
 * Modes:
 *   TEXT    the whole file is one document;
 *   JSONL   one JSON object per line, the document is its "text" string (blank lines skipped;
 *           a malformed line, a line without "text" or a non-string "text" is an error that gives
 *           the file and line number);
 *   FORTUNE fortune(6) files: documents are separated by lines holding only "%"
 *           (`--split-on-percent`); empty fortunes are skipped;
 *   AUTO    JSONL for names ending in .jsonl, TEXT otherwise.
 * Warnings (through the log; the bytes are still used): an empty file, documents that are not
 * valid UTF-8 (once per file, with the first bad offset and a count). */
#ifndef TG_DOCS_H
#define TG_DOCS_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/status.h"

typedef enum { TG_INPUT_AUTO = 0, TG_INPUT_TEXT, TG_INPUT_JSONL, TG_INPUT_FORTUNE } tg_input_mode;

/* Called once per document in file order; doc is valid only during the call. */
typedef tg_status (*tg_doc_fn)(void *ctx, const uint8_t *doc, size_t n, tg_error *err);

/* Where the reader is (for progress bars): updated before each call of fn. */
typedef struct {
    uint64_t n_docs; /* documents passed to fn so far (this file) */
    uint64_t offset; /* bytes of the file consumed, up to the end of the current document */
} tg_docs_progress;

/* Reads every document of path. Errors name the file (and line for JSONL). prog may be NULL. */
tg_status tg_docs_read(const char *path, tg_input_mode mode, const tg_log *lg, tg_doc_fn fn,
                       void *ctx, tg_docs_progress *prog, tg_error *err);

/* Offset of the first byte that is not part of valid UTF-8, or -1 if p[0..n) is valid. */
long long tg_utf8_invalid_offset(const uint8_t *p, size_t n);

#endif
