#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckpt/writer.h"
#include "core/fault.h"
#include "core/file.h"
#include "core/fsio.h"
#include "core/rng.h"
#include "core/timer.h"
#include "data/loader.h"
#include "data/tokenizer.h"
#include "eval/mc.h"
#include "model/model.h"
#include "train/dp_optim.h"
#include "train/init_from.h"
#include "train/metrics.h"
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
    tg_dp_optim *opt;          /* the data-parallel optimizer step (shards, reduction, update) */
    tg_loader *train, *val;    /* shards or the synthetic stream (data/loader.h) */
    int has_val;
    int32_t *inputs, *targets; /* (B, T) host */
    tg_ckpt_writer *ckpt;
    tg_tokenizer *tok;         /* rank 0, for train.sample_every */
    tg_mc_set *tasks;          /* every rank, for train.eval_tasks */
    tg_metrics *metrics;       /* rank 0 */
    tg_rng rng;                /* sampling; part of the checkpoint */
    tg_schedule sched;
    int64_t step;              /* optimizer steps done */
    int64_t tokens_seen, tokens_per_step;
    double flops_per_step;
    double peak_tflops;        /* all ranks' dense bf16 peak; 0 = unknown (CPU) or fp32 */
    int nan_run;               /* non-finite steps in a row */
    double *spike_hist;        /* the last spike_window ordinary losses (ring), for train.spike_sigma */
    int spike_n, spike_next;
    int spikes_pending;        /* spike_action=rollback: spikes since the start or the last rollback */
    int rollbacks;             /* ... and rollbacks so far */
    double t_start;            /* for the ETA: this process's first step */
    int target_reached;        /* train.target_val_loss met: the run ends after this step */
    int64_t first_step;
    void *tuning;              /* this rank's tuning file as last written or read (NULL: none) */
    size_t tuning_len;
    char resumed_from[TG_PATH_MAX]; /* the checkpoint file resumed from ("" for a fresh run) */
    long long fault_step, fault_rank, nan_step, spike_step; /* test builds only (core/fault.h) */
} trainer;

tg_device_kind tg_train_device(const tg_config *cfg) {
    if (cfg->device == TG_DEVICE_PICK_CPU) return TG_DEVICE_CPU;
    if (cfg->device == TG_DEVICE_PICK_CUDA) return TG_DEVICE_CUDA;
    return tg_model_cuda_device_count() > 0 ? TG_DEVICE_CUDA : TG_DEVICE_CPU;
}

tg_gpt2_config tg_train_model_config(const tg_config *cfg, int vocab_size, int T) {
    tg_gpt2_config mc = {.max_seq_len = T, .vocab_size = vocab_size, .n_layer = cfg->n_layer, .n_head = cfg->n_head,
                         .n_embd = cfg->n_embd};
    if (cfg->arch == TG_ARCH_LLAMA) {
        mc.arch = TG_MODEL_ARCH_LLAMA;
        mc.n_kv_head = cfg->n_kv_head;
        mc.ffn_dim = cfg->ffn_dim;
        mc.rope_theta = cfg->rope_theta;
        mc.norm_eps = cfg->norm_eps;
        mc.tie_embeddings = cfg->tie_embeddings;
        if (cfg->rope_factor != 0) {
            mc.rope_factor = cfg->rope_factor;
            mc.rope_low_freq_factor = cfg->rope_low_freq_factor;
            mc.rope_high_freq_factor = cfg->rope_high_freq_factor;
            mc.rope_original_max_pos = cfg->rope_original_max_pos;
        }
    }
    return mc;
}

tg_cuda_options tg_train_cuda_options(const tg_config *cfg) {
    tg_cuda_options o = {.attention = cfg->cuda_attention,
                         .cudnn_atomics = !cfg->cuda_cudnn_deterministic,
                         .cudnn_tune = cfg->cuda_cudnn_tune,
                         .cublaslt_tune = cfg->cuda_cublaslt_tune,
                         .unfused = !cfg->cuda_fusion,
                         .lmhead_rows = cfg->cuda_lmhead_rows,
                         .profile = cfg->cuda_profile};
    return o;
}

/* Validation over one fixed global set of windows: micro-batch i of eval_batches takes the B windows
 * at position i*B of the val split (the val loader is opened as a single-rank reader on every
 * rank), and rank r scores the batches i with i % world == r. The summed losses and the count are
 * all-reduced, so val_loss is the same at any world size (and after resuming on another one).
 * Every rank runs the same number of forwards (one without a batch of its own scores batch 0
 * and drops it): with sharded parameters (zero_stage=3) a forward is collective. */
