// kitnn's own float GEMM (core/gemm.hpp): against a double product on shapes that hit
// every edge of its blocking, in every storage it takes, and Conv2D<float>'s paths that
// use it (strips of large images, forward and backward; one image split across threads,
// forward and backward; chunks of ImageNet-sized kernels, forward and backward) against
// Conv2D<double> with the same weights.
#include "kitnn/core/gemm.hpp"
#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/conv2d.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <random>
#include <vector>

using namespace kitnn;

#if defined(__AVX512F__)
TEST_CASE("gemm::multiply equals a double product on every edge of its blocking", "[gemm]") {
    STATIC_REQUIRE(gemm::available<float>());
    STATIC_REQUIRE_FALSE(gemm::available<double>());
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    // M around the 32-row tile (and the 16-row edge kernel) and the 256-row block, N around
    // the 12-column tile (and the 4- and 8-column edge kernels),
    // K around the 256-deep slice (27 = VGG-16's first layer); leading dimensions
    // larger than the rows, and C's padding rows must stay untouched.
    const std::int64_t Ms[] = {1, 16, 17, 31, 32, 33, 48, 255, 257, 300};
    const std::int64_t Ns[] = {1, 11, 12, 13, 20, 64};
    const std::int64_t Ks[] = {1, 27, 256, 257, 600};
    // Every storage of A and B (column- or row-major) and C = or +=, each on all shapes.
    for (int variant = 0; variant < 8; ++variant) {
        const gemm::Ops ops{(variant & 1) != 0, (variant & 2) != 0, (variant & 4) != 0};
        for (std::int64_t M : Ms)
            for (std::int64_t N : Ns)
                for (std::int64_t K : Ks) {
                    INFO("M " << M << ", N " << N << ", K " << K << ", A " << (ops.a_rows ? "rows" : "cols")
                              << ", B " << (ops.b_rows ? "rows" : "cols") << (ops.add ? ", C +=" : ", C ="));
                    const std::int64_t lda = (ops.a_rows ? K : M) + 3, ldb = (ops.b_rows ? N : K) + 1, ldc = M + 5;
                    std::vector<float> A(size_t(lda * (ops.a_rows ? M : K))), B(size_t(ldb * (ops.b_rows ? K : N)));
                    std::vector<float> C(size_t(ldc * N));
                    for (auto& v : A) v = u(gen);
                    for (auto& v : B) v = u(gen);
                    for (auto& v : C) v = u(gen);
                    const std::vector<float> C0 = C;
                    const auto a = [&](std::int64_t i, std::int64_t k) { return double(A[size_t(ops.a_rows ? i * lda + k : k * lda + i)]); };
                    const auto b = [&](std::int64_t k, std::int64_t j) { return double(B[size_t(ops.b_rows ? k * ldb + j : j * ldb + k)]); };
                    gemm::multiply<float>(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, ops);
                    double worst = 0;
                    bool padding_kept = true;
                    for (std::int64_t j = 0; j < N; ++j) {
                        for (std::int64_t i = 0; i < M; ++i) {
                            double ref = ops.add ? double(C0[size_t(j * ldc + i)]) : 0.0;
                            for (std::int64_t k = 0; k < K; ++k) ref += a(i, k) * b(k, j);
                            worst = std::max(worst, std::abs(ref - C[size_t(j * ldc + i)]));
                        }
                        for (std::int64_t i = M; i < ldc; ++i) padding_kept &= C[size_t(j * ldc + i)] == C0[size_t(j * ldc + i)];
                    }
                    // float sums of K products of numbers below 1: error ~ K * 2^-24 * sqrt(K)
                    CHECK(worst <= 1e-6 * double(K) + 1e-6);
                    CHECK(padding_kept);
                }
    }
    // K = 0: C = 0 (an empty sum), or C unchanged with +=; M = 0 or N = 0: nothing written.
    std::vector<float> C(8, 5.0f);
    gemm::multiply<float>(4, 2, 0, nullptr, 4, nullptr, 1, C.data(), 4, gemm::Ops{false, false, true});
    for (float v : C) CHECK(v == 5.0f);
    gemm::multiply<float>(4, 2, 0, nullptr, 4, nullptr, 1, C.data(), 4);
    for (float v : C) CHECK(v == 0.0f);
    gemm::multiply<float>(0, 2, 3, nullptr, 1, nullptr, 3, C.data(), 1);
    for (float v : C) CHECK(v == 0.0f);
}
#endif

