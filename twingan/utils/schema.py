"""Metadata read from a file, checked against a dataclass before anything uses it.

Checkpoint headers, index footers and embeddings-store metadata come from files that may be damaged, written by
another tool, or crafted. :func:`parse` turns their JSON into the dataclass that says what each field holds, with
strict JSON types (``"2"`` is not 2, ``2.0`` is not an int, ``true`` is not 1) and the dataclass's own value
checks (``__post_init__``), or raises :class:`SchemaError` with one line naming the first bad field. The checks
are pydantic's, applied to plain dataclasses.
"""
from __future__ import annotations

import functools
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


class SchemaError(ValueError):
    """Metadata that does not have the fields or types its schema says; the message is one line."""


def parse(schema: type[T], data: Any) -> T:
    """``data`` (parsed JSON) as an instance of the dataclass ``schema``; SchemaError when it does not fit."""
    try:
        text = json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"not JSON data ({exc})") from None
    try:
        return _adapter(schema).validate_json(text, strict=True)
    except ValidationError as exc:
        raise SchemaError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first problem of a ValidationError in one line: where, what was wanted, what was found."""
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in error["loc"])
    found = error.get("input")
    shown = repr(found) if not isinstance(found, (dict, list)) else type(found).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    message = str(error["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if error["type"] == "missing":
        return f"{where}: missing{more}"
    if error["type"] in ("value_error", "assertion_error"):
        return f"{where + ': ' if where else ''}{message}{more}"
    return f"{where or 'the metadata'}: {message.lower()}, got {shown}{more}"


@functools.lru_cache(maxsize=None)
def _adapter(schema: type) -> TypeAdapter:
    return TypeAdapter(schema)
