// Half precision: the co-denoising exchange's wire format. The CPU's F16C path and the portable
// path must give the same bits, and both must round as IEEE 754 says (checked against the
// compiler's own _Float16 conversion, an independent implementation).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "common/protocol/protocol.h"
#include "common/tensor/half.h"

namespace segue {
namespace {

uint16_t Reference(float f) {
  _Float16 h = static_cast<_Float16>(f);
  uint16_t bits;
  std::memcpy(&bits, &h, 2);
  return bits;
}

bool IsNanBits(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0; }

TEST(Half, EveryHalfWidensExactlyAndNarrowsBack) {
  std::vector<uint16_t> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> fast(all.size()), portable(all.size());
  HalvesToFloats(all.data(), fast.data(), all.size());
  HalvesToFloatsPortable(all.data(), portable.data(), all.size());
  std::vector<uint16_t> back(all.size()), back_portable(all.size());
  FloatsToHalves(fast.data(), back.data(), all.size());
  FloatsToHalvesPortable(fast.data(), back_portable.data(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const uint16_t h = all[i];
    _Float16 ref;
    std::memcpy(&ref, &h, 2);
    if (IsNanBits(h)) {
      EXPECT_TRUE(std::isnan(fast[i]) && std::isnan(portable[i])) << std::hex << h;
      EXPECT_TRUE(IsNanBits(back[i]) && IsNanBits(back_portable[i])) << std::hex << h;
      continue;
    }
    EXPECT_EQ(std::memcmp(&fast[i], &portable[i], 4), 0) << std::hex << h;
    EXPECT_EQ(fast[i], static_cast<float>(ref)) << std::hex << h;
    EXPECT_EQ(back[i], h) << std::hex << h;
    EXPECT_EQ(back_portable[i], h) << std::hex << h;
  }
}

TEST(Half, FloatsRoundToNearestEvenLikeTheCompiler) {
  std::vector<float> v = {0.f,        -0.f,       1.f,        65504.f,  65519.f,      65520.f,
                          65536.f,    1e9f,       -1e9f,      INFINITY, -INFINITY,    0x1p-24f,
                          0x1p-25f,   0x1.8p-25f, 0x1.8p-24f, 0x1p-14f, 0x1.ffcp-15f, 0x1.002p0f,
                          0x1.006p0f, 0x1.001p0f, 1e-10f,     -3.14159f};
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t b = bits(rng);
    float f;
    std::memcpy(&f, &b, 4);
    if (!std::isnan(f)) v.push_back(f);
  }
  std::normal_distribution<float> latent(0.f, 3.f);
  for (int i = 0; i < 100000; ++i) v.push_back(latent(rng));
  std::vector<uint16_t> fast(v.size()), portable(v.size());
  FloatsToHalves(v.data(), fast.data(), v.size());
  FloatsToHalvesPortable(v.data(), portable.data(), v.size());
  int wrong = 0;
  for (size_t i = 0; i < v.size() && wrong < 10; ++i) {
    const uint16_t want = Reference(v[i]);
    if (fast[i] != want || portable[i] != want) {
      ++wrong;
      ADD_FAILURE() << std::hexfloat << v[i] << ": want " << std::hex << want << " fast " << fast[i]
                    << " portable " << portable[i];
    }
  }
  // Rounding in place is the same as the round trip.
  std::vector<float> rounded = v;
  RoundToHalves(rounded.data(), rounded.size());
  std::vector<float> widened(v.size());
  HalvesToFloats(fast.data(), widened.data(), fast.size());
  EXPECT_EQ(std::memcmp(rounded.data(), widened.data(), v.size() * 4), 0);
}

TEST(Half, WireTensorsCarryHalvesAndSayWhatIsWrong) {
  capnp::MallocMessageBuilder b;
  auto t = b.initRoot<wire::TensorData>();
  const std::vector<float> values = {1.f, -2.5f, 0.1f, 1000.3f, 3.f, 7.f};
  SetTensorHalf(t, {2, 3}, values.data());
  EXPECT_EQ(std::string(t.getDtype().cStr()), "f16");
  EXPECT_EQ(t.getData().size(), 12u);
  auto back = GetTensor(t.asReader());
  ASSERT_TRUE(back.ok()) << back.message();
  EXPECT_EQ(back->shape, (std::vector<int64_t>{2, 3}));
  std::vector<float> want = values;
  RoundToHalves(want.data(), want.size());
  EXPECT_EQ(back->data, want);
  EXPECT_NE(back->data[2], 0.1f);  // 0.1 is not a half: the wire rounded it

  t.initData(10);  // one element short
  auto bad = GetTensor(t.asReader());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("10 bytes"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("needs 12"), std::string::npos) << bad.message();
  t.setDtype("bf16");
  bad = GetTensor(t.asReader());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("'bf16'"), std::string::npos) << bad.message();
}

}  // namespace
}  // namespace segue
