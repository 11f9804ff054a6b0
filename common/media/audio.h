// Audio inputs: what the manifest's audio.path may name (anything FFmpeg decodes: wav, flac,
// mp3, aac, ...).
#pragma once

#include <string>

#include "common/status/status.h"

namespace segue {

// OK when `path` opens with libavformat and has a decodable audio stream.
Status ProbeAudioFile(const std::string& path);

}  // namespace segue
