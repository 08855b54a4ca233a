// kitnn/onnx/onnx.hpp — models in and out: ONNX export and import (docs/onnx.md).
//
//   auto proto = kitnn::to_onnx(model, {/*opset=*/13, /*softmax=*/true});
//   kitnn::save_onnx("model.onnx", model);               // atomic, like save_model
//   auto m = kitnn::load_onnx<float>("from_pytorch.onnx");  // OnnxError if unsupported
//
// An optional component: it needs Debian's libonnx-dev (the generated onnx-ml.pb.h
// and libonnx_proto, which carry libprotobuf). Link the CMake target kitnn::onnx; the
// header-only core (kitnn::kitnn) does not include this file and gains no dependency.
//
// Export: every layer is one node or a few (kitnn NCHW = ONNX NCHW, so weights are
// copied as they are, never transposed):
//   Conv2D           Conv (pads spelled out: valid, same (maybe asymmetric), explicit)
//                    [+ Relu when the activation is fused]
//   Dense            Gemm(X, kernel^T (OUT, IN), bias), transB = 1  [+ Relu]
//   MaxPool2D        MaxPool (same padding as explicit pads; padding never wins)
//   AvgPool2D        AveragePool, count_include_pad = 0 (real pixels only)
//   GlobalAvgPool2D  GlobalAveragePool + Flatten (kitnn's output is flat (C))
//   Flatten          Flatten(axis 1): both are channel-major (c, h, w)
//   BatchNorm        BatchNormalization, inference form (moving mean and variance)
//   Dropout          Dropout with its ratio and no training_mode: the identity
//   ReLU, LeakyReLU, Sigmoid, Tanh, Softmax(axis 1)
//   Branches         each branch from the same tensor, then Concat(axis 1), a left-
//                    deep chain of Adds ((z0 + z1) + z2 ..., kitnn's summation order),
//                    for merge mean (an ensemble) followed by a Div by the branch
//                    count (OpenCV 4.6 has no Mean; the importer reads Mean too)
// Flat activations are 2-D (N, F) in the graph, images 4-D (N, C, H, W); the batch
// dimension is symbolic ("N").
//
// Import walks the graph from its one input and rebuilds what kitnn can express: a
// chain of layers, and forks whose branches (chains, possibly forking again) meet at
// one Concat(axis 1), a chain of Adds or one Mean, which become a Branches container. The op
// table, and what is refused, is in docs/onnx.md. Every refusal is an OnnxError naming
// the node, its op type and what kitnn cannot do; nothing is half-built.
// Untrusted files: a size limit, protobuf's recursion limit, every tensor's dims checked
// against its data before anything is allocated, no external data, and the same limits
// on layers, nesting and activations as the kitnn model file.
#pragma once

#include "kitnn/io/atomic_file.hpp"
#include "kitnn/io/layer_factory.hpp"
#include "kitnn/io/model_file.hpp"  // the loader limits (kMaxLayers, ...)
#include "kitnn/model/sequential.hpp"

#include <onnx/onnx_pb.h>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace kitnn {

// An ONNX file or graph kitnn cannot read (or a model it cannot write); the message
// names the file, the node and what is wrong.
struct OnnxError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct OnnxExportOptions {
    int opset = 13;        // 13..17: the ops used have the same form in all of them
    bool softmax = false;  // append a Softmax (probabilities out) unless the model ends in one
};

constexpr int kOnnxMinExportOpset = 13, kOnnxMaxOpset = 17;  // libonnx 1.12 knows up to 17
constexpr int kOnnxMinImportOpset = 11;
// protobuf cannot parse a message of 2 GB or more; VGG-16 is 553 MB.
constexpr std::uint64_t kMaxOnnxFileBytes = std::uint64_t(INT_MAX);

namespace onnx_detail {

template <class T>
constexpr int elem_type() {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double");
    return sizeof(T) == 4 ? ::onnx::TensorProto::FLOAT : ::onnx::TensorProto::DOUBLE;
}

inline void attr(::onnx::NodeProto& n, const std::string& name, std::int64_t v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INT);
    a->set_i(v);
}
inline void attr(::onnx::NodeProto& n, const std::string& name, float v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::FLOAT);
    a->set_f(v);
}
inline void attr(::onnx::NodeProto& n, const std::string& name, const std::vector<std::int64_t>& v) {
    auto* a = n.add_attribute();
    a->set_name(name);
    a->set_type(::onnx::AttributeProto::INTS);
    for (auto x : v) a->add_ints(x);
}

// Builds the graph layer by layer. Names follow kitnn's layer paths (for_each_layer):
// node "L2.b1.0/Conv" reads "...", writes the tensor of the same name; weights are
// "L2.b1.0/kernel" and so on.
template <class T>
class Exporter {
public:
    explicit Exporter(::onnx::GraphProto& g) : g_(g) {}

