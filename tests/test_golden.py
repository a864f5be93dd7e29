"""The bundled models give the same tokens and audio for the same seed, change after change.

For each bundled set, a 3 s prompt (the bundled example of that set) is continued by one
second at seed 0, stages in turn, and compared with what was recorded in
``tests/golden/NAME.npz``: the prompt's tokens and the new tokens exactly, the audio to
float16 precision (float rounding differs between CPUs). A refactor that changes what the
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


def make(name: str) -> dict[str, np.ndarray]:
    from aimusic.audio import load_audio
    from aimusic.demo import EXAMPLE_PROMPT
    from aimusic.gen import load_chain
    from aimusic.gen.chain import encode_prompt, sample_tokens, sampling_for
    from aimusic.gen.continuation import render
    from aimusic.runtime import bundled_models_dir
    from aimusic.voice.tts import EXAMPLE_VOICE

    chain = load_chain(bundled_models_dir(name), "flat")
    audio = load_audio(EXAMPLE_PROMPT if name == "music" else EXAMPLE_VOICE, chain.sample_rate)
    audio = audio[:3 * chain.sample_rate]
    sem, codes = encode_prompt(chain, audio, chain.max_prompt_tokens())
    n = round(chain.sample_rate / chain.token_samples)  # one second
    with torch.inference_mode():
        new_sem, new_codes, _ = sample_tokens(chain, sem, codes, n, sampling_for(chain.stages),
                                              seed=0, threads=False)
    y = render(chain, codes, new_codes)
    return {"prompt_semantic": sem.numpy(), "prompt_codes": codes.numpy(),
            "semantic": new_sem.numpy(), "codes": new_codes.numpy(), "audio": y}


@pytest.mark.parametrize("name", SETS)
def test_the_bundled_models_make_what_they_made(name: str) -> None:
    path = GOLDEN / f"{name}.npz"
    want = np.load(path)
    if str(want["hashes"]) != bundle_hashes(name):
        pytest.fail(f"{path} records another {name} bundle; if the bundle was replaced on "
                    f"purpose, record it again: python tests/test_golden.py {name}")
    got = make(name)
    for key in ("prompt_semantic", "prompt_codes", "semantic", "codes"):
        assert np.array_equal(got[key], want[key]), key
    assert np.abs(got["audio"] - want["audio"].astype(np.float32)).max() < 2e-3


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in sys.argv[1:] or SETS:
        out = make(name)
        np.savez_compressed(GOLDEN / f"{name}.npz", hashes=np.array(bundle_hashes(name)),
                            **{k: (v.astype(np.float16) if k == "audio" else v) for k, v in out.items()})
        print(f"{GOLDEN / name}.npz: {out['codes'].shape[1]} frames, {out['audio'].size} samples")
