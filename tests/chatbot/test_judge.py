"""The answer-or-refuse judge: question analysis, features, the fitted model file, support levels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from chatbot.judge import (FEATURES, MODEL_FILE, Judge, asked_role, asked_times, asks_for, features, listed_only,
                           missing, question_names, role_supplied, supplies, time_mismatch, times)
from chatbot.answerer import ANSWERED, NONE, PARTIAL, SupportPolicy
from chatbot.types import Answer, QAError
from chatbot.settings import AnswerSettings
from ingest.store import StoredChunk
from ingest.records import encode_sentence_vectors, sentence_vectors_of
from ingest.types import Chunk


def test_what_the_question_asks_for():
    assert asks_for("How long is the railway between Termez and Mazar-i-Sharif?") == "number"
    assert asks_for("When did Tajikistan's Supreme Court lift its designation?") == "date"
    assert asks_for("In what year did the Normans conquer England?") == "date"
    assert asks_for("What is the Qosh Tepa canal's expected completion date?") == "date"
    assert asks_for("What was the year of the Battle of Hastings?") == "date"
    assert asks_for("What is the year-on-year growth of trade?") is None
    assert asks_for("Who is Turkmenistan's foreign minister?") == "person"
    assert asks_for("Where is the consulate?") == "place"
    assert asks_for("Why does Afghanistan depend on Uzbekistan?") == "reason"
    assert asks_for("What drives Central Asian engagement?") == "reason"
    assert asks_for("Which company is building the Qosh Tepa canal?") == "entity"
    assert asks_for("What is Uzbekistan's approach to the Taliban?") is None


def test_the_sentence_must_supply_something_new_of_that_kind():
    q = "How long is the railway between Termez and Mazar-i-Sharif?"
    assert not supplies("number", "A railroad links Termez to Mazar-i-Sharif via Hairatan.", q)
    assert supplies("number", "The railway is 75 kilometres long.", q)
    assert not supplies("date", "The court ruled against the Taliban.", "When did the court rule?")
    assert supplies("date", "The court ruled in 2006.", "When did the court rule?")
    who = "Who offered sanctuary to Ahmad Massoud?"
    assert supplies("person", "Rahmon has offered sanctuary to Ahmad Massoud.", who)
    assert not supplies("person", "Sanctuary was offered to Ahmad Massoud.", who)
    assert supplies("reason", "anything", "Why?") and supplies(None, "anything", "What?")


def test_the_role_whose_holder_a_question_asks_for():
    assert asked_role("Who is Turkmenistan's foreign minister?") == "minist"
    assert asked_role("Who is the foreign minister of Uzbekistan?") == "minist"
    assert asked_role("What is the name of the Taliban’s ambassador to Kazakhstan?") == "ambassador"
    assert asked_role("Who is the president of Tajikistan?") == "presid"
    assert asked_role("Who is Aibek Smadiyarov?") is None  # a name, not a role
    assert asked_role("Who was Emma's brother?") is None  # past tense: a narrative's relation
    assert asked_role("Who is the report written for?") is None  # a verb
    assert asked_role("What is Uzbekistan's approach to the Taliban?") is None
    q = "Who is the foreign minister of Uzbekistan?"
    assert not role_supplied("Aibek Smadiyarov, a spokesperson for the Kazakh foreign ministry, said so.", q, "minist")
    assert role_supplied("Uzbek Foreign Minister Bakhtiyor Saidov met them.", q, "minist")
    assert not role_supplied("The foreign minister of Uzbekistan met them.", q, "minist")  # nobody named
    assert role_supplied("The ambassador is Ahmad Khan.", "What is the name of the ambassador?", "ambassador")


def test_question_names_and_numbers():
    assert question_names("Who gave their name to Normandy in the 1000's?") == {"normandy", "1000"}
    assert question_names("What is Kazakhstan’s official line?") == {"kazakhstan"}


class _Cand:
    def __init__(self, text, score, coverage=0.5, semantic=0.5):
        self.text, self.score, self.coverage, self.semantic = text, score, coverage, semantic


class _Profile:
    terms = {"railway": 2.0, "long": 3.0}
    absent = 0.0
    kind = None


class _Index:
    def idf(self, term):
        return 4.0

    def contains(self, term):
        return term in {"railway", "termez", "long"}


def test_features_describe_the_best_sentence():
    ranked = [_Cand("The railway links Termez to Mazar-i-Sharif.", 1.0, 0.4, 0.6), _Cand("Other.", 0.4, 0.0, 0.1)]
    f = features("How long is the railway to Termez?", _Profile(), ranked, lambda c, after=True: "Title\n" + c.text,
                 _Index(), (0.7, 0.8))
    assert set(f) == set(FEATURES)
    assert f["type_gap"] == 1.0  # asks for a number, the sentence has none
    assert f["window"] == pytest.approx(0.4) and f["rare_missing"] == pytest.approx(0.75)
    assert f["names_missing"] == 0.0 and f["margin"] == pytest.approx(0.6)
    assert f["semantic_max"] == 0.6 and f["alignment"] == 0.7 and f["alignment_mean"] == 0.8
    assert f["names_unknown"] == 0.0 and f["type_gap_top"] == 1.0
    g = features("How long is the TAPI pipeline?", _Profile(), ranked, lambda c, after=True: c.text, _Index(),
                 (0.2, 0.3))
    assert g["names_unknown"] == 1.0


def test_a_name_given_only_as_an_item_of_a_list_is_not_talked_about():
    hosts = ("“Let me remind you that such missions are already present in a number of countries – Uzbekistan, "
             "Turkmenistan, Kyrgyzstan, Russia, China, Qatar, the UAE”, he said.")
    border = "Three Central Asian countries—Turkmenistan, Uzbekistan, and Tajikistan—border Afghanistan."
    assert listed_only(["china", "taliban"], [hosts])  # "What did China's foreign ministry say …?"
    assert listed_only(["turkmenistan"], [border, "Afghanistan is a market."])
    assert not listed_only(["china"], [hosts, "China said it would not recognise the Taliban."])
    assert not listed_only(["afghanistan"], [border])  # what the list is about
    assert not listed_only(["kyrgyzstan"], ["Kyrgyzstan and Turkmenistan each have a sixth of its population."])
    # … but it gives no view or motive of either: "How does Kyrgyzstan see the Taliban?"
    assert listed_only(["kyrgyzstan"], ["Kyrgyzstan and Turkmenistan each have a sixth of its population."], pairs=True)
    assert not listed_only(["tajikistan"], ["Nothing here names it."])  # not mentioned: other rules decide
    ranked = [_Cand(hosts, 1.0, 0.4, 0.6), _Cand(border, 0.4, 0.0, 0.1)]
    f = features("What did China's foreign ministry say about the envoys?", _Profile(), ranked,
                 lambda c, after=True: c.text, _Index(), (0.7, 0.8))
    assert f["names_listed_only"] == 1.0


def test_the_shipped_model_is_readable_and_monotone_where_it_should_be():
    raw = json.loads(MODEL_FILE.read_text())
    assert raw["command"].startswith("python benchmarks/train_judge.py")
    judge = Judge.load()
    assert set(judge.names) <= set(FEATURES) and len(judge.coef) == len(judge.names)
    base = {name: m for name, m in zip(judge.names, judge.mean)} | {k: 0.0 for k in FEATURES if k not in judge.names}
    p0 = judge.probability(base)
    assert 0.0 < p0 < 1.0
    if "alignment" in judge.names:  # better-matched question words: more likely answered
        assert judge.probability({**base, "alignment": base["alignment"] + 0.2}) > p0
    if "type_gap" in judge.names:  # the asked-for number/date/name is missing: less likely
        assert judge.probability({**base, "type_gap": 1.0}) < judge.probability({**base, "type_gap": 0.0})


def test_support_levels_and_settings():
    policy = SupportPolicy(threshold=0.5, topic_semantic=0.45, topic_window=0.6)
    assert policy.level(0.7, {"semantic": 0.1, "window": 0.0}) == ANSWERED
    assert policy.level(0.3, {"semantic": 0.5, "window": 0.0}) == PARTIAL
    assert policy.level(0.3, {"semantic": 0.2, "window": 0.7}) == PARTIAL
    assert policy.level(0.3, {"semantic": 0.2, "window": 0.2}) == NONE
    assert policy.level(0.9, {"semantic": 0.9, "window": 0.9, "type_gap_top": 1.0}) == PARTIAL
    assert policy.level(0.9, {"semantic": 0.9, "window": 0.9, "names_unknown": 1.0}) == NONE
    assert policy.level(0.9, {"semantic": 0.9, "window": 0.9, "names_listed_only": 1.0}) == PARTIAL
    assert policy.level(0.9, {"semantic": 0.9, "window": 0.9, "time_mismatch": 1.0}) == PARTIAL
    answer = AnswerSettings.from_env({"QA_ANSWER_THRESHOLD": "0.7", "QA_TOPIC_SEMANTIC": "0.3"})
    assert SupportPolicy(**answer.policy_values()).threshold == 0.7
    assert SupportPolicy(**answer.policy_values()).topic_semantic == 0.3
    assert SupportPolicy(**AnswerSettings.from_env({}).policy_values()) == SupportPolicy()
    with pytest.raises(QAError, match="QA_ANSWER_THRESHOLD"):
        AnswerSettings.from_env({"QA_ANSWER_THRESHOLD": "high"})
    with pytest.raises(QAError, match="threshold"):
        SupportPolicy(threshold=1.5)


def test_support_level_in_json_defaults_from_supported():
    assert Answer("q", "t", True).to_json()["support_level"] == "answered"
    assert Answer("q", "t", False).to_json()["support_level"] == "none"
    assert Answer("q", "t", False, support_level="partial").to_json()["support_level"] == "partial"


def test_sentence_vectors_round_trip_through_chunk_metadata():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    spans = ((0, 10), (11, 20), (21, 30))
    stored = StoredChunk(Chunk("c", "d", 0, 30, "x" * 30, spans), "t", {"svec": encode_sentence_vectors(v)})
    back = sentence_vectors_of(stored)
    assert list(back) == list(spans)
    assert min(float(back[s] @ v[i]) for i, s in enumerate(spans)) > 0.999
    assert sentence_vectors_of(StoredChunk(Chunk("c", "d", 0, 30, "x" * 30, spans), "t", {})) == {}


def test_how_much_asks_for_an_amount_of_the_thing_or_of_money():
    cost = "How much does the Qosh Tepa canal cost?"
    assert not supplies("number", "The Taliban is moving ahead with the 285-kilometre Qosh Tepa canal.", cost)
    assert supplies("number", "The canal will cost 684 million US dollars.", cost)
    wheat = "How much wheat does Kazakhstan export to Afghanistan?"
    assert supplies("number", "Kazakhstan exported 2 million tonnes of wheat to Afghanistan.", wheat)
    assert not supplies("number", "Over 40 trucks crossed; Kazakhstan also exports wheat.", "How much flour does it ship?")


def test_a_length_answers_only_a_question_about_a_length():
    canal = "To irrigate farms, the Taliban is building the 285-kilometre Qosh Tepa canal to divert water."
    assert not supplies("number", canal, "How much water will the Qosh Tepa canal divert?")
    assert supplies("number", canal, "How long will the Qosh Tepa canal be?")
    assert supplies("number", canal, "What is the length of the Qosh Tepa canal?")
    volume = "The canal will divert 10 cubic kilometres of water a year."
    assert supplies("number", volume, "How much water will the Qosh Tepa canal divert?")


def test_a_figure_counts_only_about_what_the_question_names():
    """type_gap_top: the sentence giving the figure, or the one before it, must name the question's
    names (a state also by its capital or demonym); the sentence after it does not count."""
    q = "How many fighters are in the provinces along the Uzbek border?"
    figure = _Cand("Some 4,000 fighters are believed to be in provinces that border Tajikistan.", 1.0)
    before = "Title\nAn estimated 6,500 fighters are in Afghanistan."

    def window():
        return lambda c, after=True: before + "\n" + c.text + ("\nUzbekistan Railways built a line." if after else "")

    assert features(q, _Profile(), [figure], window(), _Index(), (0.5, 0.5))["type_gap_top"] == 1.0
    assert features(q.replace("Uzbek", "Tajik"), _Profile(), [figure], window(), _Index(),
                    (0.5, 0.5))["type_gap_top"] == 0.0
    by_capital = "How many fighters are in the provinces near Dushanbe?"
    assert features(by_capital, _Profile(), [figure], window(), _Index(), (0.5, 0.5))["type_gap_top"] == 0.0
    before = "Title\nUzbek officials counted the fighters."  # named in the sentence before: counts
    assert features(q, _Profile(), [figure], window(), _Index(), (0.5, 0.5))["type_gap_top"] == 0.0


def test_names_are_grouped_so_one_known_word_makes_a_name_known():
    from chatbot.judge import name_groups

    assert name_groups("When did the Soviet Union invade Afghanistan in 1979?") == ["soviet union", "afghanistan",
                                                                                   "1979"]
    assert name_groups("When will the TAPI gas pipeline be finished?") == ["tapi"]


def test_train_judge_reports_which_part_of_the_policy_refuses(monkeypatch):
    """benchmarks/train_judge.py's ``refusals``: a rule refuses whatever the probability; the
    probability alone refuses only where no rule does; AUCs are over the questions no rule refuses."""
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks"
    monkeypatch.syspath_prepend(str(bench))
    monkeypatch.delitem(sys.modules, "train_judge", raising=False)
    import train_judge

    base = {"type_gap_top": 0.0, "names_unknown": 0.0, "names_listed_only": 0.0, "alignment": 0.5,
            "semantic_max": 0.5, "type_gap": 0.0}
    rows = [
        {"label": 0, "p": 0.9, "features": {**base, "type_gap_top": 1.0}},  # rule
        {"label": 0, "p": 0.1, "features": {**base, "names_unknown": 1.0}},  # rule, though p is low too
        {"label": 0, "p": 0.1, "features": {**base, "alignment": 0.2}},  # probability alone
        {"label": 1, "p": 0.2, "features": {**base, "alignment": 0.9}},  # answerable, refused by p
        {"label": 1, "p": 0.8, "features": {**base, "alignment": 0.7}},
    ]
    out = train_judge.refusals({"set": rows}, threshold=0.3)["set"]
    assert out["refused_by_rule"] == {"unanswerable": 2, "answerable": 0}
    assert out["refused_by_probability_only"] == {"unanswerable": 1, "answerable": 1}
    assert out["unanswerable"] == 3
    assert out["auc_where_no_rule_refuses"]["alignment"] == 1.0  # 0.9 and 0.7 above 0.2


def test_times_are_read_as_spans_of_years_in_text_order():
    assert times("In 1072, in the 1060s and in the 10th century") == [(1072, 1072), (1060, 1069), (900, 1000)]
    assert times("the 10th and 11th centuries; the eleventh century; the 900s; the 1000's") == [
        (900, 1100), (1000, 1100), (900, 999), (1000, 1099)]
    assert times("1,160,000 square miles for $1500 and 2.5 million") == []


def test_only_a_time_that_dates_what_is_asked_counts():
    assert asked_times("Who invaded Scotland in the 10th century?") == [(900, 1000)]
    assert asked_times("What happened in 1107 during the 12th century?") == [(1107, 1107), (1100, 1200)]
    assert asked_times("How did trade change after the 2021 takeover?") == []  # a bound, a name
    assert asked_times("Which club won the 2022 Afghan league?") == []
    assert asked_times("Who lives in the city in Normandy?") == []
    assert asked_times("Who ruled Sicily in the 11th and 12th centuries?") == [(1000, 1200)]
    assert asked_times("What will happen in 5 years, by 2030?") == []  # "5" is no time


def test_evidence_dated_otherwise_is_another_occasion():
    q = "Who invaded Scotland in the 10th century?"
    asked = asked_times(q)
    assert time_mismatch(asked, "William invaded Scotland in 1072, riding as far as Abernethy.")
    assert not time_mismatch(asked, "Scotland was invaded in 934 and again in the 10th century's last years.")
    assert not time_mismatch(asked, "William invaded Scotland, riding as far as Abernethy.")  # no time: can't tell
    assert not time_mismatch(asked_times("Who invaded Scotland after 1000?"), "William invaded Scotland in 1072.")
    one = _Cand("William invaded Scotland in 1072.", 1.0)
    other = _Cand("In the 10th century the Scots were invaded.", 0.9)

    def mismatch(ranked):
        return features(q, _Profile(), ranked, lambda c, after=True: "Title\n" + c.text, _Index(),
                        (0.5, 0.5))["time_mismatch"]

    assert mismatch([one]) == 1.0
    assert mismatch([one, other]) == 0.0  # a top sentence dated as asked


def test_a_partial_answer_says_what_is_missing():
    gap = {"type_gap_top": 1.0}
    assert missing("How long is the railway between Termez and Mazar-i-Sharif?", gap) == "how long"
    assert missing("When will the Qosh Tepa canal be completed?", gap) == "when"
    assert missing("What is the Qosh Tepa canal's annual volume?", gap) == "the Qosh Tepa canal's annual volume"
    trade = "What is Kyrgyzstan's annual trade volume with Afghanistan?"
    assert missing(trade, gap) == "Kyrgyzstan's annual trade volume"
    assert missing("Who is Turkmenistan's foreign minister?", gap) == "who that is"
    assert missing("What share of the world's opium comes from Afghanistan?", gap) == "the figure asked for"
    assert missing("Who invaded Scotland in the 10th century?", {"time_mismatch": 1.0}) == (
        "that in the 10th century; they give other dates")
    assert missing("What did China's foreign ministry say?", {"names_listed_only": 1.0}).startswith("that: ")
    assert missing("What came out of the talks?", {}) == "exactly that"  # the probability alone
