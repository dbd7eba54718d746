/* eval/mc.h — multiple-choice scoring in the HellaSwag JSONL layout (llm.c's dev/data/hellaswag.py,
 * lm-evaluation-harness): one JSON object per line with "ctx" (string), "endings" (array of >= 2
 * strings) and "label" (index of the right ending); other fields are ignored.
 *
 * An ending is tokenized as " " + ending after the tokens of ctx (as llm.c does). Its score is the
 * sum of log p(token | everything before) over the ending's tokens, from one forward with targets
 * on those tokens only. acc takes the ending with the largest sum; acc_norm the largest mean per
 * token (llm.c's normalisation; lm-eval's acc_norm divides by the ending's bytes instead). A
 * sequence longer than the model's T + 1 loses tokens from the left of its context. */
#ifndef TG_EVAL_MC_H
#define TG_EVAL_MC_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"
#include "data/tokenizer.h"
#include "model/model.h"

typedef struct tg_mc_set tg_mc_set;

/* Reads and tokenizes the items of a JSONL file (empty lines skipped). Errors name the file and
 * line: not JSON, a missing or mistyped field, a label outside the endings, no items at all. */
tg_status tg_mc_load(tg_mc_set **out, const char *path, const tg_tokenizer *tok, tg_error *err);
void tg_mc_free(tg_mc_set *s);
int tg_mc_n_items(const tg_mc_set *s);
/* Longest context + ending in tokens (a model T of this minus one scores every item whole). */
size_t tg_mc_max_tokens(const tg_mc_set *s);

typedef struct {
    double n_items, n_correct, n_correct_norm; /* doubles: summed over ranks by an all-reduce */
} tg_mc_counts;

/* Scores the items i with i % world == rank with m (CPU or CUDA, any B >= 1; row 0 is used; its
 * activations are overwritten) and adds them to *c. per_item (may be NULL) receives one JSON line
 * per item: {"item", "label", "pred", "pred_norm", "logprob_sum": [...], "n_tokens": [...]}. */
tg_status tg_mc_score(const tg_mc_set *s, tg_model *m, int rank, int world, tg_mc_counts *c, FILE *per_item,
                      tg_error *err);

#endif
