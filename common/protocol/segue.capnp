# The wire protocol between segue's processes: one Envelope per ZeroMQ message.
#
# Every process talks to the coordinator's single ROUTER endpoint. Workers (DEALER) say Hello,
# ask for work with credits, and return results; clients (DEALER or REQ) submit jobs and ask for
# status. Fields are only ever added (never renumbered) so that old peers keep parsing; a
# change that old peers cannot understand bumps protocolVersion, and Hello refuses a mismatch.
@0xc0f1a7d6e5b4a392;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("segue::wire");

# 2: co-denoising exchanges carry half-precision ("f16") tensors.
# 3: segments, exchanges and checkpoints count latent frames (common/plan/timeline.h); encode
#    tasks carry context latent frames and say which decoded frames are the chunk's.
# 4: the "unipc" sampler; a checkpoint is the sampler's whole state, [1 + H, C, T, h, w] for a
#    multistep sampler (its latents, then its history).
# 5: a message larger than a frame (partBytes, 1 MiB) travels to the coordinator in parts:
#    transferRequest, transferReply, part (below).
# 6: models' metadata carries the weights' identity (ModelSpec.identity), part of result keys.
const protocolVersion :UInt32 = 6;

# A tensor: dtype ("f32", or "f16" in co-denoising exchanges), shape, and the elements as
# little-endian bytes.
struct TensorData {
  dtype @0 :Text;
  shape @1 :List(Int64);
  data @2 :Data;
}

struct Keyframe {
  frame @0 :Int64;
  transitionFrames @1 :Int64;
  prompt @2 :Text;
}

struct Hello {
  protocolVersion @0 :UInt32;
  name @1 :Text;          # worker name, unique per process (host-pid-nonce)
  host @2 :Text;
  device @3 :Text;        # "cpu", "cuda:0"
  memoryBytes @4 :UInt64;
  models @5 :List(Text);  # models this worker can load
  tags @6 :List(Text);
  pid @7 :UInt32;
  threads @8 :UInt32;
  pool @9 :Text;          # the pool that launched it (segue-worker --pool), empty: none
  modelSpecs @10 :List(ModelSpec);  # the metadata of every model of `models` it could load
  unavailableModels @11 :List(UnavailableModel);  # models it has but cannot serve (not in models)
}

# A model a worker has (a host entry, docs/MODELS.md "Model hosts") but cannot serve now.
struct UnavailableModel {
  model @0 :Text;
  reason @1 :Text;
}

# What a model declares for planning (common/model/metadata.h): the coordinator plans a job from
# it and refuses a worker whose spec of a model differs from the farm's.
struct ModelSpec {
  name @0 :Text;
  latentChannels @1 :UInt32;
  temporalCompression @2 :UInt32;  # r: 1, 4, 6, 8 (the first latent frame is one video frame)
  spatialCompression @3 :UInt32;
  patchSize @4 :UInt32;
  nativeFrames @5 :List(UInt32);   # clip lengths in video frames, each 1 + r k
  nativeFps @6 :Float64;
  outputMin @7 :Float64;
  outputMax @8 :Float64;
  decodeContextBefore @9 :UInt32;  # latent frames of context the decoder needs on each side
  decodeContextAfter @10 :UInt32;
  conditioning @11 :Text;          # "per-frame" | "per-clip"
  identity @12 :Text;              # the weights' identity (common/model/metadata.h); "": unknown
}

struct Welcome {
  workerId @0 :Text;
  heartbeatMs @1 :UInt32;
  livenessMs @2 :UInt32;
}

struct WorkRequest {
  credits @0 :UInt32;  # how many more tasks the worker can take
}

