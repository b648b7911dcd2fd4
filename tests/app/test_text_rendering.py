"""Every string from Stripe, a member or a staff member is shown as text (dashboard.text).

- The helper itself: hostile strings come out as escaped markdown / entity-escaped chart labels.
- An architecture rule: every argument of a Streamlit call that renders markdown is a constant,
  a number or date formatted by ``dashboard.format``, or passed through ``text.md``.
- AppTest renders hostile names, notes, Stripe strings and staff names on the member page,
  search results, the worklists and the audit log; the page holds them as escaped text.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import StaffAccount
from dashboard.text import WORD_JOINER, chart, md

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ['**bold** [x](http://evil)', '=HYPERLINK("http://evil","x")', "<b>x</b>", "`tick`", "$math$",
           ":red[x] :smile:", "# heading", "1. item", "- item", "ann@evil.example www.evil.example"]

# Streamlit calls whose text arguments are rendered as markdown.
MARKDOWN_CALLS = {"title", "header", "subheader", "markdown", "caption", "write", "info", "warning", "error",
                  "success", "toast", "expander", "tabs", "metric", "page_link", "status", "popover",
                  "link_button", "button", "radio", "form_submit_button", "checkbox", "toggle"}
SAFE_CALLS = {"md", "len", "int", "round"}
SAFE_FMT = {"money", "count", "percent", "when", "day", "when_in"}


def _safe(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        spec = node.format_spec
        numeric = spec is not None and all(isinstance(v, ast.Constant) and any(ch in str(v.value) for ch in ",dfe%")
                                           for v in spec.values)
        return numeric or _safe(node.value)
    if isinstance(node, ast.Call):
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        return name in SAFE_CALLS or (owner == "fmt" and name in SAFE_FMT)
    if isinstance(node, ast.BinOp):
        return _safe(node.left) and _safe(node.right)
    if isinstance(node, ast.IfExp):
        return _safe(node.body) and _safe(node.orelse)
    if isinstance(node, ast.List | ast.Tuple):
        return all(_safe(e) for e in node.elts)
    if isinstance(node, ast.ListComp):
        return _safe(node.elt)
    return False


def _modules(tree: ast.AST) -> set[str]:
    """Names a file imports other than ``st``: ``metrics_data.title(...)`` is no Streamlit call."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(a.asname or a.name.split(".")[0] for a in node.names)
    return names - {"st"}


def unescaped_markdown_arguments() -> list[str]:
    offenders = []
    for folder in ("dashboard", "pages"):
        for p in sorted((ROOT / folder).rglob("*.py")):
            rel = str(p.relative_to(ROOT))
            tree = ast.parse(p.read_text(encoding="utf-8"))
            modules = _modules(tree)
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in MARKDOWN_CALLS):
                    continue
                if isinstance(node.func.value, ast.Name) and node.func.value.id in modules:
                    continue
                args = list(node.args[:1]) + [k.value for k in node.keywords if k.arg in {"label", "body"}]
                if node.func.attr == "page_link":
                    args = [k.value for k in node.keywords if k.arg == "label"]
                if node.func.attr == "radio":
                    args = list(node.args[:1])
                bad = [a for a in args if not _safe(a)]
                if bad and not _allowed(p, node):
                    offenders.append(f"{rel}:{node.lineno} {node.func.attr}({ast.unparse(bad[0])[:60]})")
    return offenders


def _allowed(path: Path, node: ast.Call) -> bool:
    """A call may say why its argument is already safe: ``# text-safe: <reason>`` on its line."""
    lines = path.read_text(encoding="utf-8").splitlines()[node.lineno - 1:node.end_lineno]
    return any("# text-safe:" in line for line in lines)


def test_every_markdown_argument_is_a_constant_a_formatted_number_or_escaped():
    assert unescaped_markdown_arguments() == []


def test_md_escapes_everything_markdown_and_streamlit_would_format():
    out = md('**bold** [x](http://evil) <b>x</b> `t` $m$ :red[x] ~s~ _e_ &amp; \\ # ! | {}')
    unescaped = re.sub(r"\\.", "", out)  # what is left once every backslash escape is taken out
    assert not set(unescaped) & set("*[]<>`$:~_&\\")  # with [ ] escaped, ( ) ! { } | mean nothing
    assert md("1. item") == "1\\. item" and md("- item") == "\\- item" and md("# h") == "\\# h"
    assert md("a\n\n# b\x00") == "a # b"  # one line (so no heading), no NUL


def test_md_breaks_the_autolink_patterns_without_visible_change():
    out = md("http://evil.example www.evil.example ann@evil.example HTTPS://x.example")
    assert out.replace(WORD_JOINER, "") == "http\\://evil.example www.evil.example ann@evil.example HTTPS\\://x.example"
    assert out.count(WORD_JOINER) == 4


def test_chart_labels_are_entities_not_markup():
    assert chart('<a href="http://evil">x</a> & <b>') == '&lt;a href="http://evil"&gt;x&lt;/a&gt; &amp; &lt;b&gt;'


