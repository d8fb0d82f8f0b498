"""The Helm SDK (helm-python-sdk, Helm v4) and the process it runs in.

The SDK's Go runtime reads its environment and argv[0] from the process's start, not from
`os.environ` later: Helm's plugin directory (HELM_PLUGINS, where Tide's post-renderer plugin is)
and its field manager (argv[0]'s basename) are fixed when the process starts. So
`tide-helm-controller` starts itself again as `helm-controller` with that environment
(exec_as_helm_host) and runs Helm's calls in its own threads; a process not started so (a test
driving the engine) runs them in a worker process started the same way (engine_worker.py).
"""

from __future__ import annotations

import json
import os
import site
import sys
import tempfile
from functools import cache
from pathlib import Path
from types import ModuleType

POST_RENDERER = "tide-postrender"
WORKER_ARGV0 = "helm-controller"
"""Helm's field manager is the basename of argv[0]: Flux's helm-controller's name."""

HOST_HOME = "TIDE_HELM_HOME"
"""The environment variable that gives a process started as Helm's host its engine's home."""


def postrender_socket(home: Path) -> Path:
    """The post-render fork server's socket (postrender_server.py), in the engine's private home."""
    return home / "postrender.sock"


def plugin_manifest(python: str, site_dirs: str, socket: Path) -> str:
    """plugin.yaml of Tide's post-renderer: this interpreter running postrender_relay.py, isolated
    (-I) and without `site` (-S): a process per install, so its start-up is kept to the relay's
    own imports; it hands the work to the fork server at `socket`. `site_dirs` is where the plugin
    finds PyYAML (and Tide, for kustomize post-renderers) when it renders by itself."""
    # The relay runs as a script of its own: its path, not an import.
    relay = str(Path(__file__).resolve().with_name("postrender_relay.py"))
    args = ["-I", "-S", relay, str(socket), site_dirs]
    return (
        f"name: {POST_RENDERER}\nversion: 0.1.0\ntype: postrenderer/v1\napiVersion: v1\n"
        "runtime: subprocess\nruntimeConfig:\n  platformCommand:\n"
        f"  - command: {json.dumps(python)}\n    args: {json.dumps(args)}\n"
    )


def go_memory_limit(concurrency: int) -> str:
    """The Go runtime's soft memory limit in Helm's process (GOMEMLIMIT, unless the controller's
    environment sets one). Without one Go lets the heap grow to twice what is live between
    collections. Where Helm runs its client-side OpenAPI check (a cluster with an aggregated
    APIService, see engine.HelmEngine._validation) it holds parsed OpenAPI documents: measured with
    30 podinfo-sized installs at concurrency 10, 80 MiB took the Helm worker's peak PSS from 198 to
    159 MiB at no CPU cost beyond the noise, while 40 MiB (under what is live) tripled its CPU.
    Without the check the heap stays under the limit (about 110 MiB PSS either way). Past the limit
    Go caps its collector at half the CPU."""
    return f"{64 + 2 * concurrency}MiB"


def worker_environment(home: Path, concurrency: int) -> dict[str, str]:
    """The environment of a process started as `helm-controller`: Tide's plugin installed under
    `home`, Helm's state kept there too."""
    site_dirs = _site_dirs()
    plugin = home / "plugins" / POST_RENDERER
    plugin.mkdir(parents=True, exist_ok=True)
    (plugin / "plugin.yaml").write_text(plugin_manifest(sys.executable, site_dirs, postrender_socket(home)))
    env = dict(os.environ)
    env.setdefault("GOMEMLIMIT", go_memory_limit(concurrency))
    # A collection when the heap has grown by half of what is live, not by all of it: Helm's live
    # heap is small and its garbage large (templates, YAML and JSON copies of every object). At
    # 100 installs, concurrency 10: the worker's peak PSS 103-107 MiB against 104-120 at Go's
    # default, its CPU within the noise.
    env.setdefault("GOGC", "50")
    env["HELM_PLUGINS"] = str(home / "plugins")
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[name] = str(home / name.lower())
    # argv[0] is not the interpreter's path, so that Python finds neither itself nor this one's
    # site-packages (nor their .pth files, editable installs included): bootstrap() sets them.
    env["TIDE_HELM_SITE"] = site_dirs
    env["TIDE_PYTHON"] = sys.executable
    return env


