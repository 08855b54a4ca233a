// mnist_export — writes the first N MNIST test digits as PNG files, so the images a
// model is applied to can be looked at (and fed back to it as files).
//
//   mnist_export [--data DIR] [--out DIR] [--count 20] [--dataset mnist|fashion]
//
// Writes into --out (default: the current directory):
//   example_input_0.png ... example_input_{N-1}.png  28x28 greyscale, white digit on
//       black: exactly the MNIST bytes, so loading one gives the network's own input;
//   example_inputs_sheet.png  all N digits inverted (black on white, easier to read
//       on a page) in a grid with a small margin;
//   example_labels.csv  "file,label" for each example PNG, to check predictions
//       (for Fashion-MNIST the label is the class number; the names are printed).
#include "cli.hpp"

#include <kitnn/data/datasets.hpp>
#include <kitnn/data/idx.hpp>
#include <kitnn/io/atomic_file.hpp>
#include <kitnn/io/image.hpp>

#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>


namespace {

int run(const std::string& dataset, const std::string& data_flag, const std::string& out_dir, int count) {
    namespace fs = std::filesystem;
    using namespace kitnn;

    const data::DatasetInfo& info = data::dataset_info(dataset);
    const std::string dir = data::find_dataset_dir(dataset, data_flag);
    // Only the test split is needed; loading it alone is ~6x less work than load_mnist.
    const data::Dataset test = data::load_idx(data::find_idx_file(dir, "t10k-images-idx3-ubyte"),
                                              data::find_idx_file(dir, "t10k-labels-idx1-ubyte"));
    if (count > test.size()) {
        std::cerr << "mnist_export: error: --count " << count << " but the test set has only "
                  << test.size() << " images\n";
        return 2;
    }
    const int rows = static_cast<int>(test.images.dimension(2));
    const int cols = static_cast<int>(test.images.dimension(3));

    std::error_code ec;
    fs::create_directories(out_dir, ec);
    if (ec) throw std::runtime_error(out_dir + ": cannot create output folder: " + ec.message());

    // Contact sheet geometry: a near-square grid, `margin` white pixels around every digit.
    const int grid_cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
    const int grid_rows = (count + grid_cols - 1) / grid_cols;
    const int margin = 4;
    const int sheet_w = grid_cols * (cols + margin) + margin;
    const int sheet_h = grid_rows * (rows + margin) + margin;
    std::vector<std::uint8_t> sheet(static_cast<std::size_t>(sheet_w) * sheet_h, 255);

    std::string csv = "file,label\n";
    std::vector<std::uint8_t> px(static_cast<std::size_t>(rows) * cols);
    for (int i = 0; i < count; ++i) {
        // load_idx stored byte/255; lround(x * 255) recovers exactly the original byte.
        for (int y = 0; y < rows; ++y)
            for (int x = 0; x < cols; ++x)
                px[static_cast<std::size_t>(y) * cols + x] =
                    static_cast<std::uint8_t>(std::lround(test.images(i, 0, y, x) * 255.0f));

        const std::string name = "example_input_" + std::to_string(i) + ".png";
        // Each file atomic (temporary + rename) but not flushed one by one: sync_files
        // below flushes them all at once (10,000 fsyncs of files and folder took ~70 s).
        io::write_png_grey((fs::path(out_dir) / name).string(), cols, rows, px, /*durable=*/false);
        csv += name + "," + std::to_string(int(test.labels[static_cast<std::size_t>(i)])) + "\n";

        const int ox = margin + (i % grid_cols) * (cols + margin);
        const int oy = margin + (i / grid_cols) * (rows + margin);
        for (int y = 0; y < rows; ++y)
            for (int x = 0; x < cols; ++x)
                sheet[static_cast<std::size_t>(oy + y) * sheet_w + (ox + x)] =
                    static_cast<std::uint8_t>(255 - px[static_cast<std::size_t>(y) * cols + x]);
    }
    io::write_png_grey((fs::path(out_dir) / "example_inputs_sheet.png").string(), sheet_w, sheet_h, sheet, false);
    kitnn::sync_files(out_dir);  // the digits and the sheet are on disk before the labels name them
    kitnn::write_file_atomic((fs::path(out_dir) / "example_labels.csv").string(), csv);

    std::cout << "mnist_export: wrote example_input_0.png .. example_input_" << count - 1
              << ".png, example_inputs_sheet.png (" << grid_cols << "x" << grid_rows
              << " grid) and example_labels.csv to " << out_dir << " (" << info.title << " test set from "
              << dir << ")\n";
    if (dataset != "mnist") {
        std::cout << "classes:";
        for (std::size_t k = 0; k < info.class_names.size(); ++k)
            std::cout << (k ? ", " : " ") << k << " " << info.class_names[k];
        std::cout << "\n";
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Write the first N MNIST test digits as PNG files (white on black, 28x28), a "
                 "black-on-white contact sheet, and example_labels.csv."};
    std::string data_dir, out_dir = ".", dataset = "mnist";
    int count = 20;
    app.add_option("--data", data_dir,
                   "MNIST folder (default: $KITNN_MNIST_DIR, else data/mnist; "
                   "get it with scripts/download_mnist.sh)");
    app.add_option("--dataset", dataset, "mnist, or fashion (Fashion-MNIST; default folder "
                   "/usr/share/datasets/fashion-mnist, or $KITNN_FASHION_MNIST_DIR)")
        ->check(CLI::IsMember(kitnn::data::dataset_names()))
        ->capture_default_str();
    app.add_option("--out", out_dir, "output folder, created if missing")->capture_default_str();
    app.add_option("--count", count, "number of test digits to export")
        ->check(CLI::Range(1, 10000))
        ->capture_default_str();
    // --help and --version print and succeed; any usage error (unknown flag, bad value)
    // exits 2, the usual code for command-line misuse, after CLI11's message.
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;
    try {
        return run(dataset, data_dir, out_dir, count);
    } catch (const std::exception& e) {
        std::cerr << "mnist_export: error: " << e.what() << "\n";
        return 1;
    }
}
