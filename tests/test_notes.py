"""The note judge (aimusic.gen.notes) on constructed cases: a C-major scale against itself,
against the same scale a tritone up, and against noise."""

from __future__ import annotations

import numpy as np
import pytest

from aimusic.gen import notes as N

if not N.available():
    pytest.skip("basic-pitch is not installed (make install)", allow_module_level=True)

SR = 24000
C_MAJOR = [60, 62, 64, 65, 67, 69, 71, 72]


def tones(pitches: list[int], seconds: float = 0.4) -> np.ndarray:
    """Struck harmonic tones, one after another (a plucked-string envelope)."""
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for p in pitches:
        f = 440.0 * 2 ** ((p - 69) / 12)
        x = sum(np.sin(2 * np.pi * k * f * t) / k ** 2 for k in range(1, 6) if k * f < SR / 2)
        out.append(0.3 * x * np.exp(-3 * t) * np.minimum(1, t * 200))
    return np.concatenate(out).astype(np.float32)


@pytest.fixture(scope="module")
def scale() -> N.Transcription:
    return N.transcribe(tones(C_MAJOR * 2), SR)


def test_a_scale_is_transcribed_note_for_note(scale: N.Transcription) -> None:
    pitches = [int(p) for p in scale.notes[:, 2]]
    assert pitches[:8] == C_MAJOR and len(pitches) == 16
    onsets = scale.notes[:, 0]
    assert np.allclose(onsets, np.arange(16) * 0.4, atol=0.06)
    f = N.note_figures(scale)
    assert f["onsets_per_s"] == pytest.approx(16 / 6.4) and f["sounding"] > 0.9
    assert f["confidence"] > 0.4


def test_key_agreement_separates_the_same_key_from_a_tritone(scale: N.Transcription) -> None:
    again = N.transcribe(tones(list(reversed(C_MAJOR)) * 2), SR)
    tritone = N.transcribe(tones([p + 6 for p in C_MAJOR] * 2), SR)
    assert N.key_agreement(scale, again) > 0.9
    assert N.key_agreement(scale, tritone) < 0.0
    assert N.judge(scale, again)["key"] == pytest.approx(N.key_agreement(scale, again))


def test_noise_plays_no_confident_notes(scale: N.Transcription) -> None:
    noise = N.transcribe(np.random.default_rng(0).normal(0, 0.1, 4 * SR).astype(np.float32), SR)
    j = N.judge(scale, noise)
    f = N.note_figures(scale)
    assert j["confidence"] < f["confidence"] - 0.1 or j["notes"] == 0
    assert abs(j["key"]) < 0.5
    silence = N.transcribe(np.zeros(SR, np.float32), SR)
    assert N.note_figures(silence) == {"onsets_per_s": 0.0, "sounding": 0.0, "confidence": 0.0,
                                       "notes": 0}
    assert N.key_agreement(scale, silence) == 0.0
