/* model/cuda/cudnn_attention.cpp — causal attention through cuDNN's fused SDPA (flash attention on
 * Hopper's tensor-memory instructions), built with NVIDIA's header-only cudnn-frontend
 * (scripts/install-deps.sh fetches its headers; without them this file compiles to stubs that
 * report "not built" and the backend uses flash_attention.cu).
 *
 * Layouts are the ones flash_attention.cu uses, described to cuDNN as strides: q, k, v read in
 * place from qkv (B, T, 3, NH, HS); y and dy (B, T, NH, HS); dq, dk, dv written into dqkv
 * (B, T, 3, NH, HS); with NKV < NH key/value heads (grouped-query attention), qkv and dqkv rows
 * are q (NH, HS) | k (NKV, HS) | v (NKV, HS); stats (B, NH, T) fp32 (natural-log log-sum-exp: only cuDNN's backward
 * reads it). The graphs are built once, at init, for one (B, T, NH, HS); building is slow
 * (~1 s) and may fail where cuDNN has no engine — then init reports why and the caller falls
 * back. The backward graph asks for cuDNN's deterministic algorithm (no dQ atomics) unless
 * deterministic = 0, so training stays bitwise reproducible. With tune (an opt-in speed
 * option) every candidate plan is built and the first call of each direction times them
 * (cudnn-frontend's autotune) and keeps the fastest; like cuBLASLt tuning, the pick can differ
 * between processes. */
#include "model/cuda/cudnn_attention.h"

#include <cudnn.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

size_t tg_cudnn_version(void) { return cudnnGetVersion(); }

#ifdef TG_HAVE_CUDNN_FE
#include <cudnn_frontend.h>

#include <memory>
#include <unordered_map>

namespace fe = cudnn_frontend;

enum { UID_Q = 1, UID_K, UID_V, UID_SCALE, UID_O, UID_STATS, UID_DO, UID_DQ, UID_DK, UID_DV };

struct tg_cudnn_attn {
    cudnnHandle_t handle;
    std::shared_ptr<fe::graph::Graph> fwd, bwd;
    int64_t ws_bytes;
    void *ws;
    float scale;
    int64_t nkv_hs;         /* NKV * HS: v starts this far after k in a row */
    int tune_fwd, tune_bwd; /* autotune still to do on the first call (tune) */
    const tg_log *log;      /* says which plan autotuning picked */
};

/* q (B, H = NH, T, HS), or k or v (B, H = NKV, T, HS), inside qkv rows of R = (NH + 2 NKV) HS
 * elements (3 NH HS without grouped-query attention) */
static std::shared_ptr<fe::graph::Tensor_attributes> qkv_tensor(fe::graph::Graph &g, const char *name,
                                                                int64_t uid, int64_t B, int64_t H,
                                                                int64_t T, int64_t HS, int64_t R) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({B, H, T, HS})
                        .set_stride({R * T, HS, R, 1}));
}

static fe::graph::Tensor_attributes bthd(const char *name, int64_t uid, int64_t B, int64_t NH, int64_t T,
                                         int64_t HS) {
    return fe::graph::Tensor_attributes()
        .set_name(name)
        .set_uid(uid)
        .set_dim({B, NH, T, HS})
        .set_stride({NH * HS * T, HS, NH * HS, 1});
}

static fe::graph::Tensor_attributes stats_attr(int64_t B, int64_t NH, int64_t T) {
    return fe::graph::Tensor_attributes()
        .set_name("stats")
        .set_uid(UID_STATS)
        .set_dim({B, NH, T, 1})
        .set_stride({NH * T, T, 1, 1})
        .set_data_type(fe::DataType_t::FLOAT);
}

static std::shared_ptr<fe::graph::Tensor_attributes> scale_tensor(fe::graph::Graph &g) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name("attn_scale")
                        .set_uid(UID_SCALE)
                        .set_dim({1, 1, 1, 1})
                        .set_stride({1, 1, 1, 1})
                        .set_is_pass_by_value(true)
                        .set_data_type(fe::DataType_t::FLOAT));
}

