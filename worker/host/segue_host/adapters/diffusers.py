"""diffusers: Wan 2.1 and LTX-Video from a local diffusers model folder, as segue's model calls.

This adapter runs the components of diffusers' WanPipeline and LTXPipeline (transformer, VAE,
text encoder and tokenizer), not the pipelines: segue does the sampling, guidance, blending and
checkpoints, so what is left per call is one thing each:

  encode_prompt  the tokenizer and text encoder, as the pipeline's _get_t5_prompt_embeds does
                 (Wan: umT5, 512 tokens, padding zeroed; LTX: T5, 128 tokens, with its mask)
  denoise        the transformer, once per prompt of the window's bank that has weight, with
                 timesteps 1000 x sigma; predictions mixed per latent frame by the weights
  decode         the VAE, after undoing the latent normalisation (Wan: z * std + mean from the
                 VAE config; LTX: z * std / scaling_factor + mean from the VAE's buffers)

Options (--option KEY=VALUE in the host entry's command):
  path                 the model folder (model_index.json, transformer/, vae/, text_encoder/,
                       tokenizer/); required
  family               wan or ltx (default: from model_index.json's _class_name)
  dtype                the transformer's and text encoder's dtype (default bfloat16 on CUDA,
                       float32 on the CPU); the VAE runs in float32 (vae_dtype to change it)
  text_device          where the text encoder runs (default: the host's device; cpu saves GPU
                       memory, and it runs once per prompt)
  max_sequence_length  tokens per prompt (default: Wan 512, LTX 128)
  native_fps, native_frames (comma-separated), default_steps, decode_context_before,
  decode_context_after, frame_noise_levels (true|false; LTX-Video 0.9.5 and later take one
  noise level per token), decode_timestep (LTX VAEs with timestep conditioning, default 0)

NOT run against real weights by segue's test suite (its machines have no GPU and no diffusers):
tests/python/test_diffusers_adapter.py checks this file's own logic with small modules standing
in for the diffusers components, with the signatures of diffusers 0.33.
"""

import inspect
import json
import os

import numpy as np
import torch

from ..adapter import Adapter

# What each family's pipeline fixes and its config does not say. native_frames and fps are the
# pipelines' defaults (WanPipeline: 81 frames at 16 fps; LTXPipeline: 161 frames at 25 fps, and
# LTX-Video is trained for 121 as well). decode_context: Wan's VAE is causal (context before
# only); LTX-Video's decoder is not causal (context on both sides). The receptive field of a real
# VAE is wider than this context: chunk seams are close, not bitwise equal to decoding at once.
FAMILIES = {
    "wan": {"native_frames": [81], "native_fps": 16.0, "default_steps": 50,
            "max_sequence_length": 512, "decode_context_before": 4, "decode_context_after": 0,
            "frame_noise_levels": False},
    "ltx": {"native_frames": [121, 161], "native_fps": 25.0, "default_steps": 50,
            "max_sequence_length": 128, "decode_context_before": 2, "decode_context_after": 2,
            "frame_noise_levels": False},
}
PIPELINE_FAMILIES = {"WanPipeline": "wan", "LTXPipeline": "ltx", "LTXConditionPipeline": "ltx"}


def family_of(path):
    """The family of a diffusers model folder, from model_index.json's _class_name."""
    index = os.path.join(path, "model_index.json")
    try:
        with open(index) as f:
            name = json.load(f).get("_class_name")
    except (OSError, ValueError) as e:
        raise ValueError(f"{index}: cannot read it ({e}); set --option family=wan|ltx") from None
    if name not in PIPELINE_FAMILIES:
        raise ValueError(f"{index}: _class_name {name!r} is not one of "
                         f"{sorted(PIPELINE_FAMILIES)}; set --option family=wan|ltx")
    return PIPELINE_FAMILIES[name]


def choose_dtype(device, name=None):
    """bfloat16 on CUDA and float32 on the CPU unless named."""
    if name:
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype {name!r} is not a torch dtype")
        return dtype
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def _flag(value):
    return str(value).lower() in ("1", "true", "yes", "on")


