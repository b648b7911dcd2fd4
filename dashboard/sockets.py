"""Small messages leave at once: Nagle's algorithm off (TCP_NODELAY) on every connection.

Streamlit 1.67 binds its listening socket itself, as ``socket.socket(family=...)``: protocol number
0. asyncio turns Nagle's algorithm off only on connections whose socket says ``IPPROTO_TCP``
(``asyncio.base_events._set_nodelay``), so every websocket of the dashboard kept it on. After a
run's first message went out, the next small ones waited for the browser's acknowledgement, which
a browser delays by up to 40 ms on Linux (up to 200 ms on Windows): every page, light or heavy,
arrived about 40 ms after its run had ended, all its elements at once (docs/benchmarks.md).

Linux and the BSDs copy TCP_NODELAY from a listening socket to each connection it accepts, so
``nodelay_on_listening_sockets()``, called once at start-up (``dashboard/serve.py``'s lifespan, when
the socket is bound and nothing is accepted yet), covers every connection the server will take.
"""

from __future__ import annotations

import os
import socket

_FD_DIRS = ("/proc/self/fd", "/dev/fd")  # Linux; macOS and the BSDs


def nodelay_on_listening_sockets() -> int:
    """Set TCP_NODELAY on every listening TCP socket of this process; how many there were."""
    done = 0
    for fd in _open_fds():
        sock = _socket_of(fd)
        if sock is None:
            continue
        with sock:  # a duplicate of the descriptor: closing it leaves the server's socket open
            if (sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
                    and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                done += 1
    return done


def _open_fds() -> list[int]:
    for folder in _FD_DIRS:
        try:
            return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
        except OSError:
            continue
    return []


def _socket_of(fd: int) -> socket.socket | None:
    """A socket object on a duplicate of ``fd``, or None when ``fd`` is no socket (or is gone)."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        return socket.socket(fileno=dup)
    except OSError:
        os.close(dup)
        return None
