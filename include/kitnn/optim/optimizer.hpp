// kitnn/optim/optimizer.hpp — the optimizer interface.
//
// An optimizer is bound to a list of parameters (Sequential::params()); step()
// reads each Param's grad and updates its value in place. State (moments,
// velocities) is allocated once, on the first step, with the parameters' shapes.
#pragma once

#include "kitnn/core/tensor.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kitnn {

template <class T>
class Optimizer {
public:
    virtual ~Optimizer() = default;
    virtual void step(const std::vector<Param<T>*>& params) = 0;

    // Sharded updates: the ranks of a distributed step (train/data_parallel.hpp) each
    // update one shard of the parameters, then exchange the new weights, instead of all
    // of them repeating the whole update. step_range(params, begin, end) is step() for
    // the values [begin, end) of the parameters laid end to end in `params` order: those
    // values and their state (moments) only, and it counts one step as step() does. The
    // same value gets the same bits from step() and from step_range() when the range
    // starts at a multiple of 64 values into its parameter (the vector loops then group
    // the values alike). An optimizer that shards() keeps its state() as groups of one
    // buffer per parameter, in parameter order (as export_buffers writes them), which
    // DataParallel::gather_optimizer_state gathers shard by shard. An optimizer that
    // cannot returns false from shards(), and every rank runs the whole step().
    virtual bool shards() const { return false; }
    virtual void step_range(const std::vector<Param<T>*>& params, std::size_t begin, std::size_t end) {
        (void)params, (void)begin, (void)end;
        throw std::logic_error("this optimizer cannot update a range of the parameters");
    }
    virtual double learning_rate() const = 0;
    virtual void set_learning_rate(double lr) = 0;
    std::int64_t iterations() const { return t_; }

    // The state a training checkpoint needs to continue exactly (--resume): the
    // per-parameter buffers as named tensors, (size, 1, 1, 1) each, and the step count.
    using NamedTensors = std::vector<std::pair<std::string, Tensor<T>>>;
    virtual NamedTensors state() const { return {}; }
    // Restores state() for `params`; throws std::runtime_error naming the first
    // buffer that does not fit (another model, or a different optimizer).
    virtual void load_state(const NamedTensors& s, const std::vector<Param<T>*>& params,
                            std::int64_t iterations) {
        (void)params;
        if (!s.empty())
            throw std::runtime_error("optimizer state: this optimizer keeps no buffers, got " +
                                     std::to_string(s.size()));
        t_ = iterations;
    }

protected:
    // f(i, from, n) for each parameter i that overlaps [begin, end) of the parameters laid
    // end to end: its values [from, from + n) are the overlap.
    template <class F>
    static void for_each_segment(const std::vector<Param<T>*>& params, std::size_t begin, std::size_t end, F f) {
        std::size_t off = 0;
        for (std::size_t i = 0; i < params.size(); ++i) {
            const std::size_t n = std::size_t(params[i]->value.size());
            const std::size_t lo = std::max(begin, off), hi = std::min(end, off + n);
            if (lo < hi) f(i, Eigen::Index(lo - off), Eigen::Index(hi - lo));
            off += n;
        }
    }

    // Helpers for optimizers that keep one vector per parameter (moments, velocity).
    using Vec = Eigen::Matrix<T, Eigen::Dynamic, 1>;
    static void export_buffers(const std::string& prefix, const std::vector<Vec>& b, NamedTensors& out) {
        for (size_t i = 0; i < b.size(); ++i) {
            Tensor<T> t(b[i].size(), 1, 1, 1);
            std::copy(b[i].data(), b[i].data() + b[i].size(), t.data());
            out.emplace_back(prefix + std::to_string(i), std::move(t));
        }
    }
    static void import_buffers(const std::string& prefix, const NamedTensors& s,
                               const std::vector<Param<T>*>& params, std::vector<Vec>& b) {
        b.clear();
        size_t stored = 0;
        for (auto& kv : s) stored += kv.first.compare(0, prefix.size(), prefix) == 0;
        if (stored != params.size())
            throw std::runtime_error("optimizer state: " + std::to_string(stored) + " '" + prefix +
                                     "*' buffers for " + std::to_string(params.size()) +
                                     " parameters (a checkpoint of another model?)");
        for (size_t i = 0; i < params.size(); ++i) {
            const std::string name = prefix + std::to_string(i);
            const Tensor<T>* t = nullptr;
            for (auto& kv : s)
                if (kv.first == name) t = &kv.second;
            if (!t)
                throw std::runtime_error("optimizer state: missing buffer '" + name + "' (" +
                                         std::to_string(params.size()) + " parameters)");
            if (t->size() != params[i]->value.size())
                throw std::runtime_error("optimizer state: buffer '" + name + "' has " +
                                         std::to_string(t->size()) + " values, parameter " +
                                         std::to_string(i) + " has " +
                                         std::to_string(params[i]->value.size()));
            b.emplace_back(Eigen::Map<const Vec>(t->data(), t->size()));
        }
    }

    std::int64_t t_ = 0;  // steps taken
};

}  // namespace kitnn
