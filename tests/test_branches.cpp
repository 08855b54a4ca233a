// Branches (layers/branches.hpp): Inception-style concat and residual add inside a
// Sequential. Gradient checks (the container alone, and whole models with it, also as
// layer 0 where dx is null, and nested), shape errors that name the branch, the
// summary rows, and the model file v2: nested round trip, extras, version-1 files,
// and crafted v2 files that must fail with a clear ModelFileError.
#include "gradient_check.hpp"

#include <kitnn/io/model_file.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

using namespace kitnn;
using kitnn_test::random_tensor;
using K2 = std::array<int, 2>;

namespace {

// Identity with one non-trainable tensor per channel (like BatchNorm's moving
// statistics): for summary()'s "Non-trainable params".
template <class T>
class WithState : public Layer<T> {
public:
    std::string type() const override { return "WithState"; }
    Config config() const override { return {}; }
    std::vector<Param<T>*> state() override { return {&s_}; }
    void forward(const Tensor<T>& x, Tensor<T>& y, bool) override {
        this->check_input(x);
        ensure(y, x.dimension(0), this->out_);
        as_vector(y) = as_vector(x);
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>& dy, Tensor<T>* dx) override {
        if (!dx) return;
        ensure(*dx, dy.dimension(0), this->in_);
        as_vector(*dx) = as_vector(dy);
    }

protected:
    Shape do_build(const Shape& in, Rng&) override {
        s_.name = "moving";
        s_.resize(in.c(), 1, 1, 1);
        return in;
    }

private:
    Param<T> s_;
};

// An Inception-like reduction block on (C, 8, 8) -> (7, 4, 4): a strided 1x1 conv, a
// strided 3x3 'same' conv + ReLU, and 2x2 max pooling followed by a 1x1 conv.
template <class T>
std::unique_ptr<Branches<T>> inception_block() {
    auto block = std::make_unique<Branches<T>>(Merge::concat);
    block->branch().template add<Conv2D>(2, K2{1, 1}, Activation::linear, Padding::valid, 2);
    auto& b1 = block->branch();
    b1.template add<Conv2D>(3, K2{3, 3}, Activation::linear, Padding::same, 2);
    b1.template add<ReLU>();
    auto& b2 = block->branch();
    b2.template add<MaxPool2D>(K2{2, 2});
    b2.template add<Conv2D>(2, K2{1, 1}, Activation::relu);
    return block;
}

// A residual block: conv-relu-conv ('same') plus the identity shortcut.
template <class T>
std::unique_ptr<Branches<T>> residual_block(int channels, bool shortcut_first = false) {
    auto block = std::make_unique<Branches<T>>(Merge::add);
    if (shortcut_first) block->branch();
    auto& body = block->branch();
    body.template add<Conv2D>(channels + 1, K2{3, 3}, Activation::relu, Padding::same);
    body.template add<Conv2D>(channels, K2{3, 3}, Activation::linear, Padding::same);
    if (!shortcut_first) block->branch();
    return block;
}

// Non-zero biases, so a wrong bias gradient or a lost bias cannot hide behind zeros.
template <class T>
void randomize_biases(const std::vector<Param<T>*>& ps, std::uint64_t seed) {
    Rng rng(seed);
    for (auto* p : ps)
        if (p->name == "bias")
            for (Eigen::Index i = 0; i < p->value.size(); ++i) p->value.data()[i] = T(0.1 * rng.normal());
}

std::vector<std::uint8_t> random_labels(size_t n, int k, Rng& rng) {
    std::vector<std::uint8_t> l(n);
    for (auto& v : l) v = std::uint8_t(rng.below(std::uint64_t(k)));
    return l;
}

std::string shape_error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ShapeError& e) {
        return e.what();
    }
    return "(no ShapeError)";
}

std::string load_error_of(const std::vector<char>& bytes) {
    try {
        deserialize_model<float>(bytes, "crafted.kitnn");
    } catch (const ModelFileError& e) {
        return e.what();
    }
    return "(no error)";
}

// Recomputes the trailing CRC-32 so that a crafted or cut file reaches the parser.
void fix_crc(std::vector<char>& b) {
    const std::uint32_t crc = detail::crc32_of(b.data(), b.size() - 4);
    for (int i = 0; i < 4; ++i) b[b.size() - 4 + size_t(i)] = char((crc >> (8 * i)) & 0xff);
}