static tg_status evaluate(trainer *tr, double *val_loss, tg_error *err) {
    tg_status st = TG_OK;
    tg_loader_state at;
    double sum_count[2] = {0, 0};
    const int n = tr->cfg->eval_batches, rounds = (n + tr->world - 1) / tr->world;
    tg_loader_state_get(tr->val, &at);
    for (int i = tr->rank; i < rounds * tr->world; i += tr->world) {
        float l;
        at.position = (uint64_t)(i < n ? i : 0) * (uint64_t)tr->B;
        TG_TRY(tg_loader_state_set(tr->val, &at, err));
        TG_TRY(tg_loader_next(tr->val, tr->inputs, tr->targets, err));
        TG_TRY(tg_model_forward(tr->model, tr->inputs, tr->targets, tr->B, err));
        TG_TRY(tg_model_loss(tr->model, &l, err));
        if (i >= n) continue;
        sum_count[0] += l;
        sum_count[1] += 1;
    }
    TG_TRY(tg_comm_all_reduce_host(tr->comm, sum_count, 2, TG_COMM_F64, TG_COMM_SUM, err));
    *val_loss = sum_count[0] / sum_count[1];
cleanup:
    return st;
}

/* Collects everything a checkpoint holds on every rank (collectives inside), then rank 0 hands
 * it to the async writer. */
static tg_status save_checkpoint(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    char *cfg_text = NULL;
    tg_loader_state *states = NULL;
    tg_dp_optim_state os;
    const double t0 = tg_now_ms(); /* the stall: the gather (device to host) and the copy */
    TG_TRY(tg_dp_optim_state_gather(tr->opt, &os, err));
    states = calloc((size_t)tr->world, sizeof *states);
    TG_CHECK_ALLOC(err, states);
    tg_loader_state_get(tr->train, &states[tr->rank]);
    TG_TRY(tg_comm_all_gather_host(tr->comm, states, 2, TG_COMM_I64, err));
    if (tr->is_root) {
        cfg_text = tg_config_to_string(tr->cfg);
        TG_CHECK_ALLOC(err, cfg_text);
        tg_ckpt_state cs = {
            .step = tr->step, .tokens_seen = tr->tokens_seen, .rng_state = tr->rng.state,
            .world_size = tr->world, .zero_stage = tr->cfg->zero_stage,
            .n_loader_states = tr->world, .loader_states = states, .config_ini = cfg_text,
            .tokenizer_hash = (char *)tg_loader_tokenizer_hash(tr->train),
            .tokenizer_path = (char *)tr->cfg->tokenizer,
            .model_cfg = tg_model_layout(tr->model)->cfg, .params = (float *)os.params,
            .adam_m = (float *)os.adam_m, .adam_v = (float *)os.adam_v, .master = NULL,
            .muon = tr->cfg->optimizer == TG_OPTIMIZER_MUON};
        double copy_ms = 0;
        TG_TRY(tg_ckpt_writer_save(tr->ckpt, &cs, &copy_ms, err));
        const double stall = tg_now_ms() - t0;
        tg_log_info(tr->lg, "checkpoint step %lld queued (training stalled %.1f ms, %.1f of it the copy)",
                    (long long)tr->step, stall, copy_ms);
        tg_metrics_write_ckpt(tr->metrics, (int)tr->step, stall);
    }
cleanup:
    free(cfg_text);
    free(states);
    return st;
}

/* Rank 0: the newest complete checkpoint in <out_dir>/checkpoints, "" when there is none. */
static tg_status latest_checkpoint(trainer *tr, char *path, size_t cap, tg_error *err) {
    tg_status st = TG_OK;
    path[0] = 0;
    if (!tr->is_root) return TG_OK;
    char dir[TG_PATH_MAX + 16];
    int found = 0;
    snprintf(dir, sizeof dir, "%s/checkpoints", tr->cfg->out_dir);
    TG_TRY(tg_ckpt_find_latest(dir, tr->lg, path, cap, &found, err));
    if (!found) path[0] = 0;
cleanup:
    return st;
}

/* The checkpoint train.resume names: "" when there is none to resume (resume=none, or auto
 * with no checkpoint in out_dir yet). Rank 0 looks; every rank gets its answer. */
static tg_status resume_path(trainer *tr, char *path, size_t cap, tg_error *err) {
    tg_status st = TG_OK;
    path[0] = 0;
    if (tr->cfg->resume == TG_RESUME_PATH) snprintf(path, cap, "%s", tr->cfg->resume_path);
    if (tr->cfg->resume == TG_RESUME_AUTO) TG_TRY(latest_checkpoint(tr, path, cap, err));
    TG_TRY(tg_comm_broadcast_host(tr->comm, path, cap, 0, err));
cleanup:
    return st;
}

/* Resume from train.resume (auto | none | PATH). Rank 0 picks the file, everyone loads it. */
static tg_status load_checkpoint(trainer *tr, const char *path, int with_loader, tg_error *err);

static tg_status maybe_resume(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    char path[TG_PATH_MAX] = "";
    if (tr->cfg->resume == TG_RESUME_NONE) return TG_OK;
    TG_TRY(resume_path(tr, path, sizeof path, err));
    if (!path[0]) {
        tg_log_info(tr->lg, "resume=auto: no checkpoint in %s/checkpoints, starting fresh", tr->cfg->out_dir);
        return TG_OK;
    }
    TG_TRY(load_checkpoint(tr, path, 1, err));
    snprintf(tr->resumed_from, sizeof tr->resumed_from, "%s", path);
cleanup:
    return st;
}

/* Loads PATH's parameters, optimizer state, step, token count and RNG (every rank), and with
 * with_loader its data position too. */
