#include "common/model/metadata.h"

#include <algorithm>
#include <sstream>

namespace segue::model {

const char* ConditioningScopeName(ConditioningScope s) {
  return s == ConditioningScope::kPerClip ? "per-clip" : "per-frame";
}

std::optional<ConditioningScope> ParseConditioningScope(const std::string& name) {
  if (name == "per-frame") return ConditioningScope::kPerFrame;
  if (name == "per-clip") return ConditioningScope::kPerClip;
  return std::nullopt;
}

Status CheckMetadata(const ModelMetadata& m) {
  auto bad = [&](const std::string& field, const std::string& what) {
    return Status::Error("model '" + m.name + "': " + field + " " + what);
  };
  const int r = m.temporal_compression;
  if (r != 1 && r != 4 && r != 6 && r != 8)
    return bad("temporal_compression", "must be 1, 4, 6 or 8, got " + std::to_string(r));
  if (m.latent_channels < 1 || m.latent_channels > 1024)
    return bad("latent_channels", "must be between 1 and 1024");
  if (m.spatial_compression < 1 || m.spatial_compression > 64)
    return bad("spatial_compression", "must be between 1 and 64");
  if (m.patch_size < 1 || m.patch_size > 8) return bad("patch_size", "must be between 1 and 8");
  if (m.native_frames.empty()) return bad("native_frames", "must name at least one clip length");
  for (int n : m.native_frames) {
    if (n < 2 || n > 4096 || (n - 1) % r != 0) {
      return bad("native_frames",
                 std::to_string(n) + " is not 1 + " + std::to_string(r) + " k frames (k >= 1)");
    }
  }
  if (!(m.native_fps > 0 && m.native_fps <= 240)) return bad("native_fps", "must be in (0, 240]");
  if (!(m.output_min < m.output_max)) return bad("output range", "must have min < max");
  if (m.decode_context_before < 0 || m.decode_context_before > 64 || m.decode_context_after < 0 ||
      m.decode_context_after > 64) {
    return bad("decode context", "must be between 0 and 64 latent frames on each side");
  }
  if (m.identity.size() > 256 || std::any_of(m.identity.begin(), m.identity.end(),
                                             [](char c) { return c <= 0x20 || c >= 0x7f; }))
    return bad("identity", "must be at most 256 printable ASCII characters without spaces");
  return Status::Ok();
}

std::string MetadataDifference(const ModelMetadata& a, const ModelMetadata& b) {
  std::ostringstream os;
  auto cmp = [&](const char* field, const auto& x, const auto& y) {
    if (os.tellp() == 0 && x != y) os << field << " " << x << " vs " << y;
  };
  auto list = [](const std::vector<int>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
    return s;
  };
  cmp("name", a.name, b.name);
  cmp("temporal_compression", a.temporal_compression, b.temporal_compression);
  cmp("latent_channels", a.latent_channels, b.latent_channels);
  cmp("spatial_compression", a.spatial_compression, b.spatial_compression);
  cmp("patch_size", a.patch_size, b.patch_size);
  cmp("native_frames", list(a.native_frames), list(b.native_frames));
  cmp("native_fps", a.native_fps, b.native_fps);
  cmp("output_min", a.output_min, b.output_min);
  cmp("output_max", a.output_max, b.output_max);
  cmp("decode_context_before", a.decode_context_before, b.decode_context_before);
  cmp("decode_context_after", a.decode_context_after, b.decode_context_after);
  cmp("conditioning", ConditioningScopeName(a.conditioning), ConditioningScopeName(b.conditioning));
  if (!a.identity.empty() && !b.identity.empty())  // unknown matches any
    cmp("identity (the weights)", a.identity, b.identity);
  return os.str();
}

std::string DescribeMetadata(const ModelMetadata& m) {
  std::ostringstream os;
  os << "r=" << m.temporal_compression << ", " << m.latent_channels << " channels, "
     << m.spatial_compression << "x spatial";
  if (m.patch_size > 1) os << " (patch " << m.patch_size << ")";
  os << ", " << m.native_frames.front() << " frames at " << m.native_fps << " fps, decode context "
     << m.decode_context_before << "/" << m.decode_context_after << ", "
     << ConditioningScopeName(m.conditioning);
  return os.str();
}

namespace {

// The built-ins' weights are segue's code: moved by hand when a built-in's output changes, so
// that results rendered before are not reused for it.
constexpr char kBuiltinIdentity[] = "builtin/1";

ModelMetadata Stamp(const std::string& name, int r) {
  ModelMetadata m;
  m.name = name;
  m.temporal_compression = r;
  // One channel per frame a latent frame holds (and at least the four of r = 1).
  m.latent_channels = r < 4 ? 4 : r;
  m.spatial_compression = 8;
  m.native_frames = {r == 1 ? 48 : 1 + r * 8};
  // A causal decoder: the first latent frame of a call is one frame, so a chunk that does not
  // start the video needs the latent frame before it.
  m.decode_context_before = r == 1 ? 0 : 1;
  m.identity = kBuiltinIdentity;
  return m;
}

std::vector<ModelMetadata> MakeBuiltins() {
  ModelMetadata zoom;
  zoom.name = "zoom";
  zoom.latent_channels = 4;
  zoom.spatial_compression = 8;
  zoom.native_frames = {48};
  zoom.identity = kBuiltinIdentity;
  // zoom4: the reference model over latent frames 4 frames apart, with a causal decoder that
  // blends from the previous latent frame (one latent frame of context).
  ModelMetadata zoom4 = zoom;
  zoom4.name = "zoom4";
  zoom4.temporal_compression = 4;
  zoom4.native_frames = {49};
  zoom4.decode_context_before = 1;
  return {zoom, zoom4, Stamp("stamp", 1), Stamp("stamp4", 4), Stamp("stamp8", 8)};
}

}  // namespace

const std::vector<ModelMetadata>& BuiltinMetadataList() {
  static const std::vector<ModelMetadata> list = MakeBuiltins();
  return list;
}

const ModelMetadata* BuiltinMetadata(const std::string& name) {
  for (const ModelMetadata& m : BuiltinMetadataList())
    if (m.name == name) return &m;
  return nullptr;
}

ModelMetadata PlanningMetadata(const std::string& name) {
  if (const ModelMetadata* m = BuiltinMetadata(name)) return *m;
  ModelMetadata m;
  m.name = name;
  return m;
}

}  // namespace segue::model