    // Emits the nodes of layer `l` reading tensor `x`; returns the output tensor.
    std::string layer(Layer<T>& l, const std::string& x, const std::string& path) {
        const std::string type = l.type(), p = "L" + path;
        const Config c = l.config();
        const Shape& in = l.input_shape();
        const Shape& out = l.output_shape();
        if (type == "Conv2D") {
            auto& conv = static_cast<Conv2D<T>&>(l);
            const auto& k = conv.kernel().value;  // (F, C, KH, KW): ONNX's layout
            const std::int64_t kh = k.dimension(2), kw = k.dimension(3), s = c.integer("stride");
            std::vector<std::string> ins{x, weight(p + "/kernel", k, {k.dimension(0), k.dimension(1), kh, kw})};
            if (conv.use_bias()) ins.push_back(weight(p + "/bias", conv.bias().value, {k.dimension(0)}));
            // pads [top, left, bottom, right]. explicit: p on every side (PyTorch's
            // padding=p); same: kitnn's split, the odd pixel at the end; valid: none.
            std::int64_t pt = conv.pad_top(), pl = conv.pad_left(), pb, pr;
            if (c.str("padding") == "explicit") {
                pb = pt;
                pr = pl;
            } else {
                pb = std::max<std::int64_t>((out.h() - 1) * s + kh - in.h() - pt, 0);
                pr = std::max<std::int64_t>((out.w() - 1) * s + kw - in.w() - pl, 0);
            }
            auto& n = node("Conv", p + "/Conv", ins);
            attr(n, "kernel_shape", std::vector<std::int64_t>{kh, kw});
            attr(n, "strides", std::vector<std::int64_t>{s, s});
            attr(n, "pads", std::vector<std::int64_t>{pt, pl, pb, pr});
            attr(n, "dilations", std::vector<std::int64_t>{1, 1});
            attr(n, "group", std::int64_t(1));
            return relu_if(c, n.output(0), p);
        }
        if (type == "Dense") {
            // Gemm(X, B, C) with transB = 1 and B = kernel^T (OUT, IN): PyTorch's form, the
            // one every runtime handles (OpenCV 4.6 refuses transB = 0 with a bias).
            auto& d = static_cast<Dense<T>&>(l);
            const auto& k = d.kernel().value;  // (IN, OUT, 1, 1)
            const Eigen::Index I = k.dimension(0), O = k.dimension(1);
            Tensor<T> bt(O, I, 1, 1);
            for (Eigen::Index i = 0; i < I; ++i)
                for (Eigen::Index o = 0; o < O; ++o) bt.data()[o * I + i] = k.data()[i * O + o];
            auto& n = node("Gemm", p + "/Gemm",
                           {x, weight(p + "/kernel", bt, {O, I}), weight(p + "/bias", d.bias().value, {O})});
            attr(n, "transB", std::int64_t(1));
            return relu_if(c, n.output(0), p);
        }
        if (type == "MaxPool2D" || type == "AvgPool2D") {
            const int ph = int(c.integer("pool_h")), pw = int(c.integer("pool_w"));
            const int sh = int(c.integer("stride_h")), sw = int(c.integer("stride_w"));
            std::int64_t pt = 0, pl = 0, pb = 0, pr = 0;
            if (c.str("padding") == "same") {
                pt = pool_axis(in.h(), ph, sh, Padding::same).pad_before;
                pl = pool_axis(in.w(), pw, sw, Padding::same).pad_before;
                pb = std::max<std::int64_t>((out.h() - 1) * sh + ph - in.h(), 0) - pt;
                pr = std::max<std::int64_t>((out.w() - 1) * sw + pw - in.w(), 0) - pl;
            }
            const bool max = type == "MaxPool2D";
            auto& n = node(max ? "MaxPool" : "AveragePool", p + (max ? "/MaxPool" : "/AveragePool"), {x});
            attr(n, "kernel_shape", std::vector<std::int64_t>{ph, pw});
            attr(n, "strides", std::vector<std::int64_t>{sh, sw});
            attr(n, "pads", std::vector<std::int64_t>{pt, pl, pb, pr});
            if (!max) attr(n, "count_include_pad", std::int64_t(0));
            return n.output(0);
        }
        if (type == "GlobalAvgPool2D") {  // ONNX gives (N, C, 1, 1); kitnn's output is flat
            auto& g = node("GlobalAveragePool", p + "/GlobalAveragePool", {x});
            auto& f = node("Flatten", p + "/Flatten", {g.output(0)});
            attr(f, "axis", std::int64_t(1));
            return f.output(0);
        }
        if (type == "Flatten") {
            auto& n = node("Flatten", p + "/Flatten", {x});
            attr(n, "axis", std::int64_t(1));
            return n.output(0);
        }
        if (type == "BatchNorm") {
            auto& b = static_cast<BatchNorm<T>&>(l);
            const std::int64_t C = in.c();
            auto& n = node("BatchNormalization", p + "/BatchNormalization",
                           {x, weight(p + "/gamma", b.gamma().value, {C}),
                            weight(p + "/beta", b.beta().value, {C}),
                            weight(p + "/moving_mean", b.moving_mean().value, {C}),
                            weight(p + "/moving_variance", b.moving_variance().value, {C})});
            attr(n, "epsilon", float(b.epsilon()));
            attr(n, "momentum", float(b.momentum()));
            return n.output(0);
        }
        if (type == "Dropout") {  // no training_mode input: inference, the identity
            const double rate = static_cast<Dropout<T>&>(l).rate();
            Tensor<T> r(1, 1, 1, 1);
            r(0, 0, 0, 0) = T(rate);
            return node("Dropout", p + "/Dropout", {x, weight(p + "/ratio", r, {})}).output(0);
        }
        if (type == "ReLU") return node("Relu", p + "/Relu", {x}).output(0);
        if (type == "Sigmoid") return node("Sigmoid", p + "/Sigmoid", {x}).output(0);
        if (type == "Tanh") return node("Tanh", p + "/Tanh", {x}).output(0);
        if (type == "LeakyReLU") {
            auto& n = node("LeakyRelu", p + "/LeakyRelu", {x});
            attr(n, "alpha", float(static_cast<LeakyReLU<T>&>(l).alpha()));
            return n.output(0);
        }
        if (type == "Softmax") {
            auto& n = node("Softmax", p + "/Softmax", {x});
            attr(n, "axis", std::int64_t(1));
            return n.output(0);
        }
        if (type == "Branches") {
            auto& box = static_cast<Branches<T>&>(l);
            std::vector<std::string> ends;
            for (size_t b = 0; b < l.branch_count(); ++b) {
                std::string t = x;  // an empty branch is the identity
                const auto inner = l.branch(b);
                for (size_t j = 0; j < inner.size(); ++j)
                    t = layer(*inner[j], t, path + ".b" + std::to_string(b) + "." + std::to_string(j));
                ends.push_back(t);
            }
            if (box.merge() == Merge::concat) {
                auto& n = node("Concat", p + "/Concat", ends);
                attr(n, "axis", std::int64_t(1));
                return n.output(0);
            }
            if (ends.size() == 1) return node("Identity", p + "/Identity", ends).output(0);
            // kitnn sums y = z0; y += z1; y += z2 ...: the same association, exactly.
            std::string sum = ends[0];
            for (size_t b = 1; b < ends.size(); ++b)
                sum = node("Add", p + "/Add" + (b > 1 ? "_" + std::to_string(b - 1) : std::string()),
                           {sum, ends[b]}).output(0);
            if (box.merge() == Merge::mean) {  // then y /= B, as kitnn divides
                Tensor<T> count(1, 1, 1, 1);
                count.setConstant(T(ends.size()));
                return node("Div", p + "/Div", {sum, weight(p + "/count", count, {})}).output(0);
            }
            return sum;
        }
        throw OnnxError("layer " + path + " (" + type + "): no ONNX export for this layer type");
    }

    ::onnx::NodeProto& node(const std::string& op, const std::string& name,
                            const std::vector<std::string>& inputs) {
        auto* n = g_.add_node();
        n->set_op_type(op);
        n->set_name(name);
        for (auto& i : inputs) n->add_input(i);
        n->add_output(name);
        return *n;
    }

private:
    // A fused ReLU becomes its own Relu node.
    std::string relu_if(const Config& c, const std::string& y, const std::string& p) {
        if (c.str("activation") != "relu") return y;
        return node("Relu", p + "/Relu", {y}).output(0);
    }
    // An initializer holding t's values (memory order) with the given dims.
    std::string weight(const std::string& name, const Tensor<T>& t, const std::vector<std::int64_t>& dims) {
        auto* w = g_.add_initializer();
        w->set_name(name);
        w->set_data_type(elem_type<T>());
        std::int64_t n = 1;
        for (auto d : dims) {
            w->add_dims(d);
            n *= d;
        }
        if (n != t.size()) throw std::logic_error("to_onnx: " + name + " has the wrong size");
        // raw_data is little-endian; kitnn's model file assumes the same host order.
        w->set_raw_data(std::string(reinterpret_cast<const char*>(t.data()), size_t(n) * sizeof(T)));
        return name;
    }

    ::onnx::GraphProto& g_;
};

inline void set_shape(::onnx::ValueInfoProto& v, const std::string& name, int elem,
                      const std::vector<std::int64_t>& dims) {
    v.set_name(name);
    auto* tt = v.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* sh = tt->mutable_shape();
    sh->add_dim()->set_dim_param("N");  // any batch size
    for (auto d : dims) sh->add_dim()->set_dim_value(d);
}

}  // namespace onnx_detail

// The ONNX model of `model` (inference form). Throws OnnxError for an opset outside
// 13..17, or --softmax on a model whose output is not flat.
template <class T>
::onnx::ModelProto to_onnx(Sequential<T>& model, const OnnxExportOptions& opt = {}) {
    if (opt.opset < kOnnxMinExportOpset || opt.opset > kOnnxMaxOpset)
        throw OnnxError("opset " + std::to_string(opt.opset) + " is not supported for export (" +
                        std::to_string(kOnnxMinExportOpset) + " to " + std::to_string(kOnnxMaxOpset) + ")");
    if (model.size() == 0) throw OnnxError("to_onnx: the model has no layers");
    ::onnx::ModelProto m;
    // IR 7 goes with opsets 12-14 (ONNX 1.8/1.9), IR 8 with 15-17 (ONNX 1.10-1.12).
    m.set_ir_version(opt.opset <= 14 ? 7 : 8);
    m.set_producer_name("kitnn");
    m.set_producer_version("0.1.0");
    auto* os = m.add_opset_import();
    os->set_domain("");
    os->set_version(opt.opset);
    auto& g = *m.mutable_graph();
    g.set_name("kitnn");
    std::vector<std::int64_t> in_dims(model.input_shape().dims.begin(), model.input_shape().dims.end());
    onnx_detail::set_shape(*g.add_input(), "input", onnx_detail::elem_type<T>(), in_dims);
    onnx_detail::Exporter<T> ex(g);
    std::string t = "input";
    for (size_t i = 0; i < model.size(); ++i) t = ex.layer(model.layer(i), t, std::to_string(i));
    const Shape out = model.output_shape();
    if (opt.softmax && model.layer(model.size() - 1).type() != "Softmax") {
        if (!out.is_flat())
            throw OnnxError("--softmax: the model's output " + out.str() + " is not flat");
        auto& n = ex.node("Softmax", "probabilities/Softmax", {t});
        onnx_detail::attr(n, "axis", std::int64_t(1));
        t = n.output(0);
    }
    // The last node's output becomes the graph output "output" (nothing else reads it).
    for (int i = g.node_size(); i-- > 0;) {
        auto* n = g.mutable_node(i);
        if (n->output(0) == t) {
            n->set_output(0, "output");
            break;
        }
    }
    std::vector<std::int64_t> out_dims(out.dims.begin(), out.dims.end());
    onnx_detail::set_shape(*g.add_output(), "output", onnx_detail::elem_type<T>(), out_dims);
    return m;
}

