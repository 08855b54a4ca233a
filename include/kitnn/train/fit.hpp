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
#pragma once

#include "kitnn/core/rng.hpp"
#include "kitnn/io/model_file.hpp"
#include "kitnn/loss/softmax_cross_entropy.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/optim/optimizer.hpp"

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
    bool improved = false;
};

struct FitOptions {
    int epochs = 10;
    Eigen::Index batch = 100;
    std::uint64_t seed = 1;               // shuffling; the model has its own seed
    std::string checkpoint;               // save-best-only by val_loss when set
    std::string history_csv;              // epoch,loss,acc,val_loss,val_acc,seconds
    Metadata metadata;                    // stored in the checkpoint
    int progress = -1;                    // 1 bar, 0 one line per epoch, -1 bar if stdout is a tty
    std::ostream* out = &std::cout;
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
template <class T>
double train_step(Sequential<T>& model, Optimizer<T>& opt, SoftmaxCrossEntropy<T>& ce,
                  const Tensor<T>& x, const std::vector<std::uint8_t>& y, Tensor<T>& dlogits,
                  std::int64_t* correct = nullptr) {
    const double loss = ce.forward(model.forward(x, true), y.data());
    if (correct) *correct = ce.correct();
    ce.backward(dlogits);
    model.zero_grad();
    model.backward(dlogits);
    opt.step(model.params());
    return loss;
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

// Trains on `train`, validates on `val` after every epoch. Returns the history.
template <class T>
std::vector<EpochStats> fit(Sequential<T>& model, Optimizer<T>& opt, const LabelledView& train,
                            const LabelledView& val, const FitOptions& o) {
    using clock = std::chrono::steady_clock;
    if (o.epochs < 1) throw std::invalid_argument("fit: epochs must be >= 1");
    if (o.batch < 1) throw std::invalid_argument("fit: batch must be >= 1");
    if (train.size() < 1) throw std::invalid_argument("fit: no training samples");
    train.validate("fit (training data)");
    val.validate("fit (validation data)");
    std::ostream& out = *o.out;
    const bool tty = o.progress == 1 || (o.progress == -1 && ::isatty(STDOUT_FILENO) &&
                                         o.out == &std::cout);
    Rng shuffle_rng(o.seed ^ 0x5eed5eed5eedULL);
    std::vector<Eigen::Index> order(size_t(train.size()));
    std::iota(order.begin(), order.end(), train.begin);

    SoftmaxCrossEntropy<T> ce;
    Tensor<T> x, dlogits;
    std::vector<std::uint8_t> y;
    std::vector<EpochStats> history;
    double best = std::numeric_limits<double>::infinity();
    const Eigen::Index steps = (train.size() + o.batch - 1) / o.batch;

    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        // Fisher–Yates with our own generator: the same seed, the same order everywhere.
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[shuffle_rng.below(i)]);
        out << "Epoch " << epoch << "/" << o.epochs << "\n" << std::flush;
        const auto t0 = clock::now();
        auto last_draw = t0;
        double loss_sum = 0;
        std::int64_t correct = 0, seen = 0;
        for (Eigen::Index s = 0; s < steps; ++s) {
            const Eigen::Index B = std::min(o.batch, train.size() - s * o.batch);
            gather_batch(train, order, size_t(s * o.batch), B, x, y);
            std::int64_t c = 0;
            const double loss = train_step(model, opt, ce, x, y, dlogits, &c);
            if (!std::isfinite(loss))
                throw std::runtime_error("training diverged: loss is " + std::to_string(loss) +
                                         " in epoch " + std::to_string(epoch) + ", batch " +
                                         std::to_string(s + 1));
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
        EpochStats st;
        st.epoch = epoch;
        st.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        st.images_per_s = double(seen) / std::max(st.seconds, 1e-9);
        st.loss = loss_sum / double(seen);
        st.acc = double(correct) / double(seen);
        if (val.size() > 0) {
            const auto v = evaluate(model, val);
            st.val_loss = v.loss;
            st.val_acc = v.accuracy;
        } else {
            st.val_loss = st.loss;  // no validation set: judge by training loss
            st.val_acc = st.acc;
        }
        if (tty) out << "\r";
        out << std::setw(6) << seen << "/" << train.size() << " " << detail::bar(1, 1) << " - "
            << std::fixed << std::setprecision(2) << st.seconds << "s - loss: "
            << std::setprecision(4) << st.loss << " - acc: " << st.acc
            << " - val_loss: " << st.val_loss << " - val_acc: " << st.val_acc << " - "
            << std::setprecision(0) << st.images_per_s << " img/s" << std::defaultfloat
            << "          \n";
        if (st.val_loss < best) {
            st.improved = true;
            if (!o.checkpoint.empty()) {
                out << "val_loss improved from " << std::setprecision(5) << best << " to "
                    << st.val_loss << ", saving model to " << o.checkpoint << "\n";
                save_model(o.checkpoint, model, o.metadata);
            }
            best = st.val_loss;
        } else if (!o.checkpoint.empty()) {
            out << "val_loss did not improve from " << std::setprecision(5) << best << "\n";
        }
        out << std::defaultfloat << std::flush;
        history.push_back(st);
        if (!o.history_csv.empty()) {
            std::ostringstream csv;
            csv << "epoch,loss,acc,val_loss,val_acc,seconds\n" << std::setprecision(6);
            for (auto& h : history)
                csv << h.epoch << "," << h.loss << "," << h.acc << "," << h.val_loss << ","
                    << h.val_acc << "," << h.seconds << "\n";
            const std::string s = csv.str();
            write_file_atomic(o.history_csv, s);
        }
    }
    return history;
}

}  // namespace kitnn
