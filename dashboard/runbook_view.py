"""The runbook (docs/runbook.md) inside the app, so the forms' "Runbook" links land on their
section: every heading is drawn with the anchor ``core.changes.guide.anchor`` gives it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.changes.guide import anchor

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"


def sections(text: str) -> list[tuple[int, str, str]]:
    """(level, heading, body) for each heading of the markdown; level 0 for text before the first."""
    out: list[tuple[int, str, list[str]]] = [(0, "", [])]
    for line in text.splitlines():
        hashes = len(line) - len(line.lstrip("#"))
        if 1 <= hashes <= 3 and line[hashes:hashes + 1] == " ":
            out.append((hashes, line[hashes + 1:].strip(), []))
        else:
            out[-1][2].append(line)
    return [(level, head, "\n".join(body).strip()) for level, head, body in out]


def render() -> None:
    try:
        text = RUNBOOK.read_text(encoding="utf-8")
    except OSError:
        st.error("The runbook file is missing from this installation (docs/runbook.md).")
        return
    for level, head, body in sections(text):
        if level == 1:
            st.title(head, anchor=anchor(head))  # text-safe: our own runbook (docs/runbook.md)
        elif level == 2:
            st.header(head, anchor=anchor(head))  # text-safe: our own runbook
        elif level == 3:
            st.subheader(head, anchor=anchor(head))  # text-safe: our own runbook
        if body:
            st.markdown(body)  # text-safe: our own runbook
