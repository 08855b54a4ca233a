// kitnn/layers/branches.hpp — parallel branches inside a Sequential: an Inception
// module (branch outputs concatenated along channels), a residual block (summed) or
// an ensemble of whole networks (averaged; model/ensemble.hpp).
//
//   auto block = std::make_unique<Branches<float>>(Merge::add);
//   auto& b0 = block->branch();                      // branch 0: conv, conv
//   b0.add<Conv2D>(8, std::array<int, 2>{3, 3}, Activation::relu, Padding::same);
//   b0.add<Conv2D>(8, std::array<int, 2>{3, 3}, Activation::linear, Padding::same);
//   block->branch();                                 // branch 1: empty = identity (the shortcut)
//   model.add(std::move(block));                     // builds the branches' layers
//
// Every branch reads the container's input x: (N, C, H, W) or (N, F, 1, 1). Branch b
// computes z_b = f_b,L-1(... f_b,0(x)) (an empty branch is the identity, z_b = x), and
//   concat: y[n] = [z_0[n], z_1[n], ...]   along channels: in NCHW one sample's channels
//           are one contiguous block, so y[n] is the branches' blocks one after the other.
//           All z_b are images of the same H and W (or all flat); out channels = sum C_b.
//   add:    y = sum_b z_b                  all z_b of the same shape.
//   mean:   y = (sum_b z_b) / B            the same, divided by the number of branches B.
// Backward, with g_b = dL/dz_b:
//   concat: g_b = dy[:, c_b .. c_b + C_b)  the branch's channel slice, copied into its buffer
//   add:    g_b = dy                       every branch gets the whole gradient
//   mean:   g_b = dy / B                   (one scaled copy, shared by all branches)
// each branch runs its layers backward from g_b, and since x feeds every branch,
//   dx = sum_b dL/dx through branch b      (an identity branch contributes g_b itself).
// Branch 0's first layer writes straight into dx; the others write into their own
// buffer, which is then added. Parameter gradients accumulate inside the layers as
// always. When the container is the model's first layer, dx is null: then the first
// layer of every branch gets a null dx too (it still accumulates its parameters'
// gradients) and nothing is summed.
//
// Layers added to a branch are only stored; they are built when the container is
// built (Sequential::add builds at once): branch 0 first, each layer from the previous
// one's output shape, the first from the container's input. A shape error names the
// place, e.g. "branch 1, layer 0 (Conv2D): kernel 5x5 is larger than the input ...".
// Each branch owns the activation and gradient buffers of its layers, sized on the
// first batch: no allocation in steady state. A branch may hold another Branches.
// Threads: with fewer samples than threads, balanced branches run forward side by side,
// one thread each (branch_owners); otherwise one after the other, threads inside the layers.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/fusion.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

#include <algorithm>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kitnn {

enum class Merge { concat, add, mean };
inline const char* to_string(Merge m) {
    return m == Merge::add ? "add" : m == Merge::mean ? "mean" : "concat";
}
inline Merge merge_from_string(const std::string& s) {
    if (s == "concat") return Merge::concat;
    if (s == "add") return Merge::add;
    if (s == "mean") return Merge::mean;
    throw std::runtime_error("unknown merge '" + s + "' (expected concat, add or mean)");
}

template <class T>
class Branches;

// One branch: its layers, in order, stored until the container is built.
template <class T>
class Chain {
public:
    // add<Conv2D>(args...) stores Conv2D<T>(args...) (built later, with the container).
    template <template <class> class L, class... A>
    L<T>& add(A&&... args) {
        auto layer = std::make_unique<L<T>>(std::forward<A>(args)...);
        L<T>& ref = *layer;
        store(std::move(layer), false);
        return ref;
    }
    Layer<T>& add(std::unique_ptr<Layer<T>> layer) { return store(std::move(layer), false); }
    // For the model loader, which builds nested layers one at a time (to check each
    // against the file before it allocates, and to read its weights in file order):
    // `layer` is already built for the input shape it gets at this position. The
    // container's next build checks that shape and keeps the layer and its weights.
    Layer<T>& add_built(std::unique_ptr<Layer<T>> layer) { return store(std::move(layer), true); }

