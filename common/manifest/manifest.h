// The manifest: what a studio submits. One YAML file describing the picture, the timeline of
// prompts, the camera, the model, how to cut the video into segments, and where the output goes.
//
// Parsing is strict: every error names FILE:LINE:COLUMN and the dotted field path, so that a
// pipeline TD can fix a manifest without reading our source. docs/MANIFEST.md lists every field
// with its default and limits; the limits live in ManifestLimits below.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status/status.h"

namespace segue {

struct Rational {
  int64_t num = 24;
  int64_t den = 1;
  double value() const { return static_cast<double>(num) / static_cast<double>(den); }
  std::string ToString() const;  // "24" or "24000/1001"
};

// One entry of the timeline, already converted to frames.
struct Keyframe {
  int64_t frame = 0;              // first frame where this prompt is fully (or starts to be) active
  int64_t transition_frames = 0;  // crossfade from the previous prompt over [frame, frame+T)
  std::string prompt;
  // Takes (docs/MANIFEST.md, "Takes"): how many versions of this keyframe's section the farm
  // renders (1: just the one in the output), and which of them the output uses. A section is
  // the frames from this keyframe to the next; take t > 1 re-seeds the segments whose middle
  // frame is in it (common/plan/plan.h, TakeSeed).
  int takes = 1;
  int take = 1;
};

// `preview:`: a cheaper render of the whole video, delivered first (docs/MANIFEST.md, "Preview").
struct PreviewSpec {
  int steps = 0;       // sampler steps; the manifest's default: a quarter of model.steps
  double scale = 0.5;  // of width and height, rounded down to the model's spatial multiple
};

// How a long video's segments relate (docs/MANIFEST.md, `segments.strategy`).
enum class Strategy {
  kIndependent,  // rendered in parallel, overlaps blended at stitch time
  kChained,      // each segment continues the one before it (its overlap follows the guide)
  kCodenoise,    // all segments denoise together as a gang, overlaps averaged after every step
};
// "independent", "chained", "codenoise": how manifests and messages write it.
const char* StrategyName(Strategy s);
// The strategy named `name`, or nullopt.
std::optional<Strategy> ParseStrategy(const std::string& name);

// Where a field was written: 1-based line and column.
struct SourceLocation {
  int line = 1;
  int column = 1;
};

struct Manifest {
  int version = 1;
  std::string name;

  int width = 0;
  int height = 0;
  Rational fps;
  int64_t frames = 0;  // N: the exact number of frames of the output

  std::string model_name = "zoom";
  int steps = 30;
  std::string sampler = "euler";  // euler, unipc (flow matching) | ddim
  double shift = 1.0;             // euler: timestep shift
  // euler, `model.shift: auto`: the shift computed from each call's token count, as LTX-Video
  // does (common/model/sampler.h, DynamicShiftMu).
  bool shift_from_tokens = false;
  // euler, optional: the noise levels of the steps, decreasing in (0, 1] (a 0 ends them); empty:
  // `steps` levels evenly spaced from 1. The shift applies to them as diffusers applies it.
  std::vector<double> sigmas;
  double eta = 0.0;             // ddim: 0 deterministic, > 0 stochastic
  double guidance = 1.0;        // classifier-free guidance scale; 1 = off
  std::string negative_prompt;  // the unconditional prompt of guidance

  int segment_length = 48;
  int segment_overlap = 12;
  Strategy strategy = Strategy::kIndependent;
  std::string blend = "linear";  // linear | cosine | none
  // Lengths and overlaps that do not fit the model's latent frames (common/plan/timeline.h):
  // false ("exact"), refused; true ("nearest"), rounded to the nearest that fit.
  bool fit_nearest = false;

  std::string camera_motion = "zoom-in";  // zoom-in | zoom-out | pan-left | pan-right | static
  double camera_speed = 0.15;             // zoom: log2 scale per second; pan: widths per second

  uint64_t seed = 0;
  int priority = 50;
  // Free-form strings a pipeline keeps with the job (show, shot, version, artist): shown in every
  // job report, filterable (`segue jobs --meta KEY=VALUE`).
  std::map<std::string, std::string> metadata;
  // http:// URLs told of each change of the job's state (POST, JSON; the coordinator's
  // --webhook URLs are told too). At most kMaxWebhooks.
  std::vector<std::string> webhooks;

