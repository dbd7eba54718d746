/* model/cuda/llama_kernels.cuh — the bodies of Llama's kernels (llama_kernels.cu), one output
 * element, pair or row part per call, __host__ __device__: the kernels call them over their grid,
 * and tests/cuda/test_llama_kernels_host.cu calls the same code over every index on the host, so
 * the index arithmetic and the formulas are checked against the CPU reference without a GPU.
 * Row functions take the caller's share of a row: columns lane, lane + stride, ... (a warp: 32
 * lanes; the host: lane 0, stride 1). Internal to model/cuda/ and its tests. */
#ifndef TG_CUDA_LLAMA_KERNELS_CUH
#define TG_CUDA_LLAMA_KERNELS_CUH

#include "model/cuda/ops.cuh" /* TG_CUDA_COL_CHUNKS */

#define TG_LLAMA_HD __host__ __device__ __forceinline__

/* ---- RMSNorm (model/cpu/llama_kernels.c: tg_llama_rmsnorm_forward / _backward) ---- */

/* This share of row `off`'s sum of squares of x = a + b (rounded to X and stored into res when b
 * != NULL: the norm reads what backward reads back) or x = a. */
template <typename X>
TG_LLAMA_HD float llama_rms_sumsq(X *res, const X *a, const X *b, size_t off, int C, int lane, int stride) {
    float ss = 0.0f;
    for (int c = lane; c < C; c += stride) {
        float x = tg_to_f32(a[off + c]);
        if (b) {
            const X r = tg_from_f32<X>(x + tg_to_f32(b[off + c]));
            res[off + c] = r;
            x = tg_to_f32(r);
        }
        ss += x * x;
    }
    return ss;
}
TG_LLAMA_HD float llama_rms_rstd(float ss, int C, float eps) { return 1.0f / sqrtf(ss / (float)C + eps); }
/* out = w * (x * r) over this share of the row. */
template <typename X>
TG_LLAMA_HD void llama_rms_scale(X *out, const X *x, const X *w, size_t off, int C, float r, int lane, int stride) {
    for (int c = lane; c < C; c += stride) out[off + c] = tg_from_f32<X>(tg_to_f32(w[c]) * (tg_to_f32(x[off + c]) * r));
}
/* This share of sum_c w * dy * x. */
template <typename X>
TG_LLAMA_HD float llama_rms_dot(const X *dout, const X *x, const X *w, size_t off, int C, int lane, int stride) {
    float dot = 0.0f;
    for (int c = lane; c < C; c += stride) dot += tg_to_f32(w[c]) * tg_to_f32(dout[off + c]) * tg_to_f32(x[off + c]);
    return dot;
}
/* dx += r * w * dy - k * x, k = dot * r^3 / C (the whole row's dot). */
template <typename X>
TG_LLAMA_HD void llama_rms_dx(X *dx, const X *dout, const X *x, const X *w, size_t off, int C, float r, float dot,
                              int lane, int stride) {
    const float k = dot * r * r * r / (float)C;
    for (int c = lane; c < C; c += stride) {
        const float wc = tg_to_f32(w[c]), dy = tg_to_f32(dout[off + c]), xc = tg_to_f32(x[off + c]);
        dx[off + c] = tg_from_f32<X>(tg_to_f32(dx[off + c]) + (r * wc * dy - k * xc));
    }
}
/* The weight gradient's first pass: rows per chunk, chunks <= TG_CUDA_COL_CHUNKS (chunk k holds
 * rows [k * rows, min((k + 1) * rows, N)), possibly none). */
TG_LLAMA_HD void llama_rms_dw_chunks(int N, int *chunks, int *rows) {
    *chunks = N < TG_CUDA_COL_CHUNKS ? N : TG_CUDA_COL_CHUNKS;
    *rows = *chunks > 0 ? (N + *chunks - 1) / *chunks : 0;
}
/* Chunk k's sum over its rows, in row order, of dy * x * rstd at column c. */
template <typename X>
TG_LLAMA_HD float llama_rms_dw_part(const X *dout, const X *x, const float *rstd, int N, int C, int rows, int k,
                                    int c) {
    const int r0 = k * rows, r1 = r0 + rows < N ? r0 + rows : N;
    float s = 0.0f;
    for (int n = r0; n < r1; n++) s += tg_to_f32(dout[(size_t)n * C + c]) * tg_to_f32(x[(size_t)n * C + c]) * rstd[n];
    return s;
}

