// The one training-step path across parts (train/data_parallel.hpp) without MPI:
// synchronised BatchNorm with replicas equals the whole batch in one part (double:
// tight; float: close), and "ranks" simulated by threads of this process behind the
// Collective interface (train/collective.hpp) — what MPI ranks do in kitnn/dist/ —
// train to exactly the weights of one process with as many replicas; ranks that
// disagree are refused. kitnn_tests links no MPI: the real mpirun tests are
// tests/mpi/*.sh.
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

using namespace kitnn;
using K = std::array<int, 2>;

namespace {

// Convolution + BatchNorm (image) and Dense + BatchNorm (flat), Dropout: every kind of
// batch statistic and generator a split step has to handle.
template <class T>
Sequential<T> bn_net(std::uint64_t seed, bool dropout = false) {
    Sequential<T> m(Shape::image(1, 8, 8), seed);
    m.template add<Conv2D>(3, K{3, 3}, Activation::linear, Padding::same);
    m.template add<BatchNorm>(0.9);
    m.template add<ReLU>();
    m.template add<MaxPool2D>(K{2, 2});
    m.template add<Flatten>();
    m.template add<Dense>(10);
    m.template add<BatchNorm>(0.9);
    m.template add<ReLU>();
    if (dropout) m.template add<Dropout>(0.3);
    m.template add<Dense>(4);
    return m;
}

template <class T>
Tensor<T> images(Eigen::Index n, Rng& rng) {
    Tensor<T> x(n, 1, 8, 8);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = T(rng.uniform() * 2 - 0.5);
    return x;
}
std::vector<std::uint8_t> labels(Eigen::Index n, Rng& rng) {
    std::vector<std::uint8_t> y(static_cast<size_t>(n));
    for (auto& v : y) v = std::uint8_t(rng.below(4));
    return y;
}
// Weights and layer state (BatchNorm's moving statistics), in order.
template <class T>
std::vector<double> values(Sequential<T>& m) {
    std::vector<double> w;
    for (size_t i = 0; i < m.size(); ++i) {
        for (auto* p : m.layer(i).params()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
        for (auto* p : m.layer(i).state()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
    }
    return w;
}
double max_rel(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double r = 0;
    for (size_t i = 0; i < a.size(); ++i) r = std::max(r, std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i])));
    return r;
}

// P "ranks" as threads of this process: allgather through shared memory and a barrier.
class ThreadGroup {
public:
    explicit ThreadGroup(int size) : size_(size), slots_(size_t(size)) {}
    class Member final : public Collective {
    public:
        Member(ThreadGroup& g, int rank) : g_(g), rank_(rank) {}
        int rank() const override { return rank_; }
        int size() const override { return g_.size_; }
        void allgather(const void* in, std::size_t bytes, void* out) override {
            const auto* b = static_cast<const char*>(in);
            g_.slots_[size_t(rank_)].assign(b, b + bytes);
            g_.wait();
            for (int p = 0; p < g_.size_; ++p)
                std::memcpy(static_cast<char*>(out) + size_t(p) * bytes, g_.slots_[size_t(p)].data(), bytes);
            g_.wait();  // nobody overwrites a slot before everyone has read it
        }
        void broadcast(void* data, std::size_t bytes, int root) override {
            if (rank_ == root) g_.slots_[size_t(root)].assign(static_cast<char*>(data), static_cast<char*>(data) + bytes);
            g_.wait();
            if (rank_ != root) std::memcpy(data, g_.slots_[size_t(root)].data(), bytes);
            g_.wait();
        }
        void barrier() override { g_.wait(); }

    private:
        ThreadGroup& g_;
        int rank_;
    };

private:
    void wait() {
        std::unique_lock<std::mutex> lock(mu_);
        const auto gen = gen_;
        if (++arrived_ == size_) {
            arrived_ = 0;
            ++gen_;
            cv_.notify_all();
        } else {
            cv_.wait(lock, [&] { return gen_ != gen; });
        }
    }
    int size_;
    std::vector<std::vector<char>> slots_;
    std::mutex mu_;
    std::condition_variable cv_;
    int arrived_ = 0;
    std::uint64_t gen_ = 0;
};

