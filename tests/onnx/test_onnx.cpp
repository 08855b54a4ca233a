// kitnn_onnx_tests: ONNX export/import (kitnn/onnx/onnx.hpp). A binary of its own: it
// links libonnx (the checker) and protobuf, which kitnn_tests must not need.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

// First: onnx/defs/parser.h has an enumerator MAP_TYPE, a macro in <sys/mman.h>,
// which kitnn's headers include.
#include <onnx/checker.h>

#include <kitnn/kitnn.hpp>
#include <kitnn/onnx/onnx.hpp>

#include <cstring>
#include <filesystem>

using namespace kitnn;

namespace {

Tensor<float> random_input(const Shape& s, Eigen::Index n, std::uint64_t seed) {
    const auto c = s.chw();
    Tensor<float> x(n, c[0], c[1], c[2]);
    Rng rng(seed);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform(-1, 1));
    return x;
}

// Moving statistics and gammas away from their defaults, so BatchNorm is not the identity.
void randomize_batchnorm(Sequential<float>& m) {
    Rng rng(11);
    detail::for_each_layer(m, [&](const std::string&, Layer<float>& l) {
        if (auto* bn = dynamic_cast<BatchNorm<float>*>(&l))
            for (Eigen::Index c = 0; c < bn->gamma().value.size(); ++c) {
                bn->gamma().value.data()[c] = float(rng.uniform(0.5, 1.5));
                bn->beta().value.data()[c] = float(rng.uniform(-0.2, 0.2));
                bn->moving_mean().value.data()[c] = float(rng.uniform(-0.2, 0.2));
                bn->moving_variance().value.data()[c] = float(rng.uniform(0.5, 1.5));
            }
    });
}

// Layer types and configs (all keys but the initializer, which ONNX does not carry), recursively.
std::string structure(Layer<float>& l) {
    std::string s = l.type() + "{";
    const Config c = l.config();
    // A convolution's padding as what it computes: the top/left pads and the output
    // size. `same` on a 1x1 kernel is `valid`, and explicit pad 1 on a 3x3 stride-1
    // kernel is `same`: ONNX has only the pads, and the import picks one name.
    const auto* conv = dynamic_cast<const Conv2D<float>*>(&l);
    for (auto& kv : c.items()) {
        if (kv.first == "init" || (conv && (kv.first == "padding" || kv.first == "pad"))) continue;
        s += kv.first + "=" + kv.second + ";";
    }
    if (conv)
        s += "pads=" + std::to_string(conv->pad_top()) + "," + std::to_string(conv->pad_left()) +
             ";out=" + l.output_shape().str() + ";";
    for (size_t b = 0; b < l.branch_count(); ++b) {
        s += "[";
        for (auto* il : l.branch(b)) s += structure(*il);
        s += "]";
    }
    return s + "}";
}
std::string structure(Sequential<float>& m) {
    std::string s = m.input_shape().str();
    for (size_t i = 0; i < m.size(); ++i) s += structure(m.layer(i));
    return s;
}

// Exports m, checks the file with libonnx's checker, imports it: same structure, and
// bit-identical outputs on random inputs.
void round_trip(Sequential<float>& m, Eigen::Index n = 5) {
    const auto proto = to_onnx(m);
    REQUIRE_NOTHROW(onnx::checker::check_model(proto));
    const auto bytes = serialize_onnx(proto);
    auto back = parse_onnx<float>(bytes.data(), bytes.size(), "round trip");
    CHECK(structure(back) == structure(m));
    const auto x = random_input(m.input_shape(), n, 3);
    const Tensor<float> a = m.forward(x, false);
    const Tensor<float> b = back.forward(x, false);
    REQUIRE(a.dimensions() == b.dimensions());
    CHECK(std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(float)) == 0);
}

