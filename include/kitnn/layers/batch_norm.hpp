// kitnn/layers/batch_norm.hpp — batch normalisation (Keras's BatchNormalization).
//
// Normalises each channel (after a conv, input (C,H,W)) or each feature (after a
// dense, input (F), stored as (F,1,1)) to mean 0 / variance 1, then scales and
// shifts it with learned gamma and beta. With S = H*W (1 for flat input) the
// statistics of channel c are taken over the M = N*S values x[n, c, s]:
//   x      : (N, C, H, W)   (flat: (N, F, 1, 1))
//   y      : same shape     y = gamma[c] * xhat + beta[c]
//   xhat_  : same shape     (x - mean[c]) * inv_std[c], cached for backward
//   gamma, beta             : (C, 1, 1, 1) trainable, init 1 and 0
//   moving_mean, moving_variance: (C, 1, 1, 1) state(), init 0 and 1: saved in the
//                             model file, never seen by the optimizer
//   mean_, inv_std_ : (C)   the statistics the last forward used
// Training (training=true):
//   mean = sum(x) / M,  var = sum((x - mean)^2) / M (biased, as the normalisation needs),
//   inv_std = 1 / sqrt(var + epsilon)
//   moving = momentum * moving + (1 - momentum) * batch   for the mean and the variance.
//   The moving variance is fed the BIASED batch variance, as Keras 3 does for every
//   input (PyTorch, and TensorFlow's fused kernel behind Keras 2's conv case, feed the
//   unbiased M/(M-1) one instead; for M = N*H*W the difference is negligible, and the
//   biased one needs no special case for M = 1).
// Inference (training=false): mean and var are the moving ones, so a sample's output
//   does not depend on the rest of its batch.
// Epsilon keeps inv_std finite when a channel has zero variance (a dense input with a
// batch of 1 in training mode: xhat = 0, y = beta, dx = 0, no NaN).
// Backward, training mode (mean and var depend on x), per channel over its M values:
//   dbeta += sum(dy),  dgamma += sum(dy * xhat)
//   dx = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
// Eval mode (statistics are constants): dx = dy * gamma * inv_std, the same dgamma and
// dbeta with xhat recomputed from x. backward uses the mode of the last forward.
// Sums are accumulated in double per channel; channels run in parallel when big.
//
// Synchronised BatchNorm: when a batch is split across replicas or MPI ranks
// (train/data_parallel.hpp), each part alone would normalise with its own statistics
// and train another model than the whole batch does. With a BatchStatsReducer set, the
// per-channel sums are summed over every part of the batch before they are used, so
// every part normalises with the statistics of the WHOLE batch, as one process would:
//   forward:  [sum(x) per channel, M]  reduced -> mean = sum / M_total
//             sum((x - mean)^2)        reduced -> var
//   backward: [sum(dy), sum(dy * xhat)] reduced -> dx with the whole batch's sums
// (dy is then the gradient of the whole batch's mean loss, which is what the step
// gives each part). dgamma and dbeta stay this part's share: the step sums the
// gradients of all parts afterwards. Three reductions of C (or 2C) doubles per layer
// and step; every part must call them, in the same order (a part with no samples
// contributes zeros). Without a reducer (the default) nothing changes.
#pragma once

#include "kitnn/core/parallel.hpp"
#include "kitnn/layers/layer.hpp"
#include "kitnn/layers/registry.hpp"

#include <cmath>
#include <cstddef>
#include <vector>

namespace kitnn {

// Sums per-channel statistics over every part of a batch (see "Synchronised BatchNorm"
// above). sum(v, n): on return v[0, n) holds the sum over all parts, the same on every
// part. Called from the thread that runs the part's forward/backward.
class BatchStatsReducer {
public:
    virtual ~BatchStatsReducer() = default;
    virtual void sum(double* v, std::size_t n) = 0;
};

// Layers whose training forward/backward use statistics of the batch implement this,
// so a data-parallel step can synchronise them without knowing the layer's type.
class UsesBatchStats {
public:
    virtual ~UsesBatchStats() = default;
    // nullptr = local statistics (the default). The reducer must outlive its use.
    virtual void set_stats_reducer(BatchStatsReducer* r) = 0;
};

template <class T>
class BatchNorm : public Layer<T>, public UsesBatchStats {
public:
    explicit BatchNorm(double momentum = 0.99, double epsilon = 1e-3)
        : momentum_(momentum), epsilon_(epsilon) {
        if (!(momentum >= 0.0 && momentum <= 1.0))
            throw std::invalid_argument("BatchNorm: momentum must be in [0, 1]");
        if (!(epsilon > 0.0 && std::isfinite(epsilon)))
            throw std::invalid_argument("BatchNorm: epsilon must be finite and > 0");
        gamma_.name = "gamma";
        beta_.name = "beta";
        moving_mean_.name = "moving_mean";
        moving_var_.name = "moving_variance";
    }

