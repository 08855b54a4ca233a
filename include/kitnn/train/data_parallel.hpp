// kitnn/train/data_parallel.hpp — THE training step: one batch, split across model
// replicas (threads of this process) and MPI ranks (other processes), one update.
//
//   DataParallel<float> dp(model, 2);            // 2 replicas: the model and one copy
//   double loss = dp.step(adam, x, labels);     // same contract as train_step()
//   DataParallel<float> dp(model, 1, &mpi);      // one replica per rank, P ranks
//
// Every training step in kitnn runs the code below — train_step() (one part), fit()
// (R replicas x P ranks, R = P = 1 included) and the programs under mpirun:
//   1. the global batch x (N, C, H, W), the same on every rank, is cut into K = P * R
//      consecutive parts of n_k samples (sizes differ by <= 1; K = min(K, N));
//      rank p runs parts k = p*R .. p*R + R-1, one replica (thread) each
//   2. part k: logits = replica.forward(x_k); loss_k = CE mean over its n_k samples;
//      dlogits = (p - onehot) / N (the WHOLE batch's N), zero_grad, backward ->
//      g_k = its share of the gradient of the batch's mean loss       [part_gradients]
//   3. reduce: grad = sum_k g_k, summed in part order — first the replicas of a rank
//      into the model's gradients ((g_0 + g_1) + g_2 ...), then across ranks in rank
//      order (train/collective.hpp: ordered_sum), one allgather of ONE flat buffer
//      holding every gradient and the step's metrics. Every rank gets the same bits.
//   4. guard (a non-finite loss or gradient: nothing is updated; every rank sees the
//      same sums, so all of them stop together), optimizer step on the model; the
//      replicas copy the new weights at the next step                  [guarded_update]
// With K = 1 this is exactly the plain step: forward, loss, backward, guard, update.
// Guarantees: with one replica per rank, P ranks give the same bits as one process with
// R = P replicas (same seed, batch, thread count per part), because the parts, their
// dropout masks and the order of the sums are the same. With R > 1 on several ranks the
// sum is ((g_0 + g_1) + (g_2 + g_3)), not (((g_0 + g_1) + g_2) + g_3): equal up to float
// rounding. Against the plain step (K = 1) a split step differs by rounding only (tests
// check it in double, Dropout and BatchNorm included).
//
// Dropout: every part draws the masks the WHOLE batch would get at its samples' places
// (layers/dropout.hpp: set_first_sample skips the draws of the samples before the part),
// starting from the model's generator, the same on every rank; after the step the
// model's generator is moved past the whole batch's draws, as the unsplit step moves
// it. So the masks do not depend on K: a split run follows the one-part run up to float
// rounding, and a training checkpoint (which saves that generator) resumes exactly.
//
// BatchNorm: synchronised (layers/batch_norm.hpp): its statistics are summed over all
// K parts — in-process through a barrier between the replicas, across ranks by an
// ordered_sum — so a split step normalises like the whole batch would.
//
// Not supported: other layers with state (none in kitnn today; unsupported_reason says
// why). The replicas are clone_model copies, so every layer type must be registered
// (layers/registry.hpp): an unregistered one throws UnregisteredLayerError, loudly, even
// when the replica count was automatic. Memory: each replica has
// its own activations and workspaces (for lenet5 at batch 100, a few MB per replica).
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/batch_norm.hpp"
#include "kitnn/layers/dropout.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/clone.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/optim/optimizer.hpp"
#include "kitnn/train/collective.hpp"
#include "kitnn/train/non_finite.hpp"

#include <cmath>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn {

