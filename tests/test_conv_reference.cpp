// Conv2D and MaxPool2D against naive references written straight from the
// definitions with plain nested loops (no im2col, no GEMM, no pointer arithmetic),
// in double, to 1e-10 relative. Covers odd sizes, stride 2 and 3, 'same' and
// 'valid' padding (TensorFlow's rule), several channels, filters and samples,
// non-square kernels, fused ReLU and linear, and a change of batch size (the
// workspaces are resized). Backward is checked against the contract of layer.hpp:
// dx is overwritten (pre-filled with NaN), parameter gradients accumulate.
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

using T4 = Tensor<double>;

T4 randn(Eigen::Index n, Eigen::Index c, Eigen::Index h, Eigen::Index w, Rng& rng) {
    T4 t(n, c, h, w);
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = rng.normal();
    return t;
}

double max_abs(const T4& t) {
    double m = 0;
    for (Eigen::Index i = 0; i < t.size(); ++i) m = std::max(m, std::abs(t.data()[i]));
    return m;
}

// Every element within rtol of the reference, relative to max(|ref|, 1% of the
// largest |ref|) so that entries cancelling to ~0 do not demand absolute precision.
void require_close(const T4& got, const T4& ref, double rtol, const std::string& what) {
    INFO(what);
    REQUIRE(got.dimensions() == ref.dimensions());
    const double floor = 0.01 * std::max(max_abs(ref), 1e-300);
    double worst = 0;
    Eigen::Index worst_i = 0;
    for (Eigen::Index i = 0; i < ref.size(); ++i) {
        const double a = got.data()[i], r = ref.data()[i];
        // NaN (e.g. a dx entry never overwritten) counts as an infinite error.
        const double e =
            std::isfinite(a) ? std::abs(a - r) / std::max(std::abs(r), floor) : HUGE_VAL;
        if (e > worst || i == 0) worst = e, worst_i = i;
    }
    INFO("worst relative error " << worst << " at flat index " << worst_i << ": got "
                                 << got.data()[worst_i] << ", reference " << ref.data()[worst_i]);
    REQUIRE(worst <= rtol);
}

// ----------------------------------------------------------------------------
// Reference convolution.
struct ConvSpec {
    Eigen::Index n, c, h, w;  // input
    int f, kh, kw, stride;
    Padding pad;
    Activation act;
};

struct ConvGeom {
    Eigen::Index oh, ow;
    Eigen::Index pt, pl;
};

// TensorFlow: 'valid' out = floor((in - k) / s) + 1, no padding; 'same' out =
// ceil(in / s), pad_total = max((out - 1) * s + k - in, 0), pad_top = pad_total / 2.
ConvGeom geometry(const ConvSpec& s) {
    ConvGeom g{};
    if (s.pad == Padding::valid) {
        g.oh = (s.h - s.kh) / s.stride + 1;
        g.ow = (s.w - s.kw) / s.stride + 1;
        g.pt = g.pl = 0;
    } else {
        g.oh = (s.h + s.stride - 1) / s.stride;
        g.ow = (s.w + s.stride - 1) / s.stride;
        const Eigen::Index th = std::max<Eigen::Index>((g.oh - 1) * s.stride + s.kh - s.h, 0);
        const Eigen::Index tw = std::max<Eigen::Index>((g.ow - 1) * s.stride + s.kw - s.w, 0);
        g.pt = th / 2;
        g.pl = tw / 2;
    }
    return g;
}

// Input pixel read by output (oh, ow) through tap (ki, kj); false if in the padding.
bool tap(const ConvSpec& s, const ConvGeom& g, Eigen::Index oh, Eigen::Index ow, int ki, int kj,
         Eigen::Index& ih, Eigen::Index& iw) {
    ih = oh * s.stride + ki - g.pt;
    iw = ow * s.stride + kj - g.pl;
    return ih >= 0 && ih < s.h && iw >= 0 && iw < s.w;
}

