// Cap'n Proto messages: round trips and the reading limits.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "common/protocol/protocol.h"

namespace segue {
namespace {

TEST(Protocol, EndpointsAreCheckedWithTheProblemNamed) {
  for (const char* good :
       {"tcp://127.0.0.1:7450", "tcp://*:0", "tcp://[::1]:7450", "tcp://coord.example.com:7450",
        "tcp://127.0.0.1:*", "ipc:///tmp/x", "inproc://a"})
    EXPECT_TRUE(CheckEndpoint(good).ok()) << good;
  const std::pair<const char*, const char*> bad[] = {
      {"127.0.0.1:7450", "no tcp:// before it"},
      {"http://127.0.0.1:7450", "'http://' is not tcp://, ipc:// or inproc://"},
      {"tcp://127.0.0.1", "no HOST:PORT after tcp://"},
      {"tcp://127.0.0.1:70000", "the port '70000' is not a number from 0 to 65535"},
      {"tcp://127.0.0.1:99999999999999999999", "is not a number"},
      {"tcp://:7450", "no HOST:PORT"},
      {"ipc://", "no path after ipc://"},
      {"", "no tcp:// before it"}};
  for (const auto& [endpoint, why] : bad) {
    Status s = CheckEndpoint(endpoint);
    ASSERT_FALSE(s.ok()) << endpoint;
    EXPECT_NE(s.message().find(why), std::string::npos) << s.message();
    EXPECT_NE(s.message().find("expected tcp://HOST:PORT"), std::string::npos) << s.message();
  }
}

TEST(Protocol, RenderTaskRoundTrip) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::Envelope>().initAssignment().initRender();
  t.setJobId(7);
  t.setSegment(3);
  t.setAttempt(2);
  t.setModel("zoom");
  t.setSeed(0xfedcba9876543210ULL);
  t.setFpsNum(24000);
  t.setFpsDen(1001);
  auto tl = t.initTimeline(2);
  tl[0].setPrompt("dance");
  tl[1].setFrame(288);
  tl[1].setTransitionFrames(48);
  tl[1].setPrompt("wedding");
  std::string bytes = Serialize(b);
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  ASSERT_TRUE(in.ok()) << in.message();
  auto env = (*in)->envelope();
  ASSERT_TRUE(env.isAssignment());
  auto r = env.getAssignment().getRender();
  EXPECT_EQ(r.getJobId(), 7u);
  EXPECT_EQ(r.getSegment(), 3u);
  EXPECT_EQ(r.getAttempt(), 2u);
  EXPECT_EQ(std::string(r.getModel().cStr()), "zoom");
  EXPECT_EQ(r.getSeed(), 0xfedcba9876543210ULL);
  EXPECT_EQ(r.getFpsDen(), 1001);
  ASSERT_EQ(r.getTimeline().size(), 2u);
  EXPECT_EQ(std::string(r.getTimeline()[1].getPrompt().cStr()), "wedding");
  EXPECT_EQ(r.getTimeline()[1].getTransitionFrames(), 48);
}

TEST(Protocol, TensorRoundTripIsBitExact) {
  Tensor t = Tensor::Zeros({4, 3, 2, 5});
  for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = static_cast<float>(i) * 0.1f - 3.3f;
  t.data[5] = -0.0f;
  capnp::MallocMessageBuilder b;
  auto res = b.initRoot<wire::Envelope>().initRenderResult();
  res.setAttempt(9);
  SetTensor(res.initLatents(), t);
  std::string bytes = Serialize(b);
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  ASSERT_TRUE(in.ok());
  auto back = GetTensor((*in)->envelope().getRenderResult().getLatents());
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->shape, t.shape);
  EXPECT_EQ(0, std::memcmp(back->data.data(), t.data.data(), t.data.size() * 4));
}

TEST(Protocol, SubmitAndStatusRoundTrip) {
  capnp::MallocMessageBuilder b;
  auto s = b.initRoot<wire::Envelope>().initJobStatus();
  s.setState("RUNNING");
  s.setProgress(0.25);
  s.setOutput("/x/y.mp4");
  std::string bytes = Serialize(b);
  auto in = Incoming::Parse(bytes.data(), bytes.size());
  ASSERT_TRUE(in.ok());
  auto r = (*in)->envelope().getJobStatus();
  EXPECT_EQ(std::string(r.getState().cStr()), "RUNNING");
  EXPECT_DOUBLE_EQ(r.getProgress(), 0.25);
}

TEST(Protocol, ParsingInPlaceReadsAlignedBytesWhereTheyAreAndCopiesOthers) {
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initSubmit().setManifestText("version: 1");
  const std::string bytes = Serialize(b);
  std::vector<capnp::word> aligned(bytes.size() / sizeof(capnp::word) + 1);
  char* base = reinterpret_cast<char*>(aligned.data());
  std::memcpy(base, bytes.data(), bytes.size());
  auto in = Incoming::ParseInPlace(base, bytes.size());
  ASSERT_TRUE(in.ok()) << in.message();
  const char* text = (*in)->envelope().getSubmit().getManifestText().cStr();
  EXPECT_EQ(std::string(text), "version: 1");
  EXPECT_TRUE(text >= base && text < base + bytes.size());  // read in place, not copied
  // One byte off a word boundary: parsed from a copy, same content.
  std::vector<capnp::word> spare(aligned.size() + 1);
  char* odd = reinterpret_cast<char*>(spare.data()) + 1;
  std::memcpy(odd, bytes.data(), bytes.size());
  auto copied = Incoming::ParseInPlace(odd, bytes.size());
  ASSERT_TRUE(copied.ok()) << copied.message();
  const char* t2 = (*copied)->envelope().getSubmit().getManifestText().cStr();
  EXPECT_EQ(std::string(t2), "version: 1");
  EXPECT_FALSE(t2 >= odd && t2 < odd + bytes.size());
  // The same checks as Parse.
  EXPECT_FALSE(Incoming::ParseInPlace(base, bytes.size() - 8).ok());
  EXPECT_FALSE(Incoming::ParseInPlace(base, 0).ok());
}

