"""The brief's pure logic: state aliases, dates, figure conflicts, themes, quote records.

No spaCy and no model here (spaCy runs in a child process; the real-stack tests are in
test_brief.py). Dates are read from text alone, so a tokenless ``Parsed`` is enough for them.
"""
from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from chatbot.brief.conflicts import conflicts, disagree, same_measure
from chatbot.brief.figures import Figure
from chatbot.brief.gazetteer import default_gazetteer
from chatbot.brief.nlp import Parsed, paragraphs
from chatbot.brief.render import brief_markdown, claim_text
from chatbot.brief.themes import Theme, ThemeError, load_themes, match_themes
from chatbot.brief.timeline import document_date, find_dates, sort_key
from chatbot.provenance import QuoteRecord, text_hash
from chatbot.types import Citation, QAError
from chatbot.verify import CHANGED, MISSING, OK, check, load_records


# ------------------------------------------------------------------ gazetteer
def _states(text: str) -> list[tuple[str, str, str]]:
    return [(text[h.start:h.end], h.state, h.form) for h in default_gazetteer().find(text)]


def test_capitals_demonyms_and_plurals_resolve_to_their_state():
    found = _states("Tashkent and the Uzbek city; Astana and the Kazakh ministry; Dushanbe, Tajiks; "
                    "Ashgabat and Turkmen gas; Warsaw and the Poles; the US and Brazilian farmers.")
    assert found == [("Tashkent", "Uzbekistan", "capital"), ("Uzbek", "Uzbekistan", "demonym"),
                     ("Astana", "Kazakhstan", "capital"), ("Kazakh", "Kazakhstan", "demonym"),
                     ("Dushanbe", "Tajikistan", "capital"), ("Tajiks", "Tajikistan", "demonym"),
                     ("Ashgabat", "Turkmenistan", "capital"), ("Turkmen", "Turkmenistan", "demonym"),
                     ("Warsaw", "Poland", "capital"), ("Poles", "Poland", "demonym"),
                     ("US", "United States", "name"), ("Brazilian", "Brazil", "demonym")]


def test_longest_name_wins_and_lookalikes_are_not_states():
    found = _states("New Mexico, the Indian Ocean, South Sudan, Papua New Guinea, French Guiana, Sudan, "
                    "Mexico City, turkey and china.")
    assert found == [("South Sudan", "South Sudan", "name"), ("Papua New Guinea", "Papua New Guinea", "name"),
                     ("Sudan", "Sudan", "name"), ("Mexico City", "Mexico", "capital")]


def test_state_table_is_well_formed():
    g = default_gazetteer()
    assert len(g.states) == len(set(g.states)) > 190
    assert g.state_of("London") == "United Kingdom"  # a shared capital belongs to the first row (UK, not England)
    assert g.state_of("Kabul") == "Afghanistan" and g.state_of("Afghan") == "Afghanistan"


# ---------------------------------------------------------------------- dates
def _dates(text: str, published: str | None = None):
    p = Parsed(text, [], [], [], [], [], [])
    return find_dates(p, 0, len(text), document_date({"published": published} if published else {}))


def test_absolute_dates_and_their_precision():
    refs = _dates("On 12 March 2024 and April 17, 2023; in August 2021, in 2011, the 1990s, "
                  "between 1991 and 2000; 41 million people and 2,700,000 km.")
    assert [(r.label(), r.precision, r.iso()) for r in refs] == [
        ("12 March 2024", "day", "2024-03-12"), ("17 April 2023", "day", "2023-04-17"),
        ("August 2021", "month", "2021-08"), ("2011", "year", "2011"), ("1990s", "decade", "1990"),
        ("1991–2000", "period", "1991")]


