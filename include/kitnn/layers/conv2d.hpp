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
// Except, for the small wide layers of MNIST networks (im2col.hpp reads a tap's row of
// col in place, as a run of the padded image): forward, layers of at most kTapFilters
// filters and kTapTaps taps compute ym tap by tap, with no col and no GEMM
// (conv_taps); backward, layers of at most kTapDotFilters filters (lenet5's first) take
// dW as dot products over the padded image (add_kernel_grad). For these small products
// Eigen's packing and the im2col copies cost more than the multiply-adds.
// Workspaces are members, resized only when the batch size or thread count changes.
// Two more paths, for the ImageNet-sized networks (never taken in MNIST training), are
// described with their code below: strips of output rows for outputs over 32x32 pixels,
// and one image split across the threads by channels and filters (batch 1; backward
// for kernels of >= kBigKernel weights). Their products run on kitnn's own GEMM
// (core/gemm.hpp) when built with AVX-512: up to a quarter faster than Eigen's on this
// project's Zen 4 (docs/performance.md). The chunk path keeps Eigen's product for layers
// below ImageNet size (own_chunk_gemm): MNIST training goes through it, and its models'
// documented accuracies are those of Eigen's rounding. And in inference only, large 3x3
// stride-1 layers (128 channels and filters and up) take Winograd's F(2x2, 3x3) instead
// (layers/winograd.hpp, forward_winograd), and large 1xK and Kx1 ones (K = 3, 5, 7) F(m, K)
// along the kernel (layers/winograd_1d.hpp, forward_winograd_1d). Every forward path ends
// in one Epilogue (bias and activation), which forward_folded replaces by a following
// BatchNorm's scale and shift and a ReLU (layers/fusion.hpp).
//
// Layouts of col (Im2col, chosen per layer when it is built; both tested to agree):
// `rows` (P = OH*OW columns per image) and `wide` (stride 1: Wp = OW + KW - 1 columns
// per output row, one contiguous copy per tap), described with the code in
// layers/im2col.hpp. `automatic` takes wide for stride 1 when the layer pads or its
// output rows are short (<= 16): lenet5 trained 8-12 % faster with it; keck was
// slower; kernels one row high (1xK) above MNIST size keep rows (see choose_layout).
//
// Padding: `valid` (none), `same` (TensorFlow: out = ceil(in / stride), the odd
// pixel at the bottom/right) or `explicit_pad` (PyTorch's `padding=p`: p zero pixels
// on every side, out = (in + 2p - k) / stride + 1; torchvision's AlexNet needs it for
// its 11x11 stride-4 pad-2 first layer, which is neither valid nor same). All three
// only set the padding before (pt, pl) and OH/OW (layers/padding.hpp): im2col and
// col2im are the same code for each.
// use_bias = false (convolutions followed by BatchNorm, whose beta is the bias)
// drops `bias` from params(), so the model file and parameter counts do not have
// it; the layer keeps a zero bias internally so the forward pass is unchanged.
#pragma once

#include "kitnn/core/init.hpp"
#include "kitnn/core/gemm.hpp"
#include "kitnn/core/long_dots.hpp"
#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/im2col.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/padding.hpp"
#include "kitnn/layers/registry.hpp"
#include "kitnn/layers/winograd.hpp"
#include "kitnn/layers/winograd_1d.hpp"

#include <algorithm>
#include <array>
#include <memory>
#include <vector>

namespace kitnn {

// How Conv2D lays out its im2col matrix (layers/im2col.hpp). `automatic` picks per
// layer at build time; `rows` and `wide` force one (wide needs stride 1). Both give the
// same results up to float rounding; tests check both.
enum class Im2col { automatic, rows, wide };

// How Conv2D computes its inference forward pass: `automatic` (Winograd's F(2x2, 3x3) for
// large 3x3 stride-1 layers, layers/winograd.hpp, and F(m, K) for large 1xK and Kx1 ones,
// layers/winograd_1d.hpp; im2col + GEMM otherwise), or one of the two forced (winograd
// needs a layer that admits it: winograd_possible()). Training always takes the GEMM.
enum class ConvAlgorithm { automatic, gemm, winograd };

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

    static constexpr const char* kType = "Conv2D";
    std::string type() const override { return kType; }
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
    // The inverse of config(). Files written before "pad" and "use_bias" lack them.
    static std::unique_ptr<Conv2D> from_config(const Config& c) {
        const std::array<int, 2> k{c.int_value("kernel_h"), c.int_value("kernel_w")};
        const Activation act = activation_from_string(c.str("activation"));
        const Padding padding = padding_from_string(c.str("padding"));
        const Init init = init_from_string(c.str("init"));
        const bool bias = c.flag("use_bias", true);
        if (padding == Padding::explicit_pad)
            return std::make_unique<Conv2D>(c.int_value("filters"), k, act, c.int_value("pad"),
                                            c.int_value("stride"), init, bias);
        return std::make_unique<Conv2D>(c.int_value("filters"), k, act, padding, c.int_value("stride"),
                                        init, bias);
    }
    // kernel F*C*KH*KW (+ F bias); workspace: im2col of one image in the wider layout.
    LayerFootprint footprint(const Shape& in) const override {
        const Im2colGeometry g = geometry(in);
        using I = __int128;  // factors of up to 2^26: no overflow (a loaded C*KH*KW may pass 2^63)
        const I cap = I(1) << 62, ckk = I(g.c) * kh_ * kw_;
        const I weights = I(filters_) * (ckk + (use_bias_ ? 1 : 0));
        const I work = ckk * I(g.oh) * I(g.wp());
        return {std::int64_t(std::min(weights, cap)), std::int64_t(std::min(work, cap))};
    }
    std::vector<Param<T>*> params() override {
        if (use_bias_) return {&kernel_, &bias_};
        return {&kernel_};
    }
    std::int64_t macs() const override { return std::int64_t(filters_) * g_.ckk() * g_.oh * g_.ow; }

    // Chooses the im2col layout (a speed knob, not part of the model file).
    void set_im2col(Im2col m) {
        if (m == Im2col::wide && stride_ != 1)
            throw std::invalid_argument("Conv2D: the wide im2col layout needs stride 1, this layer has " +
                                        std::to_string(stride_));
        im2col_ = m;
        if (g_.c > 0) choose_layout();
    }
    // Chooses the inference forward's algorithm (a speed knob, not part of the model file).
    void set_algorithm(ConvAlgorithm a) {
        if (a == ConvAlgorithm::winograd && !winograd_possible())
            throw std::invalid_argument(
                "Conv2D: Winograd's algorithm needs stride 1 and a 3x3 kernel, or a 1xK or Kx1 one with K = 3, 5 "
                "or 7; this layer has " +
                std::to_string(kh_) + "x" + std::to_string(kw_) + " stride " + std::to_string(stride_));
        algorithm_ = a;
    }
    ConvAlgorithm algorithm() const { return algorithm_; }
    // True when the layer admits a Winograd forward: F(2x2, 3x3) for a 3x3 kernel
    // (layers/winograd.hpp), F(m, K) along the kernel for a 1xK or Kx1 one
    // (layers/winograd_1d.hpp; such a kernel is never padded across: its explicit padding
    // is 0, "same" pads only along it).
    bool winograd_possible() const {
        if (stride_ != 1) return false;
        return (kh_ == 3 && kw_ == 3) || line_taps() > 0;
    }
    // True when a forward pass of `batch` images in inference mode (training = false)
    // takes Winograd's algorithm.
    bool winograd_forward(Eigen::Index batch, bool training = false) const {
        if (training || !winograd_possible() || algorithm_ == ConvAlgorithm::gemm) return false;
        if (algorithm_ == ConvAlgorithm::winograd) return true;
        if (line_taps() > 0) {  // F(m, K): its tiles are m outputs along the kernel
            const Eigen::Index m = winograd1d::outputs_per_tile(line_taps());
            const Eigen::Index tiles = batch * (kh_ == 1 ? g_.oh * ((g_.ow + m - 1) / m) : g_.ow * ((g_.oh + m - 1) / m));
            return g_.c >= kWinogradMinChannels && filters_ >= kWinogradMinChannels && tiles >= kWinogradMinTiles;
        }
        const Eigen::Index tiles = batch * ((g_.oh + 1) / 2) * ((g_.ow + 1) / 2);
        const bool deep = g_.c >= kWinogradMinChannels && filters_ >= kWinogradMinChannels;
        const bool large = g_.oh * g_.ow > kStripPixels && g_.c >= kWinogradMinChannelsLarge &&
                           filters_ >= kWinogradMinChannelsLarge;
        return (deep || large) && tiles >= kWinogradMinTiles;
    }
    // The layout in use once built: rows or wide.
    Im2col im2col_layout() const { return g_.wide ? Im2col::wide : Im2col::rows; }
    // True when the layer works on strips of output rows (large images, see the header).
    bool strips() const { return strips_; }
    // True when backward of one image splits it across the current threads, each step
    // on its own channels or filters (backward_one_image: ImageNet-sized kernels outside
    // strips, float with AVX-512).
    bool splits_one_image_backward() const { return !strips_ && one_image_backward_threads() > 1; }

