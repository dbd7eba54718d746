/* model/cuda/gpt2_cuda_staging.cu — the CUDA backend's host side of its data (gpt2_cuda.cuh):
 * the pinned staging memory, the upload of each forward's tokens, and the copies of parameters,
 * gradients and optimizer state between host fp32 and the device. bf16 conversions run on the
 * host in TG_CUDA_CHUNK_ELEMS pieces through one pinned buffer, so a copy of any size needs no
 * device scratch memory and no second full-size host buffer. */
#include <stdlib.h>
#include <string.h>

#include "model/cuda/gpt2_cuda.cuh"

size_t cuda_io_ints(const cuda_impl *p) { return 5 * (size_t)p->B * p->T + 1; }

tg_status cuda_staging_init(cuda_impl *p, tg_error *err) {
    tg_status st = TG_OK;
    const size_t BT = (size_t)p->B * p->T;
    const size_t h_bytes = cuda_io_ints(p) * 4 + BT * 4 + TG_CUDA_NORM_BLOCKS * 8 + TG_CUDA_CHUNK_ELEMS * 4 + 4 * 64;
    size_t off = 0;
    TG_CUDA_CHECK(err, cudaMallocHost(&p->h_mem, h_bytes));
    p->h_io = (int32_t *)(p->h_mem + off);
    off += (cuda_io_ints(p) * 4 + 63) / 64 * 64;
    p->h_losses = (float *)(p->h_mem + off);
    off += (BT * 4 + 63) / 64 * 64;
    p->h_norm = (double *)(p->h_mem + off);
    off += TG_CUDA_NORM_BLOCKS * 8;
    p->h_chunk = p->h_mem + off;
    p->h_count = (int *)calloc((size_t)p->V, sizeof(int));
    TG_CHECK_ALLOC(err, p->h_count);
cleanup:
    return st;
}

void cuda_staging_free(cuda_impl *p) {
    if (p->h_mem) cudaFreeHost(p->h_mem);
    free(p->h_count);
    p->h_mem = NULL;
    p->h_count = NULL;
}

/* Groups the positions of each distinct token for the deterministic wte backward:
 * uniq[k] ascending, positions pos[seg[k] .. seg[k+1]) ascending. Returns the count. */
static int bucket_tokens(cuda_impl *p, const int32_t *tokens, int N, int32_t *uniq, int32_t *seg,
                         int32_t *pos) {
    int *cnt = p->h_count, k = 0, off = 0;
    memset(cnt, 0, (size_t)p->V * sizeof *cnt);
    for (int i = 0; i < N; i++) cnt[tokens[i]]++;
    for (int v = 0; v < p->V; v++) {
        if (!cnt[v]) continue;
        uniq[k] = v;
        seg[k] = off;
        off += cnt[v];
        cnt[v] = seg[k]; /* now the write cursor of token v */
        k++;
    }
    seg[k] = off;
    for (int i = 0; i < N; i++) pos[cnt[tokens[i]]++] = i;
    return k;
}

tg_status cuda_inputs_check(const cuda_impl *p, const int32_t *inputs, const int32_t *targets, int N,
                            tg_error *err) {
    tg_status st = TG_OK;
    const int V = p->V;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            TG_FAIL(err, TG_ERR_DATA, "model: input token %d at %d outside [0, %d)", (int)inputs[i], i, V);
        if (targets && (targets[i] < -1 || targets[i] >= V))
            TG_FAIL(err, TG_ERR_DATA, "model: target %d at %d outside [-1, %d)", (int)targets[i], i, V);
    }
cleanup:
    return st;
}

tg_status cuda_stage_inputs(cuda_impl *p, const int32_t *inputs, const int32_t *targets, int N, tg_error *err) {
    tg_status st = TG_OK;
    const size_t BT = (size_t)p->B * p->T;
    int32_t *h_tok = p->h_io, *h_tgt = p->h_io + BT;
    /* The staging area may still be read by the previous upload (only if the host runs ahead). */
    TG_CUDA_CHECK(err, cudaEventSynchronize(p->ev_upload));
    memcpy(h_tok, inputs, (size_t)N * sizeof *inputs);
    p->n_valid = 0;
    p->n_uniq = 0;
    if (targets) {
        memcpy(h_tgt, targets, (size_t)N * sizeof *targets);
        for (int i = 0; i < N; i++) p->n_valid += targets[i] >= 0;
        p->n_uniq = bucket_tokens(p, inputs, N, p->h_io + 2 * BT, p->h_io + 3 * BT, p->h_io + 4 * BT + 1);
    }
    prof_mark(p, P_OTHER);
    TG_CUDA_CHECK(err, cudaMemcpyAsync(p->d_io, p->h_io, cuda_io_ints(p) * sizeof(int32_t),
                                       cudaMemcpyHostToDevice, p->stream));
    TG_CUDA_CHECK(err, cudaEventRecord(p->ev_upload, p->stream));
cleanup:
    return st;
}