namespace detail {
// Every layer of the model, nested branches included, in order.
template <class T>
std::vector<Layer<T>*> all_layers(Sequential<T>& m) {
    std::vector<Layer<T>*> out;
    for_each_layer(m, [&](const std::string&, Layer<T>& l) { out.push_back(&l); });
    return out;
}

// Step 2 above, for one part: forward, loss, backward. The parameter gradients become
// the gradient of (sum of this part's losses) / divisor: divisor = the whole batch's
// size. Returns the part's MEAN loss; `correct` gets its hits.
template <class T>
double part_gradients(Sequential<T>& m, SoftmaxCrossEntropy<T>& ce, const Tensor<T>& x,
                      const std::uint8_t* y, Eigen::Index divisor, Tensor<T>& dlogits,
                      std::int64_t* correct) {
    const double loss = ce.forward(m.forward(x, true), y);
    if (correct) *correct = ce.correct();
    ce.backward(dlogits, divisor);
    m.zero_grad();
    m.backward(dlogits);
    return loss;
}

// Step 4: the guard, then the update. Throws NonFiniteError before touching anything.
template <class T>
void guarded_update(Sequential<T>& m, Optimizer<T>& opt, double loss) {
    if (!std::isfinite(loss)) throw NonFiniteError("the loss is " + std::to_string(loss));
    if (const std::string bad = nonfinite_gradient(m); !bad.empty())
        throw NonFiniteError(bad + " is not finite (the loss was " + std::to_string(loss) + ")");
    opt.step(m.params());
}

// The reducer a replica's BatchNorm layers call: sums over the replicas of this process
// (in replica order, after a barrier), then over the ranks (ordered_sum, called by
// replica 0 only: the thread that started the OpenMP region, which MPI's FUNNELED
// threading level requires), then a second barrier hands the sum to every replica.
// When a replica fails, abort() wakes the others, which then throw instead of waiting
// for a part that will never come.
class ReplicaStatsReducer {
public:
    struct Part final : BatchStatsReducer {
        ReplicaStatsReducer* owner = nullptr;
        int index = 0;
        void sum(double* v, std::size_t n) override { owner->sum(index, v, n); }
    };

    ReplicaStatsReducer(int replicas, Collective* group) : group_(group), parts_(size_t(replicas)) {
        for (int r = 0; r < replicas; ++r) {
            parts_[size_t(r)].owner = this;
            parts_[size_t(r)].index = r;
        }
        slots_.resize(size_t(replicas));
    }
    BatchStatsReducer* part(int r) { return &parts_[size_t(r)]; }
    // Before each step: how many replicas take part (a short batch may leave some idle).
    void start(int active) {
        std::lock_guard<std::mutex> lock(mu_);
        active_ = active;
        arrived_ = 0;
        broken_ = false;
    }
    void abort() {
        std::lock_guard<std::mutex> lock(mu_);
        broken_ = true;
        cv_.notify_all();
    }

private:
    void sum(int r, double* v, std::size_t n) {
        if (active_ > 1) {
            slots_[size_t(r)].assign(v, v + n);
            wait();  // every replica has its sums in its slot
            if (r == 0) {
                for (int q = 1; q < active_; ++q) {  // replica order, as the gradients
                    const double* s = slots_[size_t(q)].data();
                    for (std::size_t i = 0; i < n; ++i) v[i] += s[i];
                }
                if (group_ && group_->size() > 1) ordered_sum(*group_, v, n, scratch_);
                result_.assign(v, v + n);
            }
            wait();  // the sum is ready
            if (r != 0) std::memcpy(v, result_.data(), n * sizeof(double));
        } else if (group_ && group_->size() > 1) {
            ordered_sum(*group_, v, n, scratch_);
        }
    }
    // A reusable barrier for the active replicas.
    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        if (broken_) throw std::runtime_error("another replica failed");
        const std::uint64_t gen = generation_;
        if (++arrived_ == active_) {
            arrived_ = 0;
            ++generation_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lock, [&] { return generation_ != gen || broken_; });
        if (generation_ == gen) throw std::runtime_error("another replica failed");
    }

    Collective* group_;
    std::vector<Part> parts_;
    std::vector<std::vector<double>> slots_;  // (replicas) each replica's sums
    std::vector<double> result_, scratch_;
    std::mutex mu_;
    std::condition_variable cv_;
    int active_ = 0, arrived_ = 0;
    std::uint64_t generation_ = 0;
    bool broken_ = false;
};
}  // namespace detail

