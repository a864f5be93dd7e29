"""Tokenize: shards and manifest, resume after a crash or kill -9, determinism across worker
counts, bad files, split runs and their merge, the reader's aligned windows and hash checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import SR, load_example, melody
from typer.testing import CliRunner

from aimusic.audio import load_audio, save_audio
from aimusic.cli import app
from aimusic.codec.model import Codec, load_codec, preset_tiny, save_codec
from aimusic.codec.stream import encode_stream
from aimusic.errors import AimusicError, ArtifactError
from aimusic.semantic import model as semantic_model
from aimusic.tokens import TokenDataset
from aimusic.tokens.shards import read_shard_metadata, write_safetensors
from aimusic.tokens.tokenize import TokenizeResult, part_shards, plan_shards, resolve_split, tokenize

runner = CliRunner()
FPS = 3  # files per shard in these tests: 13 files -> 5 shards
GOOD = {"a/one.wav": 1.3, "a/two.flac": 0.9, "b/three.wav": 2.1, "b/deep/four.wav": 0.5,
        "five.ogg": 1.0, "six.wav": 1.7, "seven.wav": 0.3}
BAD = {  # file -> a word its reason must contain
    "bad/corrupt.wav": "readable", "bad/cut.wav": "truncated", "bad/empty.wav": "no audio",
    "bad/notes.flac": "readable", "bad/short.wav": "too short", "bad/nan.wav": "non-finite",
}


@dataclass
class FakeSemanticConfig:
    sample_rate: int = 24000
    hop: int = 960
    token_rate: float = 25.0
    clusters: int = 1000
    vocab: int = 1000  # distinct tokens (a model with onsets has twice its clusters)


class FakeSemantic(torch.nn.Module):
    """Stands in for aimusic.semantic's model: token j is j % clusters, so a window's first
    token says where in its item it starts. ``delay`` slows each file (for kill tests)."""

    def __init__(self, source_hash: str = "5e3a471c0ffee000", delay: float = 0.0) -> None:
        super().__init__()
        self.cfg, self.source_hash, self.delay = FakeSemanticConfig(), source_hash, delay

    def tokens(self, audio: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return np.arange(audio.size // self.cfg.hop, dtype=np.int64) % self.cfg.clusters


@pytest.fixture(scope="module")
def codec_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_codec(Codec(preset_tiny()), tmp_path_factory.mktemp("models") / "codec.safetensors")


@pytest.fixture(scope="module")
def codec(codec_file: Path) -> Codec:
    return load_codec(codec_file)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("corpus")
    for i, (name, seconds) in enumerate(GOOD.items()):
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        save_audio(d / name, melody(seconds, seed=i, sr=16000 if name.endswith("flac") else SR),
                   16000 if name.endswith("flac") else SR)
    (d / "bad").mkdir()
    (d / "bad/corrupt.wav").write_bytes(np.random.default_rng(0).bytes(5000))
    save_audio(d / "bad/cut.wav", melody(1.0), SR)  # then cut, as a crashed copy leaves it
    (d / "bad/cut.wav").write_bytes((d / "bad/cut.wav").read_bytes()[:20000])
    sf.write(str(d / "bad/empty.wav"), np.zeros(0, np.float32), SR)
    (d / "bad/notes.flac").write_text("these are notes, not audio\n" * 20)
    save_audio(d / "bad/short.wav", melody(0.02), SR)
    nan = melody(0.5)
    nan[100] = np.nan
    sf.write(str(d / "bad/nan.wav"), nan, SR, subtype="FLOAT")
    (d / "README.txt").write_text("not audio, not listed")
    return d


def run(corpus: Path, out: Path, codec: Codec, **kw) -> TokenizeResult:
    kw.setdefault("workers", 1)
    return tokenize(corpus, out, codec, FakeSemantic(), files_per_shard=FPS, **kw)


@pytest.fixture(scope="module")
def ref(corpus: Path, codec: Codec, tmp_path_factory) -> Path:
    """An uninterrupted single-process run everything else is compared with."""
    out = tmp_path_factory.mktemp("ref")
    run(corpus, out, codec)
    return out


def shards(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("shard-*.safetensors"))}


def manifest(d: Path, name: str = "manifest.json") -> dict:
    return json.loads((d / name).read_text())


def errors(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "errors.jsonl").read_text().splitlines()]


def test_plan_and_split_are_pure_functions_of_the_file_list() -> None:
    files = [f"f{i:02d}.wav" for i in range(10)]
    assert plan_shards(files, 4) == [files[0:4], files[4:8], files[8:10]]
    assert part_shards(7, 3, 0) == [0, 3, 6] and part_shards(7, 3, 2) == [2, 5]
    assert sorted(k for i in range(3) for k in part_shards(7, 3, i)) == list(range(7))
    assert resolve_split(None, None, {}) == (1, 0)
    assert resolve_split(None, None, {"WORLD_SIZE": "4", "RANK": "2"}) == (4, 2)
    assert resolve_split(2, 1, {"WORLD_SIZE": "4", "RANK": "2"}) == (2, 1)  # flags win
    for bad in ((2, None), (None, 1), (2, 2), (0, 0)):
        with pytest.raises(AimusicError):
            resolve_split(*bad, {})


def test_shards_manifest_errors_and_items_equal_direct_encoding(ref: Path, corpus: Path,
                                                                codec: Codec) -> None:
    m = manifest(ref)
    assert m["format"] == "aimusic.tokens/1"
    assert m["depends"] == {"codec": codec.source_hash, "semantic": "5e3a471c0ffee000"}
    assert (m["sample_rate"], m["semantic_rate"], m["acoustic_rate"], m["frames_per_token"],
            m["levels"], m["codebook_size"], m["clusters"]) == (SR, 25.0, 75.0, 3, 8, 64, 1000)
    assert m["files"] == len(GOOD) + len(BAD) and m["num_shards"] == 5
    assert sorted(it["source"] for it in m["items"]) == sorted(GOOD)
    assert list(shards(ref)) == [f"shard-{k:05d}.safetensors" for k in range(5)]
    assert m["errors"] == len(BAD)
    reasons = {e["source"]: e["reason"] for e in errors(ref)}
    assert set(reasons) == set(BAD)
    for name, word in BAD.items():
        assert word in reasons[name], (name, reasons[name])

    ds = TokenDataset(ref, codec.source_hash, "5e3a471c0ffee000")
    assert len(ds) == len(GOOD)
    for i, it in enumerate(m["items"]):
        audio = load_audio(corpus / it["source"], SR)
        assert it["num_samples"] == audio.size and it["duration"] == pytest.approx(audio.size / SR)
        codes, _ = encode_stream(codec, iter([audio]), 8)
        sem, ac = ds.item(i)
        assert torch.equal(ac, codes.long())
        assert torch.equal(sem, torch.arange(audio.size // 960))


def test_same_shards_whatever_the_number_of_workers(ref: Path, corpus: Path, codec: Codec,
                                                   tmp_path: Path) -> None:
    r = run(corpus, tmp_path, codec, workers=2)
    assert r.workers == 2 and r.items == len(GOOD) and r.skipped == len(BAD)
    assert shards(tmp_path) == shards(ref)
    assert (tmp_path / "errors.jsonl").read_bytes() == (ref / "errors.jsonl").read_bytes()
    assert manifest(tmp_path)["items"] == manifest(ref)["items"]


def test_a_crashed_run_resumes_to_the_same_result(ref: Path, corpus: Path, codec: Codec,
                                                  tmp_path: Path) -> None:
    def crash(k: int) -> None:
        raise KeyboardInterrupt  # as if the run died right after writing its first shard

    with pytest.raises(KeyboardInterrupt):
        run(corpus, tmp_path, codec, on_shard=crash)
    assert list(shards(tmp_path)) == ["shard-00000.safetensors"]
    assert not (tmp_path / "manifest.json").exists()
    r = run(corpus, tmp_path, codec)
    assert r.resumed_shards == 1 and r.shards == 5
    assert shards(tmp_path) == shards(ref)
    r = run(corpus, tmp_path, codec)  # a finished run redoes nothing
    assert r.resumed_shards == 5 and r.new_seconds == 0
    m, m0 = manifest(tmp_path), manifest(ref)
    assert {k: v for k, v in m.items() if k != "created"} == \
        {k: v for k, v in m0.items() if k != "created"}


def test_kill_9_mid_run_then_resume(ref: Path, corpus: Path, codec_file: Path,
                                    tmp_path: Path) -> None:
    out = tmp_path / "tokens"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import torch; "
            "torch.set_num_threads(1); from test_tokenize import FakeSemantic; "
            "from aimusic.codec.model import load_codec; from aimusic.tokens.tokenize import tokenize; "
            f"tokenize({str(corpus)!r}, {str(out)!r}, load_codec({str(codec_file)!r}), "
            f"FakeSemantic(delay=0.4), workers=1, files_per_shard={FPS})")
    p = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "AIMUSIC_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "shard-00000.safetensors").exists() and time.monotonic() < deadline:
            assert p.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        assert p.poll() is None
    finally:
        p.kill()  # SIGKILL: no cleanup runs
        p.wait()
    assert 1 <= len(shards(out)) < 5 and not (out / "manifest.json").exists()
    (out / ".shard-00004.tmp99999.safetensors").write_bytes(b"half a shard")  # a killed write
    (out / "shard-00003.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{damaged")
    r = run(corpus, out, codec=load_codec(codec_file))
    assert r.resumed_shards >= 1
    assert shards(out) == shards(ref)
    assert manifest(out)["items"] == manifest(ref)["items"]
    assert not list(out.glob(".shard-*"))


def test_one_writer_per_folder_and_a_dead_writers_lock_is_taken_over(ref: Path, corpus: Path,
                                                                      codec: Codec,
                                                                      tmp_path: Path) -> None:
    """A second tokenize into a folder another one is writing is refused, naming the holder
    (two runs with different models used to mix their shards); a lock left by a killed run
    is taken over, and a finished run leaves none."""
    import os
    import socket
    import subprocess
    import sys

    from aimusic.errors import AimusicError

    lock = tmp_path / ".tokenize.lock"
    live = {"pid": os.getppid(), "host": socket.gethostname(), "what": "tokenize",
            "since": "2026-12-07T00:00:00+00:00"}
    lock.write_text(json.dumps(live))
    with pytest.raises(AimusicError, match=f"another tokenize is writing here \\(pid {os.getppid()}"):
        run(corpus, tmp_path, codec)
    assert not list(tmp_path.glob("shard-*")) and json.loads(lock.read_text()) == live
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    lock.write_text(json.dumps({**live, "pid": int(gone.stdout)}))
    run(corpus, tmp_path, codec)
    assert shards(tmp_path) == shards(ref) and not lock.exists()


def test_split_runs_merge_into_the_single_run_dataset(ref: Path, corpus: Path, codec_file: Path,
                                                      tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(semantic_model, "load_semantic", lambda path, device="cpu": FakeSemantic())
    common = ["tokenize", str(corpus), "-o", str(tmp_path), "--codec", str(codec_file),
              "--semantic", "unused", "--workers", "1", "--files-per-shard", str(FPS)]
    r = runner.invoke(app, [*common, "--num-shards", "2", "--shard-index", "1"])
    assert r.exit_code == 0, r.output
    assert "tokenize-merge" in r.output and not (tmp_path / "manifest.json").exists()
    bad = runner.invoke(app, ["tokenize-merge", str(tmp_path)])
    assert bad.exit_code == 1 and "[0] of 2 are missing" in bad.output
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's variables split the job too
    monkeypatch.setenv("RANK", "0")
    r = runner.invoke(app, common)
    assert r.exit_code == 0, r.output
    assert "part 0 of 2" in r.output and "all parts done" in r.output  # the last part merged
    assert manifest(tmp_path, "manifest-00000-of-00002.json")["items"] != []
    r = runner.invoke(app, ["tokenize-merge", str(tmp_path)])
    assert r.exit_code == 0, r.output
    m, m0 = manifest(tmp_path), manifest(ref)
    assert m["items"] == m0["items"] and m["parts"] == 2 and m["errors"] == m0["errors"]
    assert errors(tmp_path) == errors(ref)
    assert shards(tmp_path) == shards(ref)
    assert len(TokenDataset(tmp_path)) == len(GOOD)


def test_reader_refuses_tokens_of_other_models(ref: Path, codec: Codec, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="made with the codec model"):
        TokenDataset(ref, codec_hash="0123456789abcdef")
    with pytest.raises(ArtifactError, match="made with the semantic model"):
        TokenDataset(ref, semantic_hash="0123456789abcdef")
    # a shard swapped in from another model is refused when it is read
    for p in ref.iterdir():
        (tmp_path / p.name).write_bytes(p.read_bytes())
    from safetensors.numpy import load_file

    shard = tmp_path / "shard-00000.safetensors"
    meta = read_shard_metadata(shard)
    assert meta is not None
    meta["depends"] = json.dumps({"codec": "0123456789abcdef", "semantic": "5e3a471c0ffee000"})
    write_safetensors(shard, load_file(str(shard)), meta)
    ds = TokenDataset(tmp_path, codec.source_hash)
    first = next(i for i, it in enumerate(manifest(tmp_path)["items"]) if it["shard"] == 0)
    with pytest.raises(ArtifactError, match="shard made with models"):
        ds.item(first)


def test_reader_windows_align_semantic_and_acoustic(ref: Path) -> None:
    ds = TokenDataset(ref)
    rng = np.random.default_rng(0)
    n = 10
    seen = set()
    for _ in range(40):
        i, start = ds.draw(n, rng)
        sem, ac = ds.slice(i, start, n)
        whole_sem, whole_ac = ds.item(i)
        assert int(sem[0]) == start  # the fake model's token j is j
        assert torch.equal(sem, whole_sem[start : start + n])
        assert torch.equal(ac, whole_ac[:, 3 * start : 3 * (start + n)])
        assert ds.semantic_lengths[i] >= n
        seen.add(i)
    assert len(seen) >= 3  # windows come from several items, weighted by length
    sem, ac = ds.batch(4, n, rng)
    assert sem.shape == (4, n) and ac.shape == (4, 8, 3 * n) and ac.dtype == torch.long
    with pytest.raises(AimusicError, match="no item has 1000 semantic tokens"):
        ds.window(1000, rng)
    with pytest.raises(IndexError):
        ds.slice(0, int(ds.semantic_lengths[0]), 1)


def test_cli_summary_strict_and_missing_models(ref: Path, corpus: Path, codec_file: Path,
                                               tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(semantic_model, "load_semantic", lambda path, device="cpu": FakeSemantic())
    args = ["tokenize", str(corpus), "-o", str(tmp_path), "--codec", str(codec_file),
            "--semantic", "unused", "--workers", "1", "--files-per-shard", str(FPS)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert f"{len(GOOD)} files tokenized, {len(BAD)} skipped" in r.output
    assert "skipped bad/corrupt.wav: not a readable audio file" in r.output
    assert shards(tmp_path) == shards(ref)
    r = runner.invoke(app, [*args, "--strict"])  # resumes everything, still fails
    assert r.exit_code == 1 and "6 file(s) skipped (--strict)" in r.output
    monkeypatch.undo()
    r = runner.invoke(app, ["tokenize", str(corpus), "-o", str(tmp_path / "x"), "--models",
                            str(tmp_path / "nomodels")])
    assert r.exit_code == 1 and "aimusic train-codec AUDIO_DIR" in r.output
    r = runner.invoke(app, ["tokenize", str(corpus), "-o", str(tmp_path / "x"), "--codec",
                            str(codec_file), "--models", str(tmp_path / "nomodels")])
    assert r.exit_code == 1 and "aimusic train-semantic AUDIO_DIR" in r.output.replace("\n", "")


@pytest.mark.parametrize("onsets", [False, True])
def test_cli_end_to_end_with_a_real_semantic_model(corpus: Path, codec_file: Path,
                                                   tmp_path: Path, onsets: bool) -> None:
    """The tokens are the semantic model's; one with ``onsets`` has twice the vocabulary,
    and the manifest says so (the LMs size their tables from it)."""
    from dataclasses import replace

    from aimusic.semantic.model import PRESETS, SemanticModel, load_semantic, save_semantic

    torch.manual_seed(0)
    # iteration 1; random centroids are enough here
    model = SemanticModel(replace(PRESETS["tiny"](), onsets=onsets))
    model.get_buffer("centroids").normal_()
    sem_file = save_semantic(model, tmp_path / "semantic.safetensors")
    out = tmp_path / "tokens"
    r = runner.invoke(app, ["tokenize", str(corpus / "a"), "-o", str(out), "--codec",
                            str(codec_file), "--semantic", str(sem_file), "--strict"])
    assert r.exit_code == 0, r.output
    ds = TokenDataset(out, load_codec(codec_file).source_hash, load_semantic(sem_file).source_hash)
    sem, ac = ds.item(0)
    audio = load_audio(corpus / "a" / ds.sources[0], SR)  # sources are relative to AUDIO_DIR
    assert torch.equal(sem, torch.from_numpy(load_semantic(sem_file).tokens(audio)))
    assert ac.shape[1] >= 3 * sem.numel() and int(sem.max()) < (32 if onsets else 16)
    assert ds.manifest["clusters"] == (32 if onsets else 16)
    r = runner.invoke(app, ["info", str(out)])
    assert r.exit_code == 0 and "aimusic.tokens/1" in r.output


def test_packed_for_a_device_call_keeps_coarse_levels_and_subsets(ref: Path, tmp_path: Path) -> None:
    """research/gpu_pack_tokens.py: levels from --keep-levels on are zero, everything else
    is the same, and a --subset manifest lists its items over the shared shards."""
    import tarfile

    mod = load_example("gpu_pack_tokens", "research")
    tar = tmp_path / "tok.tar.xz"
    mod.pack(ref, tar, keep_levels=3, subsets=("a:^a/",))
    with tarfile.open(tar) as t:
        t.extractall(tmp_path / "x", filter="fully_trusted")
    full, packed = TokenDataset(ref), TokenDataset(tmp_path / "x/tok")
    sub = TokenDataset(tmp_path / "x/tok/a")
    assert packed.sources == full.sources
    assert sorted(sub.sources) == sorted(s for s in full.sources if s.startswith("a/")) != []
    for i in range(len(full)):
        sem, ac = full.item(i)
        psem, pac = packed.item(i)
        assert torch.equal(sem, psem) and torch.equal(ac[:3], pac[:3])
        assert not pac[3:].any() and ac[3:].any()
    j = sub.sources.index("a/one.wav")
    assert torch.equal(sub.item(j)[1][:3], full.item(full.sources.index("a/one.wav"))[1][:3])