def load_components(family, path, device, dtype, vae_dtype, text_device):
    """Loads the four components from a diffusers folder. Imports diffusers only here."""
    try:
        import diffusers
        import transformers
    except ImportError as e:
        raise RuntimeError(f"the diffusers adapter needs diffusers and transformers ({e}); "
                           "install them into the host's Python (pip install diffusers "
                           "transformers accelerate sentencepiece)") from None
    if family == "wan":
        names = ("WanTransformer3DModel", "AutoencoderKLWan", "UMT5EncoderModel")
    else:
        names = ("LTXVideoTransformer3DModel", "AutoencoderKLLTXVideo", "T5EncoderModel")
    transformer = getattr(diffusers, names[0]).from_pretrained(
        path, subfolder="transformer", torch_dtype=dtype).to(device).eval()
    vae = getattr(diffusers, names[1]).from_pretrained(
        path, subfolder="vae", torch_dtype=vae_dtype).to(device).eval()
    text_encoder = getattr(transformers, names[2]).from_pretrained(
        path, subfolder="text_encoder", torch_dtype=dtype).to(text_device).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
    return transformer, vae, text_encoder, tokenizer


class Model(Adapter):
    def __init__(self, device="cpu", options=None, components=None):
        """components: (family, transformer, vae, text_encoder, tokenizer) to use instead of
        loading options["path"] (the unit tests pass stand-ins)."""
        super().__init__(device, options)
        self.dtype = choose_dtype(device, self.options.get("dtype"))
        self.vae_dtype = choose_dtype("cpu", self.options.get("vae_dtype"))
        self.text_device = self.options.get("text_device", device)
        if components is None:
            path = self.options.get("path")
            if not path:
                raise ValueError("the diffusers adapter needs --option path=MODEL_FOLDER")
            family = self.options.get("family") or family_of(path)
            components = (family,) + load_components(family, path, device, self.dtype,
                                                     self.vae_dtype, self.text_device)
        (self.family, self.transformer, self.vae, self.text_encoder,
         self.tokenizer) = components
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not one of {sorted(FAMILIES)}")
        settings = dict(FAMILIES[self.family])
        for key, default in settings.items():
            if key in self.options:
                value = self.options[key]
                if isinstance(default, bool):
                    settings[key] = _flag(value)
                elif isinstance(default, list):
                    settings[key] = [int(v) for v in str(value).split(",")]
                else:
                    settings[key] = type(default)(value)
        self.settings = settings
        self.decode_timestep = float(self.options.get("decode_timestep", 0.0))
        forward = inspect.signature(self.transformer.forward).parameters
        self.takes_video_coords = "video_coords" in forward

    # -- metadata --------------------------------------------------------------------------

    def compression(self):
        """(temporal, spatial) compression of the VAE, as the pipelines compute them."""
        if self.family == "wan":
            down = list(self.vae.config.temperal_downsample)  # (sic) diffusers' spelling
            return 2 ** sum(bool(d) for d in down), 2 ** len(down)
        return int(self.vae.temporal_compression_ratio), int(self.vae.spatial_compression_ratio)

    def patch_size(self):
        p = self.transformer.config.patch_size
        return int(p[1] if isinstance(p, (list, tuple)) else p)

    def metadata(self):
        r, s = self.compression()
        patch = self.patch_size()
        s_ = self.settings
        return {"latent_channels": int(self.transformer.config.in_channels),
                "spatial_compression": s, "temporal_compression": r, "patch_size": patch,
                "native_frames": s_["native_frames"], "native_fps": s_["native_fps"],
                "output_min": -1.0, "output_max": 1.0,
                "decode_context_before": s_["decode_context_before"],
                "decode_context_after": s_["decode_context_after"],
                "conditioning": "per-clip", "prediction": "velocity",
                "default_steps": s_["default_steps"],
                "frame_noise_levels": s_["frame_noise_levels"], "guidance": "cfg"}

    # -- encode_prompt ---------------------------------------------------------------------

    @torch.no_grad()
    def encode_prompt(self, text):
        length = self.settings["max_sequence_length"]
        ids = self.tokenizer([text], padding="max_length", max_length=length, truncation=True,
                             add_special_tokens=True, return_attention_mask=True,
                             return_tensors="pt")
        input_ids = ids.input_ids.to(self.text_device)
        mask = ids.attention_mask.to(self.text_device)
        out = self.text_encoder(input_ids, mask)
        tokens = (out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0])[0]
        mask = mask[0].bool()
        if self.family == "wan":
            # WanPipeline keeps the first seq_len tokens and pads with zeros (its transformer
            # takes no mask, so the padding must be zeros, not the encoder's output there).
            tokens = tokens * mask[:, None].to(tokens.dtype)
        return tokens.float().cpu().numpy(), mask.cpu().numpy()

    # -- denoise ---------------------------------------------------------------------------

    def _tensor(self, array, dtype=None):
        return torch.from_numpy(np.array(array)).to(self.device, dtype or self.dtype)

    @torch.no_grad()
    def denoise(self, latents, sigma, cond):
        x = self._tensor(latents)
        b, c, t, h, w = x.shape
        sigma = np.asarray(sigma, np.float32)
        weights = torch.from_numpy(np.array(cond["prompt_weights"], np.float32))  # [B, T, P]
        tokens = self._tensor(cond["prompt_tokens"])                            # [P, L, D]
        masks = torch.from_numpy(np.array(cond["prompt_mask"], bool)).to(self.device)
        out = torch.zeros((b, c, t, h, w), dtype=torch.float32)
        for p in range(tokens.shape[0]):
            wp = weights[:, :, p]                                               # [B, T]
            if not bool((wp != 0).any()):
                continue  # a prompt with no weight in this window costs nothing
            context = tokens[p:p + 1].expand(b, -1, -1)
            mask = masks[p:p + 1].expand(b, -1)
            pred = self._forward(x, sigma, context, mask, cond).float().cpu()
            out += pred * wp[:, None, :, None, None]
        return out.numpy()

    def _forward(self, x, sigma, context, mask, cond):
        """One transformer call with one prompt: the prediction [B, C, T, h, w]."""
        b, c, t, h, w = x.shape
        steps = torch.from_numpy(sigma * np.float32(1000.0)).to(self.device)  # [B] or [B, T]
        if self.family == "wan":
            if steps.dim() != 1:
                raise ValueError("Wan 2.1 takes one noise level per call, not one per frame")
            return self.transformer(hidden_states=x, timestep=steps,
                                    encoder_hidden_states=context, return_dict=False)[0]
        # LTX-Video's transformer takes tokens [B, T h w, C] (patch size 1) and, from LTX-Video
        # 0.9.5 on, one timestep per token.
        packed = x.permute(0, 2, 3, 4, 1).reshape(b, t * h * w, c)
        if steps.dim() == 2:
            steps = steps.repeat_interleave(h * w, dim=1)
        kwargs = {}
        r, s = self.compression()
        if self.takes_video_coords:
            # RoPE positions in seconds and pixels: the window's frame times place it in the
            # video (LTXConditionPipeline's coordinates: a latent frame at its first video
            # frame's time).
            times = torch.from_numpy(np.array(cond["frame_times"], np.float32))   # [B, T]
            tt = times[:, :, None, None].expand(b, t, h, w)
            yy = (torch.arange(h, dtype=torch.float32) * s)[None, None, :, None].expand(b, t, h, w)
            xx = (torch.arange(w, dtype=torch.float32) * s)[None, None, None, :].expand(b, t, h, w)
            kwargs["video_coords"] = torch.stack([tt, yy, xx], 1).reshape(b, 3, -1).to(self.device)
        else:
            fps = float(np.asarray(cond["fps"]).reshape(-1)[0])
            kwargs["rope_interpolation_scale"] = (r / fps, s, s)
        pred = self.transformer(hidden_states=packed, encoder_hidden_states=context,
                                timestep=steps, encoder_attention_mask=mask.to(x.dtype),
                                num_frames=t, height=h, width=w, return_dict=False, **kwargs)[0]
        return pred.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)

    # -- decode ----------------------------------------------------------------------------

    @torch.no_grad()
    def decode(self, latents):
        z = torch.from_numpy(np.array(latents, np.float32))
        c = z.shape[1]
        if self.family == "wan":
            mean = torch.tensor(self.vae.config.latents_mean, dtype=torch.float32)
            std = torch.tensor(self.vae.config.latents_std, dtype=torch.float32)
            z = z * std.view(1, c, 1, 1, 1) + mean.view(1, c, 1, 1, 1)
            args = ()
        else:
            mean = self.vae.latents_mean.float().cpu().view(1, c, 1, 1, 1)
            std = self.vae.latents_std.float().cpu().view(1, c, 1, 1, 1)
            z = z * std / float(self.vae.config.scaling_factor) + mean
            args = ()
            if getattr(self.vae.config, "timestep_conditioning", False):
                args = (torch.full((z.shape[0],), self.decode_timestep, device=self.device),)
        video = self.vae.decode(z.to(self.device, self.vae_dtype), *args, return_dict=False)[0]
        return video.float().clamp(-1, 1).cpu().numpy()
