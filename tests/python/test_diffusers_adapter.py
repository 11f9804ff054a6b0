"""The diffusers adapter's own logic (worker/host/segue_host/adapters/diffusers.py), with small
PyTorch modules standing in for diffusers' Wan and LTX-Video components (diffusers is not a
Debian package). The stand-ins have the signatures and config fields of diffusers 0.33 and
record what they were called with; what they compute is simple enough to predict here.

This does not show that the adapter renders real Wan or LTX-Video weights well: no test here
runs real weights.
"""

import json
import os
import sys
import tempfile
import types
import unittest

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "worker", "host"))

from segue_host.adapters import diffusers as adapter  # noqa: E402


class Tokenizer:
    """Word ids, padded to max_length, with an attention mask."""

    def __call__(self, texts, padding, max_length, truncation, add_special_tokens,
                 return_attention_mask, return_tensors):
        assert padding == "max_length" and truncation and return_tensors == "pt"
        words = texts[0].split()[:max_length]
        ids = torch.zeros(1, max_length, dtype=torch.int64)
        mask = torch.zeros(1, max_length, dtype=torch.int64)
        for i, word in enumerate(words):
            ids[0, i] = 1 + len(word)
            mask[0, i] = 1
        return types.SimpleNamespace(input_ids=ids, attention_mask=mask)


class TextEncoder(nn.Module):
    """Every position, padding too, gets a nonzero embedding (as T5's output does)."""

    def forward(self, ids, mask):
        hidden = ids[..., None].float().expand(-1, -1, 8) + 0.5
        return types.SimpleNamespace(last_hidden_state=hidden)


class WanTransformer(nn.Module):
    """prediction = x * 2 + timestep/1000 + the context's mean, per batch item."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(in_channels=16, patch_size=(1, 2, 2))
        self.calls = []

    def forward(self, hidden_states, timestep, encoder_hidden_states,
                encoder_hidden_states_image=None, return_dict=True, attention_kwargs=None):
        self.calls.append({"x": hidden_states, "timestep": timestep,
                           "context": encoder_hidden_states})
        bias = timestep / 1000 + encoder_hidden_states.float().mean((1, 2))
        return (hidden_states * 2 + bias.view(-1, 1, 1, 1, 1).to(hidden_states.dtype),)


class WanVae(nn.Module):
    """Causal 4x in time, 8x in space: each latent frame becomes 4 frames (the first one 1) of
    its first three channels, repeated over 8 x 8 pixels."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(z_dim=16, temperal_downsample=[False, True, True],
                                            latents_mean=[0.1 * i for i in range(16)],
                                            latents_std=[1.0 + i for i in range(16)])
        self.seen = None

    def decode(self, z, return_dict=True):
        self.seen = z
        rgb = z[:, :3].repeat_interleave(4, 2)[:, :, 3:]
        return (rgb.repeat_interleave(8, 3).repeat_interleave(8, 4),)


class LtxTransformer(nn.Module):
    """Takes packed tokens [B, N, C]: prediction = tokens + timestep/1000 per token + the first
    video coordinate (seconds) when given."""

    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(in_channels=128, patch_size=1, patch_size_t=1)
        self.calls = []

    def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask,
                num_frames=None, height=None, width=None, rope_interpolation_scale=None,
                video_coords=None, attention_kwargs=None, return_dict=True):
        self.calls.append({"x": hidden_states, "timestep": timestep, "mask":
                           encoder_attention_mask, "video_coords": video_coords,
                           "dims": (num_frames, height, width)})
        b, n, _ = hidden_states.shape
        steps = timestep.reshape(b, -1).expand(b, n) / 1000
        out = hidden_states + steps[..., None]
        if video_coords is not None:
            out = out + video_coords[:, 0, :, None]
        return (out,)


class LtxVae(nn.Module):
    def __init__(self, timestep_conditioning=True):
        super().__init__()
        self.config = types.SimpleNamespace(scaling_factor=2.0,
                                            timestep_conditioning=timestep_conditioning)
        self.spatial_compression_ratio = 32
        self.temporal_compression_ratio = 8
        self.register_buffer("latents_mean", torch.linspace(-1, 1, 128))
        self.register_buffer("latents_std", torch.linspace(0.5, 2, 128))
        self.seen = None

    def decode(self, z, temb=None, return_dict=True):
        self.seen = (z, temb)
        rgb = z[:, :3].repeat_interleave(8, 2)[:, :, 7:] * 10  # beyond [-1, 1]: clamped
        return (rgb.repeat_interleave(32, 3).repeat_interleave(32, 4),)


def wan():
    return adapter.Model(components=("wan", WanTransformer(), WanVae(), TextEncoder(),
                                     Tokenizer()))


