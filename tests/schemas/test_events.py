from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from schemas.events import DossierEvent, IdActivation, Payment
from schemas.vietqr import encode

VALID_PAYMENT = {
    "type": "payment", "event_id": "7204e52d-b222-4a58-808a-05a6c4647159",
    "event_time": "2026-01-05T07:00:01.157+07:00", "province_code": "66", "market_id": "MKT-66-018",
    "merchant_id": "MKT-66-018-04", "payer_bank_bin": "970436", "payee_bank_bin": "970405", "amount_vnd": 66000,
    "channel": "vietqr_dynamic", "status": "success", "qr_payload": encode("970405", "12290887360093", amount=66000),
}


def payment(**changes: object) -> Payment:
    return Payment.model_validate_json(json.dumps(VALID_PAYMENT | changes))


def error_types(**changes: object) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        payment(**changes)
    return {error["type"] for error in caught.value.errors()}


def test_valid_payment_keeps_only_a_masked_account() -> None:
    event = payment()
    assert event.amount_vnd == 66000
    assert event.account_masked.endswith("0093") and "1229088736" not in event.account_masked


def test_legacy_province_code_is_mapped_to_its_current_unit() -> None:
    assert payment(province_code="95").province_code == "96"  # Bạc Liêu is now part of Cà Mau
    assert payment(province_code="30").province_code == "31"  # Hải Dương is now part of Hải Phòng


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"province_code": "99"}, "unknown_province"),
        ({"amount_vnd": "66000"}, "int_type"),  # strict: no numbers in strings
        ({"amount_vnd": -5}, "greater_than"),
        ({"amount_vnd": 10**30}, "less_than_equal"),  # parsed as a big integer, then bounded
        ({"event_time": "2026-01-05T07:00:01"}, "timezone_aware"),
        ({"event_time": "9999-01-05T07:00:01+07:00"}, "less_than"),
        ({"event_time": "0001-01-05T07:00:01+07:00"}, "greater_than_equal"),
        ({"channel": "cash"}, "literal_error"),
        ({"qr_payload": VALID_PAYMENT["qr_payload"][:-4] + "0000"}, "bad_qr"),
        ({"amount_vnd": 67000}, "bad_qr"),  # the QR says 66,000
        ({"payee_bank_bin": "970436"}, "bad_qr"),
    ],
)
def test_invalid_payments_are_rejected_with_a_specific_error(changes: dict, expected: str) -> None:
    assert expected in error_types(**changes)


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    assert payment(new_field="x").event_id


def test_dossier_and_activation_models() -> None:
    dossier = DossierEvent.model_validate_json(json.dumps({
        "type": "dossier", "event_id": "7204e52d-b222-4a58-808a-05a6c4647150", "event_time": "2026-01-05T08:00:00+07:00",
        "province_code": "24", "dossier_id": "HS-1", "procedure_code": "TTHC-1", "full_process": True,
        "channel": "online", "stage": "returned", "due_time": "2026-01-06T08:00:00+07:00", "paid_online": True,
        "vneid_authenticated": True,
    }))
    assert dossier.stage == "returned"
    with pytest.raises(ValidationError):
        IdActivation.model_validate_json(json.dumps({
            "type": "id_activation", "event_id": "7204e52d-b222-4a58-808a-05a6c4647151",
            "event_time": "2026-01-05T08:00:00+07:00", "province_code": "01",
            "citizen_ref": "001203004005",  # a raw citizen number, not an HMAC reference
            "level": 2, "method": "police_station", "age_band": "25-34",
        }))


# --- fields added by issue 12: additive, with defaults that keep older events valid ---------------
DOSSIER = {
    "type": "dossier", "event_id": "7204e52d-b222-4a58-808a-05a6c4647152", "event_time": "2026-01-05T08:00:00+07:00",
    "province_code": "24", "dossier_id": "HS-2", "procedure_code": "1.000003", "full_process": True,
    "channel": "online", "stage": "returned", "due_time": "2026-01-06T08:00:00+07:00", "paid_online": True,
    "vneid_authenticated": True,
}
ACTIVATION = {
    "type": "id_activation", "event_id": "7204e52d-b222-4a58-808a-05a6c4647153",
    "event_time": "2026-01-05T08:00:00+07:00", "province_code": "01", "citizen_ref": "ab" * 32, "level": 2,
    "method": "police_station", "age_band": "25-34",
}


def test_older_events_take_the_stated_defaults() -> None:
    dossier = DossierEvent.model_validate_json(json.dumps(DOSSIER))
    assert (dossier.sector, dossier.fee_vnd, dossier.result_electronic, dossier.rating) == ("", 0, False, None)
    assert payment().category == "market"
    assert IdActivation.model_validate_json(json.dumps(ACTIVATION)).step == "activated"


def test_new_fields_and_stages_are_read() -> None:
    rated = DossierEvent.model_validate_json(json.dumps(DOSSIER | {
        "stage": "rated", "rating": 4, "sector": "land", "fee_vnd": 50_000, "result_electronic": False}))
    assert (rated.stage, rated.rating, rated.sector, rated.fee_vnd) == ("rated", 4, "land", 50_000)
    for stage in ("supplement_requested", "withdrawn"):
        assert DossierEvent.model_validate_json(json.dumps(DOSSIER | {"stage": stage})).stage == stage
    assert payment(category="tuition").category == "tuition"
    assert IdActivation.model_validate_json(json.dumps(ACTIVATION | {"step": "registered"})).step == "registered"


@pytest.mark.parametrize("changes", [
    {"stage": "rated"},  # a rating is required on `rated`
    {"stage": "rated", "rating": 6},
    {"stage": "rated", "rating": 0},
    {"rating": 5},  # and only there
    {"fee_vnd": -1},
    {"fee_vnd": "1000"},  # strict types
    {"result_electronic": "yes"},
])
def test_invalid_new_dossier_fields_are_rejected(changes: dict) -> None:
    with pytest.raises(ValidationError):
        DossierEvent.model_validate_json(json.dumps(DOSSIER | changes))


def test_unknown_category_and_step_are_rejected() -> None:
    assert "literal_error" in error_types(category="rent")
    with pytest.raises(ValidationError):
        IdActivation.model_validate_json(json.dumps(ACTIVATION | {"step": "revoked"}))
