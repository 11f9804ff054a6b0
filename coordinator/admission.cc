#include "coordinator/admission.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "common/manifest/manifest.h"
#include "common/media/audio.h"

namespace segue {
namespace {

namespace fs = std::filesystem;

// Whether FFmpeg can read the audio that came with a job, from a scratch copy.
Status ProbeAudio(std::string_view audio, const std::string& name, const std::string& scratch,
                  Env* env) {
  const std::string probe = scratch + "/probe-" + std::to_string(getpid()) + AudioExtension(name);
  (void)env->CreateDirs(scratch);
  Status s = WriteFile(env, probe, audio);
  if (s.ok()) s = ProbeAudioFile(probe);
  (void)env->RemoveFile(probe);
  return s;
}

}  // namespace

Result<std::string> ResolveOutput(const std::string& root, const std::string& rel, bool folder) {
  using R = Result<std::string>;
  if (rel.empty()) return R::Error("path is empty");
  fs::path p(rel);
  if (p.is_absolute())
    return R::Error("'" + rel +
                    "' is absolute; output paths are relative to the coordinator's output root");
  for (const auto& part : p) {
    if (part == "..") return R::Error("'" + rel + "' leaves the output root ('..' is not allowed)");
  }
  const fs::path output_root(root);
  fs::path full = (output_root / p).lexically_normal();
  std::error_code ec;
  // Resolve symlinks of the parts that exist: a link inside the root must not point outside.
  fs::path resolved = fs::weakly_canonical(full, ec);
  if (ec) return R::Error("cannot resolve '" + rel + "': " + ec.message());
  auto [root_end, _] =
      std::mismatch(output_root.begin(), output_root.end(), resolved.begin(), resolved.end());
  if (root_end != output_root.end())
    return R::Error("'" + rel + "' resolves outside the output root (through a symlink)");
  if (!folder && fs::is_directory(resolved, ec)) return R::Error("'" + rel + "' is a folder");
  if (folder && fs::exists(resolved, ec) && !fs::is_directory(resolved, ec))
    return R::Error("'" + rel + "' is a file; png output is a folder of frames");
  return resolved.string();
}

Status CheckOutputStillInRoot(const std::string& root, const std::string& output) {
  std::error_code ec;
  const fs::path out(output);
  // The folder the output goes in, with every symlink resolved: it must be the one submit saw.
  const fs::path dir = fs::weakly_canonical(out.parent_path(), ec);
  if (ec)
    return Status::Error("cannot resolve '" + out.parent_path().string() + "': " + ec.message());
  const fs::path root_dir = fs::weakly_canonical(fs::path(root), ec);
  auto [root_end, _] = std::mismatch(root_dir.begin(), root_dir.end(), dir.begin(), dir.end());
  if (ec || root_end != root_dir.end() || dir != out.parent_path().lexically_normal())
    return Status::Error("'" + output + "' now resolves to '" + (dir / out.filename()).string() +
                         "', outside the output root or elsewhere than at submit (a symlink made "
                         "since); nothing was written");
  return Status::Ok();
}

Result<Job> Admit(wire::Submit::Reader submit, const AdmissionOptions& options, Env* env,
                  const ModelCatalog& models) {
  using R = Result<Job>;
  const std::string name =
      submit.getManifestName().size() ? submit.getManifestName().cStr() : "manifest.yaml";
  const std::string text = submit.getManifestText().cStr();
  auto m = ParseManifest(text, name, ManifestParseOptions{"", false});
  if (!m.ok()) return m.status();
  const Manifest& manifest = *m;
  auto audio = submit.getAudioData();
  if (manifest.audio_path && audio.size() == 0)
    return R::Error(name + ": audio.path: the audio file's bytes did not come with the job");
  if (audio.size() > ManifestLimits::kMaxAudioBytes)
    return R::Error(name + ": audio.path: the audio file is " + std::to_string(audio.size() >> 20) +
                    " MiB, above the limit of " +
                    std::to_string(ManifestLimits::kMaxAudioBytes >> 20) + " MiB");
  const std::string rel =
      submit.getOutputOverride().size() ? submit.getOutputOverride().cStr() : manifest.output_path;
  auto out = ResolveOutput(options.output_root, rel, manifest.output_codec == "png");
  if (!out.ok()) return R::Error(name + ": output.path: " + out.message());
  if (!manifest.output_overwrite && env->Exists(*out))
    return R::Error(name + ": output.path: '" + *out +
                    "' exists; set output.overwrite: true to replace it");

  Job j;
  j.name = manifest.name;
  j.priority = manifest.priority;
  j.manifest_text = text;
  j.manifest_name = name;
  j.output_path = *out;
  j.has_audio = manifest.audio_path.has_value();
  j.audio_name = submit.getAudioName().cStr();
  j.created_ms = j.updated_ms = env->NowMillis();
  j.chunk_frames = options.chunk_frames;
  if (j.has_audio) {
    const std::string_view bytes(reinterpret_cast<const char*>(audio.begin()), audio.size());
    if (Status ps = ProbeAudio(bytes, j.audio_name, options.scratch_dir, env); !ps.ok())
      return R::Error(
          name + ": audio.path: cannot read the audio that came with the job: " + ps.message());
  }
  // Planned now when the farm knows the model; else it waits for a worker that serves it.
  j.manifest = manifest;
  if (const model::ModelMetadata* known = models.Find(manifest.model_name)) {
    if (Status ps = PlanJob(j, manifest, *known, options.chunk_frames, options.max_job_segments);
        !ps.ok())
      return ps;
  }
  return j;
}

}  // namespace segue
