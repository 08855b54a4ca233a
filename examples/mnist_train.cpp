// mnist_train — the exercise: train a CNN on MNIST, keep the best model, test it.
//
//   mnist_train [--model keck] [--epochs 10] [--batch 100] [--lr 0.001]
//               [--val-split 0.2] [--seed 1] [--threads N] [--data DIR] [--out DIR]
//
// As Keras's fit(validation_split=0.2): the LAST 20 % of the 60,000 training
// images are held out for validation, the rest is shuffled every epoch. After each
// epoch the model with the lowest validation loss so far is written atomically to
// OUT/best.kitnn, and OUT/history.csv is rewritten. At the end the best model is
// loaded back from disk and scored on the 10,000 test images.
#include "cli.hpp"

#include <kitnn/data/idx.hpp>
#include <kitnn/kitnn.hpp>

#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

using namespace kitnn;

// Under- or overfitting, from the best model's accuracy on the training images
// (scored without dropout) and on the validation images, and from where the best
// epoch lies. Thresholds: see docs/mnist.md.
static std::string diagnose(double train_acc, double val_acc, int best_epoch, int epochs) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2);
    const double gap = (train_acc - val_acc) * 100;  // percentage points
    // best_epoch counts from 1: a best epoch before the last means val_loss rose after it.
    const bool val_rising = best_epoch < epochs;
    if (gap > 2.0 || (val_rising && gap > 0.5))
        s << "overfitting — train accuracy is " << gap << " points above validation"
          << (val_rising ? " and the validation loss rose after the best epoch" : "") << ".";
    else if (val_acc < 0.98 && !val_rising)
        s << "underfitting — train and validation accuracy are close (gap " << gap
          << " points) and the validation loss still fell in the last epoch: the model is too "
             "small or trained too briefly.";
    else
        s << "neither clearly — train/validation gap " << gap << " points.";
    return s.str();
}

int main(int argc, char** argv) {
    CLI::App app{"Train a CNN on MNIST (the kitnn exercise) and test the best model."};
    std::string data_dir, out_dir = "runs/keck", model_name = "keck";
    int epochs = 10, threads = max_threads();
    Eigen::Index batch = 100, limit = 0;
    double lr = 1e-3, val_split = 0.2;
    std::uint64_t seed = 1;
    std::string progress = "auto";
    app.add_option("--model", model_name, "network: keck (the exercise's), lenet5, kerascnn")
        ->check(CLI::IsMember(zoo::mnist_models()))->capture_default_str();
    app.add_option("--data", data_dir, "folder with the MNIST IDX files (default: $KITNN_MNIST_DIR, else data/mnist)");
    app.add_option("--out", out_dir, "folder for best.kitnn and history.csv")->capture_default_str();
    app.add_option("--epochs", epochs, "training epochs")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--batch", batch, "batch size")->check(CLI::Range(1, 60000))->capture_default_str();
    app.add_option("--lr", lr, "Adam learning rate")->check(CLI::PositiveNumber)->capture_default_str();
    app.add_option("--val-split", val_split, "fraction of the training images held out (the last ones)")
        ->check(CLI::Range(0.0, 0.9))->capture_default_str();
    app.add_option("--seed", seed, "seed for weights, dropout and shuffling")->capture_default_str();
    app.add_option("--threads", threads, "OpenMP threads (default: all cores)")->check(CLI::Range(1, 1024))->capture_default_str();
    app.add_option("--limit", limit, "use only the first N training images (0 = all), for quick runs")
        ->check(CLI::Range(0, 60000));
    app.add_option("--progress", progress, "progress display: auto (bar on a terminal), bar, plain")
        ->check(CLI::IsMember({"auto", "bar", "plain"}))->capture_default_str();
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    return kitnn_examples::guarded("mnist_train", [&] {
        set_threads(threads);
        const std::string dir = data::find_mnist_dir(data_dir);
        std::cout << "Loading MNIST from " << dir << "\n";
        const data::Mnist mnist = data::load_mnist(dir);

        Eigen::Index n = mnist.train.size();
        if (limit > 0) n = std::min(n, limit);
        const Eigen::Index n_val = Eigen::Index(double(n) * val_split);
        LabelledView train{&mnist.train.images, &mnist.train.labels, 0, n - n_val};
        LabelledView val{&mnist.train.images, &mnist.train.labels, n - n_val, n};
        LabelledView test{&mnist.test.images, &mnist.test.labels, 0, mnist.test.size()};

        Sequential<float> model = zoo::mnist_model<float>(model_name, seed);
        std::cout << model.summary(model_name);
        std::cout << "Train on " << train.size() << " samples, validate on " << val.size()
                  << " samples; batch " << batch << ", Adam lr " << lr << ", seed " << seed
                  << ", " << threads << " thread(s)\n";

        std::filesystem::create_directories(out_dir);
        FitOptions fo;
        fo.epochs = epochs;
        fo.batch = batch;
        fo.seed = seed;
        fo.checkpoint = out_dir + "/best.kitnn";
        fo.history_csv = out_dir + "/history.csv";
        fo.metadata = {{"model", model_name}, {"dataset", "mnist"}, {"seed", std::to_string(seed)}};
        fo.progress = progress == "bar" ? 1 : progress == "plain" ? 0 : -1;
        AdamOptions ao;
        ao.lr = lr;
        Adam<float> adam(ao);
        const auto history = fit(model, adam, train, val, fo);

        // Epoch times, and how to read under- vs overfitting from the history.
        double total_s = 0;
        int best_epoch = 0;
        double best_val = 1e300;
        for (auto& h : history) {
            total_s += h.seconds;
            if (h.val_loss < best_val) best_val = h.val_loss, best_epoch = h.epoch;
        }
        std::cout << std::fixed << std::setprecision(2) << "\nwall time per epoch: "
                  << total_s / double(history.size()) << " s (mean of " << history.size()
                  << "), training only\n";

        Sequential<float> best = load_model<float>(fo.checkpoint);
        const auto tr = evaluate(best, train);
        std::cout << std::setprecision(4) << "best model: epoch " << best_epoch << ", "
                  << fo.checkpoint << "\n"
                  << "  train (no dropout): loss " << tr.loss << ", acc " << tr.accuracy << "\n";
        if (val.size() == 0) {
            // No held-out data (--val-split 0): the checkpoint followed the training loss,
            // and there is nothing to compare it with.
            std::cout << "diagnosis: none — no validation set (--val-split 0)\n";
        } else {
            const auto va = evaluate(best, val);
            std::cout << "  validation:         loss " << va.loss << ", acc " << va.accuracy << "\n"
                      << "diagnosis: "
                      << diagnose(tr.accuracy, va.accuracy, best_epoch, int(history.size())) << "\n";
        }

        const auto te = evaluate(best, test);
        std::cout << "test accuracy: " << te.accuracy << " (" << te.correct << "/" << te.count
                  << ")\n";
        return 0;
    });
}
