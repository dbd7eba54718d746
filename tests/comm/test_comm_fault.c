/* tests/comm/test_comm_fault.c — the failure path the trainer takes: loop over all-reduces and,
 * when one fails, end the whole job with tg_comm_abort. With TRUTHGPT_FAULT_RANK=1 the other
 * ranks are then blocked in an all-reduce that rank 1 never joins; test_comm_fault.sh checks
 * that mpirun still ends promptly, non-zero, and names rank 1. Usage: test_comm_fault [iters] */
#include <stdio.h>
#include <stdlib.h>

#include "comm/comm.h"

int main(int argc, char **argv) {
    tg_error err = {0};
    tg_comm *c = NULL;
    int iters = argc > 1 ? atoi(argv[1]) : 20;
    if (tg_comm_init(&c, &argc, &argv, &err) != TG_OK) {
        tg_comm_abort(NULL, 1, err.msg);
        return 1;
    }
    for (int i = 0; i < iters; i++) {
        float x[3] = {1, 2, 3};
        if (tg_comm_all_reduce(c, x, 3, TG_COMM_F32, TG_COMM_SUM, &err) != TG_OK) {
            tg_comm_abort(c, 3, err.msg); /* returns only without MPI */
            tg_comm_free(c);
            return 3;
        }
        if (x[2] != 3.0f * (float)tg_comm_world(c)) {
            tg_comm_abort(c, 4, "wrong all-reduce result");
            tg_comm_free(c);
            return 4;
        }
    }
    if (tg_comm_rank(c) == 0) printf("fault test: %d all-reduces done\n", iters);
    tg_comm_free(c);
    return 0;
}
