"""Pydantic models of the three input events, the dead-letter record and the window rows.

Validation is strict about types (a number in a string is an error) and lenient about unknown fields,
so producers can add fields without breaking consumers. Errors that map to a dead-letter reason of
their own are raised as PydanticCustomError with that reason as the error type.
"""
from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from datetime import datetime, timezone
from functools import lru_cache
from itertools import accumulate
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.provinces import UnknownProvince, current_code
from schemas.vietqr import QRFacts, VietQRError
from schemas.vietqr import facts as vietqr_facts

# ClickHouse DateTime64 covers 1900..2299; anything outside a sane window is a producer bug.
EARLIEST_EVENT_TIME = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_EVENT_TIME = datetime(2100, 1, 1, tzinfo=timezone.utc)
MAX_AMOUNT_VND = 10**12


def _to_current_province(code: str) -> str:
    try:
        return current_code(code)
    except UnknownProvince:
        raise PydanticCustomError("unknown_province", "unknown province code {code}", {"code": code}) from None


@lru_cache(maxsize=1 << 16)
def qr_facts(payload: str) -> QRFacts:
    """What the pipeline needs from a VietQR payload. Cached: a market stall's static sticker repeats all day."""
    return vietqr_facts(payload)


# Patterns say [0-9]: pydantic-core's regex \d also matches Arabic-Indic, fullwidth and other digits.
ProvinceCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{2}$"), AfterValidator(_to_current_province)]
# Bounds checked in pydantic-core, not in Python: this runs for every event.
EventTime = Annotated[AwareDatetime, Field(ge=EARLIEST_EVENT_TIME, lt=LATEST_EVENT_TIME)]
BankBin = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Event(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")

    event_id: UUID
    event_time: EventTime
    province_code: ProvinceCode


class Payment(Event):
    type: Literal["payment"]
    market_id: ShortText
    merchant_id: ShortText
    payer_bank_bin: BankBin
    payee_bank_bin: BankBin
    amount_vnd: Annotated[int, Field(gt=0, le=MAX_AMOUNT_VND)]
    channel: Literal["vietqr_static", "vietqr_dynamic"]
    status: Literal["success", "failed"]
    qr_payload: Annotated[str, StringConstraints(max_length=512)]
    # Added (issue 12); a producer that predates it sends market payments only.
    category: PaymentCategory = "market"

    @model_validator(mode="after")
    def _payload_agrees(self) -> Payment:
        try:
            qr = qr_facts(self.qr_payload)
        except VietQRError as error:
            raise PydanticCustomError("bad_qr", "qr_payload: {error}", {"error": str(error)}) from None
        if qr.bank_bin != self.payee_bank_bin:
            raise PydanticCustomError(
                "bad_qr", "qr_payload bank BIN {qr} differs from payee_bank_bin {event}",
                {"qr": qr.bank_bin, "event": self.payee_bank_bin},
            )
        if qr.amount is not None and qr.amount != self.amount_vnd:
            raise PydanticCustomError(
                "bad_qr", "qr_payload amount {qr} differs from amount_vnd {event}",
                {"qr": qr.amount, "event": self.amount_vnd},
            )
        return self

    @property
    def account_masked(self) -> str:
        return qr_facts(self.qr_payload).account_masked


PaymentCategory = Literal["market", "utility", "tuition", "hospital", "public_fee", "welfare"]
DossierStage = Literal["submitted", "accepted", "appraised", "approved", "signed", "returned", "rejected",
                       "supplement_requested", "withdrawn", "rated"]
ActivationStep = Literal["registered", "approved", "activated"]


class DossierEvent(Event):
    type: Literal["dossier"]
    dossier_id: ShortText
    procedure_code: ShortText
    full_process: bool
    channel: Literal["online", "offline"]
    stage: DossierStage
    due_time: EventTime
    paid_online: bool
    vneid_authenticated: bool
    # Added (issue 12), with defaults that keep older producers' events valid and meaning what they meant.
    sector: Annotated[str, StringConstraints(max_length=64)] = ""
    fee_vnd: Annotated[int, Field(ge=0, le=MAX_AMOUNT_VND)] = 0  # 0: the procedure carries no fee
    result_electronic: bool = False  # on `returned`: the result was issued as an electronic document
    rating: Annotated[int, Field(ge=1, le=5)] | None = None  # on `rated` only

    @model_validator(mode="after")
    def _rating_only_when_rated(self) -> DossierEvent:
        if (self.stage == "rated") != (self.rating is not None):
            raise ValueError("rating (1-5) is required on stage 'rated' and not allowed on other stages")
        return self


class IdActivation(Event):
    type: Literal["id_activation"]
    citizen_ref: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    level: Literal[1, 2]
    method: Literal["police_station", "self_service"]
    age_band: Annotated[str, StringConstraints(pattern=r"^[0-9]{2}(-[0-9]{2}|\+)$")]
    # Added (issue 12): the lifecycle registered -> approved -> activated; older producers sent activations only.
    step: ActivationStep = "activated"


# Stream name -> the event model its topic carries.
EVENT_MODELS: dict[str, type[Event]] = {"payments": Payment, "dossiers": DossierEvent, "identity": IdActivation}

AnyEvent = Annotated[Payment | DossierEvent | IdActivation, Field(discriminator="type")]
ANY_EVENT = TypeAdapter(AnyEvent)


# --- personal data in dead letters -----------------------------------------------------------------
# A rejected message can hold what an accepted one never stores: a VietQR payload with the whole account
# or card number (bad_qr, a truncated payment), a citizen number a producer failed to pseudonymize. A
# DeadLetter masks its key, error and raw text when it is made, so neither the `dead_letters` table nor
# the `pulse.deadletter` topic ever holds them (README, "Privacy"). The rules:
#   - kept: UUIDs, and lower-case hex digests (32, 40, 64 or 128 characters with a letter a-f, such
#     as citizen_ref);
#   - in a VietQR payload (it starts 000201 010211 or 000201 010212 and has tag 38 with the NAPAS GUID):
#     the account or card number (tag 38/01/01) keeps its last four characters, as
#     payments.payee_account_masked does (none when the payload is cut short); the TLV headers, the GUID
#     and the BIN are kept; every other value is masked as below;
#   - everywhere else, every run of 9 or more digits (any script) becomes as many `*`: citizen numbers
#     (12 digits), account and card numbers, phone numbers with a country code. Shorter numbers (BINs,
#     amounts below 100 million VND, dates, counts) are kept;
#   - VietQR's bad_account error detail ("... 38/01/01) at position N: found '...'") is masked whole.
# Each masked character becomes one `*`, so lengths are kept; masking a masked text again only ever masks
# more. Text past a length limit is cut to exactly the limit, a note included (a digit run cut at the
# limit is masked whatever its length); this also keeps a multi-megabyte message from making a dead
# letter too large to publish.
MIN_MASKED_DIGITS = 9
DEAD_LETTER_LIMITS = {"key": 1_024, "error": 4_096, "raw": 65_536}  # characters
_NAPAS_GUID = b"A000000727"
_MASKABLE = re.compile(
    r"(?P<vietqr>(?<![0-9])00020101021[12])"
    r"|(?P<uuid>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})"
    r"|(?P<digest>(?<![0-9A-Za-z])(?=[0-9]*[a-f])(?:[0-9a-f]{128}|[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32})"
    r"(?![0-9A-Za-z]))"
    r"|(?P<digits>\d{%d,})" % MIN_MASKED_DIGITS
)
_DIGITS = re.compile(r"\d+")
_ASCII_DIGIT_RUN = re.compile(rb"[0-9]{%d,}" % MIN_MASKED_DIGITS)
_QR_ACCOUNT_ERROR = re.compile(r"(38/01/01\)[^:;]*: found )([^;]*)")
_ALPHANUMERIC = re.compile(r"[^\W_]")
_TRAILING_DIGITS = re.compile(r"\d+$")
_QR_SCAN_CHARS = 1_024  # a VietQR payload has at most 512 bytes; a longer hostile one is cut off here


def mask_personal_data(text: str, limit: int | None = None) -> str:
    """`text` with account, card and citizen numbers masked (rules above), cut to `limit` characters."""
    note = ""
    if limit is not None and len(text) > limit:
        note = f"\u2026[{len(text) - limit} more characters not kept]"[:limit]
        text = text[:limit - len(note)]
        if text[-1:].isdigit():  # the cut may split a long number: mask its start whatever its length
            text = _TRAILING_DIGITS.sub(lambda match: "*" * len(match.group()), text)
    if "38/01/01" in text:
        text = _QR_ACCOUNT_ERROR.sub(lambda match: match.group(1) + _ALPHANUMERIC.sub("*", match.group(2)), text)
    parts: list[str] = []
    done = position = 0
    while (match := _MASKABLE.search(text, position)) is not None:
        kind = match.lastgroup
        if kind == "digits":
            parts += (text[done:match.start()], "*" * (match.end() - match.start()))
            done = position = match.end()
        elif kind == "vietqr" and (qr := _mask_vietqr(text, match.start())) is not None:
            parts += (text[done:match.start()], qr[0])
            done = position = qr[1]
        elif kind == "vietqr":  # not a NAPAS payload after all: its digits are a plain number
            digits = _DIGITS.match(text, match.start())
            parts += (text[done:match.start()], "*" * (digits.end() - digits.start()))  # type: ignore[union-attr]
            done = position = digits.end()  # type: ignore[union-attr]
        else:  # an identifier: kept as it is
            position = match.end()
    parts.append(text[done:])
    return "".join(parts) + note


def _mask_vietqr(text: str, start: int) -> tuple[str, int] | None:
    """(masked payload, where it ends in text) for the VietQR payload that begins at text[start], or None
    when no NAPAS account information (tag 38 with the NAPAS GUID) follows: then it is no VietQR payload.
    Lengths in a payload count UTF-8 bytes; masking replaces whole characters, one `*` each."""
    window = text[start:start + _QR_SCAN_CHARS]
    raw = window.encode("utf-8", "surrogatepass")
    spans: list[tuple[int, int]] = []  # byte ranges to mask
    napas: list[bool] = []
    end = _mask_tlvs(raw, 0, len(raw), b"", spans, napas)
    if not napas:
        return None
    if raw.isascii():
        chars = list(window[:end])
        for first, last in spans:
            chars[first:last] = "*" * (last - first)
    else:  # byte offsets to character indexes (a cut inside a character takes the whole character)
        boundaries = list(accumulate((len(c.encode("utf-8", "surrogatepass")) for c in window), initial=0))
        chars = list(window[:bisect_left(boundaries, end)])
        for first, last in spans:
            low, high = bisect_right(boundaries, first) - 1, bisect_left(boundaries, last)
            chars[low:high] = "*" * (high - low)
    return "".join(chars), start + len(chars)


def _mask_tlvs(raw: bytes, start: int, end: int, path: bytes, spans: list, napas: list[bool]) -> int:
    """Collect in `spans` what to mask of the TLVs in raw[start:end]; returns where they stop (end, or the
    first byte that is no TLV header). Appends to `napas` on tag 38/00 holding the NAPAS GUID."""
    i = start
    while end - i >= 4 and raw[i:i + 4].isdigit():
        tag = raw[i:i + 2]
        first, last = i + 4, i + 4 + int(raw[i + 2:i + 4])
        whole = last <= end
        last = min(last, end)
        here = path + b"/" + tag if path else tag
        if here in (b"38", b"38/01"):  # NAPAS account information; its beneficiary
            inner = _mask_tlvs(raw, first, last, here, spans, napas)
            _digit_runs(raw, inner, last, whole, spans)  # whatever inside is not TLV-shaped
        elif here == b"38/01/01":  # the account or card number
            keep = 4 if whole and last - first > 4 and raw[first:last].isascii() else 0
            spans.append((first, last - keep))
        elif here == b"38/00" and raw[first:last] == _NAPAS_GUID:
            napas.append(True)
        else:
            _digit_runs(raw, first, last, whole, spans)
        i = last
        if not whole or (tag == b"63" and not path):  # cut short, or the CRC: the payload ends here
            break
    return i


def _digit_runs(raw: bytes, start: int, end: int, whole: bool, spans: list) -> None:
    spans.extend(match.span() for match in _ASCII_DIGIT_RUN.finditer(raw, start, end))
    if not whole:  # a value cut short by the end of the text: its last digits may start a longer number
        value = raw[start:end]
        spans.append((end - (len(value) - len(value.rstrip(b"0123456789"))), end))


class DeadLetter(BaseModel):
    """What `pulse.deadletter` carries and `dead_letters` stores: where a message came from and why it failed.

    key, error and raw are masked and bounded when the record is made (mask_personal_data)."""

    topic: str
    partition: int
    offset: int
    key: str = ""
    reason: str
    error: str
    raw: str

    @field_validator("key", "error", "raw")
    @classmethod
    def _without_personal_data(cls, value: str, info: ValidationInfo) -> str:
        return mask_personal_data(value, DEAD_LETTER_LIMITS[info.field_name])


class WindowRow(BaseModel):
    """One row of a window table, as published on `pulse.windows` (measures depend on the table)."""

    model_config = ConfigDict(extra="allow")

    table: str
    window_start: datetime
    province_code: str
    version: int

    @property
    def measures(self) -> dict[str, int]:
        return dict(self.__pydantic_extra__ or {})