// Crafted v2 files: a flat input (6) and hand-written layer records.
struct Craft {
    detail::ByteWriter w;
    explicit Craft(std::uint32_t layers) {
        w.bytes(kModelMagic, 8);
        w.u32(2);
        w.u32(4);
        w.u32(0);  // no metadata
        w.u32(1);
        w.i64(6);  // input (6)
        w.u32(layers);
    }
    void relu(std::uint32_t branches = 0) {
        w.str("ReLU");
        w.u32(0);  // no hyperparameters
        w.u32(0);  // no tensors
        w.u32(branches);
    }
    // The header of a container record; its branches follow (u32 count + records each).
    void container(std::uint32_t branches, const std::string& merge = "add", std::uint32_t tensors = 0) {
        w.str("Branches");
        w.u32(1);
        w.str("merge");
        w.str(merge);
        w.u32(tensors);
        w.u32(branches);
    }
    std::vector<char> finish(bool extras_count = true) {
        if (extras_count) w.u32(0);
        w.u32(0);  // checksum placeholder
        auto b = w.buffer();
        fix_crc(b);
        return b;
    }
};

// A float model with containers two deep: conv, then concat of [residual(add) + ReLU,
// 1x1 conv, 3x3 conv], pooling, dense layers.
Sequential<float> nested_model(std::uint64_t seed) {
    Sequential<float> m(Shape::image(2, 7, 7), seed);
    m.add<Conv2D>(4, K2{3, 3}, Activation::relu, Padding::same);  // (4, 7, 7)
    auto inc = std::make_unique<Branches<float>>(Merge::concat);
    auto& b0 = inc->branch();
    b0.add(residual_block<float>(4));
    b0.add<ReLU>();
    inc->branch().add<Conv2D>(2, K2{1, 1}, Activation::relu);
    inc->branch().add<Conv2D>(3, K2{3, 3}, Activation::linear, Padding::same, 1, Init::he_normal);
    m.add(std::move(inc));  // (9, 7, 7)
    m.add<MaxPool2D>();     // (9, 3, 3)
    m.add<Flatten>();
    m.add<Dense>(5, Activation::relu);
    m.add<Dropout>(0.25);
    m.add<Dense>(3);
    randomize_biases(m.params(), seed + 1);
    return m;
}

Tensor<float> fixed_input(Eigen::Index n, const Shape& s) {
    auto c = s.chw();
    Tensor<float> x(n, c[0], c[1], c[2]);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float((i * 37 % 101) / 50.0 - 1.0);
    return x;
}

// Same types, hyperparameters and tensors (bit for bit), recursing into branches.
void require_same_layer(Layer<float>& a, Layer<float>& b, const std::string& where) {
    INFO(where);
    REQUIRE(a.type() == b.type());
    REQUIRE(a.config().items() == b.config().items());
    REQUIRE(a.output_shape() == b.output_shape());
    auto pa = a.params(), pb = b.params();
    REQUIRE(pa.size() == pb.size());
    for (size_t k = 0; k < pa.size(); ++k) {
        REQUIRE(pa[k]->value.dimensions() == pb[k]->value.dimensions());
        REQUIRE(std::memcmp(pa[k]->value.data(), pb[k]->value.data(),
                            sizeof(float) * size_t(pa[k]->value.size())) == 0);
    }
    REQUIRE(a.branch_count() == b.branch_count());
    for (size_t br = 0; br < a.branch_count(); ++br) {
        auto la = a.branch(br), lb = b.branch(br);
        REQUIRE(la.size() == lb.size());
        for (size_t i = 0; i < la.size(); ++i)
            require_same_layer(*la[i], *lb[i], where + ", branch " + std::to_string(br) + ", layer " + std::to_string(i));
    }
}

// Identity that throws in forward: an error inside a branch that runs on a thread of
// its own must still reach the caller.
template <class T>
class ThrowsInForward : public Layer<T> {
public:
    std::string type() const override { return "ThrowsInForward"; }
    Config config() const override { return {}; }
    void forward(const Tensor<T>&, Tensor<T>&, bool) override {
        throw std::runtime_error("ThrowsInForward: on purpose");
    }
    void backward(const Tensor<T>&, const Tensor<T>&, const Tensor<T>&, Tensor<T>*) override {}

protected:
    Shape do_build(const Shape& in, Rng&) override { return in; }
};

// An Inception-A-like block on (16, 17, 17): four branches of similar cost.
std::unique_ptr<Branches<float>> balanced_block() {
    auto block = std::make_unique<Branches<float>>(Merge::concat);
    block->branch().add<Conv2D>(24, K2{1, 1}, Activation::relu);
    auto& b1 = block->branch();
    b1.add<Conv2D>(8, K2{1, 1}, Activation::relu);
    b1.add<Conv2D>(12, K2{3, 3}, Activation::relu, Padding::same);
    block->branch().add<Conv2D>(8, K2{3, 3}, Activation::relu, Padding::same);
    auto& b3 = block->branch();
    b3.add<AvgPool2D>(K2{3, 3}, K2{1, 1}, Padding::same);
    b3.add<Conv2D>(24, K2{1, 1}, Activation::relu);
    return block;
}

struct RestoreThreads {
    int saved = max_threads();
    ~RestoreThreads() { set_threads(saved); }
};

}  // namespace