/* ---- RoPE + grouped-query re-layout (llama_cpu.c: tg_llama_rope, tg_llama_kv_expand/_reduce) ---- */

/* Forward, pair idx < B*T * 3 * NH * HS/2 = (row, part, h, i): part 0 q, 1 k (rotated), 2 v
 * (copied); k and v of query head h come from KV head h / (NH / NKV). */
template <typename X>
TG_LLAMA_HD void llama_qkv_forward_at(X *qkv, const X *raw, const float *cos_t, const float *sin_t, int T, int NH,
                                      int NKV, int HS, size_t idx) {
    const int half = HS / 2, C = NH * HS, KV = NKV * HS, group = NH / NKV;
    const int i = (int)(idx % half), h = (int)(idx / half % NH), part = (int)(idx / half / NH % 3);
    const size_t row = idx / half / NH / 3;
    const int t = (int)(row % T);
    const X *src = raw + row * (size_t)(C + 2 * KV) +
                   (part == 0 ? (size_t)h * HS : (size_t)C + (part == 2 ? KV : 0) + (size_t)(h / group) * HS);
    X *dst = qkv + row * 3 * (size_t)C + (size_t)part * C + (size_t)h * HS;
    if (part == 2) {
        dst[i] = src[i];
        dst[i + half] = src[i + half];
    } else {
        const float a = tg_to_f32(src[i]), b = tg_to_f32(src[i + half]);
        const float c = cos_t[(size_t)t * half + i], s = sin_t[(size_t)t * half + i];
        dst[i] = tg_from_f32<X>(a * c - b * s);
        dst[i + half] = tg_from_f32<X>(b * c + a * s);
    }
}

/* Backward, pair idx < B*T * (NH + 2 NKV) * HS/2 = (row, slot, i) of draw: slots [0, NH) q,
 * [NH, NH + NKV) k, then v. k and v sum their group's query heads in head order (fp32), then q
 * and k rotate back (sin -> -sin). */
template <typename X>
TG_LLAMA_HD void llama_qkv_backward_at(X *draw, const X *dqkv, const float *cos_t, const float *sin_t, int T, int NH,
                                       int NKV, int HS, size_t idx) {
    const int half = HS / 2, C = NH * HS, group = NH / NKV, slots = NH + 2 * NKV;
    const int i = (int)(idx % half), slot = (int)(idx / half % slots);
    const size_t row = idx / half / slots;
    const int t = (int)(row % T);
    const X *d = dqkv + row * 3 * (size_t)C;
    X *dst = draw + row * (size_t)slots * HS + (size_t)slot * HS;
    float a = 0.0f, b = 0.0f;
    int rotate = 1;
    if (slot < NH) {
        a = tg_to_f32(d[(size_t)slot * HS + i]);
        b = tg_to_f32(d[(size_t)slot * HS + i + half]);
    } else {
        const int is_k = slot < NH + NKV, kv = is_k ? slot - NH : slot - NH - NKV;
        const X *base = d + (is_k ? C : 2 * C);
        rotate = is_k;
        for (int g = 0; g < group; g++) {
            a += tg_to_f32(base[(size_t)(kv * group + g) * HS + i]);
            b += tg_to_f32(base[(size_t)(kv * group + g) * HS + i + half]);
        }
    }
    if (rotate) {
        const float c = cos_t[(size_t)t * half + i], s = -sin_t[(size_t)t * half + i];
        const float a2 = a * c - b * s, b2 = b * c + a * s;
        a = a2;
        b = b2;
    }
    dst[i] = tg_from_f32<X>(a);
    dst[i + half] = tg_from_f32<X>(b);
}

