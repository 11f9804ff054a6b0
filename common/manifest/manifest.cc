#include "common/manifest/manifest.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <regex>
#include <set>
#include <sstream>

#include "common/media/audio.h"
#include "common/net/url.h"

namespace segue {
namespace {

namespace fs = std::filesystem;

// Thrown inside this file only; ParseManifest turns it into a Status.
struct ManifestError {
  YAML::Mark mark;
  std::string field;
  std::string message;
};

[[noreturn]] void Fail(const YAML::Mark& mark, const std::string& field, const std::string& msg) {
  throw ManifestError{mark, field, msg};
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::string Sub(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

std::string Describe(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    default:
      return "'" + n.Scalar() + "'";
  }
}

// A YAML mapping whose keys were checked: no duplicates, no unknown keys.
class Map {
 public:
  Map(const YAML::Node& node, std::string path, const std::vector<std::string>& allowed)
      : node_(node), path_(std::move(path)) {
    if (!node.IsMap()) {
      Fail(node.Mark(), path_.empty() ? "manifest" : path_,
           "expected a mapping, got " + Describe(node));
    }
    for (YAML::const_iterator it = node.begin(); it != node.end(); ++it) {
      const std::pair<YAML::Node, YAML::Node> kv = *it;  // handles, cheap to copy
      const YAML::Node& key = kv.first;
      if (!key.IsScalar()) Fail(key.Mark(), path_, "keys must be plain names");
      const std::string k = key.Scalar();
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
        std::string best;
        size_t best_d = 3;  // suggest only close names
        for (const auto& a : allowed) {
          size_t d = EditDistance(k, a);
          if (d < best_d) best_d = d, best = a;
        }
        std::string msg = "unknown key '" + k + "'";
        msg += best.empty() ? " (known keys: " + Join(allowed) + ")"
                            : "; did you mean '" + best + "'?";
        Fail(key.Mark(), Sub(path_, k), msg);
      }
      if (values_.count(k)) Fail(key.Mark(), Sub(path_, k), "duplicate key '" + k + "'");
      values_.emplace(k, kv.second);
    }
  }

  bool Has(const std::string& key) const { return values_.count(key) > 0; }
  const YAML::Node& Get(const std::string& key) const {
    auto it = values_.find(key);
    if (it == values_.end())
      Fail(node_.Mark(), Sub(path_, key), "missing required field '" + key + "'");
    return it->second;
  }
  std::string Field(const std::string& key) const { return Sub(path_, key); }
  YAML::Mark Mark() const { return node_.Mark(); }

 private:
  YAML::Node node_;
  std::string path_;
  std::map<std::string, YAML::Node> values_;
};

std::string Scalar(const YAML::Node& n, const std::string& field, const char* what) {
  if (!n.IsScalar())
    Fail(n.Mark(), field, std::string("expected ") + what + ", got " + Describe(n));
  return n.Scalar();
}

int64_t Integer(const YAML::Node& n, const std::string& field) {
  std::string s = Scalar(n, field, "an integer");
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec == std::errc::result_out_of_range && p == s.data() + s.size())
    Fail(n.Mark(), field, "'" + s + "' is far outside the allowed range");
  if (ec != std::errc() || p != s.data() + s.size()) {
    Fail(n.Mark(), field, "expected an integer, got '" + s + "'");
  }
  return v;
}

uint64_t Unsigned(const YAML::Node& n, const std::string& field) {
  std::string s = Scalar(n, field, "a non-negative integer");
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    Fail(n.Mark(), field, "expected a non-negative integer below 2^64, got '" + s + "'");
  }
  return v;
}

bool Bool(const YAML::Node& n, const std::string& field) {
  std::string s = Scalar(n, field, "true or false");
  if (s == "true") return true;
  if (s == "false") return false;
  Fail(n.Mark(), field, "expected true or false, got '" + s + "'");
  return false;
}

double Number(const YAML::Node& n, const std::string& field) {
  std::string s = Scalar(n, field, "a number");
  double v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) {
    Fail(n.Mark(), field, "expected a number, got '" + s + "'");
  }
  return v;
}

int64_t Ranged(const YAML::Node& n, const std::string& field, int64_t lo, int64_t hi,
               const std::string& unit = "") {
  int64_t v = Integer(n, field);
  if (v < lo || v > hi) {
    std::string u = unit.empty() ? "" : " " + unit;
    if (lo == 1 && v <= 0) Fail(n.Mark(), field, "must be positive, got " + std::to_string(v));
    Fail(n.Mark(), field,
         "must be between " + std::to_string(lo) + " and " + std::to_string(hi) + u + ", got " +
             std::to_string(v));
  }
  return v;
}

std::string OneOf(const YAML::Node& n, const std::string& field,
                  const std::vector<std::string>& allowed, const std::string& what) {
  std::string s = Scalar(n, field, "a name");
  if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
    Fail(n.Mark(), field,
         "unsupported " + what + " '" + s + "' (supported: " + Join(allowed) + ")");
  }
  return s;
}

double Seconds(const YAML::Node& n, const std::string& field) {
  std::string s = Scalar(n, field, "a time");
  auto d = ParseDuration(s);
  if (!d.ok()) Fail(n.Mark(), field, d.message());
  return *d;
}

