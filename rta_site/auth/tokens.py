"""Validating bearer tokens: JWT access tokens signed by the configured OpenID Connect authority.

The authority's discovery document (``{authority}/.well-known/openid-configuration``)
names the issuer and the ``jwks_uri``; the keys published there are the only
ones accepted, with asymmetric algorithms only (RS256, ES256, PS256): ``none``
and HMAC are refused before any key is looked at, so a token "signed" with the
public key as an HMAC secret fails. ``iss``, ``aud``, ``exp`` and ``nbf`` are
checked with a small leeway.

Keys are cached. A token naming an unknown ``kid`` makes the key set be fetched
again, at most once per ``REFETCH_SECONDS``, so a key the issuer starts using is
accepted within a minute without a restart; the set is also refreshed when
older than ``KEYS_MAX_AGE_SECONDS`` (keys the issuer withdrew stop working).
A verified token is remembered (bounded LRU keyed by the token string) until it
expires, so a busy gRPC writer does not pay a signature check per call.

Messages are short and never quote the token.
"""

import logging
import threading
import time
from collections import OrderedDict

import httpx
import jwt
from jwt.algorithms import get_default_algorithms

from rta_core.errors import Unauthenticated, Unavailable

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256", "PS256")
REFETCH_SECONDS = 30.0  # fewest seconds between two key-set fetches caused by unknown kids
RETRY_SECONDS = 5.0  # fewest seconds between two tries after the authority could not be reached
KEYS_MAX_AGE_SECONDS = 3600.0
FETCH_TIMEOUT_SECONDS = 10.0
CACHE_ENTRIES = 10_000

_ALGORITHM_OBJECTS = get_default_algorithms()


class TokenValidator:
    """Checks tokens of one authority for one audience; thread-safe.

    ``authority`` is the issuer base URL (discovery at ``{authority}/.well-known/
    openid-configuration``). ``to_access(claims)`` turns verified claims into what
    is cached and returned (an ``rta_core.access.Access``).
    """

    def __init__(
        self,
        authority,
        audience,
        to_access,
        leeway=30,
        http=None,
        cache_entries=CACHE_ENTRIES,
        refetch_seconds=REFETCH_SECONDS,
    ):
        self.authority = authority.rstrip("/")
        self.audience = audience
        self.to_access = to_access
        self.leeway = leeway
        self.refetch_seconds = refetch_seconds
        self.cache_entries = cache_entries
        self._http = http
        self._lock = threading.Lock()
        self._issuer = self._jwks_uri = None
        self._keys = {}  # kid -> (public key, alg named by the JWK or None)
        self._keys_fetched_at = None  # monotonic time of the last successful key-set fetch
        self._unknown_kid_fetch_at = None  # monotonic time of the last fetch an unknown kid caused
        self._failed_at = None
        self._verified = OrderedDict()  # token -> (access, expiry as Unix time)
        self.now = time.monotonic  # replaceable in tests (rate limits)
        self.wall_clock = time.time

    # --- the verified-token cache ---------------------------------------------------------------

    def cached(self, token):
        """The access of a token verified before and not yet expired, or ``None``."""
        with self._lock:
            entry = self._verified.get(token)
            if entry is None:
                return None
            access, expiry = entry
            if self.wall_clock() > expiry + self.leeway:
                del self._verified[token]
                return None
            self._verified.move_to_end(token)
            return access

    def _remember(self, token, access, expiry):
        if self.cache_entries <= 0:
            return
        with self._lock:
            self._verified[token] = (access, expiry)
            self._verified.move_to_end(token)
            while len(self._verified) > self.cache_entries:
                self._verified.popitem(last=False)

    # --- validation -------------------------------------------------------------------------------

    def validate(self, token):
        """The access a valid token grants; ``Unauthenticated`` for any bad token.

        ``Unavailable`` when the authority cannot be reached to learn its keys.
        """
        access = self.cached(token)
        if access is not None:
            return access
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise Unauthenticated("token algorithm not accepted")
        key, key_alg = self._key(header.get("kid"))
        if key_alg is not None and key_alg != alg:
            raise Unauthenticated("token algorithm does not match its key")
        try:
            # The key object (not the JWK) so the header's algorithm is checked against its type.
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self._issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("token audience not accepted") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token issuer not accepted") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature invalid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim} claim") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise Unauthenticated("invalid token") from None
        access = self.to_access(claims)
        self._remember(token, access, float(claims["exp"]))
        return access

    # --- keys -------------------------------------------------------------------------------------

    def _key(self, kid):
        with self._lock:
            now = self.now()
            if self._keys_fetched_at is None or now - self._keys_fetched_at > KEYS_MAX_AGE_SECONDS:
                self._fetch_locked(now)
            found = self._lookup(kid)
            if found is None and (
                self._unknown_kid_fetch_at is None or now - self._unknown_kid_fetch_at >= self.refetch_seconds
            ):
                self._unknown_kid_fetch_at = now
                self._fetch_locked(now)
                found = self._lookup(kid)
        if found is None:
            raise Unauthenticated("token signed with an unknown key")
        return found

    def _lookup(self, kid):
        if kid is None:
            # A token without kid is accepted only when the issuer publishes a single key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid) if isinstance(kid, str) else None

    def _fetch_locked(self, now):
        if self._failed_at is not None and now - self._failed_at < RETRY_SECONDS and self._keys_fetched_at is None:
            raise Unavailable("the token authority is not reachable")
        try:
            if self._jwks_uri is None:
                discovery = self._get_json(f"{self.authority}/.well-known/openid-configuration")
                issuer, jwks_uri = discovery.get("issuer"), discovery.get("jwks_uri")
                if not isinstance(issuer, str) or not isinstance(jwks_uri, str):
                    raise ValueError("discovery document lacks issuer or jwks_uri")
                self._issuer, self._jwks_uri = issuer, jwks_uri
            self._keys = _parse_key_set(self._get_json(self._jwks_uri))
        except (httpx.HTTPError, ValueError) as exc:
            self._failed_at = now
            log.warning("could not fetch the signing keys of %s: %s", self.authority, exc)
            if self._keys_fetched_at is None:
                raise Unavailable("the token authority is not reachable") from None
            return  # keep the keys we have
        self._keys_fetched_at, self._failed_at = now, None

    def _get_json(self, url):
        client = self._http or httpx
        response = client.get(url, timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=True)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return data


def _parse_key_set(document):
    """kid -> (public key, alg or None) of the signature keys in a JWKS document."""
    keys = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the key set has no keys list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        alg = entry.get("alg")
        if alg is not None and alg not in ALGORITHMS:
            continue
        kty = entry.get("kty")
        try:
            if kty == "RSA":
                key = _ALGORITHM_OBJECTS["RS256"].from_jwk(entry)
            elif kty == "EC":
                key = _ALGORITHM_OBJECTS["ES256"].from_jwk(entry)
            else:
                continue
        except (jwt.PyJWTError, ValueError, KeyError, TypeError):
            continue
        if hasattr(key, "public_key") and not hasattr(key, "verify"):
            key = key.public_key()  # a private key published by mistake: use only its public half
        keys[entry.get("kid") or f"#{len(keys)}"] = (key, alg)
    return keys