static tg_status load_checkpoint(trainer *tr, const char *path, int with_loader, tg_error *err) {
    tg_status st = TG_OK;
    tg_ckpt_state cs;
    memset(&cs, 0, sizeof cs);
    TG_TRY(tg_ckpt_load(path, &cs, err));
    const tg_gpt2_config *mc = &tg_model_layout(tr->model)->cfg;
    if (!tg_gpt2_config_equal(&cs.model_cfg, mc))
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
    /* The moments mean different things to the two optimizers (Muon's momentum, no v). */
    if (cs.adam_m && cs.muon != (tr->cfg->optimizer == TG_OPTIMIZER_MUON))
        TG_FAIL(err, TG_ERR_CONFIG,
                "%s: the checkpoint's optimizer state is %s's, but train.optimizer=%s; resume with "
                "train.optimizer=%s (or start a new run from its weights with train.init_from)",
                path, cs.muon ? "Muon" : "AdamW", tr->cfg->optimizer == TG_OPTIMIZER_MUON ? "muon" : "adamw",
                cs.muon ? "muon" : "adamw");
    TG_TRY(tg_dp_optim_state_load(tr->opt, cs.params, cs.adam_m && cs.adam_v ? cs.adam_m : NULL,
                                  cs.adam_m && cs.adam_v ? cs.adam_v : NULL, err));
    tr->step = cs.step;
    tr->tokens_seen = cs.tokens_seen;
    tr->rng.state = cs.rng_state;
    if (cs.n_loader_states < 1) TG_FAIL(err, TG_ERR_FORMAT, "%s: no loader state", path);
    /* The position is global (data/loader.h), so any rank's state serves any world size. */
    if (with_loader) {
        TG_TRY(tg_loader_state_set(tr->train, &cs.loader_states[0], err));
        tg_log_info(tr->lg, "resumed from %s at step %lld (%lld tokens seen; saved with %d ranks, now %d)", path,
                    (long long)cs.step, (long long)cs.tokens_seen, cs.world_size, tr->world);
    }
cleanup:
    tg_ckpt_state_free(&cs);
    return st;
}

/* ---- the backend's timed choices (tg_model_tuning_get): <out_dir>/tuning/rank-NNNNN.bin ----
 * Written by every rank whenever its set changes (the first step, the first evaluation), read
 * back on resume before the first forward, so a resumed run with cuda.cublaslt_tune=1 uses the
 * algorithms the run it continues used: the same bits. Nothing is written when nothing is
 * timed. (cuDNN's plans timed with cuda.cudnn_tune are not kept: docs/cuda.md.) */
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
    tg_metrics_write_sample(tr->metrics, step, (const char *)text, len);
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


/* ---- setup, in the order the run needs things ---- */

/* Ranks, batch shape (micro-steps per step from train.total_batch_tokens), schedule, threads. */
static tg_status setup_shape(trainer *tr, const tg_config *cfg, tg_comm *comm, const tg_log *lg, tg_error *err) {
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
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.total_batch_tokens (%lld) must be a multiple of micro_batch*seq_len*world "
                            "(%d*%d*%d = %lld)",
                            (long long)total, tr->B, tr->T, tr->world, (long long)per_micro);
    tr->accum = (int)(total / per_micro);
    tr->tokens_per_step = total;
    /* Sharded storage is the CPU backends'; with sharded parameters a forward is collective,
     * which rank 0's samples and the ranks' uneven shares of eval_tasks are not. */
    if (cfg->zero_stage >= 2 && tg_train_device(cfg) != TG_DEVICE_CPU)
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.zero_stage=%d (sharded gradients%s) runs on the CPU backend only (train.device=cpu); "
                            "use zero_stage 0 or 1 on CUDA", cfg->zero_stage, cfg->zero_stage == 3 ? " and parameters" : "");
    if (cfg->zero_stage == 3 && (cfg->sample_every > 0 || cfg->eval_tasks[0]))
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.zero_stage=3 shards the parameters, so one rank cannot run the model alone: "
                            "train.sample_every and train.eval_tasks need zero_stage <= 2");
    if (cfg->eval_tasks[0] && !cfg->tokenizer[0])
        return tg_error_set(err, TG_ERR_CONFIG, "train.eval_tasks needs data.tokenizer (the tokenizer file) to encode the tasks");
    if (cfg->sample_every > 0 && !cfg->tokenizer[0])
        return tg_error_set(err, TG_ERR_CONFIG,
                            "train.sample_every needs data.tokenizer (the tokenizer file) to decode samples");
    tr->sched = (tg_schedule){.kind = cfg->schedule, .lr = cfg->lr, .min_lr = cfg->min_lr,
                              .warmup_steps = cfg->warmup_steps, .max_steps = cfg->max_steps,
                              .decay_frac = cfg->decay_frac, .decay_shape = cfg->decay_shape};
    if (cfg->spike_sigma > 0) {
        tr->spike_hist = calloc((size_t)cfg->spike_window, sizeof *tr->spike_hist);
        if (!tr->spike_hist) return tg_error_set(err, TG_ERR_NOMEM, "out of memory (spike window)");
    }
    if (cfg->threads > 0) omp_set_num_threads(cfg->threads);
    else omp_set_num_threads(tg_comm_cpu_threads(comm, omp_get_num_procs()));
    /* Test builds only: switches that fail a step or poison its loss (core/fault.h). */
    tg_status st = TG_OK;
    TG_TRY(tg_fault_get(TG_FAULT_STEP, 0, &tr->fault_step, err));
    TG_TRY(tg_fault_get(TG_FAULT_STEP_RANK, 0, &tr->fault_rank, err));
    TG_TRY(tg_fault_get(TG_FAULT_NAN_STEP, 0, &tr->nan_step, err));
    TG_TRY(tg_fault_get(TG_FAULT_SPIKE_STEP, 0, &tr->spike_step, err));
