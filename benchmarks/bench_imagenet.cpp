// kitnn_bench_imagenet — the ImageNet-sized zoo networks (zoo_imagenet.hpp: alexnet,
// vgg16, inception_v4) timed like their PyTorch counterpart (benchmarks/torch_imagenet.py),
// so that benchmarks/compare_imagenet.sh can run the two alternately:
//
//   kitnn_bench_imagenet --model vgg16 --batch 8 --mode forward|train [--repeats 5] [--threads 2]
//   kitnn_bench_imagenet --layers [--model vgg16] [--batch 1] [--markdown]
//
// forward: inference mode (no dropout, BatchNorm from its moving statistics), random
//   N(0, 1) input of (batch, 3, 224, 224) (inception_v4: 299x299), float.
// train: one training step as mnist_train runs it (train_step: forward in training mode,
//   fused softmax + cross-entropy against random labels, zero_grad, backward, Adam).
// Both: one untimed warm-up (it sizes every buffer and workspace), then the median of
// --repeats timed passes; the last line on stdout is JSON with the peer's fields
// (framework, model, batch, mode, threads, repeats, median_ms, min_ms, params).
//
// --layers: every Conv2D of the model (inside branches too) on its own, on the input it
// gets in a real forward pass: forward, and backward (kernel gradient, and the input
// gradient except for the model's first layer, as in training), each the median of
// --repeats; GFLOP/s = 2 * multiply-adds / time (backward: twice that with the input
// gradient); "% GEMM" divides by the rate of Eigen's own 1024x1024x1024 float GEMM
// measured in the same run on the same threads (the ceiling of a convolution built on
// that GEMM; with AVX-512 the rate of kitnn's own GEMM, core/gemm.hpp, is printed beside
// it: the products of strips and of one image run on it, so they can pass 100 %). Then
// the forward time of every leaf layer summed by type, against the whole model's forward.
// GFLOP/s counts the direct convolution's multiply-adds whatever the algorithm: layers
// whose forward takes Winograd's F(2x2, 3x3) (layout "winograd", layers/winograd.hpp) do
// 2.25x fewer in their products, those on F(m, K) along a 1xK or Kx1 kernel (layout
// "winograd1d", layers/winograd_1d.hpp) 1.75x (K = 7) or 2x (K = 3) fewer, so they can
// pass 100 % by that much.
//
// --conv-algorithm gemm|winograd: every Conv2D's inference forward on im2col + GEMM, or
// that of every layer which admits it (3x3, 1xK and Kx1 of stride 1) on Winograd's
// algorithm (default auto: the layer decides).
#include <kitnn/kitnn.hpp>
#include <kitnn/zoo_imagenet.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

using Clock = std::chrono::steady_clock;

struct Timing {
    double median_ms, min_ms;
};

// Median and minimum of `repeats` calls of f, after one untimed warm-up call.
Timing time_it(int repeats, const std::function<void()>& f) {
    f();
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = Clock::now();
        f();
        ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const size_t n = ms.size();
    return {n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2, ms.front()};
}

void fill_normal(Tensor<float>& x, std::uint64_t seed) {
    Rng rng(seed ^ 0x1ace);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.normal());
}

Tensor<float> random_input(const Sequential<float>& m, int batch, std::uint64_t seed) {
    const auto c = m.input_shape().chw();
    Tensor<float> x(batch, c[0], c[1], c[2]);
    fill_normal(x, seed);
    return x;
}

// Eigen's float GEMM, 1024^3, on the current thread count: GFLOP/s (median of 5).
double gemm_gflops() {
    const Eigen::Index n = 1024;
    Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
    const Timing t = time_it(5, [&] { c.noalias() = a * b; });
    if (!std::isfinite(c(0, 0))) throw std::runtime_error("GEMM reference gave a non-finite value");
    return 2.0 * double(n) * n * n / (t.median_ms * 1e6);
}

