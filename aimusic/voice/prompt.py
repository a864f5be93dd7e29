"""Keeping a speaker's voice in what the chain renders after their prompt: ``PromptVoice``
(``continue --voice-match K --prompt-eq`` on speech, and ``speak``).

Two corrections, both measured against the prompt and applied to what comes after it:
``match_voice`` re-expresses each new frame in the prompt's own frames, and ``codec_eq``
finds how the codec colours this voice, sound by sound, to undo in what it renders next.
Generation (``gen.continuation``) takes a ``PromptVoice`` as its ``voice``; music needs
neither.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from aimusic.dsp import EQ_SECONDS, PromptEQ, prompt_eq

# the last voice's codec_eq: `speak --text-file` says every line in one voice
_EQ_CACHE: dict[tuple, PromptEQ] = {}


@torch.no_grad()
def match_voice(codec: Any, prompt_codes: torch.Tensor, new_codes: torch.Tensor,
                k: int) -> torch.Tensor:
    """New frames re-expressed in the prompt's own frames (kNN-VC's matching, Baas et al.
    2023, in the codec's latent): each new frame's quantized latent is replaced by the mean
    of its ``k`` nearest prompt frames (cosine) and quantized again; ``k=1`` copies the
    nearest prompt frame's codes. codes [K, F] -> [K, F]; ``k=0`` or no prompt: unchanged.

    The LMs, briefly trained, drift to the voices they saw most; matching keeps whatever
    is said in sounds the prompt's speaker made (research/JOURNAL.md, "Voice matching"). A
    3-second prompt holds few of a language's sounds, so the rest come out as its nearest."""
    if k <= 0 or prompt_codes.shape[1] == 0 or new_codes.shape[1] == 0:
        return new_codes
    q = codec.quantizer
    device = next(codec.parameters()).device
    zp = q.decode(prompt_codes[None].to(device))[0]  # [D, P]
    zn = q.decode(new_codes[None].to(device))[0]  # [D, F]
    sim = F.normalize(zn, dim=0).T @ F.normalize(zp, dim=0)  # [F, P]
    nearest = sim.topk(min(k, zp.shape[1]), dim=1).indices  # [F, k]
    if nearest.shape[1] == 1:
        return prompt_codes[:, nearest[:, 0].cpu()].to(new_codes)
    mean = zp[:, nearest].mean(-1)  # [D, F]
    return q.encode(mean[None], new_codes.shape[0])[0].to(new_codes)


def codec_eq(codec: Any, prompt: np.ndarray, prompt_codes: torch.Tensor,
             device: torch.device | str = "cpu") -> PromptEQ | None:
    """``dsp.prompt_eq``'s corrections from the recorded ``prompt`` and the codec's rendering
    of it at ``prompt_codes``' levels: how the codec colours this voice, sound by sound, to
    undo in what it renders next. All of the prompt counts (its last ``EQ_SECONDS``), not
    only the part the LMs hear (``prompt_codes``, its last samples): the more of a voice's
    sounds it holds, the fewer are corrected as a neighbour (research/JOURNAL.md). None
    without prompt frames. The last voice's corrections are kept for the next call."""
    from aimusic.codec.stream import decode_all, roundtrip

    if prompt_codes.shape[1] == 0:
        return None
    sr, hop = int(codec.cfg.sample_rate), int(codec.cfg.hop)
    x = prompt[max(0, prompt.size - int(EQ_SECONDS * sr)):]
    key = (id(codec), hashlib.sha1(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest(),
           hashlib.sha1(prompt_codes.cpu().numpy().tobytes()).hexdigest(), tuple(prompt_codes.shape))
    if key in _EQ_CACHE:
        return _EQ_CACHE[key]
    device = torch.device(device)
    if x.size > prompt_codes.shape[1] * hop:  # more than the LMs hear: from x's first sample
        rendered = roundtrip(codec, np.ascontiguousarray(x, dtype=np.float32),
                             prompt_codes.shape[0], device)
    else:  # the codes are of the prompt's last samples
        rendered = decode_all(codec, prompt_codes, device)
        x = x[x.size - min(x.size, rendered.size):]
    eq = prompt_eq(x, rendered, sr, 4 * hop)
    _EQ_CACHE.clear()  # the last voice only
    _EQ_CACHE[key] = eq
    return eq


@dataclass
class PromptVoice:
    """The prompt's voice kept in what follows it: ``k`` > 0 matches the new frames to the
    prompt's ``k`` nearest (``match_voice``), ``eq`` equalizes the rendering (``codec_eq``).
    ``gen.continuation``'s ``voice`` argument."""

    codec: Any
    k: int = 0
    eq: bool = False
    device: torch.device | str = "cpu"

    @classmethod
    def of(cls, chain: Any, k: int = 0, eq: bool = False) -> PromptVoice | None:
        """For a loaded chain; None when neither correction is asked for."""
        return cls(chain.codec, k, eq, chain.device) if (k > 0 or eq) else None

    def match(self, prompt_codes: torch.Tensor, new_codes: torch.Tensor) -> torch.Tensor:
        return match_voice(self.codec, prompt_codes, new_codes, self.k)

    def equalizer(self, prompt: np.ndarray, prompt_codes: torch.Tensor) -> PromptEQ | None:
        return codec_eq(self.codec, prompt, prompt_codes, self.device) if self.eq else None
