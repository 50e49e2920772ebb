"""Pure logic of the extractive answerer and the follow-up heuristic (no model, no Chroma)."""
from __future__ import annotations

from chatbot import conversation
from chatbot.extractive import (
    ExtractiveConfig,
    QuestionProfile,
    answer_type,
    by_best_clause,
    candidates,
    clauses,
    compared,
    question_terms,
    score_candidates,
    select,
)
import numpy as np

from chatbot.retrieve import Passage
from chatbot.relevance import SentenceVectors
from ingest.chunking import chunk_text
from ingest.lexical import LexicalIndex
from ingest.store import StoredChunk

TEXT = (
    "The Amu Darya forms much of the border. The canal is 285 kilometres long. "
    "It was started in 2022 by the Taliban.\n\n"
    "Kazakhstan accredited envoys in April. Uzbekistan works with the West on aid."
)


def _passages(text=TEXT, doc_id="d1", title="Water and borders"):
    chunks = chunk_text(doc_id, text, chunk_size=120, chunk_overlap=40)
    return [Passage(StoredChunk(c, title), score=1.0 / (i + 1)) for i, c in enumerate(chunks)], chunks


def _index(chunks):
    return LexicalIndex.build(((c.chunk_id, c.text) for c in chunks), "t")


def test_candidates_are_deduplicated_sentences_with_exact_spans():
    passages, _ = _passages()
    cands = candidates(passages)
    spans = [(c.start, c.end) for c in cands]
    assert len(spans) == len(set(spans)) == 5
    for c in cands:
        assert TEXT[c.start:c.end] == c.text


def test_best_sentence_answers_the_question():
    passages, chunks = _passages()
    profile = QuestionProfile.of("How long is the canal?", _index(chunks))
    ranked = score_candidates(profile, candidates(passages))
    assert ranked[0].text == "The canal is 285 kilometres long."
    assert profile.kind == "number"


def test_select_leads_with_the_best_evidence_within_budget_and_no_duplicates():
    passages, chunks = _passages()
    profile = QuestionProfile.of("When did the Taliban start the canal?", _index(chunks))
    ranked = score_candidates(profile, candidates(passages))
    chosen = select(ranked, ExtractiveConfig(max_chars=80, keep_ratio=0.0))
    assert sum(len(c.text) for c in chosen) <= 80 or len(chosen) == 1
    assert chosen[0] is ranked[0] and chosen[0].text == "It was started in 2022 by the Taliban."
    assert [c.score for c in chosen] == sorted((c.score for c in chosen), reverse=True)
    assert len({c.text for c in chosen}) == len(chosen)
    assert select([], ExtractiveConfig()) == []


def test_meaning_ranks_a_paraphrase_that_shares_no_word():
    passages, chunks = _passages()
    profile = QuestionProfile.of("Which nation cooperates with Western governments?", _index(chunks))
    cands = candidates(passages)
    semantic = [0.9 if c.text.startswith("Uzbekistan works with the West") else 0.1 for c in cands]
    assert score_candidates(profile, cands)[0].text.startswith("Uzbekistan") is False
    ranked = score_candidates(profile, cands, semantic=semantic)
    assert ranked[0].text.startswith("Uzbekistan works with the West") and ranked[0].semantic == 0.9


def test_absent_terms_are_measured_against_the_index():
    _, chunks = _passages()
    index = _index(chunks)
    assert QuestionProfile.of("What is the GDP of Turkmenistan?", index).absent == 1.0
    assert QuestionProfile.of("Which envoys did Kazakhstan accredit?", index).absent == 0.0


def test_the_words_that_ask_for_a_view_or_a_reason_do_not_rank_sentences():
    """ "How does Tajikistan *see* the Taliban?": in a small collection "see" is rarer than
    "Tajikistan", so as a term it ranked the sentence that happens to "see" something first."""
    text = ("Central Asian countries see no alternative to engaging with the Taliban. Kazakhstan and the Taliban "
            "trade grain.\n\nTajikistan remains the most resistant to engagement with the Taliban. Tajikistan and "
            "the Taliban share a long border. Tajikistan hosts exiles who fight the Taliban.")
    passages, chunks = _passages(text)
    index = _index(chunks)
    profile = QuestionProfile.of("How does Tajikistan see the Taliban?", index)
    assert profile.kind == "position" and set(profile.terms) == {"tajikistan", "taliban"}
    assert score_candidates(profile, candidates(passages))[0].text.startswith("Tajikistan")
    assert set(QuestionProfile.of("What explains Tajikistan's policy toward the Taliban?", index).terms) == {
        "tajikistan", "polici", "taliban"}
    # a question that is all frame keeps its words
    assert set(QuestionProfile.of("What is the approach?", index).terms) == {"approach"}


