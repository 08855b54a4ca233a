// kitnn/layers/im2col.hpp — the im2col and col2im of Conv2D (layers/conv2d.hpp): where
// every kernel tap of every output pixel reads its input pixel, in two layouts.
//
// For one image x_n (C, H, W), a kernel (KH, KW) moved `stride` pixels at a time and
// padding (pt above, pl on the left; layers/padding.hpp), the output is (OH, OW) and
// im2col writes the matrix col (CKK, columns), CKK = C*KH*KW, row r = (c, ki, kj):
//   rows  columns = P = OH*OW, exactly the output pixels:
//           col[r, oh*OW + ow] = x_n[c, oh*stride + ki - pt, ow*stride + kj - pl] (0 outside)
//         Each (tap, output row) is one short copy (OW values, zero fill where the tap
//         reads padding): OH*CKK copies per image, a cost that dominates when rows are short.
//   wide  (stride 1) the image is first copied into a zero-padded (C, Hp, Wp) buffer xp,
//         Hp = OH + KH - 1, Wp = OW + KW - 1, and the GEMM runs over Pc = OH*Wp columns,
//         as if every output row were Wp wide: column j = oh*Wp + ow reads
//         xp[c, oh + ki, ow + kj] = xp_c[ki*Wp + kj + j], so every tap's row of col is ONE
//         contiguous copy of Pc values and col2im one contiguous add per tap. The KW - 1
//         extra columns of each output row are computed and thrown away (Conv2D sets
//         their dym to 0, so they add nothing to the gradients).
// col2im is the transpose: dx_n[c, ih, iw] = the sum of dcol over the taps that read
// that pixel. `ld` is the distance between two rows of col (the chunk's column count:
// Conv2D puts several images side by side), `col` points at this image's first column.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <utility>

namespace kitnn {

struct Im2colGeometry {
    Eigen::Index c = 0, h = 0, w = 0;  // input (C, H, W)
    int kh = 0, kw = 0, stride = 1;
    int pt = 0, pl = 0;                // padding above and on the left
    Eigen::Index oh = 0, ow = 0;       // output (OH, OW)
    bool wide = false;                 // the layout (wide needs stride 1)

    Eigen::Index ckk() const { return c * kh * kw; }
    Eigen::Index hp() const { return oh + kh - 1; }
    Eigen::Index wp() const { return ow + kw - 1; }
    // GEMM columns per output row (OW or Wp) and per image.
    Eigen::Index wc() const { return wide ? wp() : ow; }
    Eigen::Index columns() const { return oh * wc(); }
    // The padded image buffer (wide only): (C, Hp, Wp) plus KW - 1 values of slack,
    // which the last row of taps reads (into the extra columns only).
    Eigen::Index padded_size() const { return wide ? c * hp() * wp() + kw - 1 : 0; }

    // The output columns [ow0, ow1) whose tap kj reads inside the input row
    // (0 <= ow*stride + kj - pl < W); the others read padding.
    std::pair<Eigen::Index, Eigen::Index> inside(int kj) const {
        const Eigen::Index off = kj - pl;
        const Eigen::Index ow0 = std::min<Eigen::Index>(ow, off < 0 ? (-off + stride - 1) / stride : 0);
        const Eigen::Index ow1 =
            std::max<Eigen::Index>(ow0, std::min<Eigen::Index>(ow, (w - off + stride - 1) / stride));
        return {ow0, ow1};
    }