# Render frames [frameStart, frameStart + frameCount) of a job as one model call.
struct RenderTask {
  jobId @0 :UInt64;
  segment @1 :UInt32;
  attempt @2 :UInt32;      # fencing: results of older attempts are dropped
  model @3 :Text;
  steps @4 :UInt32;
  width @5 :UInt32;
  height @6 :UInt32;
  fpsNum @7 :Int64;
  fpsDen @8 :Int64;
  latentStart @9 :Int64;    # the segment in latent frames: its first global latent frame ...
  latentCount @10 :UInt32;  # ... and how many
  totalLatents @11 :Int64;  # latent frames of the whole video
  seed @12 :UInt64;
  cameraMotion @13 :Text;
  cameraSpeed @14 :Float64;
  timeline @15 :List(Keyframe);
  checkpointEverySteps @16 :UInt32;  # send a Checkpoint every K steps (0: never) ...
  sampler @17 :Text;         # "euler" | "ddim" | "unipc"
  shift @18 :Float64;
  eta @19 :Float64;
  guidance @20 :Float64;
  negativePrompt @21 :Text;
  guide @22 :TensorData;     # chained: the previous segment's final latents for our first frames
  checkpointEverySeconds @23 :UInt32;  # ... or when this many seconds passed since the last one
  resumeStep @24 :UInt32;    # > 0: start at this step from resumeLatents (a stored checkpoint)
  resumeLatents @25 :TensorData;  # a Checkpoint's latents
  sigmas @26 :List(Float64);  # euler, unipc: the steps' noise levels before the shift
  shiftFromTokens @27 :Bool;  # euler, unipc: shift by the call's token count (LTX-Video's rule)
}

# A segment's latents after `step` steps, so a new worker can resume there.
struct Checkpoint {
  jobId @0 :UInt64;
  segment @1 :UInt32;
  attempt @2 :UInt32;
  step @3 :UInt32;
  latents @4 :TensorData;  # [C, T, h, w], or [1 + H, C, T, h, w]: then H tensors of the
                           # sampler's history (unipc: 3) follow the latents
}

struct CheckpointAck {
  jobId @0 :UInt64;
  segment @1 :UInt32;
  step @2 :UInt32;
}

# Co-denoising: a worker advances a contiguous group of a job's segments one step at a time.
# After each step, frames that segments outside the group also cover are sent to the
# coordinator (CodenoiseExchange), which answers with their consensus (CodenoiseMerged).
struct CodenoiseTask {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  segments @2 :List(RenderTask);  # consecutive segments, in order
  totalLatents @3 :Int64;         # with length, overlap and jobSeed: the whole plan
  length @4 :UInt32;              # (in latent frames)
  overlap @5 :UInt32;
  jobSeed @6 :UInt64;
  blend @7 :Text;
}

struct FrameSlice {
  segment @0 :UInt32;
  frame @1 :Int64;         # a global latent frame
  latents @2 :TensorData;  # [C, h, w] of that latent frame
}

struct CodenoiseExchange {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  step @2 :UInt32;
  slices @3 :List(FrameSlice);
}

struct CodenoiseMerged {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  step @2 :UInt32;
  slices @3 :List(FrameSlice);  # segment unused: one consensus per frame
  # After applying this consensus, send every segment's latents as a Checkpoint (the
  # coordinator's time trigger; the step trigger each worker applies by itself).
  checkpoint @4 :Bool;
}

# Stop working on a job's task (cancelled, or a co-denoising partner was lost).
struct Cancel {
  jobId @0 :UInt64;
  attempt @1 :UInt32;
  reason @2 :Text;
}

# Decode blended latents as one clip, drop the first skipFrames decoded frames (those of the
# context latent frames before the chunk), and encode the next keepFrames (the video's frames
# [frameStart, frameStart + keepFrames)) as one self-contained chunk that starts on a key frame.
struct EncodeTask {
  jobId @0 :UInt64;
  chunk @1 :UInt32;
  attempt @2 :UInt32;
  model @3 :Text;
  width @4 :UInt32;
  height @5 :UInt32;
  fpsNum @6 :Int64;
  fpsDen @7 :Int64;
  frameStart @8 :Int64;
  latents @9 :TensorData;   # [C, T, h, w]
  codec @10 :Text;
  crf @11 :UInt32;
  preset @12 :Text;
  profile @13 :Text;        # prores profile
  skipFrames @14 :UInt32;
  keepFrames @15 :UInt32;
}

