/* train/dp_optim.c — the data-parallel optimizer step (contract in dp_optim.h).
 *
 * Stages 2 and 3 give the model sharded storage (tg_model_shard_storage) and answer its calls
 * during forward and backward: grads_flush reduce-scatters one segment's gradient window into
 * the owners' shards (each rank adds its part to its shard: accumulation happens in the shard),
 * params_fill all-gathers one segment's parameters from the shards. A segment [lo, hi) crosses
 * the equal shards [r*S, (r+1)*S) unevenly, hence the v-collectives. */
#include "train/dp_optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tg_dp_optim {
    tg_model *model;
    tg_comm *comm;
    tg_dp_optim_options opts;
    int rank, world;
    int nccl;                  /* gradients reduced on the device by NCCL */
    size_t n_params, n_padded;
    size_t shard_lo, shard_hi; /* this rank's optimizer shard */
    float *host_params, *host_m, *host_v; /* checkpoint staging, n_padded each (made when first needed) */
    size_t *counts;            /* world entries: one segment's elements per shard (stages 2, 3), or
                                * per Muon owner range (muon) */
    size_t *muon_cut;          /* muon: world + 1 cut points; rank r owns the matrices starting in
                                * [muon_cut[r], muon_cut[r + 1]) */
};

/* Deals the Muon matrices out to the ranks (see dp_optim.h): matrix j, whose middle element is
 * the mid-th of all Muon elements in layout order, goes to rank floor(mid * world / total),
 * which never decreases along the layout, so each rank's matrices are contiguous. */
static tg_status dp_optim_muon_owners(tg_dp_optim *o, tg_error *err) {
    tg_status st = TG_OK;
    const tg_gpt2_layout *lay = tg_model_layout(o->model);
    const int W = o->world;
    o->muon_cut = calloc((size_t)W + 1, sizeof *o->muon_cut);
    if (!o->counts) o->counts = calloc((size_t)W, sizeof *o->counts);
    TG_CHECK_ALLOC(err, o->muon_cut);
    TG_CHECK_ALLOC(err, o->counts);
    double total = 0, seen = 0;
    for (int k = 0; k < lay->n_tensors; k++)
        if (tg_model_muon_tensor(&lay->tensors[k])) total += (double)lay->tensors[k].numel;
    for (int r = 1; r <= W; r++) o->muon_cut[r] = o->n_padded;
    int next = 1; /* the first rank whose cut is not yet placed */
    for (int k = 0; k < lay->n_tensors && total > 0; k++) {
        const tg_tensor_info *t = &lay->tensors[k];
        if (!tg_model_muon_tensor(t)) continue;
        int owner = (int)((seen + 0.5 * (double)t->numel) * W / total);
        if (owner > W - 1) owner = W - 1;
        for (; next <= owner; next++) o->muon_cut[next] = t->offset;
        seen += (double)t->numel;
    }
    for (int r = 0; r < W; r++) o->counts[r] = o->muon_cut[r + 1] - o->muon_cut[r];
cleanup:
    return st;
}

static tg_status dp_optim_grads_flush(void *ctx, size_t lo, size_t hi, float *win, tg_error *err);
static tg_status dp_optim_params_fill(void *ctx, size_t lo, size_t hi, float *win, tg_error *err);

/* The host staging of checkpoints and parameter init. */
static tg_status dp_optim_staging(tg_dp_optim *o, tg_error *err) {
    tg_status st = TG_OK;
    if (!o->host_params) o->host_params = calloc(o->n_padded, sizeof(float));
    if (!o->host_m) o->host_m = calloc(o->n_padded, sizeof(float));
    if (!o->host_v) o->host_v = calloc(o->n_padded, sizeof(float));
    TG_CHECK_ALLOC(err, o->host_params);
    TG_CHECK_ALLOC(err, o->host_m);
    TG_CHECK_ALLOC(err, o->host_v);
cleanup:
    return st;
}

