/* model/cpu/cpu_optim.h — internal: the optimizer step shared by the CPU backends (gpt2_cpu.c,
 * llama_cpu.c): AdamW, and Muon's three phases (contract in model.h, tg_model_muon_orth).
 *
 * Determinism: elementwise loops, fixed-order norms and tg_cpu_gemm, so the results do not
 * depend on the thread count, nor on which rank orthogonalises a matrix. */
#ifndef TG_CPU_OPTIM_H
#define TG_CPU_OPTIM_H

#include <stddef.h>

#include "core/status.h"
#include "model/model.h"

/* One backend's optimizer shard [lo, hi): params and grads are the shard's (element lo at index
 * 0), m and v its moments. */
typedef struct {
    const tg_gpt2_layout *lay;
    float *params, *grads, *m, *v;
    size_t lo, hi;
} tg_cpu_optim;

/* tg_model_adamw's work (the caller checked the shard and a->t), and Muon's momentum on its
 * matrices when a->muon is set. TG_ERR_NOMEM if the work list cannot be allocated. */
tg_status tg_cpu_optim_adamw(const tg_cpu_optim *o, const tg_adamw_args *a, tg_error *err);
/* tg_model_muon_orth's work on grads, the full-length gradient buffer. */
tg_status tg_cpu_muon_orth(const tg_gpt2_layout *lay, float *grads, size_t lo, size_t hi, int ns_steps,
                           tg_error *err);
/* tg_model_muon_apply's work. */
void tg_cpu_muon_apply(const tg_cpu_optim *o, const tg_adamw_args *a);

/* Newton-Schulz on one matrix X (rows x cols, row-major), in place: X <- NS(X / |X|_F), the
 * quintic iteration (a, b, c) = (3.4445, -4.7750, 2.0315) in fp32, on the transpose when
 * rows > cols (so the Gram matrix is the smaller one). Leaves the singular vectors and maps the
 * singular values into roughly [0.7, 1.2]. */
tg_status tg_cpu_newton_schulz(float *X, int rows, int cols, int steps, tg_error *err);

#endif
