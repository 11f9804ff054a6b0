// Songs encoded once (common/media/video.h, EncodeAudioTrack), off the event loop. Encoding a
// song to AAC is most of what assembling a short output costs (two seconds of one core for the
// example's 36 s song), and a job's preview, takes and picks, and an edited resubmission, all
// carry the same song at the same length and offset: the first asks for it when it is submitted,
// one encoder thread makes it while the segments render, and every assembly copies the packets.
// A final that waits for its preview asks when it is released (ReleaseWaitingJobs), so its encode
// does not take a core from the preview.
//
// Only .mp4 and .mkv outputs use tracks: .mov (PCM) and png (WAV) outputs write the song as they
// always did, which costs little. A track that failed, that was never prepared (a job restored
// after a restart, until one of its family is prepared again), or that is still waiting its
// turn when its job assembles, is nullptr, and assembly encodes the song itself: a track changes
// when the work is done, never the output.
//
// Bounded: one thread encodes, at most kMaxWaiting songs wait for it (more are not prepared),
// and tracks beyond max_bytes are dropped, least recently used first.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "common/media/video.h"
#include "coordinator/jobs.h"

namespace segue {

// The codec of `j`'s song in an .mp4 or .mkv output: a preview's is Opus, several times faster to
// encode than AAC (it is on the way to the first thing a director sees); every other job's AAC.
std::string AudioCodecOf(const Job& j);

class AudioTracks {
 public:
  static constexpr size_t kMaxWaiting = 8;

  // `scratch`: a folder for the songs' bytes while they wait and are encoded.
  explicit AudioTracks(std::string scratch, size_t max_bytes = size_t{256} << 20);
  ~AudioTracks();  // finishes the encode under way; the waiting ones are dropped
  AudioTracks(const AudioTracks&) = delete;
  AudioTracks& operator=(const AudioTracks&) = delete;

  // Queues `j`'s song (its bytes: `audio`) for encoding for `j`'s output, unless a track for the
  // same song, length, offset and codec is made or queued.
  void Prepare(const Job& j, std::string_view audio);
  // `j`'s track, waiting for its encode when it is under way; nullptr when there is none (a
  // track still waiting its turn is dropped: the assembly asking for it encodes the song sooner).
  std::shared_ptr<const EncodedAudio> Get(const Job& j);

 private:
  using Made = Result<std::shared_ptr<const EncodedAudio>>;
  // A song waiting for, or under, the encoder thread. REQUIRES: mu_ held to touch `queue_`.
  struct Encode {
    std::string key, file, codec;
    int64_t frames = 0;
    Rational fps;
    double offset = 0;
    std::promise<Made> promise;
  };
  struct Track {
    std::shared_future<Made> made;
    uint64_t used = 0;  // a counter: higher is more recent
    size_t bytes = 0;   // once made
  };
  // The key of `j`'s track, or "" when its song's digest is not known here.
  std::string KeyOf(const Job& j) const;
  void Trim();
  void Run();  // the encoder thread

  // Event loop only.
  std::string scratch_;
  size_t max_bytes_;
  uint64_t clock_ = 0;
  uint64_t files_ = 0;
  std::map<uint64_t, std::string> song_of_;  // a family's audio job -> its song's digest
  std::map<std::string, Track> tracks_;

  // Shared with the encoder thread.
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Encode>> queue_;  // GUARDED_BY(mu_)
  bool stop_ = false;                          // GUARDED_BY(mu_)
  std::thread thread_;                         // started at the first Prepare
};

}  // namespace segue
