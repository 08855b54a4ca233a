// Conv2D's explicit padding (PyTorch's `padding=p`) and use_bias = false:
// gradients with the one checker (gradient_check.hpp), the forward pass against a
// naive loop written from the definition, output sizes, the config keys, the model
// file round trip, files without the new keys, and bad values.
#include "gradient_check.hpp"
#include "temp_dir.hpp"

#include <array>
#include <cmath>
#include <stdexcept>

using namespace kitnn;
using kitnn_test::check_layer_gradients;
using kitnn_test::random_tensor;
using kitnn_test::TempDir;
using K = std::array<int, 2>;
using TD = Tensor<double>;

namespace {

// y[n, f, oh, ow] = b[f] + sum_{c,ki,kj} k[f, c, ki, kj] * x[n, c, oh*s + ki - pad, ow*s + kj - pad],
// x = 0 outside the image. Plain loops, nothing shared with the layer.
TD naive_conv(const TD& x, const TD& k, const TD* b, int s, int pad) {
    const Eigen::Index N = x.dimension(0), C = x.dimension(1), H = x.dimension(2), W = x.dimension(3);
    const Eigen::Index F = k.dimension(0), KH = k.dimension(2), KW = k.dimension(3);
    const Eigen::Index OH = (H + 2 * pad - KH) / s + 1, OW = (W + 2 * pad - KW) / s + 1;
    TD y(N, F, OH, OW);
    for (Eigen::Index n = 0; n < N; ++n)
        for (Eigen::Index f = 0; f < F; ++f)
            for (Eigen::Index oh = 0; oh < OH; ++oh)
                for (Eigen::Index ow = 0; ow < OW; ++ow) {
                    double acc = b ? (*b)(f, 0, 0, 0) : 0.0;
                    for (Eigen::Index c = 0; c < C; ++c)
                        for (Eigen::Index ki = 0; ki < KH; ++ki)
                            for (Eigen::Index kj = 0; kj < KW; ++kj) {
                                const Eigen::Index ih = oh * s + ki - pad, iw = ow * s + kj - pad;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    acc += k(f, c, ki, kj) * x(n, c, ih, iw);
                            }
                    y(n, f, oh, ow) = acc;
                }
    return y;
}

struct Case {
    Shape in;
    int filters, kh, kw, pad, stride;
    bool bias;
    Activation act;
    Eigen::Index batch;
};
// Explicit pad 1 and 2 with stride 1, 2 and 4, square and non-square kernels, odd
// sizes where the last window stops short of the padded edge (stride 4), with and
// without bias, fused ReLU.
const Case kCases[] = {
    {Shape::image(2, 5, 6), 3, 3, 3, 1, 1, true, Activation::linear, 2},
    {Shape::image(1, 7, 7), 2, 3, 3, 1, 2, true, Activation::linear, 3},
    {Shape::image(2, 6, 5), 3, 5, 5, 2, 1, true, Activation::relu, 2},
    {Shape::image(2, 9, 8), 2, 5, 3, 2, 2, false, Activation::linear, 2},
    {Shape::image(3, 11, 13), 2, 5, 5, 2, 4, true, Activation::linear, 2},  // AlexNet-like: k > s
    {Shape::image(1, 10, 9), 3, 3, 4, 1, 4, false, Activation::relu, 3},
    {Shape::image(2, 6, 7), 4, 3, 3, 1, 1, false, Activation::linear, 1},
};

std::string describe(const Case& c) {
    return "input " + c.in.str() + " filters " + std::to_string(c.filters) + " kernel " +
           std::to_string(c.kh) + "x" + std::to_string(c.kw) + " pad " + std::to_string(c.pad) +
           " stride " + std::to_string(c.stride) + (c.bias ? " bias" : " no bias") + " " +
           to_string(c.act);
}

}  // namespace

