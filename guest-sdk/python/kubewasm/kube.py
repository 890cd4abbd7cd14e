"""The Kubernetes API, as far as the plugin's grant allows. Objects are dicts."""

import json
from typing import Optional

from componentize_py_types import Err
from wit_world.imports import kube as _wit
from wit_world.imports import types


class KubeError(Exception):
    """A host call failed."""


class NotFound(KubeError):
    """The object does not exist."""


class Forbidden(KubeError):
    """The grant or the API server's RBAC refused the call."""


class Conflict(KubeError):
    """The object exists, or changed meanwhile."""


class Invalid(KubeError):
    """The API server rejected the object."""


class Unavailable(KubeError):
    """The API server could not be reached or is overloaded; retry later."""


class Other(KubeError):
    """Anything else."""


_ERRORS = {
    _wit.Error_NotFound: NotFound,
    _wit.Error_Forbidden: Forbidden,
    _wit.Error_Conflict: Conflict,
    _wit.Error_Invalid: Invalid,
    _wit.Error_Unavailable: Unavailable,
    _wit.Error_Other: Other,
}


def _call(function, *args):
    try:
        return function(*args)
    except Err as err:
        raise _ERRORS.get(type(err.value), Other)(err.value.value) from None


def _ref(api_version: str, kind: str, name: str, namespace: Optional[str]):
    return types.ObjectRef(api_version, kind, namespace, name)


def get(api_version: str, kind: str, name: str, namespace: Optional[str] = None) -> dict:
    """Reads one object (from the host's cache when the kind is watched)."""
    return json.loads(_call(_wit.get, _ref(api_version, kind, name, namespace)))


def get_opt(
    api_version: str, kind: str, name: str, namespace: Optional[str] = None
) -> Optional[dict]:
    """Reads one object, ``None`` if it does not exist."""
    try:
        return get(api_version, kind, name, namespace)
    except NotFound:
        return None


def list(
    api_version: str,
    kind: str,
    namespace: Optional[str] = None,
    label_selector: Optional[str] = None,
) -> "list[dict]":
    """Lists objects of one kind (every namespace the plugin may see when ``None``)."""
    return json.loads(_call(_wit.list, api_version, kind, namespace, label_selector))


def apply(obj: dict) -> dict:
    """Creates or updates ``obj`` with server-side apply; returns it as stored."""
    return json.loads(_call(_wit.apply, json.dumps(obj)))


def create(obj: dict) -> dict:
    """Creates ``obj``; raises :class:`Conflict` if it exists."""
    return json.loads(_call(_wit.create, json.dumps(obj)))


def patch_status(
    api_version: str, kind: str, name: str, status: dict, namespace: Optional[str] = None
) -> dict:
    """Merges ``status`` into the object's status subresource."""
    ref = _ref(api_version, kind, name, namespace)
    return json.loads(_call(_wit.patch_status, ref, json.dumps(status)))


def delete(api_version: str, kind: str, name: str, namespace: Optional[str] = None) -> None:
    """Deletes one object; raises :class:`NotFound` if it does not exist."""
    _call(_wit.delete, _ref(api_version, kind, name, namespace))


def delete_if_exists(
    api_version: str, kind: str, name: str, namespace: Optional[str] = None
) -> bool:
    """Deletes one object; returns whether it existed."""
    try:
        delete(api_version, kind, name, namespace)
        return True
    except NotFound:
        return False