struct Assignment {
  union {
    render @0 :RenderTask;
    encode @1 :EncodeTask;
    codenoise @2 :CodenoiseTask;
  }
}

struct RenderResult {
  jobId @0 :UInt64;
  segment @1 :UInt32;
  attempt @2 :UInt32;
  latents @3 :TensorData;   # [C, T, h, w]
  elapsedMs @4 :UInt64;
  # A small JPEG of the segment's middle frame (at most 192 pixels wide), for people watching the
  # job; empty when the worker could not make one. The coordinator keeps it if it is a JPEG of at
  # most 256 KiB and ignores it otherwise: it never affects the render.
  thumbnail @5 :Data;
}

struct EncodeResult {
  jobId @0 :UInt64;
  chunk @1 :UInt32;
  attempt @2 :UInt32;
  container @3 :Data;      # the chunk file's bytes (MP4)
  frames @4 :UInt32;
  elapsedMs @5 :UInt64;
}

enum TaskKind {
  render @0;
  encode @1;
  codenoise @2;  # index: the group's first segment
}

struct TaskFailure {
  jobId @0 :UInt64;
  kind @1 :TaskKind;
  index @2 :UInt32;
  attempt @3 :UInt32;
  message @4 :Text;
}

struct Heartbeat {
  busy @0 :Bool;
  unavailableModels @1 :List(UnavailableModel);  # worker -> coordinator: every one so far
}

# A string pair: a job's metadata (the manifest's `metadata:`), a filter on it.
struct KeyValue {
  key @0 :Text;
  value @1 :Text;
}

struct Submit {
  manifestText @0 :Text;
  manifestName @1 :Text;    # for error locations
  audioData @2 :Data;       # the file manifest.audio.path names, when present
  audioName @3 :Text;
  outputOverride @4 :Text;  # replaces output.path (relative to the output root)
  # Chosen by the client (1-128 printable ASCII characters): a second Submit of the same owner
  # with the same id gets the first one's job back (SubmitReply.existing) instead of a new job,
  # so that a client may resubmit after a lost reply.
  submissionId @5 :Text;
}

struct SubmitReply {
  jobId @0 :UInt64;
  frames @1 :Int64;
  segments @2 :UInt32;
  output @3 :Text;
  existing @4 :Bool;        # submissionId named a job submitted before: this is that job
}

struct StatusRequest {
  jobId @0 :UInt64;
}

struct JobStatus {
  jobId @0 :UInt64;
  name @1 :Text;
  state @2 :Text;           # QUEUED RUNNING STITCHING DONE FAILED CANCELLED
  priority @3 :Int32;
  framesTotal @4 :Int64;
  framesDone @5 :Int64;     # frames of finished segments (overlaps counted once)
  segmentsTotal @6 :UInt32;
  segmentsDone @7 :UInt32;
  segmentsRunning @8 :UInt32;
  chunksTotal @9 :UInt32;
  chunksDone @10 :UInt32;
  progress @11 :Float64;    # 0..1 over rendering and encoding
  output @12 :Text;         # absolute path of the output, once DONE
  error @13 :Text;
  createdMs @14 :UInt64;
  updatedMs @15 :UInt64;
  etaSeconds @16 :Float64;  # negative: unknown
  # One character per segment, in order: '#' done, '>' running, '.' waiting, 'x' failed.
  # Filled for a single job's status only (a job list leaves it empty).
  segmentStates @17 :Text;
  owner @18 :Text;          # the identity that submitted it (the keys file's name; "local")
  metadata @19 :List(KeyValue);  # the manifest's metadata:, by key
  submissionId @20 :Text;   # as submitted ("" for none)
  family @21 :JobFamily;
}

# A section's take (docs/MANIFEST.md, "Takes"): section is the timeline entry's index, take
# counts from 1 (the manifest's own seeds).
struct TakePick {
  section @0 :UInt32;
  take @1 :UInt32;
}

