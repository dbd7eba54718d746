/* tests/interop/logits_driver.c — truthgpt's side of the transformers comparisons (hf_e2e.py).
 *   logits_driver CKPT TOKENS OUT      TOKENS: "B T" then B*T ids; OUT (binary, fp32): the mean
 *                                      loss with HF's labels=input_ids targets (the next token;
 *                                      the last position has none), then the logits (B, T, V)
 *                                      of the real vocabulary
 *   logits_driver CKPT --greedy N ID...   prints N greedy (argmax) continuations of the prompt
 *   logits_driver CKPT --greedy-cache N ID...   the same through the KV-cache decoder (decode.h) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckpt/ckpt.h"
#include "model/decode.h"
#include "model/model.h"

static int fail(const char *what, const tg_error *err) {
    fprintf(stderr, "logits_driver: %s: %s\n", what, err->msg);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: logits_driver CKPT TOKENS OUT | CKPT --greedy N ID...\n");
        return 2;
    }
    tg_error err = {0};
    tg_ckpt_state s = {0};
    if (tg_ckpt_load(argv[1], &s, &err) != TG_OK) return fail("load", &err);
    const int V = s.model_cfg.vocab_size, Vp = s.model_cfg.padded_vocab_size;
    const int cache = strcmp(argv[2], "--greedy-cache") == 0, greedy = cache || strcmp(argv[2], "--greedy") == 0;
    int B = 1, T = 0, n_new = 0;
    int32_t *in = NULL;
    if (greedy) {
        n_new = atoi(argv[3]);
        int P = argc - 4;
        T = P + n_new;
        if (T > s.model_cfg.max_seq_len) T = s.model_cfg.max_seq_len;
        in = calloc((size_t)T, sizeof *in);
        for (int i = 0; i < P && i < T; i++) in[i] = atoi(argv[4 + i]);
    } else {
        FILE *f = fopen(argv[2], "r");
        if (!f || fscanf(f, "%d %d", &B, &T) != 2) return 1;
        in = calloc((size_t)B * T, sizeof *in);
        for (int i = 0; i < B * T; i++)
            if (fscanf(f, "%d", &in[i]) != 1) return 1;
        fclose(f);
    }
    tg_model_options opt = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = 1};
    tg_model *m = NULL;
    if (tg_model_init(&m, &s.model_cfg, &opt, &err) != TG_OK) return fail("model", &err);
    if (tg_model_params_set(m, s.params, &err) != TG_OK) return fail("params", &err);
    float *logits = malloc((size_t)B * T * Vp * sizeof *logits);
    if (cache) {
        tg_decoder *d = NULL;
        int len = argc - 4;
        if (tg_decoder_init(&d, m, &err) != TG_OK) return fail("decoder", &err);
        if (tg_decoder_append(d, in, len, logits, &err) != TG_OK) return fail("append", &err);
        for (int k = 0; k < n_new && len < T; k++) {
            int32_t best = 0;
            for (int v = 1; v < V; v++)
                if (logits[v] > logits[best]) best = v;
            in[len++] = best;
            printf("%d%c", (int)best, k + 1 < n_new ? ' ' : '\n');
            if (k + 1 < n_new && tg_decoder_append(d, &best, 1, logits, &err) != TG_OK) return fail("append", &err);
        }
        tg_decoder_free(d);
    } else if (greedy) {
        int len = argc - 4;
        for (int k = 0; k < n_new && len < T; k++) {
            if (tg_model_forward(m, in, NULL, 1, &err) != TG_OK) return fail("forward", &err);
            if (tg_model_logits_get(m, logits, &err) != TG_OK) return fail("logits", &err);
            const float *row = logits + (size_t)(len - 1) * Vp;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (row[v] > row[best]) best = v;
            in[len++] = best;
            printf("%d%c", best, k + 1 < n_new ? ' ' : '\n');
        }
    } else {
        int32_t *tg = malloc((size_t)B * T * sizeof *tg);
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) tg[b * T + t] = t + 1 < T ? in[b * T + t + 1] : -1;
        float loss;
        if (tg_model_forward(m, in, tg, B, &err) != TG_OK) return fail("forward", &err);
        if (tg_model_loss(m, &loss, &err) != TG_OK) return fail("loss", &err);
        if (tg_model_logits_get(m, logits, &err) != TG_OK) return fail("logits", &err);
        FILE *o = fopen(argv[3], "wb");
        if (!o) return 1;
        fwrite(&loss, 4, 1, o);
        for (int r = 0; r < B * T; r++) fwrite(logits + (size_t)r * Vp, 4, (size_t)V, o);
        fclose(o);
        free(tg);
    }
    free(logits);
    free(in);
    tg_model_free(m);
    tg_ckpt_state_free(&s);
    return 0;
}
