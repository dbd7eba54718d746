/* tests/data/cli_driver.c — runs the data subcommands (app/cmd_data.c) without the rest of
 * the truthgpt executable: `tg_data_cli prepare|tokenizer|bench data ...`. */
#include <stdio.h>
#include <string.h>

#include "app/cmds.h"

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return tg_cmd_prepare(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "tokenizer")) return tg_cmd_tokenizer(argc - 1, argv + 1);
    if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "data"))
        return tg_cmd_bench_data(argc - 2, argv + 2);
    fprintf(stderr, "usage: tg_data_cli prepare|tokenizer|bench data ...\n");
    return 2;
}