static std::shared_ptr<fe::graph::Graph> new_graph(void) {
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(fe::DataType_t::BFLOAT16)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    return g;
}

/* validate, lower, pick the heuristic's first supported plan, build it; "" or the reason. With
 * tune, every plan the heuristics (and their fallback list) offer is built, for run() to time;
 * with deterministic too, none that cuDNN marks non-deterministic. */
static std::string finish_graph(fe::graph::Graph &g, cudnnHandle_t h, int tune, int deterministic) {
    fe::error_t e1 = g.validate();
    if (e1.is_bad()) return "validate: " + e1.get_message();
    fe::error_t e2 = g.build_operation_graph(h);
    if (e2.is_bad()) return "build_operation_graph: " + e2.get_message();
    fe::error_t e3 = tune ? g.create_execution_plans({fe::HeurMode_t::A, fe::HeurMode_t::FALLBACK})
                          : g.create_execution_plans({fe::HeurMode_t::A});
    if (e3.is_bad()) return "create_execution_plans: " + e3.get_message();
    if (tune && deterministic) g.deselect_numeric_notes({fe::NumericalNote_t::NONDETERMINISTIC});
    fe::error_t e4 = g.check_support(h);
    if (e4.is_bad()) return "check_support: " + e4.get_message();
    fe::error_t e5 = tune ? g.build_plans(h, fe::BuildPlanPolicy_t::ALL) : g.build_plans(h);
    if (e5.is_bad()) return "build_plans: " + e5.get_message();
    return std::string();
}

tg_status tg_cudnn_attn_init(tg_cudnn_attn **out, int B, int T, int NH, int HS, int deterministic,
                             int tune, const tg_log *log, char *why, size_t why_n, tg_error *err) {
    return tg_cudnn_attn_init_gqa(out, B, T, NH, NH, HS, deterministic, tune, log, why, why_n, err);
}

