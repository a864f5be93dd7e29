"""English phonemes from espeak-ng, and the fixed phoneme inventory the voice models use.

Text to phonemes::

    >>> phonemize(["Hello world."])
    [['h', 'ə', 'l', 'ˈ', 'oʊ', '|', 'w', 'ˈ', 'ɜː', 'l', 'd']]

**Normalisation** (:func:`normalize_text`, applied by :func:`phonemize`): Unicode NFKC;
typographic quotes become ``'`` and ``"``, dashes between words (– — ―) a comma, ``…``
three dots; control characters, tabs and newlines become spaces; runs of whitespace
collapse to one; ends are stripped. Everything else goes to espeak-ng as it is, and
espeak-ng's en-us rules read it: numbers (``42`` → forty two), ``$ % &``, abbreviations
(``Mr.``), acronyms spelled letter by letter. Punctuation is not a phoneme: espeak-ng
breaks a text into clauses at ``, . ; : ! ?`` (and in very long clauses), and each break
inside a text becomes the :data:`CLAUSE` symbol. Text outside Latin script is spelled
out by espeak-ng's English voice (``你`` → "Chinese letter"); symbols it produces that are
not in the inventory are handled as below.

**Symbols**: espeak-ng's IPA output with one phoneme per symbol (``tʃ``, ``aɪ``, ``oːɹ``
and ``əl`` are single phonemes, as espeak-ng treats them); stress marks ``ˈ`` (primary)
and ``ˌ`` (secondary) are symbols of their own, placed before the stressed vowel;
:data:`WORD` (``|``) separates words and :data:`CLAUSE` (``,``) clauses.

**Inventory** (:data:`SYMBOLS`, version :data:`INVENTORY_VERSION`): ids are the positions
in :data:`SYMBOLS` and never change; new symbols may only be appended, which bumps the
version. Specials first: 0 ``<pad>``, 1 ``<bos>``, 2 ``<eos>``, 3 ``<unk>``, 4 ``|``,
5 ``,``, 6 ``ˈ``, 7 ``ˌ``; then consonants, vowels and r-coloured vowels. The phonemes
cover everything espeak-ng 1.51 (en-us) produces for the CMU dictionary's words and
common prose, and a few rarer symbols of espeak's English voices.

**Unknown symbols** (another espeak-ng version or voice, odd scripts): :func:`encode`
splits a symbol it does not know into the longest known symbols from the left
(``ææ`` → ``æ æ``, ``ɛː`` → ``ɛ <unk>``) and maps each character that no known symbol
starts with to one ``<unk>``. The result depends only on the symbol, so it is deterministic;
:func:`normalize_symbols` applies the same rule to symbol lists.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from aimusic.errors import AimusicError

INVENTORY_VERSION = 1
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
WORD, CLAUSE = "|", ","
STRESS_PRIMARY, STRESS_SECONDARY = "ˈ", "ˌ"
SPECIALS = (PAD, BOS, EOS, UNK, WORD, CLAUSE, STRESS_PRIMARY, STRESS_SECONDARY)

CONSONANTS = (
    "p", "b", "t", "d", "k", "ɡ", "ʔ", "ɾ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "x",
    "tʃ", "dʒ", "m", "n", "ŋ", "n̩", "l", "ɬ", "ɹ", "r", "w", "j",
)
VOWELS = (
    "i", "iː", "ɪ", "ᵻ", "e", "eɪ", "ɛ", "æ", "a", "aɪ", "aʊ", "ɐ", "ə", "ɚ", "ɜː", "ʌ",
    "ɑ", "ɑː", "ɒ", "ɔ", "ɔː", "ɔɪ", "o", "oː", "oʊ", "ʊ", "u", "uː", "iə", "aɪə", "aɪɚ",
    "əl", "ɑ̃",
)
R_COLOURED = ("ɑːɹ", "ɔːɹ", "oːɹ", "ʊɹ", "ɪɹ", "ɛɹ")
SYMBOLS: tuple[str, ...] = SPECIALS + CONSONANTS + VOWELS + R_COLOURED
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(SYMBOLS)}
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (SYMBOL_TO_ID[s] for s in (PAD, BOS, EOS, UNK))
WORD_ID, CLAUSE_ID = SYMBOL_TO_ID[WORD], SYMBOL_TO_ID[CLAUSE]
VOCAB_SIZE = len(SYMBOLS)

ESPEAK = "espeak-ng"
DEFAULT_VOICE = "en-us"
# A line of its own between texts: its phonemes mark where one text's output ends. Texts
# lose this character in normalisation, so only a text that reads like it can collide,
# and a collision is detected (the count of markers is wrong) and handled text by text.
SENTINEL = "¶"
_MAX_BATCH = 2000  # texts per espeak-ng process

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'",
                         "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
                         "¶": " "})
_DASH = re.compile(r"\s*[–—―]+\s*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class PhonemeError(AimusicError):
    """espeak-ng is missing or failed."""


def normalize_text(text: str) -> str:
    """The text as espeak-ng reads it (module docstring: Normalisation)."""
    t = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    t = t.replace("…", "...")
    t = _DASH.sub(", ", t)
    t = _CONTROL.sub(" ", t)
    return " ".join(t.split())


def foreign_letters(text: str) -> str:
    """The letters of ``text`` that are not Latin (``"你好"`` for ``"say 你好"``), each once,
    in order: espeak-ng's English voice names them ("Chinese letter") instead of reading
    them."""
    seen: dict[str, None] = {}
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN"):
            seen.setdefault(ch)
    return "".join(seen)


def check_espeak() -> str:
    """The espeak-ng executable's path, or a PhonemeError saying how to install it."""
    path = shutil.which(ESPEAK)
    if path is None:
        raise PhonemeError("espeak-ng not found; install it: sudo apt-get install espeak-ng")
    return path


