// mnist_apply — classify images of digits with a trained model.
//
//   mnist_apply --model runs/keck/best.kitnn my_digit.png photo.jpg
//   mnist_apply --model best.kitnn --labels labels.csv FOLDER      (accuracy on a folder)
//
// Any size, greyscale, RGB or RGBA, dark ink on light paper or white on black: by default
// every image is preprocessed the way MNIST was made (kitnn/data/preprocess.hpp: invert
// a light background, stretch the contrast, crop to the digit, scale its longer side to
// 20 px, centre it by mass in a 28x28 frame). --raw skips that for images that already
// are MNIST digits (28x28, white on black; another size is then refused unless --resize).
//
// Prints one line per image: file, predicted digit, its probability (and the runners-up
// with --top K), or one JSON object per line with --json. With --labels it also prints a
// confusion matrix and "accuracy: 0.9420 (471/500)". A file that cannot be read or holds
// no digit is reported and the others are still classified; the exit code is then 1.
//
// Class names: a model trained with `mnist_train --dataset fashion` records "fashion" in
// its metadata, and its predictions are printed as Fashion-MNIST class names ("Sneaker");
// --dataset overrides the file. For Fashion-MNIST the preprocessing scales the object to
// fill the whole 28x28 frame, as that data set was made (MNIST digits fill 20x20).
#include "classify.hpp"
#include "cli.hpp"

#include <kitnn/data/datasets.hpp>
#include <kitnn/data/preprocess.hpp>
#include <kitnn/io/image.hpp>
#include <kitnn/kitnn.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

using namespace kitnn;
namespace fs = std::filesystem;

namespace {

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += char(c);
                }
        }
    }
    return out + "\"";
}

std::string fixed4(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", v);
    return buf;
}

