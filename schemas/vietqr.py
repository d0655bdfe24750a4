"""VietQR codec: NAPAS 247 account/card transfer QR payloads (EMVCo merchant-presented mode).

Format notes live in ../shared/domain/vietqr.md. Lengths count UTF-8 bytes, so decoding walks the
UTF-8 bytes of the payload and only turns the free-text values back into str.

decode() runs once per payment event, so its happy path is a tight loop over a precomputed
header table; only when that path rejects a payload does a slower, careful walk run again to
say precisely what is wrong and where.
"""
from __future__ import annotations

import operator
import re
from binascii import crc_hqx
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, NoReturn

from pydantic import BaseModel

from schemas.banks import BANKS
from schemas.errors import PulseError

NAPAS_GUID = "A000000727"
MAX_PAYLOAD_BYTES = 512  # EMVCo MPM limit; also bounds the work done on hostile input
MAX_ACCOUNT_LEN = 19
MAX_AMOUNT_DIGITS = 13
MAX_PURPOSE_BYTES = 25
MAX_NAME_BYTES = 25
MAX_CITY_BYTES = 15

# Every VietQRError.reason, for dead-letter accounting and tests.
REASONS = frozenset(
    {
        # structure
        "bad_format",  # not a str, or a tag/length that is not two digits
        "bad_encoding",  # a lone surrogate (not encodable as UTF-8)
        "bad_length",  # payload over 512 bytes, CRC not 4 long, value too long to encode
        "truncated",  # a TLV header or value runs past the end of its container
        "duplicate_tag",
        "bad_order",  # 00 not first, 63 not last
        "missing_tag",
        "bad_crc",
        # values
        "bad_format_indicator",  # 00 is not 01
        "bad_initiation",  # 01 is not 11 or 12
        "unknown_guid",  # 38/00 is not the NAPAS AID
        "unknown_bank",  # BIN not in schemas.banks.BANKS
        "bad_account",
        "bad_service",
        "bad_amount",
        "bad_currency",
        "bad_country",
        "bad_mcc",
        "bad_text",  # encode only: non-printable free text
    }
)

Initiation = Literal["11", "12"]
Service = Literal["QRIBFTTA", "QRIBFTTC", "QRPUSH", "QRCASH"]

