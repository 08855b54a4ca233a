// kitnn/model/sequential.hpp — a stack of layers with inferred shapes.
//
//   Sequential<float> model(Shape::image(1, 28, 28), /*seed=*/1);
//   model.add<Conv2D>(4, std::array<int, 2>{2, 2}, Activation::relu);
//   model.add<MaxPool2D>();
//   model.add<Flatten>();
//   model.add<Dense>(16, Activation::relu);
//   model.add<Dropout>(0.5);
//   model.add<Dense>(10);           // logits; SoftmaxCrossEntropy is the loss
//
// Every add() builds the layer right away from the previous output shape, so an
// incompatible layer fails at once, naming its index, type and both shapes.
// Buffers: acts_[i] is layer i's output (N, ...), grads_[i] its gradient; both are
// sized on the first batch and reused, so a training step allocates nothing.
#pragma once

#include "kitnn/layers/fusion.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/softmax.hpp"

#include <cstdio>
#include <iomanip>
#include <map>
#include <memory>
#include <sstream>

namespace kitnn {

template <class T>
class Sequential {
public:
    explicit Sequential(Shape input, std::uint64_t seed = 1) : input_(std::move(input)), rng_(seed) {
        if (input_.dims.empty() || input_.size() <= 0)
            throw ShapeError("Sequential: the input shape must be non-empty");
    }
    Sequential(Sequential&&) = default;
    Sequential& operator=(Sequential&&) = default;

    // add<Conv2D>(args...) constructs Conv2D<T>(args...), builds it and appends it.
    template <template <class> class L, class... A>
    L<T>& add(A&&... args) {
        auto layer = std::make_unique<L<T>>(std::forward<A>(args)...);
        L<T>& ref = *layer;
        add(std::move(layer));
        return ref;
    }
    Layer<T>& add(std::unique_ptr<Layer<T>> layer) {
        const Shape in = output_shape();
        try {
            layer->build(in, rng_);
        } catch (const ShapeError& e) {
            throw ShapeError(where(layers_.size(), *layer) + strip_type(e.what(), *layer) +
                             " (input shape " + in.str() + " from " +
                             (layers_.empty() ? std::string("the model input")
                                              : "layer " + std::to_string(layers_.size() - 1)) +
                             ")");
        }
        layer->set_fusion(fuse_);  // a container added after set_fusion follows it
        layers_.push_back(std::move(layer));
        acts_.emplace_back();
        grads_.emplace_back();
        for (auto* p : layers_.back()->params()) params_.push_back(p);
        return *layers_.back();
    }

    // x: (N, input shape) -> logits (N, output shape). Keeps a pointer to x for
    // backward: x must stay alive and unchanged until backward() returns.
    const Tensor<T>& forward(const Tensor<T>& x, bool training) {
        if (layers_.empty()) throw std::logic_error("Sequential: forward on a model with no layers");
        if (!matches(x, input_))
            throw ShapeError("model input: expected " + input_.str() + ", got " + batch_str(x) +
                             " (layer 0, " + layers_[0]->type() + ")");
        input_ptr_ = &x;
        folded_ = false;
        for (size_t i = 0; i < layers_.size();) {
            const Tensor<T>& in = i ? acts_[i - 1] : x;
            size_t n = 1;  // layers run by this step: > 1 when a BatchNorm and ReLU were folded in
            try {
                n = folding_.step(layers_, i, in, acts_, training, fuse_);
            } catch (const ShapeError& e) {
                throw ShapeError(where(i, *layers_[i]) + strip_type(e.what(), *layers_[i]));
            }
            folded_ |= n > 1;
            i += n;
        }
        return acts_.back();
    }

    // dout: dL/d(logits) (N, output shape). Parameter gradients are accumulated;
    // call zero_grad() before each step. No gradient is computed for the input.
    void backward(const Tensor<T>& dout) {
        if (!input_ptr_) throw std::logic_error("Sequential: backward before forward");
        if (folded_)
            throw std::logic_error("Sequential: backward after an inference forward that folded BatchNorm and ReLU "
                                   "into the convolutions (layers/fusion.hpp); run forward with training = true, "
                                   "or turn folding off with set_fusion(false)");
        if (dout.dimensions() != acts_.back().dimensions())
            throw ShapeError("Sequential::backward: gradient " + batch_str(dout) +
                             " does not match the output " + batch_str(acts_.back()));
        for (size_t i = layers_.size(); i-- > 0;) {
            const Tensor<T>& x = i ? acts_[i - 1] : *input_ptr_;
            const Tensor<T>& dy = (i + 1 == layers_.size()) ? dout : grads_[i];
            layers_[i]->backward(x, acts_[i], dy, i ? &grads_[i - 1] : nullptr);
        }
    }