    int stride() const { return stride_; }
    int pad_top() const { return g_.pt; }
    int pad_left() const { return g_.pl; }
    bool use_bias() const { return use_bias_; }
    Activation activation() const { return act_; }
    Param<T>& kernel() { return kernel_; }
    Param<T>& bias() { return bias_; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool training) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), P = g_.oh * g_.ow, Pc = g_.columns(), wc = g_.wc();
        ensure(y, N, this->out_);
        if (N == 0) return;  // an empty batch: nothing to plan (and no chunk to divide by)
        if (winograd_forward(N, training)) return line_taps() > 0 ? forward_winograd_1d(x, y) : forward_winograd(x, y);
        if (strips_) return forward_strips(x, y);
        if (N == 1)  // one image: its channels and filters split across the threads
            if (const int threads = one_image_threads(); threads > 1) return forward_one_image(x, y, threads);
        const Plan plan = make_plan(N);
        const GemmThreads gemm_threads(plan.chunk_macs);
        const bool own = own_chunk_gemm(plan);
        const Eigen::Index ckk = g_.ckk(), image = g_.c * g_.h * g_.w;
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk);
        const Epilogue ep = epilogue();
        // Output rows: one run of P values when the columns have no gaps (rows layout),
        // else OH runs of OW values, wc apart in ym (wide layout).
        const Eigen::Index runs = wc == g_.ow ? 1 : g_.oh, len = wc == g_.ow ? P : g_.ow;
        parallel_for_threads(plan.chunks, plan.threads, [&](std::int64_t k, int t) {
            const Eigen::Index n0 = k * plan.chunk, cn = std::min(plan.chunk, N - n0), NP = cn * Pc;
            Workspace& w = work_[size_t(t)];
            MatMap<T> ym(w.ym.data(), filters_, NP);
            // A 1x1 convolution of one image needs no im2col: col would be a copy of x_n.
            const bool direct = cn == 1 && pointwise();
            if (!direct && tap_forward()) {
                // Small layers: ym straight from the padded images, no col (conv_taps).
                for (Eigen::Index i = 0; i < cn; ++i) {
                    g_.pad_into(x.data() + (n0 + i) * image, w.xp.data());
                    g_.conv_taps(w.xp.data(), Wm.data(), filters_, ym.data() + i * Pc, NP);
                }
            } else {
                if (!direct)
                    for (Eigen::Index i = 0; i < cn; ++i)
                        g_.im2col(x.data() + (n0 + i) * image, w.col.data() + i * Pc, NP, w.xp.data());
                chunk_product(own, direct ? x.data() + n0 * image : w.col.data(), NP, ym.data());
            }
            // y[n0 + i, f, oh, ow] = act(ym[f, i*Pc + oh*wc + ow] + b[f])  (Epilogue)
            for (Eigen::Index i = 0; i < cn; ++i)
                for (Eigen::Index f = 0; f < filters_; ++f)
                    for (Eigen::Index r = 0; r < runs; ++r)
                        ep.apply(ym.data() + f * NP + i * Pc + r * wc,
                                 y.data() + ((n0 + i) * filters_ + f) * P + r * g_.ow, len, f);
        });
    }

    // Inference with the next layers folded into the output (layers/fusion.hpp, for a
    // BatchNorm and a ReLU after this layer): y = act(scale[f] * (W * x)[f] + shift[f]),
    // act = ReLU when relu; scale may be nullptr (no scaling). This layer's own bias and
    // activation are not applied: the caller folds them into shift (and may only fold a
    // ReLU after a linear layer). Every path of forward(x, y, false) takes it; y is what
    // the last folded layer would have output. Not for training: nothing is kept for
    // backward.
    void forward_folded(const Tensor<T>& x, Tensor<T>& y, const T* scale, const T* shift, bool relu) {
        struct Reset {
            const Epilogue*& p;
            ~Reset() { p = nullptr; }
        };
        const Epilogue folded{shift, scale, relu};
        folded_ = &folded;
        const Reset reset{folded_};
        forward(x, y, /*training=*/false);
    }

    void backward(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        const Eigen::Index N = dy.dimension(0), P = g_.oh * g_.ow, Pc = g_.columns();
        if (dx) ensure(*dx, N, this->in_);
        if (N == 0) return;
        if (strips_) return backward_strips(x, y, dy, dx);
        if (N == 1)
            if (const int threads = one_image_backward_threads(); threads > 1)
                return backward_one_image(x, y, dy, dx, threads);
        const Plan plan = make_plan(N, /*backward=*/true);
        const GemmThreads gemm_threads(plan.chunk_macs);
        const bool own = own_chunk_gemm(plan);
        const Eigen::Index ckk = g_.ckk(), image = g_.c * g_.h * g_.w;
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk);
        for (int t = 0; t < plan.threads; ++t) {
            work_[size_t(t)].dW.setZero();
            work_[size_t(t)].db.setZero();
        }
        parallel_for_threads(plan.chunks, plan.threads, [&](std::int64_t k, int t) {
            const Eigen::Index n0 = k * plan.chunk, cn = std::min(plan.chunk, N - n0), NP = cn * Pc;
            Workspace& w = work_[size_t(t)];
            MatMap<T> col(w.col.data(), ckk, NP), dym(w.ym.data(), filters_, NP);
            // dym[f, i*Pc + oh*wc + ow] = dy[n0 + i, f, oh, ow] * act'(y[n0 + i, f, oh, ow])
            for (Eigen::Index i = 0; i < cn; ++i)
                mask_dy(dy.data() + (n0 + i) * filters_ * P, y.data() + (n0 + i) * filters_ * P,
                        dym.data() + i * Pc, NP, 0, filters_);
            const bool direct = cn == 1 && pointwise();  // 1x1: col is x_n, dcol is dx_n
            if (!direct && tap_products()) {
                // Few filters: dW straight from the padded images, no col (im2col.hpp).
                for (Eigen::Index i = 0; i < cn; ++i) {
                    g_.pad_into(x.data() + (n0 + i) * image, w.xp.data());
                    g_.add_kernel_grad(dym.data() + i * Pc, NP, filters_, w.xp.data(), w.dW.data());
                }
            } else {
                if (!direct)
                    for (Eigen::Index i = 0; i < cn; ++i)
                        g_.im2col(x.data() + (n0 + i) * image, col.data() + i * Pc, NP, w.xp.data());
                const ConstMatMap<T> cin(direct ? x.data() + n0 * image : w.col.data(), ckk, NP);
                if (filters_ * ckk <= kDirectDW) {
                    // Tiny layers (keck: 4 filters x 4 taps): dW is a handful of dot
                    // products over thousands of columns. Eigen's GEMM packs both
                    // operands into panels built for wide M and N and spent ~30x the
                    // forward product on this shape; the dots stream the rows once each.
                    for (Eigen::Index f = 0; f < filters_; ++f)
                        for (Eigen::Index r = 0; r < ckk; ++r) w.dW(f, r) += dym.row(f).dot(cin.row(r));
                } else if (own && ckk >= kOwnGemmMinTaps) {
                    own_add_dW(cin.data(), NP, dym.data(), NP, w.dW.data());
                } else {
                    w.dW.noalias() += dym * cin.transpose();
                }
            }
            if (use_bias_) w.db += dym.rowwise().sum();
            if (!dx) return;
            // dcol (CKK, NP) = Wm^T dym, over the dead col; for 1x1 of one image it is dx_n itself.
            T* dcol = direct ? dx->data() + n0 * image : col.data();
            if (own) {
                own_dcol(dym.data(), NP, dcol, NP);
            } else {
                MatMap<T>(dcol, ckk, NP).noalias() = Wm.transpose() * dym;
            }
            if (direct) return;
            for (Eigen::Index i = 0; i < cn; ++i)
                g_.col2im(col.data() + i * Pc, NP, dx->data() + (n0 + i) * image, w.dxp.data());
        });
        // The partial sums, in thread order (the same order every run).
        MatMap<T> dW(kernel_.grad.data(), filters_, ckk);
        VecMap<T> db(bias_.grad.data(), filters_);
        for (int t = 0; t < plan.threads; ++t) {
            dW += work_[size_t(t)].dW;
            db += work_[size_t(t)].db;
        }
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        g_ = geometry(in);
        choose_layout();
        kernel_.resize(filters_, g_.c, kh_, kw_);
        bias_.resize(filters_, 1, 1, 1);  // stays zero, and not a parameter, without use_bias
        initialize(kernel_.value, init_, double(g_.ckk()), double(filters_) * kh_ * kw_, rng);
        return Shape::image(filters_, g_.oh, g_.ow);
    }