TEST_CASE("Conv2D explicit padding and no bias: gradients", "[gradcheck][conv2d][conv_options]") {
    for (const auto& c : kCases) {
        INFO(describe(c));
        Conv2D<double> conv(c.filters, K{c.kh, c.kw}, c.act, c.pad, c.stride, Init::glorot_uniform,
                            c.bias);
        auto r = check_layer_gradients(conv, c.in, c.batch, 17);
        CHECK(r.checked_params == c.filters * (c.in.c() * c.kh * c.kw + (c.bias ? 1 : 0)));
        CHECK(r.checked_inputs == c.batch * c.in.size());
    }
    // No bias with the other paddings too.
    Conv2D<double> same(3, K{3, 3}, Activation::relu, Padding::same, 2, Init::he_uniform, false);
    auto r = check_layer_gradients(same, Shape::image(2, 7, 6), 2, 18);
    CHECK(r.checked_params == 3 * 2 * 9);
    Conv2D<double> valid(2, K{2, 3}, Activation::linear, Padding::valid, 1, Init::glorot_uniform, false);
    r = check_layer_gradients(valid, Shape::image(3, 5, 5), 2, 19);
    CHECK(r.checked_params == 2 * 3 * 6);
}

TEST_CASE("Conv2D explicit padding: forward equals the naive definition", "[conv2d][conv_options]") {
    for (const auto& c : kCases) {
        INFO(describe(c));
        Conv2D<double> conv(c.filters, K{c.kh, c.kw}, Activation::linear, c.pad, c.stride,
                            Init::glorot_uniform, c.bias);
        Rng rng(23);
        const Shape out = conv.build(c.in, rng);
        // PyTorch's output size.
        CHECK(out == Shape::image(c.filters, (c.in.h() + 2 * c.pad - c.kh) / c.stride + 1,
                                  (c.in.w() + 2 * c.pad - c.kw) / c.stride + 1));
        if (c.bias)  // a non-zero bias, so that it is visibly added
            for (Eigen::Index i = 0; i < conv.bias().value.size(); ++i)
                conv.bias().value.data()[i] = rng.normal();
        const TD x = random_tensor(c.batch, c.in, rng);
        TD y;
        conv.forward(x, y, false);
        const TD ref =
            naive_conv(x, conv.kernel().value, c.bias ? &conv.bias().value : nullptr, c.stride, c.pad);
        REQUIRE(y.dimensions() == ref.dimensions());
        for (Eigen::Index i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == Approx(ref.data()[i]).epsilon(0).margin(1e-12));
    }
}

TEST_CASE("Conv2D explicit pad equals same padding for odd kernels at stride 1", "[conv2d][conv_options]") {
    Conv2D<double> a(4, K{3, 3}, Activation::relu, 1, 1), b(4, K{3, 3}, Activation::relu, Padding::same, 1);
    Rng ra(5), rb(5);
    a.build(Shape::image(2, 6, 7), ra);
    b.build(Shape::image(2, 6, 7), rb);
    CHECK(a.output_shape() == b.output_shape());
    CHECK(a.pad_top() == 1);
    CHECK(a.pad_left() == 1);
    Rng rx(6);
    const TD x = random_tensor(3, Shape::image(2, 6, 7), rx);
    TD ya, yb;
    a.forward(x, ya, false);
    b.forward(x, yb, false);
    for (Eigen::Index i = 0; i < ya.size(); ++i) REQUIRE(ya.data()[i] == yb.data()[i]);
}

TEST_CASE("Conv2D output sizes: torchvision AlexNet's first layer", "[conv2d][conv_options]") {
    // 11x11, stride 4, pad 2 on 224x224: (224 + 4 - 11) / 4 + 1 = 55 (valid would give 54).
    Conv2D<float> c(64, K{11, 11}, Activation::relu, 2, 4);
    Rng rng(1);
    CHECK(c.build(Shape::image(3, 224, 224), rng) == Shape::image(64, 55, 55));
    CHECK(c.param_count() == 64 * 3 * 121 + 64);
    CHECK(c.macs() == std::int64_t(64) * 3 * 121 * 55 * 55);
    Conv2D<float> nb(64, K{11, 11}, Activation::relu, 2, 4, Init::glorot_uniform, false);
    nb.build(Shape::image(3, 224, 224), rng);
    CHECK(nb.param_count() == 64 * 3 * 121);
    REQUIRE(nb.params().size() == 1);
    CHECK(nb.params()[0]->name == "kernel");
    CHECK(nb.macs() == c.macs());
}