TEST_CASE("Branches: one image runs balanced branches on threads of their own, with the same floats",
          "[branches][threads]") {
    RestoreThreads restore;
    Rng rng(120);
    auto block = balanced_block();
    const Shape in = Shape::image(16, 17, 17);
    block->build(in, rng);
    set_threads(2);
#ifdef _OPENMP
    // Longest first: branches 2 and 1 cost most and get a thread each; then 3 joins the
    // lighter one (1), and 0 the other.
    const std::vector<int> owner = block->branch_owners(1);
    REQUIRE(owner.size() == 4);
    CHECK(owner[0] != owner[1]);
    CHECK(owner[2] != owner[3]);
#endif
    CHECK(block->branch_owners(2).empty());  // as many samples as threads: inside the layers

    // Every layer of a branch on one thread is what 1 thread computes: equal floats.
    const Tensor<float> x = random_tensor(1, in, rng).cast<float>();
    Tensor<float> y2, y1;
    block->forward(x, y2, false);
    set_threads(1);
    CHECK(block->branch_owners(1).empty());
    block->forward(x, y1, false);
    REQUIRE(y2.size() == y1.size());
    int differ = 0;
    for (Eigen::Index i = 0; i < y1.size(); ++i) differ += y1.data()[i] != y2.data()[i];
    CHECK(differ == 0);

    // Unbalanced (three equal branches on two threads: 2/3 of the work on one): no.
    set_threads(2);
    Branches<float> three(Merge::mean);
    for (int b = 0; b < 3; ++b) three.branch().add<Conv2D>(8, K2{3, 3}, Activation::relu, Padding::same);
    three.build(in, rng);
    CHECK(three.branch_owners(1).empty());

    // An error on a branch's own thread reaches the caller; the block works again after.
    Branches<float> bad(Merge::concat);
    bad.branch().add<Conv2D>(24, K2{1, 1}, Activation::relu);
    bad.branch().add(std::make_unique<ThrowsInForward<float>>());
    bad.branch().add<Conv2D>(24, K2{1, 1}, Activation::relu);
    bad.build(in, rng);
#ifdef _OPENMP
    CHECK(bad.branch_owners(1).size() == 3);
#endif
    Tensor<float> yb;
    CHECK_THROWS_WITH(bad.forward(x, yb, false), "ThrowsInForward: on purpose");
    block->forward(x, y2, false);
    differ = 0;
    for (Eigen::Index i = 0; i < y1.size(); ++i) differ += y1.data()[i] != y2.data()[i];
    CHECK(differ == 0);
}

TEST_CASE("Branches gradients: Inception-like concat of three branches", "[branches][gradcheck]") {
    auto block = inception_block<double>();
    const auto r = kitnn_test::check_layer_gradients(*block, Shape::image(3, 8, 8), 2, 101);
    CHECK(block->output_shape() == Shape::image(7, 4, 4));
    CHECK(r.checked_inputs == 2 * 3 * 8 * 8);
    CHECK(r.checked_params == (2 * 3 + 2) + (3 * 3 * 9 + 3) + (2 * 3 + 2));
    CHECK(block->macs() == 2 * 3 * 16 + 3 * 27 * 16 + 2 * 3 * 16);
    CHECK(block->branch_count() == 3);
    CHECK(block->branch(1).size() == 2);
    CHECK(block->branch(1)[1]->type() == "ReLU");

    // Flat features concatenate too, with an identity branch: (5) -> (3 + 2 + 5).
    Branches<double> flat(Merge::concat);
    flat.branch().add<Dense>(3);
    flat.branch().add<Dense>(2, Activation::relu);
    flat.branch();
    kitnn_test::check_layer_gradients(flat, Shape::flat(5), 3, 102);
    CHECK(flat.output_shape() == Shape::flat(10));
}

TEST_CASE("Branches gradients: residual add with an identity branch", "[branches][gradcheck]") {
    for (bool shortcut_first : {false, true}) {
        INFO("identity is branch " << (shortcut_first ? 0 : 1));
        auto block = residual_block<double>(3, shortcut_first);
        const auto r = kitnn_test::check_layer_gradients(*block, Shape::image(3, 5, 4), 2, 111);
        CHECK(block->output_shape() == Shape::image(3, 5, 4));
        CHECK(r.checked_params == (4 * 3 * 9 + 4) + (3 * 4 * 9 + 3));
    }

    // Inside a model, after a layer (the container gets a dx) and before Flatten/Dense.
    Sequential<double> m(Shape::image(2, 6, 5), 7);
    m.add<Conv2D>(3, K2{3, 3}, Activation::relu, Padding::same);
    m.add(residual_block<double>(3));
    m.add<MaxPool2D>();
    m.add<Flatten>();
    m.add<Dense>(4);
    randomize_biases(m.params(), 8);
    Rng rng(9);
    const auto x = random_tensor(3, m.input_shape(), rng);
    const auto labels = random_labels(3, 4, rng);
    const auto r = kitnn_test::check_model_gradients(m, x, labels, true, 10);
    CHECK(r.checked_params == m.param_count());
}

