#include "tools/cli/contact_sheet.h"

#include <algorithm>
#include <map>

#include "common/media/video.h"

namespace segue {
namespace {

// Sizes `layout` for `rows` rows of cells from frames of w x h, and the sheet's pixels to match.
void SizeSheet(SheetLayout& layout, size_t rows, int w, int h, int thumb_width,
               std::vector<uint8_t>& sheet) {
  layout.cell_width = std::min(w, std::max(16, thumb_width));
  layout.cell_height = std::max(1, h * layout.cell_width / w);
  layout.width = kSheetColumns * layout.cell_width + (kSheetColumns + 1) * kSheetGap;
  layout.height = static_cast<int>(rows) * (layout.cell_height + kSheetGap) + kSheetGap;
  sheet.assign(static_cast<size_t>(layout.width) * layout.height * 3, 32);
}

// Draws the w x h RGB frame `rgb` into cell (row r, column c), box-filtered down to the cell.
void DrawCell(const SheetLayout& layout, std::vector<uint8_t>& sheet, size_t r, int c,
              const uint8_t* rgb, int w, int h) {
  const int cw = layout.cell_width, ch = layout.cell_height;
  const int x0 = kSheetGap + c * (cw + kSheetGap);
  const int y0 = kSheetGap + static_cast<int>(r) * (ch + kSheetGap);
  for (int y = 0; y < ch; ++y) {
    const int sy0 = y * h / ch, sy1 = std::max(sy0 + 1, (y + 1) * h / ch);
    for (int x = 0; x < cw; ++x) {
      const int sx0 = x * w / cw, sx1 = std::max(sx0 + 1, (x + 1) * w / cw);
      int64_t sum[3] = {0, 0, 0}, n = 0;  // 64 bits: a cell may stand for a whole big picture
      for (int sy = sy0; sy < std::min(sy1, h); ++sy)
        for (int sx = sx0; sx < std::min(sx1, w); ++sx, ++n)
          for (int k = 0; k < 3; ++k) sum[k] += rgb[(static_cast<size_t>(sy) * w + sx) * 3 + k];
      uint8_t* d = &sheet[(static_cast<size_t>(y0 + y) * layout.width + x0 + x) * 3];
      for (int k = 0; k < 3; ++k) d[k] = static_cast<uint8_t>(n ? sum[k] / n : 0);
    }
  }
}

}  // namespace

std::vector<SheetRow> SheetRows(const std::vector<SegmentSpan>& segments, int64_t frames,
                                int max_rows) {
  std::vector<SheetRow> rows;
  const size_t joins = segments.size() > 1 ? segments.size() - 1 : 0;
  if (joins == 0 || frames <= 0 || max_rows <= 0) return rows;
  const size_t step = (joins + static_cast<size_t>(max_rows) - 1) / static_cast<size_t>(max_rows);
  for (size_t j = 0; j < joins; j += step) {
    const int64_t start = segments[j + 1].start, end = std::max(segments[j].end, start + 1);
    const int64_t len = end - start;
    SheetRow row;
    row.left = static_cast<int>(j);
    for (int64_t f : {start - 1, start, start + len / 3, start + 2 * len / 3, end - 1, end})
      row.frames.push_back(std::clamp<int64_t>(f, 0, frames - 1));
    rows.push_back(std::move(row));
  }
  return rows;
}

Result<SheetLayout> WriteContactSheet(const std::string& video,
                                      const std::vector<SegmentSpan>& segments,
                                      const std::string& png_path, int thumb_width, int max_rows) {
  using R = Result<SheetLayout>;
  if (segments.empty()) return R::Error("the plan has no segments");
  const int64_t frames = segments.back().end;
  SheetLayout layout;
  layout.rows = SheetRows(segments, frames, max_rows);
  if (layout.rows.empty()) return R::Error("the plan has one segment: there is no join to show");
  // Which cells each frame fills, so the video is decoded once and only thumbnails are kept.
  std::map<int64_t, std::vector<std::pair<size_t, int>>> wanted;
  for (size_t r = 0; r < layout.rows.size(); ++r)
    for (int c = 0; c < kSheetColumns; ++c) wanted[layout.rows[r].frames[c]].push_back({r, c});
  std::vector<uint8_t> sheet;
  int64_t seen = 0;
  Status s = ReadVideoFrames(video, [&](int64_t index, const uint8_t* rgb, int w, int h) {
    seen = index + 1;
    if (sheet.empty()) SizeSheet(layout, layout.rows.size(), w, h, thumb_width, sheet);
    auto it = wanted.find(index);
    if (it == wanted.end()) return;
    for (auto [r, c] : it->second) DrawCell(layout, sheet, r, c, rgb, w, h);
  });
  if (!s.ok()) return s;
  if (seen != frames)
    return R::Error("the video has " + std::to_string(seen) + " frames but the plan has " +
                    std::to_string(frames));
  Status w = WritePng(png_path, sheet.data(), layout.width, layout.height);
  if (!w.ok()) return w;
  return layout;
}

Result<SheetLayout> WriteTakesSheet(const std::vector<TakeRow>& rows, const std::string& png_path,
                                    int thumb_width) {
  using R = Result<SheetLayout>;
  if (rows.empty()) return R::Error("no takes to show");
  // Each video once: which cells each of its frames fills.
  std::map<std::string, std::map<int64_t, std::vector<std::pair<size_t, int>>>> wanted;
  for (size_t r = 0; r < rows.size(); ++r)
    for (size_t c = 0; c < rows[r].frames.size() && c < kSheetColumns; ++c)
      wanted[rows[r].video][rows[r].frames[c]].push_back({r, static_cast<int>(c)});
  SheetLayout layout;
  std::vector<uint8_t> sheet;
  // The first video's frame size sets the cells: takes of one job share it.
  for (const auto& [video, cells] : wanted) {
    Status s = ReadVideoFrames(video, [&](int64_t index, const uint8_t* rgb, int w, int h) {
      if (sheet.empty()) SizeSheet(layout, rows.size(), w, h, thumb_width, sheet);
      auto it = cells.find(index);
      if (it == cells.end()) return;
      for (auto [r, c] : it->second) DrawCell(layout, sheet, r, c, rgb, w, h);
    });
    if (!s.ok()) return R::Error(video + ": " + s.message());
  }
  if (sheet.empty()) return R::Error("the takes' outputs have no frames");
  Status w = WritePng(png_path, sheet.data(), layout.width, layout.height);
  if (!w.ok()) return w;
  return layout;
}

Result<SheetLayout> WriteThumbnailSheet(const std::vector<std::vector<std::string>>& rows,
                                        const std::string& png_path, int thumb_width,
                                        std::vector<DarkCell>* dark) {
  using R = Result<SheetLayout>;
  dark->clear();
  SheetLayout layout;
  std::vector<uint8_t> sheet;
  for (size_t r = 0; r < rows.size(); ++r) {
    for (size_t c = 0; c < rows[r].size() && c < kSheetColumns; ++c) {
      const int column = static_cast<int>(c);
      if (rows[r][c].empty()) {
        dark->push_back({r, column, ""});
        continue;
      }
      auto picture = DecodeJpeg(rows[r][c]);
      if (!picture.ok()) {  // a dark cell: the rest of the sheet is still worth seeing
        dark->push_back({r, column, picture.message()});
        continue;
      }
      if (sheet.empty())
        SizeSheet(layout, rows.size(), picture->width, picture->height, thumb_width, sheet);
      DrawCell(layout, sheet, r, column, picture->rgb.data(), picture->width, picture->height);
    }
  }
  if (sheet.empty()) {
    if (dark->empty()) return R::Error("no thumbnail was asked for");
    const DarkCell& d = dark->front();
    return R::Error("none of " + std::to_string(dark->size()) +
                    " thumbnails could be shown; the first (row " + std::to_string(d.row + 1) +
                    ", cell " + std::to_string(d.column + 1) +
                    "): " + (d.why.empty() ? "there is none yet" : d.why));
  }
  Status w = WritePng(png_path, sheet.data(), layout.width, layout.height);
  if (!w.ok()) return w;
  return layout;
}

}  // namespace segue