tg_status tg_cudnn_attn_init_gqa(tg_cudnn_attn **out, int B, int T, int NH, int NKV, int HS, int deterministic,
                                 int tune, const tg_log *log, char *why, size_t why_n, tg_error *err) {
    tg_status st = TG_OK;
    std::string msg;
    int64_t wf = 0, wb = 0;
    const int64_t R = (int64_t)(NH + 2 * NKV) * HS; /* elements per row of qkv and dqkv */
    tg_cudnn_attn *a = new tg_cudnn_attn();
    *out = NULL;
    a->scale = 1.0f / sqrtf((float)HS);
    a->nkv_hs = (int64_t)NKV * HS;
    a->log = log;
    if (cudnnCreate(&a->handle) != CUDNN_STATUS_SUCCESS) {
        msg = "cudnnCreate failed (no usable cuDNN library?)";
        goto unsupported;
    }
    try {
        auto f = new_graph();
        auto q = qkv_tensor(*f, "q", UID_Q, B, NH, T, HS, R);
        auto k = qkv_tensor(*f, "k", UID_K, B, NKV, T, HS, R);
        auto v = qkv_tensor(*f, "v", UID_V, B, NKV, T, HS, R);
        auto opts = fe::graph::SDPA_attributes()
                        .set_name("attention")
                        .set_generate_stats(true)
                        .set_causal_mask(true)
                        .set_attn_scale(scale_tensor(*f));
        auto [o, stats] = f->sdpa(q, k, v, opts);
        o->set_output(true).set_dim({B, NH, T, HS}).set_stride({(int64_t)NH * HS * T, HS, (int64_t)NH * HS, 1}).set_uid(UID_O);
        stats->set_output(true)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({B, NH, T, 1})
            .set_stride({(int64_t)NH * T, T, 1, 1})
            .set_uid(UID_STATS);
        msg = finish_graph(*f, a->handle, tune, deterministic);
        if (!msg.empty()) {
            msg = "forward: " + msg;
            goto unsupported;
        }

        auto g = new_graph();
        auto bq = qkv_tensor(*g, "q", UID_Q, B, NH, T, HS, R);
        auto bk = qkv_tensor(*g, "k", UID_K, B, NKV, T, HS, R);
        auto bv = qkv_tensor(*g, "v", UID_V, B, NKV, T, HS, R);
        auto bo = g->tensor(bthd("o", UID_O, B, NH, T, HS));
        auto bdo = g->tensor(bthd("do", UID_DO, B, NH, T, HS));
        auto bstats = g->tensor(stats_attr(B, NH, T));
        auto bopts = fe::graph::SDPA_backward_attributes()
                         .set_name("attention_backward")
                         .set_causal_mask(true)
                         .set_attn_scale(scale_tensor(*g));
        if (deterministic) bopts.set_deterministic_algorithm(true);
        auto [dq, dk, dv] = g->sdpa_backward(bq, bk, bv, bo, bdo, bstats, bopts);
        const std::vector<int64_t> dstride = {R * T, HS, R, 1};
        dq->set_output(true).set_dim({B, NH, T, HS}).set_stride(dstride).set_uid(UID_DQ);
        dk->set_output(true).set_dim({B, NKV, T, HS}).set_stride(dstride).set_uid(UID_DK);
        dv->set_output(true).set_dim({B, NKV, T, HS}).set_stride(dstride).set_uid(UID_DV);
        msg = finish_graph(*g, a->handle, tune, deterministic);
        if (!msg.empty()) {
            msg = "backward: " + msg;
            goto unsupported;
        }
        if (tune) { /* enough for every candidate plan */
            wf = f->get_autotune_workspace_size();
            wb = g->get_autotune_workspace_size();
        } else if (f->get_workspace_size(wf).is_bad() || g->get_workspace_size(wb).is_bad()) {
            msg = "workspace size query failed";
            goto unsupported;
        }
        a->tune_fwd = a->tune_bwd = tune;
        a->fwd = f;
        a->bwd = g;
    } catch (const std::exception &ex) {
        msg = std::string("cudnn-frontend: ") + ex.what();
        goto unsupported;
    }
    a->ws_bytes = wf > wb ? wf : wb;
    *out = a;
    return st;
unsupported:
    snprintf(why, why_n, "%s", msg.c_str());
    tg_cudnn_attn_free(a);
    (void)err;
    return st;
}

size_t tg_cudnn_attn_workspace(const tg_cudnn_attn *a) { return a ? (size_t)a->ws_bytes : 0; }
void tg_cudnn_attn_set_workspace(tg_cudnn_attn *a, void *ws) {
    if (a) a->ws = ws;
}

/* With *tune set: first times every built plan on these operands (cudnn-frontend's autotune:
 * synchronises; outputs are rewritten by the real call) and keeps the fastest, saying through the log
 * which of how many; then clears *tune. */
static tg_status run(tg_cudnn_attn *a, fe::graph::Graph &g, std::unordered_map<int64_t, void *> &pack,
                     cudaStream_t s, const char *what, int *tune, tg_error *err) {
    tg_status st = TG_OK;
    if (cudnnSetStream(a->handle, s) != CUDNN_STATUS_SUCCESS)
        TG_FAIL(err, TG_ERR_CUDA, "cudnn attention %s: cudnnSetStream failed", what);
    if (*tune) {
        std::string first, best;
        (void)g.get_plan_name(first);
        fe::error_t e = g.autotune(a->handle, pack, a->ws);
        if (e.is_bad()) TG_FAIL(err, TG_ERR_CUDA, "cudnn attention %s: autotune: %s", what, e.get_message().c_str());
        (void)g.get_plan_name(best);
        tg_log_info(a->log, "cudnn attention %s: autotuned %lld plans: heuristic's %s, fastest %s", what,
                    (long long)g.get_execution_plan_count(), first.c_str(), best.c_str());
        *tune = 0;
    }
    {
        fe::error_t e = g.execute(a->handle, pack, a->ws);
        if (e.is_bad()) TG_FAIL(err, TG_ERR_CUDA, "cudnn attention %s: %s", what, e.get_message().c_str());
    }
cleanup:
    return st;
}

