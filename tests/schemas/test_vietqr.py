"""VietQR codec: every published/own vector, the strict rules, and property tests."""
from __future__ import annotations

import json
import pickle
from binascii import crc_hqx
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.banks import BANKS
from schemas.vietqr import REASONS, VietQR, VietQRError, decode, encode, mask_account

HERE = Path(__file__).resolve()
LOCAL_VECTORS = HERE.parents[1] / "data" / "vietqr_vectors.jsonl"
SHARED_VECTORS = HERE.parents[3] / "shared" / "domain" / "vietqr_vectors.jsonl"


def _load_vectors() -> list[dict[str, Any]]:
    path = LOCAL_VECTORS if LOCAL_VECTORS.is_file() else SHARED_VECTORS
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


VECTORS = _load_vectors()
VALID = [vector for vector in VECTORS if vector["valid"]]
INVALID = [vector for vector in VECTORS if not vector["valid"]]

# The vectors file names errors in its own words; these are the codec's reason codes for them.
ERROR_REASONS = {
    "bad_crc": "bad_crc",
    "non_numeric_tag": "bad_format",
    "missing_crc": "missing_tag",
    "bad_amount": "bad_amount",
    "unsupported_currency": "bad_currency",
    "bad_payload_format_indicator": "bad_format_indicator",
    "bad_country": "bad_country",
}

# Valid vectors that encode() rebuilds byte for byte: canonical order, nothing it cannot express.
REPRODUCIBLE = {
    "napas-6.1.2-static-card",
    "subiz-readme-vietinbank",
    "subiz-test-tpbank-static",
    "subiz-test-mb-dynamic-1",
    "subiz-test-mb-dynamic-2",
    "vnqrpay-acb-dynamic",
    "vnqrpay-techcombank-static-crc-leading-zero",
    "own-vpbank-dynamic-large",
    "own-acb-static-card",
    "own-sacombank-dynamic",
}
NOT_REPRODUCIBLE = {
    "napas-6.1.3-dynamic-account": "62/01 bill number, which encode() does not take",
    "napas-6.1.4-dynamic-card": "62/01 bill number, which encode() does not take",
    "subiz-test-mb-alnum-account": "letters in the account, which encode() refuses",
    "liopay-qrpush-merchant": "no 38/02, an MCC and 62/03: a merchant QR, not an IBFT one",
}

TYPICAL = "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E"


def with_crc(body: str) -> str:
    """body (everything before the CRC TLV) completed with a correct CRC."""
    data = (body + "6304").encode("utf-8")
    return body + "6304" + "%04X" % crc_hqx(data, 0xFFFF)


def tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value.encode('utf-8')):02d}{value}"


def account_info(bin_: str = "970436", account: str = "0123456789", service: str | None = "QRIBFTTA") -> str:
    value = tlv("00", "A000000727") + tlv("01", tlv("00", bin_) + tlv("01", account))
    if service is not None:
        value += tlv("02", service)
    return tlv("38", value)


def payload(*tlvs: str) -> str:
    return with_crc("".join(tlvs))


def reason_of(text: str) -> str:
    with pytest.raises(VietQRError) as caught:
        decode(text)
    return caught.value.reason


# --- the vectors file -------------------------------------------------------------------------


def test_vectors_file_has_both_kinds() -> None:
    assert len(VALID) >= 14 and len(INVALID) >= 7


@pytest.mark.skipif(not SHARED_VECTORS.is_file(), reason="no ../shared checkout beside the repository")
def test_local_vectors_copy_matches_shared() -> None:
    assert LOCAL_VECTORS.read_bytes() == SHARED_VECTORS.read_bytes()


@pytest.mark.parametrize("vector", VALID, ids=lambda vector: vector["id"])
def test_valid_vector_decodes_to_expected_fields(vector: dict[str, Any]) -> None:
    qr = decode(vector["payload"])
    assert qr.bank_bin == vector["bin"]
    assert qr.account == vector["account"]
    assert qr.service == vector["service"]
    assert qr.amount == vector["amount"]
    assert qr.purpose == vector["purpose"]
    assert qr.initiation == vector["initiation"]
    assert qr.currency == "704" and qr.country == "VN"
    assert qr.crc == vector["payload"][-4:].upper()