    // Inference passes (forward with training = false, predict) fold each BatchNorm and
    // ReLU after a linear Conv2D into it (layers/fusion.hpp): on by default; off gives
    // every layer's output (and backward after an inference pass) at three passes' cost.
    void set_fusion(bool on) {
        fuse_ = on;
        for (auto& l : layers_) l->set_fusion(on);
    }
    bool fusion() const { return fuse_; }

    void zero_grad() {
        for (auto* p : params_) p->grad.setZero();
    }

    // Class probabilities (N, K) in eval mode (no dropout), in batches of `batch`:
    // softmax of the logits, or the model's own output when it ends in Softmax.
    Tensor<T> predict(const Tensor<T>& x, Eigen::Index batch = 256) {
        // Before layers_.back() below (a model file may hold no layers: found by fuzzing).
        if (layers_.empty()) throw std::logic_error("Sequential: predict on a model with no layers");
        if (!matches(x, input_))  // before copying input_.size() values per sample out of x
            throw ShapeError("model input: expected " + input_.str() + ", got " + batch_str(x));
        if (batch < 1) throw std::invalid_argument("Sequential::predict: batch must be >= 1");
        const Eigen::Index N = x.dimension(0);
        const Shape out = output_shape();
        Tensor<T> probs(N, out.chw()[0], out.chw()[1], out.chw()[2]);
        const Eigen::Index per_in = input_.size(), per_out = out.size();
        const bool ends_in_softmax = layers_.back()->type() == "Softmax";
        Tensor<T> chunk;
        for (Eigen::Index s = 0; s < N; s += batch) {
            const Eigen::Index b = std::min(batch, N - s);
            ensure(chunk, b, input_);
            std::copy(x.data() + s * per_in, x.data() + (s + b) * per_in, chunk.data());
            const Tensor<T>& z = forward(chunk, false);
            MatMap<T> P(probs.data() + s * per_out, b, per_out);
            if (ends_in_softmax) P = as_matrix(z);  // already probabilities
            else softmax_rows<T>(as_matrix(z), P);
        }
        input_ptr_ = nullptr;  // chunk dies here
        return probs;
    }

    // Every trainable tensor, in layer order. Collected once in add(), so the
    // training step (zero_grad, optimizer) does not build a new list every batch.
    const std::vector<Param<T>*>& params() { return params_; }
    std::int64_t param_count() {
        std::int64_t n = 0;
        for (auto& l : layers_) n += l->param_count();
        return n;
    }
    std::int64_t macs() const {
        std::int64_t n = 0;
        for (auto& l : layers_) n += l->macs();
        return n;
    }

    size_t size() const { return layers_.size(); }
    Layer<T>& layer(size_t i) { return *layers_.at(i); }
    const Layer<T>& layer(size_t i) const { return *layers_.at(i); }
    const Shape& input_shape() const { return input_; }
    Shape output_shape() const { return layers_.empty() ? input_ : layers_.back()->output_shape(); }
    Rng& rng() { return rng_; }

    // A Keras-style table: layer (name and type), output shape, parameters, totals.
    // A container's (Branches) row counts all its nested tensors and is followed by
    // its branches' layers, indented and tagged with the branch ("  b1: conv2d_2
    // (Conv2D)"; an empty branch shows as "identity"). Param # and "Total params"
    // include the non-trainable state (BatchNorm's moving statistics), as in Keras.
    std::string summary(const std::string& name = "sequential") const {
        std::ostringstream s;
        const std::string rule(65, '_'), dbl(65, '=');
        s << "Model: \"" << name << "\"\n" << rule << "\n";
        s << std::left << std::setw(29) << "Layer (type)" << std::setw(26) << "Output Shape"
          << "Param #\n" << dbl << "\n";
        std::map<std::string, int> seen;
        std::int64_t trainable = 0, fixed = 0;
        for (size_t i = 0; i < layers_.size(); ++i) {
            auto& l = const_cast<Layer<T>&>(*layers_[i]);
            summary_rows(s, l, "", 0, seen);
            trainable += values(l.params());
            fixed += values(l.state());
            s << (i + 1 == layers_.size() ? dbl : rule) << "\n";
        }
        s << "Total params: " << group(trainable + fixed) << "\n";
        s << "Trainable params: " << group(trainable) << "\n";
        s << "Non-trainable params: " << group(fixed) << "\n" << rule << "\n";
        return s.str();
    }

