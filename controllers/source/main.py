"""tide-source-controller: GitRepository, OCIRepository, HelmRepository, HelmChart and
ArtifactGenerator reconcilers plus the artifact server."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from tide.controllers.source import helm_index
from tide.controllers.source.artifact_generator import ArtifactGeneratorReconciler
from tide.controllers.source.builder import BuildPool, calls_per_worker, default_build_workers
from tide.controllers.source.git_reconciler import GitRepositoryReconciler
from tide.controllers.source.helm_chart import HelmChartReconciler
from tide.controllers.source.helm_chart_build import (
    DEFAULT_CHART_FILE_MAX_SIZE,
    DEFAULT_CHART_MAX_SIZE,
    ChartLimits,
)
from tide.controllers.source.helm_repository import DEFAULT_INDEX_MAX_SIZE, HelmRepositoryReconciler
from tide.controllers.source.oci_reconciler import OCIRepositoryReconciler
from tide.controllers.source.server import ArtifactServer
from tide.controllers.source.storage import Storage, advertised_address
from tide.shared.artifact import DEFAULT_MAX_ENTRIES
from tide.shared.runtime import controller_arg_parser, run_controller
from tide.shared.runtime.process import add_no_cross_namespace_refs, parse_duration_flag

NAME = "source-controller"


def build_parser() -> argparse.ArgumentParser:
    parser = controller_arg_parser(NAME, 2)
    add_no_cross_namespace_refs(parser)  # ArtifactGenerator sources (Flux's source-watcher flag)
    parser.add_argument(
        "--storage-path",
        default=os.environ.get("STORAGE_PATH", ""),
        help="The local storage path (default /data, else a temp dir).",
    )
    parser.add_argument(
        "--storage-addr",
        default=os.environ.get("STORAGE_ADDR", ":9090"),
        help="The address the static file server binds to.",
    )
    parser.add_argument(
        "--storage-adv-addr",
        default=os.environ.get("STORAGE_ADV_ADDR", ""),
        help="The advertised address of the static file server.",
    )
    parser.add_argument(
        "--artifact-retention-ttl",
        type=parse_duration_flag,
        default=60.0,
        help="How long artifacts from previous reconciliations are kept.",
    )
    parser.add_argument(
        "--artifact-retention-records",
        type=int,
        default=2,
        help="The maximum number of artifacts kept per object after garbage collection.",
    )
    parser.add_argument("--artifact-digest-algo", default="sha256", choices=["sha256"])
    parser.add_argument(
        "--artifact-max-size",
        type=int,
        default=100 * 1024 * 1024,
        help="Fail artifacts whose extracted size exceeds this many bytes (0: no limit).",
    )
    parser.add_argument(
        "--helm-index-max-size",
        type=int,
        default=DEFAULT_INDEX_MAX_SIZE,
        help="The max allowed size in bytes of a HelmRepository index file.",
    )
    parser.add_argument(
        "--helm-chart-max-size",
        type=int,
        default=DEFAULT_CHART_MAX_SIZE,
        help="The max allowed size in bytes of a HelmChart artifact.",
    )
    parser.add_argument(
        "--helm-chart-file-max-size",
        type=int,
        default=DEFAULT_CHART_FILE_MAX_SIZE,
        help="The max allowed size in bytes of a file in a HelmChart.",
    )
    parser.add_argument(
        "--helm-cache-max-size",
        type=int,
        default=helm_index.CacheSettings.max_size,
        help="How many parsed Helm indexes each build worker keeps for the HelmCharts of one index "
        "revision (0 disables the cache; Flux's default is 0, Tide's keeps a few: a parsed index is "
        "a fraction of its YAML).",
    )
    parser.add_argument(
        "--helm-cache-ttl",
        type=parse_duration_flag,
        default=helm_index.CacheSettings.ttl,
        help="How long an unused parsed Helm index stays cached (default 15m).",
    )
    parser.add_argument(
        "--helm-cache-purge-interval",
        type=parse_duration_flag,
        default=helm_index.CacheSettings.purge_interval,
        help="How often expired parsed Helm indexes are dropped (default 1m).",
    )
    parser.add_argument(
        "--artifact-max-entries",
        type=int,
        default=DEFAULT_MAX_ENTRIES,
        help="Fail Git checkouts, OCI layers and generated artifacts with more files, directories "
        "and symlinks than this (0: no limit).",
    )
    parser.add_argument(
        "--build-workers",
        type=positive_int,
        default=None,
        help="The most build worker processes (Git checkouts and archives) at once, each running "
        "--concurrent divided by this many builds in threads; each exits after a minute unused "
        "(default: --concurrent, at most the number of CPUs less one, at least one).",
    )
    return parser


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def storage_root(flag: str) -> Path:
    if flag:
        return Path(flag)
    default = Path("/data")
    if default.is_dir() and os.access(default, os.W_OK):
        return default
    return Path(tempfile.gettempdir()) / "tide-source-storage"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    root = storage_root(args.storage_path)
    storage = Storage(
        root,
        advertised_address(args.storage_addr, args.storage_adv_addr),
        retention_records=args.artifact_retention_records,
        retention_ttl=args.artifact_retention_ttl,
    )
    # Builds run in worker processes (the event loop only does I/O), forked from a server forked
    # here: after the imports, before any thread starts.
    workers = args.build_workers or default_build_workers(args.concurrent)
    builds = BuildPool(workers, calls_per_worker(args.concurrent, workers))
    index_cache = helm_index.CacheSettings(
        args.helm_cache_max_size, args.helm_cache_ttl, args.helm_cache_purge_interval
    )
    run_controller(
        args,
        reconcilers=[
            GitRepositoryReconciler(storage, args.artifact_max_size, builds, args.artifact_max_entries),
            OCIRepositoryReconciler(storage, args.artifact_max_size, builds, args.artifact_max_entries),
            HelmRepositoryReconciler(
                storage,
                args.artifact_max_size,
                builds,
                index_max_size=args.helm_index_max_size,
                index_cache=index_cache,
            ),
            HelmChartReconciler(
                storage,
                args.artifact_max_size,
                builds,
                limits=ChartLimits(args.helm_chart_max_size, args.helm_chart_file_max_size),
                index_cache=index_cache,
                index_max_size=args.helm_index_max_size,
            ),
            ArtifactGeneratorReconciler(storage, args.artifact_max_size, builds, args.artifact_max_entries),
        ],
        servers=[builds, ArtifactServer(root, args.storage_addr)],
    )


if __name__ == "__main__":
    main()