TEST_CASE("Conv2D config: new keys only when not the default", "[conv2d][conv_options]") {
    Conv2D<float> old_style(3, K{3, 3}, Activation::relu, Padding::same, 2);
    CHECK_FALSE(old_style.config().has("pad"));
    CHECK_FALSE(old_style.config().has("use_bias"));
    Conv2D<float> e(3, K{5, 5}, Activation::linear, 2, 1, Init::he_normal, false);
    CHECK(e.config().str("padding") == "explicit");
    CHECK(e.config().str("pad") == "2");
    CHECK(e.config().str("use_bias") == "0");
    // The factory rebuilds it, and a config without the keys (an older file) means bias + no pad.
    auto l = make_layer<float>("Conv2D", e.config());
    CHECK(l->config().items() == e.config().items());
    auto o = make_layer<float>("Conv2D", old_style.config());
    Rng rng(1);
    o->build(Shape::image(2, 8, 8), rng);
    CHECK(o->params().size() == 2);
    CHECK(o->output_shape() == Shape::image(3, 4, 4));
}

TEST_CASE("Conv2D explicit padding and no bias survive the model file", "[modelfile][conv_options]") {
    Sequential<float> m(Shape::image(3, 19, 17), 9);
    m.add<Conv2D>(6, K{5, 5}, Activation::relu, 2, 4);                                  // (6, 5, 5)
    m.add<Conv2D>(4, K{3, 3}, Activation::linear, 1, 1, Init::he_uniform, false);        // (4, 5, 5)
    m.add<Conv2D>(5, K{3, 3}, Activation::relu, Padding::same, 2, Init::glorot_uniform, false);
    m.add<Flatten>();
    m.add<Dense>(3);
    REQUIRE(m.output_shape() == Shape::flat(3));
    CHECK(m.param_count() == (6 * 75 + 6) + 4 * 54 + 5 * 36 + (5 * 9 + 1) * 3);
    // Make the first bias non-zero so that a lost bias would show.
    for (Eigen::Index i = 0; i < 6; ++i) m.layer(0).params()[1]->value.data()[i] = 0.1f * float(i + 1);
    Tensor<float> x(2, 3, 19, 17);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 29 % 97) / 48.0 - 1.0);
    const Tensor<float> before = m.forward(x, false);

    TempDir dir("kitnn_conv_options");
    save_model(dir / "m.kitnn", m);
    auto l = load_model<float>(dir / "m.kitnn");
    REQUIRE(l.size() == m.size());
    CHECK(l.summary() == m.summary());
    CHECK(l.param_count() == m.param_count());
    for (size_t i = 0; i < m.size(); ++i) CHECK(l.layer(i).config().items() == m.layer(i).config().items());
    const Tensor<float> after = l.forward(x, false);
    for (Eigen::Index i = 0; i < before.size(); ++i) REQUIRE(after.data()[i] == before.data()[i]);
}

TEST_CASE("Conv2D rejects bad pad and use_bias values", "[conv2d][conv_options]") {
    CHECK_THROWS_AS(Conv2D<float>(2, K{3, 3}, Activation::linear, -1), std::invalid_argument);
    CHECK_THROWS_AS(Conv2D<float>(2, K{3, 3}, Activation::linear, 3), std::invalid_argument);
    CHECK_THROWS_AS(Conv2D<float>(2, K{1, 7}, Activation::linear, 1), std::invalid_argument);
    CHECK_NOTHROW(Conv2D<float>(2, K{3, 3}, Activation::linear, 2));
    // A kernel larger than the padded input.
    Sequential<float> m(Shape::image(1, 3, 3));
    CHECK_THROWS_AS(m.add<Conv2D>(2, K{6, 6}, Activation::linear, 1), ShapeError);
    CHECK_NOTHROW(m.add<Conv2D>(2, K{5, 5}, Activation::linear, 1));  // 3 + 2 = 5: one pixel out

    Config c = Conv2D<float>(2, K{3, 3}, Activation::linear, 1).config();
    Config bad_pad = c;
    bad_pad.set("pad", "x");
    CHECK_THROWS(make_layer<float>("Conv2D", bad_pad));
    Config no_pad = Conv2D<float>(2, K{3, 3}).config();
    no_pad.set("padding", "explicit");  // but no "pad" key
    CHECK_THROWS(make_layer<float>("Conv2D", no_pad));
    Config bad_bias = c;
    bad_bias.set("use_bias", "yes");
    CHECK_THROWS(make_layer<float>("Conv2D", bad_bias));
    // The loader's limits see the padding: 4x4 kernel on 3x3 fits only with pad >= 1.
    Config k4 = Conv2D<float>(2, K{4, 4}, Activation::linear, 1).config();
    CHECK(check_layer_limits("Conv2D", k4, Shape::image(1, 3, 3), 1 << 20, 4).empty());
    k4.set("padding", "valid");
    CHECK_FALSE(check_layer_limits("Conv2D", k4, Shape::image(1, 3, 3), 1 << 20, 4).empty());
    k4.set("padding", "explicit").set("pad", "4");
    CHECK_FALSE(check_layer_limits("Conv2D", k4, Shape::image(1, 3, 3), 1 << 20, 4).empty());
}