    static constexpr const char* kType = "BatchNorm";
    std::string type() const override { return kType; }
    static std::unique_ptr<BatchNorm> from_config(const Config& c) {
        return std::make_unique<BatchNorm>(c.real("momentum"), c.real("epsilon"));
    }
    // gamma, beta, moving mean and variance: one value per channel (feature)
    LayerFootprint footprint(const Shape& in) const override {
        return {4 * in.c(), 0};
    }
    Config config() const override {
        Config c;
        c.set("momentum", momentum_).set("epsilon", epsilon_);
        return c;
    }
    std::vector<Param<T>*> params() override { return {&gamma_, &beta_}; }
    std::vector<Param<T>*> state() override { return {&moving_mean_, &moving_var_}; }
    // Per value: normalise (subtract, multiply) and the affine step (multiply, add).
    std::int64_t macs() const override { return 2 * std::int64_t(this->in_.size()); }

    Param<T>& gamma() { return gamma_; }
    Param<T>& beta() { return beta_; }
    Param<T>& moving_mean() { return moving_mean_; }
    Param<T>& moving_variance() { return moving_var_; }
    double momentum() const { return momentum_; }
    double epsilon() const { return epsilon_; }
    void set_stats_reducer(BatchStatsReducer* r) override { reducer_ = r; }

    void forward(const Tensor<T>& x, Tensor<T>& y, bool training) override {
        this->check_input(x);
        const Eigen::Index N = x.dimension(0), C = c_, S = s_, M = N * S;
        ensure(y, N, this->out_);
        was_training_ = training;
        // Nothing to normalise and no statistics to learn from; but a synced part with no
        // samples still takes part in the reductions (with zeros).
        if (N == 0 && !(training && reducer_)) return;
        const T* g = gamma_.value.data();
        const T* b = beta_.value.data();
        if (!training) {
            // y = x * scale + shift with scale = gamma * inv_std, shift = beta - mean * scale
            parallel_for(C, 2 * M * C, [&](std::int64_t c) {
                mean_[c] = moving_mean_.value.data()[c];
                inv_std_[c] = T(1.0 / std::sqrt(double(moving_var_.value.data()[c]) + epsilon_));
                const T scale = g[c] * inv_std_[c], shift = b[c] - mean_[c] * scale;
                for (Eigen::Index n = 0; n < N; ++n) {
                    const Eigen::Index at = (n * C + c) * S;  // x[n, c, :] is S values
                    VecMap<T>(y.data() + at, S).array() =
                        ConstVecMap<T>(x.data() + at, S).array() * scale + shift;
                }
            });
            return;
        }
        ensure(xhat_, N, this->in_);
        const double keep = momentum_, take = 1.0 - momentum_;
        // Three passes over the channels, with the reductions between them when synced.
        sums_.assign(size_t(C) + 1, 0.0);  // (C + 1) per-channel sum(x), then M
        parallel_for(C, M * C, [&](std::int64_t c) {
            double sum = 0;  // double: M can be millions of values
            for (Eigen::Index n = 0; n < N; ++n)
                sum += double(ConstVecMap<T>(x.data() + (n * C + c) * S, S).sum());
            sums_[size_t(c)] = sum;
        });
        sums_[size_t(C)] = double(M);
        if (reducer_) reducer_->sum(sums_.data(), sums_.size());
        m_total_ = sums_[size_t(C)];
        if (m_total_ == 0) return;  // no part has samples
        for (Eigen::Index c = 0; c < C; ++c) mean_[c] = T(sums_[size_t(c)] / m_total_);
        sq_.assign(size_t(C), 0.0);  // (C) sum((x - mean)^2): two passes, no cancellation
        parallel_for(C, 2 * M * C, [&](std::int64_t c) {
            const double mean = sums_[size_t(c)] / m_total_;
            double sq = 0;
            for (Eigen::Index n = 0; n < N; ++n)
                sq += double((ConstVecMap<T>(x.data() + (n * C + c) * S, S).array() - T(mean))
                                 .square()
                                 .sum());
            sq_[size_t(c)] = sq;
        });
        if (reducer_) reducer_->sum(sq_.data(), sq_.size());
        parallel_for(C, 2 * M * C, [&](std::int64_t c) {
            const double mean = sums_[size_t(c)] / m_total_;
            const double var = sq_[size_t(c)] / m_total_;
            inv_std_[c] = T(1.0 / std::sqrt(var + epsilon_));
            for (Eigen::Index n = 0; n < N; ++n) {
                const Eigen::Index at = (n * C + c) * S;
                VecMap<T> xh(xhat_.data() + at, S);
                xh.array() = (ConstVecMap<T>(x.data() + at, S).array() - mean_[c]) * inv_std_[c];
                VecMap<T>(y.data() + at, S).array() = xh.array() * g[c] + b[c];
            }
            T& mm = moving_mean_.value.data()[c];
            T& mv = moving_var_.value.data()[c];
            mm = T(keep * double(mm) + take * mean);
            mv = T(keep * double(mv) + take * var);
        });
    }

