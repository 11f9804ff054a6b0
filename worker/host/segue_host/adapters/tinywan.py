"""tinywan: a small network with Wan 2.1's shape, in plain PyTorch with seeded random weights.

What it shares with Wan 2.1 (and what segue must get right for it): 16 latent channels; a causal
3D VAE decoder that compresses time 4x (latent frame 0 is one frame, every later one four) and
space 8x, with a causal temporal convolution that needs one latent frame of context before a
chunk; a transformer over patches of 1 x 2 x 2 with rotary positions over time, height and width
(time counted from the window's first global latent frame, so a window knows where it is);
masked cross-attention over a padded token sequence per prompt; timesteps as 1000 x sigma;
velocity prediction; one text context per clip. Its weights are random (seed 0): it renders
noise-like pictures, deterministically, with every shape a real Wan call has.
"""

import math
import zlib

import numpy as np
import torch
from torch import nn

from ..adapter import Adapter

C = 16          # latent channels
HIDDEN = 64
HEADS = 4
LAYERS = 2
TEXT_DIM = 32
TEXT_LEN = 16   # Wan pads umT5's output to 512 tokens
VOCAB = 4096
R = 4           # temporal compression


def rope(x, pos):
    """Rotary embedding of x [B, H, N, d] at positions pos [N, 3] (t, y, x): d split in 3."""
    d = x.shape[-1]
    parts = [d // 3 // 2 * 2, d // 3 // 2 * 2]
    parts.append(d - sum(parts))
    out, start = [], 0
    for axis, n in enumerate(parts):
        xs = x[..., start:start + n]
        freqs = 1.0 / (10000 ** (torch.arange(0, n, 2, dtype=torch.float64) / n))
        ang = (pos[:, axis].to(torch.float64)[:, None] * freqs[None, :]).to(x.dtype)
        cos, sin = ang.cos(), ang.sin()
        x1, x2 = xs[..., 0::2], xs[..., 1::2]
        out.append(torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2))
        start += n
    return torch.cat(out, -1)


