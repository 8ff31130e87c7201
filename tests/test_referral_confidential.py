"""是否保密: a confidential complainant is hidden from the handling department's view."""

from __future__ import annotations

import dataclasses

from ingest.api import StaffToken
from tests.stack import Stack
from tests.support_http import api_client
from tests.test_referral_support import (  # referral_secrets: the autouse env fixture
    order,
    post_signed,
    referral_secrets,  # noqa: F401
)


async def test_a_confidential_complainant_is_hidden_from_the_handling_department_only(
    embedded_stack: Stack,
) -> None:
    stack = embedded_stack
    staff = (
        StaffToken(id="officer", token="officer-token-0123456789"),
        StaffToken(id="liaison", token="liaison-token-0123456789", department="customer_service"),
        StaffToken(id="handler", token="handler-token-0123456789", department="supply_dispatch"),
    )
    settings = stack.settings.model_copy(
        update={"auth": stack.settings.auth.model_copy(update={"staff": staff})}
    )
    runtime = dataclasses.replace(stack.rt, settings=settings)
    async with api_client(runtime) as client:
        secret = await post_signed(client, order(工单编号="SECRET-1", 是否保密="是"))
        public = await post_signed(client, order(工单编号="OPEN-1", 是否保密="否"))
        assert secret.status_code == public.status_code == 201
        assert await stack.drain() == 2

        async def view(token: str, number: str) -> dict:
            response = await client.get(
                f"/api/tickets/{number}", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
            return response.json()["complainant"]

        hidden = await view("handler-token-0123456789", secret.json()["number"])
        assert hidden["name"] is None and hidden["phone"] is None and hidden["confidential"]
        for token in ("officer-token-0123456789", "liaison-token-0123456789"):
            shown = await view(token, secret.json()["number"])
            assert shown["name"] == "王女士" and shown["phone"] == "+8613812345678"
            assert shown["confidential"] is False
        assert (await view("handler-token-0123456789", public.json()["number"]))["name"] == "王女士"

        listing = await client.get(
            "/api/tickets", headers={"Authorization": "Bearer handler-token-0123456789"}
        )
        by_number = {t["number"]: t["complainant"] for t in listing.json()["tickets"]}
        assert by_number[secret.json()["number"]]["name"] is None
        assert by_number[public.json()["number"]]["name"] == "王女士"
