// kitnn/layers/winograd_1d.hpp — Winograd's minimal filtering in one dimension, F(m, r),
// for the inference forward of large 1xK and Kx1 stride-1 convolutions (Inception-v4's
// 1x7, 7x1, 1x3 and 3x1 layers; Lavin and Gray 2016, section 4; the matrices by
// Toom-Cook, as in their reference code).
//
// Along the kernel's axis, m consecutive outputs of an r-tap correlation read n = m + r - 1
// inputs d and are A^T [(G g) ⊙ (B^T d)], with g the r taps:
//   A^T : (m, n)   G : (n, r)   B^T : (n, n)
// Summed over the C channels, the elementwise product becomes n matrix products, one per
// transformed position xi:
//   U[xi] : (F, C)   U[xi](f, c) = (G g_fc)(xi)          the kernel, once per pass
//   V[xi] : (C, Tb)  V[xi](c, t) = (B^T d_ct)(xi)        tile t of a block of Tb
//   M[xi] : (F, Tb)  = U[xi] V[xi]                       n GEMMs of depth C
//   y (m outputs of tile t, filter f) = A^T m,  m(xi) = M[xi](f, t)
// n multiply-adds per m outputs and channel instead of m r: F(2, 7) 8 for 14 (1.75x
// fewer), F(4, 3) 6 for 12 (2x). Only the transforms are extra work: passes over V and M,
// n / m values per output each, which large layers (many channels and filters) earn
// back and small ones do not (Conv2D decides; docs/performance.md has the measurements).
//
// The matrices (toom_cook below): with points a_0 .. a_{n-2} and infinity, and the
// Vandermonde matrices Vn (n, n), Vr (n, r), Vm (n, m) (row i: 1, a_i, a_i^2, ...; the row
// of infinity picks the last coefficient), Toom-Cook multiplies polynomials as
//   s = Vn^-1 [(Vr g) ⊙ (Vm h)]
// and a correlation is the transpose of that product's matrix in h, so
//   y = Vm^T [(Vr g) ⊙ (Vn^-T d)]:   A^T = Vm^T, G = Vr, B^T = Vn^-T.
// The points are 0, 1, -1, 2, -2, 1/2, -1/2 (as many as n - 1 needs), the usual ones:
// Winograd's rounding grows with the points' spread. Each row of B^T is scaled to small
// integers and quarters (at most 10 for F(2, 7); G's row takes the inverse), so the input
// transform's coefficients are exact. Rounding in float (random data, against the exact
// sum): F(4, 3) about 1.6 times the direct sum's worst error, F(2, 7) 3 to 4 times;
// tests/test_winograd_1d.cpp bounds both against the GEMM path.
//
// Tiles: the layer is read along its kernel's axis ("a", length L in, OL out, p zeros
// before) and across it ("j", J positions, unpadded: kernel width 1 there). A tile is m
// outputs along a at one j; tiles are numbered t = (n TL + tl) J + j for image n and tile
// tl < TL = ceil(OL / m) of a line, so one "tile row" (n, tl) is J consecutive tiles and
// a block of tiles is a range of tile rows. A Kx1 kernel runs along H (a line across is
// an image row, contiguous); a 1xK kernel along W (a line across is an image column).
#pragma once

#include "kitnn/layers/winograd.hpp"

#include <Eigen/Core>
#include <Eigen/LU>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {
namespace winograd1d {

// F(m, r)'s matrices in double, row-major: AT (m, n), G (n, r), BT (n, n).
struct Matrices {
    int m = 0, r = 0, n = 0;
    std::vector<double> AT, G, BT;
    double at(int o, int xi) const { return AT[size_t(o * n + xi)]; }
    double g(int xi, int k) const { return G[size_t(xi * r + k)]; }
    double bt(int xi, int k) const { return BT[size_t(xi * n + k)]; }
};

// Toom-Cook's construction (header). n - 1 finite points and infinity; n <= 8.
inline Matrices toom_cook(int m, int r) {
    static const double kPoints[] = {0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5};
    const int n = m + r - 1;
    if (m < 1 || r < 1 || n - 1 > int(sizeof kPoints / sizeof kPoints[0]))
        throw std::invalid_argument("winograd1d: F(" + std::to_string(m) + ", " + std::to_string(r) +
                                    ") needs more than 8 points");
    // Entry k of point i's row of a Vandermonde matrix of `cols` columns: a_i^k; the
    // point at infinity (the last, i = n_pts - 1) has the row (0, ..., 0, 1).
    auto power_row = [](int i, int n_pts, int cols, int k) {
        if (i == n_pts - 1) return k == cols - 1 ? 1.0 : 0.0;
        double v = 1.0;
        for (int e = 0; e < k; ++e) v *= kPoints[i];
        return v;
    };
    Eigen::MatrixXd Vn(n, n);
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < n; ++k) Vn(i, k) = power_row(i, n, n, k);
    const Eigen::MatrixXd BT = Vn.inverse().transpose();  // (n, n); Vn is well-conditioned at n <= 8
    Matrices out;
    out.m = m, out.r = r, out.n = n;
    out.AT.resize(size_t(m * n));
    out.G.resize(size_t(n * r));
    out.BT.resize(size_t(n * n));
    for (int i = 0; i < n; ++i) {
        // Row i of B^T divided by its smallest non-zero entry, row i of G multiplied by it
        // (the product is unchanged): B^T's entries become small integers and quarters,
        // exact in binary, so the input transform rounds only in its additions.
        double scale = 0.0;
        for (int k = 0; k < n; ++k)
            if (std::abs(BT(i, k)) > 1e-12 && (scale == 0.0 || std::abs(BT(i, k)) < scale)) scale = std::abs(BT(i, k));
        for (int o = 0; o < m; ++o) out.AT[size_t(o * n + i)] = power_row(i, n, m, o);
        for (int k = 0; k < r; ++k) out.G[size_t(i * r + k)] = power_row(i, n, r, k) * scale;
        for (int k = 0; k < n; ++k) {
            // Clear LU's last-bit noise: zeros stay zeros (skipped below), quarters quarters.
            const double v = BT(i, k) / scale, q = std::round(v * 4.0) / 4.0;
            out.BT[size_t(i * n + k)] = std::abs(v - q) < 1e-9 ? q : v;
        }
    }
    return out;
}

