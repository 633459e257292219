"""TLS to the registry: the client's transport verifies certificates whether its context was
built up front (an https registry) or lazily (a plain-http one that is redirected or later
pointed at https), so a registry with a certificate nobody vouches for reads nothing."""

from __future__ import annotations

import datetime as dt
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ostraca.client.wire import Wire
from ostraca.protocol_spec.errors import UnavailableError


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile registry")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = _self_signed(tmp_path)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_registry_with_an_unvouched_certificate_is_refused(
    tls_registry: tuple[str, Path],
) -> None:
    url, _ = tls_registry
    wire = Wire(url)
    try:
        with pytest.raises(UnavailableError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            wire.send("GET", "/v1/whoami")
    finally:
        wire.close()


def test_a_plain_http_client_reaching_https_verifies_too(
    tls_registry: tuple[str, Path],
) -> None:
    """The lazily built context (the pool of a plain-http registry) verifies as well: an
    absolute https URL sent on that session meets the same refusal."""
    url, _ = tls_registry
    wire = Wire("http://127.0.0.1:9")
    try:
        with pytest.raises(UnavailableError, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
            wire.send("GET", f"{url}/v1/whoami")
    finally:
        wire.close()


def test_a_certificate_the_machine_trusts_is_accepted(
    tls_registry: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the same server, its certificate trusted through ``SSL_CERT_FILE``."""
    url, cert = tls_registry
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    wire = Wire(url)
    try:
        assert wire.send("GET", "/v1/whoami").json() == {"ok": True}
    finally:
        wire.close()