TEST_CASE("Branches gradients: nested containers", "[branches][gradcheck]") {
    // concat[ add[1x1 conv, 3x3 conv] + ReLU, identity, concat[1x1 conv, identity] ]
    Branches<double> outer(Merge::concat);
    auto inner = std::make_unique<Branches<double>>(Merge::add);
    inner->branch().add<Conv2D>(2, K2{1, 1});
    inner->branch().add<Conv2D>(2, K2{3, 3}, Activation::linear, Padding::same);
    auto& b0 = outer.branch();
    b0.add(std::move(inner));
    b0.add<ReLU>();
    outer.branch();
    auto inner2 = std::make_unique<Branches<double>>(Merge::concat);
    inner2->branch().add<Conv2D>(1, K2{1, 1}, Activation::relu);
    inner2->branch();
    outer.branch().add(std::move(inner2));
    const auto r = kitnn_test::check_layer_gradients(outer, Shape::image(2, 5, 5), 2, 121);
    CHECK(outer.output_shape() == Shape::image(2 + 2 + 3, 5, 5));
    CHECK(r.checked_params == (2 * 2 + 2) + (2 * 2 * 9 + 2) + (1 * 2 + 1));
    CHECK(outer.params().size() == 6);
}

TEST_CASE("Branches gradients: a container as layer 0 (no dx) still trains every branch",
          "[branches][gradcheck]") {
    for (Merge merge : {Merge::concat, Merge::add, Merge::mean}) {
        INFO("merge " << to_string(merge));
        Sequential<double> m(Shape::image(2, 5, 5), 11);
        auto block = std::make_unique<Branches<double>>(merge);
        block->branch().add<Conv2D>(2, K2{3, 3}, Activation::linear, Padding::same);  // first layer, dx null
        block->branch();                                                               // identity
        auto& b2 = block->branch();
        b2.add<Conv2D>(2, K2{1, 1}, Activation::relu);
        b2.add<Conv2D>(2, K2{3, 3}, Activation::linear, Padding::same);
        m.add(std::move(block));
        m.add<Flatten>();
        m.add<Dense>(3);
        randomize_biases(m.params(), 12);
        Rng rng(13);
        const auto x = random_tensor(2, m.input_shape(), rng);
        const auto labels = random_labels(2, 3, rng);
        const auto r = kitnn_test::check_model_gradients(m, x, labels, false, 14);
        CHECK(r.checked_params == m.param_count());

        // An empty batch flows through the container both ways.
        Tensor<double> none(0, 2, 5, 5);
        CHECK(m.layer(0).output_shape() == (merge != Merge::concat ? Shape::image(2, 5, 5) : Shape::image(6, 5, 5)));
        Tensor<double> y0;
        m.layer(0).forward(none, y0, true);
        CHECK(y0.dimension(0) == 0);
        Tensor<double> dx0;
        CHECK_NOTHROW(m.layer(0).backward(none, y0, y0, &dx0));
        CHECK(dx0.dimension(0) == 0);
    }
}

