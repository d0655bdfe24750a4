"""`pulse vietqr decode|encode` through click's test runner."""
from __future__ import annotations

import json

from click.testing import CliRunner

from pulse.vietqr_command import vietqr
from schemas.vietqr import decode, encode

TYPICAL = "00020101021238570010A00000072701270006970403011300110123456780208QRIBFTTA530370454061800005802VN62340107NPS68690819thanh toan don hang63042E2E"


def run(*args: str):  # click's Result
    return CliRunner().invoke(vietqr, list(args))


def test_group_name_and_commands() -> None:
    assert vietqr.name == "vietqr"
    assert set(vietqr.commands) == {"decode", "encode"}
    result = run("--help")
    assert result.exit_code == 0
    assert "decode" in result.stdout and "encode" in result.stdout


def test_decode_prints_json_with_masked_account() -> None:
    result = run("decode", TYPICAL)
    assert result.exit_code == 0, result.stderr
    fields = json.loads(result.stdout)
    assert fields["bank_bin"] == "970403"
    assert fields["account"] == "0011012345678"
    assert fields["account_masked"] == "*********5678"
    assert fields["amount"] == 180000
    assert fields["purpose"] == "thanh toan don hang"
    assert fields["service"] == "QRIBFTTA"
    assert fields["initiation"] == "12"
    assert fields["crc"] == "2E2E"


def test_decode_keeps_vietnamese_text_readable() -> None:
    result = run("decode", encode("970436", "0123456789", merchant_city="Hà Nội"))
    assert result.exit_code == 0, result.stderr
    assert '"merchant_city": "Hà Nội"' in result.stdout


def test_decode_invalid_exits_2_with_message_on_stderr() -> None:
    result = run("decode", TYPICAL[:-4] + "1234")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip() == "invalid VietQR: bad CRC at position 138: expected 2E2E, found 1234"


def test_decode_garbage() -> None:
    result = run("decode", "hello")
    assert result.exit_code == 2
    assert result.stderr.startswith("invalid VietQR: ")


def test_encode_prints_payload() -> None:
    result = run("encode", "--bin", "970436", "--account", "0123456789", "--amount", "50000", "--purpose", "Ca phe")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == encode("970436", "0123456789", 50_000, "Ca phe") + "\n"


def test_encode_all_options_round_trip() -> None:
    result = run(
        "encode", "--bin", "970416", "--account", "9704160123456789", "--card",
        "--amount", "120000", "--purpose", "Hoc phi", "--name", "NGUYEN VAN A", "--city", "DA NANG",
    )
    assert result.exit_code == 0, result.stderr
    qr = decode(result.stdout.strip())
    assert (qr.bank_bin, qr.account, qr.service, qr.amount) == ("970416", "9704160123456789", "QRIBFTTC", 120_000)
    assert (qr.purpose, qr.merchant_name, qr.merchant_city) == ("Hoc phi", "NGUYEN VAN A", "DA NANG")


def test_encode_static_without_amount() -> None:
    result = run("encode", "--bin", "970423", "--account", "0099999999")
    assert result.exit_code == 0
    assert result.stdout.strip() == "00020101021138540010A00000072701240006970423011000999999990208QRIBFTTA53037045802VN6304CBB4"


def test_encode_bad_input_exits_2() -> None:
    result = run("encode", "--bin", "999999", "--account", "0123456789")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "unknown bank BIN" in result.stderr


def test_encode_requires_bin_and_account() -> None:
    assert run("encode", "--account", "0123456789").exit_code == 2
    assert run("encode", "--bin", "970436").exit_code == 2
    assert run("encode", "--bin", "970436", "--account", "1", "--amount", "ten").exit_code == 2
