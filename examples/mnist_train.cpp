// mnist_train — the exercise: train a CNN on MNIST, keep the best model, test it.
//
//   mnist_train [--model keck|lenet5|kerascnn|best|fast] [--epochs N] [--batch N] [--lr X]
//               [--val-split F] [--schedule S] [--augment A] [--early-stopping N]
//               [--weight-decay W] [--seed 1] [--threads N] [--replicas N] [--data DIR]
//               [--out DIR] [--dataset mnist|fashion] [--report DIR] [--resume OUT/last.kitnn]
//               [--ensemble N]
//
// With several threads, small models (keck, lenet5, fast) train with each batch split across
// one model replica per thread (train/data_parallel.hpp); --replicas 1 turns that off.
//
// Each model comes with a recipe (zoo.hpp: zoo::recipe) for the flags not given;
// keck's is the exercise as set: Adam 0.001, batch 100, 10 epochs, 20 % validation.
// After every epoch OUT/last.kitnn holds a training checkpoint (weights, Adam's
// moments, epoch, schedule and generator states, history); --resume continues it
// and ends with the same weights as an uninterrupted run (same seed and threads).
//
// --ensemble N (best's recipe: 3) trains N networks one after the other, member k
// (1..N) from seed S + 1000 (k - 1) in OUT/member-k/, then writes their average
// (model/ensemble.hpp) to OUT/best.kitnn and tests that. --resume OUT/member-k/last.kitnn
// continues member k and then trains the members after it.
//
// --dataset fashion trains on Fashion-MNIST (same file format, 10 clothing classes;
// data/datasets.hpp); the data set's name goes into the model file's metadata, so
// mnist_apply prints class names. --report DIR writes the PNG pictures of
// viz/report.hpp after the test.
//
// As Keras's fit(validation_split=0.2): the LAST 20 % of the 60,000 training
// images are held out for validation, the rest is shuffled every epoch. After each
// epoch the model with the lowest validation loss so far is written atomically to
// OUT/best.kitnn, and OUT/history.csv is rewritten. At the end the best model is
// loaded back from disk and scored on the 10,000 test images.
//
// Distributed (docs/distributed.md): `mpirun -np N mnist_train ...` trains one model
// over N processes (data parallelism: each global batch split across the ranks, the
// gradients summed). It notices mpirun by itself (--distributed auto); only rank 0
// prints and writes files; ranks started with different data, model or flags stop with
// an error naming the difference; an error on one rank ends the whole job.
#include "cli.hpp"

#include <kitnn/data/datasets.hpp>
#include <kitnn/data/idx.hpp>
#include <kitnn/kitnn.hpp>
#include <kitnn/viz/report.hpp>
#ifdef KITNN_WITH_MPI
#include <kitnn/dist/mpi.hpp>
#endif

#include <filesystem>
#include <optional>
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
    else if (val_acc < 0.98)  // close AND low: high bias (good CNNs reach 99 %+ on MNIST)
        s << "underfitting — train and validation accuracy are close (gap " << gap
          << " points) and both low (validation error " << (1 - val_acc) * 100 << " %)"
          << (val_rising ? ": the model is too small."
                         : " and the validation loss still fell in the last epoch: the model is too "
                           "small or trained too briefly.");
    else
        s << "neither clearly — train/validation gap " << gap << " points.";
    return s.str();
}

