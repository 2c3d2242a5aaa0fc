"""``spool init``: with a running server's admin token, create a tenant and an owner key for it
and keep them in a profile of the config file, so the other commands need no flag."""

from __future__ import annotations

import getpass
import os
import sys

from spool.cli import config
from spool.cli.context import Commands, Context, UsageError, global_options
from spool.cli.output import attr


def add_commands(commands: Commands) -> None:
    parser = commands.add_parser(
        "init", parents=[global_options()],
        help="create a tenant and an owner key on a server (with its admin token) and save "
        "them in a profile",
        description="Create a tenant and an owner API key on a running server, with its admin "
        "token (--admin-token, SPOOL_ADMIN_TOKEN, or asked for on a terminal), and save the "
        "server's URL, the key and the tenant in a profile of the config file (SPOOL_CONFIG, "
        "default ~/.config/spool/config.toml, mode 0600). The first profile becomes the "
        "default one.")
    parser.add_argument("--admin-token", help="the server's admin token (SPOOL_ADMIN_TOKEN)")
    parser.add_argument("--name", dest="tenant_name", help="the tenant's name (default: the "
                        "profile's name)")
    parser.add_argument("--default", action="store_true", dest="make_default",
                        help="make this profile the default one")
    parser.add_argument("--force", action="store_true",
                        help="replace a profile of that name")
    parser.set_defaults(run=run)


def run(ctx: Context) -> None:
    args = ctx.args
    path = config.config_path()
    name = getattr(args, "profile", None) or os.environ.get("SPOOL_PROFILE") or "default"
    existing = config.load(path).get("profiles", {})
    if name in existing and not args.force:
        raise UsageError(f"profile {name!r} exists in {path}: pass --force to replace it, or "
                         "--profile NAME for another one")
    base_url = (getattr(args, "base_url", None) or os.environ.get("SPOOL_BASE_URL")
                or config.DEFAULT_BASE_URL)
    token = _admin_token(args.admin_token)
    import spool

    with spool.Client(base_url=base_url, api_key=token) as admin:
        tenant = admin.tenants.create(name=args.tenant_name or name)
    tenant_id = attr(tenant, "id")
    with spool.Client(base_url=base_url, api_key=token, tenant=tenant_id) as admin:
        key = admin.api_keys.create(name=f"spool init (profile {name})", role="owner")
    config.save_profile(path, name, {"base_url": base_url, "api_key": attr(key, "key"),
                                     "tenant_id": tenant_id}, make_default=args.make_default)
    _report(ctx, name, path, tenant, key)


def _admin_token(flag: str | None) -> str:
    token = flag or os.environ.get("SPOOL_ADMIN_TOKEN")
    if not token and sys.stdin.isatty():
        token = getpass.getpass("admin token (printed by `spool serve`): ").strip()
    if not token:
        raise UsageError("no admin token: pass --admin-token or set SPOOL_ADMIN_TOKEN")
    return token


def _report(ctx: Context, name: str, path: object, tenant: object, key: object) -> None:
    """What was made; never the key itself (it is in the file, readable by its owner only)."""
    made = {"profile": name, "config": str(path), "tenant": tenant,
            "api_key": {field: attr(key, field) for field in ("id", "name", "role")}}
    if ctx.out.json:
        ctx.out.document(made)
        return
    ctx.out.line(f"created tenant {attr(tenant, 'id')} ({attr(tenant, 'name')}) and owner key "
                 f"{attr(key, 'id')}", style="green")
    ctx.out.line(f"saved them as profile {name!r} in {path}")

