"""A TCP proxy on 127.0.0.1 that a drill can cut (as if the service behind it stopped) and
restore, or freeze (as if it were paused with SIGSTOP) and thaw, without touching the
machine's real PostgreSQL or Redis."""

import socket
import threading


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._flowing = threading.Event()  # cleared while frozen
        self._flowing.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        """Refuse and drop every connection, as a stopped server would."""
        self._up.clear()
        with self._lock:
            for sock in list(self._sockets):
                _close(sock)
            self._sockets.clear()

    def restore(self) -> None:
        self._up.set()

    def freeze(self) -> None:
        """Hold every byte, both ways, on open and new connections, as a paused server does:
        connections are accepted and stay open, and nothing is answered."""
        self._flowing.clear()

    def thaw(self) -> None:
        """Deliver what was held and carry on, as a paused server does when it resumes."""
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._flowing.set()  # pipes held by a freeze meet their closed sockets and end
        _close(self._listener)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                # Frozen: the bytes wait here and the rest in the kernel's buffers, unread.
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
