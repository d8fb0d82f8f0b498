"""The runtime every Tide controller uses: watch, queue, reconcile, report, elect, serve.

    from tide.shared.runtime import Result, ReconcileError, StalledError, ReconcileContext, run_controller

A reconciler subclasses `Reconciler[Model]`: `model` (a KubeObject class), `finalizer` (or None),
`async reconcile(obj, ctx)`, and where needed `async finalize(obj, ctx)` and `setup(controller)`.
`setup` runs once before the workers start, with the `KindController` of the kind:

- `controller.informer`: the kind's own list+watch cache (`.items()`, `.get(ns, name)`);
- `controller.watch(api_version, kind, map_to_keys, namespace=None, label_selector=None,
  predicate=None)`: reconcile the keys `map_to_keys(obj)` yields when an object of another kind
  changes (`predicate(old, new)` filters updates);
- `controller.enqueue(namespace, name, after=None)`; `controller.namespace` (None = all namespaces).

A server passed to `run_controller(args, reconcilers, servers)` has `async start()`/`async stop()`;
with `leader_only = True` it starts only once this replica leads (Flux's artifact server).
Duration flags of `controller_arg_parser` are parsed to seconds (`args.requeue_dependency == 30.0`).
"""

from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.events import NORMAL, WARNING, EventRecorder
from tide.shared.runtime.kind_controller import KindController, KindInfo
from tide.shared.runtime.process import (
    controller_arg_parser,
    feature_gates,
    refuse_unavailable_flags,
    run_controller,
    runtime_namespace,
)
from tide.shared.runtime.reconciler import FLUX_FINALIZER, Reconciler
from tide.shared.runtime.result import ReconcileError, Result, StalledError

__all__ = [
    "FLUX_FINALIZER",
    "NORMAL",
    "WARNING",
    "EventRecorder",
    "KindController",
    "KindInfo",
    "ReconcileContext",
    "ReconcileError",
    "Reconciler",
    "Result",
    "StalledError",
    "controller_arg_parser",
    "feature_gates",
    "refuse_unavailable_flags",
    "run_controller",
    "runtime_namespace",
]
