"""The text front end (aimusic.text.phonemes): espeak-ng phonemes and the fixed inventory."""

from __future__ import annotations

import shutil

import pytest

from aimusic.errors import AimusicError
from aimusic.text import phonemes as ph

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed: sudo apt-get install espeak-ng")


def test_inventory_is_fixed() -> None:
    """Ids are part of every trained model: these must never move."""
    assert ph.SYMBOLS[:8] == ("<pad>", "<bos>", "<eos>", "<unk>", "|", ",", "ˈ", "ˌ")
    assert (ph.PAD_ID, ph.BOS_ID, ph.EOS_ID, ph.UNK_ID, ph.WORD_ID, ph.CLAUSE_ID) == (0, 1, 2, 3, 4, 5)
    assert len(set(ph.SYMBOLS)) == len(ph.SYMBOLS) == ph.VOCAB_SIZE == 77
    assert ph.INVENTORY_VERSION == 1
    assert [ph.SYMBOL_TO_ID[s] for s in ("p", "tʃ", "ə", "oʊ", "ɛɹ")] == [8, 26, 50, 62, 76]


def test_encode_decode_round_trip() -> None:
    phones = ["h", "ə", "l", "ˈ", "oʊ", "|", "w", "ˈ", "ɜː", "l", "d", ",", "n̩"]
    ids = ph.encode(phones)
    assert all(isinstance(i, int) for i in ids) and len(ids) == len(phones)
    assert ph.decode(ids) == phones
    wrapped = ph.encode(phones, add_bos_eos=True)
    assert wrapped[0] == ph.BOS_ID and wrapped[-1] == ph.EOS_ID and wrapped[1:-1] == ids
    assert ph.decode(wrapped + [ph.PAD_ID] * 3, strip_specials=True) == phones
    assert ph.decode(ph.encode(list(ph.SYMBOLS))) == list(ph.SYMBOLS)
    assert ph.from_string(ph.to_string(phones)) == phones
    with pytest.raises(ValueError, match="outside the inventory"):
        ph.decode([ph.VOCAB_SIZE])


def test_unknown_symbols_are_split_or_unk_deterministically() -> None:
    assert ph.normalize_symbols(["ææ"]) == ["æ", "æ"]  # two known symbols run together
    assert ph.normalize_symbols(["ɛː"]) == ["ɛ", ph.UNK]  # a length mark alone is unknown
    assert ph.normalize_symbols(["q", "oʊ", "☃x"]) == [ph.UNK, "oʊ", ph.UNK, "x"]
    assert ph.encode(["q"]) == [ph.UNK_ID] == ph.encode(["q"])
    assert ph.decode(ph.encode(["ææ", "q"])) == ["æ", "æ", ph.UNK]


def test_normalize_text() -> None:
    assert ph.normalize_text("  Hello\n\tworld  ") == "Hello world"
    assert ph.normalize_text("it’s “fine”") == "it's \"fine\""
    assert ph.normalize_text("wait — now…") == "wait, now..."
    assert ph.normalize_text("a\x00b ¶ c") == "a b c"
    assert ph.normalize_text("ﬁne") == "fine"  # NFKC: the ligature becomes two letters
    assert ph.normalize_text(" \n ") == ""


@needs_espeak
def test_known_words() -> None:
    """espeak-ng 1.51 (Debian 13) en-us output, stress marks as their own symbols."""
    got = ph.phonemize(["Hello world.", "cat", "church judge", "thinking", "measure"])
    assert [ph.to_string(p) for p in got] == [
        "h ə l ˈ oʊ | w ˈ ɜː l d",
        "k ˈ æ t",
        "tʃ ˈ ɜː tʃ | dʒ ˈ ʌ dʒ",
        "θ ˈ ɪ ŋ k ɪ ŋ",
        "m ˈ ɛ ʒ ɚ",
    ]


@needs_espeak
def test_clauses_numbers_and_batches() -> None:
    texts = ["Yes, no; maybe?", "I have 42 apples", "", "  Hello\n world  ", "Paragraph.", "ok"]
    got = ph.phonemize(texts)
    assert got[0].count(ph.CLAUSE) == 2 and ph.WORD not in got[0]
    assert ph.to_string(got[1]).startswith("aɪ | h æ v | f ˈ oːɹ ɾ i | t ˈ uː")  # forty two
    assert got[2] == []
    assert got[3] == ph.phonemize(["Hello world"])[0]
    # one text at a time gives the same: a text's phonemes do not depend on its batch
    # ("Paragraph." reads like the batch marker: the batch is redone text by text)
    assert got == [ph.phonemize([t])[0] for t in texts]
    assert ph.phonemize(texts * 3, jobs=2) == got * 3
    for p in got:
        assert ph.normalize_symbols(p) == p  # everything in the inventory


@needs_espeak
def test_symbols_of_prose_are_in_the_inventory() -> None:
    text = ["She sells sea shells by the sea shore, and the vision of azure boats "
            "unnerves the bourgeois connoisseur.", "Loch Ness, rendezvous, croissant!"]
    for p in ph.phonemize(text):
        assert ph.UNK not in ph.normalize_symbols(p)


def test_missing_espeak_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(ph.shutil, "which", lambda name: None)
    with pytest.raises(ph.PhonemeError, match="apt-get install espeak-ng") as e:
        ph.phonemize(["hello"])
    assert isinstance(e.value, AimusicError)


def test_letters_the_english_voice_cannot_read_are_found() -> None:
    """`speak` warns about them: espeak-ng's English voice says "Chinese letter" for 你."""
    assert ph.foreign_letters("Hello, café naïve Œuvre 42 $ ½!") == ""
    assert ph.foreign_letters("say 你好 and 你 again") == "你好"
    assert ph.foreign_letters("Привет, мир") == "Приветм"
    assert ph.foreign_letters("ＡＢＣ") == ""  # full-width Latin reads as Latin after NFKC
