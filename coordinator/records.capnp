# What the coordinator keeps in RocksDB (common/store). Values of the jobs and segments column
# families; latents, checkpoints and chunks are raw bytes (see store.h).
@0xd3b1c9a0e7f25b14;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("segue::rec");

enum JobState {
  queued @0;
  running @1;
  stitching @2;
  done @3;
  failed @4;
  cancelled @5;
}

enum TaskState {
  pending @0;
  running @1;
  done @2;
  failed @3;
}

struct Job {
  id @0 :UInt64;
  name @1 :Text;
  state @2 :JobState;
  priority @3 :Int32;
  manifestText @4 :Text;
  manifestName @5 :Text;
  outputPath @6 :Text;      # absolute, inside the output root
  hasAudio @7 :Bool;
  audioName @8 :Text;
  error @9 :Text;
  createdMs @10 :UInt64;
  updatedMs @11 :UInt64;
  finishedMs @12 :UInt64;
  chunkFrames @13 :UInt32;
  model @14 :Data;          # the model metadata it was planned with: a ModelSpec message
                            # (segue.capnp); empty in records older than it: the built-ins' own
  owner @15 :Text;          # the identity that submitted it (common/security/keyring.h)
  submissionId @16 :Text;   # the client's id for the submission (idempotent resubmission)
  # Its family (coordinator/family.h): how it came to be. A submitted job is a final (role 0)
  # with root and parent 0; the manifest of a derived job is manifestText with the family
  # applied (ApplyFamily).
  role @17 :UInt8;          # JobRole: 0 final, 1 preview, 2 take, 3 pick
  root @18 :UInt64;
  parent @19 :UInt64;
  section @20 :Int32 = -1;  # a take's section (-1: none)
  take @21 :UInt32;
  picks @22 :List(Pick);    # a pick's takes by section
}

struct Pick {
  section @0 :UInt32;
  take @1 :UInt32;
}

struct Task {
  state @0 :TaskState;
  attempt @1 :UInt32;
  worker @2 :Text;
  error @3 :Text;
  updatedMs @4 :UInt64;
  failures @5 :UInt32;
  failedOn @6 :List(Text);  # distinct workers it failed on
  resultKey @7 :Text;       # a DONE segment: its result's content key (coordinator/results.h)
  resultUsedMs @8 :UInt64;  # when that result was last made or reused
  resultBytes @9 :UInt64;   # a DONE chunk: its container's size
}