// Runs f(rank, group) on `ranks` threads, one thread per rank, and rethrows the first error.
template <class F>
void run_ranks(int ranks, F f) {
    ThreadGroup g(ranks);
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(static_cast<size_t>(ranks));
    for (int p = 0; p < ranks; ++p)
        threads.emplace_back([&, p] {
            set_threads(1);  // one core per "rank", as under mpirun on a small machine
            ThreadGroup::Member me(g, p);
            try {
                f(p, me);
            } catch (...) {
                errors[size_t(p)] = std::current_exception();
            }
        });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace

// bn_net trained two ways from the same start: plainly (a1), and its copy split across
// replicas (a2).
struct PlainAndSplit {
    explicit PlainAndSplit(int replicas) : plain(bn_net<double>(5)), split(clone_model(plain)), dp(split, replicas) {}
    Sequential<double> plain, split;  // in this order: dp refers to split
    DataParallel<double> dp;
    Adam<double> a1, a2;
    SoftmaxCrossEntropy<double> ce;
    Tensor<double> dl;
};

TEST_CASE("synchronised BatchNorm: a batch split across replicas trains as one part (double)",
          "[data_parallel][batchnorm][distributed]") {
    for (int replicas : {2, 3})
        for (Eigen::Index n : {Eigen::Index(8), Eigen::Index(7), Eigen::Index(2)}) {
            INFO(replicas << " replicas, batch " << n);
            PlainAndSplit t(replicas);
            auto &plain = t.plain, &split = t.split;
            Rng rng(11);
            for (int step = 0; step < 3; ++step) {
                const auto x = images<double>(n, rng);
                const auto y = labels(n, rng);
                std::int64_t c1 = -1, c2 = -1;
                const double l1 = train_step(plain, t.a1, t.ce, x, y, t.dl, &c1);
                const double l2 = t.dp.step(t.a2, x, y, &c2);
                CHECK(l2 == Approx(l1).epsilon(1e-12));
                CHECK(c2 == c1);
            }
            // Weights AND moving statistics: the parts normalised with the whole batch's.
            CHECK(max_rel(values(split), values(plain)) < 1e-11);
            auto untrained = bn_net<double>(5);
            CHECK(values(split) != values(untrained));
        }
    // Without synchronisation each replica would normalise its own half: far off.
    auto plain = bn_net<double>(5);
    Sequential<double> half = clone_model(plain);
    Rng rng(3);
    const auto x = images<double>(8, rng);
    Tensor<double> x0(4, 1, 8, 8);
    std::copy(x.data(), x.data() + x0.size(), x0.data());
    const Tensor<double> whole = plain.forward(x, true);
    const Tensor<double> part = half.forward(x0, true);
    double d = 0;
    for (Eigen::Index i = 0; i < part.size(); ++i) d = std::max(d, std::abs(part.data()[i] - whole.data()[i]));
    CHECK(d > 1e-3);
}

TEST_CASE("synchronised BatchNorm: a replica that throws wakes the others waiting for it, and the next step trains",
          "[data_parallel][batchnorm][distributed]") {
    // The last part's bad label throws in its loss, after the forward pass: the other
    // replicas are then in backward, waiting (spinning, then asleep) at a BatchNorm
    // reduction for a part that will never come. They must be woken, the step must
    // report the real error (not "another replica failed"), change no weight, and the
    // barrier must work again for the next step. (The forward pass has already moved
    // the moving statistics, as the plain train_step's does: so the plain model takes
    // the failed step too.)
    for (int replicas : {2, 3}) {
        INFO(replicas << " replicas");
        PlainAndSplit t(replicas);
        auto &plain = t.plain, &split = t.split;
        Rng rng(12);
        const auto x = images<double>(6, rng);
        auto y = labels(6, rng);
        auto bad = y;
        bad[5] = 12;  // the last part's last sample: no such class
        auto weights = [](Sequential<double>& m) {
            std::vector<double> w;
            for (auto* p : m.params()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.size());
            return w;
        };
        const auto before = weights(split);
        CHECK_THROWS_WITH(train_step(plain, t.a1, t.ce, x, bad, t.dl), Catch::Contains("label 12 of sample 5"));
        CHECK_THROWS_WITH(t.dp.step(t.a2, x, bad), Catch::Contains("label 12 of sample"));
        CHECK(weights(split) == before);
        CHECK(max_rel(values(split), values(plain)) < 1e-11);  // the same moving statistics
        const double l1 = train_step(plain, t.a1, t.ce, x, y, t.dl);
        const double l2 = t.dp.step(t.a2, x, y);
        CHECK(l2 == Approx(l1).epsilon(1e-12));
        CHECK(max_rel(values(split), values(plain)) < 1e-11);
    }
}

TEST_CASE("synchronised BatchNorm: float replicas stay close to one part", "[data_parallel][batchnorm][distributed]") {
    auto plain = bn_net<float>(6);
    auto split = clone_model(plain);
    DataParallel<float> dp(split, 2);
    Adam<float> a1, a2;
    SoftmaxCrossEntropy<float> ce;
    Tensor<float> dl;
    Rng rng(12);
    for (int step = 0; step < 5; ++step) {
        const auto x = images<float>(10, rng);
        const auto y = labels(10, rng);
        train_step(plain, a1, ce, x, y, dl);
        dp.step(a2, x, y);
    }
    // Other summation orders only; but Adam moves a weight by up to about lr (1e-3) per
    // step even for a gradient that differs by rounding: 5 steps, 1e-3 (measured 1.3e-4).
    CHECK(max_rel(values(split), values(plain)) < 1e-3);
}

TEST_CASE("ranks behind the Collective interface train exactly as replicas of one process",
          "[data_parallel][distributed]") {
    // fit() on P thread-"ranks" with one replica each against one fit() with P replicas:
    // the same parts, the same dropout masks, the same order of the sums: the same bits.
    Rng rng(21);
    Tensor<float> data(130, 1, 8, 8);
    std::vector<std::uint8_t> lab(130);
    for (Eigen::Index i = 0; i < 130; ++i) {
        const int c = int(rng.below(4));
        lab[size_t(i)] = std::uint8_t(c);
        for (int k = 0; k < 64; ++k) data.data()[i * 64 + k] = float(0.2 * rng.uniform());
        for (int j = 1; j < 7; ++j) data.data()[i * 64 + (1 + 2 * c) * 8 + j] = 1.0f;
    }
    const LabelledView train{&data, &lab, 0, 100}, val{&data, &lab, 100, 130};
    auto options = [](int replicas) {
        FitOptions fo;
        fo.epochs = 2;
        fo.batch = 16;  // 100 = 6 x 16 + 4: a short last batch
        fo.seed = 4;
        fo.progress = 0;
        fo.replicas = replicas;
        fo.augment = AugmentOptions::parse("shift=1");
        return fo;
    };
    // A model without BatchNorm (conv, pool, dense, dropout) and one with it.
    auto make = [](bool bn) {
        if (bn) return bn_net<float>(8, true);
        Sequential<float> m(Shape::image(1, 8, 8), 8);
        m.add<Conv2D>(3, K{3, 3}, Activation::relu, Padding::same);
        m.add<MaxPool2D>(K{2, 2});
        m.add<Flatten>();
        m.add<Dense>(12, Activation::relu);
        m.add<Dropout>(0.4);
        m.add<Dense>(4);
        return m;
    };
    for (bool bn : {false, true})
        for (int P : {2, 3}) {
            INFO(P << " ranks" << (bn ? ", BatchNorm" : ", Dropout"));
            auto one = make(bn);
            const int saved = max_threads();
            set_threads(1);
            std::ostringstream log1;
            auto fo1 = options(P);
            fo1.out = &log1;
            Adam<float> adam1;
            const auto h1 = fit(one, adam1, train, val, fo1);
            set_threads(saved);
            std::vector<std::vector<double>> ranks_w(static_cast<size_t>(P));
            std::vector<double> ranks_val(static_cast<size_t>(P));
            std::vector<std::string> logs(static_cast<size_t>(P));  // Catch's CHECK is for the main thread only
            run_ranks(P, [&](int p, Collective& g) {
                auto m = make(bn);
                if (p != 0)  // whatever the others start from, rank 0's weights are broadcast
                    for (auto* q : m.params()) as_vector(q->value).setConstant(0.5f);
                broadcast_model(g, m);
                std::ostringstream log;
                auto fo = options(1);
                fo.out = &log;
                fo.group = &g;
                Adam<float> adam;
                const auto h = fit(m, adam, train, val, fo);
                ranks_w[size_t(p)] = values(m);
                ranks_val[size_t(p)] = h.back().val_loss;
                logs[size_t(p)] = log.str();
            });
            CHECK_THAT(logs[0], Catch::Contains("Epoch 2/2"));
            for (int p = 1; p < P; ++p) CHECK(logs[size_t(p)].empty());  // only rank 0 prints
            for (int p = 0; p < P; ++p) {
                CHECK(ranks_w[size_t(p)] == values(one));  // bit for bit
                CHECK(ranks_val[size_t(p)] == Approx(h1.back().val_loss).epsilon(1e-6));
            }
        }
}

TEST_CASE("ranks x replicas: equal to one process up to rounding, and disagreeing ranks are refused",
          "[data_parallel][distributed]") {
    auto one = bn_net<double>(9, true);
    std::vector<std::vector<double>> w(2);
    Rng rng(30);
    std::vector<Tensor<double>> xs;
    std::vector<std::vector<std::uint8_t>> ys;
    for (int s = 0; s < 3; ++s) xs.push_back(images<double>(11, rng)), ys.push_back(labels(11, rng));
    run_ranks(2, [&](int p, Collective& g) {
        auto m = clone_model(one);
        DataParallel<double> dp(m, 2, &g);  // 2 ranks x 2 replicas = 4 parts
        if (dp.workers() != 4) throw std::logic_error("expected 4 parts");
        SGD<double> sgd;
        for (int s = 0; s < 3; ++s) dp.step(sgd, xs[size_t(s)], ys[size_t(s)]);
        w[size_t(p)] = values(m);
    });
    auto m4 = clone_model(one);
    {
        DataParallel<double> dp(m4, 4);
        SGD<double> sgd;
        for (int s = 0; s < 3; ++s) dp.step(sgd, xs[size_t(s)], ys[size_t(s)]);
    }
    CHECK(w[0] == w[1]);  // every rank holds the same bits
    CHECK(max_rel(w[0], values(m4)) < 1e-12);

    // Settings that differ between ranks: every rank stops with the same clear message.
    std::vector<std::string> messages(3);
    run_ranks(3, [&](int p, Collective& g) {
        try {
            check_same_run(g, {{"model", "keck"}, {"seed", p == 2 ? "7" : "1"}, {"batch", "100"}});
        } catch (const std::runtime_error& e) {
            messages[size_t(p)] = e.what();
        }
    });
    CHECK_THAT(messages[0], Catch::Contains("rank 2 has seed=7 where rank 0 has seed=1"));
    CHECK(messages[1] == messages[0]);
    CHECK(messages[2] == messages[0]);
    run_ranks(2, [&](int, Collective& g) { check_same_run(g, {{"model", "keck"}}); });  // agree: no error
}

namespace {
// Parameters of awkward sizes (none a multiple of 16) with random values and gradients.
std::vector<Param<float>> shard_params(Rng& rng) {
    std::vector<Param<float>> ps;
    for (Eigen::Index n : {1000, 37, 4101, 130, 64}) {
        Param<float> p;
        p.resize(n, 1, 1, 1);
        for (Eigen::Index i = 0; i < n; ++i) p.value.data()[i] = float(rng.uniform() - 0.5);
        ps.push_back(std::move(p));
    }
    return ps;
}

// Three batches of 9 samples for bn_net, from `seed`.
struct Batches {
    std::vector<Tensor<float>> xs;
    std::vector<std::vector<std::uint8_t>> ys;
};
Batches three_batches(std::uint64_t seed) {
    Rng rng(seed);
    Batches b;
    for (int s = 0; s < 3; ++s) b.xs.push_back(images<float>(9, rng)), b.ys.push_back(labels(9, rng));
    return b;
}
// The reference for P ranks: `one`'s copy trained on the batches by one process with P
// replicas (one thread each, as the thread-ranks have), with `adam`.
Sequential<float> replicas_reference(Sequential<float>& one, int P, const Batches& b, Adam<float>& adam) {
    auto ref = clone_model(one);
    const int saved = max_threads();
    set_threads(1);
    {
        DataParallel<float> dp(ref, P);
        for (size_t s = 0; s < b.xs.size(); ++s) dp.step(adam, b.xs[s], b.ys[s]);
    }
    set_threads(saved);
    return ref;
}
}  // namespace

TEST_CASE("Optimizer::step_range: shards updated apart give step()'s bits", "[optimizer][distributed]") {
    // Three "ranks", each with its own optimizer, update [0, 640), [640, 3085), [3085, G):
    // boundaries 640 values into parameter 0 and 2048 into parameter 2 (multiples of 64,
    // as DataParallel places them), so the vector loops group the values as step() does.
    auto check = [](auto make_opt) {
        Rng rng(8);
        auto whole = shard_params(rng);
        auto shards = whole;
        std::vector<Param<float>*> pw, ps;
        for (auto& p : whole) pw.push_back(&p);
        for (auto& p : shards) ps.push_back(&p);
        auto ow = make_opt();
        std::vector<decltype(make_opt())> os;
        for (int r = 0; r < 3; ++r) os.push_back(make_opt());
        const std::size_t bounds[4] = {0, 640, 1000 + 37 + 2048, 1000 + 37 + 4101 + 130 + 64};
        for (int step = 0; step < 4; ++step) {
            for (size_t i = 0; i < whole.size(); ++i)
                for (Eigen::Index k = 0; k < whole[i].grad.size(); ++k)
                    whole[i].grad.data()[k] = shards[i].grad.data()[k] = float(rng.uniform() - 0.5) * 0.1f;
            ow->step(pw);
            for (int r = 0; r < 3; ++r) os[size_t(r)]->step_range(ps, bounds[r], bounds[r + 1]);
        }
        for (size_t i = 0; i < whole.size(); ++i) CHECK(as_vector(shards[i].value) == as_vector(whole[i].value));
        // Each shard's state is the whole optimizer's there.
        const auto sw = ow->state();
        for (int r = 0; r < 3; ++r) {
            const auto sr = os[size_t(r)]->state();
            REQUIRE(sr.size() == sw.size());
            std::size_t off = 0;
            for (size_t b = 0; b < sw.size(); ++b) {
                const Eigen::Index n = sw[b].second.size();
                const std::size_t base = off % (bounds[3]);  // each group of buffers spans G values
                for (Eigen::Index k = 0; k < n; ++k) {
                    const std::size_t flat = base + std::size_t(k);
                    if (flat >= bounds[r] && flat < bounds[r + 1]) {
                        INFO(sw[b].first << "[" << k << "]");
                        REQUIRE(sr[b].second.data()[k] == sw[b].second.data()[k]);
                    }
                }
                off += std::size_t(n);
            }
            CHECK(os[size_t(r)]->iterations() == 4);
        }
    };
    check([] { return std::make_unique<Adam<float>>(); });
    check([] {
        AdamOptions o;
        o.weight_decay = 0.01;
        return std::make_unique<Adam<float>>(o);
    });
    check([] { return std::make_unique<AdamW<float>>(); });
    check([] {
        SGDOptions o;
        o.momentum = 0.9;
        o.nesterov = true;
        o.weight_decay = 1e-3;
        return std::make_unique<SGD<float>>(o);
    });
}

TEST_CASE("sharded steps across ranks: the optimizer state is gathered, the guard agreed",
          "[data_parallel][distributed]") {
    // Every rank updates its shard only (DataParallel::sharded_update); after
    // gather_optimizer_state every rank holds the state one process with as many replicas
    // has, bit for bit — and not before (the shards are real).
    const Batches b = three_batches(40);
    for (int P : {2, 3}) {
        INFO(P << " ranks");
        auto one = bn_net<float>(41);
        std::vector<typename Optimizer<float>::NamedTensors> before(static_cast<size_t>(P)),
            after(static_cast<size_t>(P));
        std::vector<std::vector<double>> w(static_cast<size_t>(P));
        run_ranks(P, [&](int p, Collective& g) {
            auto m = clone_model(one);
            DataParallel<float> dp(m, 1, &g);
            Adam<float> adam;
            for (size_t s = 0; s < b.xs.size(); ++s) dp.step(adam, b.xs[s], b.ys[s]);
            before[size_t(p)] = adam.state();
            dp.gather_optimizer_state(adam);
            after[size_t(p)] = adam.state();
            w[size_t(p)] = values(m);
        });
        Adam<float> adam_ref;
        auto ref = replicas_reference(one, P, b, adam_ref);
        const auto sref = adam_ref.state();
        auto same = [&](const typename Optimizer<float>::NamedTensors& s) {
            if (s.size() != sref.size()) return false;
            for (size_t b = 0; b < s.size(); ++b)
                if (s[b].first != sref[b].first || as_vector(s[b].second) != as_vector(sref[b].second)) return false;
            return true;
        };
        for (int p = 0; p < P; ++p) {
            CHECK(w[size_t(p)] == values(ref));
            CHECK_FALSE(same(before[size_t(p)]));
            CHECK(same(after[size_t(p)]));
        }
    }
    // A NaN in the last rank's part that the loss never sees: a 1x1 convolution keeps it
    // at its pixel, the top right of a 2x2 pooling window, which max() drops; but the
    // convolution's kernel gradient takes 0 * NaN from that pixel. The kernel is in rank
    // 0's shard, so rank 0 finds it in the sum; every rank throws the same NonFiniteError
    // naming it, and nobody updates.
    auto net = [] {
        Sequential<float> m(Shape::image(1, 8, 8), 3);
        m.add<Conv2D>(3, K{1, 1});
        m.add<MaxPool2D>(K{2, 2});
        m.add<Flatten>();
        m.add<Dense>(4);
        return m;
    };
    auto start = net();
    std::vector<std::string> messages(2);
    std::vector<bool> unchanged(2, false);
    Rng rng(42);
    auto x = images<float>(6, rng);
    x.data()[5 * 64 + 1] = std::numeric_limits<float>::quiet_NaN();  // sample 5, row 0, column 1
    const auto y = labels(6, rng);
    run_ranks(2, [&](int p, Collective& g) {
        auto m = clone_model(start);
        const auto w0 = values(m);
        DataParallel<float> dp(m, 1, &g);
        Adam<float> adam;
        try {
            dp.step(adam, x, y);
        } catch (const NonFiniteError& e) {
            messages[size_t(p)] = e.what();
        }
        unchanged[size_t(p)] = values(m) == w0 && adam.iterations() == 0;
    });
    CHECK_THAT(messages[0], Catch::Contains("the gradient of layer 0 (Conv2D) 'kernel' is not finite"));
    CHECK(messages[1] == messages[0]);
    CHECK(unchanged[0]);
    CHECK(unchanged[1]);
}

namespace {
// Adam that says it cannot update a range: DataParallel takes the allgather path then.
struct WholeAdam final : Adam<float> {
    bool shards() const override { return false; }
};
}  // namespace

TEST_CASE("ranks with an optimizer that cannot shard: one allgather, the replicas' bits",
          "[data_parallel][distributed]") {
    // Every rank adds every rank's whole gradient (reduce_across_ranks) and runs the whole
    // update: the weights AND the optimizer state equal one process with as many
    // replicas, bit for bit, with nothing to gather.
    const Batches b = three_batches(50);
    for (int P : {2, 3}) {
        INFO(P << " ranks");
        auto one = bn_net<float>(51);
        std::vector<std::vector<double>> w(static_cast<size_t>(P)), state(static_cast<size_t>(P));
        run_ranks(P, [&](int p, Collective& g) {
            auto m = clone_model(one);
            DataParallel<float> dp(m, 1, &g);
            WholeAdam adam;
            for (size_t s = 0; s < b.xs.size(); ++s) dp.step(adam, b.xs[s], b.ys[s]);
            dp.gather_optimizer_state(adam);  // nothing scattered: no communication, no change
            w[size_t(p)] = values(m);
            for (auto& kv : adam.state())
                state[size_t(p)].insert(state[size_t(p)].end(), kv.second.data(), kv.second.data() + kv.second.size());
        });
        Adam<float> adam_ref;
        auto ref = replicas_reference(one, P, b, adam_ref);
        std::vector<double> sref;
        for (auto& kv : adam_ref.state()) sref.insert(sref.end(), kv.second.data(), kv.second.data() + kv.second.size());
        for (int p = 0; p < P; ++p) {
            CHECK(w[size_t(p)] == values(ref));
            CHECK(state[size_t(p)] == sref);
        }
    }
}
