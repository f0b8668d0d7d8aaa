/* SLED's and DoLa's passes over the early logits, one row (one layer of one batch entry) at a
 * time, for `toolkit/decoding/native.py` (which builds this file with the C compiler at first use
 * and falls back to torch ops when it cannot).
 *
 * Per row of V float32 logits x: its max, exp(x - max) into a row of scratch (the row stays in the
 * CPU cache), their sum, then one pass for every sum the method needs. Sums run in float over
 * blocks of 256 entries and in double across blocks. Subnormal floats are flushed to zero while a
 * call runs (x86), as they change no sum at float32 precision and cost 100x the time.
 * Non-finite logits give non-finite sums; the caller then recomputes that row with torch.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#define BLOCK 256
#define COSINE_EPS 1e-8 /* torch's cosine_similarity eps, as sled.py's COSINE_EPS */

/* exp(x) for x <= 0 (Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, degree-6 polynomial, ~1 ulp);
 * 0 below -87 (where expf is subnormal or 0) and for x = -inf. */
static inline float exp_nonpositive(float x) {
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)(x < -87.0f ? -127.0f : n) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x < -87.0f ? 0.0f : y * scale;
}

/* log(x) for x >= 0 (Cephes logf: x = 2^e m, m in [sqrt(1/2), sqrt(2)), ~1 ulp); -inf at 0. */
static inline float log_nonnegative(float x) {
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    int32_t mbits = (bits & 0x007fffff) | 0x3f000000; /* mantissa in [0.5, 1) */
    float m;
    memcpy(&m, &mbits, sizeof m);
    int small = m < 0.70710678118654752440f;
    float e = (float)(((bits >> 23) & 0xff) - 126 - small);
    m = (small ? m + m : m) - 1.0f;
    float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z + e * -2.12194440e-4f - 0.5f * z;
    float out = m + y + e * 0.693359375f;
    return x > 0.0f ? out : -INFINITY;
}

static float row_max(const float *x, int64_t v) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < v; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* e[j] = exp(x[j] - m); returns their sum. */
static double exp_row(const float *x, float m, float *e, int64_t v) {
    double total = 0.0;
    for (int64_t j0 = 0; j0 < v; j0 += BLOCK) {
        int64_t j1 = j0 + BLOCK < v ? j0 + BLOCK : v;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t j = j0; j < j1; j++) {
            e[j] = exp_nonpositive(x[j] - m);
            s += e[j];
        }
        total += s;
    }
    return total;
}

static unsigned int flush_subnormals(void) {
#if defined(__SSE__)
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* flush-to-zero and denormals-are-zero */
    return csr;
#else
    return 0;
#endif
}

static void restore(unsigned int csr) {
#if defined(__SSE__)
    _mm_setcsr(csr);
#else
    (void)csr;
#endif
}

/* SLED, rows [first, end) of early (rows x v; row r belongs to batch entry r / layers):
 * P = softmax(x), D/2 = x/2 - z/2 (z: the final logits of the row's batch entry, -inf read as the
 * lowest float) and the sums (R, Q, W, DD) = (sum P', sum P'^2, sum P' D/2, sum (D/2)^2), where
 * P' is P with its entry at a set to 0 (summed without it, never subtracted) and a is the token
 * of topk (batch x k) with the largest P (the first on ties); then the cosine of D with P - e_i
 * for each i in topk, put together in double as `_cosines` in sled.py does. */