def bootstrap(module: str, owns_home: bool = False) -> str:
    """The `python -c` program of a process started as `helm-controller`: this interpreter's path
    and site directories restored, then `module` run as __main__; a process that `owns_home`
    removes it when it exits, however early."""
    cleanup = f"import atexit, shutil; atexit.register(shutil.rmtree, os.environ[{HOST_HOME!r}], True)\n"
    return (
        "import os, runpy, site, sys\n"
        + (cleanup if owns_home else "")
        + "sys.executable = os.environ['TIDE_PYTHON']\n"
        "for d in os.environ['TIDE_HELM_SITE'].split(os.pathsep): site.addsitedir(d)\n"
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
    )


WORKER_BOOTSTRAP = bootstrap("tide.controllers.helm.engine_worker")
"""`python -c` program of the worker process."""


def helm_host_home() -> Path | None:
    """The engine's home when this process was started as Helm's host (exec_as_helm_host): Helm's
    calls can run in its threads. None in any other process: they run in a worker process."""
    home = os.environ.get(HOST_HOME)
    if home and os.path.basename(sys.orig_argv[0]) == WORKER_ARGV0 and Path(home).is_dir():
        return Path(home)
    return None


def exec_as_helm_host(module: str, argv: list[str], concurrency: int) -> None:
    """Replace this process with `module` run as `helm-controller` with `argv`, in Helm's
    environment (worker_environment, its home made here). Returns only when that cannot be done
    (no interpreter path, exec refused): the caller goes on as it is, Helm then in a worker."""
    if not sys.executable:
        return
    home = Path(tempfile.mkdtemp(prefix="tide-helm-"))
    env = worker_environment(home, concurrency)
    env[HOST_HOME] = str(home)
    try:
        os.execve(sys.executable, [WORKER_ARGV0, "-c", bootstrap(module, owns_home=True), *argv], env)
    except OSError:
        import shutil

        shutil.rmtree(home, ignore_errors=True)


def postrender_server_command(home: Path) -> list[str]:
    """The post-render fork server, started by the engine beside Helm's process (same interpreter,
    isolated and without `site` like the plugin)."""
    server = str(Path(__file__).resolve().with_name("postrender_server.py"))
    return [sys.executable, "-I", "-S", server, _site_dirs(), str(postrender_socket(home))]


def _site_dirs() -> str:
    """This interpreter's site directories, for the processes started without `site` (in a process
    started as `helm-controller`, those its starter passed: this one's prefix is the base one)."""
    return os.environ.get("TIDE_HELM_SITE") or os.pathsep.join(site.getsitepackages())


@cache
def helm_sdk() -> ModuleType:
    import helm_python

    drop_clean_pages("libhelm_c.so")
    return helm_python


_WRITTEN = ("Private_Dirty:", "Shared_Dirty:", "Anonymous:")
"""A mapping's smaps fields that count pages written in memory, which the file does not hold."""


def clean_mappings(smaps: str, library: str) -> list[tuple[int, int]]:
    """The address ranges of a shared library's mappings in /proc/<pid>/smaps text that dropping
    loses nothing of (pure): read-only, backed by the file alone (no anonymous page) and clean, so
    every page reads back from the file as it was. A relocated segment is dirty: never one."""
    found: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for line in smaps.splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5:  # a mapping's first line
            if current is not None:
                found.append(current)
            named = len(parts) > 5 and os.path.basename(parts[5]).startswith(library)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            current = (start, end) if named and "w" not in parts[1] else None
        elif current is not None and parts[:1] and parts[0] in _WRITTEN and parts[1:2] != ["0"]:
            current = None
    if current is not None:
        found.append(current)
    return found


def drop_clean_pages(library: str) -> None:
    """Give back the resident pages of `library`'s clean mappings once it is loaded.

    The SDK is a Go c-shared library of 85 MB. Loading it leaves pages resident that nothing reads
    again: the 20 MB of relocations and the symbol tables the dynamic linker read once, and the
    code and data of the Go packages' initialisers (together 16 MiB of the worker's memory,
    measured). A page that is read again faults back in from the page cache. Linux only;
    elsewhere, or on any error, the pages stay."""
    try:
        with open("/proc/self/smaps", encoding="utf-8", errors="replace") as smaps:
            ranges = clean_mappings(smaps.read(), library)
        if not ranges:
            return
        import ctypes
        import mmap

        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for start, end in ranges:
            libc.madvise(start, end - start, mmap.MADV_DONTNEED)
    except (OSError, AttributeError, ValueError):
        pass