TEST_CASE("Branches: shape errors name the branch and the layer inside", "[branches][shapes]") {
    SECTION("a kernel too large for the input, in branch 1") {
        Sequential<float> m(Shape::image(3, 4, 4));
        auto block = std::make_unique<Branches<float>>();
        block->branch().add<Conv2D>(2, K2{1, 1});
        block->branch().add<Conv2D>(2, K2{5, 5});
        const std::string e = shape_error_of([&] { m.add(std::move(block)); });
        INFO(e);
        CHECK_THAT(e, Catch::StartsWith("layer 0 (Branches): branch 1, layer 0 (Conv2D): "));
        CHECK_THAT(e, Catch::Contains("5x5") && Catch::Contains("(3,4,4)"));
        CHECK(m.size() == 0);
    }
    SECTION("the second layer of a branch, and a nested container") {
        Sequential<float> m(Shape::image(1, 6, 6));
        m.add<Conv2D>(2, K2{3, 3});
        auto block = std::make_unique<Branches<float>>();
        auto& b0 = block->branch();
        b0.add<Conv2D>(2, K2{1, 1});
        b0.add<Dense>(4);
        const std::string e = shape_error_of([&] { m.add(std::move(block)); });
        INFO(e);
        CHECK_THAT(e, Catch::Contains("layer 1 (Branches): branch 0, layer 1 (Dense): ") &&
                          Catch::Contains("(2,4,4)") && Catch::Contains("Flatten"));

        auto outer = std::make_unique<Branches<float>>(Merge::add);
        outer->branch();
        auto inner = std::make_unique<Branches<float>>();
        inner->branch();
        inner->branch().add<MaxPool2D>(K2{5, 5});
        auto& ob1 = outer->branch();
        ob1.add<ReLU>();
        ob1.add(std::move(inner));
        const std::string n = shape_error_of([&] { m.add(std::move(outer)); });
        INFO(n);
        CHECK_THAT(n, Catch::Contains("layer 1 (Branches): branch 1, layer 1 (Branches): branch 1, layer 0 (MaxPool2D)"));
        CHECK(m.size() == 1);
    }
    SECTION("outputs that cannot be merged") {
        Sequential<float> m(Shape::image(3, 6, 6));
        auto cat = std::make_unique<Branches<float>>(Merge::concat);
        cat->branch().add<Conv2D>(2, K2{3, 3});  // (2,4,4)
        cat->branch();                           // (3,6,6)
        const std::string e = shape_error_of([&] { m.add(std::move(cat)); });
        INFO(e);
        CHECK_THAT(e, Catch::Contains("cannot concatenate") && Catch::Contains("branch 0 gives (2,4,4)") &&
                          Catch::Contains("branch 1 gives (3,6,6)"));
        auto sum = std::make_unique<Branches<float>>(Merge::add);
        sum->branch();
        sum->branch().add<Conv2D>(4, K2{1, 1});  // (4,6,6)
        const std::string a = shape_error_of([&] { m.add(std::move(sum)); });
        INFO(a);
        CHECK_THAT(a, Catch::Contains("cannot add") && Catch::Contains("branch 1 gives (4,6,6)"));
        auto mixed = std::make_unique<Branches<float>>(Merge::concat);
        mixed->branch();
        mixed->branch().add<Flatten>();
        CHECK_THAT(shape_error_of([&] { m.add(std::move(mixed)); }), Catch::Contains("cannot concatenate"));
        CHECK_THAT(shape_error_of([&] { m.add(std::make_unique<Branches<float>>()); }),
                   Catch::Contains("has no branches"));
        CHECK(m.size() == 0);
    }
    SECTION("layers and branches cannot be added once the container is built") {
        Sequential<float> m(Shape::flat(4));
        auto block = std::make_unique<Branches<float>>();
        auto& b0 = block->branch();
        b0.add<Dense>(2);
        auto& ref = *block;
        m.add(std::move(block));
        CHECK_THROWS_AS(b0.add<Dense>(3), std::logic_error);
        CHECK_THROWS_AS(ref.branch(), std::logic_error);
        CHECK(m.output_shape() == Shape::flat(2));
        CHECK_THROWS_AS(Branches<float>().branch().add(nullptr), std::invalid_argument);
        CHECK_THROWS_AS(merge_from_string("sum"), std::runtime_error);
    }
}

TEST_CASE("summary() lists a container's branches indented under it", "[branches][summary]") {
    Sequential<float> m(Shape::image(1, 6, 6));
    m.add<Conv2D>(4, K2{3, 3}, Activation::relu, Padding::same);
    auto block = std::make_unique<Branches<float>>(Merge::concat);
    block->branch().add<Conv2D>(2, K2{1, 1});
    auto& b1 = block->branch();
    b1.add<Conv2D>(3, K2{3, 3}, Activation::linear, Padding::same);
    b1.add<ReLU>();
    auto inner = std::make_unique<Branches<float>>(Merge::add);
    inner->branch();
    inner->branch().add<Conv2D>(4, K2{1, 1});
    block->branch().add(std::move(inner));
    block->branch().add<WithState>();
    m.add(std::move(block));
    m.add<Flatten>();
    m.add<Dense>(3);
    const std::string expected =
        "Model: \"sequential\"\n"
        "_________________________________________________________________\n"
        "Layer (type)                 Output Shape              Param #\n"
        "=================================================================\n"
        "conv2d (Conv2D)              (None, 6, 6, 4)           40\n"
        "_________________________________________________________________\n"
        "branches (Branches)          (None, 6, 6, 13)          145\n"
        "  b0: conv2d_1 (Conv2D)      (None, 6, 6, 2)           10\n"
        "  b1: conv2d_2 (Conv2D)      (None, 6, 6, 3)           111\n"
        "  b1: re_lu (ReLU)           (None, 6, 6, 3)           0\n"
        "  b2: branches_1 (Branches)  (None, 6, 6, 4)           20\n"
        "    b0: identity             (None, 6, 6, 4)           0\n"
        "    b1: conv2d_3 (Conv2D)    (None, 6, 6, 4)           20\n"
        "  b3: with_state (WithState) (None, 6, 6, 4)           4\n"
        "_________________________________________________________________\n"
        "flatten (Flatten)            (None, 468)               0\n"
        "_________________________________________________________________\n"
        "dense (Dense)                (None, 3)                 1,407\n"
        "=================================================================\n"
        "Total params: 1,592\n"
        "Trainable params: 1,588\n"
        "Non-trainable params: 4\n"
        "_________________________________________________________________\n";
    CHECK(m.summary() == expected);
    CHECK(m.param_count() == 1588);  // trainable only
    CHECK(m.params().size() == 2 + 2 + 2 + 2 + 2);
}

