// kitnn/dist/mpi.hpp — data-parallel training across processes and machines over MPI.
//
//   #include <kitnn/dist/mpi.hpp>          // link kitnn::mpi (CMake) or use mpicxx
//   kitnn::dist::MpiCommunicator world(argc, argv);   // MPI_Init ... MPI_Finalize (RAII)
//   FitOptions fo;  fo.group = &world;                // fit() splits batches over ranks
//   broadcast_model(world, model);                     // everyone starts from rank 0's weights
//   $ mpirun -np 4 ./train ...
//
// Header-only, and the only kitnn header that needs MPI: the core library sees the
// Collective interface (train/collective.hpp) and nothing else. MpiCommunicator is that
// interface over MPI_COMM_WORLD:
//   allgather  MPI_Allgather of bytes (the shards' new weights, once per step:
//              train/data_parallel.hpp packs them into one flat buffer)
//   alltoall   MPI_Alltoall (the sharded update: each rank gets its shard of every
//              rank's gradients)
//   broadcast  MPI_Bcast,  barrier  MPI_Barrier
// MPI is initialised with MPI_THREAD_FUNNELED: only the thread that called MPI_Init
// talks to MPI (DataParallel's replica 0 runs on it). Errors: MPI's default handler on
// MPI_COMM_WORLD (MPI_ERRORS_ARE_FATAL) ends the whole job on a communication error,
// and OpenMPI's mpirun ends the job when one rank dies (SIGKILL included); a rank that
// throws should call abort_job(), which ends the others (MPI_Abort) rather than leaving
// them waiting in the next collective call.
#pragma once

#include "kitnn/train/collective.hpp"

#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace kitnn {
namespace dist {

// True when this process was started by an MPI launcher (OpenMPI's mpirun / mpiexec,
// or a PMI/PMIx launcher such as srun) — the programs then train distributed without
// being told.
inline bool launched_by_mpi() {
    for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(v)) return true;
    return false;
}

// Processes of this job on this machine (for the default thread count: the cores are
// shared by the local ranks), 1 when unknown.
inline int local_ranks() {
    for (const char* v : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
        if (const char* s = std::getenv(v)) {
            const int n = std::atoi(s);
            if (n > 0) return n;
        }
    return 1;
}

class MpiCommunicator final : public Collective {
public:
    MpiCommunicator(int* argc, char*** argv) {
        int done = 0;
        MPI_Initialized(&done);
        if (!done) {
            int provided = 0;
            if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
                throw std::runtime_error("MPI_Init_thread failed");
            owner_ = true;
            if (provided < MPI_THREAD_FUNNELED) {
                MPI_Finalize();
                throw std::runtime_error("this MPI library does not support MPI_THREAD_FUNNELED");
            }
        }
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
    }
    ~MpiCommunicator() override {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (owner_ && !finalized) MPI_Finalize();
    }
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    void allgather(const void* in, std::size_t bytes, void* out) override {
        MPI_Allgather(in, count(bytes), MPI_BYTE, out, count(bytes), MPI_BYTE, MPI_COMM_WORLD);
    }
    void broadcast(void* data, std::size_t bytes, int root) override {
        MPI_Bcast(data, count(bytes), MPI_BYTE, root, MPI_COMM_WORLD);
    }
    void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
    void alltoall(const void* in, std::size_t bytes, void* out) override {
        MPI_Alltoall(in, count(bytes), MPI_BYTE, out, count(bytes), MPI_BYTE, MPI_COMM_WORLD);
    }
    // A sum with MPI_Allreduce (the library's order, not rank order): for the benchmark,
    // which compares it with ordered_sum.
    void allreduce_sum(float* data, std::size_t n) {
        MPI_Allreduce(MPI_IN_PLACE, data, count(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }

    // Ends every rank of the job with `status`, after printing `message` (with this
    // rank's number) on stderr. For an error on one rank: the others would otherwise wait
    // for it in their next collective call.
    [[noreturn]] void abort_job(const std::string& message, int status = 1) const {
        std::fprintf(stderr, "[rank %d of %d] %s; ending the job\n", rank_, size_, message.c_str());
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
        std::_Exit(status);  // MPI_Abort does not return; in case it does
    }

private:
    static int count(std::size_t bytes) {
        if (bytes > std::size_t(INT_MAX))
            throw std::length_error("MPI message of " + std::to_string(bytes) + " bytes: more than INT_MAX");
        return int(bytes);
    }
    bool owner_ = false;
    int rank_ = 0, size_ = 1;
};

}  // namespace dist
}  // namespace kitnn