def ltx(**options):
    return adapter.Model(options=options, components=("ltx", LtxTransformer(), LtxVae(),
                                                       TextEncoder(), Tokenizer()))


def cond(weights, tokens, mask, times=None, fps=16.0):
    b, t, _ = weights.shape
    return {"prompt_tokens": tokens, "prompt_mask": mask, "prompt_weights": weights,
            "first_latent": np.zeros(b, np.int64),
            "frame_times": np.zeros((b, t)) if times is None else times,
            "fps": np.full(b, fps)}


class Wan(unittest.TestCase):
    def test_metadata_comes_from_the_components(self):
        meta = wan().metadata()
        self.assertEqual((meta["latent_channels"], meta["temporal_compression"],
                          meta["spatial_compression"], meta["patch_size"]), (16, 4, 8, 2))
        self.assertEqual((meta["native_frames"], meta["native_fps"]), ([81], 16.0))
        self.assertEqual((meta["prediction"], meta["conditioning"], meta["guidance"]),
                         ("velocity", "per-clip", "cfg"))

    def test_prompts_are_512_tokens_with_zeroed_padding(self):
        tokens, mask = wan().encode_prompt("a couple dancing")
        self.assertEqual(tokens.shape, (512, 8))
        self.assertEqual(int(mask.sum()), 3)
        self.assertTrue(np.all(tokens[~mask] == 0))
        self.assertTrue(np.all(tokens[mask] != 0))

    def test_timesteps_are_1000_sigma_and_prompts_mix_by_weight(self):
        m = wan()
        lat = np.random.RandomState(0).randn(1, 16, 3, 4, 4).astype(np.float32)
        tokens = np.stack([np.full((5, 8), 1.0, np.float32), np.full((5, 8), 3.0, np.float32),
                           np.full((5, 8), 9.0, np.float32)])
        mask = np.ones((3, 5), bool)
        weights = np.zeros((1, 3, 3), np.float32)
        weights[0, :, 0], weights[0, :, 1] = 0.25, 0.75  # prompt 2 has no weight: not run
        sigma = np.array([0.6], np.float32)
        pred = m.denoise(lat, sigma, cond(weights, tokens, mask))
        calls = m.transformer.calls
        self.assertEqual(len(calls), 2)
        self.assertTrue(torch.allclose(calls[0]["timestep"], torch.tensor([600.0])))
        self.assertEqual(calls[0]["x"].dtype, torch.float32)  # float32 on the CPU
        want = lat * 2 + 0.6 + 0.25 * 1.0 + 0.75 * 3.0
        np.testing.assert_allclose(pred, want, rtol=1e-6, atol=1e-5)

    def test_one_noise_level_per_frame_is_refused(self):
        m = wan()
        lat = np.zeros((1, 16, 2, 2, 2), np.float32)
        with self.assertRaisesRegex(ValueError, "per frame"):
            m.denoise(lat, np.zeros((1, 2), np.float32),
                      cond(np.ones((1, 2, 1), np.float32), np.ones((1, 4, 8), np.float32),
                           np.ones((1, 4), bool)))

    def test_decode_undoes_the_latent_normalisation(self):
        m = wan()
        lat = np.random.RandomState(1).randn(1, 16, 3, 2, 2).astype(np.float32) * 0.1
        frames = m.decode(lat)
        self.assertEqual(frames.shape, (1, 3, 9, 16, 16))
        seen = m.vae.seen.numpy()
        for ch in range(16):
            np.testing.assert_allclose(seen[0, ch], lat[0, ch] * (1.0 + ch) + 0.1 * ch,
                                       rtol=1e-6)
        self.assertTrue(np.all(np.abs(frames) <= 1))

    def test_dtype_is_bfloat16_on_cuda(self):
        self.assertIs(adapter.choose_dtype("cuda:1"), torch.bfloat16)
        self.assertIs(adapter.choose_dtype("cpu"), torch.float32)
        self.assertIs(adapter.choose_dtype("cuda", "float16"), torch.float16)
        with self.assertRaises(ValueError):
            adapter.choose_dtype("cpu", "float99")
        m = adapter.Model(options={"dtype": "bfloat16"},
                          components=("wan", WanTransformer(), WanVae(), TextEncoder(),
                                      Tokenizer()))
        lat = np.ones((1, 16, 1, 2, 2), np.float32)
        pred = m.denoise(lat, np.array([0.5], np.float32),
                         cond(np.ones((1, 1, 1), np.float32), np.ones((1, 4, 8), np.float32),
                              np.ones((1, 4), bool)))
        self.assertEqual(m.transformer.calls[0]["x"].dtype, torch.bfloat16)
        self.assertEqual(pred.dtype, np.float32)