cleanup:
    return st;
}

static tg_status setup_sources(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    tg_loader_options lo = {.glob = cfg->train, .B = tr->B, .T = tr->T, .rank = tr->rank, .world = tr->world,
                            .seed = cfg->seed, .shuffle = 1, .vocab_size = cfg->vocab_size, .prefetch = 4};
    TG_TRY(tg_loader_open(&tr->train, &lo, err));
    const int V = tg_loader_vocab_size(tr->train);
    if (cfg->val[0]) {
        lo.glob = cfg->val;
        lo.shuffle = 0;
        lo.prefetch = 0;
        lo.rank = 0; /* every rank reads the one global val set (evaluate picks its batches) */
        lo.world = 1;
        TG_TRY(tg_loader_open(&tr->val, &lo, err));
        tr->has_val = 1;
        if (tg_loader_vocab_size(tr->val) != V)
            TG_FAIL(err, TG_ERR_DATA, "data.val has vocab_size %d but data.train has %d",
                    tg_loader_vocab_size(tr->val), V);
    }
    if (cfg->vocab_size && cfg->vocab_size != V)
        TG_FAIL(err, TG_ERR_DATA, "model.vocab_size=%d but the training data has vocab_size %d", cfg->vocab_size, V);
    tr->inputs = malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    tr->targets = malloc((size_t)tr->B * tr->T * sizeof(int32_t));
    TG_CHECK_ALLOC(err, tr->inputs);
    TG_CHECK_ALLOC(err, tr->targets);
cleanup:
    return st;
}

/* The model on its device, the collectives' backend, the optimizer step, the initial weights. */
static tg_status setup_model(trainer *tr, tg_gpt2_config *mc, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    *mc = tg_train_model_config(cfg, tg_loader_vocab_size(tr->train), cfg->seq_len);
    TG_TRY(tg_gpt2_config_finalize(mc, err));
    tg_model_options mo = {.device = tg_train_device(cfg), .recompute = cfg->recompute, .B = tr->B, .T = tr->T,
                           .pad_multiple = (size_t)tr->world * 64, .cuda = tg_train_cuda_options(cfg), .log = tr->lg};
    if (mo.device == TG_DEVICE_CUDA) {
        int n = tg_model_cuda_device_count();
        mo.bf16 = cfg->precision == TG_PRECISION_BF16;
        if (cfg->comm_backend == TG_COMM_PICK_MPI) TG_TRY(tg_comm_pick_cuda_device_shared(tr->comm, n, &mo.cuda_device, err));
        else TG_TRY(tg_comm_pick_cuda_device(tr->comm, n, &mo.cuda_device, err));
    } else {
        /* The CPU reference trains in fp32; train.cpu_emulate_bf16 makes it round to bf16 where
         * the CUDA backend stores bf16: the reference for bf16 loss curves. */
        mo.bf16 = cfg->cpu_emulate_bf16 && cfg->precision == TG_PRECISION_BF16;
    }
    TG_TRY(tg_model_init(&tr->model, mc, &mo, err));
    /* On GPUs gradients go through NCCL, also with one rank, so a single-GPU run exercises the
     * same path as a multi-node one; or, with comm.backend=mpi, through MPI on staged copies. */
    if (mo.device == TG_DEVICE_CUDA && cfg->comm_backend == TG_COMM_PICK_MPI)
        TG_TRY(tg_comm_use_mpi_device(tr->comm, mo.cuda_device, tg_model_stream(tr->model), err));
    else if (mo.device == TG_DEVICE_CUDA)
        TG_TRY(tg_comm_use_nccl(tr->comm, mo.cuda_device, tg_model_stream(tr->model), err));
    tg_dp_optim_options oo = {.zero_stage = cfg->zero_stage, .beta1 = cfg->beta1, .beta2 = cfg->beta2,
                              .eps = cfg->eps, .weight_decay = cfg->weight_decay, .grad_clip = cfg->grad_clip,
                              .muon = cfg->optimizer == TG_OPTIMIZER_MUON, .muon_momentum = cfg->muon_momentum,
                              .muon_weight_decay = cfg->muon_weight_decay, .muon_nesterov = cfg->muon_nesterov,
                              .muon_ns_steps = cfg->muon_ns_steps};
    TG_TRY(tg_dp_optim_init(&tr->opt, tr->model, tr->comm, &oo, err));
    TG_TRY(tg_dp_optim_params_init(tr->opt, cfg->seed, err));
    tr->flops_per_step =
        tg_gpt2_flops_per_token(tg_model_layout(tr->model), tr->T) * (double)tr->B * tr->T * tr->accum * tr->world;
    tg_device_info di;
    TG_TRY(tg_model_device_info(tr->model, &di, err));
    if (cfg->precision == TG_PRECISION_BF16) tr->peak_tflops = di.peak_bf16_tflops * tr->world;
cleanup:
    return st;
}

