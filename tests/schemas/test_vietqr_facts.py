"""vietqr.facts, the hot path's VietQR check, against decode: the same verdict and facts for every input.

The corpus: the published/own vectors, the simulator's payloads, the hardening suite's hostile ones, and
systematic mutations of canonical payloads (every byte changed, every truncation, tags duplicated and
reordered, every declared length off by one, CRC case and digits). Each mutation is tried with its CRC
as it is and recomputed, so the checks behind the CRC are exercised too.
"""
from __future__ import annotations

import json
import re
from binascii import crc_hqx
from collections.abc import Iterator

import pytest

from pulse.settings import Settings
from pulse.simulate import SimulationOptions, build_generator
from schemas.events import qr_facts
from schemas.vietqr import QRFacts, VietQRError, _canonical_facts, decode, encode, facts
from tests.hardening.hostile import awkward_valid_events, bad_qr_payment, hostile_messages
from tests.schemas.test_vietqr import VECTORS

Verdict = tuple[str, object]
QR_IN_JSON = re.compile(r'"qr_payload"\s*:\s*"([^"]*)')


def by_decode(payload: object) -> Verdict:
    try:
        qr = decode(payload)  # type: ignore[arg-type]
    except VietQRError as error:
        return "rejected", (error.reason, str(error))
    return "accepted", QRFacts(qr.bank_bin, qr.amount, qr.account_masked)


def by_facts(payload: object) -> Verdict:
    try:
        return "accepted", facts(payload)  # type: ignore[arg-type]
    except VietQRError as error:
        return "rejected", (error.reason, str(error))


def with_crc(body: str) -> str:
    return body + "%04X" % crc_hqx(body.encode("utf-8"), 0xFFFF)


def simulator_payloads(events: int = 6_000) -> list[str]:
    generator = build_generator(SimulationOptions(seed=11, events=events, rate=100_000.0, speed=60.0,
                                                  demo_key=True), Settings())
    found = (QR_IN_JSON.search(emitted.value.decode()) for emitted in generator.events(events))
    return sorted({match[1] for match in found if match})


def hostile_payloads() -> list[str]:
    values = [message.value for message in hostile_messages(64_000, huge_bytes=70_000) if message.value]
    texts = [value.decode("utf-8", "replace") for value in values]
    texts += [json.dumps(event) for _, event in awkward_valid_events()]
    texts.append(json.dumps(bad_qr_payment(1)))
    return sorted({match[1] for text in texts for match in QR_IN_JSON.finditer(text)})


# encode()'s layout with the tags the simulators write: the fast path handles these itself.
FAST_SEEDS = [
    encode("970422", "3177301685", amount=19_000),
    encode("970436", "0123456789"),
    encode("970405", "1", amount=10**12),
    encode("970403", "9704031101234567", card=True, amount=5),
    encode("970415", "1234567890123456789", amount=123_456, purpose="thanh toan don 42"),
    encode("970418", "00001111", purpose="học phí kỳ 2"),
]
# Layouts it leaves to decode (merchant name and city; a bill number in 62).
SEEDS = FAST_SEEDS + [
    encode("970407", "12345", amount=100, merchant_name="Chợ Bến Thành", merchant_city="HCM"),
    next(vector["payload"] for vector in VECTORS if vector["id"] == "napas-6.1.3-dynamic-account"),
]


def top_level_tlvs(payload: str) -> list[str]:
    parts, i = [], 0
    while i < len(payload):
        size = 4 + int(payload[i + 2 : i + 4])
        parts.append(payload[i : i + size])
        i += size
    return parts


def header_offsets(payload: str) -> Iterator[int]:
    """Offsets of every TLV header, nested ones included (templates 38, 38/01 and 62)."""
    def walk(start: int, end: int) -> Iterator[int]:
        i = start
        while i < end:
            size = int(payload[i + 2 : i + 4])
            yield i
            if payload[i : i + 2] in ("38", "62") or (start > 0 and payload[i : i + 2] == "01" and size > 12):
                yield from walk(i + 4, i + 4 + size)
            i += 4 + size

    return walk(0, len(payload.encode("utf-8")) if payload.isascii() else len(payload))


