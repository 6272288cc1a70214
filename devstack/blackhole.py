"""A backend that accepts TCP connections and never answers: the failure a timeout is for."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


def _serve(listener: socket.socket, done: threading.Event) -> None:
    # Accepted and read, never written to: a client's request is taken in full (its send never
    # blocks) and then waits for an answer that does not come.
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    held: list[socket.socket] = []
    try:
        while not done.is_set():
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is listener:
                    try:
                        connection, _ = listener.accept()
                    except BlockingIOError:  # the client left before it was accepted
                        continue
                    connection.setblocking(False)
                    held.append(connection)
                    selector.register(connection, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:  # the client gave up
                    selector.unregister(sock)
                    held.remove(sock)
                    sock.close()
    finally:
        selector.close()
        for connection in held:
            connection.close()


@contextmanager
def hanging_server(backlog: int = 1024) -> Iterator[int]:
    """A loopback port that accepts and never answers, for as long as the `with` block runs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    listener.setblocking(False)
    done = threading.Event()
    thread = threading.Thread(target=_serve, args=(listener, done), name="hanging-server", daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        done.set()
        thread.join()
        listener.close()