TEST(Protocol, RejectsGarbageTruncationAndOversize) {
  EXPECT_FALSE(Incoming::Parse("", 0).ok());
  std::string noise = "this is definitely not a capnp message!!";  // 40 bytes: word-aligned garbage
  auto r = Incoming::Parse(noise.data(), noise.size());
  EXPECT_FALSE(r.ok());
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Envelope>().initSubmit().setManifestText(std::string(1000, 'x'));
  std::string bytes = Serialize(b);
  EXPECT_FALSE(Incoming::Parse(bytes.data(), bytes.size() - 8).ok());  // truncated
  EXPECT_FALSE(Incoming::Parse(bytes.data(), bytes.size() - 3).ok());  // not whole words
  EXPECT_FALSE(Incoming::Parse(bytes.data(), WireLimits::kMaxMessageBytes + 8).ok());
}

TEST(Protocol, BadTensorsAreErrorsNotCrashes) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::TensorData>();
  t.setDtype("f32");
  auto shape = t.initShape(2);
  shape.set(0, 10);
  shape.set(1, 10);
  t.setData(kj::heapArray<kj::byte>(12));  // 3 floats for a 100-element shape
  EXPECT_FALSE(GetTensor(t.asReader()).ok());
  t.setDtype("f64");
  EXPECT_FALSE(GetTensor(t.asReader()).ok());
  shape.set(0, -1);
  t.setDtype("f32");
  EXPECT_FALSE(GetTensor(t.asReader()).ok());
  // A zero dimension and no data: an empty tensor (assignment_fuzz found the empty copy, UB).
  shape.set(0, 0);
  t.setData(kj::heapArray<kj::byte>(0));
  for (const char* dtype : {"f32", "f16"}) {
    t.setDtype(dtype);
    auto empty = GetTensor(t.asReader());
    ASSERT_TRUE(empty.ok()) << empty.message();
    EXPECT_TRUE(empty->data.empty());
    EXPECT_EQ(empty->shape, (std::vector<int64_t>{0, 10}));
  }
}

// A model's metadata crosses the wire whole, and a peer's nonsense is refused with the model and
// the field named, never taken: the coordinator plans every job of that model from it.
TEST(Protocol, ModelSpecsRoundTripAndNonsenseIsRefused) {
  for (const model::ModelMetadata& m : model::BuiltinMetadataList()) {
    capnp::MallocMessageBuilder b;
    SetModelSpec(b.initRoot<wire::ModelSpec>(), m);
    auto back = ModelSpecFrom(b.getRoot<wire::ModelSpec>().asReader());
    ASSERT_TRUE(back.ok()) << back.message();
    EXPECT_EQ(*back, m) << model::MetadataDifference(*back, m);
  }
  model::ModelMetadata wan;
  wan.name = "wan";
  wan.temporal_compression = 4;
  wan.native_frames = {81};
  struct Bad {
    std::function<void(wire::ModelSpec::Builder)> spoil;
    std::string says;
  };
  const std::vector<Bad> cases = {
      {[](auto s) { s.setTemporalCompression(3); }, "temporal_compression must be 1, 4, 6 or 8"},
      {[](auto s) { s.setTemporalCompression(0xffffffffu); }, "temporal_compression"},
      {[](auto s) { s.initNativeFrames(1).set(0, 80); }, "80 is not 1 + 4 k frames"},
      {[](auto s) { s.initNativeFrames(0); }, "native_frames must name at least one"},
      {[](auto s) { s.initNativeFrames(100); }, "too many native lengths"},
      {[](auto s) { s.setSpatialCompression(0); }, "spatial_compression"},
      {[](auto s) { s.setLatentChannels(1u << 30); }, "latent_channels"},
      {[](auto s) { s.setNativeFps(std::nan("")); }, "native_fps"},
      {[](auto s) { s.setOutputMax(-5); }, "output range"},
      {[](auto s) { s.setDecodeContextBefore(1000); }, "decode context"},
      {[](auto s) { s.setConditioning("per-galaxy"); },
       "conditioning must be per-frame or per-clip"},
      {[](auto s) { s.setName(""); }, "without a valid name"},
  };
  for (const Bad& c : cases) {
    capnp::MallocMessageBuilder b;
    auto spec = b.initRoot<wire::ModelSpec>();
    SetModelSpec(spec, wan);
    c.spoil(spec);
    auto got = ModelSpecFrom(spec.asReader());
    ASSERT_FALSE(got.ok()) << c.says;
    EXPECT_NE(got.message().find(c.says), std::string::npos) << got.message();
  }
}

}  // namespace
}  // namespace segue