  // Step checkpoints, overriding the coordinator's defaults (--checkpoint-steps/-seconds) when
  // set. 0 turns that trigger off.
  std::optional<int> checkpoint_steps;
  std::optional<int> checkpoint_seconds;

  std::vector<Keyframe> timeline;

  std::optional<PreviewSpec> preview;

  // Audio, optional. `audio_path` is as written in the manifest; `audio_file` is resolved against
  // the manifest's folder (empty when the manifest was parsed without a folder, on the
  // coordinator, which receives the audio's bytes with the job instead).
  std::optional<std::string> audio_path;
  std::string audio_file;
  double audio_offset_seconds = 0;  // > 0: the song starts this late; < 0: its start is cut

  // What a worker must offer to take this job's tasks (all optional).
  std::string require_device;   // "cpu" or "cuda" (the kind, without an index); empty: any
  uint64_t require_memory = 0;  // bytes; 0: any
  std::vector<std::string> require_tags;

  std::string output_path;            // as written (relative); resolved by whoever writes it
  std::string output_codec = "h264";  // h264 | hevc | prores | png
  int output_crf = 18;                // h264: 18, hevc: 22 unless set
  std::string output_profile = "hq";  // prores: proxy | lt | standard | hq
  bool output_overwrite = false;      // replace an existing output

  // Where the fields that are checked against a model were written (keys "video.width",
  // "video.height", "segments.length", "segments.overlap", "model.name"), and the FILE of
  // messages: checks made after parsing (FitToModel) point at the manifest too.
  std::string source_name;
  std::map<std::string, SourceLocation> locations;
  // "FILE:LINE:COLUMN: FIELD" for a field of `locations` (line 1, column 1 when it was not
  // written: a default).
  std::string Where(const std::string& field) const;
};

// Limits that keep a typo from asking for a year of video or a frame larger than 8K.
struct ManifestLimits {
  static constexpr int kMaxWidth = 7680;
  static constexpr int kMaxHeight = 4320;
  static constexpr double kMaxFps = 240.0;
  static constexpr double kMaxDurationSeconds = 12.0 * 3600.0;
  static constexpr int64_t kMaxFrames = 2'592'000;  // 12 h at 60 fps
  static constexpr int kMaxSteps = 1000;
  static constexpr int kMaxSegmentLength = 1024;
  static constexpr int kMaxTimelineEntries = 10'000;
  static constexpr size_t kMaxPromptBytes = 4096;
  static constexpr size_t kMaxMetadataEntries = 64;
  static constexpr size_t kMaxWebhooks = 8;
  // Takes: at most this many of one section, and this many jobs derived from one manifest in
  // all (every take beyond the first, and the preview): each is a job of its own.
  static constexpr int kMaxTakes = 16;
  static constexpr int kMaxDerivedJobs = 32;
  static constexpr size_t kMaxMetadataKeyBytes = 64;
  static constexpr size_t kMaxMetadataValueBytes = 1024;
  static constexpr size_t kMaxManifestBytes = 4 << 20;
  // The song travels in the Submit message (limit 512 MiB): 256 MiB is 23 minutes of 96 kHz
  // 24-bit stereo WAV.
  static constexpr uintmax_t kMaxAudioBytes = uintmax_t{256} << 20;
};

struct ManifestParseOptions {
  // Folder that relative paths are resolved against; empty: do not touch the file system (the
  // coordinator's re-validation, where the audio arrives as bytes).
  std::string base_dir;
  // Check that the audio file exists and decodes (needs FFmpeg). Only when base_dir is set.
  bool check_audio = true;
};

// Parses and validates. `display_name` is the FILE of "FILE:LINE:COLUMN:" in messages.
Result<Manifest> ParseManifest(const std::string& text, const std::string& display_name,
                               const ManifestParseOptions& options);

// Reads `path`, then ParseManifest with base_dir = the file's folder.
Result<Manifest> LoadManifestFile(const std::string& path, bool check_audio = true);

// Durations as the manifest writes them: 40, 40.5, "40s", "1500ms", "2m", "1m30s",
// "00:00:40.000", "00:40". Returns seconds, or an error message (without location).
Result<double> ParseDuration(const std::string& text);

// Sizes: 8589934592, "8GiB", "512MiB", "2GB" (decimal units), "1.5GiB". Returns bytes.
Result<uint64_t> ParseBytes(const std::string& text);

// Frames per second: 24, 29.97, "24000/1001".
Result<Rational> ParseFps(const std::string& text);

}  // namespace segue
