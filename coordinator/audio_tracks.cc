#include "coordinator/audio_tracks.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "common/util/digest.h"

namespace segue {
namespace {

// Outputs whose song is AAC: what a track holds.
bool TakesTrack(const Job& j) {
  if (!j.has_audio || j.manifest.output_codec == "png") return false;
  const std::string ext = std::filesystem::path(j.output_path).extension().string();
  return ext != ".mov";
}

}  // namespace

std::string AudioCodecOf(const Job& j) {
  return j.family.role == JobRole::kPreview ? "opus" : "aac";
}

AudioTracks::AudioTracks(std::string scratch, size_t max_bytes)
    : scratch_(std::move(scratch)), max_bytes_(max_bytes) {}

AudioTracks::~AudioTracks() {
  for (auto& [key, t] : tracks_)
    if (t.made.valid()) t.made.wait();
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
  auto it = tracks_.find(key);
  if (it != tracks_.end()) {
    it->second.used = ++clock_;
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(scratch_, ec);
  const std::string file =
      scratch_ + "/song-" + std::to_string(++files_) + AudioExtension(j.audio_name);
  {
    std::ofstream out(file, std::ios::binary);
    out.write(audio.data(), static_cast<std::streamsize>(audio.size()));
    if (!out) {
      spdlog::warn("job {}: cannot write its song for encoding ({}); assembly encodes it", j.id,
                   file);
      return;
    }
  }
  // The thread touches only the file it is given, and what it returns.
  const int64_t frames = j.manifest.frames;
  const Rational fps = j.manifest.fps;
  const double offset = j.manifest.audio_offset_seconds;
  const std::string codec = AudioCodecOf(j);
  Track t;
  t.made = std::async(std::launch::async, [file, frames, fps, offset, codec]() -> Made {
             Made made = EncodeAudioTrack(file, frames, fps, offset, codec);
             std::error_code rm;
             std::filesystem::remove(file, rm);
             return made;
           }).share();
  t.used = ++clock_;
  tracks_.emplace(key, std::move(t));
  Trim();
}

std::shared_ptr<const EncodedAudio> AudioTracks::Get(const Job& j) {
  if (!TakesTrack(j)) return nullptr;
  auto it = tracks_.find(KeyOf(j));
  if (it == tracks_.end()) return nullptr;
  Track& t = it->second;
  t.used = ++clock_;
  const Made& made = t.made.get();  // at once, unless the encode is still under way
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
  for (const auto& [key, t] : tracks_) total += t.bytes;
  while (total > max_bytes_ && tracks_.size() > 1) {
    auto oldest = tracks_.begin();
    for (auto it = tracks_.begin(); it != tracks_.end(); ++it)
      if (it->second.bytes > 0 &&
          (oldest->second.bytes == 0 || it->second.used < oldest->second.used))
        oldest = it;
    if (oldest->second.bytes == 0) break;  // only encodes under way: nothing to drop
    total -= oldest->second.bytes;
    tracks_.erase(oldest);
  }
}

}  // namespace segue
