// onnx_probe — the kitnn side of the ONNX runtime checks (tests/onnx/*.py).
//
//   onnx_probe predict MODEL IN.f32 OUT.f32 [logits]
//       MODEL is .kitnn or .onnx (imported); IN holds N samples of the model's input
//       shape as raw float32; OUT gets (N, K) float32: probabilities (Sequential::
//       predict), or the raw outputs with `logits`.
//   onnx_probe imagenet NAME SEED OUT.onnx IN.f32 OUT.f32 [roundtrip]
//       builds zoo_imagenet's NAME with random weights (and random BatchNorm
//       statistics, so BatchNorm is not the identity), runs libonnx's checker on its
//       ONNX form (in memory: the Python checker re-parses 553 MB of VGG-16 slowly),
//       writes it (no softmax) and its raw outputs for the samples in IN: no .kitnn
//       file of VGG-16's 553 MB. With `roundtrip`, also imports OUT.onnx and fails
//       unless the imported model's outputs are bit-identical.
//   onnx_probe seeds DIR
//       writes the fuzz seed corpus (tests/fuzz/corpus/onnx): tiny models with every
//       layer type and Branches form, a hand-built graph with MatMul + Add, Reshape,
//       a Constant node, float_data weights, and truncated copies. Each under ~3 KB.
//   onnx_probe roundtrip MODEL.kitnn OUT.onnx
//       exports MODEL, imports OUT.onnx again and fails unless both give bit-identical
//       outputs on 64 random inputs.
// First: onnx/defs/parser.h has an enumerator MAP_TYPE, a macro in <sys/mman.h>.
#include <onnx/checker.h>

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

