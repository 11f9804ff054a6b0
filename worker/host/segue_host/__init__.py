"""segue's model host: serves a PyTorch video model to a segue worker over ZeroMQ.

A worker starts one host per model and device (the model folder's NAME.host.yaml says how) and
calls it once per model call: encode_prompt, denoise, decode. The wire protocol is in
protocol.py and docs/MODELS.md ("Model hosts"); a host needs pyzmq and numpy, and the adapter
whatever its model needs (tinywan: torch).
"""

PROTOCOL_VERSION = 1
