"""`python -m chatbot brief` on real indexes (real model, real Chroma, spaCy in its child process).

Two collections: the corpus article, and the fixture corpus (tests/data/brief_corpus/: four short
invented documents with dates, shared actors and planted conflicts). The CLI runs as a
subprocess, as scripts use it.
"""
from __future__ import annotations

import pytest

from chatbot.provenance import text_hash
from tests.chatbot.brief_helpers import brief_json, fixture_copy_index, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus_brief(seed_index):
    return brief_json(seed_index.index_dir)


@pytest.fixture(scope="module")
def fixture_index(tmp_path_factory, real_embedder):
    """A copy of the fixture corpus, ingested into its own index."""
    return fixture_copy_index(tmp_path_factory.mktemp("brief-fixtures"), real_embedder)[1]


@pytest.fixture(scope="module")
def fixture_brief(fixture_index):
    return brief_json(fixture_index.index_dir)


def stored_texts(settings) -> dict[str, str]:
    from ingest.store import IndexStore, embedder_for

    e = embedder_for(settings)
    store = IndexStore(settings, e.model_id, e.dimension).open(create=False)
    return {r.doc_id: r.text for r in store.list_documents(with_text=True)}


def cited_items(brief: dict):
    """Every line of the brief: each must carry citations."""
    for a in brief["actors"]:
        yield a
        yield from a["linked"]
        if a["affiliation"]:
            yield a["affiliation"]
    for row in brief["positions"]:
        for cell in row["cells"].values():
            yield from cell
    yield from brief["timeline"]
    yield from brief["figures"]
    for c in brief["conflicts"]:
        yield from c["versions"]


def assert_every_line_cited_and_exact(brief: dict, settings) -> None:
    texts = stored_texts(settings)
    numbers = {q["n"] for q in brief["quotes"]}
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
    for item in cited_items(brief):
        assert item["citations"] and set(item["citations"]) <= numbers, item
    for q in brief["quotes"]:
        text = texts[q["doc_id"]]
        assert text[q["start"]:q["end"]] == q["quote"] and q["quote"] == q["quote"].strip() and q["quote"]
        assert q["quote_hash"] == text_hash(q["quote"]) and q["doc_hash"] == text_hash(text)
    for d in brief["documents"]:
        assert d["doc_hash"] == text_hash(texts[d["doc_id"]])
    prov = brief["provenance"]
    assert prov["index"]["state"] and prov["models"]["embedding"] and prov["models"]["ner"].startswith("en_core_web_sm")


def quote(brief: dict, item: dict) -> str:
    by_n = {q["n"]: q["quote"] for q in brief["quotes"]}
    return " ".join(by_n[n] for n in item["citations"])


# ------------------------------------------------------------------- the corpus
def test_corpus_actors_with_aliases_and_leaders(corpus_brief):
    actors = {a["name"]: a for a in corpus_brief["actors"]}
    for state in ("Kazakhstan", "Uzbekistan", "Tajikistan", "Turkmenistan"):
        assert actors[state]["kind"] == "state"
    assert actors["Taliban"]["kind"] == "organisation"
    assert {"Tashkent", "Uzbek"} <= set(actors["Uzbekistan"]["aliases"])
    assert {"Astana", "Kazakh"} <= set(actors["Kazakhstan"]["aliases"])
    assert "Dushanbe" in actors["Tajikistan"]["aliases"]
    leaders = {m["name"]: m for m in actors["Tajikistan"]["linked"]}
    assert "president" in leaders["Emomali Rahmon"]["role"].lower()
    assert actors["Emomali Rahmon"]["affiliation"]["name"] == "Tajikistan"
    assert actors["Emomali Rahmon"]["mentions"] >= 2  # "Rahmon" alone is the same person
    assert "Shavkat Mirziyoyev" in {m["name"] for m in actors["Uzbekistan"]["linked"]}


def test_corpus_states_have_motives_under_two_themes(corpus_brief):
    rows = {r["actor"]: r["cells"] for r in corpus_brief["positions"]}
    for state in ("Kazakhstan", "Uzbekistan", "Tajikistan", "Turkmenistan"):
        assert len(rows[state]) >= 2, (state, list(rows[state]))
    water = " ".join(quote(corpus_brief, q) for q in rows["Uzbekistan"].get("water", []))
    assert "Amu Darya" in water or "Qosh Tepa" in water


