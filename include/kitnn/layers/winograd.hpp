// kitnn/layers/winograd.hpp — Winograd's minimal filtering F(2x2, 3x3), for the
// inference forward of large 3x3 stride-1 convolutions (Lavin and Gray, "Fast
// Algorithms for Convolutional Neural Networks", 2016).
//
// A 2x2 block of a 3x3 convolution's output is A^T [(G g G^T) ⊙ (B^T d B)] A, with d the
// 4x4 input patch under the block and g the 3x3 kernel. Summed over the C channels, the
// elementwise product ⊙ becomes 16 matrix products, one per position xi = 4*i + j of the
// 4x4 transformed tile:
//   U[xi] : (F, C)   U[xi](f, c) = (G g_fc G^T)(i, j)        the kernel, once per pass
//   V[xi] : (C, Tb)  V[xi](c, t) = (B^T d_ct B)(i, j)        tile t of a block of Tb
//   M[xi] : (F, Tb)  = U[xi] V[xi]                           16 GEMMs of depth C
//   y (2x2 block of tile t, filter f) = A^T m A,  m(i, j) = M[4i + j](f, t)
// with
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]
//   G   = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1]
//   A^T = [1 1 1 0; 0 1 -1 -1]
// So 16 multiply-adds per 4 outputs and channel instead of 36: 2.25x fewer in the GEMMs,
// for transforms made of additions (B and A hold 0 and +-1, G halves). Why only for
// inference and only for large layers: the products are where a large layer spends its
// time, while the transforms are extra passes over memory that small layers would not
// earn back (Conv2D decides, docs/performance.md has the measurements); and training
// keeps the direct product, whose rounding the documented accuracies have.
//
// Rounding: the input transform adds and subtracts up to 4 inputs, the output transform
// up to 9 products' sums, so the result differs from the direct sum by a few units in
// the last place of the largest terms (tests/test_winograd.cpp bounds it against the
// GEMM path, in float and double).
//
// Tiles: the output is cut into TH x TW tiles of 2x2 (TH = ceil(OH / 2)); tile (ty, tx)
// reads input rows 2ty - pt .. 2ty - pt + 3 and columns 2tx - pl .. 2tx - pl + 3, zero
// outside the image. Tiles are numbered row by row, rows of all images one after the
// other (Tiling), so a block of tiles is a range of rows and may hold several small
// images (wider GEMMs at batch 8 for 14x14 outputs).
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cstdint>

