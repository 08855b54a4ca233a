// kitnn/layers/conv2d.hpp — 2-D convolution as im2col + GEMM, over chunks of images.
//
//   x     : (N, C, H, W)           input batch
//   kernel: (F, C, KH, KW)         viewed as the matrix Wm (F, CKK), CKK = C*KH*KW
//   y     : (N, F, OH, OW)         P = OH*OW output pixels per image
// The batch is cut into chunks of `cn` consecutive images; for each chunk:
//   col   : (CKK, cn*P)            im2col of the chunk; row r is one (c, ki, kj) tap,
//                                  column i*P + p is pixel p of the chunk's image i
//   ym    : (F, cn*P) = Wm * col   one GEMM per chunk
//   y[n]  = act(ym[:, i*P..] + b)  copied back to NCHW with bias and activation
// Chunks are sized so col and ym fit in L2 (kChunkElems), at least one image. Why
// not one im2col of the whole batch: for kerascnn's second layer that matrix is
// 288 x 57,600 floats (66 MB), written and read through DRAM on every pass and most
// of the resident memory; a chunk stays in cache, and tiny layers (keck: 4 taps,
// 729 pixels) still get GEMMs thousands of columns wide. Chunks run in parallel
// (each thread has its own Workspace; Eigen does not thread inside our parallel
// region), or on one thread when the layer is small.
// Backward, per chunk, recomputes col (cheaper than keeping it) and:
//   dym   : (F, cn*P)              dy gathered to the GEMM layout, times act'(y)
//   dW   += dym * col^T; db += rowsum(dym)   into the thread's partial sums, which are
//                                  added to the gradients in thread order afterwards
//   dcol  : (CKK, cn*P) = Wm^T * dym   written over col (dead by then); col2im adds
//                                  every tap back to its input pixel of dx.
// Workspaces are members, resized only when the batch size or thread count changes.
//
// Layouts of col (Im2col, chosen per layer when it is built; both tested to agree):
//   rows  P = OH*OW columns per image, exactly the output pixels. Each (tap, output
//         row) is one short copy (OW values, zero fill where the tap reads padding):
//         OH*CKK copies per image, a cost that dominates when rows are short.
//   wide  (stride 1) the image is first copied into a zero-padded (C, Hp, Wp) buffer
//         and the GEMM runs over Pc = OH*Wp columns, as if every output row were Wp
//         wide. Every tap's row of col is then ONE contiguous copy of Pc values
//         (xp_c shifted by ki*Wp + kj) and col2im one contiguous add per tap; the
//         KW - 1 extra columns of each output row are computed and thrown away (their
//         dym is set to 0, so they add nothing to the gradients).
// `automatic` takes wide for stride 1 when the layer pads or its output rows are short
// (<= 16): lenet5 trained 8-12 % faster with it; keck was slower (see choose_layout).
//
// Padding: `valid` (none), `same` (TensorFlow: out = ceil(in / stride), the odd
// pixel at the bottom/right) or `explicit_pad` (PyTorch's `padding=p`: p zero pixels
// on every side, out = (in + 2p - k) / stride + 1; torchvision's AlexNet needs it for
// its 11x11 stride-4 pad-2 first layer, which is neither valid nor same). All three
// only set pt_/pl_ and OH/OW: im2col and col2im are the same code for each.
// use_bias = false (convolutions followed by BatchNorm, whose beta is the bias)
// drops `bias` from params(), so the model file and parameter counts do not have
// it; the layer keeps a zero bias internally so the forward pass is unchanged.
#pragma once

#include "kitnn/core/init.hpp"
#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"

#include <algorithm>
#include <array>
#include <utility>
#include <vector>