def test_corpus_timeline_in_order(corpus_brief):
    events = [(e["label"], quote(corpus_brief, e)) for e in corpus_brief["timeline"]]

    def at(label: str, word: str) -> int:
        return next(i for i, (lab, q) in enumerate(events) if lab == label and word in q)

    order = [at("2006", "ruling"), at("2011", "railroad"), at("August 2021", "seized"),
             at("April 2022", "opium"), at("17 April", "accredit")]
    assert order == sorted(order), events
    accreditation = corpus_brief["timeline"][order[-1]]
    assert not accreditation["year_stated"] and "after 2022" in accreditation["placed"]


def test_corpus_conflict_quarter_vs_rahmons_claim(corpus_brief):
    [c] = [c for c in corpus_brief["conflicts"] if {"roughly a quarter", "46 per cent"} <= {v["text"] for v in c["versions"]}]
    versions = {v["text"]: v for v in c["versions"]}
    assert versions["roughly a quarter"]["claim"] is None
    assert versions["46 per cent"]["claim"] == {"verb": "claims", "by": "Emomali Rahmon"}
    assert c["scope"] == "within a document"


def test_corpus_every_line_cited_and_exact(corpus_brief, seed_index):
    assert_every_line_cited_and_exact(corpus_brief, seed_index)


# ------------------------------------------------------------- fixture corpus
def test_fixtures_every_planted_conflict_and_nothing_else(fixture_brief):
    found = {frozenset(v["text"] for v in c["versions"]): c for c in fixture_brief["conflicts"]}
    reservoir = found[frozenset({"420 million cubic metres", "510 million cubic metres"})]
    farmers = found[frozenset({"About 300,000", "450,000"})]
    canal = found[frozenset({"1958", "1962"})]
    assert len(found) == 3
    assert reservoir["scope"] == canal["scope"] == "across documents" and farmers["scope"] == "within a document"
    claims = {v["text"]: v["claim"] for v in reservoir["versions"]}
    assert claims["510 million cubic metres"] == {"verb": "according to", "by": "engineers in Astana"}
    assert "reservoir" in reservoir["measure"] and "farmers" in farmers["measure"]


def test_fixtures_every_planted_date(fixture_brief):
    got = {(e["as_written"], e["date"], e["resolved"]) for e in fixture_brief["timeline"]}
    planted = {("12 March 2024", "2024-03-12", False), ("in January", "2024-01", True), ("last year", "2023", True),
               ("next month", "2024-04", True), ("on Monday", "2024-04-01", True),
               ("two weeks ago", "2023-11-06", True), ("15 November 2023", "2023-11-15", False),
               ("September 2022", "2022-09", False), ("1958", "1958", False), ("1962", "1962", False),
               ("2015", "2015", False), ("3 May", None, False)}
    assert planted <= got, planted - got
    resolved = [e for e in fixture_brief["timeline"] if e["resolved"]]
    assert all(e["basis"].startswith("the document's date") for e in resolved)
    dated = [e["date"] for e in fixture_brief["timeline"] if e["date"]]
    assert dated == sorted(dated, key=lambda d: (d[:4], d))  # chronological


def test_fixtures_actors_merge_aliases_across_documents(fixture_brief):
    actors = {a["name"]: a for a in fixture_brief["actors"]}
    assert {"Bishkek", "Kyrgyz"} <= set(actors["Kyrgyzstan"]["aliases"]) and len(actors["Kyrgyzstan"]["documents"]) == 4
    assert {m["name"] for m in actors["Kyrgyzstan"]["linked"]} >= {"Almaz Toktogulov"}
    assert actors["Aigerim Bekova"]["affiliation"]["name"] == "Kazakhstan"
    assert actors["Chu Basin Commission"]["aliases"].get("CBC") == 2
    rows = {r["actor"]: r["cells"] for r in fixture_brief["positions"]}
    assert len(rows["Kazakhstan"]) >= 3 and "water" in rows["Kyrgyzstan"]


def test_fixtures_every_line_cited_and_exact(fixture_brief, fixture_index):
    assert_every_line_cited_and_exact(fixture_brief, fixture_index)


