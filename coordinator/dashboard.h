// The dashboard page served at / by the coordinator's HTTP side: one self-contained HTML file
// that polls /api/v1/status every second and draws jobs (progress bar, ETA, a strip with each
// segment's state) and workers.
#pragma once

namespace segue {

const char* DashboardHtml();

}  // namespace segue
