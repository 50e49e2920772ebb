"""The workspace's HTML: everything from documents and users escaped, answers rendered from their
structure (claims, citations), never by parsing their text."""
from __future__ import annotations



from chatbot.types import Claim
from workspace.session import Session
from workspace.sources import quote_context
from workspace.ui import render
from tests.workspace.conftest import XSS_TITLE, assert_inert, hostile_turn


def test_rendering_escapes_every_document_string(ws):
    session = Session(turns=[hostile_turn()])
    transcript = render.render_transcript(session)
    assert_inert(transcript)
    assert 'data-cite="0:c:1"' in transcript  # the marker itself is still a real button
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in transcript

    ctx = quote_context("0123456789" + session.turns[0].answer.citations[0].quote, 10,
                        10 + len(session.turns[0].answer.citations[0].quote),
                        session.turns[0].answer.citations[0].quote)
    assert_inert(render.render_evidence(session, lambda c: ctx))

    from workspace.library import FileOutcome, UploadResult
    from workspace.overview import DocSummary, Overview
    from workspace.sources import SourceView, Span

    doc = DocSummary("d1", XSS_TITLE, "<i>src</i>", "2031", "", "javascript:alert(1)", 2, 0, "<img src=x>.md", True)
    assert_inert(render.render_library([doc]))
    assert_inert(render.render_start(Overview([doc], 2, [("<i>src</i>", 1)], None, None, 1, [XSS_TITLE])))
    assert_inert(render.render_upload_result(UploadResult([FileOutcome("<img src=x>.md", False, "<script>")])))
    c = session.turns[0].answer.citations[0]
    text = "<script>x</script>" + c.quote
    view = SourceView(doc, XSS_TITLE, text, 0, len(text), [Span(18, 18 + len(c.quote), "[1]", True)], c)
    source = render.render_source(view)
    assert_inert(source)
    assert "javascript:" not in source  # only http(s) links are made clickable
    assert_inert(render.render_filters_line(["<script>"], ["<img src=x>"], "", ""))


def test_only_real_citations_become_buttons_and_the_text_is_not_parsed():
    turn = hostile_turn()
    turn.answer.claims = [Claim(turn.answer.claims[0].text + " [9]", (1, 7), 0.7, True)]
    html = render.answer_html(0, turn)
    assert html.count('class="qa-cite"') == 1 and 'data-cite="0:c:1"' in html
    assert "[7]" not in html and "[9]" in html  # a marker-like string in a sentence stays text


def test_unsupported_llm_sentences_are_flagged_and_refusals_kept_as_written():
    turn = hostile_turn()
    turn.answer.claims = [Claim("A claim the sources do not back.", (), 0.3, False), *turn.answer.claims,
                          Claim("The sources don't say when.", (), 0.0, False, refusal=True)]
    html = render.answer_html(0, turn)
    assert html.count('<span class="qa-unsupported"') == 1
    assert html.index("A claim the sources do not back. <span") < html.index('data-cite="0:c:1"')
    assert html.endswith("The sources don&#x27;t say when.")


def test_a_partial_answer_renders_its_lead_and_cited_quotes():
    turn = hostile_turn()
    turn.answer.lead = "The sources don't say exactly that. What they say:"
    html = render.answer_html(0, turn)
    assert html.startswith("The sources don&#x27;t say exactly that. What they say: He wrote &lt;img")
    assert 'data-cite="0:c:1"' in html


def test_llm_sentence_checks_are_listed_and_escaped():
    turn = hostile_turn()
    turn.answer.mode = "llm:llamacpp"
    turn.answer.claims = [Claim("<img src=x> Rahmon did it.", (1,), 0.81, True), Claim("Nobody else.", (), 0.2, False)]
    html = render.render_turn(0, turn)
    assert "Sentence checks (1 of 2 supported)" in html and "support 0.81" in html and "no citation" in html
    assert_inert(html)


def test_conflicts_show_beside_the_answer_with_citation_buttons_and_escaped():
    from chatbot.types import FigureVersion, SourceConflict

    turn = hostile_turn()
    c1 = turn.answer.citations[0]
    turn.answer.citations.append(type(c1)(2, "d2", "Other", 0, 10, "0123456789"))
    turn.answer.conflicts = [SourceConflict("<img src=x> share", "share", True, (
        FigureVersion(1, "roughly a quarter", 0.25, "approximate"),
        FigureVersion(2, "46 <b>per</b> cent", 0.46, "exact", "claims", "<script>"),
    ))]
    html = render.render_turn(0, turn)
    assert_inert(html)
    block = html[html.index('class="qa-conflict"'):]
    assert block.startswith('class="qa-conflict">The sources differ on &lt;img src=x&gt; share: “roughly a quarter” ')
    assert 'data-cite="0:c:1"' in block and 'data-cite="0:c:2"' in block
    assert "(&lt;script&gt; claims)" in block
    turn.answer.conflicts = []
    assert "qa-conflict" not in render.render_turn(0, turn)