// A file name for --save-preprocessed: the image's stem, made unique within this run.
std::string save_name(const std::string& path, std::set<std::string>& used) {
    std::string stem = fs::path(path).stem().string();
    if (stem.empty()) stem = "image";
    std::string name = stem + ".png";
    for (int k = 2; used.count(name); ++k) name = stem + "-" + std::to_string(k) + ".png";
    used.insert(name);
    return name;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Classify images of handwritten digits with a kitnn model. Any size, grey or colour, "
                 "dark on light or light on dark: images are preprocessed like MNIST unless --raw."};
    std::string model_path, labels_csv, save_dir, dataset;
    std::vector<std::string> images;
    bool resize = false, raw = false, json = false;
    int top = 1;
    app.add_option("--model", model_path, "model file written by mnist_train (best.kitnn)")->required();
    app.add_flag("--raw", raw,
                 "no preprocessing: the images already are MNIST digits (28x28, white on black, centred)");
    app.add_flag("--resize", resize, "with --raw: scale images of another size to the model's input size (without --raw, "
                 "preprocessing always scales)");
    app.add_option("--dataset", dataset,
                   "class names: mnist (digits) or fashion (default: the data set recorded in the model file, "
                   "else mnist)")
        ->check(CLI::IsMember(data::dataset_names()));
    app.add_option("--top", top, "also print the K most likely classes")->check(CLI::Range(1, 10));
    int threads = max_threads();
    app.add_option("--threads", threads, "OpenMP threads for preprocessing and the network (default: all cores)")
        ->check(CLI::Range(1, 1024))->capture_default_str();
    app.add_flag("--json", json, "one JSON object per image (and a summary object with --labels)");
    app.add_option("--save-preprocessed", save_dir,
                   "write the images the network actually saw (28x28 PNG) into this folder");
    app.add_option("--labels", labels_csv,
                   "CSV file,label (with a header line): measure accuracy on the one FOLDER given, "
                   "file names relative to it");
    app.add_option("images", images, "image files to classify (with --labels: one folder)");
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;
    if (!labels_csv.empty() && images.size() != 1) {
        std::cerr << "mnist_apply: --labels FILE.csv needs exactly one folder argument, got " << images.size()
                  << "\nRun with --help for the options.\n";
        return 2;
    }
    if (labels_csv.empty() && images.empty()) {
        std::cerr << "mnist_apply: no images given\nRun with --help for the options.\n";
        return 2;
    }

    return kitnn_examples::guarded("mnist_apply", [&] {
        set_threads(threads);
        Metadata meta;
        Sequential<float> model = load_model<float>(model_path, &meta);
        // Class names, input size and the preprocessing that fits the model: shared with
        // kitnn_serve (classify.hpp), so both answer alike.
        const kitnn_examples::ClassifySetup setup =
            kitnn_examples::classify_setup(model, meta, dataset, model_path, raw);
        const int K = setup.K;
        const bool digits = setup.digits;
        const std::vector<std::string>& names = setup.names;

        // The work list: the files given, or the CSV's files inside the one folder.
        std::vector<std::string> paths;
        std::vector<int> labels;
        if (!labels_csv.empty()) {
            if (!fs::is_directory(images[0]))
                throw std::runtime_error(images[0] + ": not a folder (with --labels, give the folder the "
                                         "CSV's file names are relative to)");
            for (const auto& row : data::read_labels_csv(labels_csv)) {
                paths.push_back((fs::path(images[0]) / row.file).string());
                labels.push_back(row.label);
            }
        } else {
            paths = images;
        }
        if (!save_dir.empty()) {
            std::error_code ec;
            fs::create_directories(save_dir, ec);
            if (ec) throw std::runtime_error(save_dir + ": cannot create folder: " + ec.message());
        }
        std::set<std::string> used_names;

        int failures = 0, right = 0, scored = 0;
        std::array<std::array<int, 10>, 10> confusion{};  // [true][predicted]
        for (std::size_t i = 0; i < paths.size(); ++i) {
            const std::string& path = paths[i];
            try {
                const io::GreyImage im = kitnn_examples::network_input(io::load_grey(path), setup, raw, resize, path);
                if (!save_dir.empty())
                    io::write_png_grey((fs::path(save_dir) / save_name(path, used_names)).string(), im);
                const Tensor<float> p = model.predict(kitnn_examples::as_batch(im));
                const std::vector<int> order = kitnn_examples::rank_classes(p);
                const int pred = order[0];
                const int shown = std::min(top, K);
                if (json) {
                    // Digits keep the original format; other data sets add the class name.
                    auto cls = [&](int k) {
                        return digits ? std::string() : ", \"class\": " + json_string(names[size_t(k)]);
                    };
                    std::cout << "{\"file\": " << json_string(path) << ", \"prediction\": " << pred << cls(pred)
                              << ", \"probability\": " << fixed4(p.data()[pred]) << ", \"top\": [";
                    for (int k = 0; k < shown; ++k)
                        std::cout << (k ? ", " : "") << "{\"digit\": " << order[size_t(k)] << cls(order[size_t(k)])
                                  << ", \"probability\": " << fixed4(p.data()[order[size_t(k)]]) << "}";
                    std::cout << "]";
                    if (!labels.empty())
                        std::cout << ", \"label\": " << labels[i]
                                  << ", \"correct\": " << (pred == labels[i] ? "true" : "false");
                    std::cout << "}\n";
                } else {
                    std::cout << path << ": " << names[size_t(pred)] << " (probability " << fixed4(p.data()[pred])
                              << ")";
                    for (int k = 1; k < shown; ++k)
                        std::cout << (k == 1 ? "  next: " : ", ") << names[size_t(order[size_t(k)])] << " ("
                                  << fixed4(p.data()[order[size_t(k)]]) << ")";
                    if (!labels.empty())
                        std::cout << (pred == labels[i] ? ""
                                                        : "  WRONG, label " +
                                                              (labels[i] < K ? names[size_t(labels[i])]
                                                                             : std::to_string(labels[i])));
                    std::cout << "\n";
                }
                if (!labels.empty() && pred < 10) {
                    ++scored;
                    right += pred == labels[i];
                    ++confusion[size_t(labels[i])][size_t(pred)];
                }
            } catch (const std::exception& e) {
                ++failures;
                if (json)
                    std::cout << "{\"file\": " << json_string(path) << ", \"error\": " << json_string(e.what())
                              << "}\n";
                else
                    std::cerr << "mnist_apply: " << e.what() << "\n";
            }
        }

        if (!labels.empty()) {
            const double acc = scored ? double(right) / scored : 0.0;
            if (json) {
                std::cout << "{\"accuracy\": " << fixed4(acc) << ", \"correct\": " << right
                          << ", \"total\": " << scored << ", \"errors\": " << failures << ", \"confusion\": [";
                for (int t = 0; t < 10; ++t) {
                    std::cout << (t ? ", [" : "[");
                    for (int q = 0; q < 10; ++q) std::cout << (q ? ", " : "") << confusion[size_t(t)][size_t(q)];
                    std::cout << "]";
                }
                std::cout << "]}\n";
            } else if (scored == 0) {
                std::cout << "accuracy: none (0/0): no image could be classified\n";
            } else {
                if (!digits) {
                    std::cout << "\nclasses:";
                    for (int q = 0; q < 10 && q < K; ++q) std::cout << (q ? ", " : " ") << q << " " << names[size_t(q)];
                    std::cout << "\n";
                }
                std::cout << "\nconfusion matrix (rows: label, columns: prediction)\n      ";
                for (int q = 0; q < 10; ++q) std::cout << std::setw(5) << q;
                std::cout << "\n";
                for (int t = 0; t < 10; ++t) {
                    std::cout << std::setw(5) << t << " ";
                    for (int q = 0; q < 10; ++q) std::cout << std::setw(5) << confusion[size_t(t)][size_t(q)];
                    std::cout << "\n";
                }
                if (failures)
                    std::cout << failures << " of " << paths.size()
                              << " images could not be classified and are not counted\n";
                std::cout << "accuracy: " << fixed4(acc) << " (" << right << "/" << scored << ")\n";
            }
        }
        if (failures)
            std::cerr << "mnist_apply: " << failures << " of " << paths.size()
                      << " images could not be classified\n";
        return failures ? 1 : 0;
    });
}
