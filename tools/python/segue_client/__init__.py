"""segue_client: the segue render farm's HTTP API from Python, with the standard library only.

    import segue_client
    farm = segue_client.Client("http://farm:8080", token=os.environ.get("SEGUE_TOKEN"))
    job = farm.submit("shots/sh010.yaml", submission_id="sh010-v3")   # reads its audio too
    for event in farm.events(job.id):                                  # live, resumable
        print(event.type, event.data.get("index"), event.state)
    job = farm.wait(job.id)                                            # DONE, FAILED or CANCELLED
    if job.state == "DONE":
        farm.download(job.id, "sh010.mp4")                             # resumes a partial file

Every call raises a subclass of SegueError for an error the coordinator answers (one class per
error code: BadRequest, NotFound, Denied, ...) and Unreachable when it cannot be reached. The
API itself: docs/API.md and docs/openapi.json in the segue repository.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import pathlib
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Union

__all__ = [
    "Client", "Job", "Worker", "Pool", "Event", "LogLine", "SegueError", "Unreachable",
    "BadRequest", "NotFound", "Denied", "Unauthorized", "OverLimit", "Refused",
    "VersionMismatch", "Internal", "NotReady", "Conflict", "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1  # the job JSON shape this client reads (docs/schema/job.schema.json)
FINISHED = ("DONE", "FAILED", "CANCELLED")


# ---- Errors ---------------------------------------------------------------------------------

class SegueError(Exception):
    """An error the coordinator answered: its stable code, its message and the HTTP status."""

    code = "failure"

    def __init__(self, message: str, status: int = 0, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Unreachable(SegueError):
    """No coordinator answered at the URL (down, wrong port, or not speaking HTTP)."""
    code = "unreachable"


class BadRequest(SegueError):
    """The request or its manifest is wrong: the message names the field and where."""
    code = "bad_request"


class NotFound(SegueError):
    code = "not_found"


class Denied(SegueError):
    """The token's identity may not do this (its role, or the job is someone else's)."""
    code = "denied"


class Unauthorized(SegueError):
    """No token, or one the coordinator's keys file does not hold."""
    code = "unauthorized"


class OverLimit(SegueError):
    """The owner is at a limit (unfinished jobs, frames): the same request may succeed later."""
    code = "over_limit"


class Refused(SegueError):
    code = "refused"


class VersionMismatch(SegueError):
    code = "version_mismatch"


class Internal(SegueError):
    code = "internal"


class NotReady(SegueError):
    """The job's output does not exist yet (it is not DONE)."""
    code = "not_ready"


class Conflict(SegueError):
    code = "conflict"


_ERRORS = {cls.code: cls for cls in (BadRequest, NotFound, Denied, Unauthorized, OverLimit,
                                     Refused, VersionMismatch, Internal, NotReady, Conflict)}


# ---- Results --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
    """A job, as GET /api/v1/jobs/ID shows it. Ids are strings (64-bit)."""
    id: str
    name: str
    state: str  # QUEUED RUNNING STITCHING DONE FAILED CANCELLED
    priority: int
    owner: str
    metadata: Dict[str, str]
    submission_id: Optional[str]
    progress: float  # 0..1
    eta_seconds: Optional[float]
    frames_done: int
    frames_total: int
    segments_done: int
    segments_total: int
    segments_running: int
    segment_states: str  # per segment: '#' done, '>' running, '.' waiting, 'x' failed
    chunks_done: int
    chunks_total: int
    output: Optional[str]  # the output's path on the coordinator, once DONE
    error: Optional[str]
    created_ms: int
    updated_ms: int
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Job":
        if j.get("schema_version", 1) != SCHEMA_VERSION:
            raise VersionMismatch(
                f"job JSON schema_version {j.get('schema_version')}; this client reads "
                f"{SCHEMA_VERSION}: update segue_client")
        seg, frames, chunks = j.get("segments", {}), j.get("frames", {}), j.get("chunks", {})
        return cls(id=str(j["id"]), name=j.get("name", ""), state=j["state"],
                   priority=int(j.get("priority", 0)), owner=j.get("owner", ""),
                   metadata=dict(j.get("metadata") or {}), submission_id=j.get("submission_id"),
                   progress=float(j.get("progress", 0.0)), eta_seconds=j.get("eta_seconds"),
                   frames_done=int(frames.get("done", 0)),
                   frames_total=int(frames.get("total", 0)),
                   segments_done=int(seg.get("done", 0)), segments_total=int(seg.get("total", 0)),
                   segments_running=int(seg.get("running", 0)),
                   segment_states=seg.get("states", ""), chunks_done=int(chunks.get("done", 0)),
                   chunks_total=int(chunks.get("total", 0)), output=j.get("output"),
                   error=j.get("error"), created_ms=int(j.get("created_ms", 0)),
                   updated_ms=int(j.get("updated_ms", 0)), raw=j)