// What is wrong with `s` as a prompt's text after YAML's escapes are decoded ("\0", "\uD800"
// make bytes the file itself could not hold), or nullptr: NUL and control characters other
// than tab and newline, and anything that is not strict UTF-8 (overlong forms, surrogates,
// code points past U+10FFFF).
const char* TextProblem(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch == 0) return "holds a NUL character";
    if ((ch < 0x20 && ch != '\t' && ch != '\n') || ch == 0x7f) return "holds a control character";
    if (ch < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((ch & 0xE0) == 0xC0)
      len = 2, cp = ch & 0x1F, min = 0x80;
    else if ((ch & 0xF0) == 0xE0)
      len = 3, cp = ch & 0x0F, min = 0x800;
    else if ((ch & 0xF8) == 0xF0)
      len = 4, cp = ch & 0x07, min = 0x10000;
    else
      return "is not valid UTF-8";
    if (i + len > s.size()) return "is not valid UTF-8";
    for (size_t k = 1; k < len; ++k) {
      const unsigned char c = static_cast<unsigned char>(s[i + k]);
      if ((c & 0xC0) != 0x80) return "is not valid UTF-8";
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return "is not valid UTF-8";
    i += len;
  }
  return nullptr;
}

// Catches bytes that are not text before yaml-cpp sees them; returns "" when fine.
bool FindBinary(const std::string& text, size_t* line, size_t* column) {
  size_t l = 1, c = 1;
  for (size_t i = 0; i < text.size();) {
    unsigned char ch = static_cast<unsigned char>(text[i]);
    size_t len = 1;
    bool bad = false;
    if (ch == 0 || (ch < 0x20 && ch != '\n' && ch != '\r' && ch != '\t') || ch == 0x7f) {
      bad = true;
    } else if (ch >= 0x80) {
      if ((ch & 0xE0) == 0xC0)
        len = 2;
      else if ((ch & 0xF0) == 0xE0)
        len = 3;
      else if ((ch & 0xF8) == 0xF0)
        len = 4;
      else
        bad = true;
      if (!bad && i + len > text.size()) bad = true;
      for (size_t k = 1; !bad && k < len; ++k) {
        if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) bad = true;
      }
    }
    if (bad) {
      *line = l, *column = c;
      return true;
    }
    if (ch == '\n')
      ++l, c = 1;
    else
      ++c;
    i += len;
  }
  return false;
}

bool ValidModelName(const std::string& s) {
  if (s.empty() || s.size() > 128 || s[0] == '.') return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return true;
}

