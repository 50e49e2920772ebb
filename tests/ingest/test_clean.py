"""Cleaning: quotable normalisation and publisher boilerplate removal."""
from __future__ import annotations

import re

import pytest

from ingest import clean as clean_module
from ingest.clean import clean, normalize, strip_boilerplate
from ingest.documents import build_document
from tests.ingest.helpers import SEED_MD

APPEAL_PHRASES = ("Unlike many news and information platforms", "You can contribute here", "support independent journalism")
LAST_SENTENCE = "“We see a common future with immense common interests, no matter who is in power there”, said Irgashev."


def test_normalize_keeps_quotable_characters():
    text = "‘A reality to be accepted’ — “quoted” – it’s 40 per cent… Café naïve «guillemets»"
    assert normalize(text) == text


def test_normalize_folds_invisible_differences():
    text = "  Cafe\u0301 au\u00a0lait\u200b  is\t\tnice.  \r\n\r\n\r\n\r\nSecond\u00adline \x07here.\r\n"
    assert normalize(text) == "Café au lait is nice.\n\nSecondline here."


def test_normalize_is_idempotent(seed_raw):
    once = normalize(seed_raw)
    assert normalize(once) == once
    assert "’" in once and "“" in once  # curly quotes of the original survive


def test_trailing_footer_detector_alone_strips_the_seed_appeal(seed_raw):
    # The raw article from ../shared: no front matter, so no declared patterns.
    text = clean(seed_raw)
    for phrase in APPEAL_PHRASES:
        assert phrase.lower() not in text.lower()
    assert text.endswith(LAST_SENTENCE)
    assert text.startswith("Analysis\n\n‘A reality to be accepted’")
    assert len(text) > 6000  # the article itself is kept


def test_front_matter_patterns_alone_strip_the_seed_appeal(monkeypatch):
    # Disable the detector: the corpus file's declared `boilerplate:` patterns must do the job.
    monkeypatch.setattr(clean_module, "looks_like_footer", lambda paragraph: False)
    doc = build_document(SEED_MD)
    for phrase in APPEAL_PHRASES:
        assert phrase.lower() not in doc.text.lower()
    assert doc.text.endswith(LAST_SENTENCE)
    assert "boilerplate" not in doc.meta


def test_detector_really_disabled_by_monkeypatch(seed_raw, monkeypatch):
    # Guards the previous test: without patterns and without the detector the appeal stays.
    monkeypatch.setattr(clean_module, "looks_like_footer", lambda paragraph: False)
    assert APPEAL_PHRASES[0] in clean(seed_raw)


def test_seed_document_has_no_appeal():
    doc = build_document(SEED_MD)
    assert not re.search("unlike many news|you can contribute|support independent journalism", doc.text, re.I)
    assert "Rahmon has offered sanctuary to Ahmad Massoud" in doc.text


def test_declared_pattern_in_body_removes_only_that_paragraph():
    paras = [f"Paragraph {i} is about the railway to Mazar-i-Sharif." for i in range(9)]
    paras[2] = "READ MORE: an unrelated story about the Ferghana valley."
    text = "\n\n".join(paras)
    out = strip_boilerplate(text, ["read more:"])
    assert "READ MORE" not in out
    assert out.split("\n\n") == paras[:2] + paras[3:]


def test_declared_pattern_near_the_end_removes_the_rest():
    paras = [f"Paragraph {i} is about the railway to Mazar-i-Sharif." for i in range(9)]
    paras[7] = "Related coverage from our Almaty desk"
    out = strip_boilerplate("\n\n".join(paras), ["re:^related coverage"])
    assert out.split("\n\n") == paras[:7]


@pytest.mark.parametrize(
    "ending",
    [
        "Japan has pledged to donate 20 locomotives to the line by the end of the year.",
        "The number of households with a paid subscription rose by a third, the regulator said.",
        "“We will support our farmers whatever happens,” the minister said.",
        "Officials said the newsletter of the water ministry first reported the figures in March.",
        "The next round of talks is due in Tashkent in September.",
    ],
)
def test_normal_article_ending_is_kept(ending):
    text = (
        "Rail links in Central Asia\n\n"
        "The railway from Termez to Mazar-i-Sharif carries half of Afghanistan's imports.\n\n"
        f"{ending}"
    )
    assert clean(text) == text
    assert clean(text).endswith(ending)


@pytest.mark.parametrize(
    "footer",
    [
        "© 2024 Example Media. All rights reserved.",
        "Enjoyed this story? Sign up for our newsletter to get the week's news from Central Asia.",
        "If you value our reporting, please donate: your support keeps us going.\n\nThank you.",
    ],
)
def test_generic_footers_are_stripped(footer):
    body = (
        "Rail links in Central Asia\n\n"
        "The railway from Termez to Mazar-i-Sharif carries half of Afghanistan's imports.\n\n"
        "The next round of talks is due in Tashkent in September."
    )
    assert clean(body + "\n\n" + footer) == body


def test_detector_never_strips_the_whole_document():
    text = "Subscribe to our newsletter for news about donations you can make."
    assert clean(text) == text
