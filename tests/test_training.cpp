// Training beyond the plain step: learning-rate schedules, augmentation, AdamW,
// the non-finite guard, early stopping, and training checkpoints (--resume) that
// end with bit-identical weights to an uninterrupted run.
#include "temp_dir.hpp"

#include <kitnn/kitnn.hpp>
#include <kitnn/layers/batch_norm.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
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

// Every stateful piece a resume must restore: Dropout's generator, BatchNorm's
// moving statistics, Adam's moments.
Sequential<float> net(std::uint64_t seed) {
    using K = std::array<int, 2>;
    Sequential<float> m(Shape::image(1, 10, 10), seed);
    m.add<Conv2D>(4, K{3, 3});
    m.add<BatchNorm>();
    m.add<ReLU>();
    m.add<MaxPool2D>(K{2, 2});
    m.add<Flatten>();
    m.add<Dense>(8, Activation::relu);
    m.add<Dropout>(0.3);
    m.add<Dense>(3);
    return m;
}

std::vector<float> weights_and_state(Sequential<float>& m) {
    std::vector<float> w;
    for (size_t i = 0; i < m.size(); ++i) {
        auto ps = m.layer(i).params();
        for (auto* s : m.layer(i).state()) ps.push_back(s);
        for (auto* p : ps) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
    }
    return w;
}

}  // namespace

TEST_CASE("schedules: values, parsing errors and the plateau rule", "[schedule]") {
    auto c = LrSchedule::parse("constant");
    CHECK(c.lr(0.1, 5, 0.5, 10) == 0.1);

    auto s = LrSchedule::parse("step:2:0.5");
    CHECK(s.lr(1.0, 0, 0, 10) == 1.0);
    CHECK(s.lr(1.0, 1, 0.9, 10) == 1.0);
    CHECK(s.lr(1.0, 2, 0, 10) == 0.5);
    CHECK(s.lr(1.0, 5, 0, 10) == 0.25);

    auto cos = LrSchedule::parse("cosine:0.1");
    CHECK(cos.lr(1.0, 0, 0, 4) == Approx(1.0));
    CHECK(cos.lr(1.0, 2, 0, 4) == Approx(0.55));  // halfway: (1 + 0.1) / 2
    CHECK(cos.lr(1.0, 3, 0.999999, 4) == Approx(0.1).epsilon(0).margin(1e-9));
    CHECK(cos.lr(1.0, 1, 0.5, 4) < cos.lr(1.0, 1, 0.25, 4));  // decays within an epoch too

    auto w = LrSchedule::parse("warmup=2,cosine");
    CHECK(w.lr(1.0, 0, 0.5, 10) < 0.3);                         // ramping up
    CHECK(w.lr(1.0, 2, 0, 10) == Approx(cos.lr(1.0, 2, 0, 10) - 0.1 * (1 - cos.lr(1.0, 2, 0, 10)) / 0.9).epsilon(1e-9));

    auto p = LrSchedule::parse("plateau:0.5:2:0.2");
    CHECK(!p.end_epoch(1.0));  // best
    CHECK(!p.end_epoch(1.1));  // 1 bad epoch
    CHECK(p.end_epoch(1.2));   // 2 bad epochs: reduced
    CHECK(p.lr(1.0, 3, 0, 10) == 0.5);
    CHECK(!p.end_epoch(0.9));  // better again
    p.end_epoch(1.0);
    CHECK(p.end_epoch(1.0));
    CHECK(p.lr(1.0, 6, 0, 10) == 0.25);
    p.end_epoch(1.0);
    p.end_epoch(1.0);
    CHECK(p.lr(1.0, 8, 0, 10) == 0.2);  // floor
    // The state survives a checkpoint round trip as text.
    auto q = LrSchedule::parse("plateau:0.5:2:0.2");
    q.restore(p.state_str());
    CHECK(q.lr(1.0, 8, 0, 10) == p.lr(1.0, 8, 0, 10));
    CHECK(q.state_str() == p.state_str());

    for (const char* bad : {"", "cosin", "step:0:0.5", "step:2", "step:2:1.5", "plateau:1:2",
                            "plateau:0.5:0", "cosine:-1", "warmup=1", "warmup=x,cosine", "step:a:b"})
        CHECK_THROWS_WITH(LrSchedule::parse(bad), Catch::Contains("learning-rate schedule"));
    CHECK_THROWS(LrSchedule().restore("garbage"));
}

