// kitnn/core/parallel.hpp — OpenMP, only where the work pays for the threads.
//
// tiny-dnn threaded every loop and got slower (its #714, #920). We parallelise a
// loop only when it has at least `kMinParallelWork` scalar operations; small
// layers run on one thread. Without OpenMP everything still builds and runs.
#pragma once

#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif
#include <Eigen/Core>

namespace kitnn {

constexpr std::int64_t kMinParallelWork = 1 << 15;

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// Sets the CALLING thread's thread count for kitnn's loops and Eigen's GEMM.
// Only OpenMP's per-thread setting (omp_set_num_threads) is written: Eigen's GEMM
// follows it as long as nobody calls Eigen::setNbThreads, a process-wide plain int
// that kitnn never writes (writing it from two threads is a data race). So a
// std::thread that runs its own model can call set_threads without affecting the
// others; a new std::thread starts with OpenMP's default (OMP_NUM_THREADS, else
// the number of cores), not with the count its creator set.
inline void set_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

// True inside an OpenMP parallel region (where kitnn's loops and Eigen's GEMM run on
// the calling thread only).
inline bool in_parallel() {
#ifdef _OPENMP
    return omp_in_parallel() != 0;
#else
    return false;
#endif
}

// How many threads parallel_for uses for a loop of `n` iterations and `work`
// scalar operations: 1 below the threshold, inside a parallel region or with one
// thread; otherwise min(n, max_threads()).
inline int threads_for(std::int64_t n, std::int64_t work) {
#ifdef _OPENMP
    if (work >= kMinParallelWork && n > 1 && !omp_in_parallel())
        return int(std::min<std::int64_t>(n, omp_get_max_threads()));
#endif
    (void)n;
    (void)work;
    return 1;
}

// for (i = 0; i < n; ++i) f(i, t) on `threads` threads (from threads_for), where
// t < threads is the index of the thread running iteration i, for per-thread
// workspaces. A static schedule gives thread t the same iterations every time, so
// results are identical run to run for the same thread count.
template <class F>
inline void parallel_for_threads(std::int64_t n, int threads, F&& f) {
#ifdef _OPENMP
    if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (std::int64_t i = 0; i < n; ++i) f(i, omp_get_thread_num());
        return;
    }
#endif
    (void)threads;
    for (std::int64_t i = 0; i < n; ++i) f(i, 0);
}

// for (i = 0; i < n; ++i) f(i), split statically across threads when `work`
// (total scalar operations of the loop) is large enough.
template <class F>
inline void parallel_for(std::int64_t n, std::int64_t work, F&& f) {
    parallel_for_threads(n, threads_for(n, work), [&](std::int64_t i, int) { f(i); });
}

// Eigen threads a GEMM by its own rule (from ~50,000 multiply-adds per thread),
// which on two cores shared with other work costs more than it saves: a parallel
// region waits for its slowest thread. Inside this scope Eigen's GEMMs run on one
// thread unless the product has at least kMinParallelGemm multiply-adds.
// (Inside our own parallel regions Eigen never threads anyway.)
constexpr std::int64_t kMinParallelGemm = 1 << 21;

// Thread safety of GemmThreads: this changes only the calling thread's OpenMP setting
// (omp_set_num_threads; Eigen reads it through omp_get_max_threads() when its own
// global was never set), never Eigen's process-wide count, so several std::threads,
// each running its OWN model (model/clone.hpp), can be inside GemmThreads at once
// without racing or changing each other's thread counts. (One model used from two
// threads at once is not safe, whatever this class does: it owns the activations.)
// If the program itself calls Eigen::setNbThreads, Eigen follows that value instead
// and this scope no longer makes small GEMMs serial: slower, still correct.
class GemmThreads {
public:
    explicit GemmThreads(std::int64_t macs) {
#ifdef _OPENMP
        saved_ = omp_get_max_threads();
        // Inside a parallel region Eigen does not thread anyway: leave it alone.
        serial_ = macs < kMinParallelGemm && saved_ > 1 && !omp_in_parallel();
        if (serial_) omp_set_num_threads(1);
#else
        (void)macs;
#endif
    }
    ~GemmThreads() {
#ifdef _OPENMP
        if (serial_) omp_set_num_threads(saved_);
#endif
    }
    GemmThreads(const GemmThreads&) = delete;
    GemmThreads& operator=(const GemmThreads&) = delete;

private:
    int saved_ = 1;
    bool serial_ = false;
};

}  // namespace kitnn
