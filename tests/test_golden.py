"""The bundled models give the same tokens and audio for the same seed, change after change.

For each bundled set, a 3 s prompt (the bundled example of that set) is continued by one
second at seed 0, on one thread, stages in turn, and compared with what was recorded in
``tests/golden/NAME.npz``: the prompt's tokens (all but two in a thousand: a near tie may
fall the other way on another CPU), the new tokens sampled after the recorded prompt
exactly, and the audio to float16 precision. A refactor that changes what the
models make fails here. When a bundle is replaced, its recording is refused as stale (the
files' hashes are kept beside it) until it is made again on purpose:

    python tests/test_golden.py music   # or voice
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDEN = Path(__file__).resolve().parent / "golden"
SETS = ("music", "voice")


def bundle_hashes(name: str) -> str:
    from aimusic.fileio import file_hash
    from aimusic.runtime import bundled_models_dir

    d = bundled_models_dir(name)
    return " ".join(f"{f.name}:{file_hash(f)}" for f in sorted(d.glob("*.safetensors")))


def make(name: str, given: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """What the bundled set makes of its example; with ``given`` (a recording), the new
    tokens are sampled after the recorded prompt tokens, so that a code the encoder puts
    on the other side of a near tie does not change everything after it."""
    from aimusic.audio import load_audio
    from aimusic.demo import EXAMPLE_PROMPT
    from aimusic.gen import load_chain
    from aimusic.gen.chain import encode_prompt, sample_tokens, sampling_for
    from aimusic.gen.continuation import render
    from aimusic.runtime import bundled_models_dir
    from aimusic.voice.tts import EXAMPLE_VOICE

    torch.set_num_threads(1)  # as the tests run: the rounding of a sum depends on the threads
    chain = load_chain(bundled_models_dir(name), "flat")
    audio = load_audio(EXAMPLE_PROMPT if name == "music" else EXAMPLE_VOICE, chain.sample_rate)
    audio = audio[:3 * chain.sample_rate]
    sem, codes = encode_prompt(chain, audio, chain.max_prompt_tokens())
    out = {"prompt_semantic": sem.numpy(), "prompt_codes": codes.numpy()}
    if given is not None:
        sem = torch.from_numpy(given["prompt_semantic"])
        codes = torch.from_numpy(given["prompt_codes"])
    n = round(chain.sample_rate / chain.token_samples)  # one second
    with torch.inference_mode():
        new_sem, new_codes, _ = sample_tokens(chain, sem, codes, n, sampling_for(chain.stages),
                                              seed=0, threads=False)
    y = render(chain, codes, new_codes)
    return {**out, "semantic": new_sem.numpy(), "codes": new_codes.numpy(), "audio": y}


@pytest.mark.parametrize("name", SETS)
def test_the_bundled_models_make_what_they_made(name: str) -> None:
    path = GOLDEN / f"{name}.npz"
    want = np.load(path)
    if str(want["hashes"]) != bundle_hashes(name):
        pytest.fail(f"{path} records another {name} bundle; if the bundle was replaced on "
                    f"purpose, record it again: python tests/test_golden.py {name}")
    got = make(name, want)
    # the encoders: the same tokens, but for a near tie broken the other way by float
    # rounding on another CPU or thread count (two codes in a thousand at most)
    for key in ("prompt_semantic", "prompt_codes"):
        assert np.mean(got[key] != want[key]) <= 2e-3, key
    for key in ("semantic", "codes"):  # the LMs, from the recorded prompt: exactly
        assert np.array_equal(got[key], want[key]), key
    assert np.abs(got["audio"] - want["audio"].astype(np.float32)).max() < 2e-3

if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in sys.argv[1:] or SETS:
        out = make(name)
        np.savez_compressed(GOLDEN / f"{name}.npz", hashes=np.array(bundle_hashes(name)),
                            **{k: (v.astype(np.float16) if k == "audio" else v) for k, v in out.items()})
        print(f"{GOLDEN / name}.npz: {out['codes'].shape[1]} frames, {out['audio'].size} samples")
