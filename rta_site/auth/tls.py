"""TLS from RTA_TLS_CERT_FILE + RTA_TLS_KEY_FILE: HTTPS/WSS beside HTTP, and TLS on the gRPC port.

The certificate file may hold the chain (leaf first); both are PEM.
"""

from pathlib import Path

import grpc
from django.conf import settings


def enabled():
    return bool(settings.RTA_TLS_CERT_FILE and settings.RTA_TLS_KEY_FILE)


def grpc_server_credentials():
    """Server credentials for the gRPC port, or ``None`` (plaintext) without a certificate."""
    if not enabled():
        return None
    key = Path(settings.RTA_TLS_KEY_FILE).read_bytes()
    chain = Path(settings.RTA_TLS_CERT_FILE).read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


def https_endpoint(bind, port):
    """The Twisted endpoint description daphne listens HTTPS/WSS on, or ``None`` without a certificate."""
    if not enabled():
        return None
    cert = Path(settings.RTA_TLS_CERT_FILE).resolve()
    interface = f":interface={_escape(bind)}" if bind else ""
    description = (
        f"ssl:{port}{interface}"
        f":privateKey={_escape(str(Path(settings.RTA_TLS_KEY_FILE).resolve()))}:certKey={_escape(str(cert))}"
    )
    if cert.read_bytes().count(b"-----BEGIN CERTIFICATE-----") > 1:
        # A full chain: Twisted takes the leaf from certKey and the chain from extraCertChain (the leaf
        # comes along again there; clients ignore it).
        description += f":extraCertChain={_escape(str(cert))}"
    return description


def _escape(value):
    # Endpoint descriptions separate fields with ':' and escape with '\'.
    return value.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
