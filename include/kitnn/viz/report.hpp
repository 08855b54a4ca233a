// kitnn/viz/report.hpp — the pictures of a training run (mnist_train --report DIR):
//
//   curves.png         loss and accuracy per epoch, training and validation
//   confusion.png      the confusion matrix on the test set, a heat map with the counts
//   worst_errors.png   the test images the model got wrong most confidently
//   conv1_filters.png  the weights of the first Conv2D layer (what it looks for)
//
// Everything is drawn with viz/plot.hpp. The model is applied once to the test set
// (eval mode, no dropout): for each image the predicted class (argmax of the
// probabilities) and its probability p. A confusion matrix counts (true class, predicted
// class) pairs: rows are what the image is, columns what the model said; the diagonal
// is right. The "worst" errors are the wrong predictions with the highest p: the model
// was sure and wrong, often a mislabelled or ambiguous image.
//
// Note on curves.png: the training loss/accuracy of an epoch is the running mean over
// its batches with dropout ON (and on augmented images, if fit() augments) while the
// weights were still changing; the validation numbers are measured after the epoch
// without dropout. With strong dropout (keck: 0.5 on 16 units) the training curve
// therefore lies BELOW the validation curve; the legend says "dropout on" for such models.
#pragma once

#include "kitnn/layers/conv2d.hpp"
#include "kitnn/model/sequential.hpp"
#include "kitnn/train/fit.hpp"
#include "kitnn/viz/plot.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

namespace kitnn::viz {

// The model's verdict on every sample of a labelled set.
struct Predictions {
    std::vector<int> predicted;      // argmax class per sample
    std::vector<float> probability;  // its probability
    int classes = 0;                 // K, the model's number of outputs
};

// Applies `model` (eval mode) to every sample of `data`, in batches.
template <class T>
Predictions predict_all(Sequential<T>& model, const LabelledView& data, Eigen::Index batch = 500) {
    data.validate("predict_all");
    Predictions out;
    out.classes = int(model.output_shape().size());
    const auto& im = *data.images;
    const Eigen::Index per = im.size() / std::max<Eigen::Index>(1, im.dimension(0));  // values per image
    Tensor<T> x;  // (b, C, H, W)
    for (Eigen::Index s = data.begin; s < data.end; s += batch) {
        const Eigen::Index b = std::min(batch, data.end - s);
        if (x.dimension(0) != b) x.resize(b, im.dimension(1), im.dimension(2), im.dimension(3));
        std::copy(im.data() + s * per, im.data() + (s + b) * per, x.data());  // float -> T
        const Tensor<T> p = model.predict(x);  // (b, K, 1, 1)
        for (Eigen::Index i = 0; i < b; ++i) {
            const T* row = p.data() + i * out.classes;
            const int k = int(std::max_element(row, row + out.classes) - row);
            out.predicted.push_back(k);
            out.probability.push_back(float(row[k]));
        }
    }
    return out;
}

// counts[true][predicted] over the samples of `data`. Throws for a label >= K.
inline std::vector<std::vector<std::int64_t>> confusion_matrix(const LabelledView& data, const Predictions& p) {
    const int K = p.classes;
    std::vector<std::vector<std::int64_t>> m(size_t(K), std::vector<std::int64_t>(size_t(K), 0));
    for (Eigen::Index i = 0; i < data.size(); ++i) {
        const int t = (*data.labels)[size_t(data.begin + i)];
        if (t >= K)
            throw std::invalid_argument("confusion_matrix: label " + std::to_string(t) + " of sample " +
                                        std::to_string(data.begin + i) + " but the model has " +
                                        std::to_string(K) + " classes");
        ++m[size_t(t)][size_t(p.predicted[size_t(i)])];
    }
    return m;
}

// Indices (into `data`, from 0) of the wrong predictions, most confident first, at most n.
inline std::vector<Eigen::Index> worst_errors(const LabelledView& data, const Predictions& p, int n) {
    std::vector<Eigen::Index> wrong;
    for (Eigen::Index i = 0; i < data.size(); ++i)
        if (p.predicted[size_t(i)] != (*data.labels)[size_t(data.begin + i)]) wrong.push_back(i);
    std::stable_sort(wrong.begin(), wrong.end(), [&](Eigen::Index a, Eigen::Index b) {
        return p.probability[size_t(a)] > p.probability[size_t(b)];
    });
    if (int(wrong.size()) > n) wrong.resize(size_t(std::max(0, n)));
    return wrong;
}

namespace detail {
inline std::string fixed(double v, int decimals) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}
}  // namespace detail