# One dict probe both checks that a 4-byte TLV header is all digits and splits it into
# (tag, header + value size): about 1 MB, bought for the hot loop in _fields.
_TAG_IDS = [b"%02d" % tag for tag in range(100)]
_HEADERS: dict[bytes, tuple[bytes, int]] = {
    b"%04d" % n: (_TAG_IDS[n // 100], 4 + n % 100) for n in range(10_000)
}
_BINS: dict[bytes, str] = {bin_.encode("ascii"): bin_ for bin_ in BANKS}
_SERVICES: dict[bytes, str] = {code.encode("ascii"): code for code in Service.__args__}
_INITIATIONS: dict[bytes, str] = {b"11": "11", b"12": "12"}
_ADDITIONAL_FIELDS: dict[bytes, str] = {
    b"01": "bill_number",
    b"02": "mobile_number",
    b"03": "store_label",
    b"04": "loyalty_number",
    b"05": "reference_label",
    b"06": "customer_label",
    b"07": "terminal_label",
    b"08": "purpose",
}


class VietQRError(PulseError, ValueError):
    """An invalid VietQR payload (decode) or invalid input (encode).

    reason: short machine code (bad_crc, truncated, missing_tag, unknown_bank, ...);
    position: character offset in the payload where the problem was found, or None.
    """

    def __init__(self, reason: str, what: str, position: int | None = None, detail: str = "") -> None:
        self.reason = reason
        self.what = what
        self.position = position
        self.detail = detail
        super().__init__(str(self))

    def __str__(self) -> str:
        where = "" if self.position is None else f" at position {self.position}"
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.what}{where}{detail}"

    def __reduce__(self) -> tuple[Any, ...]:
        # The default exception pickling would call __init__ with the message only.
        return (type(self), (self.reason, self.what, self.position, self.detail))


class VietQR(BaseModel, frozen=True):
    """A decoded VietQR payload (service is None for merchant QRs that omit 38/02)."""

    initiation: Initiation
    bank_bin: str
    account: str
    service: Service | None = None
    amount: int | None = None
    currency: str = "704"
    country: str = "VN"
    merchant_name: str | None = None
    merchant_city: str | None = None
    mcc: str | None = None
    purpose: str | None = None
    bill_number: str | None = None
    mobile_number: str | None = None
    store_label: str | None = None
    loyalty_number: str | None = None
    reference_label: str | None = None
    customer_label: str | None = None
    terminal_label: str | None = None
    crc: str

    @property
    def is_dynamic(self) -> bool:
        return self.initiation == "12"

    @property
    def account_masked(self) -> str:
        """All but the last four characters masked; everything masked when four would be the whole account."""
        return mask_account(self.account)


_FIELD_NAMES = set(VietQR.model_fields)
_DEFAULTS: dict[str, Any] = {
    name: None if field.is_required() else field.default for name, field in VietQR.model_fields.items()
}
_new_object = object.__new__
_set_attribute = object.__setattr__


class QRFacts(NamedTuple):
    """What the pipeline needs from a payload: the payee bank, the amount (dynamic QRs) and the masked account."""

    bank_bin: str
    amount: int | None
    account_masked: str


def mask_account(account: str) -> str:
    keep = 4 if len(account) > 4 else 0
    return "*" * (len(account) - keep) + account[len(account) - keep :]


# ---------------------------------------------------------------------------------------------
# decode


def decode(payload: str) -> VietQR:
    """Parse and validate a VietQR payload; raises VietQRError (only) on any invalid input."""
    raw = _utf8(payload)
    size = len(raw)
    # Tag 63 must be the last 8 bytes; everything before it must be whole TLVs without another 63.
    top = _fields(raw, size - 8) if raw[size - 8 : size - 4] == b"6304" else None
    if top is None or b"63" in top:
        _diagnose(raw)
    crc = b"%04X" % crc_hqx(raw[: size - 4], 0xFFFF)
    found = raw[size - 4 :]
    if found != crc and found.upper() != crc:  # real bank apps emit lowercase hex
        _bad_crc(raw, crc)
    if raw[:6] != b"000201" or top.get(b"53") != b"704" or top.get(b"58") != b"VN":
        _bad_fixed_values(raw, top)
    data = _DEFAULTS.copy()
    data["crc"] = crc.decode("ascii")
    data["initiation"] = _INITIATIONS.get(top.get(b"01")) or _bad_initiation(raw)  # type: ignore[arg-type]
    _account_info(raw, top.get(b"38"), data)
    amount = top.get(b"54")
    if amount is not None:
        # VND has no minor unit: a positive integer without sign, point or leading zero.
        if not (amount.isdigit() and amount[0] != 48 and len(amount) <= MAX_AMOUNT_DIGITS):  # 48: "0"
            raise _bad_value(raw, ("54",), "bad_amount", "amount must be a positive whole number of VND")
        data["amount"] = int(amount)
    if len(top) > 5:  # more than the mandatory 00 01 38 53 58: maybe optional tags to read
        _optional_fields(raw, top, data)
    return _build(data)


def _utf8(payload: str) -> bytes:
    if not isinstance(payload, str):
        raise VietQRError("bad_format", "payload must be a str", None, type(payload).__name__)
    try:
        raw = payload.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise VietQRError("bad_encoding", "character not encodable as UTF-8", exc.start) from None
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise VietQRError("bad_length", "payload too long", None, f"{len(raw)} bytes, limit {MAX_PAYLOAD_BYTES}")
    return raw


def _fields(raw: bytes, end: int) -> dict[bytes, bytes] | None:
    """Tag -> value of the TLVs that exactly fill raw[:end]; None on any fault (see _diagnose)."""
    fields: dict[bytes, bytes] = {}
    i = count = 0
    try:
        while i < end:
            tag, stop = _HEADERS[raw[i : i + 4]]
            stop += i
            fields[tag] = raw[i + 4 : stop]
            i = stop
            count += 1
    except KeyError:  # a header that is not four digits
        return None
    if i != end or len(fields) != count:  # overrun, or a duplicated tag
        return None
    return fields


def _account_info(raw: bytes, value: bytes | None, data: dict[str, Any]) -> None:
    info = None if value is None else _fields(value, len(value))
    if info is None:
        _bad_template(raw, ("38",))
    if info.get(b"00") != b"A000000727":
        raise _bad_value(raw, ("38", "00"), "unknown_guid", f"GUID must be {NAPAS_GUID}")
    value = info.get(b"01")
    beneficiary = None if value is None else _fields(value, len(value))
    if beneficiary is None:
        _bad_template(raw, ("38", "01"))
    bin_ = _BINS.get(beneficiary.get(b"00"))  # type: ignore[arg-type]
    if bin_ is None:
        raise _bad_value(raw, ("38", "01", "00"), "unknown_bank", "unknown bank BIN")
    account = beneficiary.get(b"01")
    if account is None or not (account.isalnum() and len(account) <= MAX_ACCOUNT_LEN):
        raise _bad_value(raw, ("38", "01", "01"), "bad_account", "account must be 1-19 letters or digits")
    data["bank_bin"] = bin_
    data["account"] = account.decode("ascii")
    service = info.get(b"02")
    if service is not None:
        code = _SERVICES.get(service)
        if code is None:
            raise _bad_value(raw, ("38", "02"), "bad_service", "unknown service code")
        data["service"] = code


def _optional_fields(raw: bytes, top: dict[bytes, bytes], data: dict[str, Any]) -> None:
    mcc = top.get(b"52")
    if mcc is not None:
        if not (len(mcc) == 4 and mcc.isdigit()):
            raise _bad_value(raw, ("52",), "bad_mcc", "merchant category code must be 4 digits")
        data["mcc"] = mcc.decode("ascii")
    value = top.get(b"62")
    extra = None if value is None else _fields(value, len(value))
    if extra is None and value is not None:
        _bad_template(raw, ("62",))
    try:
        value = top.get(b"59")
        if value is not None:
            data["merchant_name"] = value.decode("utf-8")
        value = top.get(b"60")
        if value is not None:
            data["merchant_city"] = value.decode("utf-8")
        if extra:
            for sub, value in extra.items():
                name = _ADDITIONAL_FIELDS.get(sub)
                if name is not None:
                    data[name] = value.decode("utf-8")
    except UnicodeDecodeError:
        # Not reachable from a str: raw is valid UTF-8 and every accepted value sits between
        # ASCII header bytes, so it holds whole characters. Kept so no other error type escapes.
        raise VietQRError("bad_encoding", "text field is not valid UTF-8") from None


def _build(data: dict[str, Any]) -> VietQR:
    # decode has checked every value more strictly than the field types do, and pydantic's
    # re-validation would cost a third of the whole decode; tests pin equality with VietQR(**data).
    qr = _new_object(VietQR)
    _set_attribute(qr, "__dict__", data)
    _set_attribute(qr, "__pydantic_fields_set__", _FIELD_NAMES.copy())
    _set_attribute(qr, "__pydantic_extra__", None)
    _set_attribute(qr, "__pydantic_private__", None)
    return qr


# ---------------------------------------------------------------------------------------------
# facts: the hot path's view of a payload


def facts(payload: str) -> QRFacts:
    """QRFacts of a payload that decode() accepts; raises decode's own VietQRError for any other.

    Payloads in the layout encode() and the simulators write are checked by one regular expression
    plus length and CRC arithmetic, without building a VietQR; any other layout goes through decode.
    """
    found = _canonical_facts(payload) if isinstance(payload, str) else None
    if found is not None:
        return found
    qr = decode(payload)
    return QRFacts(qr.bank_bin, qr.amount, qr.account_masked)


# encode()'s tag order with its fixed values spelled out. Every value decode() checks has its
# rule here (01 in 11/12, GUID, 6-digit BIN, 1-19 letters or digits, service, 53=704, amount
# without leading zero, 58=VN, 62 holding exactly one TLV). The lengths of 38, 38/01, 38/01/01
# and 54 follow from the account's and the amount's own length, so one alternative per length
# spells them out; the 62 lengths are compared in _canonical_facts. With every length right,
# decode's TLV walk finds exactly these fields, so its verdict and facts are the same. The tags
# are distinct and none is 63, the payload stays far under 512 bytes, and 62/08 sits between
# ASCII header bytes, so it holds whole UTF-8 characters, as decode requires.
_ACCOUNT_INFO = b"|".join(
    b"38%02d0010A00000072701%02d0006[0-9]{6}01%02d[0-9A-Za-z]{%d}" % (44 + n, 14 + n, n, n)
    for n in range(1, MAX_ACCOUNT_LEN + 1)
)
_AMOUNT = b"|".join(b"%02d[1-9][0-9]{%d}" % (n, n - 1) for n in range(1, MAX_AMOUNT_DIGITS + 1))
_CANONICAL = re.compile(
    rb"0002010102(?:11|12)"
    rb"(" + _ACCOUNT_INFO + rb")0208QRIBFTT[AC]"
    rb"5303704"
    rb"(?:54(" + _AMOUNT + rb"))?"
    rb"5802VN"
    rb"(?:62([0-9]{2})08([0-9]{2})(.*))?"
    rb"6304([0-9A-Fa-f]{4})",
    re.DOTALL,
).fullmatch
_new_tuple = tuple.__new__
_BIN_AT = slice(26, 32)  # in the 38 TLV: 38LL 0010A000000727 01LL 0006 BBBBBB 01LL account
_ACCOUNT_FROM = 36


def _canonical_facts(payload: str) -> QRFacts | None:
    """Facts of a valid payload in the canonical layout; None when invalid or in any other layout."""
    try:
        raw = payload.encode("utf-8")
    except UnicodeEncodeError:
        return None
    match = _CANONICAL(raw)
    if match is None:
        return None
    info, amount, extra_len, purpose_len, purpose, crc = match.groups()
    if purpose is not None and not (int(purpose_len) == len(purpose) and int(extra_len) == 4 + len(purpose)):
        return None
    if int(crc, 16) != crc_hqx(raw[:-4], 0xFFFF):  # hex digits of either case, as decode accepts
        return None
    bank_bin = _BINS.get(info[_BIN_AT])
    if bank_bin is None:
        return None
    account = info[_ACCOUNT_FROM:].decode("ascii")
    # tuple.__new__: QRFacts without NamedTuple's __new__, a Python frame on every cache miss of the hot path
    return _new_tuple(QRFacts, (bank_bin, None if amount is None else int(amount[2:]), mask_account(account)))


# ---------------------------------------------------------------------------------------------
# slow path: precise diagnosis of rejected payloads


def _bad_crc(raw: bytes, expected: bytes) -> NoReturn:
    body_end = len(raw) - 4
    found = raw[body_end:].decode("utf-8", "replace")
    raise VietQRError("bad_crc", "bad CRC", _char_pos(raw, body_end), f"expected {expected.decode()}, found {found}")


def _bad_fixed_values(raw: bytes, top: dict[bytes, bytes]) -> NoReturn:
    """Explain a wrong 00 (format indicator, and first), 53 (currency) or 58 (country)."""
    checks = (
        ("00", b"01", "bad_format_indicator", "payload format indicator must be 01"),
        ("53", b"704", "bad_currency", "currency must be 704 (VND)"),
        ("58", b"VN", "bad_country", "country must be VN"),
    )
    for tag, wanted, reason, what in checks:
        if top.get(tag.encode("ascii")) != wanted:
            raise _bad_value(raw, (tag,), reason, what)
    raise VietQRError("bad_order", "tag 00 must come first", _char_pos(raw, _find(raw, ("00",))[0]))


def _bad_initiation(raw: bytes) -> NoReturn:
    raise _bad_value(raw, ("01",), "bad_initiation", "point of initiation must be 11 or 12")


def _bad_template(raw: bytes, path: tuple[str, ...]) -> NoReturn:
    """Raise the precise error for a template that is missing or not made of whole, distinct TLVs."""
    offset, start, end = _find(raw, path)  # raises missing_tag when absent
    for _ in _tlvs(raw, start, end):  # raises the structural error
        pass
    raise VietQRError("bad_format", f"malformed template {'/'.join(path)}", _char_pos(raw, offset))


def _tlvs(raw: bytes, start: int, end: int) -> Iterator[tuple[str, int, int, int]]:
    """(tag, tag offset, value start, value end) for raw[start:end], raising on the first fault."""
    seen: set[str] = set()
    i = start
    while i < end:
        if end - i < 4:
            raise VietQRError("truncated", "truncated TLV header", _char_pos(raw, i), f"{end - i} byte(s) left")
        tag_bytes, length_bytes = raw[i : i + 2], raw[i + 2 : i + 4]
        if not tag_bytes.isdigit():
            raise VietQRError("bad_format", "non-numeric tag", _char_pos(raw, i), _show(tag_bytes))
        if not length_bytes.isdigit():
            raise VietQRError("bad_format", "non-numeric length", _char_pos(raw, i + 2), _show(length_bytes))
        tag = tag_bytes.decode("ascii")
        value_end = i + 4 + int(length_bytes)
        if value_end > end:
            raise VietQRError(
                "truncated", f"value of tag {tag} overruns its container", _char_pos(raw, i),
                f"{int(length_bytes)} bytes declared, {end - i - 4} available",
            )
        if tag in seen:
            raise VietQRError("duplicate_tag", f"duplicate tag {tag}", _char_pos(raw, i))
        seen.add(tag)
        yield tag, i, i + 4, value_end
        i = value_end


def _diagnose(raw: bytes) -> NoReturn:
    """Raise the precise error for a payload the fast path rejected at top level."""
    items = list(_tlvs(raw, 0, len(raw)))
    crc = [item for item in items if item[0] == "63"]
    if not crc:
        raise VietQRError("missing_tag", "missing tag 63 (CRC)", _char_pos(raw, len(raw)))
    _, offset, start, end = crc[0]
    if end - start != 4:
        raise VietQRError("bad_length", "CRC (tag 63) must be 4 hex digits", _char_pos(raw, offset))
    if items[-1][0] != "63":
        raise VietQRError("bad_order", "tag 63 (CRC) must be the last tag", _char_pos(raw, offset))
    raise VietQRError("bad_format", "malformed payload", 0)  # not reached: kept so _diagnose always raises


def _find(raw: bytes, path: tuple[str, ...]) -> tuple[int, int, int]:
    """(tag offset, value start, value end) of the TLV at path, tag ids from the top level down."""
    offset, start, end = 0, 0, len(raw)
    for depth, tag in enumerate(path):
        for item_tag, item_offset, item_start, item_end in _tlvs(raw, start, end):
            if item_tag == tag:
                offset, start, end = item_offset, item_start, item_end
                break
        else:
            parent = _char_pos(raw, start) if depth else None
            raise VietQRError("missing_tag", f"missing tag {'/'.join(path[: depth + 1])}", parent)
    return offset, start, end


def _bad_value(raw: bytes, path: tuple[str, ...], reason: str, what: str) -> VietQRError:
    """The error for the value at path (missing_tag instead when there is no such value)."""
    _, start, end = _find(raw, path)
    found = _show(raw[start:end])
    return VietQRError(reason, f"{what} (tag {'/'.join(path)})", _char_pos(raw, start), f"found {found}")


def _char_pos(raw: bytes, byte_offset: int) -> int:
    if raw.isascii():
        return byte_offset
    return len(raw[:byte_offset].decode("utf-8", "ignore"))


def _show(value: bytes) -> str:
    return repr(value.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------------------------
# encode


def encode(
    bank_bin: str,
    account: str,
    amount: int | None = None,
    purpose: str | None = None,
    card: bool = False,
    merchant_name: str | None = None,
    merchant_city: str | None = None,
) -> str:
    """Build a VietQR payload in canonical tag order, upper-case CRC.

    A dynamic QR (01=12) is produced exactly when an amount is given. Empty optional strings are
    treated as absent.
    """
    _check_bin(bank_bin)
    _check_account(account, card)
    beneficiary = _tlv("00", bank_bin) + _tlv("01", account)
    service = "QRIBFTTC" if card else "QRIBFTTA"
    parts = [
        "000201",
        _tlv("01", "11" if amount is None else "12"),
        _tlv("38", _tlv("00", NAPAS_GUID) + _tlv("01", beneficiary) + _tlv("02", service)),
        "5303704",
    ]
    if amount is not None:
        parts.append(_tlv("54", _amount_text(amount)))
    parts.append("5802VN")
    if merchant_name:
        parts.append(_tlv("59", _check_text("merchant_name", merchant_name, MAX_NAME_BYTES)))
    if merchant_city:
        parts.append(_tlv("60", _check_text("merchant_city", merchant_city, MAX_CITY_BYTES)))
    if purpose:
        parts.append(_tlv("62", _tlv("08", _check_text("purpose", purpose, MAX_PURPOSE_BYTES))))
    parts.append("6304")
    body = "".join(parts)
    return body + "%04X" % crc_hqx(body.encode("utf-8"), 0xFFFF)


def _tlv(tag: str, value: str) -> str:
    length = len(value.encode("utf-8"))
    if length > 99:
        raise VietQRError("bad_length", f"value of tag {tag} too long", None, f"{length} bytes, limit 99")
    return f"{tag}{length:02d}{value}"


def _check_bin(bank_bin: str) -> None:
    if not isinstance(bank_bin, str) or bank_bin not in BANKS:
        raise VietQRError("unknown_bank", "unknown bank BIN", None, repr(bank_bin))


def _check_account(account: str, card: bool) -> None:
    if not (isinstance(account, str) and account.isascii() and account.isdigit()):
        raise VietQRError("bad_account", "account must be digits", None, repr(account))
    low = 16 if card else 1  # NAPAS domestic card numbers have 16-19 digits
    if not low <= len(account) <= MAX_ACCOUNT_LEN:
        kind = "card number" if card else "account"
        raise VietQRError("bad_account", f"{kind} must have {low}-{MAX_ACCOUNT_LEN} digits", None, repr(account))


def _amount_text(amount: int) -> str:
    try:
        whole = operator.index(amount)  # ints and int-likes (numpy), never floats or strings
    except TypeError:
        whole = 0
    if whole <= 0 or isinstance(amount, bool):  # bool is an int subclass; True is no amount
        raise VietQRError("bad_amount", "amount must be a positive integer", None, repr(amount))
    text = str(whole)
    if len(text) > MAX_AMOUNT_DIGITS:
        raise VietQRError("bad_amount", "amount too large", None, f"{len(text)} digits, limit {MAX_AMOUNT_DIGITS}")
    return text


def _check_text(field: str, value: str, limit: int) -> str:
    if not isinstance(value, str) or not value.isprintable():
        raise VietQRError("bad_text", f"{field} must be printable text", None, repr(value))
    size = len(value.encode("utf-8"))  # printable text holds no lone surrogates
    if size > limit:
        raise VietQRError("bad_length", f"{field} too long", None, f"{size} UTF-8 bytes, limit {limit}")
    return value
