// kitnn/train/history.hpp — what an epoch leaves behind, and its one CSV form.
//
// EpochStats is one row of fit()'s history; TrainState is where a run stands after a
// whole epoch (what a training checkpoint stores besides weights and optimizer).
// history_csv() is the ONE writer of the history: fit() writes it to history.csv and
// the training checkpoint stores the same text (train.history), so both have the same
// columns, with a header line and 17 significant digits (a resumed run's history is
// the interrupted run's, bit for bit):
//   epoch,loss,acc,val_loss,val_acc,seconds,lr,images_per_s,improved
#pragma once

#include "kitnn/io/model_file.hpp"

#include <cstdint>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace kitnn {

struct EpochStats {
    int epoch = 0;
    double loss = 0, acc = 0, val_loss = 0, val_acc = 0, seconds = 0, images_per_s = 0;
    double lr = 0;  // learning rate at the end of the epoch
    bool improved = false;
};

// Where a run stands after a whole epoch.
struct TrainState {
    int epoch = 0;                                          // epochs completed
    double best = std::numeric_limits<double>::infinity();  // best val_loss so far
    int since_best = 0;                                     // epochs since it improved
    std::vector<EpochStats> history;
};

constexpr const char* kHistoryHeader = "epoch,loss,acc,val_loss,val_acc,seconds,lr,images_per_s,improved";

inline std::string history_csv(const std::vector<EpochStats>& h) {
    std::ostringstream csv;
    csv << kHistoryHeader << "\n" << std::setprecision(17);
    for (auto& e : h)
        csv << e.epoch << "," << e.loss << "," << e.acc << "," << e.val_loss << "," << e.val_acc
            << "," << e.seconds << "," << e.lr << "," << e.images_per_s << "," << int(e.improved)
            << "\n";
    return csv.str();
}

// The rows of history_csv() text (the header line is optional: checkpoints written
// before it existed have none). Throws ModelFileError naming `path` on a bad line.
inline std::vector<EpochStats> parse_history(const std::string& text, const std::string& path) {
    std::vector<EpochStats> h;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("epoch,", 0) == 0) continue;  // the header
        EpochStats e;
        int improved = 0;
        char c[8];
        std::istringstream ls(line);
        if (!(ls >> e.epoch >> c[0] >> e.loss >> c[1] >> e.acc >> c[2] >> e.val_loss >> c[3] >>
              e.val_acc >> c[4] >> e.seconds >> c[5] >> e.lr >> c[6] >> e.images_per_s >> c[7] >>
              improved))
            throw ModelFileError(path + ": training checkpoint: unreadable history line '" + line + "'");
        e.improved = improved != 0;
        h.push_back(e);
    }
    return h;
}

}  // namespace kitnn