// curves.png: two charts side by side, loss and accuracy over the epochs. `dropout`:
// the model has Dropout, which the training curve's label then says (see the top).
inline Canvas draw_curves(const std::vector<EpochStats>& history, bool dropout = false) {
    Series loss{dropout ? "training (dropout on)" : "training", {}, {}, kBlue, false};
    Series val_loss{"validation", {}, {}, kOrange, true};
    Series acc = loss, val_acc = val_loss;
    for (const auto& h : history) {
        for (Series* s : {&loss, &val_loss, &acc, &val_acc}) s->x.push_back(h.epoch);
        loss.y.push_back(h.loss), val_loss.y.push_back(h.val_loss);
        acc.y.push_back(h.acc), val_acc.y.push_back(h.val_acc);
    }
    const int W = 620, H = 460;
    Canvas c(2 * W, H);
    line_chart(c, 0, 10, W, H - 20, {loss, val_loss}, {"Loss per epoch", "epoch", "cross-entropy loss", 1});
    line_chart(c, W, 10, W, H - 20, {acc, val_acc}, {"Accuracy per epoch", "epoch", "accuracy", 1});
    return c;
}

// confusion.png. `frame` (optional) receives where the cells are.
inline Canvas draw_confusion(const std::vector<std::vector<std::int64_t>>& counts,
                             const std::vector<std::string>& class_names, HeatMapFrame* frame = nullptr) {
    std::int64_t total = 0, right = 0;
    for (size_t t = 0; t < counts.size(); ++t)
        for (size_t k = 0; k < counts[t].size(); ++k) total += counts[t][k], right += t == k ? counts[t][k] : 0;
    const HeatMapLayout L = heat_map_layout(class_names, class_names);
    const int th = text_height(2), pad = 16;
    const int title_h = 2 * th + 30;       // two title lines
    const int xlabel_h = th + 12;          // "predicted class" above the columns
    const int ylabel_w = th + 12;          // "true class", vertical, on the left
    Canvas c(pad + ylabel_w + L.width + pad, title_h + xlabel_h + L.height + pad);
    const std::string acc = total ? detail::fixed(100.0 * double(right) / double(total), 2) + " %" : "-";
    c.text_centred(c.width() / 2, 8, "Confusion matrix on the test set", kBlack, 2);
    c.text_centred(c.width() / 2, 8 + th + 6,
                   std::to_string(total) + " images, accuracy " + acc + " (the diagonal)", kGrey, 2);
    const int x0 = pad + ylabel_w, y0 = title_h + xlabel_h;
    const HeatMapFrame f = heat_map(c, x0, y0, counts, class_names, class_names, L);
    c.text_centred(f.left + f.cols * f.cell / 2, title_h, "predicted class", kBlack, 2);
    const std::string yl = "true class";
    c.text(pad, f.top + f.rows * f.cell / 2 - text_width(yl, 2) / 2, yl, kBlack, 2, true);
    if (frame) *frame = f;
    return c;
}

