"""`auth-service serve | migrate | create-user | users … | clients … | keys … | openapi |
config-docs`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import SettingsError

from auth_service import __version__
from auth_service.config import Settings
from auth_service.errors import AuthServiceError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from auth_service.security.keyring import KeyDirectory
    from auth_service.services.clients import Client
    from auth_service.services.context import ServiceContext

_T = TypeVar("_T")

__all__ = ["main"]

log = logging.getLogger("auth_service")


def _refuse(message: str) -> NoReturn:
    """One line on stderr naming the variable and what is wrong; exit 2 (usage error)."""
    sys.stderr.write(f"auth-service: {message}\n")
    raise SystemExit(2)


def _variable(location: tuple[int | str, ...]) -> str:
    return f"AUTH_{str(location[0]).upper()}" if location else ""


def _one_line(exc: ValidationError) -> str:
    """Every problem of a ValidationError on one line, each led by its AUTH_* variable."""
    problems = []
    for error in exc.errors():
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        message = message.removeprefix("refusing insecure configuration: ")
        variable = _variable(error.get("loc", ()))
        problems.append(f"{variable}: {message}" if variable else message)
    return "configuration refused: " + "; ".join(problems)


def _warn_about_unknown_variables() -> None:
    """Name misspelled AUTH_* variables (environment and ./.env) with the closest setting."""
    from dotenv import dotenv_values

    from auth_service.config import unknown_variable_warnings

    names = dict.fromkeys(os.environ, "")
    if Path(".env").is_file():
        names |= dict.fromkeys(dotenv_values(".env"), "")
    for warning in unknown_variable_warnings(names):
        sys.stderr.write(f"auth-service: warning: {warning}\n")


def _load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        _refuse(_one_line(exc))
    except SettingsError as exc:
        # A value the settings sources could not decode at all (before validation).
        field = re.search(r'field "(\w+)"', str(exc))
        name = _variable((field.group(1),)) if field else "an AUTH_* variable"
        _refuse(f"configuration refused: {name}: cannot be parsed")


def _preflight(settings: Settings) -> None:
    """Refuse, in one line, key files that cannot work."""
    from auth_service.startup import StartupRefused, check_keys

    try:
        check_keys(settings)
    except StartupRefused as exc:
        _refuse(str(exc))


def _configure_logging(settings: Settings) -> None:
    from auth_service.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)


def worker_app() -> ASGIApp:
    """The app of one `serve` worker process: settings read again from the environment."""
    from auth_service.app import create_serving_app

    settings = _load_settings()
    _configure_logging(settings)
    return create_serving_app(settings)


def _wait_for_dependencies(settings: Settings, *, redis: bool) -> None:
    """Retry an unreachable database (and Redis) with backoff; one line and exit 1 at the end."""
    from auth_service.startup import DependencyUnreachableError, wait_for_database, wait_for_redis

    async def wait() -> None:
        bound = settings.startup_wait_seconds
        await wait_for_database(settings.effective_database_url, bound_seconds=bound)
        if redis and settings.redis_url is not None:
            await wait_for_redis(settings.redis_url, bound_seconds=bound)

    try:
        asyncio.run(wait())
    except DependencyUnreachableError as exc:
        sys.stderr.write(f"auth-service: {exc}\n")
        raise SystemExit(1) from None


def _hold_data_dir(settings: Settings, stack: contextlib.ExitStack) -> None:
    """Without Redis, lock the data dir for this process's life: a second `serve` is refused.

    With one worker (more need Redis) uvicorn runs the app in this very process, so the
    lock is held by the process whose in-process revocation state it protects.
    """
    from auth_service.instance_lock import DataDirInUse, exclusive_data_dir

    if settings.uses_redis:
        return
    try:
        stack.enter_context(exclusive_data_dir(settings.data_dir))
    except DataDirInUse as exc:
        sys.stderr.write(f"auth-service: {exc}\n")
        raise SystemExit(1) from None


def _serve(settings: Settings, _: argparse.Namespace) -> int:
    from auth_service.server import serve

    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "proxy_headers": False,  # X-Forwarded-For is read only behind AUTH_TRUSTED_PROXIES
        "server_header": False,
        "log_config": None,  # keep the JSON logging configured here
        "timeout_graceful_shutdown": settings.graceful_shutdown_seconds,
        "drain_seconds": settings.drain_seconds,
        "http": "auth_service.serving:ServingProtocol",
        # Slow clients: heads, bodies (BodySizeLimit) and idle keep-alives are timed; past
        # the connection cap (per worker) requests are answered 503.
        "header_timeout": settings.http_header_timeout_seconds,
        "timeout_keep_alive": settings.http_keep_alive_timeout_seconds,
        "limit_concurrency": settings.http_max_connections,
    }
    with contextlib.ExitStack() as stack:
        if settings.workers == 1:
            _hold_data_dir(settings, stack)
        return serve(settings, options)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.db.migrate import UnknownRevisionError, migrate_to, upgrade_to_head

    url = settings.effective_database_url
    if args.to is None:
        upgrade_to_head(url)
        log.info("database schema is up to date")
        return 0
    try:
        migrate_to(url, args.to)
    except UnknownRevisionError:
        sys.stderr.write(f"auth-service: migrate --to: no revision {args.to!r} is shipped\n")
        return 2
    log.info("database schema is at revision %s", args.to)
    return 0


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.accounts import register

    password = os.environ.get("AUTH_NEW_USER_PASSWORD") or getpass.getpass("password: ")
    profile = _with_services(
        settings, lambda ctx: register(ctx, username=args.username, password=password)
    )
    print(json.dumps({"id": profile.id, "username": profile.username}))
    return 0


def _disable_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.accounts import disable

    if not _with_services(settings, lambda ctx: disable(ctx, args.username)):
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    print(f"disabled {args.username}: logins blocked, every session and token revoked")
    return 0


def _list_users(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.user_admin import UserSummary, list_users

    async def every_page(ctx: ServiceContext) -> list[UserSummary]:
        found: list[UserSummary] = []
        after: str | None = None
        while True:  # a listing for a shell: every page, in one runtime
            page = await list_users(ctx, disabled_only=args.disabled, after=after, limit=500)
            found += page.users
            if page.next_cursor is None:
                return found
            after = page.next_cursor

    for user in _with_services(settings, every_page):
        state = "active" if user.active else "disabled"
        print(f"{user.username}\t{state}\t{' '.join(user.scopes)}\t{user.created_at}")
    return 0


def _show_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.user_admin import show

    user = _with_services(settings, lambda ctx: show(ctx, args.username))
    if user is None:
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    view = {
        "id": user.id,
        "username": user.username,
        "active": user.active,
        "scopes": list(user.scopes),
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
        "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
        "open_sessions": user.open_sessions,
    }
    print(json.dumps(view))
    return 0


def _enable_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.user_admin import enable

    if not _with_services(settings, lambda ctx: enable(ctx, args.username)):
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    print(f"enabled {args.username}: logins allowed; earlier sessions and tokens stay revoked")
    return 0


def _delete_user(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.user_admin import delete

    if not _with_services(settings, lambda ctx: delete(ctx, args.username)):
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    print(f"deleted {args.username} and its sessions")
    return 0


def _reset_mfa(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.mfa import reset_totp

    removed = _with_services(settings, lambda ctx: reset_totp(ctx, args.username))
    if removed is None:
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    if not removed:
        print(f"{args.username} has no TOTP factor: nothing to reset")
        return 0
    print(f"reset {args.username}: TOTP factor and recovery codes removed; enrol again")
    return 0


def _purge_deleted(settings: Settings, _: argparse.Namespace) -> int:
    from auth_service.services.account_deletion import purge_deleted_accounts

    purged = _with_services(settings, purge_deleted_accounts)
    print(f"purged {purged} deleted accounts whose username hold ended")
    return 0


def _with_services(settings: Settings, use: Callable[[ServiceContext], Awaitable[_T]]) -> _T:
    """Run one use case against a fully assembled runtime, then dispose of it."""
    from auth_service.app import open_runtime

    async def run() -> _T:
        async with open_runtime(settings) as runtime:
            return await use(runtime.services)

    return asyncio.run(run())


def _set_scopes(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.accounts import set_scopes

    scopes = frozenset(args.scopes)
    if not _with_services(settings, lambda ctx: set_scopes(ctx, args.username, scopes)):
        sys.stderr.write(f"auth-service: no user named {args.username!r}\n")
        return 1
    print(f"{args.username} may now be granted: {' '.join(sorted(scopes)) or '(nothing)'}")
    return 0


def _client_jwks(args: argparse.Namespace) -> str | None:
    """The JWKS JSON a private_key_jwt client registers, read from --jwks-file or
    --public-key-file (a PEM public key)."""
    from auth_service.errors import InvalidClientMetadata
    from auth_service.security.client_keys import ClientKeyError, jwks_from_pem

    try:
        if args.jwks_file is not None:
            return str(args.jwks_file.read_text(encoding="utf-8"))
        if args.public_key_file is not None:
            return jwks_from_pem(args.public_key_file.read_bytes())
    except (OSError, UnicodeDecodeError, ClientKeyError) as exc:
        raise InvalidClientMetadata(f"cannot use the key file: {exc}") from exc
    return None


def _client_json(client: Client) -> dict[str, object]:
    """What `clients add` and `clients list --json` show of a client (never a secret)."""
    keys = json.loads(client.jwks)["keys"] if client.jwks else []
    return {
        "client_id": client.client_id,
        "confidential": client.confidential,
        "token_endpoint_auth_method": client.auth_method,
        "grant_types": sorted(client.grant_types),
        "scopes": sorted(client.scopes),
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "first_party": client.first_party,
        "require_pkce": client.require_pkce,
        "id_token_signed_response_alg": client.id_token_alg,
        "introspection": client.introspection,
        "jwks_kids": [key["kid"] for key in keys],
    }


def _default_grants(args: argparse.Namespace) -> list[str]:
    """Without --grants: the password grant for a first-party client, the code flow for one
    with redirect URIs, else none (a resource server that only introspects)."""
    if args.first_party:
        return ["password", "refresh_token"]
    return ["authorization_code", "refresh_token"] if args.redirect_uris else []


def _add_client(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.clients import register_client

    jwks = _client_jwks(args)
    new = _with_services(
        settings,
        lambda ctx: register_client(
            ctx,
            args.client_id,
            confidential=args.confidential,
            grant_types=frozenset(_default_grants(args) if args.grants is None else args.grants),
            scopes=frozenset(args.scopes),
            introspection=args.introspection,
            redirect_uris=args.redirect_uris,
            post_logout_redirect_uris=args.post_logout_redirect_uris,
            first_party=args.first_party,
            require_pkce=args.require_pkce,
            id_token_alg=args.id_token_alg,
            jwks=jwks,
        ),
    )
    output = _client_json(new.client)
    if new.secret is not None:
        output["client_secret"] = new.secret  # shown once; only its hash is stored
    print(json.dumps(output))
    return 0


def _list_clients(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.clients import list_clients

    clients = _with_services(settings, lambda ctx: list_clients(ctx, include_default=True))
    if args.json:
        print(json.dumps([_client_json(client) for client in clients], indent=2))
        return 0
    for client in clients:
        kind = "confidential" if client.confidential else "public"
        # What the client may do: its grant types, and introspection if granted.
        grants = ",".join(
            sorted(client.grant_types | ({"introspection"} if client.introspection else set()))
        )
        fields = [client.client_id, kind, grants, " ".join(sorted(client.scopes))]
        fields += [flag for flag, on in _client_flags(client) if on]
        if client.redirect_uris:
            fields.append("redirect_uris=" + " ".join(client.redirect_uris))
        if client.post_logout_redirect_uris:
            fields.append("post_logout=" + " ".join(client.post_logout_redirect_uris))
        # The default client is not stored; requests naming no client act as it.
        if client.client_id == settings.default_client_id:
            fields.append("(default)")
        print("\t".join(fields))
    return 0


def _client_flags(client: Client) -> list[tuple[str, bool]]:
    """The labels `clients list` adds for what differs from a plain client."""
    return [
        ("private_key_jwt", client.auth_method == "private_key_jwt"),
        ("first-party", client.first_party),
        ("pkce", client.require_pkce),
        (f"id_token={client.id_token_alg}", client.id_token_alg != "RS256"),  # noqa: S105 - an algorithm
    ]


def _remove_client(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.client_admin import remove_client

    if not _with_services(settings, lambda ctx: remove_client(ctx, args.client_id)):
        sys.stderr.write(f"auth-service: no client {args.client_id!r}\n")
        return 1
    return 0


def _disable_client(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.client_admin import disable_client

    if not _with_services(settings, lambda ctx: disable_client(ctx, args.client_id)):
        sys.stderr.write(f"auth-service: no client {args.client_id!r}\n")
        return 1
    print(f"disabled {args.client_id}: it cannot authenticate; its client tokens are revoked")
    return 0


def _enable_client(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.client_admin import enable_client

    if not _with_services(settings, lambda ctx: enable_client(ctx, args.client_id)):
        sys.stderr.write(f"auth-service: no client {args.client_id!r}\n")
        return 1
    print(f"enabled {args.client_id}: tokens revoked earlier stay revoked")
    return 0


def _rotate_client_secret(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.client_admin import rotate_secret

    secret = _with_services(settings, lambda ctx: rotate_secret(ctx, args.client_id))
    if secret is None:
        sys.stderr.write(f"auth-service: no client {args.client_id!r}\n")
        return 1
    # Shown once; the old secret and the client's tokens stopped working.
    print(json.dumps({"client_id": args.client_id, "client_secret": secret}))
    return 0


def _set_client_keys(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.services.client_admin import replace_keys

    jwks = _client_jwks(args)
    assert jwks is not None  # one of the two (required) options
    if not _with_services(settings, lambda ctx: replace_keys(ctx, args.client_id, jwks)):
        sys.stderr.write(f"auth-service: no client {args.client_id!r}\n")
        return 1
    print(f"replaced the keys of {args.client_id}; its client tokens are revoked")
    return 0


def _key_file_options(group: argparse._MutuallyExclusiveGroup) -> None:
    group.add_argument(
        "--jwks-file", type=Path, help="public keys (JWKS JSON) for private_key_jwt, no secret"
    )
    group.add_argument(
        "--public-key-file", type=Path, help="a PEM public key for private_key_jwt, no secret"
    )


def _key_directory(settings: Settings) -> KeyDirectory:
    from auth_service.security.keyring import KeyDirectory
    from auth_service.security.tokens import utc_now

    if settings.keys_dir is None:
        sys.stderr.write("auth-service: set AUTH_KEYS_DIR to the shared key directory\n")
        raise SystemExit(2)
    return KeyDirectory(settings.keys_dir, utc_now)


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import timedelta

    from auth_service.security.keys import KeyConfigurationError

    directory = _key_directory(settings)
    try:
        if args.keys_command == "generate":
            record = directory.generate(settings.signing_algorithm)
            print(f"{record.kid}\t{record.state}")
        elif args.keys_command == "import":
            try:
                pem = Path(args.pem).read_bytes()
            except OSError as exc:
                raise KeyConfigurationError(f"{args.pem}: {exc.strerror or exc}") from None
            record = directory.import_key(pem, settings.signing_algorithm)
            print(f"{record.kid}\t{record.state}")
        elif args.keys_command == "rotate":
            record = directory.rotate(
                settings.signing_algorithm,
                published_for=timedelta(seconds=settings.jwks_max_age_seconds),
                tokens_live_for=settings.access_token_horizon,
                force=args.force,
            )
            print(f"{record.kid}\tactive")
        elif args.keys_command == "retire":
            for kid in directory.retire(kid=args.kid, force=args.force):
                print(f"{kid}\tretired")
        else:
            for r in directory.records():
                print(
                    f"{r.kid}\t{r.algorithm}\t{r.state}\t{r.created_at}\t{r.publish_until or '-'}"
                )
    except KeyConfigurationError as exc:
        sys.stderr.write(f"auth-service: {exc}\n")
        return 1
    return 0


def _config_docs(settings: Settings, args: argparse.Namespace) -> int:
    from auth_service.config_docs import render

    page = render()
    if args.output == "-":
        sys.stdout.write(page)
    else:
        Path(args.output).write_text(page, encoding="utf-8")
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
    parser.add_argument("--version", action="version", version=f"auth-service {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve HTTP on AUTH_HOST:AUTH_PORT").set_defaults(run=_serve)
    migrate = commands.add_parser("migrate", help="apply database migrations (up to head)")
    migrate.add_argument(
        "--to", metavar="REVISION", help="upgrade or downgrade to REVISION (an id, head or base)"
    )
    migrate.set_defaults(run=_migrate)
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
    listing = users.add_parser("list", help="name, state, scopes, created (every user)")
    listing.add_argument("--disabled", action="store_true", help="only disabled users")
    listing.set_defaults(run=_list_users)
    for name, run, text in [
        ("show", _show_user, "one user as JSON (state, scopes, open sessions)"),
        ("enable", _enable_user, "allow logins again (revoked tokens stay revoked)"),
        ("delete", _delete_user, "delete a user disabled longer than the token lifetime"),
    ]:
        command = users.add_parser(name, help=text)
        command.add_argument("username")
        command.set_defaults(run=run)
    reset = users.add_parser("mfa-reset", help="remove a user's TOTP factor and recovery codes")
    reset.add_argument("username")
    reset.set_defaults(run=_reset_mfa)
    users.add_parser(
        "purge-deleted", help="free the names of self-deleted accounts whose hold ended"
    ).set_defaults(run=_purge_deleted)
    scopes = users.add_parser("set-scopes", help="replace the scopes a user may be granted")
    scopes.add_argument("username")
    scopes.add_argument("scopes", nargs="*", help="e.g. profile admin")
    scopes.set_defaults(run=_set_scopes)

    clients = commands.add_parser("clients", help="manage OAuth clients").add_subparsers(
        dest="clients_command", required=True
    )
    add = clients.add_parser("add", help="register a client (prints a secret once)")
    add.add_argument("client_id")
    add.add_argument("--confidential", action="store_true", help="give it a secret")
    add.add_argument(
        "--grants",
        nargs="*",
        default=None,
        help="authorization_code client_credentials password refresh_token (default: "
        "password refresh_token with --first-party, the code flow with --redirect-uris)",
    )
    add.add_argument("--scopes", nargs="+", default=["profile"])
    add.add_argument(
        "--introspection", action="store_true", help="may call /introspect (needs --confidential)"
    )
    add.add_argument(
        "--redirect-uris", nargs="+", default=[], metavar="URI", help="matched exactly"
    )
    add.add_argument("--post-logout-redirect-uris", nargs="+", default=[], metavar="URI")
    add.add_argument(
        "--first-party",
        action="store_true",
        help="never asks the user's consent; may use the password grant",
    )
    add.add_argument(
        "--require-pkce", action="store_true", help="always for public clients; opt-in otherwise"
    )
    add.add_argument("--id-token-alg", choices=["RS256", "ES256"], default="RS256")
    _key_file_options(add.add_mutually_exclusive_group())
    add.set_defaults(run=_add_client)
    list_command = clients.add_parser("list", help="list registered clients")
    list_command.add_argument("--json", action="store_true", help="every property, as JSON")
    list_command.set_defaults(run=_list_clients)
    for name, run, text in [
        ("remove", _remove_client, "delete a client (revokes its client_credentials tokens)"),
        ("disable", _disable_client, "refuse its authentication, revoke its client tokens"),
        ("enable", _enable_client, "let a disabled client authenticate again"),
        ("rotate-secret", _rotate_client_secret, "new secret (printed once), old tokens revoked"),
    ]:
        command = clients.add_parser(name, help=text)
        command.add_argument("client_id")
        command.set_defaults(run=run)
    set_keys = clients.add_parser("set-keys", help="new keys for a private_key_jwt client")
    set_keys.add_argument("client_id")
    _key_file_options(set_keys.add_mutually_exclusive_group(required=True))
    set_keys.set_defaults(run=_set_client_keys)
    keys = commands.add_parser("keys", help="manage the signing keys in AUTH_KEYS_DIR")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("generate", help="add a key (published as next, or first active)")
    key_commands.add_parser("list", help="kid, algorithm, state, created, published until")
    import_key = key_commands.add_parser(
        "import", help="add a PEM key (active if none is: move from AUTH_SIGNING_KEY_FILE)"
    )
    import_key.add_argument("pem", help="path of the PEM private key")
    rotate = key_commands.add_parser("rotate", help="sign with the next key; retire the old")
    rotate.add_argument("--force", action="store_true", help="even if published too recently")
    retire = key_commands.add_parser("retire", help="drop retiring keys whose tokens expired")
    # A kid is a base64url thumbprint and may start with "-": write --kid=KID.
    retire.add_argument("--kid", help="only this key (write --kid=KID)")
    retire.add_argument("--force", action="store_true", help="even if its tokens may be live")
    keys.set_defaults(run=_keys)
    openapi = commands.add_parser("openapi", help="write the OpenAPI document")
    openapi.add_argument("--output", "-o", default="-", help="file path, or - for stdout")
    openapi.set_defaults(run=_openapi)
    config_docs = commands.add_parser(
        "config-docs", help="write docs/configuration.md (generated from the settings)"
    )
    config_docs.add_argument("--output", "-o", default="-", help="file path, or - for stdout")
    config_docs.set_defaults(run=_config_docs)
    args = parser.parse_args(argv)
    _warn_about_unknown_variables()
    settings = _load_settings()
    if args.command in {"serve", "migrate"}:
        # Before logging starts, so a refusal is the only line. `migrate` checks all that
        # `serve` will need: an entrypoint that migrates, then serves, stops before touching
        # the schema. `serve` checks here, in uvicorn's supervisor: a worker failing its
        # startup would make the supervisor exit 0.
        _preflight(settings)
    _configure_logging(settings)
    if args.command in {"serve", "migrate"}:
        # Both wait for what they need, bounded (one log line per failed attempt); a
        # database that never answers ends in one line, before the schema is touched.
        _wait_for_dependencies(settings, redis=args.command == "serve")
    try:
        result: int = args.run(settings, args)
    except AuthServiceError as exc:
        sys.stderr.write(f"auth-service: {exc.description}\n")
        return 1
    except Exception as exc:
        from auth_service.logs import BRIEF

        # One log record (its traceback inside, as JSON; one line as text), not a traceback
        # dumped past the log format.
        log.critical("auth-service %s failed", args.command, exc_info=exc, extra={BRIEF: True})
        return 1
    return result