    // xp: padded_size() values whose border (and slack) is zero; only the interior is written.
    template <class T>
    void im2col(const T* xn, T* col, Eigen::Index ld, T* xp) const {
        if (wide) im2col_wide(xn, col, ld, xp);
        else im2col_rows(xn, col, ld);
    }
    // Channels [c0, c1) only, so that threads can share one image, each with its own
    // channels. Two steps, every thread finishing step 0 before any starts step 1:
    // step 0 copies the channels into the padded buffer xp (wide only), step 1 writes
    // their rows of col. Why two: a wide tap row of the last channel of a range reads
    // KW - 1 values past its plane, the start of the next channel's, which another
    // thread may be writing in step 0 (those values only reach discarded columns, but
    // reading them while they are written is still a data race).
    template <class T>
    void im2col_channels(int step, const T* xn, T* col, Eigen::Index ld, T* xp, Eigen::Index c0,
                         Eigen::Index c1) const {
        if (!wide) {
            if (step == 1)
                for (Eigen::Index ch = c0; ch < c1; ++ch) {
                    Im2colGeometry one = *this;  // one channel: a 1-channel image
                    one.c = 1;
                    one.im2col_rows(xn + ch * h * w, col + ch * kh * kw * ld, ld, 0, oh);
                }
            return;
        }
        const Eigen::Index Hp = hp(), Wp = wp(), Pc = oh * Wp;
        if (step == 0) return pad_into(xn, xp, c0, c1);
        for (Eigen::Index ch = c0; ch < c1; ++ch)
            for (int ki = 0; ki < kh; ++ki)
                for (int kj = 0; kj < kw; ++kj) {
                    const T* from = xp + (ch * Hp + ki) * Wp + kj;
                    std::copy(from, from + Pc, col + ((ch * kh + ki) * kw + kj) * ld);
                }
    }
    // Wide layout only: x_n into the interior of the padded buffer xp (the border and
    // slack stay as they are: zero). The first half of im2col_wide.
    // Channels [c0, c1) only with the second form.
    template <class T>
    void pad_into(const T* xn, T* xp) const { pad_into(xn, xp, 0, c); }
    template <class T>
    void pad_into(const T* xn, T* xp, Eigen::Index c0, Eigen::Index c1) const {
        const Eigen::Index Hp = hp(), Wp = wp();
        for (Eigen::Index ch = c0; ch < c1; ++ch)
            for (Eigen::Index i = 0; i < h; ++i)
                std::copy(xn + (ch * h + i) * w, xn + (ch * h + i + 1) * w, xp + (ch * Hp + i + pt) * Wp + pl);
    }
    // Wide layout only: the kernel gradient of one image without its col matrix.
    //   dW[f, r] += sum_j dym[f, j] * col[r, j],  j < Pc,  r = (ch, ki, kj),  f < F
    // where col's row r is the run xp_ch[ki*Wp + kj + j] of the padded image (pad_into):
    // the dot products read it in place. Why: for layers with few filters (lenet5's
    // first: 6) the GEMM dW += dym col^T has 6 rows against thousands of columns, and
    // Eigen's packing of col plus the im2col copy that feeds it cost more than the
    // multiply-adds; here dym's rows (F x Pc) and the padded image stay in L1. dym's
    // rows are ld apart; dW is (F, CKK) row-major.
    template <class T>
    void add_kernel_grad(const T* dym, Eigen::Index ld, Eigen::Index F, const T* xp, T* dW) const {
        const Eigen::Index Hp = hp(), Wp = wp(), Pc = oh * Wp, K = ckk();
        for (Eigen::Index f = 0; f < F; ++f)
            for (Eigen::Index ch = 0; ch < c; ++ch)
                for (int ki = 0; ki < kh; ++ki)
                    tap_dots(dym + f * ld, xp + (ch * Hp + ki) * Wp, Pc, dW + f * K + (ch * kh + ki) * kw);
    }

    // Wide layout only: the forward product of one image without its col matrix.
    //   ym[f, j] = sum_r Wk[f, r] * col[r, j],  j < Pc,  r = (ch, ki, kj),  f < F
    // with col's row r read in place as the run xp_ch[ki*Wp + kj + j] (see
    // add_kernel_grad, its backward twin). Filters go in groups (tap_group: at most 8);
    // for each block of output columns a group keeps its partial sums in registers,
    // and every tap's load of xp feeds all of them: no im2col copy and no GEMM packing,
    // which for lenet5's first layer (6 filters, 25 taps) cost more than its
    // multiply-adds. Wk is (F, CKK) row-major; ym's rows are ld apart.
    template <class T>
    void conv_taps(const T* xp, const T* Wk, Eigen::Index F, T* ym, Eigen::Index ld) const {
        const Eigen::Index groups = (F + tap_group<T>() - 1) / tap_group<T>(), K = ckk();
        for (Eigen::Index gi = 0; gi < groups; ++gi) {  // equal groups (AVX-512): 16 = 8 + 8, 12 = 6 + 6
            const Eigen::Index f0 = F * gi / groups, nf = F * (gi + 1) / groups - f0;
            const T* w = Wk + f0 * K;
            T* out = ym + f0 * ld;
            switch (nf) {
            case 1: conv_taps_fixed<1>(xp, w, out, ld); break;
            case 2: conv_taps_fixed<2>(xp, w, out, ld); break;
            case 3: conv_taps_fixed<3>(xp, w, out, ld); break;
            case 4: conv_taps_fixed<4>(xp, w, out, ld); break;
            case 5: conv_taps_fixed<5>(xp, w, out, ld); break;
            case 6: conv_taps_fixed<6>(xp, w, out, ld); break;
            case 7: conv_taps_fixed<7>(xp, w, out, ld); break;
            default: conv_taps_fixed<8>(xp, w, out, ld); break;
            }
        }
    }

