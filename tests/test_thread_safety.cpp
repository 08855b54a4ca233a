// Using models from several std::threads (docs/reliability.md, "Using a model from
// several threads"): the supported way is one copy per thread (model/clone.hpp).
//   - clone_model gives an independent copy: bit-identical weights and predictions,
//     and changing the copy does not change the original.
//   - 4 threads, each predicting with its own clone (at once, several rounds), give
//     results bit-identical to a serial predict. The model (lenet5, batch 64) takes
//     every threading path: conv loops split by parallel_for, a Dense GEMM large
//     enough for Eigen's own threads (64x400x120 MACs) and small GEMMs that
//     GemmThreads makes serial (64x120x84).
//   - 4 threads, each training its own clone for a few Adam steps, end with
//     bit-identical weights (same data, same dropout seed).
//   - set_threads and GemmThreads change only the calling thread's thread count,
//     never another thread's (they do not write Eigen's process-wide count).
// Catch2's assertions are not thread-safe: workers only record, the test thread checks.
// Also built into the sanitizer pass (scripts/test.sh) and, by hand, under ThreadSanitizer
// (see docs/reliability.md).
#include <kitnn/kitnn.hpp>
#include <kitnn/model/clone.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

using namespace kitnn;

namespace {

constexpr int kThreads = 4;

template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
    return a.dimensions() == b.dimensions() &&
           std::memcmp(a.data(), b.data(), sizeof(T) * size_t(a.size())) == 0;
}

Tensor<float> random_images(Eigen::Index n, std::uint64_t seed) {
    Rng rng(seed);
    Tensor<float> x(n, 1, 28, 28);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform());
    return x;
}

// Restores the calling thread's thread count at scope end, even when a check fails.
struct ThreadGuard {
    int saved = max_threads();
    ~ThreadGuard() { set_threads(saved); }
};

// Starts `body(t)` on kThreads std::threads released together, and joins them.
template <class F>
void run_together(F body) {
    std::atomic<int> ready{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < kThreads; ++t)
        pool.emplace_back([&, t] {
            ++ready;
            while (ready.load() < kThreads) std::this_thread::yield();  // start at once
            body(t);
        });
    for (auto& th : pool) th.join();
}

}  // namespace

TEST_CASE("clone_model: an independent copy with identical weights and predictions", "[thread][clone]") {
    Sequential<float> model = zoo::mnist_model<float>("keck", 3);
    Sequential<float> copy = clone_model(model);
    REQUIRE(copy.size() == model.size());
    REQUIRE(copy.input_shape() == model.input_shape());
    auto pm = model.params(), pc = copy.params();
    REQUIRE(pc.size() == pm.size());
    for (size_t i = 0; i < pm.size(); ++i) {
        CHECK(pc[i]->value.data() != pm[i]->value.data());  // owned, not shared
        CHECK(bitwise_equal(pc[i]->value, pm[i]->value));
    }
    const Tensor<float> x = random_images(10, 5);
    CHECK(bitwise_equal(copy.predict(x), model.predict(x)));

    // Changing the copy leaves the original alone.
    const Tensor<float> before = model.predict(x);
    for (auto* p : copy.params()) p->value.setConstant(0.25f);
    CHECK(bitwise_equal(model.predict(x), before));
    CHECK_FALSE(bitwise_equal(copy.predict(x), before));
}

TEST_CASE("predict from 4 threads, each with its own clone, is bit-identical to serial predict",
          "[thread][predict]") {
    ThreadGuard guard;
    const int threads = max_threads();  // the count the serial reference runs with
    Sequential<float> model = zoo::mnist_model<float>("lenet5", 7);
    const Tensor<float> x = random_images(64, 11);
    const Tensor<float> serial = model.predict(x, 64);

    std::vector<Sequential<float>> copies;
    for (int t = 0; t < kThreads; ++t) copies.push_back(clone_model(model));
    constexpr int kRounds = 3;
    std::vector<int> same(kThreads, 0);  // rounds equal to the serial result, per thread
    run_together([&](int t) {
        // A new std::thread starts with OpenMP's default count: use the reference's,
        // so that the comparison can be bitwise.
        set_threads(threads);
        for (int r = 0; r < kRounds; ++r) same[size_t(t)] += bitwise_equal(copies[size_t(t)].predict(x, 64), serial);
    });
    for (int t = 0; t < kThreads; ++t) {
        INFO("thread " << t);
        CHECK(same[size_t(t)] == kRounds);
    }
    CHECK(max_threads() == threads);  // the workers' settings did not leak into this thread
}

