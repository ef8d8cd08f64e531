"""`--tls auto`: a local CA and a server certificate it signs, kept in a folder and reused.

Keys, certificates and signatures come from the `cryptography` package (a maintained
binding to OpenSSL); nothing here does cryptography by hand. Keys are ECDSA P-256, which
every registry client (Go's crypto/tls in docker, podman, skopeo; curl; Python) accepts.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from regtool.errors import OperationalError, UsageError
from regtool.server.files import write_atomic

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 825  # the longest lifetime Apple clients accept from a private CA
RENEW_BEFORE = timedelta(days=30)
_BACKDATE = timedelta(minutes=5)  # tolerate clients whose clock is a little behind
_DNS_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")


_SigningKey = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)
CaKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class TlsError(OperationalError):
    """A certificate or key cannot be read, created or used."""


@dataclass(frozen=True)
class TlsFiles:
    """The four files of `--tls auto`; `created` is True when the CA is new this time
    (clients must then be given the new ca.crt)."""

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    created: bool


def ensure_auto_tls(folder: Path, names: list[str]) -> TlsFiles:
    """Create, or reuse, the CA and server certificate in `folder` for `names`.

    The CA is made once and kept (unless it expires within 30 days). The server
    certificate is re-issued when the names differ from the ones it carries, when it
    expires within 30 days, or when it is not signed by the CA or does not match its key.
    """
    sans = _subject_alt_names(names)
    folder = Path(folder).absolute()  # printed for users to copy: no relative paths
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise TlsError(f"cannot create TLS folder {folder}: {exc.strerror}") from None
    files = [folder / name for name in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)]
    ca_cert_path, ca_key_path, server_cert_path, server_key_path = files
    now = datetime.now(UTC)
    ca = _load_ca(ca_cert_path, ca_key_path, now)
    created = ca is None
    if ca is None:
        ca = _new_ca(now)
        # the key first: a crash in between leaves a key without a cert, not the reverse
        _write_atomic(ca_key_path, _key_pem(ca[1]), 0o600)
        _write_atomic(ca_cert_path, ca[0].public_bytes(serialization.Encoding.PEM), 0o644)
    ca_cert, ca_key = ca
    if created or not _server_reusable(server_cert_path, server_key_path, ca_cert, sans, now):
        cert, key = _new_server(ca_cert, ca_key, sans, now)
        _write_atomic(server_key_path, _key_pem(key), 0o600)
        _write_atomic(server_cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return TlsFiles(ca_cert_path, ca_key_path, server_cert_path, server_key_path, created)


def default_names(host: str) -> list[str]:
    """Names a certificate for this machine should carry; `host` is the listen host."""
    names = ["localhost", "127.0.0.1", "::1"]
    hostname = socket.gethostname()
    fqdn = socket.getfqdn(hostname)
    names += [hostname, fqdn]
    for name in (hostname, fqdn):
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except OSError:
            continue
        names += [str(info[4][0]) for info in infos]
    names += _outbound_addresses()
    listen = host.strip("[]")
    if listen and listen not in ("0.0.0.0", "::"):
        names.append(listen)
    seen: dict[str, None] = {}
    for name in names:
        try:
            canonical = _canonical(name)
        except UsageError:
            continue
        seen.setdefault(canonical, None)
    return list(seen)


def server_context(cert: Path, key: Path, minimum: str | None = None) -> ssl.SSLContext:
    """A server-side SSLContext for a certificate chain and its key: TLS 1.2 or newer,
    or 1.3 only with `minimum` "tls1.3" (config.yml's http.tls.minimumtls)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if minimum == "tls1.3" else ssl.TLSVersion.TLSv1_2
    )
    context.set_alpn_protocols(["http/1.1"])
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except FileNotFoundError as exc:
        raise TlsError(f"cannot read {exc.filename or cert}: no such file") from None
    except OSError as exc:  # ssl.SSLError is an OSError
        raise TlsError(
            f"cannot use TLS certificate {cert} with key {key}: {_ssl_reason(exc)}",
            hint="the certificate must be PEM and the key must be its unencrypted PEM key",
        ) from None
    return context