// worst_errors.png: up to `indices.size()` images in a grid, each with its true class
// (black) and the prediction with its probability (red).
inline Canvas draw_worst_errors(const LabelledView& data, const Predictions& p,
                                const std::vector<Eigen::Index>& indices,
                                const std::vector<std::string>& class_names, int columns = 6) {
    const auto& im = *data.images;
    const int ih = int(im.dimension(2)), iw = int(im.dimension(3));
    const int zoom = std::max(1, 112 / std::max(ih, iw));  // 28x28 -> 112x112
    int name_w = text_width("0.00", 2);
    for (const auto& s : class_names) name_w = std::max(name_w, text_width(s + " 0.00", 2));
    const int th = text_height(2);
    const int cell_w = std::max(iw * zoom, name_w) + 20, cell_h = ih * zoom + 2 * th + 26;
    const int n = int(indices.size()), cols = std::max(1, std::min(columns, n));
    const int rows = std::max(1, (n + cols - 1) / cols);
    const int head = 2 * th + 26;
    const std::string l1 = "true class", l2 = "   ", l3 = "predicted class and its probability";
    Canvas c(std::max(cols * cell_w + 20, text_width(l1 + l2 + l3, 2) + 20), head + rows * cell_h + 10);
    c.text_centred(c.width() / 2, 8, "Most confident mistakes on the test set", kBlack, 2);
    const int lx = c.width() / 2 - text_width(l1 + l2 + l3, 2) / 2;  // the legend, in the captions' colours
    c.text(lx, 8 + th + 8, l1, kBlack, 2);
    c.text(lx + text_width(l1 + l2, 2) + kAdvance * 2, 8 + th + 8, l3, kRed, 2);
    if (n == 0) c.text_centred(c.width() / 2, head + 20, "(no mistakes)", kGrey, 2);
    const Eigen::Index per = Eigen::Index(ih) * iw * im.dimension(1);
    for (int k = 0; k < n; ++k) {
        const Eigen::Index i = indices[size_t(k)];
        const int cx = 10 + (k % cols) * cell_w, cy = head + (k / cols) * cell_h;
        const int ix = cx + (cell_w - iw * zoom) / 2;
        c.grey_image(ix, cy, im.data() + (data.begin + i) * per, iw, ih, zoom);  // channel 0
        c.rect(ix - 1, cy - 1, iw * zoom + 2, ih * zoom + 2, kGrey);
        const int t = (*data.labels)[size_t(data.begin + i)], q = p.predicted[size_t(i)];
        auto name = [&](int k2) { return k2 < int(class_names.size()) ? class_names[size_t(k2)] : std::to_string(k2); };
        c.text_centred(cx + cell_w / 2, cy + ih * zoom + 6, name(t), kBlack, 2);
        c.text_centred(cx + cell_w / 2, cy + ih * zoom + 10 + th,
                       name(q) + " " + detail::fixed(p.probability[size_t(i)], 2), kRed, 2);
    }
    return c;
}

