"""Mint and verify access tokens: JWTs in the RFC 9068 profile, checked per RFC 8725.

Verification trusts nothing in the token before the signature: the algorithm must be one
of ours and match the key named by `kid`, `typ` must be `at+jwt`, JWE and `crit` are
refused, `jku`/`x5u`/`jwk` headers are ignored, and every claim we rely on is required.
One token has one string: segments must be unpadded base64url with zero unused bits, and
ES256 signatures low-S (s <= n/2; minting normalises to it), so a token cannot be re-spelt
past a denylist, cache or log keyed by its string. Every failure, whatever python-jose
raised, becomes one `InvalidToken`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError

from auth_service.errors import InvalidToken
from auth_service.security.keys import SigningKey

__all__ = [
    "AccessClaims",
    "IdTokenHint",
    "IssuedToken",
    "TokenService",
    "access_token_hash",
    "new_token_id",
    "utc_now",
]

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# ID tokens say `typ: JWT` (never at+jwt), so no verifier here takes one for an access token.
ID_TOKEN_TYPE = "JWT"  # noqa: S105 - a JOSE header value, not a secret
ID_TOKEN_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_LENGTH = 8192
# The user's credential version (private claim); optional so that tokens minted before it
# existed stay readable (as version 0).
CREDENTIAL_VERSION_CLAIM = "cred_ver"
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "sid")
# Largest accepted time claim (year 9999): keeps datetime conversion from overflowing.
_MAX_TIMESTAMP = 253_402_300_799
# Tokens whose signature and fixed claims were already checked; a token string is immutable,
# so a hit skips the ECDSA verify (~0.1 ms) and the JOSE parsing. Bounded, least recently
# used out first; keyed by the whole token, and only valid tokens get in.
VERIFIED_CACHE_ENTRIES = 4096
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# The order n of the P-256 group (FIPS 186-4 D.1.2.3): (r, s) and (r, n - s) both verify.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_JOSE_OPTIONS = {
    # Time claims are checked below against the injectable clock. python-jose turns
    # require_exp/nbf/iat into checks against its own clock without leeway, so their
    # presence is checked below instead.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_at_hash": False,
    **{f"require_{claim}": True for claim in ("aud", "iss", "sub", "jti")},
}


def utc_now() -> datetime:
    """The default clock: aware UTC now."""
    return datetime.now(UTC)


def new_token_id() -> str:
    """A 128-bit random identifier, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says about its bearer."""

    subject: str
    scopes: frozenset[str]
    session_id: str
    client_id: str
    token_id: str
    issued_at: datetime
    expires_at: datetime
    # The user's credential version at issue (`cred_ver`; 0 in tokens minted before it
    # existed): a disable denylists every version below the user's new one.
    credential_version: int = 0


@dataclass(frozen=True)
class _Verified:
    """A token whose signature, issuer, audience and claim shapes were checked."""

    kid: str
    expires: int
    not_before: int
    issued: int
    claims: AccessClaims


@dataclass(frozen=True)
class IdTokenHint:
    """What a verified id_token_hint says: whom it was about, for whom, through which
    browser session, and whether it has expired (a hint may be expired)."""

    subject: str
    audiences: tuple[str, ...]
    session_id: str | None
    expired: bool


def access_token_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6 `at_hash`: the left half of SHA-256 of the token, base64url (the
    hash of RS256 and ES256 alike)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return _b64url_encode(digest[: len(digest) // 2])


@dataclass(frozen=True)
class IssuedToken:
    """A freshly signed access token and its lifetime in whole seconds."""

    token: str
    expires_in: int
    claims: AccessClaims


class TokenService:
    """Signs with the active key; verifies against every published key."""

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        verification_keys: Iterable[SigningKey],
        issuer: str,
        audience: str,
        ttl_seconds: int,
        leeway_seconds: int,
        clock: Callable[[], datetime] = utc_now,
        id_token_signers: Iterable[SigningKey] = (),
        id_token_ttl_seconds: int = 300,
    ) -> None:
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self.use_keys(signing_key, verification_keys, id_token_signers)
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._id_ttl = id_token_ttl_seconds
        self._leeway = leeway_seconds
        self._clock = clock

    def use_keys(
        self,
        signing_key: SigningKey,
        verification_keys: Iterable[SigningKey],
        id_token_signers: Iterable[SigningKey] = (),
    ) -> None:
        """Switch keys (rotation); each attribute is replaced whole, so readers never mix.

        ID tokens are signed by the active key of their algorithm: the access-token key
        for its own algorithm, `id_token_signers` for the others."""
        self._keys = {key.kid: key for key in (signing_key, *verification_keys)}
        self._signing_key = signing_key
        signers = {key.algorithm: key for key in id_token_signers}
        signers[signing_key.algorithm] = signing_key
        self._id_signers = {alg: signers[alg] for alg in ID_TOKEN_ALGORITHMS if alg in signers}

    @property
    def id_token_algorithms(self) -> tuple[str, ...]:
        """The algorithms ID tokens can be signed with now, RS256 first when available."""
        return tuple(self._id_signers)

    @property
    def issuer(self) -> str:
        """The `iss` of every token signed here."""
        return self._issuer

    @property
    def audience(self) -> str:
        """The `aud` of every token signed here."""
        return self._audience

    @property
    def leeway(self) -> timedelta:
        """How long past its `exp` a token is still accepted (clock skew allowance)."""
        return timedelta(seconds=self._leeway)

    def mint_access_token(
        self,
        *,
        subject: str,
        scopes: Iterable[str],
        session_id: str,
        client_id: str,
        credential_version: int = 0,
    ) -> IssuedToken:
        """Sign a new access token for `subject` valid for the configured lifetime."""
        now = int(self._clock().timestamp())
        scope_list = sorted(set(scopes))
        token_id = new_token_id()
        claims = {
            "iss": self._issuer,
            "sub": subject,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + self._ttl,
            "jti": token_id,
            "client_id": client_id,
            "scope": " ".join(scope_list),
            "sid": session_id,
            CREDENTIAL_VERSION_CLAIM: credential_version,
        }
        key = self._signing_key
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": "at+jwt"},
        )
        if key.algorithm == "ES256":
            token = _low_s(token)
        return IssuedToken(
            token=token,
            expires_in=self._ttl,
            claims=AccessClaims(
                subject=subject,
                scopes=frozenset(scope_list),
                session_id=session_id,
                client_id=client_id,
                token_id=token_id,
                issued_at=datetime.fromtimestamp(now, UTC),
                expires_at=datetime.fromtimestamp(now + self._ttl, UTC),
                credential_version=credential_version,
            ),
        )

    def mint_id_token(
        self,
        *,
        subject: str,
        client_id: str,
        algorithm: str,
        auth_time: datetime,
        session_id: str,
        amr: Iterable[str],
        acr: str | None = None,
        nonce: str | None = None,
        access_token: str | None = None,
        extra_claims: Mapping[str, object] | None = None,
    ) -> str:
        """Sign an OpenID Connect ID token (Core §2) for `client_id`, `typ: JWT`.

        `iat` is now (never cached); `auth_time` is when the user last authenticated;
        `sid` names the browser session; `at_hash` binds the access token issued with it.
        """
        key = self._id_signers.get(algorithm)
        if key is None:
            raise KeyError(f"no active {algorithm} key for ID tokens")
        now = int(self._clock().timestamp())
        claims: dict[str, object] = {
            **(extra_claims or {}),
            "iss": self._issuer,
            "sub": subject,
            "aud": client_id,
            "exp": now + self._id_ttl,
            "iat": now,
            "auth_time": int(auth_time.timestamp()),
            "sid": session_id,
            "amr": list(amr),
        }
        if acr is not None:
            claims["acr"] = acr
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["at_hash"] = access_token_hash(access_token)
        token = jwt.encode(
            claims,
            key.private_key,
            algorithm=key.algorithm,
            headers={"kid": key.kid, "typ": ID_TOKEN_TYPE},
        )
        return _low_s(token) if key.algorithm == "ES256" else token

    def verify_id_token_hint(self, token: str) -> IdTokenHint:
        """Check an ID token this service issued (signature, `typ`, `iss`; expiry allowed,
        as RP-initiated logout and prompt=none accept expired hints); else InvalidToken."""
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("the ID token is not a signed JWT")
        _require_canonical(token)
        try:
            header = jwt.get_unverified_header(token)
        except (JOSEError, ValueError, TypeError) as exc:
            raise InvalidToken("the ID token header is malformed") from exc
        if not isinstance(header, Mapping) or "crit" in header:
            raise InvalidToken("the ID token header is malformed")
        if header.get("typ") != ID_TOKEN_TYPE:
            raise InvalidToken("the token is not an ID token")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or header.get("alg") != key.algorithm:
            raise InvalidToken("the ID token was signed by an unknown key")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                issuer=self._issuer,
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_at_hash": False,
                    "require_iss": True,
                    "require_sub": True,
                },
            )
        except (JOSEError, ValueError, TypeError, KeyError) as exc:
            raise InvalidToken("the ID token signature or claims are invalid") from exc
        subject, audience, exp = claims.get("sub"), claims.get("aud"), claims.get("exp")
        audiences = (audience,) if isinstance(audience, str) else tuple(audience or ())
        sid = claims.get("sid")
        if (
            not isinstance(subject, str)
            or not audiences
            or not all(isinstance(a, str) for a in audiences)
            or type(exp) is not int
        ):
            raise InvalidToken("the ID token has malformed claims")
        now = int(self._clock().timestamp())
        return IdTokenHint(
            subject=subject,
            audiences=audiences,
            session_id=sid if isinstance(sid, str) else None,
            expired=exp <= now - self._leeway,
        )

    def verify_access_token(self, token: str) -> AccessClaims:
        """Return the claims of a valid access token or raise InvalidToken."""
        verified = self._verified.get(token)
        if verified is None or verified.kid not in self._keys:  # a retired key: verify anew
            verified = self._verify_signature_and_claims(token)
            self._remember(token, verified)
        else:
            self._verified.move_to_end(token)
        return self._check_times(verified)

    def _verify_signature_and_claims(self, token: str) -> _Verified:
        key = self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options=_JOSE_OPTIONS,
            )
        except JOSEError as exc:
            raise InvalidToken("the access token signature or claims are invalid") from exc
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidToken("the access token is malformed") from exc
        return _parse_claims(key.kid, claims)

    def _remember(self, token: str, verified: _Verified) -> None:
        self._verified[token] = verified
        if len(self._verified) > VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)

    def _key_for(self, token: str) -> SigningKey:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("the access token is not a signed JWT")
        _require_canonical(token)
        try:
            header = jwt.get_unverified_header(token)
        except (JOSEError, ValueError, TypeError) as exc:
            raise InvalidToken("the access token header is malformed") from exc
        if not isinstance(header, Mapping):
            raise InvalidToken("the access token header is malformed")
        if "crit" in header:
            raise InvalidToken("the access token has critical header parameters")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("the token is not an access token")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the access token was signed by an unknown key")
        if header.get("alg") != key.algorithm:
            raise InvalidToken("the access token algorithm is not allowed")
        if key.algorithm == "ES256" and not _is_low_s(token):
            raise InvalidToken("the access token signature is not in canonical form")
        return key

    def _check_times(self, verified: _Verified) -> AccessClaims:
        now = int(self._clock().timestamp())
        if verified.expires <= now - self._leeway:
            raise InvalidToken("the access token has expired")
        if verified.not_before > now + self._leeway or verified.issued > now + self._leeway:
            raise InvalidToken("the access token is not valid yet")
        return verified.claims


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _require_canonical(token: str) -> None:
    """Refuse any spelling but unpadded base64url whose unused trailing bits are zero."""
    for segment in token.split("."):
        if (
            not _BASE64URL.fullmatch(segment)
            or len(segment) % 4 == 1
            or _b64url_encode(_b64url_decode(segment)) != segment
        ):
            raise InvalidToken("the access token is not canonically encoded")


def _is_low_s(token: str) -> bool:
    """True for an ES256 signature r||s with s <= n/2 (the one of the two valid forms)."""
    signature = _b64url_decode(token.rpartition(".")[2])
    return len(signature) == 64 and int.from_bytes(signature[32:], "big") <= _P256_ORDER // 2


def _low_s(token: str) -> str:
    """The same ES256 token with s replaced by n - s when s > n/2 (both verify)."""
    head, _, encoded = token.rpartition(".")
    signature = _b64url_decode(encoded)
    s = int.from_bytes(signature[32:], "big")
    if s <= _P256_ORDER // 2:
        return token
    return f"{head}.{_b64url_encode(signature[:32] + (_P256_ORDER - s).to_bytes(32, 'big'))}"


def _parse_claims(kid: str, claims: Mapping[str, Any]) -> _Verified:
    """Check that every claim we rely on is present and well-typed; times are checked later."""
    missing = [name for name in _REQUIRED if name not in claims]
    if missing:
        raise InvalidToken(f"the access token lacks the claim {missing[0]}")
    times = {name: claims[name] for name in ("exp", "iat", "nbf")}
    strings = {name: claims[name] for name in ("sub", "jti", "client_id", "scope", "sid")}
    version = claims.get(CREDENTIAL_VERSION_CLAIM, 0)
    if type(version) is not int or not 0 <= version <= _MAX_TIMESTAMP:
        raise InvalidToken("the access token has malformed claims")
    if any(
        type(value) is not int or not 0 <= value <= _MAX_TIMESTAMP for value in times.values()
    ) or any(
        not isinstance(value, str) or (not value and name != "scope")
        for name, value in strings.items()
    ):
        raise InvalidToken("the access token has malformed claims")
    return _Verified(
        kid=kid,
        expires=times["exp"],
        not_before=times["nbf"],
        issued=times["iat"],
        claims=AccessClaims(
            subject=strings["sub"],
            scopes=frozenset(strings["scope"].split()),
            session_id=strings["sid"],
            client_id=strings["client_id"],
            token_id=strings["jti"],
            issued_at=datetime.fromtimestamp(times["iat"], UTC),
            expires_at=datetime.fromtimestamp(times["exp"], UTC),
            credential_version=version,
        ),
    )
