"""``spoc users``: manage officer, supervisor, auditor and admin accounts from the command line.

    spoc users add USERNAME --role officer --contact-point AL-SPOC --clearance CONFIDENTIAL
    spoc users add USERNAME --role auditor --country AL      (or --regional: sees every country)
    spoc users list
    spoc users lock USERNAME          (ends its sessions)      spoc users unlock USERNAME
    spoc users reset-password USERNAME                        (prints a new random password once)
    spoc users set USERNAME --role supervisor --clearance SECRET
    spoc users totp USERNAME [--disable]                      (prints the otpauth:// URI once)

Each command is one unit of work, audited with the actor ``cli-operator``; errors print one line with a
remedy and exit 1. Registered in ``broker/cli.py`` as ``app.add_typer(users_app, name="users")``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import typer
from sqlalchemy.orm import Session

from broker.audit.service import Actor
from broker.config import get_settings
from broker.errors import SpocError

users_app = typer.Typer(no_args_is_help=True, help="Accounts: add, list, lock, unlock, reset passwords.")
OPERATOR = Actor("cli-operator", "admin")
T = TypeVar("T")


@contextmanager
def _session() -> Iterator[Session]:
    from broker.db import make_engine, make_sessionmaker, unit_of_work

    engine = make_engine(get_settings())
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _run(step: Callable[[Session], T]) -> T:
    try:
        with _session() as session:
            return step(session)
    except SpocError as exc:
        typer.echo(f"spoc: {exc.detail}", err=True)
        raise typer.Exit(1) from None


@users_app.command("add")
def add(
    username: str,
    role: Annotated[str, typer.Option(help="officer, supervisor, auditor or admin")],
    contact_point: Annotated[str | None, typer.Option(help="AL-SPOC …: required for officers")] = None,
    country: Annotated[str | None, typer.Option(help="a national auditor's country (AL, BA, …)")] = None,
    regional: Annotated[
        bool, typer.Option("--regional", help="a regional auditor: sees every country (instead of --country)")
    ] = False,
    clearance: Annotated[str, typer.Option(help="UNCLASSIFIED … SECRET")] = "UNCLASSIFIED",
    full_name: Annotated[str, typer.Option()] = "",
    password: Annotated[
        str | None, typer.Option(help="at least 12 characters; a random one is printed if omitted")
    ] = None,
) -> None:
    """Create an account."""
    from broker.accounts.admin import new_password
    from broker.accounts.service import create_user

    secret = password or new_password()
    _run(
        lambda s: create_user(
            s,
            username=username,
            password=secret,
            role=role,
            contact_point_id=contact_point,
            country=country,
            regional=regional,
            clearance=clearance,
            full_name=full_name,
            actor=OPERATOR,
        )
    )
    typer.echo(f"created {username} ({role})")
    if password is None:
        typer.echo(f"password: {secret}")


@users_app.command("list")
def list_() -> None:
    """Every account: username, role, contact point, clearance, status, second factor."""
    from broker.accounts.admin import list_users, status_of

    def rows(session: Session) -> list[str]:
        return [
            f"{u.username:<24} {u.role:<10} {u.contact_point_id or u.country or '-':<8} {u.clearance:<12} "
            f"{status_of(u):<10} {'totp' if u.totp_secret else ''}".rstrip()
            for u in list_users(session)
        ]

    for line in _run(rows):
        typer.echo(line)


@users_app.command("lock")
def lock(username: str) -> None:
    """Lock an account and end its sessions."""
    from broker.accounts.admin import lock as lock_user

    _run(lambda s: lock_user(s, username, actor=OPERATOR))
    typer.echo(f"locked {username}")


@users_app.command("unlock")
def unlock(username: str) -> None:
    """Unlock an account (also clears a lockout after failed logins)."""
    from broker.accounts.admin import unlock as unlock_user

    _run(lambda s: unlock_user(s, username, actor=OPERATOR))
    typer.echo(f"unlocked {username}")


@users_app.command("reset-password")
def reset_password(
    username: str,
    password: Annotated[str | None, typer.Option(help="the new password; random if omitted")] = None,
) -> None:
    """Set a new password and end the account's sessions."""
    from broker.accounts.admin import new_password
    from broker.accounts.admin import reset_password as reset

    secret = password or new_password()
    _run(lambda s: reset(s, username, password=secret, actor=OPERATOR))
    typer.echo(f"password of {username} reset")
    if password is None:
        typer.echo(f"password: {secret}")


@users_app.command("set")
def set_(
    username: str,
    role: Annotated[str | None, typer.Option()] = None,
    clearance: Annotated[str | None, typer.Option()] = None,
    contact_point: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Change an account's role, clearance or contact point (its sessions end)."""
    from broker.accounts.admin import update_user

    _run(
        lambda s: update_user(
            s, username, actor=OPERATOR, role=role, clearance=clearance, contact_point_id=contact_point
        )
    )
    typer.echo(f"updated {username}")


@users_app.command("totp")
def totp(username: str, disable: Annotated[bool, typer.Option("--disable")] = False) -> None:
    """Give an account a (new) TOTP second factor and print its otpauth:// URI, or remove it."""
    from broker.accounts.admin import disable_totp, enable_totp
    from broker.crypto import MasterKey

    if disable:
        _run(lambda s: disable_totp(s, username, actor=OPERATOR))
        typer.echo(f"second factor of {username} removed")
        return
    master = MasterKey.from_secret(get_settings().master_key_secret())
    _, uri = _run(lambda s: enable_totp(s, username, master=master, actor=OPERATOR))
    typer.echo(f"second factor of {username} set; add it to an authenticator app:")
    typer.echo(uri)