/* RoPE in the projection's own layout (rows of C + 2 KV), for cuDNN's grouped-query attention and
 * the KV-cache decoder: pair (row, slot, i) at position t; slots [0, NH + NKV) (the q and k heads)
 * rotated (inverse: sin -> -sin, the backward), the v slots copied. out may be in (in place). */
template <typename X>
TG_LLAMA_HD void llama_rope_raw_pair(X *out, const X *in, const float *cos_t, const float *sin_t, int t, int NH,
                                     int NKV, int HS, int inverse, size_t row, int slot, int i) {
    const int half = HS / 2, slots = NH + 2 * NKV;
    const size_t o = row * (size_t)slots * HS + (size_t)slot * HS;
    if (slot >= NH + NKV) {
        out[o + i] = in[o + i];
        out[o + i + half] = in[o + i + half];
        return;
    }
    const float a = tg_to_f32(in[o + i]), b = tg_to_f32(in[o + i + half]);
    const float c = cos_t[(size_t)t * half + i], s = inverse ? -sin_t[(size_t)t * half + i] : sin_t[(size_t)t * half + i];
    out[o + i] = tg_from_f32<X>(a * c - b * s);
    out[o + i + half] = tg_from_f32<X>(b * c + a * s);
}
/* The training forward/backward over (B, T, C + 2 KV): pair idx < B*T * (NH + 2 NKV) * HS/2 =
 * (row, slot, i), row at position row % T. */
template <typename X>
TG_LLAMA_HD void llama_rope_raw_at(X *out, const X *in, const float *cos_t, const float *sin_t, int T, int NH, int NKV,
                                   int HS, int inverse, size_t idx) {
    const int half = HS / 2, slots = NH + 2 * NKV;
    const int i = (int)(idx % half), slot = (int)(idx / half % slots);
    const size_t row = idx / half / slots;
    llama_rope_raw_pair<X>(out, in, cos_t, sin_t, (int)(row % T), NH, NKV, HS, inverse, row, slot, i);
}
/* The KV-cache decoder's new rows (n, C + 2 KV), forward only: row r is position t0 + r (its
 * absolute position in the sequence), the same rotation as llama_rope_raw_at's at that position. */
template <typename X>
TG_LLAMA_HD void llama_rope_pos_at(X *out, const X *in, const float *cos_t, const float *sin_t, int t0, int NH,
                                   int NKV, int HS, size_t idx) {
    const int half = HS / 2, slots = NH + 2 * NKV;
    const int i = (int)(idx % half), slot = (int)(idx / half % slots);
    const size_t row = idx / half / slots;
    llama_rope_raw_pair<X>(out, in, cos_t, sin_t, t0 + (int)row, NH, NKV, HS, 0, row, slot, i);
}

/* ---- SwiGLU (llama_kernels.c: tg_llama_swiglu_forward / _backward) on gate|up rows (N, 2F) ---- */

/* h[i] = silu(gate) * up, i < N*F. */
template <typename X> TG_LLAMA_HD void llama_swiglu_forward_at(X *h, const X *gu, int F, size_t i) {
    const size_t row = i / F, f = i % F;
    const float g = tg_to_f32(gu[row * 2 * F + f]), u = tg_to_f32(gu[row * 2 * F + F + f]);
    h[i] = tg_from_f32<X>(g / (1.0f + expf(-g)) * u);
}
/* dgate and dup of element i < N*F into dgu (N, 2F). */
template <typename X> TG_LLAMA_HD void llama_swiglu_backward_at(X *dgu, const X *dh, const X *gu, int F, size_t i) {
    const size_t row = i / F, f = i % F;
    const float g = tg_to_f32(gu[row * 2 * F + f]), u = tg_to_f32(gu[row * 2 * F + F + f]);
    const float sg = 1.0f / (1.0f + expf(-g)), d = tg_to_f32(dh[i]);
    dgu[row * 2 * F + F + f] = tg_from_f32<X>(d * g * sg);
    dgu[row * 2 * F + f] = tg_from_f32<X>(d * u * sg * (1.0f + g * (1.0f - sg)));
}

#endif
