"""Layering rules, checked on the source: core/ never imports streamlit; pages hold no SQL or Stripe."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_streamlit():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "core").rglob("*.py")
                 if any(n == "streamlit" or n.startswith("streamlit.") for n in _imports(p))]
    assert offenders == []


def test_pages_hold_no_sql_and_no_stripe():
    forbidden = ("sqlalchemy", "stripe", "core.db", "core.models")
    offenders = []
    for p in (ROOT / "pages").rglob("*.py"):
        bad = [n for n in _imports(p) if n.startswith(forbidden)]
        if bad:
            offenders.append(f"{p.relative_to(ROOT)}: {bad}")
    assert offenders == []


def test_no_pages_folder_beside_the_entrypoint():
    # Streamlit would serve dashboard/pages/*.py without running the login (docs/security.md).
    assert not (ROOT / "dashboard" / "pages").exists()


def test_only_the_gateway_calls_stripe():
    allowed = {"core/stripe_gateway/", "core/sandbox/"}
    offenders = []
    for p in (ROOT / "core").rglob("*.py"):
        rel = str(p.relative_to(ROOT))
        if any(rel.startswith(a) for a in allowed):
            continue
        if any(n == "stripe" or n.startswith("stripe.") for n in _imports(p)):
            offenders.append(rel)
    assert offenders == []


def test_pages_name_registered_metrics_only():
    # The typed contract between the pages and the metrics: each number a page shows names one
    # registered metric; an unknown slug would leave a card or chart silently empty.
    from core.metrics import list_metrics
    from dashboard.metrics_data import PAGE_SLUGS

    registered = {m.slug for m in list_metrics()}
    assert sorted(set(PAGE_SLUGS) - registered) == []