Manifest Build(const YAML::Node& root, const ManifestParseOptions& options,
               const std::string& display_name) {
  Manifest m;
  m.source_name = display_name;
  auto locate = [&m](const std::string& field, const YAML::Node& n) {
    const YAML::Mark mark = n.Mark();
    if (!mark.is_null()) m.locations[field] = SourceLocation{mark.line + 1, mark.column + 1};
  };
  if (root.IsNull()) Fail(root.Mark(), "manifest", "the manifest is empty");
  Map top(root, "",
          {"version", "name", "video", "model", "segments", "camera", "seed", "priority",
           "timeline", "audio", "output", "negative_prompt", "requirements", "checkpoint",
           "metadata", "webhooks", "preview"});

  const YAML::Node& version = top.Get("version");
  int64_t v = Integer(version, "version");
  if (v != 1) {
    Fail(version.Mark(), "version",
         "unsupported manifest version " + std::to_string(v) + " (this segue reads version 1)");
  }
  m.version = 1;

  if (top.Has("name")) {
    m.name = Scalar(top.Get("name"), "name", "a name");
    if (m.name.empty() || m.name.size() > 200)
      Fail(top.Get("name").Mark(), "name", "must be 1 to 200 characters");
  } else {
    m.name = fs::path(display_name).stem().string();
  }

  // video
  Map video(top.Get("video"), "video", {"width", "height", "fps", "duration", "frames"});
  for (const char* dim : {"width", "height"}) {
    const YAML::Node& n = video.Get(dim);
    int64_t limit =
        std::string(dim) == "width" ? ManifestLimits::kMaxWidth : ManifestLimits::kMaxHeight;
    int64_t value = Ranged(n, video.Field(dim), 1, limit, "pixels (8K)");
    if (value % 8 != 0) {
      Fail(n.Mark(), video.Field(dim),
           "must be a multiple of 8, got " + std::to_string(value) +
               " (nearest: " + std::to_string(std::max<int64_t>(8, (value + 4) / 8 * 8)) + ")");
    }
    (std::string(dim) == "width" ? m.width : m.height) = static_cast<int>(value);
    locate(video.Field(dim), n);
  }
  {
    const YAML::Node& n = video.Get("fps");
    auto fps = ParseFps(Scalar(n, video.Field("fps"), "a frame rate"));
    if (!fps.ok()) Fail(n.Mark(), video.Field("fps"), fps.message());
    m.fps = *fps;
  }
  if (video.Has("duration") && video.Has("frames")) {
    Fail(video.Get("frames").Mark(), video.Field("frames"),
         "give either duration or frames, not both");
  }
  if (video.Has("frames")) {
    m.frames = Ranged(video.Get("frames"), video.Field("frames"), 1, ManifestLimits::kMaxFrames);
  } else if (video.Has("duration")) {
    const YAML::Node& n = video.Get("duration");
    double seconds = Seconds(n, video.Field("duration"));
    if (seconds <= 0) Fail(n.Mark(), video.Field("duration"), "must be positive");
    if (seconds > ManifestLimits::kMaxDurationSeconds) {
      Fail(n.Mark(), video.Field("duration"), "longer than the limit of 12 hours");
    }
    m.frames = std::llround(seconds * m.fps.value());
    if (m.frames < 1) Fail(n.Mark(), video.Field("duration"), "shorter than one frame");
    if (m.frames > ManifestLimits::kMaxFrames) {
      Fail(n.Mark(), video.Field("duration"),
           "is " + std::to_string(m.frames) + " frames, above the limit of " +
               std::to_string(ManifestLimits::kMaxFrames));
    }
  } else {
    Fail(video.Mark(), video.Field("duration"), "missing required field 'duration' (or 'frames')");
  }

  // model
  if (top.Has("model")) {
    Map model(top.Get("model"), "model",
              {"name", "steps", "sampler", "shift", "eta", "guidance", "sigmas"});
    if (model.Has("name")) {
      m.model_name = Scalar(model.Get("name"), model.Field("name"), "a model name");
      locate(model.Field("name"), model.Get("name"));
      if (!ValidModelName(m.model_name)) {
        Fail(model.Get("name").Mark(), model.Field("name"),
             "model names use letters, digits, '-', '_' and '.', got '" + m.model_name + "'");
      }
    }
    if (model.Has("steps")) {
      m.steps = static_cast<int>(
          Ranged(model.Get("steps"), model.Field("steps"), 1, ManifestLimits::kMaxSteps));
    }
    if (model.Has("sampler")) {
      m.sampler = OneOf(model.Get("sampler"), model.Field("sampler"), {"euler", "ddim", "unipc"},
                        "sampler");
    }
    auto bounded = [&](const char* key, double lo, double hi, double* out) {
      if (!model.Has(key)) return;
      const YAML::Node& n = model.Get(key);
      *out = Number(n, model.Field(key));
      if (*out < lo || *out > hi) {
        std::ostringstream os;
        os << "must be between " << lo << " and " << hi << ", got " << *out;
        Fail(n.Mark(), model.Field(key), os.str());
      }
    };
    if (model.Has("shift") && model.Get("shift").IsScalar() &&
        model.Get("shift").Scalar() == "auto") {
      m.shift_from_tokens = true;
    } else {
      bounded("shift", 0.05, 100.0, &m.shift);
    }
    if (model.Has("sigmas")) {
      const YAML::Node& list = model.Get("sigmas");
      const std::string field = model.Field("sigmas");
      if (!list.IsSequence() || list.size() == 0)
        Fail(list.Mark(), field, "expected a list of noise levels, got " + Describe(list));
      if (list.size() > static_cast<size_t>(ManifestLimits::kMaxSteps))
        Fail(list.Mark(), field, "more than 1000 noise levels");
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string item = field + "[" + std::to_string(i) + "]";
        const double s = Number(list[i], item);
        if (!(s > 0 && s <= 1)) Fail(list[i].Mark(), item, "must be in (0, 1]");
        if (i > 0 && !(s < m.sigmas.back()))
          Fail(list[i].Mark(), item, "noise levels must decrease");
        m.sigmas.push_back(s);
      }
      if (model.Has("steps") && m.steps != static_cast<int>(m.sigmas.size())) {
        Fail(model.Get("steps").Mark(), model.Field("steps"),
             std::to_string(m.steps) + " steps but " + std::to_string(m.sigmas.size()) +
                 " sigmas: give one noise level per step (or leave steps out)");
      }
      m.steps = static_cast<int>(m.sigmas.size());
    }
    bounded("eta", 0.0, 1.0, &m.eta);
    bounded("guidance", 0.0, 30.0, &m.guidance);
    if (model.Has("eta") && m.sampler != "ddim") {
      Fail(model.Get("eta").Mark(), model.Field("eta"), "eta applies to the ddim sampler only");
    }
    if (model.Has("sigmas") && m.sampler == "ddim") {
      Fail(model.Get("sigmas").Mark(), model.Field("sigmas"),
           "sigmas apply to the flow-matching samplers only (euler, unipc)");
    }
    if (model.Has("shift") && m.sampler == "ddim") {
      Fail(model.Get("shift").Mark(), model.Field("shift"),
           "shift applies to the flow-matching samplers only (euler, unipc)");
    }
  }

  // segments
  const YAML::Node* overlap_node = nullptr;
  if (top.Has("segments")) {
    Map seg(top.Get("segments"), "segments", {"length", "overlap", "strategy", "blend", "fit"});
    locate("segments", top.Get("segments"));
    if (seg.Has("length")) {
      m.segment_length = static_cast<int>(Ranged(seg.Get("length"), seg.Field("length"), 1,
                                                 ManifestLimits::kMaxSegmentLength, "frames"));
      locate(seg.Field("length"), seg.Get("length"));
    }
    if (seg.Has("fit")) {
      m.fit_nearest =
          OneOf(seg.Get("fit"), seg.Field("fit"), {"exact", "nearest"}, "fit") == "nearest";
    }
    if (seg.Has("overlap")) {
      overlap_node = &seg.Get("overlap");
      locate(seg.Field("overlap"), *overlap_node);
      m.segment_overlap = static_cast<int>(Integer(*overlap_node, seg.Field("overlap")));
      if (m.segment_overlap < 0)
        Fail(overlap_node->Mark(), seg.Field("overlap"), "must not be negative");
    }
    if (seg.Has("strategy")) {
      m.strategy = *ParseStrategy(OneOf(seg.Get("strategy"), seg.Field("strategy"),
                                        {"independent", "chained", "codenoise"}, "strategy"));
    }
    if (seg.Has("blend")) {
      m.blend = OneOf(seg.Get("blend"), seg.Field("blend"), {"linear", "cosine", "none"}, "blend");
    }
    // Without a length the model's native clip is used: FitToModel checks the overlap then.
    if (seg.Has("length") && m.segment_overlap >= m.segment_length) {
      Fail(overlap_node ? overlap_node->Mark() : seg.Mark(), seg.Field("overlap"),
           "overlap (" + std::to_string(m.segment_overlap) + ") must be smaller than length (" +
               std::to_string(m.segment_length) + ")");
    }
  }

  // camera
  if (top.Has("camera")) {
    Map cam(top.Get("camera"), "camera", {"motion", "speed"});
    if (cam.Has("motion")) {
      m.camera_motion =
          OneOf(cam.Get("motion"), cam.Field("motion"),
                {"zoom-in", "zoom-out", "pan-left", "pan-right", "static"}, "camera motion");
    }
    if (cam.Has("speed")) {
      m.camera_speed = Number(cam.Get("speed"), cam.Field("speed"));
      if (m.camera_speed < 0 || m.camera_speed > 10) {
        Fail(cam.Get("speed").Mark(), cam.Field("speed"), "must be between 0 and 10");
      }
    }
  }

  if (top.Has("negative_prompt")) {
    m.negative_prompt = Scalar(top.Get("negative_prompt"), "negative_prompt", "a prompt");
    if (const char* why = TextProblem(m.negative_prompt))
      Fail(top.Get("negative_prompt").Mark(), "negative_prompt", why);
    if (m.negative_prompt.size() > ManifestLimits::kMaxPromptBytes) {
      Fail(top.Get("negative_prompt").Mark(), "negative_prompt", "longer than 4096 bytes");
    }
  }
  if (top.Has("seed")) m.seed = Unsigned(top.Get("seed"), "seed");
  if (top.Has("metadata")) {
    const YAML::Node& md = top.Get("metadata");
    if (!md.IsMap())
      Fail(md.Mark(), "metadata", "expected a mapping of names to strings, got " + Describe(md));
    if (md.size() > ManifestLimits::kMaxMetadataEntries)
      Fail(md.Mark(), "metadata",
           "more than " + std::to_string(ManifestLimits::kMaxMetadataEntries) + " entries");
    for (const auto& kv : md) {
      if (!kv.first.IsScalar()) Fail(kv.first.Mark(), "metadata", "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const bool plain =
          !key.empty() && key.size() <= ManifestLimits::kMaxMetadataKeyBytes &&
          std::all_of(key.begin(), key.end(), [](char c) {
            return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
          });
      const std::string field = "metadata." + key.substr(0, 64);
      if (!plain)
        Fail(kv.first.Mark(), field,
             "a key is 1 to 64 letters, digits, '_', '-' or '.', got '" + key.substr(0, 64) + "'");
      if (m.metadata.count(key)) Fail(kv.first.Mark(), field, "duplicate key '" + key + "'");
      const std::string value = Scalar(kv.second, field, "a string");
      if (value.size() > ManifestLimits::kMaxMetadataValueBytes)
        Fail(kv.second.Mark(), field, "longer than 1024 bytes");
      if (const char* why = TextProblem(value)) Fail(kv.second.Mark(), field, why);
      m.metadata[key] = value;
    }
  }
  if (top.Has("webhooks")) {
    const YAML::Node& hooks = top.Get("webhooks");
    if (!hooks.IsSequence())
      Fail(hooks.Mark(), "webhooks", "expected a list of http:// URLs, got " + Describe(hooks));
    if (hooks.size() > ManifestLimits::kMaxWebhooks)
      Fail(hooks.Mark(), "webhooks",
           "more than " + std::to_string(ManifestLimits::kMaxWebhooks) + " URLs");
    for (size_t i = 0; i < hooks.size(); ++i) {
      const std::string field = "webhooks[" + std::to_string(i) + "]";
      const std::string url = Scalar(hooks[i], field, "a URL");
      if (auto ok = ParseHttpUrl(url); !ok.ok()) Fail(hooks[i].Mark(), field, ok.message());
      m.webhooks.push_back(url);
    }
  }
  if (top.Has("priority"))
    m.priority = static_cast<int>(Ranged(top.Get("priority"), "priority", 0, 100));

  // checkpoint
  if (top.Has("checkpoint")) {
    Map cp(top.Get("checkpoint"), "checkpoint", {"steps", "seconds"});
    if (cp.Has("steps")) {
      m.checkpoint_steps = static_cast<int>(
          Ranged(cp.Get("steps"), cp.Field("steps"), 0, ManifestLimits::kMaxSteps));
    }
    if (cp.Has("seconds")) {
      const YAML::Node& n = cp.Get("seconds");
      double t = Seconds(n, cp.Field("seconds"));
      if (t < 0 || t > 86400) Fail(n.Mark(), cp.Field("seconds"), "must be between 0s and 24h");
      m.checkpoint_seconds = static_cast<int>(std::llround(t));
    }
  }

  // timeline
  {
    const YAML::Node& tl = top.Get("timeline");
    if (!tl.IsSequence())
      Fail(tl.Mark(), "timeline", "expected a list of {at, prompt}, got " + Describe(tl));
    if (tl.size() == 0) Fail(tl.Mark(), "timeline", "needs at least one entry");
    if (tl.size() > static_cast<size_t>(ManifestLimits::kMaxTimelineEntries)) {
      Fail(tl.Mark(), "timeline", "has more than 10000 entries");
    }
    double video_seconds = static_cast<double>(m.frames) / m.fps.value();
    double prev_at = -1;
    int derived_jobs = top.Has("preview") ? 1 : 0;
    for (size_t i = 0; i < tl.size(); ++i) {
      std::string path = "timeline[" + std::to_string(i) + "]";
      Map e(tl[i], path, {"at", "prompt", "transition", "takes", "take"});
      const YAML::Node& at_node = e.Get("at");
      double at = Seconds(at_node, e.Field("at"));
      if (at < 0) Fail(at_node.Mark(), e.Field("at"), "must be at or after 0s");
      if (at <= prev_at) {
        Fail(at_node.Mark(), e.Field("at"), "entries must be in increasing order of time");
      }
      if (at >= video_seconds) {
        std::ostringstream os;
        os << "is past the end of the video (" << video_seconds << "s)";
        Fail(at_node.Mark(), e.Field("at"), os.str());
      }
      prev_at = at;
      Keyframe k;
      k.frame = std::llround(at * m.fps.value());
      k.prompt = Scalar(e.Get("prompt"), e.Field("prompt"), "a prompt");
      if (const char* why = TextProblem(k.prompt))
        Fail(e.Get("prompt").Mark(), e.Field("prompt"), why);
      if (std::all_of(k.prompt.begin(), k.prompt.end(),
                      [](char c) { return std::isspace(static_cast<unsigned char>(c)); })) {
        Fail(e.Get("prompt").Mark(), e.Field("prompt"), "prompt is empty");
      }
      if (k.prompt.size() > ManifestLimits::kMaxPromptBytes) {
        Fail(e.Get("prompt").Mark(), e.Field("prompt"), "prompt is longer than 4096 bytes");
      }
      if (e.Has("transition")) {
        const YAML::Node& tn = e.Get("transition");
        double t = Seconds(tn, e.Field("transition"));
        if (t < 0) Fail(tn.Mark(), e.Field("transition"), "must not be negative");
        if (i == 0 && t > 0)
          Fail(tn.Mark(), e.Field("transition"), "the first entry has nothing to transition from");
        k.transition_frames = std::llround(t * m.fps.value());
      }
      if (!m.timeline.empty() && k.frame <= m.timeline.back().frame) {
        Fail(at_node.Mark(), e.Field("at"), "falls on the same frame as the previous entry");
      }
      if (e.Has("takes")) {
        k.takes = static_cast<int>(
            Ranged(e.Get("takes"), e.Field("takes"), 1, ManifestLimits::kMaxTakes));
        derived_jobs += k.takes - 1;
        if (derived_jobs > ManifestLimits::kMaxDerivedJobs)
          Fail(e.Get("takes").Mark(), e.Field("takes"),
               "the manifest asks for more than " +
                   std::to_string(ManifestLimits::kMaxDerivedJobs) +
                   " takes beyond the first in all (each is a job); split it into several");
      }
      if (e.Has("take")) {
        k.take =
            static_cast<int>(Ranged(e.Get("take"), e.Field("take"), 1, ManifestLimits::kMaxTakes));
        if (k.takes > 1)
          Fail(e.Get("take").Mark(), e.Field("take"),
               "cannot be written with takes: " + std::to_string(k.takes) +
                   " (takes renders takes 2 to N beside the manifest's own; once one is chosen, "
                   "write take: and drop takes:)");
      }
      m.timeline.push_back(std::move(k));
    }
  }

  // preview
  if (top.Has("preview")) {
    Map pv(top.Get("preview"), "preview", {"steps", "scale"});
    PreviewSpec p;
    p.steps = std::max(1, (m.steps + 2) / 4);
    if (pv.Has("steps")) {
      if (!m.sigmas.empty())
        Fail(pv.Get("steps").Mark(), pv.Field("steps"),
             "cannot be set with model.sigmas (they fix the number of steps); leave it out to "
             "preview at the full steps and a lower scale");
      p.steps = static_cast<int>(
          Ranged(pv.Get("steps"), pv.Field("steps"), 1, ManifestLimits::kMaxSteps));
    } else if (!m.sigmas.empty()) {
      p.steps = m.steps;
    }
    if (pv.Has("scale")) {
      const YAML::Node& n = pv.Get("scale");
      p.scale = Number(n, pv.Field("scale"));
      if (!(p.scale >= 0.0625 && p.scale <= 1.0)) {
        std::ostringstream os;
        os << "must be between 0.0625 and 1, got " << p.scale;
        Fail(n.Mark(), pv.Field("scale"), os.str());
      }
    }
    m.preview = p;
  }

  // requirements
  if (top.Has("requirements")) {
    Map req(top.Get("requirements"), "requirements", {"device", "memory", "tags"});
    if (req.Has("device"))
      m.require_device = OneOf(req.Get("device"), req.Field("device"), {"cpu", "cuda"}, "device");
    if (req.Has("memory")) {
      const YAML::Node& n = req.Get("memory");
      auto bytes = ParseBytes(Scalar(n, req.Field("memory"), "a size"));
      if (!bytes.ok()) Fail(n.Mark(), req.Field("memory"), bytes.message());
      m.require_memory = *bytes;
    }
    if (req.Has("tags")) {
      const YAML::Node& n = req.Get("tags");
      if (!n.IsSequence())
        Fail(n.Mark(), req.Field("tags"), "expected a list of tags, got " + Describe(n));
      for (size_t i = 0; i < n.size(); ++i) {
        const std::string field = req.Field("tags") + "[" + std::to_string(i) + "]";
        std::string tag = Scalar(n[i], field, "a tag");
        if (!ValidModelName(tag))
          Fail(n[i].Mark(), field, "tags use letters, digits, '-', '_' and '.', got '" + tag + "'");
        m.require_tags.push_back(tag);
      }
    }
  }

  // audio
  if (top.Has("audio")) {
    Map audio(top.Get("audio"), "audio", {"path", "offset"});
    if (audio.Has("offset")) {
      const YAML::Node& n = audio.Get("offset");
      std::string text = Scalar(n, audio.Field("offset"), "a time");
      const bool negative = !text.empty() && text[0] == '-';
      auto t = ParseDuration(negative ? text.substr(1) : text);
      if (!t.ok()) Fail(n.Mark(), audio.Field("offset"), t.message());
      if (*t > 3600) Fail(n.Mark(), audio.Field("offset"), "must be within -1h and 1h");
      m.audio_offset_seconds = negative ? -*t : *t;
    }
    const YAML::Node& p = audio.Get("path");
    m.audio_path = Scalar(p, audio.Field("path"), "a file path");
    if (m.audio_path->empty()) Fail(p.Mark(), audio.Field("path"), "path is empty");
    if (!options.base_dir.empty()) {
      fs::path f = fs::path(*m.audio_path);
      if (f.is_relative()) f = fs::path(options.base_dir) / f;
      m.audio_file = f.lexically_normal().string();
      std::error_code ec;
      if (!fs::exists(f, ec)) {
        Fail(p.Mark(), audio.Field("path"),
             "cannot read audio file '" + m.audio_file + "': no such file");
      }
      if (!fs::is_regular_file(f, ec)) {
        Fail(p.Mark(), audio.Field("path"),
             "audio file '" + m.audio_file + "' is not a regular file");
      }
      // Checked before anything reads it whole: it travels in the Submit message.
      const uintmax_t bytes = fs::file_size(f, ec);
      if (!ec && bytes > ManifestLimits::kMaxAudioBytes) {
        Fail(p.Mark(), audio.Field("path"),
             "audio file '" + m.audio_file + "' is " + std::to_string(bytes >> 20) +
                 " MiB, above the limit of " +
                 std::to_string(ManifestLimits::kMaxAudioBytes >> 20) +
                 " MiB (a compressed format such as FLAC or AAC keeps a song well under it)");
      }
      if (options.check_audio) {
        Status s = ProbeAudioFile(m.audio_file);
        if (!s.ok())
          Fail(p.Mark(), audio.Field("path"),
               "cannot read audio file '" + m.audio_file + "': " + s.message());
      }
    }
  }

  // output
  if (top.Has("output")) {
    Map out(top.Get("output"), "output", {"path", "codec", "crf", "profile", "overwrite"});
    if (out.Has("codec")) {
      m.output_codec =
          OneOf(out.Get("codec"), out.Field("codec"), {"h264", "hevc", "prores", "png"}, "codec");
    }
    if (m.output_codec == "hevc") m.output_crf = 22;
    if (out.Has("crf")) {
      if (m.output_codec != "h264" && m.output_codec != "hevc")
        Fail(out.Get("crf").Mark(), out.Field("crf"), "crf applies to h264 and hevc only");
      m.output_crf = static_cast<int>(Ranged(out.Get("crf"), out.Field("crf"), 0, 51));
    }
    if (out.Has("profile")) {
      if (m.output_codec != "prores")
        Fail(out.Get("profile").Mark(), out.Field("profile"), "profile applies to prores only");
      m.output_profile = OneOf(out.Get("profile"), out.Field("profile"),
                               {"proxy", "lt", "standard", "hq"}, "prores profile");
    }
    if (out.Has("overwrite"))
      m.output_overwrite = Bool(out.Get("overwrite"), out.Field("overwrite"));
    if (out.Has("path")) {
      const YAML::Node& n = out.Get("path");
      m.output_path = Scalar(n, out.Field("path"), "a file path");
      if (m.output_path.empty()) Fail(n.Mark(), out.Field("path"), "path is empty");
      if (m.output_path.size() > 1024) Fail(n.Mark(), out.Field("path"), "path is too long");
      std::string ext = fs::path(m.output_path).extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      const bool video_ext = ext == ".mp4" || ext == ".mov" || ext == ".mkv";
      if (m.output_codec == "png" && video_ext)
        Fail(n.Mark(), out.Field("path"),
             "png writes a folder of frames; '" + m.output_path + "' names a video file");
      if (m.output_codec == "prores" && ext != ".mov")
        Fail(n.Mark(), out.Field("path"),
             "prores goes in a .mov file, got '" + m.output_path + "'");
      if ((m.output_codec == "h264" || m.output_codec == "hevc") && !video_ext)
        Fail(n.Mark(), out.Field("path"),
             m.output_codec + " goes in a .mp4, .mov or .mkv file, got '" + m.output_path + "'");
    }
  }
  if (m.output_path.empty()) {
    m.output_path = "out/" + m.name +
                    (m.output_codec == "prores" ? ".mov"
                     : m.output_codec == "png"  ? ""
                                                : ".mp4");
  }
  return m;
}

}  // namespace

