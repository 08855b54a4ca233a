// DataParallel (train/data_parallel.hpp): a step split across replicas equals the plain
// step (in double, up to rounding), for any split of the batch; dropout stays
// reproducible; the guard still stops before the update; fit() with replicas resumes
// bit for bit; and the automatic choice and the refusals.
#include "temp_dir.hpp"

#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

using namespace kitnn;
namespace fs = std::filesystem;
using K = std::array<int, 2>;

namespace {

// A small convolutional network with every kind of parameter the zoo's small models
// have; `dropout` adds a Dropout layer (random masks in training mode).
template <class T>
Sequential<T> small_net(std::uint64_t seed, bool dropout) {
    Sequential<T> m(Shape::image(1, 8, 8), seed);
    m.template add<Conv2D>(3, K{3, 3}, Activation::relu, Padding::same);
    m.template add<MaxPool2D>(K{2, 2});
    m.template add<Flatten>();
    m.template add<Dense>(12, Activation::relu);
    if (dropout) m.template add<Dropout>(0.4);
    m.template add<Dense>(4);
    return m;
}

// The same with an Inception-style container: two convolutions side by side, concatenated,
// one of them followed by Dropout inside its branch when `dropout`.
template <class T>
Sequential<T> branchy_net(std::uint64_t seed, bool dropout) {
    Sequential<T> m(Shape::image(1, 8, 8), seed);
    auto inc = std::make_unique<Branches<T>>(Merge::concat);
    inc->branch().template add<Conv2D>(2, K{3, 3}, Activation::relu, Padding::same);
    auto& b = inc->branch();
    b.template add<Conv2D>(2, K{1, 1}, Activation::relu);
    if (dropout) b.template add<Dropout>(0.3);
    m.add(std::move(inc));
    m.template add<MaxPool2D>(K{2, 2});
    m.template add<Flatten>();
    m.template add<Dense>(4);
    return m;
}

// A layer type of the program's own: works in a model, unknown to the model file.
template <class T>
class Twice : public Layer<T> {
public:
    std::string type() const override { return "Twice"; }
    Config config() const override { return {}; }
    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        y = x * T(2);
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (dx) *dx = dy * T(2);
    }

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

template <class T>
Tensor<T> random_images(Eigen::Index n, Rng& rng) {
    Tensor<T> x(n, 1, 8, 8);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = T(rng.uniform());
    return x;
}

std::vector<std::uint8_t> random_labels(Eigen::Index n, Rng& rng) {
    std::vector<std::uint8_t> y(static_cast<size_t>(n));
    for (auto& v : y) v = std::uint8_t(rng.below(4));
    return y;
}

template <class T>
std::vector<T> weights(Sequential<T>& m) {
    std::vector<T> w;
    for (auto* p : m.params()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
    return w;
}

double max_rel_diff(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double m = 0;
    for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
    return m;
}

}  // namespace

TEST_CASE("DataParallel: a split step equals the plain step (double), for every split", "[data_parallel]") {
    // Batch sizes that split evenly, unevenly (7 into 3 parts: 2, 2, 3) and into
    // fewer samples than replicas (1 sample, 3 replicas: one part).
    for (int replicas : {2, 3})
    for (bool branchy : {false, true}) {
        for (Eigen::Index n : {Eigen::Index(8), Eigen::Index(7), Eigen::Index(1)}) {
            INFO(replicas << " replicas, batch " << n << (branchy ? ", with branches" : ""));
            auto plain = branchy ? branchy_net<double>(3, false) : small_net<double>(3, false);
            auto split = clone_model(plain);
            DataParallel<double> dp(split, replicas);
            CHECK(dp.replicas() == replicas);
            Adam<double> a1, a2;
            SoftmaxCrossEntropy<double> ce;
            Tensor<double> dl;
            Rng rng(9);
            for (int step = 0; step < 3; ++step) {
                const auto x = random_images<double>(n, rng);
                const auto y = random_labels(n, rng);
                std::int64_t c1 = -1, c2 = -1;
                const double l1 = train_step(plain, a1, ce, x, y, dl, &c1);
                const double l2 = dp.step(a2, x, y, &c2);
                CHECK(l2 == Approx(l1).epsilon(1e-12));
                CHECK(c2 == c1);
            }
            const auto w1 = weights(plain), w2 = weights(split);
            CHECK(max_rel_diff(w2, w1) < 1e-12);
            auto untrained = branchy ? branchy_net<double>(3, false) : small_net<double>(3, false);
            CHECK(w1 != weights(untrained));  // the steps did change the weights
        }
    }
}

TEST_CASE("DataParallel: the replicas follow weights changed between steps", "[data_parallel]") {
    auto plain = small_net<double>(4, false);
    auto split = clone_model(plain);
    DataParallel<double> dp(split, 2);
    SGD<double> s1, s2;
    SoftmaxCrossEntropy<double> ce;
    Tensor<double> dl;
    Rng rng(5);
    const auto x = random_images<double>(6, rng);
    const auto y = random_labels(6, rng);
    train_step(plain, s1, ce, x, y, dl);
    dp.step(s2, x, y);
    // As a resume or a load would: new weights in the model, outside DataParallel.
    for (auto* m : {&plain, &split})
        for (auto* p : m->params()) as_vector(p->value) *= 0.5;
    train_step(plain, s1, ce, x, y, dl);
    dp.step(s2, x, y);
    CHECK(max_rel_diff(weights(split), weights(plain)) < 1e-12);
}

TEST_CASE("DataParallel: dropout masks do not depend on the split, and differ between samples",
          "[data_parallel]") {
    auto run = [](int replicas) {
        auto m = small_net<double>(6, true);
        DataParallel<double> dp(m, replicas);
        Adam<double> adam;
        Rng rng(7);
        for (int step = 0; step < 4; ++step) {
            // 9 samples: parts of 5 + 4 or 3 + 3 + 3 (13 * 9 units per sample: odd starts).
            auto x = random_images<double>(9, rng);
            auto y = random_labels(9, rng);
            dp.step(adam, x, y);
        }
        return weights(m);
    };
    const auto one = run(1);
    CHECK(run(2) == run(2));  // bit for bit, for the same number of replicas
    CHECK(run(3) == run(3));
    // Every part draws the masks the whole batch gets at its samples: the same training
    // as one part, up to the order of the sums.
    CHECK(max_rel_diff(run(2), one) < 1e-12);
    CHECK(max_rel_diff(run(3), one) < 1e-12);
    auto untrained = small_net<double>(6, true);
    CHECK(one != weights(untrained));

    // The two copies of one sample get different masks (positions 0 and 1 of the batch).
    // The model's gradient after the step is the mean of the two copies' gradients; with
    // equal masks it would equal the first copy's alone, which `copy` recomputes.
    auto m = small_net<float>(6, true);
    auto copy = clone_model(m);
    *copy.layer(4).generator() = *m.layer(4).generator();
    DataParallel<float> dp(m, 2);
    SGD<float> sgd, sgd2;
    Rng rng(8);
    auto x = random_images<float>(1, rng);
    Tensor<float> xx(2, 1, 8, 8);
    std::copy(x.data(), x.data() + x.size(), xx.data());
    std::copy(x.data(), x.data() + x.size(), xx.data() + x.size());
    dp.step(sgd, xx, {1, 1});
    SoftmaxCrossEntropy<float> ce;
    Tensor<float> dl;
    train_step(copy, sgd2, ce, x, {1}, dl);
    bool differs = false;
    for (size_t k = 0; k < m.params().size(); ++k)
        differs = differs || as_vector(m.params()[k]->grad) != as_vector(copy.params()[k]->grad);
    CHECK(differs);
}

TEST_CASE("DataParallel: a non-finite gradient stops before any update", "[data_parallel][guard]") {
    auto m = small_net<float>(2, false);
    DataParallel<float> dp(m, 2);
    Adam<float> adam;
    Rng rng(3);
    auto x = random_images<float>(6, rng);
    const auto y = random_labels(6, rng);
    x.data()[x.size() - 1] = std::numeric_limits<float>::quiet_NaN();  // in the second replica's part
    const auto before = weights(m);
    CHECK_THROWS_AS(dp.step(adam, x, y), NonFiniteError);
    CHECK(weights(m) == before);
    CHECK(adam.iterations() == 0);
    CHECK_THROWS_WITH(dp.step(adam, x, std::vector<std::uint8_t>(5)), Catch::Contains("5 labels for 6 samples"));
}

TEST_CASE("DataParallel: BatchNorm synchronised, and the automatic choice", "[data_parallel]") {
    Sequential<float> bn(Shape::image(1, 8, 8));
    bn.add<Conv2D>(2, K{3, 3});
    bn.add<BatchNorm>();
    bn.add<Flatten>();
    bn.add<Dense>(3);
    CHECK(DataParallel<float>::supported(bn));  // synchronised BatchNorm
    CHECK(DataParallel<float>::has_batch_stats(bn));
    CHECK(choose_replicas(bn, 2) == 2);
    CHECK_THROWS_AS(choose_replicas(bn, -1), std::invalid_argument);

    auto keck = zoo::mnist_model<float>("keck", 1), kerascnn = zoo::mnist_model<float>("kerascnn", 1);
    CHECK(choose_replicas(keck, 1) == 1);
    CHECK(choose_replicas(keck, 3) == 3);
    // Automatic: one replica per thread for small models, none for large ones.
    const int saved = max_threads();
    set_threads(2);
    CHECK(choose_replicas(keck, 0) == (max_threads() > 1 ? 2 : 1));
    CHECK(choose_replicas(bn, 0) == (max_threads() > 1 ? 2 : 1));  // BatchNorm too: synchronised
    CHECK(choose_replicas(kerascnn, 0) == 1);  // 12 M multiply-adds per sample: threads inside layers
    auto best = zoo::mnist_model<float>("best", 1);
    CHECK(choose_replicas(best, 0) == 1);      // 3.8 M
    set_threads(saved);
}

TEST_CASE("fit with replicas: 2 + 2 epochs from a checkpoint equal 4 uninterrupted, bit for bit",
          "[data_parallel][fit][resume]") {
    // Synthetic 4-class data: a bright bar in one of four rows.
    Rng rng(12);
    Tensor<float> images(200, 1, 8, 8);
    std::vector<std::uint8_t> labels(200);
    for (Eigen::Index i = 0; i < 200; ++i) {
        const int c = int(rng.below(4));
        labels[size_t(i)] = std::uint8_t(c);
        for (int k = 0; k < 64; ++k) images.data()[i * 64 + k] = float(0.2 * rng.uniform());
        for (int j = 1; j < 7; ++j) images.data()[i * 64 + (1 + 2 * c) * 8 + j] = 1.0f;
    }
    LabelledView train{&images, &labels, 0, 160}, val{&images, &labels, 160, 200};
    kitnn_test::TempDir dir("dp_resume");
    std::ostringstream log;
    auto options = [&](const std::string& sub) {
        FitOptions fo;
        fo.epochs = 4;
        fo.batch = 30;  // a partial last batch
        fo.seed = 3;
        fo.progress = 0;
        fo.out = &log;
        fo.replicas = 2;
        fs::create_directories(dir.path / sub);
        fo.last_checkpoint = (dir.path / sub / "last.kitnn").string();
        return fo;
    };
    auto full = small_net<float>(9, true);
    Adam<float> a1;
    const auto h_full = fit(full, a1, train, val, options("full"));
    // It learns: the loss falls and the validation accuracy (no dropout) is far above
    // chance (0.25 for 4 classes).
    INFO("loss " << h_full.front().loss << " -> " << h_full.back().loss << ", val_acc " << h_full.back().val_acc);
    CHECK(h_full.back().loss < h_full.front().loss);
    CHECK(h_full.back().val_acc >= 0.5);  // chance: 0.25 (40 samples; 0.6 measured)
    CHECK(h_full.back().acc > 0.3);  // with dropout on, noisier

    auto part = small_net<float>(9, true);
    Adam<float> a2;
    auto fo = options("part");
    fo.on_epoch_end = [](const EpochStats& e) { return e.epoch < 2; };
    CHECK(fit(part, a2, train, val, fo).size() == 2);
    auto ck = load_training_checkpoint<float>(fo.last_checkpoint);
    Adam<float> a3;
    ck.restore_optimizer(a3);
    const auto h = fit(ck.model, a3, train, val, options("part"), &ck.state);
    REQUIRE(h.size() == 4);
    CHECK(h[3].val_loss == h_full[3].val_loss);
    CHECK(weights(ck.model) == weights(full));
}

TEST_CASE("DataParallel: errors inside a replica, empty batches, a replaced model, custom layers",
          "[data_parallel]") {
    auto m = branchy_net<float>(2, true);
    DataParallel<float> dp(m, 2);
    Adam<float> adam;
    Rng rng(4);
    const auto x = random_images<float>(6, rng);
    auto y = random_labels(6, rng);
    const auto before = weights(m);
    // A bad label in the second replica's part: its exception comes out of the step
    // (not out of the OpenMP region, which would end the program), nothing is updated.
    y[5] = 9;
    CHECK_THROWS_AS(dp.step(adam, x, y), std::out_of_range);
    CHECK(weights(m) == before);
    CHECK(adam.iterations() == 0);
    // An empty batch: as train_step, no update and a zero loss.
    std::int64_t c = -1;
    CHECK(dp.step(adam, Tensor<float>(0, 1, 8, 8), {}, &c) == 0);
    CHECK(c == 0);
    CHECK(weights(m) == before);
    // A different model in the same variable: refused, not read through stale pointers.
    m = small_net<float>(3, false);
    CHECK_THROWS_WITH(dp.step(adam, x, random_labels(6, rng)), Catch::Contains("make a new one"));

    // A layer type nobody registered cannot be cloned: automatic or explicit, that is a
    // clear error naming the type (UnregisteredLayerError), never a quiet fallback to
    // the plain step (layers/registry.hpp).
    Sequential<float> custom(Shape::image(1, 8, 8), 1);
    custom.add<Conv2D>(2, K{3, 3});
    custom.add(std::make_unique<Twice<float>>());
    custom.add<Flatten>();
    custom.add<Dense>(4);
    const int saved = max_threads();
    set_threads(2);
    CHECK_THROWS_AS(make_data_parallel(custom, 0), UnregisteredLayerError);
    CHECK_THROWS_WITH(make_data_parallel(custom, 2), Catch::Contains("Twice") && Catch::Contains("not registered"));
    // Automatic replicas are capped.
    auto keck = zoo::mnist_model<float>("keck", 1);
    set_threads(16);
    CHECK(choose_replicas(keck, 0) == (max_threads() >= kMaxAutoReplicas ? kMaxAutoReplicas : max_threads()));
    set_threads(saved);
}

TEST_CASE("fit with replicas: a NaN stops training with the usual message", "[data_parallel][fit][guard]") {
    Rng rng(13);
    Tensor<float> images = random_images<float>(60, rng);
    auto labels = random_labels(60, rng);
    images.data()[59 * 64 + 10] = std::numeric_limits<float>::quiet_NaN();  // in the last batch
    LabelledView train{&images, &labels, 0, 60}, val{&images, &labels, 0, 0};
    auto m = small_net<float>(1, true);
    Adam<float> adam;
    std::ostringstream log;
    FitOptions fo;
    fo.epochs = 1;
    fo.batch = 20;
    fo.progress = 0;
    fo.out = &log;
    fo.replicas = 2;
    fo.seed = 1;
    try {
        fit(m, adam, train, val, fo);
        FAIL("fit did not stop");
    } catch (const NonFiniteError& e) {
        const std::string what = e.what();
        CHECK_THAT(what, Catch::Contains("training diverged in epoch 1"));
        CHECK_THAT(what, Catch::Contains("the weights were not updated"));
    }
}