tg_status tg_dp_optim_init(tg_dp_optim **out, tg_model *model, tg_comm *comm, const tg_dp_optim_options *opts,
                           tg_error *err) {
    tg_status st = TG_OK;
    tg_dp_optim *o = NULL;
    *out = NULL;
    if (opts->zero_stage < 0 || opts->zero_stage > 3)
        return tg_error_set(err, TG_ERR_CONFIG, "train.zero_stage=%d: supported stages are 0, 1, 2 and 3",
                            opts->zero_stage);
    if (opts->zero_stage >= 1 && tg_model_n_padded(model) % (size_t)tg_comm_world(comm) != 0)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.zero_stage=%d: the padded parameter count %zu does not divide into %d equal "
                            "shards (the model's pad_multiple must be a multiple of the world size)",
                            opts->zero_stage, tg_model_n_padded(model), tg_comm_world(comm));
    if (opts->muon && opts->zero_stage >= 2)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.optimizer=muon with train.zero_stage=%d: Muon orthogonalises whole matrices "
                            "from the full gradient buffer, which stages 2 and 3 do not keep; use zero_stage 0 or 1",
                            opts->zero_stage);
    if (opts->muon && !tg_model_has_muon(model))
        return tg_model_muon_orth(model, 0, 0, 1, err); /* the backend's refusal, with its name */
    if (opts->muon && opts->muon_ns_steps < 1)
        return tg_error_set(err, TG_ERR_CONFIG, "train.muon_ns_steps=%d must be >= 1", opts->muon_ns_steps);
    o = calloc(1, sizeof *o);
    TG_CHECK_ALLOC(err, o);
    o->model = model;
    o->comm = comm;
    o->opts = *opts;
    o->rank = tg_comm_rank(comm);
    o->world = tg_comm_world(comm);
    o->nccl = tg_comm_active_backend(comm) == TG_COMM_NCCL;
    o->n_params = tg_model_layout(model)->n_params;
    o->n_padded = tg_model_n_padded(model);
    if (opts->zero_stage >= 1) {
        size_t shard = o->n_padded / (size_t)o->world;
        o->shard_lo = shard * (size_t)o->rank;
        o->shard_hi = o->shard_lo + shard;
    } else {
        o->shard_lo = 0;
        o->shard_hi = o->n_padded;
    }
    if (opts->zero_stage >= 2) {
        o->counts = calloc((size_t)o->world, sizeof *o->counts);
        TG_CHECK_ALLOC(err, o->counts);
        tg_shard_io io = {.params_fill = dp_optim_params_fill, .grads_flush = dp_optim_grads_flush, .ctx = o};
        TG_TRY(tg_model_shard_storage(model, opts->zero_stage, o->shard_lo, o->shard_hi, &io, err));
    }
    if (opts->muon) TG_TRY(dp_optim_muon_owners(o, err));
    /* Before any params_set, so that it also fills the fp32 master weights exactly (bf16). */
    TG_TRY(tg_model_opt_init(model, o->shard_lo, o->shard_hi, err));
    *out = o;
    o = NULL;
cleanup:
    tg_dp_optim_free(o);
    return st;
}

void tg_dp_optim_free(tg_dp_optim *o) {
    if (!o) return;
    free(o->host_params);
    free(o->host_m);
    free(o->host_v);
    free(o->counts);
    free(o->muon_cut);
    free(o);
}

void tg_dp_optim_shard(const tg_dp_optim *o, size_t *lo, size_t *hi) {
    *lo = o->shard_lo;
    *hi = o->shard_hi;
}

tg_status tg_dp_optim_params_init(tg_dp_optim *o, uint64_t seed, tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(dp_optim_staging(o, err));
    tg_gpt2_params_init(tg_model_layout(o->model), o->host_params, seed);
    TG_TRY(tg_model_params_set(o->model, o->host_params, err));
cleanup:
    return st;
}

tg_status tg_dp_optim_zero_grad(tg_dp_optim *o, tg_error *err) { return tg_model_grads_zero(o->model, err); }

void tg_dp_optim_micro_step_begin(tg_dp_optim *o, int last) {
    if (o->nccl && o->opts.zero_stage == 0)
        tg_model_set_grad_hook(o->model, last ? tg_dp_optim_on_grads_ready : NULL, o);
}

void tg_dp_optim_on_grads_ready(void *ctx, size_t lo, size_t hi) {
    tg_dp_optim *o = ctx;
    tg_dtype dt;
    float *g = tg_model_grads(o->model, &dt);
    tg_error e;
    /* Errors surface at tg_comm_sync, which polls NCCL's async error state. */
    (void)tg_comm_all_reduce(o->comm, g + lo, hi - lo, TG_COMM_F32, TG_COMM_SUM, &e);
}

