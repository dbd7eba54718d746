/* model/decode.c — model/decode.h: the decoder of the model's backend (decode_backend.h) behind
 * one handle, with the checks every append needs. */
#include "model/decode.h"

#include <stdlib.h>

#include "model/decode_backend.h"

struct tg_decoder {
    const tg_decoder_ops *ops;
    void *impl;
    int T, V, len;
};

tg_status tg_decoder_init(tg_decoder **out, tg_model *m, tg_error *err) {
    tg_status st = TG_OK;
    const tg_model_options *o = tg_model_opts(m);
    *out = NULL;
    tg_decoder *d = calloc(1, sizeof *d);
    TG_CHECK_ALLOC(err, d);
    d->T = o->T;
    d->V = tg_model_layout(m)->cfg.vocab_size;
    if (o->device == TG_DEVICE_CPU) {
        TG_TRY(tg_cpu_decoder_init(&d->impl, &d->ops, m, err));
    } else {
#ifdef TG_HAVE_CUDA
        TG_TRY(tg_cuda_decoder_init(&d->impl, &d->ops, m, err));
#else
        TG_FAIL(err, TG_ERR_UNSUPPORTED, "decoder: built without CUDA");
#endif
    }
    *out = d;
    d = NULL;
cleanup:
    free(d);
    return st;
}

void tg_decoder_free(tg_decoder *d) {
    if (!d) return;
    if (d->ops) d->ops->free(d->impl);
    free(d);
}

int tg_decoder_len(const tg_decoder *d) { return d->len; }

tg_status tg_decoder_append(tg_decoder *d, const int32_t *ids, int n, float *logits, tg_error *err) {
    if (n < 1) return tg_error_set(err, TG_ERR_ARG, "decoder: nothing to append");
    if (n > d->T - d->len)
        return tg_error_set(err, TG_ERR_ARG, "decoder: %d + %d tokens exceed the model's sequence length %d", d->len,
                            n, d->T);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->V)
            return tg_error_set(err, TG_ERR_DATA, "decoder: token %d outside [0, %d)", (int)ids[i], d->V);
    tg_status st = d->ops->append(d->impl, ids, n, logits, err);
    if (st == TG_OK) d->len += n;
    return st;
}
