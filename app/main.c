/* truthgpt — one executable, subcommands. Only this file (and the subcommands' return codes)
 * decides how the process exits. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cmds.h"

#ifndef TG_VERSION
#define TG_VERSION "dev"
#endif

static void usage(FILE *f) {
    fprintf(f,
            "usage: truthgpt <command> [args]\n"
            "\n"
            "commands:\n"
            "  train CONFIG [section.key=value ...]   train a GPT-2 model (mpirun/srun for several ranks)\n"
            "  prepare --tokenizer FILE --out DIR INPUT...   tokenize text/JSONL into HDF5 shards\n"
            "  data verify GLOB...                           check whole shards (checksums, ids, offsets)\n"
            "  tokenizer train --vocab-size N --out FILE INPUT...   learn a byte-level BPE tokenizer\n"
            "  bench [model] --config CONFIG ...      time training steps (tokens/s, TFLOP/s, MFU, memory)\n"
            "  bench data --data GLOB ...             time the data loader\n"
            "  bench comm ...                         time collectives (nccl-tests style table)\n"
            "  ckpt info FILE                         show what a checkpoint holds\n"
            "  sample FILE --prompt TEXT --tokens N   generate text from a checkpoint\n"
            "  eval FILE --tasks TASKS.jsonl          multiple-choice accuracy (HellaSwag JSONL layout)\n"
            "  export CKPT --out DIR [--dtype fp32|bf16]   write a Hugging Face model directory\n"
            "  import DIR --out CKPT                  Hugging Face GPT-2 directory to a checkpoint\n"
            "  tokenizer import --tokenizer-json F | --vocab F [--merges F] --out FILE   HF tokenizer to ranks\n"
            "\n"
            "options: --help, --version, --hdf5-plugin-dir (the folder of the zstd HDF5 plugin for\n"
            "  h5dump/h5py: export HDF5_PLUGIN_PATH=$(truthgpt --hdf5-plugin-dir)).  `truthgpt <command> --help` for a command's options.\n");
}

/* OpenMP threads that wait at a barrier sleep instead of spinning, unless the environment says
 * otherwise. libgomp reads its wait policy once, before main, so the process re-executes itself
 * with OMP_WAIT_POLICY=passive. Spinning (up to tens of ms per barrier by default) burns the
 * waiting thread's share of a loaded machine while the thread it waits for is not running: on 2
 * shared cores it made a 2-thread CPU step 2-3x slower than with passive waiting. If the exec
 * fails the process goes on with the default policy. */
static void wait_policy_passive(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    wait_policy_passive(argv);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--hdf5-plugin-dir") == 0) {
        /* The plugin is built beside the executable: DIR_OF_EXE/hdf5-plugins/libh5zstd.so. */
        char exe[PATH_MAX];
        if (!realpath("/proc/self/exe", exe)) {
            fprintf(stderr, "error: cannot resolve /proc/self/exe\n");
            return 1;
        }
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        printf("%s/hdf5-plugins\n", exe);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("truthgpt %s\n", TG_VERSION);
        return 0;
    }
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {
        {"train", tg_cmd_train},     {"prepare", tg_cmd_prepare}, {"tokenizer", tg_cmd_tokenizer},
        {"bench", tg_cmd_bench},     {"ckpt", tg_cmd_ckpt},       {"sample", tg_cmd_sample},
        {"export", tg_cmd_export},   {"import", tg_cmd_import},   {"data", tg_cmd_data},
        {"eval", tg_cmd_eval},
    };
    if (strcmp(cmd, "tokenizer") == 0 && argc >= 3 && strcmp(argv[2], "import") == 0)
        return tg_cmd_tokenizer_import(argc - 2, argv + 2); /* app/cmd_interop.c (HF tokenizers) */
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (strcmp(cmd, cmds[i].name) == 0) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "truthgpt: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
