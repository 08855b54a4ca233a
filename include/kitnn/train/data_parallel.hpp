// kitnn/train/data_parallel.hpp — one training step split across threads by samples.
//
//   DataParallel<float> dp(model, 2);            // 2 replicas: the model and one copy
//   double loss = dp.step(adam, x, labels);     // same contract as train_step()
//
// Why: a small network (keck, lenet5) has layers too small to split well. Threading
// inside each layer (what Conv2D and friends do on their own) costs one parallel
// region, and one wait for the slowest thread, per layer and pass; most of lenet5's
// layers stay below the threshold and run on one thread. Splitting the BATCH instead
// gives every thread a whole forward and backward pass of its part: one parallel region
// per step and no idle core. This is PyTorch's DataParallel on one machine, without
// copying the model each step.
//
// How, for R replicas (replica 0 is the model itself, 1..R-1 are clone_model copies):
//   x (N, C, H, W) is cut into R consecutive parts of n_r samples (sizes differ by <= 1)
//   thread r: logits_r = replica_r.forward(x_r); loss_r = CE mean over its n_r samples
//             zero_grad; backward -> g_r, the gradient of loss_r
//   loss = sum_r (n_r / N) loss_r          the mean over the whole batch, exactly
//   grad = sum_r (n_r / N) g_r             into the model's gradients, in replica order
//   guard (non-finite loss or gradient: nothing is updated), optimizer step on the
//   model, then the new weights are copied into every replica.
// So a step is the plain step up to float rounding (the sums run in another order); a
// test checks this in double. Dropout: replica r > 0 draws its masks from a generator
// seeded, every step, by one draw of the model's own generator, which replica 0 keeps
// using: the masks are a function of the model's generator alone, so a run is
// reproducible for a given R and a training checkpoint (which saves that generator)
// resumes exactly.
//
// Not supported: layers with state (BatchNorm's running statistics would be updated
// by each replica from its part only; supported() says why) and layer types the model
// file does not know (the replicas are clone_model copies). make_data_parallel() then
// gives fit() the plain step. Memory: each replica has its own activations and workspaces (for lenet5 at
// batch 100, a few MB per replica).
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/clone.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/optim/optimizer.hpp"

#include <cmath>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

// Thrown by a training step when the loss or a gradient is NaN or infinite; the
// weights were not updated.
struct NonFiniteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Names the first parameter whose gradient holds a NaN or an infinity, or "".
// One pass over the gradients: about 0.5 % of a kerascnn step.
template <class T>
std::string nonfinite_gradient(Sequential<T>& model) {
    for (size_t i = 0; i < model.size(); ++i)
        for (auto* p : model.layer(i).params())
            if (!as_vector(p->grad).allFinite())
                return "the gradient of layer " + std::to_string(i) + " (" + model.layer(i).type() +
                       ") '" + p->name + "'";
    return "";
}

namespace detail {
// Every layer of the model, nested branches included, in order.
template <class T>
std::vector<Layer<T>*> all_layers(Sequential<T>& m) {
    std::vector<Layer<T>*> out;
    for_each_layer(m, [&](const std::string&, Layer<T>& l) { out.push_back(&l); });
    return out;
}
}  // namespace detail

template <class T>
class DataParallel {
public:
    // "" when `model` can be trained by DataParallel, else the reason.
    static std::string unsupported_reason(Sequential<T>& model) {
        for (Layer<T>* l : detail::all_layers(model))
            if (!l->state().empty())
                return "layer " + l->type() + " keeps running statistics, which each replica would "
                       "update from its part of the batch only";
        return "";
    }
    static bool supported(Sequential<T>& model) { return unsupported_reason(model).empty(); }

    // `model` must outlive this object. Its weights are read at every step, so they may
    // be changed in place between steps (an optimizer, a checkpoint's weights copied in);
    // its layers may not: a model with other layers needs a new DataParallel (step()
    // checks and throws std::logic_error). `replicas` >= 1. Throws ModelFileError when
    // the model cannot be cloned (a layer type kitnn's model file does not know).
    DataParallel(Sequential<T>& model, int replicas) : model_(&model), params_(model.params()) {
        if (replicas < 1) throw std::invalid_argument("DataParallel: replicas must be >= 1");
        if (const std::string why = unsupported_reason(model); !why.empty())
            throw std::invalid_argument("DataParallel: " + why);
        models_.push_back(&model);
        for (int r = 1; r < replicas; ++r) {
            copies_.push_back(std::make_unique<Sequential<T>>(clone_model(model)));
            models_.push_back(copies_.back().get());
        }
        for (auto* m : models_) layers_.push_back(detail::all_layers(*m));
        work_.resize(size_t(replicas));
    }

