// kitnn/train/checkpoint.hpp — training checkpoints: everything --resume needs.
//
// A training checkpoint is an ordinary model file (io/model_file.hpp, format v2),
// so mnist_apply can use it as it is, plus:
//   extras      the optimizer's buffers (Adam's moments "adam.m.<i>", "adam.v.<i>")
//   metadata    train.epoch            epochs completed
//               train.iterations       optimizer steps taken (Adam's bias correction)
//               train.best             best val_loss so far (checkpoint-best, early stop)
//               train.since_best       epochs since it improved
//               train.schedule         the schedule's spec and train.schedule_state its state
//               train.history          the history CSV so far (train/history.hpp)
//               train.rng.<path>       every layer generator's state (Dropout), path
//                                      "3" or "5.b1.2" (layer 5, branch 1, layer 2)
// plus the caller's metadata (model name, dataset, seed, ...).
// What is NOT stored, because it is recomputed: the shuffled order (replayed from the
// seed, see fit()) and the augmentation draws (a function of seed, epoch and batch).
// With the same seed, data and thread count, a run resumed from epoch k ends with
// bit-identical weights to an uninterrupted one (tests/test_resume.cpp).
// The file is written with write_file_atomic: a kill at any moment leaves the old
// checkpoint or the new one (tests/kill_checkpoint.sh).
#pragma once

#include "kitnn/io/model_file.hpp"
#include "kitnn/optim/optimizer.hpp"
#include "kitnn/train/history.hpp"
#include "kitnn/train/schedule.hpp"

#include <array>
#include <cstdio>
#include <sstream>
#include <string>

namespace kitnn {

namespace detail {

inline std::string number17(double v) {
    char b[64];
    std::snprintf(b, sizeof b, "%.17g", v);
    return b;
}

}  // namespace detail

template <class T>
void save_training_checkpoint(const std::string& path, Sequential<T>& model, const Optimizer<T>& opt,
                              const TrainState& st, const LrSchedule& schedule, const Metadata& metadata) {
    Metadata meta = metadata;
    meta["checkpoint"] = "training";
    meta["train.epoch"] = std::to_string(st.epoch);
    meta["train.iterations"] = std::to_string(opt.iterations());
    meta["train.best"] = detail::number17(st.best);  // "inf" before any epoch
    meta["train.since_best"] = std::to_string(st.since_best);
    meta["train.schedule"] = schedule.spec();
    meta["train.schedule_state"] = schedule.state_str();
    meta["train.history"] = history_csv(st.history);
    detail::for_each_layer(model, [&](const std::string& p, Layer<T>& l) {
        if (Rng* g = l.generator()) {
            std::string s;
            for (auto w : g->state()) s += (s.empty() ? "" : " ") + std::to_string(w);
            meta["train.rng." + p] = s;
        }
    });
    const auto extras = opt.state();
    save_model(path, model, meta, extras);
}

// A training checkpoint read back: the model with its generators restored, and
// the rest for restore_optimizer() and fit(..., &state).
template <class T>
struct TrainingCheckpoint {
    Sequential<T> model;
    Metadata metadata;
    TrainState state;
    typename Optimizer<T>::NamedTensors optimizer_state;
    std::int64_t iterations = 0;
    std::string schedule_spec, schedule_state;

    // Gives `opt` the saved buffers and step count (throws if they do not fit).
    void restore_optimizer(Optimizer<T>& opt) {
        opt.load_state(optimizer_state, model.params(), iterations);
    }
};

template <class T>
TrainingCheckpoint<T> load_training_checkpoint(const std::string& path) {
    Metadata meta;
    typename Optimizer<T>::NamedTensors extras;
    Sequential<T> model = load_model<T>(path, &meta, &extras);
    auto get = [&](const std::string& k) -> const std::string& {
        auto it = meta.find(k);
        if (it == meta.end())
            throw ModelFileError(path + ": not a training checkpoint (no '" + k +
                                 "'; a best-model file cannot be resumed, use last.kitnn)");
        return it->second;
    };
    auto integer = [&](const std::string& k) {
        const std::string& v = get(k);
        try {
            size_t used = 0;
            const long long r = std::stoll(v, &used);
            if (used == v.size() && r >= 0) return r;
        } catch (const std::exception&) {
        }
        throw ModelFileError(path + ": training checkpoint: '" + k + "' = '" + v + "' is not a count");
    };
    TrainingCheckpoint<T> c{std::move(model), {}, {}, std::move(extras), 0, {}, {}};
    get("checkpoint");
    c.state.epoch = int(integer("train.epoch"));
    c.iterations = integer("train.iterations");
    c.state.since_best = int(integer("train.since_best"));
    try {
        c.state.best = std::stod(get("train.best"));
    } catch (const std::exception&) {
        throw ModelFileError(path + ": training checkpoint: 'train.best' is not a number");
    }
    c.state.history = parse_history(get("train.history"), path);
    c.schedule_spec = get("train.schedule");
    c.schedule_state = get("train.schedule_state");
    detail::for_each_layer(c.model, [&](const std::string& p, Layer<T>& l) {
        if (Rng* g = l.generator()) {
            std::istringstream in(get("train.rng." + p));
            std::array<std::uint64_t, 4> s{};
            for (auto& w : s)
                if (!(in >> w)) throw ModelFileError(path + ": training checkpoint: bad generator state for layer " + p);
            g->set_state(s);
        }
    });
    c.metadata = std::move(meta);
    return c;
}

}  // namespace kitnn
