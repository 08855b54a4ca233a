// mnist_apply — classify PNG images with a trained model.
//
//   mnist_apply --model runs/keck/best.kitnn example_input_*.png
//
// Prints one line per image: file, predicted digit, its probability. Images must
// be greyscale 28x28 like MNIST (white digit on black); RGB(A) is converted to
// grey; another size is refused unless --resize is given. A file that cannot be
// read is reported and the others are still classified; the exit code is then 1.
#include "cli.hpp"

#include <kitnn/io/image.hpp>
#include <kitnn/kitnn.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>

using namespace kitnn;

namespace {

// Area-weighted resampling to (oh, ow): each output pixel averages the input
// area it covers, which keeps thin strokes when shrinking a large drawing.
std::vector<float> resize_area(const io::GreyImage& im, int oh, int ow) {
    std::vector<float> out(size_t(oh) * size_t(ow), 0.f);
    const double sy = double(im.height) / oh, sx = double(im.width) / ow;
    for (int y = 0; y < oh; ++y)
        for (int x = 0; x < ow; ++x) {
            const double y0 = y * sy, y1 = (y + 1) * sy, x0 = x * sx, x1 = (x + 1) * sx;
            double acc = 0, area = 0;
            for (int iy = int(y0); iy < std::min(int(std::ceil(y1)), im.height); ++iy) {
                const double wy = std::min(y1, iy + 1.0) - std::max(y0, double(iy));
                for (int ix = int(x0); ix < std::min(int(std::ceil(x1)), im.width); ++ix) {
                    const double wx = std::min(x1, ix + 1.0) - std::max(x0, double(ix));
                    acc += wy * wx * im.pixels[size_t(iy) * size_t(im.width) + size_t(ix)];
                    area += wy * wx;
                }
            }
            out[size_t(y) * size_t(ow) + size_t(x)] = area > 0 ? float(acc / area) : 0.f;
        }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Classify 28x28 greyscale PNG digits (white on black) with a kitnn model."};
    std::string model_path;
    std::vector<std::string> images;
    bool resize = false;
    int top = 1;
    app.add_option("--model", model_path, "model file written by mnist_train (best.kitnn)")->required();
    app.add_flag("--resize", resize, "scale images of another size to the model's input size");
    app.add_option("--top", top, "also print the K most likely classes")->check(CLI::Range(1, 10));
    app.add_option("images", images, "PNG files to classify")->required();
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    return kitnn_examples::guarded("mnist_apply", [&] {
        Sequential<float> model = load_model<float>(model_path);
        const Shape in = model.input_shape();
        if (!in.is_image() || in.c() != 1)
            throw std::runtime_error(model_path + ": the model takes input " + in.str() +
                                     ", not a greyscale image (1,H,W)");
        const int H = int(in.h()), W = int(in.w());
        int failures = 0;
        Tensor<float> x(1, 1, H, W);
        for (const auto& path : images) {
            try {
                const io::GreyImage im = io::load_grey(path);
                if (im.width != W || im.height != H) {
                    if (!resize)
                        throw std::runtime_error(path + ": image is " + std::to_string(im.width) +
                                                 "x" + std::to_string(im.height) + ", the model needs " +
                                                 std::to_string(W) + "x" + std::to_string(H) +
                                                 " (use --resize to scale it)");
                    const auto px = resize_area(im, H, W);
                    std::copy(px.begin(), px.end(), x.data());
                } else {
                    std::copy(im.pixels.begin(), im.pixels.end(), x.data());
                }
                const Tensor<float> p = model.predict(x);
                const Eigen::Index K = p.size();
                std::vector<int> order(static_cast<size_t>(K));
                for (int k = 0; k < int(K); ++k) order[size_t(k)] = k;
                std::stable_sort(order.begin(), order.end(),
                                 [&](int a, int b) { return p.data()[a] > p.data()[b]; });
                std::cout << path << ": " << order[0] << " (probability " << std::fixed
                          << std::setprecision(4) << p.data()[order[0]] << ")";
                for (int k = 1; k < std::min<int>(top, int(K)); ++k)
                    std::cout << (k == 1 ? "  next: " : ", ") << order[size_t(k)] << " ("
                              << p.data()[order[size_t(k)]] << ")";
                std::cout << std::defaultfloat << "\n";
            } catch (const std::exception& e) {
                ++failures;
                std::cerr << "mnist_apply: " << e.what() << "\n";
            }
        }
        if (failures)
            std::cerr << "mnist_apply: " << failures << " of " << images.size()
                      << " images could not be classified\n";
        return failures ? 1 : 0;
    });
}
