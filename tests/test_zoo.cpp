// The ImageNet-sized zoo (zoo_imagenet.hpp): the published parameter counts
// (torchvision's AlexNet and VGG-16, timm's Inception-v4), 1000-class outputs,
// the intermediate shapes of the papers, multiply-adds (exact for AlexNet and VGG-16,
// recomputed here from the layer sizes; Inception-v4 against the published 12.3 G),
// and a forward pass of AlexNet on one image. VGG-16 and Inception-v4 are only built
// (a forward pass is 12-15 G multiply-adds: too slow for a unit test; kitnn_zoo runs them).
#include <kitnn/kitnn.hpp>
#include <kitnn/zoo_imagenet.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

using namespace kitnn;

namespace {

using i64 = std::int64_t;

// Multiply-adds of a conv with F filters over C channels, a KxK' kernel and an OHxOW output.
i64 conv_macs(i64 f, i64 c, i64 kh, i64 kw, i64 oh, i64 ow) { return f * c * kh * kw * oh * ow; }

// Per layer type, over every layer including those inside Branches: how many, their
// multiply-adds, trainable parameters and state values.
struct Tally {
    std::map<std::string, i64> count, macs, params, state;
    void walk(Layer<float>& l) {
        if (l.branch_count()) {
            for (size_t b = 0; b < l.branch_count(); ++b)
                for (auto* c : l.branch(b)) walk(*c);
            return;
        }
        count[l.type()] += 1;
        macs[l.type()] += l.macs();
        params[l.type()] += l.param_count();
        for (auto* s : l.state()) state[l.type()] += s->value.size();
    }
};

}  // namespace

