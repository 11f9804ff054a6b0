// The dashboard served by the coordinator's HTTP side: self-contained HTML pages that read the
// JSON API (api.h) and draw what it says.
//   /          jobs (progress bar, ETA, a strip with each segment's state), workers and pools,
//              polled every second; each job links to its page
//   /jobs/ID   one job: its strip, a thumbnail of every finished segment, the video once DONE
//              (playable in the page, from /api/v1/jobs/ID/output), its log, and cancel, retry
//              and priority buttons that POST the REST API (a token, when the coordinator has
//              keys, is asked for once and kept in the browser's local storage)
#pragma once

namespace segue {

const char* DashboardHtml();
const char* JobPageHtml();

}  // namespace segue
