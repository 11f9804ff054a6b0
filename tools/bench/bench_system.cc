#include "tools/bench/bench_system.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <yaml-cpp/yaml.h>

#include "common/tensor/tensor.h"
#include "common/util/process.h"
#include "common/util/temp_dir.h"
#include "coordinator/journal.h"  // the key layout the coordinator uses
#include "coordinator/store/store.h"
#include "tools/bench/bench_util.h"
#include "tools/cli/client.h"

namespace segue {
namespace {

using bench::ServingThread;

namespace fs = std::filesystem;
using bench::Clock;
using bench::Since;

// A coordinator process on a fresh endpoint; its address once it listens.
struct CoordinatorProcess {
  ChildProcess process;
  std::string endpoint;
};

CoordinatorProcess StartCoordinator(const std::string& state, const std::string& log,
                                    const std::vector<std::string>& more = {}) {
  const std::string endpoint_file = state + ".endpoint";
  std::error_code ec;
  fs::remove(endpoint_file, ec);
  std::vector<std::string> argv = {ExecutableDir() + "/segue-coordinator",
                                   "--listen",
                                   "tcp://127.0.0.1:*",
                                   "--state-dir",
                                   state,
                                   "--output-root",
                                   state + "-out",
                                   "--endpoint-file",
                                   endpoint_file};
  argv.insert(argv.end(), more.begin(), more.end());
  auto child = ChildProcess::Spawn(argv, log);
  if (!child.ok()) throw std::runtime_error(child.message());
  CoordinatorProcess c{std::move(*child), ""};
  for (int i = 0; i < 6000 && c.endpoint.empty(); ++i) {
    std::ifstream f(endpoint_file);
    std::getline(f, c.endpoint);
    if (c.endpoint.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (c.endpoint.empty()) throw std::runtime_error("the coordinator did not start; see " + log);
  return c;
}

uint64_t PeakRssBytes(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

std::string ManifestYaml(const std::string& name, const std::string& video,
                         const std::string& model, const std::string& segments) {
  return "version: 1\nname: " + name + "\nvideo: {" + video + "}\nmodel: {" + model +
         "}\nsegments: {" + segments +
         "}\ntimeline: [{at: 0s, prompt: golden hour}]\noutput: "
         "{path: out/" +
         name + ".mp4, overwrite: true}\n";
}

SubmitInfo SubmitJob(Client& client, const std::string& manifest) {
  SubmitRequest req;
  req.manifest_text = manifest;
  req.manifest_name = "bench.yaml";
  auto r = client.Submit(req);
  if (!r.ok()) throw std::runtime_error(r.message());
  return *r;
}

uint64_t Submit(Client& client, const std::string& manifest) {
  return SubmitJob(client, manifest).job_id;
}

}  // namespace

nlohmann::json BenchStore(int blobs) {
  TempDir dir;
  // A checkpoint of a 48-frame 512x288 segment: [4, 48, 36, 64] floats, 1.77 MB.
  Tensor t = Tensor::Zeros({4, 48, 36, 64});
  for (size_t i = 0; i < t.data.size(); ++i)
    t.data[i] = static_cast<float>((i * 2654435761u) % 1000) / 999.f;
  const std::string value = EncodeTensor(t);
  auto store = Store::Open(dir / "store");
  if (!store.ok()) throw std::runtime_error(store.message());
  fs::create_directories(dir / "files");
  // The coordinator hands the store bytes it owns (the encoded tensor), as the files get bytes
  // already in memory: copies are made before the clock starts, and moved in.
  std::vector<std::string> owned;
  auto to_store = [&](int i) {
    Store::Batch b;
    b.Put(Family::kCheckpoints, TaskKey(1, static_cast<uint32_t>(i)),
          std::move(owned[static_cast<size_t>(i)]));
    Status s = (*store)->Write(b);
    if (!s.ok()) throw std::runtime_error(s.message());
  };
  auto to_file = [&](int i) {
    const std::string path = dir / ("files/" + std::to_string(i));
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw std::runtime_error("cannot write " + path);
    size_t done = 0;
    while (done < value.size()) {
      ssize_t n = write(fd, value.data() + done, value.size() - done);
      if (n <= 0) throw std::runtime_error("write failed");
      done += static_cast<size_t>(n);
    }
    fdatasync(fd);
    close(fd);
  };
  // Rounds of 10 of each, the order alternating (store first, then files first, ...), so that
  // both see the disk in the same state: this VM's disk speeds up and slows down over seconds.
  double rocks = 0, files = 0;
  std::vector<double> round_ratios;  // files' time over the store's, per round
  constexpr int kRound = 10;
  owned.assign(static_cast<size_t>(blobs), std::string());
  for (int r = 0; r * kRound < blobs; ++r) {
    const int from = r * kRound, to = std::min(blobs, from + kRound);
    double round[2] = {0, 0};  // store, files
    for (int pass = 0; pass < 2; ++pass) {
      const bool store_pass = (pass == 0) == (r % 2 == 0);
      if (store_pass) {
        for (int i = from; i < to; ++i) owned[static_cast<size_t>(i)] = value;
      }
      auto t0 = Clock::now();
      for (int i = from; i < to; ++i) store_pass ? to_store(i) : to_file(i);
      round[store_pass ? 0 : 1] = Since(t0);
    }
    rocks += round[0];
    files += round[1];
    round_ratios.push_back(round[1] / round[0]);
  }
  const double mb = static_cast<double>(value.size()) * blobs / 1e6;
  // The figure: the median of the rounds' rate ratios (the store's MB/s over the files'), so a
  // stall of the disk during one round moves it little. The overall ratio is printed too.
  const double overall = files / rocks;
  const double ratio = bench::Median(round_ratios);
  std::cout << "store: " << blobs << " checkpoints of " << value.size() / 1024
            << " KiB, each a synced store batch: " << mb / rocks << " MB/s; plain files with "
            << "fdatasync: " << mb / files << " MB/s; ratio " << ratio << " (median of "
            << round_ratios.size() << " rounds; overall " << overall << ") (target >= 0.8)\n";
  return {{"bench", "store"},
          {"blobs", blobs},
          {"blob_bytes", value.size()},
          {"rocksdb_mb_per_s", mb / rocks},
          {"files_mb_per_s", mb / files},
          {"ratio", ratio},
          {"overall_ratio", overall},
          {"target_ratio", 0.8}};
}

nlohmann::json BenchRecovery(int segments) {
  TempDir dir;
  double submit_seconds = 0;
  {  // The state: one job of `segments` segments, every record written. Its submission is the
     // admission work the event loop does at once: planning, and storing every record.
    CoordinatorProcess c = StartCoordinator(dir / "full", dir / "build.log");
    Client client(c.endpoint, 60000);
    (void)client.Jobs();  // connected before the clock starts
    const auto t0 = Clock::now();
    // A built-in model, so that the job is planned at submit (a model no worker has reported
    // would leave it waiting, unplanned: nothing to restore).
    const SubmitInfo info = SubmitJob(
        client,
        ManifestYaml("recovery",
                     "width: 8, height: 8, fps: 24, frames: " + std::to_string(segments * 2),
                     "name: zoom, steps: 1", "length: 2, overlap: 0"));
    submit_seconds = Since(t0);
    if (info.segments != static_cast<uint32_t>(segments))
      throw std::runtime_error("recovery: the job planned " + std::to_string(info.segments) +
                               " segments, not " + std::to_string(segments));
    c.process.Stop();
  }
  auto time_to_serve = [&](const std::string& state) {
    const auto t0 = Clock::now();
    CoordinatorProcess c = StartCoordinator(state, state + ".log");
    Client client(c.endpoint, 60000);
    auto jobs = client.Jobs();
    if (!jobs.ok()) throw std::runtime_error(jobs.message());
    const double s = Since(t0);
    c.process.Stop();
    return std::make_pair(s, jobs->size());
  };
  const auto [empty, none] = time_to_serve(dir / "empty");
  const auto [full, one] = time_to_serve(dir / "full");
  if (one != 1 || none != 0) throw std::runtime_error("recovery: the restored jobs are wrong");
  std::cout << "recovery: coordinator restart on a store with " << segments
            << " segments serves again in " << full << " s (an empty store: " << empty
            << " s; ratio " << full / empty << ") (target < 2 s); submitting the job took "
            << submit_seconds << " s\n";
  return {{"bench", "recovery"},   {"segments", segments},
          {"seconds", full},       {"empty_store_seconds", empty},
          {"ratio", full / empty}, {"submit_seconds", submit_seconds},
          {"target_seconds", 2}};
}

nlohmann::json BenchMemory(bool quick) {
  TempDir dir;
  nlohmann::json out = {{"bench", "memory"}};
  {  // The coordinator: idle, then holding a 4-hour job.
    CoordinatorProcess idle = StartCoordinator(dir / "coordinator-idle", dir / "idle.log");
    Client ci(idle.endpoint, 60000);
    (void)ci.Jobs();
    const uint64_t idle_rss = PeakRssBytes(idle.process.pid());
    CoordinatorProcess c = StartCoordinator(dir / "coordinator-4h", dir / "4h.log");
    Client client(c.endpoint, 60000);
    const uint64_t job =
        Submit(client, ManifestYaml("four-hours", "width: 512, height: 288, fps: 24, duration: 4h",
                                    "name: zoom, steps: 30", "length: 48, overlap: 12"));
    for (int i = 0; i < 20; ++i) {  // tracking: status, the job list, the event log
      (void)client.Status(job);
      (void)client.Jobs();
    }
    (void)client.Logs(job);
    const uint64_t rss = PeakRssBytes(c.process.pid());
    std::cout << "memory: coordinator peak RSS with a 4-hour job (345,600 frames, 9,600 segments) "
              << rss / (1 << 20) << " MiB (idle: " << idle_rss / (1 << 20) << " MiB; ratio "
              << static_cast<double>(rss) / idle_rss << ") (target <= 256 MiB)" << std::endl;
    out["coordinator_peak_rss_mib"] = rss / (1 << 20);
    out["coordinator_idle_rss_mib"] = idle_rss / (1 << 20);
    out["target_coordinator_mib"] = 256;
  }
  // A worker: the same segments and chunks over a short job and a job 10x longer.
  auto worker_peak = [&](const std::string& name, int seconds) {
    CoordinatorProcess c = StartCoordinator(dir / ("worker-" + name), dir / (name + ".log"),
                                            {"--encoder-preset", "ultrafast"});
    auto w = ChildProcess::Spawn(
        {ExecutableDir() + "/segue-worker", "--coordinator", c.endpoint, "--name", name},
        dir / (name + "-worker.log"));
    if (!w.ok()) throw std::runtime_error(w.message());
    Client client(c.endpoint, 60000);
    const uint64_t job = Submit(
        client,
        ManifestYaml(name,
                     "width: 128, height: 72, fps: 24, duration: " + std::to_string(seconds) + "s",
                     "name: zoom, steps: 4", "length: 48, overlap: 12"));
    for (int i = 0; i < 36000; ++i) {
      auto st = client.Status(job);
      if (st.ok() && st->Finished()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    const uint64_t rss = PeakRssBytes(w->pid());
    w->Stop();
    c.process.Stop();
    return rss;
  };
  const int base = quick ? 10 : 30;
  const uint64_t short_rss = worker_peak("short", base);
  const uint64_t long_rss = worker_peak("long", base * 10);
  std::cout << "memory: worker peak RSS (128x72, 4 steps) over a " << base << " s job "
            << short_rss / (1 << 20) << " MiB, over a " << base * 10 << " s job "
            << long_rss / (1 << 20) << " MiB (ratio " << static_cast<double>(long_rss) / short_rss
            << "; target: does not grow with the video's length)" << std::endl;
  out["worker_short_job_seconds"] = base;
  out["worker_short_peak_rss_mib"] = short_rss / (1 << 20);
  out["worker_long_peak_rss_mib"] = long_rss / (1 << 20);
  out["worker_ratio"] = static_cast<double>(long_rss) / short_rss;
  return out;
}

nlohmann::json BenchRender(bool quick) {
  TempDir dir;
  // A song: 3 minutes at 512x288 (quick: 20 s), 120 (14) segments of 48 frames and 45 (5) chunks.
  // Short jobs show the fixed costs (start-up, the last chunk's encode after the last segment)
  // more than the farm's scaling; a music video is this long.
  const int frames = quick ? 480 : 4320, steps = 30;
  const std::string manifest = dir / "job.yaml";
  std::ofstream(manifest) << ManifestYaml(
      "render", "width: 512, height: 288, fps: 24, frames: " + std::to_string(frames),
      "name: zoom, steps: " + std::to_string(steps), "length: 48, overlap: 12");
  auto run = [&](int workers) {
    const auto t0 = Clock::now();
    std::string cmd = "'" + ExecutableDir() + "/segue' render '" + manifest + "' --workers " +
                      std::to_string(workers) + " --state-dir '" +
                      dir / ("s" + std::to_string(workers)) + "' --output '" +
                      dir / ("o" + std::to_string(workers) + ".mp4") +
                      "' --preset veryfast > /dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("segue render failed: " + cmd);
    return Since(t0);
  };
  const double one = run(1), two = run(2);
  std::cout << "render: " << frames << " frames 512x288 (segments of 48), zoom " << steps
            << " steps, chunks encoded (veryfast): 2 workers " << two << " s, 1 worker " << one
            << " s; speed-up " << one / two << " (target >= 1.8 on 2 cores)\n";
  return {{"bench", "render"},         {"frames", frames},           {"steps", steps},
          {"one_worker_seconds", one}, {"two_workers_seconds", two}, {"speedup", one / two},
          {"target_speedup", 1.8}};
}

namespace {

// "6s" -> 6: the bench's manifests write their times in seconds.
double SecondsOf(const YAML::Node& v, const std::string& field) {
  const std::string t = v.as<std::string>();
  char* end = nullptr;
  const double s = std::strtod(t.c_str(), &end);
  if (t.empty() || std::string(end) != "s")
    throw std::invalid_argument("iterate --repeat: " + field + " '" + t + "' is not in seconds");
  return s;
}

std::string Seconds(double s) {
  std::ostringstream o;
  o << s << "s";
  return o.str();
}

}  // namespace

nlohmann::json BenchIterate(const IterateOptions& options, bool quick) {
  namespace fs = std::filesystem;
  TempDir dir;
  const std::string& manifest = options.manifest;
  std::ifstream in(manifest);
  if (!in) throw std::invalid_argument("iterate: cannot read '" + manifest + "'");
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string((std::istreambuf_iterator<char>(in)), {}));
  } catch (const YAML::Exception& e) {
    throw std::invalid_argument("iterate: " + manifest + ": " + e.what());
  }
  if (!doc["timeline"].IsSequence() || doc["timeline"].size() < 3)
    throw std::invalid_argument("iterate: " + manifest + " needs a timeline of 3 keyframes");
  // Its song, next to the copies (audio paths are relative to the manifest).
  const fs::path song = fs::absolute(fs::path(manifest).parent_path() / "song.mp3");
  if (fs::exists(song)) fs::create_symlink(song, dir / "song.mp3");
  if (quick) doc["model"]["steps"] = 4;
  // A longer video: the timeline played `repeat` times in a row (the song once, then silence).
  if (options.repeat > 1) {
    const double length = SecondsOf(doc["video"]["duration"], "video.duration");
    YAML::Node timeline = doc["timeline"];
    const size_t n = timeline.size();
    for (int r = 1; r < options.repeat; ++r) {
      for (size_t k = 0; k < n; ++k) {
        YAML::Node entry = YAML::Clone(timeline[k]);
        entry["at"] = Seconds(SecondsOf(timeline[k]["at"], "timeline[].at") + r * length);
        timeline.push_back(entry);
      }
    }
    doc["video"]["duration"] = Seconds(length * options.repeat);
  }
  // Every render comes with a preview (the manifest's `preview:`, else the defaults), as a
  // director's would; the figures compared are the finals' own renders, which start when their
  // previews are delivered.
  if (!doc["preview"]) doc["preview"] = YAML::Node(YAML::NodeType::Map);
  const size_t keyframes = doc["timeline"].size();
  std::vector<size_t> edits;
  if (options.edit == "all") {
    for (size_t k = 0; k < keyframes; ++k) edits.push_back(k);
  } else if (options.edit == "middle") {
    edits.push_back(keyframes / 2);
  } else {
    char* end = nullptr;
    const long k = std::strtol(options.edit.c_str(), &end, 10);
    if (options.edit.empty() || *end != '\0' || k < 1 || k > static_cast<long>(keyframes))
      throw std::invalid_argument("iterate: --edit must be middle, all or 1-" +
                                  std::to_string(keyframes) + ", not '" + options.edit + "'");
    edits.push_back(static_cast<size_t>(k - 1));
  }
  auto text_of = [](const YAML::Node& node) {
    YAML::Emitter out;
    out << node;
    return std::string(out.c_str()) + "\n";
  };
  const std::string text = text_of(doc);
  // The edits: "at night, " before one keyframe's prompt.
  auto edited = [&](size_t k) {
    YAML::Node copy = YAML::Clone(doc);
    copy["timeline"][k]["prompt"] = "at night, " + doc["timeline"][k]["prompt"].as<std::string>();
    return text_of(copy);
  };
  // One farm serves every render, started before the clock: a studio's farm is up.
  std::vector<std::string> flags = {"--encoder-preset", "veryfast"};
  if (options.chunk_frames > 0)
    flags.insert(flags.end(), {"--chunk-frames", std::to_string(options.chunk_frames)});
  CoordinatorProcess coord = StartCoordinator(dir / "state", dir / "coordinator.log", flags);
  std::vector<ChildProcess> workers;
  for (int i = 0; i < 2; ++i) {
    auto w = ChildProcess::Spawn({ExecutableDir() + "/segue-worker", "--coordinator",
                                  coord.endpoint, "--name", "bench-" + std::to_string(i)},
                                 dir / ("worker-" + std::to_string(i) + ".log"));
    if (!w.ok()) throw std::runtime_error(w.message());
    workers.push_back(std::move(*w));
  }
  Client client(coord.endpoint, 30000);
  for (int i = 0; i < 3000; ++i) {
    auto ws = client.Workers();
    if (ws.ok() && ws->size() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  SubmitRequest req;
  req.manifest_name = fs::path(manifest).filename().string();
  if (fs::exists(song)) {
    std::ifstream a(song, std::ios::binary);
    req.audio_data.assign((std::istreambuf_iterator<char>(a)), {});
    req.audio_name = "song.mp3";
  }
  // Seconds from `t0` until job `id` is finished (DONE, or an error).
  auto done_after = [&](uint64_t id, Clock::time_point t0) {
    while (true) {
      auto st = client.Status(id);
      if (!st.ok()) throw std::runtime_error(st.message());
      if (st->Finished()) {
        if (st->state != "DONE") throw std::runtime_error("job " + st->name + ": " + st->error);
        return Since(t0);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  };
  struct Run {
    double preview = 0, final = 0;  // seconds: submit to the preview's DONE; the final's own
    int segments = 0, segments_rendered = 0, chunks = 0, chunks_encoded = 0;
  };
  auto render = [&](const std::string& manifest_text) {
    req.manifest_text = manifest_text;
    const auto t0 = Clock::now();
    auto submitted = client.Submit(req);
    if (!submitted.ok()) throw std::runtime_error(submitted.message());
    auto st = client.Status(submitted->job_id);
    if (!st.ok() || st->family.preview_job == 0) throw std::runtime_error("no preview job");
    Run r;
    r.preview = done_after(st->family.preview_job, t0);
    r.final = done_after(submitted->job_id, t0) - r.preview;
    // What the final rendered and encoded, and what it took from earlier jobs (its job log).
    auto log = client.Logs(submitted->job_id);
    if (!log.ok()) throw std::runtime_error(log.message());
    // ("segment S done ...", "chunk C encoded by W", "chunk C reused from job ...").
    for (const std::string& v : *log) {
      const bool reused = v.find("reused from job") != std::string::npos;
      if (v.find("segment ") != std::string::npos && v.find(" done") != std::string::npos) {
        ++r.segments;
        r.segments_rendered += reused ? 0 : 1;
      } else if (v.find("chunk ") != std::string::npos &&
                 (reused || v.find(" encoded by ") != std::string::npos)) {
        ++r.chunks;
        r.chunks_encoded += reused ? 0 : 1;
      }
    }
    return r;
  };
  const Run full = render(text);
  const std::string name =
      fs::path(manifest).filename().string() +
      (options.repeat > 1 ? " played " + std::to_string(options.repeat) + " times" : "") +
      (quick ? " (4 steps)" : "");
  std::cout << "iterate: " << name << ", 2 workers on a running farm: full render " << full.final
            << " s (" << full.segments << " segments, " << full.chunks
            << " chunks); its preview first, " << full.preview << " s after submit ("
            << 100 * full.preview / full.final << "% of the full render, target <= 10%)\n";
  nlohmann::json results = nlohmann::json::array();
  double worst = 0;
  for (size_t k : edits) {
    // Each edit is of the original, so it reuses the full render's results.
    const Run e = render(edited(k));
    worst = std::max(worst, e.final / full.final);
    std::cout << "iterate: keyframe " << k + 1 << " of " << keyframes << " edited: " << e.final
              << " s (" << e.segments_rendered << " of " << e.segments << " segments rendered, "
              << e.chunks_encoded << " of " << e.chunks << " chunks encoded), "
              << 100 * e.final / full.final << "% of the full render (target <= 15%); its preview "
              << e.preview << " s after submit\n";
    results.push_back({{"keyframe", k + 1},
                       {"edit_seconds", e.final},
                       {"edit_fraction", e.final / full.final},
                       {"edit_preview_seconds", e.preview},
                       {"segments_rendered", e.segments_rendered},
                       {"chunks_encoded", e.chunks_encoded}});
  }
  for (auto& w : workers) w.Stop();
  coord.process.Stop();
  return {{"bench", "iterate"},
          {"repeat", options.repeat},
          {"keyframes", keyframes},
          {"full_seconds", full.final},
          {"preview_seconds", full.preview},
          {"preview_fraction", full.preview / full.final},
          {"segments", full.segments},
          {"chunks", full.chunks},
          {"edits", results},
          {"worst_edit_fraction", worst},
          {"target_preview_fraction", 0.10},
          {"target_edit_fraction", 0.15}};
}

}  // namespace segue