@dataclasses.dataclass(frozen=True)
class Worker:
    name: str
    host: str
    state: str  # idle, busy, draining
    task: str
    pool: str
    identity: str
    models: List[str]
    tasks_done: int
    failures: int
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Worker":
        return cls(name=j.get("name", ""), host=j.get("host", ""), state=j.get("state", ""),
                   task=j.get("task") or "", pool=j.get("pool") or "",
                   identity=j.get("identity") or "", models=list(j.get("models") or []),
                   tasks_done=int(j.get("tasks_done", 0)), failures=int(j.get("failures", 0)),
                   raw=j)


@dataclasses.dataclass(frozen=True)
class Pool:
    name: str
    provider: str
    size: int
    members: int
    idle: int
    busy: int
    autoscale: bool
    min: int
    max: int
    raw: Dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_json(cls, j: Dict[str, Any]) -> "Pool":
        return cls(name=j["name"], provider=j.get("provider", ""), size=int(j.get("size", 0)),
                   members=int(j.get("members", 0)), idle=int(j.get("idle", 0)),
                   busy=int(j.get("busy", 0)), autoscale=bool(j.get("autoscale", False)),
                   min=int(j.get("min", 0)), max=int(j.get("max", 0)), raw=j)


@dataclasses.dataclass(frozen=True)
class Event:
    """One event of the stream: type "job", "segment" or "chunk" (state changes), "snapshot"
    (where a job stood when the stream opened: data is the job) or "reset" (events were missed:
    read the jobs again)."""
    type: str
    id: Optional[str]
    data: Dict[str, Any]

    @property
    def state(self) -> Optional[str]:
        return self.data.get("state")

    @property
    def job(self) -> Optional[str]:
        return self.data.get("job") if self.type != "snapshot" else self.data.get("id")


@dataclasses.dataclass(frozen=True)
class LogLine:
    ms: int
    text: str


# ---- The client -----------------------------------------------------------------------------

# The manifest's audio.path, flow style (audio: {path: song.wav}) or block style (audio:\n  path:
# song.wav); quoted or not.
_AUDIO_FLOW = re.compile(r"^audio:\s*\{[^}]*?\bpath:\s*(\"[^\"]*\"|'[^']*'|[^,}\n]+?)\s*[,}]", re.M)
_AUDIO_BLOCK = re.compile(r"^audio:[ \t]*\n(?:[ \t]+.*\n)*?[ \t]+path:[ \t]*(\"[^\"]*\"|'[^']*'|[^\n#]+?)[ \t]*(?:#.*)?$",
                          re.M)


