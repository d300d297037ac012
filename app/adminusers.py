"""The accounts part of the management API: `/-/admin/...` (app/admin.py routes here).

    GET    /-/admin/whoami                          any signed account: who am I
    GET    /-/admin/users                           every account, configured and runtime
    POST   /-/admin/users                           {"name", "admin"} -> 201 User
    GET    /-/admin/users/{name}                    User
    DELETE /-/admin/users/{name}                    204 (its keys stop working at once)
    POST   /-/admin/users/{name}/disable | enable   User
    POST   /-/admin/users/{name}/keys               201 new key WITH its secret (only here)
    GET    /-/admin/users/{name}/keys               keys, never secrets
    DELETE /-/admin/keys/{access_key}               204 revoke
    PUT    /-/admin/users/{name}/policies/{policy}  attach an IAM identity policy
    DELETE /-/admin/users/{name}/policies/{policy}  204 detach
    GET    /-/admin/users/{name}/policies           {"policies": {name: document}}

JSON in and out; errors are S3's XML errors like the rest of `/-/`. Configured accounts are
listed but read-only (403 AccessDenied). Secrets are never logged: the access log holds
the path, which names at most an access key id.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from shoal.app.errors import (
    AccessDenied,
    EntityTooLarge,
    InvalidArgument,
    MethodNotAllowed,
    NoSuchKey,
    NoSuchPolicy,
)
from shoal.app.runtimeaccounts import AccountDirectory
from shoal.auth.accounts import Account, Accounts, runtime_canonical_id
from shoal.storage.accounts import AccountRecord, KeyRecord
from shoal.storage.records import iso

MAX_BODY = 64 * 1024


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer no cache keeps (one of them carries a new secret)."""
    response = Response(json.dumps(data, indent=2) + "\n", status, media_type="application/json")
    response.headers["cache-control"] = "no-store"
    return response


def no_content() -> Response:
    return Response(b"", 204)


def whoami(account: Account) -> Response:
    name = account.display_name
    return json_response(
        {"name": name, "canonical_id": account.canonical_id, "admin": account.admin}
    )


async def handle(request: Request, rest: str) -> Response:
    """One request to `/-/admin/{rest}` by an admin (checked by app/admin.py)."""
    directory: AccountDirectory = request.app.state.account_directory
    accounts: Accounts = request.app.state.accounts
    parts = rest.split("/") if rest else []
    method = request.method
    if parts == ["users"]:
        if method == "GET":
            await directory.refresh()  # what another node changed a moment ago too
            users = [_config_user(a) for a in accounts.accounts]
            users += [_user(r) for r in directory.records()]
            return json_response({"users": users})
        _allow(method, "POST")
        body = await _json_body(request)
        name, admin = body.get("name"), body.get("admin", False)
        if not isinstance(name, str) or not isinstance(admin, bool):
            raise InvalidArgument('Expected {"name": string, "admin": boolean}.')
        return json_response(_user(await directory.create_user(name, admin)), 201)
    if len(parts) == 2 and parts[0] == "keys":
        _allow(method, "DELETE")
        await directory.revoke_key(parts[1])
        return no_content()
    if len(parts) < 2 or parts[0] != "users":
        raise NoSuchKey(f"No management endpoint /-/admin/{rest}")
    name = parts[1]
    configured = accounts.configured_name(name)
    if configured is not None:
        return _configured(method, parts[2:], configured)
    if len(parts) == 2:
        if method == "GET":
            await directory.refresh()
            return json_response(_user(directory.get(name)))
        _allow(method, "DELETE")
        await directory.delete_user(name)
        return no_content()
    what = parts[2]
    if len(parts) == 3 and what in ("disable", "enable"):
        _allow(method, "POST")
        return json_response(_user(await directory.set_disabled(name, what == "disable")))
    if len(parts) == 3 and what == "keys":
        if method == "GET":
            await directory.refresh()
            return json_response({"keys": [_key(k) for k in directory.get(name).keys]})
        _allow(method, "POST")
        key = await directory.create_key(name)
        created = {"access_key": key.access_key, "secret_key": key.secret_key}
        return json_response({**created, "user": name, "created": iso(key.created)}, 201)
    if len(parts) == 3 and what == "policies":
        _allow(method, "GET")
        await directory.refresh()
        policies = {n: json.loads(t) for n, t in directory.get(name).policies}
        return json_response({"policies": policies})
    if len(parts) == 4 and what == "policies":
        if method == "PUT":
            text = (await _body(request)).decode("utf-8", "replace")
            await directory.attach_policy(name, parts[3], text)
            return json_response({"user": name, "policy": parts[3]})
        _allow(method, "DELETE")
        await directory.detach_policy(name, parts[3])
        return no_content()
    raise NoSuchKey(f"No management endpoint /-/admin/{rest}")


def _configured(method: str, rest: list[str], account: Account) -> Response:
    """A configured account: readable, never changed through the API."""
    if method != "GET":
        raise AccessDenied("Accounts defined in the configuration are read-only.")
    if not rest:
        return json_response(_config_user(account))
    if rest == ["keys"]:
        return json_response({"keys": [_config_key(account)]})
    if rest == ["policies"]:
        return json_response({"policies": {}})
    if len(rest) == 2 and rest[0] == "policies":
        raise NoSuchPolicy()
    if rest in (["disable"], ["enable"]):
        raise MethodNotAllowed()
    raise NoSuchKey("No such management endpoint")


def _allow(method: str, wanted: str) -> None:
    if method != wanted:
        raise MethodNotAllowed()


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise EntityTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await _body(request) or b"{}")
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument("The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("The request body must be a JSON object.")
    return body


def _user(record: AccountRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "canonical_id": runtime_canonical_id(record.name),
        "admin": record.admin,
        "disabled": record.disabled,
        "source": "runtime",
        "created": iso(record.created),
        "keys": [_key(k) for k in record.keys],
        "policies": [n for n, _ in record.policies],
    }


def _key(key: KeyRecord) -> dict[str, Any]:
    return {"access_key": key.access_key, "status": "active", "created": iso(key.created)}


def _config_key(account: Account) -> dict[str, Any]:
    return {"access_key": account.access_key, "status": "active", "created": None}


def _config_user(account: Account) -> dict[str, Any]:
    return {
        "name": account.display_name,
        "canonical_id": account.canonical_id,
        "admin": account.admin,
        "disabled": False,
        "source": "config",
        "created": None,
        "keys": [_config_key(account)],
        "policies": [],
    }
