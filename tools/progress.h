// Progress display for long work: a bar with frames, segments and ETA on a terminal, plain
// lines when the output is not one (logs, CI).
#pragma once

#include <cstdio>
#include <string>

#include "common/client/client.h"

namespace segue {

class ProgressDisplay {
 public:
  explicit ProgressDisplay(FILE* out);
  // Shows `job`; on a terminal redraws the bar, otherwise prints a line when something changed
  // (at most every few seconds).
  void Update(const JobInfo& job);
  // Ends the bar's line.
  void Finish();

  static std::string FormatDuration(double seconds);
  static std::string Line(const JobInfo& job, int bar_width);

 private:
  FILE* out_;
  bool tty_;
  bool drawn_ = false;
  std::string last_;
  double last_print_ = 0;
};

}  // namespace segue
