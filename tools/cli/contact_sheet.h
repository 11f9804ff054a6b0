// Contact sheet: the frames around every segment join of a rendered video, as one PNG grid, so a
// person can judge the seams at a glance (`segue contact-sheet`).
//
// One row per join, in timeline order; six cells per row: the frame before the overlap, the
// overlap's first frame, two frames inside it, its last frame and the frame after it (clamped to
// the video). Cells are the frames scaled down to at most `thumb_width` pixels wide (box filter),
// 4 px apart on a dark background.
#pragma once

#include <string>
#include <vector>

#include "common/plan/plan.h"
#include "common/status/status.h"

namespace segue {

constexpr int kSheetColumns = 6;
constexpr int kSheetGap = 4;

struct SheetRow {
  int left = 0;                 // the join between segments left and left + 1
  std::vector<int64_t> frames;  // kSheetColumns frame indices
};

struct SheetLayout {
  std::vector<SheetRow> rows;
  int cell_width = 0, cell_height = 0;
  int width = 0, height = 0;  // the sheet's size in pixels
};

// The rows of a sheet for `segments` over `frames` frames. With more than `max_rows` joins, every
// k-th join is shown (k as small as fits).
std::vector<SheetRow> SheetRows(const std::vector<SegmentSpan>& segments, int64_t frames,
                                int max_rows);

// Decodes `video` (a file, or a png output's folder) and writes the sheet to `png_path`.
Result<SheetLayout> WriteContactSheet(const std::string& video,
                                      const std::vector<SegmentSpan>& segments,
                                      const std::string& png_path, int thumb_width, int max_rows);

// A takes sheet (`segue takes`): one row per take, grouped by section, each row `frames` of
// that take's output (file or png folder): the director compares takes down a column.
struct TakeRow {
  std::string video;
  std::vector<int64_t> frames;  // kSheetColumns frame indices into the video
};
// Decodes each video once and writes the grid of `rows` to `png_path`, cells as above; a frame a
// video does not have stays dark. An error names the video FFmpeg could not read.
Result<SheetLayout> WriteTakesSheet(const std::vector<TakeRow>& rows, const std::string& png_path,
                                    int thumb_width);

// A takes sheet made of segments' thumbnails (JPEGs, from the coordinator, where the takes'
// outputs cannot be read here): one row per take, a cell per JPEG (the first kSheetColumns). The
// first readable JPEG's size sets the cells. An empty or unreadable one leaves its cell dark and
// is listed in `dark` (why: empty for one there is none of). An error, naming the first cell's
// problem, when none is readable; no sheet is written then.
struct DarkCell {
  size_t row = 0;
  int column = 0;
  std::string why;  // empty: there is no thumbnail (yet); else why it could not be read
};
Result<SheetLayout> WriteThumbnailSheet(const std::vector<std::vector<std::string>>& rows,
                                        const std::string& png_path, int thumb_width,
                                        std::vector<DarkCell>* dark);

}  // namespace segue