// The plain training step (one part, no replicas, no ranks): returns the batch's mean
// loss; `correct` gets its hits. Throws NonFiniteError, leaving the weights as they
// were, when the loss or a gradient is not finite (an exploding rate, NaN in the data).
template <class T>
double train_step(Sequential<T>& model, Optimizer<T>& opt, SoftmaxCrossEntropy<T>& ce,
                  const Tensor<T>& x, const std::vector<std::uint8_t>& y, Tensor<T>& dlogits,
                  std::int64_t* correct = nullptr) {
    if (Eigen::Index(y.size()) != x.dimension(0))
        throw std::invalid_argument("train_step: " + std::to_string(y.size()) + " labels for " +
                                    std::to_string(x.dimension(0)) + " samples");
    const double loss = detail::part_gradients(model, ce, x, y.data(), 0, dlogits, correct);
    detail::guarded_update(model, opt, loss);
    return loss;
}

template <class T>
class DataParallel {
public:
    // "" when `model` can be trained by DataParallel, else the reason.
    static std::string unsupported_reason(Sequential<T>& model) {
        for (Layer<T>* l : detail::all_layers(model)) {
            if (!l->state().empty() && !dynamic_cast<UsesBatchStats*>(l))
                return "layer " + l->type() + " keeps state that each replica would update from "
                       "its part of the batch only";
            if (l->generator() && !dynamic_cast<DrawsPerSample*>(l))
                return "layer " + l->type() + " draws random numbers but cannot draw those of a part "
                       "of the batch";
        }
        return "";
    }
    static bool supported(Sequential<T>& model) { return unsupported_reason(model).empty(); }
    // True when the model has layers that use batch statistics (BatchNorm): a split step
    // then synchronises them, at three reductions per layer and step.
    static bool has_batch_stats(Sequential<T>& model) {
        for (Layer<T>* l : detail::all_layers(model))
            if (dynamic_cast<UsesBatchStats*>(l)) return true;
        return false;
    }

    // `model` must outlive this object. Its weights are read at every step, so they may
    // be changed in place between steps (an optimizer, a checkpoint's weights copied in);
    // its layers may not: a model with other layers needs a new DataParallel (step()
    // checks and throws std::logic_error). `replicas` >= 1 (1 = the model alone, no
    // copy). `group` (may be null = this process alone) are the ranks that share each
    // batch; it must outlive this object. Throws ModelFileError when the model cannot
    // be cloned (a layer type kitnn's model file does not know).
    DataParallel(Sequential<T>& model, int replicas, Collective* group = nullptr)
        : model_(&model), params_(model.params()), group_(group) {
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
        for (const auto* p : params_) grad_values_ += size_t(p->grad.size());
        if (has_batch_stats(model) && workers() > 1) {
            stats_ = std::make_unique<detail::ReplicaStatsReducer>(replicas, group_);
            for (int r = 0; r < replicas; ++r)
                for (Layer<T>* l : layers_[size_t(r)])
                    if (auto* u = dynamic_cast<UsesBatchStats*>(l)) u->set_stats_reducer(stats_->part(r));
        }
    }
    ~DataParallel() {
        // The model outlives us: leave its BatchNorm layers with local statistics.
        if (stats_)
            for (Layer<T>* l : layers_[0])
                if (auto* u = dynamic_cast<UsesBatchStats*>(l)) u->set_stats_reducer(nullptr);
    }
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    int replicas() const { return int(models_.size()); }
    int ranks() const { return group_ ? group_->size() : 1; }
    int rank() const { return group_ ? group_->rank() : 0; }
    int workers() const { return replicas() * ranks(); }  // K: the parts of a batch
    // Replica r (0 = the model itself), e.g. to apply a setting the model file does not
    // carry (Conv2D::set_im2col) to every copy.
    Sequential<T>& replica(int r) { return *models_.at(size_t(r)); }

