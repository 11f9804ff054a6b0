// Fuzz targets (tests/fuzz): each defines LLVMFuzzerTestOneInput, the libFuzzer entry point.
// Built two ways (tests/fuzz/CMakeLists.txt):
//   NAME_fuzz    with clang and -fsanitize=fuzzer,address,undefined (-DSEGUE_FUZZ=ON): coverage-
//                guided fuzzing, started by tools/scripts/fuzz.sh for a bounded time on the
//                committed corpus (tests/fuzz/corpus/NAME)
//   NAME_replay  with the project's compiler and replay_main.cc: runs every input of the corpus
//                once, so ctest keeps each crash found (saved into the corpus) a regression test
// A target may also define SegueFuzzSeeds: inputs built in code (binary messages), written into
// its corpus by `NAME_replay --write-seeds DIR`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
std::vector<std::string> SegueFuzzSeeds();