// z = pre-activation, y = act(z).
void ref_conv_forward(const ConvSpec& s, const T4& x, const T4& k, const T4& b, T4& z, T4& y) {
    const ConvGeom g = geometry(s);
    z.resize(s.n, s.f, g.oh, g.ow);
    y.resize(s.n, s.f, g.oh, g.ow);
    for (Eigen::Index n = 0; n < s.n; ++n)
        for (int f = 0; f < s.f; ++f)
            for (Eigen::Index oh = 0; oh < g.oh; ++oh)
                for (Eigen::Index ow = 0; ow < g.ow; ++ow) {
                    double acc = b(f, 0, 0, 0);
                    for (Eigen::Index c = 0; c < s.c; ++c)
                        for (int ki = 0; ki < s.kh; ++ki)
                            for (int kj = 0; kj < s.kw; ++kj) {
                                Eigen::Index ih, iw;
                                if (tap(s, g, oh, ow, ki, kj, ih, iw))
                                    acc += x(n, c, ih, iw) * k(f, c, ki, kj);
                            }
                    z(n, f, oh, ow) = acc;
                    y(n, f, oh, ow) =
                        s.act == Activation::relu ? (acc > 0 ? acc : 0.0) : acc;
                }
}

void ref_conv_backward(const ConvSpec& s, const T4& x, const T4& k, const T4& z, const T4& dy,
                       T4& dx, T4& dk, T4& db) {
    const ConvGeom g = geometry(s);
    dx.resize(s.n, s.c, s.h, s.w);
    dx.setZero();
    dk.resize(s.f, s.c, s.kh, s.kw);
    dk.setZero();
    db.resize(s.f, 1, 1, 1);
    db.setZero();
    for (Eigen::Index n = 0; n < s.n; ++n)
        for (int f = 0; f < s.f; ++f)
            for (Eigen::Index oh = 0; oh < g.oh; ++oh)
                for (Eigen::Index ow = 0; ow < g.ow; ++ow) {
                    double d = dy(n, f, oh, ow);
                    if (s.act == Activation::relu && !(z(n, f, oh, ow) > 0)) d = 0;
                    db(f, 0, 0, 0) += d;
                    for (Eigen::Index c = 0; c < s.c; ++c)
                        for (int ki = 0; ki < s.kh; ++ki)
                            for (int kj = 0; kj < s.kw; ++kj) {
                                Eigen::Index ih, iw;
                                if (!tap(s, g, oh, ow, ki, kj, ih, iw)) continue;
                                dk(f, c, ki, kj) += d * x(n, c, ih, iw);
                                dx(n, c, ih, iw) += d * k(f, c, ki, kj);
                            }
                }
}

std::string describe(const ConvSpec& s) {
    return "input (N=" + std::to_string(s.n) + ": " + std::to_string(s.c) + "," +
           std::to_string(s.h) + "," + std::to_string(s.w) + ") filters " + std::to_string(s.f) +
           " kernel " + std::to_string(s.kh) + "x" + std::to_string(s.kw) + " stride " +
           std::to_string(s.stride) + " " + to_string(s.pad) + " " + to_string(s.act);
}

