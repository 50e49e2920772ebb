"""Loaders: every format, title fallbacks, and every kind of bad file reported by path."""
from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from ingest.chunking import chunk_text, split_sentences
from ingest.documents import build_document
from ingest.loaders import load_file
from ingest.pipeline import Ingestor
from ingest.store import COMPLETE
from ingest.types import BadFile
from tests.ingest.helpers import SEED_MD, check_chunks, make_pdf

GOOD_MD = """---
title: "Railways of Central Asia"
source: Example Review
url: https://example.org/railways
published: 2023-05-02
tags: [rail, Uzbekistan]
---
# A heading that is not the title

The railway from Termez to Mazar-i-Sharif carries half of Afghanistan's imports.

Uzbekistan Railways built it in 2011 and its subsidiary operates it.
"""

HTML_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Water Wars in the Ferghana Valley</title>
<meta property="article:published_time" content="2023-05-02T10:00:00Z"></head>
<body>
<nav><ul><li><a href="/">Home</a></li><li><a href="/about">About us</a></li>
<li><a href="/shop">Shop our merchandise catalogue</a></li></ul></nav>
<article>
<h1>Water Wars in the Ferghana Valley</h1>
<p>The Amu Darya river supplies water to millions of farmers across Uzbekistan and Turkmenistan, and its
flow has been shrinking for decades as the glaciers that feed it retreat.</p>
<p>Afghanistan's Qosh Tepa canal will divert a large share of that flow to irrigate the northern
provinces, which worries officials downstream in Tashkent and Ashgabat.</p>
<p>Engineers estimate the canal could take up to a fifth of the river's water once it is completed, a loss
that would hit cotton growers first.</p>
<p>Unlike many outlets, we have no paywall. If you value our reporting, support independent journalism
and donate today.</p>
</article>
<footer><p>Cookie settings. Privacy policy. Terms of use. Careers at Example Media Group.</p></footer>
</body></html>
"""


# ------------------------------------------------------------------ good formats
def test_markdown_with_front_matter(tmp_path):
    path = tmp_path / "rail.md"
    path.write_text(GOOD_MD, encoding="utf-8")
    doc = build_document(path)
    assert doc.title == "Railways of Central Asia"
    assert doc.meta["source"] == "Example Review"
    assert doc.meta["url"] == "https://example.org/railways"
    assert doc.meta["published"] == "2023-05-02"
    assert doc.meta["tags"] == ["rail", "Uzbekistan"]
    assert doc.meta["filename"] == "rail.md"
    assert doc.text.startswith("# A heading that is not the title\n\nThe railway from Termez")
    assert "title:" not in doc.text and "---" not in doc.text
    assert doc.pages == ()


def test_seed_corpus_document_metadata():
    doc = build_document(SEED_MD)
    assert doc.title == "‘A reality to be accepted’: Why Central Asia is increasing engagement with the Taliban"
    assert doc.meta["source"] == "Emerging Europe"
    assert doc.meta["kind"] == "Analysis"
    assert "url" not in doc.meta and "published" not in doc.meta  # not invented


def test_title_falls_back_to_first_markdown_heading(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("Intro line before the heading.\n\n## Water and the Qosh Tepa canal ##\n\nBody text here.\n")
    assert build_document(path).title == "Water and the Qosh Tepa canal"


def test_title_falls_back_to_file_name(tmp_path):
    path = tmp_path / "border_crossing-at-hairatan.txt"
    path.write_text("# Not a heading in plain text files\n\nThe crossing reopened in March.\n")
    assert build_document(path).title == "Border crossing at hairatan"
    md = tmp_path / "trade-report.md"
    md.write_text("No heading anywhere in this file.\n")
    assert build_document(md).title == "Trade report"


def test_markdown_without_front_matter_keeps_dashes_line(tmp_path):
    path = tmp_path / "plain.md"
    path.write_text("Text before.\n\n---\n\nText after a horizontal rule.\n")
    doc = build_document(path)
    assert "Text before." in doc.text and "Text after a horizontal rule." in doc.text


def test_html_main_text_title_and_date(tmp_path):
    path = tmp_path / "page.html"
    path.write_text(HTML_PAGE, encoding="utf-8")
    doc = build_document(path)
    assert doc.title == "Water Wars in the Ferghana Valley"
    assert doc.meta["published"] == "2023-05-02"
    assert "Qosh Tepa canal will divert a large share" in doc.text
    assert "cotton growers first." in doc.text
    # Navigation and page footer are not article text; the trailing appeal is cut by the detector.
    for junk in ("Shop our merchandise", "Cookie settings", "Privacy policy", "paywall", "donate today"):
        assert junk not in doc.text
    # One paragraph per block, so paragraph-level cleaning works on web pages.
    assert "\n\n" in doc.text
    check_chunks(doc.text, chunk_text(doc.doc_id, doc.text, 200, 50), 200, 50)


def test_html_date_is_not_guessed_from_a_copyright_line(tmp_path):
    page = HTML_PAGE.replace('<meta property="article:published_time" content="2023-05-02T10:00:00Z">', "")
    page = page.replace("Careers at Example Media Group.", "Copyright 2019 Example Media Group.")
    path = tmp_path / "undated.htm"
    path.write_text(page, encoding="utf-8")
    doc = build_document(path)
    assert "published" not in doc.meta


def test_pdf_pages_are_kept(tmp_path):
    pages = [
        ["Trade across the Amu Darya", "The Hairatan bridge links Termez with Afghanistan."],
        ["Rail freight grew in 2023.", "Most of it is fuel and flour."],
        ["The canal dispute is unresolved.", "Talks continue in Tashkent."],
    ]
    path = tmp_path / "report.pdf"
    path.write_bytes(make_pdf(pages, title="Amu Darya Trade Report"))
    doc = build_document(path)
    assert doc.title == "Amu Darya Trade Report"
    assert len(doc.pages) == 3 and doc.pages[0] == 0
    assert list(doc.pages) == sorted(doc.pages)
    for number, lines in enumerate(pages, start=1):
        start = doc.pages[number - 1]
        end = doc.pages[number] if number < len(doc.pages) else len(doc.text)
        page_text = doc.text[start:end]
        for line in lines:
            assert line in page_text
            assert doc.page_at(doc.text.index(line)) == number
    chunks = chunk_text(doc.doc_id, doc.text, 60, 0)
    check_chunks(doc.text, chunks, 60, 0)
    pages_seen = {doc.page_at(c.start) for c in chunks}
    assert pages_seen == {1, 2, 3}


def test_hard_wrapped_markdown_keeps_sentences_whole(tmp_path):
    path = tmp_path / "wrapped.md"
    path.write_text(
        "# Wrapped notes\n\n"
        "The railway from Termez carries half of\n"
        "the imports of Afghanistan and much of its\n"
        "aid. It was built in 2011.\n\n"
        "- First item\n"
        "- second item stays a list item\n"
        "Kazakhstan accredited envoys in April.\n"
    )
    doc = build_document(path)
    assert [doc.text[s:e] for s, e in split_sentences(doc.text)] == [
        "# Wrapped notes",
        "The railway from Termez carries half of the imports of Afghanistan and much of its aid.",
        "It was built in 2011.",
        "- First item",
        "- second item stays a list item",
        "Kazakhstan accredited envoys in April.",
    ]


def test_pdf_wrapped_lines_do_not_cut_sentences(tmp_path):
    lines = [
        "Wrapped Report",
        "The railway from Termez carries half of",
        "the imports of Afghanistan and much of its",
        "aid. It was built in 2011 by Uzbek rail-",
        "ways and is operated by a subsidiary.",
    ]
    path = tmp_path / "wrapped.pdf"
    path.write_bytes(make_pdf([lines]))
    doc = build_document(path)
    sentences = [doc.text[s:e] for s, e in split_sentences(doc.text)]
    assert sentences == [
        "Wrapped Report",
        "The railway from Termez carries half of the imports of Afghanistan and much of its aid.",
        "It was built in 2011 by Uzbek rail-ways and is operated by a subsidiary.",
    ]


def test_pdf_page_numbers_reach_chunk_metadata(tmp_path, fake_embedder, settings):
    folder = tmp_path / "docs"
    folder.mkdir()
    # 54-character lines: three fit in a 200-character chunk, so the second chunk straddles the break.
    pages = [[f"Page {p} sentence {i} about the railway to Mazar-i-Sharif." for i in range(5)] for p in (1, 2)]
    (folder / "two-pages.pdf").write_bytes(make_pdf(pages))
    ingestor = Ingestor(settings.with_(chunk_size=200, chunk_overlap=0), embedder=fake_embedder, progress=False)
    report = ingestor.run([folder])
    assert report.added == 1 and not report.failed
    rows = list(ingestor.store.iter_chunks())
    doc = ingestor.store.list_documents(with_text=True)[0]
    assert len(doc.pages) == 2
    seen = set()
    for _, text, meta in rows:
        assert meta["page"] <= meta["page_end"]
        first = text.split("\n")[0]
        assert first.startswith(f"Page {meta['page']} ")
        last = text.split("\n")[-1]
        assert last.startswith(f"Page {meta['page_end']} ")
        seen.add((meta["page"], meta["page_end"]))
    assert (1, 1) in seen and (2, 2) in seen
    assert (1, 2) in seen  # a chunk straddling the page break knows both pages


def test_docx(tmp_path):
    import docx

    document = docx.Document()
    document.add_heading("Docx Heading Title", level=1)
    document.add_paragraph("The first paragraph talks about railways between Termez and Mazar-i-Sharif.")
    document.add_paragraph("")
    document.add_paragraph("A second paragraph mentions the Hairatan border crossing.")
    path = tmp_path / "memo.docx"
    document.save(str(path))
    doc = build_document(path)
    assert doc.title == "Docx Heading Title"
    assert doc.text == (
        "Docx Heading Title\n\nThe first paragraph talks about railways between Termez and Mazar-i-Sharif."
        "\n\nA second paragraph mentions the Hairatan border crossing."
    )


def test_docx_core_title_wins(tmp_path):
    import docx

    document = docx.Document()
    document.core_properties.title = "Core Title"
    document.add_paragraph("Body only.")
    path = tmp_path / "x.docx"
    document.save(str(path))
    assert build_document(path).title == "Core Title"


def test_utf8_bom_and_crlf(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes("\ufeffFirst line.\r\n\r\nSecond “quoted” line.\r\n".encode("utf-8"))
    assert build_document(path).text == "First line.\n\nSecond “quoted” line."


# ------------------------------------------------------------------ bad files
def _random_bytes(n: int = 4096, nul: bool = True) -> bytes:
    data = random.Random(42).randbytes(n)
    return data if nul else data.replace(b"\x00", b"\x01")


BAD_FILES = {
    "empty.md": (b"", "empty"),
    "blank.txt": (b"  \n\t\n   \n", "whitespace"),
    "noise.txt": (_random_bytes(), "binary"),
    "noise-without-nul.txt": (_random_bytes(nul=False), "binary"),
    "latin1.md": ("Café au lait, señor. Déjà vu.\n".encode("latin-1"), "UTF-8"),
    "broken.pdf": (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R\nthis is not a pdf\n%%EOF\n", "PDF"),
    "data.xyz": (b"some text in an unknown format\n", ".xyz"),
    "badyaml.md": (b"---\ntitle: [unclosed\ntags: {\n---\nBody text here.\n", "YAML"),
    "list-front-matter.md": (b"---\n- a\n- b\n---\nBody text.\n", "front matter"),
    "only-front-matter.md": (b"---\ntitle: Nothing else\n---\n\n", "no text"),
    "broken.docx": (b"PK\x03\x04 definitely not a zip archive", "DOCX"),
    "only-boilerplate.md": (b"---\nboilerplate: [You can contribute]\n---\nYou can contribute here. Thank you.\n", "boilerplate"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_has_one_line_reason(tmp_path, name):
    data, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadFile) as info:
        build_document(path)
    reason = str(info.value)
    assert expected.lower() in reason.lower()
    assert "\n" not in reason and 0 < len(reason) < 200
    assert "Traceback" not in reason


def test_unsupported_extension_is_rejected_before_reading(tmp_path):
    with pytest.raises(BadFile, match="unsupported"):
        load_file(tmp_path / "missing.xyz")


def test_batch_reports_every_bad_file_and_ingests_the_rest(tmp_path, fake_embedder, settings):
    folder = tmp_path / "batch"
    folder.mkdir()
    for name, (data, _) in BAD_FILES.items():
        (folder / name).write_bytes(data)
    (folder / "good.md").write_text(GOOD_MD, encoding="utf-8")
    (folder / "page.html").write_text(HTML_PAGE, encoding="utf-8")
    (folder / "report.pdf").write_bytes(make_pdf([["Page one text about trade."], ["Page two text about rail."]]))
    (folder / ".hidden.md").write_text("Hidden files are skipped.\n")
    report = Ingestor(settings, embedder=fake_embedder, progress=False).run([folder])
    failed = {Path(f.path).name: f.reason for f in report.failed}
    assert set(failed) == set(BAD_FILES)
    for f in report.failed:
        assert Path(f.path).is_absolute() and Path(f.path).exists()
        assert "\n" not in f.reason
    assert report.added == 3 and report.documents == 3
    assert report.files == len(BAD_FILES) + 3
    assert report.chunks > 0
    assert not any(".hidden" in f.path for f in report.failed)


def test_failed_file_keeps_its_previous_version(tmp_path, fake_embedder, settings):
    folder = tmp_path / "c"
    folder.mkdir()
    path = folder / "a.md"
    path.write_text("The railway to Mazar-i-Sharif carries fuel.\n")
    ingestor = Ingestor(settings, embedder=fake_embedder, progress=False)
    first = ingestor.run([folder])
    assert first.added == 1
    path.write_bytes(b"")  # broken on disk now
    second = Ingestor(settings, embedder=fake_embedder, progress=False).run([folder])
    assert [Path(f.path).name for f in second.failed] == ["a.md"]
    assert second.removed == 0 and second.documents == 1
    records = ingestor.store.list_documents(with_text=True)
    assert [r.status for r in records] == [COMPLETE]
    assert "carries fuel" in records[0].text


def test_pdf_generator_is_really_valid():
    # The hand-written PDF must parse strictly (correct xref), or the PDF tests prove nothing.
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(make_pdf([["Hello (world)."], ["Second page."]], title="T")), strict=True)
    assert [p.extract_text().strip() for p in reader.pages] == ["Hello (world).", "Second page."]
    assert reader.metadata.title == "T"
