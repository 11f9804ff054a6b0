#include "common/media/video.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "common/media/ffmpeg_util.h"

namespace segue {
namespace {

using namespace media;
namespace fs = std::filesystem;

Status Fail(const std::string& what, int err) { return Status::Error(what + ": " + AvError(err)); }

// Converts `frame` to RGB24 in `out` (width * height * 3 bytes, rows top to bottom), with `sws`
// made or remade for its size and format. swscale's SIMD paths convert whole blocks of pixels:
// into rows of exactly width * 3 bytes they leave the last columns of a width that is not a
// multiple of 8 unconverted (Media.JpegsOfEveryLayoutDecodeToTheirPictures), so the conversion
// goes into rows padded to 16 pixels (`padded`, kept between calls) and is copied out.
Status FrameToRgb(const AVFrame* frame, int flags, SwsPtr& sws, std::vector<uint8_t>& padded,
                  std::vector<uint8_t>& out) {
  const int w = frame->width, h = frame->height;
  const auto format = static_cast<AVPixelFormat>(frame->format);
  sws.reset(sws_getCachedContext(sws.release(), w, h, format, w, h, AV_PIX_FMT_RGB24, flags,
                                 nullptr, nullptr, nullptr));
  if (!sws) {
    const char* name = av_get_pix_fmt_name(format);
    return Status::Error(std::string("cannot convert ") + std::to_string(w) + "x" +
                         std::to_string(h) + " pictures in " + (name ? name : "?") + " to RGB");
  }
  const size_t stride = static_cast<size_t>((w + 15) & ~15) * 3;
  padded.resize(stride * h);
  uint8_t* dst[1] = {padded.data()};
  const int strides[1] = {static_cast<int>(stride)};
  if (sws_scale(sws.get(), frame->data, frame->linesize, 0, h, dst, strides) != h)
    return Status::Error("cannot convert a picture to RGB");
  out.resize(static_cast<size_t>(w) * h * 3);
  for (int y = 0; y < h; ++y)
    std::memcpy(&out[static_cast<size_t>(y) * w * 3], &padded[y * stride],
                static_cast<size_t>(w) * 3);
  return Status::Ok();
}

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

// Produces exactly `total_samples` samples (48 kHz stereo) of the input audio, shifted by
// `offset_samples` (> 0: that much silence first; < 0: that much of the song skipped), padded
// with silence past its end or trimmed, encoded with `codec` (AAC or 16-bit PCM).
class AudioTrack {
 public:
  static constexpr int kRate = 48000;

  // Where encoded packets go (in the encoder's time base, 1/kRate).
  using Sink = std::function<Status(AVPacket*)>;

  Status Open(const std::string& path, int64_t total_samples, int64_t offset_samples,
              AVCodecID codec, bool global_header) {
    total_ = total_samples;
    lead_ = std::max<int64_t>(0, offset_samples);
    skip_ = std::max<int64_t>(0, -offset_samples);
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

    const AVCodec* encoder = avcodec_find_encoder(codec);
    if (!encoder) return Status::Error(std::string("no ") + avcodec_get_name(codec) + " encoder");
    fmt_ = codec == AV_CODEC_ID_AAC ? AV_SAMPLE_FMT_FLTP : AV_SAMPLE_FMT_S16;
    enc_.reset(avcodec_alloc_context3(encoder));
    enc_->sample_rate = kRate;
    enc_->sample_fmt = fmt_;
    av_channel_layout_default(&enc_->ch_layout, 2);
    if (codec == AV_CODEC_ID_AAC) enc_->bit_rate = 192000;
    if (codec == AV_CODEC_ID_OPUS) enc_->bit_rate = 128000;
    enc_->time_base = {1, kRate};
    if (global_header) enc_->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    err = avcodec_open2(enc_.get(), encoder, nullptr);
    if (err < 0) return Fail("cannot open the audio encoder", err);

    SwrContext* swr = nullptr;
    err = swr_alloc_set_opts2(&swr, &enc_->ch_layout, fmt_, kRate, &dec_->ch_layout,
                              dec_->sample_fmt, dec_->sample_rate, 0, nullptr);
    if (err < 0) return Fail("cannot set up audio resampling", err);
    swr_.reset(swr);
    err = swr_init(swr_.get());
    if (err < 0) return Fail("cannot set up audio resampling", err);
    fifo_.reset(av_audio_fifo_alloc(fmt_, 2, 4096));
    return Status::Ok();
  }

  bool finished() const { return finished_; }
  const AVCodecContext* encoder() const { return enc_.get(); }