    // 11022 -> "11,022"
    static std::string group(std::int64_t n) {
        std::string d = std::to_string(n), r;
        for (size_t i = 0; i < d.size(); ++i) {
            if (i && (d.size() - i) % 3 == 0) r += ',';
            r += d[i];
        }
        return r;
    }

private:
    static std::int64_t values(const std::vector<Param<T>*>& ps) {
        std::int64_t n = 0;
        for (auto* p : ps) n += p->value.size();
        return n;
    }
    // One summary row for `l` (label prefixed by `tag`), then, for a container, the rows
    // of its branches' layers, indented two spaces per nesting level.
    static void summary_rows(std::ostringstream& s, Layer<T>& l, const std::string& tag, int depth,
                             std::map<std::string, int>& seen) {
        const std::string base = snake(l.type());
        const int k = seen[base]++;
        const std::string label = tag + (k ? base + "_" + std::to_string(k) : base) + " (" + l.type() + ")";
        s << std::setw(29) << label << std::setw(26) << l.output_shape().keras()
          << group(values(l.params()) + values(l.state())) << "\n";
        for (size_t b = 0; b < l.branch_count(); ++b) {
            const std::string t = std::string(size_t(2 * (depth + 1)), ' ') + "b" + std::to_string(b) + ": ";
            const auto inner = l.branch(b);
            if (inner.empty())
                s << std::setw(29) << t + "identity" << std::setw(26) << l.input_shape().keras() << "0\n";
            for (auto* il : inner) summary_rows(s, *il, t, depth + 1, seen);
        }
    }
    static std::string where(size_t i, const Layer<T>& l) {
        return "layer " + std::to_string(i) + " (" + l.type() + "): ";
    }
    // Layers prefix their messages with "Type: "; the model says it with the index.
    static std::string strip_type(const std::string& msg, const Layer<T>& l) {
        const std::string p = l.type() + ": ";
        return msg.compare(0, p.size(), p) == 0 ? msg.substr(p.size()) : msg;
    }
    // "MaxPool2D" -> "max_pool2d", "Conv2D" -> "conv2d" (Keras's default names)
    static std::string snake(const std::string& t) {
        std::string r;
        for (size_t i = 0; i < t.size(); ++i) {
            const char c = t[i];
            if (std::isupper(static_cast<unsigned char>(c))) {
                const bool prev_lower = i && std::islower(static_cast<unsigned char>(t[i - 1]));
                if (prev_lower) r += '_';
                r += char(std::tolower(static_cast<unsigned char>(c)));
            } else {
                r += c;
            }
        }
        return r;
    }

    Shape input_;
    Rng rng_;
    std::vector<std::unique_ptr<Layer<T>>> layers_;
    std::vector<Tensor<T>> acts_;   // acts_[i]: output of layer i, (N, ...)
    Folding<T> folding_;            // inference: BatchNorm and ReLU folded into convolutions
    bool fuse_ = true;              // set_fusion
    bool folded_ = false;           // the last forward folded some layers: not every acts_[i] written
    std::vector<Tensor<T>> grads_;  // grads_[i]: dL/d acts_[i], (N, ...)
    const Tensor<T>* input_ptr_ = nullptr;
    std::vector<Param<T>*> params_;  // all layers' parameters, in order
};

namespace detail {
// Calls f(path, layer) for every layer, recursing into branches; path names the layer's
// place ("3", or "2.b1.0": layer 0 of branch 1 of layer 2). Used by the training
// checkpoint (generator states by path) and by DataParallel (the same layer in each
// replica).
template <class T, class F>
void for_each_layer(Layer<T>& l, const std::string& path, F&& f) {
    f(path, l);
    for (size_t b = 0; b < l.branch_count(); ++b) {
        auto layers = l.branch(b);
        for (size_t j = 0; j < layers.size(); ++j)
            for_each_layer(*layers[j], path + ".b" + std::to_string(b) + "." + std::to_string(j), f);
    }
}
template <class T, class F>
void for_each_layer(Sequential<T>& m, F&& f) {
    for (size_t i = 0; i < m.size(); ++i) for_each_layer(m.layer(i), std::to_string(i), f);
}

}  // namespace detail

}  // namespace kitnn