def test_incomplete_dates_resolve_against_the_document_date_and_say_so():
    refs = _dates("Talks began in January. On April 17 envoys arrived. The accord takes effect next month. "
                  "Prices rose last year. They met on Monday, three weeks ago. In November floods came.",
                  "2024-03-14")
    got = [(r.as_written, r.iso(), r.resolved) for r in refs]
    assert got == [("in January", "2024-01", True), ("April 17", "2024-04-17", True),
                   ("next month", "2024-04", True), ("last year", "2023", True), ("on Monday", "2024-03-11", True),
                   ("three weeks ago", "2024-02-22", True), ("In November", "2023-11", True)]


def test_undated_document_keeps_yearless_dates_after_its_latest_year_and_drops_relative_ones():
    refs = _dates("The canal was completed in 1962. On 3 May talks resumed. Last year they failed.")
    assert [(r.as_written, r.year_stated, r.resolved) for r in refs] == [("1962", True, False),
                                                                         ("3 May", False, False)]
    latest = (1962, 0, 0)
    keys = [sort_key(r, latest) for r in refs]
    assert keys[0] < keys[1] < sort_key(_dates("in 1963")[0], None)
    assert refs[1].label() == "3 May" and refs[1].iso() is None


def test_document_date_precision():
    assert document_date({"published": "2023-05-02"}) == (date(2023, 5, 2), "day")
    assert document_date({"published": "2023"}) == (date(2023, 1, 1), "year")
    assert document_date({}) is None and document_date({"published": "soon"}) is None


# -------------------------------------------------------------------- figures
def _fig(value, low=None, high=None, doc=0, sentence=(0, 10), terms=("tajik", "ethnic", "afghanistan"),
         head="tajik", kind="share", change=False, years=()):
    return Figure(doc, sentence[0], sentence[0] + 2, str(value), kind, value, value - 0.005 if low is None else low,
                  value + 0.005 if high is None else high, "exact", "ethnic Tajiks", frozenset(terms), head,
                  frozenset(years), change, sentence=sentence)


def test_conflict_needs_the_same_measure_and_disjoint_ranges():
    quarter = _fig(0.25, 0.21, 0.29, terms=("tajik", "ethnic", "afghanistan", "popul"))
    claim = _fig(0.46, sentence=(20, 30))
    assert same_measure(quarter, claim) and disagree(quarter, claim)
    [c] = conflicts([quarter, claim])
    assert [f.value for f in c.versions] == [0.25, 0.46] and not c.across_documents
    near = _fig(0.27, sentence=(40, 50))
    assert conflicts([quarter, near]) == []  # "roughly a quarter" and 27% agree


@pytest.mark.parametrize("other", [
    _fig(0.46, sentence=(20, 30), terms=("pashtun", "communiti", "countri"), head="pashtun"),  # another group
    _fig(0.46, sentence=(20, 30), kind="money:USD"),  # another kind of quantity
    _fig(0.46, sentence=(20, 30), change=True),  # a change, not a level
    _fig(0.46, sentence=(0, 10)),  # two figures of one sentence are two facts
    _fig(0.46, sentence=(20, 30), years=(2020,)),  # another year
])
def test_no_conflict_between_different_measures(other):
    base = _fig(0.25, 0.21, 0.29, years=(2010,) if other.years else ())
    assert conflicts([base, other]) == []


def test_conflicts_across_documents_are_marked():
    a, b = _fig(0.25, doc=0), _fig(0.46, doc=1)
    [c] = conflicts([a, b])
    assert c.across_documents


def test_claims_read_naturally():
    assert claim_text({"verb": "claims", "by": "Emomali Rahmon"}) == "Emomali Rahmon claims"
    assert claim_text({"verb": "according to", "by": "engineers"}) == "according to engineers"
    assert claim_text({"verb": "believed", "by": None}) == "believed"


# --------------------------------------------------------------------- themes
class _AxisEmbedder:
    """Texts map to fixed directions, so the similarities are known exactly."""

    model_id = "fake"

    def __init__(self, vectors):
        self.vectors = vectors

    def embed_documents(self, texts):
        return np.array([self.vectors[t] for t in texts], dtype=np.float32)


