/* app/cmd_data_verify.c — `truthgpt data verify GLOB...` (checks whole shard files) and
 * `truthgpt data dump SHARD` (prints its token ids as truthgpt's loader reads them). */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "app/cmds.h"
#include "core/status.h"
#include "data/shard.h"

static void data_usage(FILE *f) {
    fprintf(f, "usage: truthgpt data verify GLOB...\n"
               "       truthgpt data dump SHARD   print the token ids, one per line\n"
               "  Reads every chunk of every matching shard (HDF5 checks each chunk's Fletcher-32\n"
               "  checksum), checks token ids < vocab_size, doc_offsets and the attributes.\n"
               "  Prints 'OK PATH' or 'FAIL PATH: reason' per file; exit 0 if all are OK, 1 otherwise.\n");
}

static int data_dump(const char *path) {
    tg_error err = {0};
    tg_shard_info info;
    tg_shard_handle h;
    tg_shard_handle_init(&h);
    if (tg_shard_read_info(path, &info, &err) != TG_OK) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    uint64_t block = info.chunk ? info.chunk : 1;
    void *buf = malloc((size_t)block * (size_t)info.dtype_bytes);
    int rc = buf ? 0 : 1;
    for (uint64_t s = 0; rc == 0 && s < info.n_tokens; s += block) {
        uint64_t n = info.n_tokens - s < block ? info.n_tokens - s : block;
        if (tg_shard_read_tokens(&h, path, &info, s, n, buf, &err) != TG_OK) {
            fprintf(stderr, "error: %s\n", err.msg);
            rc = 1;
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            printf("%u\n", info.dtype_bytes == 2 ? ((uint16_t *)buf)[i] : ((uint32_t *)buf)[i]);
    }
    tg_shard_handle_close(&h);
    free(buf);
    return rc;
}

int tg_cmd_data(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        data_usage(stdout);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "dump") == 0) return data_dump(argv[2]);
    if (argc < 3 || strcmp(argv[1], "verify") != 0) {
        data_usage(stderr);
        return 2;
    }
    int n_ok = 0, n_fail = 0;
    for (int a = 2; a < argc; a++) {
        glob_t g;
        memset(&g, 0, sizeof g);
        int gr = glob(argv[a], 0, NULL, &g);
        if (gr == GLOB_NOMATCH) {
            printf("FAIL %s: no file matches\n", argv[a]);
            n_fail++;
        } else if (gr != 0) {
            printf("FAIL %s: cannot expand the pattern\n", argv[a]);
            n_fail++;
        }
        for (size_t i = 0; gr == 0 && i < g.gl_pathc; i++) {
            tg_error err = {0};
            tg_shard_info info;
            if (tg_shard_verify(g.gl_pathv[i], &info, &err) == TG_OK) {
                printf("OK %s (%llu tokens, %llu docs)\n", g.gl_pathv[i], (unsigned long long)info.n_tokens,
                       (unsigned long long)info.n_docs);
                n_ok++;
            } else {
                printf("FAIL %s\n", err.msg);
                n_fail++;
            }
        }
        globfree(&g);
    }
    printf("%d OK, %d FAIL\n", n_ok, n_fail);
    return n_fail ? 1 : 0;
}