    size_t size() const { return layers_.size(); }
    bool empty() const { return layers_.empty(); }
    Layer<T>& layer(size_t i) { return *layers_.at(i); }

private:
    friend class Branches<T>;
    Layer<T>& store(std::unique_ptr<Layer<T>> layer, bool built) {
        if (!layer) throw std::invalid_argument("Branches: a branch cannot hold a null layer");
        // A layer added after the build would never be built (and has no buffers).
        if (sealed_)
            throw std::logic_error("Branches: add layers to a branch before the container is "
                                   "built (added to a model)");
        layers_.push_back(std::move(layer));
        prebuilt_.push_back(built);
        acts_.emplace_back();
        grads_.emplace_back();
        return *layers_.back();
    }
    // The branch's result for input x: its last activation, or x itself (identity).
    const Tensor<T>& output(const Tensor<T>& x) const { return layers_.empty() ? x : acts_.back(); }

    std::vector<std::unique_ptr<Layer<T>>> layers_;
    std::vector<bool> prebuilt_;    // added with add_built and not yet seen by a build
    bool sealed_ = false;           // the container was built: no more layers
    std::vector<Tensor<T>> acts_;   // acts_[i]: output of layer i, (N, ...)
    std::vector<Tensor<T>> grads_;  // grads_[i]: dL/d acts_[i], (N, ...)
    Tensor<T> dy_;                  // concat: g_b, this branch's slice of dy, (N, C_b, H, W)
    Tensor<T> dx_;                  // dL/dx through this branch (branches after the first), (N, in...)
    Eigen::Index offset_ = 0;       // concat: where z_b[n] starts inside y[n]
    Eigen::Index size_ = 0;         // values of z_b per sample
    Folding<T> folding_;            // inference: BatchNorm and ReLU folded into convolutions
    bool folded_ = false;           // the last forward folded some: acts_ not all written
};

template <class T>
class Branches : public Layer<T> {
public:
    explicit Branches(Merge merge = Merge::concat) : merge_(merge) {}

    static constexpr const char* kType = "Branches";
    std::string type() const override { return kType; }
    // An empty container: the model loader adds its branches from the file.
    static std::unique_ptr<Branches> from_config(const Config& c) {
        return std::make_unique<Branches>(merge_from_string(c.str("merge")));
    }
    Config config() const override {
        Config c;
        c.set("merge", to_string(merge_));
        return c;
    }
    Merge merge() const { return merge_; }

