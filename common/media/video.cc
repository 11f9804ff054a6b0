#include "common/media/video.h"

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <optional>

#include "common/media/ffmpeg_util.h"

namespace segue {
namespace {

using namespace media;
namespace fs = std::filesystem;

Status Fail(const std::string& what, int err) { return Status::Error(what + ": " + AvError(err)); }

// Sends `frame` (nullptr: flush) to `enc` and writes every packet that comes out to `out`.
Status EncodeAndWrite(AVCodecContext* enc, AVFrame* frame, AVFormatContext* out, AVStream* st) {
  int err = avcodec_send_frame(enc, frame);
  if (err < 0) return Fail("encoder rejected a frame", err);
  PacketPtr pkt(av_packet_alloc());
  while (true) {
    err = avcodec_receive_packet(enc, pkt.get());
    if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return Status::Ok();
    if (err < 0) return Fail("encoding failed", err);
    av_packet_rescale_ts(pkt.get(), enc->time_base, st->time_base);
    pkt->stream_index = st->index;
    err = av_interleaved_write_frame(out, pkt.get());
    if (err < 0) return Fail("writing a packet failed", err);
  }
}

void TagBt709(AVCodecContext* c) {
  c->color_primaries = AVCOL_PRI_BT709;
  c->color_trc = AVCOL_TRC_BT709;
  c->colorspace = AVCOL_SPC_BT709;
  c->color_range = AVCOL_RANGE_MPEG;
}

// Produces AAC packets of exactly `total_samples` samples of the input audio, padded with
// silence or trimmed, at 48 kHz stereo.
class AudioTrack {
 public:
  static constexpr int kRate = 48000;

  Status Open(const std::string& path, int64_t total_samples, AVFormatContext* out) {
    total_ = total_samples;
    std::string error;
    in_ = OpenInput(path, &error);
    if (!in_) return Status::Error("cannot open audio '" + path + "': " + error);
    const AVCodec* dec = nullptr;
    stream_ = av_find_best_stream(in_.get(), AVMEDIA_TYPE_AUDIO, -1, -1, &dec, 0);
    if (stream_ < 0 || !dec) return Status::Error("no decodable audio stream in '" + path + "'");
    dec_.reset(avcodec_alloc_context3(dec));
    avcodec_parameters_to_context(dec_.get(), in_->streams[stream_]->codecpar);
    int err = avcodec_open2(dec_.get(), dec, nullptr);
    if (err < 0) return Fail("cannot open the audio decoder", err);

    const AVCodec* aac = avcodec_find_encoder(AV_CODEC_ID_AAC);
    if (!aac) return Status::Error("no AAC encoder in this FFmpeg");
    enc_.reset(avcodec_alloc_context3(aac));
    enc_->sample_rate = kRate;
    enc_->sample_fmt = AV_SAMPLE_FMT_FLTP;
    av_channel_layout_default(&enc_->ch_layout, 2);
    enc_->bit_rate = 192000;
    enc_->time_base = {1, kRate};
    if (out->oformat->flags & AVFMT_GLOBALHEADER) enc_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    err = avcodec_open2(enc_.get(), aac, nullptr);
    if (err < 0) return Fail("cannot open the AAC encoder", err);
    st_ = avformat_new_stream(out, nullptr);
    avcodec_parameters_from_context(st_->codecpar, enc_.get());
    st_->time_base = enc_->time_base;

    SwrContext* swr = nullptr;
    err = swr_alloc_set_opts2(&swr, &enc_->ch_layout, AV_SAMPLE_FMT_FLTP, kRate, &dec_->ch_layout,
                              dec_->sample_fmt, dec_->sample_rate, 0, nullptr);
    if (err < 0) return Fail("cannot set up audio resampling", err);
    swr_.reset(swr);
    err = swr_init(swr_.get());
    if (err < 0) return Fail("cannot set up audio resampling", err);
    fifo_.reset(av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, 2, 4096));
    return Status::Ok();
  }

  AVStream* stream() const { return st_; }
  bool finished() const { return finished_; }

