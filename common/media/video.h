// Video encoding and final assembly with libavcodec/libavformat.
//
// A chunk is a run of frames encoded by one encoder into a self-contained MP4 that starts on a
// key frame. The output is the chunks' packets concatenated without re-encoding (stream copy),
// the song muxed beside them (trimmed or padded with silence to the picture's exact length),
// written to a temporary file and renamed into place: a reader never sees half an output.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/manifest/manifest.h"
#include "common/status/status.h"

namespace segue {

// Output codecs (manifest `output.codec`):
//   h264    libx264, 8-bit 4:2:0, crf + preset; chunks and outputs in MP4 (or .mov/.mkv outputs)
//   hevc    libx265, 8-bit 4:2:0, crf + preset, tagged hvc1
//   prores  prores_ks, 10-bit 4:2:2, profile proxy|lt|standard|hq; .mov
//   png     lossless RGB images; the output is a folder of frame_000000.png ... (+ audio.wav)
// Video codecs carry BT.709 colour tags (primaries, transfer, matrix; limited range).
struct VideoSettings {
  int width = 0;
  int height = 0;
  Rational fps;
  std::string codec = "h264";
  int crf = 18;                   // h264, hevc
  std::string preset = "medium";  // h264, hevc
  std::string profile = "hq";     // prores
  int threads = 1;  // encoder threads; one per worker core keeps workers from fighting
};

// True for the codec names above.
bool KnownCodec(const std::string& codec);

// The file extension of a chunk of `codec` (its container): ".mp4" or ".mov".
std::string ChunkExtension(const std::string& codec);

// Encodes `frames` RGB24 frames (each height*width*3 bytes, rows top to bottom) to `path`, a
// self-contained chunk whose first frame is a key frame. `path` ends in ChunkExtension(codec).
Status EncodeChunkFile(const std::string& path, const VideoSettings& settings, const uint8_t* rgb,
                       int64_t frames);

// An output's AAC audio track, encoded once (EncodeAudioTrack) so that every output of the same
// song, length and offset (a job's preview, its takes, picks, an edit) copies its packets instead
// of encoding the song again: encoding is most of what assembling a short video costs. Immutable
// once made, so threads may share it.
struct EncodedAudio {
  struct Packet {
    std::string data;
    int64_t pts = 0, dts = 0, duration = 0;  // in 1/48000 s
    int flags = 0;
  };
  std::string codec = "aac";  // AssembleSpec::audio_codec
  std::string extradata;      // the encoder's global header (AudioSpecificConfig, OpusHead)
  int frame_size = 0, initial_padding = 0;
  int64_t bit_rate = 0;
  int64_t frames = 0;  // the picture's length, fps and the song's offset it was made for
  Rational fps;
  double offset_seconds = 0;
  std::vector<Packet> packets;
  size_t bytes() const;
};

// Decodes `audio_file` and encodes it as AssembleOutput would for an .mp4 or .mkv output of
// `frames` at `fps` with the song shifted by `offset_seconds`, in `codec` ("aac" or "opus").
// Thread-safe (it touches nothing but the file).
Result<std::shared_ptr<const EncodedAudio>> EncodeAudioTrack(const std::string& audio_file,
                                                             int64_t frames, Rational fps,
                                                             double offset_seconds,
                                                             const std::string& codec = "aac");

struct AssembleSpec {
  std::vector<std::string> chunk_files;  // in order; chunk k starts at frame chunk_starts[k]
  std::vector<int64_t> chunk_starts;
  int64_t frames = 0;  // N
  Rational fps;
  std::string codec = "h264";
  std::string audio_file;           // empty: no audio
  double audio_offset_seconds = 0;  // > 0: the song starts this late; < 0: its start is cut
  // An .mp4 or .mkv output's song: "aac" (192 kb/s), or "opus" (128 kb/s, libopus: a preview's,
  // several times faster to encode). .mov outputs and png folders always have PCM.
  std::string audio_codec = "aac";
  // An .mp4 or .mkv output: the song already encoded for this frames, fps, offset and codec
  // (else it is encoded from audio_file, as it is for .mov and png outputs).
  std::shared_ptr<const EncodedAudio> audio_track;
  std::string output_path;  // a file, or for png a folder; written atomically
  bool replace = false;     // replace an existing output (else: an error)
};

// Concatenates the chunks' packets (no re-encoding) with the audio, trimmed or padded with silence
// to exactly frames / fps seconds: AAC in MP4 and Matroska, PCM in MOV, audio.wav beside png
// frames. Writes a temporary sibling and renames it into place.
Status AssembleOutput(const AssembleSpec& spec);

// Decodes the first video stream of `path` and calls on_frame(index, rgb, width, height) for
// every frame in presentation order (RGB24, rows top to bottom). A folder is read as the png
// output's frame_%06d.png sequence.
Status ReadVideoFrames(const std::string& path,
                       const std::function<void(int64_t, const uint8_t*, int, int)>& on_frame);

// The number of video frames (packets of its first stream) in a chunk container held in memory
// (an encode result), without decoding; an error for bytes FFmpeg cannot read as a container
// with one video stream.
Result<int64_t> CountChunkFrames(std::string_view container);

// Writes one RGB24 picture as a PNG file (a temporary sibling, renamed into place).
Status WritePng(const std::string& path, const uint8_t* rgb, int width, int height);

// One RGB24 picture as a small JPEG (a segment's thumbnail): scaled to at most `max_width`
// pixels wide, its aspect kept.
Result<std::string> EncodeThumbnailJpeg(const uint8_t* rgb, int width, int height,
                                        int max_width = 192);
// Whether `bytes` look like a JPEG file (its start and end markers).
bool LooksLikeJpeg(std::string_view bytes);

// A picture as RGB24, rows top to bottom.
struct RgbPicture {
  std::vector<uint8_t> rgb;  // width * height * 3 bytes
  int width = 0, height = 0;
};
// Decodes a JPEG held in memory (a segment's thumbnail, as a peer sent it): an error, never a
// crash, for bytes that are not one, or one larger than kMaxJpegSide pixels either way (refused
// from its header, before anything its size is allocated).
constexpr int kMaxJpegSide = 4096;
Result<RgbPicture> DecodeJpeg(std::string_view jpeg);

}  // namespace segue
