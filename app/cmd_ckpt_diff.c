/* `truthgpt ckpt diff A B [--tol X] [--skip SUBSTR]...` — compares the parameters of two
 * checkpoints tensor by tensor. Prints the tensors whose norm-wise relative difference
 * ||a-b|| / ||a|| exceeds tol (tol 0 = bitwise equal) and exits 0 when none does, 1 otherwise.
 * --skip leaves out tensors whose name contains SUBSTR (e.g. a tensor whose gradient is zero in
 * exact arithmetic, where Adam turns rounding noise into lr-sized steps). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "model/gpt2.h"

int tg_cmd_ckpt_diff(int argc, char **argv) {
    const char *a_path = NULL, *b_path = NULL;
    double tol = 0;
    const char *skip[16];
    int n_skip = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            tol = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--skip") && i + 1 < argc && n_skip < 16) {
            skip[n_skip++] = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: truthgpt ckpt diff A.h5 B.h5 [--tol X] [--skip SUBSTR]...\n");
            return 2;
        } else if (!a_path) {
            a_path = argv[i];
        } else if (!b_path) {
            b_path = argv[i];
        } else {
            fprintf(stderr, "usage: truthgpt ckpt diff A.h5 B.h5 [--tol X] [--skip SUBSTR]...\n");
            return 2;
        }
    }
    if (!a_path || !b_path) {
        fprintf(stderr, "usage: truthgpt ckpt diff A.h5 B.h5 [--tol X] [--skip SUBSTR]...\n");
        return 2;
    }
    tg_ckpt_state a, b;
    tg_error err = {0};
    tg_gpt2_layout lay = {0};
    int rc = 1;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    if (tg_ckpt_load(a_path, &a, &err) != TG_OK || tg_ckpt_load(b_path, &b, &err) != TG_OK) {
        fprintf(stderr, "truthgpt ckpt diff: %s\n", err.msg);
        goto done;
    }
    if (!tg_gpt2_config_equal(&a.model_cfg, &b.model_cfg)) {
        fprintf(stderr, "truthgpt ckpt diff: the checkpoints hold different model shapes\n");
        goto done;
    }
    if (tg_gpt2_layout_init(&lay, &a.model_cfg, &err) != TG_OK) {
        fprintf(stderr, "truthgpt ckpt diff: %s\n", err.msg);
        goto done;
    }
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < lay.n_tensors; i++) {
        const tg_tensor_info *t = &lay.tensors[i];
        int skipped = 0;
        for (int k = 0; k < n_skip; k++) skipped |= strstr(t->name, skip[k]) != NULL;
        if (skipped) continue;
        double d2 = 0, n2 = 0, maxabs = 0;
        for (size_t k = 0; k < t->numel; k++) {
            double x = a.params[t->offset + k], y = b.params[t->offset + k], d = fabs(x - y);
            d2 += d * d;
            n2 += x * x;
            if (d > maxabs || isnan(d)) maxabs = d;
        }
        double rel = n2 > 0 ? sqrt(d2 / n2) : sqrt(d2);
        if (isnan(rel)) rel = INFINITY;
        if (rel > worst || (rel == worst && worst == 0 && i == 0)) {
            worst = rel;
            worst_name = t->name;
        }
        if (rel > tol) printf("  %-40s max |a-b| %.3e  rel %.3e  > tol\n", t->name, maxabs, rel);
    }
    printf("ckpt diff: step %lld vs %lld, %d tensors, worst relative difference %.3e (%s), tol %.1e: %s\n",
           (long long)a.step, (long long)b.step, lay.n_tensors, worst, worst_name, tol,
           worst <= tol ? "same" : "DIFFERENT");
    rc = worst <= tol ? 0 : 1;
done:
    tg_gpt2_layout_free(&lay);
    tg_ckpt_state_free(&a);
    tg_ckpt_state_free(&b);
    return rc;
}
