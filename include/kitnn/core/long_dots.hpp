// kitnn/core/long_dots.hpp — many long dot products at once, for the kernel gradient of
// a convolution with few taps (VGG-16's first layer: 64 filters x 27 taps over 50,176
// pixels per image).
//
//   S (M x N) += A (M x K) * B (N x K)^T      A, B row-major, K long, M and N small
//
// In Conv2D's terms: A = dym (F filters x pixels), B = col (CKK taps x pixels), S = dW.
// For these layers Conv2D used Eigen's product over a whole strip (core/gemm.hpp packs
// col one float at a time, which cost more than it saved below 64 taps): the strip's
// dym and col (2.1 and 0.9 MB for VGG-16's 37-row strips) were written, then read again
// by the product's packing, past the 1 MB L2. Here each sum keeps 16 partial sums (one
// zmm, pixels k = lane mod 16) in memory between calls, and a tile of G rows of A x T
// rows of B keeps its G*T zmm in registers while it runs over K:
//   per 16 pixels: G + T loads, G*T FMAs (3 x 9: 12 loads, 27 FMAs)
// So the caller can feed dym and col block by block, each block summed right after it
// is written, while it is still in cache, and read the sums once at the end: add_into
// adds each sum's 16 lanes in a fixed order, so one sequence of calls always gives the
// same bits. The sums run in another order than Eigen's: results differ from Eigen's in
// the last bits.
//
// Only with AVX-512 and only for float (gemm::available<T>()), as core/gemm.hpp.
#pragma once

#include "kitnn/core/gemm.hpp"

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kitnn {
namespace gemm {

class LongDots {
public:
    // Rows of A and of B per register tile.
    static constexpr int G = 3, T = 9;

    // New sums, all zero, for an M x N result.
    void reset(std::int64_t M, std::int64_t N) {
        M_ = M;
        N_ = N;
        tm_ = (M + G - 1) / G;
        tn_ = (N + T - 1) / T;
        acc_.assign(size_t(tm_ * tn_ * G * T * 16), 0.0f);
    }

    // Memory the caller reads next, prefetched (PREFETCHT1) while add() computes: `rows` rows of
    // `count` floats, `ld` floats apart, from each of the `arrays` bases.
    struct Prefetch {
        const float* base[2] = {nullptr, nullptr};
        int arrays = 0;
        std::int64_t ld = 0, rows = 0, count = 0;
    };

    // sums[i][j] += sum over k < K of A[i*lda + k] * B[j*ldb + k], for i < M, j < N;
    // meanwhile `next`'s memory is prefetched, spread over the multiply-adds.
    void add(const float* A, std::int64_t lda, const float* B, std::int64_t ldb, std::int64_t K,
             const Prefetch* next = nullptr) {
#if defined(__AVX512F__)
        if (K <= 0 || M_ <= 0 || N_ <= 0) return;
        Cursor pf;
        if (next && next->arrays > 0 && next->rows > 0 && next->count > 0) {
            pf.p = *next;
            pf.lines = (next->count * std::int64_t(sizeof(float)) + 63) / 64;
            const std::int64_t total = pf.lines * next->rows * next->arrays, steps = tn_ * tm_ * ((K + 15) / 16);
            pf.per_step = int((total + steps - 1) / steps);
        }
        // B's tile of T rows outside: it is the larger operand (9 rows against 3), so it
        // stays in L1 while every tile of A passes it. Edge tiles repeat the last row
        // (valid memory, no branch in the loop); add_into never reads those sums.
        for (std::int64_t jn = 0; jn < tn_; ++jn) {
            const float* b[T];
            for (int t = 0; t < T; ++t) b[t] = B + std::min<std::int64_t>(jn * T + t, N_ - 1) * ldb;
            for (std::int64_t im = 0; im < tm_; ++im) {
                const float* a[G];
                for (int g = 0; g < G; ++g) a[g] = A + std::min<std::int64_t>(im * G + g, M_ - 1) * lda;
                tile(a, b, K, acc_.data() + (im * tn_ + jn) * (G * T * 16), pf);
            }
        }
#else
        (void)A, (void)lda, (void)B, (void)ldb, (void)K, (void)next;
#endif
    }

    // C[i*ldc + j] += sums[i][j].
    void add_into(float* C, std::int64_t ldc) const {
        for (std::int64_t i = 0; i < M_; ++i)
            for (std::int64_t j = 0; j < N_; ++j) {
                const float* lanes =
                    acc_.data() + ((i / G * tn_ + j / T) * (G * T) + (i % G) * T + j % T) * 16;
                // Pairwise, always in this order: the same bits every run.
                float s8[8], s4[4];
                for (int l = 0; l < 8; ++l) s8[l] = lanes[l] + lanes[l + 8];
                for (int l = 0; l < 4; ++l) s4[l] = s8[l] + s8[l + 4];
                C[i * ldc + j] += (s4[0] + s4[2]) + (s4[1] + s4[3]);
            }
    }

private:
#if defined(__AVX512F__)
    // Where the prefetch has got to: line l of row r of array i.
    struct Cursor {
        Prefetch p;
        std::int64_t lines = 0, i = 0, r = 0, l = 0;
        int per_step = 0;  // lines per 16-pixel step of a tile (0: none)
        void step() {
            for (int n = 0; n < per_step && i < p.arrays; ++n) {
                _mm_prefetch(reinterpret_cast<const char*>(p.base[i] + r * p.ld) + l * 64, _MM_HINT_T1);
                if (++l == lines) {
                    l = 0;
                    if (++r == p.rows) r = 0, ++i;
                }
            }
        }
    };

    // acc (G*T zmm, row-major g, t) += the tile's dot products over K.
    static void tile(const float* const* a, const float* const* b, std::int64_t K, float* acc, Cursor& pf) {
        __m512 s[G][T];
        for (int g = 0; g < G; ++g)
            for (int t = 0; t < T; ++t) s[g][t] = _mm512_loadu_ps(acc + (g * T + t) * 16);
        std::int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            pf.step();
            __m512 x[G];
            for (int g = 0; g < G; ++g) x[g] = _mm512_loadu_ps(a[g] + k);
#pragma GCC unroll 9
            for (int t = 0; t < T; ++t) {
                __m512 v = _mm512_loadu_ps(b[t] + k);
                // One load into a register for the G FMAs: left alone, GCC 12 folds it
                // into each FMA as a memory operand, G loads of the same 64 bytes.
                asm("" : "+v"(v));
                for (int g = 0; g < G; ++g) s[g][t] = _mm512_fmadd_ps(x[g], v, s[g][t]);
            }
        }
        if (k < K) {  // the last K mod 16 pixels: masked loads, the other lanes add 0
            const __mmask16 m = __mmask16((1u << (K - k)) - 1u);
            __m512 x[G];
            for (int g = 0; g < G; ++g) x[g] = _mm512_maskz_loadu_ps(m, a[g] + k);
            for (int t = 0; t < T; ++t) {
                const __m512 v = _mm512_maskz_loadu_ps(m, b[t] + k);
                for (int g = 0; g < G; ++g) s[g][t] = _mm512_fmadd_ps(x[g], v, s[g][t]);
            }
        }
        for (int g = 0; g < G; ++g)
            for (int t = 0; t < T; ++t) _mm512_storeu_ps(acc + (g * T + t) * 16, s[g][t]);
    }
#endif

    std::int64_t M_ = 0, N_ = 0, tm_ = 0, tn_ = 0;  // result size, tiles down and across
    std::vector<float> acc_;                           // (tm, tn, G, T, 16) partial sums
};

}  // namespace gemm
}  // namespace kitnn