/* dev (X) [0, n) <- host fp32 */
static tg_status upload_params(cuda_impl *p, void *dev, const float *host, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    tg_bf16 *stage = (tg_bf16 *)p->h_chunk;
    if (!p->bf16) {
        TG_CUDA_CHECK(err, cudaMemcpyAsync(dev, host, n * sizeof(float), cudaMemcpyHostToDevice, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        goto cleanup;
    }
    for (size_t i0 = 0; i0 < n; i0 += TG_CUDA_CHUNK_ELEMS) {
        const size_t k = n - i0 < TG_CUDA_CHUNK_ELEMS ? n - i0 : TG_CUDA_CHUNK_ELEMS;
        for (size_t i = 0; i < k; i++) stage[i] = __float2bfloat16_rn(host[i0 + i]);
        TG_CUDA_CHECK(err, cudaMemcpyAsync((tg_bf16 *)dev + i0, stage, k * sizeof(tg_bf16),
                                           cudaMemcpyHostToDevice, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream)); /* before stage is refilled */
    }
cleanup:
    return st;
}

tg_status cuda_download_x(cuda_impl *p, float *host, const void *dev, size_t n, tg_error *err) {
    tg_status st = TG_OK;
    const tg_bf16 *stage = (const tg_bf16 *)p->h_chunk;
    if (!p->bf16) {
        TG_CUDA_CHECK(err, cudaMemcpyAsync(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        goto cleanup;
    }
    for (size_t i0 = 0; i0 < n; i0 += TG_CUDA_CHUNK_ELEMS) {
        const size_t k = n - i0 < TG_CUDA_CHUNK_ELEMS ? n - i0 : TG_CUDA_CHUNK_ELEMS;
        TG_CUDA_CHECK(err, cudaMemcpyAsync(p->h_chunk, (const tg_bf16 *)dev + i0, k * sizeof(tg_bf16),
                                           cudaMemcpyDeviceToHost, p->stream));
        TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
        for (size_t i = 0; i < k; i++) host[i0 + i] = __bfloat162float(stage[i]);
    }
cleanup:
    return st;
}

static tg_status copy_f32(cuda_impl *p, void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                          tg_error *err) {
    tg_status st = TG_OK;
    if (n == 0) goto cleanup;
    TG_CUDA_CHECK(err, cudaMemcpyAsync(dst, src, n * sizeof(float), kind, p->stream));
    TG_CUDA_CHECK(err, cudaStreamSynchronize(p->stream));
cleanup:
    return st;
}

/* Elements of the master shard that are real parameters: [opt_lo, min(opt_hi, n_params)). */
static size_t master_real(const tg_model *m, const cuda_impl *p) {
    const size_t hi = p->opt_hi < m->lay.n_params ? p->opt_hi : m->lay.n_params;
    return hi > p->opt_lo ? hi - p->opt_lo : 0;
}

tg_status cuda_params_set(tg_model *m, const float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(upload_params(p, p->params, host, m->lay.n_params, err));
    if (p->master)
        TG_TRY(copy_f32(p, p->master, host + p->opt_lo, master_real(m, p), cudaMemcpyHostToDevice, err));
cleanup:
    return st;
}

tg_status cuda_params_get(tg_model *m, float *host, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    TG_TRY(cuda_download_x(p, host, p->params, m->lay.n_params, err));
    if (p->master)
        TG_TRY(copy_f32(p, host + p->opt_lo, p->master, master_real(m, p), cudaMemcpyDeviceToHost, err));
cleanup:
    return st;
}

tg_status cuda_grads_get(tg_model *m, float *host, tg_error *err) {
    cuda_impl *p = (cuda_impl *)m->impl;
    return copy_f32(p, host, p->grads, m->lay.n_params, cudaMemcpyDeviceToHost, err);
}

tg_status cuda_opt_get(tg_model *m, float *mom, float *var, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = p->opt_hi - p->opt_lo;
    if (!p->opt_ready) TG_FAIL(err, TG_ERR_ARG, "model: opt_get before opt_init");
    TG_TRY(copy_f32(p, mom, p->opt_m, n, cudaMemcpyDeviceToHost, err));
    TG_TRY(copy_f32(p, var, p->opt_v, n, cudaMemcpyDeviceToHost, err));
cleanup:
    return st;
}

tg_status cuda_opt_set(tg_model *m, const float *mom, const float *var, tg_error *err) {
    tg_status st = TG_OK;
    cuda_impl *p = (cuda_impl *)m->impl;
    const size_t n = p->opt_hi - p->opt_lo;
    if (!p->opt_ready) TG_FAIL(err, TG_ERR_ARG, "model: opt_set before opt_init");
    TG_TRY(copy_f32(p, p->opt_m, mom, n, cudaMemcpyHostToDevice, err));
    TG_TRY(copy_f32(p, p->opt_v, var, n, cudaMemcpyHostToDevice, err));
cleanup:
    return st;
}
