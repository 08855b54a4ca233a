// fit(): determinism (same seed + threads -> same weights), checkpoint-best,
// history CSV, partial last batch, divergence guard — on small synthetic images.
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace kitnn;
namespace fs = std::filesystem;

namespace {

// Three classes of 1x10x10 images: a bright bar in one of three rows, plus noise.
struct Synthetic {
    Tensor<float> images;
    std::vector<std::uint8_t> labels;
};
Synthetic make_data(Eigen::Index n, std::uint64_t seed) {
    Rng rng(seed);
    Synthetic d;
    d.images.resize(n, 1, 10, 10);
    d.labels.resize(size_t(n));
    for (Eigen::Index i = 0; i < n; ++i) {
        const int c = int(rng.below(3));
        d.labels[size_t(i)] = std::uint8_t(c);
        for (int k = 0; k < 100; ++k) d.images.data()[i * 100 + k] = float(0.2 * rng.uniform());
        for (int x = 1; x < 9; ++x) d.images.data()[i * 100 + (2 + 3 * c) * 10 + x] = 1.0f;
    }
    return d;
}

Sequential<float> small_cnn(std::uint64_t seed) {
    using K = std::array<int, 2>;
    Sequential<float> m(Shape::image(1, 10, 10), seed);
    m.add<Conv2D>(4, K{3, 3}, Activation::relu);
    m.add<MaxPool2D>(K{2, 2});
    m.add<Flatten>();
    m.add<Dense>(8, Activation::relu);
    m.add<Dropout>(0.25);
    m.add<Dense>(3);
    return m;
}

fs::path temp_dir(const std::string& name) {
    const char* t = std::getenv("KITNN_TEST_TMP");
    fs::path p = (t ? fs::path(t) : fs::temp_directory_path() / "kitnn_tests") / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

std::vector<float> all_weights(Sequential<float>& m) {
    std::vector<float> w;
    for (auto* p : m.params()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
    return w;
}

std::vector<float> train_once(std::uint64_t seed, const Synthetic& d, int epochs = 2) {
    auto m = small_cnn(seed);
    Adam<float> adam;
    FitOptions fo;
    fo.epochs = epochs;
    fo.batch = 32;  // 250 train samples -> a partial last batch of 26
    fo.seed = seed;
    fo.progress = 0;
    std::ostringstream log;
    fo.out = &log;
    fit(m, adam, LabelledView{&d.images, &d.labels, 0, 250}, LabelledView{&d.images, &d.labels, 250, 300}, fo);
    return all_weights(m);
}

}  // namespace

TEST_CASE("fit: the same seed and thread count give the same final weights", "[fit]") {
    const auto d = make_data(300, 3);
    const auto a = train_once(7, d), b = train_once(7, d), c = train_once(8, d);
    REQUIRE(a.size() == b.size());
    CHECK(a == b);  // bit for bit
    CHECK(a != c);
}

TEST_CASE("fit: learns, checkpoints the best epoch atomically, writes the history", "[fit]") {
    const auto d = make_data(600, 4);
    const fs::path dir = temp_dir("fit");
    auto m = small_cnn(1);
    Adam<float> adam;
    FitOptions fo;
    fo.epochs = 5;
    fo.batch = 50;
    fo.progress = 0;
    fo.checkpoint = (dir / "best.kitnn").string();
    fo.history_csv = (dir / "history.csv").string();
    fo.metadata = {{"model", "small_cnn"}};
    std::ostringstream log;
    fo.out = &log;
    LabelledView train{&d.images, &d.labels, 0, 500}, val{&d.images, &d.labels, 500, 600};
    const auto h = fit(m, adam, train, val, fo);

    REQUIRE(h.size() == 5);
    CHECK(h.back().val_acc >= 0.95);
    CHECK(h.back().loss < h.front().loss);
    CHECK_THAT(log.str(), Catch::Contains("Epoch 5/5") && Catch::Contains("val_loss improved from inf"));

    // The checkpoint holds the epoch with the lowest val_loss.
    size_t best = 0;
    for (size_t i = 1; i < h.size(); ++i)
        if (h[i].val_loss < h[best].val_loss) best = i;
    Metadata meta;
    auto loaded = load_model<float>(fo.checkpoint, &meta);
    CHECK(meta["model"] == "small_cnn");
    CHECK(evaluate(loaded, val).loss == Approx(h[best].val_loss).epsilon(1e-5));
    for (auto& e : fs::directory_iterator(dir))
        CHECK(e.path().string().find(".tmp.") == std::string::npos);

    std::ifstream csv(fo.history_csv);
    std::string line;
    std::getline(csv, line);
    CHECK(line == "epoch,loss,acc,val_loss,val_acc,seconds,lr,images_per_s,improved");
    int rows = 0;
    while (std::getline(csv, line)) ++rows;
    CHECK(rows == 5);
}

TEST_CASE("fit: a diverging run stops with the epoch and batch named", "[fit]") {
    const auto d = make_data(100, 5);
    auto m = small_cnn(1);
    // Poison one weight: the first forward gives a non-finite loss.
    m.params()[0]->value.data()[0] = std::numeric_limits<float>::quiet_NaN();
    Adam<float> adam;
    FitOptions fo;
    fo.epochs = 1;
    fo.batch = 20;
    fo.progress = 0;
    std::ostringstream log;
    fo.out = &log;
    LabelledView train{&d.images, &d.labels, 0, 100};
    CHECK_THROWS_WITH(fit(m, adam, train, LabelledView{}, fo),
                      Catch::Contains("epoch 1, batch 1"));
}