TEST_CASE("augmentation: identity when off, deterministic, thread-independent, keeps the digit", "[augment]") {
    // A 1x28x28 "digit": a filled 8x12 block around the centre.
    Tensor<float> x(6, 1, 28, 28);
    x.setZero();
    for (int n = 0; n < 6; ++n)
        for (int i = 8; i < 20; ++i)
            for (int j = 10; j < 18; ++j) x(n, 0, i, j) = 1.0f;
    const Tensor<float> orig = x;
    AugmentBuffers<float> buf;
    Rng r0(1);
    augment_batch(x, AugmentOptions{}, r0, buf);
    CHECK(as_vector(x) == as_vector(orig));

    const auto o = AugmentOptions::parse("shift=2,rotate=10,scale=0.1");
    CHECK(o.shift == 2);
    CHECK(o.rotate == 10);
    CHECK(o.scale == 0.1);
    Tensor<float> a = orig, b = orig;
    Rng ra(7), rb(7);
    // Same seed, 1 thread against 2: same images. (Restores the count afterwards.)
    const int threads_before = max_threads();
    set_threads(1);
    augment_batch(a, o, ra, buf);
    set_threads(2);
#ifdef _OPENMP
    REQUIRE(threads_for(6, 6 * 28 * 28 * 12) == 2);  // the resampling really runs on 2
#endif
    augment_batch(b, o, rb, buf);
    set_threads(threads_before);
    CHECK(as_vector(a) == as_vector(b));

    const double mass0 = as_vector(orig).sum() / 6;
    for (int n = 0; n < 6; ++n) {
        double mass = 0, mi = 0, mj = 0, lo = 1e9, hi = -1e9;
        for (int i = 0; i < 28; ++i)
            for (int j = 0; j < 28; ++j) {
                const double v = a(n, 0, i, j);
                mass += v, mi += v * i, mj += v * j;
                lo = std::min(lo, v), hi = std::max(hi, v);
            }
        INFO("image " << n);
        CHECK(lo >= 0.0);           // bilinear: no overshoot
        CHECK(hi <= 1.0 + 1e-6);
        // Area scales by s^2 in [0.81, 1.21]; the block stays inside the frame.
        CHECK(mass / mass0 > 0.78);
        CHECK(mass / mass0 < 1.25);
        // The centre of mass moves by the shift (<= 2 px per axis) only.
        CHECK(std::abs(mi / mass - 13.5) <= 2.0 + 1e-3);
        CHECK(std::abs(mj / mass - 13.5) <= 2.0 + 1e-3);
    }
    CHECK(as_vector(a) != as_vector(orig));
    bool differ = false;  // each image gets its own transform
    for (int k = 0; k < 28 * 28; ++k) differ |= a.data()[k] != a.data()[28 * 28 + k];
    CHECK(differ);

    // A pure shift (shift=1, no rotation, no scaling) moves a one-pixel impulse by at
    // most one pixel per axis: its mass stays 1 and lands in a 2x2 block inside the
    // 3x3 neighbourhood, split as a product of an x and a y weight (bilinear: the
    // block has rank one), and differently per image. A rotation or scaling leaking
    // into the map breaks the product form or the mass.
    {
        Tensor<double> imp(8, 1, 28, 28);
        imp.setZero();
        for (int n = 0; n < 8; ++n) imp(n, 0, 13, 14) = 1.0;
        AugmentBuffers<double> bd;
        Rng rs(11);
        augment_batch(imp, AugmentOptions::parse("shift=1"), rs, bd);
        std::set<std::pair<long, long>> centres;
        for (int n = 0; n < 8; ++n) {
            INFO("impulse image " << n);
            double mass = 0, mi = 0, mj = 0;
            int lo_i = 99, hi_i = -1, lo_j = 99, hi_j = -1;
            for (int i = 0; i < 28; ++i)
                for (int j = 0; j < 28; ++j) {
                    const double v = imp(n, 0, i, j);
                    if (v == 0) continue;
                    mass += v, mi += v * i, mj += v * j;
                    lo_i = std::min(lo_i, i), hi_i = std::max(hi_i, i);
                    lo_j = std::min(lo_j, j), hi_j = std::max(hi_j, j);
                }
            CHECK(mass == Approx(1.0).epsilon(0).margin(1e-12));
            CHECK(lo_i >= 12);
            CHECK(hi_i <= 14);
            CHECK(lo_j >= 13);
            CHECK(hi_j <= 15);
            CHECK(hi_i - lo_i <= 1);
            CHECK(hi_j - lo_j <= 1);
            const double v00 = imp(n, 0, lo_i, lo_j), v01 = imp(n, 0, lo_i, lo_j + 1),
                         v10 = imp(n, 0, lo_i + 1, lo_j), v11 = imp(n, 0, lo_i + 1, lo_j + 1);
            CHECK(v00 * v11 == Approx(v01 * v10).epsilon(0).margin(1e-12));
            CHECK(std::abs(mi / mass - 13) <= 1 + 1e-12);
            CHECK(std::abs(mj / mass - 14) <= 1 + 1e-12);
            centres.insert({std::lround(mi / mass * 1e6), std::lround(mj / mass * 1e6)});
        }
        CHECK(centres.size() == 8);  // every image its own shift
    }

    for (const char* bad : {"shift", "shift=x", "rot=3", "scale=1", "rotate=-1", "shift=2;rotate=1"})
        CHECK_THROWS_WITH(AugmentOptions::parse(bad), Catch::Contains("augmentation"));
    CHECK(!AugmentOptions::parse("none").enabled());
}

