// kitnn/train/fit.hpp — Keras-style training: fit() with validation split,
// progress bar, checkpoint-best, history; evaluate() for loss and accuracy.
//
// One training step is the whole story of backprop in five lines (the one step path,
// train/data_parallel.hpp, which also splits it across replicas and MPI ranks):
//   logits = model.forward(x, training)        (N, K)
//   loss   = softmax_ce.forward(logits, y)     mean over the batch
//   dlogits = (p - onehot) / N                 softmax_ce.backward
//   model.zero_grad(); model.backward(dlogits) parameter gradients
//   optimizer.step(params)                     Adam / SGD update
// Every buffer involved is sized on the first batch and reused afterwards.
//
// fit() reads as its epoch loop:
//   for each epoch:  train_epoch   shuffle, batches (schedule, augmentation, step, bar)
//                    validate      val_loss / val_acc (split across ranks, summed)
//                    print_epoch   the epoch's line
//                    keep_best     checkpoint-best by val_loss
//                    end_epoch     schedule (plateau), history, history.csv, last checkpoint
//                    stop?         early stopping, the on_epoch_end callback
// Around the step it has what a long run needs: a learning-rate schedule applied per
// batch (train/schedule.hpp), augmentation of training batches only (data/augment.hpp),
// early stopping on val_loss, a guard that stops on a non-finite loss or gradient
// BEFORE the weights are touched (the last good checkpoint stays), and a training
// checkpoint after every epoch from which fit() resumes exactly (train/checkpoint.hpp).
//
// Distributed (FitOptions::group, e.g. kitnn/dist/mpi.hpp's MpiCommunicator): every
// rank runs fit() with the same data, options and seed; the shuffle is the same on
// every rank, each global batch is split across the ranks (and their replicas), the
// gradients and the metrics are summed across ranks, so every rank holds the same
// weights after every step. Only rank 0 prints and writes files (checkpoints, history).
#pragma once

#include "kitnn/core/rng.hpp"
#include "kitnn/data/augment.hpp"
#include "kitnn/io/atomic_file.hpp"
#include "kitnn/io/model_file.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/optim/optimizer.hpp"
#include "kitnn/train/checkpoint.hpp"
#include "kitnn/train/collective.hpp"
#include "kitnn/train/data_parallel.hpp"
#include "kitnn/train/history.hpp"
#include "kitnn/train/non_finite.hpp"
#include "kitnn/train/schedule.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <numeric>
#include <sstream>
#include <unistd.h>

namespace kitnn {

// A labelled image set: images (N, C, H, W) in float, labels (N).
struct LabelledView {
    const Tensor<float>* images = nullptr;
    const std::vector<std::uint8_t>* labels = nullptr;
    Eigen::Index begin = 0, end = 0;  // the samples [begin, end) are used
    Eigen::Index size() const { return end - begin; }

