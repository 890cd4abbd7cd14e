"""Write kubewasm reconcilers in Python.

Subclass :class:`Reconciler`, say what it watches, implement ``apply`` (and
``cleanup`` with a finalizer), and export it::

    import kubewasm

    class Hello(kubewasm.Reconciler):
        watch = kubewasm.Watch("v1", "ConfigMap", label_selector="app=hello")

        def apply(self, obj):
            kubewasm.log.info(f"saw {obj['metadata']['name']}")
            return kubewasm.AWAIT_CHANGE

    Plugin = kubewasm.export(Hello)

Objects are plain dicts, exactly as the API server serves them. Host calls that fail
raise :class:`KubeError` subclasses; anything ``apply`` raises becomes a failed
reconcile (a Warning Event on the object, then a retry with backoff).
"""

from dataclasses import dataclass
from typing import Optional

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types

from . import events, kube, log
from .kube import Conflict, Forbidden, Invalid, KubeError, NotFound, Other, Unavailable

__all__ = [
    "AWAIT_CHANGE",
    "DEFAULT",
    "Conflict",
    "Forbidden",
    "Invalid",
    "KubeError",
    "NotFound",
    "Other",
    "ReconcileError",
    "Reconciler",
    "Unavailable",
    "Watch",
    "events",
    "export",
    "kube",
    "log",
    "requeue_after",
]


@dataclass
class Watch:
    """The objects a reconciler is given: one kind, optionally narrowed by labels."""

    api_version: str
    kind: str
    label_selector: Optional[str] = None


AWAIT_CHANGE = types.Action_AwaitChange()
"""Do nothing until the object changes."""

DEFAULT = types.Action_Default()
"""Let the host decide (on success: again in 40-60 minutes)."""


def requeue_after(seconds: float) -> types.Action_RequeueAfter:
    """Reconcile the object again after ``seconds``."""
    return types.Action_RequeueAfter(max(0, int(seconds * 1000)))


class ReconcileError(Exception):
    """Raise to fail a reconcile; ``retry_after`` (seconds) overrides the backoff."""

    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class Reconciler:
    """Base class of a reconciler. Set ``watch`` (and ``finalizer`` to get ``cleanup``
    calls on deletion); override ``apply`` and ``cleanup``."""

    watch: Watch
    finalizer: Optional[str] = None

    def apply(self, obj: dict):
        raise NotImplementedError

    def cleanup(self, obj: dict):
        return DEFAULT


def _run(method, text: str):
    import json

    try:
        action = method(json.loads(text))
    except ReconcileError as err:
        retry = None if err.retry_after is None else int(err.retry_after * 1000)
        raise Err(types.ReconcileError(str(err), retry))
    except Exception as err:  # noqa: BLE001 - every failure is reported, never a trap
        raise Err(types.ReconcileError(f"{type(err).__name__}: {err}", None))
    return DEFAULT if action is None else action


def export(reconciler_class):
    """The class componentize-py exports: assign it to ``Plugin`` in the app module."""
    reconciler = reconciler_class()

    class Plugin(exports.Plugin):
        def describe(self) -> types.Description:
            watch = reconciler.watch
            return types.Description(
                types.Watch(watch.api_version, watch.kind, watch.label_selector),
                reconciler.finalizer,
                [],
            )

        def apply(self, object: str) -> types.Action:
            return _run(reconciler.apply, object)

        def cleanup(self, object: str) -> types.Action:
            return _run(reconciler.cleanup, object)

    return Plugin