namespace kitnn {
namespace winograd {

template <class T>
using Row = Eigen::Array<T, Eigen::Dynamic, 1>;
template <class T>
using RowMap = Eigen::Map<Row<T>>;
template <class T>
using ConstRowMap = Eigen::Map<const Row<T>>;
template <class T>  // every other value: the even or odd columns of a row
using Pairs = Eigen::Map<const Row<T>, 0, Eigen::InnerStride<2>>;
template <class T>
using PairsOut = Eigen::Map<Row<T>, 0, Eigen::InnerStride<2>>;

// Geometry of one layer's tiling. The transforms work on whole blocks of tiles as long
// vectors: the tile index runs over "plane rows" R = n (TH + 1) + ty, E = TW + 1 slots
// each, t = R E + tx (block-relative). Row ty = TH of each image and column tx = TW of
// each row are slots no output uses: computed and dropped (1 / (TH + 1) + 1 / (TW + 1) of
// the work), so that tile t's inputs are the same offsets from t for every tile (below).
struct Tiling {
    Eigen::Index C, H, W;  // input channels and size
    Eigen::Index OH, OW;   // output size
    Eigen::Index pt, pl;   // zero rows above, columns left
    Eigen::Index TH, TW;   // tiles per column and row
    Eigen::Index N;        // images
    Eigen::Index E() const { return TW + 1; }         // slots per plane row
    Eigen::Index rows() const { return N * (TH + 1); }  // plane rows of the whole batch
    // Values of one input phase plane for a block of `rows` plane rows (one row more, the
    // tiles' lower half, and one slot more, the last slot's right neighbour).
    Eigen::Index plane(Eigen::Index rows) const { return (rows + 1) * E() + 1; }
    // Values of per-thread scratch the transforms need for blocks of `rows` plane rows.
    Eigen::Index scratch(Eigen::Index rows) const { return std::max({4 * plane(rows), 12 * rows * E(), 12 * C}); }
};

// U (16 F C): the kernel (F, C, 3, 3) transformed, filters [f0, f1). Each line below is
// one expression over the C channels of a filter (Eigen vectorises it; the kernel's taps
// are 9 values apart). work: 12 C values of scratch.
template <class T>
void transform_kernel(const T* kernel, Eigen::Index F, Eigen::Index C, Eigen::Index f0, Eigen::Index f1, T* U,
                      T* work) {
    using Tap = Eigen::Map<const Row<T>, 0, Eigen::InnerStride<9>>;
    const T h = T(0.5);
    for (Eigen::Index f = f0; f < f1; ++f) {
        const T* g = kernel + f * C * 9;
        auto tap = [&](int k) { return Tap(g + k, C); };  // g_k over the channels, k = 3 row + col
        // q = G g: (4, 3) arrays of C values, q[3 i + k] at work + (3 i + k) C
        auto q = [&](int i, int k) { return RowMap<T>(work + (3 * i + k) * C, C); };
        for (int k = 0; k < 3; ++k) {
            q(0, k) = tap(k);
            q(1, k) = h * (tap(k) + tap(3 + k) + tap(6 + k));
            q(2, k) = h * (tap(k) - tap(3 + k) + tap(6 + k));
            q(3, k) = tap(6 + k);
        }
        auto u = [&](int xi) { return RowMap<T>(U + (xi * F + f) * C, C); };
        for (int i = 0; i < 4; ++i) {  // row i of q G^T
            u(4 * i + 0) = q(i, 0);
            u(4 * i + 1) = h * (q(i, 0) + q(i, 1) + q(i, 2));
            u(4 * i + 2) = h * (q(i, 0) - q(i, 1) + q(i, 2));
            u(4 * i + 3) = q(i, 2);
        }
    }
}

// V (16 C Tb): the slots of plane rows [r0, r1) (Tb = (r1 - r0) E), channels [c0, c1).
// x: (N, C, H, W). work: 4 plane(r1 - r0) values of scratch.
// The padded input of a channel (zero outside the image) is first split into its four
// phase planes, P[a][b](R, m) = xpad(2 ty + a, 2 m + b) for plane row R = (n, ty): tile t
// (row R, column tx) reads padded rows 2ty + i and columns 2tx + k, i.e. plane
// P[i % 2][k % 2] at (R + i / 2, tx + k / 2) = offset t + (i / 2) E + k / 2 from the
// plane's start. So col(i, k) over all tiles of the block is one contiguous run, and each
// of the 16 outputs below one vector expression over the whole block.
template <class T>
void transform_input(const Tiling& g, const T* x, Eigen::Index r0, Eigen::Index r1, Eigen::Index c0,
                     Eigen::Index c1, Eigen::Index Tb, T* V, T* work) {
    const Eigen::Index C = g.C, E = g.E(), rows = r1 - r0, PS = g.plane(rows), s = C * Tb;
    const Eigen::Index e0 = (g.pl + 1) / 2, e1 = std::min(E, (g.W + g.pl + 1) / 2);  // even columns inside
    const Eigen::Index o0 = g.pl / 2, o1 = std::min(E, (g.W + g.pl) / 2);            // odd columns inside
    for (Eigen::Index c = c0; c < c1; ++c) {
        std::fill(work, work + 4 * PS, T(0));
        for (Eigen::Index R = r0; R <= r1; ++R) {  // one plane row more: the tiles' lower half
            const Eigen::Index n = R / (g.TH + 1), ty = R % (g.TH + 1);
            if (n >= g.N) break;
            const T* plane = x + (n * C + c) * g.H * g.W;
            for (int a = 0; a < 2; ++a) {
                const Eigen::Index ih = 2 * ty + a - g.pt;
                if (ih < 0 || ih >= g.H) continue;
                // Padded column p is input column p - pl: even[m] = in[2m - pl] and
                // odd[m] = in[2m + 1 - pl] where those are inside the row.
                const T* in = plane + ih * g.W;
                T* ev = work + (2 * a) * PS + (R - r0) * E;
                T* od = ev + PS;
                if (e1 > e0) RowMap<T>(ev + e0, e1 - e0) = Pairs<T>(in + 2 * e0 - g.pl, e1 - e0);
                if (o1 > o0) RowMap<T>(od + o0, o1 - o0) = Pairs<T>(in + 2 * o0 + 1 - g.pl, o1 - o0);
            }
        }
        // col(i, k): input row i, column k of every tile of the block
        auto col = [&](int i, int k) {
            return ConstRowMap<T>(work + (2 * (i % 2) + k % 2) * PS + (i / 2) * E + k / 2, Tb);
        };
        auto out = [&](int xi) { return RowMap<T>(V + xi * s + c * Tb, Tb); };
        // b(i, k) = (B^T d)(i, k): rows d0 - d2, d1 + d2, d2 - d1, d1 - d3
        auto b = [&](int i, int k) {
            const int p = i == 0 ? 0 : i == 2 ? 2 : 1;               // first row
            const int q = i == 0 ? 2 : i == 3 ? 3 : i == 1 ? 2 : 1;  // second row
            const T sign = i == 1 ? T(1) : T(-1);
            return col(p, k) + sign * col(q, k);
        };
        for (int i = 0; i < 4; ++i) {  // row i of (B^T d) B: columns b0 - b2, b1 + b2, b2 - b1, b1 - b3
            out(4 * i + 0) = b(i, 0) - b(i, 2);
            out(4 * i + 1) = b(i, 1) + b(i, 2);
            out(4 * i + 2) = b(i, 2) - b(i, 1);
            out(4 * i + 3) = b(i, 1) - b(i, 3);
        }
    }
}

// y (N, F, OH, OW) of the tiles of plane rows [r0, r1), filters [f0, f1), from
// M (16 F Tb): y = A^T m A + bias, or scale * (A^T m A) + bias when scale is given (a
// BatchNorm folded in, Conv2D::forward_folded), then ReLU when relu; the unused slots are
// dropped. work: 12 Tb values of scratch.
template <class T>
void transform_output(const Tiling& g, const T* M, Eigen::Index F, Eigen::Index r0, Eigen::Index r1,
                      Eigen::Index f0, Eigen::Index f1, Eigen::Index Tb, const T* bias, const T* scale, bool relu,
                      T* y, T* work) {
    const Eigen::Index E = g.E(), OW = g.OW, s = F * Tb;
    const Eigen::Index left = (OW + 1) / 2, right = OW / 2;  // tiles with a left / right output column
    for (Eigen::Index f = f0; f < f1; ++f) {
        auto m = [&](int i, int k) { return ConstRowMap<T>(M + (4 * i + k) * s + f * Tb, Tb); };
        auto a = [&](int i, int k) { return RowMap<T>(work + (4 * i + k) * Tb, Tb); };  // A^T m: (2, 4)
        for (int k = 0; k < 4; ++k) {
            a(0, k) = m(0, k) + m(1, k) + m(2, k);
            a(1, k) = m(1, k) - m(2, k) - m(3, k);
        }
        // y(i, 0) = a(i, 0) + a(i, 1) + a(i, 2), y(i, 1) = a(i, 1) - a(i, 2) - a(i, 3), + bias
        const T bf = bias[f];
        auto yv = [&](int i, int j) { return RowMap<T>(work + (8 + 2 * i + j) * Tb, Tb); };
        for (int i = 0; i < 2; ++i) {
            if (scale) {
                const T sf = scale[f];
                yv(i, 0) = (a(i, 0) + a(i, 1) + a(i, 2)) * sf + bf;
                yv(i, 1) = (a(i, 1) - a(i, 2) - a(i, 3)) * sf + bf;
            } else {
                yv(i, 0) = a(i, 0) + a(i, 1) + a(i, 2) + bf;
                yv(i, 1) = a(i, 1) - a(i, 2) - a(i, 3) + bf;
            }
            if (relu) {
                yv(i, 0) = yv(i, 0).max(T(0));
                yv(i, 1) = yv(i, 1).max(T(0));
            }
        }
        // Interleave each tile row's blocks into its two output rows.
        for (Eigen::Index R = r0; R < r1; ++R) {
            const Eigen::Index n = R / (g.TH + 1), ty = R % (g.TH + 1);
            if (ty == g.TH) continue;  // the unused plane row
            const Eigen::Index t = (R - r0) * E;
            T* out0 = y + ((n * F + f) * g.OH + 2 * ty) * OW;
            PairsOut<T>(out0, left) = yv(0, 0).segment(t, left);
            PairsOut<T>(out0 + 1, right) = yv(0, 1).segment(t, right);
            if (2 * ty + 1 < g.OH) {
                PairsOut<T>(out0 + OW, left) = yv(1, 0).segment(t, left);
                PairsOut<T>(out0 + OW + 1, right) = yv(1, 1).segment(t, right);
            }
        }
    }
}

}  // namespace winograd
}  // namespace kitnn
