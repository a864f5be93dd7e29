"""Generation: ``aimusic continue`` and ``aimusic generate`` (``chain``), on fast KV-cached
decoding of the token LMs (``decode``)."""

from aimusic.gen.chain import (
    Chain,
    Sampling,
    continue_audio,
    continue_file,
    format_timings,
    generate_audio,
    load_chain,
    sample_tokens,
    sampling_for,
)
from aimusic.gen.decode import Decoder

__all__ = ["Chain", "Decoder", "Sampling", "continue_audio", "continue_file", "format_timings",
           "generate_audio", "load_chain", "sample_tokens", "sampling_for"]