// kitnn's own float GEMM (core/gemm.hpp; AVX-512 builds only), the same 1024^3 product with
// its columns split across the threads, each thread one single-threaded call (as the
// strips of a large convolution run it): GFLOP/s (median of 5), or 0 when not built.
double own_gemm_gflops(int threads) {
    if constexpr (!gemm::available<float>()) {
        (void)threads;
        return 0;
    } else {
        const Eigen::Index n = 1024;
        Eigen::MatrixXf a = Eigen::MatrixXf::Random(n, n), b = Eigen::MatrixXf::Random(n, n), c(n, n);
        const Timing t = time_it(5, [&] {
            parallel_for_threads(threads, threads, [&](std::int64_t k, int) {
                const Eigen::Index j0 = n * k / threads, j1 = n * (k + 1) / threads;
                gemm::multiply<float>(n, j1 - j0, n, a.data(), n, b.data() + j0 * n, n, c.data() + j0 * n, n);
            });
        });
        if (!std::isfinite(c(0, 0))) throw std::runtime_error("kitnn's GEMM gave a non-finite value");
        return 2.0 * double(n) * n * n / (t.median_ms * 1e6);
    }
}

std::string fixed(double v, int decimals) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}

// --conv-algorithm gemm|winograd: every Conv2D (inside branches too: for_each_layer) gets
// that algorithm; winograd only the layers that admit it (3x3, 1xK and Kx1 of stride 1).
void force_algorithm(Sequential<float>& m, const std::string& algorithm) {
    if (algorithm == "auto") return;
    detail::for_each_layer(m, [&](const std::string&, Layer<float>& l) {
        auto* conv = dynamic_cast<Conv2D<float>*>(&l);
        if (!conv) return;
        if (algorithm == "gemm") conv->set_algorithm(ConvAlgorithm::gemm);
        else if (conv->winograd_possible()) conv->set_algorithm(ConvAlgorithm::winograd);
    });
}

int run_whole(const std::string& name, int batch, const std::string& mode, int repeats, int threads,
              std::uint64_t seed, const std::string& algorithm) {
    Sequential<float> m = zoo::imagenet_model<float>(name, seed);
    force_algorithm(m, algorithm);
    Tensor<float> x = random_input(m, batch, seed);
    Timing t{};
    if (mode == "forward") {
        t = time_it(repeats, [&] {
            const Tensor<float>& y = m.forward(x, false);
            if (!std::isfinite(y.data()[0])) throw std::runtime_error("the forward pass gave a non-finite output");
        });
    } else {
        Adam<float> adam;
        SoftmaxCrossEntropy<float> ce;
        std::vector<std::uint8_t> labels(static_cast<size_t>(batch));
        Rng rng(seed);
        // 1000 classes do not fit the uint8 labels of the MNIST loss: the labels only pick
        // which logit the loss pulls up, any of the first 256 does for timing.
        for (auto& l : labels) l = std::uint8_t(rng.below(256));
        Tensor<float> dlogits;
        t = time_it(repeats, [&] { train_step(m, adam, ce, x, labels, dlogits); });
    }
    std::printf("{\"framework\":\"kitnn\",\"model\":\"%s\",\"batch\":%d,\"mode\":\"%s\",\"threads\":%d,"
                "\"repeats\":%d,\"median_ms\":%.3f,\"min_ms\":%.3f,\"params\":%lld}\n",
                name.c_str(), batch, mode.c_str(), threads, repeats, t.median_ms, t.min_ms,
                static_cast<long long>(m.param_count()));
    return 0;
}

// A layer that does not hold others, with the input it gets in a real forward pass.
struct Leaf {
    Layer<float>* layer;
    const Tensor<float>* in;
    std::string where;  // "12" or "12.b1.3": layer 3 of branch 1 of layer 12
};

// Runs `l` forward on `in` into `out` (inference mode), recording every leaf below it.
// Branch outputs are kept in `store` (a deque: stable addresses) for the leaves' inputs.
void walk(Layer<float>& l, const Tensor<float>& in, Tensor<float>& out, const std::string& where,
          std::vector<Leaf>& leaves, std::deque<Tensor<float>>& store) {
    if (l.branch_count() == 0) {
        leaves.push_back({&l, &in, where});
    } else {
        for (size_t b = 0; b < l.branch_count(); ++b) {
            const Tensor<float>* cur = &in;
            const auto layers = l.branch(b);
            for (size_t i = 0; i < layers.size(); ++i) {
                store.emplace_back();
                walk(*layers[i], *cur, store.back(), where + ".b" + std::to_string(b) + "." + std::to_string(i),
                     leaves, store);
                cur = &store.back();
            }
        }
    }
    l.forward(in, out, false);
}

