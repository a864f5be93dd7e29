from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import SR, tone

from aimusic.audio import audio_info, list_audio_files, load_audio, resample, save_audio
from aimusic.errors import AudioError


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_round_trip_each_format(tmp_path: Path, ext: str) -> None:
    x = tone(440, 1.0)
    p = save_audio(tmp_path / f"a.{ext}", x, SR)
    y = load_audio(p, SR)
    assert y.dtype == np.float32 and y.ndim == 1
    if ext in ("wav", "flac"):  # lossless: equal to 16-bit precision
        np.testing.assert_allclose(y, x, atol=1e-4)
    else:  # lossy codecs may add a little delay/padding: compare the spectra's peak
        assert abs(y.size - x.size) < 0.1 * SR
        n = SR // 2
        spec = np.abs(np.fft.rfft(y[:n]))
        assert abs(np.argmax(spec) * SR / n - 440) < 3


def test_stereo_is_mixed_to_mono_and_resampled(tmp_path: Path) -> None:
    left, right = tone(440, 1.0, sr=44100), tone(440, 1.0, sr=44100, amp=0.1)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 44100)
    y = load_audio(tmp_path / "s.wav", SR)
    assert y.shape == (SR,)
    assert abs(np.abs(y).max() - 0.3) < 0.02


@pytest.mark.parametrize("f_in,sr_in,sr_out", [(440, 44100, 24000), (1000, 16000, 48000),
                                               (3000, 24000, 16000)])
def test_resampling_keeps_a_sine_frequency(f_in: float, sr_in: int, sr_out: int) -> None:
    y = resample(tone(f_in, 2.0, sr=sr_in), sr_in, sr_out)
    assert abs(y.size - 2 * sr_out) <= 2
    spec = np.abs(np.fft.rfft(y * np.hanning(y.size)))
    assert abs(np.argmax(spec) * sr_out / y.size - f_in) < 1.0


def test_segment_read(tmp_path: Path) -> None:
    x = np.arange(SR * 3, dtype=np.float32) / (SR * 3)
    save_audio(tmp_path / "r.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "r.wav", offset=1.0, duration=0.5)
    np.testing.assert_allclose(y, x[SR : SR + SR // 2])
    assert audio_info(tmp_path / "r.wav").duration == pytest.approx(3.0)


def _errors(path: Path) -> str:
    with pytest.raises(AudioError) as e:
        load_audio(path, SR)
    assert str(path) in str(e.value)
    return e.value.reason


def test_bad_inputs_raise_one_error_type_naming_the_file(tmp_path: Path) -> None:
    assert "not found" in _errors(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("this is not audio at all")
    assert "not a readable audio file" in _errors(tmp_path / "text.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), SR)
    assert "zero length" in _errors(tmp_path / "empty.wav")
    sf.write(tmp_path / "nan.wav", np.full(100, np.nan, np.float32), SR, subtype="FLOAT")
    assert "non-finite" in _errors(tmp_path / "nan.wav")
    save_audio(tmp_path / "whole.wav", tone(440, 2.0), SR)
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])
    assert "truncated" in _errors(tmp_path / "cut.wav")
    save_audio(tmp_path / "whole.flac", tone(440, 2.0), SR)
    data = (tmp_path / "whole.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 3])
    reason = _errors(tmp_path / "cut.flac")
    assert "truncated" in reason or "corrupt" in reason
    assert "directory" in _errors(tmp_path)


def test_save_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    save_audio(tmp_path / "a.wav", tone(440, 0.5), SR)
    with pytest.raises(AudioError):
        save_audio(tmp_path / "a.wav", np.array([np.nan], np.float32), SR)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    assert load_audio(tmp_path / "a.wav").size == SR // 2


def test_list_audio_files_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ["b/2.flac", "a/1.wav", "c.ogg", ".hidden/x.wav", "notes.txt", "z/.x.wav"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)]
    assert names == ["a/1.wav", "b/2.flac", "c.ogg"]
    with pytest.raises(AudioError):
        list_audio_files(tmp_path / "nope")
