"""The extractive answerer: the best sentences of the retrieved passages, quoted exactly, or "The
sources don't say" when the judge says they do not answer (``SupportPolicy``).

Every answerer (this one, ``chatbot.generative.LLMAnswerer``) has the same ``answer(request) ->
Answer`` (``chatbot.protocols.Answerer``); ``AnswerRequest`` is what the service hands it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from chatbot.extractive import (
    Candidate,
    ExtractiveConfig,
    QuestionProfile,
    by_best_clause,
    candidates,
    score_candidates,
    select,
    spans_actors,
    to_citation,
    window_text,
)
from chatbot.judge import MODEL_FILE, Judge, asks_for, features, missing
from chatbot.relevance import SentenceVectors, TokenAligner, similarities
from chatbot.retrieve import HybridRetriever, Passage
from chatbot.types import NOT_IN_SOURCES, Answer, Claim, QAError

ANSWERED, PARTIAL, NONE = "answered", "partial", "none"


@dataclass(frozen=True)
class AnswerRequest:
    """One question as an answerer gets it."""

    question: str  # as asked (cleaned)
    standalone: str  # rewritten to stand without the conversation
    passages: list[Passage]  # retrieved for ``standalone``, best first
    vector: np.ndarray | None  # the embedding of ``standalone`` (the extractive answerer ranks with it)
    top_k: int | None = None  # passages asked for (more: quote more); None: the default
    extractive: Answer | None = None  # the extractive answer, for answerers that build on it (its evidence)


@dataclass
class Evidence:
    """What the extractive answerer found for one question (also what benchmarks/train_judge.py fits on)."""

    profile: QuestionProfile
    ranked: list[Candidate]  # best first
    features: dict[str, float] | None  # None when there is no candidate or no content term
    probability: float


@dataclass(frozen=True)
class SupportPolicy:
    """Answer, say what the sources do say (partial), or refuse (calibration: benchmarks/RESULTS.md).

    The judge (``chatbot.judge``, fitted model in ``chatbot/judge_model.json``) gives the
    probability that the best sentence answers the question. At or above ``threshold``
    (``QA_ANSWER_THRESHOLD``) the answer is ``answered``, unless the question asks for a number, a
    date (``chatbot.judge.DETAIL_KINDS``) or the holder of a role ("Who is Turkmenistan's foreign
    minister?", ``chatbot.judge.asked_role``) that none of the top sentences supplies, uses a name
    found nowhere in the index ("the TAPI pipeline"), whose names the top sentences give only as
    items of a list (``chatbot.judge.listed_only``), or which dates what it asks about ("in the 10th
    century") while the top sentences name only other times (``chatbot.judge.time_mismatch``).
    Otherwise it is ``partial`` when the best evidence is on the question's topic: its cosine to the
    question is at least ``topic_semantic`` (``QA_TOPIC_SEMANTIC``) or it and its neighbours cover
    at least ``topic_window`` of the question's IDF-weighted terms, and every name it uses is in the
    index; otherwise ``none``. A partial answer's lead says what is missing (``chatbot.judge.missing``).
    """

    threshold: float = 0.3
    topic_semantic: float = 0.45
    topic_window: float = 0.6
    model_path: Path = MODEL_FILE

    def __post_init__(self) -> None:
        for name in ("threshold", "topic_semantic", "topic_window"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise QAError(f"{name} must be between 0 and 1 (got {value}).")

    def answers(self, probability: float, feats: dict[str, float]) -> bool:
        """The judge's probability is high enough, an asked-for number, date or role holder is supplied, every
        name the question uses occurs somewhere in the index, the top sentences name them other than as
        items of a list, and they are not all dated otherwise than the question dates what it asks about."""
        return (probability >= self.threshold and not feats.get("type_gap_top", 0.0)
                and not feats.get("names_unknown", 0.0) and not feats.get("names_listed_only", 0.0)
                and not feats.get("time_mismatch", 0.0))

    @cached_property
    def judge(self) -> Judge:
        return Judge.load(self.model_path)

    def level(self, probability: float, feats: dict[str, float]) -> str:
        if self.answers(probability, feats):
            return ANSWERED
        if feats.get("names_unknown"):  # what the question is about is never mentioned
            return NONE
        if feats["semantic"] >= self.topic_semantic or feats["window"] >= self.topic_window:
            return PARTIAL
        return NONE


class ExtractiveAnswerer:
    """Scores every sentence of the passages (terms + meaning), lets the judge decide, quotes the best."""

    mode = "extractive"

    def __init__(self, retriever: HybridRetriever, sentences: SentenceVectors, aligner: TokenAligner,
                 page_at: Callable[[str, int], int | None], config: ExtractiveConfig | None = None,
                 policy: SupportPolicy | None = None) -> None:
        self.retriever = retriever  # its loaded lexical index (IDF, names) and default top_k
        self.sentences = sentences
        self.aligner = aligner
        self.page_at = page_at
        self.config = config or ExtractiveConfig()
        self.policy = policy or SupportPolicy()

    def evidence(self, standalone: str, passages: list[Passage], vector: np.ndarray) -> Evidence:
        """Score every sentence of the passages (terms + meaning) and judge the best one."""
        found = self.rank(standalone, passages, vector)
        if found.features is not None:
            found.probability = self.policy.judge.probability(found.features)
        return found

    def rank(self, standalone: str, passages: list[Passage], vector: np.ndarray) -> Evidence:
        """The candidate sentences, best first, and the judge's features of the best (no probability yet)."""
        index = self.retriever.loaded_index
        profile = QuestionProfile.of(standalone, index)
        cands = candidates(passages)
        semantic = similarities(vector, self.sentences.of(cands))
        ranked = by_best_clause(score_candidates(profile, list(cands), self.config, semantic), vector,
                                self.sentences.of_texts, self.config)
        if not ranked or not profile.terms:
            return Evidence(profile, ranked, None, 0.0)
        # (worst-matched words, mean) of the best sentence: one model run. Taking the better of the
        # top two (round 2) cost a second run (~12 ms) and changed no cross-set decision figure
        # (benchmarks/RESULTS.md, "Latency: one alignment run").
        alignment = self.aligner.alignment(standalone, ranked[0].text)
        feats = features(standalone, profile, ranked, lambda c, after=True: window_text(cands, c, after), index,
                         alignment)
        return Evidence(profile, ranked, feats, 0.0)

    def _quoting(self, standalone: str, top_k: int | None) -> ExtractiveConfig:
        """How much to quote: reasons, positions and comparisons take several sentences (a lower bar
        for runners-up); asking for more passages (``--top-k``, "more evidence") raises the budget."""
        config = self.config
        if asks_for(standalone) == "reason" or spans_actors(standalone):
            config = replace(config, keep_ratio=min(config.keep_ratio, 0.3))
        default_k = self.retriever.config.top_k
        if top_k and top_k > default_k:
            config = replace(config, max_chars=int(config.max_chars * top_k / default_k),
                             max_sentences=min(10, max(config.max_sentences, top_k // 2)))
        return config

    def answer(self, request: AnswerRequest) -> Answer:
        """The best sentences of the passages, best first, each an exact citation; or what the sources
        do say (partial); or "The sources don't say" with the nearest evidence (see ``SupportPolicy``)."""
        question, standalone, top_k = request.question, request.standalone, request.top_k
        found = self.evidence(standalone, request.passages, request.vector)
        ranked, p = found.ranked, found.probability
        level = NONE if found.features is None else self.policy.level(p, found.features)
        if level == NONE:
            nearest = select(ranked, replace(self.config, keep_ratio=0.0, max_sentences=3))
            evidence = [to_citation(i, c, c.score, self.page_at(c.doc_id, c.start)) for i, c in enumerate(nearest, 1)]
            return Answer(question=question, text=f"{NOT_IN_SOURCES} — nothing in the indexed documents answers "
                          f"“{standalone}” closely enough to quote.", supported=False, evidence=evidence,
                          standalone_question=standalone, confidence=p, support_level=NONE)
        per_actor = spans_actors(standalone)
        chosen = select(ranked, self._quoting(standalone, top_k), per_actor=per_actor, question=standalone)
        citations = [to_citation(i, c, min(1.0, c.coverage + 0.5 * c.context), self.page_at(c.doc_id, c.start))
                     for i, c in enumerate(chosen, 1)]
        # several actors: one line per actor's sentence, each cited
        quoted = ("\n" if per_actor and len(citations) > 1 else " ").join(f"{c.quote} [{c.n}]" for c in citations)
        claims = [Claim(c.quote, (c.n,), c.support, True) for c in citations]
        if level == PARTIAL:
            lead = f"{NOT_IN_SOURCES} {missing(standalone, found.features or {})}. What they say:"
            return Answer(question=question, text=f"{lead} {quoted}", supported=False, citations=citations,
                          claims=claims, standalone_question=standalone, confidence=p, support_level=PARTIAL,
                          lead=lead)
        return Answer(question=question, text=quoted, supported=True, citations=citations, claims=claims,
                      standalone_question=standalone, confidence=p, support_level=ANSWERED)