TEST_CASE("elastic augmentation: a smooth field of the documented size, on every channel", "[augment]") {
    const auto o = AugmentOptions::parse("elastic=3,elastic_sigma=2");
    CHECK(o.enabled());
    CHECK(o.elastic == 3);
    CHECK(o.elastic_sigma == 2);
    CHECK(o.shift == 0);
    CHECK(AugmentOptions::parse("elastic=34").elastic_sigma == 4);  // Simard's default
    // The spec survives a round trip (checkpoints store str() and resume from it).
    const auto back = AugmentOptions::parse(AugmentOptions::parse("shift=1,elastic=34").str());
    CHECK(back.shift == 1);
    CHECK(back.elastic == 34);
    CHECK(back.elastic_sigma == 4);
    CHECK(AugmentOptions::parse("shift=1").str().find("elastic") == std::string::npos);
    for (const char* bad : {"elastic=-1", "elastic=300", "elastic_sigma=0.1", "elastic_sigma=20",
                            "elastic", "elastic=x", "sigma=4"})
        CHECK_THROWS_WITH(AugmentOptions::parse(bad), Catch::Contains("augmentation"));

    // Channel 0 holds the column index, channel 1 the row index: bilinear sampling of a
    // linear ramp is exact, so away from the border the output minus the ramp is the
    // field itself, dx in channel 0 and dy in channel 1. Channel 2 repeats channel 0.
    const int N = 40, H = 28, W = 28;
    Tensor<double> x(N, 3, H, W);
    for (int n = 0; n < N; ++n)
        for (int i = 0; i < H; ++i)
            for (int j = 0; j < W; ++j) x(n, 0, i, j) = j, x(n, 1, i, j) = i, x(n, 2, i, j) = j;
    Tensor<double> a = x, b = x;
    AugmentBuffers<double> buf;
    Rng ra(5), rb(5);
    const int threads_before = max_threads();
    set_threads(1);
    augment_batch(a, o, ra, buf);
    set_threads(2);
    augment_batch(b, o, rb, buf);
    set_threads(threads_before);
    CHECK(as_vector(a) == as_vector(b));  // the fields do not depend on the thread count

    // The smoothed U(-1, 1) noise has standard deviation elastic / sqrt(3) * sum_t k_t^2
    // where the sum runs over the ceil(3 sigma)-radius normalised Gaussian k (the 2-D
    // kernel is k k^T, whose squares sum to (sum_t k_t^2)^2, hence no square root).
    const int r = 6;
    double ksum = 0, k2 = 0;
    for (int t = -r; t <= r; ++t) ksum += std::exp(-0.5 * t * t / 4.0);
    for (int t = -r; t <= r; ++t) k2 += std::pow(std::exp(-0.5 * t * t / 4.0) / ksum, 2);
    const double expected_sd = 3 / std::sqrt(3.0) * k2;
    double s = 0, ss = 0, lag = 0, far = 0;
    long count = 0, pairs = 0, far_pairs = 0;
    double maxabs = 0;
    for (int n = 0; n < N; ++n)
        for (int c = 0; c < 2; ++c)
            for (int i = r; i < H - r; ++i)
                for (int j = r; j < W - r; ++j) {
                    const double d = a(n, c, i, j) - x(n, c, i, j);
                    s += d, ss += d * d, ++count;
                    maxabs = std::max(maxabs, std::abs(d));
                    if (j + 1 < W - r) lag += d * (a(n, c, i, j + 1) - x(n, c, i, j + 1)), ++pairs;
                    if (j + 8 < W - r) far += d * (a(n, c, i, j + 8) - x(n, c, i, j + 8)), ++far_pairs;
                }
    const double mean = s / double(count), var = ss / double(count) - mean * mean;
    INFO("sd " << std::sqrt(var) << " expected " << expected_sd << " mean " << mean);
    CHECK(std::abs(mean) < 0.2 * expected_sd);
    CHECK(std::sqrt(var) == Approx(expected_sd).epsilon(0.15));
    CHECK(maxabs > 0.5 * expected_sd);
    // Smooth: the correlation of neighbours is that of a Gaussian of width sigma,
    // exp(-1 / (4 sigma^2)) = 0.94; eight pixels apart it has almost gone (0.0003).
    CHECK(lag / double(pairs) / var > 0.85);
    CHECK(std::abs(far / double(far_pairs) / var) < 0.25);
    // Every channel of an image moves by the same field; each image has its own.
    bool same = true, differ = false;
    for (int n = 0; n < N; ++n)
        for (int i = 0; i < H; ++i)
            for (int j = 0; j < W; ++j) same &= a(n, 2, i, j) == a(n, 0, i, j);
    for (int k = 0; k < H * W; ++k) differ |= a.data()[k] != a.data()[3 * H * W + k];
    CHECK(same);
    CHECK(differ);
}