def self_attention(q, k, v, chunk=2048):
    """softmax(q k^T / sqrt(d)) v, a chunk of queries at a time: Wan's 480p latents are 32,760
    tokens, whose whole score matrix (17 GB) would not fit. A call of at most `chunk` tokens is
    one chunk, computed exactly as in one piece."""
    scale = math.sqrt(q.shape[-1])
    if q.shape[2] <= chunk:
        return torch.softmax(q @ k.transpose(-1, -2) / scale, -1) @ v
    kt = k.transpose(-1, -2)
    return torch.cat([torch.softmax(q[:, :, i:i + chunk] @ kt / scale, -1) @ v
                      for i in range(0, q.shape[2], chunk)], 2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1 = nn.LayerNorm(HIDDEN, elementwise_affine=False)
        self.qkv = nn.Linear(HIDDEN, 3 * HIDDEN)
        self.proj = nn.Linear(HIDDEN, HIDDEN)
        self.norm2 = nn.LayerNorm(HIDDEN)
        self.q = nn.Linear(HIDDEN, HIDDEN)
        self.kv = nn.Linear(TEXT_DIM, 2 * HIDDEN)
        self.cross_proj = nn.Linear(HIDDEN, HIDDEN)
        self.norm3 = nn.LayerNorm(HIDDEN, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, 2 * HIDDEN), nn.GELU(approximate="tanh"),
                                 nn.Linear(2 * HIDDEN, HIDDEN))
        self.modulation = nn.Linear(HIDDEN, 6 * HIDDEN)

    def heads(self, x):
        b, n, _ = x.shape
        return x.view(b, n, HEADS, HIDDEN // HEADS).transpose(1, 2)

    def forward(self, x, temb, pos, tokens, mask, token_weights):
        b, n, _ = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(temb)[:, None].chunk(6, -1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = (self.heads(t) for t in self.qkv(h).chunk(3, -1))
        q, k = rope(q, pos), rope(k, pos)
        a = self_attention(q, k, v)
        x = x + gate1 * self.proj(a.transpose(1, 2).reshape(b, n, HIDDEN))
        # Cross-attention to each prompt's tokens (padding masked out), mixed per token by the
        # weights of the token's latent frame.
        q = self.heads(self.q(self.norm2(x)))                           # [B, H, N, d]
        k, v = self.kv(tokens).chunk(2, -1)                             # [P, L, HIDDEN]
        p, l = tokens.shape[0], tokens.shape[1]
        k = k.view(p, l, HEADS, -1).permute(0, 2, 1, 3)                 # [P, H, L, d]
        v = v.view(p, l, HEADS, -1).permute(0, 2, 1, 3)
        s = torch.einsum("bhnd,phld->bphnl", q, k) / math.sqrt(HIDDEN // HEADS)
        s = s.masked_fill(~mask[None, :, None, None, :], float("-inf"))
        o = torch.einsum("bphnl,phld->bphnd", torch.softmax(s, -1), v)  # [B, P, H, N, d]
        o = torch.einsum("bnp,bphnd->bnhd", token_weights, o).reshape(b, n, HIDDEN)
        x = x + self.cross_proj(o)
        h = self.norm3(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv3d(C, HIDDEN, kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.time = nn.Sequential(nn.Linear(64, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN))
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.LayerNorm(HIDDEN, elementwise_affine=False)
        self.head = nn.Linear(HIDDEN, C * 4)

    def forward(self, latents, sigma, tokens, mask, weights, first_latent):
        b, _, t, h, w = latents.shape
        x = self.patch(latents)                                  # [B, HIDDEN, T, h/2, w/2]
        hp, wp = x.shape[3], x.shape[4]
        x = x.flatten(2).transpose(1, 2)                         # [B, N, HIDDEN]
        steps = sigma * 1000.0                                   # Wan's timesteps
        half = torch.exp(-math.log(10000.0) * torch.arange(32, dtype=torch.float32) / 32)
        temb = self.time(torch.cat([(steps[:, None] * half).cos(), (steps[:, None] * half).sin()], -1))
        tt, yy, xx = torch.meshgrid(torch.arange(t) + int(first_latent), torch.arange(hp),
                                    torch.arange(wp), indexing="ij")
        pos = torch.stack([tt.flatten(), yy.flatten(), xx.flatten()], -1)
        token_weights = weights.repeat_interleave(hp * wp, dim=1)  # [B, N, P]
        for block in self.blocks:
            x = block(x, temb, pos, tokens, mask, token_weights)
        out = self.head(self.norm(x))                            # [B, N, C * 4]
        out = out.view(b, t, hp, wp, C, 2, 2).permute(0, 4, 1, 2, 5, 3, 6)
        return out.reshape(b, C, t, h, w)


class Decoder(nn.Module):
    """Causal in time: latent frame j's frames depend on latent frames j - 1 and j only.

    Computed one latent frame at a time, with the same shapes whatever the call's length, so that
    a chunk decoded with its context gives bitwise the frames the whole video gives (a convolution
    over all frames at once may pick another algorithm for another length, and round
    differently).
    """

    def __init__(self):
        super().__init__()
        self.prev = nn.Conv2d(C, 32, kernel_size=3, padding=1)
        self.cur = nn.Conv2d(C, 32, kernel_size=3, padding=1, bias=False)
        self.up = nn.Conv2d(32, R * 3 * 64, kernel_size=1)

    def forward(self, latents):
        b, _, t, h, w = latents.shape
        frames = []
        for j in range(t):
            before = latents[:, :, j - 1] if j > 0 else torch.zeros_like(latents[:, :, 0])
            x = torch.nn.functional.silu(self.prev(before) + self.cur(latents[:, :, j]))
            x = self.up(x).view(b, R, 3, 8, 8, h, w)              # R sub-frames of 3 x 8 x 8 each
            x = x.permute(0, 2, 1, 5, 3, 6, 4).reshape(b, 3, R, h * 8, w * 8)
            frames.append(x[:, :, R - 1:] if j == 0 else x)       # latent 0 is one frame
        return torch.tanh(torch.cat(frames, 2))


class TextEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, TEXT_DIM)
        self.proj = nn.Linear(TEXT_DIM, TEXT_DIM)

    def forward(self, text):
        words = [w for w in text.lower().split() if w][:TEXT_LEN]
        ids = torch.zeros(TEXT_LEN, dtype=torch.int64)
        for i, w in enumerate(words):
            ids[i] = zlib.crc32(w.encode()) % VOCAB
        mask = torch.arange(TEXT_LEN) < len(words)
        tokens = self.proj(self.embed(ids)) * mask[:, None]   # padding is zeros, as umT5's output
        return tokens, mask


class Model(Adapter):
    def __init__(self, device="cpu", options=None):
        super().__init__(device, options)
        torch.manual_seed(int(self.options.get("seed", 0)))
        self.text = TextEncoder().eval()
        self.transformer = Transformer().eval()
        self.decoder = Decoder().eval()

    def metadata(self):
        return {"latent_channels": C, "spatial_compression": 8, "patch_size": 2,
                "temporal_compression": R, "native_frames": [81], "native_fps": 16.0,
                "output_min": -1.0, "output_max": 1.0, "decode_context_before": 1,
                "decode_context_after": 0, "conditioning": "per-clip",
                "prediction": "velocity", "default_steps": 30, "frame_noise_levels": False,
                "guidance": "cfg"}

    @torch.no_grad()
    def encode_prompt(self, text):
        tokens, mask = self.text(text)
        return tokens.numpy(), mask.numpy()

    @torch.no_grad()
    def denoise(self, latents, sigma, cond):
        t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731 (a writable copy)
        return self.transformer(t(latents), t(sigma).float(), t(cond["prompt_tokens"]),
                                t(cond["prompt_mask"]).bool(), t(cond["prompt_weights"]),
                                int(cond["first_latent"][0])).numpy()

    @torch.no_grad()
    def decode(self, latents):
        return self.decoder(torch.from_numpy(np.array(latents))).numpy()
