// make_ensemble (model/ensemble.hpp): several trained networks as one model whose
// output is the mean of theirs, exactly; it saves, loads and clones like any model.
#include "temp_dir.hpp"

#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cstring>

using namespace kitnn;

namespace {

// A small BatchNorm + Dropout network, its moving statistics moved off their defaults
// (so that copying them, or not, shows in the outputs).
Sequential<float> member(std::uint64_t seed, int outputs = 4) {
    Sequential<float> m(Shape::image(1, 8, 8), seed);
    m.add<Conv2D>(3, std::array<int, 2>{3, 3});
    m.add<BatchNorm>();
    m.add<ReLU>();
    m.add<MaxPool2D>();
    m.add<Flatten>();
    m.add<Dropout>(0.3);
    m.add<Dense>(outputs);
    Rng rng(seed + 100);
    for (auto* p : m.layer(1).state())
        for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = float(rng.uniform(0.5, 1.5));
    return m;
}

Tensor<float> input(Eigen::Index n, std::uint64_t seed) {
    Tensor<float> x(n, 1, 8, 8);
    Rng rng(seed);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform(-1, 1));
    return x;
}

bool same_bits(const Tensor<float>& a, const Tensor<float>& b) {
    return a.dimensions() == b.dimensions() &&
           std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("make_ensemble: the output is the mean of the members' outputs, bit for bit", "[ensemble]") {
    std::vector<Sequential<float>> members;
    for (std::uint64_t s : {1, 2, 3}) members.push_back(member(s));
    const auto x = input(5, 7);
    std::vector<Tensor<float>> z;
    for (auto& m : members) z.push_back(m.forward(x, false));

    Sequential<float> ens = make_ensemble(members);
    REQUIRE(ens.size() == 1);
    CHECK(ens.layer(0).type() == "Branches");
    CHECK(ens.layer(0).config().str("merge") == "mean");
    CHECK(ens.layer(0).branch_count() == 3);
    CHECK(ens.param_count() == 3 * members[0].param_count());
    CHECK(ens.macs() == 3 * members[0].macs());

    // kitnn's order: ((z0 + z1) + z2) / 3.
    Tensor<float> expected(5, 4, 1, 1);
    for (Eigen::Index i = 0; i < expected.size(); ++i)
        expected.data()[i] = (z[0].data()[i] + z[1].data()[i] + z[2].data()[i]) / 3.0f;
    CHECK(same_bits(ens.forward(x, false), expected));

    // The members are only read.
    for (size_t k = 0; k < 3; ++k) CHECK(same_bits(members[k].forward(x, false), z[k]));

    // Its probabilities are the softmax of the mean logits.
    const Tensor<float> p = ens.predict(x);
    for (Eigen::Index n = 0; n < 5; ++n) {
        double total = 0;
        for (int k = 0; k < 4; ++k) total += p.data()[n * 4 + k];
        CHECK(total == Approx(1.0).margin(1e-6));
    }

    // A file and a clone give the same model.
    kitnn_test::TempDir dir;
    const std::string path = dir / "ens.kitnn";
    save_model(path, ens, {{"model", "test"}});
    Sequential<float> back = load_model<float>(path);
    CHECK(same_bits(back.forward(x, false), expected));
    Sequential<float> copy = clone_model(ens);
    CHECK(same_bits(copy.forward(x, false), expected));
    CHECK(back.summary("e") == ens.summary("e"));

    // One member is the member itself (the mean of one).
    std::vector<Sequential<float>> one;
    one.push_back(member(1));
    CHECK(same_bits(make_ensemble(one).forward(x, false), z[0]));
}

TEST_CASE("make_ensemble: members that do not agree are refused, naming the member", "[ensemble]") {
    std::vector<Sequential<float>> none;
    CHECK_THROWS_WITH(make_ensemble(none), Catch::Contains("no members"));

    std::vector<Sequential<float>> outs;
    outs.push_back(member(1, 4));
    outs.push_back(member(2, 5));
    CHECK_THROWS_WITH(make_ensemble(outs), Catch::Contains("member 2 maps (1,8,8) to (5)"));

    std::vector<Sequential<float>> ins;
    ins.push_back(member(1));
    Sequential<float> other(Shape::image(1, 9, 9), 1);
    other.add<Flatten>();
    other.add<Dense>(4);
    ins.push_back(std::move(other));
    CHECK_THROWS_WITH(make_ensemble(ins), Catch::Contains("member 2 maps (1,9,9)"));

    std::vector<Sequential<float>> empty;
    empty.push_back(member(1));
    empty.emplace_back(Shape::image(1, 8, 8), 1);
    CHECK_THROWS_WITH(make_ensemble(empty), Catch::Contains("member 2 has no layers"));
}