int main(int argc, char** argv) {
    CLI::App app{"Train a CNN on MNIST (the kitnn exercise) and test the best model."};
    std::string data_dir, out_dir, model_name = "keck", resume;
    int epochs = 10, threads = max_threads(), early_stopping = 0, ensemble = 1;
    Eigen::Index batch = 100, limit = 0;
    double lr = 1e-3, val_split = 0.2, weight_decay = 0;
    std::uint64_t seed = 1;
    std::string progress = "auto", schedule = "constant", augment = "none";
    std::string dataset = "mnist", report_dir;
    app.add_option("--model", model_name,
                   "network: keck (the exercise's), lenet5, kerascnn, best, fast; each comes with its "
                   "own recipe (epochs, rate, schedule, augmentation; see docs/models.md) which "
                   "the flags below override")
        ->check(CLI::IsMember(zoo::mnist_models()))->capture_default_str();
    app.add_option("--dataset", dataset, "mnist (digits) or fashion (Fashion-MNIST clothing, 10 classes)")
        ->check(CLI::IsMember(data::dataset_names()))->capture_default_str();
    app.add_option("--data", data_dir, "folder with the IDX files (default: $KITNN_MNIST_DIR, else data/mnist; "
                   "fashion: $KITNN_FASHION_MNIST_DIR, else /usr/share/datasets/fashion-mnist)");
    app.add_option("--report", report_dir, "after training, write PNG pictures of the run into this folder "
                   "(learning curves, test confusion matrix, worst errors, first-layer filters)");
    app.add_option("--out", out_dir, "folder for best.kitnn (best val_loss), last.kitnn (training "
                   "checkpoint after every epoch, for --resume) and history.csv; with --ensemble N > 1 these go into "
                   "OUT/member-K/ and OUT/best.kitnn is their average [default: runs/MODEL]");
    app.add_option("--epochs", epochs, "training epochs (total, when resuming) [recipe; keck: 10]")
        ->check(CLI::Range(1, 100000));
    app.add_option("--batch", batch, "batch size [recipe; keck: 100]")->check(CLI::Range(1, 60000));
    app.add_option("--lr", lr, "Adam learning rate (the schedule's base) [recipe; keck: 0.001]")
        ->check(CLI::PositiveNumber);
    app.add_option("--val-split", val_split, "fraction of the training images held out (the last ones) "
                   "[recipe; keck: 0.2]")
        ->check(CLI::Range(0.0, 0.9));
    app.add_option("--schedule", schedule, "learning-rate schedule: constant, step:EPOCHS:GAMMA, "
                   "cosine[:MIN_LR], plateau:FACTOR:PATIENCE[:MIN_LR], optionally prefixed by "
                   "warmup=EPOCHS, [recipe; keck: constant]");
    app.add_option("--augment", augment, "random training-image transforms, e.g. "
                   "shift=2,rotate=10,scale=0.1 (pixels, degrees, fraction), plus elastic=34[,elastic_sigma=4] for "
                   "elastic distortion (pixels), or none [recipe; keck: none]");
    app.add_option("--early-stopping", early_stopping, "stop after N epochs without a better val_loss "
                   "(0 = never) [recipe; keck: 0]")->check(CLI::Range(0, 100000));
    app.add_option("--weight-decay", weight_decay, "AdamW's decoupled weight decay (0 = plain Adam) "
                   "[recipe; keck: 0]")->check(CLI::Range(0.0, 1.0));
    app.add_option("--ensemble", ensemble, "train N networks (seeds S, S+1000, ...) one after the other and "
                   "average their outputs: one model, N times the cost [recipe; best: 3, others: 1]")
        ->check(CLI::Range(1, 100));
    app.add_option("--resume", resume, "continue the run saved in this training checkpoint "
                   "(OUT/last.kitnn; an ensemble's: OUT/member-K/last.kitnn, K the member that was training) "
                   "with its own settings, up to --epochs")
        ->check(CLI::ExistingFile);
    app.add_option("--seed", seed, "seed for weights, dropout, shuffling and augmentation")->capture_default_str();
    app.add_option("--threads", threads, "OpenMP threads (default: all cores)")->check(CLI::Range(1, 1024))->capture_default_str();
    int replicas = 0;
    app.add_option("--replicas", replicas,
                   "split each batch across N model replicas, one per thread (0 = automatic: one per thread, "
                   "at most 8, for models under 2 M multiply-adds per sample, BatchNorm synchronised; 1 = off)")
        ->check(CLI::Range(0, 1024))
        ->capture_default_str();
    app.add_option("--limit", limit, "use only the first N training images (0 = all), for quick runs")
        ->check(CLI::Range(0, 60000));
    app.add_option("--progress", progress, "progress display: auto (bar on a terminal), bar, plain")
        ->check(CLI::IsMember({"auto", "bar", "plain"}))->capture_default_str();
    std::string distributed = "auto";
    app.add_option("--distributed", distributed,
                   "train over the MPI ranks of `mpirun -np N mnist_train ...` (each batch split across the "
                   "ranks): auto (when started by mpirun), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}))->capture_default_str();
    if (int rc = kitnn_examples::parse(app, argc, argv); rc >= 0) return rc;

    // The ranks, when distributed (null: this process alone).
    Collective* group = nullptr;
#ifdef KITNN_WITH_MPI
    std::unique_ptr<dist::MpiCommunicator> world;
    if (distributed == "on" || (distributed == "auto" && dist::launched_by_mpi())) {
        world = std::make_unique<dist::MpiCommunicator>(&argc, &argv);
        group = world.get();
        // The cores of a machine are shared by its ranks.
        if (!app.count("--threads")) threads = std::max(1, threads / dist::local_ranks());
    }
#else
    if (distributed == "on") {
        std::cerr << "mnist_train: error: --distributed on: this mnist_train was built without MPI "
                     "(install libopenmpi-dev and rebuild; docs/distributed.md)\n";
        return 1;
    }
#endif
    const bool root = !group || group->is_root();
    if (!root) std::cout.rdbuf(nullptr);  // only rank 0 prints (errors still go to stderr)

    auto body = [&] {
        set_threads(threads);
        int member = 0;  // the first ensemble member to train (0-based): the resumed one, else 0
        // The run's settings: from the checkpoint when resuming, else the model's recipe
        // overridden by the flags given.
        std::optional<TrainingCheckpoint<float>> ckpt;
        if (!resume.empty()) {
            std::vector<std::string> fixed;
            for (const char* f : {"--model", "--dataset", "--batch", "--lr", "--val-split", "--schedule",
                                  "--augment", "--early-stopping", "--weight-decay", "--seed", "--limit",
                                  "--ensemble"})
                if (app.count(f)) fixed.push_back(f);
            if (!fixed.empty()) {
                std::string list;
                for (auto& f : fixed) list += (list.empty() ? "" : ", ") + f;
                throw std::invalid_argument(
                    "--resume continues the checkpoint's run with its own settings; " + list +
                    " cannot be changed (only --epochs, --threads, --data, --out, --progress and "
                    "--report may be given)");
            }
            ckpt = load_training_checkpoint<float>(resume);
            const Metadata& m = ckpt->metadata;
            auto get = [&](const char* k) {
                auto it = m.find(k);
                if (it == m.end())
                    throw ModelFileError(resume + ": training checkpoint without '" + k + "'");
                return it->second;
            };
            model_name = get("model");
            dataset = get("dataset");
            seed = std::stoull(get("seed"));
            batch = std::stoll(get("train.batch"));
            lr = std::stod(get("train.lr"));
            val_split = std::stod(get("train.val_split"));
            limit = std::stoll(get("train.limit"));
            augment = get("train.augment");
            early_stopping = std::stoi(get("train.early_stopping"));
            weight_decay = std::stod(get("train.weight_decay"));
            schedule = ckpt->schedule_spec;
            if (!app.count("--epochs")) epochs = std::stoi(get("train.epochs"));
            // Checkpoints from before --ensemble are single runs.
            if (m.count("train.ensemble")) {
                ensemble = std::stoi(get("train.ensemble"));
                member = std::stoi(get("ensemble.member")) - 1;
                if (ensemble < 1 || ensemble > 100 || member < 0 || member >= ensemble)
                    throw ModelFileError(resume + ": training checkpoint with a bad ensemble member " +
                                         get("ensemble.member") + " of " + get("train.ensemble"));
            }
        } else {
            const zoo::Recipe r = zoo::recipe(model_name);
            if (!app.count("--epochs")) epochs = r.epochs;
            if (!app.count("--batch")) batch = r.batch;
            if (!app.count("--lr")) lr = r.lr;
            if (!app.count("--val-split")) val_split = r.val_split;
            if (!app.count("--schedule")) schedule = r.schedule;
            if (!app.count("--augment")) augment = r.augment;
            if (!app.count("--early-stopping")) early_stopping = r.early_stopping;
            if (!app.count("--weight-decay")) weight_decay = r.weight_decay;
            if (!app.count("--ensemble")) ensemble = r.ensemble;
        }
        if (out_dir.empty()) out_dir = "runs/" + model_name;
        FitOptions fo;
        fo.schedule = LrSchedule::parse(schedule);  // bad specs fail before the data loads
        fo.augment = AugmentOptions::parse(augment);

        const data::DatasetInfo& info = data::dataset_info(dataset);
        const std::string dir = data::find_dataset_dir(dataset, data_dir);
        std::cout << "Loading " << info.title << " from " << dir << "\n";
        const data::Mnist mnist = data::load_mnist(dir);

        Eigen::Index n = mnist.train.size();
        if (limit > 0) n = std::min(n, limit);
        const Eigen::Index n_val = Eigen::Index(double(n) * val_split);
        LabelledView train{&mnist.train.images, &mnist.train.labels, 0, n - n_val};
        LabelledView val{&mnist.train.images, &mnist.train.labels, n - n_val, n};
        LabelledView test{&mnist.test.images, &mnist.test.labels, 0, mnist.test.size()};

        if (root) std::filesystem::create_directories(out_dir);
        // A resumed member needs the members before it (their best models) at the end.
        for (int k = 0; root && k < member; ++k) {
            const std::string p = out_dir + "/member-" + std::to_string(k + 1) + "/best.kitnn";
            if (!std::filesystem::exists(p))
                throw FileError(p + ": ensemble member " + std::to_string(k + 1) +
                                " of the interrupted run is missing (resume with the same --out)");
        }
        auto num = [](double v) {
            std::ostringstream s;
            s.precision(17);
            s << v;
            return s.str();
        };
        // One training run per ensemble member (one in all without --ensemble).
        std::vector<EpochStats> history;  // the last member's
        int best_epoch = 0;               // its epoch with the lowest val_loss
        for (int k = member; k < ensemble; ++k) {
            const bool resumed = ckpt && k == member;
            const std::uint64_t member_seed = seed + 1000 * std::uint64_t(k);
            const std::string dir_k = ensemble > 1 ? out_dir + "/member-" + std::to_string(k + 1) : out_dir;
            Sequential<float> model = resumed ? std::move(ckpt->model) : zoo::mnist_model<float>(model_name, member_seed);
            if (ensemble > 1)
                std::cout << (k > member ? "\n" : "") << "Ensemble member " << k + 1 << " of " << ensemble
                          << " (seed " << member_seed << ", " << dir_k << ")\n";
            if (k == member) std::cout << model.summary(model_name);
            std::cout << "Train on " << train.size() << " samples, validate on " << val.size()
                      << " samples; batch " << batch << ", " << (weight_decay > 0 ? "AdamW" : "Adam")
                      << " lr " << lr;
            if (weight_decay > 0) std::cout << " weight decay " << weight_decay;
            std::cout << ", schedule " << schedule << ", augmentation " << fo.augment.str();
            if (early_stopping > 0) std::cout << ", early stopping after " << early_stopping << " epochs";
            fo.replicas = choose_replicas(model, replicas);
            std::cout << ", seed " << member_seed << ", " << threads << " thread(s)";
            if (fo.replicas > 1) std::cout << ", batches split across " << fo.replicas << " replicas";
            if (group) std::cout << (fo.replicas > 1 ? " on each of " : ", batches split across ") << group->size()
                                 << " MPI ranks";
            std::cout << "\n";
            if (group) {
                // Every rank must train the same thing; then all start from rank 0's weights.
                const auto bytes = serialize_model(model);
                const Eigen::Index per = mnist.train.images.size() / std::max<Eigen::Index>(1, mnist.train.size());
                auto hex = [](std::uint64_t v) {
                    char b[24];
                    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
                    return std::string(b);
                };
                check_same_run(*group, {
                    {"program", std::string("mnist_train, model format ") + std::to_string(kModelFormatVersion)},
                    {"model", model_name}, {"dataset", dataset}, {"seed", std::to_string(seed)},
                    {"batch", std::to_string(batch)}, {"epochs", std::to_string(epochs)}, {"lr", std::to_string(lr)},
                    {"schedule", schedule}, {"augment", fo.augment.str()}, {"val_split", std::to_string(val_split)},
                    {"weight_decay", std::to_string(weight_decay)}, {"early_stopping", std::to_string(early_stopping)},
                    {"replicas", std::to_string(fo.replicas)},
                    {"ensemble member", std::to_string(k + 1) + " of " + std::to_string(ensemble)},
                    {"training images", std::to_string(train.size())}, {"validation images", std::to_string(val.size())},
                    {"data fingerprint", hex(fingerprint(mnist.train.images.data(), size_t(n * per) * sizeof(float),
                                                         fingerprint(mnist.train.labels.data(), size_t(n))))},
                    {"resumed after epoch", resumed ? std::to_string(ckpt->state.epoch) : "-"},
                    {"model fingerprint", hex(fingerprint(bytes.data(), bytes.size()))}});
                broadcast_model(*group, model);
            }

            if (root) std::filesystem::create_directories(dir_k);
            fo.epochs = epochs;
            fo.batch = batch;
            fo.seed = member_seed;
            fo.base_lr = lr;
            fo.early_stopping = early_stopping;
            fo.checkpoint = dir_k + "/best.kitnn";
            fo.last_checkpoint = dir_k + "/last.kitnn";
            fo.history_csv = dir_k + "/history.csv";
            fo.metadata = {{"model", model_name}, {"dataset", dataset}, {"seed", std::to_string(seed)},
                           {"train.batch", std::to_string(batch)}, {"train.lr", num(lr)},
                           {"train.val_split", num(val_split)}, {"train.limit", std::to_string(limit)},
                           {"train.augment", fo.augment.str()},
                           {"train.early_stopping", std::to_string(early_stopping)},
                           {"train.weight_decay", num(weight_decay)}, {"train.epochs", std::to_string(epochs)}};
            if (ensemble > 1) {
                fo.metadata["train.ensemble"] = std::to_string(ensemble);
                fo.metadata["ensemble.member"] = std::to_string(k + 1);
                fo.metadata["ensemble.member_seed"] = std::to_string(member_seed);
            }
            fo.progress = progress == "bar" ? 1 : progress == "plain" ? 0 : -1;
            AdamOptions ao;
            ao.lr = lr;
            ao.weight_decay = weight_decay;
            ao.decoupled = true;  // AdamW when weight_decay > 0
            Adam<float> adam(ao);
            TrainState state;
            fo.schedule = LrSchedule::parse(schedule);  // each member from the schedule's start
            if (resumed) {
                adam.load_state(ckpt->optimizer_state, model.params(), ckpt->iterations);  // ckpt->model was moved
                fo.schedule.restore(ckpt->schedule_state);
                state = ckpt->state;
                std::cout << "Resuming from " << resume << " after epoch " << state.epoch << "\n";
                if (root && state.epoch > 0 && !std::filesystem::exists(fo.checkpoint))
                    throw FileError(fo.checkpoint + ": the best model of the interrupted run is missing "
                                    "(resume with the same --out)");
            }
            fo.group = group;
            history = fit(model, adam, train, val, fo, &state);
            if (!root) continue;  // rank 0 tests the best model and writes the report

            // Epoch times, and how to read under- vs overfitting from the history.
            double total_s = 0, best_val = 1e300;
            for (auto& h : history) {
                total_s += h.seconds;
                if (h.val_loss < best_val) best_val = h.val_loss, best_epoch = h.epoch;
            }
            std::cout << std::fixed << std::setprecision(2) << "\nwall time per epoch: "
                      << total_s / double(history.size()) << " s (mean of " << history.size()
                      << "), training only\n";
            std::cout.unsetf(std::ios::floatfield);
        }
        if (!root) return 0;

        // The model to test: the best checkpoint, or the members' average.
        std::string best_path = out_dir + "/best.kitnn";
        Sequential<float> best = [&] {
            if (ensemble == 1) return load_model<float>(best_path);
            std::vector<Sequential<float>> members;
            for (int k = 0; k < ensemble; ++k) {
                const std::string p = out_dir + "/member-" + std::to_string(k + 1) + "/best.kitnn";
                if (!std::filesystem::exists(p))
                    throw FileError(p + ": ensemble member " + std::to_string(k + 1) +
                                    " is missing (resume with the same --out)");
                members.push_back(load_model<float>(p));
                const auto te = evaluate(members.back(), test);
                std::cout << "member " << k + 1 << ": " << p << ", test accuracy " << std::setprecision(4)
                          << te.accuracy << "\n";
                std::cout.unsetf(std::ios::floatfield);
            }
            Sequential<float> e = make_ensemble(members, seed);
            Metadata meta = {{"model", model_name}, {"dataset", dataset}, {"seed", std::to_string(seed)},
                             {"train.ensemble", std::to_string(ensemble)}};
            save_model(best_path, e, meta);  // atomic, like every checkpoint
            std::cout << "ensemble of " << ensemble << " (their mean output, " << e.param_count()
                      << " parameters): " << best_path << "\n";
            return e;
        }();
        const auto tr = evaluate(best, train);
        std::cout << std::fixed << std::setprecision(4) << "best model: "
                  << (ensemble > 1 ? "ensemble, last member's best epoch " : "epoch ") << best_epoch << ", "
                  << best_path << "\n"
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
        if (!report_dir.empty()) {
            const auto files = viz::write_report(report_dir, history, best, test, info.class_names);
            std::cout << "report: " << files.size() << " pictures in " << report_dir << "\n";
        }
        return 0;
    };
#ifdef KITNN_WITH_MPI
    if (world && world->size() > 1) {
        // An error on one rank ends the job: the others would wait for it forever.
        try {
            return body();
        } catch (const std::exception& e) {
            world->abort_job(std::string("mnist_train: error: ") + e.what());
        }
    }
#endif
    return kitnn_examples::guarded("mnist_train", body);
}