namespace kitnn {

// explicit_pad: a fixed number of zero pixels on every side (Conv2D's `pad`).
enum class Padding { valid, same, explicit_pad };
inline const char* to_string(Padding p) {
    return p == Padding::same ? "same" : p == Padding::explicit_pad ? "explicit" : "valid";
}
inline Padding padding_from_string(const std::string& s) {
    if (s == "same") return Padding::same;
    if (s == "valid") return Padding::valid;
    if (s == "explicit") return Padding::explicit_pad;
    throw std::runtime_error("unknown padding '" + s + "' (expected valid, same or explicit)");
}

// How Conv2D lays out its im2col matrix (see "Layouts of col" above). `automatic` picks per
// layer at build time; `rows` and `wide` force one (wide needs stride 1). Both give the
// same results up to float rounding; tests check both.
enum class Im2col { automatic, rows, wide };

template <class T>
class Conv2D : public Layer<T> {
public:
    // Padding::explicit_pad through this constructor means pad = 0 (same as valid).
    Conv2D(int filters, std::array<int, 2> kernel, Activation act = Activation::linear,
           Padding padding = Padding::valid, int stride = 1, Init init = Init::glorot_uniform,
           bool use_bias = true)
        : filters_(filters), kh_(kernel[0]), kw_(kernel[1]), stride_(stride), pad_(0),
          padding_(padding), act_(act), init_(init), use_bias_(use_bias) {
        validate();
    }
    // Explicit symmetric padding: `pad` zero pixels on each side (PyTorch's padding=pad),
    //   Conv2D<T>(64, {11, 11}, Activation::relu, /*pad=*/2, /*stride=*/4)
    // `pad` is an int, the other constructor's a Padding: the two never clash.
    Conv2D(int filters, std::array<int, 2> kernel, Activation act, int pad, int stride = 1,
           Init init = Init::glorot_uniform, bool use_bias = true)
        : filters_(filters), kh_(kernel[0]), kw_(kernel[1]), stride_(stride), pad_(pad),
          padding_(Padding::explicit_pad), act_(act), init_(init), use_bias_(use_bias) {
        validate();
    }

    std::string type() const override { return "Conv2D"; }
    Config config() const override {
        Config c;
        c.set("filters", filters_).set("kernel_h", kh_).set("kernel_w", kw_);
        c.set("stride", stride_).set("padding", to_string(padding_));
        c.set("activation", to_string(act_)).set("init", to_string(init_));
        // Only when not the default, so files of models without them stay as before
        // (and readable by older kitnn versions).
        if (padding_ == Padding::explicit_pad) c.set("pad", pad_);
        if (!use_bias_) c.set("use_bias", "0");
        return c;
    }
    std::vector<Param<T>*> params() override {
        if (use_bias_) return {&kernel_, &bias_};
        return {&kernel_};
    }
    std::int64_t macs() const override { return std::int64_t(filters_) * ckk_ * oh_ * ow_; }

    // Chooses the im2col layout (a speed knob, not part of the model file).
    void set_im2col(Im2col m) {
        if (m == Im2col::wide && stride_ != 1)
            throw std::invalid_argument("Conv2D: the wide im2col layout needs stride 1, this layer has " +
                                        std::to_string(stride_));
        im2col_ = m;
        if (ckk_ > 0) choose_layout();
    }
    // The layout in use once built: rows or wide.
    Im2col im2col_layout() const { return wide_ ? Im2col::wide : Im2col::rows; }

