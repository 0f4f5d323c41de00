"""Self-signed TLS material for a SuperLink and its SuperNodes.

A deployment needs a CA that the SuperNodes trust (``--root-certificates ca.crt``) and a
server certificate for the SuperLink whose subject alternative names cover every
address the SuperNodes dial; a name missing there is the usual cause of a TLS
handshake failure, so the hosts are explicit. Keys are ECDSA P-256 (small, fast
handshakes on weak devices) and written owner-readable only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..files import write_atomic

MAX_DAYS = 3650


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # give to every SuperNode: --root-certificates
    cert: Path  # SuperLink: --ssl-certfile
    key: Path  # SuperLink: --ssl-keyfile
    ca_key: Path  # keep offline; signs new server certificates

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        """The files ``make_certs`` writes in ``directory`` (which may not exist yet)."""
        return cls(ca=directory / "ca.crt", cert=directory / "server.pem",
                   key=directory / "server.key", ca_key=directory / "ca.key")  # fmt: skip

    def superlink_args(self) -> list[str]:
        return [
            *("--ssl-ca-certfile", str(self.ca)),
            *("--ssl-certfile", str(self.cert)),
            *("--ssl-keyfile", str(self.key)),
        ]


def make_certs(directory: Path, hosts: list[str], *, days: int = 365) -> TlsFiles:
    """Write ``ca.crt``, ``ca.key``, ``server.pem`` and ``server.key`` for ``hosts``."""
    if not hosts:
        raise ValueError("make_certs: give at least one host name or IP the SuperNodes dial")
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"--days: expected 1..{MAX_DAYS} (ten years), got {days}")
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # clock skew
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedslim CA")])
    ca = (
        _builder(ca_name, ca_name, ca_key.public_key(), now, until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = (
        _builder(name, ca_name, key.public_key(), now, until)
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    files = TlsFiles.in_dir(directory)
    links = [p for p in (files.ca, files.cert, files.key, files.ca_key) if p.is_symlink()]
    if links:  # checked before anything is written
        raise ValueError(f"{links[0]} is a symbolic link; refusing to write TLS files through it")
    write_atomic(files.ca, ca.public_bytes(serialization.Encoding.PEM), private=False)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    write_atomic(files.key, _pem(key), private=True)
    write_atomic(files.ca_key, _pem(ca_key), private=True)
    return files


def _builder(subject, issuer, public_key, now, until) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not cert_sign,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's authentication key pair in OpenSSH format (what Flower's node auth
    reads; PEM keys are refused): ``name`` (private, 0600) and ``name.pub``."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / name, directory / f"{name}.pub"
    enc = serialization.Encoding
    secret = key.private_bytes(
        enc.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    shared = key.public_key().public_bytes(enc.OpenSSH, serialization.PublicFormat.OpenSSH)
    write_atomic(private, secret, private=True)
    write_atomic(public, shared, private=False)
    return private, public