@pytest.mark.parametrize("vector", INVALID, ids=lambda vector: vector["id"])
def test_invalid_vector_raises_expected_reason(vector: dict[str, Any]) -> None:
    assert vector["error"] in ERROR_REASONS, "new error kind in the vectors file: map it in ERROR_REASONS"
    with pytest.raises(VietQRError) as caught:
        decode(vector["payload"])
    assert caught.value.reason == ERROR_REASONS[vector["error"]]
    assert caught.value.position is not None
    assert 0 <= caught.value.position <= len(vector["payload"])


@pytest.mark.parametrize("vector", VALID, ids=lambda vector: vector["id"])
def test_encode_reproduces_canonical_vectors(vector: dict[str, Any]) -> None:
    assert vector["id"] in REPRODUCIBLE | NOT_REPRODUCIBLE.keys(), "classify the new vector"
    qr = decode(vector["payload"])
    card = qr.service == "QRIBFTTC"
    args = (qr.bank_bin, qr.account, qr.amount, qr.purpose, card, qr.merchant_name, qr.merchant_city)
    if vector["id"] in REPRODUCIBLE:
        assert encode(*args) == vector["payload"]
    else:
        try:
            rebuilt = encode(*args)
        except VietQRError:
            return
        assert rebuilt != vector["payload"]


# --- decode: accepted forms -------------------------------------------------------------------


def test_typical_dynamic_payload() -> None:
    qr = decode(TYPICAL)
    assert qr.is_dynamic
    assert qr.bill_number == "NPS6869"
    assert qr.purpose == "thanh toan don hang"
    assert qr.account_masked == "*********5678"


def test_lowercase_crc_is_accepted_and_reported_uppercase() -> None:
    qr = decode(TYPICAL[:-4] + "2e2e")
    assert qr.crc == "2E2E"


def test_crc_keeps_leading_zero() -> None:
    vector = next(vector for vector in VALID if vector["id"] == "vnqrpay-techcombank-static-crc-leading-zero")
    assert vector["payload"].endswith("63040283")
    assert decode(vector["payload"]).crc == "0283"


def test_merchant_qr_fields() -> None:
    qr = decode(next(vector for vector in VALID if vector["id"] == "liopay-qrpush-merchant")["payload"])
    assert (qr.mcc, qr.merchant_name, qr.merchant_city, qr.store_label) == ("5812", "PHUONG CAC", "HANOI", "NPS6869")
    assert qr.service is None


def test_lengths_count_utf8_bytes() -> None:
    text = encode("970436", "0123456789", 50_000, "Thanh toán hóa đơn", merchant_name="Cà phê", merchant_city="Hà Nội")
    assert "0822Thanh toán hóa đơn" in text  # 18 characters, 22 bytes
    qr = decode(text)
    assert (qr.purpose, qr.merchant_name, qr.merchant_city) == ("Thanh toán hóa đơn", "Cà phê", "Hà Nội")


def test_static_qr_may_carry_an_amount_and_dynamic_may_omit_it() -> None:
    assert decode(payload("000201", "010211", account_info(), "5303704", "540450005802VN")).amount == 5000
    assert decode(payload("000201", "010212", account_info(), "5303704", "5802VN")).amount is None


def test_unknown_tags_and_subtags_are_ignored() -> None:
    text = payload("000201", "010212", account_info(), "5303704", "5802VN", tlv("62", tlv("09", "AME")), tlv("80", "x"))
    assert decode(text).purpose is None


def test_additional_data_labels() -> None:
    extra = "".join(tlv(tag, f"v{tag}") for tag in ("01", "02", "03", "04", "05", "06", "07", "08"))
    qr = decode(payload("000201", "010211", account_info(), "5303704", "5802VN", tlv("62", extra)))
    assert (qr.bill_number, qr.mobile_number, qr.store_label, qr.loyalty_number) == ("v01", "v02", "v03", "v04")
    assert (qr.reference_label, qr.customer_label, qr.terminal_label, qr.purpose) == ("v05", "v06", "v07", "v08")


def test_decoded_model_equals_validated_model() -> None:
    for vector in VALID:
        qr = decode(vector["payload"])
        assert qr == VietQR(**qr.model_dump())
        assert qr.model_dump_json() == VietQR(**qr.model_dump()).model_dump_json()
        assert hash(qr) == hash(VietQR(**qr.model_dump()))


def test_decoded_model_is_frozen() -> None:
    qr = decode(TYPICAL)
    with pytest.raises(ValidationError):
        qr.amount = 1  # type: ignore[misc]


# --- decode: rejected forms -------------------------------------------------------------------