TEST_CASE("zoo: AlexNet (torchvision) counts, shapes and one forward pass", "[zoo][alexnet]") {
    auto m = zoo::imagenet_model<float>("alexnet", 1);
    CHECK(m.input_shape() == Shape::image(3, 224, 224));
    CHECK(m.output_shape() == Shape::flat(1000));
    CHECK(m.param_count() == 61100840);
    CHECK(m.layer(0).output_shape() == Shape::image(64, 55, 55));  // 11x11/4 with pad 2
    CHECK(m.layer(7).output_shape() == Shape::image(256, 6, 6));   // torchvision's avgpool target
    const i64 expected = conv_macs(64, 3, 11, 11, 55, 55) + conv_macs(192, 64, 5, 5, 27, 27) +
                         conv_macs(384, 192, 3, 3, 13, 13) + conv_macs(256, 384, 3, 3, 13, 13) +
                         conv_macs(256, 256, 3, 3, 13, 13) + 9216 * 4096 + 4096 * 4096 + 4096 * 1000;
    CHECK(expected == 714188480);
    CHECK(m.macs() == expected);
    CHECK(std::abs(double(m.macs()) / 0.71e9 - 1) < 0.01);  // torchvision: 0.71 GFLOPS (= MACs)

    Tensor<float> x(1, 3, 224, 224);
    Rng rng(3);
    for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = float(rng.uniform());
    const Tensor<float> p = m.predict(x);
    REQUIRE(p.dimension(0) == 1);
    REQUIRE(p.dimension(1) == 1000);
    double sum = 0;
    for (Eigen::Index i = 0; i < p.size(); ++i) {
        INFO("class " << i);
        REQUIRE(std::isfinite(p.data()[i]));
        REQUIRE(p.data()[i] >= 0.0f);
        sum += p.data()[i];
    }
    CHECK(sum == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("zoo: VGG-16 counts and shapes", "[zoo][vgg16]") {
    auto m = zoo::imagenet_model<float>("vgg16", 1);
    CHECK(m.input_shape() == Shape::image(3, 224, 224));
    CHECK(m.output_shape() == Shape::flat(1000));
    CHECK(m.param_count() == 138357544);
    CHECK(m.summary("vgg16").find("Total params: 138,357,544") != std::string::npos);
    // 13 convs (3x3, same) in 5 groups at 224, 112, 56, 28, 14 pixels, then 3 dense layers.
    i64 expected = 0;
    const int groups[5][3] = {{64, 2, 224}, {128, 2, 112}, {256, 3, 56}, {512, 3, 28}, {512, 3, 14}};
    i64 c = 3;
    for (const auto& g : groups)
        for (int i = 0; i < g[1]; ++i) {
            expected += conv_macs(g[0], c, 3, 3, g[2], g[2]);
            c = g[0];
        }
    expected += i64(25088) * 4096 + 4096 * 4096 + 4096 * 1000;
    CHECK(expected == 15470264320);
    CHECK(m.macs() == expected);
    CHECK(std::abs(double(m.macs()) / 15.5e9 - 1) < 0.01);  // torchvision: 15.47 GFLOPS
    CHECK(m.layer(m.size() - 7).output_shape() == Shape::image(512, 7, 7));  // the last pool
}

TEST_CASE("zoo: Inception-v4 (timm layout) counts and shapes", "[zoo][inception_v4]") {
    auto m = zoo::imagenet_model<float>("inception_v4", 1);
    CHECK(m.input_shape() == Shape::image(3, 299, 299));
    CHECK(m.output_shape() == Shape::flat(1000));
    CHECK(m.param_count() == 42679816);  // timm: trainable (BatchNorm's gamma and beta)
    // stem (9 layers + Mixed_3a, 4a, 5a), 4 A, Reduction-A, 7 B, Reduction-B, 3 C, pool, dropout, dense
    REQUIRE(m.size() == 31);
    CHECK(m.layer(9).output_shape() == Shape::image(160, 73, 73));
    CHECK(m.layer(10).output_shape() == Shape::image(192, 71, 71));
    CHECK(m.layer(11).output_shape() == Shape::image(384, 35, 35));   // the stem's output
    CHECK(m.layer(15).output_shape() == Shape::image(384, 35, 35));   // after 4x Inception-A
    CHECK(m.layer(16).output_shape() == Shape::image(1024, 17, 17));  // Reduction-A
    CHECK(m.layer(23).output_shape() == Shape::image(1024, 17, 17));  // after 7x Inception-B
    CHECK(m.layer(24).output_shape() == Shape::image(1536, 8, 8));    // Reduction-B
    CHECK(m.layer(27).output_shape() == Shape::image(1536, 8, 8));    // after 3x Inception-C
    CHECK(m.layer(28).output_shape() == Shape::flat(1536));

    Tally t;
    for (size_t i = 0; i < m.size(); ++i) t.walk(m.layer(i));
    // 149 conv -> BatchNorm -> ReLU units, none with a bias (timm's BasicConv2d).
    CHECK(t.count["Conv2D"] == 149);
    CHECK(t.count["BatchNorm"] == 149);
    CHECK(t.count["ReLU"] == 149);
    CHECK(t.count["AvgPool2D"] == 14);  // one per Inception block
    CHECK(t.count["MaxPool2D"] == 4);
    CHECK(t.params["Dense"] == 1536 * 1000 + 1000);
    // Moving mean and variance (timm's buffers): as many values as gamma and beta.
    CHECK(t.state["BatchNorm"] == t.params["BatchNorm"]);
    CHECK(t.params["Conv2D"] + t.params["BatchNorm"] + t.params["Dense"] == m.param_count());
    // Multiply-adds: convolutions and the dense layer against the published 12.3 G
    // (timm's model card); kitnn also counts BatchNorm's 2 per value (0.03 G).
    const i64 weights = t.macs["Conv2D"] + t.macs["Dense"];
    CHECK(weights == 12253974624);
    CHECK(std::abs(double(weights) / 12.3e9 - 1) < 0.01);
    CHECK(m.macs() == weights + t.macs["BatchNorm"]);
    CHECK(std::abs(double(m.macs()) / 12.3e9 - 1) < 0.01);
}

TEST_CASE("zoo: an unknown ImageNet model name lists the known ones", "[zoo]") {
    CHECK(zoo::imagenet_models() == std::vector<std::string>{"alexnet", "vgg16", "inception_v4"});
    try {
        zoo::imagenet_model<float>("resnet50");
        FAIL("no exception");
    } catch (const std::invalid_argument& e) {
        CHECK(std::string(e.what()).find("alexnet, vgg16, inception_v4") != std::string::npos);
    }
}