def test_a_comparison_quotes_the_best_sentence_about_each_name_it_compares():
    text = ("Uzbekistan holds talks with the Taliban on the canal. Uzbekistan sends aid with the West. Uzbekistan "
            "and Tajikistan border Afghanistan.\n\nTajikistan remains the most resistant to the Taliban.")
    passages, chunks = _passages(text)
    question = "How do Tajikistan and Uzbekistan differ on the Taliban?"
    assert compared(question) == ["tajikistan", "uzbekistan"]
    for listed in ("Kazakhstan, Uzbekistan and Turkmenistan", "Kazakhstan, Uzbekistan, and Turkmenistan"):
        assert compared(f"What do {listed} want?") == ["kazakhstan", "uzbekistan", "turkmenistan"]
    assert compared("Who won Super Bowl 50?") == [] and compared("Why does Tashkent engage the Taliban?") == []
    ranked = score_candidates(QuestionProfile.of(question, _index(chunks)), candidates(passages))
    semantic_order = [c for c in ranked if c.text.startswith("Uzbekistan")] + [
        c for c in ranked if not c.text.startswith("Uzbekistan")]  # as if meaning put Uzbekistan's first
    chosen = select(semantic_order, ExtractiveConfig(keep_ratio=0.0), question=question)
    assert [c.text for c in chosen[:2]] == ["Uzbekistan holds talks with the Taliban on the canal.",
                                            "Tajikistan remains the most resistant to the Taliban."]
    assert [c.text for c in select(semantic_order, ExtractiveConfig(keep_ratio=0.0))][1].startswith("Uzbekistan")


def test_answer_types_and_terms():
    assert answer_type("How many people live there?") == "number"
    assert answer_type("When was it built?") == "date"
    assert answer_type("Who said that?") == "name"
    assert answer_type("Why does it matter?") is None
    assert "mani" not in question_terms("How many people live in Afghanistan?")


def test_config_validation_names_the_parameter():
    import pytest

    for kwargs, name in (({"keep_ratio": 2}, "keep_ratio"), ({"max_chars": 1}, "max_chars"),
                         ({"max_sentences": 0}, "max_sentences")):
        with pytest.raises(ValueError, match=name):
            ExtractiveConfig(**kwargs)


# ---------------------------------------------------------------------- follow-ups (heuristic)
HISTORY = [("What percentage of Afghanistan's population do ethnic Tajiks make up?",
            "Ethnic Tajiks comprise roughly a quarter of Afghanistan’s population [1]")]


def test_elliptical_follow_up_swaps_the_subject():
    q = conversation.condense("And the Pashtuns?", HISTORY)
    assert q == "What percentage of Afghanistan's population do ethnic the Pashtuns make up?"


def test_pronoun_follow_up_carries_previous_context():
    q = conversation.condense("Who said that?", [("What did Irgashev call the Taliban?", "“a reality” [1]")])
    assert q.startswith("Who said that") and "Irgashev" in q


def test_standalone_questions_are_untouched():
    q = "Which river forms much of Afghanistan's northern border?"
    assert conversation.condense(q, HISTORY) == q
    assert conversation.condense("And the Pashtuns?", []) == "And the Pashtuns?"


def test_capitals_and_demonyms_count_as_their_state():
    from chatbot.extractive import canonical, expand_query, terms_of

    assert canonical("What are Dushanbe's demands?") == "What are Tajikistan's demands?"
    assert "uzbekistan" in terms_of("It links the southern Uzbek city of Termez to Mazar-i-Sharif.")
    # a plural demonym names people, not the state
    assert "afghanistan" not in terms_of("The share of Afghans living in poverty has climbed.")
    assert canonical("the Indian Ocean, Indian ports") == "the Indian Ocean, India ports"  # a name hides it
    assert "tajikistan" in question_terms("What are Dushanbe's demands of the Taliban?")
    expanded = expand_query("What argument does Uzbekistan's envoy make?")
    assert "Uzbek" in expanded.split() and "Tashkent" in expanded.split()
    assert expand_query("Why did the canal matter?") == "Why did the canal matter?"


