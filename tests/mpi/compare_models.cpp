// kitnn_compare_models A.kitnn B.kitnn [TOLERANCE] — for the MPI tests (tests/mpi/):
// loads two model files and prints the largest difference of their weights and layer
// state (BatchNorm's moving statistics), relative: |a - b| / max(1, |b|). Exit 0 when
// it is <= TOLERANCE (default 0: bit for bit), 1 when larger or the architectures
// differ, 2 on a file that does not load.
#include <kitnn/kitnn.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace kitnn;

int main(int argc, char** argv) {
    if (argc < 3 || argc > 4) {
        std::fprintf(stderr, "usage: kitnn_compare_models A.kitnn B.kitnn [TOLERANCE]\n");
        return 2;
    }
    const double tol = argc == 4 ? std::atof(argv[3]) : 0.0;
    try {
        auto a = load_model<float>(argv[1]), b = load_model<float>(argv[2]);
        std::vector<Param<float>*> pa, pb;
        for (auto* m : {&a, &b}) {
            auto& into = m == &a ? pa : pb;
            detail::for_each_layer(*m, [&](const std::string&, Layer<float>& l) {
                for (auto* p : l.params()) into.push_back(p);
                for (auto* p : l.state()) into.push_back(p);
            });
        }
        if (pa.size() != pb.size()) {
            std::printf("different architectures: %zu and %zu tensors\n", pa.size(), pb.size());
            return 1;
        }
        double worst = 0;
        std::size_t values = 0, differ = 0;
        for (std::size_t i = 0; i < pa.size(); ++i) {
            if (pa[i]->value.size() != pb[i]->value.size()) {
                std::printf("tensor %zu: %ld and %ld values\n", i, long(pa[i]->value.size()), long(pb[i]->value.size()));
                return 1;
            }
            for (Eigen::Index k = 0; k < pa[i]->value.size(); ++k) {
                const double x = pa[i]->value.data()[k], y = pb[i]->value.data()[k];
                const double d = std::abs(x - y) / std::max(1.0, std::abs(y));
                worst = std::max(worst, std::isnan(d) ? INFINITY : d);
                differ += x != y;
                ++values;
            }
        }
        std::printf("%zu values, %zu differ, largest relative difference %.3g (tolerance %.3g)\n", values, differ,
                    worst, tol);
        return worst <= tol ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kitnn_compare_models: %s\n", e.what());
        return 2;
    }
}