TEST_CASE("model file v2: nested containers round trip with identical predictions", "[branches][modelfile]") {
    auto m = nested_model(5);
    const auto x = fixed_input(3, m.input_shape());
    const Tensor<float> before = m.forward(x, false);
    const Metadata meta{{"model", "nested"}};
    const auto bytes = serialize_model(m, meta);
    CHECK(bytes[8] == 2);  // format version 2

    Metadata got;
    auto l = deserialize_model<float>(bytes, "nested.kitnn", &got);
    CHECK(got == meta);
    REQUIRE(l.size() == m.size());
    for (size_t i = 0; i < m.size(); ++i) require_same_layer(m.layer(i), l.layer(i), "layer " + std::to_string(i));
    CHECK(l.summary() == m.summary());
    CHECK(l.param_count() == m.param_count());
    CHECK(l.params().size() == m.params().size());
    const Tensor<float> after = l.forward(x, false);
    REQUIRE(after.dimensions() == before.dimensions());
    CHECK(std::memcmp(after.data(), before.data(), sizeof(float) * size_t(before.size())) == 0);
    CHECK(serialize_model(l, got) == bytes);  // saving again gives the same bytes

    // The loaded model trains: a backward pass reaches every nested parameter.
    l.zero_grad();
    l.forward(x, true);
    Tensor<float> d(3, 3, 1, 1);
    d.setConstant(0.5f);
    l.backward(d);
    for (auto* p : l.params()) {
        float s = 0;
        for (Eigen::Index i = 0; i < p->grad.size(); ++i) s += std::abs(p->grad.data()[i]);
        CHECK(s > 0);
    }
}

TEST_CASE("model file v2: extras round trip, and version-1 files still load", "[branches][modelfile]") {
    auto m = nested_model(6);
    NamedTensors<float> extras;
    Tensor<float> a(3, 1, 1, 1), b(2, 3, 4, 5), empty(0, 1, 1, 1);
    for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = float(i) - 1.5f;
    for (Eigen::Index i = 0; i < b.size(); ++i) b.data()[i] = float(i * i) / 7.0f;
    extras.emplace_back("adam.m.0", a);
    extras.emplace_back("z", b);
    extras.emplace_back("nothing", empty);

    const auto bytes = serialize_model(m, {{"k", "v"}}, extras);
    NamedTensors<float> got;
    Metadata meta;
    auto l = deserialize_model<float>(bytes, "extras.kitnn", &meta, &got);
    CHECK(meta.at("k") == "v");
    REQUIRE(got.size() == 3);
    for (size_t i = 0; i < got.size(); ++i) {
        INFO("extra " << i);
        CHECK(got[i].first == extras[i].first);
        REQUIRE(got[i].second.dimensions() == extras[i].second.dimensions());
        if (got[i].second.size() > 0)  // memcmp of an empty tensor's null data is undefined
            CHECK(std::memcmp(got[i].second.data(), extras[i].second.data(),
                              sizeof(float) * size_t(got[i].second.size())) == 0);
    }
    CHECK(serialize_model(l, meta, got) == bytes);
    // Not asking for them skips them; a file without extras gives none.
    CHECK_NOTHROW(deserialize_model<float>(bytes, "extras.kitnn"));
    got.emplace_back("stale", a);
    deserialize_model<float>(serialize_model(m), "none.kitnn", nullptr, &got);
    CHECK(got.empty());

    // Through the files, with save_model / load_model.
    const std::string p = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") +
                          "/kitnn_branches_extras_" + std::to_string(::getpid()) + ".kitnn";
    save_model(p, m, {}, extras);
    NamedTensors<float> back;
    auto fl = load_model<float>(p, nullptr, &back);
    std::remove(p.c_str());
    CHECK(fl.param_count() == m.param_count());
    REQUIRE(back.size() == 3);
    CHECK(back[1].second(1, 2, 3, 4) == b(1, 2, 3, 4));

    // The committed version-1 golden file (no branch counts, no extras) still loads.
    NamedTensors<float> none{{"x", a}};
    Metadata gm;
    auto golden = load_model<float>(std::string(KITNN_TEST_DATA_DIR) + "/golden_v1.kitnn", &gm, &none);
    CHECK(gm.at("model") == "golden_v1");
    CHECK(golden.size() == 8);
    CHECK(none.empty());
}