def test_reason_questions_prefer_sentences_that_state_a_cause():
    passages, chunks = _passages("The canal was built near the border. The canal was built because of drought.")
    profile = QuestionProfile.of("Why was the canal built?", _index(chunks))
    assert profile.kind == "reason"
    ranked = score_candidates(profile, candidates(passages))
    assert ranked[0].text.endswith("because of drought.") and ranked[0].type_match


def test_runners_up_of_a_date_question_must_give_a_date():
    passages, chunks = _passages("The Taliban took power in August 2021. The Taliban took power by force. "
                                 "The Taliban took power after the withdrawal.")
    question = "When did the Taliban take power?"
    ranked = score_candidates(QuestionProfile.of(question, _index(chunks)), candidates(passages))
    chosen = select(ranked, ExtractiveConfig(keep_ratio=0.0), question=question)
    assert [c.text for c in chosen] == ["The Taliban took power in August 2021."]
    assert len(select(ranked, ExtractiveConfig(keep_ratio=0.0))) == 3


def test_position_questions_prefer_reported_speech():
    passages, chunks = _passages("Kazakhstan hosts Taliban diplomats in Astana. “Hosting Taliban diplomats is "
                                 "not recognition,” said a Kazakhstan spokesperson.")
    profile = QuestionProfile.of("What is Kazakhstan's official line on hosting Taliban diplomats?", _index(chunks))
    assert profile.kind == "position"
    ranked = score_candidates(profile, candidates(passages))
    assert ranked[0].text.startswith("“Hosting") and ranked[0].type_match
    assert QuestionProfile.of("What is the capital of Kazakhstan?", _index(chunks)).kind is None


LONG = ("Rahmon has offered sanctuary to Ahmad Massoud, the most prominent leader of armed resistance to the "
        "Taliban, and a 2006 ruling by the Supreme Court designating the Taliban as a terrorist organisation "
        "remains in place.")


def test_a_long_sentence_splits_into_its_clauses_a_short_one_does_not():
    assert clauses(LONG) == ["Rahmon has offered sanctuary to Ahmad Massoud, the most prominent leader of armed "
                             "resistance to the Taliban",
                             "and a 2006 ruling by the Supreme Court designating the Taliban as a terrorist "
                             "organisation remains in place."]
    assert clauses("The canal is 285 kilometres long, and it was started in 2022 by the Taliban.") == []  # short
    assert clauses("x" * 200) == []  # nothing to split at
    # a piece under CLAUSE_MIN_PART characters is dropped; one clause left is no split
    assert clauses("A" * 150 + " – he said; " + "B" * 20) == []


class _Axes:
    """A fake embedder: a text's vector points along the axis of the first keyword it contains."""

    dimension = 3
    KEYS = ("terrorist", "sanctuary", "canal")

    def __init__(self):
        self.calls = []

    def embed_documents(self, texts):
        self.calls.append(list(texts))
        out = []
        for t in texts:
            v = np.zeros(3, dtype=np.float32)
            hits = [i for i, k in enumerate(self.KEYS) if k in t]
            v[hits[0] if hits else 2] = 1.0
            out.append(v)
        return out


def test_a_long_sentence_is_ranked_by_its_closest_clause_too():
    text = "The canal is 285 kilometres long and it will take water. " + LONG
    chunks = chunk_text("d1", text, chunk_size=1000, chunk_overlap=0)
    passages = [Passage(StoredChunk(c, "Water"), score=1.0) for c in chunks]
    assert [c.text for c in candidates(passages)] == ["The canal is 285 kilometres long and it will take water.", LONG]
    ranked = score_candidates(QuestionProfile.of("Is it a terrorist group?", _index(chunks)), candidates(passages),
                              semantic=[0.5, 0.2])  # the whole long sentence: far from the question
    assert ranked[0].text.startswith("The canal")
    long_score = ranked[1].score
    embedder = _Axes()
    vectors = SentenceVectors(embedder)
    question = np.asarray([1.0, 0.0, 0.0], dtype=np.float32)  # the "terrorist" axis
    reranked = by_best_clause(list(ranked), question, vectors.of_texts)
    assert reranked[0].text == LONG and reranked[0].semantic == 0.2  # the judge still sees the sentence's cosine
    assert abs(reranked[0].score - (long_score + 0.8)) < 1e-6  # best clause 1.0 - sentence 0.2
    assert embedder.calls == [clauses(LONG)]  # only the long sentence is split, in one batch
    assert vectors.texts_computed == 2 and vectors.computed == 0  # clauses are not counted as sentences
    by_best_clause(list(ranked), question, vectors.of_texts)  # cached: no second model run
    assert len(embedder.calls) == 1