# How a job relates to the job a studio submitted (coordinator/family.h).
struct JobFamily {
  role @0 :Text;            # "final" (submitted), "preview", "take", "pick"
  root @1 :UInt64;          # the submitted job it derives from (0: it is one)
  parent @2 :UInt64;        # preview, take: the submitted job; pick: the job picked from
  section @3 :Int32 = -1;   # take: the section it renders another take of
  take @4 :UInt32;          # take: which (2 and up)
  picks @5 :List(TakePick); # pick: the takes it uses, by section
  previewJob @6 :UInt64;    # final: its preview's job (0: none)
  waitingFor @7 :UInt64;    # not scheduled until this job is done (a final's preview) or has
                            # rendered every segment (a take's final); 0: not waiting
  sectionStart @8 :Int64;   # take: the section's video frames [sectionStart, sectionEnd)
  sectionEnd @9 :Int64;
  sectionPrompt @10 :Text;  # take: the section's prompt
  sectionSegments @11 :List(UInt32);  # take: the segments it re-seeds (the section's)
}

# segue pick JOB SECTION TAKE: a new job with JOB's manifest, JOB's takes and these; every
# segment a job has already rendered with the same inputs is reused. Answered with a
# SubmitReply.
struct PickRequest {
  jobId @0 :UInt64;
  picks @1 :List(TakePick);
  output @2 :Text;          # relative to the output root; empty: beside the submitted job's
}

# Jobs by id, oldest first, filtered; every filter given must hold.
struct ListJobs {
  states @0 :List(Text);        # only jobs in one of these states (QUEUED, RUNNING, ...)
  owner @1 :Text;               # only this owner's
  name @2 :Text;                # only jobs of this name
  metadata @3 :List(KeyValue);  # only jobs whose metadata holds every pair
  afterId @4 :UInt64;           # paging: only ids above this
  limit @5 :UInt32;             # at most this many (0: all)
  family @6 :UInt64;            # only this submitted job and the jobs derived from it
}

struct JobList {
  jobs @0 :List(JobStatus);
  nextAfterId @1 :UInt64;  # more jobs match: ask again with this as afterId (0: no more)
}

# What a client can learn before anything else (clients do not say Hello): the protocol the
# coordinator speaks, and who it takes the caller for. Allowed to every peer.
struct VersionRequest {}

struct VersionReply {
  protocolVersion @0 :UInt32;  # the coordinator's protocolVersion (above)
  version @1 :Text;            # segue's version
  maxMessageBytes @2 :UInt64;  # the largest message, whole or in parts
  identity @3 :Text;           # the caller's identity (keys file), "local" without keys
  role @4 :Text;               # admin, submitter, worker or viewer ("" for an unknown key)
  partBytes @5 :UInt64;        # a message larger than this goes in parts (Transfers, below)
}

struct ListWorkers {}

struct WorkerInfo {
  name @0 :Text;
  host @1 :Text;
  device @2 :Text;
  state @3 :Text;        # idle | busy
  task @4 :Text;         # "job 3 segment 7", empty when idle
  tasksDone @5 :UInt32;
  failures @6 :UInt32;
  lastSeenMs @7 :UInt64; # wall clock of the last message from it
  pool @8 :Text;         # the pool that launched it, if any
  models @9 :List(Text);  # the models it serves
  unavailableModels @10 :List(UnavailableModel);
  identity @11 :Text;    # the identity (keys file) whose key it joined with
}

struct WorkerList {
  workers @0 :List(WorkerInfo);
}

# Admin actions on a job; the reply is its JobStatus.
enum JobActionKind {
  cancel @0;
  retry @1;      # a FAILED or CANCELLED job goes back to the queue; finished segments are kept
  priority @2;
}

struct JobAction {
  jobId @0 :UInt64;
  action @1 :JobActionKind;
  priority @2 :Int32;
}

# Drain a worker: it finishes its task, takes no more, and leaves. Reply: WorkerList of it.
struct DrainWorker {
  name @0 :Text;
}

# Sent to a worker being drained.
struct Drain {}

struct GetLogs {
  jobId @0 :UInt64;
  segment @1 :Int32;  # -1: the whole job
}

struct Logs {
  lines @0 :List(Text);
}

