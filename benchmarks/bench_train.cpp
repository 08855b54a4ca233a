// kitnn_bench_train — training throughput of a zoo model on MNIST, measured like
// the PyTorch peer (shared/peers/torch_mnist.py) so the two can be compared:
//
//   kitnn_bench_train --model keck --threads 2 --data DIR --epochs 1 [--limit N] [--json]
//
// Same data split as the peer: --limit keeps the first N training images, then the
// last 20 % of those are the validation split and the first 80 % are trained on
// (48,000 images without --limit). One epoch = a shuffled pass in batches of 100;
// the timed step is: gather the batch, forward (training mode), fused softmax +
// cross-entropy, zero_grad, backward, Adam step. Loading the data is not timed.
// --json prints one line per epoch with the peer's fields (model, params, threads,
// train_images, epoch_s, images_per_s, ...) plus peak_rss_mb (getrusage) and rank 0's
// milliseconds per step in the step's phases (DataParallel::Times): step_parts_ms
// (forward and backward), step_reduce_ms (summing replicas and ranks, waiting included),
// step_update_ms (the guard and the optimizer; sharded: the new weights' exchange too).
//
// Under MPI (`mpirun -np N kitnn_bench_train ...`, noticed by itself, or --distributed
// on): each batch is split across the ranks as in mnist_train (train/data_parallel.hpp),
// images/s is the whole job's (training images / epoch time on rank 0), only rank 0
// prints, and --threads defaults to the cores per local rank.
#include <kitnn/data/idx.hpp>
#include <kitnn/kitnn.hpp>
#ifdef KITNN_WITH_MPI
#include <kitnn/dist/mpi.hpp>
#endif

#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

