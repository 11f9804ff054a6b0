// Helpers shared by the tests: running commands and real farms, ffprobe, frame stamps, HTTP
// (temporary folders: common/util/temp_dir.h).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "common/util/process.h"
#include "common/util/temp_dir.h"

namespace segue {

// Runs a shell command; returns its exit code and fills *output with stdout (and stderr when
// merge_stderr).
int RunCommand(const std::string& command, std::string* output = nullptr,
               bool merge_stderr = false);

// A farm of real processes on loopback: a coordinator (state in DIR/state, output root
// DIR/root, a free port) and `workers` workers, logs in DIR. Stops them at scope exit.
class LocalFarm {
 public:
  LocalFarm(const std::string& dir, int workers,
            const std::vector<std::string>& coordinator_args = {},
            const std::vector<std::string>& worker_args = {});
  ~LocalFarm();
  bool ok() const { return !endpoint_.empty(); }
  const std::string& endpoint() const { return endpoint_; }
  std::vector<ChildProcess>& workers() { return workers_; }
  ChildProcess& coordinator() { return coordinator_; }
  // kill -9 the coordinator and start it again on the same state and endpoint.
  bool RestartCoordinator();
  // Waits until every worker it started has joined (a job submitted earlier may run on fewer).
  bool WaitForWorkers(int seconds = 30);

 private:
  bool StartCoordinator(const std::string& listen);
  std::string dir_;
  std::vector<std::string> coordinator_args_;
  ChildProcess coordinator_;
  std::vector<ChildProcess> workers_;
  std::string endpoint_;
};

// The job id `segue submit` printed in `output` (its first line, "job id: N"); "" if none.
std::string SubmittedJobId(const std::string& output);

// A shell command running the `segue` CLI with `args` (quote paths inside `args` yourself).
std::string Cli(const std::string& args);

// Folder of the segue binaries, and the source tree (set by CMake).
std::string BinDir();
std::string SourceDir();

// Writes a sine tone of `seconds` to `path` with the ffmpeg command.
void MakeTone(const std::string& path, double seconds);

struct ProbeInfo {
  std::string video_codec;
  int width = 0, height = 0;
  std::string frame_rate;  // "24/1"
  long frames = -1;        // counted by decoding
  double video_duration = -1;
  bool has_audio = false;
  std::string audio_codec;
  double audio_duration = -1;
  std::string pix_fmt, profile, color_primaries, color_transfer, color_space;
};
// ffprobe -count_frames on `path`.
ProbeInfo Probe(const std::string& path);

// Frame stamps: `value`'s low `bars` bits as equal-width vertical bars over the whole picture,
// most significant first, white = 1 (what the built-in `stamp` model draws: the frame's time in
// milliseconds, 20 bars). DrawStamp paints one RGB24 frame; ReadStamps decodes every frame of a
// video (or an image sequence pattern such as DIR/frame_%06d.png) and reads them back.
void DrawStamp(uint8_t* rgb, int width, int height, int64_t value, int bars);
std::vector<int64_t> ReadStamps(const std::string& path, int bars);
// One stamp from a w x h region of an RGB24 picture whose rows are `stride` pixels apart.
int64_t ReadStamp(const uint8_t* rgb, int stride, int w, int h, int bars);

// Sends `request` (raw bytes) to HOST:PORT over TCP and returns everything the server answers
// until it closes; *status gets the HTTP status code (0 when there was no HTTP answer).
std::string HttpExchange(const std::string& host_port, const std::string& request, int* status);
// GET `path`; returns the body.
std::string HttpGet(const std::string& host_port, const std::string& path, int* status);

// The loudest sample (dBFS, -91 for digital silence) of `path`'s audio within [from, to) seconds.
double MaxVolumeDb(const std::string& path, double from, double to);

// The final latents of every segment of `job` in a (stopped) coordinator's store, in order:
// what the determinism contract is about (encoded bytes also depend on the H.264 encoder).
std::vector<std::string> StoredLatents(const std::string& store_dir, uint64_t job);

// A job's segments by how they were done, from its event log (Client::Logs): rendered by a
// worker, or reused from another job's stored result ("segment N done reused from job J ...").
struct DoneSegments {
  std::set<int> rendered, reused;
};
DoneSegments SegmentsDone(const std::vector<std::string>& log);

// MD5 of the decoded video frames (ffmpeg -f md5), to compare pictures regardless of container.
std::string DecodedMd5(const std::string& path);

}  // namespace segue
