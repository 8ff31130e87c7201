"""docker-compose.yml cannot run here (no Docker engine): check its structure instead."""

from __future__ import annotations

import yaml

from tests.stack import ROOT
from workers.registry import WORKERS


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))


def test_compose_runs_broker_database_edge_and_two_competing_routers() -> None:
    services = _compose()["services"]
    assert {"rabbitmq", "postgres", "migrate", "edge", "router", "sla"} <= set(services)
    assert services["router"]["command"] == ["worker", "router"]
    assert services["router"]["deploy"]["replicas"] == 2
    assert services["edge"]["command"] == ["edge"]
    assert services["migrate"]["command"] == ["migrate"]


def test_every_shouli_service_points_at_the_broker_and_the_database() -> None:
    services = _compose()["services"]
    for name in ("migrate", "edge", "router", "sla", "imap", "referrals"):
        env = services[name]["environment"]
        assert env["SHOULI_BROKER__URL"].startswith("amqp://"), name
        assert env["SHOULI_DATABASE__URL"].startswith("postgresql+asyncpg://"), name
        assert services[name]["depends_on"], name


def test_compose_runs_exactly_the_workers_of_the_registry() -> None:
    services = _compose()["services"]
    in_compose = {
        service["command"][1]
        for service in services.values()
        if (service.get("command") or [])[:1] == ["worker"]
    }
    assert in_compose == set(WORKERS)


def test_the_dockerfile_copies_every_package_and_config() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in ("ingest", "channels", "router", "store", "workers"):
        assert f"COPY {package} {package}" in dockerfile
    assert "config.yaml" in dockerfile
