"""Conflicts inside answers (chatbot/cited_conflicts.py): "The sources differ: … [1] … [2]".

Unit tests check that answers without two quantities of one kind never start spaCy; the rest run
the real spaCy process, the real model and real indexes: the corpus article (Tajiks "roughly a
quarter" of Afghanistan vs Rahmon's "46 per cent") and the fixture corpus (420 vs 510 million cubic
metres), through the service, the CLI and ``ask --json``.
"""
from __future__ import annotations

import json

import pytest

from chatbot.cited_conflicts import ConflictFinder, worth_parsing
from chatbot.cli import render_text
from chatbot.types import Citation
from tests.chatbot.brief_helpers import fixture_copy_index, run_cli

RESERVOIR_A = ("Kyrgyz officials met in Bishkek on Monday. Officials in Bishkek said the new reservoir will hold "
               "420 million cubic metres of water.")
RESERVOIR_SAME = "Engineers said that the new reservoir will hold about 420 million cubic metres of water."
RESERVOIR_OTHER = "Engineers said that the new reservoir will hold 510 million cubic metres of water."
UNRELATED = "About 300,000 farmers depend on the river for irrigation."


def cite(n: int, doc_id: str, text: str, sentence: str) -> Citation:
    start = text.index(sentence)
    return Citation(n, doc_id, doc_id, start, start + len(sentence), sentence)


def no_spacy():
    raise AssertionError("spaCy must not start for these citations")


def test_answers_without_two_quantities_of_one_kind_never_start_spacy():
    texts = {"a": RESERVOIR_A + " The reservoir is popular. Some 12 per cent of it is silt. It opened in 1958.",
             "b": UNRELATED + " Officials count 450,000 sheep. Officials say 450,000 farmers depend on the river. "
                              "The river rose in 2015."}
    finder = ConflictFinder(texts.get, server=no_spacy)
    one = cite(1, "a", texts["a"], "The reservoir is popular.")
    volume = cite(2, "a", texts["a"], RESERVOIR_A.split(". ")[1])  # "420 million cubic metres": a unit, not a count
    share = cite(3, "a", texts["a"], "Some 12 per cent of it is silt.")
    farmers = cite(4, "b", texts["b"], UNRELATED)
    sheep = cite(5, "b", texts["b"], "Officials count 450,000 sheep.")  # a count, but no two words shared
    years = [cite(6, "a", texts["a"], "It opened in 1958."), cite(7, "b", texts["b"], "The river rose in 2015.")]
    more_farmers = cite(8, "b", texts["b"], "Officials say 450,000 farmers depend on the river.")
    for cited in ([], [one], [one, volume, share], [volume, share, farmers], [farmers], [farmers, sheep],
                  [farmers, *years]):  # a year is no count
        assert worth_parsing(cited) == [] and finder.find(cited) == []
    # two quotes with a quantity of one kind (counts) sharing two words ("farmers", "depend") must be parsed
    assert worth_parsing([one, farmers, volume, sheep, more_farmers]) == [farmers, more_farmers]
    with pytest.raises(AssertionError, match="must not start"):
        finder.find([farmers, more_farmers])


def test_warm_up_starts_one_spacy_process_unless_the_briefs_parses_are_cached(tmp_path):
    from chatbot.brief.cache import ParseCache

    started = []

    class FakeServer:
        alive = True

        def __init__(self):
            started.append(self)

        def close(self):
            self.alive = False

    cache = ParseCache(tmp_path / "parsed")
    finder = ConflictFinder({}.get, lambda: cache, server=FakeServer)
    finder.warm_up()
    finder.warm_up()
    assert len(started) == 1  # one process, kept
    finder.close()
    assert not started[0].alive
    cache.folder.mkdir(parents=True)
    (cache.folder / "some-doc.json.gz").write_bytes(b"")
    ConflictFinder({}.get, lambda: cache, server=FakeServer).warm_up()
    assert len(started) == 1  # the brief's parses will do


