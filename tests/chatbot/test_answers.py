"""The answerer on the real model and real Chroma, scored on the dev set (issue 3 thresholds)."""
from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.evaluate import load_items, score
from chatbot.service import AskOptions
from chatbot.types import Filters, QAError
from tests.chatbot.helpers import assert_citation_invariants
from tests.conftest import REPO_ROOT, SHARED

pytestmark = pytest.mark.slow
DEV = SHARED / "eval" / "dev_qa.jsonl"
SEED_QA = REPO_ROOT / "tests" / "data" / "seed_qa.jsonl"


def _run(service, path: Path):
    items = load_items(path)
    answers = [service.answer(item.question) for item in items]
    for a in answers:
        assert_citation_invariants(a, service.doc_text)
    return items, answers, score(items, [a.to_json() for a in answers], service.doc_text)


def test_dev_set(seed_service):
    if not DEV.exists():
        pytest.skip(f"{DEV} not available")
    items, answers, result = _run(seed_service, DEV)
    assert result["evidence"] >= 0.9, result
    assert result["answer_terms"] >= 0.85, result
    assert result["verbatim"] == 1.0
    assert result["quoted_chars"] <= 600
    for item, answer in zip(items, answers):
        if not item.answerable:
            assert not answer.supported, f"{item.id} should be refused: {answer.text}"
            assert answer.evidence or answer.citations, "a refusal still shows the nearest evidence"


def test_project_questions(seed_service):
    """Our own questions on the seed article (tests/data/seed_qa.jsonl), unanswerable ones included.
    The judge is never fitted on them (benchmarks/RESULTS.md: 0.70 right, most of its misses are
    in-topic questions whose key term the index lacks, "What is the GDP of Afghanistan?")."""
    _, _, result = _run(seed_service, SEED_QA)
    assert result["evidence"] >= 0.9, result
    assert result["answered_answerable"] >= 0.95, result
    assert result["supported_correct"] >= 0.65, result
    assert result["quoted_chars"] <= 600


def test_sanctuary_question_leads_with_the_exact_sentence(seed_service):
    answer = seed_service.answer("Who offered sanctuary to Ahmad Massoud?")
    assert answer.supported and answer.level == "answered"
    assert answer.citations[0].quote.startswith("Rahmon has offered sanctuary to Ahmad Massoud")  # best first
    assert "[1]" in answer.text
    assert answer.citations[0].title.startswith("‘A reality to be accepted’")


def test_analyst_paraphrase_is_answered_by_meaning(seed_service):
    """Shares one word with its answer: found by sentence meaning, not refused (issue 10)."""
    answer = seed_service.answer("What balance are Central Asian states trying to strike?")
    assert answer.supported, answer.text
    assert any("wary of angering Western countries" in c.quote for c in answer.citations)
    assert_citation_invariants(answer, seed_service.doc_text)


def test_near_miss_is_partial_and_says_what_the_sources_say(seed_service):
    answer = seed_service.answer("How long is the railway between Termez and Mazar-i-Sharif?")
    assert not answer.supported and answer.level == "partial"
    assert answer.text.startswith("The sources don't say how long. What they say:")
    assert any("Termez" in c.quote for c in answer.citations)
    assert answer.to_json()["support_level"] == "partial"
    assert_citation_invariants(answer, seed_service.doc_text)


def test_role_holder_the_article_never_names_is_not_answered(seed_service):
    """The article quotes a spokesperson of the Kazakh foreign ministry, never a foreign minister."""
    answer = seed_service.answer("Who is Turkmenistan's foreign minister?")
    assert not answer.supported and answer.level in ("partial", "none"), answer.text
    president = seed_service.answer("Who is the president of Tajikistan?")  # "Tajik President Emomali Rahmon"
    assert president.supported and "Rahmon" in president.text
    assert_citation_invariants(answer, seed_service.doc_text)


