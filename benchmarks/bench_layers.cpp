// kitnn_bench_layers — forward and backward time of every layer at the shapes the
// MNIST networks of the zoo use (batch 100), plus the GEMMs behind Conv2D compared
// with Eigen's own large float product (1024^3).
//
//   kitnn_bench_layers [--threads=N] [--batch=N] [Google Benchmark flags]
//
// Each (layer, direction) is one Google Benchmark; every benchmark is repeated
// (--benchmark_repetitions, default 9) after a warm-up, and the table printed at
// the end shows the MEDIAN over the repetitions of the mean time per call, with
// "reps x iters" so the repeat count is visible. GFLOP/s counts 2 flops per
// multiply-add: forward 2*MACs*N; backward 2*MACs*N for dW plus as much again for
// dx (the first layer of a model gets no dx in training, marked "no dx").
// Use --benchmark_filter=REGEX to run a subset (names are shown in the table).
#include <kitnn/kitnn.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

using namespace kitnn;

namespace {

// ---------------------------------------------------------------------------
// Benchmark cases

struct LayerCase {
    std::string name;   // "keck/0 Conv2D 1x28x28->4x27x27 k2x2 relu"
    Layer<float>* layer;
    bool first;         // first layer of its model: backward computes no dx
    double fwd_flops = 0, bwd_flops = 0;  // per call, 0 for layers without MACs
    Tensor<float> x, y, dy, dx;
};

struct GemmCase {
    std::string name;
    double flops;
};

std::string dims(const Shape& s) {
    std::string r;
    for (size_t i = 0; i < s.dims.size(); ++i) r += (i ? "x" : "") + std::to_string(s.dims[i]);
    return r;
}

std::string describe(Layer<float>& l) {
    std::string d = l.type() + " " + dims(l.input_shape()) + "->" + dims(l.output_shape());
    Config c = l.config();
    if (l.type() == "Conv2D") {
        d += " k" + c.str("kernel_h") + "x" + c.str("kernel_w");
        if (c.str("padding") == "same") d += " same";
        d += " " + c.str("activation");
        d += static_cast<Conv2D<float>&>(l).im2col_layout() == Im2col::wide ? " wide" : " rows";
    } else if (l.type() == "Dense") {
        d += " " + c.str("activation");
    } else if (l.type() == "Dropout") {
        d += " rate " + c.str("rate").substr(0, 4);
    }
    return d;
}

void fill_random(Tensor<float>& t, Rng& rng) {
    for (Eigen::Index i = 0; i < t.size(); ++i) t.data()[i] = float(rng.uniform(-1, 1));
}

// ---------------------------------------------------------------------------
// A reporter that keeps every repetition and prints one table at the end.

struct Timing {
    std::vector<double> seconds;  // mean time per call of each repetition
    std::int64_t iters = 0;       // iterations per repetition (the last one)
    double median() const {
        if (seconds.empty()) return 0;
        std::vector<double> s = seconds;
        std::sort(s.begin(), s.end());
        const size_t n = s.size();
        return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    }
    std::string reps() const {
        return std::to_string(seconds.size()) + "x" + std::to_string(iters);
    }
};

class TableReporter : public benchmark::BenchmarkReporter {
public:
    std::map<std::string, Timing> timings;

    bool ReportContext(const Context& context) override {
        PrintBasicContext(&GetErrorStream(), context);
        return true;
    }
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& r : runs) {
            if (r.run_type != Run::RT_Iteration) continue;
            if (r.error_occurred) {
                std::fprintf(stderr, "%s: %s\n", r.benchmark_name().c_str(), r.error_message.c_str());
                continue;
            }
            auto& t = timings[r.run_name.function_name];
            t.seconds.push_back(r.GetAdjustedRealTime() / benchmark::GetTimeUnitMultiplier(r.time_unit));
            t.iters = r.iterations;
        }
        std::fputc('.', stderr);
        std::fflush(stderr);
    }
    const Timing* find(const std::string& name) const {
        auto it = timings.find(name);
        return it == timings.end() || it->second.seconds.empty() ? nullptr : &it->second;
    }
};

