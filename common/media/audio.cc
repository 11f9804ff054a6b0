#include "common/media/audio.h"

#include "common/media/ffmpeg_util.h"

namespace segue {
namespace media {

InputPtr OpenInput(const std::string& path, std::string* error) {
  av_log_set_level(AV_LOG_ERROR);
  AVFormatContext* raw = nullptr;
  int err = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
  if (err < 0) {
    *error = AvError(err);
    return nullptr;
  }
  InputPtr in(raw);
  err = avformat_find_stream_info(in.get(), nullptr);
  if (err < 0) {
    *error = AvError(err);
    return nullptr;
  }
  return in;
}

}  // namespace media

Status ProbeAudioFile(const std::string& path) {
  std::string error;
  media::InputPtr in = media::OpenInput(path, &error);
  if (!in) return Status::Error(error);
  const AVCodec* dec = nullptr;
  int idx = av_find_best_stream(in.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &dec, 0);
  if (idx < 0 || dec == nullptr) return Status::Error("no decodable audio stream");
  return Status::Ok();
}

}  // namespace segue