const char* StrategyName(Strategy s) {
  switch (s) {
    case Strategy::kIndependent:
      return "independent";
    case Strategy::kChained:
      return "chained";
    case Strategy::kCodenoise:
      return "codenoise";
  }
  return "independent";
}

std::optional<Strategy> ParseStrategy(const std::string& name) {
  for (Strategy s : {Strategy::kIndependent, Strategy::kChained, Strategy::kCodenoise}) {
    if (name == StrategyName(s)) return s;
  }
  return std::nullopt;
}

std::string Rational::ToString() const {
  return den == 1 ? std::to_string(num) : std::to_string(num) + "/" + std::to_string(den);
}

namespace {

// The longest time or size text read: longer ones are refused before any regex sees them
// (std::regex recurses per character and overflows the stack on long input).
constexpr size_t kMaxQuantityChars = 64;

// `t` as a finite double, without exceptions: false for anything else (out of range too).
bool FiniteNumber(const std::string& t, double* out) {
  if (t.empty()) return false;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), *out);
  return ec == std::errc() && p == t.data() + t.size() && std::isfinite(*out);
}

// `raw` for a message: at most 40 characters of it.
std::string Quoted(const std::string& raw) {
  return "'" + (raw.size() > 40
                    ? raw.substr(0, 40) + "...' (" + std::to_string(raw.size()) + " characters)"
                    : raw + "'");
}

}  // namespace

