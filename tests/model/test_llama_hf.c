/* HF parity: loads a case written by llama_hf_case.py (a random LlamaForCausalLM and its fp32
 * logits and loss) into truthgpt's Llama CPU model and compares: logits within 1e-5 relative to
 * the logits' RMS (max over all elements), the loss within 1e-5 relative.
 * Usage: test_llama_hf CASE.bin... */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "tg_test.h"

static int read_all(FILE *f, void *p, size_t size, size_t n) { return fread(p, size, n, f) == n; }

static void check_case(const char *path) {
    tg_error err = {0};
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    if (!f) return;
    int32_t h[10];
    double hd[2];
    tg_model *m = NULL;
    int32_t *in = NULL, *tgt = NULL;
    float *params = NULL, *want = NULL, *got = NULL;
    CHECK(read_all(f, h, sizeof h[0], 10) && (h[0] == 0x4C4C4D41 || h[0] == 0x4C4C4D42) &&
          read_all(f, hd, sizeof hd[0], 2));
    const int V = h[1], C = h[2], F = h[3], L = h[4], NH = h[5], NKV = h[6], T = h[7], B = h[8], tied = h[9];
    tg_gpt2_config cfg = {.max_seq_len = T, .vocab_size = V, .n_layer = L, .n_head = NH, .n_embd = C,
                          .arch = TG_MODEL_ARCH_LLAMA, .n_kv_head = NKV, .ffn_dim = F, .rope_theta = hd[0],
                          .norm_eps = hd[1], .tie_embeddings = tied};
    if (h[0] == 0x4C4C4D42) { /* Llama 3's RoPE scaling */
        double rs[3];
        int32_t orig = 0;
        CHECK(read_all(f, rs, sizeof rs[0], 3) && read_all(f, &orig, sizeof orig, 1));
        cfg.rope_factor = rs[0], cfg.rope_low_freq_factor = rs[1], cfg.rope_high_freq_factor = rs[2];
        cfg.rope_original_max_pos = orig;
    }
    tg_model_options opt = {.device = TG_DEVICE_CPU, .B = B, .T = T, .pad_multiple = 1};
    CHECK_OK(tg_gpt2_config_finalize(&cfg, &err), &err);
    CHECK_OK(tg_model_init(&m, &cfg, &opt, &err), &err);
    if (!m) goto done;
    const size_t np = tg_model_layout(m)->n_params, BT = (size_t)B * T, Vp = (size_t)cfg.padded_vocab_size;
    in = malloc(BT * sizeof *in);
    tgt = malloc(BT * sizeof *tgt);
    params = malloc(np * sizeof *params);
    want = malloc(BT * V * sizeof *want);
    got = malloc(BT * Vp * sizeof *got);
    double want_loss = NAN;
    CHECK(read_all(f, in, sizeof *in, BT) && read_all(f, tgt, sizeof *tgt, BT) &&
          read_all(f, params, sizeof *params, np) && read_all(f, want, sizeof *want, BT * V) &&
          read_all(f, &want_loss, sizeof want_loss, 1) && fgetc(f) == EOF);
    CHECK_OK(tg_model_params_set(m, params, &err), &err);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    float loss = NAN;
    CHECK_OK(tg_model_loss(m, &loss, &err), &err);
    CHECK_OK(tg_model_logits_get(m, got, &err), &err);
    double ss = 0.0, sd = 0.0, maxd = 0.0;
    for (size_t r = 0; r < BT; r++)
        for (int v = 0; v < V; v++) {
            const double a = want[r * V + v], b = got[r * Vp + v];
            ss += a * a;
            sd += (a - b) * (a - b);
            maxd = fmax(maxd, fabs(a - b));
        }
    /* Relative error ||got - want|| / ||want|| (the 1e-5), and the worst single logit
     * against the logits' RMS, bounded looser: fp32 sums in another order differ by a few ulps. */
    const double rms = sqrt(ss / (double)(BT * V)), rel_max = maxd / rms, rel_logits = sqrt(sd / ss);
    const double rel_loss = fabs((double)loss - want_loss) / fabs(want_loss);
    printf("%s: L=%d C=%d NH=%d NKV=%d F=%d T=%d tied=%d rope_factor=%g: logits rel %.2e, max |dlogit|/rms = %.2e, loss %.7f vs HF "
           "%.7f (rel %.2e)\n",
           path, L, C, NH, NKV, F, T, tied, cfg.rope_factor, rel_logits, rel_max, loss, want_loss, rel_loss);
    CHECKF(rel_logits <= 1e-5, "logits differ: relative error %.3e", rel_logits);
    CHECKF(rel_max <= 1e-4, "a logit differs: %.3e of the RMS", rel_max);
    CHECKF(rel_loss <= 1e-5, "loss differs: %.3e", rel_loss);
done:
    fclose(f);
    free(in);
    free(tgt);
    free(params);
    free(want);
    free(got);
    tg_model_free(m);
}

int main(int argc, char **argv) {
    CHECKF(argc > 1, "usage: test_llama_hf CASE.bin...");
    for (int i = 1; i < argc; i++) check_case(argv[i]);
    TEST_MAIN_END();
}
