"""Kubernetes Events about the object being reconciled."""

from wit_world.imports import events as _wit


def normal(reason: str, note: str) -> None:
    """Records a Normal Event (``reason`` is UpperCamelCase, e.g. ``Mirrored``)."""
    _wit.publish(_wit.EventType.NORMAL, reason, note)


def warning(reason: str, note: str) -> None:
    """Records a Warning Event."""
    _wit.publish(_wit.EventType.WARNING, reason, note)