// Checks Conv2D against the reference at batch s.n and then s.n + 2, on each of
// `threads` (0: the current setting), with the same data. The reference does not depend
// on the threads, so it is computed once per batch: its plain loops, not the layer, are
// most of this file's time (ten times more under the sanitizers). One layer per thread
// count, built on that count and kept for both batches: the second batch resizes every
// workspace. `strips`, when given, is whether each layer must take the strip path.
void check_conv(ConvSpec s, std::uint64_t seed, std::initializer_list<int> threads = {0},
                std::optional<bool> strips = std::nullopt) {
    INFO(describe(s));
    const ConvGeom g = geometry(s);
    Rng rng(seed);
    T4 k(s.f, s.c, s.kh, s.kw), b(s.f, 1, 1, 1);
    // Random kernel and (non-zero!) bias, so the bias path is exercised.
    for (Eigen::Index i = 0; i < k.size(); ++i) k.data()[i] = rng.normal();
    for (Eigen::Index i = 0; i < b.size(); ++i) b.data()[i] = rng.normal();

    std::vector<std::unique_ptr<Conv2D<double>>> layers;
    for (int t : threads) {
        if (t > 0) set_threads(t);
        auto conv = std::make_unique<Conv2D<double>>(s.f, std::array<int, 2>{s.kh, s.kw}, s.act, s.pad, s.stride);
        Rng build_rng(seed);
        const Shape out = conv->build(Shape::image(s.c, s.h, s.w), build_rng);
        REQUIRE(out == Shape::image(s.f, g.oh, g.ow));
        CHECK(conv->pad_top() == g.pt);
        CHECK(conv->pad_left() == g.pl);
        REQUIRE(conv->param_count() == std::int64_t(s.f) * (s.c * s.kh * s.kw + 1));
        if (strips) CHECK(conv->strips() == *strips);
        conv->kernel().value = k;
        conv->bias().value = b;
        layers.push_back(std::move(conv));
    }

    for (Eigen::Index n : {s.n, s.n + 2}) {
        s.n = n;
        INFO("batch " << n);
        const T4 x = randn(s.n, s.c, s.h, s.w, rng);
        T4 z, yref;
        ref_conv_forward(s, x, k, b, z, yref);
        if (s.act == Activation::relu) {  // make sure the ReLU actually clips something
            Eigen::Index clipped = 0;
            for (Eigen::Index i = 0; i < z.size(); ++i) clipped += z.data()[i] <= 0;
            CHECK(clipped > 0);
        }
        const T4 dy = randn(s.n, s.f, g.oh, g.ow, rng);
        T4 dxref, dkref, dbref;
        ref_conv_backward(s, x, k, z, dy, dxref, dkref, dbref);
        const T4 dk2 = dkref * 2.0, db2 = dbref * 2.0;
        const T4 gk0 = randn(s.f, s.c, s.kh, s.kw, rng);
        const T4 gb0 = randn(s.f, 1, 1, 1, rng);

        auto t = threads.begin();
        for (auto& conv : layers) {
            const int nt = *t++;
            if (nt > 0) set_threads(nt);
            INFO((nt > 0 ? nt : max_threads()) << " thread(s)");
            T4 y;
            conv->forward(x, y, true);
            require_close(y, yref, 1e-10, "forward y");

            // Sentinels: dx is NaN (must be overwritten), grads hold noise (must be +=).
            T4 dx(s.n, s.c, s.h, s.w);
            dx.setConstant(std::numeric_limits<double>::quiet_NaN());
            conv->kernel().grad = gk0;
            conv->bias().grad = gb0;
            conv->backward(x, y, dy, &dx);
            require_close(dx, dxref, 1e-10, "backward dx");
            T4 dk_minus = conv->kernel().grad - gk0;
            T4 db_minus = conv->bias().grad - gb0;
            require_close(dk_minus, dkref, 1e-10, "backward dkernel (accumulated onto noise)");
            require_close(db_minus, dbref, 1e-10, "backward dbias (accumulated onto noise)");

            // A second backward without dx (the first layer's case) adds the same again.
            conv->kernel().grad.setZero();
            conv->bias().grad.setZero();
            conv->backward(x, y, dy, nullptr);
            conv->backward(x, y, dy, nullptr);
            require_close(conv->kernel().grad, dk2, 1e-10, "dkernel after two backward(dx = null)");
            require_close(conv->bias().grad, db2, 1e-10, "dbias after two backward(dx = null)");
        }
    }
}

// ----------------------------------------------------------------------------
// Reference max pooling ('valid', floor; ties go to the first maximum in row-major
// order within the window).
struct PoolSpec {
    Eigen::Index n, c, h, w;
    int ph, pw, sh, sw;
};

