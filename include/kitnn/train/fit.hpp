// kitnn/train/fit.hpp — Keras-style training: fit() with validation split,
// progress bar, checkpoint-best, history; evaluate() for loss and accuracy.
//
// One training step (train_step) is the whole story of backprop in five lines:
//   logits = model.forward(x, training)        (N, K)
//   loss   = softmax_ce.forward(logits, y)     mean over the batch
//   dlogits = (p - onehot) / N                 softmax_ce.backward
//   model.zero_grad(); model.backward(dlogits) parameter gradients
//   optimizer.step(params)                     Adam / SGD update
// Every buffer involved is sized on the first batch and reused afterwards.
//
// Around it, fit() adds what a long run needs: a learning-rate schedule applied
// per batch (train/schedule.hpp), augmentation of training batches only
// (data/augment.hpp), early stopping on val_loss, a guard that stops on a
// non-finite loss or gradient BEFORE the weights are touched (the last good
// checkpoint stays), and a training checkpoint after every epoch from which
// fit() resumes exactly (train/checkpoint.hpp).
#pragma once

#include "kitnn/core/rng.hpp"
#include "kitnn/data/augment.hpp"
#include "kitnn/train/data_parallel.hpp"
#include "kitnn/train/schedule.hpp"
#include "kitnn/io/model_file.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/optim/optimizer.hpp"

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

struct EpochStats {
    int epoch = 0;
    double loss = 0, acc = 0, val_loss = 0, val_acc = 0, seconds = 0, images_per_s = 0;
    double lr = 0;  // learning rate at the end of the epoch
    bool improved = false;
};

struct FitOptions {
    int epochs = 10;                      // total, counting epochs done before a resume
    Eigen::Index batch = 100;
    std::uint64_t seed = 1;               // shuffling and augmentation; the model has its own
    std::string checkpoint;               // save-best-only by val_loss when set
    std::string last_checkpoint;          // training checkpoint after every epoch (resume)
    std::string history_csv;              // epoch,loss,acc,val_loss,val_acc,seconds,lr
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
    std::function<bool(const EpochStats&)> on_epoch_end;
};

