#include "coordinator/assembly.h"

#include "common/media/video.h"
#include "coordinator/audio_tracks.h"

namespace segue {

Status AssembleJob(const Job& j, Journal& journal, Env* env, const std::string& scratch_root,
                   std::shared_ptr<const EncodedAudio> track) {
  const std::string scratch = scratch_root + "/job-" + std::to_string(j.id);
  (void)env->RemoveAll(scratch);
  if (Status s = env->CreateDirs(scratch); !s.ok()) return s;
  AssembleSpec spec;
  spec.frames = j.manifest.frames;
  spec.fps = j.manifest.fps;
  spec.codec = j.manifest.output_codec;
  spec.audio_offset_seconds = j.manifest.audio_offset_seconds;
  spec.output_path = j.output_path;
  spec.audio_codec = AudioCodecOf(j);
  spec.audio_track = std::move(track);
  spec.replace = j.manifest.output_overwrite || j.restored_stitching;
  Status s = Status::Ok();
  for (const ChunkSpan& c : j.chunks) {
    auto bytes = journal.Chunk(j.id, static_cast<uint32_t>(c.index));
    if (!bytes.ok()) {
      s = Status::Error("chunk " + std::to_string(c.index) + " is missing from the store");
      break;
    }
    const std::string file =
        scratch + "/chunk-" + std::to_string(c.index) + ChunkExtension(j.manifest.output_codec);
    if (s = WriteFile(env, file, *bytes); !s.ok()) break;
    spec.chunk_files.push_back(file);
    spec.chunk_starts.push_back(j.geometry.VideoStart(c.start));  // chunks are in latent frames
  }
  if (s.ok() && j.has_audio) {
    auto audio = journal.Audio(j.AudioJob());
    if (!audio.ok()) {
      s = Status::Error("the job's audio is missing from the store");
    } else {
      spec.audio_file = scratch + "/audio" + AudioExtension(j.audio_name);
      s = WriteFile(env, spec.audio_file, *audio);
    }
  }
  if (s.ok()) s = AssembleOutput(spec);
  (void)env->RemoveAll(scratch);
  return s;
}

}  // namespace segue
