"""`auth-service serve | migrate | create-user | users disable | openapi`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from auth_service.config import Settings

__all__ = ["main"]

log = logging.getLogger("auth_service")


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        messages = [str(error.get("msg", "")) for error in exc.errors()]
        sys.stderr.write("auth-service: configuration refused:\n  " + "\n  ".join(messages) + "\n")
        raise SystemExit(2) from None


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _serve(settings: Settings, _: argparse.Namespace) -> int:
    import uvicorn

    from auth_service.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=False,
        server_header=False,
    )
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    from auth_service.db.migrate import upgrade_to_head

    if settings.database_url is None:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_to_head(settings.effective_database_url)
    log.info("database schema is up to date")
    return 0


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.app import open_runtime
    from auth_service.errors import AuthServiceError
    from auth_service.services.accounts import register

    password = os.environ.get("AUTH_NEW_USER_PASSWORD") or getpass.getpass("password: ")

    async def run() -> None:
        async with open_runtime(settings) as runtime:
            profile = await register(runtime.services, username=args.username, password=password)
        print(json.dumps({"id": profile.id, "username": profile.username}))

    try:
        asyncio.run(run())
    except AuthServiceError as exc:
        sys.stderr.write(f"auth-service: {exc.description}\n")
        return 1
    return 0


def _disable_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.app import open_runtime
    from auth_service.services.accounts import disable

    async def run() -> bool:
        async with open_runtime(settings) as runtime:
            return await disable(runtime.services, args.username)

    if not asyncio.run(run()):
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    print(f"disabled {args.username}: logins blocked, every session and token revoked")
    return 0


def _openapi(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.app import create_app

    document = json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True) + "\n"
    if args.output == "-":
        sys.stdout.write(document)
    else:
        Path(args.output).write_text(document, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load settings, run the subcommand."""
    parser = argparse.ArgumentParser(prog="auth-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve HTTP on AUTH_HOST:AUTH_PORT").set_defaults(run=_serve)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=_migrate)
    create = commands.add_parser(
        "create-user", help="register a user (password from AUTH_NEW_USER_PASSWORD or a prompt)"
    )
    create.add_argument("username")
    create.set_defaults(run=_create_user)
    users = commands.add_parser("users", help="manage users").add_subparsers(
        dest="users_command", required=True
    )
    disable = users.add_parser("disable", help="block logins and revoke every session")
    disable.add_argument("username")
    disable.set_defaults(run=_disable_user)
    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", "-o", default="-", help="file path, or - for stdout")
    openapi.set_defaults(run=_openapi)
    args = parser.parse_args(argv)
    settings = _load_settings()
    _configure_logging(settings)
    result: int = args.run(settings, args)
    return result
