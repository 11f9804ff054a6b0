// Process-wide allocator settings for processes that move megabytes per message.
#pragma once

namespace segue {

// Keeps freed memory in the process instead of handing it back to the kernel at once: a
// co-denoising step allocates and frees megabytes of message buffers, and with glibc's defaults
// every step paid page faults to map them again (40% of the coordinator's time in
// `segue-bench codenoise`, measured with perf). Memory still goes back when more than 256 MiB
// sits free at the top of a heap. Call once, early in main().
void KeepFreedMemoryForReuse();

}  // namespace segue