// --im2col rows|wide: every stride-1 Conv2D (inside branches too) gets that layout.
void force_im2col(Layer<float>& l, const std::string& layout) {
    for (size_t b = 0; b < l.branch_count(); ++b)
        for (Layer<float>* sub : l.branch(b)) force_im2col(*sub, layout);
    if (auto* conv = dynamic_cast<Conv2D<float>*>(&l); conv && layout != "auto")
        if (layout == "rows" || conv->stride() == 1) conv->set_im2col(layout == "rows" ? Im2col::rows : Im2col::wide);
}

int run_layers(const std::string& name, int batch, int repeats, int threads, std::uint64_t seed,
               bool markdown, const std::string& im2col, const std::string& algorithm) {
    Sequential<float> m = zoo::imagenet_model<float>(name, seed);
    for (size_t i = 0; i < m.size(); ++i) force_im2col(m.layer(i), im2col);
    force_algorithm(m, algorithm);
    Tensor<float> x = random_input(m, batch, seed);
    const double gemm = gemm_gflops();
    std::printf("Eigen GEMM 1024^3 float, %d thread(s): %.1f GFLOP/s\n", threads, gemm);
    if (const double own = own_gemm_gflops(threads); own > 0)
        std::printf("kitnn GEMM (core/gemm.hpp: strips, one image) 1024^3 float, "
                    "%d thread(s): %.1f GFLOP/s\n", threads, own);
    std::printf("\n");
    if (markdown)
        std::printf("| layer | input -> output | K x N per image | layout | forward ms | GFLOP/s | %% GEMM "
                    "| backward ms | GFLOP/s | %% GEMM |\n| --- | --- | --- | --- | ---: | ---: | ---: | ---: "
                    "| ---: | ---: |\n");
    else
        std::printf("%-10s %-28s %-16s %-10s %10s %8s %7s %11s %8s %7s\n", "layer", "input -> output",
                    "K x N / image", "layout", "fwd ms", "GFLOP/s", "%GEMM", "bwd ms", "GFLOP/s", "%GEMM");
    // Every leaf layer (inside Branches too) with its input, from one real forward pass.
    std::vector<Leaf> leaves;
    std::deque<Tensor<float>> store;
    std::vector<Tensor<float>> acts(m.size());
    for (size_t i = 0; i < m.size(); ++i) walk(m.layer(i), i ? acts[i - 1] : x, acts[i], std::to_string(i), leaves, store);
    double fwd_total = 0, bwd_total = 0, fwd_flop = 0, bwd_flop = 0;
    std::map<std::string, double> by_type;  // forward ms of all leaves, by type
    for (const Leaf& leaf : leaves) {
        Tensor<float> y, dy, dx;
        leaf.layer->forward(*leaf.in, y, false);
        const Timing tf = time_it(repeats, [&] { leaf.layer->forward(*leaf.in, y, false); });
        by_type[leaf.layer->type()] += tf.median_ms;
        auto* conv = dynamic_cast<Conv2D<float>*>(leaf.layer);
        if (!conv) continue;
        dy.resize(y.dimensions());
        fill_normal(dy, seed + leaves.size());
        // The model's first layer gets no input gradient (Sequential::backward passes none).
        Tensor<float>* want_dx = leaf.in == &x ? nullptr : &dx;
        const Timing tb = time_it(repeats, [&] { conv->backward(*leaf.in, y, dy, want_dx); });
        const double flop = 2.0 * double(conv->macs()) * batch;  // forward
        const double bflop = want_dx ? 2 * flop : flop;            // dW (+ dx)
        const double gf = flop / (tf.median_ms * 1e6), gb = bflop / (tb.median_ms * 1e6);
        fwd_total += tf.median_ms;
        bwd_total += tb.median_ms;
        fwd_flop += flop;
        bwd_flop += bflop;
        const Shape si = conv->input_shape(), so = conv->output_shape();
        const std::string shapes = si.str() + " -> " + so.str();
        const std::string kn = std::to_string(conv->kernel().value.size() / so.c()) + " x " +
                               std::to_string(so.h() * so.w());
        const bool square = conv->kernel().value.dimension(2) == conv->kernel().value.dimension(3);
        const std::string layout = conv->winograd_forward(batch) ? (square ? "winograd" : "winograd1d")
                                   : conv->strips()               ? "strips"
                                   : conv->im2col_layout() == Im2col::wide ? "wide"
                                                                           : "rows";
        if (markdown)
            std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", leaf.where.c_str(), shapes.c_str(),
                        kn.c_str(), layout.c_str(), fixed(tf.median_ms, 2).c_str(), fixed(gf, 1).c_str(),
                        fixed(100 * gf / gemm, 0).c_str(), fixed(tb.median_ms, 2).c_str(), fixed(gb, 1).c_str(),
                        fixed(100 * gb / gemm, 0).c_str());
        else
            std::printf("%-10s %-28s %-16s %-10s %10.2f %8.1f %6.0f%% %11.2f %8.1f %6.0f%%\n", leaf.where.c_str(),
                        shapes.c_str(), kn.c_str(), layout.c_str(), tf.median_ms, gf, 100 * gf / gemm, tb.median_ms,
                        gb, 100 * gb / gemm);
        std::fflush(stdout);
    }
    std::printf("\nall Conv2D layers: forward %.1f ms (%.1f GFLOP/s, %.0f%% of GEMM), backward %.1f ms "
                "(%.1f GFLOP/s, %.0f%%); batch %d, %d thread(s), median of %d\n",
                fwd_total, fwd_flop / (fwd_total * 1e6), 100 * fwd_flop / (fwd_total * 1e6) / gemm, bwd_total,
                bwd_flop / (bwd_total * 1e6), 100 * bwd_flop / (bwd_total * 1e6) / gemm, batch, threads, repeats);
    // Where the rest of the forward pass goes: every leaf type, and the whole model.
    const Timing whole = time_it(repeats, [&] { m.forward(x, false); });
    double leaves_ms = 0;
    std::printf("\nforward by layer type (every leaf timed alone, inside branches too):\n");
    for (const auto& [type, ms] : by_type) {
        std::printf("  %-18s %9.2f ms\n", type.c_str(), ms);
        leaves_ms += ms;
    }
    std::printf("  %-18s %9.2f ms  (whole model %.2f ms - the leaves: branch concatenation, hand-over)\n", "rest",
                whole.median_ms - leaves_ms, whole.median_ms);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"The ImageNet-sized zoo networks timed like benchmarks/torch_imagenet.py (forward or a "
                 "training step), or every Conv2D of one of them against Eigen's GEMM (--layers)."};
    std::string model = "vgg16", mode = "forward";
    int batch = 1, repeats = 5, threads = max_threads();
    std::uint64_t seed = 1;
    bool layers = false, markdown = false;
    std::string im2col = "auto", algorithm = "auto";
    app.add_option("--model", model, "network (zoo_imagenet.hpp)")
        ->check(CLI::IsMember(zoo::imagenet_models()))->capture_default_str();
    app.add_option("--batch", batch, "images per pass")->check(CLI::Range(1, 4096))->capture_default_str();
    app.add_option("--mode", mode, "forward (inference) or train (one Adam step)")
        ->check(CLI::IsMember({"forward", "train"}))->capture_default_str();
    app.add_option("--repeats", repeats, "timed passes after one warm-up; the median is reported")
        ->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_option("--threads", threads, "OpenMP/Eigen threads (default: all cores)")
        ->check(CLI::Range(1, 1024))->capture_default_str();
    app.add_option("--seed", seed, "seed of the random weights, input and labels")->capture_default_str();
    app.add_flag("--layers", layers, "time every Conv2D of --model alone, forward and backward, against GEMM");
    app.add_option("--im2col", im2col, "with --layers: the im2col layout of every Conv2D (stride-1 ones for wide)")
        ->check(CLI::IsMember({"auto", "rows", "wide"}))->capture_default_str();
    app.add_option("--conv-algorithm", algorithm,
                   "every Conv2D's inference forward: auto (each layer decides), gemm (im2col + GEMM) or winograd "
                   "(F(2x2,3x3) on the 3x3 stride-1 layers, F(m,K) on the 1xK and Kx1 ones)")
        ->check(CLI::IsMember({"auto", "gemm", "winograd"}))->capture_default_str();
    app.add_flag("--markdown", markdown, "with --layers: print the table as Markdown");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {  // a bad flag or value: its message, status 2
        std::fprintf(stderr, "kitnn_bench_imagenet: %s\nRun with --help for the options.\n", e.what());
        return 2;
    }
    try {
        set_threads(threads);
        return layers ? run_layers(model, batch, repeats, threads, seed, markdown, im2col, algorithm)
                      : run_whole(model, batch, mode, repeats, threads, seed, algorithm);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kitnn_bench_imagenet: %s\n", e.what());
        return 1;
    }
}
