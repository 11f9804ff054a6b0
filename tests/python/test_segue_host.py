"""Unit tests of the model host package (worker/host/segue_host): framing, the server's answers,
and tinywan's shapes and causality. Run: /usr/bin/python3 -m unittest discover -s tests/python
(ctest runs them as Python.SegueHost)."""

import json
import os
import sys
import threading
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "worker", "host"))

from segue_host import protocol, server  # noqa: E402


class Framing(unittest.TestCase):
    def test_round_trip_keeps_dtype_shape_and_bytes(self):
        a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
        m = np.array([True, False, True])
        frames = protocol.encode({"id": 3, "method": "x"}, [("a", a, None), ("m", m, None),
                                                           ("h", a, "float16")])
        header, tensors = protocol.decode([bytes(f) for f in frames])
        self.assertEqual(header["id"], 3)
        self.assertTrue(np.array_equal(tensors["a"][0], a))
        self.assertEqual(tensors["a"][1], "float32")
        self.assertTrue(np.array_equal(tensors["m"][0], m))
        self.assertTrue(np.array_equal(protocol.to_float32(*tensors["h"]), a))

    def test_bfloat16_is_the_upper_half_of_float32(self):
        a = np.array([1.5, -2.25, 2.0 ** 100], dtype=np.float32)
        bits = (a.view(np.uint32) >> 16).astype(np.uint16)
        self.assertTrue(np.array_equal(protocol.to_float32(bits, "bfloat16"), a))

    def test_hostile_messages_are_refused_with_a_reason(self):
        good = protocol.encode({"id": 1}, [("a", np.zeros(4, np.float32), None)])
        cases = [
            [],
            [b"\xff\xfe"],
            [b"[1, 2]"],
            [good[0]],                                            # a tensor missing
            [good[0], b"123"],                                    # wrong byte count
            [b'{"tensors": [{"name": "a", "dtype": "complex", "shape": [1]}]}', b"1234"],
            [b'{"tensors": [{"name": "a", "dtype": "float32", "shape": [-1]}]}', b""],
            [b'{"tensors": [{"name": "a", "dtype": "float32", "shape": [1,1,1,1,1,1,1,1,1]}]}',
             b"1234"],
            [b'{"tensors": "nope"}'],
        ]
        for frames in cases:
            with self.assertRaises(protocol.ProtocolError, msg=repr(frames)):
                protocol.decode(frames)


class SharedArena(unittest.TestCase):
    """Tensors through the worker's arena: read in place, answers written past `free`."""

    def setUp(self):
        fd = os.memfd_create("test-arena")
        os.ftruncate(fd, 1 << 16)
        self.addCleanup(os.close, fd)
        self.arena = protocol.Arena(f"/proc/{os.getpid()}/fd/{fd}")
        self.worker_side = protocol.Arena(f"/proc/{os.getpid()}/fd/{fd}").view(1 << 16)

    def test_request_in_place_and_answer_past_free(self):
        lat = np.arange(12, dtype=np.float32).reshape(3, 4)
        np.frombuffer(self.worker_side, np.float32, 12, 0)[:] = lat.ravel()
        header = {"id": 1, "arena": {"bytes": 1 << 16, "free": 64},
                  "tensors": [{"name": "latents", "dtype": "float32", "shape": [3, 4],
                               "offset": 0}]}
        got, tensors = protocol.decode([json.dumps(header).encode()], self.arena)
        self.assertTrue(np.array_equal(tensors["latents"][0], lat))
        frames = protocol.encode({"id": 1}, [("prediction", lat * 2, None),
                                             ("big", np.zeros(1 << 15, np.float32), None)],
                                 self.arena.view(1 << 16), 64)
        reply = json.loads(bytes(frames[0]))
        self.assertEqual(reply["tensors"][0]["offset"], 64)
        self.assertNotIn("offset", reply["tensors"][1])  # 128 KiB does not fit: a frame
        self.assertEqual(len(frames), 2)
        self.assertTrue(np.array_equal(np.frombuffer(self.worker_side, np.float32, 12, 64),
                                       (lat * 2).ravel()))

    def test_offsets_outside_the_arena_or_without_one_are_refused(self):
        for offset in (-8, (1 << 16) - 8, "0"):
            header = {"arena": {"bytes": 1 << 16, "free": 0},
                      "tensors": [{"name": "a", "dtype": "float32", "shape": [4],
                                   "offset": offset}]}
            with self.assertRaises(protocol.ProtocolError, msg=repr(offset)):
                protocol.decode([json.dumps(header).encode()], self.arena)
        header = {"tensors": [{"name": "a", "dtype": "float32", "shape": [4], "offset": 0}]}
        with self.assertRaises(protocol.ProtocolError):
            protocol.decode([json.dumps(header).encode()], None)


class Echo:
    """An adapter that answers what it was given, for the server's dispatch."""

    def metadata(self):
        return {"latent_channels": 4}

    def encode_prompt(self, text):
        return np.ones((2, 3), np.float32) * len(text), np.array([True, False])

    def denoise(self, latents, sigma, cond):
        return latents * 0 + cond["prompt_weights"].sum()

    def decode(self, latents):
        raise RuntimeError("no decoder here")