TEST_CASE("model file v2: every cut or changed byte of a nested model gives a ModelFileError, never a crash",
          "[branches][modelfile]") {
    auto m = nested_model(7);
    const auto good = serialize_model(m, {{"model", "nested"}});
    // Cut at every length, with the checksum fixed so the parser sees the cut.
    for (size_t n = 24; n < good.size(); ++n) {
        std::vector<char> b(good.begin(), good.begin() + std::ptrdiff_t(n));
        fix_crc(b);
        const std::string e = load_error_of(b);
        INFO("length " << n << ": " << e);
        REQUIRE_THAT(e, Catch::StartsWith("crafted.kitnn: "));
    }
    // Every byte changed (checksum fixed): loads or fails cleanly, nothing else.
    int refused = 0;
    for (size_t i = 8; i + 4 < good.size(); ++i) {
        auto b = good;
        b[i] = char(b[i] ^ 0x5a);
        fix_crc(b);
        INFO("byte " << i);
        try {
            deserialize_model<float>(b, "crafted.kitnn");
        } catch (const ModelFileError&) {
            ++refused;
        }
    }
    CHECK(refused > 0);
}

TEST_CASE("model file v2: crafted nesting is refused with errors naming the path", "[branches][modelfile]") {
    SECTION("a branch claims more layers than the file holds") {
        Craft c(1);
        c.container(2);
        c.w.u32(1);
        c.relu();
        c.w.u32(1000);  // branch 1: 1000 layers, none present
        const std::string e = load_error_of(c.finish(false));
        INFO(e);
        CHECK_THAT(e, Catch::Contains("truncated or corrupt") && Catch::Contains("layer 0 (Branches): branch 1, layer 0"));
    }
    SECTION("a nested layer cut in the middle") {
        Craft c(1);
        c.container(1);
        c.w.u32(2);
        c.relu();
        c.w.str("ReLU");  // its hyperparameter count, tensors and branches are missing
        const std::string e = load_error_of(c.finish(false));
        INFO(e);
        CHECK_THAT(e, Catch::Contains("truncated or corrupt") && Catch::Contains("branch 0, layer 1"));
    }
    SECTION("absurd counts") {
        Craft c(1);
        c.container(5000);
        CHECK_THAT(load_error_of(c.finish()), Catch::Contains("layer 0 (Branches): 5000 branches (more than 4096"));
        Craft d(1);
        d.container(1);
        d.w.u32(0x7fffffff);
        CHECK_THAT(load_error_of(d.finish()), Catch::Contains("layer 0 (Branches): branch 0: 2147483647 layers"));
        Craft t(1);  // 4097 layers in all, 4096 of them nested
        t.container(1);
        t.w.u32(4096);
        for (int i = 0; i < 4096; ++i) t.relu();
        CHECK_THAT(load_error_of(t.finish()), Catch::Contains("more than 4096 layers (nested ones included)"));
    }
    SECTION("a plain layer with branches, a container with tensors, an unknown merge") {
        Craft c(1);
        c.relu(1);
        c.w.u32(0);
        CHECK_THAT(load_error_of(c.finish()), Catch::Contains("layer 0 (ReLU) has 1 branches, but is not a container"));
        Craft d(1);
        d.container(1, "add", 1);
        CHECK_THAT(load_error_of(d.finish()), Catch::Contains("layer 0 (Branches) has 1 tensors, expected 0"));
        Craft e(1);
        e.container(1, "sum");
        e.w.u32(0);
        CHECK_THAT(load_error_of(e.finish()), Catch::Contains("layer 0 (Branches): unknown merge 'sum'"));
        Craft f(1);
        f.container(0);
        CHECK_THAT(load_error_of(f.finish()), Catch::Contains("layer 0 (Branches)") && Catch::Contains("no branches"));
        Craft g(1);  // a nested layer whose hyperparameters are missing
        g.container(2, "concat");
        g.w.u32(0);
        g.w.u32(1);
        g.w.str("Conv2D");
        g.w.u32(0);
        CHECK_THAT(load_error_of(g.finish()), Catch::Contains("layer 0 (Branches): branch 1, layer 0 (Conv2D): "));
        Craft h(1);  // MaxPool2D needs an image; the input is flat: its build fails
        h.container(1, "concat");
        h.w.u32(1);
        h.w.str("MaxPool2D");
        h.w.u32(4);
        for (const char* k : {"pool_h", "pool_w", "stride_h", "stride_w"}) {
            h.w.str(k);
            h.w.str("2");
        }
        h.w.u32(0);
        h.w.u32(0);
        const std::string pe = load_error_of(h.finish());
        INFO(pe);
        CHECK_THAT(pe, Catch::Contains("layer 0 (Branches): branch 0, layer 0 (MaxPool2D): ") &&
                           !Catch::Contains("(MaxPool2D): MaxPool2D:") && Catch::Contains("(6)"));
    }
    SECTION("nesting: 64 containers deep loads, 65 is refused") {
        auto deep = [](int depth) {
            Craft c(1);
            for (int d = 0; d < depth; ++d) {
                c.container(1);
                c.w.u32(d + 1 < depth ? 1 : 0);  // the innermost branch is the identity
            }
            return c.finish();
        };
        auto m = deserialize_model<float>(deep(64), "deep.kitnn");
        Tensor<float> x(2, 6, 1, 1);
        x.setConstant(1.0f);
        const Tensor<float> y = m.forward(x, false);
        CHECK(y(1, 5, 0, 0) == 1.0f);
        CHECK(serialize_model(m) == deep(64));
        CHECK_THAT(load_error_of(deep(65)), Catch::Contains("containers nested more than 64 deep"));
    }
    SECTION("extras: a tensor larger than the file, a negative dimension, trailing bytes") {
        auto with_extra = [](std::int64_t d0, bool trailing) {
            Craft c(1);  // one layer (a model file without layers is refused)
            c.relu();
            c.w.u32(1);
            c.w.str("m");
            c.w.i64(d0);
            c.w.i64(1);
            c.w.i64(1);
            c.w.i64(1);
            for (std::int64_t i = 0; i < std::max<std::int64_t>(d0, 0) && i < 4; ++i) c.w.u32(0);
            if (trailing) c.w.u32(7);
            return c.finish(false);
        };
        NamedTensors<float> ex;
        CHECK_NOTHROW(deserialize_model<float>(with_extra(4, false), "ok.kitnn", nullptr, &ex));
        CHECK(ex.size() == 1);
        CHECK_THAT(load_error_of(with_extra(1 << 30, false)),
                   Catch::Contains("extra tensor 'm': needs more than the"));
        CHECK_THAT(load_error_of(with_extra(-1, false)), Catch::Contains("extra tensor 'm': dimension -1"));
        CHECK_THAT(load_error_of(with_extra(4, true)), Catch::Contains("4 unexpected bytes after the last extra tensor"));
    }
}

