#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/writer.h"
#include "core/file.h"
#include "core/fsio.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "model/model.h"
#include "train/sample.h"
#include "train/schedule.h"

/* ---- the run ---- */

typedef struct {
    const tg_config *cfg;
    tg_comm *comm;
    const tg_log *lg;
    int rank, world, is_root;
    int B, T, accum;
    tg_model *model;
    size_t n_params, n_padded, shard_lo, shard_hi;
    tg_loader *train, *val;    /* shards or the synthetic stream (data/loader.h) */
    int has_val;
    int32_t *inputs, *targets; /* (B, T) host */
    tg_ckpt_writer *ckpt;
    tg_tokenizer *tok;         /* rank 0, for train.sample_every */
    FILE *metrics;
    tg_rng rng;                /* sampling; part of the checkpoint */
    int64_t step;              /* optimizer steps done */
    int64_t tokens_seen;
    float *host_params, *host_m, *host_v; /* checkpoint staging, n_padded each */
    int nccl;                  /* gradients reduced on the device by NCCL */
    void *tuning;              /* this rank's tuning file as last written or read (NULL: none) */
    size_t tuning_len;
    char resumed_from[TG_PATH_MAX]; /* the checkpoint file resumed from ("" for a fresh run) */
} trainer;

/* On resume, drop the records of steps after the checkpoint (the interrupted run may have logged
 * a few): the file then reads as one uninterrupted run. */