  // Writes the next encoder packets to `out`. Returns the pts (seconds) of the audio written
  // so far, for interleaving.
  Status Pump(AVFormatContext* out) {
    const int fs = enc_->frame_size > 0 ? enc_->frame_size : 1024;
    while (av_audio_fifo_size(fifo_.get()) < fs && !input_done_) {
      Status s = Decode();
      if (!s.ok()) return s;
    }
    int64_t remaining = total_ - sent_;
    if (remaining <= 0) {
      if (!flushed_) {
        flushed_ = true;
        Status s = EncodeAndWrite(enc_.get(), nullptr, out, st_);
        finished_ = true;
        return s;
      }
      return Status::Ok();
    }
    int n = static_cast<int>(std::min<int64_t>(fs, remaining));
    FramePtr frame(av_frame_alloc());
    frame->nb_samples = n;
    frame->format = AV_SAMPLE_FMT_FLTP;
    av_channel_layout_copy(&frame->ch_layout, &enc_->ch_layout);
    frame->sample_rate = kRate;
    int err = av_frame_get_buffer(frame.get(), 0);
    if (err < 0) return Fail("out of memory for audio", err);
    int have = std::min(n, av_audio_fifo_size(fifo_.get()));
    if (have > 0) av_audio_fifo_read(fifo_.get(), reinterpret_cast<void**>(frame->data), have);
    for (int ch = 0; ch < 2; ++ch) {  // pad with silence past the end of the song
      float* d = reinterpret_cast<float*>(frame->data[ch]);
      for (int i = have; i < n; ++i) d[i] = 0.f;
    }
    frame->pts = sent_;
    sent_ += n;
    return EncodeAndWrite(enc_.get(), frame.get(), out, st_);
  }

  double position_seconds() const { return static_cast<double>(sent_) / kRate; }

 private:
  Status Decode() {
    PacketPtr pkt(av_packet_alloc());
    FramePtr frame(av_frame_alloc());
    int err = av_read_frame(in_.get(), pkt.get());
    if (err == AVERROR_EOF) {
      avcodec_send_packet(dec_.get(), nullptr);
    } else if (err < 0) {
      return Fail("reading audio failed", err);
    } else if (pkt->stream_index != stream_) {
      return Status::Ok();
    } else {
      err = avcodec_send_packet(dec_.get(), pkt.get());
      if (err < 0 && err != AVERROR(EAGAIN)) return Fail("decoding audio failed", err);
    }
    bool eof = false;
    while (true) {
      int r = avcodec_receive_frame(dec_.get(), frame.get());
      if (r == AVERROR(EAGAIN)) break;
      if (r == AVERROR_EOF) {
        eof = true;
        break;
      }
      if (r < 0) return Fail("decoding audio failed", r);
      Status s = Convert(frame.get());
      if (!s.ok()) return s;
      av_frame_unref(frame.get());
    }
    if (eof || err == AVERROR_EOF) {
      Status s = Convert(nullptr);  // drain the resampler
      input_done_ = true;
      return s;
    }
    return Status::Ok();
  }

  Status Convert(AVFrame* in) {
    int out_samples = swr_get_out_samples(swr_.get(), in ? in->nb_samples : 0);
    if (out_samples <= 0) return Status::Ok();
    FramePtr tmp(av_frame_alloc());
    tmp->nb_samples = out_samples;
    tmp->format = AV_SAMPLE_FMT_FLTP;
    av_channel_layout_copy(&tmp->ch_layout, &enc_->ch_layout);
    tmp->sample_rate = kRate;
    av_frame_get_buffer(tmp.get(), 0);
    int got = swr_convert(swr_.get(), tmp->data, out_samples,
                          in ? const_cast<const uint8_t**>(in->extended_data) : nullptr,
                          in ? in->nb_samples : 0);
    if (got < 0) return Fail("resampling audio failed", got);
    if (got > 0) av_audio_fifo_write(fifo_.get(), reinterpret_cast<void**>(tmp->data), got);
    return Status::Ok();
  }

  InputPtr in_;
  int stream_ = -1;
  CodecPtr dec_, enc_;
  SwrPtr swr_;
  FifoPtr fifo_;
  AVStream* st_ = nullptr;
  int64_t total_ = 0, sent_ = 0;
  bool input_done_ = false, flushed_ = false, finished_ = false;
};

}  // namespace