    // One training step on the global batch (x, y), the same on every rank: returns the
    // batch's mean loss, `correct` gets its hits (the whole batch's, on every rank).
    // Throws NonFiniteError, leaving the weights as they were, when the loss or a
    // gradient is not finite.
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
        const int R = replicas(), K = workers();
        if (K == 1) {  // the plain step, on the model itself
            Part& p = work_[0];
            const double loss = detail::part_gradients(*model_, p.ce, x, y.data(), 0, p.dlogits, correct);
            detail::guarded_update(*model_, opt, loss);
            return loss;
        }
        // Parts: K_used = min(K, N) parts of N * k / K_used .. N * (k + 1) / K_used.
        // Parts beyond K_used get no samples; with BatchNorm they still run (empty) to
        // take part in the reductions of its statistics.
        const Eigen::Index Ku = std::min<Eigen::Index>(K, N);
        const bool synced = bool(stats_);
        const int k0 = rank() * R;  // this rank's first part
        int active = 0;             // replicas of this rank that run
        for (int r = 0; r < R; ++r)
            if (synced || k0 + r < Ku) active = r + 1;
        sync_weights(active);
        auto part_begin = [&](Eigen::Index k) { return k < Ku ? N * k / Ku : N; };
        start_dropout(active, part_begin);
        const Eigen::Index per = x.size() / N;  // values per sample
        if (stats_) stats_->start(active);

        auto run = [&](int r) {
            Part& p = work_[size_t(r)];
            p.error = nullptr;
            try {
                const Eigen::Index k = k0 + r, n0 = part_begin(k), n1 = part_begin(k + 1);
                p.n = n1 - n0;
                p.x.resize(p.n, x.dimension(1), x.dimension(2), x.dimension(3));
                std::copy(x.data() + n0 * per, x.data() + n1 * per, p.x.data());
                p.y.assign(y.begin() + n0, y.begin() + n1);
                p.loss = detail::part_gradients(*models_[size_t(r)], p.ce, p.x, p.y.data(), N, p.dlogits,
                                                &p.correct);
            } catch (...) {
                p.error = std::current_exception();  // never let an exception leave the region
                if (stats_) stats_->abort();
            }
        };
        if (active > 1) {
#ifdef _OPENMP
            // One thread per replica. OpenMP may give fewer (nested in another region, a
            // thread limit): the replicas are then shared out, which synchronised
            // BatchNorm cannot do (its replicas wait for each other): refused.
            bool too_few = false;
#pragma omp parallel num_threads(active)
            {
                const int t = omp_get_thread_num(), nt = omp_get_num_threads();
                if (synced && nt < active) {
#pragma omp single
                    too_few = true;
                } else {
                    for (int r = t; r < active; r += nt) run(r);
                }
            }
            if (too_few)
                throw std::runtime_error("DataParallel: synchronised BatchNorm needs one thread per replica (" +
                                         std::to_string(active) + "), OpenMP gave fewer");
#else
            if (synced) throw std::runtime_error("DataParallel: synchronised BatchNorm with replicas needs OpenMP");
            for (int r = 0; r < active; ++r) run(r);
#endif
        } else {
            run(0);
        }
        end_dropout(N);
        // The first real error (not a replica woken by another's failure).
        for (int pass = 0; pass < 2; ++pass)
            for (int r = 0; r < active; ++r)
                if (auto& e = work_[size_t(r)].error) {
                    if (pass == 1) std::rethrow_exception(e);
                    try {
                        std::rethrow_exception(e);
                    } catch (const std::runtime_error& re) {
                        if (std::string(re.what()) == "another replica failed") continue;
                        throw;
                    }
                }

