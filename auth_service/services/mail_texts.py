"""The words of every account mail: plain text, the link on a line of its own."""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "email_changed",
    "email_in_use",
    "password_changed",
    "password_reset",
    "verify_email",
]

_FOOTER = "\n\nThis mail was sent automatically; replies are not read.\n"


def _minutes(ttl: timedelta) -> str:
    minutes = int(ttl.total_seconds() // 60)
    return f"{minutes // 60} hours" if minutes >= 120 else f"{minutes} minutes"


def verify_email(username: str, link: str, ttl: timedelta) -> tuple[str, str]:
    """Subject and text of the verification mail."""
    return (
        "Confirm your email address",
        f"Hello {username},\n\nconfirm that this address belongs to your account by opening "
        f"this link within {_minutes(ttl)}:\n\n{link}\n\nIf you did not add this address, "
        "ignore this mail: nothing changes." + _FOOTER,
    )


def email_in_use(username: str) -> tuple[str, str]:
    """Sent instead of a link when the address is already verified by another account."""
    return (
        "Your email address was added to another account",
        f"Hello,\n\nsomeone (the account {username}) tried to add this address, which "
        "already belongs to another account of yours. Nothing changed. If you forgot "
        "your password, ask for a reset on the sign-in page." + _FOOTER,
    )


def email_changed(username: str, new_address: str) -> tuple[str, str]:
    """Told to the old address when the account's address changes."""
    return (
        "The email address of your account was changed",
        f"Hello {username},\n\nthe email address of your account was changed to "
        f"{new_address}. If you did not do this, reset your password now and contact "
        "the operator of this service." + _FOOTER,
    )


def password_reset(username: str, link: str, ttl: timedelta) -> tuple[str, str]:
    """Subject and text of the reset mail."""
    return (
        "Reset your password",
        f"Hello {username},\n\na password reset was asked for your account. Choose a new "
        f"password within {_minutes(ttl)} here:\n\n{link}\n\nIf you did not ask, ignore "
        "this mail: your password stays as it is." + _FOOTER,
    )


def password_changed(username: str) -> tuple[str, str]:
    """The notice after a password change or reset."""
    return (
        "Your password was changed",
        f"Hello {username},\n\nthe password of your account was just changed and every "
        "session was signed out. If you did not do this, reset your password now and "
        "contact the operator of this service." + _FOOTER,
    )
