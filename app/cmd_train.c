/* `truthgpt train CONFIG [section.key=value ...]` */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cmds.h"
#include "comm/comm.h"
#include "core/log.h"
#include "train/config.h"
#include "train/trainer.h"

/* The one piece of process-wide state: a signal handler can only reach a global. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    /* A batch system delivers one stop by several paths (SLURM signals every process of the job,
     * then the batch script and mpirun relay it again): repeated TERM/USR1 must not abandon the
     * save. Only INT after a stop request (a second Ctrl-C) leaves at once. */
    if (g_stop && sig == SIGINT) {
        static const char msg[] = "truthgpt: second signal, exiting immediately\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + sig);
    }
    if (!g_stop) g_stop = sig;
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: truthgpt train CONFIG.ini [section.key=value ...]\n"
            "\n"
            "Trains a GPT-2 or Llama model. Launch with mpirun -np N or srun for data parallelism (one rank per GPU,\n"
            "or CPU ranks sharing the cores). Keys given on the command line override the file.\n"
            "SIGTERM/SIGUSR1/SIGINT: finish the step, save a checkpoint, exit %d (requeue me); a later\n"
            "SIGINT exits at once, repeated TERM/USR1 are ignored. To a bare mpirun send SIGUSR1 (Open MPI kills the ranks soon after TERM/INT).\n"
            "\nkeys:\n",
            TG_EXIT_REQUEUE);
    tg_config_print_keys(f);
}

int tg_cmd_train(int argc, char **argv) {
    tg_config cfg;
    tg_error err = {0};
    tg_comm *comm = NULL;
    const char *cfg_path = NULL;
    int rc = 1;

    tg_config_defaults(&cfg);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            train_usage(stdout);
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "truthgpt train: unknown option '%s'\n\n", argv[i]);
            train_usage(stderr);
            return 2;
        }
        if (!strchr(argv[i], '=')) {
            if (cfg_path) {
                fprintf(stderr, "truthgpt train: more than one config file ('%s', '%s')\n\n", cfg_path, argv[i]);
                train_usage(stderr);
                return 2;
            }
            cfg_path = argv[i];
        }
    }
    if (!cfg_path) {
        fprintf(stderr, "truthgpt train: no config file (try configs/tiny.ini)\n\n");
        train_usage(stderr);
        return 2;
    }
    /* The file first, then the overrides in order, then cross-key checks — before any work. */
    if (tg_config_load(&cfg, cfg_path, argc - 1, argv + 1, &err) != TG_OK) goto config_error;

    if (tg_comm_init(&comm, NULL, NULL, &err) != TG_OK) {
        tg_comm_abort(NULL, 1, err.msg); /* ends the whole job when MPI is up; returns otherwise */
        return 1;
    }
    tg_comm_set_timeout(comm, cfg.comm_timeout);
    tg_log lg = {.rank = tg_comm_rank(comm), .world = tg_comm_world(comm), .level = tg_comm_rank(comm) == 0};
    if (lg.rank == 0) {
        fprintf(stderr, "truthgpt train: effective config (%s + command line)\n", cfg_path);
        tg_config_write(&cfg, stderr);
        fputc('\n', stderr);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    tg_train_hooks hooks = {.stop_requested = &g_stop};
    int stopped = 0;
    if (tg_train_run(&cfg, comm, &lg, &hooks, &stopped, &err) != TG_OK) {
        char msg[sizeof err.msg + 64];
        snprintf(msg, sizeof msg, "%s: %s", tg_status_str(err.code), err.msg);
        if (tg_comm_world(comm) > 1) tg_comm_abort(comm, 1, msg); /* ends every rank; no return */
        fprintf(stderr, "truthgpt: error: %s\n", msg);
        rc = 1;
    } else {
        rc = stopped ? TG_EXIT_REQUEUE : 0;
    }
    tg_comm_free(comm);
    return rc;

config_error:
    fprintf(stderr, "truthgpt train: %s\n", err.msg);
    return 1;
}