/* Rank 0: out_dir, its checkpoints/ with the async writer, and config.ini. */
static tg_status setup_run_dir(trainer *tr, const tg_gpt2_config *mc, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    char path[TG_PATH_MAX + 32];
    if (!tr->is_root) return TG_OK;
    TG_TRY(tg_fs_mkdir_p(cfg->out_dir, err));
    snprintf(path, sizeof path, "%s/checkpoints", cfg->out_dir);
    TG_TRY(tg_fs_mkdir_p(path, err));
    TG_TRY(tg_ckpt_writer_init(&tr->ckpt, path, cfg->ckpt_keep, tr->lg, err));
    /* Touch the staging buffers now so the first save does not stall on page faults. */
    TG_TRY(tg_ckpt_writer_reserve(tr->ckpt, mc, 1, 0, err));
    snprintf(path, sizeof path, "%s/config.ini", cfg->out_dir);
    FILE *f = fopen(path, "w");
    if (!f) TG_FAIL(err, TG_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    tg_config_write(cfg, f);
    fclose(f);
cleanup:
    return st;
}

/* train.init_from: a run that did not resume starts from those weights (every rank loads them);
 * resuming wins, since the run's own checkpoint already descends from them. */
static tg_status maybe_init_from(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    float *params = NULL;
    if (!tr->cfg->init_from[0]) return TG_OK;
    if (tr->resumed_from[0]) {
        tg_log_info(tr->lg, "train.init_from=%s ignored: resumed from %s (resume wins over init_from)",
                    tr->cfg->init_from, tr->resumed_from);
        return TG_OK;
    }
    TG_TRY(tg_init_from_load(tr->cfg->init_from, &tg_model_layout(tr->model)->cfg, &params, err));
    TG_TRY(tg_dp_optim_state_load(tr->opt, params, NULL, NULL, err));
    tg_log_info(tr->lg, "init_from %s: weights loaded; fresh optimizer, step 0, data from the start",
                tr->cfg->init_from);
cleanup:
    free(params);
    return st;
}

/* Rank 0, with train.sample_every: the tokenizer, checked against the shards and the model. */
static tg_status setup_tokenizer(trainer *tr, const tg_gpt2_config *mc, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    if (!cfg->tokenizer[0] || !tr->is_root) return TG_OK;
    TG_TRY(tg_tokenizer_load(&tr->tok, cfg->tokenizer, err));
    const char *shard_hash = tg_loader_tokenizer_hash(tr->train);
    if (shard_hash[0] && strcmp(shard_hash, tg_tokenizer_hash(tr->tok)) != 0)
        TG_FAIL(err, TG_ERR_DATA,
                "data.tokenizer %s (sha256 %.16s...) is not the tokenizer the shards of data.train were made "
                "with (sha256 %.16s...)",
                cfg->tokenizer, tg_tokenizer_hash(tr->tok), shard_hash);
    if (tg_tokenizer_vocab_size(tr->tok) > mc->vocab_size)
        TG_FAIL(err, TG_ERR_DATA, "data.tokenizer %s has %d tokens but the model only %d", cfg->tokenizer,
                tg_tokenizer_vocab_size(tr->tok), mc->vocab_size);
cleanup:
    return st;
}

/* Every rank, with train.eval_tasks: the tasks, tokenized (each rank scores its share of them). */
static tg_status setup_tasks(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    tg_tokenizer *tok = NULL;
    if (!tr->cfg->eval_tasks[0]) return TG_OK;
    TG_TRY(tg_tokenizer_load(&tok, tr->cfg->tokenizer, err));
    TG_TRY(tg_mc_load(&tr->tasks, tr->cfg->eval_tasks, tok, err));
cleanup:
    tg_tokenizer_free(tok);
    return st;
}

/* Multiple-choice accuracy on train.eval_tasks: rank r scores items i % world == r; the counts
 * are all-reduced, so the result is the same at any world size. */
static tg_status evaluate_tasks(trainer *tr, int step, tg_error *err) {
    tg_status st = TG_OK;
    tg_mc_counts c = {0};
    TG_TRY(tg_mc_score(tr->tasks, tr->model, tr->rank, tr->world, &c, NULL, err));
    double v[3] = {c.n_items, c.n_correct, c.n_correct_norm};
    TG_TRY(tg_comm_all_reduce_host(tr->comm, v, 3, TG_COMM_F64, TG_COMM_SUM, err));
    tg_log_info(tr->lg, "step %5d/%d | eval acc %.4f | acc_norm %.4f (%.0f items)", step, tr->cfg->max_steps,
                v[1] / v[0], v[2] / v[0], v[0]);
    tg_metrics_write_tasks(tr->metrics, step, v[1] / v[0], v[2] / v[0], (int)v[0]);
cleanup:
    return st;
}

static void log_run(const trainer *tr, const tg_gpt2_config *mc) {
    const tg_model_options *mo = tg_model_opts(tr->model);
    const int cuda = mo->device == TG_DEVICE_CUDA;
    tg_log_info(tr->lg,
                "model %s: L=%d NH=%d C=%d T=%d V=%d (padded %d), %.2fM parameters; device %s%s; "
                "%d rank(s) [%s], %d thread(s)/rank",
                mc->arch == TG_MODEL_ARCH_LLAMA ? "llama" : "gpt2", mc->n_layer, mc->n_head, mc->n_embd, mc->max_seq_len, mc->vocab_size, mc->padded_vocab_size,
                (double)tg_model_layout(tr->model)->n_params / 1e6, cuda ? "cuda" : "cpu",
                cuda ? (mo->bf16 ? " bf16" : " fp32") : "", tr->world, tg_comm_backend_name(tr->comm),
                omp_get_max_threads());
    tg_log_info(tr->lg, "backend: %s", tg_model_describe(tr->model));
    tg_log_info(tr->lg, "batch: %d x %d tokens/micro-step x %d ranks x %d accumulation = %lld tokens/step",
                tr->B, tr->T, tr->world, tr->accum, (long long)tr->tokens_per_step);
    tg_dp_optim_log_memory(tr->opt, tr->lg);
}

static tg_status setup(trainer *tr, const tg_config *cfg, tg_comm *comm, const tg_log *lg, tg_error *err) {
    tg_status st = TG_OK;
    tg_gpt2_config mc;
    TG_TRY(setup_shape(tr, cfg, comm, lg, err));
    TG_TRY(setup_sources(tr, err));
    TG_TRY(setup_model(tr, &mc, err));
    TG_TRY(setup_run_dir(tr, &mc, err));
    TG_TRY(setup_tokenizer(tr, &mc, err));
    TG_TRY(setup_tasks(tr, err));
    TG_TRY(tg_comm_barrier(comm, err)); /* out_dir exists before anyone looks for checkpoints */
    TG_TRY(maybe_resume(tr, err));
    TG_TRY(maybe_init_from(tr, err));
    if (tr->step > 0) TG_TRY(tuning_load(tr, err));
    if (tr->is_root) TG_TRY(tg_metrics_open(&tr->metrics, cfg->out_dir, tr->step, err));
    log_run(tr, &mc);
cleanup:
    return st;
}

static void teardown(trainer *tr) {
    tg_error e;
    if (tr->ckpt) {
        if (tg_ckpt_writer_wait(tr->ckpt, &e) != TG_OK) tg_log_warn(tr->lg, "checkpoint: %s", e.msg);
        tg_ckpt_writer_free(tr->ckpt);
    }
    tg_metrics_free(tr->metrics);
    tg_tokenizer_free(tr->tok);
    tg_mc_free(tr->tasks);
    tg_loader_free(tr->train);
    tg_loader_free(tr->val);
    tg_dp_optim_free(tr->opt);
    tg_model_free(tr->model);
    free(tr->tuning);
    free(tr->spike_hist);
    free(tr->inputs);
    free(tr->targets);
}

/* ---- one step ---- */

/* Test builds only (core/fault.h): fail on purpose at a step, or poison its loss. */
static tg_status fault_inject(trainer *tr, int step, double *loss_sum, tg_error *err) {
    if (!TG_FAULT_ENABLED) return TG_OK;
    if (tr->fault_step == step && tr->fault_rank == tr->rank)
        return tg_error_set(err, TG_ERR_INTERNAL, "injected fault at step %d (test switch TRUTHGPT_FAULT_STEP)",
                            step);
    if (tr->nan_step == step) *loss_sum = NAN;
    if (tr->spike_step == step) {
        *loss_sum *= 1000;
        tr->spike_step = 0;
    }
    return TG_OK;
}

/* Loss spikes (train.spike_sigma): the threshold mean + sigma * std over the last spike_window
 * ordinary losses, once the window is full; 0 while detection is off or still filling. The same on
 * every rank (the losses are global). */
static double spike_threshold(const trainer *tr) {
    const tg_config *cfg = tr->cfg;
    if (cfg->spike_sigma <= 0 || tr->spike_n < cfg->spike_window) return 0;
    double mean = 0, var = 0;
    for (int i = 0; i < tr->spike_n; i++) mean += tr->spike_hist[i];
    mean /= tr->spike_n;
    for (int i = 0; i < tr->spike_n; i++) var += (tr->spike_hist[i] - mean) * (tr->spike_hist[i] - mean);
    return mean + cfg->spike_sigma * sqrt(var / tr->spike_n);
}

static void spike_push(trainer *tr, double loss) {
    if (!tr->spike_hist) return;
    tr->spike_hist[tr->spike_next] = loss;
    tr->spike_next = (tr->spike_next + 1) % tr->cfg->spike_window;
    if (tr->spike_n < tr->cfg->spike_window) tr->spike_n++;
}

/* The step's record: metrics.jsonl, the progress line, and the count of skipped steps. */
static tg_status record_step(trainer *tr, const tg_dp_optim_step_args *a, const tg_dp_optim_result *r,
                             double threshold, double ms, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    const int step = a->step;
    int spike = 0;
    if (r->skipped) {
        tr->nan_run++;
        tg_log_warn(tr->lg, "step %d: non-finite loss %g / grad norm %g: update skipped (%d in a row, limit %d)",
                    step, r->loss, r->norm, tr->nan_run, cfg->nan_patience);
        tg_metrics_write_skipped(tr->metrics, step);
        if (tr->nan_run >= cfg->nan_patience) {
            /* The skipped updates left the parameters as they were: keep them for a restart. */
            TG_TRY(save_checkpoint(tr, err));
            if (tr->ckpt) TG_TRY(tg_ckpt_writer_wait(tr->ckpt, err));
            tg_log_warn(tr->lg, "saved step %d (the parameters before the non-finite steps)", step);
            return tg_error_set(err, TG_ERR_NUMERIC, "%d non-finite losses in a row (train.nan_patience=%d): stopping",
                                tr->nan_run, cfg->nan_patience);
        }
    } else {
        tr->nan_run = 0;
        spike = threshold > 0 && r->loss > threshold;
        if (spike)
            tg_log_warn(tr->lg, "step %d: loss spike %.4f above %.4f (running mean + %g std of %d steps)%s", step,
                        r->loss, threshold, cfg->spike_sigma, cfg->spike_window,
                        r->spike_skipped ? ": update skipped" : "");
        else spike_push(tr, r->loss);
        if (spike && cfg->spike_action == 2) tr->spikes_pending++;
    }
    double tok_s = (double)tr->tokens_per_step / (ms / 1e3);
    if (isfinite(r->loss)) {
        tg_metrics_step m = {.step = step, .loss = r->loss, .lr = a->lr, .grad_norm = r->norm,
                             .tokens = tr->tokens_seen, .ms = ms, .tokens_per_s = tok_s,
                             .tflops = tr->flops_per_step / (ms / 1e3) / 1e12, .spike = spike};
        if (tr->peak_tflops > 0) m.mfu = m.tflops / tr->peak_tflops;
        tg_metrics_write_step(tr->metrics, &m);
    }
    if (step % cfg->log_every == 0 || step == cfg->max_steps || step == 1) {
        char eta[32];
        double per_step = (tg_now_ms() - tr->t_start) / (double)(tr->step - tr->first_step);
        format_eta(per_step * (cfg->max_steps - step) / 1e3, eta, sizeof eta);
        tg_log_info(tr->lg, "step %5d/%d | loss %.4f | lr %.2e | norm %.3f | %.1f ms | %.0f tok/s | ETA %s", step,
                    cfg->max_steps, r->loss, a->lr, r->norm, ms, tok_s, eta);
    }
cleanup:
    return st;
}

/* spike_action=rollback, after spike_patience spikes: back to the newest checkpoint's parameters,
 * optimizer state and step. The data position is NOT rewound: the run is deterministic, so the same
 * batches after the same state would spike again; like PaLM's restarts it goes on past them. Every
 * rank decides alike (the losses are global) and rank 0's choice of file is broadcast. */
static tg_status spike_rollback(trainer *tr, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    const long long at = tr->step;
    char path[TG_PATH_MAX];
    if (tr->rollbacks >= cfg->spike_rollbacks)
        return tg_error_set(err, TG_ERR_NUMERIC,
                            "step %lld: %d loss spikes again after %d rollbacks (train.spike_rollbacks=%d): stopping", at,
                            tr->spikes_pending, tr->rollbacks, cfg->spike_rollbacks);
    if (tr->ckpt) TG_TRY(tg_ckpt_writer_wait(tr->ckpt, err)); /* a save in flight is the newest */
    TG_TRY(latest_checkpoint(tr, path, sizeof path, err));
    TG_TRY(tg_comm_broadcast_host(tr->comm, path, sizeof path, 0, err));
    if (!path[0])
        return tg_error_set(err, TG_ERR_NUMERIC,
                            "step %lld: %d loss spikes (train.spike_patience=%d) and no checkpoint in %s/checkpoints to "
                            "roll back to (set checkpoint.every)",
                            at, tr->spikes_pending, cfg->spike_patience, cfg->out_dir);
    TG_TRY(load_checkpoint(tr, path, 0, err));
    tr->rollbacks++;
    tr->spikes_pending = 0;
    tg_log_warn(tr->lg, "step %lld: %d loss spikes: rolled back to step %lld from %s (rollback %d of at most %d; the data "
                "goes on from where it was)",
                at, cfg->spike_patience, (long long)tr->step, path, tr->rollbacks, cfg->spike_rollbacks);
cleanup:
    return st;
}

/* After a step: validation, a sample, tuning files, and a checkpoint when due or when a stop is
 * requested (agreed on by all ranks, so that everyone saves the same step). */
static tg_status after_step(trainer *tr, int step, const tg_train_hooks *hooks, int *stopped, tg_error *err) {
    tg_status st = TG_OK;
    const tg_config *cfg = tr->cfg;
    if (tr->has_val && cfg->eval_every && (step % cfg->eval_every == 0 || step == cfg->max_steps)) {
        double vl;
        TG_TRY(evaluate(tr, &vl, err));
        tg_log_info(tr->lg, "step %5d/%d | val loss %.4f", step, cfg->max_steps, vl);
        tg_metrics_write_val(tr->metrics, step, vl);
        /* vl is the same on every rank (all-reduced), so every rank stops here */
        if (cfg->target_val_loss > 0 && vl <= cfg->target_val_loss) {
            tr->target_reached = 1;
            tg_log_info(tr->lg, "target val loss %.4f reached at step %d: val loss %.4f after %.1f s and %lld tokens",
                        cfg->target_val_loss, step, vl, (tg_now_ms() - tr->t_start) / 1e3,
                        (long long)tr->tokens_seen);
        }
    }
    if (tr->tasks && cfg->eval_every && (step % cfg->eval_every == 0 || step == cfg->max_steps))
        TG_TRY(evaluate_tasks(tr, step, err));
    if (tr->tok && cfg->sample_every > 0 && step % cfg->sample_every == 0) TG_TRY(print_sample(tr, step, err));
    TG_TRY(tuning_save(tr, err));
    double stop = hooks && hooks->stop_requested && *hooks->stop_requested ? 1.0 : 0.0;
    if (tr->world > 1) TG_TRY(tg_comm_all_reduce_host(tr->comm, &stop, 1, TG_COMM_F64, TG_COMM_MAX, err));
    int last = step == cfg->max_steps || tr->target_reached;
    if (stop > 0 || last || (cfg->ckpt_every && step % cfg->ckpt_every == 0)) TG_TRY(save_checkpoint(tr, err));
    if (stop > 0) {
        /* "saved" only once the file is complete on disk (writer joined: fsync + rename), and
         * only after every rank got there. */
        if (tr->ckpt) TG_TRY(tg_ckpt_writer_wait(tr->ckpt, err));
        TG_TRY(tg_comm_barrier(tr->comm, err));
        tg_metrics_write_stop(tr->metrics, step);
        tg_log_info(tr->lg, "stop requested: saved step %d, exiting with %d (requeue me)", step, TG_EXIT_REQUEUE);
        *stopped = 1;
    }
cleanup:
    return st;
}

tg_status tg_train_run(const tg_config *cfg, tg_comm *comm, const tg_log *lg, const tg_train_hooks *hooks,
                       int *stopped, tg_error *err) {
    tg_status st = TG_OK;
    trainer tr;
    *stopped = 0;
    TG_TRY(setup(&tr, cfg, comm, lg, err));
    tr.t_start = tg_now_ms();
    tr.first_step = tr.step;
    tr.target_reached = 0;
    while (tr.step < cfg->max_steps && !*stopped && !tr.target_reached) {
        const int step = (int)tr.step + 1;
        const double t0 = tg_now_ms();
        double loss_sum = 0;
        TG_TRY(tg_dp_optim_zero_grad(tr.opt, err));
        for (int k = 0; k < tr.accum; k++) {
            float l;
            tg_dp_optim_micro_step_begin(tr.opt, k == tr.accum - 1);
            TG_TRY(tg_loader_next(tr.train, tr.inputs, tr.targets, err));
            TG_TRY(tg_model_forward(tr.model, tr.inputs, tr.targets, tr.B, err));
            TG_TRY(tg_model_backward(tr.model, 1.0f / (float)(tr.accum * tr.world), err));
            TG_TRY(tg_model_loss(tr.model, &l, err));
            loss_sum += l;
        }
        TG_TRY(fault_inject(&tr, step, &loss_sum, err));
        const double threshold = spike_threshold(&tr);
        const double lr = tg_schedule_lr(&tr.sched, step);
        /* Muon's rate follows the same schedule: the AdamW rate's share of its peak. */
        const double muon_lr = cfg->muon_lr * (cfg->lr > 0 ? lr / cfg->lr : 1.0);
        tg_dp_optim_step_args a = {.step = step, .lr = lr, .muon_lr = muon_lr, .loss_sum = loss_sum,
                                   .n_micro = tr.accum, .skip_above = cfg->spike_action >= 1 ? threshold : 0};
        tg_dp_optim_result r;
        TG_TRY(tg_dp_optim_step(tr.opt, &a, &r, err));
        tr.step = step;
        tr.tokens_seen += tr.tokens_per_step;
        TG_TRY(record_step(&tr, &a, &r, threshold, tg_now_ms() - t0, err));
        if (cfg->spike_action == 2 && tr.spikes_pending >= cfg->spike_patience) {
            TG_TRY(spike_rollback(&tr, err));
            continue;
        }
        TG_TRY(after_step(&tr, step, hooks, stopped, err));
    }
    if (tr.ckpt) TG_TRY(tg_ckpt_writer_wait(tr.ckpt, err));
    if (!*stopped)
        tg_log_info(lg, "done: %lld steps, %lld tokens, %.1f s", (long long)tr.step, (long long)tr.tokens_seen,
                    (tg_now_ms() - tr.t_start) / 1e3);
cleanup:
    teardown(&tr);
    return st;
}
