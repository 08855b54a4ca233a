// The consumer test's program: builds a small Sequential, runs a forward pass and
// prints the summary's "Total params" line and the output shape.
#include <kitnn/kitnn.hpp>

#include <iostream>
#include <sstream>
#include <string>

int main() {
    using namespace kitnn;
    Sequential<float> model(Shape::image(1, 8, 8), /*seed=*/1);
    model.add<Conv2D>(2, std::array<int, 2>{3, 3}, Activation::relu);
    model.add<MaxPool2D>();
    model.add<Flatten>();
    model.add<Dense>(3);

    Tensor<float> x(2, 1, 8, 8);
    x.setConstant(0.5f);
    const Tensor<float> p = model.predict(x);

    std::istringstream summary(model.summary());
    for (std::string line; std::getline(summary, line);)
        if (line.rfind("Total params:", 0) == 0) std::cout << line << "\n";
    float sum = 0;
    for (Eigen::Index i = 0; i < p.dimension(1); ++i) sum += p(0, i, 0, 0);
    std::cout << "output: " << p.dimension(0) << " x " << p.dimension(1)
              << ", probabilities of sample 0 sum to " << sum << "\n";
    return (p.dimension(0) == 2 && p.dimension(1) == 3 && sum > 0.999f && sum < 1.001f) ? 0 : 1;
}
