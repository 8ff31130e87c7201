"""Channels by name: each one that listens on HTTP contributes an APIRouter.

Adding a channel = one module under ``channels/`` with ``build_router(runtime)`` and one
line here. A duplicate name stops start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import TYPE_CHECKING

from fastapi import APIRouter

if TYPE_CHECKING:
    from ingest.runtime import Runtime

# name -> "module:function" returning an APIRouter for the running process.
HTTP_CHANNELS: dict[str, str] = {
    "hotline": "channels.hotline.api:build_router",
    "referrals": "channels.referral.routes:build_router",
    "web": "channels.web.routes:build_router",
}


def http_routers(runtime: Runtime) -> list[APIRouter]:
    routers = []
    for name, target in HTTP_CHANNELS.items():
        module_name, _, function_name = target.partition(":")
        factory: Callable[[Runtime], APIRouter] = getattr(import_module(module_name), function_name)
        router = factory(runtime)
        router.tags = router.tags or [name]
        routers.append(router)
    return routers