static tg_status metrics_truncate(const char *path, int64_t last_step, tg_error *err) {
    tg_status st = TG_OK;
    char tmp[TG_PATH_MAX + 64], line[4096];
    FILE *in = fopen(path, "r"), *out = NULL;
    if (!in) return TG_OK; /* no metrics yet */
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    out = fopen(tmp, "w");
    if (!out) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    while (fgets(line, sizeof line, in)) {
        long long step;
        if (sscanf(line, "{\"step\":%lld", &step) == 1 && step > last_step) continue;
        fputs(line, out);
    }
    if (fclose(out) != 0) {
        out = NULL;
        TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    out = NULL;
    if (rename(tmp, path) != 0) TG_FAIL(err, TG_ERR_IO, "cannot replace %s: %s", path, strerror(errno));
cleanup:
    if (out) fclose(out);
    fclose(in);
    return st;
}

tg_device_kind tg_train_device(const tg_config *cfg) {
    if (strcmp(cfg->device, "cpu") == 0) return TG_DEVICE_CPU;
    if (strcmp(cfg->device, "cuda") == 0) return TG_DEVICE_CUDA;
    return tg_model_cuda_device_count() > 0 ? TG_DEVICE_CUDA : TG_DEVICE_CPU;
}

/* Gradient bucket hook: on NCCL, all-reduce each layer's gradients as soon as backward made them. */
static void on_grads_ready(void *ctx, size_t lo, size_t hi) {
    trainer *tr = ctx;
    tg_dtype dt;
    float *g = tg_model_grads(tr->model, &dt);
    tg_error e;
    /* Errors surface at tg_comm_sync, which polls NCCL's async error state. */
    (void)tg_comm_allreduce(tr->comm, g + lo, hi - lo, TG_COMM_F32, TG_COMM_SUM, &e);
}

static tg_status reduce_grads(trainer *tr, tg_error *err) {
    tg_dtype dt;
    float *g = tg_model_grads(tr->model, &dt);
    if (tr->cfg->zero_stage == 1)
        return tg_comm_reduce_scatter(tr->comm, g, tr->shard_hi - tr->shard_lo, TG_COMM_F32, TG_COMM_SUM, err);
    if (tr->nccl) return TG_OK; /* already issued bucket by bucket from the hook */
    return tg_comm_allreduce(tr->comm, g, tr->n_padded, TG_COMM_F32, TG_COMM_SUM, err);
}

static tg_status evaluate(trainer *tr, double *val_loss, tg_error *err) {
    tg_status st = TG_OK;
    tg_loader_state zero;
    double sum = 0;
    tg_loader_state_get(tr->val, &zero);
    zero.position = 0;
    TG_TRY(tg_loader_state_set(tr->val, &zero, err));
    for (int i = 0; i < tr->cfg->eval_batches; i++) {
        float l;
        TG_TRY(tg_loader_next(tr->val, tr->inputs, tr->targets, err));
        TG_TRY(tg_model_forward(tr->model, tr->inputs, tr->targets, tr->B, err));
        TG_TRY(tg_model_loss(tr->model, &l, err));
        sum += l;
    }
    TG_TRY(tg_comm_allreduce_host(tr->comm, &sum, 1, TG_COMM_F64, TG_COMM_SUM, err));
    *val_loss = sum / ((double)tr->cfg->eval_batches * tr->world);
cleanup:
    return st;
}

/* Collects everything a checkpoint holds on every rank (collectives inside), then rank 0 hands
 * it to the async writer. */
static tg_status save_checkpoint(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    char *cfg_text = NULL;
    tg_loader_state *states = NULL;
    size_t shard = tr->shard_hi - tr->shard_lo;
    TG_TRY(tg_model_params_get(tr->model, tr->host_params, err));
    TG_TRY(tg_model_opt_get(tr->model, tr->host_m + tr->shard_lo, tr->host_v + tr->shard_lo, err));
    if (tr->cfg->zero_stage == 1) {
        /* params_get is exact (the fp32 masters) only on this rank's shard when the working copy
         * is bf16: gather every rank's shard so the file holds exact fp32 values everywhere. */
        TG_TRY(tg_comm_allgather_host(tr->comm, tr->host_params, shard, TG_COMM_F32, err));
        TG_TRY(tg_comm_allgather_host(tr->comm, tr->host_m, shard, TG_COMM_F32, err));
        TG_TRY(tg_comm_allgather_host(tr->comm, tr->host_v, shard, TG_COMM_F32, err));
    }
    states = calloc((size_t)tr->world, sizeof *states);
    TG_CHECK_ALLOC(err, states);
    tg_loader_state_get(tr->train, &states[tr->rank]);
    TG_TRY(tg_comm_allgather_host(tr->comm, states, 2, TG_COMM_I64, err));
    if (tr->is_root) {
        cfg_text = tg_config_to_string(tr->cfg);
        TG_CHECK_ALLOC(err, cfg_text);
        tg_ckpt_state cs = {
            .step = tr->step, .tokens_seen = tr->tokens_seen, .rng_state = tr->rng.state,
            .world_size = tr->world, .zero_stage = tr->cfg->zero_stage,
            .n_loader_states = tr->world, .loader_states = states, .config_ini = cfg_text,
            .tokenizer_hash = (char *)tg_loader_tokenizer_hash(tr->train),
            .tokenizer_path = (char *)tr->cfg->tokenizer,
            .model_cfg = tg_model_layout(tr->model)->cfg, .params = tr->host_params,
            .adam_m = tr->host_m, .adam_v = tr->host_v, .master = NULL};
        double stall = 0, t0 = tg_now_ms();
        TG_TRY(tg_ckpt_writer_save(tr->ckpt, &cs, &stall, err));
        tg_log_info(tr->lg, "checkpoint step %lld queued (training stalled %.1f ms)", (long long)tr->step,
                    tg_now_ms() - t0);
    }
cleanup:
    free(cfg_text);
    free(states);
    return st;
}

/* Resume from cfg->resume (auto | none | PATH). Rank 0 picks the file, everyone loads it. */
static tg_status maybe_resume(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    char path[TG_PATH_MAX] = "";
    const char *r = tr->cfg->resume;
    if (strcmp(r, "none") == 0) return TG_OK;
    if (strcmp(r, "auto") == 0) {
        if (tr->is_root) {
            char dir[TG_PATH_MAX + 16];
            int found = 0;
            snprintf(dir, sizeof dir, "%s/checkpoints", tr->cfg->out_dir);
            TG_TRY(tg_ckpt_find_latest(dir, tr->lg, path, sizeof path, &found, err));
            if (!found) path[0] = 0;
        }
    } else {
        snprintf(path, sizeof path, "%s", r);
    }
    TG_TRY(tg_comm_bcast_host(tr->comm, path, sizeof path, 0, err));
    if (!path[0]) {
        tg_log_info(tr->lg, "resume=auto: no checkpoint in %s/checkpoints, starting fresh", tr->cfg->out_dir);
        return TG_OK;
    }
    TG_TRY(tg_ckpt_load(path, &cs, err));
    const tg_gpt2_config *mc = &tg_model_layout(tr->model)->cfg;
    if (memcmp(&cs.model_cfg, mc, sizeof *mc) != 0)
        TG_FAIL(err, TG_ERR_CONFIG,
                "%s: checkpoint model (L=%d NH=%d C=%d T=%d V=%d) does not match the config (L=%d NH=%d C=%d "
                "T=%d V=%d)",
                path, cs.model_cfg.n_layer, cs.model_cfg.n_head, cs.model_cfg.n_embd, cs.model_cfg.max_seq_len,
                cs.model_cfg.vocab_size, mc->n_layer, mc->n_head, mc->n_embd, mc->max_seq_len, mc->vocab_size);
    const char *data_hash = tg_loader_tokenizer_hash(tr->train); /* "" for synthetic data */
    if (data_hash[0] && cs.tokenizer_hash && cs.tokenizer_hash[0] && strcmp(cs.tokenizer_hash, data_hash) != 0)
        TG_FAIL(err, TG_ERR_DATA,
                "%s: the checkpoint was trained on data from tokenizer sha256 %.16s..., but data.train's shards "
                "come from %.16s...",
                path, cs.tokenizer_hash, data_hash);
    TG_TRY(tg_model_params_set(tr->model, cs.params, err));
    if (cs.adam_m && cs.adam_v) {
        /* Gathered moments: slice this rank's shard (the padding beyond n_params stays zero). */
        size_t lo = tr->shard_lo;
        memset(tr->host_m, 0, tr->n_padded * sizeof(float));
        memset(tr->host_v, 0, tr->n_padded * sizeof(float));
        memcpy(tr->host_m, cs.adam_m, tr->n_params * sizeof(float));
        memcpy(tr->host_v, cs.adam_v, tr->n_params * sizeof(float));
        TG_TRY(tg_model_opt_set(tr->model, tr->host_m + lo, tr->host_v + lo, err));
    }
    tr->step = cs.step;
    tr->tokens_seen = cs.tokens_seen;
    tr->rng.state = cs.rng_state;
    if (cs.n_loader_states < 1) TG_FAIL(err, TG_ERR_FORMAT, "%s: no loader state", path);
    /* The position is global (data/loader.h), so any rank's state serves any world size. */
    TG_TRY(tg_loader_state_set(tr->train, &cs.loader_states[0], err));
    snprintf(tr->resumed_from, sizeof tr->resumed_from, "%s", path);
    tg_log_info(tr->lg, "resumed from %s at step %lld (%lld tokens seen; saved with %d ranks, now %d)", path,
                (long long)cs.step, (long long)cs.tokens_seen, cs.world_size, tr->world);
cleanup:
    tg_ckpt_state_free(&cs);
    return st;
}

/* ---- the backend's timed choices (tg_model_tuning_get): <out_dir>/tuning/rank-NNNNN.bin ----
 * Written by every rank whenever its set changes (the first step, the first evaluation), read
 * back on resume before the first forward, so a resumed run with TG_CUBLASLT_TUNE=1 uses the
 * algorithms the run it continues used: the same bits. Nothing is written when nothing is
 * timed. (cuDNN's TG_CUDNN_TUNE plans are not kept: docs/cuda.md.) */
static void tuning_path(const char *run_dir, int rank, char *path, size_t cap) {
    snprintf(path, cap, "%s/tuning/rank-%05d.bin", run_dir, rank);
}

static tg_status tuning_save(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    char path[TG_PATH_MAX + 32];
    void *blob = NULL;
    size_t len = 0;
    TG_TRY(tg_model_tuning_get(tr->model, &blob, &len, err));
    if (len == 0 || (len == tr->tuning_len && memcmp(blob, tr->tuning, len) == 0)) goto cleanup;
    snprintf(path, sizeof path, "%s/tuning", tr->cfg->out_dir);
    TG_TRY(tg_fs_mkdir_p(path, err));
    tuning_path(tr->cfg->out_dir, tr->rank, path, sizeof path);
    TG_TRY(tg_fs_file_replace(path, blob, len, 0, err));
    free(tr->tuning);
    tr->tuning = blob;
    tr->tuning_len = len;
    blob = NULL;
cleanup:
    free(blob);
    return st;
}

/* On resume: this rank's file from out_dir, else from the run folder of the checkpoint resumed
 * (<run>/checkpoints/step_N.h5 -> <run>/tuning/), if there is one. One the backend refuses
 * (another GPU model or library version) is only a warning: the run goes on and times again. */
static tg_status tuning_load(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    char path[TG_PATH_MAX + 32], run_dir[TG_PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    tg_error e2 = {0};
    char *slash;
    tuning_path(tr->cfg->out_dir, tr->rank, path, sizeof path);
    int found = access(path, F_OK) == 0;
    snprintf(run_dir, sizeof run_dir, "%s", tr->resumed_from);
    for (int up = 0; !found && up < 2 && (slash = strrchr(run_dir, '/')) != NULL; up++) *slash = 0;
    if (!found && run_dir[0] && strcmp(run_dir, tr->resumed_from) != 0) {
        tuning_path(run_dir, tr->rank, path, sizeof path);
        found = access(path, F_OK) == 0;
    }
    if (!found) return TG_OK;
    TG_TRY(tg_file_read(path, &buf, &len, err));
    if (tg_model_tuning_set(tr->model, buf, len, &e2) == TG_OK) {
        tg_log_info(tr->lg, "resume: matmul algorithms from %s (%zu bytes)", path, len);
    } else {
        tg_log_warn(tr->lg, "resume: ignoring %s: %s; algorithms are timed again, so rounding may differ from the run "
                    "that wrote it", path, e2.msg);
    }
cleanup:
    free(buf);
    return st;
}

/* Rank 0: a sample from an end-of-text prompt, printed as one log line. */
static tg_status print_sample(trainer *tr, int step, tg_error *err) {
    tg_status st = TG_OK;
    tg_tokens ids = {0};
    uint8_t *text = NULL;
    size_t len = 0;
    TG_TRY(tg_tokens_push(&ids, (uint32_t)tg_tokenizer_eot_id(tr->tok), err));
    tg_sample_options so = {.n_tokens = tr->cfg->sample_tokens, .temperature = 1.0f, .top_k = 40,
                            .vocab_limit = tg_tokenizer_vocab_size(tr->tok)};
    TG_TRY(tg_sample_generate(tr->model, &ids, &so, &tr->rng, NULL, NULL, err));
    TG_TRY(tg_tokenizer_decode(tr->tok, ids.ids + 1, ids.n - 1, &text, &len, err));
    tg_log_info(tr->lg, "step %5d sample: %.*s", step, (int)len, (const char *)text);
cleanup:
    free(text);
    tg_tokens_free(&ids);
    return st;
}

static void format_eta(double seconds, char *buf, size_t cap) {
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, cap, "?");
        return;
    }
    int s = (int)seconds;
    if (s >= 3600) snprintf(buf, cap, "%dh%02dm", s / 3600, s % 3600 / 60);
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", s / 60, s % 60);
    else snprintf(buf, cap, "%ds", s);
}