def test_bad_crc_message_says_what_and_where() -> None:
    with pytest.raises(VietQRError) as caught:
        decode(TYPICAL[:-4] + "1234")
    assert str(caught.value) == "bad CRC at position 138: expected 2E2E, found 1234"
    assert (caught.value.reason, caught.value.position) == ("bad_crc", 138)
    assert isinstance(caught.value, ValueError)


def test_non_hex_crc() -> None:
    assert reason_of(TYPICAL[:-4] + "2E2G") == "bad_crc"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "missing_tag"),
        ("0", "truncated"),
        ("000", "truncated"),
        ("0002", "truncated"),
        ("000201", "missing_tag"),
        ("AB02", "bad_format"),
        ("00A201", "bad_format"),
        ("0002016304", "truncated"),
        ("00020163051234X", "bad_length"),
        ("0002016303123", "bad_length"),
        ("x" * 600, "bad_length"),
        ("\ud800", "bad_encoding"),
    ],
)
def test_structural_errors(text: str, reason: str) -> None:
    assert reason_of(text) == reason


def test_crc_must_be_last() -> None:
    assert reason_of(TYPICAL + "8001x") == "bad_order"


def test_crc_in_the_middle_and_at_the_end_is_a_duplicate() -> None:
    body = TYPICAL[:-8]
    assert reason_of(with_crc(body + "63041234")) == "duplicate_tag"


def test_duplicate_tag() -> None:
    assert reason_of(payload("000201", "010212", account_info(), "5303704", "54031005402205802VN")) == "duplicate_tag"


def test_duplicate_subtag() -> None:
    assert reason_of(payload("000201", "010212", account_info(), "5303704", "5802VN", tlv("62", "0801a0801b"))) == (
        "duplicate_tag"
    )


def test_tag_00_must_be_first() -> None:
    assert reason_of(payload("010212", "000201", account_info(), "5303704", "5802VN")) == "bad_order"


@pytest.mark.parametrize("missing", ["000201", "010212", "38", "5303704", "5802VN"])
def test_missing_mandatory_tag(missing: str) -> None:
    parts = ["000201", "010212", account_info(), "5303704", "5802VN"]
    parts = [part for part in parts if not part.startswith(missing)]
    with pytest.raises(VietQRError) as caught:
        decode(payload(*parts))
    assert caught.value.reason == "missing_tag"
    assert str(caught.value).startswith(f"missing tag {missing[:2]}")


def test_missing_subtags() -> None:
    no_guid = tlv("38", tlv("01", tlv("00", "970436") + tlv("01", "123")))
    no_beneficiary = tlv("38", tlv("00", "A000000727") + tlv("02", "QRIBFTTA"))
    no_account = tlv("38", tlv("00", "A000000727") + tlv("01", tlv("00", "970436")))
    no_bin = tlv("38", tlv("00", "A000000727") + tlv("01", tlv("01", "123")))
    for info, name in ((no_guid, "38/00"), (no_beneficiary, "38/01"), (no_account, "38/01/01"), (no_bin, "38/01/00")):
        with pytest.raises(VietQRError) as caught:
            decode(payload("000201", "010211", info, "5303704", "5802VN"))
        assert caught.value.reason == "missing_tag"
        assert f"missing tag {name}" in str(caught.value)


def test_nested_length_overrun_quirk() -> None:
    # NAPAS §6.1.1 as printed: 38/01/01 declares 12 bytes but carries 13 digits.
    quirky = tlv("38", "0010A000000727" + "0127" + "000697040301120011012345678" + "0208QRIBFTTA")
    assert reason_of(payload("000201", "010211", quirky, "5303704", "5802VN")) == "truncated"


@pytest.mark.parametrize(
    ("info", "reason"),
    [
        (account_info().replace("A000000727", "A000000728"), "unknown_guid"),
        (account_info(bin_="970499"), "unknown_bank"),
        (account_info(bin_="97043"), "unknown_bank"),
        (account_info(account="0123-456"), "bad_account"),
        (account_info(account="1" * 20), "bad_account"),
        (account_info(account=""), "bad_account"),
        (account_info(service="QRIBFTTX"), "bad_service"),
    ],
)
def test_account_information_errors(info: str, reason: str) -> None:
    assert reason_of(payload("000201", "010211", info, "5303704", "5802VN")) == reason


@pytest.mark.parametrize("service", ["QRIBFTTA", "QRIBFTTC", "QRPUSH", "QRCASH", None])
def test_known_service_codes(service: str | None) -> None:
    assert decode(payload("000201", "010211", account_info(service=service), "5303704", "5802VN")).service == service