class Server(unittest.TestCase):
    def call(self, method, args=None, tensors=()):
        frames = protocol.encode({"id": 9, "method": method, "args": args or {}}, tensors)
        header, tensors = protocol.decode([bytes(f) for f in frames])
        result, out = server.handle(Echo(), header, tensors)
        return result, {name: array for name, array, _ in out}

    def test_methods(self):
        result, _ = self.call("hello")
        self.assertEqual(result["metadata"]["latent_channels"], 4)
        _, out = self.call("encode_prompt", {"text": "abc"})
        self.assertEqual(out["tokens"].shape, (2, 3))
        self.assertEqual(out["mask"].dtype, bool)
        lat = np.zeros((1, 4, 2, 1, 1), np.float32)
        _, out = self.call("denoise", tensors=[("latents", lat, None),
                                               ("sigma", np.ones(1, np.float32), None),
                                               ("prompt_weights", np.ones((1, 2, 1), np.float32),
                                                None)])
        self.assertTrue(np.all(out["prediction"] == 2))

    def test_errors_are_raised_for_the_loop_to_answer(self):
        with self.assertRaises(ValueError):
            self.call("encode_prompt", {"text": 5})
        with self.assertRaises(ValueError):
            self.call("teleport")
        with self.assertRaises(RuntimeError):
            self.call("decode", tensors=[("latents", np.zeros((1, 4, 1, 1, 1), np.float32), None)])


class TinyWan(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from segue_host.adapters import tinywan
        cls.m = tinywan.Model()

    def cond(self, tokens, mask, weights, first=0):
        t = weights.shape[1]
        return {"prompt_tokens": tokens, "prompt_mask": mask, "prompt_weights": weights,
                "first_latent": np.array([first]), "frame_times": np.zeros((1, t)),
                "fps": np.array([16.0])}

    def test_shapes_are_wans(self):
        meta = self.m.metadata()
        self.assertEqual((meta["latent_channels"], meta["temporal_compression"],
                          meta["spatial_compression"], meta["patch_size"]), (16, 4, 8, 2))
        tokens, mask = self.m.encode_prompt("two teenagers at a dance")
        self.assertEqual(tokens.shape, (16, 32))
        self.assertEqual(int(mask.sum()), 5)
        self.assertTrue(np.all(tokens[~mask] == 0))  # padding, as umT5's
        lat = np.random.RandomState(0).randn(1, 16, 21, 4, 6).astype(np.float32)
        v = self.m.denoise(lat, np.array([0.7], np.float32),
                           self.cond(tokens[None], mask[None], np.ones((1, 21, 1), np.float32)))
        self.assertEqual(v.shape, lat.shape)
        self.assertEqual(self.m.decode(lat).shape, (1, 3, 81, 32, 48))

    def test_padding_is_masked_and_weights_mix_prompts(self):
        lat = np.random.RandomState(1).randn(1, 16, 5, 4, 4).astype(np.float32)
        a, ma = self.m.encode_prompt("a long drive by the sea")
        b, mb = self.m.encode_prompt("snow")
        bank, masks = np.stack([a, b]), np.stack([ma, mb])
        w_a = np.zeros((1, 5, 2), np.float32)
        w_a[..., 0] = 1
        sigma = np.array([0.5], np.float32)
        base = self.m.denoise(lat, sigma, self.cond(bank, masks, w_a))
        junk = bank.copy()
        junk[1, ~mb] = 7.0  # what padding holds must not matter
        junk[0, ~ma] = -3.0
        self.assertTrue(np.array_equal(base, self.m.denoise(lat, sigma, self.cond(junk, masks, w_a))))
        w_b = w_a[..., ::-1].copy()
        self.assertFalse(np.allclose(base, self.m.denoise(lat, sigma, self.cond(bank, masks, w_b))))
        # Where the window sits in the video changes the prediction (rotary positions over time).
        self.assertFalse(np.allclose(base, self.m.denoise(lat, sigma,
                                                          self.cond(bank, masks, w_a, first=8))))

    def test_decoder_is_causal_with_one_latent_of_context(self):
        lat = np.random.RandomState(2).randn(1, 16, 9, 2, 2).astype(np.float32)
        whole = self.m.decode(lat)
        self.assertEqual(whole.shape[2], 1 + 4 * 8)
        for start in (1, 4, 7):  # a chunk from latent `start`, with latent start - 1 as context
            part = self.m.decode(lat[:, :, start - 1:])
            self.assertTrue(np.array_equal(whole[:, :, 1 + 4 * (start - 1):], part[:, :, 1:]),
                            f"chunk from latent {start}")
        self.assertTrue(np.all(np.abs(whole) <= 1))

    def test_same_weights_every_time(self):
        from segue_host.adapters import tinywan
        other = tinywan.Model()
        lat = np.ones((1, 16, 2, 2, 2), np.float32)
        self.assertTrue(np.array_equal(self.m.decode(lat), other.decode(lat)))


if __name__ == "__main__":
    unittest.main()