  // Encodes the next frame of samples (or, at the end, flushes) and hands its packets to `sink`.
  Status Pump(const Sink& sink) {
    const int64_t remaining = total_ - sent_;
    if (remaining <= 0) {
      if (!flushed_) {
        flushed_ = true;
        Status s = Encode(nullptr, sink);
        finished_ = true;
        return s;
      }
      return Status::Ok();
    }
    const int fs = enc_->frame_size > 0 ? enc_->frame_size : 1024;
    const int n = static_cast<int>(std::min<int64_t>(fs, remaining));
    const int lead = static_cast<int>(std::min<int64_t>(lead_, n));  // leading silence first
    lead_ -= lead;
    const int want = n - lead;
    while (!input_done_ && (skip_ > 0 || av_audio_fifo_size(fifo_.get()) < want)) {
      Status s = Decode();
      if (!s.ok()) return s;
      const int drop = static_cast<int>(std::min<int64_t>(skip_, av_audio_fifo_size(fifo_.get())));
      av_audio_fifo_drain(fifo_.get(), drop);
      skip_ -= drop;
    }
    FramePtr frame = NewFrame(n);
    if (!frame) return Status::Error("out of memory for audio");
    av_samples_set_silence(frame->data, 0, n, 2, fmt_);  // silence past the end of the song
    const int have = std::min(want, av_audio_fifo_size(fifo_.get()));
    if (have > 0) {
      FramePtr tmp = NewFrame(have);
      if (!tmp) return Status::Error("out of memory for audio");
      av_audio_fifo_read(fifo_.get(), reinterpret_cast<void**>(tmp->data), have);
      av_samples_copy(frame->data, tmp->data, lead, 0, have, 2, fmt_);
    }
    frame->pts = sent_;
    sent_ += n;
    return Encode(frame.get(), sink);
  }

  double position_seconds() const { return static_cast<double>(sent_) / kRate; }

