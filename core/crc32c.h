/* core/crc32c.h — CRC-32C (Castagnoli), the checksum of checkpoint datasets. */
#ifndef TG_CORE_CRC32C_H
#define TG_CORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32C of n bytes, continuing from crc (start with 0): crc32c(crc32c(0, a), b) = crc32c(0, ab).
 * Uses the SSE4.2 crc32 instruction where the build targets it, a table otherwise. */
uint32_t tg_crc32c(uint32_t crc, const void *data, size_t n);

#endif
