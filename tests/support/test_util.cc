#include "tests/support/test_util.h"

#include <cctype>

#include <gtest/gtest.h>

#include "common/media/video.h"
#include "coordinator/journal.h"
#include "coordinator/store/store.h"
#include "tools/cli/client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

namespace segue {

int RunCommand(const std::string& command, std::string* output, bool merge_stderr) {
  std::string cmd = command + (merge_stderr ? " 2>&1" : "");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf;
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string SubmittedJobId(const std::string& output) {
  const size_t at = output.find("job id: ");
  if (at == std::string::npos) return "";
  const size_t start = at + 8, end = output.find_first_not_of("0123456789", start);
  return output.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

DoneSegments SegmentsDone(const std::vector<std::string>& log) {
  DoneSegments d;
  for (const std::string& line : log) {
    const size_t at = line.find("segment ");
    if (at == std::string::npos || line.find(" done", at) == std::string::npos) continue;
    const size_t digits = at + 8;
    if (digits >= line.size() || !std::isdigit(static_cast<unsigned char>(line[digits]))) continue;
    const int s = std::stoi(line.substr(digits));
    (line.find("reused from job ") != std::string::npos ? d.reused : d.rendered).insert(s);
  }
  return d;
}

std::string BinDir() { return SEGUE_BIN_DIR; }

std::string SourceDir() { return SEGUE_SOURCE_DIR; }

std::string Cli(const std::string& args) { return "'" + BinDir() + "/segue' " + args; }

LocalFarm::LocalFarm(const std::string& dir, int workers,
                     const std::vector<std::string>& coordinator_args,
                     const std::vector<std::string>& worker_args)
    : dir_(dir), coordinator_args_(coordinator_args) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (!StartCoordinator("tcp://127.0.0.1:*")) return;
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> wargv = {BinDir() + "/segue-worker", "--coordinator", endpoint_,
                                      "--name", "w" + std::to_string(i)};
    wargv.insert(wargv.end(), worker_args.begin(), worker_args.end());
    auto w = ChildProcess::Spawn(wargv, dir + "/worker-" + std::to_string(i) + ".log");
    if (!w.ok()) {
      endpoint_.clear();
      return;
    }
    workers_.push_back(std::move(*w));
  }
}

bool LocalFarm::WaitForWorkers(int seconds) {
  Client client(endpoint_, 2000);
  for (int i = 0; i < seconds * 40; ++i) {
    auto ws = client.Workers();
    if (ws.ok() && ws->size() >= workers_.size()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

bool LocalFarm::StartCoordinator(const std::string& listen) {
  std::error_code ec;
  std::filesystem::remove(dir_ + "/state/coordinator.endpoint", ec);
  std::vector<std::string> argv = {BinDir() + "/segue-coordinator",
                                   "--listen",
                                   listen,
                                   "--state-dir",
                                   dir_ + "/state",
                                   "--output-root",
                                   dir_ + "/root"};
  if (std::find(coordinator_args_.begin(), coordinator_args_.end(), "--encoder-preset") ==
      coordinator_args_.end())
    argv.insert(argv.end(), {"--encoder-preset", "veryfast"});  // fast tests unless told
  argv.insert(argv.end(), coordinator_args_.begin(), coordinator_args_.end());
  auto c = ChildProcess::Spawn(argv, dir_ + "/coordinator.log");
  if (!c.ok()) return false;
  coordinator_ = std::move(*c);
  std::string endpoint;
  for (int i = 0; i < 400 && endpoint.empty(); ++i) {
    std::ifstream f(dir_ + "/state/coordinator.endpoint");
    std::getline(f, endpoint);
    if (endpoint.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  endpoint_ = endpoint;
  return !endpoint.empty();
}

bool LocalFarm::RestartCoordinator() {
  coordinator_.Signal(SIGKILL);
  coordinator_.Wait();
  return StartCoordinator(endpoint_);
}

LocalFarm::~LocalFarm() {
  for (auto& w : workers_) w.Stop();
  coordinator_.Stop();
}

void MakeTone(const std::string& path, double seconds) {
  RunCommand("ffmpeg -loglevel error -y -f lavfi -i sine=frequency=330:duration=" +
             std::to_string(seconds) + " '" + path + "'");
}

ProbeInfo Probe(const std::string& path) {
  std::string out;
  RunCommand("ffprobe -v error -count_frames -show_streams -of json '" + path + "'", &out);
  ProbeInfo info;
  auto j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.contains("streams")) return info;
  for (const auto& s : j["streams"]) {
    auto num = [&](const char* key) {
      if (s.contains(key)) return std::stod(s[key].get<std::string>());
      // Matroska keeps stream durations in a tag, "HH:MM:SS.nnnnnnnnn".
      if (std::string(key) == "duration" && s.contains("tags") && s["tags"].contains("DURATION")) {
        int hh = 0, mm = 0;
        double ss = 0;
        if (std::sscanf(s["tags"]["DURATION"].get<std::string>().c_str(), "%d:%d:%lf", &hh, &mm,
                        &ss) == 3)
          return hh * 3600.0 + mm * 60.0 + ss;
      }
      return -1.0;
    };
    if (s["codec_type"] == "video") {
      info.video_codec = s.value("codec_name", "");
      info.width = s.value("width", 0);
      info.height = s.value("height", 0);
      info.frame_rate = s.value("r_frame_rate", "");
      info.frames =
          s.contains("nb_read_frames") ? std::stol(s["nb_read_frames"].get<std::string>()) : -1;
      info.video_duration = num("duration");
      info.pix_fmt = s.value("pix_fmt", "");
      info.profile = s.value("profile", "");
      info.color_primaries = s.value("color_primaries", "");
      info.color_transfer = s.value("color_transfer", "");
      info.color_space = s.value("color_space", "");
    } else if (s["codec_type"] == "audio") {
      info.has_audio = true;
      info.audio_codec = s.value("codec_name", "");
      info.audio_duration = num("duration");
    }
  }
  return info;
}

void DrawStamp(uint8_t* rgb, int width, int height, int64_t value, int bars) {
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const int bar = x * bars / width;
      const bool on = (value >> (bars - 1 - bar)) & 1;
      uint8_t* p = rgb + (static_cast<size_t>(y) * width + x) * 3;
      p[0] = p[1] = p[2] = on ? 255 : 0;
    }
  }
}

int64_t ReadStamp(const uint8_t* rgb, int stride, int w, int h, int bars) {
  int64_t value = 0;
  for (int b = 0; b < bars; ++b) {
    // The middle half of the bar, over the middle half of the height: away from the edges
    // that lossy coding blurs.
    const int width = w / bars, x0 = b * w / bars + width / 4, x1 = x0 + std::max(1, width / 2);
    double sum = 0;
    int n = 0;
    for (int y = h / 4; y < 3 * h / 4; ++y) {
      for (int x = x0; x < x1 && x < w; ++x, ++n)
        sum += rgb[(static_cast<size_t>(y) * stride + x) * 3 + 1];
    }
    value = (value << 1) | (n > 0 && sum / n > 127 ? 1 : 0);
  }
  return value;
}

std::vector<int64_t> ReadStamps(const std::string& path, int bars) {
  std::vector<int64_t> out;
  Status s = ReadVideoFrames(path, [&](int64_t, const uint8_t* rgb, int w, int h) {
    out.push_back(ReadStamp(rgb, w, w, h, bars));
  });
  if (!s.ok()) ADD_FAILURE() << s.message();
  return out;
}

std::string HttpExchange(const std::string& host_port, const std::string& request, int* status) {
  *status = 0;
  const size_t colon = host_port.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(host_port.substr(colon + 1))));
  inet_pton(AF_INET, host_port.substr(0, colon).c_str(), &addr.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return "";
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string reply;
  char buf[8192];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof buf, 0)) > 0) reply.append(buf, static_cast<size_t>(n));
  close(fd);
  if (reply.rfind("HTTP/1.1 ", 0) == 0) *status = std::stoi(reply.substr(9, 3));
  return reply;
}