    // dxp: padded_size() values of scratch. Overwrites dx_n.
    template <class T>
    void col2im(const T* dcol, Eigen::Index ld, T* dxn, T* dxp) const {
        if (wide) col2im_wide(dcol, ld, dxn, dxp);
        else col2im_rows(dcol, ld, dxn);
    }
    // Channels [c0, c1) only, so that threads can share one image's gradient, each with
    // its own channels: overwrites those planes of dx_n. Each channel is a 1-channel
    // image with its own padded plane in dxp (one channel's padded_size() of this
    // thread's scratch): the whole-image col2im_wide adds a wide tap row's last KW - 1
    // values into the next channel's plane (zeros, from the discarded columns), which
    // another thread may be writing.
    template <class T>
    void col2im_channels(const T* dcol, Eigen::Index ld, T* dxn, T* dxp, Eigen::Index c0, Eigen::Index c1) const {
        Im2colGeometry one = *this;
        one.c = 1;
        for (Eigen::Index ch = c0; ch < c1; ++ch) one.col2im(dcol + ch * kh * kw * ld, ld, dxn + ch * h * w, dxp);
    }

    // Strips (rows layout only): the columns of output rows [o0, o1) alone, column
    // (o - o0)*OW + ow. col2im_rows_add ADDS the strip's taps into dx_n (no zeroing):
    // neighbouring strips read some input rows in common (the kernel's halo), so the
    // caller zeroes dx_n once and never runs two strips that share rows at the same time.
    template <class T>
    void im2col_rows(const T* xn, T* col, Eigen::Index ld, Eigen::Index o0, Eigen::Index o1) const {
        for (Eigen::Index ch = 0; ch < c; ++ch)
            for (int ki = 0; ki < kh; ++ki)
                for (int kj = 0; kj < kw; ++kj) {
                    T* dst = col + ((ch * kh + ki) * kw + kj) * ld;  // output row o0's columns
                    const T* plane = xn + ch * h * w;
                    const auto [ow0, ow1] = inside(kj);
                    for (Eigen::Index o = o0; o < o1; ++o) {
                        const Eigen::Index ih = o * stride + ki - pt;
                        T* d = dst + (o - o0) * ow;
                        if (ih < 0 || ih >= h) {
                            std::fill(d, d + ow, T(0));
                            continue;
                        }
                        const T* row = plane + ih * w + kj - pl;  // row[ow * stride]
                        // Most rows need no padding: skip the (library call) fills then.
                        if (ow0 > 0) std::fill(d, d + ow0, T(0));
                        if (stride == 1) std::copy(row + ow0, row + ow1, d + ow0);
                        else
                            for (Eigen::Index j = ow0; j < ow1; ++j) d[j] = row[j * stride];
                        if (ow1 < ow) std::fill(d + ow1, d + ow, T(0));
                    }
                }
    }
    template <class T>
    void col2im_rows_add(const T* dcol, Eigen::Index ld, T* dxn, Eigen::Index o0, Eigen::Index o1) const {
        for (Eigen::Index ch = 0; ch < c; ++ch)
            for (int ki = 0; ki < kh; ++ki)
                for (int kj = 0; kj < kw; ++kj) {
                    const T* src = dcol + ((ch * kh + ki) * kw + kj) * ld;  // output row o0's columns
                    T* plane = dxn + ch * h * w;
                    const auto [ow0, ow1] = inside(kj);
                    for (Eigen::Index o = o0; o < o1; ++o) {
                        const Eigen::Index ih = o * stride + ki - pt;
                        if (ih < 0 || ih >= h) continue;
                        T* row = plane + ih * w + kj - pl;  // row[ow * stride]
                        const T* s = src + (o - o0) * ow;
                        if (stride == 1)  // a contiguous loop GCC vectorises (the strided one not)
                            for (Eigen::Index j = ow0; j < ow1; ++j) row[j] += s[j];
                        else
                            for (Eigen::Index j = ow0; j < ow1; ++j) row[j * stride] += s[j];
                    }
                }
    }

private:
    // Filters per group of conv_taps: as many as leave their partial sums (one 64-byte
    // line each: one AVX-512 register, two AVX ones, four SSE/NEON ones), the tap's load
    // and the broadcast weight in the vector registers without spilling: 8 with AVX-512,
    // 6 with AVX2 or 64-bit NEON, 2 with SSE only. (Built with -mavx2, groups of 8 spilled:
    // lenet5's second layer 1,039-1,058 us against 687-707 us with groups of 6.)
    template <class T>
    static constexpr int tap_group() {
        constexpr int regs_per_line = std::max(1, 64 / int(sizeof(T) * Eigen::internal::packet_traits<T>::size));
        // (an int: without AVX, Eigen defines the register count as 2*sizeof(void*))
        return std::clamp(int(EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS) / regs_per_line - 2, 1, 8);
    }
    // conv_taps for F filters known at compile time: F lines of L lanes (one 64-byte
    // line each) stay in registers across all CKK taps of a block of L columns.
    template <int F, class T>
    void conv_taps_fixed(const T* xp, const T* Wk, T* ym, Eigen::Index ld) const {
        constexpr int L = 64 / int(sizeof(T));
        using Lanes = Eigen::Array<T, L, 1>;
        const Eigen::Index Hp = hp(), Wp = wp(), Pc = oh * Wp, K = ckk();
        // The tap r = (ch, ki, kj) reads xp[at(r) + j].
        auto at = [&](Eigen::Index ch, int ki, int kj) { return (ch * Hp + ki) * Wp + kj; };
        // Blocks of L columns; the last block ends at Pc (it overlaps the one before
        // and writes some columns twice, with the same values) rather than leaving a
        // scalar remainder, which cost as much as the vector blocks on short images.
        const auto block = [&](Eigen::Index j) {
            Lanes acc[F];
            for (Lanes& a : acc) a.setZero();
            const T* wr = Wk;  // Wk[f, r] = wr[f * K]: r advances with the taps
            for (Eigen::Index ch = 0; ch < c; ++ch)
                for (int ki = 0; ki < kh; ++ki)
                    for (int kj = 0; kj < kw; ++kj, ++wr) {
                        const Lanes xv = Eigen::Map<const Lanes>(xp + at(ch, ki, kj) + j);
                        for (int f = 0; f < F; ++f) acc[f] += wr[f * K] * xv;
                    }
            for (int f = 0; f < F; ++f) Eigen::Map<Lanes>(ym + f * ld + j) = acc[f];
        };
        if (Pc >= L) {
            for (Eigen::Index j = 0; j + L <= Pc; j += L) block(j);
            if (Pc % L) block(Pc - L);
            return;
        }
        for (Eigen::Index j = 0; j < Pc; ++j)  // fewer columns than one block
            for (int f = 0; f < F; ++f) {
                T s = 0;
                const T* wr = Wk + f * K;
                for (Eigen::Index ch = 0; ch < c; ++ch)
                    for (int ki = 0; ki < kh; ++ki)
                        for (int kj = 0; kj < kw; ++kj, ++wr) s += *wr * xp[at(ch, ki, kj) + j];
                ym[f * ld + j] = s;
            }
    }

