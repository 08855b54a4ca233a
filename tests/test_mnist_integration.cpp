// Integration on the real MNIST (needs KITNN_MNIST_DIR; CTest runs it through
// tests/run_if_mnist.sh, which reports it SKIPPED when the data is absent).
//
// Trains the exercise network for one epoch on all 48,000 training images, as the
// exercise does, then saves, reloads and applies it to exported example PNGs.
// Reference: the PyTorch peer (../shared/peers/torch_mnist.py, same init, same
// Adam, batch 100) reaches 0.889 (seed 1) and 0.884 (seed 2) test accuracy after
// one epoch. With dropout 0.5 on 16 units a single epoch varies by a few points
// between seeds (we measured 0.849, 0.890, 0.884 for seeds 1, 2, 3), so the test
// trains two seeds and asserts their MEAN reaches 0.85 and each at least 0.80.
#include <kitnn/data/idx.hpp>
#include <kitnn/io/image.hpp>
#include <kitnn/kitnn.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>

using namespace kitnn;
namespace fs = std::filesystem;

TEST_CASE("MNIST: one epoch of the exercise network, save, load, apply to PNGs", "[.][mnist]") {
    const char* dir = std::getenv("KITNN_MNIST_DIR");
    REQUIRE(dir != nullptr);  // run_if_mnist.sh skips the test before we get here
    const data::Mnist mnist = data::load_mnist(dir);
    REQUIRE(mnist.train.size() == 60000);
    REQUIRE(mnist.test.size() == 10000);

    LabelledView train{&mnist.train.images, &mnist.train.labels, 0, 48000};
    LabelledView val{&mnist.train.images, &mnist.train.labels, 48000, 60000};
    LabelledView test{&mnist.test.images, &mnist.test.labels, 0, 10000};
    const fs::path tmp = fs::path(std::getenv("KITNN_TEST_TMP") ? std::getenv("KITNN_TEST_TMP")
                                                                 : fs::temp_directory_path().string()) /
                         "mnist_integration";
    fs::create_directories(tmp);

    double acc_sum = 0;
    for (std::uint64_t seed : {1, 2}) {
        auto model = zoo::mnist_model<float>("keck", seed);
        Adam<float> adam;
        FitOptions fo;
        fo.epochs = 1;
        fo.seed = seed;
        fo.progress = 0;
        std::ostringstream log;
        fo.out = &log;
        fo.checkpoint = (tmp / ("keck_seed" + std::to_string(seed) + ".kitnn")).string();
        const auto h = fit(model, adam, train, val, fo);
        REQUIRE(h.size() == 1);
        CHECK(h[0].val_acc > 0.80);

        auto best = load_model<float>(fo.checkpoint);
        const auto te = evaluate(best, test);
        INFO("seed " << seed << ": test accuracy " << te.accuracy);
        CHECK(te.accuracy >= 0.80);
        acc_sum += te.accuracy;

        // Apply: export the first 20 test digits as PNGs, read them back and classify.
        // The PNG path must give exactly the predictions of the in-memory images.
        if (seed == 1) {
            int agree = 0, right = 0;
            for (int i = 0; i < 20; ++i) {
                std::vector<std::uint8_t> px(784);
                for (int k = 0; k < 784; ++k)
                    px[size_t(k)] = std::uint8_t(std::lround(mnist.test.images.data()[i * 784 + k] * 255.f));
                const std::string png = (tmp / ("example_input_" + std::to_string(i) + ".png")).string();
                io::write_png_grey(png, 28, 28, px);
                const io::GreyImage im = io::load_grey(png);
                REQUIRE(im.width == 28);
                Tensor<float> a(1, 1, 28, 28), b(1, 1, 28, 28);
                std::copy(im.pixels.begin(), im.pixels.end(), a.data());
                std::copy(mnist.test.images.data() + i * 784, mnist.test.images.data() + (i + 1) * 784, b.data());
                Eigen::Index pa, pb;
                as_matrix(Tensor<float>(best.predict(a))).row(0).maxCoeff(&pa);
                as_matrix(Tensor<float>(best.predict(b))).row(0).maxCoeff(&pb);
                agree += pa == pb;
                right += pa == mnist.test.labels[size_t(i)];
            }
            CHECK(agree == 20);
            CHECK(right >= 15);
        }
    }
    const double mean = acc_sum / 2;
    INFO("mean test accuracy after one epoch over seeds 1 and 2: " << mean);
    CHECK(mean >= 0.85);
}