Result<double> ParseDuration(const std::string& raw) {
  std::string s = raw;
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  if (s.size() > kMaxQuantityChars)
    return Result<double>::Error("expected a time such as 40s or 1m30s, got " + Quoted(raw) +
                                 ": longer than " + std::to_string(kMaxQuantityChars) +
                                 " characters");
  double v = 0;
  if (FiniteNumber(s, &v)) return v;
  if (s.size() > 1 && s[0] == '-') {  // "-1s": let the caller say why negative is wrong
    auto positive = ParseDuration(s.substr(1));
    if (positive.ok()) return -*positive;
  }
  static const std::regex clock(R"(^(?:(\d+):)?(\d{1,2}):(\d{1,2}(?:\.\d+)?)$)");
  static const std::regex units(
      R"(^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$)");
  std::smatch mt;
  const auto too_large = [&] {
    return Result<double>::Error("time " + Quoted(raw) + " is too large");
  };
  if (std::regex_match(s, mt, clock)) {
    double h = 0, m = 0, sec = 0;
    if ((mt[1].matched && !FiniteNumber(mt[1].str(), &h)) || !FiniteNumber(mt[2].str(), &m) ||
        !FiniteNumber(mt[3].str(), &sec))
      return too_large();
    if (m >= 60 || sec >= 60)
      return Result<double>::Error("minutes and seconds must be below 60 in '" + raw + "'");
    return h * 3600 + m * 60 + sec;
  }
  if (!s.empty() && std::regex_match(s, mt, units)) {
    double total = 0;
    const double scale[] = {3600, 60, 1, 0.001};
    bool any = false;
    for (int i = 0; i < 4; ++i) {
      double part = 0;
      if (!mt[i + 1].matched) continue;
      if (!FiniteNumber(mt[i + 1].str(), &part)) return too_large();
      total += part * scale[i], any = true;
    }
    if (any) return std::isfinite(total) ? Result<double>(total) : too_large();
  }
  return Result<double>::Error("expected a time such as 40s, 40.5, 1m30s or 00:00:40.000, got '" +
                               raw + "'");
}