// The file's bytes; OnnxError when protobuf cannot hold them (2 GB).
inline std::vector<char> serialize_onnx(const ::onnx::ModelProto& m) {
    const size_t n = m.ByteSizeLong();
    if (n >= kMaxOnnxFileBytes)
        throw OnnxError("the ONNX model needs " + std::to_string(n) +
                        " bytes, more than protobuf's 2 GB limit (external data is not supported)");
    std::vector<char> bytes(n);
    if (!m.SerializeToArray(bytes.data(), int(n))) throw OnnxError("protobuf could not serialize the model");
    return bytes;
}

// Writes model as ONNX to `path` atomically (temporary file, fsync, rename).
template <class T>
void save_onnx(const std::string& path, Sequential<T>& model, const OnnxExportOptions& opt = {}) {
    write_file_atomic(path, serialize_onnx(to_onnx(model, opt)));
}

namespace onnx_detail {

// A constant: an initializer or a Constant node's value, read into doubles (weights)
// or int64s (shapes), after checking its dims against its data.
struct Const {
    std::vector<std::int64_t> dims;
    std::vector<double> real;       // float / double data
    std::vector<std::int64_t> ints;  // int64 / int32 data
    bool is_real = false;            // float or double (else integers)
    std::int64_t count() const {
        std::int64_t n = 1;
        for (auto d : dims) n *= d;
        return n;
    }
};

inline std::string dims_str(const std::vector<std::int64_t>& d) {
    std::string s = "[";
    for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
    return s + "]";
}

// Reads a TensorProto; `what` names it in errors. Never allocates more than the data
// the message already holds.
inline Const read_const(const ::onnx::TensorProto& t, const std::string& what) {
    if (t.data_location() == ::onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
        throw OnnxError(what + " is stored in an external file (external data is not supported)");
    if (t.has_segment()) throw OnnxError(what + " is segmented (not supported)");
    Const c;
    __int128 n = 1;
    for (auto d : t.dims()) {
        if (d < 0 || d > (std::int64_t(1) << 31)) throw OnnxError(what + ": dimension " + std::to_string(d) + " out of range");
        c.dims.push_back(d);
        n *= d;
        if (n > (__int128(1) << 31)) throw OnnxError(what + ": more than 2^31 values");
    }
    const std::int64_t count = std::int64_t(n);
    const std::string& raw = t.raw_data();
    auto size_check = [&](std::int64_t have, const char* field) {
        if (have != count)
            throw OnnxError(what + ": dims " + dims_str(c.dims) + " need " + std::to_string(count) +
                            " values, " + field + " holds " + std::to_string(have));
    };
    c.is_real = t.data_type() == ::onnx::TensorProto::FLOAT || t.data_type() == ::onnx::TensorProto::DOUBLE;
    switch (t.data_type()) {
    case ::onnx::TensorProto::FLOAT:
        if (!raw.empty() || t.float_data_size() == 0) {
            if (raw.size() % 4) throw OnnxError(what + ": raw_data of " + std::to_string(raw.size()) + " bytes is not whole floats");
            size_check(std::int64_t(raw.size() / 4), "raw_data");
            c.real.resize(size_t(count));
            for (std::int64_t i = 0; i < count; ++i) {
                float f;
                std::memcpy(&f, raw.data() + 4 * i, 4);
                c.real[size_t(i)] = f;
            }
        } else {
            size_check(t.float_data_size(), "float_data");
            c.real.assign(t.float_data().begin(), t.float_data().end());
        }
        break;
    case ::onnx::TensorProto::DOUBLE:
        if (!raw.empty() || t.double_data_size() == 0) {
            if (raw.size() % 8) throw OnnxError(what + ": raw_data of " + std::to_string(raw.size()) + " bytes is not whole doubles");
            size_check(std::int64_t(raw.size() / 8), "raw_data");
            c.real.resize(size_t(count));
            if (count) std::memcpy(c.real.data(), raw.data(), size_t(count) * 8);
        } else {
            size_check(t.double_data_size(), "double_data");
            c.real.assign(t.double_data().begin(), t.double_data().end());
        }
        break;
    case ::onnx::TensorProto::INT64:
        if (!raw.empty() || t.int64_data_size() == 0) {
            if (raw.size() % 8) throw OnnxError(what + ": raw_data of " + std::to_string(raw.size()) + " bytes is not whole int64s");
            size_check(std::int64_t(raw.size() / 8), "raw_data");
            c.ints.resize(size_t(count));
            if (count) std::memcpy(c.ints.data(), raw.data(), size_t(count) * 8);
        } else {
            size_check(t.int64_data_size(), "int64_data");
            c.ints.assign(t.int64_data().begin(), t.int64_data().end());
        }
        break;
    case ::onnx::TensorProto::INT32:
        if (!raw.empty() || t.int32_data_size() == 0) {
            if (raw.size() % 4) throw OnnxError(what + ": raw_data of " + std::to_string(raw.size()) + " bytes is not whole int32s");
            size_check(std::int64_t(raw.size() / 4), "raw_data");
            c.ints.resize(size_t(count));
            for (std::int64_t i = 0; i < count; ++i) {
                std::int32_t v;
                std::memcpy(&v, raw.data() + 4 * i, 4);
                c.ints[size_t(i)] = v;
            }
        } else {
            size_check(t.int32_data_size(), "int32_data");
            c.ints.assign(t.int32_data().begin(), t.int32_data().end());
        }
        break;
    default:
        throw OnnxError(what + ": data type " + std::to_string(t.data_type()) +
                        " is not supported (float, double, int64, int32)");
    }
    return c;
}

// The shortest decimal that gives back float f: ONNX stores epsilon, alpha and momentum
// as float, kitnn as double; 1e-3f comes back as 0.001, the value kitnn wrote.
inline double float_to_double(float f) {
    if (!std::isfinite(f)) return double(f);
    char buf[32];
    for (int p = 1; p <= 9; ++p) {
        std::snprintf(buf, sizeof buf, "%.*g", p, double(f));
        if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
    }
    return double(f);
}

// Rebuilds a Sequential from a graph (see the top of this file).
template <class T>
class Importer {
public:
    Importer(const ::onnx::ModelProto& m, std::string file) : m_(m), g_(m.graph()), file_(std::move(file)) {}

    Sequential<T> run() {
        check_model();
        index();
        Shape in = input_shape();
        Sequential<T> model(in, 1);
        const Place top = [&](std::unique_ptr<Layer<T>> l) -> Layer<T>& { return model.add(std::move(l)); };
        std::string t = input_;
        Shape s = in;
        const std::string end = chain(t, s, top, 0);
        if (end != output_) {
            const auto& e = consumers_[end];
            const auto& n = g_.node(e.empty() ? 0 : e[0].first);
            fail(n, "merges tensors that do not come from one fork of the graph ('" + end +
                        "' reaches it without a matching fork): kitnn's Branches cannot express this");
        }
        if (model.size() == 0) throw OnnxError(file_ + ": the graph has no layers (input goes straight to the output)");
        for (int i = 0; i < g_.node_size(); ++i)
            if (!used_[size_t(i)])
                fail(g_.node(i), "is not on the path from the graph input '" + input_ + "' to its output '" +
                                     output_ + "' (kitnn models are one input, one output)");
        return model;
    }

private:
    using Place = std::function<Layer<T>&(std::unique_ptr<Layer<T>>)>;

    [[noreturn]] void fail(const ::onnx::NodeProto& n, const std::string& msg) const {
        throw OnnxError(file_ + ": node " + node_name(n) + " (" + n.op_type() + "): " + msg);
    }
    [[noreturn]] void fail(const std::string& msg) const { throw OnnxError(file_ + ": " + msg); }
    std::string node_name(const ::onnx::NodeProto& n) const {
        if (!n.name().empty()) return "'" + n.name() + "'";
        auto it = index_of_.find(&n);
        return "#" + (it == index_of_.end() ? std::string("?") : std::to_string(it->second)) +
               (n.output_size() ? " -> '" + n.output(0) + "'" : "");
    }

    void check_model() {
        if (!m_.has_graph()) fail("no graph: not an ONNX model (or a truncated one)");
        int opset = -1;
        for (auto& o : m_.opset_import())
            if (o.domain().empty() || o.domain() == "ai.onnx") opset = int(std::min<std::int64_t>(o.version(), INT_MAX));
        if (opset < 0) fail("no opset_import for the default ONNX domain");
        if (opset < kOnnxMinImportOpset || opset > kOnnxMaxOpset)
            fail("opset " + std::to_string(opset) + " is not supported (" + std::to_string(kOnnxMinImportOpset) +
                 " to " + std::to_string(kOnnxMaxOpset) + ")");
        opset_ = opset;
        if (g_.sparse_initializer_size() > 0) fail("sparse initializers are not supported");
    }

    // Constants, producers and consumers of every tensor.
    void index() {
        for (auto& t : g_.initializer()) {
            if (t.name().empty()) fail("an initializer has no name");
            if (consts_.count(t.name())) fail("initializer '" + t.name() + "' is defined twice");
            consts_[t.name()] = read_const(t, "initializer '" + t.name() + "'");
        }
        used_.assign(size_t(g_.node_size()), false);
        for (int i = 0; i < g_.node_size(); ++i) index_of_[&g_.node(i)] = i;
        for (int i = 0; i < g_.node_size(); ++i) {
            const auto& n = g_.node(i);
            if (!n.domain().empty() && n.domain() != "ai.onnx")
                fail(n, "op domain '" + n.domain() + "' is not supported (only the default ONNX ops)");
            if (n.op_type() == "Constant") {
                if (n.output_size() != 1 || n.attribute_size() != 1 || n.attribute(0).name() != "value" ||
                    n.attribute(0).type() != ::onnx::AttributeProto::TENSOR)
                    fail(n, "only a Constant with a 'value' tensor is supported");
                if (consts_.count(n.output(0))) fail(n, "redefines '" + n.output(0) + "'");
                consts_[n.output(0)] = read_const(n.attribute(0).t(), "the value of Constant " + node_name(n));
                used_[size_t(i)] = true;
                continue;
            }
            for (int k = 0; k < n.output_size(); ++k) {
                if (n.output(k).empty()) continue;
                if (producer_.count(n.output(k)) || consts_.count(n.output(k)))
                    fail(n, "writes '" + n.output(k) + "', which another node or initializer defines too");
                producer_[n.output(k)] = i;
            }
        }
        for (int i = 0; i < g_.node_size(); ++i) {
            const auto& n = g_.node(i);
            if (n.op_type() == "Constant") continue;
            for (int k = 0; k < n.input_size(); ++k) {
                const std::string& x = n.input(k);
                if (x.empty() || consts_.count(x)) continue;
                consumers_[x].emplace_back(i, k);
            }
        }
        // The one real input: a graph input that is not an initializer (IR < 4 lists both).
        for (auto& v : g_.input())
            if (!consts_.count(v.name())) {
                if (!input_.empty())
                    fail("more than one graph input ('" + input_ + "', '" + v.name() + "'): kitnn models have one");
                input_ = v.name();
                input_info_ = &v;
            }
        if (input_.empty()) fail("the graph has no input");
        if (producer_.count(input_)) fail("the graph input '" + input_ + "' is also written by a node");
        if (g_.output_size() != 1)
            fail(std::to_string(g_.output_size()) + " graph outputs: kitnn models have exactly one");
        output_ = g_.output(0).name();
        if (!producer_.count(output_)) fail("the graph output '" + output_ + "' is not computed by any node");
    }

    Shape input_shape() {
        const auto& ty = input_info_->type();
        if (!ty.has_tensor_type()) fail("the graph input '" + input_ + "' is not a tensor");
        const auto& tt = ty.tensor_type();
        if (tt.elem_type() != ::onnx::TensorProto::FLOAT && tt.elem_type() != ::onnx::TensorProto::DOUBLE)
            fail("the graph input '" + input_ + "' has element type " + std::to_string(tt.elem_type()) +
                 " (kitnn needs float or double)");
        if (!tt.has_shape()) fail("the graph input '" + input_ + "' has no shape (dynamic shapes are not supported)");
        const auto& sh = tt.shape();
        if (sh.dim_size() != 4 && sh.dim_size() != 2)
            fail("the graph input '" + input_ + "' has rank " + std::to_string(sh.dim_size()) +
                 " (kitnn needs (N, C, H, W) or (N, F))");
        std::vector<Eigen::Index> d;
        for (int i = 1; i < sh.dim_size(); ++i) {  // dim 0 is the batch: any size
            const auto& dim = sh.dim(i);
            if (!dim.has_dim_value())
                fail("the graph input '" + input_ + "' has a dynamic dimension " + std::to_string(i) +
                     (dim.has_dim_param() ? " ('" + dim.dim_param() + "')" : std::string()) +
                     ": kitnn needs fixed sizes except the batch (dynamic shapes are not supported)");
            if (dim.dim_value() < 1 || dim.dim_value() > (1 << 20))
                fail("the graph input '" + input_ + "' dimension " + std::to_string(i) + " = " +
                     std::to_string(dim.dim_value()) + " is out of range");
            d.push_back(Eigen::Index(dim.dim_value()));
        }
        Shape s(std::move(d));
        if (s.size() > kMaxValuesPerSample) fail("the graph input shape " + s.str() + " is too large");
        batch_ = sh.dim(0).has_dim_value() ? sh.dim(0).dim_value() : -1;
        return s;
    }

    // --- attributes --------------------------------------------------------------------
    const ::onnx::AttributeProto* find(const ::onnx::NodeProto& n, const std::string& name) const {
        for (auto& a : n.attribute())
            if (a.name() == name) return &a;
        return nullptr;
    }
    // Refuses attributes outside `known`: an attribute kitnn ignores would change the meaning.
    void only(const ::onnx::NodeProto& n, std::initializer_list<const char*> known) const {
        for (auto& a : n.attribute()) {
            bool ok = false;
            for (auto* k : known) ok = ok || a.name() == k;
            if (!ok) fail(n, "attribute '" + a.name() + "' is not supported");
        }
    }
    std::int64_t int_attr(const ::onnx::NodeProto& n, const std::string& name, std::int64_t def) const {
        const auto* a = find(n, name);
        if (!a) return def;
        if (a->type() != ::onnx::AttributeProto::INT) fail(n, "attribute '" + name + "' is not an int");
        return a->i();
    }
    float float_attr(const ::onnx::NodeProto& n, const std::string& name, float def) const {
        const auto* a = find(n, name);
        if (!a) return def;
        if (a->type() != ::onnx::AttributeProto::FLOAT) fail(n, "attribute '" + name + "' is not a float");
        return a->f();
    }
    std::vector<std::int64_t> ints_attr(const ::onnx::NodeProto& n, const std::string& name,
                                        std::vector<std::int64_t> def) const {
        const auto* a = find(n, name);
        if (!a) return def;
        if (a->type() != ::onnx::AttributeProto::INTS) fail(n, "attribute '" + name + "' is not a list of ints");
        return std::vector<std::int64_t>(a->ints().begin(), a->ints().end());
    }
    std::string string_attr(const ::onnx::NodeProto& n, const std::string& name, const std::string& def) const {
        const auto* a = find(n, name);
        if (!a) return def;
        if (a->type() != ::onnx::AttributeProto::STRING) fail(n, "attribute '" + name + "' is not a string");
        return a->s();
    }

    // --- graph structure ---------------------------------------------------------------
    const std::vector<std::pair<int, int>>& uses(const std::string& t) {
        static const std::vector<std::pair<int, int>> none;
        auto it = consumers_.find(t);
        return it == consumers_.end() ? none : it->second;
    }
    std::vector<std::string> dynamic_inputs(const ::onnx::NodeProto& n) const {
        std::vector<std::string> r;
        for (auto& x : n.input())
            if (!x.empty() && !consts_.count(x)) r.push_back(x);
        return r;
    }
    bool is_merge(const ::onnx::NodeProto& n) const {
        return (n.op_type() == "Concat" || n.op_type() == "Add" || n.op_type() == "Mean") &&
               dynamic_inputs(n).size() >= 2;
    }
    // The node's only consumer when `t` feeds exactly one node and is not the output.
    const ::onnx::NodeProto* sole_consumer(const std::string& t) {
        const auto& u = uses(t);
        if (u.size() != 1 || t == output_) return nullptr;
        return &g_.node(u[0].first);
    }
    void take(const ::onnx::NodeProto& n) {
        const int i = index_of_.at(&n);
        if (used_[size_t(i)]) fail(n, "is reached twice (a cycle, or a tensor kitnn cannot route)");
        used_[size_t(i)] = true;
    }
    // Outputs other than the first (BatchNormalization's statistics, Dropout's mask,
    // MaxPool's indices) must be unused.
    void single_output(const ::onnx::NodeProto& n) {
        if (n.output_size() < 1 || n.output(0).empty()) fail(n, "has no output");
        for (int k = 1; k < n.output_size(); ++k)
            if (!n.output(k).empty() && (!uses(n.output(k)).empty() || n.output(k) == output_))
                fail(n, "output " + std::to_string(k) + " ('" + n.output(k) + "') is used: kitnn computes only the first");
    }
    const Const& constant(const ::onnx::NodeProto& n, int k, const char* what) {
        if (k >= n.input_size() || n.input(k).empty()) fail(n, std::string("has no ") + what + " input");
        auto it = consts_.find(n.input(k));
        if (it == consts_.end())
            fail(n, std::string(what) + " '" + n.input(k) +
                        "' is computed by the graph, not a constant (an initializer): non-constant weights are not supported");
        return it->second;
    }
    const Const* optional_constant(const ::onnx::NodeProto& n, int k, const char* what) {
        if (k >= n.input_size() || n.input(k).empty()) return nullptr;
        return &constant(n, k, what);
    }
    // A constant of floating-point values (weights), not integers.
    const Const& weights(const ::onnx::NodeProto& n, int k, const char* what) {
        const Const& c = constant(n, k, what);
        if (!c.is_real) fail(n, std::string(what) + " '" + n.input(k) + "' holds integers, not float weights");
        return c;
    }
    const Const* optional_weights(const ::onnx::NodeProto& n, int k, const char* what) {
        if (k >= n.input_size() || n.input(k).empty()) return nullptr;
        return &weights(n, k, what);
    }

    // Places layer `l` (Sequential::add at the top, build + add_built in a branch),
    // keeps the loader limits, returns it built. Any error names the node.
    Layer<T>& put(const ::onnx::NodeProto& n, std::unique_ptr<Layer<T>> l, Shape& s, const Place& place) {
        if (++layers_ > kMaxLayers) fail(n, "more than " + std::to_string(kMaxLayers) + " layers");
        Layer<T>* r = nullptr;
        try {
            r = &place(std::move(l));
        } catch (const OnnxError&) {
            throw;
        } catch (const std::exception& e) {
            fail(n, e.what());
        }
        const std::int64_t out = r->output_shape().size();
        activations_ += out;
        if (out > kMaxValuesPerSample || activations_ > kMaxValuesPerSample)
            fail(n, "output shape " + r->output_shape().str() + " makes the activations of one sample too large");
        s = r->output_shape();
        return *r;
    }
    template <class Ctor>
    std::unique_ptr<Layer<T>> make(const ::onnx::NodeProto& n, Ctor&& ctor) {
        try {
            return ctor();
        } catch (const std::exception& e) {
            fail(n, e.what());
        }
    }
    void fill(const ::onnx::NodeProto& n, Param<T>& p, const std::vector<double>& v, const char* what) {
        if (std::int64_t(v.size()) != p.value.size())
            fail(n, std::string(what) + " has " + std::to_string(v.size()) + " values, the layer needs " +
                        std::to_string(p.value.size()));
        for (size_t i = 0; i < v.size(); ++i) p.value.data()[i] = T(v[i]);
    }
    void need_rank(const ::onnx::NodeProto& n, const Shape& s, bool image) const {
        if (image && !s.is_image())
            fail(n, "needs an image input (N, C, H, W); it gets " + s.str() + " (flat)");
        if (!image && !s.is_flat())
            fail(n, "needs a 2-D input (N, F); it gets an image " + s.str() + " (add a Flatten)");
    }

    // Follows the graph from tensor t (kitnn shape s), placing layers, until the graph
    // output or a tensor whose only consumer is a merge (Concat / Add of two tensors);
    // returns that tensor. Forks become Branches.
    std::string chain(std::string t, Shape& s, const Place& place, int depth) {
        if (depth > kMaxNesting) fail("forks nested more than " + std::to_string(kMaxNesting) + " deep");
        for (;;) {
            const auto u = uses(t);
            if (t == output_) {
                if (!u.empty())
                    fail(g_.node(u[0].first), "reads the graph output '" + t +
                                                  "': kitnn's output is the end of the network");
                return t;
            }
            if (u.empty()) {
                auto it = producer_.find(t);
                if (it != producer_.end())
                    fail(g_.node(it->second), "its output '" + t + "' is used by nothing and is not the graph output");
                fail("tensor '" + t + "' is used by nothing and is not the graph output");
            }
            if (u.size() == 1) {
                const auto& n = g_.node(u[0].first);
                if (is_merge(n)) return t;
                t = step(n, u[0].second, t, s, place);
                continue;
            }
            t = fork(t, s, place, depth);
        }
    }

    // t feeds several nodes: each starts a branch (or the merge reads t itself: an
    // identity branch); the branches must meet at one Concat or one chain of Adds.
    std::string fork(const std::string& t, Shape& s, const Place& place, int depth) {
        const auto u = uses(t);
        // Each arm: its layers, built now (so shapes and weights are known; the container
        // keeps them with add_built when it is placed), the tensor it ends at, its shape.
        struct Arm {
            std::vector<std::unique_ptr<Layer<T>>> layers;
            std::string end;
            Shape shape;
        };
        std::vector<Arm> arms;
        Rng rng(1);
        // Continues arm `a` from tensor x, through chain() (which stops at a merge).
        auto extend = [&](Arm& a, const ::onnx::NodeProto* first, int k, const std::string& x) {
            const Place into = [&](std::unique_ptr<Layer<T>> l) -> Layer<T>& {
                l->build(a.shape, rng);
                a.layers.push_back(std::move(l));
                return *a.layers.back();
            };
            std::string e = x;
            if (first) e = step(*first, k, x, a.shape, into);
            a.end = chain(e, a.shape, into, depth + 1);
            if (a.end == output_)
                fail(first ? *first : g_.node(u[0].first),
                     "starts a branch that ends at the graph output without meeting the others");
        };
        for (auto& [ni, k] : u) {
            const auto& n = g_.node(ni);
            arms.emplace_back();
            arms.back().shape = s;
            arms.back().end = t;  // an identity arm when n is the merge itself
            if (!is_merge(n)) extend(arms.back(), &n, k, t);
        }
        // Merge arms until one node merges them all. A Branches nested as the first layer
        // of a branch reads the fork's tensor too, so its arms show up here as well: its
        // merge (a Concat or Add over some of the arms) comes first and becomes one arm.
        for (;;) {
            std::vector<std::string> ends;
            for (auto& a : arms) ends.push_back(a.end);
            const ::onnx::NodeProto* mp = nullptr;
            for (size_t a = 0; a < arms.size() && !mp; ++a)
                for (auto& e : uses(arms[a].end)) {
                    const auto& cand = g_.node(e.first);
                    if (!is_merge(cand) || used_[size_t(e.first)]) continue;
                    auto left = ends;
                    bool all = true;
                    for (auto& x : dynamic_inputs(cand)) {
                        auto it = std::find(left.begin(), left.end(), x);
                        if (it == left.end()) all = false;
                        else left.erase(it);
                    }
                    if (all) {
                        mp = &cand;
                        break;
                    }
                }
            if (!mp) {
                const auto& e = uses(arms[0].end);
                fail(g_.node(e.empty() ? u[0].first : e[0].first),
                     "the branches forked from '" + t + "' do not meet at one Concat, Add or Mean: kitnn's Branches cannot express this graph");
            }
            const ::onnx::NodeProto& m = *mp;
            std::vector<bool> taken(arms.size(), false);
            std::vector<size_t> order;  // the merged arms, in the merge's input order
            auto claim = [&](const std::string& x, const ::onnx::NodeProto& at) {
                for (size_t a = 0; a < arms.size(); ++a)
                    if (!taken[a] && arms[a].end == x) {
                        taken[a] = true;
                        order.push_back(a);
                        return;
                    }
                fail(at, "reads '" + x + "', which is not one of the branches forked from '" + t +
                             "': kitnn's Branches merge exactly the branches of one fork");
            };
            auto unclaimed = [&](const std::string& x) {
                for (size_t a = 0; a < arms.size(); ++a)
                    if (!taken[a] && arms[a].end == x) return true;
                return false;
            };
            // A merge node with all its arms as inputs (Concat, Mean): none may be a constant.
            auto merge_all = [&](const char* verb) {
                take(m);
                for (auto& x : m.input()) {
                    if (consts_.count(x)) fail(m, std::string(verb) + " a constant '" + x + "' (not supported)");
                    claim(x, m);
                }
                single_output(m);
                return m.output(0);
            };
            std::string out;
            Merge merge;
            if (m.op_type() == "Concat") {
                merge = Merge::concat;
                only(m, {"axis"});
                const std::int64_t axis = int_attr(m, "axis", 1);
                const int rank = arms[0].shape.is_image() ? 4 : 2;
                if (axis != 1 && axis != 1 - rank)
                    fail(m, "axis " + std::to_string(axis) + " is not supported (kitnn concatenates channels, axis 1)");
                out = merge_all("concatenates");
            } else if (m.op_type() == "Mean") {  // one node averages all its arms
                merge = Merge::mean;
                only(m, {});
                out = merge_all("averages");
            } else {  // Add: (z_a + z_b) + z_c ..., as long as the next Add adds another arm
                merge = Merge::add;
                const ::onnx::NodeProto* a = &m;
                std::string acc;
                for (;;) {
                    only(*a, {});
                    take(*a);
                    if (a->input_size() != 2) fail(*a, "needs 2 inputs");
                    for (int k = 0; k < 2; ++k) {
                        if (consts_.count(a->input(k)))
                            fail(*a, "adds a constant '" + a->input(k) + "' (only after MatMul, as a bias)");
                        if (acc.empty() || a->input(k) != acc) claim(a->input(k), *a);
                    }
                    single_output(*a);
                    acc = a->output(0);
                    const auto* next = sole_consumer(acc);
                    if (!next || next->op_type() != "Add" || next->input_size() != 2) break;
                    const std::string other = next->input(0) == acc ? next->input(1) : next->input(0);
                    if (!unclaimed(other)) break;
                    a = next;
                }
                out = acc;
                // A Div of the sum by the number of its arms (a scalar constant): the
                // mean of kitnn's export.
                const auto* div = sole_consumer(acc);
                if (div && div->op_type() == "Div" && div->input_size() == 2 && div->input(0) == acc &&
                    consts_.count(div->input(1))) {
                    const Const& c = consts_.at(div->input(1));
                    if (c.is_real && c.count() == 1 && c.real.size() == 1 && c.real[0] == double(order.size())) {
                        only(*div, {});
                        take(*div);
                        single_output(*div);
                        merge = Merge::mean;
                        out = div->output(0);
                    }
                }
            }
            auto container = std::make_unique<Branches<T>>(merge);
            for (size_t a : order) {
                Chain<T>& c = container->branch();
                for (auto& l : arms[a].layers) c.add_built(std::move(l));
            }
            if (++branches_ > kMaxBranches) fail(m, "more than " + std::to_string(kMaxBranches) + " branches");
            if (order.size() == arms.size()) {  // the fork's own merge
                put(m, std::move(container), s, place);
                return out;
            }
            // An inner merge: its arms become one arm (that Branches), which goes on from
            // the merge's output until it meets the others.
            Arm joined;
            joined.shape = s;
            {
                const Place into = [&](std::unique_ptr<Layer<T>> l) -> Layer<T>& {
                    l->build(joined.shape, rng);
                    joined.layers.push_back(std::move(l));
                    return *joined.layers.back();
                };
                put(m, std::move(container), joined.shape, into);
            }
            std::vector<Arm> rest;
            for (size_t a = 0; a < arms.size(); ++a)
                if (!taken[a]) rest.push_back(std::move(arms[a]));
            rest.push_back(std::move(joined));
            arms = std::move(rest);
            extend(arms.back(), nullptr, 0, out);
        }
    }

    // One layer (or a fused pattern) starting at node n, which reads t as input k.
    std::string step(const ::onnx::NodeProto& n, int k, const std::string& t, Shape& s, const Place& place) {
        const std::string& op = n.op_type();
        take(n);
        if (k != 0)
            fail(n, "reads the computed tensor '" + t + "' as input " + std::to_string(k) +
                        " (weights must be constants: non-constant weights are not supported)");
        const auto dyn = dynamic_inputs(n);
        if (dyn.size() != 1)
            fail(n, "has " + std::to_string(dyn.size()) + " computed inputs; kitnn layers have one (weights must be constants)");
        single_output(n);
        const std::string y = n.output(0);
        if (op == "Conv") return conv(n, t, s, place);
        if (op == "Gemm" || op == "MatMul") return dense(n, s, place);
        if (op == "Relu" || op == "Sigmoid" || op == "Tanh") {
            only(n, {});
            if (op == "Relu") put(n, std::make_unique<ReLU<T>>(), s, place);
            else if (op == "Sigmoid") put(n, std::make_unique<Sigmoid<T>>(), s, place);
            else put(n, std::make_unique<Tanh<T>>(), s, place);
            return y;
        }
        if (op == "LeakyRelu") {
            only(n, {"alpha"});
            const float a = float_attr(n, "alpha", 0.01f);
            if (!(a >= 0)) fail(n, "alpha " + std::to_string(a) + " < 0 is not supported (kitnn's LeakyReLU needs alpha >= 0)");
            put(n, make(n, [&] { return std::make_unique<LeakyReLU<T>>(float_to_double(a)); }), s, place);
            return y;
        }
        if (op == "MaxPool" || op == "AveragePool") return pool(n, s, place);
        if (op == "GlobalAveragePool") return global_pool(n, s, place);
        if (op == "Flatten") {
            only(n, {"axis"});
            const std::int64_t axis = int_attr(n, "axis", 1);
            if (axis != 1) fail(n, "axis " + std::to_string(axis) + " is not supported (kitnn flattens to (N, C*H*W): axis 1)");
            put(n, std::make_unique<Flatten<T>>(), s, place);
            return y;
        }
        if (op == "Reshape") {
            only(n, {"allowzero"});
            const Const& c = constant(n, 1, "shape");
            if (c.ints.size() != 2)
                fail(n, "reshapes to " + std::to_string(c.ints.size()) +
                            "-D; kitnn only reshapes to 2-D (N, C*H*W), a Flatten (dynamic shapes are not supported)");
            const std::int64_t a = c.ints[0], b = c.ints[1], F = s.size();
            const bool zero_copies = int_attr(n, "allowzero", 0) == 0;
            const bool batch_ok = a == -1 || (a == 0 && zero_copies) || (batch_ > 0 && a == batch_);
            const bool feat_ok = b == F || (b == -1 && a != -1);
            if (!batch_ok || !feat_ok)
                fail(n, "reshapes " + s.str() + " to " + dims_str(c.ints) + "; kitnn only reshapes to (N, " +
                            std::to_string(F) + "), a Flatten");
            put(n, std::make_unique<Flatten<T>>(), s, place);
            return y;
        }
        if (op == "BatchNormalization") {
            only(n, {"epsilon", "momentum", "training_mode", "spatial"});
            if (int_attr(n, "training_mode", 0) != 0) fail(n, "training_mode = 1 is not supported (inference form only)");
            if (int_attr(n, "spatial", 1) != 1) fail(n, "spatial = 0 is not supported");
            const Const& g = weights(n, 1, "scale");
            const Const& b = weights(n, 2, "B");
            const Const& mean = weights(n, 3, "mean");
            const Const& var = weights(n, 4, "var");
            const double eps = float_to_double(float_attr(n, "epsilon", 1e-5f));
            const double mom = float_to_double(float_attr(n, "momentum", 0.9f));
            auto l = make(n, [&] { return std::make_unique<BatchNorm<T>>(mom, eps); });
            auto& bn = static_cast<BatchNorm<T>&>(put(n, std::move(l), s, place));
            fill(n, bn.gamma(), g.real, "scale");
            fill(n, bn.beta(), b.real, "B");
            fill(n, bn.moving_mean(), mean.real, "mean");
            fill(n, bn.moving_variance(), var.real, "var");
            return y;
        }
        if (op == "Dropout") {
            only(n, {"ratio", "seed"});
            double rate = 0.5;
            if (opset_ < 12) rate = float_to_double(float_attr(n, "ratio", 0.5f));
            if (const Const* r = optional_weights(n, 1, "ratio")) {
                if (r->real.size() != 1) fail(n, "ratio must be one float value");
                rate = r->real[0];  // a float ratio comes back as the decimal kitnn wrote
                if (rate == double(float(rate))) rate = float_to_double(float(rate));
            }
            if (const Const* tm = optional_constant(n, 2, "training_mode"))
                if (tm->ints.size() != 1 || tm->ints[0] != 0)
                    fail(n, "training_mode must be false (kitnn imports the inference form)");
            put(n, make(n, [&] { return std::make_unique<Dropout<T>>(rate); }), s, place);
            return y;
        }
        if (op == "Add") fail(n, "adds a constant to a computed tensor (only supported after MatMul, as its bias)");
        if (op == "Concat") {  // of one tensor: a copy
            only(n, {"axis"});
            if (n.input_size() != 1) fail(n, "concatenates a constant (not supported)");
            return y;
        }
        if (op == "Identity") {
            only(n, {});
            return y;
        }
        if (op == "Pad") {  // PyTorch writes a Pad of zeros before AvgPool2d(count_include_pad=True)
            only(n, {"mode", "pads", "value"});
            std::vector<std::int64_t> p = ints_attr(n, "pads", {});  // opset < 11
            if (opset_ >= 11) p = constant(n, 1, "pads").ints;
            for (auto v : p)
                if (v != 0)
                    fail(n, "pads " + dims_str(p) +
                                " are not supported: kitnn pads only inside Conv and the pools (a Pad of zeros is skipped)");
            return y;
        }
        if (op == "Softmax") {
            only(n, {"axis"});
            const std::int64_t axis = int_attr(n, "axis", opset_ >= 13 ? -1 : 1);
            need_rank(n, s, false);
            if (axis != 1 && axis != -1) fail(n, "axis " + std::to_string(axis) + " is not supported (kitnn's Softmax is over the features, axis 1)");
            put(n, std::make_unique<Softmax<T>>(), s, place);
            return y;
        }
        fail(n, "op '" + op + "' is not supported (docs/onnx.md lists the ops kitnn imports)");
    }

    // Relu right after Conv/Gemm (and nothing else reading the result): fused.
    bool fuse_relu(const std::string& y, std::string& out) {
        const auto* r = sole_consumer(y);
        if (!r || r->op_type() != "Relu" || r->attribute_size() != 0) return false;
        take(*r);
        single_output(*r);
        out = r->output(0);
        return true;
    }

    // The 2-D padding of a Conv or pool as kitnn's Padding: valid (no pads), same (the
    // pads kitnn's rule gives for this input), or explicit (the same p on every side).
    struct Pads {
        Padding padding;
        int pad;
    };
    Pads pads(const ::onnx::NodeProto& n, const Shape& s, std::int64_t kh, std::int64_t kw, std::int64_t sh,
              std::int64_t sw, bool explicit_ok) {
        const std::string autopad = string_attr(n, "auto_pad", "NOTSET");
        const Eigen::Index H = s.h(), W = s.w();
        // kitnn's same padding for this input: ceil(in / stride) outputs, the odd pixel at the end.
        auto same = [&](Eigen::Index in, std::int64_t k, std::int64_t st) {
            const Eigen::Index o = (in + st - 1) / st;
            const Eigen::Index total = std::max<Eigen::Index>((o - 1) * st + k - in, 0);
            return std::pair<std::int64_t, std::int64_t>(total / 2, total - total / 2);
        };
        const auto sH = same(H, kh, sh), sW = same(W, kw, sw);
        std::vector<std::int64_t> p;
        if (autopad == "VALID") p = {0, 0, 0, 0};
        else if (autopad == "SAME_UPPER") p = {sH.first, sW.first, sH.second, sW.second};
        else if (autopad == "SAME_LOWER") p = {sH.second, sW.second, sH.first, sW.first};
        else if (autopad == "NOTSET") p = ints_attr(n, "pads", {0, 0, 0, 0});
        else fail(n, "auto_pad '" + autopad + "' is not supported");
        if (p.size() != 4) fail(n, "pads has " + std::to_string(p.size()) + " values (expected 4 for 2-D)");
        for (auto v : p)
            if (v < 0) fail(n, "negative pads " + dims_str(p) + " are not supported");
        if (p == std::vector<std::int64_t>{0, 0, 0, 0}) {
            if (H < kh || W < kw) fail(n, "kernel " + std::to_string(kh) + "x" + std::to_string(kw) + " is larger than its input " + s.str());
            return {Padding::valid, 0};
        }
        if (p == std::vector<std::int64_t>{sH.first, sW.first, sH.second, sW.second}) return {Padding::same, 0};
        if (explicit_ok && p[0] == p[1] && p[0] == p[2] && p[0] == p[3] && p[0] < std::min(kh, kw))
            return {Padding::explicit_pad, int(p[0])};
        fail(n, "pads " + dims_str(p) + " cannot be expressed in kitnn: it pads " +
                    std::string(explicit_ok ? "the same on every side (less than the kernel), or " : "") +
                    "as 'same' (for this " + std::to_string(H) + "x" + std::to_string(W) + " input: " +
                    dims_str({sH.first, sW.first, sH.second, sW.second}) + "), or not at all");
    }

    std::string conv(const ::onnx::NodeProto& n, const std::string&, Shape& s, const Place& place) {
        only(n, {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
        need_rank(n, s, true);
        const Const& w = weights(n, 1, "W");
        const Const* b = optional_weights(n, 2, "B");
        if (w.dims.size() != 4) fail(n, "weights W of rank " + std::to_string(w.dims.size()) + " (only 2-D convolutions)");
        const std::int64_t F = w.dims[0], C = w.dims[1], kh = w.dims[2], kw = w.dims[3];
        if (int_attr(n, "group", 1) != 1)
            fail(n, "group " + std::to_string(int_attr(n, "group", 1)) + " is not supported (kitnn's Conv2D has group 1)");
        const auto dil = ints_attr(n, "dilations", {1, 1});
        for (auto d : dil)
            if (d != 1) fail(n, "dilations " + dims_str(dil) + " are not supported (only 1)");
        const auto ks = ints_attr(n, "kernel_shape", {kh, kw});
        if (ks != std::vector<std::int64_t>{kh, kw})
            fail(n, "kernel_shape " + dims_str(ks) + " does not match the weights " + dims_str(w.dims));
        if (C != s.c()) fail(n, "weights for " + std::to_string(C) + " input channels, the input has " + std::to_string(s.c()));
        if (F < 1 || kh < 1 || kw < 1 || F > (1 << 24) || kh > (1 << 16) || kw > (1 << 16)) fail(n, "weights " + dims_str(w.dims) + " out of range");
        const auto st = ints_attr(n, "strides", {1, 1});
        if (st.size() != 2 || st[0] != st[1] || st[0] < 1 || st[0] > (1 << 16))
            fail(n, "strides " + dims_str(st) + " are not supported (kitnn's Conv2D has one stride >= 1 for both axes)");
        if (b && (b->dims.size() != 1 || b->dims[0] != F)) fail(n, "bias B of shape " + dims_str(b->dims) + ", expected [" + std::to_string(F) + "]");
        const Pads pd = pads(n, s, kh, kw, st[0], st[0], true);
        std::string y = n.output(0);
        const bool relu = fuse_relu(y, y);
        const Activation act = relu ? Activation::relu : Activation::linear;
        const std::array<int, 2> k{int(kh), int(kw)};
        auto l = make(n, [&]() -> std::unique_ptr<Layer<T>> {
            if (pd.padding == Padding::explicit_pad)
                return std::make_unique<Conv2D<T>>(int(F), k, act, pd.pad, int(st[0]), Init::glorot_uniform, b != nullptr);
            return std::make_unique<Conv2D<T>>(int(F), k, act, pd.padding, int(st[0]), Init::glorot_uniform, b != nullptr);
        });
        auto& c = static_cast<Conv2D<T>&>(put(n, std::move(l), s, place));
        fill(n, c.kernel(), w.real, "W");
        if (b) fill(n, c.bias(), b->real, "B");
        return y;
    }

    // Gemm (A, B, C) or MatMul (A, B) [+ Add (bias)] -> Dense [+ Relu].
    std::string dense(const ::onnx::NodeProto& n, Shape& s, const Place& place) {
        need_rank(n, s, false);
        const std::int64_t F = s.size();
        const Const& B = weights(n, 1, "B");
        const Const* C = nullptr;
        bool transB = false;
        const ::onnx::NodeProto* at = &n;  // where a bias problem is reported
        std::string y = n.output(0);
        if (n.op_type() == "Gemm") {
            only(n, {"alpha", "beta", "transA", "transB"});
            if (int_attr(n, "transA", 0) != 0) fail(n, "transA = 1 is not supported");
            if (float_attr(n, "alpha", 1.f) != 1.f) fail(n, "alpha != 1 is not supported");
            C = optional_weights(n, 2, "C");
            if (C && float_attr(n, "beta", 1.f) != 1.f) fail(n, "beta != 1 is not supported");
            transB = int_attr(n, "transB", 0) != 0;
        } else {
            only(n, {});
            // MatMul then Add(constant): the bias.
            const auto* a = sole_consumer(y);
            if (a && a->op_type() == "Add" && dynamic_inputs(*a).size() == 1) {
                only(*a, {});
                take(*a);
                single_output(*a);
                const int ci = a->input(0) == y ? 1 : 0;
                C = &weights(*a, ci, "bias");
                at = a;
                y = a->output(0);
            }
        }
        if (B.dims.size() != 2) fail(n, "B of rank " + std::to_string(B.dims.size()) + " (expected a matrix)");
        const std::int64_t in = transB ? B.dims[1] : B.dims[0], units = transB ? B.dims[0] : B.dims[1];
        if (in != F) fail(n, "B " + dims_str(B.dims) + (transB ? " (transB)" : "") + " takes " + std::to_string(in) + " inputs, the input has " + std::to_string(F));
        if (units < 1 || units > (1 << 24)) fail(n, "B " + dims_str(B.dims) + " out of range");
        std::vector<double> bias(size_t(units), 0.0);
        if (C) {  // (OUT), (1, OUT), or one value broadcast
            const std::int64_t cn = C->count();
            if (cn == units && (C->dims.size() == 1 || (C->dims.size() == 2 && C->dims[0] == 1))) bias = C->real;
            else if (cn == 1) bias.assign(size_t(units), C->real.at(0));
            else fail(*at, "bias of shape " + dims_str(C->dims) + " is not supported (expected [" + std::to_string(units) + "])");
        }
        const bool relu = fuse_relu(y, y);
        auto l = make(n, [&] { return std::make_unique<Dense<T>>(int(units), relu ? Activation::relu : Activation::linear); });
        auto& d = static_cast<Dense<T>&>(put(n, std::move(l), s, place));
        // kitnn's kernel is (IN, OUT) row-major: B as it is, or B^T for transB.
        T* k = d.kernel().value.data();
        for (std::int64_t i = 0; i < in; ++i)
            for (std::int64_t o = 0; o < units; ++o)
                k[i * units + o] = T(transB ? B.real[size_t(o * in + i)] : B.real[size_t(i * units + o)]);
        fill(n, d.bias(), bias, "bias");
        return y;
    }

    std::string pool(const ::onnx::NodeProto& n, Shape& s, const Place& place) {
        const bool max = n.op_type() == "MaxPool";
        if (max) only(n, {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations", "storage_order"});
        else only(n, {"kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "count_include_pad"});
        need_rank(n, s, true);
        const auto ks = ints_attr(n, "kernel_shape", {});
        if (ks.size() != 2 || ks[0] < 1 || ks[1] < 1 || ks[0] > (1 << 16) || ks[1] > (1 << 16))
            fail(n, "kernel_shape " + dims_str(ks) + " is not supported (2-D, >= 1)");
        const auto st = ints_attr(n, "strides", {1, 1});
        if (st.size() != 2 || st[0] < 1 || st[1] < 1 || st[0] > (1 << 16) || st[1] > (1 << 16))
            fail(n, "strides " + dims_str(st) + " are not supported");
        if (max) {
            const auto dil = ints_attr(n, "dilations", {1, 1});
            for (auto d : dil)
                if (d != 1) fail(n, "dilations " + dims_str(dil) + " are not supported (only 1)");
        }
        const Pads pd = pads(n, s, ks[0], ks[1], st[0], st[1], false);
        if (!max && pd.padding == Padding::same && int_attr(n, "count_include_pad", 0) != 0)
            fail(n, "count_include_pad = 1 with padding is not supported (kitnn averages the real pixels only)");
        if (int_attr(n, "ceil_mode", 0) != 0) {
            // ceil_mode changes nothing when the windows fit exactly.
            const auto& p = ints_attr(n, "pads", {0, 0, 0, 0});
            const std::int64_t eh = s.h() + (p.size() == 4 ? p[0] + p[2] : 0) - ks[0];
            const std::int64_t ew = s.w() + (p.size() == 4 ? p[1] + p[3] : 0) - ks[1];
            if (string_attr(n, "auto_pad", "NOTSET") != "NOTSET" || eh % st[0] != 0 || ew % st[1] != 0)
                fail(n, "ceil_mode = 1 is not supported here (kitnn's pools round down; it would add a partial window)");
        }
        const std::array<int, 2> pool{int(ks[0]), int(ks[1])}, stride{int(st[0]), int(st[1])};
        auto l = make(n, [&]() -> std::unique_ptr<Layer<T>> {
            if (max) return std::make_unique<MaxPool2D<T>>(pool, stride, pd.padding);
            return std::make_unique<AvgPool2D<T>>(pool, stride, pd.padding);
        });
        put(n, std::move(l), s, place);
        return n.output(0);
    }

    // GlobalAveragePool then Flatten (or Reshape to (N, C)): kitnn's GlobalAvgPool2D,
    // whose output is flat. Alone it stays an image (C, 1, 1): an AvgPool2D over H x W.
    std::string global_pool(const ::onnx::NodeProto& n, Shape& s, const Place& place) {
        only(n, {});
        need_rank(n, s, true);
        std::string y = n.output(0);
        const auto* f = sole_consumer(y);
        bool flat = false;
        if (f && f->op_type() == "Flatten" && int_attr(*f, "axis", 1) == 1 && f->attribute_size() <= 1 &&
            dynamic_inputs(*f).size() == 1)
            flat = true;
        if (f && f->op_type() == "Reshape" && dynamic_inputs(*f).size() == 1 && f->input_size() == 2 &&
            f->attribute_size() == 0) {
            auto it = consts_.find(f->input(1));
            if (it != consts_.end() && it->second.ints.size() == 2 && (it->second.ints[0] == -1 || it->second.ints[0] == 0 || it->second.ints[0] == batch_) &&
                (it->second.ints[1] == s.c() || (it->second.ints[1] == -1 && it->second.ints[0] != -1)))
                flat = true;
        }
        if (flat) {
            take(*f);
            single_output(*f);
            y = f->output(0);
            put(n, std::make_unique<GlobalAvgPool2D<T>>(), s, place);
            return y;
        }
        const std::array<int, 2> pool{int(s.h()), int(s.w())};
        put(n, make(n, [&] { return std::make_unique<AvgPool2D<T>>(pool, pool, Padding::valid); }), s, place);
        return y;
    }

    const ::onnx::ModelProto& m_;
    const ::onnx::GraphProto& g_;
    std::string file_;
    int opset_ = 0;
    std::map<std::string, Const> consts_;
    std::map<std::string, int> producer_;
    std::map<std::string, std::vector<std::pair<int, int>>> consumers_;  // tensor -> (node, input)
    std::vector<bool> used_;
    std::map<const ::onnx::NodeProto*, int> index_of_;
    std::string input_, output_;
    const ::onnx::ValueInfoProto* input_info_ = nullptr;
    std::int64_t batch_ = -1;  // the input's fixed batch size, -1 when symbolic
    std::uint32_t layers_ = 0, branches_ = 0;
    std::int64_t activations_ = 0;
};

}  // namespace onnx_detail

// A kitnn model from a parsed ONNX model; `name` (a path) prefixes error messages.
template <class T>
Sequential<T> from_onnx(const ::onnx::ModelProto& m, const std::string& name = "onnx model") {
    return onnx_detail::Importer<T>(m, name).run();
}

// Parses ONNX bytes (untrusted): protobuf's recursion limit, a total size limit.
template <class T>
Sequential<T> parse_onnx(const void* data, size_t size, const std::string& name = "onnx model") {
    if (size == 0) throw OnnxError(name + ": empty file, not an ONNX model");
    if (size >= kMaxOnnxFileBytes)
        throw OnnxError(name + ": " + std::to_string(size) + " bytes is more than protobuf can parse (2 GB)");
    google::protobuf::io::ArrayInputStream raw(data, int(size));
    google::protobuf::io::CodedInputStream in(&raw);
    in.SetTotalBytesLimit(int(size));
    in.SetRecursionLimit(64);
    ::onnx::ModelProto m;
    if (!m.ParseFromCodedStream(&in) || !in.ConsumedEntireMessage())
        throw OnnxError(name + ": not a valid ONNX protobuf (truncated or corrupted)");
    return from_onnx<T>(m, name);
}

template <class T>
Sequential<T> load_onnx(const std::string& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status)) throw OnnxError(path + ": cannot open: no such file");
    if (!std::filesystem::is_regular_file(status)) throw OnnxError(path + ": not a regular file");
    const auto size = std::filesystem::file_size(path, ec);
    if (ec) throw OnnxError(path + ": cannot read its size: " + ec.message());
    if (size >= kMaxOnnxFileBytes)
        throw OnnxError(path + ": " + std::to_string(size) + " bytes is more than protobuf can parse (2 GB)");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw OnnxError(path + ": cannot open: " + std::strerror(errno));
    std::vector<char> bytes(static_cast<size_t>(size));
    f.read(bytes.data(), std::streamsize(size));
    if (size_t(f.gcount()) != bytes.size()) throw OnnxError(path + ": read error");
    return parse_onnx<T>(bytes.data(), bytes.size(), path);
}

}  // namespace kitnn