namespace {
// Conv2D<float> forward and backward against Conv2D<double> with the float layer's
// weights (cast), on the same input: they differ only in the float rounding.
void check_float_conv(int f, std::array<int, 2> k, Padding pad, int stride, Activation act, Shape in,
                      Eigen::Index batch, bool strips) {
    INFO(f << " filters " << k[0] << "x" << k[1] << " stride " << stride << " on " << in.str() << ", batch " << batch);
    Rng rng(3);
    Conv2D<float> cf(f, k, act, pad, stride);
    cf.build(in, rng);
    Conv2D<double> cd(f, k, act, pad, stride);
    cd.build(in, rng);
    REQUIRE(cf.strips() == strips);
    for (Eigen::Index i = 0; i < cf.kernel().value.size(); ++i) cd.kernel().value.data()[i] = cf.kernel().value.data()[i];
    for (Eigen::Index i = 0; i < cf.bias().value.size(); ++i) {
        cf.bias().value.data()[i] = 0.01f * float(i % 7) - 0.03f;  // a real bias, added after the product
        cd.bias().value.data()[i] = cf.bias().value.data()[i];
    }
    Tensor<float> xf(batch, in.c(), in.h(), in.w()), yf;
    xf.setRandom();
    Tensor<double> xd = xf.cast<double>(), yd;
    cf.forward(xf, yf, false);
    cd.forward(xd, yd, false);
    REQUIRE(yf.size() == yd.size());
    double worst = 0, scale = 0;
    for (Eigen::Index i = 0; i < yd.size(); ++i) {
        worst = std::max(worst, std::abs(double(yf.data()[i]) - yd.data()[i]));
        scale = std::max(scale, std::abs(yd.data()[i]));
    }
    CHECK(scale > 0);
    CHECK(worst <= 1e-5 * std::max(1.0, scale));
    // Backward (the strips path's dW and dx products): the same gradient in, the kernel
    // gradient and dx compared the same way.
    Tensor<float> dyf(yf.dimensions()), dxf;
    dyf.setRandom();
    Tensor<double> dyd = dyf.cast<double>(), dxd;
    cf.kernel().grad.setZero();
    cd.kernel().grad.setZero();
    cf.bias().grad.setZero();
    cd.bias().grad.setZero();
    cf.backward(xf, yf, dyf, &dxf);
    // The double layer's ReLU mask from the float output: where y is within float
    // rounding of 0 the two masks could differ, and one such value moves the kernel
    // gradient by a whole dy * x (seen with the random inputs of a reordered test).
    const Tensor<double> yfd = yf.cast<double>();
    cd.backward(xd, yfd, dyd, &dxd);
    const auto compare = [](const auto& got, const auto& want, const char* what) {
        double w = 0, sc = 0;
        for (Eigen::Index i = 0; i < want.size(); ++i) {
            w = std::max(w, std::abs(double(got.data()[i]) - double(want.data()[i])));
            sc = std::max(sc, std::abs(double(want.data()[i])));
        }
        INFO(what);
        CHECK(sc > 0);
        CHECK(w <= 1e-5 * std::max(1.0, sc));
    };
    compare(cf.kernel().grad, cd.kernel().grad, "kernel gradient");
    compare(cf.bias().grad, cd.bias().grad, "bias gradient");
    compare(dxf, dxd, "dx");
    // As a model's first layer (no dx): strips then run all at once, not by parity, and
    // strips of fewer than 64 taps take the long dot products block by block
    // (core/long_dots.hpp), added onto what the gradients already hold.
    cf.kernel().grad.setConstant(1.0f);
    cf.bias().grad.setConstant(-1.0f);
    cf.backward(xf, yf, dyf, nullptr);
    cf.kernel().grad = cf.kernel().grad - 1.0f;
    cf.bias().grad = cf.bias().grad + 1.0f;
    compare(cf.kernel().grad, cd.kernel().grad, "kernel gradient without dx");
    compare(cf.bias().grad, cd.bias().grad, "bias gradient without dx");
}
}  // namespace