namespace {
Sequential<float> golden_v2_model(std::uint64_t seed) {
    Sequential<float> m(Shape::image(2, 6, 5), seed);
    m.add<Conv2D>(3, K2{3, 3}, Activation::relu, Padding::same);
    auto inc = std::make_unique<Branches<float>>(Merge::concat);
    auto res = std::make_unique<Branches<float>>(Merge::add);
    res->branch().add<Conv2D>(3, K2{3, 3}, Activation::linear, Padding::same);
    res->branch();
    auto& b0 = inc->branch();
    b0.add(std::move(res));
    b0.add<ReLU>();
    inc->branch().add<Conv2D>(2, K2{1, 1}, Activation::relu);
    inc->branch();
    m.add(std::move(inc));                                                // (8, 6, 5)
    m.add<Conv2D>(4, K2{2, 2}, Activation::relu, Padding::valid, 2);     // (4, 3, 2)
    m.add<Flatten>();
    m.add<Dense>(3);
    randomize_biases(m.params(), seed + 1);
    return m;
}
NamedTensors<float> golden_v2_extras() {
    Tensor<float> a(5, 1, 1, 1), b(1, 1, 1, 1);
    for (Eigen::Index i = 0; i < a.size(); ++i) a.data()[i] = float(i) * 0.25f - 0.5f;
    b.setConstant(7.0f);
    return {{"adam.m.0", a}, {"step", b}};
}
}  // namespace

// Written by format version 2 (tests/data/golden_v2.kitnn) with the predictions in
// golden_v2_expected.txt. Regenerate only on purpose: KITNN_WRITE_GOLDEN=1.
TEST_CASE("the committed version-2 golden model (nested containers, extras) still loads and predicts the same",
          "[branches][modelfile][golden]") {
    const std::string dir = KITNN_TEST_DATA_DIR;
    const std::string model = dir + "/golden_v2.kitnn", expected = dir + "/golden_v2_expected.txt";
    const auto x = fixed_input(2, Shape::image(2, 6, 5));
    if (std::getenv("KITNN_WRITE_GOLDEN") && kModelFormatVersion == 2) {
        auto m = golden_v2_model(2026);
        save_model(model, m, {{"model", "golden_v2"}}, golden_v2_extras());
        const Tensor<float> y = m.forward(x, false);
        std::ofstream f(expected);
        f.precision(9);
        for (Eigen::Index i = 0; i < y.size(); ++i) f << y.data()[i] << "\n";
    }
    Metadata meta;
    NamedTensors<float> extras;
    auto m = load_model<float>(model, &meta, &extras);
    CHECK(meta["model"] == "golden_v2");
    auto fresh = golden_v2_model(1);
    CHECK(m.summary() == fresh.summary());
    const auto want = golden_v2_extras();
    REQUIRE(extras.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        CHECK(extras[i].first == want[i].first);
        REQUIRE(extras[i].second.dimensions() == want[i].second.dimensions());
        for (Eigen::Index k = 0; k < want[i].second.size(); ++k)
            CHECK(extras[i].second.data()[k] == want[i].second.data()[k]);
    }
    const Tensor<float> y = m.forward(x, false);
    std::ifstream f(expected);
    REQUIRE(f);
    for (Eigen::Index i = 0; i < y.size(); ++i) {
        double v;
        REQUIRE(f >> v);
        CHECK(y.data()[i] == Approx(v).epsilon(1e-6));
    }
}