/* How [lo, hi) splits over the shards: o->counts[r] elements of it are rank r's; *own: where
 * this rank's part starts in the shard. */
static void dp_optim_split(tg_dp_optim *o, size_t lo, size_t hi, size_t *own) {
    size_t S = o->shard_hi - o->shard_lo;
    for (int r = 0; r < o->world; r++) {
        size_t a = (size_t)r * S, b = a + S;
        a = a > lo ? a : lo;
        b = b < hi ? b : hi;
        o->counts[r] = a < b ? b - a : 0;
    }
    *own = lo > o->shard_lo ? lo - o->shard_lo : 0;
    if (*own > S) *own = S; /* no part here (counts[rank] == 0) */
}

/* Stages 2, 3 (a tg_shard_io call): one use's gradients of [lo, hi), summed over the ranks
 * into the owners' shards. */
static tg_status dp_optim_grads_flush(void *ctx, size_t lo, size_t hi, float *win, tg_error *err) {
    tg_status st = TG_OK;
    tg_dp_optim *o = ctx;
    size_t own = 0;
    dp_optim_split(o, lo, hi, &own);
    TG_TRY(tg_comm_reduce_scatter_v(o->comm, win, o->counts, TG_COMM_F32, TG_COMM_SUM, err));
    size_t n = o->counts[o->rank], at = 0;
    for (int r = 0; r < o->rank; r++) at += o->counts[r];
    float *g = tg_model_shard_grads(o->model) + own;
    const float *part = win + at;
    for (size_t i = 0; i < n; i++) g[i] += part[i];
cleanup:
    return st;
}

/* Stage 3 (a tg_shard_io call): the parameters of [lo, hi), gathered from the shards. */
static tg_status dp_optim_params_fill(void *ctx, size_t lo, size_t hi, float *win, tg_error *err) {
    tg_dp_optim *o = ctx;
    size_t own = 0;
    dp_optim_split(o, lo, hi, &own);
    return tg_comm_all_gather_v(o->comm, tg_model_shard_params(o->model) + own, win, o->counts, TG_COMM_F32, err);
}

/* Sums the gradients over the ranks: stage 1 into this rank's shard only; stage 0 all of
 * them, unless the bucket hook already issued them during backward (NCCL); stages 2 and 3
 * already did during backward (grads_flush). */
static tg_status dp_optim_reduce(tg_dp_optim *o, tg_error *err) {
    if (o->opts.zero_stage >= 2) return TG_OK;
    tg_dtype dt;
    float *g = tg_model_grads(o->model, &dt);
    if (o->opts.zero_stage == 1)
        return tg_comm_reduce_scatter(o->comm, g, o->shard_hi - o->shard_lo, TG_COMM_F32, TG_COMM_SUM, err);
    if (o->nccl) return TG_OK;
    return tg_comm_all_reduce(o->comm, g, o->n_padded, TG_COMM_F32, TG_COMM_SUM, err);
}

/* The mean loss and the global gradient norm, in one host all-reduce: with sharded gradients
 * the squared norms of the shards add up; otherwise every rank already has the whole norm. */
static tg_status dp_optim_loss_norm(tg_dp_optim *o, const tg_dp_optim_step_args *a, tg_dp_optim_result *r,
                                    tg_error *err) {
    tg_status st = TG_OK;
    double sq = 0;
    TG_TRY(tg_model_grad_sqnorm(o->model, o->shard_lo, o->shard_hi, &sq, err));
    double red[2] = {a->loss_sum, o->opts.zero_stage >= 1 ? sq : 0};
    TG_TRY(tg_comm_all_reduce_host(o->comm, red, 2, TG_COMM_F64, TG_COMM_SUM, err));
    if (o->opts.zero_stage >= 1) sq = red[1];
    r->loss = red[0] / ((double)a->n_micro * o->world);
    r->norm = sqrt(sq);
cleanup:
    return st;
}

/* After a sharded update every rank holds only its shard of the new parameters: stages 1 and
 * 2 gather them (stage 3 keeps only the shard; forward and backward gather per segment). */
