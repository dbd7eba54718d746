/* core/crc32c.c — see crc32c.h. */
#include "core/crc32c.h"

#include <pthread.h>
#include <string.h>

#if !defined(__SSE4_2__)
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_table_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}
#endif

uint32_t tg_crc32c(uint32_t crc, const void *data, size_t n) {
    const unsigned char *p = data;
    crc = ~crc;
#if defined(__SSE4_2__)
    /* The crc32 instruction computes exactly CRC-32C; 8 bytes per instruction. */
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    crc = (uint32_t)c;
    while (n--) crc = __builtin_ia32_crc32qi(crc, *p++);
#else
    pthread_once(&crc_once, crc_table_init);
    while (n--) crc = crc_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
#endif
    return ~crc;
}
