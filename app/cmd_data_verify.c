/* app/cmd_data_verify.c — `truthgpt data verify GLOB...`: checks whole shard files. */
#include <glob.h>
#include <stdio.h>
#include <string.h>

#include "app/cmds.h"
#include "core/status.h"
#include "data/shard.h"

static void data_usage(FILE *f) {
    fprintf(f, "usage: truthgpt data verify GLOB...\n"
               "  Reads every chunk of every matching shard (HDF5 checks each chunk's Fletcher-32\n"
               "  checksum), checks token ids < vocab_size, doc_offsets and the attributes.\n"
               "  Prints 'OK PATH' or 'FAIL PATH: reason' per file; exit 0 if all are OK, 1 otherwise.\n");
}

int tg_cmd_data(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        data_usage(stdout);
        return 0;
    }
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
