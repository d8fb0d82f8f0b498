"""`tide-helm-controller`: the helm controller started again as `helm-controller`, so that Helm's
calls run in its own threads (sdk.exec_as_helm_host) rather than in a worker process beside it.

Kept to argparse and sdk: this process is replaced before it imports the controller (half a second
of CPU a start would pay twice).
"""

from __future__ import annotations

import argparse
import sys

from tide.controllers.helm.sdk import exec_as_helm_host, helm_host_home

CONCURRENT_DEFAULT = 4
"""--concurrent's default: Flux's helm-controller's."""


def concurrency(argv: list[str]) -> int:
    """--concurrent of `argv` (the Go heap's limit depends on it), whatever else it holds."""
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("--concurrent", type=int, default=CONCURRENT_DEFAULT)
    try:
        known, _ = parser.parse_known_args(argv)
    except argparse.ArgumentError:  # a malformed value: the controller's own parser says so, once
        return CONCURRENT_DEFAULT
    return max(1, int(known.concurrent))


def main() -> None:
    argv = sys.argv[1:]
    if helm_host_home() is None:
        exec_as_helm_host("tide.controllers.helm.main", argv, concurrency(argv))
    from tide.controllers.helm.main import main as run

    run(argv)


if __name__ == "__main__":
    main()