 private:
  Status Encode(AVFrame* frame, const Sink& sink) {
    int err = avcodec_send_frame(enc_.get(), frame);
    if (err < 0) return Fail("the audio encoder rejected a frame", err);
    PacketPtr pkt(av_packet_alloc());
    while (true) {
      err = avcodec_receive_packet(enc_.get(), pkt.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return Status::Ok();
      if (err < 0) return Fail("encoding audio failed", err);
      if (Status s = sink(pkt.get()); !s.ok()) return s;
      av_packet_unref(pkt.get());
    }
  }

  FramePtr NewFrame(int samples) {
    FramePtr f(av_frame_alloc());
    f->nb_samples = samples;
    f->format = fmt_;
    av_channel_layout_copy(&f->ch_layout, &enc_->ch_layout);
    f->sample_rate = kRate;
    if (av_frame_get_buffer(f.get(), 0) < 0) return nullptr;
    return f;
  }

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
    FramePtr tmp = NewFrame(out_samples);
    if (!tmp) return Status::Error("out of memory for audio");
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
  AVSampleFormat fmt_ = AV_SAMPLE_FMT_FLTP;
  int64_t total_ = 0, sent_ = 0, lead_ = 0, skip_ = 0;
  bool input_done_ = false, flushed_ = false, finished_ = false;
};

// How one codec is encoded: the libavcodec encoder, its pixel format, its options.
struct CodecSetup {
  const char* encoder;
  AVPixelFormat pix_fmt;
};

CodecSetup SetupOf(const std::string& codec) {
  if (codec == "hevc") return {"libx265", AV_PIX_FMT_YUV420P};
  if (codec == "prores") return {"prores_ks", AV_PIX_FMT_YUV422P10LE};
  if (codec == "png") return {"png", AV_PIX_FMT_RGB24};
  return {"libx264", AV_PIX_FMT_YUV420P};
}

// Options that make each encoder's output a function of the frames alone: no threads whose
// timing could change decisions (chunks must be the same bytes wherever they are encoded).
void SetCodecOptions(const VideoSettings& v, AVDictionary** opts) {
  const std::string threads = std::to_string(std::max(1, v.threads));
  if (v.codec == "h264") {
    av_dict_set(opts, "crf", std::to_string(v.crf).c_str(), 0);
    av_dict_set(opts, "preset", v.preset.c_str(), 0);
    // A threaded lookahead, even with one thread, made chunks differ from run to run.
    av_dict_set(opts, "x264-params",
                ("threads=" + threads + ":lookahead-threads=1:sync-lookahead=0").c_str(), 0);
  } else if (v.codec == "hevc") {
    av_dict_set(opts, "crf", std::to_string(v.crf).c_str(), 0);
    av_dict_set(opts, "preset", v.preset.c_str(), 0);
    av_dict_set(opts, "x265-params", "pools=none:frame-threads=1:wpp=0:log-level=error", 0);
  } else if (v.codec == "prores") {
    av_dict_set(opts, "profile", v.profile.c_str(), 0);
    av_dict_set(opts, "vendor", "apl0", 0);
  }
}

}  // namespace

bool KnownCodec(const std::string& c) {
  return c == "h264" || c == "hevc" || c == "prores" || c == "png";
}

std::string ChunkExtension(const std::string& codec) {
  return codec == "prores" || codec == "png" ? ".mov" : ".mp4";
}

Status EncodeChunkFile(const std::string& path, const VideoSettings& v, const uint8_t* rgb,
                       int64_t frames) {
  av_log_set_level(AV_LOG_ERROR);
  if (!KnownCodec(v.codec)) return Status::Error("unsupported codec '" + v.codec + "'");
  const CodecSetup setup = SetupOf(v.codec);
  AVFormatContext* raw = nullptr;
  int err = avformat_alloc_output_context2(
      &raw, nullptr, ChunkExtension(v.codec) == ".mov" ? "mov" : "mp4", path.c_str());
  if (err < 0 || !raw) return Fail("cannot create chunk container", err);
  OutputPtr out(raw);
  const AVCodec* codec = avcodec_find_encoder_by_name(setup.encoder);
  if (!codec) return Status::Error(std::string("this FFmpeg has no ") + setup.encoder + " encoder");
  CodecPtr enc(avcodec_alloc_context3(codec));
  enc->width = v.width;
  enc->height = v.height;
  enc->pix_fmt = setup.pix_fmt;
  enc->time_base = {static_cast<int>(v.fps.den), static_cast<int>(v.fps.num)};
  enc->framerate = {static_cast<int>(v.fps.num), static_cast<int>(v.fps.den)};
  enc->thread_count = v.threads;
  const bool yuv = setup.pix_fmt != AV_PIX_FMT_RGB24;
  if (yuv) TagBt709(enc.get());
  if (v.codec == "hevc") enc->codec_tag = MKTAG('h', 'v', 'c', '1');  // what QuickTime plays
  if (out->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary* opts = nullptr;
  SetCodecOptions(v, &opts);
  err = avcodec_open2(enc.get(), codec, &opts);
  av_dict_free(&opts);
  if (err < 0) return Fail(std::string("cannot open the ") + setup.encoder + " encoder", err);
  AVStream* st = avformat_new_stream(out.get(), nullptr);
  avcodec_parameters_from_context(st->codecpar, enc.get());
  st->time_base = enc->time_base;
  st->avg_frame_rate = enc->framerate;
  err = avio_open(&out->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) return Fail("cannot create '" + path + "'", err);
  AVDictionary* mux = nullptr;
  av_dict_set(&mux, "movflags", "+write_colr", 0);
  err = avformat_write_header(out.get(), &mux);
  av_dict_free(&mux);
  if (err < 0) return Fail("cannot write chunk header", err);

  // SWS_BITEXACT: the same pixels whatever SIMD path and buffer alignment, so a chunk is the same
  // bytes on every worker.
  SwsPtr sws(sws_getContext(v.width, v.height, AV_PIX_FMT_RGB24, v.width, v.height, setup.pix_fmt,
                            SWS_BICUBIC | SWS_BITEXACT | SWS_ACCURATE_RND, nullptr, nullptr,
                            nullptr));
  if (!sws) return Status::Error("cannot convert RGB to the encoder's pixel format");
  if (yuv) {
    const int* coeffs = sws_getCoefficients(SWS_CS_ITU709);
    sws_setColorspaceDetails(sws.get(), coeffs, 1, coeffs, 0, 0, 1 << 16, 1 << 16);
  }
  FramePtr frame(av_frame_alloc());
  frame->format = setup.pix_fmt;
  frame->width = v.width;
  frame->height = v.height;
  if (yuv) {  // prores_ks writes the frame's tags into every frame header, not the context's
    frame->color_primaries = AVCOL_PRI_BT709;
    frame->color_trc = AVCOL_TRC_BT709;
    frame->colorspace = AVCOL_SPC_BT709;
    frame->color_range = AVCOL_RANGE_MPEG;
  }
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
    // Every chunk starts with a key frame (its encoder's first): the chunk decodes on its own.
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

namespace {

int64_t AudioSamples(const AssembleSpec& spec) {
  return av_rescale(spec.frames, AudioTrack::kRate * spec.fps.den, spec.fps.num);
}

int64_t AudioOffsetSamples(const AssembleSpec& spec) {
  return std::llround(spec.audio_offset_seconds * AudioTrack::kRate);
}

// The song alone, as 16-bit PCM WAV (beside png frames).
Status WriteWav(const AssembleSpec& spec, const std::string& path) {
  AVFormatContext* raw = nullptr;
  int err = avformat_alloc_output_context2(&raw, nullptr, "wav", path.c_str());
  if (err < 0 || !raw) return Fail("cannot create '" + path + "'", err);
  OutputPtr out(raw);
  AudioTrack audio;
  Status s = audio.Open(spec.audio_file, AudioSamples(spec), AudioOffsetSamples(spec),
                        AV_CODEC_ID_PCM_S16LE, out->oformat->flags & AVFMT_GLOBALHEADER);
  if (!s.ok()) return s;
  AVStream* st = avformat_new_stream(out.get(), nullptr);
  avcodec_parameters_from_context(st->codecpar, audio.encoder());
  st->time_base = audio.encoder()->time_base;
  err = avio_open(&out->pb, path.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) return Fail("cannot create '" + path + "'", err);
  err = avformat_write_header(out.get(), nullptr);
  if (err < 0) return Fail("cannot write the audio header", err);
  AVFormatContext* muxer = out.get();
  auto write = [&](AVPacket* pkt) {
    av_packet_rescale_ts(pkt, audio.encoder()->time_base, st->time_base);
    pkt->stream_index = st->index;
    const int e = av_interleaved_write_frame(muxer, pkt);
    return e < 0 ? Fail("writing audio failed", e) : Status::Ok();
  };
  while (!audio.finished()) {
    s = audio.Pump(write);
    if (!s.ok()) return s;
  }
  err = av_write_trailer(out.get());
  return err < 0 ? Fail("cannot finish '" + path + "'", err) : Status::Ok();
}

// png: every chunk packet is one whole PNG image; they become DIR/frame_%06d.png by frame index.
// Where chunk c of `spec` ends: the next chunk's start, or the video's last frame. Assembly
// checks every chunk against it, so a chunk that holds more or fewer frames than its share (a
// worker's garbage) fails the output before anything is moved into place.
int64_t ChunkEnd(const AssembleSpec& spec, size_t c) {
  return c + 1 < spec.chunk_starts.size() ? spec.chunk_starts[c + 1] : spec.frames;
}
Status TooManyFrames(const AssembleSpec& spec, size_t c) {
  return Status::Error("chunk " + std::to_string(c) + " holds more than its " +
                       std::to_string(ChunkEnd(spec, c) - spec.chunk_starts[c]) + " frames");
}
Status TooFewFrames(const AssembleSpec& spec, size_t c, int64_t held) {
  return Status::Error("chunk " + std::to_string(c) + " holds " + std::to_string(held) +
                       " frames, expected " +
                       std::to_string(ChunkEnd(spec, c) - spec.chunk_starts[c]));
}

Status WriteImageSequence(const AssembleSpec& spec, const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::Error("cannot create '" + dir.string() + "': " + ec.message());
  PacketPtr pkt(av_packet_alloc());
  int64_t written = 0;
  for (size_t c = 0; c < spec.chunk_files.size(); ++c) {
    std::string error;
    InputPtr in = OpenInput(spec.chunk_files[c], &error);
    if (!in) return Status::Error("cannot open chunk " + std::to_string(c) + ": " + error);
    int64_t frame = spec.chunk_starts[c];
    int err;
    while ((err = av_read_frame(in.get(), pkt.get())) >= 0) {
      if (pkt->stream_index != 0) {  // a chunk holds one video stream; anything else is not ours
        av_packet_unref(pkt.get());
        continue;
      }
      if (frame >= ChunkEnd(spec, c)) return TooManyFrames(spec, c);
      char name[32];
      std::snprintf(name, sizeof name, "frame_%06lld.png", static_cast<long long>(frame++));
      FILE* f = std::fopen((dir / name).c_str(), "wb");
      if (!f) return Status::Error("cannot write '" + (dir / name).string() + "'");
      const bool ok = std::fwrite(pkt->data, 1, static_cast<size_t>(pkt->size), f) ==
                      static_cast<size_t>(pkt->size);
      if (std::fclose(f) != 0 || !ok)
        return Status::Error("cannot write '" + (dir / name).string() + "'");
      av_packet_unref(pkt.get());
      ++written;
    }
    if (err != AVERROR_EOF) return Fail("reading chunk " + std::to_string(c) + " failed", err);
    if (frame != ChunkEnd(spec, c)) return TooFewFrames(spec, c, frame - spec.chunk_starts[c]);
  }
  if (written != spec.frames)
    return Status::Error("chunks held " + std::to_string(written) + " frames, expected " +
                         std::to_string(spec.frames));
  if (!spec.audio_file.empty()) return WriteWav(spec, (dir / "audio.wav").string());
  return Status::Ok();
}

// A video container: the chunks' packets, timestamps offset by each chunk's first frame.
Status WriteVideoFile(const AssembleSpec& spec, const std::string& tmp, const std::string& ext) {
  const char* format = ext == ".mov" ? "mov" : ext == ".mkv" ? "matroska" : "mp4";
  AVFormatContext* raw = nullptr;
  int err = avformat_alloc_output_context2(&raw, nullptr, format, tmp.c_str());
  if (err < 0 || !raw) return Fail("cannot create the output container", err);
  OutputPtr out(raw);

  std::string error;
  InputPtr first = OpenInput(spec.chunk_files[0], &error);
  if (!first) return Status::Error("cannot open chunk 0: " + error);
  AVStream* vst = avformat_new_stream(out.get(), nullptr);
  avcodec_parameters_copy(vst->codecpar, first->streams[0]->codecpar);
  vst->codecpar->codec_tag =
      spec.codec == "hevc" && std::string(format) != "matroska" ? MKTAG('h', 'v', 'c', '1') : 0;
  // BT.709, whatever the chunk's container kept (some codecs have no bitstream field for it).
  vst->codecpar->color_primaries = AVCOL_PRI_BT709;
  vst->codecpar->color_trc = AVCOL_TRC_BT709;
  vst->codecpar->color_space = AVCOL_SPC_BT709;
  vst->codecpar->color_range = AVCOL_RANGE_MPEG;
  const AVRational frame_tb = {static_cast<int>(spec.fps.den), static_cast<int>(spec.fps.num)};
  vst->time_base = frame_tb;
  vst->avg_frame_rate = {static_cast<int>(spec.fps.num), static_cast<int>(spec.fps.den)};
  first.reset();

  // The song: copied from its encoded track when there is one for this output, else encoded
  // here. Either way its packets go out in step with the picture's (see the loop below).
  std::optional<AudioTrack> audio;
  const EncodedAudio* track = nullptr;
  size_t track_next = 0;
  AVStream* ast = nullptr;
  const AVRational audio_tb = {1, AudioTrack::kRate};
  if (spec.audio_codec != "aac" && spec.audio_codec != "opus")
    return Status::Error("unsupported audio codec '" + spec.audio_codec + "'");
  const AVCodecID audio_codec = ext == ".mov"                ? AV_CODEC_ID_PCM_S16LE
                                : spec.audio_codec == "opus" ? AV_CODEC_ID_OPUS
                                                             : AV_CODEC_ID_AAC;
  if (spec.audio_track && ext != ".mov" && !spec.audio_file.empty()) {
    track = spec.audio_track.get();
    if (track->frames != spec.frames || track->fps.num != spec.fps.num ||
        track->fps.den != spec.fps.den || track->offset_seconds != spec.audio_offset_seconds ||
        track->codec != spec.audio_codec)
      return Status::Error("the encoded audio track was made for another length, offset or codec");
    ast = avformat_new_stream(out.get(), nullptr);
    AVCodecParameters* p = ast->codecpar;
    p->codec_type = AVMEDIA_TYPE_AUDIO;
    p->codec_id = audio_codec;
    p->format = audio_codec == AV_CODEC_ID_AAC ? AV_SAMPLE_FMT_FLTP : AV_SAMPLE_FMT_S16;
    p->sample_rate = AudioTrack::kRate;
    av_channel_layout_default(&p->ch_layout, 2);
    p->bit_rate = track->bit_rate;
    p->frame_size = track->frame_size;
    p->initial_padding = track->initial_padding;
    p->extradata =
        static_cast<uint8_t*>(av_mallocz(track->extradata.size() + AV_INPUT_BUFFER_PADDING_SIZE));
    if (!p->extradata) return Status::Error("out of memory for audio");
    std::memcpy(p->extradata, track->extradata.data(), track->extradata.size());
    p->extradata_size = static_cast<int>(track->extradata.size());
    ast->time_base = audio_tb;
  } else if (!spec.audio_file.empty()) {
    audio.emplace();
    Status s = audio->Open(spec.audio_file, AudioSamples(spec), AudioOffsetSamples(spec),
                           audio_codec, out->oformat->flags & AVFMT_GLOBALHEADER);
    if (!s.ok()) return s;
    ast = avformat_new_stream(out.get(), nullptr);
    avcodec_parameters_from_context(ast->codecpar, audio->encoder());
    ast->time_base = audio_tb;
  }
  // (ast's time base is the muxer's once the header is written.)
  AVFormatContext* muxer = out.get();
  auto write_audio = [&](AVPacket* pkt) {
    av_packet_rescale_ts(pkt, audio_tb, ast->time_base);
    pkt->stream_index = ast->index;
    const int err = av_interleaved_write_frame(muxer, pkt);
    return err < 0 ? Fail("writing audio failed", err) : Status::Ok();
  };
  PacketPtr copy(av_packet_alloc());
  auto audio_done = [&] {
    return track ? track_next >= track->packets.size() : !audio || audio->finished();
  };
  auto audio_seconds = [&] {
    if (!track) return audio ? audio->position_seconds() : 1e300;
    return track_next < track->packets.size()
               ? static_cast<double>(track->packets[track_next].pts) / AudioTrack::kRate
               : 1e300;
  };
  // The next audio packet out: the track's next, or what encoding the next samples gives.
  auto pump_audio = [&]() -> Status {
    if (!track) return audio->Pump(write_audio);
    const EncodedAudio::Packet& p = track->packets[track_next++];
    av_packet_unref(copy.get());
    if (av_new_packet(copy.get(), static_cast<int>(p.data.size())) < 0)
      return Status::Error("out of memory for audio");
    std::memcpy(copy->data, p.data.data(), p.data.size());
    copy->pts = p.pts;
    copy->dts = p.dts;
    copy->duration = p.duration;
    copy->flags = p.flags;
    return write_audio(copy.get());
  };
  err = avio_open(&out->pb, tmp.c_str(), AVIO_FLAG_WRITE);
  if (err < 0) return Fail("cannot create '" + tmp + "'", err);
  AVDictionary* mux = nullptr;
  if (std::string(format) != "matroska") av_dict_set(&mux, "movflags", "+write_colr", 0);
  err = avformat_write_header(out.get(), &mux);
  av_dict_free(&mux);
  if (err < 0) return Fail("cannot write the output header", err);

  PacketPtr pkt(av_packet_alloc());
  for (size_t c = 0; c < spec.chunk_files.size(); ++c) {
    InputPtr in = OpenInput(spec.chunk_files[c], &error);
    if (!in) return Status::Error("cannot open chunk " + std::to_string(c) + ": " + error);
    AVStream* ist = in->streams[0];
    const int64_t offset = av_rescale_q(spec.chunk_starts[c], frame_tb, ist->time_base);
    int64_t frames = 0;
    while ((err = av_read_frame(in.get(), pkt.get())) >= 0) {
      if (pkt->stream_index != 0) {  // a chunk holds one video stream; anything else is not ours
        av_packet_unref(pkt.get());
        continue;
      }
      if (spec.chunk_starts[c] + frames++ >= ChunkEnd(spec, c)) return TooManyFrames(spec, c);
      if (pkt->pts != AV_NOPTS_VALUE) pkt->pts += offset;
      if (pkt->dts != AV_NOPTS_VALUE) pkt->dts += offset;
      av_packet_rescale_ts(pkt.get(), ist->time_base, vst->time_base);
      pkt->stream_index = vst->index;
      pkt->pos = -1;
      const double t = pkt->dts == AV_NOPTS_VALUE ? 0 : pkt->dts * av_q2d(vst->time_base);
      err = av_interleaved_write_frame(out.get(), pkt.get());
      if (err < 0) return Fail("writing video failed", err);
      // Keep the audio up with the picture so the muxer buffers little.
      while (!audio_done() && audio_seconds() < t + 1.0) {
        Status s = pump_audio();
        if (!s.ok()) return s;
      }
    }
    if (err != AVERROR_EOF) return Fail("reading chunk " + std::to_string(c) + " failed", err);
    if (spec.chunk_starts[c] + frames != ChunkEnd(spec, c)) return TooFewFrames(spec, c, frames);
  }
  while (!audio_done()) {
    Status s = pump_audio();
    if (!s.ok()) return s;
  }
  err = av_write_trailer(out.get());
  if (err < 0) return Fail("cannot finish the output", err);
  return Status::Ok();
}

}  // namespace

Status AssembleOutput(const AssembleSpec& spec) {
  av_log_set_level(AV_LOG_ERROR);
  if (spec.chunk_files.empty()) return Status::Error("no chunks to assemble");
  if (!KnownCodec(spec.codec)) return Status::Error("unsupported codec '" + spec.codec + "'");
  fs::path final_path = fs::path(spec.output_path);
  if (!final_path.has_filename()) final_path = final_path.parent_path();  // "out/frames/"
  std::error_code ec;
  if (fs::exists(final_path, ec) && !spec.replace)
    return Status::Error("'" + final_path.string() +
                         "' exists (set output.overwrite: true to replace it)");
  fs::create_directories(final_path.parent_path(), ec);
  if (ec)
    return Status::Error("cannot create '" + final_path.parent_path().string() +
                         "': " + ec.message());
  const bool folder = spec.codec == "png";
  const std::string ext = folder ? "" : final_path.extension().string();
  const fs::path tmp = final_path.parent_path() / ("." + final_path.filename().string() +
                                                   ".partial-" + std::to_string(getpid()) + ext);
  // What an assembly killed half-way left (its .partial and .old siblings, under any process
  // id) goes first: a crash during stitching leaves nothing behind once the job is assembled.
  const std::string partial = "." + final_path.filename().string() + ".partial-";
  const std::string old_side = "." + final_path.filename().string() + ".old-";
  for (const auto& e : fs::directory_iterator(final_path.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(partial, 0) == 0 || name.rfind(old_side, 0) == 0) {
      std::error_code rm;
      fs::remove_all(e.path(), rm);
    }
  }
  Status result = folder ? WriteImageSequence(spec, tmp) : WriteVideoFile(spec, tmp.string(), ext);
  if (!result.ok()) {
    fs::remove_all(tmp, ec);
    return result;
  }
  // Into place. A folder cannot be renamed over a non-empty one: the old one steps aside first.
  const fs::path old = final_path.parent_path() /
                       ("." + final_path.filename().string() + ".old-" + std::to_string(getpid()));
  const bool had_folder = fs::is_directory(final_path, ec);
  if (had_folder) fs::rename(final_path, old, ec);
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    if (had_folder) fs::rename(old, final_path, ec);
    return Status::Error("cannot move the output into place at '" + final_path.string() + "'");
  }
  if (had_folder) fs::remove_all(old, ec);
  return Status::Ok();
}

size_t EncodedAudio::bytes() const {
  size_t n = extradata.size();
  for (const Packet& p : packets) n += p.data.size() + sizeof(Packet);
  return n;
}

Result<std::shared_ptr<const EncodedAudio>> EncodeAudioTrack(const std::string& audio_file,
                                                             int64_t frames, Rational fps,
                                                             double offset_seconds,
                                                             const std::string& codec) {
  if (codec != "aac" && codec != "opus")
    return Status::Error("unsupported audio codec '" + codec + "'");
  AssembleSpec spec;
  spec.frames = frames;
  spec.fps = fps;
  spec.audio_offset_seconds = offset_seconds;
  AudioTrack audio;
  // With a global header, as the .mp4 and .mkv muxers want it.
  Status s = audio.Open(audio_file, AudioSamples(spec), AudioOffsetSamples(spec),
                        codec == "opus" ? AV_CODEC_ID_OPUS : AV_CODEC_ID_AAC, true);
  if (!s.ok()) return s;
  auto track = std::make_shared<EncodedAudio>();
  track->codec = codec;
  const AVCodecContext* enc = audio.encoder();
  track->extradata.assign(reinterpret_cast<const char*>(enc->extradata),
                          static_cast<size_t>(std::max(0, enc->extradata_size)));
  track->frame_size = enc->frame_size;
  track->initial_padding = enc->initial_padding;
  track->bit_rate = enc->bit_rate;
  track->frames = frames;
  track->fps = fps;
  track->offset_seconds = offset_seconds;
  auto keep = [&](AVPacket* pkt) {
    EncodedAudio::Packet p;
    p.data.assign(reinterpret_cast<const char*>(pkt->data), static_cast<size_t>(pkt->size));
    p.pts = pkt->pts;
    p.dts = pkt->dts;
    p.duration = pkt->duration;
    p.flags = pkt->flags;
    track->packets.push_back(std::move(p));
    return Status::Ok();
  };
  while (!audio.finished()) {
    s = audio.Pump(keep);
    if (!s.ok()) return s;
  }
  return std::shared_ptr<const EncodedAudio>(std::move(track));
}

Result<int64_t> CountChunkFrames(std::string_view container) {
  using R = Result<int64_t>;
  av_log_set_level(AV_LOG_ERROR);
  struct Reader {
    std::string_view data;
    size_t at = 0;
    static int Read(void* opaque, uint8_t* buf, int size) {
      auto* r = static_cast<Reader*>(opaque);
      const size_t n = std::min(static_cast<size_t>(size), r->data.size() - r->at);
      if (n == 0) return AVERROR_EOF;
      std::memcpy(buf, r->data.data() + r->at, n);
      r->at += n;
      return static_cast<int>(n);
    }
    static int64_t Seek(void* opaque, int64_t offset, int whence) {
      auto* r = static_cast<Reader*>(opaque);
      const int64_t size = static_cast<int64_t>(r->data.size());
      if (whence & AVSEEK_SIZE) return size;
      const int64_t base = (whence & 3) == SEEK_CUR   ? static_cast<int64_t>(r->at)
                           : (whence & 3) == SEEK_END ? size
                                                      : 0;
      const int64_t to = base + offset;
      if (to < 0 || to > size) return -1;
      r->at = static_cast<size_t>(to);
      return to;
    }
  } reader{container};
  constexpr int kBuffer = 1 << 16;
  auto* buffer = static_cast<uint8_t*>(av_malloc(kBuffer));
  if (!buffer) return R::Error("out of memory");
  AVIOContext* io =
      avio_alloc_context(buffer, kBuffer, 0, &reader, &Reader::Read, nullptr, &Reader::Seek);
  if (!io) {
    av_free(buffer);
    return R::Error("out of memory");
  }
  AVFormatContext* ctx = avformat_alloc_context();
  ctx->pb = io;
  ctx->flags |= AVFMT_FLAG_CUSTOM_IO;
  int err = avformat_open_input(&ctx, nullptr, nullptr, nullptr);  // frees ctx on failure
  int64_t frames = 0;
  std::string problem;
  if (err < 0) {
    problem = "not a container FFmpeg reads (" + AvError(err) + ")";
  } else {
    InputPtr in(ctx);
    if (in->nb_streams != 1 || in->streams[0]->codecpar->codec_type != AVMEDIA_TYPE_VIDEO) {
      problem = "expected one video stream, found " + std::to_string(in->nb_streams) + " streams";
    } else {
      PacketPtr pkt(av_packet_alloc());
      while ((err = av_read_frame(in.get(), pkt.get())) >= 0) {
        ++frames;
        av_packet_unref(pkt.get());
      }
      if (err != AVERROR_EOF) problem = "reading it failed (" + AvError(err) + ")";
    }
  }
  av_freep(&io->buffer);
  avio_context_free(&io);
  if (!problem.empty()) return R::Error(problem);
  return frames;
}

Status WritePng(const std::string& path, const uint8_t* rgb, int width, int height) {
  av_log_set_level(AV_LOG_ERROR);
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
  if (!codec) return Status::Error("this FFmpeg has no PNG encoder");
  CodecPtr enc(avcodec_alloc_context3(codec));
  enc->width = width;
  enc->height = height;
  enc->pix_fmt = AV_PIX_FMT_RGB24;
  enc->time_base = {1, 1};
  int err = avcodec_open2(enc.get(), codec, nullptr);
  if (err < 0) return Fail("cannot open the PNG encoder", err);
  FramePtr frame(av_frame_alloc());
  frame->format = AV_PIX_FMT_RGB24;
  frame->width = width;
  frame->height = height;
  if (av_frame_get_buffer(frame.get(), 0) < 0) return Status::Error("out of memory for a picture");
  for (int y = 0; y < height; ++y)
    std::memcpy(frame->data[0] + static_cast<size_t>(y) * frame->linesize[0],
                rgb + static_cast<size_t>(y) * width * 3, static_cast<size_t>(width) * 3);
  frame->pts = 0;
  err = avcodec_send_frame(enc.get(), frame.get());
  if (err >= 0) err = avcodec_send_frame(enc.get(), nullptr);
  PacketPtr pkt(av_packet_alloc());
  if (err >= 0) err = avcodec_receive_packet(enc.get(), pkt.get());
  if (err < 0) return Fail("PNG encoding failed", err);
  const std::string tmp = path + ".partial-" + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::Error("cannot write '" + path + "'");
  const bool ok = std::fwrite(pkt->data, 1, static_cast<size_t>(pkt->size), f) ==
                  static_cast<size_t>(pkt->size);
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return Status::Error("cannot write '" + path + "'");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return Status::Error("cannot write '" + path + "': " + ec.message());
  }
  return Status::Ok();
}

Result<std::string> EncodeThumbnailJpeg(const uint8_t* rgb, int width, int height, int max_width) {
  using R = Result<std::string>;
  if (width <= 0 || height <= 0 || max_width < 2) return R::Error("no picture to shrink");
  av_log_set_level(AV_LOG_ERROR);
  const int tw = std::max(2, std::min(width, max_width) & ~1);
  const int th = std::max(2, static_cast<int>(std::lround(1.0 * height * tw / width)) & ~1);
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_MJPEG);
  if (!codec) return R::Error("this FFmpeg has no JPEG encoder");
  CodecPtr enc(avcodec_alloc_context3(codec));
  enc->width = tw;
  enc->height = th;
  enc->pix_fmt = AV_PIX_FMT_YUVJ420P;
  enc->time_base = {1, 1};
  enc->flags |= AV_CODEC_FLAG_QSCALE;
  enc->global_quality = FF_QP2LAMBDA * 4;
  int err = avcodec_open2(enc.get(), codec, nullptr);
  if (err < 0) return R::Error("cannot open the JPEG encoder");
  FramePtr frame(av_frame_alloc());
  frame->format = AV_PIX_FMT_YUVJ420P;
  frame->width = tw;
  frame->height = th;
  frame->quality = enc->global_quality;
  if (av_frame_get_buffer(frame.get(), 0) < 0) return R::Error("out of memory for a picture");
  SwsPtr sws(sws_getContext(width, height, AV_PIX_FMT_RGB24, tw, th, AV_PIX_FMT_YUVJ420P, SWS_AREA,
                            nullptr, nullptr, nullptr));
  if (!sws) return R::Error("cannot scale the picture");
  const uint8_t* src[1] = {rgb};
  const int stride[1] = {width * 3};
  sws_scale(sws.get(), src, stride, 0, height, frame->data, frame->linesize);
  frame->pts = 0;
  err = avcodec_send_frame(enc.get(), frame.get());
  if (err >= 0) err = avcodec_send_frame(enc.get(), nullptr);
  PacketPtr pkt(av_packet_alloc());
  if (err >= 0) err = avcodec_receive_packet(enc.get(), pkt.get());
  if (err < 0) return R::Error("JPEG encoding failed");
  return std::string(reinterpret_cast<const char*>(pkt->data), static_cast<size_t>(pkt->size));
}

bool LooksLikeJpeg(std::string_view bytes) {
  return bytes.size() >= 4 && static_cast<uint8_t>(bytes[0]) == 0xFF &&
         static_cast<uint8_t>(bytes[1]) == 0xD8 && static_cast<uint8_t>(bytes[2]) == 0xFF &&
         static_cast<uint8_t>(bytes[bytes.size() - 2]) == 0xFF &&
         static_cast<uint8_t>(bytes[bytes.size() - 1]) == 0xD9;
}

Result<RgbPicture> DecodeJpeg(std::string_view jpeg) {
  using R = Result<RgbPicture>;
  constexpr size_t kMaxBytes = 64u << 20;
  if (jpeg.size() > kMaxBytes)
    return R::Error("a JPEG picture of " + std::to_string(jpeg.size()) + " bytes: at most 64 MiB");
  if (!LooksLikeJpeg(jpeg)) return R::Error("not a JPEG picture (no start and end markers)");
  av_log_set_level(AV_LOG_ERROR);
  const AVCodec* codec = avcodec_find_decoder(AV_CODEC_ID_MJPEG);
  if (!codec) return R::Error("this FFmpeg has no JPEG decoder");
  CodecPtr dec(avcodec_alloc_context3(codec));
  if (!dec) return R::Error("out of memory for a JPEG decoder");
  dec->thread_count = 1;
  // The decoder refuses a larger picture from its header, before allocating anything for it.
  dec->max_pixels = int64_t{kMaxJpegSide} * kMaxJpegSide;
  if (avcodec_open2(dec.get(), codec, nullptr) < 0) return R::Error("cannot open the JPEG decoder");
  // av_new_packet pads the copy as the decoder requires (AV_INPUT_BUFFER_PADDING_SIZE).
  PacketPtr pkt(av_packet_alloc());
  if (av_new_packet(pkt.get(), static_cast<int>(jpeg.size())) < 0)
    return R::Error("out of memory for a picture");
  std::memcpy(pkt->data, jpeg.data(), jpeg.size());
  FramePtr frame(av_frame_alloc());
  int err = avcodec_send_packet(dec.get(), pkt.get());
  if (err >= 0) err = avcodec_send_packet(dec.get(), nullptr);
  if (err >= 0) err = avcodec_receive_frame(dec.get(), frame.get());
  if (err < 0) return Fail("cannot decode the JPEG picture", err);
  const int w = frame->width, h = frame->height;
  if (w <= 0 || h <= 0 || w > kMaxJpegSide || h > kMaxJpegSide)
    return R::Error("the JPEG picture is " + std::to_string(w) + "x" + std::to_string(h) +
                    ": at most " + std::to_string(kMaxJpegSide) + " either way");
  SwsPtr sws;
  std::vector<uint8_t> padded;
  RgbPicture out;
  Status converted = FrameToRgb(frame.get(), SWS_POINT, sws, padded, out.rgb);
  if (!converted.ok()) return converted;
  out.width = w;
  out.height = h;
  return out;
}

Status ReadVideoFrames(const std::string& given,
                       const std::function<void(int64_t, const uint8_t*, int, int)>& on_frame) {
  std::error_code ec;
  const std::string path =
      fs::is_directory(given, ec) ? (fs::path(given) / "frame_%06d.png").string() : given;
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
  std::vector<uint8_t> padded, rgb;  // a frame's conversion, and its picture (FrameToRgb)
  int64_t index = 0;
  auto drain = [&]() -> Status {
    while (true) {
      int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return Status::Ok();
      if (r < 0) return Fail("decoding failed", r);
      Status converted = FrameToRgb(frame.get(), SWS_BICUBIC, sws, padded, rgb);
      if (!converted.ok()) return converted;
      on_frame(index++, rgb.data(), frame->width, frame->height);
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
