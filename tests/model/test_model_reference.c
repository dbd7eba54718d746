/* The CPU backend's forward against a naive double-precision GPT-2 written straight from the
 * Hugging Face definition, reading the parameters by their HF names: token + position
 * embeddings; per block x += c_proj(attn(ln_1(x))), x += mlp(ln_2(x)) with c_attn columns
 * split q|k|v and heads as consecutive hs-wide slices; ln_f; logits = x @ wte^T. This pins the
 * layout semantics (which the gradient check cannot: it only checks self-consistency). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model_test_util.h"

enum { L = 2, NH = 2, C = 16, T = 7, V = 37, B = 2 };

static const float *P; /* the flat parameters */
static const tg_gpt2_layout *LAY;

static const float *w(const char *fmt, int l) {
    char name[TG_GPT2_MAX_NAME];
    snprintf(name, sizeof name, fmt, l);
    const int i = tg_gpt2_layout_find(LAY, name);
    if (i < 0) CHECKF(0, "no tensor %s", name); /* counts only failures: called very often */
    return P + LAY->tensors[i >= 0 ? i : 0].offset;
}

static void ref_layernorm(double *out, const double *x, const float *g, const float *b) {
    double m = 0.0, v = 0.0;
    for (int c = 0; c < C; c++) m += x[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    v /= C;
    for (int c = 0; c < C; c++) out[c] = (x[c] - m) / sqrt(v + 1e-5) * g[c] + b[c];
}

/* y (n_out) = x (n_in) @ W (n_in, n_out) + bias — HF Conv1D */
static void ref_conv1d(double *y, const double *x, const float *W, const float *bias, int n_in,
                       int n_out) {
    for (int o = 0; o < n_out; o++) {
        double s = bias[o];
        for (int i = 0; i < n_in; i++) s += x[i] * W[(size_t)i * n_out + o];
        y[o] = s;
    }
}

/* logits (T, Vp) for one row of tokens */
static void ref_forward(double *logits, const int32_t *tok, int Vp) {
    static double x[T][C], h[T][C], qkv[T][3 * C], y[T][C], f[T][4 * C], tmp[4 * C];
    const int hs = C / NH;
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++)
            x[t][c] = w("transformer.wte.weight", 0)[(size_t)tok[t] * C + c] +
                      w("transformer.wpe.weight", 0)[(size_t)t * C + c];
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < T; t++) {
            ref_layernorm(h[t], x[t], w("transformer.h.%d.ln_1.weight", l),
                          w("transformer.h.%d.ln_1.bias", l));
            ref_conv1d(qkv[t], h[t], w("transformer.h.%d.attn.c_attn.weight", l),
                       w("transformer.h.%d.attn.c_attn.bias", l), C, 3 * C);
        }
        for (int hd = 0; hd < NH; hd++) {
            for (int t = 0; t < T; t++) {
                double s[T], mx = -INFINITY, z = 0.0;
                for (int u = 0; u <= t; u++) {
                    s[u] = 0.0;
                    for (int i = 0; i < hs; i++) s[u] += qkv[t][hd * hs + i] * qkv[u][C + hd * hs + i];
                    s[u] /= sqrt((double)hs);
                    mx = fmax(mx, s[u]);
                }
                for (int u = 0; u <= t; u++) z += (s[u] = exp(s[u] - mx));
                for (int i = 0; i < hs; i++) {
                    double acc = 0.0;
                    for (int u = 0; u <= t; u++) acc += s[u] / z * qkv[u][2 * C + hd * hs + i];
                    y[t][hd * hs + i] = acc;
                }
            }
        }
        for (int t = 0; t < T; t++) {
            ref_conv1d(tmp, y[t], w("transformer.h.%d.attn.c_proj.weight", l),
                       w("transformer.h.%d.attn.c_proj.bias", l), C, C);
            for (int c = 0; c < C; c++) x[t][c] += tmp[c];
            ref_layernorm(h[t], x[t], w("transformer.h.%d.ln_2.weight", l),
                          w("transformer.h.%d.ln_2.bias", l));
            ref_conv1d(f[t], h[t], w("transformer.h.%d.mlp.c_fc.weight", l),
                       w("transformer.h.%d.mlp.c_fc.bias", l), C, 4 * C);
            for (int j = 0; j < 4 * C; j++) {
                const double a = f[t][j];
                f[t][j] = 0.5 * a * (1.0 + tanh(sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a)));
            }
            ref_conv1d(tmp, f[t], w("transformer.h.%d.mlp.c_proj.weight", l),
                       w("transformer.h.%d.mlp.c_proj.bias", l), 4 * C, C);
            for (int c = 0; c < C; c++) x[t][c] += tmp[c];
        }
    }
    for (int t = 0; t < T; t++) {
        ref_layernorm(h[t], x[t], w("transformer.ln_f.weight", 0), w("transformer.ln_f.bias", 0));
        for (int v = 0; v < Vp; v++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += h[t][c] * w("transformer.wte.weight", 0)[(size_t)v * C + c];
            logits[(size_t)t * Vp + v] = s;
        }
    }
}