        // Step 3: the replicas' gradients into the model's, in replica order.
        const auto& params = model_->params();
        for (int r = 1; r < active; ++r)
            for (size_t i = 0; i < params.size(); ++i)
                as_vector(params[i]->grad) += as_vector(models_[size_t(r)]->params()[i]->grad);
        double metrics[2] = {0, 0};  // [sum of the losses of the samples, hits]
        for (int r = 0; r < active; ++r) {
            metrics[0] += work_[size_t(r)].loss * double(work_[size_t(r)].n);
            metrics[1] += double(work_[size_t(r)].correct);
        }
        if (ranks() > 1) reduce_across_ranks(metrics);
        const double loss = metrics[0] / double(N);
        if (correct) *correct = std::int64_t(metrics[1]);
        detail::guarded_update(*model_, opt, loss);
        return loss;
    }

    // Values in one rank's flat buffer: every gradient, then the two metrics (as T:
    // see reduce_across_ranks). For the allreduce benchmark and the docs.
    std::size_t gradient_values() const { return grad_values_; }

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

    // One allgather of one flat buffer per step: the model's gradients (this rank's sum)
    // followed by the metrics, as raw bytes; then every rank adds the ranks' buffers in
    // rank order itself (train/collective.hpp: why not MPI_Allreduce).
    void reduce_across_ranks(double* metrics) {
        const size_t G = grad_values_, gbytes = G * sizeof(T), bytes = gbytes + 2 * sizeof(double);
        flat_.resize(bytes);
        size_t at = 0;
        for (auto* p : model_->params()) {
            std::memcpy(flat_.data() + at, p->grad.data(), size_t(p->grad.size()) * sizeof(T));
            at += size_t(p->grad.size()) * sizeof(T);
        }
        std::memcpy(flat_.data() + gbytes, metrics, 2 * sizeof(double));
        const int P = ranks();
        gathered_.resize(bytes * size_t(P));
        group_->allgather(flat_.data(), bytes, gathered_.data());
        sum_.assign(G, T(0));
        tmp_.resize(G);
        std::memcpy(sum_.data(), gathered_.data(), gbytes);  // rank 0's, then the others added
        double m[2];
        std::memcpy(m, gathered_.data() + gbytes, sizeof m);
        for (int q = 1; q < P; ++q) {
            const unsigned char* b = gathered_.data() + size_t(q) * bytes;
            std::memcpy(tmp_.data(), b, gbytes);  // into aligned T: the bytes carry no alignment
            for (size_t i = 0; i < G; ++i) sum_[i] += tmp_[i];
            double mq[2];
            std::memcpy(mq, b + gbytes, sizeof mq);
            m[0] += mq[0];
            m[1] += mq[1];
        }
        at = 0;
        for (auto* p : model_->params()) {
            std::memcpy(p->grad.data(), sum_.data() + at, size_t(p->grad.size()) * sizeof(T));
            at += size_t(p->grad.size());
        }
        metrics[0] = m[0];
        metrics[1] = m[1];
    }

    // The replicas get the model's current weights and state (changed by the last step,
    // or by the caller: a resume, a load). For lenet5, 61,706 values.
    void sync_weights(int active) {
        const auto& params = model_->params();
        for (int r = 1; r < active; ++r) {
            const auto& dst = models_[size_t(r)]->params();
            for (size_t k = 0; k < params.size(); ++k) as_vector(dst[k]->value) = as_vector(params[k]->value);
            const auto& own = layers_[0];
            const auto& theirs = layers_[size_t(r)];
            for (size_t i = 0; i < own.size(); ++i) {
                const auto a = own[i]->state(), b = theirs[i]->state();
                for (size_t j = 0; j < a.size(); ++j) as_vector(b[j]->value) = as_vector(a[j]->value);
            }
        }
    }

    // Dropout (see the header): every replica's generator starts where the model's is,
    // each told where its part begins; end_dropout puts the model's generator past the
    // whole batch's draws and the parts back to sample 0.
    template <class F>
    void start_dropout(int active, F part_begin) {
        const auto& own = layers_[0];
        const int k0 = rank() * replicas();
        for (size_t i = 0; i < own.size(); ++i) {
            Rng* g = own[i]->generator();
            if (!g) continue;
            for (int r = 0; r < active; ++r) {
                Layer<T>* l = layers_[size_t(r)][i];
                if (r > 0) l->generator()->set_state(g->state());
                dynamic_cast<DrawsPerSample*>(l)->set_first_sample(part_begin(k0 + r));
            }
        }
        saved_.clear();
        for (size_t i = 0; i < own.size(); ++i)
            if (Rng* g = own[i]->generator()) saved_.push_back({g, g->state()});
    }
    void end_dropout(Eigen::Index N) {
        size_t at = 0;
        for (size_t i = 0; i < layers_[0].size(); ++i) {
            Layer<T>* l = layers_[0][i];
            if (!l->generator()) continue;
            l->generator()->set_state(saved_[at++].second);
            auto* d = dynamic_cast<DrawsPerSample*>(l);
            d->skip_samples(N);
            for (auto& layers : layers_) dynamic_cast<DrawsPerSample*>(layers[i])->set_first_sample(0);
        }
    }