// ---- im2col layouts (rows, wide): the same layer, two ways of building the GEMM ----

namespace {
struct LayoutCase {
    Shape in;
    int filters, kh, kw, pad;  // pad < 0: Padding::same; stride 1 (wide needs it)
    Activation act;
    bool bias;
    Eigen::Index batch;
};
// Valid, explicit and same padding; square, wide and tall kernels, a 1-wide kernel (no
// extra columns at all), several channels; batch 10 of a 28x28 image with a 5x5 kernel
// is cut into several chunks (the chunk size is set by the layout's column count).
const LayoutCase kLayoutCases[] = {
    {Shape::image(1, 28, 28), 6, 5, 5, 2, Activation::relu, true, 10},  // lenet5's first layer
    {Shape::image(6, 14, 14), 4, 5, 5, 0, Activation::relu, true, 3},   // lenet5's second, 4 filters
    {Shape::image(1, 28, 28), 4, 2, 2, 0, Activation::relu, true, 2},   // keck's
    {Shape::image(2, 7, 9), 3, 3, 2, 1, Activation::linear, false, 2},
    {Shape::image(3, 6, 5), 2, 4, 1, 0, Activation::linear, true, 3},
    {Shape::image(2, 6, 7), 3, 3, 3, -1, Activation::relu, true, 2},
    {Shape::image(2, 5, 8), 2, 2, 4, -1, Activation::linear, true, 2},  // even kernel, same
    {Shape::image(1, 10, 9), 3, 5, 5, 2, Activation::relu, true, 2},    // lenet5's first, smaller
    // Wide layers with <= 8 filters take dW from the padded image (Im2colGeometry::
    // add_kernel_grad: kernel widths 1, 2, 3, 5 and 7 have their own code, the others
    // the plain loop): a 7-wide kernel, and fewer columns (3 x 5) than one block of
    // lanes; wide layers with more filters keep the GEMM for dW.
    {Shape::image(2, 9, 11), 3, 3, 7, -1, Activation::relu, true, 2},
    {Shape::image(1, 3, 3), 2, 3, 3, -1, Activation::linear, true, 3},
    {Shape::image(2, 8, 8), 12, 3, 3, 1, Activation::linear, true, 2},
    // Forward, wide layers of <= 64 filters and <= 512 taps compute ym tap by tap
    // (Im2colGeometry::conv_taps) in groups of <= 8 filters, the last block of columns
    // overlapping the one before: 20 filters (groups of 6, 7 and 7) over 9 x 12 = 108
    // columns; 540 taps and 65 filters keep the GEMM.
    {Shape::image(5, 9, 10), 20, 3, 3, -1, Activation::relu, true, 2},
    {Shape::image(60, 4, 4), 3, 3, 3, -1, Activation::linear, true, 2},
    {Shape::image(2, 6, 6), 65, 3, 3, 1, Activation::linear, false, 2},
    // Kernels one row high (Inception-v4's 1x7 and 1x3, which `automatic` gives the rows
    // layout above the tap-by-tap size; these small ones it gives wide): padded on the left
    // and right only.
    {Shape::image(3, 5, 9), 4, 1, 7, -1, Activation::linear, true, 2},
    {Shape::image(2, 4, 8), 10, 1, 3, -1, Activation::relu, true, 2},
};

std::unique_ptr<Conv2D<double>> make_conv(const LayoutCase& c, Im2col layout) {
    auto conv = c.pad < 0 ? std::make_unique<Conv2D<double>>(c.filters, K{c.kh, c.kw}, c.act, Padding::same, 1,
                                                             Init::glorot_uniform, c.bias)
                          : std::make_unique<Conv2D<double>>(c.filters, K{c.kh, c.kw}, c.act, c.pad, 1,
                                                             Init::glorot_uniform, c.bias);
    conv->set_im2col(layout);
    return conv;
}

std::string describe(const LayoutCase& c) {
    return "input " + c.in.str() + " filters " + std::to_string(c.filters) + " kernel " +
           std::to_string(c.kh) + "x" + std::to_string(c.kw) + " pad " +
           (c.pad < 0 ? std::string("same") : std::to_string(c.pad)) + " batch " + std::to_string(c.batch);
}
}  // namespace

