"""Secrets generated once and kept under the data path: the Django secret key, the authority's signing key.

Read by ``rta_site.settings`` before Django is set up, so this module imports
no Django. Files are created with mode 0600 and appear whole (written to a
temporary file, then linked into place), so processes starting together agree
on one value: whoever links first wins, the others read it.
"""

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def kept_secret(path, make):
    """The text in ``path``; made with ``make()`` and stored there (0600) when the file is absent."""
    path = Path(path)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(make())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
    finally:
        temporary.unlink(missing_ok=True)
    return path.read_text().strip()


def new_secret_key():
    return secrets.token_urlsafe(64)


def new_rsa_private_key_pem(bits=2048):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
