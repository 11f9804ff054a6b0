#include "tools/cli/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string_view>

namespace segue {

ProgressDisplay::ProgressDisplay(FILE* out) : out_(out), tty_(isatty(fileno(out))) {}

std::string ProgressDisplay::FormatDuration(double s) {
  if (s < 0 || !std::isfinite(s)) return "--:--";
  long t = std::lround(s);
  char buf[32];
  if (t >= 3600)
    snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string ProgressDisplay::SegmentStrip(const std::string& states, int width) {
  const size_t n = states.size();
  if (width <= 0 || n == 0) return "";
  if (n <= static_cast<size_t>(width)) return states;
  std::string out;
  for (int c = 0; c < width; ++c) {
    const size_t from = n * static_cast<size_t>(c) / static_cast<size_t>(width);
    const size_t to = n * static_cast<size_t>(c + 1) / static_cast<size_t>(width);
    const std::string_view run(states.data() + from, to - from);
    const size_t done = static_cast<size_t>(std::count(run.begin(), run.end(), '#'));
    out += run.find('x') != run.npos   ? 'x'
           : run.find('>') != run.npos ? '>'
           : done == run.size()        ? '#'
           : done > 0                  ? ':'
                                       : '.';
  }
  return out;
}

std::string ProgressDisplay::Line(const JobInfo& j, int bar_width) {
  std::string bar;
  if (bar_width > 0) {
    int filled = static_cast<int>(std::floor(j.progress * bar_width + 1e-9));
    bar = "[" + std::string(static_cast<size_t>(filled), '#') +
          std::string(static_cast<size_t>(bar_width - filled), '-') + "] ";
  }
  char buf[256];
  snprintf(buf, sizeof buf, "%s%3d%%  %s  frames %lld/%lld  segments %u/%u  chunks %u/%u  ETA %s",
           bar.c_str(), static_cast<int>(std::floor(j.progress * 100 + 1e-9)), j.state.c_str(),
           static_cast<long long>(j.frames_done), static_cast<long long>(j.frames_total),
           j.segments_done, j.segments_total, j.chunks_done, j.chunks_total,
           FormatDuration(j.eta_seconds).c_str());
  return buf;
}

void ProgressDisplay::Update(const JobInfo& j) {
  const double now =
      std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  if (tty_) {
    fprintf(out_, "\r\033[2Kjob %llu %s", static_cast<unsigned long long>(j.id),
            Line(j, 30).c_str());
    fflush(out_);
    drawn_ = true;
    return;
  }
  std::string key = j.state + std::to_string(j.segments_done) + "/" + std::to_string(j.chunks_done);
  if (key != last_ && (now - last_print_ >= 2.0 || j.Finished() || last_.empty())) {
    fprintf(out_, "job %llu %s\n", static_cast<unsigned long long>(j.id), Line(j, 0).c_str());
    fflush(out_);
    last_ = key;
    last_print_ = now;
  }
}

void ProgressDisplay::Finish() {
  if (tty_ && drawn_) fprintf(out_, "\n");
  drawn_ = false;
}

}  // namespace segue