    int pad_top() const { return pt_; }
    int pad_left() const { return pl_; }
    bool use_bias() const { return use_bias_; }
    Param<T>& kernel() { return kernel_; }
    Param<T>& bias() { return bias_; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool /*training*/) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), P = oh_ * ow_, Pc = oh_ * wc_;
        ensure(y, N, this->out_);
        if (N == 0) return;  // an empty batch: nothing to plan (and no chunk to divide by)
        const Plan plan = make_plan(N);
        const GemmThreads gemm_threads(plan.chunk_macs);
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk_);
        const T* b = bias_.value.data();
        // Output rows: one run of P values when the columns have no gaps (rows layout),
        // else OH runs of OW values, wc_ apart in ym (wide layout).
        const Eigen::Index runs = wc_ == ow_ ? 1 : oh_, len = wc_ == ow_ ? P : ow_;
        parallel_for_threads(plan.chunks, plan.threads, [&](std::int64_t k, int t) {
            const Eigen::Index n0 = k * plan.chunk, cn = std::min(plan.chunk, N - n0), NP = cn * Pc;
            Workspace& w = work_[size_t(t)];
            MatMap<T> col(w.col.data(), ckk_, NP), ym(w.ym.data(), filters_, NP);
            for (Eigen::Index i = 0; i < cn; ++i) im2col(x, n0 + i, col.data() + i * Pc, NP, w);
            ym.noalias() = Wm * col;
            // y[n0 + i, f, oh, ow] = act(ym[f, i*Pc + oh*wc + ow] + b[f])
            for (Eigen::Index i = 0; i < cn; ++i)
                for (Eigen::Index f = 0; f < filters_; ++f) {
                    const T bf = b[f];
                    for (Eigen::Index r = 0; r < runs; ++r) {
                        const T* src = ym.data() + f * NP + i * Pc + r * wc_;
                        T* dst = y.data() + ((n0 + i) * filters_ + f) * P + r * ow_;
                        if (act_ == Activation::relu)
                            for (Eigen::Index p = 0; p < len; ++p) dst[p] = std::max(src[p] + bf, T(0));
                        else
                            for (Eigen::Index p = 0; p < len; ++p) dst[p] = src[p] + bf;
                    }
                }
        });
    }

    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        const Eigen::Index N = dy.dimension(0), P = oh_ * ow_, Pc = oh_ * wc_;
        if (dx) ensure(*dx, N, this->in_);
        if (N == 0) return;
        const Plan plan = make_plan(N);
        const GemmThreads gemm_threads(plan.chunk_macs);
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk_);
        for (int t = 0; t < plan.threads; ++t) {
            work_[size_t(t)].dW.setZero();
            work_[size_t(t)].db.setZero();
        }
        const Eigen::Index runs = wc_ == ow_ ? 1 : oh_, len = wc_ == ow_ ? P : ow_;
        parallel_for_threads(plan.chunks, plan.threads, [&](std::int64_t k, int t) {
            const Eigen::Index n0 = k * plan.chunk, cn = std::min(plan.chunk, N - n0), NP = cn * Pc;
            Workspace& w = work_[size_t(t)];
            MatMap<T> col(w.col.data(), ckk_, NP), dym(w.ym.data(), filters_, NP);
            // dym[f, i*Pc + oh*wc + ow] = dy[n0 + i, f, oh, ow] * act'(y[n0 + i, f, oh, ow]),
            // and 0 in the wide layout's extra columns (ow >= OW): they then add nothing
            // to dW or db, and their dcol is exactly 0.
            for (Eigen::Index i = 0; i < cn; ++i)
                for (Eigen::Index f = 0; f < filters_; ++f)
                    for (Eigen::Index r = 0; r < runs; ++r) {
                        const Eigen::Index at = ((n0 + i) * filters_ + f) * P + r * ow_;
                        const T *g = dy.data() + at, *o = y.data() + at;
                        T* dst = dym.data() + f * NP + i * Pc + r * wc_;
                        if (act_ == Activation::relu)
                            for (Eigen::Index p = 0; p < len; ++p) dst[p] = o[p] > T(0) ? g[p] : T(0);
                        else
                            std::copy(g, g + len, dst);
                        if (wc_ != ow_) std::fill(dst + ow_, dst + wc_, T(0));
                    }
            for (Eigen::Index i = 0; i < cn; ++i) im2col(x, n0 + i, col.data() + i * Pc, NP, w);
            if (filters_ * ckk_ <= kDirectDW) {
                // Tiny layers (keck: 4 filters x 4 taps): dW is a handful of dot
                // products over thousands of columns. Eigen's GEMM packs both
                // operands into panels built for wide M and N and spent ~30x the
                // forward product on this shape; the dots stream the rows once each.
                for (Eigen::Index f = 0; f < filters_; ++f)
                    for (Eigen::Index r = 0; r < ckk_; ++r) w.dW(f, r) += dym.row(f).dot(col.row(r));
            } else {
                w.dW.noalias() += dym * col.transpose();
            }
            if (use_bias_) w.db += dym.rowwise().sum();
            if (!dx) return;
            col.noalias() = Wm.transpose() * dym;  // dcol, over the dead col
            for (Eigen::Index i = 0; i < cn; ++i) col2im(col.data() + i * Pc, NP, *dx, n0 + i, w);
        });
        // The partial sums, in thread order (the same order every run).
        MatMap<T> dW(kernel_.grad.data(), filters_, ckk_);
        VecMap<T> db(bias_.grad.data(), filters_);
        for (int t = 0; t < plan.threads; ++t) {
            dW += work_[size_t(t)].dW;
            db += work_[size_t(t)].db;
        }
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        if (!in.is_image())
            this->shape_error("needs an image input (C,H,W), got " + in.str());
        c_ = in.c();
        const Eigen::Index H = in.h(), W = in.w();
        if (padding_ == Padding::valid) {
            if (H < kh_ || W < kw_)
                this->shape_error("kernel " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                                  " is larger than the input " + in.str());
            oh_ = (H - kh_) / stride_ + 1;
            ow_ = (W - kw_) / stride_ + 1;
            pt_ = pl_ = 0;
        } else if (padding_ == Padding::explicit_pad) {  // PyTorch's rule, pad on every side
            if (H + 2 * pad_ < kh_ || W + 2 * pad_ < kw_)
                this->shape_error("kernel " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                                  " is larger than the input " + in.str() + " padded by " +
                                  std::to_string(pad_));
            oh_ = (H + 2 * pad_ - kh_) / stride_ + 1;
            ow_ = (W + 2 * pad_ - kw_) / stride_ + 1;
            pt_ = pl_ = pad_;  // the bottom/right padding is implied by OH/OW
        } else {  // TensorFlow's rule: out = ceil(in / stride), extra padding at the end
            oh_ = (H + stride_ - 1) / stride_;
            ow_ = (W + stride_ - 1) / stride_;
            pt_ = int(std::max<Eigen::Index>((oh_ - 1) * stride_ + kh_ - H, 0) / 2);
            pl_ = int(std::max<Eigen::Index>((ow_ - 1) * stride_ + kw_ - W, 0) / 2);
        }
        ckk_ = c_ * kh_ * kw_;
        choose_layout();
        kernel_.resize(filters_, c_, kh_, kw_);
        bias_.resize(filters_, 1, 1, 1);  // stays zero, and not a parameter, without use_bias
        initialize(kernel_.value, init_, double(ckk_), double(filters_) * kh_ * kw_, rng);
        return Shape::image(filters_, oh_, ow_);
    }