    // out[kj] += sum_{j < n} g[j] * b[kj + j] for kj < kw: the kw taps of one kernel row
    // share every load of g. KW known at compile time keeps the kw x L partial sums in
    // registers (L lanes each, summed at the end); other widths take the plain loop.
    // (Fixed-size Eigen arrays: with plain T[KW][L] GCC 12 scattered the sums over
    // 4-lane registers and ran 3x slower than the GEMM it replaces.)
    template <int KW, class T>
    static void tap_dots_fixed(const T* g, const T* b, Eigen::Index n, T* out) {
        constexpr int L = 64 / int(sizeof(T));  // one 64-byte line: 16 floats, 8 doubles
        using Lanes = Eigen::Array<T, L, 1>;
        Lanes acc[KW];
        for (Lanes& a : acc) a.setZero();
        Eigen::Index j = 0;
        for (; j + L <= n; j += L) {
            const Lanes gj = Eigen::Map<const Lanes>(g + j);
            for (int kj = 0; kj < KW; ++kj) acc[kj] += gj * Eigen::Map<const Lanes>(b + kj + j);
        }
        for (int kj = 0; kj < KW; ++kj) {
            T s = 0;
            for (int l = 0; l < L; ++l) s += acc[kj][l];  // (not .sum(): GCC 12 warns in Eigen's AVX-512 reduction of doubles)
            for (Eigen::Index t = j; t < n; ++t) s += g[t] * b[kj + t];
            out[kj] += s;
        }
    }
    template <class T>
    void tap_dots(const T* g, const T* b, Eigen::Index n, T* out) const {
        switch (kw) {
        case 1: return tap_dots_fixed<1>(g, b, n, out);
        case 2: return tap_dots_fixed<2>(g, b, n, out);
        case 3: return tap_dots_fixed<3>(g, b, n, out);
        case 5: return tap_dots_fixed<5>(g, b, n, out);
        case 7: return tap_dots_fixed<7>(g, b, n, out);
        default:
            for (int kj = 0; kj < kw; ++kj) {
                T s = 0;
                for (Eigen::Index j = 0; j < n; ++j) s += g[j] * b[kj + j];
                out[kj] += s;
            }
        }
    }