@pytest.mark.slow
class TestRealParse:
    """The finder's own spaCy process (no brief cache), on citations of small texts."""

    @pytest.fixture(scope="class")
    def finder(self):
        texts = {"a": RESERVOIR_A, "same": RESERVOIR_SAME, "other": RESERVOIR_OTHER, "farm": UNRELATED}
        finder = ConflictFinder(texts.get)
        finder.texts = texts
        yield finder
        finder.close()

    def cites(self, finder, *ids):
        sentence = {"a": RESERVOIR_A.split(". ")[1]}
        return [cite(n, d, finder.texts[d], sentence.get(d, finder.texts[d])) for n, d in enumerate(ids, 1)]

    def test_consistent_figures_are_no_conflict(self, finder):
        assert finder.find(self.cites(finder, "a", "same")) == []
        assert finder.find(self.cites(finder, "a", "farm")) == []

    def test_different_figures_are_a_conflict_naming_both_citations(self, finder):
        [c] = finder.find(self.cites(finder, "a", "farm", "other"))
        assert [(v.n, v.text) for v in c.versions] == [(1, "420 million cubic metres"), (3, "510 million cubic metres")]
        assert c.kind == "volume" and c.across_documents and "reservoir" in c.measure
        assert c.text() == (f"The sources differ on {c.measure}: “420 million cubic metres” (Officials in Bishkek "
                            "said) [1] vs “510 million cubic metres” (Engineers said) [3].")
        assert c.to_json()["scope"] == "across documents" and c.to_json()["text"] == c.text()


    def test_only_the_quotes_are_parsed_and_a_claimant_named_before_them_is_found(self, finder):
        """Quotes, not their paragraphs, go to spaCy (an answer's paragraphs made this check slow);
        "he claims" still names the person of the paragraph's earlier sentence, which is parsed
        only then."""
        finder.texts.update(rahmon=f"{RAHMON_BEFORE} {RAHMON_CLAIM}\n\nThe meeting ended.", quarter=QUARTER)
        sent: list[list[str]] = []
        parse = finder._server_parse
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(finder, "_server_parse", lambda texts: sent.append(texts) or parse(texts))
            cited = [cite(1, "rahmon", finder.texts["rahmon"], RAHMON_CLAIM),
                     cite(2, "quarter", QUARTER, QUARTER)]
            [c] = finder.find(cited)
            assert sent == [[RAHMON_CLAIM, QUARTER], [f"{RAHMON_BEFORE} {RAHMON_CLAIM}"]]
            claim = {v.text: (v.claim_verb, v.claimant) for v in c.versions}
            assert claim == {"46 per cent": ("claims", "Emomali Rahmon"), "roughly a quarter": (None, None)}
            sent.clear()
            assert finder.find(cited) == [c] and sent == []  # remembered


RAHMON_BEFORE = "Emomali Rahmon spoke in Dushanbe on Monday."
RAHMON_CLAIM = "He claims that ethnic Tajiks make up 46 per cent of Afghanistan's population."
QUARTER = "Ethnic Tajiks make up roughly a quarter of Afghanistan's population."


# ------------------------------------------------------------------------ the corpus article
TAJIKS = "What proportion of Afghans are ethnic Tajiks?"


@pytest.mark.slow
def test_the_corpus_answer_on_tajiks_says_the_sources_differ(seed_service):
    answer = seed_service.answer(TAJIKS)
    assert answer.supported
    [c] = answer.conflicts
    by_n = {x.n: x for x in answer.citations}
    versions = {v.text: v for v in c.versions}
    assert set(versions) == {"roughly a quarter", "46 per cent"}
    assert "roughly a quarter of Afghanistan’s population" in by_n[versions["roughly a quarter"].n].quote
    assert "who he claims make up 46 per cent" in by_n[versions["46 per cent"].n].quote
    rahmon = versions["46 per cent"]
    assert (rahmon.claim_verb, rahmon.claimant) == ("claims", "Emomali Rahmon")  # an attributed claim
    assert versions["roughly a quarter"].claim_verb is None
    assert "Tajiks" in c.measure and not c.across_documents
    assert answer.to_json()["conflicts"] == [c.to_json()]
    text = render_text(answer)
    assert f"The sources differ on {c.measure}" in text and "(Emomali Rahmon claims)" in text
    assert answer.timings_ms["conflicts"] >= 0


@pytest.mark.slow
def test_answers_whose_figures_agree_or_are_absent_have_no_conflicts(seed_service):
    for question in ("Which river forms much of Afghanistan's northern border?",
                     "How many people live in Afghanistan?"):
        answer = seed_service.answer(question)
        assert answer.citations and answer.conflicts == [] and answer.to_json()["conflicts"] == []