@pytest.mark.parametrize("amount", ["0", "00", "0100", "-100", "+100", "100.00", "1e5", "", " 100", "1" * 14, "١٢٣"])
def test_bad_amounts(amount: str) -> None:
    assert reason_of(payload("000201", "010212", account_info(), "5303704", tlv("54", amount), "5802VN")) == (
        "bad_amount"
    )


def test_largest_amount() -> None:
    text = payload("000201", "010212", account_info(), "5303704", tlv("54", "9" * 13), "5802VN")
    assert decode(text).amount == 10**13 - 1


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        (("000202", "010212", account_info(), "5303704", "5802VN"), "bad_format_indicator"),
        (("000201", "010213", account_info(), "5303704", "5802VN"), "bad_initiation"),
        (("000201", "010212", account_info(), "5303840", "5802VN"), "bad_currency"),
        (("000201", "010212", account_info(), "5303704", "5802vn"), "bad_country"),
        (("000201", "010212", account_info(), "520458A2", "5303704", "5802VN"), "bad_mcc"),
    ],
)
def test_value_errors(parts: tuple[str, ...], reason: str) -> None:
    assert reason_of(payload(*parts)) == reason


def test_byte_length_that_splits_a_character() -> None:
    # "é" is two UTF-8 bytes: a declared length of 1 leaves its second byte where the next header must be.
    body = "000201010211" + account_info() + "5303704" + "5802VN" + "5901é"
    with pytest.raises(VietQRError) as caught:
        decode(with_crc(body))
    assert caught.value.reason == "bad_format"
    assert caught.value.position == len(body) - 1  # a character offset: the é


def test_whole_multibyte_value_decodes() -> None:
    text = payload("000201", "010211", account_info(), "5303704", "5802VN", tlv("62", tlv("08", "é€𝄞")))
    assert decode(text).purpose == "é€𝄞"


def test_non_string_input() -> None:
    with pytest.raises(VietQRError) as caught:
        decode(b"000201")  # type: ignore[arg-type]
    assert caught.value.reason == "bad_format"


def test_error_pickles() -> None:
    with pytest.raises(VietQRError) as caught:
        decode(TYPICAL[:-4] + "1234")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.reason, copy.position, str(copy)) == ("bad_crc", 138, str(caught.value))


def test_position_counts_characters_not_bytes() -> None:
    text = encode("970436", "0123456789", purpose="Thanh toán hóa đơn")[:-4] + "0000"
    with pytest.raises(VietQRError) as caught:
        decode(text)
    assert caught.value.position == len(text) - 4


# --- account masking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "masked"),
    [
        ("012345678", "*****5678"),
        ("0011012345678", "*********5678"),
        ("12345", "*2345"),
        ("1234", "****"),
        ("12", "**"),
        ("", ""),
    ],
)
def test_mask_account(account: str, masked: str) -> None:
    assert mask_account(account) == masked


# --- encode -----------------------------------------------------------------------------------


def test_encode_static_and_dynamic() -> None:
    static = encode("970436", "0123456789")
    assert static.startswith("000201010211")
    assert decode(static).amount is None
    dynamic = encode("970436", "0123456789", 10_000, "Ca phe")
    assert dynamic.startswith("000201010212")
    qr = decode(dynamic)
    assert (qr.amount, qr.purpose, qr.service) == (10_000, "Ca phe", "QRIBFTTA")


def test_encode_card() -> None:
    qr = decode(encode("970416", "9704160123456789", card=True))
    assert (qr.service, qr.account) == ("QRIBFTTC", "9704160123456789")


def test_encode_accepts_int_like_amount() -> None:
    class Amount:
        def __index__(self) -> int:
            return 25_000

    assert decode(encode("970436", "0123456789", Amount())).amount == 25_000  # type: ignore[arg-type]