# What went wrong, as Error.code carries it (a UInt32 on the wire since protocol version 1; the
# values are this enum's).
enum ErrorCode {
  none @0;             # not sent
  failure @1;          # not sent
  badRequest @2;       # the request or its manifest is wrong: the message says where
  notFound @3;         # no such job or worker; to a worker: the coordinator forgot it, say Hello
  versionMismatch @4;  # Hello's protocol version is not the coordinator's
  internal @5;         # the coordinator could not do it (its store refused a write)
  refused @6;          # Hello: the worker may not join as it is (its models' metadata is not
                       # the farm's, or is nonsense); saying Hello again would not change it
  denied @7;           # the peer's identity (its CURVE key: the keys file) may not do this
  overLimit @8;        # the owner is at a limit of the coordinator (unfinished jobs, frames):
                       # the same request may succeed once some of its jobs finish
}

struct Error {
  code @0 :UInt32;   # an ErrorCode
  message @1 :Text;
}

# A worker leaving on purpose (drained, stopped): the coordinator forgets it at once instead of
# waiting out the liveness window.
struct Goodbye {
  reason @0 :Text;
}

# Worker pools (segue pool ...). Every request is answered with the pools as they are after it.
struct PoolRequest {
  union {
    list @0 :Void;
    scale @1 :PoolScale;
    autoscale @2 :PoolAutoscale;
  }
}

struct PoolScale {
  name @0 :Text;
  size @1 :UInt32;
}

struct PoolAutoscale {
  name @0 :Text;
  enabled @1 :Bool;
  min @2 :UInt32;
  max @3 :UInt32;
}

struct PoolInfo {
  name @0 :Text;
  provider @1 :Text;     # local | slurm | kubernetes
  size @2 :UInt32;       # wanted
  members @3 :UInt32;    # launched and not gone (joined or on their way)
  idle @4 :UInt32;       # joined and without a task
  busy @5 :UInt32;
  min @6 :UInt32;
  max @7 :UInt32;
  autoscale @8 :Bool;
  cooldownS @9 :UInt32;
  lastChange @10 :Text;  # what the pool did last, for people
}

struct PoolList {
  pools @0 :List(PoolInfo);
}

# Transfers: how a message larger than one frame reaches the coordinator (PROTOCOL.md,
# Transfers). The coordinator reads at most partBytes (plus the envelope) per frame, and holds
# the bytes of messages being received within one budget for all its peers: a sender asks
# before sending a large message (transferRequest, with a transfer id of its choosing), the
# coordinator answers once its budget holds the message (transferReply, granted) or at once
# if it never could (refused, saying why), and the sender then sends the message's bytes in
# order, in parts of at most partBytes. The assembled bytes are one Envelope, handled as if it
# had come whole; it may not itself be a transfer message. A granted transfer that stalls
# (10 s without a part) is dropped and its budget freed.
struct TransferRequest {
  transfer @0 :UInt64;  # the sender's id for it, unique among its transfers
  bytes @1 :UInt64;     # the whole message's size
}

struct TransferReply {
  transfer @0 :UInt64;
  refusal @1 :Text;     # empty: granted, send the parts; otherwise why not (never granted later)
  received @2 :UInt64;  # to REQ peers, one reply per part: the bytes received so far
}

struct MessagePart {
  transfer @0 :UInt64;
  offset @1 :UInt64;    # where data goes in the message: the parts come in order
  data @2 :Data;        # at most partBytes
}

# segue plan MANIFEST --against JOB: which segments of a manifest the coordinator would render and
# which it would take from results it has stored (coordinator/results.h), and why.
struct PlanRequest {
  manifestText @0 :Text;
  manifestName @1 :Text;
  againstJob @2 :UInt64;  # 0: none; else each segment that renders says why, against that job's
}

struct SegmentPlan {
  index @0 :UInt32;
  frameStart @1 :Int64;      # video frames [frameStart, frameEnd)
  frameEnd @2 :Int64;
  reuse @3 :Bool;            # a stored result has its key: it would not render
  fromJob @4 :UInt64;        # reuse: whose result
  fromSegment @5 :UInt32;
  reasons @6 :List(Text);    # why it renders; empty when reused
  key @7 :Text;              # its result's content key (hex SHA-256)
}