class Client:
    """A coordinator's HTTP API (segue-coordinator --http HOST:PORT).

    url: "http://HOST:PORT" (default: $SEGUE_URL, else http://127.0.0.1:8080).
    token: a bearer token of the coordinator's keys file (default: $SEGUE_TOKEN); needed for
    writes when the coordinator has keys. timeout: seconds per request.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None,
                 timeout: float = 30.0):
        self.url = (url or os.environ.get("SEGUE_URL") or "http://127.0.0.1:8080").rstrip("/")
        if not self.url.startswith("http://"):
            raise ValueError(f"url: expected http://HOST:PORT, got {self.url!r}")
        self.token = token if token is not None else os.environ.get("SEGUE_TOKEN")
        self.timeout = timeout

    # ---- plumbing ----

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
                 headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None,
                 stream: bool = False):
        data = None
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif method == "POST":
            data = b""
        h.update(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raise _error_of(e.code, e.read()) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, OSError) as e:
            reason = getattr(e, "reason", e)
            raise Unreachable(f"no coordinator answers at {self.url}: {reason}") from None
        if stream:
            return resp
        with resp:
            raw = resp.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise Unreachable(f"{self.url}{path} did not answer JSON: is this a segue "
                              f"coordinator's --http port?") from None

    # ---- jobs ----

    def submit(self, manifest: Union[str, os.PathLike], *, audio: Union[None, str,
               os.PathLike, bytes] = None, submission_id: Optional[str] = None,
               output: Optional[str] = None) -> Job:
        """Submits a manifest: a path to a YAML file, or its text. The audio the manifest names
        (audio: {path: ...}, relative to the manifest's folder) is read and sent with it unless
        `audio` gives a path or the bytes. `submission_id` (1-128 printable characters) makes a
        resubmission after a lost answer return the same job. `output` replaces output.path."""
        name = "manifest.yaml"
        folder = pathlib.Path.cwd()
        text = str(manifest) if not isinstance(manifest, os.PathLike) else None
        if isinstance(manifest, os.PathLike) or (
                "\n" not in str(manifest) and pathlib.Path(str(manifest)).is_file()):
            path = pathlib.Path(manifest)
            text, name, folder = path.read_text(), path.name, path.resolve().parent
        body: Dict[str, Any] = {"manifest": text, "manifest_name": name}
        audio_name = None
        if audio is None:
            m = _AUDIO_FLOW.search(text or "") or _AUDIO_BLOCK.search(text or "")
            if m and m.group(1):
                audio = folder / m.group(1).strip().strip("'\"")
        if isinstance(audio, (str, os.PathLike)):
            audio_name = pathlib.Path(audio).name
            audio = pathlib.Path(audio).read_bytes()
        if audio is not None:
            body["audio"] = base64.b64encode(audio).decode()
            body["audio_name"] = audio_name or "audio"
        if submission_id is not None:
            body["submission_id"] = submission_id
        if output is not None:
            body["output"] = output
        return Job.from_json(self._request("POST", "/api/v1/jobs", body))

    def get(self, job_id: Union[str, int]) -> Job:
        return Job.from_json(self._request("GET", f"/api/v1/jobs/{job_id}"))

    def list(self, *, state: Union[None, str, List[str]] = None, owner: Optional[str] = None,
             name: Optional[str] = None, meta: Optional[Dict[str, str]] = None,
             page_size: int = 500) -> Iterator[Job]:
        """Jobs by id, oldest first, that pass every filter given; fetched a page at a time."""
        params: List[tuple] = []
        for s in ([state] if isinstance(state, str) else state or []):
            params.append(("state", s))
        if owner:
            params.append(("owner", owner))
        if name:
            params.append(("name", name))
        for k, v in (meta or {}).items():
            params.append(("meta", f"{k}={v}"))
        params.append(("limit", str(page_size)))
        after = None
        while True:
            query = params + ([("after", after)] if after else [])
            page = self._request("GET", "/api/v1/jobs?" + urllib.parse.urlencode(query))
            for j in page["jobs"]:
                yield Job.from_json(j)
            after = page.get("next_after")
            if not after:
                return

    def cancel(self, job_id: Union[str, int]) -> Job:
        """Cancels a job; a finished job is left as it is (and returned)."""
        return Job.from_json(self._request("POST", f"/api/v1/jobs/{job_id}/cancel"))

    def retry(self, job_id: Union[str, int]) -> Job:
        """Puts a FAILED or CANCELLED job back to work; finished segments are kept."""
        return Job.from_json(self._request("POST", f"/api/v1/jobs/{job_id}/retry"))

    def set_priority(self, job_id: Union[str, int], priority: int) -> Job:
        return Job.from_json(self._request("POST", f"/api/v1/jobs/{job_id}/priority",
                                           {"priority": priority}))

    def logs(self, job_id: Union[str, int]) -> List[LogLine]:
        got = self._request("GET", f"/api/v1/jobs/{job_id}/logs")
        return [LogLine(int(line["ms"]), line["text"]) for line in got["lines"]]

    def wait(self, job_id: Union[str, int], timeout: Optional[float] = None) -> Job:
        """Waits until the job is DONE, FAILED or CANCELLED (following its events) and returns
        it; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        job = self.get(job_id)
        while not job.finished:
            try:
                # The job's stream from now (its snapshot first); back to GET the job after a
                # finishing event, a reset, or every keepalive (15 s), so that nothing missed
                # while reconnecting can keep it waiting.
                for event in self._stream(job_id, None, 30.0, reconnect=False):
                    if deadline is not None and time.monotonic() > deadline:
                        break
                    if event is None or event.type == "reset":
                        break
                    if event.type in ("job", "snapshot") and event.state in FINISHED:
                        break
            except (Unreachable, TimeoutError):
                time.sleep(0.5)  # the coordinator restarting, say: ask again
            job = self.get(job_id)
            if not job.finished and deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout} s")
        return job

    def events(self, job_id: Union[None, str, int] = None, last_event_id: Optional[str] = None,
               timeout: Optional[float] = None) -> Iterator[Event]:
        """The event stream (all jobs, or one), from now or after `last_event_id`. A dropped
        connection is resumed from the last event seen. TimeoutError after `timeout` seconds
        without an event (None: never)."""
        quiet_since = time.monotonic()
        for event in self._stream(job_id, last_event_id, 30.0):
            if event is None:  # a keepalive
                if timeout is not None and time.monotonic() - quiet_since > timeout:
                    raise TimeoutError(f"no event for {timeout} s")
                continue
            quiet_since = time.monotonic()
            yield event

    def _stream(self, job_id, last_event_id, read_timeout,
                reconnect: bool = True) -> Iterator[Optional[Event]]:
        """Events, and None for each keepalive (every 15 s) or quiet read_timeout; reconnects
        after a dropped connection with the last id seen (unless `reconnect` is False)."""
        path = "/api/v1/events" + (f"?job={job_id}" if job_id is not None else "")
        last = last_event_id
        while True:
            headers = {"Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = last
            resp = self._request("GET", path, headers=headers, timeout=read_timeout, stream=True)
            try:
                for event in _read_events(resp):
                    if event is not None and event.id:
                        last = event.id
                    yield event
            except (socket.timeout, TimeoutError):
                yield None
            except (ConnectionError, OSError):
                pass
            finally:
                resp.close()
            if not reconnect:
                return

    def download(self, job_id: Union[str, int], path: Union[str, os.PathLike],
                 chunk_bytes: int = 1 << 20) -> pathlib.Path:
        """Downloads a DONE job's output to `path` (through PATH.part, renamed when complete);
        a .part left by an interrupted download is resumed with a Range request, if the output
        is still the same file (its ETag, kept in PATH.part.etag; else it starts again)."""
        path = pathlib.Path(path)
        part = path.with_name(path.name + ".part")
        tag_file = path.with_name(path.name + ".part.etag")
        have = part.stat().st_size if part.exists() else 0
        etag = tag_file.read_text() if have and tag_file.exists() else ""
        headers = {"Range": f"bytes={have}-", "If-Range": etag} if have and etag else {}
        if not headers:
            have = 0
        try:
            resp = self._request("GET", f"/api/v1/jobs/{job_id}/output", headers=headers,
                                 stream=True)
        except SegueError as e:
            if e.status == 416 and have:  # past the end: start again
                part.unlink()
                tag_file.unlink(missing_ok=True)
                return self.download(job_id, path, chunk_bytes)
            raise
        with resp:
            partial = resp.status == 206
            if partial and not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                raise Unreachable(f"the coordinator sent {resp.headers.get('Content-Range')} "
                                  f"for bytes {have}-")
            tag_file.write_text(resp.headers.get("ETag", ""))
            total = resp.headers.get("Content-Length")
            got = 0
            with open(part, "ab" if partial else "wb") as f:
                while True:
                    block = resp.read(chunk_bytes)
                    if not block:
                        break
                    f.write(block)
                    got += len(block)
        if total is not None and got != int(total):
            raise Unreachable(f"the download of job {job_id} ended after {got} of {total} "
                              f"bytes; call download again to resume")
        part.replace(path)
        tag_file.unlink(missing_ok=True)
        return path

    # ---- the farm ----

    def workers(self) -> List[Worker]:
        return [Worker.from_json(w) for w in self._request("GET", "/api/v1/workers")["workers"]]

    def drain(self, worker: str) -> Worker:
        got = self._request("POST", f"/api/v1/workers/{urllib.parse.quote(worker)}/drain")
        return Worker.from_json(got["workers"][0])

    def pools(self) -> List[Pool]:
        return [Pool.from_json(p) for p in self._request("GET", "/api/v1/pools")["pools"]]

    def scale_pool(self, pool: str, size: int) -> Pool:
        got = self._request("POST", f"/api/v1/pools/{urllib.parse.quote(pool)}/scale",
                            {"size": size})
        return _pool_named(got, pool)

    def autoscale_pool(self, pool: str, enabled: bool, min: Optional[int] = None,
                       max: Optional[int] = None) -> Pool:
        body: Dict[str, Any] = {"enabled": enabled}
        if min is not None or max is not None:
            body.update({"min": min or 0, "max": max if max is not None else 0})
        got = self._request("POST", f"/api/v1/pools/{urllib.parse.quote(pool)}/autoscale", body)
        return _pool_named(got, pool)

    def health(self) -> Dict[str, Any]:
        return self._request("GET", "/api/v1/health")

    def version(self) -> Dict[str, Any]:
        return self._request("GET", "/api/v1/version")


def _pool_named(reply: Dict[str, Any], name: str) -> Pool:
    for p in reply["pools"]:
        if p["name"] == name:
            return Pool.from_json(p)
    raise NotFound(f"no pool {name!r} in the answer")


def _error_of(status: int, raw: bytes) -> SegueError:
    try:
        err = json.loads(raw)["error"]
        code, message = err["code"], err["message"]
    except (ValueError, KeyError, TypeError):
        return SegueError(raw.decode("utf-8", "replace").strip() or f"HTTP {status}", status,
                          code=f"http_{status}")
    cls = _ERRORS.get(code, SegueError)
    return cls(message, status) if cls is not SegueError else SegueError(message, status, code)


def _read_events(resp) -> Iterator[Optional[Event]]:
    """Server-Sent Events, as the coordinator writes them (one data line per event); None for a
    comment (the coordinator's keepalive)."""
    event_id, event_type, data = None, "message", []
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                try:
                    payload = json.loads("\n".join(data))
                except ValueError:
                    payload = {"text": "\n".join(data)}
                yield Event(event_type, event_id, payload)
            event_id, event_type, data = None, "message", []
        elif line.startswith(":"):
            yield None  # a keepalive
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                event_id = value
            elif field == "event":
                event_type = value
            elif field == "data":
                data.append(value)