std::string num(double v, int decimals) {
    char b[64];
    std::snprintf(b, sizeof b, "%.*f", decimals, v);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"kitnn training throughput on MNIST (images/s of full training steps)"};
    std::string model = "keck";
    int threads = 2, epochs = 1, batch = 100;
    long limit = 0;
    double val_split = 0.2;
    std::uint64_t seed = 1;
    bool json = false;
    const char* env_dir = std::getenv("KITNN_MNIST_DIR");
    std::string data = env_dir ? env_dir : "";
    app.add_option("--model", model, "network from the zoo")
        ->check(CLI::IsMember(zoo::mnist_models()))
        ->capture_default_str();
    app.add_option("--threads", threads, "OpenMP / Eigen threads")
        ->check(CLI::Range(1, 1024))
        ->capture_default_str();
    app.add_option("--data", data, "directory with the MNIST IDX files (default $KITNN_MNIST_DIR)")
        ->check(CLI::ExistingDirectory);
    app.add_option("--epochs", epochs, "epochs to time")->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_option("--limit", limit, "use only the first N training images (0 = all)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--batch", batch, "batch size")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--val-split", val_split, "fraction held out (as the peer)")
        ->check(CLI::Range(0.0, 0.99))
        ->capture_default_str();
    app.add_option("--seed", seed, "seed for weights, dropout and shuffling")->capture_default_str();
    std::string im2col = "auto";
    app.add_option("--im2col", im2col, "Conv2D im2col layout: auto (per layer), rows or wide (stride-1 layers)")
        ->check(CLI::IsMember({"auto", "rows", "wide"}))
        ->capture_default_str();
    int replicas = 0;
    app.add_option("--replicas", replicas,
                   "split each batch across N model replicas, one per thread (0 = automatic: one per thread, "
                   "at most 8, for models under 2 M multiply-adds per sample; 1 = off)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    app.add_flag("--json", json, "one JSON line per epoch");
    std::string distributed = "auto";
    app.add_option("--distributed", distributed, "split batches across the MPI ranks of mpirun: auto, on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}))
        ->capture_default_str();
    try {
        app.parse(argc, argv);
        if (data.empty()) throw CLI::RequiredError("--data (or $KITNN_MNIST_DIR)");
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);  // prints help or the error message
        return e.get_exit_code() == int(CLI::ExitCodes::Success) ? rc : 2;
    }
    Collective* group = nullptr;
#ifdef KITNN_WITH_MPI
    std::unique_ptr<dist::MpiCommunicator> world;
    if (distributed == "on" || (distributed == "auto" && dist::launched_by_mpi())) {
        world = std::make_unique<dist::MpiCommunicator>(&argc, &argv);
        group = world.get();
        if (!app.count("--threads")) threads = std::max(1, max_threads() / dist::local_ranks());
    }
#else
    if (distributed == "on") {
        std::fprintf(stderr, "kitnn_bench_train: built without MPI: --distributed on is not available\n");
        return 2;
    }
#endif
    const bool root = !group || group->is_root();
    const int ranks = group ? group->size() : 1;
    if (!root && !std::freopen("/dev/null", "w", stdout)) return 1;  // only rank 0 prints

    // Every failure past parsing (data, shapes, allocation) ends in one message, exit 1
    // (under MPI: the whole job ends).
    try {
        set_threads(threads);
        data::Mnist mnist = data::load_mnist(data);  // an error: one message below
        mnist.test = {};  // not needed: keep the resident size to the training data

        // The peer's split: first `limit` images, of which the last val_split are held out.
        const Eigen::Index total = limit ? std::min<Eigen::Index>(limit, mnist.train.size())
                                         : mnist.train.size();
        const Eigen::Index n_val = Eigen::Index(double(total) * val_split);
        const Eigen::Index n_train = total - n_val;
        if (n_train < 1) {
            std::fprintf(stderr, "kitnn_bench_train: no training images left (limit %ld)\n", limit);
            return 2;
        }

        Sequential<float> net = zoo::mnist_model<float>(model, seed);
        if (!matches(mnist.train.images, net.input_shape())) {
            std::fprintf(stderr, "kitnn_bench_train: %s: the images are (%ld,%ld,%ld), model %s needs %s\n",
                         data.c_str(), long(mnist.train.images.dimension(1)), long(mnist.train.images.dimension(2)),
                         long(mnist.train.images.dimension(3)), model.c_str(), net.input_shape().str().c_str());
            return 1;
        }
        Adam<float> adam;
        if (group) {
            check_same_run(*group, {{"model", model}, {"seed", std::to_string(seed)}, {"batch", std::to_string(batch)},
                                    {"training images", std::to_string(n_train)}, {"replicas", std::to_string(replicas)}});
            broadcast_model(*group, net);
        }
        // The step fit() runs (train/data_parallel.hpp): replicas x ranks, 1 x 1 included.
        const std::unique_ptr<DataParallel<float>> dp = make_data_parallel(net, replicas, group);
        const int reps = dp->replicas();
        // The layout is not part of the model file: set it on every replica.
        if (im2col != "auto")
            for (int r = 0; r < reps; ++r) {
                Sequential<float>& m = dp->replica(r);
                for (size_t i = 0; i < m.size(); ++i)
                    if (auto* conv = dynamic_cast<Conv2D<float>*>(&m.layer(i)))
                        if (im2col == "rows" || conv->config().str("stride") == "1")
                            conv->set_im2col(im2col == "rows" ? Im2col::rows : Im2col::wide);
            }
        Rng shuffle_rng(seed + 1);
        std::vector<Eigen::Index> order(static_cast<size_t>(n_train));
        Tensor<float> xb;
        std::vector<std::uint8_t> yb;
        const LabelledView train{&mnist.train.images, &mnist.train.labels, 0, n_train};

        if (!json)
            std::printf("model %s (%ld params), %d thread(s), %d replica(s), %d rank(s), %ld training images, batch %d\n",
                        model.c_str(), long(net.param_count()), threads, reps, ranks, long(n_train), batch);
        for (int epoch = 1; epoch <= epochs; ++epoch) {
            std::iota(order.begin(), order.end(), Eigen::Index(0));
            for (size_t i = order.size(); i > 1; --i)  // Fisher–Yates
                std::swap(order[i - 1], order[shuffle_rng.below(i)]);

            dp->reset_times();
            const auto t0 = std::chrono::steady_clock::now();
            double loss_sum = 0;
            std::int64_t correct = 0;
            for (Eigen::Index s = 0; s < n_train; s += batch) {
                // The same gather and step as fit() (train/fit.hpp), so the benchmark times
                // exactly what training runs.
                const Eigen::Index b = std::min<Eigen::Index>(batch, n_train - s);
                gather_batch(train, order, size_t(s), b, xb, yb);
                std::int64_t c = 0;
                loss_sum += dp->step(adam, xb, yb, &c) * double(b);
                correct += c;
            }
            const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

            const double ips = double(n_train) / dt;
            // Rank 0's milliseconds per step in each phase (DataParallel::Times).
            const auto& tm = dp->times();
            const double per = tm.steps ? 1e3 / double(tm.steps) : 0;
            if (json) {
                std::printf(
                    "{\"peer\": \"kitnn\", \"model\": \"%s\", \"params\": %ld, \"threads\": %d, "
                    "\"epoch\": %d, \"train_images\": %ld, \"epoch_s\": %s, \"images_per_s\": %s, "
                    "\"loss\": %s, \"train_acc\": %s, \"peak_rss_mb\": %s, \"replicas\": %d, \"ranks\": %d, "
                    "\"step_parts_ms\": %s, \"step_reduce_ms\": %s, \"step_update_ms\": %s}\n",
                    model.c_str(), long(net.param_count()), threads, epoch, long(n_train),
                    num(dt, 3).c_str(), num(ips, 1).c_str(), num(loss_sum / double(n_train), 4).c_str(),
                    num(double(correct) / double(n_train), 4).c_str(), num(peak_rss_mb(), 1).c_str(), reps, ranks,
                    num(tm.parts_s * per, 2).c_str(), num(tm.reduce_s * per, 2).c_str(),
                    num(tm.update_s * per, 2).c_str());
            } else {
                std::printf("epoch %d: %.3f s, %.1f images/s, loss %.4f, train acc %.4f, peak RSS %.1f MB\n",
                            epoch, dt, ips, loss_sum / double(n_train), double(correct) / double(n_train),
                            peak_rss_mb());
            }
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
#ifdef KITNN_WITH_MPI
        if (world && world->size() > 1) world->abort_job(std::string("kitnn_bench_train: error: ") + e.what());
#endif
        std::fprintf(stderr, "kitnn_bench_train: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