std::string HttpGet(const std::string& host_port, const std::string& path, int* status) {
  std::string reply = HttpExchange(
      host_port, "GET " + path + " HTTP/1.1\r\nHost: " + host_port + "\r\n\r\n", status);
  const size_t body = reply.find("\r\n\r\n");
  return body == std::string::npos ? "" : reply.substr(body + 4);
}

double MaxVolumeDb(const std::string& path, double from, double to) {
  std::string out;
  RunCommand("ffmpeg -hide_banner -nostats -i '" + path + "' -vn -af atrim=" +
                 std::to_string(from) + ":" + std::to_string(to) + ",volumedetect -f null - 2>&1",
             &out);
  const size_t at = out.find("max_volume: ");
  if (at == std::string::npos) return 0;
  return std::stod(out.substr(at + 12));
}

std::vector<std::string> StoredLatents(const std::string& store_dir, uint64_t job) {
  std::vector<std::string> out;
  auto store = Store::Open(store_dir);
  if (!store.ok()) return out;
  (*store)->Scan(Family::kLatents, JobKey(job), JobKey(job + 1),
                 [&](const std::string&, const std::string& v) {
                   out.push_back(v);
                   return true;
                 });
  return out;
}

std::string DecodedMd5(const std::string& path) {
  std::string out;
  RunCommand("ffmpeg -loglevel error -i '" + path + "' -map 0:v -f md5 -", &out);
  return out;
}

}  // namespace segue
