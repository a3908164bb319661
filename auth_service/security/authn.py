"""How a user authenticated: RFC 8176 `amr` values and our `acr` values.

Access tokens (and ID tokens) carry them with `auth_time`, so a resource server can ask
for a second factor or a recent login (RFC 9470 step-up).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ACR_MFA",
    "ACR_PASSWORD",
    "AMR_PASSWORD",
    "AMR_PASSWORD_OTP",
    "AMR_PASSWORD_RECOVERY_CODE",
    "acr_for",
]

# RFC 8176 §2: "pwd" password, "otp" one-time password (RFC 6238 here), "mfa" more than
# one factor. A recovery code is a second factor but no RFC 4226/6238 OTP: pwd + mfa.
AMR_PASSWORD = ("pwd",)
AMR_PASSWORD_OTP = ("pwd", "otp", "mfa")
AMR_PASSWORD_RECOVERY_CODE = ("pwd", "mfa")
ACR_PASSWORD = "urn:auth-service:acr:password"  # noqa: S105 - a URN, no secret
ACR_MFA = "urn:auth-service:acr:mfa"


def acr_for(amr: Iterable[str]) -> str:
    """The authentication context class reached by these methods."""
    return ACR_MFA if "mfa" in amr else ACR_PASSWORD