def espeak_version() -> str:
    """espeak-ng's version ("1.51"), recorded beside phonemes it produced."""
    r = subprocess.run([check_espeak(), "--version"], capture_output=True, text=True)
    m = re.search(r"text-to-speech:\s*(\S+)", r.stdout)
    return m.group(1) if m else r.stdout.strip()[:40]


def _run_espeak(lines: Sequence[str], voice: str) -> list[str]:
    """espeak-ng's IPA output (one phoneme per space, words apart by two) for input lines,
    each read on its own."""
    exe = check_espeak()
    cmd = [exe, "-q", "-b", "1", "--ipa", "--sep= ", "-v", voice]
    try:
        r = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True,
                           encoding="utf-8", errors="replace", timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PhonemeError(f"espeak-ng failed: {e}") from None
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[0]
        raise PhonemeError(f"espeak-ng -v {voice} failed: {msg}")
    return r.stdout.splitlines()


def _parse_line(line: str) -> list[list[str]]:
    """One clause's output as words of symbols, stress marks split off."""
    words = []
    for chunk in line.split("  "):
        word: list[str] = []
        for tok in chunk.split():
            while tok and tok[0] in (STRESS_PRIMARY, STRESS_SECONDARY):
                word.append(tok[0])
                tok = tok[1:]
            if tok:
                word.append(tok)
        if word:
            words.append(word)
    return words


def _join(lines: Iterable[str]) -> list[str]:
    """Clause lines of one text as one symbol list: WORD between words, CLAUSE between clauses."""
    out: list[str] = []
    for line in lines:
        words = _parse_line(line)
        if not words:
            continue
        if out:
            out.append(CLAUSE)
        for i, w in enumerate(words):
            if i:
                out.append(WORD)
            out += w
    return out


_sentinel_cache: dict[str, list[str]] = {}
_sentinel_lock = threading.Lock()


def _sentinel_lines(voice: str) -> list[str]:
    with _sentinel_lock:
        if voice not in _sentinel_cache:
            lines = [ln.strip() for ln in _run_espeak([SENTINEL], voice) if ln.strip()]
            if not lines:
                raise PhonemeError(f"espeak-ng -v {voice} gives no phonemes for {SENTINEL!r}")
            _sentinel_cache[voice] = lines
        return _sentinel_cache[voice]