static tg_status dp_optim_gather_params(tg_dp_optim *o, tg_error *err) {
    tg_status st = TG_OK;
    if (o->opts.zero_stage != 1 && o->opts.zero_stage != 2) return TG_OK;
    tg_dtype dt;
    void *p = tg_model_params(o->model, &dt);
    TG_TRY(tg_comm_all_gather(o->comm, p, o->shard_hi - o->shard_lo,
                              dt == TG_DTYPE_BF16 ? TG_COMM_BF16 : TG_COMM_F32, err));
    TG_TRY(tg_comm_sync(o->comm, err));
cleanup:
    return st;
}

/* Muon after the first phase (tg_model_adamw with muon): the updates U of every Muon matrix
 * onto every rank (stage 1: they are in the shards), each owner's matrices orthogonalised, the
 * results onto every rank, then the shard's update. */
static tg_status dp_optim_muon(tg_dp_optim *o, const tg_adamw_args *aw, tg_error *err) {
    tg_status st = TG_OK;
    tg_dtype dt;
    float *g = tg_model_grads(o->model, &dt);
    if (o->world > 1 && o->opts.zero_stage == 1) {
        TG_TRY(tg_comm_all_gather(o->comm, g, o->shard_hi - o->shard_lo, TG_COMM_F32, err));
        TG_TRY(tg_comm_sync(o->comm, err));
    }
    const size_t lo = o->muon_cut[o->rank], hi = o->muon_cut[o->rank + 1];
    TG_TRY(tg_model_muon_orth(o->model, lo, hi, o->opts.muon_ns_steps, err));
    if (o->world > 1 && tg_model_stream(o->model)) {
        /* Device buffers (NCCL, or MPI staged through the host): the uneven all-gather is
         * host-only, so each owner broadcasts its range; the same bytes land everywhere. */
        for (int r = 0; r < o->world; r++)
            if (o->counts[r] > 0)
                TG_TRY(tg_comm_broadcast(o->comm, g + o->muon_cut[r], o->counts[r], TG_COMM_F32, r, err));
        TG_TRY(tg_comm_sync(o->comm, err));
    } else if (o->world > 1) {
        TG_TRY(tg_comm_all_gather_v(o->comm, g + lo, g, o->counts, TG_COMM_F32, err));
        TG_TRY(tg_comm_sync(o->comm, err));
    }
    TG_TRY(tg_model_muon_apply(o->model, aw, err));
cleanup:
    return st;
}

tg_status tg_dp_optim_step(tg_dp_optim *o, const tg_dp_optim_step_args *a, tg_dp_optim_result *r,
                           tg_error *err) {
    tg_status st = TG_OK;
    const tg_dp_optim_options *op = &o->opts;
    memset(r, 0, sizeof *r);
    TG_TRY(dp_optim_reduce(o, err));
    TG_TRY(tg_comm_sync(o->comm, err));
    TG_TRY(dp_optim_loss_norm(o, a, r, err));
    if (!isfinite(r->loss) || !isfinite(r->norm)) {
        r->skipped = 1;
        goto cleanup;
    }
    if (a->skip_above > 0 && r->loss > a->skip_above) {
        r->spike_skipped = 1;
        goto cleanup;
    }
    float scale = op->grad_clip > 0 && r->norm > op->grad_clip ? (float)(op->grad_clip / r->norm) : 1.0f;
    tg_adamw_args aw = {.lo = o->shard_lo, .hi = o->shard_hi, .lr = (float)a->lr, .beta1 = (float)op->beta1,
                        .beta2 = (float)op->beta2, .eps = (float)op->eps,
                        .weight_decay = (float)op->weight_decay, .grad_scale = scale, .t = a->step};
    tg_muon_args mu = {.lr = (float)a->muon_lr, .momentum = (float)op->muon_momentum,
                       .nesterov = op->muon_nesterov, .ns_steps = op->muon_ns_steps,
                       .weight_decay = (float)op->muon_weight_decay};
    aw.muon = op->muon ? &mu : NULL;
    TG_TRY(tg_model_adamw(o->model, &aw, err));
    if (op->muon) TG_TRY(dp_optim_muon(o, &aw, err));
    TG_TRY(dp_optim_gather_params(o, err));
cleanup:
    return st;
}