// conv1_filters.png: each filter of the first Conv2D layer as a block of coloured
// cells (blue negative, white zero, red positive, one scale for all filters), with the
// weights printed when the kernel is small, and the filter's bias underneath.
// Throws std::invalid_argument when the model has no Conv2D layer.
template <class T>
Canvas draw_conv_filters(Sequential<T>& model) {
    Conv2D<T>* conv = nullptr;
    for (size_t i = 0; i < model.size() && !conv; ++i) conv = dynamic_cast<Conv2D<T>*>(&model.layer(i));
    if (!conv) throw std::invalid_argument("draw_conv_filters: the model has no Conv2D layer");
    const Tensor<T>& k = conv->kernel().value;  // (F, C, KH, KW)
    const Tensor<T>& b = conv->bias().value;    // (F, 1, 1, 1)
    const int F = int(k.dimension(0)), C = int(k.dimension(1)), KH = int(k.dimension(2)), KW = int(k.dimension(3));
    double vmax = 0;
    for (Eigen::Index i = 0; i < k.size(); ++i) vmax = std::max(vmax, std::fabs(double(k.data()[i])));
    if (vmax == 0) vmax = 1;

    const int cs = std::clamp(160 / std::max(KH, KW), 6, 80);  // pixels per weight
    const int vscale = text_width("-0.00", 2) + 6 <= cs ? 2 : text_width("-0.00", 1) + 4 <= cs ? 1 : 0;
    const int th = text_height(2);
    const int tile_w = std::max(C * KW * cs + (C - 1) * 6, text_width("b=-0.000", 2)) + 24;
    const int tile_h = KH * cs + 2 * th + 36;
    const int cols = std::min(F, 8), rows = (F + cols - 1) / cols;
    const int head = 2 * th + 28, bar_w = 24 + 12 + text_width("-0.000", 2) + 16;
    const std::string title = "First Conv2D layer: " + std::to_string(F) + " filters of " + std::to_string(KH) + "x" +
                              std::to_string(KW) + (C > 1 ? " x " + std::to_string(C) + " channels" : "");
    Canvas c(std::max(cols * tile_w + bar_w + 20, text_width(title, 2) + 20), head + rows * tile_h + 10);
    c.text_centred(c.width() / 2, 8, title, kBlack, 2);
    c.text_centred(c.width() / 2, 8 + th + 8, "weights: blue < 0 < red", kGrey, 2);
    for (int f = 0; f < F; ++f) {
        const int tx = 10 + (f % cols) * tile_w, ty = head + (f / cols) * tile_h;
        const int bw = C * KW * cs + (C - 1) * 6, x0 = tx + (tile_w - bw) / 2;
        c.text_centred(tx + tile_w / 2, ty, "filter " + std::to_string(f + 1), kBlack, 2);
        for (int ch = 0; ch < C; ++ch) {
            const int bx = x0 + ch * (KW * cs + 6), by = ty + th + 8;
            for (int i = 0; i < KH; ++i)
                for (int j = 0; j < KW; ++j) {
                    const double v = double(k(f, ch, i, j));
                    const Rgb col = diverging_colour(v / vmax);
                    c.fill_rect(bx + j * cs, by + i * cs, cs, cs, col);
                    if (vscale)
                        c.text_centred(bx + j * cs + cs / 2, by + i * cs + (cs - text_height(vscale)) / 2 + vscale,
                                       detail::fixed(v, 2), text_colour_on(col), vscale);
                }
            c.rect(bx - 1, by - 1, KW * cs + 2, KH * cs + 2, kGrey);
        }
        c.text_centred(tx + tile_w / 2, ty + th + 8 + KH * cs + 8,
                       conv->use_bias() ? "b=" + detail::fixed(double(b(f, 0, 0, 0)), 3) : "no bias", kGrey, 2);
    }
    const int bx = 10 + cols * tile_w + 8, by = head + th + 8, bh = std::max(120, rows * tile_h - th - 40);
    colour_bar(c, bx, by, 24, bh, [](double t) { return diverging_colour(2 * t - 1); },
               {{0.0, detail::fixed(-vmax, 3)}, {0.5, "0"}, {1.0, detail::fixed(vmax, 3)}}, 2);
    return c;
}

// Writes the four pictures into `dir` (created if missing) and returns their paths.
// conv1_filters.png is left out (and not returned) when the model has no Conv2D layer.
// class_names: one per model output (e.g. "0".."9", or data::class_names("fashion")).
template <class T>
std::vector<std::string> write_report(const std::string& dir, const std::vector<EpochStats>& history,
                                      Sequential<T>& model, const LabelledView& test,
                                      const std::vector<std::string>& class_names, int worst = 24) {
    const Predictions p = predict_all(model, test);
    if (int(class_names.size()) != p.classes)
        throw std::invalid_argument("write_report: " + std::to_string(class_names.size()) +
                                    " class names for a model with " + std::to_string(p.classes) + " outputs");
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) throw std::runtime_error(dir + ": cannot create the report folder: " + ec.message());
    auto path = [&](const char* name) { return (std::filesystem::path(dir) / name).string(); };
    std::vector<std::string> written;
    auto save = [&](const Canvas& c, const char* name) {
        c.save_png(path(name));
        written.push_back(path(name));
    };
    bool dropout = false;
    for (size_t i = 0; i < model.size(); ++i) dropout |= model.layer(i).type() == "Dropout";
    save(draw_curves(history, dropout), "curves.png");
    save(draw_confusion(confusion_matrix(test, p), class_names), "confusion.png");
    save(draw_worst_errors(test, p, worst_errors(test, p, worst), class_names), "worst_errors.png");
    bool has_conv = false;
    for (size_t i = 0; i < model.size(); ++i) has_conv |= dynamic_cast<Conv2D<T>*>(&model.layer(i)) != nullptr;
    if (has_conv) save(draw_conv_filters(model), "conv1_filters.png");
    return written;
}

}  // namespace kitnn::viz
