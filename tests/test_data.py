from pathlib import Path

import numpy as np
import pytest
from conftest import SR, melody

from aimusic.audio import save_audio
from aimusic.data import SegmentSampler, scan, scan_all
from aimusic.errors import AimusicError


def _layout(root: Path) -> None:
    for rel in ["train/a.wav", "train/deep/b.wav", "val/c.wav", "test/d.wav"]:
        save_audio(root / rel, melody(1.0), SR)
    (root / "train" / "broken.wav").write_bytes(b"RIFF nonsense")


def test_scan_holds_out_val_and_test_and_reports_unreadable(tmp_path: Path) -> None:
    _layout(tmp_path / "x")
    c = scan(tmp_path / "x")
    assert sorted(i.path.name for i in c.train) == ["a.wav", "b.wav"]
    assert [i.path.name for i in c.val] == ["c.wav"]
    assert [p.name for p, _ in c.skipped] == ["broken.wav"]


def test_scan_without_val_folder_holds_out_a_stable_share(tmp_path: Path) -> None:
    for i in range(6):
        save_audio(tmp_path / f"f{i}.wav", melody(0.5, seed=i), SR)
    a, b = scan(tmp_path), scan(tmp_path)
    assert len(a.val) >= 1 and [i.path for i in a.val] == [i.path for i in b.val]
    assert not {i.path for i in a.val} & {i.path for i in a.train}


def test_scan_all_merges_folders_and_refuses_empty(tmp_path: Path) -> None:
    _layout(tmp_path / "x")
    _layout(tmp_path / "y")
    c = scan_all([tmp_path / "x", tmp_path / "y"])
    assert len(c.train) == 4 and len(c.val) == 2
    (tmp_path / "empty").mkdir()
    with pytest.raises(AimusicError, match="no readable training audio"):
        scan(tmp_path / "empty")


def test_segment_sampler_is_reproducible_from_its_state(tmp_path: Path) -> None:
    _layout(tmp_path)
    files = scan(tmp_path).train
    s = SegmentSampler(files, SR, 0.25, seed=3)
    s.batch(2)
    state = s.state()
    after = s.batch(3)
    s2 = SegmentSampler(files, SR, 0.25, seed=99)
    s2.set_state(state)
    np.testing.assert_array_equal(s2.batch(3), after)
    assert after.shape == (3, SR // 4)
