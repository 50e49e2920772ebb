"""Sentence splitting with exact spans, and sentence-aware chunking with the offset invariant."""
from __future__ import annotations

import random

import pytest

from ingest.chunking import chunk_id, chunk_text, split_sentences
from ingest.clean import normalize
from ingest.documents import build_document
from ingest.settings import Settings, check_chunking
from ingest.types import IngestError
from tests.ingest.helpers import SEED_MD, check_chunks, seed_sentences


def sentences_of(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


# ------------------------------------------------------------------ sentence splitter
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Dr. Smith arrived. He left.", ["Dr. Smith arrived.", "He left."]),
        ("Prof. Lee and Mr. Khan met Mrs. Bakirova. They talked.", ["Prof. Lee and Mr. Khan met Mrs. Bakirova.", "They talked."]),
        ("The U.S. Army arrived. It was late.", ["The U.S. Army arrived.", "It was late."]),
        ("Sanctions by the U.S. and the E.U. were lifted. Trade resumed.", ["Sanctions by the U.S. and the E.U. were lifted.", "Trade resumed."]),
        ("Some crops, e.g. cotton and wheat, need water. Others do not.", ["Some crops, e.g. cotton and wheat, need water.", "Others do not."]),
        ("Exports, i.e. Cotton, grew. Imports fell.", ["Exports, i.e. Cotton, grew.", "Imports fell."]),
        ("Growth was 3.5 per cent in 2023. It slowed.", ["Growth was 3.5 per cent in 2023.", "It slowed."]),
        ("It cost $1.25 million. Then 2.5 more.", ["It cost $1.25 million.", "Then 2.5 more."]),
        ("J. R. R. Tolkien wrote it. A. Smith read it.", ["J. R. R. Tolkien wrote it.", "A. Smith read it."]),
        ("He said “Stop.” Then he left.", ["He said “Stop.”", "Then he left."]),
        ("“Is it true?” she asked. “Yes!” he said.", ["“Is it true?” she asked.", "“Yes!” he said."]),
        ("Prices rose (sharply.) Then they fell.", ["Prices rose (sharply.)", "Then they fell."]),
        ("Visit example.com today. Or not.", ["Visit example.com today.", "Or not."]),
        ("Wait… What happened? Nothing!", ["Wait…", "What happened?", "Nothing!"]),
        ("A sentence without a final stop", ["A sentence without a final stop"]),
        ("Heading line\nFirst sentence. second part stays.", ["Heading line", "First sentence. second part stays."]),
        ("", []),
        ("   \n\n  ", []),
    ],
)
def test_split_sentences(text, expected):
    assert sentences_of(text) == expected


def test_split_sentences_spans_are_exact_and_trimmed():
    text = "  One.   Two?\n\n  Three!  "
    spans = split_sentences(text, offset=100)
    assert [(s - 100, e - 100) for s, e in spans] == [(2, 6), (9, 13), (17, 23)]
    for s, e in spans:
        piece = text[s - 100 : e - 100]
        assert piece == piece.strip() and piece


def test_seed_article_sentences():
    doc = build_document(SEED_MD)
    sents = sentences_of(doc.text)
    assert (
        "Rahmon has offered sanctuary to Ahmad Massoud, the most prominent leader of armed resistance to the "
        "Taliban, and a 2006 ruling by Tajikistan’s Supreme Court designating the Taliban as a terrorist "
        "organisation remains in place."
    ) in sents
    # Every sentence ends with punctuation or is a heading/line; none starts with whitespace.
    assert all(s == s.strip() for s in sents)
    assert len(sents) > 40


# ------------------------------------------------------------------ chunking
def _documents() -> dict[str, str]:
    seed = build_document(SEED_MD).text
    rng = random.Random(7)
    sentences = seed_sentences()
    shuffled = "\n\n".join(" ".join(rng.sample(sentences, 4)) for _ in range(12))
    return {
        "seed": seed,
        "shuffled-seed": shuffled,
        "long-sentence-no-punctuation": "word " * 600 + "end",  # 3000+ chars, one sentence
        "no-spaces": "x" * 2500,
        "no-spaces-then-text": "Short start. " + "y" * 1300 + " tail words here. Final sentence.",
        "tiny": "Hi.",
        "short-sentences-then-long": "A. B. C. D. E. F. G. " + "z" * 580 + ". " + "Next one. " * 30,
        "headings-and-lists": "# Title\n\n- item one\n- item two\n\n1. First.\n2. Second.\n\nBody text. More body text.",
        "unicode": "Çağrı “quoted” text — with dashes… " * 40,
    }


DOCS = _documents()
SIZES = [(600, 150), (200, 50), (120, 0), (50, 49), (1000, 300)]