def mutations(seed: str) -> Iterator[str]:
    body = seed[:-4]
    for i in range(len(seed)):  # every position, to a digit, a letter of either case, a space, a non-ASCII
        for char in "0159AFZaz é":
            if char != seed[i]:
                changed = seed[:i] + char + seed[i + 1 :]
                yield changed
                yield with_crc(changed[:-4])
    for end in range(len(seed)):  # every truncation
        yield seed[:end]
        if end >= 4:
            yield with_crc(seed[: end - 4])
    tlvs = top_level_tlvs(body + "6304")[:-1]
    for i, tlv in enumerate(tlvs):  # each tag duplicated; each pair of neighbours swapped
        yield with_crc("".join(tlvs[: i + 1] + [tlv] + tlvs[i + 1 :]) + "6304")
        if i + 1 < len(tlvs):
            swapped = tlvs[:i] + [tlvs[i + 1], tlv] + tlvs[i + 2 :]
            yield with_crc("".join(swapped) + "6304")
    if seed.isascii():
        for offset in header_offsets(body):  # every declared length off by one either way
            size = int(body[offset + 2 : offset + 4])
            for wrong in (size - 1, size + 1):
                if 0 <= wrong <= 99:
                    yield with_crc(body[: offset + 2] + "%02d" % wrong + body[offset + 4 :])
    yield body + seed[-4:].lower()
    yield seed + "0"
    yield "6304" + seed


def test_corpus_is_what_it_claims() -> None:
    simulated = simulator_payloads()
    assert len(simulated) > 500
    # The fast path must really be taken for what the simulator and encode() write.
    assert all(_canonical_facts(payload) is not None for payload in simulated + FAST_SEEDS)
    hostile = hostile_payloads()
    assert any(by_decode(payload)[0] == "rejected" for payload in hostile)
    assert sum(1 for seed in SEEDS for _ in mutations(seed)) > 10_000


@pytest.mark.parametrize("payload", [vector["payload"] for vector in VECTORS], ids=[v["id"] for v in VECTORS])
def test_vectors(payload: str) -> None:
    assert by_facts(payload) == by_decode(payload)


def test_simulator_payloads() -> None:
    for payload in simulator_payloads():
        assert by_facts(payload) == by_decode(payload), payload


def test_hostile_payloads() -> None:
    for payload in hostile_payloads():
        assert by_facts(payload) == by_decode(payload), payload


@pytest.mark.parametrize("seed", SEEDS)
def test_mutations(seed: str) -> None:
    verdicts = {"accepted": 0, "rejected": 0}
    for payload in mutations(seed):
        verdict = by_decode(payload)
        assert by_facts(payload) == verdict, payload
        verdicts[verdict[0]] += 1
    assert verdicts["accepted"] > 0 and verdicts["rejected"] > 100  # both sides of every check are reached


@pytest.mark.parametrize("payload", [None, 42, b"000201", "", "\ud800" + SEEDS[0], SEEDS[0] + "x" * 500])
def test_odd_inputs(payload: object) -> None:
    assert by_facts(payload) == by_decode(payload)


def test_crc_hex_case() -> None:
    seed = next(payload for payload in (encode("970422", "3177301685", amount=a) for a in range(1, 999))
                if sum(char.isalpha() for char in payload[-4:]) >= 2)
    for crc in (seed[-4:].lower(), seed[-4:].upper(), seed[-4:].swapcase(), seed[-4:].lower().capitalize()):
        assert by_facts(seed[:-4] + crc) == by_decode(seed) == ("accepted", facts(seed))
        assert _canonical_facts(seed[:-4] + crc) is not None


def test_qr_facts_uses_facts() -> None:
    payload = encode("970422", "3177301685", amount=7)
    assert qr_facts(payload) == facts(payload) == QRFacts("970422", 7, "******1685")


def tlv(tag: str, value: str) -> str:
    return f"{tag}{len(value.encode('utf-8')):02d}{value}"


def canonical(account: str, amount: str | None = "100", bin_: str = "970436", service: str = "QRIBFTTA",
              purpose: str | None = None) -> str:
    """encode()'s layout with any values, the lengths always right: the value checks alone decide."""
    info = tlv("00", "A000000727") + tlv("01", tlv("00", bin_) + tlv("01", account)) + tlv("02", service)
    tail = "" if purpose is None else tlv("62", tlv("08", purpose))
    middle = "" if amount is None else tlv("54", amount)
    return with_crc("000201010212" + tlv("38", info) + "5303704" + middle + "5802VN" + tail + "6304")


VALUE_EDGES = (
    [canonical("7" * size) for size in range(0, 22)]
    + [canonical("Ab3" * 7), canonical("12-4"), canonical("١٢٣"), canonical("12 4"), canonical("ABCxyz")]
    + [canonical("1", amount) for amount in ("1" * 12, "9" * 13, "1" * 14, "0", "01", "-1", "+1", "1.0", "", "١")]
    + [canonical("1", bin_=bin_) for bin_ in ("970436", "970437", "97043", "9704366", "000000", "97043a")]
    + [canonical("1", service=service) for service in ("QRIBFTTA", "QRIBFTTC", "QRIBFTTB", "QRPUSH", "qribftta")]
    + [canonical("1", purpose=purpose) for purpose in ("", "x", "x" * 95, "x" * 96, "6304ABCD", "đi chợ")]
)


@pytest.mark.parametrize("payload", VALUE_EDGES)
def test_value_edges(payload: str) -> None:
    assert by_facts(payload) == by_decode(payload)