def _phonemize_batch(texts: Sequence[str], voice: str) -> list[list[str]]:
    """All texts through one espeak-ng process, a sentinel line after each; when the
    sentinels do not come back once per text, one process per text instead."""
    marker = _sentinel_lines(voice)
    lines = [ln for t in texts for ln in (t, SENTINEL)]
    out = [ln.strip() for ln in _run_espeak(lines, voice)]
    results: list[list[str]] = []
    current: list[str] = []
    i = 0
    while i < len(out):
        if out[i: i + len(marker)] == marker:
            results.append(_join(current))
            current = []
            i += len(marker)
        else:
            current.append(out[i])
            i += 1
    if len(results) == len(texts) and not any(current):
        return results
    return [_join(_run_espeak([t], voice)) if t else [] for t in texts]


def phonemize(texts: Iterable[str], voice: str = DEFAULT_VOICE, jobs: int = 1) -> list[list[str]]:
    """Phoneme symbols for each text (normalised first); an empty text gives [].

    Texts go through espeak-ng in batches (``jobs`` processes at a time, up to 2000 texts
    each; about 5 ms a text on one core), each text read on its own: a text's phonemes do not depend on the
    others in the batch. ``voice`` is an espeak-ng voice; the inventory is en-us's.
    """
    norm = [normalize_text(t) for t in texts]
    check_espeak()
    todo = [i for i, t in enumerate(norm) if t]
    size = min(_MAX_BATCH, max(1, -(-len(todo) // max(1, jobs))))
    batches = [todo[k: k + size] for k in range(0, len(todo), size)]
    result: list[list[str]] = [[] for _ in norm]

    def run(batch: list[int]) -> list[list[str]]:
        return _phonemize_batch([norm[i] for i in batch], voice)

    if jobs > 1 and len(batches) > 1:
        with ThreadPoolExecutor(min(jobs, len(batches))) as ex:
            done = list(ex.map(run, batches))
    else:
        done = [run(b) for b in batches]
    for batch, phones in zip(batches, done):
        for i, p in zip(batch, phones):
            result[i] = p
    return result


def _split_unknown(symbol: str) -> list[str]:
    """Longest known symbols from the left; a character none starts with becomes UNK."""
    out, i = [], 0
    while i < len(symbol):
        for j in range(len(symbol), i, -1):
            if symbol[i:j] in SYMBOL_TO_ID:
                out.append(symbol[i:j])
                i = j
                break
        else:
            out.append(UNK)
            i += 1
    return out


def normalize_symbols(phones: Iterable[str]) -> list[str]:
    """Symbols as the inventory has them: unknown ones split or made UNK (module docstring)."""
    out: list[str] = []
    for p in phones:
        out += [p] if p in SYMBOL_TO_ID else _split_unknown(p)
    return out


def encode(phones: Iterable[str], add_bos_eos: bool = False) -> list[int]:
    """Ids of the symbols (unknown ones handled as :func:`normalize_symbols` does)."""
    ids = [SYMBOL_TO_ID[s] for s in normalize_symbols(phones)]
    return [BOS_ID, *ids, EOS_ID] if add_bos_eos else ids


def decode(ids: Iterable[int], strip_specials: bool = False) -> list[str]:
    """Symbols of the ids. ``strip_specials`` drops PAD, BOS and EOS. An id outside the
    inventory raises ValueError."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < VOCAB_SIZE:
            raise ValueError(f"phoneme id {i} outside the inventory (0..{VOCAB_SIZE - 1})")
        if strip_specials and i in (PAD_ID, BOS_ID, EOS_ID):
            continue
        out.append(SYMBOLS[i])
    return out


def to_string(phones: Sequence[str]) -> str:
    """Symbols joined by single spaces (as manifests store them); :func:`from_string` inverts."""
    return " ".join(phones)


def from_string(s: str) -> list[str]:
    return s.split()
