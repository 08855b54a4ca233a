// kitnn/train/collective.hpp — what a training step needs from a group of processes.
//
// Data-parallel training over several processes (kitnn/dist/mpi.hpp: MPI ranks) needs
// three operations, and nothing in the core library knows how they are carried out:
//   allgather(in, bytes, out)   every participant gives `bytes` bytes; every one gets
//                               all of them, participant p's at out + p * bytes
//   broadcast(data, bytes, 0)   rank 0's bytes to every participant
//   barrier()
//   alltoall(in, bytes, out)    participant p sends block q of `in` to participant q and
//                               gets participant q's block p at out + q * bytes (the
//                               sharded update of train/data_parallel.hpp); a default
//                               built on allgather is given
// On top of allgather, ordered_sum() sums a buffer over the participants IN RANK ORDER,
// itself, on every rank: ((b_0 + b_1) + b_2) + ... So every rank ends with the same bits
// (MPI_Allreduce leaves the summation order to the implementation: not even equal
// results on all ranks are guaranteed), and the sum is the one in-process replicas
// compute (train/data_parallel.hpp), which is what makes `mpirun -np 2` train to the
// same weights as one process with `--replicas 2`, bit for bit.
// The price: each rank receives (P - 1) buffers instead of a ring allreduce's
// 2 (P - 1) / P, fine for small buffers (metrics, BatchNorm's statistics). A step's
// gradients take the sharded way instead (train/data_parallel.hpp: an alltoall, then an
// allgather of 1 / P each, a ring's traffic), summed in the same rank order
// (docs/distributed.md has the measurements and the cost model).
// The core library has no MPI dependency: this interface is all it sees.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kitnn {

class Collective {
public:
    virtual ~Collective() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    // out: size() * bytes bytes; participant p's `in` lands at out + p * bytes.
    virtual void allgather(const void* in, std::size_t bytes, void* out) = 0;
    virtual void broadcast(void* data, std::size_t bytes, int root) = 0;
    virtual void barrier() = 0;
    // in: size() blocks of `bytes`, block q for participant q; out: size() blocks, block q
    // from participant q. This default gathers every participant's whole `in` (size()
    // times the traffic of a real alltoall, such as MPI_Alltoall) and keeps its blocks:
    // correct over any Collective.
    virtual void alltoall(const void* in, std::size_t bytes, void* out) {
        const std::size_t P = std::size_t(size()), me = std::size_t(rank());
        std::vector<unsigned char> all(P * P * bytes);
        allgather(in, P * bytes, all.data());
        for (std::size_t q = 0; q < P; ++q)
            if (bytes) std::memcpy(static_cast<unsigned char*>(out) + q * bytes, all.data() + (q * P + me) * bytes, bytes);
    }
    bool is_root() const { return rank() == 0; }
};

// One process alone: every operation is a copy or nothing.
class SoloCollective final : public Collective {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void allgather(const void* in, std::size_t bytes, void* out) override {
        if (bytes) std::memcpy(out, in, bytes);
    }
    void broadcast(void*, std::size_t, int) override {}
    void barrier() override {}
};

// data[0, n) := the sum of every participant's data[0, n), added in rank order, equal
// on every rank bit for bit. `scratch` is reused between calls (size() * n values).
template <class V>
void ordered_sum(Collective& c, V* data, std::size_t n, std::vector<V>& scratch) {
    const int P = c.size();
    if (P == 1 || n == 0) return;
    scratch.resize(std::size_t(P) * n);
    c.allgather(data, n * sizeof(V), scratch.data());
    // Rank order, as the replicas of one process are summed: copy rank 0's, add the others.
    std::memcpy(data, scratch.data(), n * sizeof(V));
    for (int p = 1; p < P; ++p) {
        const V* b = scratch.data() + std::size_t(p) * n;
        for (std::size_t i = 0; i < n; ++i) data[i] += b[i];
    }
}

// Rank 0's text on every rank: lengths first, then the bytes.
inline std::string broadcast_string(Collective& c, const std::string& s) {
    std::uint64_t len = s.size();
    c.broadcast(&len, sizeof len, 0);
    std::string r = c.is_root() ? s : std::string(std::size_t(len), '\0');
    if (len) c.broadcast(&r[0], std::size_t(len), 0);
    return r;
}

// 64-bit FNV-1a of some bytes: a fingerprint of data or of a serialised model, for
// check_same_run (not cryptographic: it catches accidents, not adversaries).
inline std::uint64_t fingerprint(const void* data, std::size_t bytes, std::uint64_t h = 0xcbf29ce484222325ULL) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

// Ranks that would train different things must not start: every rank passes the same
// list of (name, value) settings (data sizes, model fingerprint, seed, version, ...);
// if any rank's values differ from rank 0's, EVERY rank throws the same
// std::runtime_error naming the ranks and the settings that differ (so no rank goes on
// alone and waits forever for the others). A different NUMBER of settings (another
// program version) is reported too.
inline void check_same_run(Collective& c, const std::vector<std::pair<std::string, std::string>>& settings) {
    if (c.size() == 1) return;
    std::string mine;
    for (auto& kv : settings) mine += kv.first + "=" + kv.second + "\n";
    // Every rank's text: the lengths, then the texts padded to the longest.
    const int P = c.size();
    std::vector<std::uint64_t> lens(std::size_t(P), 0);
    const std::uint64_t len = mine.size();
    c.allgather(&len, sizeof len, lens.data());
    std::uint64_t longest = 0;
    for (auto l : lens) longest = l > longest ? l : longest;
    std::string padded = mine;
    padded.resize(std::size_t(longest), '\0');
    std::string all(std::size_t(longest) * std::size_t(P), '\0');
    if (longest) c.allgather(padded.data(), std::size_t(longest), &all[0]);
    auto lines = [&](int p) {
        std::vector<std::string> out;
        std::string t = all.substr(std::size_t(p) * std::size_t(longest), std::size_t(lens[std::size_t(p)]));
        std::size_t at = 0;
        while (at < t.size()) {
            const std::size_t nl = t.find('\n', at);
            out.push_back(t.substr(at, nl - at));
            at = nl == std::string::npos ? t.size() : nl + 1;
        }
        return out;
    };
    const auto ref = lines(0);
    std::string problems;
    for (int p = 1; p < P; ++p) {
        const auto theirs = lines(p);
        for (std::size_t i = 0; i < std::max(ref.size(), theirs.size()); ++i) {
            const std::string a = i < ref.size() ? ref[i] : "(nothing)", b = i < theirs.size() ? theirs[i] : "(nothing)";
            if (a != b) problems += "; rank " + std::to_string(p) + " has " + b + " where rank 0 has " + a;
        }
    }
    if (!problems.empty())
        throw std::runtime_error("the " + std::to_string(P) + " ranks do not run the same training" + problems +
                                 " (start every rank with the same program, data, model and flags)");
}

}  // namespace kitnn