tg_status tg_cudnn_attn_forward(tg_cudnn_attn *a, __nv_bfloat16 *y, float *stats, const __nv_bfloat16 *qkv, int C,
                                cudaStream_t s, tg_error *err) {
    std::unordered_map<int64_t, void *> pack = {{UID_Q, (void *)qkv},
                                                {UID_K, (void *)(qkv + C)},
                                                {UID_V, (void *)(qkv + C + a->nkv_hs)},
                                                {UID_SCALE, &a->scale},
                                                {UID_O, y},
                                                {UID_STATS, stats}};
    return run(a, *a->fwd, pack, s, "forward", &a->tune_fwd, err);
}

tg_status tg_cudnn_attn_backward(tg_cudnn_attn *a, __nv_bfloat16 *dqkv, const __nv_bfloat16 *dy, const __nv_bfloat16 *y,
                                 const __nv_bfloat16 *qkv, const float *stats, int C, cudaStream_t s, tg_error *err) {
    std::unordered_map<int64_t, void *> pack = {{UID_Q, (void *)qkv},
                                                {UID_K, (void *)(qkv + C)},
                                                {UID_V, (void *)(qkv + C + a->nkv_hs)},
                                                {UID_SCALE, &a->scale},
                                                {UID_O, (void *)y},
                                                {UID_DO, (void *)dy},
                                                {UID_STATS, (void *)stats},
                                                {UID_DQ, dqkv},
                                                {UID_DK, dqkv + C},
                                                {UID_DV, dqkv + C + a->nkv_hs}};
    return run(a, *a->bwd, pack, s, "backward", &a->tune_bwd, err);
}

void tg_cudnn_attn_free(tg_cudnn_attn *a) {
    if (!a) return;
    a->fwd.reset();
    a->bwd.reset();
    if (a->handle) cudnnDestroy(a->handle);
    delete a;
}

#else /* built without the cudnn-frontend headers */

struct tg_cudnn_attn {
    int unused;
};

tg_status tg_cudnn_attn_init(tg_cudnn_attn **out, int B, int T, int NH, int HS, int deterministic,
                             int tune, const tg_log *log, char *why, size_t why_n, tg_error *err) {
    (void)B, (void)T, (void)NH, (void)HS, (void)deterministic, (void)tune, (void)log, (void)err;
    *out = NULL;
    snprintf(why, why_n, "built without cudnn-frontend (scripts/install-deps.sh fetches it)");
    return TG_OK;
}
tg_status tg_cudnn_attn_init_gqa(tg_cudnn_attn **out, int B, int T, int NH, int NKV, int HS, int deterministic,
                                 int tune, const tg_log *log, char *why, size_t why_n, tg_error *err) {
    (void)NKV;
    return tg_cudnn_attn_init(out, B, T, NH, HS, deterministic, tune, log, why, why_n, err);
}
size_t tg_cudnn_attn_workspace(const tg_cudnn_attn *a) { return a ? 0 : 0; }
void tg_cudnn_attn_set_workspace(tg_cudnn_attn *a, void *ws) { (void)a, (void)ws; }
tg_status tg_cudnn_attn_forward(tg_cudnn_attn *a, __nv_bfloat16 *y, float *stats, const __nv_bfloat16 *qkv, int C,
                                cudaStream_t s, tg_error *err) {
    (void)a, (void)y, (void)stats, (void)qkv, (void)C, (void)s;
    return tg_error_set(err, TG_ERR_ARG, "cudnn attention: not built");
}
tg_status tg_cudnn_attn_backward(tg_cudnn_attn *a, __nv_bfloat16 *dqkv, const __nv_bfloat16 *dy, const __nv_bfloat16 *y,
                                 const __nv_bfloat16 *qkv, const float *stats, int C, cudaStream_t s, tg_error *err) {
    (void)a, (void)dqkv, (void)dy, (void)y, (void)qkv, (void)stats, (void)C, (void)s;
    return tg_error_set(err, TG_ERR_ARG, "cudnn attention: not built");
}
void tg_cudnn_attn_free(tg_cudnn_attn *a) { (void)a; }

#endif
