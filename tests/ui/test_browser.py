"""The workspace in headless Chromium against the real app (real model, real Chroma, temp index).

Screenshots go to tests/artifacts/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import re

import pytest

pytestmark = pytest.mark.slow

SANCTUARY_Q = "Who offered sanctuary to Ahmad Massoud?"
SANCTUARY = "Rahmon has offered sanctuary to Ahmad Massoud"
TAPI_Q = "When will the TAPI gas pipeline through Afghanistan be finished?"

MADE_UP = """---
title: Field notes from the Quorvane salt flats
source: Test Desk
published: 2031-06-02
---
The Quorvane salt flats lie east of the town of Hesketh Marr.

The survey team led by Ilsabet Vorn counted 4,812 flamingos on the Quorvane salt flats on 9 May 2031.

A storage depot for the survey was built from reclaimed ship timber.
"""

XSS_DOC = """---
title: "<script>window.__xss=1</script> Zentrow bulletin <img src=x onerror=\\"window.__xss=1;alert('title')\\">"
source: "<b>Injected source</b>"
---
The Zentrow ferry timetable was posted <img src=x onerror="window.__xss=1;alert('body')"> beside the harbour gate.

The harbourmaster of Zentrow wrote <script>window.__xss=1;alert('script')</script> in the ferry log.
"""


def test_start_view_offers_example_questions_from_the_corpus(ui):
    examples = ui.page.locator("#qa-start .qa-example")
    assert examples.count() >= 1
    assert SANCTUARY_Q in examples.all_inner_texts()  # declared in the article's front matter
    assert "document" in ui.page.locator("#qa-start .qa-stats").inner_text()
    ui.shot("start")
    ui.page.locator("#qa-start .qa-example", has_text=SANCTUARY_Q).click()  # asks it
    ui.page.locator(".qa-transcript .qa-supported").wait_for(timeout=180_000)
    assert SANCTUARY in ui.last_answer().inner_text()
    assert ui.page.locator(".qa-transcript .qa-q").inner_text().endswith(SANCTUARY_Q)


def test_answer_cites_the_exact_sentence_and_opens_it_in_the_source_viewer(ui):
    page = ui.page
    ui.ask(SANCTUARY_Q)
    answer = ui.last_answer()
    assert "qa-supported" in answer.get_attribute("class")
    assert SANCTUARY in answer.inner_text()
    assert re.search(r"\[\d+\]", answer.inner_text())
    assert answer.locator("button.qa-cite").count() >= 1
    item = page.locator("#qa-evidence .qa-ev-item", has_text=SANCTUARY).first
    assert SANCTUARY in item.locator("mark.qa-quote").inner_text()
    assert "exact quote" in item.inner_text() and "support" in item.inner_text()
    key = item.get_attribute("data-cite")

    answer.locator(f'button.qa-cite[data-cite="{key}"]').click()
    hit = page.locator("#qa-source mark.qa-hit")
    hit.wait_for()
    assert SANCTUARY in hit.inner_text()
    # opened scrolled to the quote: the highlight is inside the viewer's visible area and the window
    page.wait_for_function("""() => {
        const m = document.querySelector('#qa-source mark.qa-hit');
        const box = m && m.closest('.qa-src-body');
        if (!box) return false;
        const r = m.getBoundingClientRect(), b = box.getBoundingClientRect();
        return r.bottom > b.top && r.top < b.bottom && r.top >= 0 && r.bottom <= window.innerHeight;
    }""", timeout=30_000)
    assert page.locator("#qa-evidence .qa-ev-item.qa-active").get_attribute("data-cite") == key
    ui.shot("answer-source-viewer")

    # an evidence card opens its own quote
    other = page.locator("#qa-evidence .qa-ev-item").first
    other.click()
    page.wait_for_function("k => document.querySelector('#qa-evidence .qa-ev-item.qa-active')?.dataset.cite === k",
                           arg=other.get_attribute("data-cite"), timeout=60_000)
    quote = page.locator("#qa-evidence .qa-ev-item.qa-active mark.qa-quote").inner_text()
    assert page.locator("#qa-source mark.qa-hit").inner_text().strip() == quote.strip()
    assert not ui.errors


def test_unanswerable_question_is_refused_with_nearest_evidence(ui):
    ui.ask(TAPI_Q)
    answer = ui.last_answer()
    assert "qa-refused" in answer.get_attribute("class")
    assert "The sources don't say" in answer.inner_text()
    assert answer.locator("button.qa-cite").count() >= 1 or "No passage" in ui.page.inner_text("#qa-evidence")
    assert "not an answer" in ui.page.locator("#qa-evidence .qa-ev-head").inner_text()
    ui.shot("refusal")


WHY_Q = "Why does Tajikistan withhold recognition from the Taliban?"  # analyst phrasing, one country (issue 10)
WHY_BEST = "must be given a “worthy role”"  # Rahmon's condition for recognising the Taliban
NEAR_MISS_Q = "How long is the railway between Termez and Mazar-i-Sharif?"  # the article gives no length


def test_analyst_why_question_is_answered_with_its_best_evidence_first(ui):
    ui.ask(WHY_Q)
    answer = ui.last_answer()
    assert "qa-supported" in answer.get_attribute("class"), answer.inner_text()
    first = ui.page.locator("#qa-evidence .qa-ev-item").first
    assert first.locator(".qa-badge").inner_text().strip() == "[1]"
    assert WHY_BEST in first.locator("mark.qa-quote").inner_text()
    ui.shot("analyst-why")


def test_near_miss_question_is_partial_with_what_the_sources_say(ui):
    ui.ask(NEAR_MISS_Q)
    answer = ui.last_answer()
    cls = answer.get_attribute("class")
    assert "qa-partial" in cls and "qa-refused" not in cls and "qa-supported" not in cls
    assert "Partly answered" in answer.inner_text() and "What they say" in answer.inner_text()
    assert "The sources don't say how long." in answer.inner_text()  # what is missing
    assert answer.locator("button.qa-cite").count() >= 1
    assert "Termez" in ui.page.locator("#qa-evidence .qa-ev-item").first.inner_text()
    assert "not the detail asked" in ui.page.locator("#qa-evidence .qa-ev-head").inner_text()
    styles = ui.page.evaluate("""() => ['.qa-partial', '.qa-supported', '.qa-refused'].map(s => {
        const e = document.querySelector('.qa-transcript ' + s);
        return e ? getComputedStyle(e).borderLeftColor : null; })""")
    assert styles[0] and styles[0] not in styles[1:]  # partial looks unlike answered and refused
    ui.shot("partial")


def test_more_evidence_asks_again_and_quotes_more(ui):
    ui.ask(WHY_Q)
    first = ui.last_answer().locator("button.qa-cite").count()
    ui.page.click("#qa-more")
    ui.page.wait_for_function("() => document.querySelectorAll('.qa-transcript .qa-turn .qa-a:not(.qa-pending)')"
                              ".length > 1", timeout=180_000)
    assert ui.page.locator(".qa-transcript .qa-turn").count() == 2
    assert WHY_Q in ui.page.locator(".qa-transcript .qa-turn").last.inner_text()
    assert ui.last_answer().locator("button.qa-cite").count() > first
    ui.shot("more-evidence")


def test_follow_up_uses_the_conversation(ui):
    ui.ask(SANCTUARY_Q)
    ui.ask("What does the 2006 ruling designate?")
    turns = ui.page.locator(".qa-transcript .qa-turn")
    assert turns.count() == 2  # both turns stay in this session's conversation
    assert "terrorist" in ui.last_answer().inner_text()


def test_export_downloads_the_quotes(ui):
    page = ui.page
    ui.ask(SANCTUARY_Q)
    with page.expect_download() as info:
        page.click("#qa-export-answer-md")
    text = open(info.value.path(), encoding="utf-8").read()
    assert SANCTUARY in text and "characters " in text and "Embedding model" in text
    with page.expect_download() as info:
        page.click("#qa-export-conversation-json")
    data = json.loads(open(info.value.path(), encoding="utf-8").read())
    quotes = [c["quote"] for t in data["turns"] for c in t["citations"]]
    assert any(SANCTUARY in q for q in quotes)
    assert data["versions"]["embedding_model"] and data["versions"]["index"]["chunk_size"]
    assert all(c["quote_hash"].startswith("sha256:") and c["doc_hash"] for t in data["turns"] for c in t["citations"])
    assert data["provenance"]["index"]["state"]  # verifiable: tests/workspace/test_export_verify.py


def test_an_answer_whose_sources_differ_says_so_with_both_citations(ui):
    page = ui.page
    ui.ask("What proportion of Afghans are ethnic Tajiks?")
    conflict = ui.last_answer().locator(".qa-conflict")
    conflict.wait_for()
    text = conflict.inner_text()
    assert text.startswith("The sources differ on ") and "“roughly a quarter”" in text
    assert "“46 per cent” (Emomali Rahmon claims)" in text
    buttons = conflict.locator("button.qa-cite")
    assert buttons.count() == 2
    ui.shot("answer-conflict")
    versions = text.split(" vs ")  # one citation button per version, in order
    buttons.nth(next(i for i, v in enumerate(versions) if "46 per cent" in v)).click()
    hit = page.locator("#qa-source mark.qa-hit")
    hit.wait_for()
    page.wait_for_function("() => document.querySelector('#qa-source mark.qa-hit')?.innerText.includes('46 per cent')",
                           timeout=60_000)
    assert "who he claims make up 46 per cent" in hit.inner_text()
    assert not ui.errors


def _upload(ui, tmp_path, name: str, content: str) -> str:
    page = ui.page
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    page.get_by_role("tab", name="Library").click()
    page.locator("#qa-upload input[type=file]").set_input_files(str(path))
    result = page.locator("#qa-upload-result .qa-upload-result")  # the outcome (not "queued"/"indexing")
    result.first.wait_for(timeout=300_000)
    return result.first.inner_text()


def test_upload_then_ask_about_it(ui, tmp_path):
    page = ui.page
    outcome = _upload(ui, tmp_path, "quorvane notes.md", MADE_UP)
    assert "1 of 1 file(s) ingested" in outcome and "✓ quorvane notes.md" in outcome
    assert "Field notes from the Quorvane salt flats" in page.inner_text("#qa-library")
    ui.shot("library-upload")
    page.get_by_role("tab", name="Ask").click()
    ui.ask("How many flamingos did the survey team count on the Quorvane salt flats?")
    answer = ui.last_answer()
    assert "qa-supported" in answer.get_attribute("class")
    assert "4,812 flamingos" in answer.inner_text()
    assert "Field notes from the Quorvane salt flats" in page.inner_text("#qa-evidence")

    # and delete it again (with its passages) from the library
    page.get_by_role("tab", name="Library").click()
    page.click("#qa-delete-choice input")
    page.get_by_role("option", name="Field notes from the Quorvane salt flats").click()
    page.click("#qa-delete")
    page.click("#qa-delete-confirm")
    page.locator("#qa-delete-result", has_text="Deleted “Field notes from the Quorvane salt flats”").wait_for()
    assert "Field notes from the Quorvane salt flats" not in page.inner_text("#qa-library")
    page.get_by_role("tab", name="Ask").click()
    ui.ask("How many flamingos did the survey team count on the Quorvane salt flats?")
    assert "4,812 flamingos" not in ui.last_answer().inner_text()


def test_upload_reports_per_file_errors(ui, tmp_path):
    outcome = _upload(ui, tmp_path, "notes.exe", "not an article")
    assert "✗ notes.exe" in outcome and "unsupported file type '.exe'" in outcome


def test_document_markup_is_shown_as_text_never_run(ui, tmp_path):
    page = ui.page
    outcome = _upload(ui, tmp_path, "zentrow<img src=x onerror=alert(1)>.md", XSS_DOC)
    assert "1 of 1 file(s) ingested" in outcome, outcome
    library = page.inner_text("#qa-library")
    assert "<script>window.__xss=1</script> Zentrow bulletin" in library  # the title, as text
    assert "<b>Injected source</b>" in library
    page.get_by_role("tab", name="Ask").click()
    ui.ask("What did the harbourmaster of Zentrow write in the ferry log?")
    answer = ui.last_answer()
    assert "<script>window.__xss=1;alert('script')</script>" in answer.inner_text()
    page.locator("#qa-evidence .qa-ev-item").first.click()
    page.locator("#qa-source mark.qa-hit").wait_for()
    assert "Zentrow bulletin" in page.inner_text("#qa-source")
    ui.ask("Where was the Zentrow ferry timetable posted?")
    assert 'onerror="window.__xss=1' in page.inner_text(".qa-transcript")
    page.wait_for_timeout(1500)  # give any injected handler a chance to fire
    ui.shot("xss-escaped")
    assert ui.dialogs == []
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator('img[src="x"]').count() == 0
    assert page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length") == 0
    assert page.locator("b", has_text="Injected source").count() == 0

    # the Markdown export keeps the markup as text too; the JSON export keeps it exact
    with page.expect_download() as info:
        page.click("#qa-export-conversation-md")
    md = open(info.value.path(), encoding="utf-8").read()
    assert "&lt;script&gt;window.__xss=1;alert('script')&lt;/script&gt;" in md
    assert "<script" not in md.lower() and "<img" not in md.lower()
    with page.expect_download() as info:
        page.click("#qa-export-conversation-json")
    quotes = [c["quote"] for t in json.load(open(info.value.path(), encoding="utf-8"))["turns"] for c in t["citations"]]
    assert any("<script>window.__xss=1;alert('script')</script>" in q for q in quotes)


def test_control_characters_leave_questions_the_same_way_everywhere(ui, app_root, tmp_path):
    """Typed into the page, exported, and asked through the CLI: one cleaned question."""
    import subprocess
    import sys

    from tests.ui.conftest import REPO_ROOT

    raw = "Who offered\u202e sanctuary\x1b[31m to Ahmad\x00 Massoud?\x1b[0m"
    ui.ask(raw)
    assert ui.page.locator(".qa-transcript .qa-q").last.inner_text().endswith(SANCTUARY_Q)
    with ui.page.expect_download() as info:
        ui.page.click("#qa-export-answer-json")
    exported = json.load(open(info.value.path(), encoding="utf-8"))["turns"][0]
    assert exported["question"] == SANCTUARY_Q and SANCTUARY in exported["answer"]
    questions = tmp_path / "q.txt"
    questions.write_text(raw + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    out = subprocess.run([sys.executable, "-m", "chatbot", "ask", "--json", "--index", str(app_root / "index"),
                          "--file", str(questions)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["question"] == SANCTUARY_Q
    plain = subprocess.run([sys.executable, "-m", "chatbot", "ask", "--index", str(app_root / "index"), raw.replace("\x00", "")],
                           cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert plain.returncode == 0 and f"Q: {SANCTUARY_Q}" in plain.stdout and "\x1b" not in plain.stdout


def test_conversations_are_per_browser_session(ui, browser, app_url):
    from tests.ui.conftest import Page

    ui.ask(SANCTUARY_Q)
    other = Page(browser, app_url)
    try:
        assert other.page.locator(".qa-transcript .qa-turn").count() == 0
        assert other.page.locator("#qa-start .qa-example").count() >= 1
        other.ask(TAPI_Q)
        assert other.page.locator(".qa-transcript .qa-turn").count() == 1
        assert ui.page.locator(".qa-transcript .qa-turn").count() == 1
        assert SANCTUARY in ui.last_answer().inner_text()
    finally:
        other.context.close()


STATES = ("Kazakhstan", "Uzbekistan", "Tajikistan", "Turkmenistan")
TIMELINE = (("2006", "ruling"), ("2011", "railroad"), ("August 2021", "seized"), ("April 2022", "opium"),
            ("17 April", "accredit"))


def test_brief_view_matrix_timeline_and_a_cell_citation_opens_its_exact_quote(ui, app_root):
    """Start view -> Brief: the state × theme matrix and the timeline render; a matrix cell's [n]
    opens the quote highlighted in the source viewer, and the downloaded brief verifies."""
    import subprocess
    import sys

    from tests.ui.conftest import REPO_ROOT

    page = ui.page
    page.click("#qa-start .qa-open-brief")  # the start view's link switches to the Brief tab
    page.locator("#qa-brief .qa-brief-matrix").wait_for(timeout=300_000)  # built in the background
    rows = page.locator("#qa-brief .qa-brief-matrix tbody tr")
    actors = [rows.nth(i).get_attribute("data-actor") for i in range(rows.count())]
    assert set(STATES) <= set(actors), actors
    events = page.locator("#qa-brief .qa-brief-event")
    shown = [(events.nth(i).locator(".qa-brief-date").inner_text().strip(), events.nth(i).inner_text())
             for i in range(events.count())]
    order = [next(i for i, (label, text) in enumerate(shown) if label == date and word in text)
             for date, word in TIMELINE]
    assert order == sorted(order), shown
    lines = page.locator("#qa-brief .qa-brief-line")
    assert lines.count() == page.locator("#qa-brief .qa-brief-line:has(button.qa-cite)").count() > 20

    cell = page.locator('#qa-brief tr[data-actor="Tajikistan"] td.qa-brief-line').first
    button = cell.locator("button.qa-cite").first
    n = int(button.inner_text().strip("[]"))
    button.click()
    hit = page.locator("#qa-brief-source mark.qa-hit")
    hit.wait_for()
    card = page.locator("#qa-brief-quotes .qa-ev-item.qa-active")
    assert card.locator(".qa-badge").inner_text() == f"[{n}]" and "exact quote" in card.inner_text()
    assert card.locator("mark.qa-quote").inner_text() == hit.inner_text()
    assert page.locator("#qa-brief-quotes .qa-ev-item").count() == cell.locator("button.qa-cite").count()
    ui.shot("brief")

    with page.expect_download() as info:
        page.click("#qa-brief #qa-export-brief-json")
    brief = json.loads(open(info.value.path(), encoding="utf-8").read())
    quote = next(q for q in brief["quotes"] if q["n"] == n)
    assert quote["quote"] == hit.inner_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    out = subprocess.run([sys.executable, "-m", "chatbot", "verify", info.value.path(), "--index",
                          str(app_root / "index")], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and f"{len(brief['quotes'])} quotes: {len(brief['quotes'])} ok" in out.stdout, out.stdout
    assert not ui.errors
