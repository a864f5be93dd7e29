"""``aimusic eval voice``: speaker similarity, speaker identification and word error rate,
of a speech corpus (the reference points) and of generated speech beside it.

Reference figures, from the corpus's own recordings (at most ``per_speaker`` utterances of
each speaker, in manifest order):

* ``same_speaker``: mean cosine similarity of the speaker embeddings of two different
  utterances of one speaker; ``different_speaker``: the same over pairs of utterances of
  two speakers (pairs of speakers that share a ``talent`` in manifest.json, i.e. the same
  person behind two engines, are left out). Both are means over utterance pairs, the
  quantity an output's similarity to its prompt is.
* ``id_accuracy``: each speaker with more than ``enroll`` utterances is enrolled with the
  mean embedding of its first ``enroll``; each of its other utterances, cut to its first
  ``id_seconds``, is identified as the nearest enrolled voice (cosine). ``id_chance`` is
  1 / enrolled voices. ``test_id_accuracy``: the same among the voices of the ``test``
  split alone (the manifest's ``split``; when it has two or more), the issue's "among the
  test voices", as AudioLM's classifier knows only its test speakers. With few test voices
  its chance (``test_id_chance``) is high: ``id_accuracy`` is the stricter figure.
* ``wer``: pocketsphinx's word error rate on the recordings with English text (corpus
  level: all errors over all reference words).

Generated speech (a JSONL or JSON list of objects: ``path``, ``text`` and ``speaker``
and/or ``prompt``; paths relative to the list's folder, or absolute; a ``prompt`` may also
be relative to the corpus):

* ``similarity``: cosine of each output with its prompt recording, or, without a prompt,
  its mean cosine with the speaker's corpus utterances; compare with ``same_speaker`` and
  ``different_speaker``.
* ``id_accuracy``: an output (cut to ``id_seconds``) identified among the enrolled voices;
  ``test_id_accuracy``: an output of a test voice identified among the test voices alone.
* ``wer`` of the outputs against their text, beside ``wer_real``: the WER of the same
  speaker's corpus recordings of the same sentences (``wer_ratio`` = wer / wer_real over
  the outputs that have such a recording: 1 is as intelligible as the real voice).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from aimusic.audio import load_audio
from aimusic.errors import AimusicError
from aimusic.fileio import write_json
from aimusic.voice import judges as J

LIST_NAMES = ("outputs.jsonl", "outputs.json", "generated.jsonl", "generated.json")


def _read_list(path: Path) -> list[dict]:
    try:
        raw = path.read_text()
    except OSError as e:
        raise AimusicError(f"{path}: cannot read ({e.strerror})") from None
    try:
        if path.suffix == ".json":
            rows = json.loads(raw)
            if isinstance(rows, dict):
                rows = rows.get("outputs") or rows.get("items") or []
        else:
            rows = [json.loads(ln) for ln in raw.splitlines() if ln.strip()]
    except ValueError as e:
        raise AimusicError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise AimusicError(f"{path}: expected a list of objects (path, text, speaker or prompt)")
    return rows


def read_corpus(corpus: Path) -> tuple[list[dict], dict[str, str]]:
    """The manifest.jsonl entries (with ``file``: the absolute wav path) and each speaker's
    talent (manifest.json), when it names one."""
    corpus = Path(corpus)
    mf = corpus / "manifest.jsonl"
    if not mf.is_file():
        raise AimusicError(f"{corpus}: no manifest.jsonl; is this a speech corpus "
                           "(examples/make_speech_corpus.py --out DIR)?")
    entries = _read_list(mf)
    for i, e in enumerate(entries):
        if "path" not in e or "speaker" not in e:
            raise AimusicError(f"{mf}: line {i + 1} has no path or speaker")
        e["file"] = corpus / e["path"]
    talent: dict[str, str] = {}
    with_summary = corpus / "manifest.json"
    if with_summary.is_file():
        try:
            for s in json.loads(with_summary.read_text()).get("speakers", []):
                if s.get("talent"):
                    talent[s["speaker"]] = s["talent"]
        except (ValueError, AttributeError, TypeError):
            pass
    return entries, talent


def read_outputs(generated: Path, corpus: Path, entries: list[dict]) -> list[dict]:
    """The generated items: ``file``, ``text`` (or None), ``speaker`` (or None), ``prompt``
    (a file, or None). ``generated`` is the list itself or a folder holding one of
    LIST_NAMES."""
    generated = Path(generated)
    if generated.is_dir():
        found = [generated / n for n in LIST_NAMES if (generated / n).is_file()]
        if not found:
            raise AimusicError(f"{generated}: no {' or '.join(LIST_NAMES)} listing the outputs "
                               "(path, text, speaker or prompt)")
        listing = found[0]
    elif generated.is_file():
        listing = generated
    else:
        raise AimusicError(f"{generated}: no such file or folder")
    base = listing.parent
    by_path = {str(e["file"].resolve()): e for e in entries}
    items = []
    for i, r in enumerate(_read_list(listing)):
        where = f"{listing}: item {i + 1}"
        if not r.get("path"):
            raise AimusicError(f"{where} has no path")
        f = Path(r["path"]) if Path(r["path"]).is_absolute() else base / r["path"]
        prompt = None
        speaker = r.get("speaker")
        if r.get("prompt"):
            p = Path(r["prompt"])
            cands = [p] if p.is_absolute() else [base / p, Path(corpus) / p]
            prompt = next((c for c in cands if c.is_file()), None)
            if prompt is None:
                raise AimusicError(f"{where}: prompt {r['prompt']} not found (relative to "
                                   f"{base} or {corpus})")
            known = by_path.get(str(prompt.resolve()))
            if speaker is None and known is not None:
                speaker = known["speaker"]
        if speaker is None and prompt is None:
            raise AimusicError(f"{where} names neither a speaker nor a prompt")
        items.append({"file": f, "path": r["path"], "text": r.get("text"), "speaker": speaker,
                      "prompt": prompt})
    if not items:
        raise AimusicError(f"{listing}: lists no outputs")
    return items


class _Judged:
    """The judges' verdicts on the corpus's recordings, kept on disk between runs
    (``cache_dir()/voice-judged-*.json``): a corpus is judged once, not on every `eval
    voice`. A verdict is keyed by the file's path, size and modification time, so an edited
    file is judged again; a cache that cannot be read or written is ignored."""

    def __init__(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        from aimusic.dsp import cache_dir

        try:
            tag = f"{version('resemblyzer')}-{version('pocketsphinx')}"
        except PackageNotFoundError:
            tag = "unknown"
        self.path = cache_dir() / f"voice-judged-{tag}.json"
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    @staticmethod
    def _key(kind: str, f: Path) -> str:
        st = f.stat()
        return f"{kind}|{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def _get(self, kind: str, f: Path, compute: Callable[[], Any]) -> Any:
        key = self._key(kind, f)
        if key not in self.data:
            v = compute()
            self.data[key] = v.tolist() if isinstance(v, np.ndarray) else v
            self.dirty = True
        v = self.data[key]
        return np.asarray(v, dtype=np.float32) if isinstance(v, list) else v

    def embedding(self, f: Path, sr: int, seconds: float | None = None) -> np.ndarray:
        """The speaker embedding of ``f`` (its first ``seconds`` when given)."""
        return self._get("speaker" if seconds is None else f"speaker{seconds:g}s", f,
                         lambda: J.speaker_embedding(load_audio(f, sr, duration=seconds), sr))

    def transcript(self, f: Path, sr: int) -> str:
        return self._get("asr", f, lambda: J.transcribe(load_audio(f, sr), sr))

    def save(self) -> None:
        if not self.dirty:
            return
        # verdicts on files that are gone (a temporary corpus, a rebuilt one) are dropped
        self.data = {k: v for k, v in self.data.items()
                     if Path(k.split("|", 1)[1].rsplit("|", 2)[0]).exists()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, self.data)
            self.dirty = False
        except OSError:
            pass


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None


class _Speakers:
    """The reference voices: embeddings of the chosen utterances, how alike the same and
    different speakers are, and identification by nearest enrolled centroid (from the
    first ``enroll`` utterances; the rest are queried on their first ``id_seconds``)."""

    def __init__(self, chosen: dict[str, list[dict]], talent: dict[str, str], enroll: int,
                 id_seconds: float, judged: _Judged, sr: int) -> None:
        self.emb: dict[str, list[np.ndarray]] = {}
        self.short: dict[str, list[np.ndarray]] = {}
        for spk, es in chosen.items():
            for k, e in enumerate(es):
                self.emb.setdefault(spk, []).append(judged.embedding(e["file"], sr))
                if k >= enroll:
                    self.short.setdefault(spk, []).append(
                        judged.embedding(e["file"], sr, id_seconds))
        self.same: list[float] = []
        self.diff: list[float] = []
        self.per_spk: dict[str, dict[str, Any]] = {}
        spks = sorted(self.emb)
        for i, s in enumerate(spks):
            m = np.stack(self.emb[s])
            sim = m @ m.T
            iu = np.triu_indices(len(m), 1)
            self.same += sim[iu].tolist()
            self.per_spk[s] = {"utterances": len(m), "same_speaker": _mean(sim[iu].tolist())}
            for t in spks[i + 1:]:
                if talent.get(s) and talent.get(s) == talent.get(t):
                    continue  # one voice talent behind two speakers: neither same nor different
                self.diff += (m @ np.stack(self.emb[t]).T).ravel().tolist()
        self.centroids = {s: np.mean(v[:enroll], axis=0) for s, v in self.emb.items()
                          if len(v) > enroll}
        self.names = sorted(self.centroids)
        self.cm = np.stack([self.centroids[s] / np.linalg.norm(self.centroids[s])
                            for s in self.names]) if self.names else None
        self.tests: list[int] = []

    def only_tests(self, test_split: set[str]) -> None:
        """The test split's voices, to identify among alone: the issue's "among the test
        voices" (AudioLM's classifier knows only its test speakers)."""
        self.tests = [i for i, s in enumerate(self.names) if s in test_split]

    def identify(self, e: np.ndarray, among_tests: bool = False) -> str | None:
        if self.cm is None or (among_tests and len(self.tests) < 2):
            return None
        if among_tests:
            return self.names[self.tests[int(np.argmax(self.cm[self.tests] @ e))]]
        return self.names[int(np.argmax(self.cm @ e))]

    def reference(self) -> dict[str, Any]:
        """Similarity of same and different speakers, and identification accuracy."""
        names, short = self.names, self.short
        hits = [self.identify(q) == s for s in names for q in short.get(s, [])]
        for s in names:
            self.per_spk[s]["id_accuracy"] = _mean([float(self.identify(x) == s)
                                                    for x in short.get(s, [])])
        ref: dict[str, Any] = {
            "speakers": len(self.emb), "utterances": sum(len(v) for v in self.emb.values()),
            "same_speaker": _mean(self.same), "different_speaker": _mean(self.diff),
            "same_pairs": len(self.same), "different_pairs": len(self.diff),
            "enrolled": len(names), "id_queries": len(hits),
            "id_accuracy": _mean([float(h) for h in hits]),
            "id_chance": round(1 / len(names), 4) if names else None,
        }
        if len(self.tests) >= 2:
            test_hits = [self.identify(q, True) == names[i] for i in self.tests
                         for q in short.get(names[i], [])]
            ref.update(test_voices=[names[i] for i in self.tests],
                       test_id_accuracy=_mean([float(h) for h in test_hits]),
                       test_id_chance=round(1 / len(self.tests), 4))
        return ref