class Ltx(unittest.TestCase):
    def test_metadata_and_padded_prompts_with_their_mask(self):
        m = ltx()
        meta = m.metadata()
        self.assertEqual((meta["latent_channels"], meta["temporal_compression"],
                          meta["spatial_compression"], meta["patch_size"]), (128, 8, 32, 1))
        self.assertEqual(meta["decode_context_after"], 2)  # LTX's decoder is not causal
        tokens, mask = m.encode_prompt("neon rain")
        self.assertEqual(tokens.shape, (128, 8))
        self.assertEqual(int(mask.sum()), 2)
        self.assertTrue(np.all(tokens[~mask] != 0))  # LTX keeps the encoder's padding, masked

    def test_tokens_are_packed_and_placed_in_seconds(self):
        m = ltx()
        b, c, t, h, w = 1, 128, 3, 2, 3
        lat = np.random.RandomState(2).randn(b, c, t, h, w).astype(np.float32)
        times = np.array([[8.0, 8.32, 8.64]])  # a window 8 s into the video, at 25 fps
        weights = np.ones((1, t, 1), np.float32)
        pred = m.denoise(lat, np.array([0.5], np.float32),
                         cond(weights, np.ones((1, 4, 8), np.float32),
                              np.array([[True, True, False, False]]), times, fps=25.0))
        call = m.transformer.calls[0]
        self.assertEqual(tuple(call["x"].shape), (1, t * h * w, c))
        self.assertEqual(call["dims"], (t, h, w))
        self.assertEqual(call["mask"].tolist(), [[1.0, 1.0, 0.0, 0.0]])
        coords = call["video_coords"]
        self.assertEqual(tuple(coords.shape), (1, 3, t * h * w))
        self.assertAlmostEqual(float(coords[0, 0, h * w]), 8.32, places=5)  # latent 1's time
        self.assertEqual(float(coords[0, 2, 1]), 32.0)                      # pixels across
        # Unpacked back in place: the stand-in adds the time coordinate to each token.
        want = lat + 0.5 + times.astype(np.float32)[:, None, :, None, None]
        np.testing.assert_allclose(pred, want, rtol=1e-6, atol=1e-5)

    def test_a_noise_level_per_frame_is_one_timestep_per_token(self):
        m = ltx(frame_noise_levels="true")
        self.assertTrue(m.metadata()["frame_noise_levels"])
        lat = np.zeros((1, 128, 2, 1, 2), np.float32)
        m.denoise(lat, np.array([[0.25, 0.75]], np.float32),
                  cond(np.ones((1, 2, 1), np.float32), np.ones((1, 4, 8), np.float32),
                       np.ones((1, 4), bool)))
        self.assertEqual(m.transformer.calls[0]["timestep"].tolist(),
                         [[250.0, 250.0, 750.0, 750.0]])

    def test_decode_denormalises_with_the_vae_buffers_and_timestep(self):
        m = ltx(decode_timestep="0.05")
        lat = np.random.RandomState(3).randn(1, 128, 2, 1, 1).astype(np.float32)
        frames = m.decode(lat)
        self.assertEqual(frames.shape, (1, 3, 9, 32, 32))
        z, temb = m.vae.seen
        std = torch.linspace(0.5, 2, 128).view(1, 128, 1, 1, 1)
        mean = torch.linspace(-1, 1, 128).view(1, 128, 1, 1, 1)
        self.assertTrue(torch.allclose(z, torch.from_numpy(lat) * std / 2.0 + mean))
        self.assertTrue(torch.allclose(temb, torch.tensor([0.05])))
        self.assertTrue(np.all(np.abs(frames) <= 1))


class Loading(unittest.TestCase):
    def test_the_family_comes_from_model_index(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "model_index.json"), "w") as f:
                json.dump({"_class_name": "LTXConditionPipeline"}, f)
            self.assertEqual(adapter.family_of(d), "ltx")
            with open(os.path.join(d, "model_index.json"), "w") as f:
                json.dump({"_class_name": "FluxPipeline"}, f)
            with self.assertRaisesRegex(ValueError, "FluxPipeline"):
                adapter.family_of(d)
        with self.assertRaisesRegex(ValueError, "family=wan"):
            adapter.family_of("/nonexistent")

    def test_a_missing_path_or_library_is_named(self):
        with self.assertRaisesRegex(ValueError, "option path"):
            adapter.Model()
        try:
            import diffusers  # noqa: F401
        except ImportError:
            with self.assertRaisesRegex(RuntimeError, "needs diffusers"):
                adapter.Model(options={"path": "/nonexistent", "family": "wan"})


if __name__ == "__main__":
    unittest.main()
