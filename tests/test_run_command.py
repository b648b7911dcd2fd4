"""`python -m core run` (what `make run` calls) stops the processes it started when it is told to
stop with a plain `kill`, as with Ctrl-C: a killed run must not leave the sandbox holding its port."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from core.settings import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_stops_the_sandbox_and_the_dashboard(tmp_path: Path) -> None:
    dash, sandbox = _free_port(), _free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
           "MEMBERDESK_ENCRYPTION_KEYS": "fEhmDxvhCpEu4b16boUlf95HY5t4RM5suyOSd3CeyC8=",
           "STRIPE_API_BASE": f"http://127.0.0.1:{sandbox}", "STRIPE_API_KEY": "sk_test_run_command",
           "MEMBERDESK_SANDBOX_STATE": str(tmp_path / "sandbox.db"),
           "MEMBERDESK_SECRETS_FILE": str(tmp_path / "absent.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "core", "run", "--port", str(dash), "--demo-members", "30"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (_listening(dash) and _listening(sandbox)):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the dashboard and the sandbox did not come up"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        deadline = time.monotonic() + 15
        while (_listening(dash) or _listening(sandbox)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _listening(sandbox), "the sandbox kept running after the run was stopped"
        assert not _listening(dash), "the dashboard kept running after the run was stopped"
    finally:
        if proc.poll() is None:
            proc.kill()
