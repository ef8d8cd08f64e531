"""regtool.server.tls: the `--tls auto` CA and server certificate, checked with Python's ssl."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509

from regtool.errors import UsageError
from regtool.server import tls
from regtool.server.tls import TlsError, TlsFiles, ensure_auto_tls, server_context

NAMES = ["localhost", "127.0.0.1", "::1", "registry.example.lan", "192.168.7.20"]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "registry-tls"


@contextmanager
def tls_server(files: TlsFiles, minimum: str | None = None) -> Iterator[int]:
    """Answer TLS handshakes on 127.0.0.1 with the server certificate; yields the port."""
    context = server_context(files.server_cert, files.server_key, minimum)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as wrapped:
                    wrapped.sendall(b"ok")
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def handshake(port: int, ca: Path, name: str, maximum: ssl.TLSVersion | None = None) -> bytes:
    """Connect trusting only `ca`, verifying the certificate for `name`."""
    client = ssl.create_default_context(cafile=str(ca))
    client.verify_flags |= ssl.VERIFY_X509_STRICT
    if maximum is not None:
        client.maximum_version = maximum
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client.wrap_socket(raw, server_hostname=name) as conn:
            return conn.recv(2)


def sans_of(path: Path) -> x509.SubjectAlternativeName:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ensure_auto_tls_creates_ca_and_server_files_with_private_keys(folder):
    files = ensure_auto_tls(folder, NAMES)
    assert files.created
    assert files.ca_cert == folder / "ca.crt" and files.ca_key == folder / "ca.key"
    assert files.server_cert == folder / "server.crt" and files.server_key == folder / "server.key"
    for key in (files.ca_key, files.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert sorted(p.name for p in folder.iterdir()) == [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
    ]


def test_server_certificate_verifies_against_the_ca_for_every_name(folder):
    files = ensure_auto_tls(folder, NAMES)
    with tls_server(files) as port:
        for name in NAMES:
            assert handshake(port, files.ca_cert, name) == b"ok", name
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, files.ca_cert, "other.example.lan")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, files.ca_cert, "10.9.9.9")


def test_server_certificate_is_refused_without_the_ca(folder, tmp_path):
    files = ensure_auto_tls(folder, NAMES)
    other = ensure_auto_tls(tmp_path / "other-tls", NAMES)
    with tls_server(files) as port:
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, other.ca_cert, "localhost")


def test_openssl_agrees_the_chain_is_valid_for_server_use(folder):
    files = ensure_auto_tls(folder, NAMES)
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            str(files.ca_cert),
            str(files.server_cert),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ip_addresses_and_dns_names_are_told_apart(folder):
    files = ensure_auto_tls(folder, [*NAMES, "[fd00::7]", "Registry.Example.Lan."])
    sans = sans_of(files.server_cert)
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "registry.example.lan"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address(text) for text in ("127.0.0.1", "::1", "192.168.7.20", "fd00::7")
    ]


def test_ca_is_a_ca_and_the_server_certificate_is_not(folder):
    files = ensure_auto_tls(folder, NAMES)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    server.verify_directly_issued_by(ca)


def test_second_call_reuses_every_file(folder):
    first = ensure_auto_tls(folder, NAMES)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    second = ensure_auto_tls(folder, list(reversed(NAMES)))
    assert not second.created and first.created
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_changed_names_reissue_the_server_certificate_but_keep_the_ca(folder):
    ensure_auto_tls(folder, NAMES)
    ca_before = (folder / "ca.crt").read_bytes(), (folder / "ca.key").read_bytes()
    server_before = (folder / "server.crt").read_bytes()
    files = ensure_auto_tls(folder, [*NAMES, "build.example.lan"])
    assert not files.created
    assert ((folder / "ca.crt").read_bytes(), (folder / "ca.key").read_bytes()) == ca_before
    assert files.server_cert.read_bytes() != server_before
    assert "build.example.lan" in sans_of(files.server_cert).get_values_for_type(x509.DNSName)
    with tls_server(files) as port:
        assert handshake(port, files.ca_cert, "build.example.lan") == b"ok"


def test_server_certificate_expiring_within_30_days_is_reissued(folder, monkeypatch):
    monkeypatch.setattr(tls, "SERVER_DAYS", 20)
    ensure_auto_tls(folder, NAMES)
    short = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
    monkeypatch.setattr(tls, "SERVER_DAYS", 825)
    ensure_auto_tls(folder, NAMES)
    renewed = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
    assert renewed.not_valid_after_utc > short.not_valid_after_utc
    monkeypatch.setattr(tls, "SERVER_DAYS", 40)
    before = (folder / "server.crt").read_bytes()
    ensure_auto_tls(folder, NAMES)
    assert (folder / "server.crt").read_bytes() == before  # 825 days left: kept


def test_damaged_server_files_are_reissued(folder):
    ensure_auto_tls(folder, NAMES)
    (folder / "server.key").write_text("not a key\n")
    files = ensure_auto_tls(folder, NAMES)
    assert not files.created
    with tls_server(files) as port:
        assert handshake(port, files.ca_cert, "localhost") == b"ok"


def test_ca_without_its_key_is_an_error_not_silently_replaced(folder):
    ensure_auto_tls(folder, NAMES)
    (folder / "ca.key").unlink()
    ca = (folder / "ca.crt").read_bytes()
    with pytest.raises(TlsError) as caught:
        ensure_auto_tls(folder, NAMES)
    assert caught.value.hint and (folder / "ca.crt").read_bytes() == ca


def test_ca_key_of_another_ca_is_refused(folder, tmp_path):
    ensure_auto_tls(folder, NAMES)
    other = ensure_auto_tls(tmp_path / "other-tls", NAMES)
    (folder / "ca.key").write_bytes(other.ca_key.read_bytes())
    with pytest.raises(TlsError, match="is not the key of"):
        ensure_auto_tls(folder, NAMES)


@pytest.mark.parametrize("name", ["bad name", "-lead.example", "a..b", "", "x" * 64 + ".lan"])
def test_invalid_names_are_usage_errors(folder, name):
    with pytest.raises(UsageError):
        ensure_auto_tls(folder, ["localhost", name])
    assert not folder.exists()


def test_default_names_cover_loopback_the_host_and_the_listen_address():
    names = tls.default_names("192.168.7.20")
    assert names[:3] == ["localhost", "127.0.0.1", "::1"]
    assert socket.gethostname().lower() in names
    assert "192.168.7.20" in names
    assert len(names) == len(set(names))
    assert "0.0.0.0" not in tls.default_names("0.0.0.0")
    assert "::" not in tls.default_names("[::]")


def test_default_names_are_all_usable_in_a_certificate(folder):
    files = ensure_auto_tls(folder, tls.default_names("0.0.0.0"))
    with tls_server(files) as port:
        assert handshake(port, files.ca_cert, socket.gethostname().lower()) == b"ok"


def test_server_context_requires_tls_1_2(folder):
    files = ensure_auto_tls(folder, NAMES)
    context = server_context(files.server_cert, files.server_key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_server_context_with_minimum_tls_1_3_refuses_a_tls_1_2_client(folder):
    files = ensure_auto_tls(folder, NAMES)
    with tls_server(files, "tls1.3") as port:
        assert handshake(port, files.ca_cert, "localhost") == b"ok"
        with pytest.raises(ssl.SSLError):
            handshake(port, files.ca_cert, "localhost", maximum=ssl.TLSVersion.TLSv1_2)
    with tls_server(files) as port:  # the default floor is 1.2
        assert handshake(port, files.ca_cert, "localhost", ssl.TLSVersion.TLSv1_2) == b"ok"


def test_server_context_with_a_mismatched_key_is_a_clear_error(folder, tmp_path):
    files = ensure_auto_tls(folder, NAMES)
    with pytest.raises(TlsError, match="cannot use TLS certificate"):
        server_context(files.server_cert, files.ca_key)
    with pytest.raises(TlsError, match="absent.pem"):
        server_context(tmp_path / "absent.pem", files.server_key)


def test_client_steps_name_docker_podman_skopeo_and_curl(folder):
    ca = folder / "ca.crt"
    text = "\n".join(tls.client_steps("reg.example.lan:5443", ca))
    assert str(ca) in text
    assert "/etc/docker/certs.d/reg.example.lan:5443/ca.crt" in text
    assert "/etc/containers/certs.d/reg.example.lan:5443/ca.crt" in text
    assert "--cert-dir" in text and "--dest-cert-dir" in text
    assert "curl --cacert" in text and "https://reg.example.lan:5443/v2/" in text


def test_relative_folder_gives_absolute_paths_to_print(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = ensure_auto_tls(Path("registry-tls"), NAMES)
    assert files.ca_cert == tmp_path / "registry-tls" / "ca.crt"
    assert files.ca_cert.is_absolute() and files.server_key.is_absolute()