@pytest.mark.parametrize("name", sorted(DOCS))
@pytest.mark.parametrize("size, overlap", SIZES)
def test_chunk_invariants_on_every_chunk(name, size, overlap):
    text = DOCS[name]
    chunks = chunk_text("doc", text, size, overlap)
    check_chunks(text, chunks, size, overlap)
    assert all(c.doc_id == "doc" and c.chunk_id == chunk_id("doc", c.start, c.end) for c in chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_sentences_are_not_cut_when_they_fit():
    text = DOCS["seed"]
    spans = set(split_sentences(text))
    longest = max(e - s for s, e in spans)
    chunks = chunk_text("d", text, max(longest, 600), 150)
    for c in chunks:
        assert set(c.sentences) <= spans  # whole sentences only


def test_long_sentence_is_cut_at_whitespace():
    text = DOCS["long-sentence-no-punctuation"]
    chunks = chunk_text("d", text, 200, 0)
    assert len(chunks) >= 15
    for c in chunks:
        assert len(c.text) <= 200
        assert not c.text.startswith("ord") and c.text.split()[0] in ("word", "end")  # cut between words


def test_text_without_spaces_is_hard_cut():
    chunks = chunk_text("d", "x" * 2500, 600, 0)
    assert [len(c.text) for c in chunks] == [600, 600, 600, 600, 100]
    assert "".join(c.text for c in chunks) == "x" * 2500


def test_overlap_repeats_whole_trailing_sentences():
    text = " ".join(f"Sentence number {i:02d} is here." for i in range(40))  # 27 chars each + space
    chunks = chunk_text("d", text, 200, 60)
    check_chunks(text, chunks, 200, 60)
    for prev, nxt in zip(chunks, chunks[1:]):
        overlap = prev.end - nxt.start
        assert 0 < overlap <= 60
        assert nxt.sentences[:2] == prev.sentences[-2:]  # two 27-char sentences fit in 60


def test_no_overlap_when_zero():
    text = " ".join(f"Sentence number {i:02d} is here." for i in range(40))
    chunks = chunk_text("d", text, 200, 0)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start > prev.end


def test_no_chunk_is_a_subset_of_the_previous_one():
    # Short sentences followed by one that nearly fills a chunk: the overlap must shrink so the
    # next chunk still adds new text (regression: chunks repeating only the overlap).
    text = "One. Two. Three. Four. " + "w" * 190 + ". After that, more text follows here."
    chunks = chunk_text("d", text, 200, 50)
    check_chunks(text, chunks, 200, 50)
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.end > prev.end


def test_chunk_ids_are_stable():
    text = DOCS["seed"]
    assert [c.chunk_id for c in chunk_text("a", text)] == [c.chunk_id for c in chunk_text("a", text)]


def test_empty_text_has_no_chunks():
    assert chunk_text("d", "") == []
    assert chunk_text("d", "  \n\n ") == []


def test_randomised_texts_keep_every_invariant():
    """Seeded fuzzing over awkward characters, raw and normalised, many chunk settings."""
    rng = random.Random(20261127)
    alphabet = list("abc DEF.!?\n“”’\"'()3.5 —…") + ["Dr. ", "U.S. ", "e.g. ", "\t", "\u00a0", "x" * 70, "   ", "\n \n"]
    for _ in range(400):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        size = rng.choice([50, 64, 100, 250])
        overlap = rng.randint(0, size - 1)
        for text in (raw, normalize(raw)):
            check_chunks(text, chunk_text("d", text, size, overlap), size, overlap)


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "size, overlap, parameter",
    [(10, 0, "chunk_size"), (0, 0, "chunk_size"), ("600", 0, "chunk_size"), (600, -1, "chunk_overlap"),
     (600, 600, "chunk_overlap"), (600, 700, "chunk_overlap"), (600, 1.5, "chunk_overlap")],
)
def test_invalid_chunk_settings_name_the_parameter(size, overlap, parameter):
    with pytest.raises(IngestError, match=parameter):
        check_chunking(size, overlap)
    with pytest.raises(IngestError, match=parameter):
        chunk_text("d", "Some text.", size, overlap)
    with pytest.raises(IngestError, match=parameter):
        Settings(chunk_size=size, chunk_overlap=overlap)


def test_settings_from_env_validates_chunking():
    with pytest.raises(IngestError, match="QA_CHUNK_SIZE"):
        Settings.from_env({"QA_CHUNK_SIZE": "big"})
    with pytest.raises(IngestError, match="chunk_overlap"):
        Settings.from_env({"QA_CHUNK_SIZE": "100", "QA_CHUNK_OVERLAP": "100"})
    s = Settings.from_env({"QA_CHUNK_SIZE": "300", "QA_CHUNK_OVERLAP": "30"})
    assert (s.chunk_size, s.chunk_overlap) == (300, 30)
