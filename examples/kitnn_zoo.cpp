// kitnn_zoo — every network of the zoo in one table: input, parameters, multiply-adds
// per image and the measured forward time of one image on this CPU.
//
//   kitnn_zoo [--only NAME] [--repeats 5] [--threads N] [--seed 1] [--markdown]
//   kitnn_zoo --summary NAME          the model's Keras-style summary, nothing timed
//
// The MNIST-sized models (zoo.hpp: the exercise's keck, lenet5, kerascnn, ...) come
// first, then the ImageNet-sized ones (zoo_imagenet.hpp: alexnet, vgg16,
// inception_v4). The ImageNet ones are only built and run forward (random weights,
// random input): the time is what a trained copy would take too.
//
// Time: a batch of ONE image in float, in inference mode (no dropout, BatchNorm from
// its moving statistics), through Sequential::forward. One untimed warm-up pass
// sizes the buffers and workspaces; then the median of --repeats passes. With one
// image the parallelism is inside the layers (Eigen's threaded GEMM for the big
// convolutions and dense layers, OpenMP in the pools), so --threads matters mainly
// for the ImageNet-sized models.
// Multiply-adds: Sequential::macs(), the sum of the layers' macs(): Conv2D
// F*C*KH*KW*OH*OW, Dense IN*OUT, BatchNorm 2 per value; pools, activations, dropout
// and the branch concatenation count 0 (docs/models.md compares this with the
// published figures).
#include "cli.hpp"

#include <kitnn/kitnn.hpp>
#include <kitnn/zoo_imagenet.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

std::vector<std::string> all_models() {
    std::vector<std::string> r = zoo::mnist_models();
    for (auto& n : zoo::imagenet_models()) r.push_back(n);
    return r;
}

bool is_imagenet(const std::string& name) {
    const auto v = zoo::imagenet_models();
    return std::find(v.begin(), v.end(), name) != v.end();
}

Sequential<float> make_model(const std::string& name, std::uint64_t seed) {
    return is_imagenet(name) ? zoo::imagenet_model<float>(name, seed) : zoo::mnist_model<float>(name, seed);
}

// "(3, 224, 224)" -> "3x224x224"
std::string shape_text(const Shape& s) {
    std::string r;
    for (auto d : s.dims) r += (r.empty() ? "" : "x") + std::to_string(d);
    return r;
}

std::string ms_text(double ms) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(ms < 1 ? 3 : ms < 100 ? 2 : 0) << ms << " ms";
    return s.str();
}

// Median forward time of one image, in milliseconds, after one warm-up pass.
double time_forward(Sequential<float>& m, int repeats, std::uint64_t seed) {
    const auto c = m.input_shape().chw();
    Tensor<float> x(1, c[0], c[1], c[2]);
    Rng rng(seed ^ 0x1ace);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform());
    m.forward(x, false);  // warm-up: sizes every buffer and workspace
    std::vector<double> ms;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const Tensor<float>& y = m.forward(x, false);
        const auto t1 = std::chrono::steady_clock::now();
        if (!std::isfinite(y.data()[0])) throw std::runtime_error("the forward pass gave a non-finite output");
        ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    const size_t n = ms.size();
    return n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Every zoo network in one table: parameters, multiply-adds per image and the "
                 "forward time of one image on this CPU."};
    std::string only, summary;
    int repeats = 5, threads = max_threads();
    std::uint64_t seed = 1;
    bool markdown = false;
    const auto names = all_models();
    app.add_option("--only", only, "time only this model (a row of the table)")->check(CLI::IsMember(names));
    app.add_option("--summary", summary, "print this model's Keras-style summary instead of the table")
        ->check(CLI::IsMember(names));
    app.add_option("--repeats", repeats, "timed forward passes per model (after one warm-up); the median is shown")
        ->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_option("--threads", threads, "OpenMP/Eigen threads (default: all cores)")
        ->check(CLI::Range(1, 1024))->capture_default_str();
    app.add_option("--seed", seed, "seed for the random weights and input")->capture_default_str();
    app.add_flag("--markdown", markdown, "print the table as Markdown");
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    return kitnn_examples::guarded("kitnn_zoo", [&] {
        set_threads(threads);
        if (!summary.empty()) {
            Sequential<float> m = make_model(summary, seed);
            std::cout << m.summary(summary);
            std::cout << "Input: " << shape_text(m.input_shape()) << ", multiply-adds per image: "
                      << Sequential<float>::group(m.macs()) << "\n";
            return 0;
        }
        const std::vector<std::string> rows = only.empty() ? names : std::vector<std::string>{only};
        const char* head[] = {"model", "input", "parameters", "multiply-adds", "forward (1 image)"};
        const int width[] = {14, 12, 13, 17, 19};
        if (markdown) {
            std::cout << "| " << head[0] << " | " << head[1] << " | " << head[2] << " | " << head[3]
                      << " | " << head[4] << " |\n| --- | --- | ---: | ---: | ---: |\n";
        } else {
            std::cout << std::left << std::setw(width[0]) << head[0] << std::setw(width[1]) << head[1]
                      << std::right;
            for (int k = 2; k < 5; ++k) std::cout << std::setw(width[k]) << head[k];
            std::cout << "\n" << std::string(14 + 12 + 13 + 17 + 19, '-') << "\n";
        }
        for (const auto& name : rows) {
            Sequential<float> m = make_model(name, seed);
            const double ms = time_forward(m, repeats, seed);
            const std::string params = Sequential<float>::group(m.param_count());
            const std::string macs = Sequential<float>::group(m.macs());
            if (markdown)
                std::cout << "| " << name << " | " << shape_text(m.input_shape()) << " | " << params << " | "
                          << macs << " | " << ms_text(ms) << " |\n";
            else
                std::cout << std::left << std::setw(width[0]) << name << std::setw(width[1])
                          << shape_text(m.input_shape()) << std::right << std::setw(width[2]) << params
                          << std::setw(width[3]) << macs << std::setw(width[4]) << ms_text(ms) << "\n";
            std::cout.flush();  // the big models take seconds each: show rows as they come
        }
        std::cout << "\nforward: float, batch of 1, inference mode, median of " << repeats
                  << " after a warm-up, " << threads << " thread(s)\n"
                  << "multiply-adds: per image, Conv2D and Dense weights plus BatchNorm's 2 per value\n";
        return 0;
    });
}
