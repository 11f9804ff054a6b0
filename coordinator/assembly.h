// Assembly: a job's output file, made from its stored chunks and audio once every chunk is
// encoded. The chunks and the audio go to a scratch folder, FFmpeg concatenates the chunks'
// packets without re-encoding and muxes the song, trimmed or padded to the picture
// (common/media/video.h), into a temporary file renamed into place; the scratch folder goes. The
// state machine's BeginStitching and EndStitching frame it. Runs on the event loop.
#pragma once

#include <memory>
#include <string>

#include "common/media/video.h"

#include "common/env/env.h"
#include "common/status/status.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"

namespace segue {

// Writes `j`'s output (j.output_path). `scratch_root`: where the job's scratch folder goes
// (STATE/tmp). An existing output is replaced only if the manifest allows it, or if the job was
// restored in STITCHING (the output may be its own, put in place before a crash). `track`: the
// song already encoded for this output (audio_tracks.h), or nullptr to encode it here.
Status AssembleJob(const Job& j, Journal& journal, Env* env, const std::string& scratch_root,
                   std::shared_ptr<const EncodedAudio> track = nullptr);

}  // namespace segue
