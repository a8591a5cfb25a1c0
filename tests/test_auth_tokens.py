"""Token validation (rta_site.auth.tokens) against an independent issuer serving discovery + JWKS over HTTP."""

import time

import pytest

from rta_core.access import Access
from rta_core.errors import Unauthenticated, Unavailable
from rta_site.auth.claims import access_from_claims, bearer_token, folders_of, scopes_of
from rta_site.auth.tokens import TokenValidator
from tests.auth_issuer import AUDIENCE, MALFORMED_HEADERS, Issuer, _segment


@pytest.fixture(scope="module")
def issuer():
    issuer = Issuer()
    yield issuer
    issuer.close()


def make_validator(issuer, folders_claim=None, **kwargs):
    return TokenValidator(
        issuer.url,
        AUDIENCE,
        lambda claims: access_from_claims(claims, "rta.read", "rta.write", folders_claim),
        leeway=30,
        **kwargs,
    )


@pytest.mark.parametrize(
    "kid, alg",
    [("rsa-1", "RS256"), ("rsa-1", "PS256"), ("ec-1", "ES256")],
)
def test_tokens_signed_with_a_published_key_are_accepted(issuer, kid, alg):
    access = make_validator(issuer).validate(issuer.token("rta.read rta.write", kid=kid, alg=alg))
    assert access == Access(can_read=True, can_write=True, folders=None, subject="tester")


@pytest.mark.parametrize(
    "scopes, read, write",
    [("rta.read", True, False), ("rta.write", False, True), ("openid profile", False, False), (None, False, False)],
)
def test_scopes_grant_read_and_write(issuer, scopes, read, write):
    access = make_validator(issuer).validate(issuer.token(scopes))
    assert (access.can_read, access.can_write) == (read, write)


def test_scp_claim_as_a_list_or_a_string():
    assert scopes_of({"scp": ["rta.read", "x"]}) == {"rta.read", "x"}
    assert scopes_of({"scp": "rta.read rta.write"}) == {"rta.read", "rta.write"}
    assert scopes_of({"scope": "rta.write", "scp": ["rta.read"]}) == {"rta.write"}
    assert scopes_of({"scope": 5}) == frozenset()


def test_folders_claim(issuer):
    validator = make_validator(issuer, folders_claim="rta_folders")
    assert validator.validate(issuer.token(rta_folders=["a", "b/c", "a"])).folders == ("a", "b/c")
    assert validator.validate(issuer.token(rta_folders=[])).folders == ()
    assert validator.validate(issuer.token(rta_folders="one")).folders == ("one",)
    assert validator.validate(issuer.token()).folders is None  # no claim: not restricted
    with pytest.raises(Unauthenticated, match="rta_folders"):
        validator.validate(issuer.token(rta_folders=[1, 2]))
    # Without a folders claim configured, a token's folders are not looked at.
    assert make_validator(issuer).validate(issuer.token(rta_folders=["a"])).folders is None
    assert folders_of({"f": ["x"]}, None) is None


@pytest.mark.parametrize(
    "name, message",
    [
        ("expired", "expired"),
        ("not yet valid", "not yet valid"),
        ("wrong audience", "audience"),
        ("wrong issuer", "issuer"),
        ("no exp", "exp"),
        ("bad signature", "signature"),
        ("alg none", "algorithm"),
        ("hmac key confusion", "algorithm"),
        ("unknown kid", "unknown key"),
        ("garbage", "malformed"),
        ("truncated", "malformed"),
    ],
)
def test_bad_tokens_are_unauthenticated_with_a_short_message(issuer, name, message):
    token = issuer.bad_tokens()[name]
    with pytest.raises(Unauthenticated) as info:
        make_validator(issuer).validate(token)
    assert message in info.value.message
    assert token not in info.value.message and len(info.value.message) < 80


def test_leeway_covers_small_clock_differences(issuer):
    now = int(time.time())
    validator = make_validator(issuer)
    assert validator.validate(issuer.token(exp=now - 10)).can_read  # expired 10 s ago: within 30 s
    assert validator.validate(issuer.token(nbf=now + 10)).can_read


def test_a_key_whose_jwk_names_another_algorithm_is_refused(issuer):
    # ec-1 is published with alg ES256: a token claiming RS256 with it fails before any signature check.
    token = issuer.token(kid="ec-1", alg="ES256")
    _, payload, signature = token.split(".")
    forged_header = _segment({"alg": "RS256", "kid": "ec-1"})
    with pytest.raises(Unauthenticated, match="does not match"):
        make_validator(issuer).validate(f"{forged_header}.{payload}.{signature}")


def test_verified_tokens_are_cached_until_they_expire(issuer):
    validator = make_validator(issuer)
    token = issuer.token("rta.read")
    first = validator.validate(token)
    fetches = len(issuer.requests)
    assert validator.cached(token) is first
    assert validator.validate(token) is first
    assert len(issuer.requests) == fetches
    validator.wall_clock = lambda: 10**12  # long after its expiry
    assert validator.cached(token) is None


def test_the_cache_is_bounded(issuer):
    validator = make_validator(issuer, cache_entries=2)
    tokens = [issuer.token(jti=str(i)) for i in range(3)]
    for token in tokens:
        validator.validate(token)
    assert validator.cached(tokens[0]) is None
    assert validator.cached(tokens[2]) is not None


def test_rotated_key_is_accepted_after_a_rate_limited_refetch(issuer):
    validator = make_validator(issuer)
    clock = [1000.0]
    validator.now = lambda: clock[0]
    assert validator.validate(issuer.token()).can_read  # keys fetched
    issuer.add_key("rsa-2")  # the issuer starts signing with a new key it has not published yet
    rotated = issuer.token(kid="rsa-2")
    jwks_fetches = issuer.requests.count("/jwks")
    with pytest.raises(Unauthenticated, match="unknown key"):
        validator.validate(rotated)
    assert issuer.requests.count("/jwks") == jwks_fetches + 1  # an unknown kid refetches the key set
    issuer.publish("rsa-2")
    clock[0] += 10
    with pytest.raises(Unauthenticated, match="unknown key"):
        validator.validate(rotated)  # within 30 s of the last refetch: no new fetch
    assert issuer.requests.count("/jwks") == jwks_fetches + 1
    clock[0] += 21
    assert validator.validate(rotated).can_read  # the next refetch finds the new key
    assert issuer.requests.count("/jwks") == jwks_fetches + 2


def test_an_unreachable_authority_is_unavailable_not_unauthenticated():
    from tests.conftest import free_port

    validator = TokenValidator(f"http://127.0.0.1:{free_port()}", AUDIENCE, lambda c: c)
    with pytest.raises(Unavailable):
        validator.validate(_unsigned_rs256())


def _unsigned_rs256():
    return f"{_segment({'alg': 'RS256', 'kid': 'x'})}.{_segment({'sub': 'x'})}.c2ln"


@pytest.mark.parametrize("header", MALFORMED_HEADERS)
def test_malformed_authorization_headers(header):
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_bearer_token_parsing():
    assert bearer_token(None) is None
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token(b"bearer abc") == "abc"