int main(void) {
    tg_error err = {0};
    tg_model *m = mt_model_new(L, NH, C, T, V, B, 1, 81);
    if (!m) TEST_MAIN_END();
    LAY = tg_model_layout(m);
    const int Vp = LAY->cfg.padded_vocab_size;
    /* Large random parameters (every nonlinearity well exercised), padded wte rows included. */
    float *p = mt_floats(LAY->n_params);
    tg_rng r;
    tg_rng_init(&r, 82);
    for (size_t i = 0; i < LAY->n_params; i++) p[i] = 0.3f * tg_rng_normal(&r);
    CHECK_OK(tg_model_params_set(m, p, &err), &err);
    P = p;

    int32_t in[B * T], tgt[B * T];
    mt_tokens(in, B * T, V, 83);
    mt_tokens(tgt, B * T, V, 84);
    tgt[4] = -1;
    float *logits = mt_floats((size_t)B * T * Vp), loss = NAN;
    double *ref = malloc((size_t)T * Vp * sizeof *ref);
    CHECK_OK(tg_model_forward(m, in, tgt, B, &err), &err);
    CHECK_OK(tg_model_loss(m, &loss, &err), &err);
    CHECK_OK(tg_model_logits_get(m, logits, &err), &err);

    double dmax = 0.0, lmax = 0.0, loss_sum = 0.0;
    int n_valid = 0;
    for (int b = 0; b < B; b++) {
        ref_forward(ref, in + b * T, Vp);
        for (int t = 0; t < T; t++) {
            const double *z = ref + (size_t)t * Vp;
            for (int v = 0; v < Vp; v++) {
                dmax = fmax(dmax, fabs(z[v] - logits[((size_t)b * T + t) * Vp + v]));
                lmax = fmax(lmax, fabs(z[v]));
            }
            const int y = tgt[b * T + t];
            if (y < 0) continue;
            double mx = -INFINITY, s = 0.0;
            for (int v = 0; v < V; v++) mx = fmax(mx, z[v]);
            for (int v = 0; v < V; v++) s += exp(z[v] - mx);
            loss_sum += mx + log(s) - z[y];
            n_valid++;
        }
    }
    const double ref_loss = loss_sum / n_valid;
    printf("logits: max |ref| %.3f, max |cpu - ref| %.3e; loss cpu %.6f ref %.6f\n", lmax, dmax,
           loss, ref_loss);
    CHECK(lmax > 1.0);
    CHECKF(dmax <= 1e-4 * lmax, "logits differ by %.3e", dmax);
    CHECKF(fabs(loss - ref_loss) <= 1e-5 * fabs(ref_loss), "loss %.7f vs %.7f", loss, ref_loss);
    free(p);
    free(ref);
    free(logits);
    tg_model_free(m);
    TEST_MAIN_END();
}
