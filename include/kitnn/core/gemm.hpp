// kitnn/core/gemm.hpp — a single-threaded float GEMM with an AVX-512 micro-kernel, for
// the large convolutions (VGG-16, Inception-v4) where Eigen's product is the limit.
//
//   C (M x N) = A (M x K) * B (K x N)      all column-major, leading dimensions lda, ldb, ldc
//
// In Conv2D's terms (a row-major (F, CKK) kernel times a row-major (CKK, S) im2col, into a
// row-major (F, S) output) the same product reads, column-major: M = S output pixels,
// K = CKK taps, N = F filters; A = col, B = the kernel, C = the output block. Backward
// (strips) uses the other storages (Ops): dcol^T = dym^T Wm with B row-major, and
// dW^T += col dym^T with A row-major and C added to.
//
// Why our own: on Zen 4 (this project's machine on 2026-12-02 and 03) a 512-bit FMA issues
// once per cycle, and Eigen's kernel reaches about 70 % of that peak (81 of 116 GFLOP/s
// on one core); this one 83 % on 1024^3 and 59–83 % on the VGG-16 shapes, 0.98–1.24x
// Eigen's (docs/performance.md). On Zen 5 (the machine again since 2026-12-03, 18:05 UTC)
// 1024^3 on two threads: 327–331 GFLOP/s against Eigen's 200–257. Scheme
// (BLIS's): for each KC-deep slice of K, the slice of B is packed into NR-column panels
// (k-major, so one micro-step reads NR consecutive values), each MC-row block of A into
// MR-row panels; the micro-kernel keeps a MR x NR tile of C in 24 zmm registers:
//   per k: two loads of A (32 rows), 12 broadcasts of B, 24 FMAs
// KC = 256: a B panel (12 KB) stays in L1, an A block (MC x KC, 256 KB) in L2.
// Sums run in another order than Eigen's, so results differ from Eigen's in the last
// bits (tests compare both within float tolerance); one call always gives the same bits.
//
// Only with AVX-512 (-march=native on such a CPU) and only for float; `available<T>()`
// says whether multiply() can run. Callers keep Eigen's expression otherwise, so
// builds without AVX-512 compute exactly what they did before.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace kitnn {
namespace gemm {

// How A and B are stored, and whether C is added to. Column-major is the default; "rows"
// means row-major: A(i, k) at A[i * lda + k], B(k, j) at B[k * ldb + j]. Conv2D's backward
// needs both: dcol = Wm^T dym reads the kernel row-major, dW += dym col^T reads col so.
struct Ops {
    bool a_rows = false;
    bool b_rows = false;
    bool add = false;  // C += A * B instead of C = A * B
};

template <class T>
constexpr bool available() {
#if defined(__AVX512F__)
    return std::is_same<T, float>::value;
#else
    return false;
#endif
}

#if defined(__AVX512F__)
namespace detail {
constexpr int MR = 32, NR = 12;           // C tile: two zmm of rows x 12 columns
constexpr std::int64_t KC = 256, MC = 256;

// Panels of W values per k, from runs that are already W-wide: for k = 0..kc-1 the values
// in[k * ld + i .. + W) (zeros past count) go to panel i/W, one after the other. A
// column-major A (W = MR rows of a column) and a row-major B (W = NR values of a row)
// are packed this way; full panels of A as two 16-float vector copies.
template <int W>
inline void pack_runs(const float* in, std::int64_t ld, std::int64_t count, std::int64_t kc, float* out) {
    for (std::int64_t i = 0; i < count; i += W) {
        const std::int64_t w = std::min<std::int64_t>(W, count - i);
        float* dst = out + i * kc;
        const float* src = in + i;
        for (std::int64_t k = 0; k < kc; ++k, dst += W, src += ld) {
            if constexpr (W == 32) {
                if (w == W) {
                    _mm512_storeu_ps(dst, _mm512_loadu_ps(src));
                    _mm512_storeu_ps(dst + 16, _mm512_loadu_ps(src + 16));
                    continue;
                }
            }
            std::int64_t r = 0;
            for (; r < w; ++r) dst[r] = src[r];
            for (; r < W; ++r) dst[r] = 0.0f;
        }
    }
}

// Panels of W lines, k-major, from `count` lines of `kc` consecutive values each (line i
// at in[i * ld]): panel p holds, for each k, lines p*W .. p*W+W-1 (zeros past count).
// Both a row-major A (lines = rows of A, W = MR) and a column-major B (lines = columns
// of B, W = NR) are packed this way: a transpose, one float at a time.
template <int W>
inline void pack_lines(const float* in, std::int64_t ld, std::int64_t count, std::int64_t kc, float* out) {
    for (std::int64_t i = 0; i < count; i += W) {
        const std::int64_t w = std::min<std::int64_t>(W, count - i);
        float* dst = out + i * kc;
        for (std::int64_t r = 0; r < w; ++r) {
            const float* src = in + (i + r) * ld;
            for (std::int64_t k = 0; k < kc; ++k) dst[k * W + r] = src[k];
        }
        for (std::int64_t r = w; r < W; ++r)
            for (std::int64_t k = 0; k < kc; ++k) dst[k * W + r] = 0.0f;
    }
}

// C[0:mr, 0:nr] = (add ? C : 0) + Ap * Bp over kc steps. Rows: two zmm (ROWS = 32),
// or one (ROWS = 16) for an edge tile of at most 16 rows; columns: NR, or 8 or 4 for an
// edge tile of that many. An edge tile then costs only the multiply-adds it needs:
// Inception-v4's 17x17 maps have 289 pixels, 9 tiles of 32 and one row, and that last
// row took a full tile (a tenth of the product) before; 64 filters are 5 tiles of 12
// and 4 columns. Products over 289 rows 5-8 % faster, over 100 rows 11 % (alternated,
// two threads; the same bits: only the unused lanes of the tile are left out).
template <int ROWS, int COLS>
inline void micro_kernel_tile(std::int64_t kc, const float* __restrict Ap, const float* __restrict Bp,
                              float* C, std::int64_t ldc, int mr, int nr, bool add) {
    constexpr int V = ROWS / 16;  // zmm registers per column of the tile
    __m512 c[V][COLS];
    for (int v = 0; v < V; ++v)
        for (int j = 0; j < COLS; ++j) c[v][j] = _mm512_setzero_ps();
    for (std::int64_t k = 0; k < kc; ++k, Ap += MR, Bp += NR) {  // panels keep their MR x NR strides
        __m512 a[V];
        for (int v = 0; v < V; ++v) a[v] = _mm512_loadu_ps(Ap + 16 * v);
#pragma GCC unroll 12
        for (int j = 0; j < COLS; ++j) {
            const __m512 b = _mm512_set1_ps(Bp[j]);
            for (int v = 0; v < V; ++v) c[v][j] = _mm512_fmadd_ps(a[v], b, c[v][j]);
        }
    }
    if (mr == ROWS && nr == COLS) {
        for (int j = 0; j < COLS; ++j) {
            float* cj = C + j * ldc;
            for (int v = 0; v < V; ++v) {
                if (add) c[v][j] = _mm512_add_ps(c[v][j], _mm512_loadu_ps(cj + 16 * v));
                _mm512_storeu_ps(cj + 16 * v, c[v][j]);
            }
        }
        return;
    }
    alignas(64) float tile[COLS][ROWS];  // an edge tile: through memory, only the real part written
    for (int j = 0; j < COLS; ++j)
        for (int v = 0; v < V; ++v) _mm512_store_ps(tile[j] + 16 * v, c[v][j]);
    for (int j = 0; j < nr; ++j)
        for (int i = 0; i < mr; ++i) C[j * ldc + i] = (add ? C[j * ldc + i] : 0.0f) + tile[j][i];
}
inline void micro_kernel(std::int64_t kc, const float* __restrict Ap, const float* __restrict Bp,
                         float* C, std::int64_t ldc, int mr, int nr, bool add) {
    static_assert(MR == 32 && NR == 12, "the tile variants below assume a 32 x 12 tile");
    if (mr <= 16) {
        if (nr <= 4) micro_kernel_tile<16, 4>(kc, Ap, Bp, C, ldc, mr, nr, add);
        else if (nr <= 8) micro_kernel_tile<16, 8>(kc, Ap, Bp, C, ldc, mr, nr, add);
        else micro_kernel_tile<16, NR>(kc, Ap, Bp, C, ldc, mr, nr, add);
    } else {
        if (nr <= 4) micro_kernel_tile<MR, 4>(kc, Ap, Bp, C, ldc, mr, nr, add);
        else if (nr <= 8) micro_kernel_tile<MR, 8>(kc, Ap, Bp, C, ldc, mr, nr, add);
        else micro_kernel_tile<MR, NR>(kc, Ap, Bp, C, ldc, mr, nr, add);
    }
}

// The calling thread's packing buffers, kept between calls (no allocation in steady state;
// at most 256 KB for A and KC x N floats for B, 4.7 MB for VGG-16's widest dcol).
inline std::vector<float>& buffer(int which) {
    thread_local std::vector<float> bufs[2];
    return bufs[which];
}
}  // namespace detail
#endif

// C = A * B (or C += A * B with ops.add) on the calling thread (M, N, K >= 0; leading
// dimensions >= the rows of a column-major matrix, the columns of a row-major one).
// Only when available<T>(); callers use Eigen otherwise.
template <class T>
void multiply(std::int64_t M, std::int64_t N, std::int64_t K, const T* A, std::int64_t lda, const T* B,
              std::int64_t ldb, T* C, std::int64_t ldc, Ops ops = {}) {
    static_assert(available<T>(), "kitnn::gemm::multiply needs float and AVX-512 (see available<T>())");
#if defined(__AVX512F__)
    using namespace detail;
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // an empty sum
        if (!ops.add)
            for (std::int64_t j = 0; j < N; ++j) std::fill(C + j * ldc, C + j * ldc + M, 0.0f);
        return;
    }
    const std::int64_t npad = (N + NR - 1) / NR * NR;
    std::vector<float>& Ap = buffer(0);
    std::vector<float>& Bp = buffer(1);
    if (Ap.size() < size_t(MC * KC)) Ap.resize(size_t(MC * KC));
    if (Bp.size() < size_t(KC * npad)) Bp.resize(size_t(KC * npad));
    for (std::int64_t pc = 0; pc < K; pc += KC) {
        const std::int64_t kc = std::min(KC, K - pc);
        // All of N at once: N is the filters (or the taps in dcol), at most a few thousand.
        if (ops.b_rows) pack_runs<NR>(B + pc * ldb, ldb, N, kc, Bp.data());  // B's rows
        else pack_lines<NR>(B + pc, ldb, N, kc, Bp.data());           // B's columns
        for (std::int64_t ic = 0; ic < M; ic += MC) {
            const std::int64_t mc = std::min(MC, M - ic);
            if (ops.a_rows) pack_lines<MR>(A + ic * lda + pc, lda, mc, kc, Ap.data());  // A's rows
            else pack_runs<MR>(A + pc * lda + ic, lda, mc, kc, Ap.data());            // A's columns
            for (std::int64_t jr = 0; jr < N; jr += NR)
                for (std::int64_t ir = 0; ir < mc; ir += MR)
                    micro_kernel(kc, Ap.data() + ir * kc, Bp.data() + jr * kc, C + jr * ldc + ic + ir, ldc,
                                 int(std::min<std::int64_t>(MR, mc - ir)), int(std::min<std::int64_t>(NR, N - jr)),
                                 pc > 0 || ops.add);
        }
    }
#else
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)B, (void)ldb, (void)C, (void)ldc, (void)ops;
#endif
}

}  // namespace gemm
}  // namespace kitnn
