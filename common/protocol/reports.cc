#include "common/protocol/reports.h"

namespace segue {

JobInfo FromWire(wire::JobStatus::Reader r) {
  JobInfo j;
  j.id = r.getJobId();
  j.name = r.getName().cStr();
  j.state = r.getState().cStr();
  j.priority = r.getPriority();
  j.frames_total = r.getFramesTotal();
  j.frames_done = r.getFramesDone();
  j.segments_total = r.getSegmentsTotal();
  j.segments_done = r.getSegmentsDone();
  j.segments_running = r.getSegmentsRunning();
  j.chunks_total = r.getChunksTotal();
  j.chunks_done = r.getChunksDone();
  j.progress = r.getProgress();
  j.eta_seconds = r.getEtaSeconds();
  j.output = r.getOutput().cStr();
  j.error = r.getError().cStr();
  j.created_ms = r.getCreatedMs();
  j.updated_ms = r.getUpdatedMs();
  j.segment_states = r.getSegmentStates().cStr();
  j.owner = r.getOwner().cStr();
  for (auto kv : r.getMetadata()) j.metadata[kv.getKey().cStr()] = kv.getValue().cStr();
  j.submission_id = r.getSubmissionId().cStr();
  auto f = r.getFamily();
  j.family.role = f.getRole().size() ? f.getRole().cStr() : "final";
  j.family.root = f.getRoot();
  j.family.parent = f.getParent();
  j.family.section = f.getSection();
  j.family.take = f.getTake();
  for (auto p : f.getPicks())
    j.family.picks[static_cast<int>(std::min<uint32_t>(p.getSection(), INT32_MAX))] =
        static_cast<int>(std::min<uint32_t>(p.getTake(), INT32_MAX));
  j.family.preview_job = f.getPreviewJob();
  j.family.waiting_for = f.getWaitingFor();
  j.family.section_start = f.getSectionStart();
  j.family.section_end = f.getSectionEnd();
  j.family.section_prompt = f.getSectionPrompt().cStr();
  for (uint32_t s : f.getSectionSegments()) j.family.section_segments.push_back(s);
  return j;
}

WorkerInfo FromWire(wire::WorkerInfo::Reader w) {
  WorkerInfo i{w.getName().cStr(),  w.getHost().cStr(), w.getDevice().cStr(),
               w.getState().cStr(), w.getTask().cStr(), w.getTasksDone(),
               w.getFailures(),     w.getLastSeenMs(),  w.getPool().cStr()};
  for (auto m : w.getModels()) i.models.push_back(m.cStr());
  for (auto u : w.getUnavailableModels())
    i.unavailable.emplace_back(u.getModel().cStr(), u.getReason().cStr());
  i.identity = w.getIdentity().cStr();
  return i;
}

PoolInfo FromWire(wire::PoolInfo::Reader p) {
  PoolInfo i;
  i.name = p.getName().cStr();
  i.provider = p.getProvider().cStr();
  i.last_change = p.getLastChange().cStr();
  i.size = p.getSize(), i.members = p.getMembers(), i.idle = p.getIdle();
  i.busy = p.getBusy(), i.min = p.getMin(), i.max = p.getMax();
  i.autoscale = p.getAutoscale(), i.cooldown_s = p.getCooldownS();
  return i;
}

void ToWire(const JobInfo& j, wire::JobStatus::Builder s) {
  s.setJobId(j.id);
  s.setName(j.name);
  s.setState(j.state);
  s.setPriority(j.priority);
  s.setFramesTotal(j.frames_total);
  s.setFramesDone(j.frames_done);
  s.setSegmentsTotal(j.segments_total);
  s.setSegmentsDone(j.segments_done);
  s.setSegmentsRunning(j.segments_running);
  s.setChunksTotal(j.chunks_total);
  s.setChunksDone(j.chunks_done);
  s.setProgress(j.progress);
  s.setEtaSeconds(j.eta_seconds);
  s.setOutput(j.output);
  s.setError(j.error);
  s.setCreatedMs(j.created_ms);
  s.setUpdatedMs(j.updated_ms);
  s.setSegmentStates(j.segment_states);
  s.setOwner(j.owner);
  auto md = s.initMetadata(static_cast<unsigned>(j.metadata.size()));
  unsigned i = 0;
  for (const auto& [k, v] : j.metadata) {
    md[i].setKey(k);
    md[i++].setValue(v);
  }
  s.setSubmissionId(j.submission_id);
  auto f = s.initFamily();
  f.setRole(j.family.role);
  f.setRoot(j.family.root);
  f.setParent(j.family.parent);
  f.setSection(j.family.section);
  f.setTake(j.family.take);
  auto picks = f.initPicks(static_cast<unsigned>(j.family.picks.size()));
  unsigned p = 0;
  for (const auto& [section, take] : j.family.picks) {
    picks[p].setSection(static_cast<uint32_t>(section));
    picks[p++].setTake(static_cast<uint32_t>(take));
  }
  f.setPreviewJob(j.family.preview_job);
  f.setWaitingFor(j.family.waiting_for);
  f.setSectionStart(j.family.section_start);
  f.setSectionEnd(j.family.section_end);
  f.setSectionPrompt(j.family.section_prompt);
  auto segs = f.initSectionSegments(static_cast<unsigned>(j.family.section_segments.size()));
  for (size_t i = 0; i < j.family.section_segments.size(); ++i)
    segs.set(static_cast<unsigned>(i), j.family.section_segments[i]);
}

void ToWire(const WorkerInfo& w, wire::WorkerInfo::Builder o) {
  o.setName(w.name);
  o.setHost(w.host);
  o.setDevice(w.device);
  o.setState(w.state);
  o.setTask(w.task);
  o.setTasksDone(w.tasks_done);
  o.setFailures(w.failures);
  o.setLastSeenMs(w.last_seen_ms);
  o.setPool(w.pool);
  o.setIdentity(w.identity);
  auto models = o.initModels(static_cast<unsigned>(w.models.size()));
  for (size_t i = 0; i < w.models.size(); ++i) models.set(static_cast<unsigned>(i), w.models[i]);
  auto un = o.initUnavailableModels(static_cast<unsigned>(w.unavailable.size()));
  for (size_t i = 0; i < w.unavailable.size(); ++i) {
    un[static_cast<unsigned>(i)].setModel(w.unavailable[i].first);
    un[static_cast<unsigned>(i)].setReason(w.unavailable[i].second);
  }
}

void ToWire(const PoolInfo& p, wire::PoolInfo::Builder o) {
  o.setName(p.name);
  o.setProvider(p.provider);
  o.setSize(p.size);
  o.setMembers(p.members);
  o.setIdle(p.idle);
  o.setBusy(p.busy);
  o.setMin(p.min);
  o.setMax(p.max);
  o.setAutoscale(p.autoscale);
  o.setCooldownS(p.cooldown_s);
  o.setLastChange(p.last_change);
}

nlohmann::json JobInfo::ToJson() const {
  nlohmann::json j;
  j["schema_version"] = kJobSchemaVersion;
  j["id"] = std::to_string(id);
  j["name"] = name;
  j["state"] = state;
  j["priority"] = priority;
  j["owner"] = owner;
  j["progress"] = progress;
  j["frames"] = {{"total", frames_total}, {"done", frames_done}};
  j["segments"] = {{"total", segments_total},
                   {"done", segments_done},
                   {"running", segments_running},
                   {"waiting", segments_total - segments_done - segments_running}};
  if (!segment_states.empty()) j["segments"]["states"] = segment_states;
  j["chunks"] = {{"total", chunks_total}, {"done", chunks_done}};
  j["eta_seconds"] = eta_seconds >= 0 ? nlohmann::json(eta_seconds) : nlohmann::json(nullptr);
  j["output"] = output.empty() ? nlohmann::json(nullptr) : nlohmann::json(output);
  j["error"] = error.empty() ? nlohmann::json(nullptr) : nlohmann::json(error);
  j["created_ms"] = created_ms;
  j["updated_ms"] = updated_ms;
  j["metadata"] = metadata.empty() ? nlohmann::json::object() : nlohmann::json(metadata);
  j["submission_id"] =
      submission_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(submission_id);
  auto id_or_null = [](uint64_t v) {
    return v ? nlohmann::json(std::to_string(v)) : nlohmann::json(nullptr);
  };
  nlohmann::json f = {{"role", family.role},
                      {"root", id_or_null(family.root)},
                      {"parent", id_or_null(family.parent)},
                      {"preview_job", id_or_null(family.preview_job)},
                      {"waiting_for", id_or_null(family.waiting_for)},
                      {"picks", nlohmann::json::array()}};
  for (const auto& [section, take] : family.picks)
    f["picks"].push_back({{"section", section}, {"take", take}});
  if (family.role == "take") {
    f["section"] = family.section;
    f["take"] = family.take;
    f["section_frames"] = {family.section_start, family.section_end};
    f["section_prompt"] = family.section_prompt;
    f["section_segments"] = family.section_segments;
  }
  j["family"] = f;
  return j;
}

nlohmann::json WorkerInfo::ToJson() const {
  return {{"name", name},
          {"host", host},
          {"device", device},
          {"state", state},
          {"task", task.empty() ? nlohmann::json(nullptr) : nlohmann::json(task)},
          {"tasks_done", tasks_done},
          {"failures", failures},
          {"last_seen_ms", last_seen_ms},
          {"pool", pool.empty() ? nlohmann::json(nullptr) : nlohmann::json(pool)},
          {"identity", identity},
          {"models", models},
          {"unavailable_models", [&] {
             nlohmann::json u = nlohmann::json::object();
             for (const auto& [m, why] : unavailable) u[m] = why;
             return u;
           }()}};
}

nlohmann::json PoolInfo::ToJson() const {
  return {{"name", name},
          {"provider", provider},
          {"size", size},
          {"members", members},
          {"idle", idle},
          {"busy", busy},
          {"min", min},
          {"max", max},
          {"autoscale", autoscale},
          {"cooldown_s", cooldown_s},
          {"last_change", last_change}};
}

}  // namespace segue
