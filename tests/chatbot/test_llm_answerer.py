"""The LLM answer flow and claim checking on deterministic fakes (tests/chatbot/fakes.py): a scripted
LangChain chat model behind the real ``ChatClient`` and a word-count embedder, so every support
score, citation and answer text is asserted exactly. The real model: test_generative.py."""
from __future__ import annotations

import math
import re

import pytest

from chatbot.answerer import AnswerRequest
from chatbot.claims import DraftSentence, check_claims
from chatbot.generative import LLMAnswerer
from chatbot.llm_client import ChatClient, LLMUnavailable
from chatbot.prompt import CONDENSE_PROMPT, SYSTEM_PROMPT, build_messages
from chatbot.service import AskOptions, QAService
from chatbot.settings import LLMConfig
from chatbot.types import NOT_IN_SOURCES, UNSUPPORTED_FLAG, Answer, Citation, Claim
from tests.chatbot.fakes import ScriptedChatModel, WordEmbedder, make_passage, pieces, prompt_text
from tests.chatbot.helpers import assert_citation_invariants

WATER = make_passage("d1", "Water", 100, ["The Qosh Tepa canal is 285 km long.",
                                          "It diverts water from the Amu Darya."])
EXILES = make_passage("d2", "Exiles", 0, ["Rahmon offered sanctuary to Massoud.", "The talks ended in May.",
                                          "Kazakhstan stayed silent."])
PASSAGES = [WATER, EXILES]
QUESTION = "Who offered sanctuary to Massoud?"
TRUE, DIVERTS = "Rahmon offered sanctuary to Massoud.", "It diverts water from the Amu Darya."
SWAPPED = "Kazakhstan offered sanctuary to Massoud."  # who did what swapped
WRONG_NUMBER = "The Qosh Tepa canal is 900 km long."
# Support = (0.6 * cosine + 0.4 * lexical) * penalties (chatbot/claims.py), with word-count cosines:
SWAPPED_SUPPORT = (0.6 * 4 / 5 + 0.4 * 3 / 4) * 0.75  # 4 of 5 words shared; 3 of 4 stems; a name missing
WRONG_NUMBER_SUPPORT = (0.6 * 7 / 8 + 0.4 * 5 / 6) * 0.3  # 900 is not in the passage


def fallback() -> Answer:
    evidence = [Citation(1, "d2", "Exiles", 0, 36, TRUE, 0.5)]
    return Answer(QUESTION, f"{NOT_IN_SOURCES} — extractive.", False, evidence=evidence, support_level="none")


def request(question: str = QUESTION) -> AnswerRequest:
    return AnswerRequest(question, question, PASSAGES, None, extractive=fallback())


def answerer(reply="", error=None) -> tuple[LLMAnswerer, ScriptedChatModel]:
    config = LLMConfig(provider="openai", model="scripted", base_url="http://fake.invalid/v1")
    model = ScriptedChatModel(reply=reply, error=error)
    return LLMAnswerer(config, embedder=WordEmbedder(), client=ChatClient(config, chat_model=model)), model


# ----------------------------------------------------------------------------- claim checking
def test_claim_support_is_exact():
    drafts = [DraftSentence(TRUE, [2]), DraftSentence("Rahmon offered sanctuary.", [2]),
              DraftSentence(SWAPPED, [2]), DraftSentence(WRONG_NUMBER, [1]), DraftSentence(DIVERTS, []),
              DraftSentence(TRUE, [9]), DraftSentence("The sources don't say.", [1])]
    true, shorter, swapped, number, unmarked, bad_marker, refusal = check_claims(drafts, PASSAGES, WordEmbedder())

    assert (true.support, true.supported) == (pytest.approx(1.0), True)
    assert [(m.passage, m.sentence.start, m.sentence.end, m.sentence.text) for m in true.matches] == [(2, 0, 36, TRUE)]
    # Three of its five words: the cosine drops, every content word is still in the sentence.
    assert shorter.support == pytest.approx(0.6 * 3 / math.sqrt(3 * 5) + 0.4) and shorter.supported
    assert swapped.support == pytest.approx(SWAPPED_SUPPORT) and not swapped.supported and not swapped.matches
    assert number.support == pytest.approx(WRONG_NUMBER_SUPPORT) and not number.supported
    # No marker, or only markers to passages that were not in the prompt: the best passage, if it supports it.
    assert unmarked.supported and unmarked.support == pytest.approx(1.0)
    assert [(m.passage, m.sentence.start, m.sentence.end) for m in unmarked.matches] == [(1, 136, 172)]
    assert bad_marker.supported and [m.passage for m in bad_marker.matches] == [2]
    assert refusal.refusal and not refusal.supported and refusal.support == 0.0


# ----------------------------------------------------------------------------- the answer flow
REPLY = f"Rahmon offered sanctuary to Massoud [2]. {WRONG_NUMBER[:-1]} [1]. {DIVERTS}"


