#include "common/util/memory.h"

#include <malloc.h>

namespace segue {

void KeepFreedMemoryForReuse() {
  // Fixed thresholds also switch off glibc's dynamic adjustment of them.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);  // blocks below 64 MiB come from the heap, reused
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace segue