def client_steps(host_port: str, ca_cert: Path) -> list[str]:
    """What to run on a client host to trust the CA, one printable line each."""
    docker = f"/etc/docker/certs.d/{host_port}/ca.crt"
    containers = f"/etc/containers/certs.d/{host_port}/ca.crt"
    return [
        f"trust it on each client host (copy {ca_cert} there as ca.crt first):",
        f"  docker:  sudo install -D -m 644 ca.crt {docker}",
        f"  podman, skopeo:  sudo install -D -m 644 ca.crt {containers}",
        "    or per command: --cert-dir DIR (skopeo: --src-cert-dir/--dest-cert-dir),"
        " DIR holding ca.crt and no keys",
        f"  curl:  curl --cacert ca.crt https://{host_port}/v2/",
    ]


# names


def _canonical(name: str) -> str:
    """The name as it goes in the certificate; UsageError if it is neither IP nor DNS."""
    text = name.strip().strip("[]")
    try:
        address = ipaddress.ip_address(text.split("%")[0])
    except ValueError:
        pass
    else:
        if address.is_link_local and "%" in text:
            raise UsageError(f"link-local address {name!r} cannot go in a certificate")
        return str(address)
    host = text.lower().rstrip(".")
    labels = host.split(".")
    if labels[0] == "*" and len(labels) > 2:
        labels = labels[1:]
    if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise UsageError(
            f"invalid TLS name {name!r}: expected a host name or an IP address",
            hint="e.g. --tls-name registry.example.lan --tls-name 192.168.1.20",
        )
    return host


def _subject_alt_names(names: list[str]) -> tuple[x509.GeneralName, ...]:
    """One SAN per distinct name, in the order given: IP addresses and DNS names apart."""
    sans: dict[x509.GeneralName, None] = {}
    for name in names:
        canonical = _canonical(name)
        try:
            san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(canonical))
        except ValueError:
            san = x509.DNSName(canonical)
        sans.setdefault(san, None)
    if not sans:
        raise UsageError("a TLS certificate needs at least one name")
    return tuple(sans)


def _outbound_addresses() -> list[str]:
    """The source address the kernel would use to reach outside (no packet is sent)."""
    found = []
    for family, target in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((target, 9))
                found.append(str(sock.getsockname()[0]))
        except OSError:
            continue
    return found


# certificates


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )


def _new_ca(now: datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "regtool"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"regtool local CA on {_host_label()}"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server(
    ca_cert: x509.Certificate,
    ca_key: CaKey,
    sans: tuple[x509.GeneralName, ...],
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _new_key()
    public = key.public_key()
    first = str(sans[0].value)
    ca_public = ca_key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, first[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + timedelta(days=SERVER_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _load_ca(
    cert_path: Path, key_path: Path, now: datetime
) -> tuple[x509.Certificate, CaKey] | None:
    """The existing CA, or None when there is none (or it is about to expire)."""
    if not cert_path.exists() and not key_path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(
            f"cannot reuse the local CA in {cert_path.parent}: {_reason(exc)}",
            hint=f"move {cert_path.parent} away to create a new CA "
            "(clients will then need the new ca.crt)",
        ) from None
    if not isinstance(key, _SigningKey) or not _same_key(cert, key):
        raise TlsError(
            f"{key_path} is not the key of {cert_path}",
            hint=f"move {cert_path.parent} away to create a new CA",
        )
    if cert.not_valid_after_utc - RENEW_BEFORE <= now:
        return None
    return cert, key


def _server_reusable(
    cert_path: Path,
    key_path: Path,
    ca_cert: x509.Certificate,
    sans: tuple[x509.GeneralName, ...],
    now: datetime,
) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert.verify_directly_issued_by(ca_cert)
    except (OSError, ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return (
        _same_key(cert, key)
        and frozenset(names) == frozenset(sans)
        and cert.not_valid_after_utc - RENEW_BEFORE > now
    )


def _same_key(cert: x509.Certificate, key: object) -> bool:
    public = getattr(key, "public_key", None)
    if public is None:
        return False
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    return cert.public_key().public_bytes(pem, fmt) == public().public_bytes(pem, fmt)


def _host_label() -> str:
    return socket.gethostname()[:40] or "localhost"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _ssl_reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason).lower().replace("_", " ") if reason else _reason(exc)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    try:
        write_atomic(path, data, mode)
    except OSError as exc:
        raise TlsError(f"cannot write {path}: {exc.strerror}") from None
