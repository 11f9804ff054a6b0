"""The host's loop: one request at a time from the worker, answered in order.

The worker binds an ipc:// endpoint and starts the host with SEGUE_HOST_ENDPOINT,
SEGUE_HOST_MODEL and SEGUE_HOST_DEVICE set; the host connects a REP socket to it. A request the
host cannot parse or an adapter call that raises is answered with ok: false and the reason; the
host keeps serving. The worker times calls out and restarts a host that hangs or dies.
"""

import argparse
import importlib
import os
import sys
import time
import traceback

import numpy as np
import zmq

from . import PROTOCOL_VERSION, protocol


def load_adapter(spec, device, options):
    """'tinywan' (segue_host.adapters.tinywan) or 'module:Class' (any module on PYTHONPATH)."""
    module_name, colon, cls = spec.partition(":")
    if not colon:
        module_name = "segue_host.adapters." + module_name
    module = importlib.import_module(module_name)
    return getattr(module, cls or "Model")(device=device, options=options)


def _result_tensors(named):
    out = []
    for name, value in named:
        dtype = None
        if hasattr(value, "detach"):  # a torch tensor: bfloat16 travels as its bit patterns
            import torch
            value = value.detach().to("cpu").contiguous()
            if value.dtype == torch.bfloat16:
                value, dtype = value.view(torch.int16).numpy().view(np.uint16), "bfloat16"
            else:
                value = value.numpy()
        out.append((name, np.asarray(value), dtype))
    return out


def handle(adapter, header, tensors):
    """One request -> (result, tensors). The result carries adapter_seconds: the time the
    adapter's own call took, so the worker can tell the host's cost from the model's."""
    began = time.perf_counter()
    result, out = _dispatch(adapter, header, tensors)
    if header.get("method") != "hello":
        result = dict(result, adapter_seconds=time.perf_counter() - began)
    return result, out


def _dispatch(adapter, header, tensors):
    method = header.get("method")
    args = header.get("args") or {}
    arrays = {k: protocol.to_float32(a, d) if d in ("float16", "bfloat16") else a
              for k, (a, d) in tensors.items()}
    if method == "hello":
        return {"protocol": PROTOCOL_VERSION, "metadata": adapter.metadata()}, []
    if method == "encode_prompt":
        text = args.get("text")
        if not isinstance(text, str):
            raise ValueError("encode_prompt needs args.text, a string")
        tokens, mask = adapter.encode_prompt(text)
        return {}, _result_tensors([("tokens", tokens), ("mask", np.asarray(mask, dtype=bool))])
    if method == "denoise":
        latents, sigma = arrays.pop("latents"), arrays.pop("sigma")
        return {}, _result_tensors([("prediction", adapter.denoise(latents, sigma, arrays))])
    if method == "decode":
        return {}, _result_tensors([("frames", adapter.decode(arrays["latents"]))])
    raise ValueError(f"unknown method {method!r}")


def open_arena(path):
    """The worker's arena at `path`, or None (no path, or it cannot be opened: frames then)."""
    if not isinstance(path, str):
        return None
    try:
        return protocol.Arena(path)
    except OSError as e:
        print(f"segue_host: not using the arena {path}: {e}", file=sys.stderr)
        return None


def serve(adapter, endpoint):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(endpoint)
    arena = None  # the worker's shared memory, once hello offered it
    while True:
        frames = sock.recv_multipart(copy=False)
        request_id, header = None, None
        try:
            header, tensors = protocol.decode([f.buffer for f in frames], arena)
            request_id = header.get("id")
            result, out = handle(adapter, header, tensors)
            if header.get("method") == "hello":
                arena = open_arena((header.get("args") or {}).get("arena"))
                result = dict(result, arena=arena is not None)
            # Answers go into the arena's free part when the request offered one.
            spec, shared, free = header.get("arena"), None, 0
            if arena and isinstance(spec, dict) and isinstance(spec.get("free"), int):
                shared, free = arena.view(spec.get("bytes")), max(0, spec["free"])
            reply = protocol.encode({"id": request_id, "ok": True, "result": result}, out,
                                    shared, free)
        except Exception as e:  # the reason goes back to the worker; the host keeps serving
            traceback.print_exc(file=sys.stderr)
            reply = protocol.encode({"id": request_id, "ok": False,
                                     "error": f"{type(e).__name__}: {e}"})
        sock.send_multipart(reply, copy=False)
        if isinstance(header, dict) and header.get("method") == "shutdown":
            return


def main(argv=None):
    p = argparse.ArgumentParser(prog="python3 -m segue_host",
                                description="Serve a PyTorch video model to a segue worker.")
    p.add_argument("--adapter", required=True, help="tinywan, diffusers, or module:Class")
    p.add_argument("--endpoint", default=os.environ.get("SEGUE_HOST_ENDPOINT"),
                   help="the worker's endpoint (default: $SEGUE_HOST_ENDPOINT)")
    p.add_argument("--device", default=os.environ.get("SEGUE_HOST_DEVICE", "cpu"))
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: results independent of the machine's cores)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to the adapter")
    a = p.parse_args(argv)
    if not a.endpoint:
        p.error("no --endpoint and no SEGUE_HOST_ENDPOINT")
    try:
        import torch
        torch.set_num_threads(a.threads)
    except ImportError:
        pass
    options = dict(o.split("=", 1) for o in a.option if "=" in o)
    serve(load_adapter(a.adapter, a.device, options), a.endpoint)
