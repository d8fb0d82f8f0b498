"""The `tide-postrender` plugin process Helm starts for every install and upgrade: it relays the
manifests to the post-render fork server (postrender_server.py) and its answer back to Helm. Kept
to `_socket`: this process's start-up is all it costs (`socket`'s import alone doubles it).

    python -I -S postrender_relay.py SOCKET SITE_DIRS SPEC.json < manifests

When the server cannot be reached, the plugin renders in this process instead (as before the server
existed): slower, same result.
"""

import _socket
import os
import sys


def relay(conn: _socket.socket, spec_path: str, manifests: bytes) -> int:
    conn.sendall(spec_path.encode("utf-8", "surrogateescape") + b"\n" + manifests)
    conn.shutdown(_socket.SHUT_WR)
    answer = bytearray()
    while chunk := conn.recv(1 << 16):
        answer += chunk
    status, body = answer[:1], bytes(answer[1:])
    if status == b"0":
        sys.stdout.buffer.write(body)
        return 0
    sys.stderr.buffer.write(body or b"tide-postrender: the post-render process ended without answering\n")
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        sys.stderr.write("usage: tide-postrender SOCKET SITE_DIRS SPEC.json < manifests\n")
        return 2
    path, site_dirs, spec_path = argv
    manifests = sys.stdin.buffer.read()
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return render_here(site_dirs, spec_path, manifests)  # the server is gone
    try:
        return relay(conn, spec_path, manifests)
    except OSError as err:
        sys.stderr.write(f"tide-postrender: the post-render server failed: {err}\n")
        return 1
    finally:
        conn.close()


def render_here(site_dirs: str, spec_path: str, manifests: bytes) -> int:
    sys.path.extend(d for d in site_dirs.split(os.pathsep) if d)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import io

    import postrender_plugin

    sys.stdin = io.TextIOWrapper(io.BytesIO(manifests), encoding="utf-8")
    return int(postrender_plugin.main([site_dirs, spec_path]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