TEST_CASE("training 4 clones on 4 threads at once gives identical weights", "[thread][train]") {
    ThreadGuard guard;
    const int threads = max_threads();
    Sequential<float> model = zoo::mnist_model<float>("keck", 2);  // has Dropout
    const Tensor<float> x = random_images(32, 13);
    std::vector<std::uint8_t> y(32);
    for (size_t i = 0; i < y.size(); ++i) y[i] = std::uint8_t(i % 10);

    std::vector<Sequential<float>> copies;
    for (int t = 0; t < kThreads; ++t) copies.push_back(clone_model(model));
    std::vector<double> last_loss(kThreads, 0);
    run_together([&](int t) {
        set_threads(threads);
        Sequential<float>& m = copies[size_t(t)];
        Adam<float> adam;
        SoftmaxCrossEntropy<float> ce;
        Tensor<float> dlogits;
        for (int step = 0; step < 4; ++step) {
            last_loss[size_t(t)] = ce.forward(m.forward(x, true), y.data());
            ce.backward(dlogits);
            m.zero_grad();
            m.backward(dlogits);
            adam.step(m.params());
        }
    });
    auto p0 = copies[0].params();
    for (int t = 1; t < kThreads; ++t) {
        INFO("thread " << t << " vs thread 0");
        CHECK(last_loss[size_t(t)] == last_loss[0]);
        auto pt = copies[size_t(t)].params();
        for (size_t i = 0; i < p0.size(); ++i) CHECK(bitwise_equal(pt[i]->value, p0[i]->value));
    }
    // And the training did something: the weights moved away from the original.
    CHECK_FALSE(bitwise_equal(p0[0]->value, model.params()[0]->value));
}

TEST_CASE("set_threads and GemmThreads change only the calling thread's thread count",
          "[thread][parallel]") {
#ifdef _OPENMP
    ThreadGuard guard;
    set_threads(2);
    REQUIRE(max_threads() == 2);
    REQUIRE(Eigen::nbThreads() == 2);  // Eigen follows the calling thread's OpenMP count
    int seen_in_thread = 0, eigen_in_thread = 0, eigen_in_gemm_scope = 0;
    std::thread worker([&] {
        set_threads(3);
        seen_in_thread = max_threads();
        eigen_in_thread = Eigen::nbThreads();
        const GemmThreads small(1);  // a tiny product: serial GEMM in this thread only
        eigen_in_gemm_scope = Eigen::nbThreads();
    });
    worker.join();
    CHECK(seen_in_thread == 3);
    CHECK(eigen_in_thread == 3);
    CHECK(eigen_in_gemm_scope == 1);
    CHECK(max_threads() == 2);  // unchanged here
    CHECK(Eigen::nbThreads() == 2);
    {
        const GemmThreads small(1);
        CHECK(Eigen::nbThreads() == 1);
        int other = 0;
        std::thread t2([&] {
            set_threads(2);
            other = Eigen::nbThreads();
        });
        t2.join();
        CHECK(other == 2);  // another thread is not made serial by this scope
    }
    CHECK(Eigen::nbThreads() == 2);  // restored at scope end
    {
        const GemmThreads big(kMinParallelGemm);  // large enough: left threaded
        CHECK(Eigen::nbThreads() == 2);
    }
#else
    SUCCEED("built without OpenMP: one thread everywhere");
#endif
}
