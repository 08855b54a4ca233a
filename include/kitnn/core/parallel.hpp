// kitnn/core/parallel.hpp — OpenMP, only where the work pays for the threads.
//
// tiny-dnn threaded every loop and got slower (its #714, #920). We parallelise a
// loop only when it has at least `kMinParallelWork` scalar operations; small
// layers run on one thread. Without OpenMP everything still builds and runs.
#pragma once

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

// Sets OpenMP's and Eigen's thread count together (Eigen's GEMM uses OpenMP).
inline void set_threads(int n) {
    if (n < 1) n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    Eigen::setNbThreads(n);
}

// for (i = 0; i < n; ++i) f(i), split statically across threads when `work`
// (total scalar operations of the loop) is large enough. A static schedule keeps
// results identical run to run for the same thread count.
template <class F>
inline void parallel_for(std::int64_t n, std::int64_t work, F&& f) {
#ifdef _OPENMP
    if (work >= kMinParallelWork && n > 1 && omp_get_max_threads() > 1 && !omp_in_parallel()) {
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < n; ++i) f(i);
        return;
    }
#endif
    (void)work;
    for (std::int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace kitnn