void sled_rows(const float *early, const float *final, const int64_t *topk, int64_t first,
               int64_t end, int64_t layers, int64_t v, int64_t k, float *scratch, double *sums,
               double *cos) {
    unsigned int csr = flush_subnormals();
    for (int64_t r = first; r < end; r++) {
        const float *x = early + r * v;
        const float *z = final + (r / layers) * v;
        const int64_t *idx = topk + (r / layers) * k;
        double s = exp_row(x, row_max(x, v), scratch, v);
        float inv = (float)(1.0 / s);
        int64_t a = 0;
        for (int64_t i = 1; i < k; i++)
            if (scratch[idx[i]] * inv > scratch[idx[a]] * inv) a = i;
        float p_a = scratch[idx[a]] * inv;
        scratch[idx[a]] = 0.0f;
        double R = 0.0, Q = 0.0, W = 0.0, DD = 0.0;
        for (int64_t j0 = 0; j0 < v; j0 += BLOCK) {
            int64_t j1 = j0 + BLOCK < v ? j0 + BLOCK : v;
            float rr = 0.0f, qq = 0.0f, ww = 0.0f, dd = 0.0f;
#pragma omp simd reduction(+ : rr, qq, ww, dd)
            for (int64_t j = j0; j < j1; j++) {
                float p = scratch[j] * inv;
                float d = 0.5f * x[j] - 0.5f * z[j];
                rr += p;
                qq += p * p;
                ww += p * d;
                dd += d * d;
            }
            R += rr;
            Q += qq;
            W += ww;
            DD += dd;
        }
        sums[4 * r] = R;
        sums[4 * r + 1] = Q;
        sums[4 * r + 2] = W;
        sums[4 * r + 3] = DD;
        double d_a = (double)(0.5f * x[idx[a]] - 0.5f * z[idx[a]]);
        double d_norm = fmax(sqrt(DD), COSINE_EPS / 2.0);
        for (int64_t i = 0; i < k; i++) {
            double p = i == a ? p_a : (double)(scratch[idx[i]] * inv);
            double d = (double)(0.5f * x[idx[i]] - 0.5f * z[idx[i]]);
            double numerator, grad_sq;
            if (i == a) {
                numerator = W - R * d_a;
                grad_sq = Q + R * R;
            } else {
                numerator = W + p_a * d_a - d;
                grad_sq = (1.0 - p) * (1.0 - p) + fmax(Q + (double)p_a * p_a - p * p, 0.0);
            }
            cos[r * k + i] = numerator / (fmax(sqrt(grad_sq), COSINE_EPS) * d_norm);
        }
    }
    restore(csr);
}

/* DoLa's output for batch rows [first, end): with x the row's chosen premature layer (early row
 * b * layers + chosen[b]), -inf read as the lowest float, and log P = (x - m) - log_s as
 * log_softmax forms it: out = min(log_final - log P, FLT_MAX), or -inf where log_final is below
 * the row's threshold (the relative-top filter) or the final logit z is -inf. */
void dola_finish_rows(const float *early, const float *z, const float *log_final,
                      const int64_t *chosen, const float *threshold, int64_t first, int64_t end,
                      int64_t layers, int64_t v, float *scratch, float *out) {
    unsigned int csr = flush_subnormals();
    for (int64_t b = first; b < end; b++) {
        const float *x = early + (b * layers + chosen[b]) * v;
        const float *zb = z + b * v, *lf = log_final + b * v;
        float *o = out + b * v;
#pragma omp simd
        for (int64_t j = 0; j < v; j++) scratch[j] = x[j] < -FLT_MAX ? -FLT_MAX : x[j];
        float m = row_max(scratch, v);
        float log_s = (float)log(exp_row(scratch, m, o, v));
        float t = threshold[b];
#pragma omp simd
        for (int64_t j = 0; j < v; j++) {
            float d = lf[j] + -((scratch[j] - m) - log_s);
            d = d > FLT_MAX ? FLT_MAX : d;
            o[j] = (lf[j] < t || zb[j] == -INFINITY) ? -INFINITY : d;
        }
    }
    restore(csr);
}

/* DoLa, rows [first, end) of early (rows x v): the reference's Jensen-Shannon score against the
 * row's batch entry's final distribution (log_final, final_probs: batch x v),
 * jsd = sum_j M (2 log M - log P_N - log P) / (2 v) with M = (P_N + P) / 2, P = softmax(x) and
 * log M clamped at -1e4 (its term is 0 where M is 0, as in F.kl_div). */
void dola_rows(const float *early, const float *log_final, const float *final_probs,
               int64_t first, int64_t end, int64_t layers, int64_t v, float *scratch,
               double *jsd) {
    unsigned int csr = flush_subnormals();
    for (int64_t r = first; r < end; r++) {
        const float *x = early + r * v;
        const float *lf = log_final + (r / layers) * v;
        const float *pf = final_probs + (r / layers) * v;
        float m = row_max(x, v);
        double s = exp_row(x, m, scratch, v);
        float inv = (float)(1.0 / s);
        float log_s = (float)log(s); /* log P = (x - m) - log_s, as log_softmax forms it */
        double total = 0.0;
        for (int64_t j0 = 0; j0 < v; j0 += BLOCK) {
            int64_t j1 = j0 + BLOCK < v ? j0 + BLOCK : v;
            float t = 0.0f;
#pragma omp simd reduction(+ : t)
            for (int64_t j = j0; j < j1; j++) {
                float mix = 0.5f * (scratch[j] * inv + pf[j]);
                float log_mix = log_nonnegative(mix);
                log_mix = log_mix < -1e4f ? -1e4f : log_mix;
                t += mix * (2.0f * log_mix - ((x[j] - m) - log_s) - lf[j]);
            }
            total += t;
        }
        jsd[r] = total / (2.0 * (double)v);
    }
    restore(csr);
}