void ref_pool(const PoolSpec& s, const T4& x, const T4& dy_or_empty, T4& y, T4& dx,
              bool with_backward) {
    const Eigen::Index oh_n = (s.h - s.ph) / s.sh + 1, ow_n = (s.w - s.pw) / s.sw + 1;
    y.resize(s.n, s.c, oh_n, ow_n);
    if (with_backward) {
        dx.resize(s.n, s.c, s.h, s.w);
        dx.setZero();
    }
    for (Eigen::Index n = 0; n < s.n; ++n)
        for (Eigen::Index c = 0; c < s.c; ++c)
            for (Eigen::Index oh = 0; oh < oh_n; ++oh)
                for (Eigen::Index ow = 0; ow < ow_n; ++ow) {
                    Eigen::Index bi = oh * s.sh, bj = ow * s.sw;
                    for (int i = 0; i < s.ph; ++i)
                        for (int j = 0; j < s.pw; ++j) {
                            const Eigen::Index ih = oh * s.sh + i, iw = ow * s.sw + j;
                            if (x(n, c, ih, iw) > x(n, c, bi, bj)) bi = ih, bj = iw;
                        }
                    y(n, c, oh, ow) = x(n, c, bi, bj);
                    if (with_backward) dx(n, c, bi, bj) += dy_or_empty(n, c, oh, ow);
                }
}

void check_pool(const PoolSpec& s, std::uint64_t seed, bool small_integers) {
    INFO("pool " << s.ph << "x" << s.pw << " stride " << s.sh << "x" << s.sw << " on (N=" << s.n
                 << ": " << s.c << "," << s.h << "," << s.w << ")"
                 << (small_integers ? " with many ties" : ""));
    Rng rng(seed);
    MaxPool2D<double> pool({s.ph, s.pw}, {s.sh, s.sw});
    const Shape out = pool.build(Shape::image(s.c, s.h, s.w), rng);
    const Eigen::Index oh_n = (s.h - s.ph) / s.sh + 1, ow_n = (s.w - s.pw) / s.sw + 1;
    REQUIRE(out == Shape::image(s.c, oh_n, ow_n));

    T4 x = randn(s.n, s.c, s.h, s.w, rng);
    if (small_integers)  // values in {-1, 0, 1}: ties everywhere
        for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = double(rng.below(3)) - 1.0;
    const T4 dy = randn(s.n, s.c, oh_n, ow_n, rng);

    T4 y;
    pool.forward(x, y, true);
    T4 yref, dxref;
    ref_pool(s, x, dy, yref, dxref, true);
    require_close(y, yref, 0.0, "max pool forward (exact)");

    T4 dx(s.n, s.c, s.h, s.w);
    dx.setConstant(std::numeric_limits<double>::quiet_NaN());
    pool.backward(x, y, dy, &dx);
    require_close(dx, dxref, 1e-12, "max pool backward dx");
}

}  // namespace

