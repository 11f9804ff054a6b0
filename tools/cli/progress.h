// Progress display for long work: a bar with frames, segments and ETA on a terminal, plain
// lines when the output is not one (logs, CI).
#pragma once

#include <cstdio>
#include <string>

#include "tools/cli/client.h"

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
  // The job's segments as a strip of at most `width` cells, in timeline order. One cell per
  // segment when they fit; otherwise each cell stands for a run of segments and shows 'x' if one
  // failed, '>' if one is running, '#' if all are done, ':' if some are, '.' if none.
  static std::string SegmentStrip(const std::string& states, int width);

 private:
  FILE* out_;
  bool tty_;
  bool drawn_ = false;
  std::string last_;
  double last_print_ = 0;
};

}  // namespace segue
