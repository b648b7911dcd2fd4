"""The server's connections send small messages at once (dashboard/sockets.py): a listening
socket bound as Streamlit binds it (protocol number 0, which asyncio leaves with Nagle's algorithm
on) hands out connections with TCP_NODELAY once the start-up has run."""

import socket

from dashboard.sockets import nodelay_on_listening_sockets


def _nodelay_of_a_connection_to(listener: socket.socket) -> int:
    with socket.create_connection(listener.getsockname()) as client:
        accepted, _ = listener.accept()
        with client, accepted:
            return accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_connections_accepted_after_start_up_have_nagle_off():
    with socket.socket(family=socket.AF_INET) as listener:  # as streamlit's _bind_socket makes it
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert listener.proto == 0  # why asyncio does not set TCP_NODELAY itself
        assert _nodelay_of_a_connection_to(listener) == 0
        assert nodelay_on_listening_sockets() >= 1
        assert _nodelay_of_a_connection_to(listener) == 1


def test_other_descriptors_are_left_alone_and_stay_open(tmp_path):
    with (tmp_path / "f").open("w") as f, socket.socket() as unbound:
        nodelay_on_listening_sockets()
        f.write("still open")  # the file and the socket were only looked at through duplicates
        assert unbound.fileno() >= 0
        assert unbound.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