TEST_CASE("Conv2D matches a direct-loop reference convolution", "[conv2d][reference]") {
    const auto V = Padding::valid, S = Padding::same;
    const auto L = Activation::linear, R = Activation::relu;
    // n, c, h, w, filters, kh, kw, stride, padding, activation
    const ConvSpec cases[] = {
        {1, 1, 5, 5, 1, 3, 3, 1, V, L},    // the simplest case
        {3, 3, 7, 6, 4, 3, 3, 1, V, R},    // C > 1, F > 1, N > 1, non-square input
        {2, 2, 9, 7, 3, 3, 3, 2, V, L},    // stride 2, odd sizes
        {2, 2, 8, 8, 3, 3, 3, 2, V, R},    // stride 2, floor drops the last row/column
        {2, 2, 6, 5, 3, 3, 2, 1, S, L},    // same, non-square even kernel: pad only at the end
        {3, 2, 7, 8, 2, 3, 3, 2, S, R},    // same + stride 2: pad 2 (1/1) rows, 1 (0/1) column
        {2, 3, 9, 7, 5, 5, 5, 2, S, R},    // same 5x5 stride 2: pad_top 2, pad_left 2
        {2, 2, 10, 9, 3, 4, 1, 3, S, L},   // stride 3, 4x1 kernel: pad_top 1, no column padding
        {4, 2, 5, 7, 2, 2, 4, 2, S, R},    // 2x4 kernel stride 2: pad_top 0, pad_left 1
        {2, 1, 6, 6, 2, 1, 1, 2, S, L},    // 1x1 kernel stride 2: no padding at all
        {2, 2, 4, 4, 2, 5, 5, 1, S, L},    // kernel larger than the input ('same' allows it)
        {2, 1, 3, 11, 3, 1, 4, 1, V, R},   // 1x4 kernel, wide input
        {2, 1, 28, 28, 4, 2, 2, 1, V, R},  // the exercise's layer
        {1, 3, 12, 12, 6, 3, 3, 1, S, L},  // lenet-like same padding, stride 1
        // Large enough that the layer works the batch in several chunks of images
        // (a few images each), the last one shorter, and on several threads.
        {5, 3, 28, 28, 8, 5, 5, 1, S, R},
        {5, 16, 20, 20, 8, 3, 3, 1, S, L},
        {3, 32, 13, 13, 16, 3, 3, 2, V, R},
    };
    // Once on one thread and once on two (the parallel paths); threads restored.
    struct Restore {
        int n = max_threads();
        ~Restore() { set_threads(n); }
    } restore;
    std::uint64_t seed = 100;
    for (const auto& c : cases) check_conv(c, seed++, {1, 2});
}

TEST_CASE("Conv2D same padding: TensorFlow's output size and padding split", "[conv2d][reference]") {
    Rng rng(3);
    for (int in : {1, 2, 5, 6, 7, 28})
        for (int k : {1, 2, 3, 4, 5})
            for (int s : {1, 2, 3}) {
                INFO("in " << in << " kernel " << k << " stride " << s);
                Conv2D<double> conv(1, {k, 1}, Activation::linear, Padding::same, s);
                const Shape out = conv.build(Shape::image(1, in, 3), rng);
                const int o = (in + s - 1) / s;
                CHECK(out.h() == o);
                CHECK(out.w() == (3 + s - 1) / s);
                CHECK(conv.pad_top() == std::max((o - 1) * s + k - in, 0) / 2);
            }
}

TEST_CASE("MaxPool2D matches a direct-loop reference (forward and dx)", "[maxpool][reference]") {
    // n, c, h, w, pool h, pool w, stride h, stride w
    const PoolSpec cases[] = {
        {2, 3, 5, 7, 2, 2, 2, 2},  // odd sizes: floor drops the last row and column
        {3, 2, 7, 7, 3, 3, 2, 2},  // overlapping windows
        {2, 1, 6, 9, 2, 3, 2, 3},  // non-square pool
        {2, 2, 9, 8, 3, 2, 1, 2},  // stride 1 vertically (heavy overlap), 2 horizontally
        {3, 2, 4, 4, 4, 4, 4, 4},  // global pooling
        {2, 2, 8, 8, 2, 2, 3, 3},  // stride > pool: gaps between windows
        {4, 4, 27, 27, 2, 2, 2, 2},  // the exercise's layer
        {2, 6, 28, 28, 2, 2, 2, 2},  // lenet5's first pool: 14 outputs a row (8 vectorised, 6 not)
        {2, 16, 10, 10, 2, 2, 2, 2}, // lenet5's second: 5 outputs a row, none vectorised
        {2, 3, 7, 6, 2, 2, 2, 2},    // odd height: the last row is dropped
        {1, 2, 2, 2, 2, 2, 2, 2},    // one window
    };
    std::uint64_t seed = 200;
    for (const auto& c : cases) {
        check_pool(c, seed++, false);
        check_pool(c, seed++, true);  // ties: first maximum in row-major order wins
    }
}