@pytest.mark.slow
def test_ask_json_lists_conflicts_and_is_verifiable(seed_index, tmp_path):
    r = run_cli("ask", "--index", str(seed_index.index_dir), "--json", TAJIKS,
                "Which river forms much of Afghanistan's northern border?")
    assert r.returncode == 0, r.stderr
    tajiks, river = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert river["conflicts"] == []
    [c] = tajiks["conflicts"]
    assert {v["text"] for v in c["versions"]} == {"roughly a quarter", "46 per cent"}
    assert {"verb": "claims", "by": "Emomali Rahmon"} in [v["claim"] for v in c["versions"]]
    assert c["text"].startswith("The sources differ on ") and c["scope"] == "within a document"
    cited = {x["n"] for x in tajiks["citations"]}
    assert {v["n"] for v in c["versions"]} <= cited
    assert tajiks["provenance"]["index"]["state"] and tajiks["provenance"]["models"]["embedding"]
    out = tmp_path / "a.json"
    out.write_text(r.stdout, encoding="utf-8")
    v = run_cli("verify", str(out), "--index", str(seed_index.index_dir), "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    checked = json.loads(v.stdout)["quotes"]
    assert {q["status"] for q in checked} == {"ok"} and len(checked) >= len(tajiks["citations"]) + 1


# ------------------------------------------------------------------------ the fixture corpus
@pytest.fixture(scope="module")
def fixture_service(tmp_path_factory, real_embedder):
    from chatbot.service import QAService

    settings = fixture_copy_index(tmp_path_factory.mktemp("conflicts"), real_embedder)[1]
    service = QAService(settings, embedder=real_embedder).open()
    yield service
    service.conflicts.close()


@pytest.mark.slow
def test_the_planted_conflict_of_the_fixture_corpus_shows_in_the_answer(fixture_service):
    answer = fixture_service.answer("How much water will the new Chu reservoir hold?")
    [c] = [c for c in answer.conflicts if c.kind == "volume"]
    by_n = {x.n: x for x in answer.citations}
    assert {v.text: by_n[v.n].title for v in c.versions} == {
        "420 million cubic metres": "[Fixture] Kyrgyzstan and Kazakhstan sign a Chu river accord",
        "510 million cubic metres": "[Fixture] Astana questions the Chu reservoir plan"}
    assert c.across_documents
    assert ("according to", "engineers in Astana") in {(v.claim_verb, v.claimant) for v in c.versions}


@pytest.mark.slow
def test_the_spacy_process_survives_high_fd_numbers_and_a_crash_is_one_clear_error():
    """The app keeps one spaCy process for its lifetime: reached through any file descriptor number
    (a long-running process holds many; select() fails above 1023), and when it dies the answer
    stands and the next check starts a new one."""
    import os
    import resource

    from chatbot.brief import nlp

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"needs 1200 open files (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    server = nlp.Server()
    try:
        parsed, model = server.parse(["Tashkent is the capital of Uzbekistan."])
        assert model.startswith("en_core_web_sm") and parsed[0].word(0) == "Tashkent"
        server._proc.kill()  # as a segfault or the OOM killer would
        server._proc.wait()
        with pytest.raises(nlp.NLPError, match=r"failed \(exit -9\)"):
            server.parse(["Tashkent is the capital of Uzbekistan."])
    finally:
        server.close()
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    texts = {"a": RESERVOIR_A, "other": RESERVOIR_OTHER}
    finder = ConflictFinder(texts.get)
    try:
        cited = [cite(1, "a", RESERVOIR_A, RESERVOIR_A.split(". ")[1]), cite(2, "other", RESERVOIR_OTHER, RESERVOIR_OTHER)]
        finder.warm_up()
        finder._server._proc.kill()
        finder._server._proc.wait()
        # Dies between the finder's liveness check and its request (without this the check may
        # already see it dead and start a fresh one: a race, not the case under test).
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(nlp.Server, "alive", property(lambda self: True))
            assert finder.find(cited) == []  # the dead process: no check, no crash
        assert len(finder.find(cited)) == 1  # a fresh process
    finally:
        finder.close()