def test_answer_is_built_from_the_checked_claims():
    llm, model = answerer(REPLY)
    answer = llm.answer(request())

    (system, user), = model.prompts  # the prompt reached the chat model as LangChain messages
    assert (system.type, system.content) == ("system", SYSTEM_PROMPT)
    assert (user.type, user.content) == ("human", build_messages(QUESTION, PASSAGES)[1][1])
    assert answer.text == f"{TRUE} [1] {WRONG_NUMBER} {UNSUPPORTED_FLAG} {DIVERTS} [2]"
    assert answer.citations == [
        Citation(1, "d2", "Exiles", 0, 36, TRUE, 1.0, None, EXILES.chunk.chunk.chunk_id),
        Citation(2, "d1", "Water", 136, 172, DIVERTS, 1.0, None, WATER.chunk.chunk.chunk_id),
    ]
    assert answer.claims == [Claim(TRUE, (1,), 1.0, True), Claim(WRONG_NUMBER, (), round(WRONG_NUMBER_SUPPORT, 4), False),
                             Claim(DIVERTS, (2,), 1.0, True)]
    assert (answer.supported, answer.mode, answer.notice) == (True, "llm:openai", None)
    assert answer.confidence == pytest.approx((2 + round(WRONG_NUMBER_SUPPORT, 4)) / 3)


def test_streaming_passes_the_model_text_on_then_the_same_answer():
    llm, model = answerer(REPLY)
    items = list(llm.answer_stream(request()))
    assert items[:-1] == pieces(REPLY) and len(items) > 10
    assert items[-1] == answerer(REPLY)[0].answer(request())


def test_refusals_and_unverifiable_answers_show_the_extractive_evidence():
    refused = answerer("The sources don't say.")[0].answer(request())
    assert not refused.supported and refused.text.startswith(NOT_IN_SOURCES)
    assert (refused.claims, refused.citations, refused.notice) == ([], [], None)
    assert refused.evidence == fallback().evidence

    swapped = answerer(f"{SWAPPED[:-1]} [2].")[0].answer(request())
    assert not swapped.supported and swapped.evidence == fallback().evidence
    assert swapped.claims == [Claim(SWAPPED, (), round(SWAPPED_SUPPORT, 4), False)]
    assert swapped.notice.startswith("The model's answer could not be verified against the sources")

    # True to the passage but beside the question: not an answer either.
    peru = "What is the capital of Peru?"
    beside = answerer(f"{TRUE[:-1]} [2].")[0].answer(request(peru))
    assert not beside.supported and beside.claims == [Claim(TRUE, (), 1.0, False)]


def test_model_failures_are_llm_unavailable_with_one_line():
    with pytest.raises(LLMUnavailable, match=r"^openai \(http://fake\.invalid/v1\) returned an empty answer$"):
        answerer("  ")[0].answer(request())
    with pytest.raises(LLMUnavailable, match=r"^openai \(http://fake\.invalid/v1\) failed: RuntimeError: boom with a second line$"):
        answerer(error=RuntimeError("boom\nwith a second line"))[0].answer(request())


def test_condense_asks_the_model_with_the_conversation():
    history = [(QUESTION, "Rahmon offered sanctuary to Massoud [1].")]
    llm, model = answerer('Standalone question: "Did Kazakhstan offer sanctuary to Massoud?"\nExplanation: ...')
    assert llm.condense("And Kazakhstan?", history) == "Did Kazakhstan offer sanctuary to Massoud?"
    (system, user), = model.prompts
    assert system.content == CONDENSE_PROMPT
    assert user.content == (f"Conversation:\nUser: {QUESTION}\nAssistant: {TRUE}\n\n"
                            "Follow-up question: And Kazakhstan?\nStandalone question:")
    assert answerer(error=RuntimeError("down"))[0].condense("And Kazakhstan?", history) is None
    assert llm.condense("And Kazakhstan?", []) is None  # nothing to condense against: no call
    assert len(model.prompts) == 1


# ----------------------------------------------------------------------------- through the service
def copy_the_sanctuary_sentence(messages) -> str:
    """Cite, as the prompt numbers it, the passage saying who offered sanctuary, copying that sentence."""
    text = prompt_text(messages)
    for n, body in re.findall(r"<passage id=(\d+)[^>]*>\n(.*?)\n</passage>", text, flags=re.S):
        found = re.search(r"[^.!?\n]*sanctuary to Ahmad Massoud[^.!?]*[.!?]", body)
        if found:
            return f"{found.group().strip()[:-1]} [{n}]."
    return "The sources don't say."


@pytest.mark.slow
def test_service_answers_through_the_chat_model(seed_index, real_embedder):
    config = LLMConfig(provider="openai", model="scripted", base_url="http://fake.invalid/v1")
    model = ScriptedChatModel(reply=copy_the_sanctuary_sentence)
    llm = LLMAnswerer(config, client=ChatClient(config, chat_model=model))
    service = QAService(seed_index, embedder=real_embedder, llm=llm).open()
    question = "Who offered sanctuary to Ahmad Massoud?"

    items = list(service.answer_stream(question, options=AskOptions(mode="llm", top_k=4)))
    answer = items[-1]
    sentence = re.sub(r" \[\d+\]\.$", ".", "".join(items[:-1]))
    assert "sanctuary to Ahmad Massoud" in sentence
    assert (answer.mode, answer.supported, answer.notice) == ("llm:openai", True, None)
    assert answer.text == f"{sentence} [1]"
    assert [c.quote for c in answer.citations] == [sentence]
    assert answer.claims == [Claim(sentence, (1,), answer.claims[0].support, True)]
    assert answer.claims[0].support > 0.99
    assert_citation_invariants(answer, service.doc_text)

    model.error = RuntimeError("boom")
    fell_back = service.answer(question, options=AskOptions(mode="llm", top_k=4))
    assert fell_back.mode == "extractive" and fell_back.supported
    assert fell_back.notice == ("The LLM could not answer (openai (http://fake.invalid/v1) failed: RuntimeError: "
                                "boom); showing the extractive answer.")