def test_markdown_output_and_cache(fixture_index, fixture_brief, tmp_path):
    out = tmp_path / "brief.md"
    r = run_cli("brief", "--index", str(fixture_index.index_dir), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "parsing" not in r.stderr, "an unchanged index must reuse the cached brief"
    md = out.read_text(encoding="utf-8")
    assert md.strip() == r.stdout.strip()
    body = md.split("## Actors", 1)[1].split("## Quotes", 1)[0]
    lines = [x for x in body.splitlines() if x.startswith(("- ", "  - "))]
    assert lines and all("[" in x and "]" in x for x in lines)
    assert "420 million cubic metres" in body and "according to engineers in Astana" in body


def test_themes_setting_and_bad_themes_file(fixture_index, tmp_path):
    themes = tmp_path / "themes.yaml"
    themes.write_text("energy: Electricity, hydropower and fuel supply.\nfarming: Farmers, crops and irrigation.\n")
    brief = brief_json(fixture_index.index_dir, "--themes", str(themes))
    assert [t["name"] for t in brief["themes"]] == ["energy", "farming"]
    assert all(set(r["cells"]) <= {"energy", "farming"} for r in brief["positions"])
    assert any("energy" in r["cells"] for r in brief["positions"])
    themes.write_text("- not a mapping\n")
    r = run_cli("brief", "--index", str(fixture_index.index_dir), "--themes", str(themes))
    assert r.returncode == 2 and "themes file" in r.stderr and "Traceback" not in r.stderr


def test_brief_without_an_index_says_to_run_ingest(tmp_path):
    r = run_cli("brief", "--index", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and "python -m ingest" in r.stderr and "Traceback" not in r.stderr


def test_conflicts_among_cited_sentences_reuse_the_briefs_parses(fixture_index, fixture_brief):
    """The answers' detector (chatbot/cited_conflicts.py) runs on any list of citations, from the
    brief's parse cache: no spaCy process once the brief is built."""
    from chatbot.brief.cache import ParseCache, cache_dir
    from chatbot.cited_conflicts import ConflictFinder
    from chatbot.provenance import QuoteRecord
    from ingest.store import IndexStore, embedder_for

    e = embedder_for(fixture_index)
    store = IndexStore(fixture_index, e.model_id, e.dimension).open(create=False)
    texts = {r.doc_id: r.text for r in store.list_documents(with_text=True)}
    cited = [QuoteRecord.from_json(q).citation() for q in fixture_brief["quotes"]
             if q["quote"].startswith(("Officials in Bishkek said", "The new reservoir will hold", "Kazakhstan has"))]
    assert len(cited) == 3

    def no_spacy():
        raise AssertionError("the brief's cached parses must be used")

    finder = ConflictFinder(texts.get, lambda: ParseCache(cache_dir(store) / "parsed"), server=no_spacy)
    [c] = finder.find(cited)
    by_n = {c.n: c.quote for c in cited}
    assert {v.text: by_n[v.n].split()[0] for v in c.versions} == {"420 million cubic metres": "Officials",
                                                                  "510 million cubic metres": "The"}
    assert c.across_documents and c.text().startswith("The sources differ on ")
    assert ("according to", "engineers in Astana") in {(v.claim_verb, v.claimant) for v in c.versions}
    assert finder.find(cited[:1]) == []
    # without the brief's cache the paragraphs are parsed by the finder's spaCy process: same result
    fresh = ConflictFinder(texts.get)
    try:
        assert fresh.find(cited) == [c]
    finally:
        fresh.close()


def test_nlp_worker_crash_is_one_clear_error():
    """spaCy runs in a child process: its death is an NLPError for the caller, not a crash."""
    from chatbot.brief.nlp import NLPError, Worker

    worker = Worker()
    worker._proc.kill()  # as a segfault or the OOM killer would
    worker._proc.wait()
    with pytest.raises(NLPError, match=r"failed \(exit -9\)"):
        worker.parse(["Tashkent is the capital of Uzbekistan."])
    parsed, model = Worker().parse(["Tashkent is the capital of Uzbekistan."])
    assert model.startswith("en_core_web_sm") and parsed[0].word(0) == "Tashkent"
    assert ("GPE" in {label for _, _, label in parsed[0].ents})
