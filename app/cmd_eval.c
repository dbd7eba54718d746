/* app/cmd_eval.c — `truthgpt eval`: multiple-choice accuracy of a checkpoint (eval/mc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/ckpt_tokenizer.h"
#include "app/cmds.h"
#include "ckpt/ckpt.h"
#include "core/log.h"
#include "data/tokenizer.h"
#include "eval/mc.h"
#include "model/model.h"

static void eval_usage(void) {
    fprintf(stderr,
            "usage: truthgpt eval FILE --tasks TASKS.jsonl [--tokenizer FILE] [--device cpu|cuda]\n"
            "                     [--per-item OUT.jsonl]\n"
            "  Multiple-choice accuracy in the HellaSwag JSONL layout ({\"ctx\", \"endings\", \"label\"}\n"
            "  per line). An ending scores the sum of its tokens' log-probabilities after the context:\n"
            "  acc picks the largest sum, acc_norm the largest mean per token (llm.c's convention).\n"
            "  --per-item writes each item's sums and token counts. The tokenizer defaults to the file\n"
            "  recorded in the checkpoint.\n");
}

int tg_cmd_eval(int argc, char **argv) {
    tg_status st = TG_OK;
    tg_error err = {0};
    tg_log lg = {0, 1, 1};
    tg_ckpt_state ck = {0};
    tg_tokenizer *tok = NULL;
    tg_model *m = NULL;
    tg_mc_set *set = NULL;
    FILE *per = NULL;
    const char *file = NULL, *tasks = NULL, *tok_path = NULL, *device = "cpu", *per_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (strcmp(a, "--tasks") == 0 && has_val) tasks = argv[++i];
        else if (strcmp(a, "--tokenizer") == 0 && has_val) tok_path = argv[++i];
        else if (strcmp(a, "--device") == 0 && has_val) device = argv[++i];
        else if (strcmp(a, "--per-item") == 0 && has_val) per_path = argv[++i];
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            eval_usage();
            return 0;
        } else if (a[0] != '-' && !file) file = a;
        else {
            fprintf(stderr, "truthgpt eval: bad argument %s\n", a);
            eval_usage();
            return 2;
        }
    }
    if (!file || !tasks || (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)) {
        eval_usage();
        return 2;
    }
    TG_TRY(tg_ckpt_load(file, &ck, &err));
    TG_TRY(tg_app_ckpt_tokenizer(&ck, file, tok_path, &lg, &tok, &err));
    TG_TRY(tg_mc_load(&set, tasks, tok, &err));
    size_t need = tg_mc_max_tokens(set) - 1;
    tg_model_options opt = {0};
    opt.device = strcmp(device, "cuda") == 0 ? TG_DEVICE_CUDA : TG_DEVICE_CPU;
    opt.B = 1;
    opt.T = need < (size_t)ck.model_cfg.max_seq_len ? (int)need : ck.model_cfg.max_seq_len;
    opt.pad_multiple = 1;
    TG_TRY(tg_model_init(&m, &ck.model_cfg, &opt, &err));
    TG_TRY(tg_model_params_set(m, ck.master ? ck.master : ck.params, &err));
    if (per_path && !(per = fopen(per_path, "w"))) TG_FAIL(&err, TG_ERR_IO, "%s: cannot write", per_path);
    tg_mc_counts c = {0};
    TG_TRY(tg_mc_score(set, m, 0, 1, &c, per, &err));
    if (per && fclose(per) != 0) {
        per = NULL;
        TG_FAIL(&err, TG_ERR_IO, "%s: write error", per_path);
    }
    per = NULL;
    printf("items %.0f | acc %.4f (%.0f) | acc_norm %.4f (%.0f, mean log-prob per token)\n", c.n_items,
           c.n_correct / c.n_items, c.n_correct, c.n_correct_norm / c.n_items, c.n_correct_norm);
cleanup:
    if (per) fclose(per);
    if (st != TG_OK) fprintf(stderr, "error: %s\n", err.msg);
    tg_mc_free(set);
    tg_model_free(m);
    tg_tokenizer_free(tok);
    tg_ckpt_state_free(&ck);
    return st == TG_OK ? 0 : 1;
}