static tg_status setup(trainer *tr, const tg_config *cfg, tg_comm *comm, const tg_log *lg, tg_error *err) {
    tg_status st = TG_OK;
    memset(tr, 0, sizeof *tr);
    tr->cfg = cfg;
    tr->comm = comm;
    tr->lg = lg;
    tr->rank = tg_comm_rank(comm);
    tr->world = tg_comm_world(comm);
    tr->is_root = tr->rank == 0;
    tr->B = cfg->micro_batch;
    tr->T = cfg->seq_len;
    tg_rng_init(&tr->rng, tg_hash64(cfg->seed, 0x5a4d));

    int64_t per_micro = (int64_t)tr->B * tr->T * tr->world;
    int64_t total = cfg->total_batch_tokens ? cfg->total_batch_tokens : per_micro;
    if (total % per_micro)
        TG_FAIL(err, TG_ERR_CONFIG,
                "train.total_batch_tokens (%lld) must be a multiple of micro_batch*seq_len*world "
                "(%d*%d*%d = %lld)",
                (long long)total, tr->B, tr->T, tr->world, (long long)per_micro);
    tr->accum = (int)(total / per_micro);
    if (cfg->sample_every > 0 && !cfg->tokenizer[0])
        TG_FAIL(err, TG_ERR_CONFIG, "train.sample_every needs data.tokenizer (the tokenizer file) to decode samples");

    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    else omp_set_num_threads(tg_comm_cpu_threads(comm, omp_get_num_procs()));

    tg_loader_options lo = {.glob = cfg->train, .B = tr->B, .T = tr->T, .rank = tr->rank, .world = tr->world,
                            .seed = cfg->seed, .shuffle = 1, .vocab_size = cfg->vocab_size, .prefetch = 4};
    TG_TRY(tg_loader_open(&tr->train, &lo, err));
    const int V = tg_loader_vocab_size(tr->train);
    if (cfg->val[0]) {
        lo.glob = cfg->val;
        lo.shuffle = 0;
        lo.prefetch = 0;
        TG_TRY(tg_loader_open(&tr->val, &lo, err));
        tr->has_val = 1;
        if (tg_loader_vocab_size(tr->val) != V)
            TG_FAIL(err, TG_ERR_DATA, "data.val has vocab_size %d but data.train has %d",
                    tg_loader_vocab_size(tr->val), V);
    }
    if (cfg->vocab_size && cfg->vocab_size != V)
        TG_FAIL(err, TG_ERR_DATA, "model.vocab_size=%d but the training data has vocab_size %d", cfg->vocab_size, V);

    tg_gpt2_config mc = {.max_seq_len = cfg->seq_len, .vocab_size = V, .n_layer = cfg->n_layer,
                         .n_head = cfg->n_head, .n_embd = cfg->n_embd};
    TG_TRY(tg_gpt2_config_finalize(&mc, err));
    tg_model_options mo = {.device = tg_train_device(cfg),
                           .recompute = cfg->recompute, .B = tr->B, .T = tr->T,
                           .pad_multiple = (size_t)tr->world * 64};
    if (mo.device == TG_DEVICE_CUDA) {
        int n = tg_model_cuda_device_count();
        mo.bf16 = strcmp(cfg->precision, "bf16") == 0;
        TG_TRY(tg_comm_pick_cuda_device(comm, n, &mo.cuda_device, err));
    } else {
        /* The CPU reference trains in fp32. TG_CPU_EMULATE_BF16=1 (a test switch) makes it round
         * to bf16 where the CUDA backend stores bf16: the reference for bf16 loss curves. */
        const char *emu = getenv("TG_CPU_EMULATE_BF16");
        mo.bf16 = emu && strcmp(emu, "1") == 0 && strcmp(cfg->precision, "bf16") == 0;
    }
    TG_TRY(tg_model_init(&tr->model, &mc, &mo, err));
    tr->n_params = tg_model_layout(tr->model)->n_params;
    tr->n_padded = tg_model_n_padded(tr->model);
    /* On GPUs gradients always go through NCCL, also with one rank, so a single-GPU run
     * exercises the same path as a multi-node one. */
    if (mo.device == TG_DEVICE_CUDA) {
        TG_TRY(tg_comm_use_nccl(comm, mo.cuda_device, tg_model_stream(tr->model), err));
        tr->nccl = 1;
    }
    if (cfg->zero_stage == 1) {
        size_t shard = tr->n_padded / (size_t)tr->world;
        tr->shard_lo = shard * (size_t)tr->rank;
        tr->shard_hi = tr->shard_lo + shard;
    } else {
        tr->shard_lo = 0;
        tr->shard_hi = tr->n_padded;
    }

    tr->host_params = calloc(tr->n_padded, sizeof(float));
    tr->host_m = calloc(tr->n_padded, sizeof(float));
    tr->host_v = calloc(tr->n_padded, sizeof(float));
    tr->inputs = malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    tr->targets = malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    TG_CHECK_ALLOC(err, tr->host_params);
    TG_CHECK_ALLOC(err, tr->host_m);
    TG_CHECK_ALLOC(err, tr->host_v);
    TG_CHECK_ALLOC(err, tr->inputs);
    TG_CHECK_ALLOC(err, tr->targets);

    /* Every rank initialises identically from the seed: no broadcast needed. The optimizer
     * shard comes first so that params_set also fills the fp32 master weights exactly (bf16). */
    TG_TRY(tg_model_opt_init(tr->model, tr->shard_lo, tr->shard_hi, err));
    tg_gpt2_params_init(tg_model_layout(tr->model), tr->host_params, cfg->seed);
    TG_TRY(tg_model_params_set(tr->model, tr->host_params, err));

    if (tr->is_root) {
        char path[TG_PATH_MAX + 32];
        TG_TRY(tg_fs_mkdir_p(cfg->out_dir, err));
        snprintf(path, sizeof path, "%s/checkpoints", cfg->out_dir);
        TG_TRY(tg_fs_mkdir_p(path, err));
        TG_TRY(tg_ckpt_writer_init(&tr->ckpt, path, cfg->ckpt_keep, lg, err));
        /* Touch the staging buffers now so the first save does not stall on page faults. */
        TG_TRY(tg_ckpt_writer_reserve(tr->ckpt, &mc, 1, 0, err));
        snprintf(path, sizeof path, "%s/config.ini", cfg->out_dir);
        FILE *f = fopen(path, "w");
        if (!f) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        tg_config_write(cfg, f);
        fclose(f);
    }
    if (cfg->tokenizer[0] && tr->is_root) {
        TG_TRY(tg_tokenizer_load(&tr->tok, cfg->tokenizer, err));
        const char *shard_hash = tg_loader_tokenizer_hash(tr->train);
        if (shard_hash[0] && strcmp(shard_hash, tg_tokenizer_hash(tr->tok)) != 0)
            TG_FAIL(err, TG_ERR_DATA,
                    "data.tokenizer %s (sha256 %.16s...) is not the tokenizer the shards of data.train were made "
                    "with (sha256 %.16s...)",
                    cfg->tokenizer, tg_tokenizer_hash(tr->tok), shard_hash);
        if (tg_tokenizer_vocab_size(tr->tok) > mc.vocab_size)
            TG_FAIL(err, TG_ERR_DATA, "data.tokenizer %s has %d tokens but the model only %d", cfg->tokenizer,
                    tg_tokenizer_vocab_size(tr->tok), mc.vocab_size);
    }
    TG_TRY(tg_comm_barrier(comm, err)); /* out_dir exists before anyone looks for checkpoints */
    TG_TRY(maybe_resume(tr, err));
    if (tr->step > 0) TG_TRY(tuning_load(tr, err));
    if (tr->is_root) {
        char path[TG_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->out_dir);
        if (tr->step > 0) TG_TRY(metrics_truncate(path, tr->step, err));
        tr->metrics = fopen(path, tr->step > 0 ? "a" : "w");
        if (!tr->metrics) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }

    const tg_gpt2_layout *lay = tg_model_layout(tr->model);
    tg_log_info(lg,
                "model gpt2: L=%d NH=%d C=%d T=%d V=%d (padded %d), %.2fM parameters; device %s%s; "
                "%d rank(s) [%s], %d thread(s)/rank",
                mc.n_layer, mc.n_head, mc.n_embd, mc.max_seq_len, mc.vocab_size, mc.padded_vocab_size,
                (double)lay->n_params / 1e6, mo.device == TG_DEVICE_CUDA ? "cuda" : "cpu",
                mo.device == TG_DEVICE_CUDA ? (mo.bf16 ? " bf16" : " fp32") : "", tr->world,
                tg_comm_backend_name(comm), omp_get_max_threads());
    tg_log_info(lg, "backend: %s", tg_model_describe(tr->model));
    tg_log_info(lg, "batch: %d x %d tokens/micro-step x %d ranks x %d accumulation = %lld tokens/step",
                tr->B, tr->T, tr->world, tr->accum, (long long)total);
    {
        /* Every rank prints its own memory (ZeRO-1 shows 1/N of the optimizer state). */
        tg_log rl = *lg;
        rl.level = 1;
        tg_dtype pdt, gdt;
        (void)tg_model_params(tr->model, &pdt);
        (void)tg_model_grads(tr->model, &gdt);
        double pg_bytes = (double)tr->n_padded * ((pdt == TG_DTYPE_BF16 ? 2 : 4) + (gdt == TG_DTYPE_BF16 ? 2 : 4));
        tg_log_info(&rl, "memory rank %d: params+grads %.3f MB, optimizer state %.3f MB (zero_stage=%d), model total %.3f MB",
                    tr->rank, pg_bytes / 1e6, (double)tg_model_opt_bytes(tr->model) / 1e6,
                    cfg->zero_stage, (double)tg_model_device_bytes(tr->model) / 1e6);
    }
cleanup:
    return st;
}