// The outputs per tile kitnn uses for an r-tap kernel (0: none): F(4, 3), F(4, 5), F(2, 7),
// each with at most 8 points (see the header on rounding).
inline int outputs_per_tile(int r) { return r == 3 ? 4 : r == 5 ? 4 : r == 7 ? 2 : 0; }

// The matrices of F(outputs_per_tile(r), r), built once.
inline const Matrices& matrices(int r) {
    static const Matrices m3 = toom_cook(4, 3), m5 = toom_cook(4, 5), m7 = toom_cook(2, 7);
    switch (r) {
        case 3: return m3;
        case 5: return m5;
        case 7: return m7;
        default: throw std::invalid_argument("winograd1d: no transform for " + std::to_string(r) + " taps");
    }
}

using winograd::ConstRowMap;  // the 2-D form's vectors (layers/winograd.hpp)
using winograd::Row;
using winograd::RowMap;

// acc = sum_k coef[k] run(k) over k < count, skipping zero coefficients (most of B^T's
// and A^T's rows have some): the first term assigned, the rest added, no zeroing pass.
template <class T, class Run>
void sum_terms(const double* coef, int count, Run run, RowMap<T>& acc) {
    bool first = true;
    for (int k = 0; k < count; ++k) {
        if (coef[k] == 0.0) continue;
        if (first) acc = T(coef[k]) * run(k);
        else acc += T(coef[k]) * run(k);
        first = false;
    }
    if (first) acc.setZero();
}

// One layer's geometry along and across its kernel's axis (header).
struct Lines {
    Eigen::Index C, N;            // input channels, images
    Eigen::Index L, OL, p;        // along: input and output length, zeros before
    Eigen::Index J;               // across: positions (input = output)
    Eigen::Index sa, sj;          // strides of x within a channel plane: along, across
    Eigen::Index osa, osj;        // the same for y
    Eigen::Index plane, oplane;   // values of one channel plane of x, of y
    int m;                        // outputs per tile
    Eigen::Index TL() const { return (OL + m - 1) / m; }  // tiles along one line
    Eigen::Index rows() const { return N * TL(); }        // tile rows of the batch
    // Per-thread scratch of the transforms for blocks of `rows` tile rows, n points:
    // m phase planes of rows + (n - 1) / m lines and a sum of rows J (input), m Tb (output),
    // r + 1 <= n runs of C (kernel).
    Eigen::Index scratch(Eigen::Index rows, int n) const {
        return std::max({Eigen::Index(m) * (rows + (n - 1) / m) * J + rows * J, Eigen::Index(m) * rows * J,
                         Eigen::Index(n) * C});
    }
};

// U (n F C): the kernel (F, C, r) (a 1xr or rx1 kernel: its r taps consecutive), filters
// [f0, f1): U[xi](f, :) = sum_k G(xi, k) g_k over the channels. The taps of a filter are
// first gathered into r runs of C values, so that each U[xi] is a sum of contiguous
// vectors (work: (r + 1) C).
template <class T>
void transform_kernel(const Matrices& w, const T* kernel, Eigen::Index F, Eigen::Index C, Eigen::Index f0,
                      Eigen::Index f1, T* U, T* work) {
    using Tap = Eigen::Map<const Row<T>, 0, Eigen::InnerStride<>>;
    const int r = w.r, n = w.n;
    for (Eigen::Index f = f0; f < f1; ++f) {
        const T* g = kernel + f * C * r;
        for (int k = 0; k < r; ++k) RowMap<T>(work + k * C, C) = Tap(g + k, C, Eigen::InnerStride<>(r));
        RowMap<T> acc(work + r * C, C);  // summed here, in cache, then written to U once
        for (int xi = 0; xi < n; ++xi) {
            sum_terms(w.G.data() + xi * r, r, [&](int k) { return ConstRowMap<T>(work + k * C, C); }, acc);
            RowMap<T>(U + (xi * F + f) * C, C) = acc;
        }
    }
}