    // Throws unless [begin, end) lies inside both the images and the labels.
    void validate(const char* what) const {
        if (size() == 0) return;
        if (!images || !labels || begin < 0 || end < begin || end > images->dimension(0) ||
            end > Eigen::Index(labels->size()))
            throw std::invalid_argument(
                std::string(what) + ": samples [" + std::to_string(begin) + ", " +
                std::to_string(end) + ") are outside the data (" +
                std::to_string(images ? images->dimension(0) : 0) + " images, " +
                std::to_string(labels ? labels->size() : 0) + " labels)");
    }
};

struct EvalResult {
    double loss = 0, accuracy = 0;
    std::int64_t correct = 0, count = 0;
};

struct FitOptions {
    int epochs = 10;                      // total, counting epochs done before a resume
    Eigen::Index batch = 100;
    std::uint64_t seed = 1;               // shuffling and augmentation; the model has its own
    std::string checkpoint;               // save-best-only by val_loss when set
    std::string last_checkpoint;          // training checkpoint after every epoch (resume)
    std::string history_csv;              // train/history.hpp's columns
    Metadata metadata;                    // stored in the checkpoints
    int progress = -1;                    // 1 bar, 0 one line per epoch, -1 bar if stdout is a tty
    std::ostream* out = &std::cout;
    LrSchedule schedule;                  // applied before every batch
    double base_lr = 0;                   // the schedule's base; 0 = the optimizer's rate
    AugmentOptions augment;               // training batches only
    int early_stopping = 0;               // stop after this many epochs without a better
                                          // val_loss (0 = never)
    int replicas = 0;                     // split batches across threads (DataParallel):
                                          // 0 = automatic (choose_replicas), 1 = never, N
    // Called after every epoch, once its checkpoints are written; returning false
    // stops training there (a Keras-style callback: custom logging, a time budget).
    // Distributed: called on every rank, and must answer the same on all of them.
    std::function<bool(const EpochStats&)> on_epoch_end;
    // The ranks that train together (null = this process alone); see the header.
    Collective* group = nullptr;
};

// Copies samples idx[k0 .. k0+B) of `src` into the batch x (B, C, H, W) and y (B).
template <class T>
void gather_batch(const LabelledView& src, const std::vector<Eigen::Index>& idx, size_t k0,
                  Eigen::Index B, Tensor<T>& x, std::vector<std::uint8_t>& y) {
    const auto& im = *src.images;
    const Eigen::Index per = im.size() / std::max<Eigen::Index>(1, im.dimension(0));
    if (x.dimension(0) != B || x.size() != B * per)
        x.resize(B, im.dimension(1), im.dimension(2), im.dimension(3));
    y.resize(size_t(B));
    for (Eigen::Index b = 0; b < B; ++b) {
        const Eigen::Index s = idx[k0 + size_t(b)];
        const float* p = im.data() + s * per;
        std::copy(p, p + per, x.data() + b * per);  // converts float -> T when T = double
        y[size_t(b)] = (*src.labels)[size_t(s)];
    }
}

// Mean loss and accuracy in eval mode (no dropout), in batches. With a group of ranks,
// rank p evaluates its share of the samples and the sums are added in rank order:
// every rank gets the same result.
template <class T>
EvalResult evaluate(Sequential<T>& model, const LabelledView& data, Eigen::Index batch = 500,
                    Collective* group = nullptr) {
    data.validate("evaluate");
    const int P = group ? group->size() : 1, p = group ? group->rank() : 0;
    const Eigen::Index n = data.size(), b0 = data.begin + n * p / P, b1 = data.begin + n * (p + 1) / P;
    SoftmaxCrossEntropy<T> ce;
    Tensor<T> x;
    std::vector<std::uint8_t> y;
    std::vector<Eigen::Index> idx(size_t(b1 - b0));
    std::iota(idx.begin(), idx.end(), b0);
    EvalResult r;
    double sums[2] = {0, 0};  // [loss summed over the samples, hits]
    for (Eigen::Index s = 0; s < b1 - b0; s += batch) {
        const Eigen::Index B = std::min(batch, b1 - b0 - s);
        gather_batch(data, idx, size_t(s), B, x, y);
        sums[0] += ce.forward(model.forward(x, false), y.data()) * double(B);
        sums[1] += double(ce.correct());
    }
    if (P > 1) {
        std::vector<double> scratch;
        ordered_sum(*group, sums, 2, scratch);
    }
    r.correct = std::int64_t(sums[1]);
    r.count = n;
    r.loss = r.count ? sums[0] / double(r.count) : 0;
    r.accuracy = r.count ? double(r.correct) / double(r.count) : 0;
    return r;
}

// The generator of the augmentation of one batch: a function of (seed, epoch,
// step) only, so a resumed run draws the same transformations.
inline Rng batch_rng(std::uint64_t seed, int epoch, Eigen::Index step) {
    return Rng(seed * 0x9e3779b97f4a7c15ULL ^ (std::uint64_t(epoch) << 40) ^ std::uint64_t(step));
}

namespace detail {
inline std::string fmt_seconds(double s) {
    std::ostringstream o;
    if (s >= 3600) o << int(s / 3600) << ":" << std::setw(2) << std::setfill('0') << int(s / 60) % 60
                     << ":" << std::setw(2) << int(s) % 60;
    else if (s >= 60) o << int(s / 60) << ":" << std::setw(2) << std::setfill('0') << int(s) % 60;
    else o << std::fixed << std::setprecision(s < 10 ? 1 : 0) << s << "s";
    return o.str();
}
inline std::string bar(Eigen::Index done, Eigen::Index total) {
    const int width = 30;
    const int filled = total ? int(width * done / total) : width;
    std::string b(size_t(width), '.');
    for (int i = 0; i < filled; ++i) b[size_t(i)] = '=';
    if (filled < width) b[size_t(filled)] = '>';
    return "[" + b + "]";
}
}  // namespace detail

namespace detail {
// A stream that swallows everything: the output of ranks other than 0.
struct NullStream : std::ostream {
    NullStream() : std::ostream(nullptr) {}
};

// One fit() run: what its epoch loop needs between the steps, and the steps themselves.
template <class T>
class FitRun {
public:
    FitRun(Sequential<T>& model, Optimizer<T>& opt, const LabelledView& train, const LabelledView& val,
           const FitOptions& o, TrainState& st)
        : model_(model), opt_(opt), train_(train), val_(val), o_(o), st_(st),
          root_(!o.group || o.group->is_root()),
          out_(root_ ? *o.out : null_),
          tty_(root_ && (o.progress == 1 || (o.progress == -1 && ::isatty(STDOUT_FILENO) && o.out == &std::cout))),
          shuffle_rng_(o.seed ^ 0x5eed5eed5eedULL),
          order_(size_t(train.size())),
          base_lr_(o.base_lr > 0 ? o.base_lr : opt.learning_rate()),
          schedule_(o.schedule),  // restored from the checkpoint by the caller
          dp_(make_data_parallel(model, o.replicas, o.group)),
          steps_((train.size() + o.batch - 1) / o.batch) {
        // Every epoch shuffles the previous epoch's order again (Fisher–Yates with our own
        // generator: the same seed, the same order everywhere, on every rank). A resumed
        // run replays the shuffles of the epochs already done: a few ms, and the order and
        // the generator are then exactly where the interrupted run had them.
        std::iota(order_.begin(), order_.end(), train.begin);
        for (int e = 0; e < st.epoch; ++e) shuffle();
    }
    std::ostream& out() { return out_; }