tg_status tg_dp_optim_state_gather(tg_dp_optim *o, tg_dp_optim_state *out, tg_error *err) {
    tg_status st = TG_OK;
    size_t shard = o->shard_hi - o->shard_lo;
    TG_TRY(dp_optim_staging(o, err));
    TG_TRY(tg_model_params_get(o->model, o->host_params, err));
    TG_TRY(tg_model_opt_get(o->model, o->host_m + o->shard_lo, o->host_v + o->shard_lo, err));
    if (o->opts.zero_stage >= 1) {
        /* params_get is exact (the fp32 masters) only on this rank's shard when the working copy
         * is bf16, and at stage 3 it fills only the shard: gather every rank's shard so the file
         * holds exact fp32 values everywhere. */
        TG_TRY(tg_comm_all_gather_host(o->comm, o->host_params, shard, TG_COMM_F32, err));
        TG_TRY(tg_comm_all_gather_host(o->comm, o->host_m, shard, TG_COMM_F32, err));
        TG_TRY(tg_comm_all_gather_host(o->comm, o->host_v, shard, TG_COMM_F32, err));
    }
    *out = (tg_dp_optim_state){.params = o->host_params, .adam_m = o->host_m, .adam_v = o->host_v,
                               .n_params = o->n_params, .n_padded = o->n_padded};
cleanup:
    return st;
}

tg_status tg_dp_optim_state_load(tg_dp_optim *o, const float *params, const float *adam_m, const float *adam_v,
                                 tg_error *err) {
    tg_status st = TG_OK;
    TG_TRY(tg_model_params_set(o->model, params, err));
    if (adam_m && adam_v) {
        TG_TRY(dp_optim_staging(o, err));
        /* Gathered moments: slice this rank's shard (the padding beyond n_params stays zero). */
        memset(o->host_m, 0, o->n_padded * sizeof(float));
        memset(o->host_v, 0, o->n_padded * sizeof(float));
        memcpy(o->host_m, adam_m, o->n_params * sizeof(float));
        memcpy(o->host_v, adam_v, o->n_params * sizeof(float));
        TG_TRY(tg_model_opt_set(o->model, o->host_m + o->shard_lo, o->host_v + o->shard_lo, err));
    }
cleanup:
    return st;
}

void tg_dp_optim_log_memory(const tg_dp_optim *o, const tg_log *lg) {
    tg_log rl = *lg;
    rl.level = 1; /* every rank prints its own */
    tg_model_memory mm;
    tg_model_memory_get(o->model, &mm);
    tg_log_info(&rl,
                "memory rank %d (zero_stage=%d, world %d): params %zu B, grads %zu B, optimizer state %zu B, "
                "activations %zu B, segment window %zu B, model total %.3f MB",
                o->rank, o->opts.zero_stage, o->world, mm.params, mm.grads, mm.optimizer, mm.activations, mm.window,
                (double)(mm.params + mm.grads + mm.optimizer + mm.activations) / 1e6);
}

void tg_dp_optim_memory_plan(const tg_model *m, int stage, int world, tg_model_memory *out) {
    tg_model_memory full;
    tg_model_memory_get(m, &full);
    const tg_gpt2_layout *lay = tg_model_layout(m);
    const size_t W = (size_t)(world > 0 ? world : 1), n0 = tg_model_n_padded(m), pad = 64 * W;
    const size_t n = (lay->n_params + pad - 1) / pad * pad, S = n / W;
    size_t win = n - lay->layer_begin[lay->cfg.n_layer]; /* the last segment, padded for world */
    for (int k = 0; k <= lay->cfg.n_layer; k++) {
        size_t lo = k == 0 ? 0 : lay->layer_begin[k - 1], hi = lay->layer_begin[k];
        if (hi - lo > win) win = hi - lo;
    }
    /* bytes per element of each kind, from the unsharded model */
    const double pb = (double)full.params / (double)n0, gb = (double)full.grads / (double)n0;
    const double ob = (double)full.optimizer / (double)n0;
    out->params = (size_t)(pb * (double)(stage >= 3 ? S + win : n) + 0.5);
    out->grads = (size_t)(gb * (double)(stage >= 2 ? S + win : n) + 0.5);
    out->optimizer = (size_t)(ob * (double)(stage >= 1 ? S : n) + 0.5);
    out->activations = full.activations;
    out->window = stage >= 2 ? win * sizeof(float) : 0;
}