std::string fmt(const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return b;
}

}  // namespace

int main(int argc, char** argv) {
    // Our own flags first (--threads=N, --batch=N); the rest goes to Google Benchmark.
    int threads = max_threads();
    Eigen::Index batch = 100;
    std::vector<char*> args{argv[0]};
    bool has_reps = false, has_min_time = false, has_warmup = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&](const char* flag) -> const char* {
            const size_t n = std::strlen(flag);
            return a.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
        };
        if (const char* v = value("--threads=")) threads = std::atoi(v);
        else if (const char* v2 = value("--batch=")) batch = std::atoi(v2);
        else {
            has_reps |= a.rfind("--benchmark_repetitions", 0) == 0;
            has_min_time |= a.rfind("--benchmark_min_time", 0) == 0;
            has_warmup |= a.rfind("--benchmark_min_warmup_time", 0) == 0;
            args.push_back(argv[i]);
        }
    }
    if (threads < 1 || batch < 1) {
        std::fprintf(stderr, "kitnn_bench_layers: --threads and --batch must be >= 1\n");
        return 2;
    }
    // Defaults: 9 repetitions of >= 0.05 s each after 0.05 s of warm-up.
    static char reps[] = "--benchmark_repetitions=9", mint[] = "--benchmark_min_time=0.05",
                warm[] = "--benchmark_min_warmup_time=0.05";
    if (!has_reps) args.push_back(reps);
    if (!has_min_time) args.push_back(mint);
    if (!has_warmup) args.push_back(warm);
    int bargc = int(args.size());
    args.push_back(nullptr);
    benchmark::Initialize(&bargc, args.data());
    if (benchmark::ReportUnrecognizedArguments(bargc, args.data())) return 2;
    set_threads(threads);

    // --- the layers of every zoo model, each distinct (type, config, shape) once
    std::vector<Sequential<float>> models;
    std::vector<std::unique_ptr<LayerCase>> cases;
    std::map<std::string, bool> seen;
    Rng rng(42);
    for (const auto& name : zoo::mnist_models()) {
        models.push_back(zoo::mnist_model<float>(name));
        auto& m = models.back();
        for (size_t i = 0; i < m.size(); ++i) {
            Layer<float>& l = m.layer(i);
            std::string d = describe(l);
            if (seen[d + (i == 0 ? " first" : "")]) continue;
            seen[d + (i == 0 ? " first" : "")] = true;
            auto c = std::make_unique<LayerCase>();
            c->name = name + "/" + std::to_string(i) + " " + d;
            c->layer = &l;
            c->first = i == 0;
            const double macs = double(l.macs()) * double(batch);
            c->fwd_flops = 2 * macs;
            c->bwd_flops = 2 * macs * (c->first ? 1 : 2);
            auto in = l.input_shape().chw(), out = l.output_shape().chw();
            c->x.resize(batch, in[0], in[1], in[2]);
            c->dy.resize(batch, out[0], out[1], out[2]);
            fill_random(c->x, rng);
            fill_random(c->dy, rng);
            cases.push_back(std::move(c));
        }
    }

    for (auto& cp : cases) {
        LayerCase* c = cp.get();
        benchmark::RegisterBenchmark((c->name + " [fwd]").c_str(), [c](benchmark::State& st) {
            for (auto _ : st) c->layer->forward(c->x, c->y, /*training=*/true);
        })->UseRealTime();
        benchmark::RegisterBenchmark((c->name + " [bwd]").c_str(), [c](benchmark::State& st) {
            c->layer->forward(c->x, c->y, true);  // state (masks, argmax, im2col) for backward
            for (auto _ : st) c->layer->backward(c->x, c->y, c->dy, c->first ? nullptr : &c->dx);
        })->UseRealTime();
    }

    // --- loss and optimiser of each model (also part of every training step)
    struct ModelCase {
        std::string name;
        Sequential<float>* model;
        Tensor<float> logits, dlogits;
        std::vector<std::uint8_t> labels;
        Adam<float> adam;
    };
    std::vector<std::unique_ptr<ModelCase>> mcases;
    for (size_t k = 0; k < models.size(); ++k) {
        auto mc = std::make_unique<ModelCase>();
        mc->name = zoo::mnist_models()[k];
        mc->model = &models[k];
        mc->logits.resize(batch, 10, 1, 1);
        fill_random(mc->logits, rng);
        for (Eigen::Index i = 0; i < batch; ++i) mc->labels.push_back(std::uint8_t(rng.below(10)));
        ModelCase* p = mc.get();
        const std::string params = std::to_string(p->model->param_count());
        if (k == 0)
            benchmark::RegisterBenchmark("loss SoftmaxCrossEntropy 10 [fwd+bwd]", [p](benchmark::State& st) {
                SoftmaxCrossEntropy<float> loss;
                for (auto _ : st) {
                    benchmark::DoNotOptimize(loss.forward(p->logits, p->labels.data()));
                    loss.backward(p->dlogits);
                }
            })->UseRealTime();
        benchmark::RegisterBenchmark((p->name + " zero_grad " + params + " params").c_str(),
                                     [p](benchmark::State& st) {
                                         for (auto _ : st) p->model->zero_grad();
                                     })->UseRealTime();
        benchmark::RegisterBenchmark((p->name + " Adam step " + params + " params").c_str(),
                                     [p](benchmark::State& st) {
                                         auto params = p->model->params();
                                         for (auto _ : st) p->adam.step(params);
                                     })->UseRealTime();
        mcases.push_back(std::move(mc));
    }

    // --- GEMMs: Eigen's large product, and the exact products inside Conv2D
    std::vector<GemmCase> gemms;
    const int big = 1024;
    Eigen::MatrixXf A = Eigen::MatrixXf::Random(big, big), B = Eigen::MatrixXf::Random(big, big),
                    C(big, big);
    gemms.push_back({"Eigen GEMM 1024x1024x1024", 2.0 * big * big * big});
    benchmark::RegisterBenchmark(gemms.back().name.c_str(), [&](benchmark::State& st) {
        for (auto _ : st) {
            C.noalias() = A * B;
            benchmark::ClobberMemory();
        }
    })->UseRealTime();

    struct ConvGemm {
        Eigen::Index F, CKK, NP;
        MatrixRM<float> W, col, ym, dym, dW, dcol;
    };
    std::vector<std::unique_ptr<ConvGemm>> cgs;
    for (auto& cp : cases) {
        if (cp->layer->type() != "Conv2D") continue;
        auto* conv = static_cast<Conv2D<float>*>(cp->layer);
        auto g = std::make_unique<ConvGemm>();
        g->F = conv->kernel().value.dimension(0);
        g->CKK = conv->kernel().value.size() / g->F;
        // Columns as the layer's layout has them: the wide layout computes OW + KW - 1
        // per output row (the GEMM here is the whole batch's; the layer runs it per chunk).
        const Eigen::Index ow = conv->output_shape().w(), kw = conv->kernel().value.dimension(3);
        g->NP = batch * conv->output_shape().h() * (conv->im2col_layout() == Im2col::wide ? ow + kw - 1 : ow);
        g->W = MatrixRM<float>::Random(g->F, g->CKK);
        g->col = MatrixRM<float>::Random(g->CKK, g->NP);
        g->dym = MatrixRM<float>::Random(g->F, g->NP);
        g->ym.resize(g->F, g->NP);
        g->dW = MatrixRM<float>::Zero(g->F, g->CKK);
        g->dcol.resize(g->CKK, g->NP);
        ConvGemm* p = g.get();
        const std::string shape = "(" + std::to_string(g->F) + "x" + std::to_string(g->CKK) +
                                  ")x(" + std::to_string(g->CKK) + "x" + std::to_string(g->NP) + ")";
        const double flops = 2.0 * double(g->F) * double(g->CKK) * double(g->NP);
        gemms.push_back({cp->name + " GEMM fwd ym=W*col " + shape, flops});
        benchmark::RegisterBenchmark(gemms.back().name.c_str(), [p](benchmark::State& st) {
            for (auto _ : st) {
                p->ym.noalias() = p->W * p->col;
                benchmark::ClobberMemory();
            }
        })->UseRealTime();
        gemms.push_back({cp->name + " GEMM bwd dW+=dym*col^T", flops});
        benchmark::RegisterBenchmark(gemms.back().name.c_str(), [p](benchmark::State& st) {
            for (auto _ : st) {
                p->dW.noalias() += p->dym * p->col.transpose();
                benchmark::ClobberMemory();
            }
        })->UseRealTime();
        if (!cp->first) {
            gemms.push_back({cp->name + " GEMM bwd dcol=W^T*dym", flops});
            benchmark::RegisterBenchmark(gemms.back().name.c_str(), [p](benchmark::State& st) {
                for (auto _ : st) {
                    p->dcol.noalias() = p->W.transpose() * p->dym;
                    benchmark::ClobberMemory();
                }
            })->UseRealTime();
        }
        cgs.push_back(std::move(g));
    }

    TableReporter rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    benchmark::Shutdown();
    std::fputc('\n', stderr);

    // --- the table
    std::printf("kitnn layer benchmark: batch %ld, %d thread(s), float; times are medians over "
                "repetitions (reps x iterations per rep)\n\n",
                long(batch), threads);
    std::printf("%-58s %10s %8s %8s %10s %8s %8s\n", "layer (model/index type in->out)", "fwd us",
                "fwd GF/s", "reps", "bwd us", "bwd GF/s", "reps");
    std::printf("%s\n", std::string(116, '-').c_str());
    for (auto& c : cases) {
        const Timing* f = rep.find(c->name + " [fwd]");
        const Timing* b = rep.find(c->name + " [bwd]");
        if (!f && !b) continue;
        auto gf = [](const Timing* t, double flops) {
            return t && flops > 0 ? fmt("%8.1f", flops / t->median() * 1e-9) : std::string(8, ' ');
        };
        std::printf("%-58s %s %s %8s %s %s %8s%s\n", c->name.c_str(),
                    f ? fmt("%10.1f", f->median() * 1e6).c_str() : "         -",
                    gf(f, c->fwd_flops).c_str(), f ? f->reps().c_str() : "",
                    b ? fmt("%10.1f", b->median() * 1e6).c_str() : "         -",
                    gf(b, c->bwd_flops).c_str(), b ? b->reps().c_str() : "",
                    c->first ? "  (no dx)" : "");
    }
    std::printf("\n%-58s %10s %8s\n", "loss / optimiser", "us", "reps");
    std::printf("%s\n", std::string(78, '-').c_str());
    for (auto& [name, t] : rep.timings) {
        if (name.find("loss ") != 0 && name.find("zero_grad") == std::string::npos &&
            name.find("Adam") == std::string::npos)
            continue;
        std::printf("%-58s %10.1f %8s\n", name.c_str(), t.median() * 1e6, t.reps().c_str());
    }

    const Timing* eig = rep.find(gemms[0].name);
    const double eigen_gfs = eig ? gemms[0].flops / eig->median() * 1e-9 : 0;
    std::printf("\n%-82s %10s %8s %8s %8s\n", "GEMM", "us", "GFLOP/s", "% Eigen", "reps");
    std::printf("%s\n", std::string(120, '-').c_str());
    for (auto& g : gemms) {
        const Timing* t = rep.find(g.name);
        if (!t) continue;
        const double gfs = g.flops / t->median() * 1e-9;
        std::printf("%-82s %10.1f %8.1f %7.0f%% %8s\n", g.name.c_str(), t->median() * 1e6, gfs,
                    eigen_gfs > 0 ? 100 * gfs / eigen_gfs : 0.0, t->reps().c_str());
    }
    return 0;
}
