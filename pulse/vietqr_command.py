"""`pulse vietqr decode|encode`: inspect and build VietQR payloads from the command line."""
from __future__ import annotations

import json
from typing import NoReturn

import click

from schemas.vietqr import VietQRError, decode, encode

INVALID_EXIT_CODE = 2


@click.group(name="vietqr")
def vietqr() -> None:
    """Decode and build VietQR (NAPAS 247) payloads."""


@vietqr.command(name="decode")
@click.argument("payload")
def decode_command(payload: str) -> None:
    """Print PAYLOAD's fields as JSON.

    An invalid PAYLOAD prints "invalid VietQR: <what, where>" on stderr and exits with code 2.
    """
    try:
        qr = decode(payload)
    except VietQRError as exc:
        _fail(f"invalid VietQR: {exc}")
    fields = qr.model_dump()
    fields["account_masked"] = qr.account_masked
    click.echo(json.dumps(fields, ensure_ascii=False, indent=2))


@vietqr.command(name="encode")
@click.option("--bin", "bank_bin", required=True, help="6-digit bank BIN, e.g. 970436 (Vietcombank).")
@click.option("--account", required=True, help="Beneficiary account number (card number with --card).")
@click.option("--amount", type=int, default=None, help="Amount in VND; makes a dynamic (one-time) QR.")
@click.option("--purpose", default=None, help="Transfer note (tag 62/08), at most 25 UTF-8 bytes.")
@click.option("--card", is_flag=True, help="Transfer to a card number (QRIBFTTC) instead of an account.")
@click.option("--name", "merchant_name", default=None, help="Merchant/beneficiary name (tag 59).")
@click.option("--city", "merchant_city", default=None, help="Merchant city (tag 60).")
def encode_command(
    bank_bin: str,
    account: str,
    amount: int | None,
    purpose: str | None,
    card: bool,
    merchant_name: str | None,
    merchant_city: str | None,
) -> None:
    """Print a VietQR payload for a beneficiary account or card.

    Bad input prints the reason on stderr and exits with code 2.
    """
    try:
        payload = encode(bank_bin, account, amount, purpose, card, merchant_name, merchant_city)
    except VietQRError as exc:
        _fail(f"cannot build VietQR: {exc}")
    click.echo(payload)


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    click.get_current_context().exit(INVALID_EXIT_CODE)
