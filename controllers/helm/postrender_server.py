"""The post-render fork server: each post-render in a process of its own, without an interpreter's
start-up each time.

Helm runs a post-renderer as a process per install or upgrade. A Python process that imports PyYAML
costs about 30 ms of CPU before it reads a byte; at flux-benchmark's concurrency that was a fifth of
the helm controller's CPU. So Helm's process is the relay (postrender_relay.py: `_socket` only,
about 8 ms), and the work is done here: this server, started once by the engine with json, PyYAML
and the plugin's code imported, forks a child per connection. The child renders (the plugin's own
`main`, stdin and stdout being the connection), answers and exits, so a hostile chart's YAML still
has an address space of its own, as with a process per install.

Protocol on a Unix socket in the engine's private directory: the relay sends the spec path and a
newline, then the manifests, then shuts its side down; the child answers one status byte (`0` ok,
`1` failed) and the rendered manifests or the error.

    python -I -S postrender_server.py SITE_DIRS SOCKET
"""

from __future__ import annotations

import io
import os
import selectors
import signal
import socket
import sys

if __name__ == "__main__" and len(sys.argv) > 1:  # without `site`, as the plugin (see there)
    sys.path.extend(d for d in sys.argv[1].split(os.pathsep) if d)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import postrender_plugin  # a module of this directory (on the path above)

OK, FAILED = b"0", b"1"


def serve(site_dirs: str, path: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is the engine's only (0600)
    try:
        listener.bind(path)
    finally:
        os.umask(old_umask)
    listener.listen(64)
    # The engine closes our stdin when it stops (or dies): then this server exits too.
    stop_r = sys.stdin.fileno()
    waiting = selectors.DefaultSelector()
    waiting.register(listener, selectors.EVENT_READ)
    waiting.register(stop_r, selectors.EVENT_READ)
    while True:
        for key, _ in waiting.select():
            if key.fileobj == stop_r:
                if not os.read(stop_r, 4096):
                    return
                continue
            conn, _ = listener.accept()
            if os.fork() == 0:  # the child: one post-render
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # kustomize's exit status is waited for
                code = 1
                try:
                    code = render(conn, site_dirs)
                finally:
                    os._exit(code)
            conn.close()


def render(conn: socket.socket, site_dirs: str) -> int:
    """The plugin's main() on what the relay sent; its stdout or stderr answered."""
    data = bytearray()
    while chunk := conn.recv(1 << 16):
        data += chunk
    spec_path, _, manifests = bytes(data).partition(b"\n")
    out, err = io.StringIO(), io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(manifests), encoding="utf-8")
    sys.stdout, sys.stderr = out, err
    try:
        code = int(postrender_plugin.main([site_dirs, spec_path.decode("utf-8", "surrogateescape")]))
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    if code == 0:
        conn.sendall(OK + out.getvalue().encode("utf-8"))
    else:
        conn.sendall(FAILED + err.getvalue().encode("utf-8"))
    conn.close()
    return code


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
