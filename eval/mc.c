/* eval/mc.c — see mc.h. */
#include "eval/mc.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint32_t *ctx;
    size_t n_ctx;
    int n_end, label;
    uint32_t **end;
    size_t *n_endtok;
} mc_item;

struct tg_mc_set {
    mc_item *items;
    int n;
};

int tg_mc_n_items(const tg_mc_set *s) { return s->n; }

size_t tg_mc_max_tokens(const tg_mc_set *s) {
    size_t m = 0;
    for (int i = 0; i < s->n; i++)
        for (int k = 0; k < s->items[i].n_end; k++)
            if (s->items[i].n_ctx + s->items[i].n_endtok[k] > m) m = s->items[i].n_ctx + s->items[i].n_endtok[k];
    return m;
}

void tg_mc_free(tg_mc_set *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        mc_item *it = &s->items[i];
        free(it->ctx);
        for (int j = 0; j < it->n_end; j++) free(it->end ? it->end[j] : NULL);
        free(it->end);
        free(it->n_endtok);
    }
    free(s->items);
    free(s);
}

/* Tokenizes one parsed line into *it (zeroed by the caller). */
static tg_status item_make(mc_item *it, json_t *j, const tg_tokenizer *tok, const char *path, long line,
                           tg_error *err) {
    tg_status st = TG_OK;
    tg_tokens t = {0};
    char *buf = NULL;
    json_t *ctx = json_object_get(j, "ctx"), *ends = json_object_get(j, "endings"),
           *label = json_object_get(j, "label");
    if (!json_is_string(ctx)) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: no string \"ctx\"", path, line);
    if (!json_is_array(ends) || json_array_size(ends) < 2)
        TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: \"endings\" must be an array of at least 2 strings", path, line);
    if (!json_is_integer(label) || json_integer_value(label) < 0 ||
        json_integer_value(label) >= (json_int_t)json_array_size(ends))
        TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: \"label\" must be an integer index into \"endings\" (0..%zu)", path,
                line, json_array_size(ends) - 1);
    it->label = (int)json_integer_value(label);
    TG_TRY(tg_tokenizer_encode(tok, (const uint8_t *)json_string_value(ctx), json_string_length(ctx), &t, err));
    it->ctx = t.ids;
    it->n_ctx = t.n;
    t = (tg_tokens){0};
    it->n_end = (int)json_array_size(ends);
    it->end = calloc((size_t)it->n_end, sizeof *it->end);
    it->n_endtok = calloc((size_t)it->n_end, sizeof *it->n_endtok);
    TG_CHECK_ALLOC(err, it->end);
    TG_CHECK_ALLOC(err, it->n_endtok);
    for (int k = 0; k < it->n_end; k++) {
        json_t *e = json_array_get(ends, (size_t)k);
        if (!json_is_string(e)) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: ending %d is not a string", path, line, k);
        size_t n = json_string_length(e);
        buf = malloc(n + 1);
        TG_CHECK_ALLOC(err, buf);
        buf[0] = ' '; /* the ending continues the context after a space, as llm.c tokenizes it */
        memcpy(buf + 1, json_string_value(e), n);
        TG_TRY(tg_tokenizer_encode(tok, (const uint8_t *)buf, n + 1, &t, err));
        free(buf);
        buf = NULL;
        it->end[k] = t.ids;
        it->n_endtok[k] = t.n;
        t = (tg_tokens){0};
    }
cleanup:
    free(buf);
    tg_tokens_free(&t);
    return st;
}