    template <class T>
    void im2col_rows(const T* xn, T* col, Eigen::Index ld) const { im2col_rows(xn, col, ld, 0, oh); }
    template <class T>
    void col2im_rows(const T* dcol, Eigen::Index ld, T* dxn) const {
        std::fill(dxn, dxn + c * h * w, T(0));
        col2im_rows_add(dcol, ld, dxn, 0, oh);
    }

    template <class T>
    void im2col_wide(const T* xn, T* col, Eigen::Index ld, T* xp) const {
        const Eigen::Index Hp = hp(), Wp = wp(), Pc = oh * Wp;
        pad_into(xn, xp);  // interior rows; the zero border is never written
        for (Eigen::Index ch = 0; ch < c; ++ch)
            for (int ki = 0; ki < kh; ++ki)
                for (int kj = 0; kj < kw; ++kj) {
                    const T* from = xp + (ch * Hp + ki) * Wp + kj;
                    std::copy(from, from + Pc, col + ((ch * kh + ki) * kw + kj) * ld);
                }
    }

    // Every dcol row is added, as one contiguous run, into the padded gradient dxp,
    // whose interior is then dx_n. (The extra columns' dcol is 0.)
    template <class T>
    void col2im_wide(const T* dcol, Eigen::Index ld, T* dxn, T* dxp) const {
        const Eigen::Index Hp = hp(), Wp = wp(), Pc = oh * Wp;
        std::fill(dxp, dxp + padded_size(), T(0));
        for (Eigen::Index ch = 0; ch < c; ++ch)
            for (int ki = 0; ki < kh; ++ki)
                for (int kj = 0; kj < kw; ++kj) {
                    const T* s = dcol + ((ch * kh + ki) * kw + kj) * ld;
                    T* d = dxp + (ch * Hp + ki) * Wp + kj;
                    for (Eigen::Index j = 0; j < Pc; ++j) d[j] += s[j];
                }
        for (Eigen::Index ch = 0; ch < c; ++ch)
            for (Eigen::Index i = 0; i < h; ++i) {
                const T* from = dxp + (ch * Hp + i + pt) * Wp + pl;
                std::copy(from, from + w, dxn + (ch * h + i) * w);
            }
    }
};

}  // namespace kitnn