Status EncodeChunkFile(const std::string& path, const VideoSettings& v, const uint8_t* rgb,
                       int64_t frames) {
  av_log_set_level(AV_LOG_ERROR);
  if (v.codec != "h264") return Status::Error("unsupported codec '" + v.codec + "'");
  AVFormatContext* raw = nullptr;
  int err = avformat_alloc_output_context2(&raw, nullptr, "mp4", path.c_str());
  if (err < 0 || !raw) return Fail("cannot create chunk container", err);
  OutputPtr out(raw);
  const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
  if (!codec) return Status::Error("this FFmpeg has no libx264 encoder");
  CodecPtr enc(avcodec_alloc_context3(codec));
  enc->width = v.width;
  enc->height = v.height;
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->time_base = {static_cast<int>(v.fps.den), static_cast<int>(v.fps.num)};
  enc->framerate = {static_cast<int>(v.fps.num), static_cast<int>(v.fps.den)};
  enc->thread_count = v.threads;
  TagBt709(enc.get());
  if (out->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* opts = nullptr;
  av_dict_set(&opts, "crf", std::to_string(v.crf).c_str(), 0);
  av_dict_set(&opts, "preset", v.preset.c_str(), 0);
  // Pin x264's threading: automatic threads, and a threaded lookahead even with one thread, make
  // its output depend on the machine and on timing; chunks must be the same bytes wherever they
  // are encoded (tests/strategies_test.cc renders with 1, 2 and 3 workers and compares).
  const std::string x264_params =
      "threads=" + std::to_string(std::max(1, v.threads)) + ":lookahead-threads=1:sync-lookahead=0";
  av_dict_set(&opts, "x264-params", x264_params.c_str(), 0);
  err = avcodec_open2(enc.get(), codec, &opts);
  av_dict_free(&opts);
  if (err < 0) return Fail("cannot open the H.264 encoder", err);
  AVStream* st = avformat_new_stream(out.get(), nullptr);
  avcodec_parameters_from_context(st->codecpar, enc.get());
  st->time_base = enc->time_base;
  st->avg_frame_rate = enc->framerate;
  err = avio_open(&out->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) return Fail("cannot create '" + path + "'", err);
  err = avformat_write_header(out.get(), nullptr);
  if (err < 0) return Fail("cannot write chunk header", err);

  // SWS_BITEXACT: the same pixels whatever SIMD path and buffer alignment, so a chunk is the same
  // bytes on every worker.
  SwsPtr sws(sws_getContext(v.width, v.height, AV_PIX_FMT_RGB24, v.width, v.height,
                            AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_BITEXACT | SWS_ACCURATE_RND,
                            nullptr, nullptr, nullptr));
  const int* coeffs = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(sws.get(), coeffs, 1, coeffs, 0, 0, 1 << 16, 1 << 16);
  FramePtr frame(av_frame_alloc());
  frame->format = AV_PIX_FMT_YUV420P;
  frame->width = v.width;
  frame->height = v.height;
  av_frame_get_buffer(frame.get(), 0);
  const size_t frame_bytes = static_cast<size_t>(v.width) * v.height * 3;
  for (int64_t i = 0; i < frames; ++i) {
    av_frame_make_writable(frame.get());
    // Padding included: encoders' SIMD may read past the picture's width, and what it reads must
    // not be whatever the allocator left there.
    for (int p = 0; p < AV_NUM_DATA_POINTERS && frame->buf[p]; ++p)
      std::memset(frame->buf[p]->data, 0, frame->buf[p]->size);
    const uint8_t* src[1] = {rgb + i * frame_bytes};
    int stride[1] = {v.width * 3};
    sws_scale(sws.get(), src, stride, 0, v.height, frame->data, frame->linesize);
    frame->pts = i;
    // Every chunk starts with an IDR frame: the chunk decodes on its own.
    frame->pict_type = i == 0 ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
    Status s = EncodeAndWrite(enc.get(), frame.get(), out.get(), st);
    if (!s.ok()) return s;
  }
  Status s = EncodeAndWrite(enc.get(), nullptr, out.get(), st);
  if (!s.ok()) return s;
  err = av_write_trailer(out.get());
  if (err < 0) return Fail("cannot finish chunk", err);
  return Status::Ok();
}

Status AssembleOutput(const AssembleSpec& spec) {
  av_log_set_level(AV_LOG_ERROR);
  if (spec.chunk_files.empty()) return Status::Error("no chunks to assemble");
  fs::path final_path(spec.output_path);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec)
    return Status::Error("cannot create '" + final_path.parent_path().string() +
                         "': " + ec.message());
  const std::string ext = final_path.extension().string();
  std::string tmp = (final_path.parent_path() / ("." + final_path.filename().string() +
                                                 ".partial-" + std::to_string(getpid()) + ext))
                        .string();
  const char* format = ext == ".mov" ? "mov" : ext == ".mkv" ? "matroska" : "mp4";

  Status result = [&]() -> Status {
    AVFormatContext* raw = nullptr;
    int err = avformat_alloc_output_context2(&raw, nullptr, format, tmp.c_str());
    if (err < 0 || !raw) return Fail("cannot create the output container", err);
    OutputPtr out(raw);

    std::string error;
    InputPtr first = OpenInput(spec.chunk_files[0], &error);
    if (!first) return Status::Error("cannot open chunk 0: " + error);
    AVStream* vst = avformat_new_stream(out.get(), nullptr);
    avcodec_parameters_copy(vst->codecpar, first->streams[0]->codecpar);
    vst->codecpar->codec_tag = 0;
    const AVRational frame_tb = {static_cast<int>(spec.fps.den), static_cast<int>(spec.fps.num)};
    vst->time_base = frame_tb;
    vst->avg_frame_rate = {static_cast<int>(spec.fps.num), static_cast<int>(spec.fps.den)};
    first.reset();

    std::optional<AudioTrack> audio;
    if (!spec.audio_file.empty()) {
      audio.emplace();
      const int64_t samples =
          av_rescale(spec.frames, AudioTrack::kRate * spec.fps.den, spec.fps.num);
      Status s = audio->Open(spec.audio_file, samples, out.get());
      if (!s.ok()) return s;
    }
    err = avio_open(&out->pb, tmp.c_str(), AVIO_FLAG_WRITE);
    if (err < 0) return Fail("cannot create '" + tmp + "'", err);
    err = avformat_write_header(out.get(), nullptr);
    if (err < 0) return Fail("cannot write the output header", err);

    PacketPtr pkt(av_packet_alloc());
    for (size_t c = 0; c < spec.chunk_files.size(); ++c) {
      InputPtr in = OpenInput(spec.chunk_files[c], &error);
      if (!in) return Status::Error("cannot open chunk " + std::to_string(c) + ": " + error);
      AVStream* ist = in->streams[0];
      const int64_t offset = av_rescale_q(spec.chunk_starts[c], frame_tb, ist->time_base);
      while ((err = av_read_frame(in.get(), pkt.get())) >= 0) {
        if (pkt->pts != AV_NOPTS_VALUE) pkt->pts += offset;
        if (pkt->dts != AV_NOPTS_VALUE) pkt->dts += offset;
        av_packet_rescale_ts(pkt.get(), ist->time_base, vst->time_base);
        pkt->stream_index = vst->index;
        pkt->pos = -1;
        const double t = pkt->dts == AV_NOPTS_VALUE ? 0 : pkt->dts * av_q2d(vst->time_base);
        err = av_interleaved_write_frame(out.get(), pkt.get());
        if (err < 0) return Fail("writing video failed", err);
        // Keep the audio up with the picture so the muxer buffers little.
        while (audio && !audio->finished() && audio->position_seconds() < t + 1.0) {
          Status s = audio->Pump(out.get());
          if (!s.ok()) return s;
        }
      }
      if (err != AVERROR_EOF) return Fail("reading chunk " + std::to_string(c) + " failed", err);
    }
    while (audio && !audio->finished()) {
      Status s = audio->Pump(out.get());
      if (!s.ok()) return s;
    }
    err = av_write_trailer(out.get());
    if (err < 0) return Fail("cannot finish the output", err);
    return Status::Ok();
  }();

  if (!result.ok()) {
    fs::remove(tmp, ec);
    return result;
  }
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Status::Error("cannot move the output into place at '" + spec.output_path + "'");
  }
  return Status::Ok();
}

