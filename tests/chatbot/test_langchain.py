"""The LangChain edges (chatbot/langchain_adapters.py) in LCEL chains over a real index: the real
embedding model, real Chroma, the project's corpus. Only the chat model at the end of the RAG chain
is a deterministic fake (tests/chatbot/fakes.py)."""
from __future__ import annotations

import re

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough

from chatbot import conversation
from chatbot.langchain_adapters import AnswerRunnable, PassageRetriever, parse_input
from chatbot.service import AskOptions
from chatbot.types import Answer, Filters, QAError
from tests.chatbot.fakes import ScriptedChatModel, prompt_text
from tests.chatbot.helpers import assert_citation_invariants

QUESTION = "Who offered sanctuary to Ahmad Massoud?"
METADATA = {"doc_id", "chunk_id", "title", "start", "end", "page", "page_end", "source", "score", "dense_score",
            "dense_rank", "lexical_score", "lexical_rank"}


@pytest.mark.slow
def test_retriever_documents_carry_exact_offsets_and_scores(seed_service):
    retriever = PassageRetriever.from_service(seed_service, top_k=4)
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(QUESTION)
    passages = seed_service.retriever.retrieve(QUESTION, top_k=4)
    assert [(d.id, d.metadata["score"]) for d in docs] == [(p.chunk.chunk.chunk_id, p.score) for p in passages]
    assert len(docs) == 4 and "sanctuary to Ahmad Massoud" in docs[0].page_content
    for doc in docs:
        meta = doc.metadata
        assert set(meta) == METADATA and meta["chunk_id"] == doc.id
        text = seed_service.doc_text(meta["doc_id"])
        assert text[meta["start"]:meta["end"]] == doc.page_content  # offsets in the stored document
        assert meta["title"] == seed_service.document(meta["doc_id"]).title
        assert meta["page"] is None  # Markdown: no pages
        assert meta["dense_rank"] is not None or meta["lexical_rank"] is not None
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)
    # Per call: fewer passages, or only some documents.
    assert [d.id for d in retriever.invoke(QUESTION, top_k=2)] == [d.id for d in docs[:2]]
    assert retriever.invoke(QUESTION, filters=Filters(doc_ids=("no-such-document",))) == []


@pytest.mark.slow
def test_lcel_rag_chain_over_the_real_index(seed_service):
    """The classic LCEL chain: retriever -> prompt -> chat model -> string, on our retriever."""
    def cite_the_sanctuary_sentence(messages) -> str:
        parts = re.split(r"(?m)^\[(\d+)\] ", prompt_text(messages))
        for n, passage in zip(parts[1::2], parts[2::2]):
            found = re.search(r"[^.!?\n]*sanctuary to Ahmad Massoud[^.!?]*[.!?]", passage)
            if found:
                return f"{found.group().strip()} [{n}]"
        return "The sources don't say."

    def numbered(docs) -> str:
        return "\n\n".join(f"[{i}] {d.page_content}" for i, d in enumerate(docs, 1))

    retriever = PassageRetriever.from_service(seed_service, top_k=3)
    model = ScriptedChatModel(reply=cite_the_sanctuary_sentence)
    prompt = ChatPromptTemplate.from_messages([("system", "Answer only from the numbered context."),
                                               ("human", "Context:\n{context}\n\nQuestion: {question}")])
    chain = {"context": retriever | numbered, "question": RunnablePassthrough()} | prompt | model | StrOutputParser()

    reply = chain.invoke(QUESTION)
    docs = retriever.invoke(QUESTION)
    (system, human), = model.prompts
    assert human.content == f"Context:\n{numbered(docs)}\n\nQuestion: {QUESTION}"
    n = int(re.search(r"\[(\d+)\]$", reply).group(1))
    assert "sanctuary to Ahmad Massoud" in reply and reply[:-len(f" [{n}]")] in docs[n - 1].page_content


@pytest.mark.slow
def test_answer_runnable_in_lcel(seed_service):
    runnable = AnswerRunnable(seed_service, as_json=True)
    assert isinstance(runnable, Runnable)
    expected = seed_service.answer(QUESTION, options=AskOptions(top_k=4)).to_json()
    quotes = (RunnableLambda(lambda q: {"question": q, "options": {"top_k": 4}}) | runnable
              | RunnableLambda(lambda a: [(c["doc_id"], c["start"], c["end"], c["quote"]) for c in a["citations"]]))
    got = quotes.invoke(QUESTION)
    assert got == [(c["doc_id"], c["start"], c["end"], c["quote"]) for c in expected["citations"]] and got
    for doc_id, start, end, quote in got:
        assert seed_service.doc_text(doc_id)[start:end] == quote

    # The Answer itself, beside the passages it came from; a batch; a follow-up with LangChain messages.
    both = RunnableParallel(answer=AnswerRunnable(seed_service), passages=PassageRetriever.from_service(seed_service))
    out = both.invoke(QUESTION)
    assert isinstance(out["answer"], Answer) and out["answer"].supported and out["passages"]
    assert_citation_invariants(out["answer"], seed_service.doc_text)
    first, second = runnable.batch([QUESTION, "What is the Qosh Tepa canal?"])
    assert first["question"] == QUESTION and second["question"] == "What is the Qosh Tepa canal?"
    history = [HumanMessage(QUESTION), AIMessage(first["answer"])]
    follow = runnable.invoke({"question": "And Uzbekistan?", "history": history})
    assert follow["standalone_question"] == conversation.condense("And Uzbekistan?", [(QUESTION, first["answer"])])


def test_bad_input_is_one_clear_error():
    assert parse_input("Why?") == ("Why?", [], AskOptions())
    cases = [
        (42, r"The input must be a question, or a mapping with a \"question\" string .*got int"),
        ({"question": "Why?", "optons": {}}, r"Unknown input keys: optons"),
        ({"question": "Why?", "options": {"mode": "fast"}}, r"mode must be one of extractive, llm \(got 'fast'\)"),
        ({"question": "Why?", "options": {"filters": {"authors": ["x"]}}}, r"filters may have doc_ids, sources"),
        ({"question": "Why?", "history": ["just text"]}, r"history must be \(question, answer\) pairs"),
    ]
    for value, message in cases:
        with pytest.raises(QAError, match=message):
            parse_input(value)
    question, history, options = parse_input({"question": "And Uzbekistan?", "history": [("Q?", "A [1].")],
                                              "options": {"top_k": 3, "filters": {"sources": ["News"]}}})
    assert (question, history) == ("And Uzbekistan?", [("Q?", "A [1].")])
    assert options == AskOptions(top_k=3, filters=Filters(sources=("News",)))