def _real_wer(chosen: dict[str, list[dict]], matched: list[dict], judged: _Judged, sr: int,
              per_spk: dict[str, dict[str, Any]], say: Callable[[str], None],
              ) -> tuple[dict[str, Any], dict[str, str]]:
    """WER of the chosen English recordings (overall and per speaker) and the transcripts
    of those and of the recordings of the outputs' sentences."""
    todo = [e for es in chosen.values() for e in es if e.get("text") and e.get("lang", "en") == "en"]
    todo += [e for e in matched if e not in todo]
    say(f"transcribing {len(todo)} recordings")
    hyps: dict[str, str] = {}
    errs = words = 0
    counts: dict[str, list[int]] = {}
    for e in todo:
        hyps[str(e["file"])] = h = judged.transcript(e["file"], sr)
        if e in matched and e not in chosen.get(e["speaker"], []):
            continue
        x, n = J.wer_counts(e["text"], h)
        errs, words = errs + x, words + n
        c = counts.setdefault(e["speaker"], [0, 0])
        c[0], c[1] = c[0] + x, c[1] + n
    for spk, (e_, n_) in counts.items():
        per_spk[spk]["wer"] = round(e_ / n_, 4) if n_ else None
    return {"wer": round(errs / words, 4) if words else None, "wer_words": words}, hyps