Status ReadVideoFrames(const std::string& path,
                       const std::function<void(int64_t, const uint8_t*, int, int)>& on_frame) {
  std::string error;
  InputPtr in = OpenInput(path, &error);
  if (!in) return Status::Error("cannot open '" + path + "': " + error);
  const AVCodec* codec = nullptr;
  int stream = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  if (stream < 0 || !codec) return Status::Error("'" + path + "' has no decodable video stream");
  CodecPtr dec(avcodec_alloc_context3(codec));
  avcodec_parameters_to_context(dec.get(), in->streams[stream]->codecpar);
  dec->thread_count = 1;
  int err = avcodec_open2(dec.get(), codec, nullptr);
  if (err < 0) return Fail("cannot open the video decoder", err);
  PacketPtr pkt(av_packet_alloc());
  FramePtr frame(av_frame_alloc());
  SwsPtr sws;
  std::vector<uint8_t> rgb;
  int64_t index = 0;
  auto drain = [&]() -> Status {
    while (true) {
      int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return Status::Ok();
      if (r < 0) return Fail("decoding failed", r);
      const int w = frame->width, h = frame->height;
      if (!sws) {
        sws.reset(sws_getContext(w, h, static_cast<AVPixelFormat>(frame->format), w, h,
                                 AV_PIX_FMT_RGB24, SWS_BICUBIC, nullptr, nullptr, nullptr));
        rgb.resize(static_cast<size_t>(w) * h * 3);
      }
      uint8_t* dst[1] = {rgb.data()};
      int stride[1] = {w * 3};
      sws_scale(sws.get(), frame->data, frame->linesize, 0, h, dst, stride);
      on_frame(index++, rgb.data(), w, h);
      av_frame_unref(frame.get());
    }
  };
  while ((err = av_read_frame(in.get(), pkt.get())) >= 0) {
    if (pkt->stream_index == stream) {
      err = avcodec_send_packet(dec.get(), pkt.get());
      if (err < 0 && err != AVERROR(EAGAIN)) return Fail("decoding failed", err);
      Status s = drain();
      if (!s.ok()) return s;
    }
    av_packet_unref(pkt.get());
  }
  avcodec_send_packet(dec.get(), nullptr);
  return drain();
}

}  // namespace segue