private:
    struct Workspace {                            // one per thread
        Eigen::Matrix<T, Eigen::Dynamic, 1> col;  // (CKK, chunk*Pc), dcol in backward
        Eigen::Matrix<T, Eigen::Dynamic, 1> ym;   // (F, chunk*Pc), dym in backward
        MatrixRM<T> dW;                           // (F, CKK) partial kernel gradient
        Eigen::Matrix<T, Eigen::Dynamic, 1> db;   // (F) partial bias gradient
        Eigen::Matrix<T, Eigen::Dynamic, 1> xp;   // (C, Hp, Wp) + slack: padded image (wide)
        Eigen::Matrix<T, Eigen::Dynamic, 1> dxp;  // (C, Hp, Wp) + slack: its gradient (wide)
        gemm::LongDots dots;                      // (F, CKK) sums of the few-taps kernel gradient
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

    // Output size and padding for input `in` (layers/padding.hpp), layout not chosen yet.
    // Throws ShapeError when the kernel does not fit (valid or explicit padding).
    Im2colGeometry geometry(const Shape& in) const {
        if (!in.is_image()) this->shape_error("needs an image input (C,H,W), got " + in.str());
        const WindowAxis r = window_axis(in.h(), kh_, stride_, padding_, pad_);
        const WindowAxis c = window_axis(in.w(), kw_, stride_, padding_, pad_);
        if (r.out < 1 || c.out < 1)
            this->shape_error("kernel " + std::to_string(kh_) + "x" + std::to_string(kw_) +
                              " is larger than its input " + in.str() +
                              (padding_ == Padding::explicit_pad ? " padded by " + std::to_string(pad_) : ""));
        Im2colGeometry g;
        g.c = in.c();
        g.h = in.h();
        g.w = in.w();
        g.kh = kh_;
        g.kw = kw_;
        g.stride = stride_;
        g.pt = r.before;
        g.pl = c.before;
        g.oh = r.out;
        g.ow = c.out;
        return g;
    }

    // Images per chunk: as many as keep col (CKK x cn*Pc) and ym (F x cn*Pc) within
    // kChunkElems elements (at least one), then evened out so the chunks split into
    // whole rounds of threads (6 chunks of 17 images on 2 threads, not 5 of 20).
    // In backward, layers with large kernels (>= kBigKernel weights: ImageNet-sized, no
    // MNIST zoo layer has more than 28 K: best's 64 x 48 x 3 x 3) take at least kChunkMinCols GEMM columns: on
    // VGG-16's 14x14 layers (196 columns, 4,608 taps, 512 filters) one image made
    // dW += dym col^T a product over only 196 columns that reads and writes all 9 MB of
    // dW (backward of those layers 6-12 % faster with 3 images, alternated runs at batch
    // 8). Not in forward, where alternated runs showed no gain beyond the noise (VGG-16's
    // 14x14 layers ~3 %, Inception-v4 at batch 8 +-10 %) and col would leave L2.
    static constexpr Eigen::Index kChunkElems = Eigen::Index(1) << 17;  // 512 KB of float
    static constexpr Eigen::Index kBigKernel = Eigen::Index(1) << 16;
    static constexpr Eigen::Index kChunkMinCols = 512;
    // Up to this many kernel weights (F * CKK), dW is computed as dot products.
    static constexpr Eigen::Index kDirectDW = 64;
    // Wide layers with up to this many filters compute dW from the padded image
    // (Im2colGeometry::add_kernel_grad), without im2col in backward. Measured at batch
    // 100 on one thread (kitnn_bench_layers, 3 alternated runs each): lenet5's first
    // layer (6 filters, 896 columns per image) 1.58-1.64 ms -> 0.83-0.87 ms; its second
    // (16 filters, 140 columns) 2.02-2.10 ms -> 3.40-3.65 ms, where the GEMM wins.
    static constexpr Eigen::Index kTapDotFilters = 8;
    // Forward, wide layers with up to kTapFilters filters and kTapTaps taps (C*KH*KW)
    // compute ym tap by tap (Im2colGeometry::conv_taps) instead of im2col + GEMM: these
    // GEMMs are too small for Eigen's blocking. Same benchmark, 2-3 alternated runs:
    // lenet5's layers 0.49-0.54 ms -> 0.25 ms and 0.84-0.89 -> 0.50-0.53 ms, `best`'s
    // 3x3 layers -4 % and -14 %. The tap limit keeps a group's 8 rows of weights in L1
    // (8 x 512 floats, 16 KB); larger layers, and all of the ImageNet networks' wide
    // ones (192 filters and more), keep the GEMM.
    static constexpr Eigen::Index kTapFilters = 64;
    static constexpr Eigen::Index kTapTaps = 512;
    struct Plan {
        Eigen::Index chunk, chunks;  // images per chunk, number of chunks
        int threads;                 // threads running the chunks
        std::int64_t chunk_macs;     // multiply-adds of one chunk's GEMM
    };
    Plan make_plan(Eigen::Index N, bool backward = false) {
        const Eigen::Index Pc = g_.columns(), ckk = g_.ckk();  // GEMM columns per image
        const Eigen::Index min_images =
            backward && filters_ * ckk >= kBigKernel ? (kChunkMinCols + Pc - 1) / Pc : 1;
        const Eigen::Index fit = std::max({Eigen::Index(1), kChunkElems / ((ckk + filters_) * Pc), min_images});
        const std::int64_t macs = std::int64_t(N) * filters_ * ckk * Pc;
        const int threads = threads_for(N, macs);
        Eigen::Index chunks = (N + fit - 1) / fit;
        chunks = (chunks + threads - 1) / threads * threads;  // whole rounds of threads
        Plan plan;
        plan.chunk = std::max<Eigen::Index>(1, (N + chunks - 1) / chunks);
        plan.chunks = (N + plan.chunk - 1) / plan.chunk;
        plan.threads = int(std::min<Eigen::Index>(threads, plan.chunks));
        plan.chunk_macs = std::int64_t(plan.chunk) * filters_ * ckk * Pc;
        if (work_.size() < size_t(plan.threads)) work_.resize(size_t(plan.threads));
        const Eigen::Index padded = g_.padded_size();
        for (int t = 0; t < plan.threads; ++t) {  // no-ops once the sizes are settled
            Workspace& w = work_[size_t(t)];
            w.col.resize(ckk * plan.chunk * Pc);
            w.ym.resize(filters_ * plan.chunk * Pc);
            w.dW.resize(filters_, ckk);
            w.db.resize(filters_);
            if (w.xp.size() != padded) {
                w.xp.setZero(padded);  // the border and slack stay zero: only the interior is written
                w.dxp.resize(padded);
            }
        }
        return plan;
    }

    // The forward pass's last step on filter f's n values: y = act(z + bias[f]), or, folded
    // (forward_folded), y = act(scale[f] * z + shift[f]). src == dst is allowed.
    struct Epilogue {
        const T* shift;  // (F): the bias, or the folded shift
        const T* scale;  // (F) or nullptr: none
        bool relu;
        void apply(const T* src, T* dst, Eigen::Index n, Eigen::Index f) const {
            const T t = shift[f];
            if (scale) {
                const T a = scale[f];
                if (relu)
                    for (Eigen::Index p = 0; p < n; ++p) dst[p] = std::max(src[p] * a + t, T(0));
                else
                    for (Eigen::Index p = 0; p < n; ++p) dst[p] = src[p] * a + t;
            } else if (relu) {
                for (Eigen::Index p = 0; p < n; ++p) dst[p] = std::max(src[p] + t, T(0));
            } else {
                for (Eigen::Index p = 0; p < n; ++p) dst[p] = src[p] + t;
            }
        }
    };
    Epilogue epilogue() const {
        return folded_ ? *folded_ : Epilogue{bias_.value.data(), nullptr, act_ == Activation::relu};
    }

    // Whether the chunk path's products run on kitnn's GEMM (core/gemm.hpp) instead of
    // Eigen's: float with AVX-512, kernels of ImageNet size only (>= kBigKernel weights;
    // no MNIST zoo layer has a third of that, so their documented accuracies keep Eigen's
    // rounding), and only when each product runs on one thread anyway (chunks spread over
    // the threads, or inside a parallel region such as branches side by side): a lone
    // chunk's product would lose Eigen's threads. Inception-v4's 17x17 and 8x8 layers at
    // batch 8, VGG-16's 28x28 and 14x14 ones (docs/performance.md).
    bool own_chunk_gemm(const Plan& plan) const {
        if (!gemm::available<T>() || std::int64_t(filters_) * g_.ckk() < kBigKernel) return false;
        return plan.threads > 1 || max_threads() == 1 || in_parallel() || plan.chunk_macs < kMinParallelGemm;
    }
    // ym (F, NP) = Wm * col (CKK, NP), both row-major: on kitnn's GEMM when `own`
    // (column-major terms as in strips: M = NP pixels, N = F filters, K = CKK taps).
    void chunk_product(bool own, const T* col, Eigen::Index NP, T* ym) const {
        const Eigen::Index ckk = g_.ckk();
        if constexpr (gemm::available<T>())
            if (own) return gemm::multiply<T>(NP, filters_, ckk, col, NP, kernel_.value.data(), ckk, ym, NP);
        (void)own;
        MatMap<T>(ym, filters_, NP).noalias() =
            ConstMatMap<T>(kernel_.value.data(), filters_, ckk) * ConstMatMap<T>(col, ckk, NP);
    }

    // The two backward products on kitnn's GEMM (chunks and strips), in its column-major
    // terms; col and dcol are (CKK, S) row-major with row stride ld (S, or P when a 1x1
    // layer reads x and writes dx in place), dym is (F, S) and dW (F, CKK) row-major.
    //   dW^T (CKK, F) += col (CKK, S) * dym^T (S, F)      filters [f0, f1) of it
    void own_add_dW(const T* col, Eigen::Index ld, const T* dym, Eigen::Index S, T* dW, Eigen::Index f0 = 0,
                    Eigen::Index f1 = -1) const {
        if (f1 < 0) f1 = filters_;
        if constexpr (gemm::available<T>())
            gemm::multiply<T>(g_.ckk(), f1 - f0, S, col, ld, dym + f0 * S, S, dW + f0 * g_.ckk(), g_.ckk(),
                              gemm::Ops{true, false, true});
        (void)col, (void)ld, (void)dym, (void)S, (void)dW;
    }
    //   dcol^T (S, CKK) = dym^T (S, F) * Wm (F, CKK)      rows [r0, r1) of dcol
    void own_dcol(const T* dym, Eigen::Index S, T* dcol, Eigen::Index ld, Eigen::Index r0 = 0,
                  Eigen::Index r1 = -1) const {
        if (r1 < 0) r1 = g_.ckk();
        if constexpr (gemm::available<T>())
            gemm::multiply<T>(S, r1 - r0, filters_, dym, S, kernel_.value.data() + r0, g_.ckk(), dcol + r0 * ld, ld,
                              gemm::Ops{false, true, false});
        (void)dym, (void)S, (void)dcol, (void)ld;
    }
    // Backward's first step for filters [f0, f1) of one image: dym[f, r*wc + ow] =
    // dy_n[f, r, ow] * act'(y_n[f, r, ow]) (dym's rows ld apart), and 0 in the wide
    // layout's extra columns (ow >= OW): they then add nothing to dW or db, and their
    // dcol is exactly 0.
    void mask_dy(const T* dyn, const T* yn, T* dym, Eigen::Index ld, Eigen::Index f0, Eigen::Index f1) const {
        const Eigen::Index P = g_.oh * g_.ow, wc = g_.wc();
        const Eigen::Index runs = wc == g_.ow ? 1 : g_.oh, len = wc == g_.ow ? P : g_.ow;
        for (Eigen::Index f = f0; f < f1; ++f)
            for (Eigen::Index r = 0; r < runs; ++r) {
                const T *g = dyn + f * P + r * g_.ow, *o = yn + f * P + r * g_.ow;
                T* dst = dym + f * ld + r * wc;
                if (act_ == Activation::relu)
                    for (Eigen::Index p = 0; p < len; ++p) dst[p] = o[p] > T(0) ? g[p] : T(0);
                else
                    std::copy(g, g + len, dst);
                if (wc != g_.ow) std::fill(dst + g_.ow, dst + wc, T(0));
            }
    }

    // ---- One image, not in strips (batch 1 of the 8x8 to 32x32 layers) ----
    // A chunk of one image gave the threads nothing to split but Eigen's own threaded
    // GEMM, with the im2col before it on one thread. Here the threads write col together
    // (each its own channels), then each multiplies its own block of filters:
    //   ym[f0:f1, :] = Wm[f0:f1, :] * col      (rows layout: straight into y)
    // with single-threaded GEMMs. (Inception-v4's 17x17 and 8x8 layers, where this
    // matters, are 1x1 and 1x7 convolutions with 192-1536 filters.)
    // The threads one image's pass is split across: only when its product is one Eigen
    // would thread too (GemmThreads); below that, lenet5's layers (134 K multiply-adds)
    // ran 2x slower on two threads than on one.
    int one_image_threads() const {
        const std::int64_t macs = std::int64_t(filters_) * g_.ckk() * g_.columns();
        return macs >= kMinParallelGemm ? threads_for(filters_, macs) : 1;
    }
    void forward_one_image(const Tensor<T>& x, Tensor<T>& y, int threads) {
        const Eigen::Index P = g_.oh * g_.ow, Pc = g_.columns(), wc = g_.wc(), ckk = g_.ckk();
        make_plan(1);  // sizes work_[0]: col (CKK, Pc), ym (F, Pc), xp
        Workspace& w = work_[0];
        const bool pw = pointwise();  // 1x1: col is x itself
        for (int step = g_.wide ? 0 : 1; step < 2 && !pw; ++step)
            parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
                g_.im2col_channels(step, x.data(), w.col.data(), Pc, w.xp.data(), g_.c * k / threads,
                                   g_.c * (k + 1) / threads);
            });
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk);
        const ConstMatMap<T> col(pw ? x.data() : w.col.data(), ckk, Pc);
        const Epilogue ep = epilogue();
        const bool direct = wc == g_.ow;  // rows layout: y_n is ym
        const Eigen::Index runs = direct ? 1 : g_.oh, len = direct ? P : g_.ow;
        parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
            // Filter blocks in multiples of 8 (the GEMM kernel's panels), the rest to the last.
            const auto edge = [&](std::int64_t j) { return j == threads ? filters_ : filters_ * j / threads / 8 * 8; };
            const Eigen::Index f0 = edge(k), f1 = edge(k + 1);
            if (f1 <= f0) return;
            T* out = direct ? y.data() + f0 * P : w.ym.data() + f0 * Pc;
            if constexpr (gemm::available<T>())  // our kernel (core/gemm.hpp): out = Wm[f0:f1] * col
                gemm::multiply<T>(Pc, f1 - f0, ckk, col.data(), Pc, Wm.data() + f0 * ckk, ckk, out, Pc);
            else
                MatMap<T>(out, f1 - f0, Pc).noalias() = Wm.middleRows(f0, f1 - f0) * col;
            for (Eigen::Index f = f0; f < f1; ++f)
                for (Eigen::Index r = 0; r < runs; ++r)
                    ep.apply(direct ? y.data() + f * P : w.ym.data() + f * Pc + r * wc, y.data() + f * P + r * g_.ow,
                             len, f);
        });
    }

    // ---- Backward of one image, not in strips (VGG-16's 28x28 and 14x14 layers at batch 1) ----
    // A lone chunk ran its two products on Eigen's threaded GEMM, with the ReLU mask, the
    // im2col and the col2im on one thread. Here every step is split across the threads,
    // each product single-threaded on kitnn's GEMM:
    //   dym (F, Pc)  = dy * act'(y)                         by filters
    //   col (CKK, Pc) = im2col(x_n)                         by channels (1x1: x_n itself)
    //   dW[f0:f1] += dym[f0:f1] col^T, db[f0:f1] += sums   by filters, into the gradients
    //   dcol[c0:c1] = Wm[:, c0:c1]^T dym, col2im into dx_n  by channels (1x1: dx_n itself)
    // dcol is written over col, which every thread's dW product reads: a join between.
    // Only ImageNet-sized kernels (>= kBigKernel weights): MNIST keeps Eigen's rounding.
    int one_image_backward_threads() const {
        if (!gemm::available<T>() || std::int64_t(filters_) * g_.ckk() < kBigKernel || tap_products() ||
            in_parallel())
            return 1;
        return one_image_threads();
    }
    void backward_one_image(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx, int threads) {
        const Eigen::Index Pc = g_.columns(), kk = Eigen::Index(kh_) * kw_;
        make_plan(1, /*backward=*/true);  // sizes work_[0]: col (CKK, Pc), ym (F, Pc), xp
        if (work_.size() < size_t(threads)) work_.resize(size_t(threads));
        for (auto& w : work_)  // each thread's padded plane for col2im_channels
            if (w.dxp.size() < g_.padded_size()) w.dxp.resize(g_.padded_size());
        Workspace& w = work_[0];
        const bool pw = pointwise();
        // Filter blocks in multiples of 8 (the GEMM kernel's panels), the rest to the last.
        const auto fedge = [&](std::int64_t j) { return j == threads ? filters_ : filters_ * j / threads / 8 * 8; };
        const auto cedge = [&](std::int64_t j) { return g_.c * j / threads; };
        for (int step = 0; step < 2; ++step)  // im2col_channels' two steps (see there)
            parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
                if (step == 0) mask_dy(dy.data(), y.data(), w.ym.data(), Pc, fedge(k), fedge(k + 1));
                if (!pw) g_.im2col_channels(step, x.data(), w.col.data(), Pc, w.xp.data(), cedge(k), cedge(k + 1));
            });
        const T* col = pw ? x.data() : w.col.data();
        parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
            const Eigen::Index f0 = fedge(k), f1 = fedge(k + 1);
            if (f1 <= f0) return;
            own_add_dW(col, Pc, w.ym.data(), Pc, kernel_.grad.data(), f0, f1);
            if (use_bias_)
                for (Eigen::Index f = f0; f < f1; ++f)
                    bias_.grad.data()[f] += ConstVecMap<T>(w.ym.data() + f * Pc, Pc).sum();
        });
        if (!dx) return;
        T* dcol = pw ? dx->data() : w.col.data();
        parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
            const Eigen::Index c0 = cedge(k), c1 = cedge(k + 1);
            own_dcol(w.ym.data(), Pc, dcol, Pc, c0 * kk, c1 * kk);
            if (!pw) g_.col2im_channels(dcol, Pc, dx->data(), work_[size_t(k)].dxp.data(), c0, c1);
        });
    }

    // ---- Winograd's F(2x2, 3x3) (layers/winograd.hpp): inference, large 3x3 stride-1 ----
    // Blocks of whole tile rows (of one or several images), V and M about 4 MB together:
    //   U (16, F, C)   the transformed kernel, every pass (the weights may have changed)
    //   V (16, C, Tb)  the block's tiles, transformed
    //   M (16, F, Tb)  = U[xi] V[xi], 16 single-threaded GEMMs
    // All threads work on one block at a time: the input transform split by channels, the
    // 16 products by xi, the output transform by filters, with barriers between. The
    // buffers belong to the calling thread (thread_local), shared by the layers it runs:
    // one model's passes keep one set, the size of its largest layer's.
    static constexpr Eigen::Index kWinogradTiles = 128;
    static constexpr Eigen::Index kWinogradBlockBytes = Eigen::Index(4) << 20;
    // When `automatic` takes it: at least this many input channels (the products' depth)
    // and filters (their width), and enough tiles in the pass to pay for transforming the
    // kernel. On outputs over 32x32 (kStripPixels: never an MNIST layer) from 32 channels
    // and filters already. Measured layer by layer against the GEMM path, the two
    // alternated pass by pass in one process (docs/performance.md): 1.1-1.5x faster from
    // 128 channels and filters (VGG-16's layers 4-12; its 14x14 ones from 3 images, 49
    // tiles each); on large images 1.3-1.6x from 32 (VGG-16's 64 -> 64 on 224x224 and 64 ->
    // 128 on 112x112, Inception-v4's stem from 32 -> 32 on 147x147 to 96 -> 96 on 35x35, at
    // one image and at 8). No MNIST zoo layer has 128 input channels or a 33x33 output.
    // F(m, K) along 1xK and Kx1 kernels keeps 128 channels and filters, counting its tiles
    // of m outputs: Inception-v4's 17x17 1x7 and 7x1 layers (192-320 channels) 1.4-1.9x
    // faster at batch 8 and 1.1-1.6x at one image, its 8x8 1x3 and 3x1 ones (384-512) at
    // batch 8 1.05-1.4x (fastest passes; medians 1.2-1.5x), at one image (16 tiles) 0.4-0.6x
    // and not taken; the stem's 64 -> 64 7x1 and 1x7 on 73x73 0.96-1.14x, so they keep the GEMM.
    static constexpr Eigen::Index kWinogradMinChannels = 128;
    static constexpr Eigen::Index kWinogradMinChannelsLarge = 32;
    static constexpr Eigen::Index kWinogradMinTiles = 128;
    struct WinogradScratch {
        std::vector<T> U, V, M, work;  // work: each thread's scratch of the transforms
    };
    static WinogradScratch& winograd_scratch() {
        static thread_local WinogradScratch s;
        return s;
    }
    // The driver both Winograd forms share: n products per tile, rows_total tile rows of
    // row_tiles tiles, cut into blocks of whole tile rows; `kernel_tf(f0, f1, U, work)`,
    // `input_tf(r0, r1, c0, c1, tb, V, work)` and `output_tf(M, r0, r1, f0, f1, tb, work)`
    // are the form's transforms, `scratch(rows)` its per-thread work for blocks of `rows`.
    template <class Scratch, class KernelTf, class InputTf, class OutputTf>
    void run_winograd(Eigen::Index n, Eigen::Index rows_total, Eigen::Index row_tiles, Scratch scratch_of,
                      KernelTf kernel_tf, InputTf input_tf, OutputTf output_tf) {
        const Eigen::Index C = g_.c, F = filters_;
        // Tiles per block: V and M together about kWinogradBlockBytes (n (C + F) values per
        // tile), at least kWinogradTiles; whole tile rows.
        const Eigen::Index target =
            std::max<Eigen::Index>(kWinogradTiles, kWinogradBlockBytes / Eigen::Index(n * sizeof(T) * (C + F)));
        const Eigen::Index block_rows = std::min(rows_total, std::max<Eigen::Index>(1, target / row_tiles));
        const Eigen::Index blocks = (rows_total + block_rows - 1) / block_rows;
        const std::int64_t macs = std::int64_t(n) * F * C * rows_total * row_tiles;
        const int threads = threads_for(n, macs);
        WinogradScratch& s = winograd_scratch();
        s.U.resize(size_t(n * F * C));
        s.V.resize(size_t(n * C * block_rows * row_tiles));
        s.M.resize(size_t(n * F * block_rows * row_tiles));
        const Eigen::Index scratch = scratch_of(block_rows);
        s.work.resize(size_t(threads * scratch));
        T *U = s.U.data(), *V = s.V.data(), *M = s.M.data();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
        {
            int t = 0, nt = 1;
#ifdef _OPENMP
            t = omp_get_thread_num();
            nt = omp_get_num_threads();
#endif
            T* work = s.work.data() + t * scratch;
            kernel_tf(F * t / nt, F * (t + 1) / nt, U, work);
            for (Eigen::Index k = 0; k < blocks; ++k) {
                const Eigen::Index r0 = k * block_rows, r1 = std::min(rows_total, r0 + block_rows);
                const Eigen::Index tb = (r1 - r0) * row_tiles;  // this block's tiles: V's and M's row length
                input_tf(r0, r1, C * t / nt, C * (t + 1) / nt, tb, V, work);
#ifdef _OPENMP
#pragma omp barrier
#endif
                for (Eigen::Index xi = n * t / nt; xi < n * (t + 1) / nt; ++xi) {
                    const T* Ux = U + xi * F * C;
                    const T* Vx = V + xi * C * tb;
                    T* Mx = M + xi * F * tb;
                    // M (F, tb) = U (F, C) * V (C, tb), row-major: on kitnn's GEMM where it
                    // runs (VGG-16 at one image 260 ms against 300 on Eigen's), else Eigen's.
                    if constexpr (gemm::available<T>())
                        gemm::multiply<T>(tb, F, C, Vx, tb, Ux, C, Mx, tb);
                    else
                        MatMap<T>(Mx, F, tb).noalias() = ConstMatMap<T>(Ux, F, C) * ConstMatMap<T>(Vx, C, tb);
                }
#ifdef _OPENMP
#pragma omp barrier
#endif
                output_tf(M, r0, r1, F * t / nt, F * (t + 1) / nt, tb, work);
#ifdef _OPENMP
#pragma omp barrier
#endif
            }
        }
    }
    void forward_winograd(const Tensor<T>& x, Tensor<T>& y) {
        const Eigen::Index N = x.dimension(0), C = g_.c, F = filters_;
        const winograd::Tiling tg{C, g_.h, g_.w, g_.oh, g_.ow, g_.pt, g_.pl, (g_.oh + 1) / 2, (g_.ow + 1) / 2, N};
        const Epilogue ep = epilogue();
        run_winograd(
            16, tg.rows(), tg.E(), [&](Eigen::Index rows) { return tg.scratch(rows); },
            [&](Eigen::Index f0, Eigen::Index f1, T* U, T* work) {
                winograd::transform_kernel(kernel_.value.data(), F, C, f0, f1, U, work);
            },
            [&](Eigen::Index r0, Eigen::Index r1, Eigen::Index c0, Eigen::Index c1, Eigen::Index tb, T* V, T* work) {
                winograd::transform_input(tg, x.data(), r0, r1, c0, c1, tb, V, work);
            },
            [&](const T* M, Eigen::Index r0, Eigen::Index r1, Eigen::Index f0, Eigen::Index f1, Eigen::Index tb,
                T* work) { winograd::transform_output(tg, M, F, r0, r1, f0, f1, tb, ep.shift, ep.scale, ep.relu, y.data(), work); });
    }

    // ---- Winograd's F(m, K) along a 1xK or Kx1 kernel (layers/winograd_1d.hpp) ----
    // The same scheme as forward_winograd, with n = m + K - 1 products instead of 16:
    //   U (n, F, C)   the transformed kernel, every pass
    //   V (n, C, Tb)  the block's tiles (whole tile rows of J tiles), transformed
    //   M (n, F, Tb)  = U[xi] V[xi], n single-threaded GEMMs, split across the threads
    // K taps (0: not such a layer), stride 1.
    int line_taps() const {
        if (stride_ != 1 || (kh_ == 1) == (kw_ == 1)) return 0;
        const int k = std::max(kh_, kw_);
        return winograd1d::outputs_per_tile(k) > 0 ? k : 0;
    }
    void forward_winograd_1d(const Tensor<T>& x, Tensor<T>& y) {
        const winograd1d::Matrices& w = winograd1d::matrices(line_taps());
        const Eigen::Index N = x.dimension(0), C = g_.c, F = filters_;
        const bool along_w = kh_ == 1;  // 1xK: along the rows' width, lines across are columns
        winograd1d::Lines lg{};
        lg.C = C, lg.N = N, lg.m = w.m;
        lg.L = along_w ? g_.w : g_.h;
        lg.OL = along_w ? g_.ow : g_.oh;
        lg.p = along_w ? g_.pl : g_.pt;
        lg.J = along_w ? g_.h : g_.w;  // = the output's: no padding across
        lg.sa = along_w ? 1 : g_.w;
        lg.sj = along_w ? g_.w : 1;
        lg.osa = along_w ? 1 : g_.ow;
        lg.osj = along_w ? g_.ow : 1;
        lg.plane = g_.h * g_.w;
        lg.oplane = g_.oh * g_.ow;
        const Epilogue ep = epilogue();
        run_winograd(
            w.n, lg.rows(), lg.J, [&](Eigen::Index rows) { return lg.scratch(rows, w.n); },
            [&](Eigen::Index f0, Eigen::Index f1, T* U, T* work) {
                winograd1d::transform_kernel(w, kernel_.value.data(), F, C, f0, f1, U, work);
            },
            [&](Eigen::Index r0, Eigen::Index r1, Eigen::Index c0, Eigen::Index c1, Eigen::Index tb, T* V, T* work) {
                winograd1d::transform_input(w, lg, x.data(), r0, r1, c0, c1, tb, V, work);
            },
            [&](const T* M, Eigen::Index r0, Eigen::Index r1, Eigen::Index f0, Eigen::Index f1, Eigen::Index tb,
                T* work) { winograd1d::transform_output(w, lg, M, F, r0, r1, f0, f1, tb, ep.shift, ep.scale, ep.relu, y.data(), work); });
    }

    // ---- Strips: large images (more than kStripPixels output pixels), rows layout ----
    // A unit of work is (image n, strip s): output rows [OH*s/SP, OH*(s+1)/SP), SP strips
    // per image (sizes within one row of each other, so the threads get equal shares).
    //   col : (CKK, S)      im2col of the strip, S = rows*OW columns (1x1 stride-1
    //                       unpadded layers read x itself: col = x_n[:, strip], no copy)
    //   y   : (F, S) block of y_n, outer stride P = Wm * col, written by the GEMM in
    //                       place (no ym copy), then bias and activation over it
    // Why: one 224x224 image's im2col is up to 576 x 50,176 floats (116 MB) for VGG-16,
    // written and read through DRAM, and a batch of one gave the GEMM no chunk to run
    // in parallel. A strip's col stays within a few MB, and the strips of even one image
    // run on all threads, each with a single-threaded GEMM of >= kStripMinCols columns.
    // Backward per unit: dym (F, S) = dy * act'(y); dW += dym col^T; db += rowsum(dym);
    // dcol = Wm^T dym over col; col2im ADDS it into dx_n. Neighbouring strips share the
    // kernel's halo rows of dx, so even strips run first (all in parallel), then odd
    // ones: strips of at least ceil(KH/stride) rows keep strips s and s+2 apart. Without
    // dx (a model's first layer) all strips run at once.
    static constexpr Eigen::Index kStripPixels = 1024;    // > 32x32 outputs: MNIST never
    static constexpr Eigen::Index kStripCol = Eigen::Index(1) << 18;  // col elements (1 MB float)
    static constexpr Eigen::Index kStripMinCols = 256;
    // dW on kitnn's GEMM from this many taps: its packing transposes col one float at a
    // time, which for VGG-16's first layer (27 taps) cost more than the product saved
    // (backward 3.1-3.5 ms on Eigen, 5.1-5.6 ms on ours; from 576 taps ours is faster).
    static constexpr Eigen::Index kOwnGemmMinTaps = 64;

    // The tap-by-tap paths over the padded image (im2col.hpp): dW (add_kernel_grad) and
    // the forward product (conv_taps), each for the wide layers its limits admit.
    bool tap_products() const { return g_.wide && filters_ <= kTapDotFilters; }
    bool tap_forward_size() const { return filters_ <= kTapFilters && g_.ckk() <= kTapTaps; }
    bool tap_forward() const { return g_.wide && tap_forward_size(); }
    bool pointwise() const { return kh_ == 1 && kw_ == 1 && stride_ == 1 && g_.pt == 0 && g_.pl == 0; }

    struct StripPlan {
        Eigen::Index rows, per_image, units;  // most output rows in a strip, strips per image, N * per_image
        int threads;
        Eigen::Index oh;
        Eigen::Index first_row(Eigen::Index s) const { return oh * s / per_image; }
    };
    StripPlan make_strip_plan(Eigen::Index N) {
        const Eigen::Index ckk = g_.ckk(), OH = g_.oh, OW = g_.ow;
        const Eigen::Index cols = std::max(kStripMinCols, kStripCol / ckk);
        const Eigen::Index min_rows = std::min<Eigen::Index>((kh_ + stride_ - 1) / stride_, OH);
        Eigen::Index per = (OH + std::max<Eigen::Index>(cols / OW, 1) - 1) / std::max<Eigen::Index>(cols / OW, 1);
        per = std::min(per, OH / min_rows);  // every strip >= min_rows rows (sr*stride >= KH)
        const int threads = threads_for(N * per, std::int64_t(N) * filters_ * ckk * OH * OW);
        // Whole rounds of threads: one image's 4 strips on 3 threads would leave two
        // threads idle half the time. More, thinner strips while they stay >= min_rows.
        for (Eigen::Index more = per; (N * more) % threads && more < OH / min_rows;) {
            ++more;
            if ((N * more) % threads == 0) per = more;
        }
        // Strip s: rows [OH*s/per, OH*(s+1)/per), balanced to one row.
        const Eigen::Index sr = (OH + per - 1) / per;
        StripPlan p{sr, per, N * per, int(std::min<Eigen::Index>(threads, N * per)), OH};
        if (work_.size() < size_t(p.threads)) work_.resize(size_t(p.threads));
        for (int t = 0; t < p.threads; ++t) {
            Workspace& w = work_[size_t(t)];
            w.col.resize(ckk * sr * OW);
            w.ym.resize(filters_ * sr * OW);
            w.dW.resize(filters_, ckk);
            w.db.resize(filters_);
        }
        return p;
    }

    void forward_strips(const Tensor<T>& x, Tensor<T>& y) {
        const Eigen::Index N = x.dimension(0), P = g_.oh * g_.ow, OW = g_.ow, ckk = g_.ckk();
        const Eigen::Index image = g_.c * g_.h * g_.w;
        const StripPlan plan = make_strip_plan(N);
        const GemmThreads gemm_threads(std::int64_t(filters_) * ckk * plan.rows * OW);
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk);
        const Epilogue ep = epilogue();
        const bool direct = pointwise();
        parallel_for_threads(plan.units, plan.threads, [&](std::int64_t u, int t) {
            const Eigen::Index n = u / plan.per_image, o0 = plan.first_row(u % plan.per_image);
            const Eigen::Index o1 = plan.first_row(u % plan.per_image + 1), S = (o1 - o0) * OW;
            Workspace& w = work_[size_t(t)];
            StridedMap yb(y.data() + n * filters_ * P + o0 * OW, filters_, S, Stride(P, 1));
            if (!direct) g_.im2col_rows(x.data() + n * image, w.col.data(), S, o0, o1);
            const T* col = direct ? x.data() + n * image + o0 * OW : w.col.data();
            const Eigen::Index ld = direct ? P : S;  // col's row stride
            if constexpr (gemm::available<T>())  // our kernel (core/gemm.hpp): yb = Wm * col
                gemm::multiply<T>(S, filters_, ckk, col, ld, Wm.data(), ckk, yb.data(), P);
            else if (direct)
                yb.noalias() = Wm * ConstStridedMap(col, ckk, S, Stride(P, 1));
            else
                yb.noalias() = Wm * ConstMatMap<T>(col, ckk, S);
            for (Eigen::Index f = 0; f < filters_; ++f)
                if (ep.relu || ep.scale || ep.shift[f] != T(0)) ep.apply(yb.data() + f * P, yb.data() + f * P, S, f);
        });
    }

    // The strips' first backward step: dym (F, S) = dy_n * act'(y_n) over the S output
    // pixels from row r0 of image n on (whole rows, consecutive in every filter's plane).
    void mask_rows(const T* dy, const T* y, Eigen::Index n, Eigen::Index r0, Eigen::Index S, T* dym) const {
        const Eigen::Index P = g_.oh * g_.ow;
        for (Eigen::Index f = 0; f < filters_; ++f) {
            const Eigen::Index at = (n * filters_ + f) * P + r0 * g_.ow;
            const T *g = dy + at, *o = y + at;
            T* d = dym + f * S;
            if (act_ == Activation::relu)
                for (Eigen::Index p = 0; p < S; ++p) d[p] = o[p] > T(0) ? g[p] : T(0);
            else
                std::copy(g, g + S, d);
        }
    }
    void backward_strips(const Tensor<T>& x, const Tensor<T>& y, const Tensor<T>& dy, Tensor<T>* dx) {
        const Eigen::Index N = dy.dimension(0), P = g_.oh * g_.ow, OW = g_.ow, ckk = g_.ckk();
        const Eigen::Index image = g_.c * g_.h * g_.w;
        const StripPlan plan = make_strip_plan(N);
        const GemmThreads gemm_threads(std::int64_t(filters_) * ckk * plan.rows * OW);
        ConstMatMap<T> Wm(kernel_.value.data(), filters_, ckk);
        for (int t = 0; t < plan.threads; ++t) {
            work_[size_t(t)].dW.setZero();
            work_[size_t(t)].db.setZero();
        }
        const bool direct = pointwise();
        const bool blocks = few_taps_blocks(dx != nullptr);
        if (blocks)
            for (int t = 0; t < plan.threads; ++t) work_[size_t(t)].dots.reset(filters_, ckk);
        if (dx) parallel_for(N, std::int64_t(N) * image, [&](std::int64_t n) {
            std::fill(dx->data() + n * image, dx->data() + (n + 1) * image, T(0));
        });
        // Units of one parity: (n, s) with s = 2k + phase. Without dx (a model's first
        // layer) no two strips write the same values: all of them in one phase, as the
        // forward pass runs them (VGG-16's first layer at one image has 6 strips, 3 per
        // parity: two threads waited a third of each phase).
        const int phases = dx ? 2 : 1;
        for (int phase = 0; phase < phases; ++phase) {
            const Eigen::Index per = (plan.per_image - phase + phases - 1) / phases;  // strips of this phase
            if (per == 0) continue;
            const int threads = int(std::min<Eigen::Index>(plan.threads, N * per));
            parallel_for_threads(N * per, threads, [&](std::int64_t u, int t) {
                const Eigen::Index n = u / per, strip = phases * (u % per) + phase;
                const Eigen::Index o0 = plan.first_row(strip), o1 = plan.first_row(strip + 1), S = (o1 - o0) * OW;
                Workspace& w = work_[size_t(t)];
                if (blocks) return few_taps_dW(x.data() + n * image, y.data(), dy.data(), n, o0, o1, w);
                MatMap<T> dym(w.ym.data(), filters_, S), col(w.col.data(), ckk, S);
                mask_rows(dy.data(), y.data(), n, o0, S, dym.data());
                if (!direct) g_.im2col_rows(x.data() + n * image, col.data(), S, o0, o1);
                const T* cin = direct ? x.data() + n * image + o0 * OW : col.data();  // (CKK, S)
                const Eigen::Index ld = direct ? P : S;                              // its row stride
                if (gemm::available<T>() && ckk >= kOwnGemmMinTaps) {
                    own_add_dW(cin, ld, dym.data(), S, w.dW.data());
                } else if (direct) {
                    w.dW.noalias() += dym * ConstStridedMap(cin, ckk, S, Stride(P, 1)).transpose();
                } else {
                    w.dW.noalias() += dym * col.transpose();
                }
                if (use_bias_) w.db += dym.rowwise().sum();
                if (!dx) return;
                // dcol (CKK, S) = Wm^T dym, over the dead col; for 1x1 it is dx itself.
                T* dcol = direct ? dx->data() + n * image + o0 * OW : col.data();
                if (gemm::available<T>()) {
                    own_dcol(dym.data(), S, dcol, ld);
                } else if (direct) {
                    StridedMap(dcol, ckk, S, Stride(P, 1)).noalias() = Wm.transpose() * dym;
                } else {
                    col.noalias() = Wm.transpose() * dym;
                }
                if (!direct) g_.col2im_rows_add(col.data(), S, dx->data() + n * image, o0, o1);
            });
        }
        MatMap<T> dW(kernel_.grad.data(), filters_, ckk);
        VecMap<T> db(bias_.grad.data(), filters_);
        for (int t = 0; t < plan.threads; ++t) {
            if constexpr (gemm::available<T>())
                if (blocks) work_[size_t(t)].dots.add_into(work_[size_t(t)].dW.data(), ckk);
            dW += work_[size_t(t)].dW;
            db += work_[size_t(t)].db;
        }
    }

    // The kernel gradient of a strip of few taps without dx (a model's first layer:
    // VGG-16's 3 -> 64 on 224x224, 27 taps; Inception-v4's 3 -> 32 at stride 2), on
    // kitnn's long dot products (core/long_dots.hpp) instead of one GEMM over the strip.
    // Why: that GEMM (Eigen's) is 64 x 27 over thousands of pixels, too thin to be
    // limited by its multiply-adds; the strip's dym (F, S) and col (CKK, S) went through
    // memory (2.1 and 0.9 MB for VGG-16's 37-row strips, past the 1 MB L2) and were read
    // again by the product's packing. Here a block of kDotBlockPixels output pixels at a
    // time: dym's block (ReLU mask) and col's (im2col) are written, then summed into
    // w.dots while they are still in cache and the next block's dy and y are prefetched.
    // VGG-16's first layer's backward: 1.53-1.93 -> 1.21-1.27 ms at one image, 13.4-14.0
    // -> 12.1-12.2 ms at batch 8 (docs/performance.md); 512 or 2,048 pixels were no better.
    // Reading dy and y (25.7 MB per image) is now most of its time.
    static constexpr Eigen::Index kDotBlockPixels = 1024;
    bool few_taps_blocks(bool with_dx) const { return gemm::available<T>() && !with_dx && g_.ckk() < kOwnGemmMinTaps; }
    //   dym block (F, Sb) = dy * act'(y) over output rows [r0, r1) of image n, Sb = (r1 - r0) * OW
    //   col block (CKK, Sb) = im2col of the same rows (1x1: x's rows themselves, ld P)
    //   w.dots += dym col^T;  w.db += rowsum(dym)
    void few_taps_dW(const T* xn, const T* y, const T* dy, Eigen::Index n, Eigen::Index o0, Eigen::Index o1,
                     Workspace& w) {
        if constexpr (gemm::available<T>()) {
            const Eigen::Index P = g_.oh * g_.ow, OW = g_.ow;
            const Eigen::Index R = std::max<Eigen::Index>(1, kDotBlockPixels / OW);  // rows per block
            const bool direct = pointwise();
            for (Eigen::Index r0 = o0; r0 < o1; r0 += R) {
                const Eigen::Index r1 = std::min(o1, r0 + R), Sb = (r1 - r0) * OW;
                MatMap<T> dym(w.ym.data(), filters_, Sb);
                mask_rows(dy, y, n, r0, Sb, dym.data());
                if (!direct) g_.im2col_rows(xn, w.col.data(), Sb, r0, r1);
                const T* col = direct ? xn + r0 * OW : w.col.data();
                // The next block's dy and y come from memory while this one's products run.
                gemm::LongDots::Prefetch next;
                if (r1 < o1) {
                    const Eigen::Index at = n * filters_ * P + r1 * OW;
                    next.base[0] = dy + at;
                    next.base[1] = y + at;
                    next.arrays = act_ == Activation::relu ? 2 : 1;
                    next.ld = P;
                    next.rows = filters_;
                    next.count = (std::min(o1, r1 + R) - r1) * OW;
                }
                w.dots.add(dym.data(), Sb, col, direct ? P : Sb, Sb, &next);
                if (use_bias_) w.db += dym.rowwise().sum();
            }
        } else {
            (void)xn, (void)y, (void)dy, (void)n, (void)o0, (void)o1, (void)w;
        }
    }
    using Stride = Eigen::Stride<Eigen::Dynamic, 1>;
    using StridedMap = Eigen::Map<MatrixRM<T>, Eigen::Unaligned, Stride>;
    using ConstStridedMap = Eigen::Map<const MatrixRM<T>, Eigen::Unaligned, Stride>;

    void choose_layout() {
        bool w = false;
        if (im2col_ == Im2col::wide) w = true;
        else if (im2col_ == Im2col::automatic && stride_ == 1) {
            // Measured in training (docs/performance.md): wide wins for padded layers
            // (lenet5's first, the `best` model's) and short output rows (lenet5's second,
            // 10 pixels); rows wins for keck (27 pixels, 4 taps, no padding) and ties for
            // kerascnn (26 and 24 pixels), where the extra columns cost as much as they save.
            // Large images (strips) take rows: a strip's GEMM then writes y in place.
            // Kernels one row high (Inception-v4's 1x7 and 1x3) take rows too: wide would
            // add KW - 1 columns to every output row (17 -> 23 at 1x7, 8 -> 10 at 1x3),
            // multiply-adds that rows' shorter im2col copies cost less than; their forward
            // and backward ran about a fifth faster in rows (docs/performance.md). Their 7x1 and
            // 3x1 twins keep wide, which has no extra column for them (KW = 1). Only above
            // the tap-by-tap forward's size, though: an MNIST-sized 1xK layer keeps wide
            // and with it the tap paths, which were not measured against rows.
            const bool one_row_big = kh_ == 1 && kw_ > 1 && !tap_forward_size();
            w = (g_.pt > 0 || g_.pl > 0 || g_.ow <= 16) && g_.oh * g_.ow <= kStripPixels && !one_row_big;
        }
        g_.wide = w;
        strips_ = !w && g_.oh * g_.ow > kStripPixels;
        work_.clear();  // resized for the new layout at the next pass
    }

    int filters_, kh_, kw_, stride_, pad_;  // pad_: pixels each side, explicit_pad only
    Padding padding_;
    Activation act_;
    Init init_;
    bool use_bias_;
    Im2col im2col_ = Im2col::automatic;  // as asked; g_.wide says which layout was chosen
    ConvAlgorithm algorithm_ = ConvAlgorithm::automatic;  // inference forward: Winograd or GEMM
    Im2colGeometry g_;                   // input, output, padding and layout, once built
    bool strips_ = false;                // strips of output rows (large images), rows layout
    const Epilogue* folded_ = nullptr;   // set during forward_folded only
    Param<T> kernel_, bias_;  // kernel: (F, C, KH, KW), bias: (F, 1, 1, 1) (zero if !use_bias_)
};
KITNN_LIBRARY_LAYER(Conv2D);

}  // namespace kitnn
