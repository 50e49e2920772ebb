"""The brief as Markdown: every line ends with its [n] citations; the quotes follow at the end."""
from __future__ import annotations

from typing import Any, Mapping

from chatbot import types


def _cite(item: Mapping[str, Any]) -> str:
    return " ".join(f"[{n}]" for n in dict.fromkeys(item["citations"]))


def _quote_of(brief: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {q["n"]: q for q in brief["quotes"]}


def claim_text(claim: Mapping[str, Any]) -> str:
    """"Emomali Rahmon claims", "according to engineers in Astana", "believed"."""
    return types.claim_text(claim["verb"], claim.get("by"))


def _version(v: Mapping[str, Any]) -> str:
    said = f" (a claim: {claim_text(v['claim'])})" if v.get("claim") else ""
    return f"“{v['text']}”{said} {_cite(v)}"


def brief_markdown(brief: Mapping[str, Any]) -> str:
    quotes = _quote_of(brief)
    docs = brief["documents"]
    lines = ["# Onboarding brief", "",
             f"{len(docs)} document{'s' * (len(docs) != 1)}; generated {brief['generated_at']}. Every line cites "
             "exact passages of the stored documents; the quotes are listed at the end.", ""]
    lines += ["## Actors", ""]
    for kind, heading in (("state", "States"), ("organisation", "Organisations"), ("person", "People")):
        items = [a for a in brief["actors"] if a["kind"] == kind]
        if not items:
            continue
        lines += [f"### {heading}", ""]
        for a in items:
            aliases = ", ".join(f"{k} ×{v}" for k, v in a["aliases"].items() if k != a["name"])
            line = f"- **{a['name']}** — {a['mentions']} mention{'s' * (a['mentions'] != 1)} in " \
                   f"{len(a['documents'])} document{'s' * (len(a['documents']) != 1)}"
            if aliases:
                line += f" (also as {aliases})"
            cites = list(a["citations"])
            if a.get("affiliation"):
                line += f"; {a['affiliation']['role']} ({a['affiliation']['name']})"
                cites = a["affiliation"]["citations"] + cites
            lines.append(line + f" {_cite({'citations': cites})}")
            for m in a.get("linked", []):
                lines.append(f"  - {m['name']} — {m['role']} {_cite(m)}")
        lines.append("")
    themes = [t["name"] for t in brief["themes"]]
    if brief["positions"]:
        lines += ["## Positions and motives", "", "| actor | " + " | ".join(themes) + " |",
                  "| --- |" + " --- |" * len(themes)]
        for row in brief["positions"]:
            cells = [" ".join(_cite(q) for q in row["cells"].get(t, [])) or "—" for t in themes]
            lines.append(f"| {row['actor']} | " + " | ".join(cells) + " |")
        lines.append("")
        for row in brief["positions"]:
            lines += [f"### {row['actor']}", ""]
            for t in themes:
                for q in row["cells"].get(t, []):
                    n = q["citations"][0]
                    lines.append(f"- *{t}*: “{quotes[n]['quote']}” {_cite(q)}")
            lines.append("")
    if brief["timeline"]:
        lines += ["## Timeline", ""]
        for e in brief["timeline"]:
            label = e["label"]
            notes = []
            if e["resolved"]:
                notes.append(f"“{e['as_written']}”, resolved against {e['basis']}")
            if not e["year_stated"]:
                notes.append(f"year not stated; placed {e['placed']}")
            note = f" ({'; '.join(notes)})" if notes else ""
            lines.append(f"- **{label}**{note}: {quotes[e['citations'][0]]['quote']} {_cite(e)}")
        lines.append("")
    lines += ["## Where the sources disagree", ""]
    if brief["conflicts"]:
        for c in brief["conflicts"]:
            lines.append(f"- **{c['measure']}** ({c['scope']}): " + " vs ".join(_version(v) for v in c["versions"]))
    else:
        lines.append("No figure is given differently by the documents.")
    lines.append("")
    if brief["figures"]:
        lines += ["## Figures", ""]
        for f in brief["figures"]:
            what = f" — {f['measure']}" if f["measure"] else ""
            kind = "change" if f["change"] else f["kind"]
            lines.append(f"- {_version(f)} ({kind}){what}")
        lines.append("")
    lines += ["## Quotes", ""]
    for q in brief["quotes"]:
        where = f"doc `{q['doc_id']}`" + (f" ({q['file']})" if q.get("file") else "") + f", characters {q['start']}–{q['end']}"
        lines += [f"[{q['n']}] *{q['title']}*, {where}", ""] + ["> " + x if x else ">" for x in q["quote"].split("\n")] + [""]
    return "\n".join(lines)
