from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from api.app import create_app
from engine.engine import Engine
from engine.settings import Settings
from tests.api.openapi_check import check_all
from tests.conftest import ADMIN_TOKEN


def assert_error(response, status: int, type_: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """The response is an error envelope of this status and type; returns its ``error``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == type_
    assert error["message"]
    return error  # type: ignore[no-any-return]


class Api:
    """An httpx client on the app, plus helpers that set up tenants and keys."""

    def __init__(self, client: httpx.AsyncClient, app: Starlette) -> None:
        self.client = client
        self.app = app  # for what a client cannot do (add a route, hang up mid-body)
        self.responses: list[httpx.Response] = []  # checked against the OpenAPI document

    async def request(self, method: str, path: str, token: str | None = None,
                      **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        self.responses.append(response)
        return response

    async def tenant(self, name: str = "acme") -> str:
        response = await self.request("POST", "/v1/tenants", ADMIN_TOKEN, json={"name": name})
        assert response.status_code == 201, response.text
        tenant_id: str = response.json()["id"]
        return tenant_id

    async def key(self, tenant_id: str, role: str = "owner") -> str:
        response = await self.request(
            "POST", "/v1/api_keys", ADMIN_TOKEN, json={"name": f"{role} key", "role": role},
            headers={"Spool-Tenant": tenant_id},
        )
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key


@pytest.fixture
async def api(settings: Settings, engine: Engine) -> AsyncIterator[Api]:
    app = create_app(settings, engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://spool.test") as client:
        api = Api(client, app)
        yield api
    # Every response the test got through api.request answers an operation of the OpenAPI
    # document as it declares (checked afterwards, so as not to slow the test itself down).
    check_all(api.responses)