TEST_CASE("AdamW decays the weights decoupled from the gradient", "[optim][adamw]") {
    Param<float> p;
    p.resize(2, 1, 1, 1);
    p.value.data()[0] = 1.0f, p.value.data()[1] = -2.0f;
    p.grad.setZero();  // no gradient: Adam's step is 0, only the decay acts
    AdamOptions o;
    o.lr = 0.1;
    o.weight_decay = 0.5;
    o.decoupled = true;
    Adam<float> adamw(o);
    adamw.step({&p});
    CHECK(p.value.data()[0] == Approx(1.0 * (1 - 0.05)));
    CHECK(p.value.data()[1] == Approx(-2.0 * (1 - 0.05)));
    // The L2 form instead feeds the decay through Adam's normalisation: the first
    // step moves every weight by about lr, whatever its size.
    Param<float> q;
    q.resize(2, 1, 1, 1);
    q.value.data()[0] = 1.0f, q.value.data()[1] = -2.0f;
    q.grad.setZero();
    o.decoupled = false;
    Adam<float> l2(o);
    l2.step({&q});
    CHECK(q.value.data()[0] == Approx(1.0 - 0.1).epsilon(1e-4));
    CHECK(q.value.data()[1] == Approx(-2.0 + 0.1).epsilon(1e-4));
    // Two steps with nonzero gradients, in double, against values worked out by hand
    // (Python, outside kitnn) from the rule in adam.hpp:
    //   w *= 1 - lr*wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
    //   w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
    // Catches a decay taken after the update, scaled by the bias-corrected rate, or
    // folded into the gradient.
    Param<double> r;
    r.resize(2, 1, 1, 1);
    r.value.data()[0] = 1.0, r.value.data()[1] = -2.0;
    AdamOptions ow;
    ow.lr = 0.1;
    ow.weight_decay = 0.5;
    ow.decoupled = true;
    Adam<double> adamw2(ow);
    r.grad.data()[0] = 0.3, r.grad.data()[1] = -0.2;
    adamw2.step({&r});
    CHECK(r.value.data()[0] == Approx(0.8500010540814423).epsilon(0).margin(1e-14));
    CHECK(r.value.data()[1] == Approx(-1.8000015811138304).epsilon(0).margin(1e-14));
    r.grad.data()[0] = -0.1, r.grad.data()[1] = 0.4;
    adamw2.step({&r});
    CHECK(r.value.data()[0] == Approx(0.7674795445767139).epsilon(0).margin(1e-14));
    CHECK(r.value.data()[1] == Approx(-1.7466115958633759).epsilon(0).margin(1e-14));

    AdamW<float> w;
    CHECK(w.options().decoupled);
    CHECK(w.options().weight_decay == 0.01);
}