    // Appends a new, empty branch (the identity until layers are added to it).
    Chain<T>& branch() {
        if (sealed_)
            throw std::logic_error("Branches: add branches before the container is built (added to a model)");
        chains_.push_back(std::make_unique<Chain<T>>());  // stable address for the caller
        return *chains_.back();
    }
    size_t branch_count() const override { return chains_.size(); }
    std::vector<Layer<T>*> branch(size_t b) override {
        std::vector<Layer<T>*> r;
        for (auto& l : chains_.at(b)->layers_) r.push_back(l.get());
        return r;
    }
    // Every nested trainable tensor: branch 0's layers first, each in layer order.
    std::vector<Param<T>*> params() override {
        std::vector<Param<T>*> r;
        for (auto& c : chains_)
            for (auto& l : c->layers_)
                for (auto* p : l->params()) r.push_back(p);
        return r;
    }
    std::vector<Param<T>*> state() override {
        std::vector<Param<T>*> r;
        for (auto& c : chains_)
            for (auto& l : c->layers_)
                for (auto* p : l->state()) r.push_back(p);
        return r;
    }
    // Which thread runs each branch in forward, or nothing when the branches run one
    // after the other with the threads inside each layer. Why: with fewer samples than
    // threads (Inception-v4 at one image) each layer must split one image's small
    // products (8x8 to 35x35 maps) across the threads, and the many short parallel
    // regions lose about a fifth of the second thread to waiting. Whole branches on
    // their own threads need no such splitting, when the branches balance: the
    // assignment is the longest-first greedy one by each branch's cost (multiply-adds
    // plus values written), taken only if the busiest thread gets at most 1.25x its
    // fair share (Inception-v4's blocks: 1.03-1.14x; three equal ensemble members on
    // two threads: 1.33x, so they keep the threads inside their layers).
    std::vector<int> branch_owners(Eigen::Index N) const {
        const size_t B = chains_.size();
        std::int64_t total = 0;
        for (auto c : cost_) total += c;
        const int team = threads_for(std::int64_t(B), std::int64_t(N) * total);
        if (team < 2 || N >= team || B < 2) return {};
        std::vector<size_t> order(B);
        for (size_t b = 0; b < B; ++b) order[b] = b;
        std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost_[a] > cost_[b]; });
        std::vector<int> owner(B);
        std::vector<std::int64_t> load(size_t(team), 0);
        for (size_t b : order) {
            const int t = int(std::min_element(load.begin(), load.end()) - load.begin());
            owner[b] = t;
            load[size_t(t)] += cost_[b];
        }
        const std::int64_t busiest = *std::max_element(load.begin(), load.end());
        if (double(busiest) > 1.25 * double(total) / team) return {};
        return owner;
    }

    void set_fusion(bool on) override {
        fuse_ = on;
        for (auto& c : chains_)
            for (auto& l : c->layers_) l->set_fusion(on);
    }

    std::int64_t macs() const override {
        std::int64_t n = 0;
        for (auto& c : chains_)
            for (auto& l : c->layers_) n += l->macs();
        return n;
    }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool training) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0);
        auto run = [&](Chain<T>& c) {
            const Tensor<T>* in = &x;
            c.folded_ = false;
            for (size_t i = 0; i < c.layers_.size();) {
                // Inference: a convolution with the BatchNorm and ReLU after it in one pass.
                const size_t n = c.folding_.step(c.layers_, i, *in, c.acts_, training, fuse_);
                c.folded_ |= n > 1;
                i += n;
                in = &c.acts_[i - 1];
            }
        };
        const std::vector<int> owner = branch_owners(N);
        if (owner.empty()) {
            for (auto& c : chains_) run(*c);
        } else {
#ifdef _OPENMP
            // One branch per thread, each layer inside on that one thread (threads_for
            // and Eigen stay serial inside a parallel region). An exception must not
            // leave the region: keep it and throw it after.
            const int team = 1 + *std::max_element(owner.begin(), owner.end());
            std::vector<std::exception_ptr> error(static_cast<size_t>(team));
#pragma omp parallel num_threads(team)
            {
                const int t = omp_get_thread_num(), nt = omp_get_num_threads();
                try {
                    for (size_t b = 0; b < chains_.size(); ++b)
                        if (owner[b] % nt == t) run(*chains_[b]);  // nt < team: some run more
                } catch (...) {
                    error[size_t(t)] = std::current_exception();
                }
            }
            for (auto& e : error)
                if (e) std::rethrow_exception(e);
#endif
        }
        ensure(y, N, this->out_);
        if (merge_ != Merge::concat) {  // y = sum_b z_b (add), divided by B (mean)
            as_vector(y) = as_vector(chains_[0]->output(x));
            for (size_t b = 1; b < chains_.size(); ++b) as_vector(y) += as_vector(chains_[b]->output(x));
            if (merge_ == Merge::mean) as_vector(y) /= T(chains_.size());
            return;
        }
        // concat: y[n, offset_b .. offset_b + size_b) = z_b[n]
        // One copy per (sample, branch), so that even one sample's copies are split
        // across the threads (Inception-v4 at batch 1: 4 branches of 96-384 channels).
        const Eigen::Index S = this->out_.size();
        const std::int64_t B = std::int64_t(chains_.size());
        parallel_for(N * B, std::int64_t(N) * S, [&](std::int64_t k) {
            const Eigen::Index n = k / B;
            const Chain<T>& c = *chains_[size_t(k % B)];
            const T* src = c.output(x).data() + n * c.size_;
            std::copy(src, src + c.size_, y.data() + n * S + c.offset_);
        });
    }

    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        for (auto& c : chains_)
            if (c->folded_)
                throw std::logic_error("Branches: backward after an inference forward that folded BatchNorm and "
                                       "ReLU into the convolutions (layers/fusion.hpp); run forward with "
                                       "training = true, or turn folding off with set_fusion(false)");
        const Eigen::Index N = dy.dimension(0), S = this->out_.size();
        if (merge_ == Merge::mean) {  // every branch's g_b = dy / B
            ensure(mean_dy_, N, this->out_);
            as_vector(mean_dy_) = as_vector(dy) / T(chains_.size());
        }
        bool first = true;  // dx not written yet
        for (auto& cp : chains_) {
            Chain<T>& c = *cp;
            const size_t L = c.layers_.size();
            if (L == 0 && !dx) continue;  // an identity branch only feeds dx
            // g = dL/dz_b: the whole dy (add), dy / B (mean), or this branch's channel
            // slice (concat).
            const Tensor<T>* g = merge_ == Merge::mean ? &mean_dy_ : &dy;
            if (merge_ == Merge::concat) {
                ensure(c.dy_, N, c.layers_.empty() ? this->in_ : c.layers_.back()->output_shape());
                parallel_for(N, std::int64_t(N) * c.size_, [&](std::int64_t n) {
                    const T* src = dy.data() + n * S + c.offset_;
                    std::copy(src, src + c.size_, c.dy_.data() + n * c.size_);
                });
                g = &c.dy_;
            }
            if (L == 0) {  // identity: dL/dx += g
                ensure(*dx, N, this->in_);
                if (first) as_vector(*dx) = as_vector(*g);
                else as_vector(*dx) += as_vector(*g);
                first = false;
                continue;
            }
            // The branch's first layer writes dL/dx into dx itself (first branch), into
            // the branch's buffer (later branches, added below), or nowhere (dx null).
            Tensor<T>* target = !dx ? nullptr : first ? dx : &c.dx_;
            for (size_t i = L; i-- > 0;) {
                const Tensor<T>& xi = i ? c.acts_[i - 1] : x;
                const Tensor<T>& dyi = (i + 1 == L) ? *g : c.grads_[i];
                c.layers_[i]->backward(xi, c.acts_[i], dyi, i ? &c.grads_[i - 1] : target);
            }
            if (!dx) continue;
            if (!first) as_vector(*dx) += as_vector(c.dx_);
            first = false;
        }
    }