void seeds(const std::string& dir) {
    auto put = [&](const std::string& name, const std::vector<char>& b) { write_file_atomic(dir + "/" + name, b); };
    {  // a chain of every plain layer type
        Sequential<float> m(Shape::image(1, 6, 6), 1);
        m.add<Conv2D>(2, std::array<int, 2>{3, 3}, Activation::relu, Padding::same, 2);
        m.add<BatchNorm>();
        m.add<LeakyReLU>(0.1);
        m.add<MaxPool2D>(std::array<int, 2>{2, 2}, std::array<int, 2>{1, 1}, Padding::same);
        m.add<AvgPool2D>(std::array<int, 2>{2, 2});
        m.add<Conv2D>(2, std::array<int, 2>{1, 1}, Activation::linear, 0, 1, Init::glorot_uniform, false);
        m.add<Sigmoid>();
        m.add<Flatten>();
        m.add<Dense>(3, Activation::relu);
        m.add<Tanh>();
        m.add<Dropout>(0.5);
        m.add<Dense>(2);
        m.add<Softmax>();
        const auto b = serialize_onnx(to_onnx(m));
        put("chain.onnx", b);
        put("chain_cut.onnx", std::vector<char>(b.begin(), b.begin() + std::ptrdiff_t(b.size() / 2)));
    }
    {  // nested Branches: concat with an identity branch, add of three
        Sequential<float> m(Shape::image(2, 5, 5), 1);
        auto box = std::make_unique<Branches<float>>(Merge::concat);
        box->branch().add<Conv2D>(1, std::array<int, 2>{1, 1});
        auto inner = std::make_unique<Branches<float>>(Merge::add);
        inner->branch().add<Conv2D>(2, std::array<int, 2>{3, 3}, Activation::linear, 1);
        inner->branch();
        inner->branch().add<ReLU>();
        box->branch().add(std::move(inner));
        box->branch();
        m.add(std::move(box));
        m.add<GlobalAvgPool2D>();
        m.add<Dense>(2);
        put("branches.onnx", serialize_onnx(to_onnx(m, {13, true})));
    }
    {  // an ensemble of two: Branches mean, exported as an Add and a Div by 2
        Sequential<float> m(Shape::image(1, 4, 4), 1);
        auto box = std::make_unique<Branches<float>>(Merge::mean);
        auto& b0 = box->branch();
        b0.add<Conv2D>(2, std::array<int, 2>{3, 3});
        b0.add<Flatten>();
        b0.add<Dense>(2);
        auto& b1 = box->branch();
        b1.add<Flatten>();
        b1.add<Dense>(2);
        m.add(std::move(box));
        put("ensemble.onnx", serialize_onnx(to_onnx(m)));
    }
    {  // PyTorch's forms: MatMul + Add, Reshape with a Constant shape, float_data, Gemm transB
        onnx::ModelProto m;
        m.set_ir_version(7);
        m.add_opset_import()->set_version(13);
        auto& g = *m.mutable_graph();
        onnx_detail::set_shape(*g.add_input(), "x", onnx::TensorProto::FLOAT, {1, 2, 2});
        onnx_detail::set_shape(*g.add_output(), "y", onnx::TensorProto::FLOAT, {2});
        auto init = [&](const std::string& name, std::vector<std::int64_t> dims, int n) {
            auto* t = g.add_initializer();
            t->set_name(name);
            t->set_data_type(onnx::TensorProto::FLOAT);
            for (auto d : dims) t->add_dims(d);
            for (int i = 0; i < n; ++i) t->add_float_data(0.25f * float(i) - 1.f);
        };
        auto node = [&](const std::string& op, std::vector<std::string> in, const std::string& out) {
            auto* n = g.add_node();
            n->set_op_type(op);
            n->set_name(out);
            for (auto& i : in) n->add_input(i);
            n->add_output(out);
            return n;
        };
        auto* c = node("Constant", {}, "shape");
        auto* a = c->add_attribute();
        a->set_name("value");
        a->set_type(onnx::AttributeProto::TENSOR);
        a->mutable_t()->set_data_type(onnx::TensorProto::INT64);
        a->mutable_t()->add_dims(2);
        a->mutable_t()->add_int64_data(-1);
        a->mutable_t()->add_int64_data(4);
        init("w1", {4, 3}, 12);
        init("b1", {3}, 3);
        init("w2", {2, 3}, 6);
        init("b2", {2}, 2);
        node("Reshape", {"x", "shape"}, "r");
        node("MatMul", {"r", "w1"}, "m");
        node("Add", {"m", "b1"}, "a");
        node("Relu", {"a"}, "h");
        onnx_detail::attr(*node("Gemm", {"h", "w2", "b2"}, "y"), "transB", std::int64_t(1));
        std::vector<char> b(m.ByteSizeLong());
        m.SerializeToArray(b.data(), int(b.size()));
        put("torchlike.onnx", b);
    }
    put("empty.onnx", {});
    put("text.onnx", {'n', 'o', 't', ' ', 'o', 'n', 'n', 'x'});
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
        if (cmd == "imagenet" && (argc == 7 || argc == 8)) {
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
            {
                const auto proto = to_onnx(m);
                onnx::checker::check_model(proto);  // throws ValidationError
                write_file_atomic(argv[4], serialize_onnx(proto));
                std::cout << argv[4] << ": libonnx's checker passed\n";
            }
            const auto x = read_samples(argv[5], m.input_shape());
            const auto y = outputs(m, x);
            write_raw(argv[6], y.data(), y.size());
            if (argc == 8 && std::string(argv[7]) == "roundtrip") {
                auto back = load_onnx<float>(argv[4]);
                const auto b = outputs(back, x);
                if (std::memcmp(y.data(), b.data(), size_t(y.size()) * 4) != 0) {
                    std::cerr << "imagenet: " << argv[2] << ": outputs differ after kitnn -> ONNX -> kitnn\n";
                    return 1;
                }
                std::cout << argv[2] << ": kitnn -> ONNX -> kitnn gives identical outputs\n";
            }
            return 0;
        }
        if (cmd == "seeds" && argc == 3) {
            seeds(argv[2]);
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
        std::cerr << "usage: onnx_probe predict MODEL IN.f32 OUT.f32 [logits] | imagenet NAME SEED OUT.onnx IN.f32 OUT.f32 | roundtrip MODEL.kitnn OUT.onnx | seeds DIR\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "onnx_probe: " << e.what() << "\n";
        return 1;
    }
}