    void backward(const Tensor<T>& x, const Tensor<T>&, const Tensor<T>& dy,
                  Tensor<T>* dx) override {
        const Eigen::Index N = dy.dimension(0), C = c_, S = s_;
        if (dx) ensure(*dx, N, this->in_);
        const bool synced = was_training_ && reducer_;
        if (N == 0 && !synced) return;
        if (was_training_ && m_total_ == 0) return;
        T* dgamma = gamma_.grad.data();
        T* dbeta = beta_.grad.data();
        const T* g = gamma_.value.data();
        // sum(dy) and sum(dy * xhat) over the channel's values: (2C) [sdy..., sdyx...]
        bsums_.assign(size_t(2 * C), 0.0);
        parallel_for(C, 3 * N * S * C, [&](std::int64_t c) {
            const T mean = mean_[c], inv = inv_std_[c];
            double sdy = 0, sdyx = 0;
            for (Eigen::Index n = 0; n < N; ++n) {
                const Eigen::Index at = (n * C + c) * S;
                const ConstVecMap<T> G(dy.data() + at, S);
                sdy += double(G.sum());
                if (was_training_)
                    sdyx += double(G.dot(ConstVecMap<T>(xhat_.data() + at, S)));
                else  // xhat was not cached in eval mode: recompute it from x
                    sdyx += double((G.array() * (ConstVecMap<T>(x.data() + at, S).array() - mean))
                                       .sum()) *
                            double(inv);
            }
            bsums_[size_t(c)] = sdy;
            bsums_[size_t(C + c)] = sdyx;
            dgamma[c] += T(sdyx);  // this part's share; the step sums the parts
            dbeta[c] += T(sdy);
        });
        if (synced) reducer_->sum(bsums_.data(), bsums_.size());
        if (!dx || N == 0) return;
        // M: the values per channel of the whole batch (all parts when synced).
        const double M = was_training_ ? m_total_ : double(N * S);
        parallel_for(C, 3 * N * S * C, [&](std::int64_t c) {
            const T inv = inv_std_[c];
            if (!was_training_) {  // the statistics are constants: a plain affine map
                const T k = g[c] * inv;
                for (Eigen::Index n = 0; n < N; ++n) {
                    const Eigen::Index at = (n * C + c) * S;
                    VecMap<T>(dx->data() + at, S) = ConstVecMap<T>(dy.data() + at, S) * k;
                }
                return;
            }
            // dx = gamma * inv_std / M * (M * dy - sum(dy) - xhat * sum(dy * xhat))
            const T k = T(double(g[c]) * double(inv) / M);
            const T m = T(M), a = T(bsums_[size_t(c)]), bsum = T(bsums_[size_t(C + c)]);
            for (Eigen::Index n = 0; n < N; ++n) {
                const Eigen::Index at = (n * C + c) * S;
                VecMap<T>(dx->data() + at, S).array() =
                    k * (m * ConstVecMap<T>(dy.data() + at, S).array() - a -
                         ConstVecMap<T>(xhat_.data() + at, S).array() * bsum);
            }
        });
    }

protected:
    Shape do_build(const Shape& in, Rng&) override {
        if (!in.is_image() && !in.is_flat())
            this->shape_error("needs an image (C,H,W) or flat (F) input, got " + in.str());
        c_ = in.c();
        s_ = in.h() * in.w();
        gamma_.resize(c_, 1, 1, 1);
        gamma_.value.setConstant(T(1));
        beta_.resize(c_, 1, 1, 1);
        moving_mean_.resize(c_, 1, 1, 1);
        moving_var_.resize(c_, 1, 1, 1);
        moving_var_.value.setConstant(T(1));
        mean_.setZero(c_);
        inv_std_.setZero(c_);
        return in;
    }

private:
    double momentum_, epsilon_;
    Eigen::Index c_ = 0, s_ = 0;  // channels (or features) and values per channel per sample
    Param<T> gamma_, beta_;            // (C, 1, 1, 1) trainable
    Param<T> moving_mean_, moving_var_;  // (C, 1, 1, 1) state, updated in training forward
    Eigen::Matrix<T, Eigen::Dynamic, 1> mean_, inv_std_;  // (C) used by the last forward
    Tensor<T> xhat_;                     // (N, C, H, W) normalised x of the last training forward
    bool was_training_ = false;
    BatchStatsReducer* reducer_ = nullptr;  // synchronised statistics when set
    double m_total_ = 0;                    // values per channel of the whole batch (last forward)
    std::vector<double> sums_, sq_, bsums_; // (C + 1), (C), (2C) the sums that are reduced
};
KITNN_LIBRARY_LAYER(BatchNorm);

}  // namespace kitnn
