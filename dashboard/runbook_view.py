"""The runbook (docs/runbook.md) inside the app, so the forms' "Runbook" links land on their
section: every heading is drawn with the anchor ``core.changes.guide.anchor`` gives it.

The same page shows the few other guides staff follow from the app (``?doc=stripe-sync``,
``?doc=alerts``), so a link between those documents lands on a page the app serves instead of a
missing ``/stripe-sync.md``; a link to any other document is shown as its path, not as a link.
"""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from core.changes.guide import RUNBOOK_PAGE, anchor
from dashboard.text import md

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
RUNBOOK = DOCS_DIR / "runbook.md"
# ?doc= name -> file under docs/ (the runbook is the page's default)
GUIDES = {"runbook": "runbook.md", "stripe-sync": "stripe-sync.md", "alerts": "alerts.md"}
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([A-Za-z0-9_-]+)\.md(#[^)\s]*)?\)")


def doc_link(doc: str, heading: str | None = None) -> str:
    """The in-app address of a guide (and one of its headings)."""
    base = f"/{RUNBOOK_PAGE}" if doc == "runbook" else f"/{RUNBOOK_PAGE}?doc={doc}"
    return base + (f"#{anchor(heading)}" if heading else "")


def served_links(text: str) -> str:
    """Links to ``other.md#part`` pointed at the app's own copy; other documents named, not linked."""
    def one(m: re.Match[str]) -> str:
        label, name, part = m.group(1), m.group(2), m.group(3) or ""
        if name in GUIDES:
            return f"[{label}]({doc_link(name)}{part})"
        return f"{label} (docs/{name}.md)"
    return _MD_LINK.sub(one, text)


def sections(text: str) -> list[tuple[int, str, str]]:
    """(level, heading, body) for each heading of the markdown; level 0 for text before the first."""
    out: list[tuple[int, str, list[str]]] = [(0, "", [])]
    fenced = False  # a "# comment" inside a code block is not a heading
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 1 <= hashes <= 3 and line[hashes:hashes + 1] == " ":
            out.append((hashes, line[hashes + 1:].strip(), []))
        else:
            out[-1][2].append(line)
    return [(level, head, "\n".join(body).strip()) for level, head, body in out]


def render() -> None:
    doc = st.query_params.get("doc") or "runbook"
    if doc not in GUIDES:
        st.warning(f"There is no guide “{md(doc)}” in the app; here is the runbook.")
        doc = "runbook"
    try:
        text = (DOCS_DIR / GUIDES[doc]).read_text(encoding="utf-8")
    except OSError:
        st.error(f"The guide is missing from this installation (docs/{GUIDES[doc]}).")  # text-safe: a file name of ours
        return
    if doc != "runbook":
        st.caption(f"[← The runbook]({doc_link('runbook')})")  # text-safe: a link of our own
    for level, head, body in sections(served_links(text)):
        if level == 1:
            st.title(head, anchor=anchor(head))  # text-safe: our own guides (docs/)
        elif level == 2:
            st.header(head, anchor=anchor(head))  # text-safe: our own guides
        elif level == 3:
            st.subheader(head, anchor=anchor(head))  # text-safe: our own guides
        if body:
            st.markdown(body)  # text-safe: our own guides
