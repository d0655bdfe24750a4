"""A second, cheaper validator for the three input events: msgspec Structs for the worker's hot path.

The pydantic models of schemas/events.py stay the contract. This module only answers "certainly valid, and
these are its values" or "not sure": `fast_decoder(stream)(value)` gives an event, or None, and every None
goes to the pydantic model, whose verdict and error text decide. So what it accepts must be a subset of
what pydantic accepts, with the same field values; tests/schemas/test_fast_events.py checks that over a
large corpus of valid, hostile and mutated messages.

Where the two could disagree, this side says "not sure":
- Instants: msgspec reads RFC 3339 only (pydantic also reads `T10:00Z`, unix numbers: those go to pydantic)
  and rounds a 7th fractional digit of seconds where pydantic truncates it, so a value with 7 digits after
  a `.` anywhere goes to pydantic, and so does one with a `.` or a digit written as a JSON escape. Naive
  instants are refused (`tz=True`), bounds checked after decoding.
- Text shapes (digits-only codes, hex digests) are checked with `str.strip` over an explicit ASCII
  alphabet: `str.isdigit` and regex `\\d` also take other scripts' digits, and msgspec's `pattern`
  calls Python's `re`, whose `$` also matches before a final newline (and costs ~0.35 us a field).
- Values that are not ASCII must be valid UTF-8 as a whole: msgspec skips an unknown field's string
  without checking its bytes, pydantic rejects them.
- Values with a nested object or an array are left to pydantic, whose JSON parser has a depth limit
  that msgspec's has not; no event has either.
- msgspec is strict about JSON types as pydantic's strict mode is (no number for a string, no float for
  an int, no int for a bool); it is stricter about JSON itself (no NaN / Infinity), which only sends more
  messages to pydantic.

The events it builds offer what the rest of the pipeline may rely on (README, "Event objects"): every field
of the stream's pydantic model by name, with the same Python values, and `account_masked` on payments.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from schemas.errors import PulseError
from schemas.events import (
    EARLIEST_EVENT_TIME,
    LATEST_EVENT_TIME,
    MAX_AMOUNT_VND,
    ActivationStep,
    DossierStage,
    Event,
    PaymentCategory,
    qr_facts,
)
from schemas.provinces import code_map

_DIGITS = "0123456789"
_FIRST_SAFE_YEAR = EARLIEST_EVENT_TIME.year + 1
_LAST_SAFE_YEAR = LATEST_EVENT_TIME.year - 2  # LATEST is a 1 January
_PROVINCES = code_map()  # keys: the 2-digit codes, current and legacy
# msgspec rounds a 7th fractional digit of seconds where pydantic truncates it: such values go to pydantic.
_LONG_FRACTION = re.compile(rb"\.[0-9]{7}").search
# ... which a JSON escape could hide from that search ("00.123456\u0037Z"): escaped points and digits go too.
_ESCAPED_POINT_OR_DIGIT = re.compile(rb"\\u00(?:2[eE]|3[0-9])").search
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class NotSure(PulseError, ValueError):
    """Raised in __post_init__: let the pydantic model decide (msgspec reports it as a ValidationError)."""


def _in_bounds(moment: datetime) -> bool:
    """Certainly within [EARLIEST_EVENT_TIME, LATEST_EVENT_TIME): a year clear of both ends, whatever the UTC
    offset (an aware datetime comparison or timestamp costs ~0.4 us; the edge years go to pydantic)."""
    return _FIRST_SAFE_YEAR <= moment.year <= _LAST_SAFE_YEAR


def _is_hex_digest(text: str) -> bool:
    try:
        return len(text) == 64 and bytes.fromhex(text).hex() == text  # lower-case hex only, nothing between
    except ValueError:
        return False


def _is_bin(text: str) -> bool:
    return len(text) == 6 and not text.strip(_DIGITS)


def _is_age_band(text: str) -> bool:
    if len(text) == 3:
        return text[2] == "+" and not text[:2].strip(_DIGITS)
    return len(text) == 5 and text[2] == "-" and not text[:2].strip(_DIGITS) and not text[3:].strip(_DIGITS)


class FastEvent(msgspec.Struct, gc=False):  # no cycles possible: GC tracking would only cost
    event_id: UUID
    event_time: Instant
    province_code: str

    def __post_init__(self) -> None:
        current = _PROVINCES.get(self.province_code)
        if current is None or not _FIRST_SAFE_YEAR <= self.event_time.year <= _LAST_SAFE_YEAR:  # _in_bounds, inlined
            raise NotSure("province_code or event_time")
        self.province_code = current


class FastPayment(FastEvent):
    type: Literal["payment"]
    market_id: ShortText
    merchant_id: ShortText
    payer_bank_bin: str
    payee_bank_bin: str
    amount_vnd: Annotated[int, msgspec.Meta(gt=0, le=MAX_AMOUNT_VND)]
    channel: Literal["vietqr_static", "vietqr_dynamic"]
    status: Literal["success", "failed"]
    qr_payload: Annotated[str, msgspec.Meta(max_length=512)]
    category: PaymentCategory = "market"

    def __post_init__(self) -> None:
        FastEvent.__post_init__(self)
        try:
            qr = qr_facts(self.qr_payload)
        except Exception:  # VietQRError, or anything the decoder did not expect: the model says which
            raise NotSure("qr_payload") from None
        if qr.bank_bin != self.payee_bank_bin or (qr.amount is not None and qr.amount != self.amount_vnd):
            raise NotSure("qr_payload disagrees")
        # The payee's BIN equals the QR's, which is a known bank's (6 ASCII digits): only the payer's is checked.
        if not _is_bin(self.payer_bank_bin):
            raise NotSure("bank BIN")

    @property
    def account_masked(self) -> str:
        return qr_facts(self.qr_payload).account_masked


class FastDossierEvent(FastEvent):
    type: Literal["dossier"]
    dossier_id: ShortText
    procedure_code: ShortText
    full_process: bool
    channel: Literal["online", "offline"]
    stage: DossierStage
    due_time: Instant
    paid_online: bool
    vneid_authenticated: bool
    sector: Annotated[str, msgspec.Meta(max_length=64)] = ""
    fee_vnd: Annotated[int, msgspec.Meta(ge=0, le=MAX_AMOUNT_VND)] = 0
    result_electronic: bool = False
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None

    def __post_init__(self) -> None:
        FastEvent.__post_init__(self)
        if not _in_bounds(self.due_time) or (self.stage == "rated") != (self.rating is not None):
            raise NotSure("due_time or rating")


class FastIdActivation(FastEvent):
    type: Literal["id_activation"]
    citizen_ref: str
    level: Literal[1, 2]
    method: Literal["police_station", "self_service"]
    age_band: str
    step: ActivationStep = "activated"

    def __post_init__(self) -> None:
        FastEvent.__post_init__(self)
        if not (_is_hex_digest(self.citizen_ref) and _is_age_band(self.age_band)):
            raise NotSure("citizen_ref or age_band")


# Stream name -> the Struct mirroring that stream's pydantic model (same field names, same order).
FAST_MODELS: dict[str, type[FastEvent]] = {
    "payments": FastPayment, "dossiers": FastDossierEvent, "identity": FastIdActivation,
}


def fast_decoder(stream: str) -> Callable[[bytes], FastEvent | None]:
    """A function: one message value -> its event when certainly valid (same values as the pydantic model
    gives), None when the pydantic model must decide."""
    decode = msgspec.json.Decoder(FAST_MODELS[stream]).decode

    def decoded(value: bytes) -> FastEvent | None:
        # find, not `in`: half the cost for a one-byte needle (`in` takes a slower path), same answer.
        if value.find(b"{", 1) >= 0 or value.find(b"[") >= 0 or _LONG_FRACTION(value):  # see the module notes
            return None
        if value.find(b"\\") >= 0 and _ESCAPED_POINT_OR_DIGIT(value):  # a one-byte memchr first: "\\u00" cost ~0.5 us
            return None
        if not value.isascii():
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                return None
        try:
            return decode(value)
        except Exception:  # msgspec's DecodeError / ValidationError, or a RecursionError: all "not sure"
            return None

    return decoded


# What decoding gives for an accepted message: a Struct from the fast path, or the pydantic model where only
# the contract was sure. Code after decoding uses attribute access only (module notes), so both serve.
DecodedEvent = Event | FastEvent


def field_names(event_type: type) -> tuple[str, ...]:
    """The fields of an event class, in the pydantic model's order (the Structs declare them in that order)."""
    if issubclass(event_type, FastEvent):
        return event_type.__struct_fields__
    return tuple(event_type.model_fields)  # type: ignore[attr-defined]


def instant_fields(struct: type[FastEvent]) -> tuple[str, ...]:
    """The names of a Struct's instant fields (aware datetimes), in field order."""
    return tuple(field.name for field in msgspec.structs.fields(struct) if field.type == Instant)


def event_fields(event: DecodedEvent) -> dict[str, object]:
    """Field name -> value, in the pydantic model's field order, for either kind of event object (what
    `event.__dict__` gave when every event was a pydantic model)."""
    if isinstance(event, FastEvent):
        return msgspec.structs.asdict(event)  # in C: half the cost of building the dict in Python
    return {name: getattr(event, name) for name in field_names(type(event))}
