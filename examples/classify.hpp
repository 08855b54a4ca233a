// examples/classify.hpp — how the programs turn one image into a prediction, shared by
// mnist_apply and kitnn_serve so that both give exactly the same answer for the same
// image and model (tests/serve/ checks that the server's answers equal mnist_apply --json's).
//
//   ClassifySetup s = classify_setup(model, meta, "", path, /*raw=*/false);
//   GreyImage x = network_input(load_grey(file), s, /*raw=*/false, /*resize=*/false, file);
//   std::vector<int> order = rank_classes(model.predict(as_batch(x)));   // most likely first
#pragma once

#include <kitnn/data/datasets.hpp>
#include <kitnn/data/preprocess.hpp>
#include <kitnn/io/image.hpp>
#include <kitnn/kitnn.hpp>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn_examples {

// What a model file says about its inputs and outputs, and the preprocessing that fits it.
struct ClassifySetup {
    std::string dataset;             // "mnist" or "fashion": decides the class names and the box
    bool digits = true;              // dataset == "mnist": classes are the digits 0-9
    std::vector<std::string> names;  // one per output; beyond the data set's list, the number
    int H = 28, W = 28;              // the model's input (1, H, W)
    int K = 10;                      // outputs
    kitnn::data::PreprocessOptions popt;  // MNIST: 20 px box in a 28 px frame
};

// The class names: `dataset` if given, else the model's "dataset" metadata if it is one
// we know, else digits. Throws for a model that does not take one greyscale image, and
// without `raw` for one that takes a non-square image (preprocessing makes square ones).
inline ClassifySetup classify_setup(const kitnn::Sequential<float>& model, const kitnn::Metadata& meta,
                                    std::string dataset, const std::string& model_path, bool raw) {
    namespace data = kitnn::data;
    ClassifySetup s;
    const kitnn::Shape in = model.input_shape();
    s.K = int(model.output_shape().size());
    if (dataset.empty() && meta.count("dataset")) {
        const auto known = data::dataset_names();
        const std::string& d = meta.at("dataset");
        if (std::find(known.begin(), known.end(), d) != known.end()) dataset = d;
    }
    if (dataset.empty()) dataset = "mnist";
    s.dataset = dataset;
    s.digits = dataset == "mnist";
    s.names = data::class_names(dataset);
    for (int k = int(s.names.size()); k < s.K; ++k) s.names.push_back(std::to_string(k));
    if (!in.is_image() || in.c() != 1)
        throw std::runtime_error(model_path + ": the model takes input " + in.str() +
                                 ", not a greyscale image (1,H,W)");
    s.H = int(in.h()), s.W = int(in.w());
    if (!raw && s.H != s.W)
        throw std::runtime_error(model_path + ": preprocessing makes square images, the model takes " +
                                 std::to_string(s.W) + "x" + std::to_string(s.H) + " (use --raw --resize)");
    s.popt.frame = s.H;
    s.popt.box = std::max(1, int(std::lround(s.H * 20.0 / 28.0)));  // MNIST: 20 of 28
    if (dataset == "fashion") s.popt.box = s.H;  // Fashion-MNIST: the longer side fills the frame
    return s;
}

// The image the network sees: MNIST-style preprocessing (data/preprocess.hpp), or with
// `raw` the image as it is — refused unless it has the model's size or `resize` is set,
// which scales the whole image (area averaging). `name` starts every error message.
inline kitnn::io::GreyImage network_input(kitnn::io::GreyImage im, const ClassifySetup& s, bool raw, bool resize,
                                          const std::string& name) {
    if (!raw) return kitnn::data::preprocess_digit(im, name, s.popt);
    if (im.width != s.W || im.height != s.H) {
        if (!resize)
            throw std::runtime_error(name + ": image is " + std::to_string(im.width) + "x" +
                                     std::to_string(im.height) + ", the model needs " + std::to_string(s.W) +
                                     "x" + std::to_string(s.H) +
                                     " (use --resize to scale it, or drop --raw to preprocess it like MNIST)");
        im = kitnn::data::resize_area(im, s.W, s.H);
    }
    return im;
}

// A one-image batch (1, 1, H, W) holding `im`.
inline kitnn::Tensor<float> as_batch(const kitnn::io::GreyImage& im) {
    kitnn::Tensor<float> x(1, 1, im.height, im.width);
    std::copy(im.pixels.begin(), im.pixels.end(), x.data());
    return x;
}

// The classes of one prediction (K probabilities), most likely first; ties keep the
// lower class first (stable sort), so every program ranks equal probabilities alike.
inline std::vector<int> rank_classes(const kitnn::Tensor<float>& p) {
    const int K = int(p.size());
    std::vector<int> order(static_cast<std::size_t>(K));
    for (int k = 0; k < K; ++k) order[std::size_t(k)] = k;
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p.data()[a] > p.data()[b]; });
    return order;
}

}  // namespace kitnn_examples
