// onnx_probe — the kitnn side of the ONNX runtime checks (tests/onnx/*.py).
//
//   onnx_probe predict MODEL IN.f32 OUT.f32 [logits]
//       MODEL is .kitnn or .onnx (imported); IN holds N samples of the model's input
//       shape as raw float32; OUT gets (N, K) float32: probabilities (Sequential::
//       predict), or the raw outputs with `logits`.
//   onnx_probe imagenet NAME SEED OUT.onnx IN.f32 OUT.f32
//       builds zoo_imagenet's NAME with random weights (and random BatchNorm
//       statistics, so BatchNorm is not the identity), writes it as ONNX (no softmax)
//       and its raw outputs for the samples in IN: no .kitnn file of VGG-16's 553 MB.
//   onnx_probe roundtrip MODEL.kitnn OUT.onnx
//       exports MODEL, imports OUT.onnx again and fails unless both give bit-identical
//       outputs on 64 random inputs.
#include <kitnn/io/model_file.hpp>
#include <kitnn/onnx/onnx.hpp>
#include <kitnn/zoo.hpp>
#include <kitnn/zoo_imagenet.hpp>

#include <cstring>
#include <fstream>
#include <iostream>

using namespace kitnn;

namespace {

Tensor<float> read_samples(const std::string& path, const Shape& s) {
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) throw std::runtime_error(path + ": cannot open");
    const auto bytes = std::int64_t(f.tellg());
    const std::int64_t per = s.size() * 4;
    if (bytes % per) throw std::runtime_error(path + ": size is not a whole number of samples " + s.str());
    const auto c = s.chw();
    Tensor<float> x(bytes / per, c[0], c[1], c[2]);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(x.data()), bytes);
    return x;
}

void write_raw(const std::string& path, const float* p, std::int64_t n) {
    write_file_atomic(path, std::vector<char>(reinterpret_cast<const char*>(p), reinterpret_cast<const char*>(p + n)));
}

Sequential<float> load_any(const std::string& path) {
    if (path.size() > 5 && path.substr(path.size() - 5) == ".onnx") return load_onnx<float>(path);
    return load_model<float>(path);
}

// Forward in batches of 16, raw outputs.
Tensor<float> outputs(Sequential<float>& m, const Tensor<float>& x) {
    const Eigen::Index N = x.dimension(0), per_in = m.input_shape().size(), per_out = m.output_shape().size();
    Tensor<float> y(N, per_out, 1, 1);
    const auto c = m.input_shape().chw();
    for (Eigen::Index s = 0; s < N; s += 16) {
        const Eigen::Index b = std::min<Eigen::Index>(16, N - s);
        Tensor<float> chunk(b, c[0], c[1], c[2]);
        std::copy(x.data() + s * per_in, x.data() + (s + b) * per_in, chunk.data());
        const auto& z = m.forward(chunk, false);
        std::copy(z.data(), z.data() + b * per_out, y.data() + s * per_out);
    }
    return y;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const std::string cmd = argc > 1 ? argv[1] : "";
        if (cmd == "predict" && (argc == 5 || argc == 6)) {
            auto m = load_any(argv[2]);
            const auto x = read_samples(argv[3], m.input_shape());
            const bool logits = argc == 6 && std::string(argv[5]) == "logits";
            const auto y = logits ? outputs(m, x) : m.predict(x);
            write_raw(argv[4], y.data(), y.size());
            return 0;
        }
        if (cmd == "imagenet" && argc == 7) {
            auto m = zoo::imagenet_model<float>(argv[2], std::stoull(argv[3]));
            Rng rng(std::stoull(argv[3]) + 7);
            detail::for_each_layer(m, [&](const std::string&, Layer<float>& l) {
                if (auto* bn = dynamic_cast<BatchNorm<float>*>(&l))
                    for (Eigen::Index c = 0; c < bn->moving_mean().value.size(); ++c) {
                        bn->moving_mean().value.data()[c] = float(rng.uniform() - 0.5) * 0.2f;
                        bn->moving_variance().value.data()[c] = 0.5f + float(rng.uniform());
                        bn->gamma().value.data()[c] = 0.75f + 0.5f * float(rng.uniform());
                        bn->beta().value.data()[c] = float(rng.uniform() - 0.5) * 0.2f;
                    }
            });
            save_onnx(argv[4], m);
            const auto x = read_samples(argv[5], m.input_shape());
            const auto y = outputs(m, x);
            write_raw(argv[6], y.data(), y.size());
            return 0;
        }
        if (cmd == "roundtrip" && argc == 4) {
            auto m = load_model<float>(argv[2]);
            save_onnx(argv[3], m);
            auto back = load_onnx<float>(argv[3]);
            const auto c = m.input_shape().chw();
            Tensor<float> x(64, c[0], c[1], c[2]);
            Rng rng(5);
            for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform());
            const auto a = outputs(m, x), b = outputs(back, x);
            if (std::memcmp(a.data(), b.data(), size_t(a.size()) * 4) != 0) {
                std::cerr << "roundtrip: outputs differ after kitnn -> ONNX -> kitnn\n";
                return 1;
            }
            std::cout << "roundtrip: " << argv[2] << ": identical outputs on 64 inputs\n";
            return 0;
        }
        std::cerr << "usage: onnx_probe predict MODEL IN.f32 OUT.f32 [logits] | imagenet NAME SEED OUT.onnx IN.f32 OUT.f32 | roundtrip MODEL.kitnn OUT.onnx\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "onnx_probe: " << e.what() << "\n";
        return 1;
    }
}
