"""The Python client (tools/python/segue_client) against a real coordinator: its own processes,
its built-in local pool of real workers, real sockets on loopback.

Needs SEGUE_BIN_DIR (the build's bin/, set by CTest) and ffprobe.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import wave

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "python"))

import segue_client  # noqa: E402

BIN = pathlib.Path(os.environ.get("SEGUE_BIN_DIR", ROOT / "build" / "bin"))

MANIFEST = """version: 1
name: {name}
video: {{width: 64, height: 64, fps: 24, frames: {frames}}}
model: {{name: zoom, steps: {steps}}}
segments: {{length: 12, overlap: 2}}
timeline: [{{at: 0, prompt: a garden at dusk}}]
output: {{overwrite: true}}
metadata: {{show: hardest, shot: "{shot}"}}
{extra}"""


def write_tone(path, seconds):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * int(8000 * seconds))


class Farm:
    """segue-coordinator with --http on a free port and its built-in local pool."""

    def __init__(self, folder, *args):
        self.folder = pathlib.Path(folder)
        state = self.folder / "state"
        self.log = open(self.folder / "coordinator.log", "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "segue-coordinator"), "--listen", "tcp://127.0.0.1:*", "--state-dir",
             str(state), "--output-root", str(self.folder / "root"), "--http", "127.0.0.1:0",
             "--encoder-preset", "veryfast", *args], stdout=self.log, stderr=self.log)
        for _ in range(400):
            if (state / "coordinator.http").exists():
                break
            time.sleep(0.05)
        self.url = "http://" + (state / "coordinator.http").read_text().strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="segue-client-")
        cls.farm = Farm(cls.tmp)
        cls.client = segue_client.Client(cls.farm.url)
        # The built-in local pool starts empty: two workers, asked for through the API.
        cls.client.scale_pool("local", 2)

    @classmethod
    def tearDownClass(cls):
        cls.farm.stop()
        if not os.environ.get("SEGUE_KEEP_TEST_FILES"):
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def manifest(self, name, frames=24, steps=2, shot="010", extra=""):
        path = pathlib.Path(self.tmp) / f"{name}.yaml"
        path.write_text(MANIFEST.format(name=name, frames=frames, steps=steps, shot=shot,
                                        extra=extra))
        return path

    def test_submit_follow_wait_and_download(self):
        write_tone(pathlib.Path(self.tmp) / "song.wav", 2.0)
        path = self.manifest("sh010", frames=48, steps=6, extra="audio: {path: song.wav}\n")
        job = self.client.submit(path, submission_id="sh010-v1")
        self.assertIsInstance(job, segue_client.Job)
        self.assertEqual(job.name, "sh010")
        self.assertEqual(job.metadata, {"show": "hardest", "shot": "010"})
        self.assertEqual(job.owner, "local")
        # A resubmission after a lost answer: the same job.
        self.assertEqual(self.client.submit(path, submission_id="sh010-v1").id, job.id)
        seen = []

        def follow():
            for event in self.client.events(job.id, timeout=60):
                seen.append(event)
                if event.type == "job" and event.state == "DONE":
                    return
        t = threading.Thread(target=follow)
        t.start()
        done = self.client.wait(job.id, timeout=120)
        t.join(60)
        self.assertEqual(done.state, "DONE", done.error)
        self.assertEqual(done.frames_done, 48)
        self.assertEqual(done.segment_states, "#" * done.segments_total)
        self.assertEqual(seen[0].type, "snapshot")
        self.assertIn("DONE", [e.state for e in seen if e.type == "job"])
        # The snapshot and the events after it account for every segment.
        states = seen[0].data["segments"]["states"]
        self.assertEqual({i for i, c in enumerate(states) if c == "#"} |
                         {e.data["index"] for e in seen
                          if e.type == "segment" and e.state == "done"},
                         set(range(done.segments_total)))
        out = pathlib.Path(self.tmp) / "dl" / "sh010.mp4"
        out.parent.mkdir()
        self.client.download(job.id, out)
        self.assertEqual(out.read_bytes(), pathlib.Path(done.output).read_bytes())
        probe = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(out)],
            check=True, capture_output=True).stdout)
        kinds = {s["codec_type"]: s for s in probe["streams"]}
        self.assertEqual(int(kinds["video"]["nb_read_frames"]), 48)
        self.assertIn("audio", kinds)
        # An interrupted download resumes where its .part ends, if the output is the same file
        # (its ETag); a .part of another version starts again.
        import urllib.request
        head = urllib.request.urlopen(urllib.request.Request(
            f"{self.farm.url}/api/v1/jobs/{job.id}/output", method="HEAD"))
        etag = head.headers["ETag"]
        self.assertTrue(etag)
        part = out.with_name(out.name + ".part")
        tag = out.with_name(out.name + ".part.etag")
        whole = out.read_bytes()
        for kept_tag, kept in ((etag, whole[:1000]), ('"other"', b"x" * 1500)):
            part.write_bytes(kept)
            tag.write_text(kept_tag)
            out.unlink()
            self.client.download(job.id, out)
            self.assertEqual(out.read_bytes(), whole)
            self.assertFalse(part.exists())
            self.assertFalse(tag.exists())
        logs = self.client.logs(job.id)
        self.assertTrue(any("job DONE" in line.text for line in logs), logs)

    def test_list_filters_and_pages(self):
        ids = [self.client.submit(self.manifest(f"page{i}", shot=f"02{i}")).id for i in range(5)]
        listed = [j.id for j in self.client.list(meta={"show": "hardest"}, page_size=2)]
        for i in ids:
            self.assertIn(i, listed)
        self.assertEqual([j.id for j in self.client.list(meta={"shot": "023"})], [ids[3]])
        self.assertEqual([j.id for j in self.client.list(name="page4")], [ids[4]])
        for i in ids:
            self.client.wait(i, timeout=120)
        self.assertTrue(all(j.state == "DONE" for j in self.client.list(name="page1")))

    def test_cancel_retry_priority_and_errors(self):
        job = self.client.submit(self.manifest("long", frames=96, steps=200))
        self.assertEqual(self.client.set_priority(job.id, 90).priority, 90)
        self.assertEqual(self.client.cancel(job.id).state, "CANCELLED")
        self.assertEqual(self.client.cancel(job.id).state, "CANCELLED")  # idempotent
        with self.assertRaises(segue_client.NotReady):
            self.client.download(job.id, pathlib.Path(self.tmp) / "nothing.mp4")
        self.assertIn(self.client.retry(job.id).state, ("QUEUED", "RUNNING"))
        with self.assertRaises(segue_client.BadRequest) as e:
            self.client.retry(job.id)
        self.assertIn("only FAILED or CANCELLED", e.exception.message)
        self.assertEqual(e.exception.status, 400)
        self.client.cancel(job.id)
        with self.assertRaises(segue_client.BadRequest) as e:
            self.client.set_priority(job.id, 1000)
        self.assertIn("priority", str(e.exception))
        with self.assertRaises(segue_client.NotFound):
            self.client.get("424242")
        with self.assertRaises(segue_client.BadRequest) as e:
            self.client.submit("version: 1\nname: broken\nvideo: {width: 64}\n")
        self.assertIn("manifest.yaml", e.exception.message)
        with self.assertRaises(segue_client.NotFound):
            self.client.drain("nobody")
        self.assertTrue(self.client.pools())
        self.assertEqual(self.client.health()["status"], "ok")
        self.assertIn("protocol_version", self.client.version())

    def test_unreachable_and_not_segue(self):
        with self.assertRaises(segue_client.Unreachable):
            segue_client.Client("http://127.0.0.1:1", timeout=2).health()
        with self.assertRaises(ValueError):
            segue_client.Client("ftp://x")


class TokenTest(unittest.TestCase):
    """A coordinator with a keys file: the client's token is its identity."""

    def test_tokens_and_roles(self):
        tmp = tempfile.mkdtemp(prefix="segue-client-keys-")
        try:
            subprocess.run([str(BIN / "segue"), "keygen", f"{tmp}/farm"], check=True,
                           capture_output=True)
            tokens, entries = {}, []
            for name, role in (("alice", "submitter"), ("vic", "viewer")):
                t = json.loads(subprocess.run([str(BIN / "segue"), "token", name, "--role", role,
                                               "--json"], check=True, capture_output=True).stdout)
                tokens[name] = t["token"]
                entries.append(f"  - {{name: {name}, role: {role}, "
                               f"token_sha256: \"{t['token_sha256']}\"}}\n")
            pathlib.Path(tmp, "keys.yaml").write_text("identities:\n" + "".join(entries))
            farm = Farm(tmp, "--curve-key", f"{tmp}/farm.key", "--keys", f"{tmp}/keys.yaml")
            try:
                text = MANIFEST.format(name="owned", frames=24, steps=2, shot="1", extra="")
                with self.assertRaises(segue_client.Unauthorized):
                    segue_client.Client(farm.url, token="").submit(text)
                with self.assertRaises(segue_client.Denied):
                    segue_client.Client(farm.url, token=tokens["vic"]).submit(text)
                alice = segue_client.Client(farm.url, token=tokens["alice"])
                job = alice.submit(text)
                self.assertEqual(job.owner, "alice")
                with self.assertRaises(segue_client.Denied):
                    segue_client.Client(farm.url, token=tokens["vic"]).cancel(job.id)
                self.assertEqual(alice.cancel(job.id).state, "CANCELLED")
            finally:
                farm.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