    int replicas() const { return int(models_.size()); }
    // Replica r (0 = the model itself), e.g. to apply a setting the model file does not
    // carry (Conv2D::set_im2col) to every copy.
    Sequential<T>& replica(int r) { return *models_.at(size_t(r)); }

    // One training step on the batch (x, y): returns the batch's mean loss, `correct`
    // gets its hits. Throws NonFiniteError, leaving the weights as they were, when the
    // loss or a gradient is not finite.
    double step(Optimizer<T>& opt, const Tensor<T>& x, const std::vector<std::uint8_t>& y,
                std::int64_t* correct = nullptr) {
        const Eigen::Index N = x.dimension(0);
        if (Eigen::Index(y.size()) != N)
            throw std::invalid_argument("DataParallel::step: " + std::to_string(y.size()) + " labels for " +
                                        std::to_string(N) + " samples");
        if (model_->params() != params_)
            throw std::logic_error("DataParallel::step: the model's layers changed since the DataParallel "
                                   "was made; make a new one for the new model");
        if (N == 0) {  // as train_step: nothing to learn from, no update
            if (correct) *correct = 0;
            return 0;
        }
        const int R = int(std::min<Eigen::Index>(replicas(), std::max<Eigen::Index>(N, 1)));
        sync_weights(R);
        seed_dropout(R);
        const Eigen::Index per = x.size() / std::max<Eigen::Index>(N, 1);  // values per sample

        auto run = [&](int r) {
            Part& p = work_[size_t(r)];
            p.error = nullptr;
            try {
                const Eigen::Index n0 = N * r / R, n1 = N * (r + 1) / R;
                p.n = n1 - n0;
                p.x.resize(p.n, x.dimension(1), x.dimension(2), x.dimension(3));
                std::copy(x.data() + n0 * per, x.data() + n1 * per, p.x.data());
                p.y.assign(y.begin() + n0, y.begin() + n1);
                Sequential<T>& m = *models_[size_t(r)];
                p.loss = p.ce.forward(m.forward(p.x, true), p.y.data());
                p.correct = p.ce.correct();
                p.ce.backward(p.dlogits);
                m.zero_grad();
                m.backward(p.dlogits);
            } catch (...) {
                p.error = std::current_exception();  // never let an exception leave the region
            }
        };
#ifdef _OPENMP
        if (R > 1) {
            // OpenMP may give fewer threads than asked (nested in another region, a
            // thread limit): the replicas are then shared out, all still run.
#pragma omp parallel num_threads(R)
            for (int r = omp_get_thread_num(); r < R; r += omp_get_num_threads()) run(r);
        } else {
            run(0);
        }
#else
        for (int r = 0; r < R; ++r) run(r);
#endif
        for (int r = 0; r < R; ++r)
            if (work_[size_t(r)].error) std::rethrow_exception(work_[size_t(r)].error);

        double loss = 0;
        std::int64_t hits = 0;
        for (int r = 0; r < R; ++r) {
            loss += double(work_[size_t(r)].n) / double(N) * work_[size_t(r)].loss;
            hits += work_[size_t(r)].correct;
        }
        if (correct) *correct = hits;
        if (!std::isfinite(loss)) throw NonFiniteError("the loss is " + std::to_string(loss));
        // grad = sum_r (n_r / N) g_r, accumulated into the model's (replica 0's) gradients.
        if (R > 1) {
            const auto& params = model_->params();
            for (size_t k = 0; k < params.size(); ++k) {
                auto g = as_vector(params[k]->grad);
                g *= T(double(work_[0].n) / double(N));
                for (int r = 1; r < R; ++r)
                    g += T(double(work_[size_t(r)].n) / double(N)) *
                         as_vector(models_[size_t(r)]->params()[k]->grad);
            }
        }
        if (const std::string bad = nonfinite_gradient(*model_); !bad.empty())
            throw NonFiniteError(bad + " is not finite (the loss was " + std::to_string(loss) + ")");
        opt.step(model_->params());
        return loss;
    }

private:
    struct Part {
        Tensor<T> x, dlogits;           // x: (n, C, H, W) this replica's samples
        std::vector<std::uint8_t> y;    // (n) their labels
        SoftmaxCrossEntropy<T> ce;
        Eigen::Index n = 0;
        double loss = 0;
        std::int64_t correct = 0;
        std::exception_ptr error;
    };