def test_question_about_something_never_mentioned_is_none(seed_service):
    answer = seed_service.answer("When will the TAPI gas pipeline through Afghanistan be finished?")
    assert not answer.supported and answer.level == "none" and not answer.citations and answer.evidence
    assert_citation_invariants(answer, seed_service.doc_text)


def test_more_passages_quote_more_evidence(seed_service):
    question = "Why are Central Asian states engaging with the Taliban?"
    default = seed_service.answer(question)
    more = seed_service.answer(question, options=AskOptions(top_k=16))
    assert sum(len(c.quote) for c in default.citations) <= 600
    assert len(more.citations) >= len(default.citations)
    assert sum(len(c.quote) for c in more.citations) <= 1200


def test_follow_up_uses_the_conversation(seed_service):
    first = "What percentage of Afghanistan's population do ethnic Tajiks make up?"
    a1 = seed_service.answer(first)
    assert a1.supported and "a quarter" in a1.text
    a2 = seed_service.answer("And the Pashtuns?", history=[(first, a1.text)])
    assert a2.supported and "40 per cent" in a2.text
    assert a2.standalone_question != "And the Pashtuns?"
    assert_citation_invariants(a2, seed_service.doc_text)


def test_filters_restrict_the_documents(seed_service):
    docs = seed_service.documents()
    only = Filters(doc_ids=(docs[0].doc_id,))
    assert seed_service.answer("Who offered sanctuary to Ahmad Massoud?", options=AskOptions(filters=only)).supported
    nothing = Filters(sources=("No Such Publisher",))
    refused = seed_service.answer("Who offered sanctuary to Ahmad Massoud?", options=AskOptions(filters=nothing))
    assert not refused.supported and not refused.citations


def test_empty_question_is_a_clear_error(seed_service):
    with pytest.raises(QAError, match="empty"):
        seed_service.answer("   ")


def test_llm_mode_without_llm_falls_back_with_notice(seed_service):
    answer = seed_service.answer("Who offered sanctuary to Ahmad Massoud?", options=AskOptions(mode="llm"))
    assert answer.supported and answer.notice and "extractive" in answer.notice


def test_llm_mode_refuses_before_generating(seed_index, real_embedder):
    """The judge's "none" stops LLM mode before any generation (issue 10, item 6)."""
    from chatbot.service import QAService

    class NeverAsked:
        def answer_stream(self, *args, **kwargs):
            raise AssertionError("the LLM must not be asked")

        def condense(self, *args):
            return None

    service = QAService(seed_index, embedder=real_embedder, llm=NeverAsked()).open()
    answer = service.answer("When will the TAPI gas pipeline through Afghanistan be finished?",
                            options=AskOptions(mode="llm"))
    assert not answer.supported and answer.level == "none" and "not asked" in answer.notice
    assert_citation_invariants(answer, service.doc_text)


def test_both_answerers_answer_the_same_request(seed_service, real_embedder):
    """Extractive and LLM answerers are one interface: ``answer(AnswerRequest) -> Answer``."""
    from chatbot.answerer import AnswerRequest
    from chatbot.generative import LLMAnswerer
    from chatbot.protocols import Answerer
    from chatbot.settings import LLMConfig

    question = "Who offered sanctuary to Ahmad Massoud?"
    vector = real_embedder.embed_query(question)
    request = AnswerRequest(question, question, seed_service.passages(question, vector), vector)
    extractive = seed_service.answerer.answer(request)
    assert isinstance(seed_service.answerer, Answerer) and extractive.mode == seed_service.answerer.mode
    assert seed_service.answer(question).text == extractive.text  # what the service answers with it
    assert extractive.supported and "Rahmon" in extractive.text
    assert_citation_invariants(extractive, seed_service.doc_text)
    llm = LLMAnswerer(LLMConfig(provider="openai", model="unused"), embedder=real_embedder)
    assert isinstance(llm, Answerer) and llm.mode == "llm:openai"