Result<uint64_t> ParseBytes(const std::string& raw) {
  static const std::regex re(R"(^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$)");
  std::smatch mt;
  if (raw.size() > kMaxQuantityChars || !std::regex_match(raw, mt, re)) {
    return Result<uint64_t>::Error(
        "expected a size such as 8GiB, 512MiB or a number of bytes, got " + Quoted(raw));
  }
  const std::string unit = mt[2].matched ? mt[2].str() : "B";
  const std::map<std::string, double> scale = {
      {"B", 1},           {"KB", 1e3},           {"MB", 1e6},
      {"GB", 1e9},        {"TB", 1e12},          {"KiB", 1024.0},
      {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  double count = 0;
  const bool finite = FiniteNumber(mt[1].str(), &count);
  const double bytes = count * scale.at(unit);
  if (!finite || !(bytes <= 1e18))
    return Result<uint64_t>::Error("size " + Quoted(raw) + " is too large");
  return static_cast<uint64_t>(bytes);
}

Result<Rational> ParseFps(const std::string& s) {
  auto bad = [&](const std::string& why) { return Result<Rational>::Error(why); };
  Rational r;
  auto slash = s.find('/');
  if (slash != std::string::npos) {
    std::string a = s.substr(0, slash), b = s.substr(slash + 1);
    auto [p1, e1] = std::from_chars(a.data(), a.data() + a.size(), r.num);
    auto [p2, e2] = std::from_chars(b.data(), b.data() + b.size(), r.den);
    if (e1 != std::errc() || e2 != std::errc() || p1 != a.data() + a.size() ||
        p2 != b.data() + b.size()) {
      return bad("expected a frame rate such as 24, 29.97 or 24000/1001, got '" + s + "'");
    }
  } else {
    double v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || !std::isfinite(v)) {
      return bad("expected a frame rate such as 24, 29.97 or 24000/1001, got " + Quoted(s));
    }
    // Checked before rounding: llround of a value beyond int64 is undefined.
    if (v > ManifestLimits::kMaxFps)
      return bad("must be at most 240 frames per second, got " + Quoted(s));
    // Exact decimal: 29.97 -> 2997/100.
    auto dot = s.find('.');
    int64_t den = 1;
    if (dot != std::string::npos) {
      size_t decimals = s.size() - dot - 1;
      if (decimals > 6) return bad("frame rate has more than 6 decimals: '" + s + "'");
      for (size_t i = 0; i < decimals; ++i) den *= 10;
    }
    r.num = std::llround(v * static_cast<double>(den));
    r.den = den;
  }
  if (r.num <= 0 || r.den <= 0) return bad("must be positive, got '" + s + "'");
  int64_t g = std::gcd(r.num, r.den);
  r.num /= g, r.den /= g;
  if (r.value() > ManifestLimits::kMaxFps)
    return bad("must be at most 240 frames per second, got '" + s + "'");
  if (r.value() < 1.0) return bad("must be at least 1 frame per second, got '" + s + "'");
  return r;
}

Result<Manifest> ParseManifest(const std::string& text, const std::string& display_name,
                               const ManifestParseOptions& options) {
  auto at = [&](size_t line, size_t column) {
    return display_name + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  };
  if (text.size() > ManifestLimits::kMaxManifestBytes) {
    return Result<Manifest>::Error(at(1, 1) + "manifest: larger than the 4 MiB limit");
  }
  size_t line = 0, column = 0;
  if (FindBinary(text, &line, &column)) {
    return Result<Manifest>::Error(
        at(line, column) + "manifest: not a YAML text file (binary or non-UTF-8 byte here)");
  }
  try {
    YAML::Node root = YAML::Load(text);
    return Build(root, options, display_name);
  } catch (const ManifestError& e) {
    size_t l = e.mark.is_null() ? 1 : static_cast<size_t>(e.mark.line) + 1;
    size_t c = e.mark.is_null() ? 1 : static_cast<size_t>(e.mark.column) + 1;
    return Result<Manifest>::Error(at(l, c) + e.field + ": " + e.message);
  } catch (const YAML::Exception& e) {
    size_t l = e.mark.is_null() ? 1 : static_cast<size_t>(e.mark.line) + 1;
    size_t c = e.mark.is_null() ? 1 : static_cast<size_t>(e.mark.column) + 1;
    return Result<Manifest>::Error(at(l, c) + "manifest: broken YAML: " + e.msg);
  }
}

std::string Manifest::Where(const std::string& field) const {
  auto it = locations.find(field);
  const SourceLocation l = it == locations.end() ? SourceLocation{} : it->second;
  return source_name + ":" + std::to_string(l.line) + ":" + std::to_string(l.column) + ": " + field;
}

Result<Manifest> LoadManifestFile(const std::string& path, bool check_audio) {
  std::error_code ec;
  if (fs::is_directory(path, ec))
    return Result<Manifest>::Error(path + ": is a folder, not a manifest file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Result<Manifest>::Error(path + ": cannot open manifest: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  ManifestParseOptions options;
  options.base_dir = fs::absolute(fs::path(path)).parent_path().string();
  options.check_audio = check_audio;
  return ParseManifest(ss.str(), path, options);
}

}  // namespace segue