    // Shuffle, then every batch: schedule, gather, augmentation, the step, the bar.
    EpochStats train_epoch(int epoch) {
        using clock = std::chrono::steady_clock;
        shuffle();
        out_ << "Epoch " << epoch << "/" << o_.epochs << "\n" << std::flush;
        const auto t0 = clock::now();
        auto last_draw = t0;
        double loss_sum = 0, lr = base_lr_;
        std::int64_t correct = 0, seen = 0;
        for (Eigen::Index s = 0; s < steps_; ++s) {
            const Eigen::Index B = std::min(o_.batch, train_.size() - s * o_.batch);
            lr = schedule_.lr(base_lr_, epoch - 1, double(s) / double(steps_), o_.epochs);
            opt_.set_learning_rate(lr);
            // The whole global batch on every rank (the same bits: same order, same
            // augmentation draws); the step takes this rank's parts of it.
            gather_batch(train_, order_, size_t(s * o_.batch), B, x_, y_);
            if (o_.augment.enabled()) {
                Rng r = batch_rng(o_.seed, epoch, s);
                augment_batch(x_, o_.augment, r, aug_buf_);
            }
            std::int64_t c = 0;
            double loss = 0;
            try {
                loss = dp_->step(opt_, x_, y_, &c);
            } catch (const NonFiniteError& e) {
                if (tty_) out_ << "\n";
                throw NonFiniteError(
                    "training diverged in epoch " + std::to_string(epoch) + ", batch " + std::to_string(s + 1) +
                    " (learning rate " + std::to_string(lr) + "): " + e.what() + "; the weights were not updated" +
                    (o_.checkpoint.empty() ? std::string()
                                           : ", and the last good checkpoint " + o_.checkpoint + " is kept"));
            }
            loss_sum += loss * double(B);
            correct += c;
            seen += B;
            const auto now = clock::now();
            if (tty_ && (std::chrono::duration<double>(now - last_draw).count() > 0.1 || s + 1 == steps_)) {
                last_draw = now;
                const double el = std::chrono::duration<double>(now - t0).count();
                const double rate = double(seen) / std::max(el, 1e-9);
                out_ << "\r" << std::setw(6) << seen << "/" << train_.size() << " " << bar(seen, train_.size())
                     << " - ETA: " << fmt_seconds(double(train_.size() - seen) / rate) << " - loss: " << std::fixed
                     << std::setprecision(4) << loss_sum / double(seen) << " - acc: " << double(correct) / double(seen)
                     << " - " << std::setprecision(0) << rate << " img/s   " << std::defaultfloat << std::flush;
            }
        }
        EpochStats es;
        es.epoch = epoch;
        es.lr = lr;
        es.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        es.images_per_s = double(seen) / std::max(es.seconds, 1e-9);  // the whole job's
        es.loss = loss_sum / double(seen);
        es.acc = double(correct) / double(seen);
        return es;
    }

    // val_loss and val_acc; without validation data, the training figures.
    void validate(EpochStats& es) {
        if (val_.size() > 0) {
            const auto v = evaluate(model_, val_, 500, o_.group);
            es.val_loss = v.loss;
            es.val_acc = v.accuracy;
        } else {
            es.val_loss = es.loss;  // no validation set: judge by training loss
            es.val_acc = es.acc;
        }
    }

    void print_epoch(const EpochStats& es) {
        const Eigen::Index seen = train_.size();
        if (tty_) out_ << "\r";
        out_ << std::setw(6) << seen << "/" << train_.size() << " " << bar(1, 1) << " - " << std::fixed
             << std::setprecision(2) << es.seconds << "s - loss: " << std::setprecision(4) << es.loss
             << " - acc: " << es.acc << " - val_loss: " << es.val_loss << " - val_acc: " << es.val_acc << " - "
             << std::setprecision(0) << es.images_per_s << " img/s" << std::defaultfloat;
        if (schedule_.kind() != LrSchedule::Kind::constant) out_ << " - lr: " << std::setprecision(3) << es.lr;
        out_ << "          \n";
    }