tg_status tg_mc_load(tg_mc_set **out, const char *path, const tg_tokenizer *tok, tg_error *err) {
    tg_status st = TG_OK;
    tg_mc_set *s = NULL;
    char *line = NULL;
    size_t cap = 0;
    json_t *j = NULL;
    int items_cap = 0;
    FILE *f = fopen(path, "rb");
    if (!f) TG_FAIL(err, TG_ERR_IO, "%s: cannot open the tasks file", path);
    s = calloc(1, sizeof *s);
    TG_CHECK_ALLOC(err, s);
    long ln = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        ln++;
        if (strspn(line, " \t\r\n") == (size_t)len) continue;
        json_error_t je;
        j = json_loadb(line, (size_t)len, 0, &je);
        if (!j) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: not JSON (%s)", path, ln, je.text);
        if (!json_is_object(j)) TG_FAIL(err, TG_ERR_FORMAT, "%s:%ld: not a JSON object", path, ln);
        if (s->n == items_cap) {
            int nc = items_cap ? 2 * items_cap : 64;
            mc_item *ni = realloc(s->items, (size_t)nc * sizeof *ni);
            TG_CHECK_ALLOC(err, ni);
            s->items = ni;
            items_cap = nc;
        }
        memset(&s->items[s->n], 0, sizeof s->items[s->n]);
        s->n++;
        TG_TRY(item_make(&s->items[s->n - 1], j, tok, path, ln, err));
        json_decref(j);
        j = NULL;
    }
    if (ferror(f)) TG_FAIL(err, TG_ERR_IO, "%s: read error", path);
    if (s->n == 0) TG_FAIL(err, TG_ERR_FORMAT, "%s: no items", path);
    *out = s;
    s = NULL;
cleanup:
    json_decref(j);
    free(line);
    if (f) fclose(f);
    tg_mc_free(s);
    return st;
}

tg_status tg_mc_score(const tg_mc_set *s, tg_model *m, int rank, int world, tg_mc_counts *c, FILE *per_item,
                      tg_error *err) {
    tg_status st = TG_OK;
    const int T = tg_model_opts(m)->T;
    int32_t *in = malloc((size_t)T * sizeof *in), *tg = malloc((size_t)T * sizeof *tg);
    double *sum = NULL;
    TG_CHECK_ALLOC(err, in);
    TG_CHECK_ALLOC(err, tg);
    for (int i = rank; i < s->n; i += world) {
        const mc_item *it = &s->items[i];
        free(sum);
        sum = malloc((size_t)it->n_end * sizeof *sum);
        TG_CHECK_ALLOC(err, sum);
        int best = 0, best_norm = 0;
        for (int k = 0; k < it->n_end; k++) {
            size_t ne = it->n_endtok[k];
            if (ne == 0 || it->n_ctx == 0)
                TG_FAIL(err, TG_ERR_DATA, "item %d: empty context or ending %d after tokenization", i, k);
            if (ne > (size_t)T)
                TG_FAIL(err, TG_ERR_DATA, "item %d: ending %d has %zu tokens, more than the model's T=%d", i, k,
                        ne, T);
            /* the sequence ctx ++ ending, the last T+1 tokens of it */
            size_t L = it->n_ctx + ne, skip = L > (size_t)T + 1 ? L - ((size_t)T + 1) : 0;
            size_t n_in = L - 1 - skip;
            for (size_t p = 0; p < (size_t)T; p++) {
                size_t q = p + skip; /* position in the full sequence */
                in[p] = p < n_in ? (int32_t)(q < it->n_ctx ? it->ctx[q] : it->end[k][q - it->n_ctx]) : 0;
                /* the target of q is token q+1: scored when it belongs to the ending */
                tg[p] = p < n_in && q + 1 >= it->n_ctx ? (int32_t)it->end[k][q + 1 - it->n_ctx] : -1;
            }
            float mean;
            TG_TRY(tg_model_forward(m, in, tg, 1, err));
            TG_TRY(tg_model_loss(m, &mean, err));
            sum[k] = -(double)mean * (double)ne;
            if (sum[k] > sum[best]) best = k;
            if (sum[k] / (double)ne > sum[best_norm] / (double)it->n_endtok[best_norm]) best_norm = k;
        }
        c->n_items += 1;
        c->n_correct += best == it->label;
        c->n_correct_norm += best_norm == it->label;
        if (per_item) {
            fprintf(per_item, "{\"item\": %d, \"label\": %d, \"pred\": %d, \"pred_norm\": %d, \"logprob_sum\": [", i,
                    it->label, best, best_norm);
            for (int k = 0; k < it->n_end; k++) fprintf(per_item, "%s%.9g", k ? ", " : "", sum[k]);
            fputs("], \"n_tokens\": [", per_item);
            for (int k = 0; k < it->n_end; k++) fprintf(per_item, "%s%zu", k ? ", " : "", it->n_endtok[k]);
            fputs("]}\n", per_item);
        }
    }
cleanup:
    free(sum);
    free(in);
    free(tg);
    return st;
}