struct PlanReply {
  segments @0 :List(SegmentPlan);
  strategy @1 :Text;
  againstJob @2 :UInt64;
}

# segue cache ls | prune: finished jobs' stored results, which edited resubmissions reuse and the
# coordinator evicts least recently used first beyond --result-cache.
struct CacheRequest {
  union {
    list @0 :Void;
    prune @1 :CachePrune;  # admins
  }
}

struct CachePrune {
  toBytes @0 :UInt64;      # with bySize: evict until finished jobs' results take at most this
  olderThanMs @1 :UInt64;  # and every one unused for this long (0: none)
  bySize @2 :Bool;         # whether toBytes applies (false: only olderThanMs)
}

struct CachedJob {
  jobId @0 :UInt64;
  name @1 :Text;
  state @2 :Text;
  segments @3 :UInt32;     # its stored results
  bytes @4 :UInt64;
  lastUsedMs @5 :UInt64;   # the newest use (made or reused) of any of them
  chunks @6 :UInt32;       # its stored encoded chunks
}

struct CacheReply {
  jobs @0 :List(CachedJob);  # least recently used first
  bytes @1 :UInt64;          # finished jobs' results: what eviction may take
  liveBytes @2 :UInt64;      # unfinished jobs' results: never evicted
  limitBytes @3 :UInt64;
  hits @4 :UInt64;           # segments taken from stored results since the coordinator started
  misses @5 :UInt64;
  evictedSegments @6 :UInt64;  # by this request (prune), or since start (list)
  evictedBytes @7 :UInt64;
  evictedChunks @8 :UInt64;
}

# Segments' thumbnails (the dashboard's; a JPEG of the middle frame of each segment's own render),
# for `segue takes` where the takes' outputs cannot be read: the contact sheet is made of them.
struct ThumbnailRequest {
  jobId @0 :UInt64;
  segments @1 :List(UInt32);  # at most 64, each below the job's segment count
}

struct Thumbnails {
  jobId @0 :UInt64;
  jpegs @1 :List(Data);  # one per asked segment, in order; empty where it has none (yet)
}

struct Envelope {
  union {
    hello @0 :Hello;
    welcome @1 :Welcome;
    workRequest @2 :WorkRequest;
    assignment @3 :Assignment;
    renderResult @4 :RenderResult;
    encodeResult @5 :EncodeResult;
    taskFailure @6 :TaskFailure;
    heartbeat @7 :Heartbeat;
    submit @8 :Submit;
    submitReply @9 :SubmitReply;
    statusRequest @10 :StatusRequest;
    jobStatus @11 :JobStatus;
    listJobs @12 :ListJobs;
    jobList @13 :JobList;
    error @14 :Error;
    codenoiseExchange @15 :CodenoiseExchange;
    codenoiseMerged @16 :CodenoiseMerged;
    cancel @17 :Cancel;
    listWorkers @18 :ListWorkers;
    workerList @19 :WorkerList;
    jobAction @20 :JobAction;
    drainWorker @21 :DrainWorker;
    drain @22 :Drain;
    getLogs @23 :GetLogs;
    logs @24 :Logs;
    checkpoint @25 :Checkpoint;
    checkpointAck @26 :CheckpointAck;
    poolRequest @27 :PoolRequest;
    poolList @28 :PoolList;
    goodbye @29 :Goodbye;
    versionRequest @30 :VersionRequest;
    versionReply @31 :VersionReply;
    transferRequest @32 :TransferRequest;
    transferReply @33 :TransferReply;
    part @34 :MessagePart;
    planRequest @35 :PlanRequest;
    planReply @36 :PlanReply;
    cacheRequest @37 :CacheRequest;
    cacheReply @38 :CacheReply;
    pickRequest @39 :PickRequest;
    thumbnailRequest @40 :ThumbnailRequest;
    thumbnails @41 :Thumbnails;
  }
}