# ------------------------------------------------------------------ hostile data on real pages

NAME = '**Mal** [x](http://evil.example) <b>x</b> `t` $m$ :red[r]'
CODE = "**card** [declined](http://evil.example)"
NOTE = '=HYPERLINK("http://evil.example","x") **n**'
STAFF = "**Eve** [admin](http://evil.example)"
TYPED = "[x](http://e.io)"  # typed into the audit log's member filter (max 18 characters)


INPUTS = {"TextInput", "TextArea", "NumberInput", "DateInput", "Selectbox", "Multiselect", "SelectSlider"}


def _raw(at) -> str:
    """The markdown source of everything on the page that Streamlit renders as markdown."""
    parts: list[str] = []
    for block in (at.main, at.sidebar):
        for el in block:
            if type(el).__name__ in INPUTS:  # what a person typed is a value, not markdown
                continue
            for attr in ("value", "label"):
                v = getattr(el, attr, None)
                if isinstance(v, str):
                    parts.append(v)
            proto = getattr(el, "proto", None)
            for attr in ("label", "body"):
                v = getattr(proto, attr, None) if proto is not None else None
                if isinstance(v, str):
                    parts.append(v)
    return "\n".join(parts)


def _assert_literal(at, *hostile: str) -> None:
    from dashboard.text import shown

    raw = _raw(at)
    for h in hostile:
        assert h not in raw, f"rendered as markdown: {h!r}"  # never reaches markdown verbatim ...
        assert " ".join(h.split()) in shown(raw), f"not on the page as text: {h!r}"  # ... but shows as itself


@pytest.fixture
def hostile(database_url, engine):
    from core.models import Invoice, Member, StaffNote, Subscription
    from tests.support.factories import at, make_payment
    from tests.support.worlds import build_small_world, create_staff

    create_staff(engine, extra={"eve": "manager"})
    with Session(engine, expire_on_commit=False) as s:
        world = build_small_world(s)
        bob = s.get(Member, world.bob_id)
        bob.name = NAME
        # Bob's open renewal invoice, declined with a code a card network never sends
        sub = s.scalar(select(Subscription).where(Subscription.member_id == bob.id))
        inv = Invoice(stripe_invoice_id="in_BOBOPEN", member_id=bob.id, subscription_id=sub.id, status="open",
                      currency="EUR", total=19900, amount_due=19900, amount_remaining=19900, attempt_count=1,
                      created_at=at("2026-11-10 00:00"))
        s.add(inv)
        s.flush()
        make_payment(s, member=bob, amount=19900, currency="EUR", status="failed", created_at=at("2026-11-10 00:00"),
                     invoice_id=inv.id, decline_code=CODE)
        s.add(StaffNote(member_id=world.bob_id, author="support", body=NOTE))
        s.get(StaffAccount, s.scalar(select(StaffAccount.id).where(StaffAccount.username == "eve"))).name = STAFF
        s.commit()
    return database_url, world


def test_hostile_member_name_on_the_member_page_and_in_search_results(hostile):
    from tests.support.apptest import app_test

    database_url, world = hostile
    at = app_test(database_url, username="eve", roles=["manager"])
    at.session_state["name"] = STAFF
    at.run()
    at.switch_page("../pages/members.py").run()
    at.text_input(key="member_search").input("bob.stone").run()
    assert not at.exception
    _assert_literal(at, NAME, STAFF)  # the result's page link, and who is signed in
    at.query_params["member"] = str(world.bob_id)
    at.run()
    assert not at.exception
    _assert_literal(at, NAME)
    assert at.title[0].value.startswith("👤 \\*\\*Mal\\*\\*")
    notes = [df.value for df in at.dataframe if "Body" in df.value.columns or "Note" in df.value.columns]
    assert any(NOTE in frame.to_string() for frame in notes) or any(NOTE in str(df.value.values) for df in at.dataframe)


def test_hostile_decline_code_on_the_past_due_worklist(hostile):
    from tests.support.apptest import page_app_test

    database_url, _ = hostile
    at = page_app_test(database_url, "failed_payments.py", role="manager")
    at.default_timeout = 60
    at.run()
    assert not at.exception
    from dashboard.text import shown

    assert any(shown(e.label).startswith(CODE) for e in at.expander)  # the worklist's group
    _assert_literal(at, CODE)


def test_hostile_filter_text_and_staff_name_on_the_audit_log(hostile):
    from tests.support.apptest import app_test

    database_url, _ = hostile
    at = app_test(database_url, username="eve", roles=["manager"])
    at.session_state["name"] = STAFF
    at.run()
    at.switch_page("../pages/audit.py").run()
    at.text_input(key="audit_member").input(TYPED)
    at.button(key="FormSubmitter:audit_filters-Apply filters").click().run()
    assert not at.exception
    _assert_literal(at, TYPED, STAFF)
    assert "is not a member id" in at.error[0].value
