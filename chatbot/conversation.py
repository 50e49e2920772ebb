"""Follow-up questions without an LLM: a documented heuristic.

A question is a follow-up when it is short and elliptical ("and Tajikistan?", "what about the
canal?") or leans on a pronoun with no antecedent in the question itself ("who said that?",
"when did it happen?", "why did they do it?"). It is rewritten against the previous user
question:

- elliptical ("and X?" / "what about X?" / "how about X?"): the previous question with its
  main subject replaced by X when the previous question names one (a capitalised name), or
  else the previous question followed by X;
- pronoun-led: the question followed by the key words of the previous question and of the
  previous answer's first sentence, so retrieval lands on the same passages.
Anything else is taken as a standalone question.
"""
from __future__ import annotations

import re
from typing import Sequence

_ELLIPSIS = re.compile(r"^\s*(and|what about|how about|and what about|same for|also)\s+(?P<rest>.+?)\s*\??\s*$", re.I)
_PRONOUN = re.compile(r"\b(that|this|it|its|they|them|their|he|she|him|her|his|those|these|there)\b", re.I)
_NAME = re.compile(r"\b[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+)*")
_STOP_START = {"What", "Which", "Who", "Whom", "Whose", "When", "Where", "Why", "How", "Is", "Are", "Do", "Does",
               "Did", "Can", "The", "A", "An", "And", "In", "On", "Of"}


def _last_user_question(history: Sequence[tuple[str, str]]) -> str | None:
    for user, _ in reversed(list(history)):
        if user:
            return str(user).strip()
    return None


def _last_answer(history: Sequence[tuple[str, str]]) -> str:
    for _, bot in reversed(list(history)):
        if bot:
            return re.sub(r"\[\d+\]", "", str(bot)).strip()
    return ""


def _names(text: str) -> list[str]:
    names = []
    for m in _NAME.finditer(text):
        words = [w for w in m.group().split() if w not in _STOP_START]
        if words:
            names.append(" ".join(words))
    return names


def condense(question: str, history: Sequence[tuple[str, str]]) -> str:
    """Rewrite a follow-up as a standalone question (unchanged if it already stands alone)."""
    previous = _last_user_question(history)
    if not previous:
        return question
    m = _ELLIPSIS.match(question)
    if m and len(question.split()) <= 8:
        new_subject = m.group("rest").strip().rstrip("?")
        names = _names(previous)
        if names:
            # Replace the last-mentioned name of the previous question with the new subject.
            old = names[-1]
            i = previous.rfind(old)
            return previous[:i] + new_subject + previous[i + len(old):]
        return f"{previous.rstrip('?')} {new_subject}?"
    words = question.split()
    if len(words) <= 8 and _PRONOUN.search(question) and not _names(question):
        answer = _last_answer(history)
        first = re.split(r"(?<=[.!?])\s", answer, maxsplit=1)[0] if answer else ""
        return f"{question.rstrip('?')} ({previous.rstrip('?')}; {first})?".replace(" ()", "")
    return question
