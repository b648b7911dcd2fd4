"""What the served app (``streamlit run dashboard/serve.py``, as ``make run`` serves it) answers to
anyone who is not signed in, over real HTTP: Streamlit's metrics endpoint is not there."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import streamlit

from tests.support.db import migrated_sqlite
from tests.support.servers import start_server, stop_server


def _status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_streamlit_s_metrics_endpoint_is_not_served(tmp_path: Path) -> None:
    server = start_server(tmp_path, database_url=migrated_sqlite(tmp_path / "memberdesk.db"))
    try:
        for path, method in (("/_stcore/metrics", "GET"), ("/_stcore/metrics", "OPTIONS"),
                             ("/_stcore/metrics/", "GET"), ("/_stcore/metrics?families=session_events", "GET"),
                             ("/_stcore/%6Detrics", "GET")):
            assert _status(server.url + path, method) == 404, (path, method)
        # what the server is for still answers, to anyone: Streamlit's fonts and icons under
        # /static/media/ too (a guard of downloads refused them, and icons showed as their names)
        media = Path(streamlit.__file__).parent / "static" / "static" / "media"
        fonts = [*media.glob("MaterialSymbols*.woff2"), *media.glob("SourceSans*.woff2")]
        assert fonts
        for font in fonts:
            assert _status(f"{server.url}/static/media/{font.name}") == 200, font.name
        assert _status(server.url + "/media/0123456789abcdef.csv") == 403  # a download needs its maker
        assert _status(server.url + "/_stcore/health") == 200
        assert _status(server.url + "/healthz") == 200
        assert _status(server.url + "/") == 200
    finally:
        stop_server(server.proc)
        server.engine.dispose()
