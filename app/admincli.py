"""`shoal admin ...`: accounts, keys and identity policies through the admin API.

    shoal admin user add NAME [--admin] | list | remove NAME | disable NAME | enable NAME
    shoal admin key create USER | list USER | revoke ACCESS_KEY
    shoal admin policy attach USER NAME FILE|- | detach USER NAME | list USER

The endpoint and the admin credentials come from flags or, like the aws CLI, from
AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_REGION /
AWS_DEFAULT_REGION. Text output by default, `--json` for the API's own answers.
Exit status: 0, 1 when the server refused (its S3 error code on stderr), 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported by run(): `shoal serve` starts without an HTTP client
    from shoal.app.adminclient import AdminClient

EXIT_REFUSED = 1
EXIT_USAGE = 2


def add_parser(sub: Any) -> None:
    """`shoal admin` and its subcommands, on the main parser's subparsers."""
    admin = sub.add_parser(
        "admin",
        help="manage accounts, access keys and identity policies",
        description="Manage runtime accounts over the admin API (SigV4-signed).",
    )
    admin.set_defaults(command_parser=admin)
    admin.add_argument("--endpoint-url", metavar="URL", help="server URL ($AWS_ENDPOINT_URL)")
    admin.add_argument("--access-key", metavar="K", help="admin access key ($AWS_ACCESS_KEY_ID)")
    admin.add_argument(
        "--secret-key", metavar="S", help="admin secret key ($AWS_SECRET_ACCESS_KEY)"
    )
    admin.add_argument("--region", metavar="R", help="signing region ($AWS_REGION, us-east-1)")
    admin.add_argument("--ca-bundle", metavar="FILE", help="CA certificates to verify TLS with")
    admin.add_argument("--no-verify-ssl", action="store_true", help="do not verify TLS")
    admin.add_argument("--json", action="store_true", help="print the API's JSON answers")
    what = admin.add_subparsers(dest="admin_what", metavar="{user,key,policy}", required=True)

    user = what.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="create an account")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="an admin account")
    user.add_parser("list", help="every account")
    for action, text in (("remove", "delete"), ("disable", "disable"), ("enable", "enable")):
        user.add_parser(action, help=f"{text} an account").add_argument("name")

    key = what.add_parser("key", help="access keys").add_subparsers(dest="action", required=True)
    key.add_parser("create", help="a new key (its secret is shown once)").add_argument("user")
    key.add_parser("list", help="an account's keys").add_argument("user")
    revoke = key.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", metavar="ACCESS_KEY")

    policy = what.add_parser("policy", help="identity policies")
    actions = policy.add_subparsers(dest="action", required=True)
    attach = actions.add_parser("attach", help="attach an IAM policy document")
    attach.add_argument("user")
    attach.add_argument("policy")
    attach.add_argument("file", help="the policy JSON file, - for stdin")
    detach = actions.add_parser("detach", help="detach a policy")
    detach.add_argument("user")
    detach.add_argument("policy")
    actions.add_parser("list", help="an account's policies").add_argument("user")


def run(args: argparse.Namespace) -> int:
    env = os.environ
    endpoint = args.endpoint_url or env.get("AWS_ENDPOINT_URL")
    access = args.access_key or env.get("AWS_ACCESS_KEY_ID")
    secret = args.secret_key or env.get("AWS_SECRET_ACCESS_KEY")
    region = args.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    if not endpoint or not access or not secret:
        args.command_parser.error(
            "needs --endpoint-url, --access-key and --secret-key (or AWS_ENDPOINT_URL, "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    verify: str | bool = False if args.no_verify_ssl else (args.ca_bundle or True)
    import http.client

    from shoal.app.adminclient import AdminClient, AdminError

    client = AdminClient(endpoint, access, secret, region, verify)
    try:
        answer, text = _perform(client, args)
    except AdminError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except (http.client.HTTPException, OSError) as exc:
        print(f"shoal: cannot reach {endpoint}: {type(exc).__name__}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        if answer is not None:
            print(json.dumps(answer, indent=2))
    elif text:
        print(text)
    return 0


def _perform(client: AdminClient, args: argparse.Namespace) -> tuple[Any, str]:
    """Make the call; its JSON answer and the text to print."""
    what, action = args.admin_what, args.action
    if what == "user":
        if action == "add":
            user = client.add_user(args.name, args.admin)
            return user, f"created {_describe(user)}"
        if action == "list":
            users = client.users()
            return {"users": users}, "\n".join(_describe(u) for u in users)
        if action == "remove":
            client.remove_user(args.name)
            return None, f"removed {args.name}"
        user = client.set_enabled(args.name, action == "enable")
        return user, _describe(user)
    if what == "key":
        if action == "create":
            key = client.create_key(args.user)
            text = (
                f"access key: {key['access_key']}\nsecret key: {key['secret_key']}\n"
                "(the secret is shown only now: keep it)"
            )
            return key, text
        if action == "list":
            keys = client.keys(args.user)
            lines = [f"{k['access_key']}  {k['status']}  {k['created'] or '-'}" for k in keys]
            return {"keys": keys}, "\n".join(lines)
        client.revoke_key(args.key_id)
        return None, f"revoked {args.key_id}"
    if action == "attach":
        document = sys.stdin.read() if args.file == "-" else _read(args.file)
        client.attach_policy(args.user, args.policy, document)
        return {"user": args.user, "policy": args.policy}, f"attached {args.policy}"
    if action == "detach":
        client.detach_policy(args.user, args.policy)
        return None, f"detached {args.policy}"
    policies = client.policies(args.user)
    return {"policies": policies}, "\n".join(sorted(policies))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _describe(user: dict[str, Any]) -> str:
    flags = [user["source"]]
    if user["admin"]:
        flags.append("admin")
    if user["disabled"]:
        flags.append("disabled")
    keys = len(user["keys"])
    return f"{user['name']}  ({', '.join(flags)}; {keys} key{'s' * (keys != 1)})"
