// The takes sheet made of thumbnails (tools/cli/contact_sheet.h): each JPEG in its cell, as it
// is; a missing or broken one leaves its cell dark and is reported, never fails the sheet; a
// sheet with nothing to show is not written.
#include "tools/cli/contact_sheet.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "common/media/video.h"
#include "common/util/temp_dir.h"

namespace segue {
namespace {

// A 32x16 thumbnail of one flat colour.
std::string Flat(uint8_t r, uint8_t g, uint8_t b) {
  std::vector<uint8_t> rgb;
  for (int i = 0; i < 32 * 16; ++i) rgb.insert(rgb.end(), {r, g, b});
  return *EncodeThumbnailJpeg(rgb.data(), 32, 16);
}

// The mean colour of cell (row, column) of a sheet of 32x16 cells.
std::array<int, 3> CellMean(const std::vector<uint8_t>& sheet, int width, int row, int column) {
  std::array<int64_t, 3> sum = {0, 0, 0};
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 32; ++x)
      for (int k = 0; k < 3; ++k)
        sum[k] += sheet[(static_cast<size_t>(kSheetGap + row * (16 + kSheetGap) + y) * width +
                         kSheetGap + column * (32 + kSheetGap) + x) *
                            3 +
                        k];
  return {int(sum[0] / 512), int(sum[1] / 512), int(sum[2] / 512)};
}

TEST(ThumbnailSheet, EachThumbnailInItsCellAndTheDarkOnesSaidWhy) {
  TempDir dir;
  const std::string red = Flat(220, 30, 30), blue = Flat(30, 30, 220);
  const std::vector<std::vector<std::string>> rows = {
      {red, "", blue},
      {"\xff\xd8 broken \xff\xd9", blue, red, red, red, red, red /* a 7th: not shown */}};
  std::vector<DarkCell> dark;
  auto layout = WriteThumbnailSheet(rows, dir / "s.png", 160, &dark);
  ASSERT_TRUE(layout.ok()) << layout.message();
  EXPECT_EQ(layout->cell_width, 32);
  EXPECT_EQ(layout->cell_height, 16);
  ASSERT_EQ(dark.size(), 2u);
  EXPECT_EQ(dark[0].row, 0u);
  EXPECT_EQ(dark[0].column, 1);
  EXPECT_EQ(dark[0].why, "");
  EXPECT_EQ(dark[1].row, 1u);
  EXPECT_EQ(dark[1].column, 0);
  EXPECT_NE(dark[1].why.find("JPEG"), std::string::npos) << dark[1].why;

  int pictures = 0;
  Status s = ReadVideoFrames(dir / "s.png", [&](int64_t, const uint8_t* rgb, int w, int h) {
    ++pictures;
    ASSERT_EQ(w, layout->width);
    ASSERT_EQ(h, layout->height);
    const std::vector<uint8_t> sheet(rgb, rgb + static_cast<size_t>(w) * h * 3);
    auto near = [](std::array<int, 3> got, std::array<int, 3> want) {
      for (int k = 0; k < 3; ++k)
        if (std::abs(got[k] - want[k]) > 6) return false;
      return true;
    };
    const std::array<int, 3> r = {220, 30, 30}, b = {30, 30, 220}, none = {32, 32, 32};
    EXPECT_TRUE(near(CellMean(sheet, w, 0, 0), r));
    EXPECT_TRUE(near(CellMean(sheet, w, 0, 1), none));
    EXPECT_TRUE(near(CellMean(sheet, w, 0, 2), b));
    for (int c = 3; c < kSheetColumns; ++c) EXPECT_TRUE(near(CellMean(sheet, w, 0, c), none)) << c;
    EXPECT_TRUE(near(CellMean(sheet, w, 1, 0), none));
    EXPECT_TRUE(near(CellMean(sheet, w, 1, 1), b));
    for (int c = 2; c < kSheetColumns; ++c) EXPECT_TRUE(near(CellMean(sheet, w, 1, c), r)) << c;
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(pictures, 1);

  // Nothing to show: an error naming the first cell's problem, and no file.
  auto none = WriteThumbnailSheet({{"", "not a jpeg"}}, dir / "none.png", 160, &dark);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.message().find("none of 2 thumbnails could be shown; the first (row 1, cell 1): "
                                "there is none yet"),
            std::string::npos)
      << none.message();
  EXPECT_EQ(dark.size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(dir / "none.png"));
}

}  // namespace
}  // namespace segue