private:
    struct Workspace {                       // one per thread
        Eigen::Matrix<T, Eigen::Dynamic, 1> col;  // (CKK, chunk*P), dcol in backward
        Eigen::Matrix<T, Eigen::Dynamic, 1> ym;   // (F, chunk*P), dym in backward
        MatrixRM<T> dW;                           // (F, CKK) partial kernel gradient
        Eigen::Matrix<T, Eigen::Dynamic, 1> db;   // (F) partial bias gradient
        Eigen::Matrix<T, Eigen::Dynamic, 1> xp;   // (C, Hp, Wp) + slack: padded image (wide)
        Eigen::Matrix<T, Eigen::Dynamic, 1> dxp;  // (C, Hp, Wp) + slack: its gradient (wide)
    };
    std::vector<Workspace> work_;

    void validate() {
        if (filters_ < 1 || kh_ < 1 || kw_ < 1 || stride_ < 1)
            throw std::invalid_argument("Conv2D: filters, kernel and stride must be >= 1");
        // pad < kernel: every output pixel sees at least one input pixel (PyTorch even
        // asks for pad <= kernel/2). This also bounds the output of a loaded file.
        if (pad_ < 0 || pad_ >= std::min(kh_, kw_))
            throw std::invalid_argument("Conv2D: pad " + std::to_string(pad_) +
                                        " must be in 0..min(kernel)-1 = " +
                                        std::to_string(std::min(kh_, kw_) - 1));
        kernel_.name = "kernel";
        bias_.name = "bias";
    }

    // Images per chunk: as many as keep col (CKK x cn*P) and ym (F x cn*P) within
    // kChunkElems elements (at least one), then evened out so the chunks split into
    // whole rounds of threads (6 chunks of 17 images on 2 threads, not 5 of 20).
    static constexpr Eigen::Index kChunkElems = Eigen::Index(1) << 17;  // 512 KB of float
    // Up to this many kernel weights (F * CKK), dW is computed as dot products.
    static constexpr Eigen::Index kDirectDW = 64;
    struct Plan {
        Eigen::Index chunk, chunks;  // images per chunk, number of chunks
        int threads;                 // threads running the chunks
        std::int64_t chunk_macs;     // multiply-adds of one chunk's GEMM
    };
    Plan make_plan(Eigen::Index N) {
        const Eigen::Index Pc = oh_ * wc_;  // GEMM columns per image
        const Eigen::Index fit = std::max<Eigen::Index>(1, kChunkElems / ((ckk_ + filters_) * Pc));
        const std::int64_t macs = std::int64_t(N) * filters_ * ckk_ * Pc;
        const int threads = threads_for(N, macs);
        Eigen::Index chunks = (N + fit - 1) / fit;
        chunks = (chunks + threads - 1) / threads * threads;  // whole rounds of threads
        Plan plan;
        plan.chunk = std::max<Eigen::Index>(1, (N + chunks - 1) / chunks);
        plan.chunks = (N + plan.chunk - 1) / plan.chunk;
        plan.threads = int(std::min<Eigen::Index>(threads, plan.chunks));
        plan.chunk_macs = std::int64_t(plan.chunk) * filters_ * ckk_ * Pc;
        if (work_.size() < size_t(plan.threads)) work_.resize(size_t(plan.threads));
        // Padded image (C, Hp, Wp) plus KW - 1 values of slack: the wide layout's last
        // row of taps reads that far past the last plane (into the extra columns only).
        const Eigen::Index padded = wide() ? c_ * hp_ * wp_ + kw_ - 1 : 0;
        for (int t = 0; t < plan.threads; ++t) {  // no-ops once the sizes are settled
            Workspace& w = work_[size_t(t)];
            w.col.resize(ckk_ * plan.chunk * Pc);
            w.ym.resize(filters_ * plan.chunk * Pc);
            w.dW.resize(filters_, ckk_);
            w.db.resize(filters_);
            if (w.xp.size() != padded) {
                w.xp.setZero(padded);  // the border and slack stay zero: only the interior is written
                w.dxp.resize(padded);
            }
        }
        return plan;
    }

    // The output columns [ow0, ow1) whose tap kj reads inside the input row
    // (0 <= ow*stride + kj - pl < W); the others read padding.
    std::pair<Eigen::Index, Eigen::Index> inside(int kj) const {
        const Eigen::Index W = this->in_.w(), off = kj - pl_;
        const Eigen::Index ow0 = std::min<Eigen::Index>(ow_, off < 0 ? (-off + stride_ - 1) / stride_ : 0);
        const Eigen::Index ow1 = std::max<Eigen::Index>(ow0, std::min<Eigen::Index>(ow_, (W - off + stride_ - 1) / stride_));
        return {ow0, ow1};
    }

    bool wide() const { return wide_; }
    void choose_layout() {
        hp_ = oh_ + kh_ - 1;
        wp_ = ow_ + kw_ - 1;
        bool w = false;
        if (im2col_ == Im2col::wide) w = true;
        else if (im2col_ == Im2col::automatic && stride_ == 1)
            // Measured in training (docs/performance.md): wide wins for padded layers
            // (lenet5's first, the `best` model's) and short output rows (lenet5's second,
            // 10 pixels); rows wins for keck (27 pixels, 4 taps, no padding) and ties for
            // kerascnn (26 and 24 pixels), where the extra columns cost as much as they save.
            w = pt_ > 0 || pl_ > 0 || ow_ <= 16;
        wide_ = w;
        wc_ = wide_ ? wp_ : ow_;
        work_.clear();  // resized for the new layout at the next pass
    }

    void im2col(const Tensor<T>& x, Eigen::Index n, T* col, Eigen::Index stride, Workspace& w) const {
        if (wide()) im2col_wide(x, n, col, stride, w.xp.data());
        else im2col_rows(x, n, col, stride);
    }
    void col2im(const T* dcol, Eigen::Index stride, Tensor<T>& dx, Eigen::Index n, Workspace& w) const {
        if (wide()) col2im_wide(dcol, stride, dx, n, w.dxp.data());
        else col2im_rows(dcol, stride, dx, n);
    }

    // Rows layout. col[r, p] = x[n, c, oh*s + ki - pt, ow*s + kj - pl] (0 outside),
    // r = (c, ki, kj), p = oh*OW + ow; `col` points at image n's first column, rows are
    // `stride` apart. One copy per (tap, output row): OH*CKK short copies per image.
    void im2col_rows(const Tensor<T>& x, Eigen::Index n, T* col, Eigen::Index stride) const {
        const Eigen::Index H = this->in_.h(), W = this->in_.w();
        const T* xn = x.data() + n * c_ * H * W;
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const Eigen::Index r = (c * kh_ + ki) * kw_ + kj;
                    T* dst = col + r * stride;
                    const T* plane = xn + c * H * W;
                    const auto [ow0, ow1] = inside(kj);
                    for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                        const Eigen::Index ih = oh * stride_ + ki - pt_;
                        T* d = dst + oh * ow_;
                        if (ih < 0 || ih >= H) {
                            std::fill(d, d + ow_, T(0));
                            continue;
                        }
                        const T* row = plane + ih * W + kj - pl_;  // row[ow * stride_]
                        // Most rows need no padding: skip the (library call) fills then.
                        if (ow0 > 0) std::fill(d, d + ow0, T(0));
                        if (stride_ == 1) std::copy(row + ow0, row + ow1, d + ow0);
                        else
                            for (Eigen::Index ow = ow0; ow < ow1; ++ow) d[ow] = row[ow * stride_];
                        if (ow1 < ow_) std::fill(d + ow1, d + ow_, T(0));
                    }
                }
    }

    // dx[n, c, ih, iw] = sum of dcol over the taps that read that pixel; `dcol` points
    // at image n's first column, rows are `stride` apart.
    void col2im_rows(const T* dcol, Eigen::Index stride, Tensor<T>& dx, Eigen::Index n) const {
        const Eigen::Index H = this->in_.h(), W = this->in_.w();
        T* dxn = dx.data() + n * c_ * H * W;
        std::fill(dxn, dxn + c_ * H * W, T(0));
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const Eigen::Index r = (c * kh_ + ki) * kw_ + kj;
                    const T* src = dcol + r * stride;
                    T* plane = dxn + c * H * W;
                    const auto [ow0, ow1] = inside(kj);
                    for (Eigen::Index oh = 0; oh < oh_; ++oh) {
                        const Eigen::Index ih = oh * stride_ + ki - pt_;
                        if (ih < 0 || ih >= H) continue;
                        T* row = plane + ih * W + kj - pl_;  // row[ow * stride_]
                        const T* s = src + oh * ow_;
                        if (stride_ == 1)  // a contiguous loop GCC vectorises (the strided one not)
                            for (Eigen::Index ow = ow0; ow < ow1; ++ow) row[ow] += s[ow];
                        else
                            for (Eigen::Index ow = ow0; ow < ow1; ++ow) row[ow * stride_] += s[ow];
                    }
                }
    }

    // Wide layout (stride 1). The image is first copied into xp, zero-padded to
    // (C, Hp, Wp) with Hp = OH + KH - 1, Wp = OW + KW - 1. Column j = oh*Wp + ow of an
    // image then reads xp[c, oh + ki, ow + kj] = xp_c[ki*Wp + kj + j] for every tap: row
    // r = (c, ki, kj) of col is ONE contiguous copy of OH*Wp values. The price: the
    // columns ow = OW..Wp-1 are computed by the GEMM and thrown away (Wp/OW more work).
    void im2col_wide(const Tensor<T>& x, Eigen::Index n, T* col, Eigen::Index stride, T* xp) const {
        const Eigen::Index H = this->in_.h(), W = this->in_.w(), Pc = oh_ * wp_;
        const T* xn = x.data() + n * c_ * H * W;
        for (Eigen::Index c = 0; c < c_; ++c)  // interior rows; the zero border is never written
            for (Eigen::Index h = 0; h < H; ++h)
                std::copy(xn + (c * H + h) * W, xn + (c * H + h + 1) * W, xp + (c * hp_ + h + pt_) * wp_ + pl_);
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const T* from = xp + (c * hp_ + ki) * wp_ + kj;
                    std::copy(from, from + Pc, col + ((c * kh_ + ki) * kw_ + kj) * stride);
                }
    }

    // The reverse: every dcol row is added, as one contiguous run, into the padded
    // gradient dxp, whose interior is then dx[n]. (The extra columns' dcol is 0.)
    void col2im_wide(const T* dcol, Eigen::Index stride, Tensor<T>& dx, Eigen::Index n, T* dxp) const {
        const Eigen::Index H = this->in_.h(), W = this->in_.w(), Pc = oh_ * wp_;
        std::fill(dxp, dxp + c_ * hp_ * wp_ + kw_ - 1, T(0));
        for (Eigen::Index c = 0; c < c_; ++c)
            for (int ki = 0; ki < kh_; ++ki)
                for (int kj = 0; kj < kw_; ++kj) {
                    const T* s = dcol + ((c * kh_ + ki) * kw_ + kj) * stride;
                    T* d = dxp + (c * hp_ + ki) * wp_ + kj;
                    for (Eigen::Index j = 0; j < Pc; ++j) d[j] += s[j];
                }
        T* dxn = dx.data() + n * c_ * H * W;
        for (Eigen::Index c = 0; c < c_; ++c)
            for (Eigen::Index h = 0; h < H; ++h) {
                const T* from = dxp + (c * hp_ + h + pt_) * wp_ + pl_;
                std::copy(from, from + W, dxn + (c * H + h) * W);
            }
    }

    int filters_, kh_, kw_, stride_, pad_;  // pad_: pixels each side, explicit_pad only
    Padding padding_;
    Activation act_;
    Init init_;
    bool use_bias_;
    Eigen::Index c_ = 0, oh_ = 0, ow_ = 0, ckk_ = 0;
    int pt_ = 0, pl_ = 0;
    Im2col im2col_ = Im2col::automatic;  // as asked; wc_ says which layout was chosen
    Eigen::Index hp_ = 0, wp_ = 0;       // padded input (wide layout): OH + KH - 1, OW + KW - 1
    Eigen::Index wc_ = 0;                // GEMM columns per output row: OW (rows) or Wp (wide)
    bool wide_ = false;
    Param<T> kernel_, bias_;  // kernel: (F, C, KH, KW), bias: (F, 1, 1, 1) (zero if !use_bias_)
};

}  // namespace kitnn
