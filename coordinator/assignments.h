// Assignments: the messages that hand a task to a worker, built from its job and from what the
// store holds for it: a chained segment's guide, a checkpoint to resume from, a chunk's blended
// latents, a gang's resume point. Reading comes first (Read*), so a task is assigned only once
// its inputs are there; the message is built after the state machine gave the attempt number.
// Nothing here changes a job.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/protocol/segue.capnp.h"
#include "common/tensor/tensor.h"
#include "coordinator/jobs.h"
#include "coordinator/journal.h"

namespace segue {

struct AssignmentOptions {
  int checkpoint_steps = 10;  // the coordinator's defaults; a manifest's own win
  int checkpoint_seconds = 60;
  std::string encoder_preset = "medium";
};

// The checkpoint triggers a job's tasks carry: the manifest's where it sets them.
int CheckpointSteps(const Job& j, const AssignmentOptions& o);
int CheckpointSeconds(const Job& j, const AssignmentOptions& o);

// Why a task's inputs could not be read: a DONE segment whose latents are unreadable (store
// damage; the caller renders it again), or, without a segment, a chunk that cannot be blended
// (the job fails).
struct ReadFailure {
  std::optional<uint32_t> rerender;
  std::string message;
};

struct RenderInputs {
  std::optional<Tensor> guide;  // chained: the previous segment's latents over the shared frames
  uint32_t resume_step = 0;     // > 0: resume from the segment's checkpoint after this step
  Tensor resume_latents;
};
std::variant<RenderInputs, ReadFailure> ReadRenderInputs(const Job& j, uint32_t segment,
                                                         Journal& journal);

// The latent frames of the chunk's window (ChunkWindow: the chunk and the decoder's context)
// blended from the segments covering them: what its worker decodes.
std::variant<Tensor, ReadFailure> ReadEncodeInputs(const Job& j, uint32_t chunk, Journal& journal);
// The latent frames chunk `chunk` is decoded with (its own and the model's context), and which of
// the decoded frames are the chunk's video frames.
DecodeWindow ChunkWindow(const Job& j, uint32_t chunk);

// The gang checkpoint to resume from: its step and every segment's latents into *latents; 0 when
// there is none (or it is unreadable: the gang starts from noise).
uint32_t ReadGangResume(const Job& j, Journal& journal, std::vector<Tensor>* latents);

// Everything a worker needs to render segment `index` of `j`, except the guide and a resume.
void FillRenderTask(const Job& j, uint32_t index, uint32_t attempt, const AssignmentOptions& o,
                    wire::RenderTask::Builder t);

// Everything a worker needs to encode chunk `chunk` of `j`, except the blended latents.
void FillEncodeTask(const Job& j, uint32_t chunk, uint32_t attempt, const AssignmentOptions& o,
                    wire::EncodeTask::Builder t);

std::string RenderAssignment(const Job& j, uint32_t segment, uint32_t attempt,
                             const RenderInputs& in, const AssignmentOptions& o);
std::string EncodeAssignment(const Job& j, uint32_t chunk, uint32_t attempt, const Tensor& blended,
                             const AssignmentOptions& o);
// A gang member's task: the segments of `group`, resuming at `resume_step` (0: from noise) from
// `resume_latents` (one per segment of the job).
std::string GangAssignment(const Job& j, const Gang::Group& group, uint32_t attempt,
                           uint32_t resume_step, const std::vector<Tensor>& resume_latents,
                           const AssignmentOptions& o);

}  // namespace segue