TEST_CASE("Conv2D im2col layouts: gradients of the wide layout", "[gradcheck][conv2d][im2col]") {
    for (const auto& c : kLayoutCases) {
        // The 28x28 cases cost 25 s under the sanitizers here and add no geometry the
        // small ones lack (the 10x9 one is lenet5's first layer, smaller); the next test
        // compares them with the rows layout.
        if (c.in.h() * c.in.w() > 200) continue;
        INFO(describe(c));
        // Linear: with ReLU, the central differences of these many pixels cross a kink now
        // and then. The fused ReLU of the wide layout is checked against the rows layout
        // (whose ReLU is gradient-checked in test_layers.cpp) in the next test.
        LayoutCase lin = c;
        lin.act = Activation::linear;
        auto conv = make_conv(lin, Im2col::wide);
        // The gradient check evaluates the layer twice per checked value: batch 2 is enough.
        auto r = check_layer_gradients(*conv, c.in, std::min<Eigen::Index>(c.batch, 2), 31);
        CHECK(conv->im2col_layout() == Im2col::wide);
        CHECK(r.checked_params == c.filters * (c.in.c() * c.kh * c.kw + (c.bias ? 1 : 0)));
    }
}

TEST_CASE("Conv2D im2col layouts: gradients of the wide layout with its fused ReLU", "[gradcheck][conv2d][im2col]") {
    // The wide layout applies the fused ReLU in its own output pass (the padded
    // columns are dropped there), so check that pass's derivative directly, not only
    // through agreement with the rows layout. The seed is fixed and no pre-activation
    // of these cases lies within the step e = 1e-5 of the kink, so the central
    // differences are exact up to rounding.
    int checked = 0;
    for (const auto& c : kLayoutCases) {
        if (c.in.h() * c.in.w() > 200 || c.act != Activation::relu) continue;
        INFO(describe(c));
        auto conv = make_conv(c, Im2col::wide);
        auto r = check_layer_gradients(*conv, c.in, std::min<Eigen::Index>(c.batch, 2), 31);
        CHECK(conv->im2col_layout() == Im2col::wide);
        CHECK(r.checked_params == c.filters * (c.in.c() * c.kh * c.kw + (c.bias ? 1 : 0)));
        ++checked;
    }
    CHECK(checked >= 1);
}

TEST_CASE("Conv2D im2col layouts: rows and wide agree, forward and backward, with the naive forward",
          "[conv2d][im2col]") {
    for (const auto& c : kLayoutCases) {
        INFO(describe(c));
        auto rows = make_conv(c, Im2col::rows), wide = make_conv(c, Im2col::wide);
        Rng r1(41), r2(41);
        const Shape out = rows->build(c.in, r1);
        REQUIRE(wide->build(c.in, r2) == out);
        REQUIRE(rows->im2col_layout() == Im2col::rows);
        REQUIRE(wide->im2col_layout() == Im2col::wide);
        Rng rng(42);
        if (c.bias)
            for (Eigen::Index i = 0; i < rows->bias().value.size(); ++i)
                rows->bias().value.data()[i] = wide->bias().value.data()[i] = rng.normal();
        const TD x = random_tensor(c.batch, c.in, rng), dy = random_tensor(c.batch, out, rng);
        TD y1, y2, dx1, dx2;
        rows->forward(x, y1, true);
        wide->forward(x, y2, true);
        REQUIRE(y1.dimensions() == y2.dimensions());
        for (Eigen::Index i = 0; i < y1.size(); ++i) REQUIRE(y2.data()[i] == Approx(y1.data()[i]).epsilon(0).margin(1e-12));
        if (c.pad >= 0 && c.act == Activation::linear) {
            const TD ref = naive_conv(x, rows->kernel().value, c.bias ? &rows->bias().value : nullptr, 1, c.pad);
            for (Eigen::Index i = 0; i < y2.size(); ++i) REQUIRE(y2.data()[i] == Approx(ref.data()[i]).epsilon(0).margin(1e-12));
        }
        for (auto* l : {rows.get(), wide.get()})
            for (auto* p : l->params()) p->grad.setZero();
        rows->backward(x, y1, dy, &dx1);
        wide->backward(x, y2, dy, &dx2);
        for (Eigen::Index i = 0; i < dx1.size(); ++i) REQUIRE(dx2.data()[i] == Approx(dx1.data()[i]).epsilon(0).margin(1e-12));
        const auto &g1 = rows->kernel().grad, &g2 = wide->kernel().grad;
        for (Eigen::Index i = 0; i < g1.size(); ++i) REQUIRE(g2.data()[i] == Approx(g1.data()[i]).epsilon(0).margin(1e-12));
        for (Eigen::Index i = 0; i < c.filters; ++i)
            REQUIRE(wide->bias().grad.data()[i] == Approx(rows->bias().grad.data()[i]).epsilon(0).margin(1e-12));
    }
}