// V (n C Tb): the tiles of tile rows [r0, r1) (Tb = (r1 - r0) J), channels [c0, c1).
// x: the input batch (N, C, ...) read through the strides of `g`. work: scratch(), below.
// For each channel and each image's run of tile rows [tl0, tl1) in the block, the input
// lines are first split into m phase planes, P_b(q, :) = line m q + b - p (zero outside
// the image), q in [tl0, tl1 + (n - 1) / m]: tile row tl's input k is line m tl + k - p,
// P_{k % m} at row tl + k / m. So input k of all the run's tiles is one contiguous run of
// a phase plane, and each V[xi] one vector expression: sum_k B^T(xi, k) P_{k % m}(tl + k / m).
// Every input value is copied once (m lines of J values per tile row), not n / m times.
template <class T>
void transform_input(const Matrices& w, const Lines& g, const T* x, Eigen::Index r0, Eigen::Index r1,
                     Eigen::Index c0, Eigen::Index c1, Eigen::Index Tb, T* V, T* work) {
    const int n = w.n, m = w.m;
    const Eigen::Index TL = g.TL(), J = g.J, s = g.C * Tb, halo = (n - 1) / m;
    for (Eigen::Index c = c0; c < c1; ++c) {
        for (Eigen::Index R = r0; R < r1;) {
            const Eigen::Index img = R / TL, tl0 = R % TL, tl1 = std::min(TL, tl0 + (r1 - R));
            const Eigen::Index q_rows = tl1 - tl0 + halo, ps = q_rows * J;  // one phase plane
            const T* plane = x + (img * g.C + c) * g.plane;
            for (int b = 0; b < m; ++b)
                for (Eigen::Index q = 0; q < q_rows; ++q) {
                    T* d = work + b * ps + q * J;
                    const Eigen::Index a = m * (tl0 + q) + b - g.p;
                    if (a < 0 || a >= g.L) std::fill(d, d + J, T(0));
                    else if (g.sj == 1) std::copy(plane + a * g.sa, plane + a * g.sa + J, d);
                    else
                        for (Eigen::Index j = 0, src = a * g.sa; j < J; ++j, src += g.sj) d[j] = plane[src];
                }
            const Eigen::Index t0 = (R - r0) * J, len = (tl1 - tl0) * J;
            // Summed in cache (acc), then written to V once: V is megabytes, and a sum of
            // six terms straight into it read and wrote it six times.
            RowMap<T> acc(work + m * ps, len);
            for (int xi = 0; xi < n; ++xi) {
                sum_terms(w.BT.data() + xi * n, n,
                          [&](int k) { return ConstRowMap<T>(work + (k % m) * ps + (k / m) * J, len); }, acc);
                RowMap<T>(V + xi * s + c * Tb + t0, len) = acc;
            }
            R += tl1 - tl0;
        }
    }
}

// y (N, F, ...) of the tiles of tile rows [r0, r1), filters [f0, f1), from M (n F Tb):
// y = A^T m + bias, or scale * A^T m + bias when scale is given (a BatchNorm folded in,
// Conv2D::forward_folded), then ReLU when relu; outputs past OL (the last tile of a line
// when m does not divide OL) are dropped. work: m Tb values.
template <class T>
void transform_output(const Matrices& w, const Lines& g, const T* M, Eigen::Index F, Eigen::Index r0,
                      Eigen::Index r1, Eigen::Index f0, Eigen::Index f1, Eigen::Index Tb, const T* bias,
                      const T* scale, bool relu, T* y, T* work) {
    const int n = w.n, m = w.m;
    const Eigen::Index TL = g.TL(), J = g.J, s = F * Tb;
    for (Eigen::Index f = f0; f < f1; ++f) {
        for (int o = 0; o < m; ++o) {
            RowMap<T> out(work + o * Tb, Tb);
            bool first = true;  // the bias goes in with the first term: no pass of its own
            for (int xi = 0; xi < n; ++xi) {
                if (w.at(o, xi) == 0.0) continue;
                const auto term = T(w.at(o, xi)) * ConstRowMap<T>(M + xi * s + f * Tb, Tb);
                if (!first) out += term;
                else if (scale) out = term;
                else out = term + bias[f];
                first = false;
            }
            if (scale) out = out * scale[f] + bias[f];
            if (relu) out = out.max(T(0));
        }
        for (Eigen::Index R = r0; R < r1; ++R) {
            const Eigen::Index img = R / TL, tl = R % TL, t0 = (R - r0) * J;
            T* plane = y + (img * F + f) * g.oplane;
            for (int o = 0; o < m && m * tl + o < g.OL; ++o) {
                const T* src = work + o * Tb + t0;
                T* dst = plane + (m * tl + o) * g.osa;
                if (g.osj == 1) std::copy(src, src + J, dst);
                else
                    for (Eigen::Index j = 0; j < J; ++j) dst[j * g.osj] = src[j];
            }
        }
    }
}

}  // namespace winograd1d
}  // namespace kitnn
