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
//      order. Across ranks the update is SHARDED when the optimizer can (Adam, SGD:
//      Optimizer::shards): rank q sums and updates only its shard q of the parameters
//      laid end to end — an alltoall hands it every rank's gradients for that shard,
//      and an allgather hands everyone the shards' new weights (sharded_update); else
//      one allgather of ONE flat buffer holding every gradient and the step's metrics,
//      and every rank sums and updates everything (reduce_across_ranks). Both sum in
//      rank order: every rank gets the same bits.
//   4. guard (a non-finite loss or gradient: nothing is updated; every rank sees the
//      same sums, or agrees on its shards' verdicts first, so all of them stop
//      together), optimizer step on the model; the replicas copy the new weights at
//      the next step                                                     [guarded_update]
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

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
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
        arrived_.store(0, std::memory_order_relaxed);
        broken_.store(false, std::memory_order_relaxed);
    }
    void abort() {
        broken_.store(true, std::memory_order_release);
        std::lock_guard<std::mutex> lock(mu_);
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
    // A reusable barrier for the active replicas: 6 of them per BatchNorm layer and step.
    // The others usually arrive within microseconds (equal parts, the same layers), so a
    // waiter spins first and sleeps on the condition variable only after kSpins checks:
    // a futex sleep and wake-up costs tens of microseconds on a VM, which over `fast`'s
    // 24 barriers a step was time the threads sat idle.
    void wait() {
        if (broken_.load(std::memory_order_acquire)) throw std::runtime_error("another replica failed");
        const std::uint64_t gen = generation_.load(std::memory_order_acquire);
        // acq_rel: what each replica wrote before arriving (its slot, replica 0's result)
        // is visible to the last one, whose release of the new generation passes it on.
        if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == active_) {
            arrived_.store(0, std::memory_order_relaxed);
            generation_.store(gen + 1, std::memory_order_release);
            std::lock_guard<std::mutex> lock(mu_);  // a sleeper checks under the lock: no lost wake-up
            cv_.notify_all();
            return;
        }
        auto passed = [&] {
            return generation_.load(std::memory_order_acquire) != gen || broken_.load(std::memory_order_acquire);
        };
        for (int i = 0; i < kSpins && !passed(); ++i) cpu_relax();
        if (!passed()) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, passed);
        }
        if (generation_.load(std::memory_order_acquire) == gen) throw std::runtime_error("another replica failed");
    }
    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    static constexpr int kSpins = 4000;  // about 0.1 ms of pause instructions on this AMD EPYC

    Collective* group_;
    std::vector<Part> parts_;
    std::vector<std::vector<double>> slots_;  // (replicas) each replica's sums
    std::vector<double> result_, scratch_;
    std::mutex mu_;
    std::condition_variable cv_;
    int active_ = 0;
    std::atomic<int> arrived_{0};
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<bool> broken_{false};
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
    using Clock = std::chrono::steady_clock;

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
        const auto t0 = Clock::now();
        if (K == 1) {  // the plain step, on the model itself
            Part& p = work_[0];
            const double loss = detail::part_gradients(*model_, p.ce, x, y.data(), 0, p.dlogits, correct);
            const auto t1 = Clock::now();
            detail::guarded_update(*model_, opt, loss);
            add_times(t0, t1, t1, Clock::now());
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

        const auto t1 = Clock::now();
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
        if (ranks() > 1 && opt.shards()) return sharded_update(opt, metrics, N, correct, t0, t1);
        if (ranks() > 1) reduce_across_ranks(metrics);
        const auto t2 = Clock::now();
        const double loss = metrics[0] / double(N);
        if (correct) *correct = std::int64_t(metrics[1]);
        detail::guarded_update(*model_, opt, loss);
        add_times(t0, t1, t2, Clock::now());
        return loss;
    }

    // After sharded steps (several ranks, an optimizer that shards(): see sharded_update)
    // each rank's optimizer state (Adam's moments) is current on its own shard only.
    // This collective call gives every rank the whole state; call it on EVERY rank before
    // one of them reads opt.state() (a training checkpoint: fit() does at the end of each
    // epoch). Nothing to do, and no communication, when no sharded step ran since the
    // last call.
    void gather_optimizer_state(Optimizer<T>& opt) {
        if (!scattered_) return;
        scattered_ = false;
        auto s = opt.state();
        const auto& params = model_->params();
        const size_t n_params = params.size();
        // The buffers come in groups of one per parameter, in parameter order (Adam:
        // "adam.m.0".."adam.m.<n-1>", then "adam.v.*"): each group is laid end to end
        // like the parameters and shared out like them.
        if (n_params == 0 || s.size() % n_params != 0)
            throw std::logic_error("DataParallel: optimizer state of " + std::to_string(s.size()) +
                                   " buffers for " + std::to_string(n_params) + " parameters");
        std::vector<T*> bufs(n_params);
        for (size_t g0 = 0; g0 < s.size(); g0 += n_params) {
            for (size_t i = 0; i < n_params; ++i) {
                if (s[g0 + i].second.size() != params[i]->value.size())
                    throw std::logic_error("DataParallel: optimizer buffer '" + s[g0 + i].first +
                                           "' does not match parameter " + std::to_string(i));
                bufs[i] = s[g0 + i].second.data();
            }
            exchange_shards(bufs);
        }
        opt.load_state(s, params, opt.iterations());
    }

    // Time spent in each phase of the steps since the last reset_times(), on this rank:
    // parts = forward and backward of this rank's parts, reduce = summing the replicas'
    // and the ranks' gradients (the communication, waiting for the slowest rank
    // included), update = the guard and the optimizer (and, sharded, the exchange of the
    // new weights). For kitnn_bench_train's JSON and docs/distributed.md.
    struct Times {
        double parts_s = 0, reduce_s = 0, update_s = 0;
        std::int64_t steps = 0;
    };
    const Times& times() const { return times_; }
    void reset_times() { times_ = Times{}; }

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
    // followed by the metrics; then every rank adds the ranks' blocks in rank order
    // itself (train/collective.hpp: why not MPI_Allreduce), straight into the model's
    // gradients. Memory passes: one copy in, the allgather, one summing pass (kerascnn:
    // 4.8 MB a rank; the older copy-into-a-scratch-sum version took 2 ms more a step).
    void reduce_across_ranks(double* metrics) {
        const size_t G = grad_values_, S = block_values();
        flat_.resize(Eigen::Index(S));
        size_t at = 0;
        for (auto* p : model_->params()) {
            std::memcpy(flat_.data() + at, p->grad.data(), size_t(p->grad.size()) * sizeof(T));
            at += size_t(p->grad.size());
        }
        std::memcpy(flat_.data() + G, metrics, 2 * sizeof(double));  // bytes of 2 doubles in T slots
        const int P = ranks();
        gathered_.resize(Eigen::Index(S) * P);
        group_->allgather(flat_.data(), S * sizeof(T), gathered_.data());
        // Rank order: ((b_0 + b_1) + b_2) ..., as the in-process replicas are summed.
        auto block = [&](int q, size_t from, size_t n) {
            return gathered_.segment(Eigen::Index(size_t(q) * S + from), Eigen::Index(n));
        };
        at = 0;
        for (auto* p : model_->params()) {
            const size_t n = size_t(p->grad.size());
            auto g = as_vector(p->grad);
            g = block(0, at, n) + block(1, at, n);
            for (int q = 2; q < P; ++q) g += block(q, at, n);
            at += n;
        }
        sum_metrics(gathered_.data() + G, S, metrics);
    }
    // Values of T in one rank's block: the gradients, the two metrics (as the bytes of 2
    // doubles), rounded up to 16 values so every block starts 64-byte aligned.
    size_t block_values() const { return round16(grad_values_ + metric_values()); }

    // The sharded reduction and update (several ranks, an optimizer that shards()), in
    // the place of reduce_across_ranks + guarded_update: every rank sums and updates only
    // its shard of the parameters, as ZeRO's stage 1 and Horovod's sharded optimisers do.
    //   1. alltoall: rank p sends shard q of its gradients (and its metrics) to rank q
    //   2. each rank sums its shard over the ranks in rank order (the bits of the
    //      replicas' and of reduce_across_ranks's sums) into the model's gradients
    //   3. the guard: the loss is the same on every rank; a non-finite gradient is found
    //      by the rank that owns it, so the ranks agree by a small allgather of "the
    //      first bad parameter" before anyone updates (all throw, nothing is touched)
    //   4. opt.step_range on the shard: the same bits as step() would give there
    //   5. allgather of the shards' new weights into every rank's model
    // Per step and rank: (P - 1) / P of the gradients in, as much of the weights in (the
    // traffic of a ring allreduce), and 1 / P of the summing and of the update. Left
    // behind: outside its shard, a rank's gradients hold its own sum only, and its
    // optimizer state is stale there (gather_optimizer_state).
    double sharded_update(Optimizer<T>& opt, const double* local_metrics, Eigen::Index N, std::int64_t* correct,
                          Clock::time_point t0, Clock::time_point t1) {
        const auto& params = model_->params();
        const int P = ranks(), me = rank();
        if (bounds_.empty()) make_bounds();
        const size_t L = shard_max(), mv = metric_values(), B = round16(L + mv);
        send_.resize(Eigen::Index(size_t(P) * B));
        for (int q = 0; q < P; ++q) {
            T* block = send_.data() + size_t(q) * B;
            for_each_piece(bounds_[size_t(q)], bounds_[size_t(q) + 1], [&](size_t i, size_t from, size_t n, size_t at) {
                std::memcpy(block + at, params[i]->grad.data() + from, n * sizeof(T));
            });
            std::memcpy(block + L, local_metrics, 2 * sizeof(double));  // bytes of 2 doubles in T slots
        }
        recv_.resize(send_.size());
        group_->alltoall(send_.data(), B * sizeof(T), recv_.data());
        // Rank order: ((b_0 + b_1) + b_2) ..., straight into this shard of the gradients.
        std::int32_t bad = -1;  // the first parameter with a non-finite gradient in my shard
        for_each_piece(bounds_[size_t(me)], bounds_[size_t(me) + 1], [&](size_t i, size_t from, size_t n, size_t at) {
            auto g = as_vector(params[i]->grad).segment(Eigen::Index(from), Eigen::Index(n));
            auto b = [&](int q) { return recv_.segment(Eigen::Index(size_t(q) * B + at), Eigen::Index(n)); };
            g = b(0) + b(1);
            for (int q = 2; q < P; ++q) g += b(q);
            if (bad < 0 && !g.allFinite()) bad = std::int32_t(i);
        });
        double m[2];
        sum_metrics(recv_.data() + L, B, m);
        const double loss = m[0] / double(N);
        if (correct) *correct = std::int64_t(m[1]);
        // The guard, in guarded_update's order: the loss (equal on every rank, so all
        // throw together), then the gradients (agreed on first).
        if (!std::isfinite(loss)) throw NonFiniteError("the loss is " + std::to_string(loss));
        std::vector<std::int32_t> flags(size_t(P), -1);
        group_->allgather(&bad, sizeof bad, flags.data());
        std::int32_t first = -1;
        for (auto f : flags)
            if (f >= 0 && (first < 0 || f < first)) first = f;
        if (first >= 0)
            throw NonFiniteError(gradient_name(size_t(first)) + " is not finite (the loss was " +
                                 std::to_string(loss) + ")");
        const auto t2 = Clock::now();
        opt.step_range(params, bounds_[size_t(me)], bounds_[size_t(me) + 1]);
        scattered_ = true;
        std::vector<T*> values(params.size());
        for (size_t i = 0; i < params.size(); ++i) values[i] = params[i]->value.data();
        exchange_shards(values);
        add_times(t0, t1, t2, Clock::now());
        return loss;
    }

    // bufs[i]: a buffer the size of parameter i. Every rank's shard of them goes to every
    // rank (one allgather), so all ranks end with all shards.
    void exchange_shards(const std::vector<T*>& bufs) {
        if (bounds_.empty()) make_bounds();
        const int P = ranks(), me = rank();
        const size_t B = round16(shard_max());
        wsend_.resize(Eigen::Index(B));
        for_each_piece(bounds_[size_t(me)], bounds_[size_t(me) + 1], [&](size_t i, size_t from, size_t n, size_t at) {
            std::memcpy(wsend_.data() + at, bufs[i] + from, n * sizeof(T));
        });
        wrecv_.resize(Eigen::Index(size_t(P) * B));
        group_->allgather(wsend_.data(), B * sizeof(T), wrecv_.data());
        for (int q = 0; q < P; ++q) {
            if (q == me) continue;
            const T* block = wrecv_.data() + size_t(q) * B;
            for_each_piece(bounds_[size_t(q)], bounds_[size_t(q) + 1], [&](size_t i, size_t from, size_t n, size_t at) {
                std::memcpy(bufs[i] + from, block + at, n * sizeof(T));
            });
        }
    }

    // The shards: rank q owns the values [bounds_[q], bounds_[q + 1]) of the parameters
    // laid end to end, near G q / P, each boundary moved back to a multiple of 64 values
    // into its parameter (Optimizer::step_range: then the shards' update has the bits of
    // the whole one).
    void make_bounds() {
        const auto& params = model_->params();
        const int P = ranks();
        std::vector<size_t> offsets(params.size() + 1, 0);
        for (size_t i = 0; i < params.size(); ++i) offsets[i + 1] = offsets[i] + size_t(params[i]->value.size());
        const size_t G = offsets.back();
        bounds_.assign(size_t(P) + 1, G);
        bounds_[0] = 0;
        for (int q = 1; q < P; ++q) {
            const size_t t = G * size_t(q) / size_t(P);
            size_t i = 0;
            while (i + 1 < params.size() && offsets[i + 1] <= t) ++i;
            bounds_[size_t(q)] = std::max(bounds_[size_t(q) - 1], offsets[i] + (t - offsets[i]) / 64 * 64);
        }
        offsets_ = std::move(offsets);
    }
    size_t shard_max() const {
        size_t L = 0;
        for (size_t q = 0; q + 1 < bounds_.size(); ++q) L = std::max(L, bounds_[q + 1] - bounds_[q]);
        return L;
    }
    // f(i, from, n, at): parameter i's values [from, from + n) are the shard's [at, at + n).
    template <class F>
    void for_each_piece(size_t begin, size_t end, F f) const {
        for (size_t i = 0; i + 1 < offsets_.size(); ++i) {
            const size_t lo = std::max(begin, offsets_[i]), hi = std::min(end, offsets_[i + 1]);
            if (lo < hi) f(i, lo - offsets_[i], hi - lo, lo - begin);
        }
    }
    // nonfinite_gradient's name for parameter i of model_->params().
    std::string gradient_name(size_t index) {
        size_t at = 0;
        for (size_t l = 0; l < model_->size(); ++l)
            for (auto* p : model_->layer(l).params())
                if (at++ == index)
                    return "the gradient of layer " + std::to_string(l) + " (" + model_->layer(l).type() + ") '" +
                           p->name + "'";
        return "the gradient of parameter " + std::to_string(index);
    }
    // m := the ranks' metrics added in rank order; rank q's two doubles are stored as
    // bytes at first + q * stride (in T slots, as the blocks carry them).
    void sum_metrics(const T* first, size_t stride, double* m) const {
        m[0] = m[1] = 0;
        for (int q = 0; q < ranks(); ++q) {
            double mq[2];
            std::memcpy(mq, first + size_t(q) * stride, sizeof mq);
            m[0] += mq[0];
            m[1] += mq[1];
        }
    }
    static size_t metric_values() { return (2 * sizeof(double) + sizeof(T) - 1) / sizeof(T); }
    static size_t round16(size_t n) { return (n + 15) / 16 * 16; }  // 64-byte aligned blocks of floats
    void add_times(Clock::time_point t0, Clock::time_point t1, Clock::time_point t2, Clock::time_point t3) {
        auto s = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
        times_.parts_s += s(t0, t1);
        times_.reduce_s += s(t1, t2);
        times_.update_s += s(t2, t3);
        ++times_.steps;
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
    Eigen::Matrix<T, Eigen::Dynamic, 1> flat_, gathered_;  // (S) this rank's block, (P*S) all
    // Sharded steps: rank q's shard is [bounds_[q], bounds_[q+1]) of the G values,
    // parameter i is [offsets_[i], offsets_[i+1]); send_/recv_ (P*B) the gradients'
    // alltoall, B = the longest shard + the metrics, rounded to 16; wsend_ (B'), wrecv_
    // (P*B') the new weights' allgather, B' = the longest shard rounded to 16.
    std::vector<size_t> bounds_, offsets_;
    Eigen::Matrix<T, Eigen::Dynamic, 1> send_, recv_, wsend_, wrecv_;
    bool scattered_ = false;  // the optimizer state is current on this rank's shard only
    Times times_;
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