private:
    Sequential<T>* model_;
    std::vector<Param<T>*> params_;                       // the model's, when constructed
    Collective* group_;                                   // the ranks (null: this process)
    std::vector<std::unique_ptr<Sequential<T>>> copies_;  // replicas 1..R-1
    std::vector<Sequential<T>*> models_;                  // replica r's model (0 = model_)
    std::vector<std::vector<Layer<T>*>> layers_;          // every layer of each replica
    std::vector<Part> work_;                              // one per replica
    std::unique_ptr<detail::ReplicaStatsReducer> stats_;  // synchronised BatchNorm (K > 1)
    size_t grad_values_ = 0;                              // G: values of all gradients
    std::vector<unsigned char> flat_, gathered_;          // (G*T + 2 doubles), (P of them)
    std::vector<T> sum_, tmp_;                            // (G) the rank-ordered sum
    std::vector<std::pair<Rng*, std::array<std::uint64_t, 4>>> saved_;  // the model's, at the step's start
};

// Copies rank 0's weights, layer state (BatchNorm's moving statistics) and generators
// into every rank's model: the start of a distributed run, so that all ranks begin from
// the same bits whatever each computed alone. The models must have the same
// architecture (check_same_run in kitnn/dist/mpi.hpp checks before this).
template <class T>
void broadcast_model(Collective& group, Sequential<T>& model) {
    if (group.size() == 1) return;
    for (Layer<T>* l : detail::all_layers(model)) {
        for (auto* p : l->params()) group.broadcast(p->value.data(), size_t(p->value.size()) * sizeof(T), 0);
        for (auto* p : l->state()) group.broadcast(p->value.data(), size_t(p->value.size()) * sizeof(T), 0);
        if (Rng* g = l->generator()) {
            auto s = g->state();
            group.broadcast(s.data(), sizeof s, 0);
            g->set_state(s);
        }
    }
}

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
// BatchNorm models included: their statistics are synchronised across the replicas
// (three small reductions per layer and step), and on a small one that still pays (a
// 1.55 M multiply-add variant of the zoo's `fast`: 2 replicas trained 13 % faster than
// threads inside the layers, measured 2026-12-01, docs/models.md).
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

// The DataParallel a training loop should use: `requested` as in choose_replicas, over
// the ranks of `group` (null: this process alone). A model with a layer type that is not
// registered cannot be cloned: UnregisteredLayerError, naming the type, whether the
// replica count was asked for or automatic (a forgotten registration must not quietly
// turn replicas off). Never null (fit() runs every step through it).
template <class T>
std::unique_ptr<DataParallel<T>> make_data_parallel(Sequential<T>& model, int requested,
                                                    Collective* group = nullptr) {
    const int r = choose_replicas(model, requested);
    try {
        return std::make_unique<DataParallel<T>>(model, r, group);
    } catch (const ModelFileError& e) {  // a copy that does not round-trip: a bug, said loudly
        throw std::invalid_argument(std::string("cannot split batches across replicas: the model cannot "
                                                "be copied (") + e.what() + ")");
    }
}

}  // namespace kitnn
