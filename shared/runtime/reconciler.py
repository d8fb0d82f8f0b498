"""The contract between a controller and the runtime: one Reconciler per reconciled kind."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from tide.shared.api.meta import KubeObject
from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.result import Result

if TYPE_CHECKING:
    from tide.shared.runtime.kind_controller import KindController

FLUX_FINALIZER = "finalizers.fluxcd.io"

Obj = TypeVar("Obj", bound=KubeObject)


class Reconciler(Generic[Obj]):
    """Subclass per kind: set `model` (the API class the object is parsed into) and `finalizer` (None:
    deletion needs no clean-up), implement `reconcile`, and where needed `setup` and `finalize`."""

    model: type[Obj]
    finalizer: str | None = None
    reports_progress: bool = False
    """True when the reconciler writes its own progress (ctx.while_progressing around its slow
    steps): the runtime then does not write "Reconciliation in progress" before it starts."""

    def setup(self, controller: KindController) -> None:
        """Runs once before the workers start: register watches of other kinds here."""

    async def reconcile(self, obj: Obj, ctx: ReconcileContext) -> Result:
        """Bring the world in line with obj; raise ReconcileError to retry, StalledError to stop."""
        raise NotImplementedError

    async def finalize(self, obj: Obj, ctx: ReconcileContext) -> None:
        """Runs on deletion while the finalizer holds the object; nothing to clean up by default."""