TEST_CASE("Conv2D<float> strips, one-image and large-kernel chunk paths (kitnn's GEMM with AVX-512) match double, forward and backward",
          "[gemm][conv2d]") {
    struct Restore {
        int n = max_threads();
        ~Restore() { set_threads(n); }
    } restore;
    const auto S = Padding::same, V = Padding::valid;
    const auto R = Activation::relu, L = Activation::linear;
    for (int threads : {1, 2, 3}) {
        set_threads(threads);
        INFO(threads << " thread(s)");
        // Strips (outputs over 32x32): VGG-like 3x3 same with 70 filters (5 full column
        // tiles and an edge), the first layer's 27 taps, a 1x1 that reads x in place,
        // stride 2; at batch 1 and 2.
        for (Eigen::Index n : {1, 2}) {
            check_float_conv(70, {3, 3}, S, 1, R, Shape::image(16, 40, 36), n, true);
            check_float_conv(64, {3, 3}, S, 1, R, Shape::image(3, 48, 48), n, true);
            check_float_conv(13, {1, 1}, V, 1, L, Shape::image(300, 34, 34), n, true);
            check_float_conv(24, {3, 3}, V, 2, R, Shape::image(8, 75, 75), n, true);
            // Few taps (< 64) without dx on the long dot products, their tiles' edges:
            // Inception-v4's first layer, smaller (3 -> 32 at stride 2, 37x37 out, 1,369
            // pixels: not a multiple of 16); 25 taps (not a multiple of 9) and 7 filters (not of 3),
            // linear, 46x41 out; a 1x1 with 20 channels reading x in place.
            check_float_conv(32, {3, 3}, V, 2, R, Shape::image(3, 75, 75), n, true);
            check_float_conv(7, {5, 5}, V, 1, L, Shape::image(1, 50, 45), n, true);
            check_float_conv(5, {1, 1}, V, 1, R, Shape::image(20, 40, 40), n, true);
        }
        // One image split across threads (17x17 and 8x8 layers, >= 2^21 multiply-adds):
        // 1x1 reading x, 1x7 in the wide layout, 3x3 with 600 taps (K past one slice).
        check_float_conv(200, {1, 1}, V, 1, R, Shape::image(384, 17, 17), 1, false);
        check_float_conv(96, {1, 7}, S, 1, L, Shape::image(64, 17, 17), 1, false);
        check_float_conv(100, {3, 3}, S, 1, R, Shape::image(300, 8, 8), 1, false);
        // The chunk path (outputs of at most 32x32, several images) with kernels of
        // ImageNet size (>= 2^16 weights: own_chunk_gemm): a 1x1 reading x image by image
        // (Inception-v4's 17x17), 3x3 "same" in the wide layout, 1x7 in rows, stride 2 in
        // rows. At batch 1 their backward splits the image across the threads
        // (backward_one_image), also with one channel per thread (4 channels, 3 threads).
        for (Eigen::Index n : {1, 3}) {
            check_float_conv(200, {1, 1}, V, 1, R, Shape::image(384, 17, 17), n, false);
            check_float_conv(130, {3, 3}, S, 1, R, Shape::image(64, 12, 12), n, false);
            check_float_conv(96, {1, 7}, S, 1, L, Shape::image(100, 17, 17), n, false);
            check_float_conv(128, {3, 3}, V, 2, R, Shape::image(64, 21, 21), n, false);
            check_float_conv(2000, {3, 3}, S, 1, L, Shape::image(4, 8, 8), n, false);
        }
    }
}

TEST_CASE("Conv2D: which layers split one image's backward across the threads", "[gemm][conv2d]") {
    struct Restore {
        int n = max_threads();
        ~Restore() { set_threads(n); }
    } restore;
    const auto built = [](int f, std::array<int, 2> k, Padding pad, int stride, Shape in) {
        Rng rng(1);
        auto c = std::make_unique<Conv2D<float>>(f, k, Activation::relu, pad, stride);
        c->build(in, rng);
        return c;
    };
    // VGG-16's 14x14 and 28x28 layers, Inception-v4's 17x17 1x1, a stride-2 layer in rows.
    const auto vgg14 = built(512, {3, 3}, Padding::same, 1, Shape::image(512, 14, 14));
    const auto vgg28 = built(512, {3, 3}, Padding::same, 1, Shape::image(256, 28, 28));
    const auto inc17 = built(384, {1, 1}, Padding::valid, 1, Shape::image(1024, 17, 17));
    const auto red = built(384, {3, 3}, Padding::valid, 2, Shape::image(384, 35, 35));
    // MNIST's largest kernels (best: 64 x 32 x 3 x 3) keep the chunk path and Eigen's rounding,
    // and so do strips (VGG-16's 56x56 layers).
    const auto mnist = built(64, {3, 3}, Padding::same, 1, Shape::image(32, 14, 14));
    const auto vgg56 = built(256, {3, 3}, Padding::same, 1, Shape::image(256, 56, 56));
    set_threads(1);
    CHECK_FALSE(vgg14->splits_one_image_backward());
    set_threads(2);
    CHECK(vgg14->splits_one_image_backward() == gemm::available<float>());
    CHECK(vgg28->splits_one_image_backward() == gemm::available<float>());
    CHECK(inc17->splits_one_image_backward() == gemm::available<float>());
    CHECK(red->splits_one_image_backward() == gemm::available<float>());
    CHECK_FALSE(mnist->splits_one_image_backward());
    CHECK_FALSE(vgg56->splits_one_image_backward());
}
