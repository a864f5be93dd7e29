"""Generation: the chain of models and its stages (``chain``, ``stages``), fast KV-cached
decoding of the token LMs (``decode``), and ``aimusic continue`` and ``aimusic generate``
(``continuation``)."""

from aimusic.gen.chain import Chain, Sampling, load_chain, sample_tokens, sampling_for
from aimusic.gen.continuation import (
    Continuation,
    continue_audio,
    continue_file,
    format_timings,
    generate_audio,
)
from aimusic.gen.decode import Decoder

__all__ = ["Chain", "Continuation", "Decoder", "Sampling", "continue_audio", "continue_file",
           "format_timings", "generate_audio", "load_chain", "sample_tokens", "sampling_for"]
