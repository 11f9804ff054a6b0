"""What a model adapter provides. The host (server.py) turns wire messages into these calls.

Arrays are numpy; shapes as in docs/MODELS.md ("Conditioning"):
  metadata()                 -> dict: latent_channels, spatial_compression, temporal_compression,
                                patch_size, native_frames (list), native_fps, output_min,
                                output_max, decode_context_before, decode_context_after,
                                conditioning ("per-frame" | "per-clip"), prediction ("x0" |
                                "epsilon" | "velocity"), default_steps, frame_noise_levels (bool),
                                guidance ("cfg" | "embedded" | "none"), identity (optional str:
                                what tells these weights apart, e.g. the checkpoint's hash or
                                revision; part of every result key: without it nothing
                                this model renders is reused)
  encode_prompt(text)        -> (tokens [L, D] float32, mask [L] bool)
  denoise(latents, sigma, cond)
                             -> prediction shaped like latents [B, C, T, h, w] (float32, float16
                                or a torch bfloat16 tensor); sigma [B] (or [B, T] with
                                frame_noise_levels); cond: prompt_tokens [P, L, D], prompt_mask
                                [P, L], prompt_weights [B, T, P], first_latent [B], frame_times
                                [B, T], fps [B], guidance [B] (embedded guidance only)
  decode(latents)            -> frames [B, 3, 1 + r (T - 1), H, W] in [output_min, output_max]
"""


class Adapter:
    def __init__(self, device="cpu", options=None):
        self.device = device
        self.options = dict(options or {})

    def metadata(self):
        raise NotImplementedError

    def encode_prompt(self, text):
        raise NotImplementedError

    def denoise(self, latents, sigma, cond):
        raise NotImplementedError

    def decode(self, latents):
        raise NotImplementedError