def test_themes_are_centred_so_a_shared_topic_does_not_win_everywhere():
    themes = [Theme("security", "S"), Theme("water", "W")]
    s, w = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    vecs = {"S": s, "W": w}
    sentences = []
    for i in range(10):  # every sentence is rather close to "security"; one stands out for water
        text = f"sentence {i}"
        v = np.array([0.6, 0.5 if i == 3 else 0.2, 0.5])
        vecs[text] = v / np.linalg.norm(v)
        sentences.append(text)
    matched = match_themes(sentences, themes, _AxisEmbedder(vecs))
    assert [j for j, _ in matched[3]][0] == 1  # the canal sentence goes to water, though security is closer
    assert all(m and m[0][0] == 0 for i, m in enumerate(matched) if i != 3)


def test_themes_file_is_validated(tmp_path):
    good = tmp_path / "t.yaml"
    good.write_text("energy: Gas, oil and electricity supply.\nwater: Rivers and dams.\n")
    assert [t.name for t in load_themes(good)] == ["energy", "water"]
    as_list = tmp_path / "t.json"
    as_list.write_text(json.dumps([{"name": "energy", "description": "Gas."}]))
    assert load_themes(as_list) == (Theme("energy", "Gas."),)
    for content, word in (("[1, 2", "not valid"), ("energy: ''", "without a name or a description"),
                          ("- just text", "must map"), ("{}", "no themes")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(content)
        with pytest.raises(ThemeError, match=word):
            load_themes(bad)
    with pytest.raises(ThemeError, match="cannot read"):
        load_themes(tmp_path / "missing.yaml")


# -------------------------------------------------------------- quote records
TEXT = "Alpha beta. Gamma delta epsilon. Zeta."


def _record(start=12, end=32):
    c = Citation(1, "doc1", "Title", start, end, TEXT[start:end])
    return QuoteRecord.of(c, TEXT, "a.md")


def test_quote_record_hashes_and_round_trip():
    r = _record()
    assert r.quote == "Gamma delta epsilon." and r.quote_hash == text_hash(r.quote) and r.doc_hash == text_hash(TEXT)
    assert QuoteRecord.from_json(json.loads(json.dumps(r.to_json()))) == r
    with pytest.raises(ValueError):
        QuoteRecord.of(Citation(1, "doc1", "T", 0, 5, "Beta!"), TEXT)


def test_check_statuses():
    r = _record()
    assert check(r, TEXT).status == OK and check(r, TEXT).reason == ""
    moved = "Intro. " + TEXT  # same quote text elsewhere: the offsets no longer hold
    assert check(r, moved).status == CHANGED and "is now" in check(r, moved).reason
    edited_elsewhere = TEXT.replace("Zeta", "Eta")
    assert check(r, edited_elsewhere).status == OK and "changed elsewhere" in check(r, edited_elsewhere).reason
    tampered = QuoteRecord(**{**r.to_json(), "quote": "Gamma delta epsilom."})
    result = check(tampered, TEXT)
    assert result.status == CHANGED and "export was edited" in result.reason
    assert check(r, None).status == MISSING


def test_records_are_found_anywhere_in_an_export(tmp_path):
    r = _record()
    export = tmp_path / "e.json"
    export.write_text(json.dumps({"turns": [{"citations": [r.to_json()]}], "brief": {"quotes": [r.to_json()]}}))
    assert load_records(export) == [r]
    for content, word in (("{not json", "not JSON"), (json.dumps({"quotes": []}), "records no quotes")):
        export.write_text(content)
        with pytest.raises(QAError, match=word):
            load_records(export)


# ------------------------------------------------------------- text handling
def test_paragraph_spans_are_exact():
    text = "Title\n\nFirst para.\nSame para.\n\n\n\nLast."
    spans = paragraphs(text)
    assert [text[a:b] for a, b in spans] == ["Title", "First para.\nSame para.", "Last."]


def test_markdown_cites_every_line():
    q = {"n": 1, "doc_id": "d", "title": "T", "start": 0, "end": 5, "quote": "Alpha", "file": "a.md",
         "doc_hash": "h", "quote_hash": "h"}
    brief = {"generated_at": "now", "documents": [{"doc_id": "d"}], "themes": [{"name": "water"}],
             "actors": [{"name": "Uzbekistan", "kind": "state", "mentions": 2, "aliases": {"Uzbek": 1},
                         "documents": ["d"], "linked": [], "affiliation": None, "citations": [1]}],
             "positions": [{"actor": "Uzbekistan", "cells": {"water": [{"citations": [1], "score": 0.2}]}}],
             "timeline": [{"label": "2011", "as_written": "2011", "resolved": False, "basis": None,
                           "year_stated": True, "citations": [1]}],
             "figures": [{"text": "5", "kind": "count", "measure": "x", "change": False, "claim": None,
                          "citations": [1]}],
             "conflicts": [], "quotes": [q]}
    md = brief_markdown(brief)
    body = md.split("## Actors", 1)[1].split("## Quotes", 1)[0]
    items = [line for line in body.splitlines() if line.startswith(("- ", "  - ", "| Uzbekistan"))]
    assert items and all("[1]" in line for line in items)


def test_parses_are_cached_by_document_and_pruned(tmp_path):
    from chatbot.brief.build import Doc, _parse_all
    from chatbot.brief.cache import ParseCache

    calls = []

    def fake_parse(texts):
        calls.append(list(texts))
        return [Parsed(t, [0], [len(t)], [t], ["NOUN"], ["ROOT"], [0], [], [(0, 1)]) for t in texts], "fake-1"

    cache = ParseCache(tmp_path)
    a, b, c = Doc("a", "A", "alpha"), Doc("b", "B", "beta"), Doc("c", "C", "gamma")
    parsed, model = _parse_all([a, b], fake_parse, cache)
    assert [p.text for p in parsed] == ["alpha", "beta"] and model == "fake-1" and calls == [["alpha", "beta"]]
    parsed, model = _parse_all([a, b], fake_parse, cache)
    assert len(calls) == 1 and parsed[1].lemmas == ["beta"] and model == "fake-1"  # all from the cache
    _parse_all([b, c], fake_parse, cache)
    assert calls[-1] == ["gamma"]  # only the new document is parsed
    assert sorted(p.name for p in cache.folder.glob("*.json.gz")) == ["b.json.gz", "c.json.gz"]  # "a" left


def test_documents_read_while_an_ingest_finishes_are_cached_under_the_state_they_belong_to(tmp_path):
    """The cache key (index state) is read again after the documents: an ingest that finishes in
    between makes the documents be read again, so a cached brief never holds another state's."""
    from types import SimpleNamespace

    from chatbot.brief.build import BriefConfig
    from chatbot.brief.cache import _stable_docs, cache_path
    from ingest.store import COMPLETE

    class ChangingStore:
        def __init__(self, states):
            self.states, self.reads = list(states), 0

        def published_state(self):
            return self.states[min(self.reads, len(self.states) - 1)]

        def lexical_dir(self):
            return tmp_path / "lexical-x"

        def list_documents(self, with_text):
            self.reads += 1
            return [SimpleNamespace(doc_id=f"d{i}", title=f"D{i}", text="text", meta={}, paths=[], pages=[],
                                    status=COMPLETE) for i in range(self.reads)]

    config = BriefConfig()
    store = ChangingStore(["s1", "s2"])  # an ingest finishes during the first read
    before = cache_path(store, config, "m")
    docs, path = _stable_docs(store, before, config, "m")
    assert len(docs) == 2 and path != before and path == cache_path(store, config, "m")
    store = ChangingStore(["s1", "s2", "s3", "s4"])  # keeps changing: built, never cached
    docs, path = _stable_docs(store, cache_path(store, config, "m"), config, "m")
    assert path is None and len(docs) == 3
    store = ChangingStore(["s1"])  # quiet index: one read
    docs, path = _stable_docs(store, cache_path(store, config, "m"), config, "m")
    assert store.reads == 1 and path == cache_path(store, config, "m")