static void teardown(trainer *tr) {
    tg_error e;
    if (tr->ckpt) {
        if (tg_ckpt_writer_wait(tr->ckpt, &e) != TG_OK) tg_log_warn(tr->lg, "checkpoint: %s", e.msg);
        tg_ckpt_writer_free(tr->ckpt);
    }
    if (tr->metrics) fclose(tr->metrics);
    tg_tokenizer_free(tr->tok);
    tg_loader_free(tr->train);
    tg_loader_free(tr->val);
    tg_model_free(tr->model);
    free(tr->tuning);
    free(tr->host_params);
    free(tr->host_m);
    free(tr->host_v);
    free(tr->inputs);
    free(tr->targets);
}

tg_status tg_train_run(const tg_config *cfg, tg_comm *comm, const tg_log *lg, const tg_train_hooks *hooks,
                       int *stopped, tg_error *err) {
    tg_status st = TG_OK;
    trainer tr;
    *stopped = 0;
    TG_TRY(setup(&tr, cfg, comm, lg, err));

    const tg_gpt2_layout *lay = tg_model_layout(tr.model);
    const double flops_per_step = tg_gpt2_flops_per_token(lay, tr.T) * (double)tr.B * tr.T * tr.accum * tr.world;
    tg_schedule sched = {.kind = strcmp(cfg->schedule, "cosine") == 0   ? TG_SCHED_COSINE
                                 : strcmp(cfg->schedule, "linear") == 0 ? TG_SCHED_LINEAR
                                                                        : TG_SCHED_CONSTANT,
                         .lr = cfg->lr, .min_lr = cfg->min_lr, .warmup_steps = cfg->warmup_steps,
                         .max_steps = cfg->max_steps};
    const int64_t tokens_per_step = (int64_t)tr.B * tr.T * tr.accum * tr.world;
    int nan_run = 0;
    double t_start = tg_now_ms();
    int64_t first_step = tr.step;

    while (tr.step < cfg->max_steps) {
        const int step = (int)tr.step + 1;
        double t0 = tg_now_ms();
        double loss_sum = 0;
        TG_TRY(tg_model_grads_zero(tr.model, err));
        for (int k = 0; k < tr.accum; k++) {
            float l;
            /* On NCCL, reduce buckets during the last micro-step's backward. */
            if (tr.nccl && cfg->zero_stage == 0)
                tg_model_set_grad_hook(tr.model, k == tr.accum - 1 ? on_grads_ready : NULL, &tr);
            TG_TRY(tg_loader_next(tr.train, tr.inputs, tr.targets, err));
            TG_TRY(tg_model_forward(tr.model, tr.inputs, tr.targets, tr.B, err));
            TG_TRY(tg_model_backward(tr.model, 1.0f / (float)(tr.accum * tr.world), err));
            TG_TRY(tg_model_loss(tr.model, &l, err));
            loss_sum += l;
        }
        if (hooks && hooks->fault_step == step && hooks->fault_rank == tr.rank)
            TG_FAIL(err, TG_ERR_INTERNAL, "injected fault at step %d (test switch TRUTHGPT_FAULT_STEP)", step);
        if (hooks && hooks->nan_step == step) loss_sum = NAN;
        TG_TRY(reduce_grads(&tr, err));
        TG_TRY(tg_comm_sync(comm, err));
        double sq = 0;
        TG_TRY(tg_model_grad_sqnorm(tr.model, tr.shard_lo, tr.shard_hi, &sq, err));
        double red[2] = {loss_sum, cfg->zero_stage == 1 ? sq : 0};
        TG_TRY(tg_comm_allreduce_host(comm, red, 2, TG_COMM_F64, TG_COMM_SUM, err));
        if (cfg->zero_stage == 1) sq = red[1];
        const double loss = red[0] / ((double)tr.accum * tr.world);
        const double norm = sqrt(sq);
        const double lr = tg_schedule_lr(&sched, step);
        tr.step = step;
        tr.tokens_seen += tokens_per_step;

        if (!isfinite(loss) || !isfinite(norm)) {
            nan_run++;
            tg_log_warn(lg, "step %d: non-finite loss %g / grad norm %g: update skipped (%d in a row, limit %d)",
                        step, loss, norm, nan_run, cfg->nan_patience);
            if (tr.is_root) {
                fprintf(tr.metrics, "{\"step\":%d,\"skipped\":true,\"loss\":null,\"grad_norm\":null}\n", step);
                fflush(tr.metrics);
            }
            if (nan_run >= cfg->nan_patience)
                TG_FAIL(err, TG_ERR_NUMERIC, "%d non-finite losses in a row (train.nan_patience=%d): stopping",
                        nan_run, cfg->nan_patience);
        } else {
            nan_run = 0;
            float scale = cfg->grad_clip > 0 && norm > cfg->grad_clip ? (float)(cfg->grad_clip / norm) : 1.0f;
            tg_adamw_args a = {.lo = tr.shard_lo, .hi = tr.shard_hi, .lr = (float)lr, .beta1 = (float)cfg->beta1,
                               .beta2 = (float)cfg->beta2, .eps = (float)cfg->eps,
                               .weight_decay = (float)cfg->weight_decay, .grad_scale = scale, .t = step};
            TG_TRY(tg_model_adamw(tr.model, &a, err));
            if (cfg->zero_stage == 1) {
                tg_dtype dt;
                void *p = tg_model_params(tr.model, &dt);
                TG_TRY(tg_comm_all_gather(comm, p, tr.shard_hi - tr.shard_lo,
                                          dt == TG_DTYPE_BF16 ? TG_COMM_BF16 : TG_COMM_F32, err));
                TG_TRY(tg_comm_sync(comm, err));
            }
        }
        double ms = tg_now_ms() - t0;
        double tok_s = (double)tokens_per_step / (ms / 1e3);
        if (tr.is_root && isfinite(loss)) {
            fprintf(tr.metrics,
                    "{\"step\":%d,\"loss\":%.9g,\"lr\":%.6g,\"grad_norm\":%.6f,\"tokens\":%lld,\"ms\":%.3f,"
                    "\"tokens_per_s\":%.1f,\"tflops\":%.4f}\n",
                    step, loss, lr, norm, (long long)tr.tokens_seen, ms, tok_s, flops_per_step / (ms / 1e3) / 1e12);
            fflush(tr.metrics);
        }
        if (step % cfg->log_every == 0 || step == cfg->max_steps || step == 1) {
            char eta[32];
            double per_step = (tg_now_ms() - t_start) / (double)(tr.step - first_step);
            format_eta(per_step * (cfg->max_steps - step) / 1e3, eta, sizeof eta);
            tg_log_info(lg, "step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s | ETA %s", step,
                        cfg->max_steps, loss, lr, norm, ms, tok_s, eta);
        }
        if (tr.has_val && cfg->eval_every && (step % cfg->eval_every == 0 || step == cfg->max_steps)) {
            double vl;
            TG_TRY(evaluate(&tr, &vl, err));
            tg_log_info(lg, "step %5d/%d | val loss %.4f", step, cfg->max_steps, vl);
            if (tr.is_root) {
                fprintf(tr.metrics, "{\"step\":%d,\"val_loss\":%.9g}\n", step, vl);
                fflush(tr.metrics);
            }
        }
        if (tr.tok && step % cfg->sample_every == 0) TG_TRY(print_sample(&tr, step, err));
        TG_TRY(tuning_save(&tr, err));
        /* Stop requests are agreed on by all ranks so that everyone saves the same step. */
        double stop = hooks && hooks->stop_requested && *hooks->stop_requested ? 1.0 : 0.0;
        if (tr.world > 1) TG_TRY(tg_comm_allreduce_host(comm, &stop, 1, TG_COMM_F64, TG_COMM_MAX, err));
        int last = step == cfg->max_steps;
        if (stop > 0 || last || (cfg->ckpt_every && step % cfg->ckpt_every == 0)) TG_TRY(save_checkpoint(&tr, err));
        if (stop > 0) {
            tg_log_info(lg, "stop requested: saved step %d, exiting with %d (requeue me)", step, TG_EXIT_REQUEUE);
            *stopped = 1;
            break;
        }
    }
    if (tr.ckpt) TG_TRY(tg_ckpt_writer_wait(tr.ckpt, err));
    if (!*stopped)
        tg_log_info(lg, "done: %lld steps, %lld tokens, %.1f s", (long long)tr.step, (long long)tr.tokens_seen,
                    (tg_now_ms() - t_start) / 1e3);
cleanup:
    teardown(&tr);
    return st;
}