    // Checkpoint-best: the model of the lowest val_loss so far, written atomically.
    void keep_best(EpochStats& es) {
        if (es.val_loss < st_.best) {
            es.improved = true;
            if (!o_.checkpoint.empty()) {
                out_ << "val_loss improved from " << std::setprecision(5) << st_.best << " to " << es.val_loss
                     << ", saving model to " << o_.checkpoint << "\n";
                if (root_) save_model(o_.checkpoint, model_, o_.metadata);
            }
            st_.best = es.val_loss;
            st_.since_best = 0;
        } else {
            ++st_.since_best;
            if (!o_.checkpoint.empty())
                out_ << "val_loss did not improve from " << std::setprecision(5) << st_.best << "\n";
        }
    }

    // The schedule's end of epoch (plateau), the history, history.csv, the training
    // checkpoint: after this the epoch is complete and a resume starts after it.
    void end_epoch(const EpochStats& es) {
        if (schedule_.end_epoch(es.val_loss))
            out_ << "val_loss has not improved for a while: learning rate reduced to " << std::setprecision(3)
                 << schedule_.lr(base_lr_, es.epoch, 0, o_.epochs) << "\n";
        out_ << std::defaultfloat << std::flush;
        st_.history.push_back(es);
        st_.epoch = es.epoch;
        // Sharded updates leave each rank's optimizer state current on its shard only:
        // every rank takes part in gathering it before rank 0 saves it.
        dp_->gather_optimizer_state(opt_);
        if (!root_) return;
        if (!o_.history_csv.empty()) write_file_atomic(o_.history_csv, history_csv(st_.history));
        if (!o_.last_checkpoint.empty())
            save_training_checkpoint(o_.last_checkpoint, model_, opt_, st_, schedule_, o_.metadata);
    }

    bool early_stop() {
        if (!(o_.early_stopping > 0 && st_.since_best >= o_.early_stopping)) return false;
        out_ << "Early stopping: val_loss has not improved for " << st_.since_best << " epochs (best "
             << std::setprecision(5) << st_.best << ")\n"
             << std::defaultfloat;
        return true;
    }

private:
    void shuffle() {
        for (size_t i = order_.size(); i > 1; --i) std::swap(order_[i - 1], order_[shuffle_rng_.below(i)]);
    }

    Sequential<T>& model_;
    Optimizer<T>& opt_;
    const LabelledView &train_, &val_;
    const FitOptions& o_;
    TrainState& st_;
    const bool root_;  // rank 0 (or alone): prints and writes files
    NullStream null_;
    std::ostream& out_;
    const bool tty_;
    Rng shuffle_rng_;
    std::vector<Eigen::Index> order_;
    const double base_lr_;
    LrSchedule schedule_;
    const std::unique_ptr<DataParallel<T>> dp_;  // the step: replicas x ranks (1 x 1 included)
    const Eigen::Index steps_;
    Tensor<T> x_;                    // (B, C, H, W) the global batch
    std::vector<std::uint8_t> y_;    // (B)
    AugmentBuffers<T> aug_buf_;
};
}  // namespace detail

// Trains on `train`, validates on `val` after every epoch. Returns the history
// (all of it, including the epochs before a resume). `resume`, when given, is the
// state loaded from a training checkpoint; fit() continues after its epoch and
// updates it as it goes.
template <class T>
std::vector<EpochStats> fit(Sequential<T>& model, Optimizer<T>& opt, const LabelledView& train,
                            const LabelledView& val, const FitOptions& o, TrainState* resume = nullptr) {
    if (o.epochs < 1) throw std::invalid_argument("fit: epochs must be >= 1");
    if (o.batch < 1) throw std::invalid_argument("fit: batch must be >= 1");
    if (o.early_stopping < 0) throw std::invalid_argument("fit: early_stopping must be >= 0");
    if (train.size() < 1) throw std::invalid_argument("fit: no training samples");
    train.validate("fit (training data)");
    val.validate("fit (validation data)");
    o.augment.validate();
    TrainState local;
    TrainState& st = resume ? *resume : local;
    detail::FitRun<T> run(model, opt, train, val, o, st);
    if (st.epoch >= o.epochs)
        run.out() << "Already trained for " << st.epoch << " epochs (--epochs " << o.epochs << "): nothing to do\n";
    for (int epoch = st.epoch + 1; epoch <= o.epochs; ++epoch) {
        EpochStats es = run.train_epoch(epoch);
        run.validate(es);
        run.print_epoch(es);
        run.keep_best(es);
        run.end_epoch(es);
        if (run.early_stop()) break;
        if (o.on_epoch_end && !o.on_epoch_end(es)) break;
    }
    return st.history;
}

}  // namespace kitnn