TEST_CASE("optimizer state: export, import, and clear errors on mismatch", "[optim][resume]") {
    auto m = net(1);
    Adam<float> a;
    for (auto* p : m.params()) p->grad.setConstant(0.5f);
    a.step(m.params());
    a.step(m.params());
    const auto st = a.state();
    CHECK(st.size() == 2 * m.params().size());
    Adam<float> b;
    b.load_state(st, m.params(), a.iterations());
    CHECK(b.iterations() == 2);
    CHECK(b.state().size() == st.size());
    for (size_t i = 0; i < st.size(); ++i) CHECK(as_vector(b.state()[i].second) == as_vector(st[i].second));
    auto other = net(1);
    other.add<Dense>(5);  // one more parameter pair
    Adam<float> c;
    CHECK_THROWS_WITH(c.load_state(st, other.params(), 2), Catch::Contains("buffers for"));
    CHECK_THROWS_WITH(c.load_state(st, {}, 2), Catch::Contains("buffers for 0 parameters"));
    auto st2 = st;
    st2[0].second.resize(3, 1, 1, 1);
    CHECK_THROWS_WITH(c.load_state(st2, m.params(), 2), Catch::Contains("adam.m.0"));
}

TEST_CASE("fit: a NaN gradient stops before the update and keeps the checkpoint", "[fit][guard]") {
    auto d = make_data(200, 5);
    kitnn_test::TempDir dir("guard");
    auto m = net(1);
    Adam<float> adam;
    FitOptions fo;
    fo.epochs = 3;
    fo.batch = 50;
    fo.progress = 0;
    fo.checkpoint = (dir.path / "best.kitnn").string();
    std::ostringstream log;
    fo.out = &log;
    LabelledView train{&d.images, &d.labels, 0, 150}, val{&d.images, &d.labels, 150, 200};
    fit(m, adam, train, val, fo);
    const auto saved = fs::last_write_time(fo.checkpoint);
    const auto file_bytes = [](const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    const std::string saved_bytes = file_bytes(fo.checkpoint);
    REQUIRE(saved_bytes.size() > 100);
    // An infinite pixel in every training image: the first batch diverges.
    for (Eigen::Index i = 0; i < 150; ++i) d.images(i, 0, 0, 0) = std::numeric_limits<float>::infinity();
    const auto before = weights_and_state(m);
    fo.epochs = 1;
    std::string msg;
    try {
        fit(m, adam, train, val, fo);
    } catch (const NonFiniteError& e) {
        msg = e.what();
    }
    CHECK_THAT(msg, Catch::Contains("training diverged in epoch 1, batch 1") &&
                        Catch::Contains("weights were not updated") &&
                        Catch::Contains("best.kitnn is kept"));
    // Kept means the same bytes (a rewrite of NaN weights, a truncation or a removal
    // would change them) and not even rewritten (the same modification time).
    CHECK(file_bytes(fo.checkpoint) == saved_bytes);
    CHECK(fs::last_write_time(fo.checkpoint) == saved);
    // Only BatchNorm's moving statistics (updated in forward) may have moved.
    auto after = weights_and_state(m);
    size_t changed_params = 0;
    size_t k = 0;
    for (size_t i = 0; i < m.size(); ++i) {
        for (auto* p : m.layer(i).params())
            for (Eigen::Index j = 0; j < p->value.size(); ++j, ++k) changed_params += before[k] != after[k];
        for (auto* s : m.layer(i).state()) k += size_t(s->value.size());
    }
    CHECK(changed_params == 0);
}

TEST_CASE("train_step: a non-finite gradient is named and stops the update", "[fit][guard]") {
    const auto d = make_data(20, 9);
    auto m = net(1);
    CHECK(nonfinite_gradient(m).empty());
    m.params()[2]->grad.data()[1] = std::numeric_limits<float>::quiet_NaN();
    CHECK(nonfinite_gradient(m) == "the gradient of layer 1 (BatchNorm) 'gamma'");
    // An infinite weight: the step throws before the optimizer runs.
    Adam<float> adam;
    SoftmaxCrossEntropy<float> ce;
    Tensor<float> x(4, 1, 10, 10), dl;
    std::copy(d.images.data(), d.images.data() + x.size(), x.data());
    std::vector<std::uint8_t> y(d.labels.begin(), d.labels.begin() + 4);
    m.params()[0]->value.data()[0] = std::numeric_limits<float>::infinity();
    const std::vector<float> w1(m.params()[4]->value.data(), m.params()[4]->value.data() + 8);
    CHECK_THROWS_AS(train_step(m, adam, ce, x, y, dl), NonFiniteError);
    CHECK(std::equal(w1.begin(), w1.end(), m.params()[4]->value.data()));  // no update
    CHECK(adam.iterations() == 0);
}

TEST_CASE("fit: early stopping ends the run when val_loss stops improving", "[fit][early]") {
    // Random labels: nothing generalises, so val_loss soon stops improving.
    auto d = make_data(300, 6);
    Rng r(3);
    for (auto& l : d.labels) l = std::uint8_t(r.below(3));
    auto m = net(2);
    AdamOptions ao;
    ao.lr = 0.01;
    Adam<float> adam(ao);
    FitOptions fo;
    fo.epochs = 40;
    fo.batch = 25;
    fo.progress = 0;
    fo.early_stopping = 2;
    std::ostringstream log;
    fo.out = &log;
    TrainState st;
    const auto h = fit(m, adam, LabelledView{&d.images, &d.labels, 0, 200},
                       LabelledView{&d.images, &d.labels, 200, 300}, fo, &st);
    REQUIRE(h.size() < 40);
    CHECK(st.since_best == 2);
    CHECK(h[h.size() - 1].val_loss >= st.best);
    CHECK(h[h.size() - 2].val_loss >= st.best);
    CHECK_THAT(log.str(), Catch::Contains("Early stopping"));
}

TEST_CASE("resume: 2 + 2 epochs from a checkpoint equal 4 uninterrupted, bit for bit", "[fit][resume]") {
    const auto d = make_data(300, 8);
    kitnn_test::TempDir dir("resume");
    LabelledView train{&d.images, &d.labels, 0, 230}, val{&d.images, &d.labels, 230, 300};
    auto options = [&](const std::string& sub, int epochs) {
        FitOptions fo;
        fo.epochs = epochs;
        fo.batch = 32;  // a partial last batch
        fo.seed = 11;
        fo.progress = 0;
        fo.schedule = LrSchedule::parse("warmup=1,cosine:0.0001");
        fo.augment = AugmentOptions::parse("shift=1,rotate=8,scale=0.1");
        fo.base_lr = 3e-3;
        fs::create_directories(dir.path / sub);
        fo.checkpoint = (dir.path / sub / "best.kitnn").string();
        fo.last_checkpoint = (dir.path / sub / "last.kitnn").string();
        fo.metadata = {{"model", "net"}};
        return fo;
    };
    std::ostringstream log;
    AdamOptions ao;
    ao.lr = 3e-3;
    ao.weight_decay = 1e-3;
    ao.decoupled = true;

    auto full = net(5);
    Adam<float> a1(ao);
    auto fo_full = options("full", 4);
    fo_full.out = &log;
    const auto h_full = fit(full, a1, train, val, fo_full);

    // The same run, interrupted after epoch 2 (as a kill would, once the
    // checkpoint of epoch 2 is on disk).
    auto part = net(5);
    Adam<float> a2(ao);
    auto fo_part = options("part", 4);
    fo_part.out = &log;
    fo_part.on_epoch_end = [](const EpochStats& e) { return e.epoch < 2; };
    CHECK(fit(part, a2, train, val, fo_part).size() == 2);
    // A fresh process would do exactly this: load the checkpoint and continue.
    auto ck = load_training_checkpoint<float>(fo_part.last_checkpoint);
    CHECK(ck.state.epoch == 2);
    CHECK(ck.state.history.size() == 2);
    CHECK(ck.metadata.at("model") == "net");
    Adam<float> a3(ao);
    ck.restore_optimizer(a3);
    CHECK(a3.iterations() == a2.iterations());
    auto fo_resume = options("part", 4);
    fo_resume.out = &log;
    fo_resume.schedule.restore(ck.schedule_state);
    const auto h = fit(ck.model, a3, train, val, fo_resume, &ck.state);
    REQUIRE(h.size() == 4);
    CHECK(h[3].val_loss == h_full[3].val_loss);
    CHECK(weights_and_state(ck.model) == weights_and_state(full));
    CHECK(a3.iterations() == a1.iterations());
    // The best-model checkpoint of the resumed run is the uninterrupted run's.
    auto b1 = load_model<float>(fo_full.checkpoint), b2 = load_model<float>(fo_part.checkpoint);
    CHECK(weights_and_state(b1) == weights_and_state(b2));

    // A best-model file is not a training checkpoint: a clear error.
    CHECK_THROWS_WITH(load_training_checkpoint<float>(fo_full.checkpoint),
                      Catch::Contains("not a training checkpoint"));
}
