#include "coordinator/audio_tracks.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/util/digest.h"

namespace segue {
namespace {

// Outputs whose song is AAC or Opus: what a track holds.
bool TakesTrack(const Job& j) {
  if (!j.has_audio || j.manifest.output_codec == "png") return false;
  return std::filesystem::path(j.output_path).extension().string() != ".mov";
}

}  // namespace

std::string AudioCodecOf(const Job& j) {
  return j.family.role == JobRole::kPreview ? "opus" : "aac";
}

AudioTracks::AudioTracks(std::string scratch, size_t max_bytes)
    : scratch_(std::move(scratch)), max_bytes_(max_bytes) {}

AudioTracks::~AudioTracks() {
  std::deque<std::unique_ptr<Encode>> dropped;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& e : dropped) {
    e->promise.set_value(Made::Error("the coordinator stopped"));
    std::error_code rm;
    std::filesystem::remove(e->file, rm);
  }
}

std::string AudioTracks::KeyOf(const Job& j) const {
  auto song = song_of_.find(j.AudioJob());
  if (song == song_of_.end()) return "";
  const Manifest& m = j.manifest;
  char offset[32];
  std::snprintf(offset, sizeof offset, "%.9g", m.audio_offset_seconds);
  return song->second + "/" + std::to_string(m.frames) + "/" + m.fps.ToString() + "/" + offset +
         "/" + AudioCodecOf(j);
}

void AudioTracks::Prepare(const Job& j, std::string_view audio) {
  if (!TakesTrack(j)) return;
  song_of_[j.AudioJob()] = DigestBytes(audio);
  const std::string key = KeyOf(j);
  if (auto it = tracks_.find(key); it != tracks_.end()) {
    it->second.used = ++clock_;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxWaiting) return;  // its assembly encodes it
  }
  std::error_code ec;
  std::filesystem::create_directories(scratch_, ec);
  auto e = std::make_unique<Encode>();
  e->key = key;
  e->file = scratch_ + "/song-" + std::to_string(++files_) + AudioExtension(j.audio_name);
  e->codec = AudioCodecOf(j);
  e->frames = j.manifest.frames;
  e->fps = j.manifest.fps;
  e->offset = j.manifest.audio_offset_seconds;
  {
    std::ofstream out(e->file, std::ios::binary);
    out.write(audio.data(), static_cast<std::streamsize>(audio.size()));
    if (!out) {
      spdlog::warn("job {}: cannot write its song for encoding ({}); assembly encodes it", j.id,
                   e->file);
      return;
    }
  }
  Track t;
  t.made = e->promise.get_future().share();
  t.used = ++clock_;
  tracks_.emplace(key, std::move(t));
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(e));
  }
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
  wake_.notify_one();
  Trim();
}

void AudioTracks::Run() {
  while (true) {
    std::unique_ptr<Encode> e;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      e = std::move(queue_.front());
      queue_.pop_front();
    }
    // Outside the lock: the event loop may queue, or drop what waits, meanwhile.
    Made made = Made::Error("not encoded");
    try {
      made = EncodeAudioTrack(e->file, e->frames, e->fps, e->offset, e->codec);
    } catch (const std::exception& x) {  // bad_alloc for a song too large: assembly tries itself
      made = Made::Error(std::string("encoding failed: ") + x.what());
    }
    std::error_code rm;
    std::filesystem::remove(e->file, rm);
    e->promise.set_value(std::move(made));
  }
}

std::shared_ptr<const EncodedAudio> AudioTracks::Get(const Job& j) {
  if (!TakesTrack(j)) return nullptr;
  const std::string key = KeyOf(j);
  auto it = tracks_.find(key);
  if (it == tracks_.end()) return nullptr;
  Track& t = it->second;
  if (t.made.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    // Still waiting its turn: dropped, and this assembly encodes the song now rather than wait
    // for the songs before it.
    std::unique_ptr<Encode> waiting;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto q = queue_.begin(); q != queue_.end(); ++q) {
        if ((*q)->key != key) continue;
        waiting = std::move(*q);
        queue_.erase(q);
        break;
      }
    }
    if (waiting) {
      waiting->promise.set_value(Made::Error("not encoded ahead: its assembly came first"));
      std::error_code rm;
      std::filesystem::remove(waiting->file, rm);
      tracks_.erase(it);
      return nullptr;
    }
  }
  t.used = ++clock_;
  const Made& made = t.made.get();  // under way: its assembly waits for it
  if (!made.ok()) {
    spdlog::warn("job {}: encoding its song ahead failed ({}); assembly encodes it", j.id,
                 made.message());
    tracks_.erase(it);
    return nullptr;
  }
  t.bytes = (*made)->bytes();
  std::shared_ptr<const EncodedAudio> track = *made;
  Trim();
  return track;
}

void AudioTracks::Trim() {
  size_t total = 0;
  for (auto it = tracks_.begin(); it != tracks_.end();) {
    Track& t = it->second;
    // Made since it was last looked at (a track no assembly asked for counts too).
    if (t.bytes == 0 && t.made.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
      const Made& made = t.made.get();
      if (!made.ok()) {
        it = tracks_.erase(it);
        continue;
      }
      t.bytes = std::max<size_t>(1, (*made)->bytes());
    }
    total += t.bytes;
    ++it;
  }
  while (total > max_bytes_) {
    auto oldest = tracks_.end();
    for (auto it = tracks_.begin(); it != tracks_.end(); ++it)
      if (it->second.bytes > 0 &&
          (oldest == tracks_.end() || it->second.used < oldest->second.used))
        oldest = it;
    if (oldest == tracks_.end()) break;  // only encodes waiting or under way
    total -= oldest->second.bytes;
    tracks_.erase(oldest);
  }
}

}  // namespace segue