def _judge_outputs(outputs: list[dict], speakers: _Speakers, ref: dict[str, Any],
                   judged: _Judged, matched: list[dict], hyps: dict[str, str], wer_real: bool,
                   id_seconds: float, corpus: Path, sr: int,
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Each output's similarity to its prompt (or its speaker), who it is identified as,
    and its WER beside the real recording of the same sentence; and their summary."""
    items = []
    g_err = g_words = m_err = m_words = r_err = r_words = 0
    for o in outputs:
        a = load_audio(o["file"], sr)
        v = J.speaker_embedding(a, sr)
        it: dict[str, Any] = {"path": o["path"], "speaker": o["speaker"],
                              "prompt": str(o["prompt"]) if o["prompt"] else None}
        if o["prompt"] is not None:
            it["similarity"] = round(J.cosine(v, judged.embedding(o["prompt"], sr)), 4)
        elif o["speaker"] in speakers.emb:
            it["similarity"] = round(float(np.mean(np.stack(speakers.emb[o["speaker"]]) @ v)), 4)
        else:
            raise AimusicError(f"{o['path']}: speaker {o['speaker']!r} is not in {corpus} "
                               "and no prompt is given")
        if o["speaker"] in speakers.centroids:
            head = J.speaker_embedding(a[: int(id_seconds * sr)], sr)
            it["identified"] = speakers.identify(head)
            if o["speaker"] in ref.get("test_voices", []):
                it["identified_among_tests"] = speakers.identify(head, True)
        if o["text"]:
            h = J.transcribe(a, sr)
            x, n = J.wer_counts(o["text"], h)
            it.update(text=o["text"], transcript=h, wer=round(x / n, 4) if n else None)
            g_err, g_words = g_err + x, g_words + n
            key = (o["speaker"], J.normalize_text(o["text"]))
            real = [r for r in matched if (r["speaker"], J.normalize_text(r["text"])) == key]
            if real and wer_real:
                rx, rn = J.wer_counts(real[0]["text"], hyps[str(real[0]["file"])])
                it["wer_real"] = round(rx / rn, 4) if rn else None
                m_err, m_words, r_err, r_words = m_err + x, m_words + n, r_err + rx, r_words + rn
        items.append(it)
    ids = [float(i["identified"] == i["speaker"]) for i in items if "identified" in i]
    t_ids = [float(i["identified_among_tests"] == i["speaker"]) for i in items
             if "identified_among_tests" in i]
    gen: dict[str, Any] = {
        "outputs": len(items), "similarity": _mean([i["similarity"] for i in items]),
        "id_accuracy": _mean(ids), "id_outputs": len(ids),
        "test_id_accuracy": _mean(t_ids), "test_id_outputs": len(t_ids),
        "wer": round(g_err / g_words, 4) if g_words else None,
        "matched": sum("wer_real" in i for i in items),
        "wer_matched": round(m_err / m_words, 4) if m_words else None,
        "wer_real": round(r_err / r_words, 4) if r_words else None,
    }
    gen["wer_ratio"] = (round(gen["wer_matched"] / gen["wer_real"], 3)
                        if gen["wer_matched"] is not None and gen["wer_real"] else None)
    return gen, items


def evaluate_voice(corpus: Path, generated: Path | None = None, per_speaker: int = 10,
                   enroll: int = 3, id_seconds: float = 3.0, wer_real: bool = True,
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The figures described in the module docstring, as a JSON-ready dict."""
    J.check_judges()
    corpus = Path(corpus)
    entries, talent = read_corpus(corpus)
    say = log or (lambda s: None)
    chosen: dict[str, list[dict]] = {}
    for e in entries:
        lst = chosen.setdefault(e["speaker"], [])
        if len(lst) < per_speaker:
            lst.append(e)
    outputs = read_outputs(generated, corpus, entries) if generated is not None else []
    # real recordings of the outputs' sentences by their voices, always measured for WER
    want_text = {(o["speaker"], J.normalize_text(o["text"])) for o in outputs if o["text"]}
    matched = [e for e in entries if e.get("text") and
               (e["speaker"], J.normalize_text(e["text"])) in want_text]
    sr = 16000
    say(f"embedding {sum(map(len, chosen.values()))} utterances of {len(chosen)} speakers")
    judged = _Judged()
    speakers = _Speakers(chosen, talent, enroll, id_seconds, judged, sr)
    speakers.only_tests({e["speaker"] for e in entries if e.get("split") == "test"})
    ref = speakers.reference()
    hyps: dict[str, str] = {}
    if wer_real:
        wer, hyps = _real_wer(chosen, matched, judged, sr, speakers.per_spk, say)
        ref.update(wer)
    judged.save()
    result: dict[str, Any] = {"corpus": str(corpus), "judges": {
        "speaker": "resemblyzer VoiceEncoder (cosine of 256-d embeddings)",
        "asr": "pocketsphinx 5, default en-us model", "wer": "jiwer, lower case, punctuation removed"},
        "settings": {"per_speaker": per_speaker, "enroll": enroll, "id_seconds": id_seconds},
        "reference": ref, "per_speaker": speakers.per_spk}
    if not outputs:
        return result
    say(f"judging {len(outputs)} outputs")
    result["generated"], result["items"] = _judge_outputs(
        outputs, speakers, ref, judged, matched, hyps, wer_real, id_seconds, corpus, sr)
    judged.save()  # the prompts' embeddings too
    return result
