// kitnn_bench_allreduce — the gradient reduction of one training step, for every zoo
// model's gradient size, under mpirun:
//
//   mpirun -np 2 kitnn_bench_allreduce [--iters 50] [--models keck,lenet5,...]
//   mpirun -np 2 --mca btl self,tcp kitnn_bench_allreduce     (TCP, as between machines)
//
// Per model: the flat buffer DataParallel reduces every step (every gradient value, as
// float, plus 16 bytes of metrics), reduced two ways, each timed over --iters calls
// after 3 warm-up calls, median and minimum per call (rank 0's clock, after a barrier):
//   sharded    what a step of kitnn does with Adam or SGD (DataParallel::sharded_update,
//              without the optimizer): alltoall of the P gradient shards, sum of this
//              rank's shard in rank order, allgather of the shards (the new weights)
//   ordered    allgather + sum of everything in rank order (train/collective.hpp: what
//              kitnn does for optimizers that cannot shard; every rank gets the same
//              bits, the same as in-process replicas)
//   allreduce  MPI_Allreduce(MPI_SUM) (the library's algorithm and summation order)
// Only rank 0 prints. Measured figures: docs/distributed.md.
#include <kitnn/dist/mpi.hpp>
#include <kitnn/kitnn.hpp>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

using namespace kitnn;

int main(int argc, char** argv) {
    CLI::App app{"kitnn: time of the per-step gradient reduction over MPI, per zoo model"};
    int iters = 50;
    std::string models = "keck,lenet5,kerascnn,best";
    app.add_option("--iters", iters, "timed calls per model and method")->check(CLI::Range(1, 100000))->capture_default_str();
    app.add_option("--models", models, "comma-separated zoo models")->capture_default_str();
    CLI11_PARSE(app, argc, argv);
    dist::MpiCommunicator world(&argc, &argv);
    try {
        if (world.is_root())
            std::printf("%d ranks; per call: median (min) over %d calls\n%-9s %10s %10s %16s %16s %16s %12s\n",
                        world.size(), iters, "model", "values", "MB", "sharded us", "ordered us", "allreduce us",
                        "ordered GB/s");
        std::stringstream list(models);
        std::string name;
        while (std::getline(list, name, ',')) {
            auto m = zoo::mnist_model<float>(name, 1);
            size_t G = 0;
            for (auto* p : m.params()) G += size_t(p->value.size());
            const size_t n = G + 4;  // + the two double metrics, as 4 floats
            std::vector<float> buf(n, 1.0f), scratch;
            auto time = [&](auto&& op) {
                for (int i = 0; i < 3; ++i) op();
                std::vector<double> t;
                for (int i = 0; i < iters; ++i) {
                    world.barrier();
                    const auto t0 = std::chrono::steady_clock::now();
                    op();
                    t.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
                }
                std::sort(t.begin(), t.end());
                return std::pair<double, double>(t[t.size() / 2], t.front());
            };
            const auto ordered = time([&] {
                std::fill(buf.begin(), buf.end(), 1.0f);
                ordered_sum(world, buf.data(), n, scratch);
            });
            // Shards of L values (+ the metrics in the gradients' blocks), 16-value aligned.
            const size_t P = size_t(world.size()), L = (G + P - 1) / P;
            const size_t B = (L + 4 + 15) / 16 * 16, B2 = (L + 15) / 16 * 16;
            std::vector<float> send(P * B, 1.0f), recv(P * B), shard(B2), all(P * B2);
            const auto sharded = time([&] {
                world.alltoall(send.data(), B * sizeof(float), recv.data());
                for (size_t i = 0; i < L; ++i) {
                    float v = recv[i] + recv[B + i];
                    for (size_t q = 2; q < P; ++q) v += recv[q * B + i];
                    shard[i] = v;
                }
                world.allgather(shard.data(), B2 * sizeof(float), all.data());
            });
            const auto reduced = time([&] {
                std::fill(buf.begin(), buf.end(), 1.0f);
                world.allreduce_sum(buf.data(), n);
            });
            const double mb = double(n * sizeof(float)) / 1e6;
            if (world.is_root())
                std::printf("%-9s %10zu %10.3f %9.0f (%4.0f) %9.0f (%4.0f) %9.0f (%4.0f) %12.2f\n", name.c_str(), G, mb,
                            sharded.first, sharded.second, ordered.first, ordered.second, reduced.first, reduced.second,
                            // bytes each rank receives in the allgather / time
                            mb * double(world.size() - 1) / 1e3 / (ordered.first / 1e6));
            std::fflush(stdout);
        }
    } catch (const std::exception& e) {
        world.abort_job(std::string("kitnn_bench_allreduce: error: ") + e.what());
    }
    return 0;
}
