// Songs encoded once (common/media/video.h, EncodeAudioTrack), off the event loop. Encoding a
// song to AAC is most of what assembling a short output costs (two seconds of one core for the
// example's 36 s song), and a job's preview, takes and picks, and an edited resubmission, all
// carry the same song at the same length and offset: the first asks for it at submit, a thread
// encodes it while the segments render, and every assembly copies the packets. A final that waits
// for its preview asks when it is released (ReleaseWaitingJobs), so its encode does not take a
// core from the preview.
//
// Only .mp4 and .mkv outputs (AAC) use tracks: .mov (PCM) and png (WAV) outputs write the song
// as they always did, which costs little. A track that failed, or that was never prepared
// (a job restored after a restart, until one of its family is prepared again), is nullptr and
// assembly encodes the song itself: a track changes when the work is done, never the output.
#pragma once

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "common/media/video.h"
#include "coordinator/jobs.h"

namespace segue {

// The codec of `j`'s song in an .mp4 or .mkv output: a preview's is Opus, several times faster to
// encode than AAC (it is on the way to the first thing a director sees); every other job's AAC.
std::string AudioCodecOf(const Job& j);

class AudioTracks {
 public:
  // `scratch`: a folder for the songs' bytes while they are encoded. Tracks beyond `max_bytes`
  // are dropped, least recently used first.
  explicit AudioTracks(std::string scratch, size_t max_bytes = size_t{256} << 20);
  ~AudioTracks();  // waits for encodes under way
  AudioTracks(const AudioTracks&) = delete;
  AudioTracks& operator=(const AudioTracks&) = delete;

  // Starts encoding `j`'s song (its bytes: `audio`) for `j`'s output, unless a track for the
  // same song, length and offset is made or being made.
  void Prepare(const Job& j, std::string_view audio);
  // `j`'s track: waits for its encode when it is still under way; nullptr when there is none.
  std::shared_ptr<const EncodedAudio> Get(const Job& j);

  size_t tracks() const { return tracks_.size(); }

 private:
  using Made = Result<std::shared_ptr<const EncodedAudio>>;
  struct Track {
    std::shared_future<Made> made;
    uint64_t used = 0;  // a counter: higher is more recent
    size_t bytes = 0;   // once made
  };
  // The key of `j`'s track, or "" when its song's digest is not known here.
  std::string KeyOf(const Job& j) const;
  void Trim();

  std::string scratch_;
  size_t max_bytes_;
  uint64_t clock_ = 0;
  uint64_t files_ = 0;
  std::map<uint64_t, std::string> song_of_;  // a family's audio job -> its song's digest
  std::map<std::string, Track> tracks_;
};

}  // namespace segue