protected:
    Shape do_build(const Shape& in, Rng& rng) override {
        if (chains_.empty())
            this->shape_error("has no branches (call branch() before adding it to a model)");
        sealed_ = true;
        std::vector<Shape> outs;
        for (size_t b = 0; b < chains_.size(); ++b) {
            Chain<T>& c = *chains_[b];
            c.sealed_ = true;
            Shape s = in;
            for (size_t i = 0; i < c.layers_.size(); ++i) {
                Layer<T>& l = *c.layers_[i];
                const std::string where = "branch " + std::to_string(b) + ", layer " +
                                          std::to_string(i) + " (" + l.type() + "): ";
                if (c.prebuilt_[i]) {  // built by the model loader: check, keep (once)
                    c.prebuilt_[i] = false;
                    if (l.input_shape() != s)
                        this->shape_error(where + "was built for the input " + l.input_shape().str() +
                                          ", gets " + s.str());
                    s = l.output_shape();
                    continue;
                }
                try {
                    s = l.build(s, rng);
                } catch (const ShapeError& e) {
                    // Layers prefix their messages with "Type: "; the path names it already.
                    const std::string msg = e.what(), p = l.type() + ": ";
                    this->shape_error(where + (msg.compare(0, p.size(), p) == 0 ? msg.substr(p.size()) : msg));
                }
            }
            outs.push_back(s);
        }
        cost_.assign(chains_.size(), 0);  // per sample, for branch_owners
        for (size_t b = 0; b < chains_.size(); ++b)
            for (auto& l : chains_[b]->layers_) cost_[b] += l->macs() + l->output_shape().size();
        const Shape& o0 = outs[0];
        if (merge_ != Merge::concat) {
            const std::string what = merge_ == Merge::add ? "add" : "average";
            for (size_t b = 1; b < outs.size(); ++b)
                if (outs[b] != o0)
                    this->shape_error("cannot " + what + " the branch outputs: branch 0 gives " + o0.str() +
                                      ", branch " + std::to_string(b) + " gives " + outs[b].str() +
                                      " (" + to_string(merge_) + " needs the same shape)");
            return o0;
        }
        Eigen::Index channels = 0;
        for (size_t b = 0; b < outs.size(); ++b) {
            const Shape& o = outs[b];
            if (o.is_image() != o0.is_image() || o.h() != o0.h() || o.w() != o0.w())
                this->shape_error("cannot concatenate the branch outputs: branch 0 gives " + o0.str() +
                                  ", branch " + std::to_string(b) + " gives " + o.str() +
                                  " (concat needs images of the same height and width, or all flat)");
            chains_[b]->offset_ = channels * o0.h() * o0.w();
            chains_[b]->size_ = o.size();
            channels += o.c();
        }
        return o0.is_image() ? Shape::image(channels, o0.h(), o0.w()) : Shape::flat(channels);
    }

private:
    Merge merge_;
    Tensor<T> mean_dy_;    // mean: dy / B, (N, out...)
    bool sealed_ = false;  // built: no more branches
    bool fuse_ = true;     // inference folds BatchNorm and ReLU into convolutions (set_fusion)
    std::vector<std::unique_ptr<Chain<T>>> chains_;
    std::vector<std::int64_t> cost_;  // (B) multiply-adds + values written per sample, per branch
};
KITNN_LIBRARY_LAYER(Branches);

}  // namespace kitnn