def test_encode_treats_empty_text_as_absent() -> None:
    assert encode("970436", "0123456789", purpose="", merchant_name="") == encode("970436", "0123456789")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"bank_bin": "999999"}, "unknown_bank"),
        ({"bank_bin": 970436}, "unknown_bank"),
        ({"account": "0123-4567"}, "bad_account"),
        ({"account": "０１２３"}, "bad_account"),
        ({"account": ""}, "bad_account"),
        ({"account": "1" * 20}, "bad_account"),
        ({"account": "970416012345", "card": True}, "bad_account"),
        ({"amount": 0}, "bad_amount"),
        ({"amount": -5}, "bad_amount"),
        ({"amount": True}, "bad_amount"),
        ({"amount": 10.0}, "bad_amount"),
        ({"amount": "100"}, "bad_amount"),
        ({"amount": 10**13}, "bad_amount"),
        ({"purpose": "x" * 26}, "bad_length"),
        ({"purpose": "á" * 13}, "bad_length"),  # 13 characters, 26 bytes
        ({"purpose": "line\nbreak"}, "bad_text"),
        ({"purpose": "\ud800"}, "bad_text"),
        ({"merchant_name": "N" * 26}, "bad_length"),
        ({"merchant_city": "C" * 16}, "bad_length"),
    ],
)
def test_encode_rejects_bad_input(kwargs: dict[str, Any], reason: str) -> None:
    arguments: dict[str, Any] = {"bank_bin": "970436", "account": "0123456789", **kwargs}
    with pytest.raises(VietQRError) as caught:
        encode(**arguments)
    assert caught.value.reason == reason
    assert reason in REASONS


# --- properties -------------------------------------------------------------------------------

PRINTABLE = st.characters(categories=["L", "M", "N", "P", "S"], include_characters=" ")


def short_text(limit: int) -> st.SearchStrategy[str]:
    """Non-empty printable text of at most `limit` UTF-8 bytes."""
    return (
        st.text(PRINTABLE, min_size=1, max_size=limit)
        .map(lambda text: text.encode("utf-8")[:limit].decode("utf-8", "ignore"))
        .filter(lambda text: text != "" and text.isprintable())
    )


@st.composite
def transfers(draw: st.DrawFn) -> dict[str, Any]:
    card = draw(st.booleans())
    digits = st.text("0123456789", min_size=16 if card else 1, max_size=19)
    return {
        "bank_bin": draw(st.sampled_from(sorted(BANKS))),
        "account": draw(digits),
        "amount": draw(st.none() | st.integers(1, 10**13 - 1)),
        "purpose": draw(st.none() | short_text(25)),
        "card": card,
        "merchant_name": draw(st.none() | short_text(25)),
        "merchant_city": draw(st.none() | short_text(15)),
    }


@settings(max_examples=300, deadline=None)
@given(transfers())
def test_encode_decode_round_trip(transfer: dict[str, Any]) -> None:
    text = encode(**transfer)
    qr = decode(text)
    assert qr.bank_bin == transfer["bank_bin"]
    assert qr.account == transfer["account"]
    assert qr.amount == transfer["amount"]
    assert qr.purpose == transfer["purpose"]
    assert qr.merchant_name == transfer["merchant_name"]
    assert qr.merchant_city == transfer["merchant_city"]
    assert qr.service == ("QRIBFTTC" if transfer["card"] else "QRIBFTTA")
    assert qr.initiation == ("11" if transfer["amount"] is None else "12")
    assert qr.crc == text[-4:]
    card = qr.service == "QRIBFTTC"
    assert encode(qr.bank_bin, qr.account, qr.amount, qr.purpose, card, qr.merchant_name, qr.merchant_city) == text


def _assert_decodes_or_vietqr_error(text: str) -> None:
    try:
        decode(text)
    except VietQRError as exc:
        assert exc.reason in REASONS
        assert str(exc)
        assert exc.position is None or 0 <= exc.position <= len(text)


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_arbitrary_text_raises_only_vietqr_error(text: str) -> None:
    _assert_decodes_or_vietqr_error(text)


@settings(max_examples=500, deadline=None)
@given(st.text("0123456789ABVNQRIT é", max_size=120))
def test_tlv_like_text_raises_only_vietqr_error(text: str) -> None:
    _assert_decodes_or_vietqr_error(text)
    _assert_decodes_or_vietqr_error(with_crc(text))


@st.composite
def mutated_payloads(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from([vector["payload"] for vector in VECTORS]))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        char = draw(st.characters() | st.sampled_from("0123456789"))
        kind = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        if kind == "replace":
            text = text[:at] + char + text[at + 1 :]
        elif kind == "insert":
            text = text[:at] + char + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        else:
            text = text[:at]
    return text


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads(), st.booleans())
def test_mutated_payloads_raise_only_vietqr_error(text: str, fix_crc: bool) -> None:
    if fix_crc and len(text) > 8:  # past the CRC check, into the semantic checks
        try:
            text = with_crc(text[:-8])
        except UnicodeEncodeError:
            pass
    _assert_decodes_or_vietqr_error(text)
