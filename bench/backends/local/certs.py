"""A local CA issuing SPIFFE workload certificates (URI SANs), like istiod's CA does."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench.controlplane.envoy_config import CertFiles


class LocalCA:
    """Writes PEM files readable by the proxies' uid; one key pair per identity."""

    def __init__(self, directory: Path, uid: int) -> None:
        self.dir = directory
        self.uid = uid
        self.dir.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshbench local CA")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_path = self._write("ca.pem", self._cert.public_bytes(serialization.Encoding.PEM))
        self._issued: dict[str, CertFiles] = {}

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        os.chown(path, self.uid, self.uid)
        path.chmod(0o440)
        return path

    def issue(self, spiffe_id: str) -> CertFiles:
        """A leaf certificate whose only SAN is the SPIFFE URI (as Istio's workload certs)."""
        if spiffe_id in self._issued:
            return self._issued[spiffe_id]
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        stem = spiffe_id.rsplit("/ns/", 1)[-1].replace("/", "_")
        files = CertFiles(
            cert=self._write(f"{stem}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            key=self._write(
                f"{stem}.key",
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            ),
            ca=self.ca_path,
        )
        self._issued[spiffe_id] = files
        return files
