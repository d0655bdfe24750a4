"""Turn raw message values into validated events, or into a dead-letter reason and a readable error.

A batch is validated in one pydantic-core call (the values spliced into one JSON array), which costs
far less per event than one call each. Items that fail come back as plain values (the union's `Any`
arm) and are validated again one by one for their error message; a batch that is not valid JSON as a
whole (a truncated message) falls back to one call per message.

Splicing untrusted bytes into one array is only sound when no value can swallow its neighbours or
split in two: `{A},{B}` next to `{"x":"}` and `{"}` would otherwise come back as two accepted events
for two malformed messages. So a value is spliced only when it starts with `{` and ends with `}` and the
batch holds exactly one `}` per value: then the only `}` that can close an object is a value's last
byte, every item starts at a value's first byte, and as many items as values means each item is its own
value. Values that are not `{...}` are validated on their own, and when the `}` count is off, so are the
values with more than one `}` (nested objects). The test is two byte compares per value and one count
over the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError

from schemas.events import EVENT_MODELS, Event

# Pydantic error types that have a dead-letter reason of their own; everything else is `invalid`.
_OWN_REASONS = {"json_invalid": "malformed_json", "unknown_province": "unknown_province", "bad_qr": "bad_qr"}
_MAX_ERRORS_SHOWN = 3


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    error: str


@dataclass(frozen=True)
class _Validators:
    model: type[Event]
    one: TypeAdapter
    many: TypeAdapter


def _validators(model: type[Event]) -> _Validators:
    lenient_item = Annotated[Union[model, Any], Field(union_mode="left_to_right")]
    return _Validators(model, TypeAdapter(model), TypeAdapter(list[lenient_item]))


_BY_STREAM = {stream: _validators(model) for stream, model in EVENT_MODELS.items()}


def describe(error: ValidationError) -> Rejection:
    details = error.errors(include_url=False, include_input=False)
    reason = next((_OWN_REASONS[d["type"]] for d in details if d["type"] in _OWN_REASONS), "invalid")
    shown = "; ".join(
        f"{'.'.join(str(part) for part in d['loc']) or 'message'}: {d['msg']}" for d in details[:_MAX_ERRORS_SHOWN]
    )
    more = len(details) - _MAX_ERRORS_SHOWN
    return Rejection(reason, shown + (f" (and {more} more)" if more > 0 else ""))


def _one(validators: _Validators, value: bytes) -> Event | Rejection:
    try:
        return validators.one.validate_json(value)
    except ValidationError as error:
        return describe(error)


def _many(validators: _Validators, joined: bytes, count: int) -> list | None:
    """The items of `count` values joined by commas, or None (not valid JSON, or misaligned)."""
    try:
        items = validators.many.validate_json(b"[" + joined + b"]")
    except ValidationError:
        return None
    # For values spliced as the module notes say, as many items as values means each item is exactly its
    # own value; fewer means a value swallowed its neighbours: then trust nothing.
    return items if len(items) == count else None


def decode_values(stream: str, values: list[bytes | None], max_bytes: int) -> list[Event | Rejection]:
    """One result per value, in order, each what decoding that value alone gives. Never raises on bad input."""
    validators = _BY_STREAM[stream]
    results: list[Event | Rejection | None] = [None] * len(values)
    candidates: list[int] = []
    for index, value in enumerate(values):
        if value is None:
            results[index] = Rejection("invalid", "empty message (tombstone)")
        elif len(value) > max_bytes:
            results[index] = Rejection("too_large", f"message of {len(value)} bytes exceeds the limit of {max_bytes}")
        elif value[:1] == b"{" and value[-1:] == b"}":
            candidates.append(index)
        else:
            results[index] = _one(validators, value)  # not spliced (see the module notes)
    joined = b",".join([values[i] for i in candidates])  # type: ignore[misc]
    if joined.count(b"}") != len(candidates):  # some value holds more than one `}`: those go alone
        for index in candidates:
            if values[index].count(b"}") != 1:  # type: ignore[union-attr]
                results[index] = _one(validators, values[index])  # type: ignore[arg-type]
        candidates = [index for index in candidates if results[index] is None]
        joined = b",".join([values[i] for i in candidates])  # type: ignore[misc]
    batch = _many(validators, joined, len(candidates)) if candidates else []
    model = validators.model
    for position, index in enumerate(candidates):
        item = batch[position] if batch is not None else None
        results[index] = item if type(item) is model else _one(validators, values[index])  # type: ignore[arg-type]
    return results  # type: ignore[return-value]
