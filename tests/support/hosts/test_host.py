"""A model host for the tests: a tiny r = 1 model that serves correctly, or misbehaves as told.

  python3 test_host.py MODE      (PYTHONPATH: worker/host, for segue_host.protocol)

MODE: good | crash | hang | garbage | wrong-shape | never-starts | silent | error | once
The misbehaviour happens on denoise (the model's first call of a task after hello and
encode_prompt), except never-starts (exits at once) and silent (never answers hello); once
starts the first time (leaving once.started in its working folder), crashes on denoise, and
never starts again. Every start that answers hello appends "DEVICE PID" to hellos.txt in the
working folder (the model folder).
Written with pyzmq and numpy alone, as docs/MODELS.md says a host can be.
"""

import os
import sys
import time

import numpy as np
import zmq

from segue_host import protocol

MODE = sys.argv[1] if len(sys.argv) > 1 else "good"
METADATA = {"latent_channels": 4, "spatial_compression": 8, "temporal_compression": 1,
            "native_frames": [16], "native_fps": 24.0, "prediction": "x0", "default_steps": 3,
            "conditioning": "per-frame"}

if MODE == "never-starts":
    print("test host: cannot load the model weights (never-starts)", file=sys.stderr)
    sys.exit(1)
if MODE == "once":
    if os.path.exists("once.started"):
        print("test host: cannot start again (once)", file=sys.stderr)
        sys.exit(1)
    open("once.started", "w").close()

sock = zmq.Context().socket(zmq.REP)
sock.connect(os.environ["SEGUE_HOST_ENDPOINT"])
while True:
    header, tensors = protocol.decode(sock.recv_multipart())
    method, rid = header["method"], header["id"]
    if MODE == "silent":
        time.sleep(3600)
    out, result = [], {}
    if method == "hello":
        result = {"protocol": 1, "metadata": METADATA}
        with open("hellos.txt", "a") as f:  # who started where: one line per host start
            f.write(f"{os.environ.get('SEGUE_HOST_DEVICE')} {os.getpid()}\n")
    elif method == "encode_prompt":
        out = [("tokens", np.full((1, 8), len(header["args"]["text"]) % 5, np.float32), None),
               ("mask", np.ones(1, bool), None)]
    elif method == "denoise":
        latents = tensors["latents"][0]
        if MODE in ("crash", "once"):
            print("test host: CUDA out of memory (crash)", file=sys.stderr, flush=True)
            os._exit(3)
        if MODE == "hang":
            print("test host: stuck in denoise (hang)", file=sys.stderr, flush=True)
            time.sleep(3600)
        if MODE == "garbage":
            print("test host: answering garbage", file=sys.stderr, flush=True)
            sock.send_multipart([b"\xff\x00 not json", b"1234"])
            continue
        if MODE == "error":
            sock.send_multipart(protocol.encode({"id": rid, "ok": False,
                                                 "error": "ValueError: the test host refuses"}))
            continue
        weights = tensors["prompt_weights"][0]
        bank = tensors["prompt_tokens"][0][:, 0, 0]
        level = (weights * bank).sum(-1)  # [B, T]
        pred = np.zeros_like(latents) + level[:, None, :, None, None] * 0.1
        pred += (tensors["first_latent"][0][:, None] + np.arange(latents.shape[2]))[:, None, :, None, None] * 0.01
        if MODE == "wrong-shape":
            pred = pred[:, :, :1]
        out = [("prediction", pred.astype(np.float16), None)]  # halves: widened by the worker
    elif method == "decode":
        latents = tensors["latents"][0]
        rgb = 1 / (1 + np.exp(-latents[:, :3]))
        out = [("frames", rgb.repeat(8, 3).repeat(8, 4).astype(np.float32), None)]
    else:
        sock.send_multipart(protocol.encode({"id": rid, "ok": False, "error": "unknown method"}))
        continue
    sock.send_multipart(protocol.encode({"id": rid, "ok": True, "result": result}, out))