TEST_CASE("Conv2D im2col layouts: the automatic choice, and wide refused for stride > 1", "[conv2d][im2col]") {
    Rng rng(1);
    Conv2D<float> lenet1(6, K{5, 5}, Activation::relu, 2), lenet2(16, K{5, 5}, Activation::relu);
    Conv2D<float> keck(4, K{2, 2}, Activation::relu), strided(4, K{3, 3}, Activation::relu, Padding::same, 2);
    lenet1.build(Shape::image(1, 28, 28), rng);
    lenet2.build(Shape::image(6, 14, 14), rng);
    keck.build(Shape::image(1, 28, 28), rng);
    strided.build(Shape::image(1, 28, 28), rng);
    CHECK(lenet1.im2col_layout() == Im2col::wide);  // padding: rows would fill it row by row
    CHECK(lenet2.im2col_layout() == Im2col::wide);  // 10-pixel output rows
    CHECK(keck.im2col_layout() == Im2col::rows);    // 27-pixel rows, no padding
    CHECK(strided.im2col_layout() == Im2col::rows);
    // 1xK kernels above the tap-by-tap size (64 filters) keep rows, whose im2col needs no
    // extra column per output row; their Kx1 twins take wide, which has none for them;
    // small 1xK layers keep wide and its tap paths.
    Conv2D<float> row7(96, K{1, 7}, Activation::linear, Padding::same), col7(96, K{7, 1}, Activation::linear, Padding::same);
    Conv2D<float> small_row7(8, K{1, 7}, Activation::linear, Padding::same);
    row7.build(Shape::image(4, 17, 17), rng);
    col7.build(Shape::image(4, 17, 17), rng);
    small_row7.build(Shape::image(4, 17, 17), rng);
    CHECK(row7.im2col_layout() == Im2col::rows);
    CHECK(col7.im2col_layout() == Im2col::wide);
    CHECK(small_row7.im2col_layout() == Im2col::wide);
    CHECK_THROWS_WITH(strided.set_im2col(Im2col::wide), Catch::Contains("needs stride 1"));
    // Switched after build and after a pass: the next passes use the new layout and give
    // the same outputs and gradients.
    Tensor<float> x(3, 1, 28, 28), y_rows, y_wide, dy(3, 4, 27, 27), dx_rows, dx_wide;
    Rng rx(2);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rx.uniform());
    for (Eigen::Index i = 0; i < dy.size(); ++i) dy.data()[i] = float(rx.normal());
    keck.forward(x, y_rows, true);
    keck.backward(x, y_rows, dy, &dx_rows);
    const Tensor<float> dk_rows = keck.kernel().grad;
    keck.kernel().grad.setZero();
    keck.bias().grad.setZero();
    keck.set_im2col(Im2col::wide);
    CHECK(keck.im2col_layout() == Im2col::wide);
    keck.forward(x, y_wide, true);
    keck.backward(x, y_wide, dy, &dx_wide);
    REQUIRE(y_wide.dimension(3) == 27);
    for (Eigen::Index i = 0; i < y_rows.size(); ++i) REQUIRE(y_wide.data()[i] == Approx(y_rows.data()[i]).margin(1e-5));
    for (Eigen::Index i = 0; i < dx_rows.size(); ++i) REQUIRE(dx_wide.data()[i] == Approx(dx_rows.data()[i]).margin(1e-5));
    for (Eigen::Index i = 0; i < dk_rows.size(); ++i)
        REQUIRE(keck.kernel().grad.data()[i] == Approx(dk_rows.data()[i]).epsilon(1e-4).margin(1e-4));
}