std::unique_ptr<Branches<float>> inception_like() {
    auto box = std::make_unique<Branches<float>>(Merge::concat);
    box->branch().add<Conv2D>(3, std::array<int, 2>{1, 1}, Activation::relu, Padding::same);
    auto& b1 = box->branch();
    b1.add<Conv2D>(2, std::array<int, 2>{1, 3}, Activation::linear, Padding::same, 1, Init::glorot_uniform, false);
    b1.add<BatchNorm>(0.9, 1e-3);
    b1.add<ReLU>();
    auto inner = std::make_unique<Branches<float>>(Merge::concat);  // a fork inside a branch
    inner->branch().add<Conv2D>(2, std::array<int, 2>{3, 1}, Activation::linear, Padding::same);
    inner->branch().add<Conv2D>(2, std::array<int, 2>{1, 3}, Activation::linear, Padding::same);
    b1.add(std::move(inner));
    box->branch().add<AvgPool2D>(std::array<int, 2>{3, 3}, std::array<int, 2>{1, 1}, Padding::same);
    box->branch();  // identity
    return box;
}

}  // namespace

TEST_CASE("onnx: every MNIST zoo model survives kitnn -> ONNX -> kitnn exactly", "[onnx]") {
    for (const auto& name : zoo::mnist_models()) {
        INFO(name);
        auto m = zoo::mnist_model<float>(name, 7);
        randomize_batchnorm(m);
        round_trip(m);
    }
}

TEST_CASE("onnx: every layer type, padding mode and Branches form round-trips exactly", "[onnx]") {
    Sequential<float> m(Shape::image(2, 13, 11), 3);
    m.add<Conv2D>(4, std::array<int, 2>{3, 3}, Activation::relu, Padding::same, 2);  // asymmetric same pads
    m.add<Conv2D>(4, std::array<int, 2>{3, 2}, Activation::linear, 1);                // explicit pad 1
    m.add<LeakyReLU>(0.2);
    m.add(inception_like());
    m.add<MaxPool2D>(std::array<int, 2>{3, 3}, std::array<int, 2>{2, 2}, Padding::same);
    auto res = std::make_unique<Branches<float>>(Merge::add);  // residual, 3 summands
    res->branch().add<Conv2D>(15, std::array<int, 2>{3, 3}, Activation::linear, Padding::same);
    res->branch();
    res->branch().add<Tanh>();
    m.add(std::move(res));
    m.add<AvgPool2D>(std::array<int, 2>{2, 2});
    m.add<Conv2D>(6, std::array<int, 2>{1, 1});  // valid
    m.add<BatchNorm>();
    m.add<Sigmoid>();
    m.add<GlobalAvgPool2D>();
    m.add<Dense>(8, Activation::relu);
    m.add<BatchNorm>(0.95, 1e-5);  // on flat features
    m.add<Dropout>(0.3);
    auto flat = std::make_unique<Branches<float>>(Merge::concat);  // concat of flat features
    flat->branch().add<Dense>(3);
    flat->branch();
    m.add(std::move(flat));
    m.add<Flatten>();
    m.add<Dense>(5);
    m.add<Softmax>();
    randomize_batchnorm(m);
    round_trip(m, 7);
}

TEST_CASE("onnx: a Branches as the first layer of a branch (its arms fork from the same tensor)", "[onnx]") {
    // In ONNX the inner block's branches read the outer fork's tensor too: the importer
    // must find the inner merge first and make it one branch again.
    Sequential<float> m(Shape::image(2, 5, 5), 1);
    auto box = std::make_unique<Branches<float>>(Merge::concat);
    box->branch().add<Conv2D>(1, std::array<int, 2>{1, 1});
    auto inner = std::make_unique<Branches<float>>(Merge::add);
    inner->branch().add<Conv2D>(2, std::array<int, 2>{3, 3}, Activation::linear, 1);
    inner->branch();
    inner->branch().add<ReLU>();
    auto& b1 = box->branch();
    b1.add(std::move(inner));
    b1.add<Sigmoid>();  // the joined branch goes on after its inner merge
    box->branch();
    auto cat = std::make_unique<Branches<float>>(Merge::concat);  // and an inner concat as a whole branch
    cat->branch().add<Tanh>();
    cat->branch();
    box->branch().add(std::move(cat));
    m.add(std::move(box));
    m.add<GlobalAvgPool2D>();
    m.add<Dense>(2);
    round_trip(m);
}

