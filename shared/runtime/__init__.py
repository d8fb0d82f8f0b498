"""The runtime every Tide controller uses: watch, queue, reconcile, report, elect, serve.

from tide.shared.runtime import Result, ReconcileError, StalledError, ReconcileContext, run_controller
"""

from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.controller import (
    controller_arg_parser,
    feature_gates,
    run_controller,
    runtime_namespace,
)
from tide.shared.runtime.events import NORMAL, WARNING, EventRecorder
from tide.shared.runtime.reconcile import KindController, KindInfo
from tide.shared.runtime.result import ReconcileError, Result, StalledError

__all__ = [
    "NORMAL",
    "WARNING",
    "EventRecorder",
    "KindController",
    "KindInfo",
    "ReconcileContext",
    "ReconcileError",
    "Result",
    "StalledError",
    "controller_arg_parser",
    "feature_gates",
    "run_controller",
    "runtime_namespace",
]
