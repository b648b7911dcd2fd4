"""Layering rules, checked on the source: core/ never imports streamlit; pages hold no SQL or Stripe."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


# A page is a few lines over the dashboard: its guard, then one call into a dashboard module.
PAGE_IMPORTS = ("dashboard", "core.permissions", "__future__")


def _page_imports_beyond(path: Path, allowed: tuple[str, ...]) -> list[str]:
    return sorted(n for n in _imports(path) if not any(n == a or n.startswith(a + ".") for a in allowed))


def test_pages_import_only_the_dashboard_and_permissions():
    offenders = {str(p.relative_to(ROOT)): bad for p in (ROOT / "pages").rglob("*.py")
                 if (bad := _page_imports_beyond(p, PAGE_IMPORTS))}
    assert offenders == {}


def test_pages_stay_thin():
    # The guard and one call: anything longer is a page growing its own logic again.
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "pages").rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 20}
    assert long == {}


def _caches(path: Path) -> bool:
    """True when a function of the module is decorated with ``st.cache_data`` or ``st.cache_resource``."""
    def cache(d: ast.expr) -> bool:
        d = d.func if isinstance(d, ast.Call) else d
        return isinstance(d, ast.Attribute) and d.attr in ("cache_data", "cache_resource")

    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(cache(d) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
               for d in node.decorator_list)


# One caching layer: the pages' data in dashboard/reads.py, the metrics registry's answers in
# dashboard/metrics_data.py, the engine and the Stripe client (resources, not data) in
# dashboard/db.py; what the analytics pages draw from those answers (figures, tables in words: no
# data of its own) in dashboard/render_cache.py. No page caches anything. (The Overview's cards are
# kept by the server for every session, in core.metrics.kept.)
CACHING_MODULES = {"dashboard/reads.py", "dashboard/metrics_data.py", "dashboard/db.py", "dashboard/render_cache.py"}


def test_page_data_is_cached_in_one_layer():
    cached = {str(p.relative_to(ROOT)) for pkg in ("pages", "dashboard") for p in (ROOT / pkg).rglob("*.py")
              if _caches(p)}
    assert cached <= CACHING_MODULES, sorted(cached - CACHING_MODULES)


def test_no_pages_folder_beside_the_entrypoint():
    # Streamlit would serve dashboard/pages/*.py without running the login (docs/security.md).
    assert not (ROOT / "dashboard" / "pages").exists()


def test_only_the_gateway_calls_stripe():
    allowed = {"core/stripe_gateway/", "stripe_sandbox/"}
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


# Tools beside the product: the sandbox and the demo generator serve development and tests, and
# the command line and the dashboard are edges. The product (core/) depends on none of them.
EDGES_AND_TOOLS = ("streamlit", "demo", "stripe_sandbox", "cli", "dashboard", "pages", "tests")


def _imports_any(path: Path, roots: tuple[str, ...]) -> list[str]:
    return sorted(n for n in _imports(path) if any(n == r or n.startswith(r + ".") for r in roots))


def test_core_holds_the_product_only():
    offenders = {str(p.relative_to(ROOT)): bad for p in (ROOT / "core").rglob("*.py")
                 if (bad := _imports_any(p, EDGES_AND_TOOLS))}
    assert offenders == {}


def test_tools_stay_out_of_the_dashboard():
    offenders = {str(p.relative_to(ROOT)): bad for pkg in ("demo", "stripe_sandbox")
                 for p in (ROOT / pkg).rglob("*.py")
                 if (bad := _imports_any(p, ("streamlit", "dashboard", "pages", "cli", "tests")))}
    assert offenders == {}


# The UI never holds a unit of work: every read and write is one call into core that owns its
# transaction. From SQLAlchemy the dashboard and pages may import the Engine type (to pass it on)
# and nothing else; from core.db only ``connect`` (which builds that engine); and no call may open a
# session, a connection or a transaction themselves.
_UI_SQLALCHEMY_NAMES = {"Engine"}
_UI_CORE_DB_NAMES = {"connect"}
_UI_OPENERS = {"Session", "sessionmaker", "scoped_session", "session_scope"}  # called by name
_UI_OPENING_METHODS = {"begin", "begin_nested", "connect", "raw_connection"}  # called as x.method()


def _opens_a_transaction(source: str) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            bad += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy" or a.name == "core.db"]
        elif isinstance(node, ast.ImportFrom) and node.module:
            allowed = (_UI_SQLALCHEMY_NAMES if node.module == "sqlalchemy" else _UI_CORE_DB_NAMES
                       if node.module == "core.db" else None)
            if node.module.startswith(("sqlalchemy", "core.db")):
                bad += [f"from {node.module} import {a.name}" for a in node.names
                        if allowed is None or a.name not in allowed]
        elif isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in _UI_OPENERS:
                bad.append(f"{f.id}(...) line {node.lineno}")
            elif isinstance(f, ast.Attribute) and (f.attr in _UI_OPENERS or f.attr in _UI_OPENING_METHODS):
                bad.append(f".{f.attr}(...) line {node.lineno}")
    return bad


def test_the_dashboard_never_opens_a_database_session():
    offenders = {str(p.relative_to(ROOT)): bad for pkg in ("dashboard", "pages") for p in sorted((ROOT / pkg).rglob("*.py"))
                 if (bad := _opens_a_transaction(p.read_text(encoding="utf-8")))}
    assert offenders == {}


def test_the_session_rule_catches_each_way_in():
    # The rule above is only as good as what it sees: each of these must be caught, the engine must not.
    for source in ("from sqlalchemy.orm import Session", "from core.db import session_scope", "import sqlalchemy.orm",
                   "from sqlalchemy import text", "with engine.begin() as conn: pass", "s = Session(engine)",
                   "with core.db.session_scope(e) as s: pass", "conn = engine().connect()"):
        assert _opens_a_transaction(source), source
    assert _opens_a_transaction("from sqlalchemy import Engine\nfrom core.db import connect\nconnect(s)") == []


def test_the_checks_see_the_code():
    # A wrong ROOT would make every rule above pass on an empty tree.
    assert (ROOT / "core" / "__init__.py").exists() and len(list((ROOT / "pages").glob("*.py"))) >= 10


def _imports_of_other_tests(source: str) -> list[str]:
    """What a module under tests/ imports from tests/ other than the support package: another test
    module, ``tests.conftest``, or a relative import (helpers are imported one way only:
    ``from tests.support.<module> import <name>``; fixtures are registered in tests/conftest.py)."""
    bad = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            bad.append("." * node.level + (node.module or ""))
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        for name in names:
            if name.split(".")[0] in ("tests", "conftest") and not name.startswith("tests.support."):
                bad.append(name)
    return bad


def test_no_test_module_imports_another_test_module_or_the_conftest():
    # Shared worlds, servers, payloads and steps live in tests/support; a test module importing
    # another one drags its tests (and fixtures) along and hides where a helper belongs.
    offenders = {str(p.relative_to(ROOT)): bad for p in (ROOT / "tests").rglob("*.py")
                 if (bad := _imports_of_other_tests(p.read_text(encoding="utf-8")))}
    assert offenders == {}
    # The rule sees what it forbids (else an empty answer above would prove nothing).
    assert _imports_of_other_tests("from tests.database.test_store import PM\nimport tests.conftest\n"
                                   "from .test_mapping import PRICE\nfrom tests.support.db import TEST_KEY\n"
                                   "from tests.support import factories as f\n"
                                   "def f():\n    from tests.conftest import PG_URL\n") == [
        "tests.database.test_store", "tests.conftest", ".test_mapping", "tests.support", "tests.conftest"]