    // The replicas get the model's current weights (changed by the last step, or by
    // the caller: a resume, a load). A copy of the parameters: for lenet5, 61,706 values.
    void sync_weights(int R) {
        const auto& params = model_->params();
        for (int r = 1; r < R; ++r) {
            const auto& dst = models_[size_t(r)]->params();
            for (size_t k = 0; k < params.size(); ++k) as_vector(dst[k]->value) = as_vector(params[k]->value);
        }
    }

    // Replica r > 0's dropout generators: seeded from one draw of the model's own.
    void seed_dropout(int R) {
        const auto& own = layers_[0];
        for (size_t i = 0; i < own.size(); ++i) {
            Rng* g = own[i]->generator();
            if (!g) continue;
            const std::uint64_t s = g->next();
            // s XOR a mixed replica number: seeds that differ in about half their bits. (Not
            // s + r * 0x9e37...: Rng::reseed steps by that constant between its state words,
            // so such seeds would give replicas shifted copies of one state.)
            for (int r = 1; r < R; ++r) layers_[size_t(r)][i]->generator()->reseed(s ^ mix64(std::uint64_t(r)));
        }
    }

    // splitmix64's finaliser: a bijection that spreads every input bit over the output.
    static std::uint64_t mix64(std::uint64_t z) {
        z += 0x9e3779b97f4a7c15ULL;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    Sequential<T>* model_;
    std::vector<Param<T>*> params_;                       // the model's, when constructed
    std::vector<std::unique_ptr<Sequential<T>>> copies_;  // replicas 1..R-1
    std::vector<Sequential<T>*> models_;                  // replica r's model (0 = model_)
    std::vector<std::vector<Layer<T>*>> layers_;          // every layer of each replica
    std::vector<Part> work_;                              // one per replica
};

// Above this many multiply-adds per sample, threading inside the layers already keeps
// both cores busy (kerascnn: 12 M, its GEMMs run at ~95 % of Eigen's peak) and replicas
// would only add memory: automatic replicas are for small networks (keck: 0.01 M,
// lenet5: 0.4 M).
constexpr std::int64_t kDataParallelMaxMacs = 2'000'000;

// At most this many automatic replicas: a batch of 100 in parts of 12 or more.
constexpr int kMaxAutoReplicas = 8;

// How many replicas a training loop should use. requested: 0 = automatic (one per
// thread, at most kMaxAutoReplicas, when there are several threads, the model is
// supported and under kDataParallelMaxMacs multiply-adds per sample; else 1),
// 1 = none, N >= 2 = N (throws std::invalid_argument if the model is not supported).
template <class T>
int choose_replicas(Sequential<T>& model, int requested) {
    if (requested < 0) throw std::invalid_argument("replicas must be >= 0 (0 = automatic)");
    if (requested == 0) {
        const int threads = std::min(max_threads(), kMaxAutoReplicas);
        return threads > 1 && model.macs() <= kDataParallelMaxMacs && DataParallel<T>::supported(model)
                   ? threads
                   : 1;
    }
    if (requested > 1)
        if (const std::string why = DataParallel<T>::unsupported_reason(model); !why.empty())
            throw std::invalid_argument("cannot split batches across replicas: " + why);
    return requested;
}

// The DataParallel a training loop should use, or nullptr for the plain step: `requested`
// as in choose_replicas. A model that cannot be cloned (a layer type of the program's
// own, unknown to the model file) trains with the plain step when the choice was
// automatic, and is refused with a clear error when replicas were asked for.
template <class T>
std::unique_ptr<DataParallel<T>> make_data_parallel(Sequential<T>& model, int requested) {
    const int r = choose_replicas(model, requested);
    if (r <= 1) return nullptr;
    try {
        return std::make_unique<DataParallel<T>>(model, r);
    } catch (const ModelFileError& e) {
        if (requested == 0) return nullptr;
        throw std::invalid_argument(std::string("cannot split batches across replicas: the model cannot "
                                                "be copied (") + e.what() + ")");
    }
}

}  // namespace kitnn
