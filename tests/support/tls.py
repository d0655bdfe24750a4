"""A throw-away certificate authority for TLS tests, made with the openssl command line at test time.

Nothing here is ever valid for more than a day or leaves the test's temporary directory. Keys are EC P-256
because they take milliseconds to generate; Kafka's PEM key store reads them as unencrypted PKCS#8, which
is what `openssl req -nodes` writes.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class TestPki:
    __test__ = False  # not a pytest test class, despite the name

    ca_file: Path  # the CA that signed the broker and client certificates
    foreign_ca_file: Path  # a CA that signed nothing of ours: trusting only it must fail verification
    broker_keystore: Path  # broker key and certificate in one PEM file, as Kafka's PEM key store wants it
    client_cert: Path
    client_key: Path


def make_test_pki(directory: Path) -> TestPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_file = _self_signed_ca(directory, "pulse-test-ca")
    _, foreign_ca_file = _self_signed_ca(directory, "pulse-foreign-ca")
    # Clients connect to 127.0.0.1 and verify the host name, so the broker's certificate must name that IP
    # (and localhost, for anyone who writes the bootstrap that way).
    broker_key, broker_cert = _signed_cert(directory, "broker", ca_key, ca_file,
                                           "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    client_key, client_cert = _signed_cert(directory, "client", ca_key, ca_file, "extendedKeyUsage=clientAuth")
    broker_keystore = directory / "broker-keystore.pem"
    broker_keystore.write_text(broker_key.read_text() + broker_cert.read_text())
    return TestPki(ca_file, foreign_ca_file, broker_keystore, client_cert, client_key)


def _self_signed_ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", *EC_KEY, "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return key, cert


def _signed_cert(directory: Path, name: str, ca_key: Path, ca_cert: Path, extensions: str) -> tuple[Path, Path]:
    key, request, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.pem"
    extensions_file = directory / f"{name}.ext"
    extensions_file.write_text(extensions + "\n")
    _openssl("req", "-new", *EC_KEY, "-keyout", str(key), "-out", str(request), "-subj", f"/CN=pulse-test-{name}")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "1", "-out", str(cert), "-extfile", str(extensions_file))
    return key, cert


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr[-2000:]}")