namespace {
// check_conv of every case on 1, 2 and 3 threads (thread count restored), each layer
// checked to take the strip path (`strips`) or not.
template <size_t K>
void check_on_threads(const ConvSpec (&cases)[K], std::uint64_t seed0, bool strips) {
    struct Restore {
        int n = max_threads();
        ~Restore() { set_threads(n); }
    } restore;
    std::uint64_t seed = seed0;
    for (const auto& c : cases) check_conv(c, seed++, {1, 2, 3}, strips);
}
}  // namespace

TEST_CASE("Conv2D strips (outputs over 32x32 pixels) match the direct-loop reference", "[conv2d][reference][strips]") {
    const auto V = Padding::valid, S = Padding::same;
    const auto L = Activation::linear, R = Activation::relu;
    // n, c, h, w, filters, kh, kw, stride, padding, activation. Each is checked at batch n
    // and n + 2: one image (its strips split across the threads) and several.
    const ConvSpec cases[] = {
        {1, 3, 40, 36, 5, 3, 3, 1, S, R},    // VGG-like 3x3 same: halo rows shared by strips
        {1, 4, 34, 34, 6, 1, 1, 1, V, L},    // 1x1: the GEMM reads x itself, dx written directly
        {2, 2, 70, 66, 3, 3, 3, 2, S, R},    // stride 2 (35x33 out), padding split 0/1
        {1, 2, 50, 40, 4, 7, 1, 1, S, L},    // 7x1 (Inception-B): strips at least 7 rows
        {1, 2, 40, 50, 4, 1, 7, 1, S, R},    // 1x7
        {2, 5, 33, 40, 4, 5, 5, 1, V, R},    // valid 5x5, 29x36 out
        {1, 3, 75, 75, 4, 3, 3, 2, V, L},    // Inception's stem shape, smaller: 37x37 out
        {1, 3, 260, 36, 2, 3, 3, 1, S, R},   // many strips of few rows (4 taps x 36 columns)
    };
    check_on_threads(cases, 500, /*strips=*/true);
    // Forcing the wide layout leaves strips (they need the rows layout); 32x32 outputs
    // (MNIST-sized and smaller) never use them.
    Rng rng(2);
    Conv2D<float> wide(4, {3, 3}, R, S), small(4, {3, 3}, R, S);
    wide.build(Shape::image(2, 40, 40), rng);
    CHECK(wide.strips());
    wide.set_im2col(Im2col::wide);
    CHECK_FALSE(wide.strips());
    small.build(Shape::image(2, 32, 32), rng);
    CHECK_FALSE(small.strips());
}

TEST_CASE("Conv2D on one image split across threads, and 1x1 without im2col, match the reference",
          "[conv2d][reference]") {
    const auto V = Padding::valid, S = Padding::same;
    const auto L = Activation::linear, R = Activation::relu;
    // Batch 1 (the channels and filters split across the threads, not chunks of images,
    // for products of at least kMinParallelGemm = 2^21 multiply-adds), then batch 3
    // (chunks). Outputs of at most 32x32 pixels: no strips.
    const ConvSpec cases[] = {
        {1, 32, 20, 20, 64, 3, 3, 1, S, R},    // wide layout (padded): 8.1 M multiply-adds
        {1, 32, 17, 17, 64, 1, 7, 1, S, L},    // 1x7 wide: tap rows read past a channel's plane
        {1, 32, 17, 17, 64, 7, 1, 1, S, R},    // 7x1
        {1, 64, 17, 17, 64, 3, 3, 2, V, R},    // stride 2, rows layout: 2.4 M
        {1, 512, 17, 17, 64, 1, 1, 1, V, R},   // 1x1: one image per chunk, the GEMM reads x
        {1, 40, 9, 9, 20, 1, 1, 1, V, L},      // 1x1, small: one thread at batch 1, chunks at 3
        {1, 128, 8, 8, 128, 3, 1, 1, S, R},    // 8x8 (Inception-C), 3x1: 3.1 M
        {1, 256, 8, 8, 64, 3, 3, 1, S, R},     // a big kernel (147 K weights): at batch 3,
                                               // chunks of several images (>= 512 columns)
    };
    check_on_threads(cases, 700, /*strips=*/false);
}