// Where a run stands after a whole epoch: what a training checkpoint stores
// besides the weights and the optimizer (train/checkpoint.hpp).
struct TrainState {
    int epoch = 0;                                    // epochs completed
    double best = std::numeric_limits<double>::infinity();  // best val_loss so far
    int since_best = 0;                               // epochs since it improved
    std::vector<EpochStats> history;
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

// Mean loss and accuracy in eval mode (no dropout), in batches.
template <class T>
EvalResult evaluate(Sequential<T>& model, const LabelledView& data, Eigen::Index batch = 500) {
    data.validate("evaluate");
    SoftmaxCrossEntropy<T> ce;
    Tensor<T> x;
    std::vector<std::uint8_t> y;
    std::vector<Eigen::Index> idx(size_t(data.size()));
    std::iota(idx.begin(), idx.end(), data.begin);
    EvalResult r;
    double loss_sum = 0;
    for (Eigen::Index s = 0; s < data.size(); s += batch) {
        const Eigen::Index B = std::min(batch, data.size() - s);
        gather_batch(data, idx, size_t(s), B, x, y);
        loss_sum += ce.forward(model.forward(x, false), y.data()) * double(B);
        r.correct += ce.correct();
    }
    r.count = data.size();
    r.loss = r.count ? loss_sum / double(r.count) : 0;
    r.accuracy = r.count ? double(r.correct) / double(r.count) : 0;
    return r;
}

// The training step: returns the batch's mean loss; `correct` gets its hits.
// Throws NonFiniteError, leaving the weights as they were, when the loss or a
// gradient is not finite (an exploding rate, or NaN in the data).
template <class T>
double train_step(Sequential<T>& model, Optimizer<T>& opt, SoftmaxCrossEntropy<T>& ce,
                  const Tensor<T>& x, const std::vector<std::uint8_t>& y, Tensor<T>& dlogits,
                  std::int64_t* correct = nullptr) {
    const double loss = ce.forward(model.forward(x, true), y.data());
    if (correct) *correct = ce.correct();
    if (!std::isfinite(loss)) throw NonFiniteError("the loss is " + std::to_string(loss));
    ce.backward(dlogits);
    model.zero_grad();
    model.backward(dlogits);
    if (const std::string bad = nonfinite_gradient(model); !bad.empty())
        throw NonFiniteError(bad + " is not finite (the loss was " + std::to_string(loss) + ")");
    opt.step(model.params());
    return loss;
}

// The generator of the augmentation of one batch: a function of (seed, epoch,
// step) only, so a resumed run draws the same transformations.
inline Rng batch_rng(std::uint64_t seed, int epoch, Eigen::Index step) {
    return Rng(seed * 0x9e3779b97f4a7c15ULL ^ (std::uint64_t(epoch) << 40) ^ std::uint64_t(step));
}

template <class T>
void save_training_checkpoint(const std::string& path, Sequential<T>& model, const Optimizer<T>& opt,
                              const TrainState& st, const FitOptions& o);

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

// Trains on `train`, validates on `val` after every epoch. Returns the history
// (all of it, including the epochs before a resume). `resume`, when given, is the
// state loaded from a training checkpoint; fit() continues after its epoch and
// updates it as it goes.
template <class T>
std::vector<EpochStats> fit(Sequential<T>& model, Optimizer<T>& opt, const LabelledView& train,
                            const LabelledView& val, const FitOptions& o,
                            TrainState* resume = nullptr) {
    using clock = std::chrono::steady_clock;
    if (o.epochs < 1) throw std::invalid_argument("fit: epochs must be >= 1");
    if (o.batch < 1) throw std::invalid_argument("fit: batch must be >= 1");
    if (o.early_stopping < 0) throw std::invalid_argument("fit: early_stopping must be >= 0");
    if (train.size() < 1) throw std::invalid_argument("fit: no training samples");
    train.validate("fit (training data)");
    val.validate("fit (validation data)");
    o.augment.validate();
    std::ostream& out = *o.out;
    const bool tty = o.progress == 1 || (o.progress == -1 && ::isatty(STDOUT_FILENO) &&
                                         o.out == &std::cout);
    TrainState local;
    TrainState& st = resume ? *resume : local;
    // Every epoch shuffles the previous epoch's order again (Fisher–Yates with our
    // own generator: the same seed, the same order everywhere). A resumed run
    // replays the shuffles of the epochs already done: a few ms, and the order and
    // the generator are then exactly where the interrupted run had them.
    Rng shuffle_rng(o.seed ^ 0x5eed5eed5eedULL);
    std::vector<Eigen::Index> order(size_t(train.size()));
    std::iota(order.begin(), order.end(), train.begin);
    auto shuffle = [&] {
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle_rng.below(i)]);
    };
    for (int e = 0; e < st.epoch; ++e) shuffle();
    const double base_lr = o.base_lr > 0 ? o.base_lr : opt.learning_rate();
    LrSchedule schedule = o.schedule;  // restored from the checkpoint by the caller

    SoftmaxCrossEntropy<T> ce;
    Tensor<T> x, dlogits;
    std::vector<std::uint8_t> y;
    AugmentBuffers<T> aug_buf;
    const std::unique_ptr<DataParallel<T>> dp = make_data_parallel(model, o.replicas);
    const Eigen::Index steps = (train.size() + o.batch - 1) / o.batch;
    if (st.epoch >= o.epochs)
        out << "Already trained for " << st.epoch << " epochs (--epochs " << o.epochs
            << "): nothing to do\n";

    for (int epoch = st.epoch + 1; epoch <= o.epochs; ++epoch) {
        shuffle();
        out << "Epoch " << epoch << "/" << o.epochs << "\n" << std::flush;
        const auto t0 = clock::now();
        auto last_draw = t0;
        double loss_sum = 0, lr = base_lr;
        std::int64_t correct = 0, seen = 0;
        for (Eigen::Index s = 0; s < steps; ++s) {
            const Eigen::Index B = std::min(o.batch, train.size() - s * o.batch);
            lr = schedule.lr(base_lr, epoch - 1, double(s) / double(steps), o.epochs);
            opt.set_learning_rate(lr);
            gather_batch(train, order, size_t(s * o.batch), B, x, y);
            if (o.augment.enabled()) {
                Rng r = batch_rng(o.seed, epoch, s);
                augment_batch(x, o.augment, r, aug_buf);
            }
            std::int64_t c = 0;
            double loss = 0;
            try {
                loss = dp ? dp->step(opt, x, y, &c) : train_step(model, opt, ce, x, y, dlogits, &c);
            } catch (const NonFiniteError& e) {
                if (tty) out << "\n";
                throw NonFiniteError(
                    "training diverged in epoch " + std::to_string(epoch) + ", batch " +
                    std::to_string(s + 1) + " (learning rate " + std::to_string(lr) + "): " + e.what() +
                    "; the weights were not updated" +
                    (o.checkpoint.empty() ? std::string()
                                          : ", and the last good checkpoint " + o.checkpoint + " is kept"));
            }
            loss_sum += loss * double(B);
            correct += c;
            seen += B;
            const auto now = clock::now();
            if (tty && (std::chrono::duration<double>(now - last_draw).count() > 0.1 || s + 1 == steps)) {
                last_draw = now;
                const double el = std::chrono::duration<double>(now - t0).count();
                const double rate = double(seen) / std::max(el, 1e-9);
                out << "\r" << std::setw(6) << seen << "/" << train.size() << " "
                    << detail::bar(seen, train.size()) << " - ETA: "
                    << detail::fmt_seconds(double(train.size() - seen) / rate) << " - loss: "
                    << std::fixed << std::setprecision(4) << loss_sum / double(seen)
                    << " - acc: " << double(correct) / double(seen) << " - " << std::setprecision(0)
                    << rate << " img/s   " << std::defaultfloat << std::flush;
            }
        }
        EpochStats es;
        es.epoch = epoch;
        es.lr = lr;
        es.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        es.images_per_s = double(seen) / std::max(es.seconds, 1e-9);
        es.loss = loss_sum / double(seen);
        es.acc = double(correct) / double(seen);
        if (val.size() > 0) {
            const auto v = evaluate(model, val);
            es.val_loss = v.loss;
            es.val_acc = v.accuracy;
        } else {
            es.val_loss = es.loss;  // no validation set: judge by training loss
            es.val_acc = es.acc;
        }
        if (tty) out << "\r";
        out << std::setw(6) << seen << "/" << train.size() << " " << detail::bar(1, 1) << " - "
            << std::fixed << std::setprecision(2) << es.seconds << "s - loss: "
            << std::setprecision(4) << es.loss << " - acc: " << es.acc
            << " - val_loss: " << es.val_loss << " - val_acc: " << es.val_acc << " - "
            << std::setprecision(0) << es.images_per_s << " img/s" << std::defaultfloat;
        if (schedule.kind() != LrSchedule::Kind::constant) out << " - lr: " << std::setprecision(3) << lr;
        out << "          \n";
        if (es.val_loss < st.best) {
            es.improved = true;
            if (!o.checkpoint.empty()) {
                out << "val_loss improved from " << std::setprecision(5) << st.best << " to "
                    << es.val_loss << ", saving model to " << o.checkpoint << "\n";
                save_model(o.checkpoint, model, o.metadata);
            }
            st.best = es.val_loss;
            st.since_best = 0;
        } else {
            ++st.since_best;
            if (!o.checkpoint.empty())
                out << "val_loss did not improve from " << std::setprecision(5) << st.best << "\n";
        }
        if (schedule.end_epoch(es.val_loss))
            out << "val_loss has not improved for a while: learning rate reduced to "
                << std::setprecision(3) << schedule.lr(base_lr, epoch, 0, o.epochs) << "\n";
        out << std::defaultfloat << std::flush;
        st.history.push_back(es);
        st.epoch = epoch;
        if (!o.history_csv.empty()) {
            std::ostringstream csv;
            csv << "epoch,loss,acc,val_loss,val_acc,seconds,lr\n" << std::setprecision(6);
            for (auto& h : st.history)
                csv << h.epoch << "," << h.loss << "," << h.acc << "," << h.val_loss << ","
                    << h.val_acc << "," << h.seconds << "," << h.lr << "\n";
            write_file_atomic(o.history_csv, csv.str());
        }
        const bool stop = o.early_stopping > 0 && st.since_best >= o.early_stopping;
        if (!o.last_checkpoint.empty()) {
            FitOptions with_schedule = o;
            with_schedule.schedule = schedule;
            save_training_checkpoint(o.last_checkpoint, model, opt, st, with_schedule);
        }
        if (stop) {
            out << "Early stopping: val_loss has not improved for " << st.since_best
                << " epochs (best " << std::setprecision(5) << st.best << ")\n"
                << std::defaultfloat;
            break;
        }
        if (o.on_epoch_end && !o.on_epoch_end(es)) break;
    }
    return st.history;
}

}  // namespace kitnn

// save_training_checkpoint and load_training_checkpoint (--resume).
#include "kitnn/train/checkpoint.hpp"