TEST_CASE("onnx: export options: final Softmax and opset", "[onnx]") {
    auto m = zoo::mnist_model<float>("keck", 1);
    OnnxExportOptions o;
    o.softmax = true;
    o.opset = 17;
    const auto p = to_onnx(m, o);
    REQUIRE_NOTHROW(onnx::checker::check_model(p));
    CHECK(p.opset_import(0).version() == 17);
    CHECK(p.graph().node(p.graph().node_size() - 1).op_type() == "Softmax");
    const auto bytes = serialize_onnx(p);
    auto back = parse_onnx<float>(bytes.data(), bytes.size());
    CHECK(back.layer(back.size() - 1).type() == "Softmax");
    const auto x = random_input(m.input_shape(), 4, 9);
    const Tensor<float> a = m.predict(x);
    const Tensor<float> b = back.predict(x);  // probabilities both ways
    CHECK(std::memcmp(a.data(), b.data(), size_t(a.size()) * 4) == 0);
    o.opset = 12;
    CHECK_THROWS_WITH(to_onnx(m, o), Catch::Contains("opset 12 is not supported"));
}

namespace {

// input (N, 1, 6, 6) -> Conv "c1" (2 filters, 3x3, pads 1) -> Relu "r1" -> output "y"
onnx::ModelProto small_graph() {
    onnx::ModelProto m;
    m.set_ir_version(7);
    auto* os = m.add_opset_import();
    os->set_version(13);
    auto& g = *m.mutable_graph();
    onnx_detail::set_shape(*g.add_input(), "x", onnx::TensorProto::FLOAT, {1, 6, 6});
    onnx_detail::set_shape(*g.add_output(), "y", onnx::TensorProto::FLOAT, {2, 6, 6});
    auto* w = g.add_initializer();
    w->set_name("w");
    w->set_data_type(onnx::TensorProto::FLOAT);
    for (int d : {2, 1, 3, 3}) w->add_dims(d);
    for (int i = 0; i < 18; ++i) w->add_float_data(float(i) * 0.1f - 0.9f);
    auto* c = g.add_node();
    c->set_name("c1");
    c->set_op_type("Conv");
    c->add_input("x");
    c->add_input("w");
    c->add_output("h");
    onnx_detail::attr(*c, "pads", std::vector<std::int64_t>{1, 1, 1, 1});
    auto* r = g.add_node();
    r->set_name("r1");
    r->set_op_type("Relu");
    r->add_input("h");
    r->add_output("y");
    return m;
}

std::string import_error(const onnx::ModelProto& m) {
    try {
        from_onnx<float>(m, "t.onnx");
    } catch (const OnnxError& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("onnx: a hand-built graph imports (Conv + Relu fused, float_data weights)", "[onnx]") {
    auto m = from_onnx<float>(small_graph(), "t.onnx");
    REQUIRE(m.size() == 1);
    CHECK(structure(m) == "(1,6,6)Conv2D{filters=2;kernel_h=3;kernel_w=3;stride=1;activation=relu;use_bias=0;pads=1,1;out=(2,6,6);}");
    CHECK(m.layer(0).config().str("padding") == "same");
}

TEST_CASE("onnx: what kitnn cannot express is refused with the node, op and reason", "[onnx]") {
    auto m = small_graph();
    auto& g = *m.mutable_graph();
    SECTION("unsupported op") {
        g.mutable_node(1)->set_op_type("Gelu");
        CHECK_THAT(import_error(m), Catch::Contains("node 'r1' (Gelu): op 'Gelu' is not supported"));
    }
    SECTION("group") {
        onnx_detail::attr(*g.mutable_node(0), "group", std::int64_t(2));
        CHECK_THAT(import_error(m), Catch::Contains("node 'c1' (Conv): group 2 is not supported"));
    }
    SECTION("dilations") {
        onnx_detail::attr(*g.mutable_node(0), "dilations", std::vector<std::int64_t>{2, 2});
        CHECK_THAT(import_error(m), Catch::Contains("(Conv): dilations [2,2] are not supported"));
    }
    SECTION("asymmetric pads kitnn cannot do") {
        g.mutable_node(0)->mutable_attribute(0)->set_ints(0, 2);
        CHECK_THAT(import_error(m), Catch::Contains("(Conv): pads [2,1,1,1] cannot be expressed"));
    }
    SECTION("unknown attribute") {
        onnx_detail::attr(*g.mutable_node(1), "alpha", 0.5f);
        CHECK_THAT(import_error(m), Catch::Contains("node 'r1' (Relu): attribute 'alpha' is not supported"));
    }
    SECTION("non-constant weights") {
        g.mutable_initializer()->Clear();
        CHECK_THAT(import_error(m), Catch::Contains("node 'c1' (Conv): has 2 computed inputs"));
    }
    SECTION("dynamic shape") {
        auto* d = g.mutable_input(0)->mutable_type()->mutable_tensor_type()->mutable_shape()->mutable_dim(2);
        d->set_dim_param("height");
        CHECK_THAT(import_error(m), Catch::Contains("dynamic dimension 2 ('height')"));
    }
    SECTION("weights whose dims do not match their data") {
        g.mutable_initializer(0)->set_dims(0, 3);
        CHECK_THAT(import_error(m), Catch::Contains("initializer 'w': dims [3,1,3,3] need 27 values, float_data holds 18"));
    }
    SECTION("huge dims are refused before anything is allocated") {
        g.mutable_initializer(0)->set_dims(0, std::int64_t(1) << 30);
        CHECK_THAT(import_error(m), Catch::Contains("more than 2^31 values"));
    }
    SECTION("external data") {
        g.mutable_initializer(0)->set_data_location(onnx::TensorProto::EXTERNAL);
        CHECK_THAT(import_error(m), Catch::Contains("external data is not supported"));
    }
    SECTION("Reshape to 4-D") {
        g.mutable_node(1)->set_op_type("Reshape");
        g.mutable_node(1)->add_input("s");
        auto* s = g.add_initializer();
        s->set_name("s");
        s->set_data_type(onnx::TensorProto::INT64);
        s->add_dims(4);
        for (int v : {-1, 2, 3, 12}) s->add_int64_data(v);
        CHECK_THAT(import_error(m), Catch::Contains("node 'r1' (Reshape): reshapes to 4-D"));
    }
    SECTION("an Add that is not the end of one fork") {
        // y = Relu(Conv(x)) + x would be a residual block, but here the Add reads h twice
        // through different paths: Conv -> h, Relu(h) -> r, Add(r, x2) where x2 is another input.
        onnx_detail::set_shape(*g.add_input(), "x2", onnx::TensorProto::FLOAT, {2, 6, 6});
        CHECK_THAT(import_error(m), Catch::Contains("more than one graph input"));
    }
    SECTION("an Add of branches with different shapes") {
        // x -> c1 -> r1 -> y1, Add(y1, x): a residual block, but 2 channels + 1 channel.
        g.mutable_node(1)->set_output(0, "y1");
        auto* a = g.add_node();
        a->set_name("a1");
        a->set_op_type("Add");
        a->add_input("y1");
        a->add_input("x");
        a->add_output("y");
        CHECK_THAT(import_error(m), Catch::Contains("node 'a1' (Add): layer 0 (Branches): cannot add the branch outputs"));
    }
    SECTION("a skip connection that crosses a fork") {
        // h forks into r1 -> y1 and s1 -> y2, but y1 is added to x (from before the
        // fork) and only then to y2: no Concat or Add merges exactly h's branches.
        g.mutable_node(1)->set_output(0, "y1");
        auto* sg = g.add_node();
        sg->set_name("s1");
        sg->set_op_type("Sigmoid");
        sg->add_input("h");
        sg->add_output("y2");
        auto* a = g.add_node();
        a->set_name("a1");
        a->set_op_type("Add");
        a->add_input("y1");
        a->add_input("x");
        a->add_output("z");
        auto* a2 = g.add_node();
        a2->set_name("a2");
        a2->set_op_type("Add");
        a2->add_input("z");
        a2->add_input("y2");
        a2->add_output("y");
        CHECK_THAT(import_error(m), Catch::Contains("the branches forked from 'h' do not meet at one Concat, Add or Mean"));
    }
    SECTION("opset") {
        m.mutable_opset_import(0)->set_version(9);
        CHECK_THAT(import_error(m), Catch::Contains("opset 9 is not supported"));
    }
    SECTION("two outputs") {
        onnx_detail::set_shape(*g.add_output(), "h", onnx::TensorProto::FLOAT, {2, 6, 6});
        CHECK_THAT(import_error(m), Catch::Contains("2 graph outputs"));
    }
}

TEST_CASE("onnx: truncated, garbage and empty files give a clear error", "[onnx]") {
    auto model = zoo::mnist_model<float>("lenet5", 1);
    const auto bytes = serialize_onnx(to_onnx(model));
    for (size_t cut : std::vector<size_t>{1, 7, bytes.size() / 3, bytes.size() / 2, bytes.size() - 1}) {
        INFO("cut at " << cut);
        CHECK_THROWS_AS(parse_onnx<float>(bytes.data(), cut, "cut.onnx"), OnnxError);
    }
    std::vector<char> junk(4096);
    Rng rng(2);
    for (auto& c : junk) c = char(rng.next() & 0xff);
    CHECK_THROWS_AS(parse_onnx<float>(junk.data(), junk.size(), "junk.onnx"), OnnxError);
    CHECK_THROWS_WITH(parse_onnx<float>(junk.data(), 0, "empty.onnx"), Catch::Contains("empty file"));
    const std::string text = "this is not a model\n";
    CHECK_THROWS_AS(parse_onnx<float>(text.data(), text.size(), "text.onnx"), OnnxError);
    CHECK_THROWS_WITH(load_onnx<float>("/nonexistent/x.onnx"), Catch::Contains("no such file"));
}

TEST_CASE("onnx: an ensemble (Branches mean) exports as Adds and a Div, and imports from those or a Mean", "[onnx]") {
    std::vector<Sequential<float>> members;
    for (std::uint64_t seed : {3, 4, 5}) {
        members.push_back(zoo::mnist_model<float>("fast", seed));
        randomize_batchnorm(members.back());
    }
    Sequential<float> ens = make_ensemble(members);
    round_trip(ens);  // structure and outputs, bit for bit

    // OpenCV 4.6 has no Mean: the export sums as kitnn does, then divides by 3.
    auto proto = to_onnx(ens);
    std::vector<std::string> tail;
    for (int i = proto.graph().node_size() - 3; i < proto.graph().node_size(); ++i)
        tail.push_back(proto.graph().node(i).op_type());
    CHECK(tail == std::vector<std::string>{"Add", "Add", "Div"});

    // The same graph with one Mean node (what other exporters write) imports to the
    // same model.
    auto& g = *proto.mutable_graph();
    const int n = g.node_size();
    const std::string out = g.node(n - 1).output(0);
    std::vector<std::string> arms{g.node(n - 3).input(0), g.node(n - 3).input(1), g.node(n - 2).input(1)};
    g.mutable_node()->DeleteSubrange(n - 3, 3);
    auto* mean = g.add_node();
    mean->set_op_type("Mean");
    mean->set_name("mean");
    for (auto& a : arms) mean->add_input(a);
    mean->add_output(out);
    REQUIRE_NOTHROW(onnx::checker::check_model(proto));
    auto back = from_onnx<float>(proto, "mean.onnx");
    CHECK(structure(back) == structure(ens));
    const auto x = random_input(ens.input_shape(), 4, 9);
    const Tensor<float> a = ens.forward(x, false);
    const Tensor<float> b = back.forward(x, false);
    CHECK(std::memcmp(a.data(), b.data(), size_t(a.size()) * sizeof(float)) == 0);

    // A Div by anything but the number of summed branches is not a mean (and a Div
    // of a computed tensor is not a kitnn layer): refused, naming the node.
    auto wrong = to_onnx(ens);
    for (auto& init : *wrong.mutable_graph()->mutable_initializer())
        if (init.name().find("/count") != std::string::npos) {
            const float two = 2.0f;
            init.set_raw_data(std::string(reinterpret_cast<const char*>(&two), sizeof two));
        }
    CHECK_THAT(import_error(wrong), Catch::Contains("Div"));
}
