// kitnn/data/datasets.hpp — the data sets the example programs know: MNIST and
// Fashion-MNIST. Both are 70,000 28x28 greyscale images in 10 classes, stored in the
// same four IDX files (train-images-idx3-ubyte[.gz], ...), so data/idx.hpp's
// load_mnist() reads either; what differs is where the files usually are and what the
// classes are called:
//
//   name     folder (flag, else environment variable, else default)      classes
//   mnist    --data, $KITNN_MNIST_DIR, data/mnist                         "0" .. "9"
//   fashion  --data, $KITNN_FASHION_MNIST_DIR, /usr/share/datasets/fashion-mnist
//            (Debian package dataset-fashion-mnist)                       T-shirt/top ...
//
// Fashion-MNIST (Zalando, 2017) was made as a drop-in replacement for MNIST: photos of
// clothing, trimmed, scaled so their longer side is 28 pixels, centred, negated (light
// on dark like MNIST's digits). Label k means class_names("fashion")[k].
#pragma once

#include "kitnn/data/idx.hpp"

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

namespace kitnn::data {

struct DatasetInfo {
    std::string name;         // "mnist" or "fashion": the --dataset value, stored in model files
    std::string title;        // for messages: "MNIST", "Fashion-MNIST"
    std::string env;          // environment variable naming the folder
    std::string default_dir;  // folder used when neither --data nor the variable is set
    std::string how_to_get;   // one line: how to install the files
    std::vector<std::string> class_names;  // label k is class_names[k]
};

inline std::vector<std::string> dataset_names() { return {"mnist", "fashion"}; }

// The description of data set `name`; throws std::invalid_argument for an unknown name.
inline const DatasetInfo& dataset_info(const std::string& name) {
    static const DatasetInfo mnist{"mnist", "MNIST", "KITNN_MNIST_DIR", "data/mnist",
                                   "scripts/download_mnist.sh --dir DIR",
                                   {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}};
    static const DatasetInfo fashion{
        "fashion", "Fashion-MNIST", "KITNN_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist",
        "sudo apt-get install dataset-fashion-mnist  (Debian/Ubuntu)",
        {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"}};
    if (name == "mnist") return mnist;
    if (name == "fashion") return fashion;
    throw std::invalid_argument("unknown data set '" + name + "' (known: mnist, fashion)");
}

inline const std::vector<std::string>& class_names(const std::string& dataset) {
    return dataset_info(dataset).class_names;
}

// The folder of data set `name`: `flag` if non-empty, else its environment variable,
// else its default folder. Throws DataError, saying how to get the files, when that
// folder lacks any of the four IDX files. For MNIST this is find_mnist_dir().
inline std::string find_dataset_dir(const std::string& name, const std::string& flag) {
    const DatasetInfo& d = dataset_info(name);
    if (name == "mnist") return find_mnist_dir(flag);
    const char* env = std::getenv(d.env.c_str());
    std::string dir = flag, source = "given with --data";
    if (dir.empty() && env && *env) dir = env, source = "from " + d.env;
    if (dir.empty()) dir = d.default_dir, source = "the default folder";
    const std::string how = "To get " + d.title + ": " + d.how_to_get +
                            "\nor use a folder that has the four IDX files: --data DIR, or " + d.env + "=DIR.";
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec))
        throw DataError(dir + ": " + d.title + " folder does not exist" + detail::where(dir, source) + ".\n" + how);
    const auto missing = detail::missing_mnist_files(dir);
    if (!missing.empty())
        throw DataError(dir + ": " + d.title + " files missing" + detail::where(dir, source) + ": " +
                        detail::join(missing, ", ") + ".\n" + how);
    return dir;
}

}  // namespace kitnn::data
