"""docker-compose.yml declares the whole pipeline, healthy before it starts, on loopback only.

No Docker engine is needed: the file is loaded with PyYAML and its structure checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

TRACKER_COMMANDS = {
    "ingest": ["mappa", "run", "ingest"],
    "relay": ["mappa", "run", "relay"],
    "project-caseload": ["mappa", "run", "project", "caseload"],
    "project-return": ["mappa", "run", "project", "statistical-return"],
    "project-alerts": ["mappa", "run", "project", "victim-alerts"],
    "project-data-quality": ["mappa", "run", "project", "data-quality"],
    "publish-alerts": ["mappa", "run", "publish-alerts"],
}
SERVERS = ("postgres", "kafka")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), "docker-compose.yml is not a mapping"
    found = document.get("services")
    assert isinstance(found, dict), "docker-compose.yml has no services mapping"
    return found


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) for item in environment)
    return {key: str(value) for key, value in environment.items()}


def _healthcheck_command(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return test if isinstance(test, str) else " ".join(test)


def test_compose_file_declares_postgres_kafka_and_every_tracker_process_with_health_checks(
    services: dict[str, Any],
) -> None:
    assert set(services) >= {*SERVERS, *TRACKER_COMMANDS}
    for name in SERVERS:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    assert "pg_isready" in _healthcheck_command(services["postgres"])
    kafka_check = _healthcheck_command(services["kafka"])
    assert "/opt/kafka/bin/kafka-topics.sh" in kafka_check
    assert "--bootstrap-server localhost:9092" in kafka_check
    assert "--list" in kafka_check


def test_servers_use_the_agreed_images_and_credentials(services: dict[str, Any]) -> None:
    assert services["postgres"]["image"] == "postgres:15"
    postgres_env = _environment(services["postgres"])
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        assert postgres_env[key] == "mappa"
    assert services["kafka"]["image"] == "apache/kafka:4.1.0"


def test_kafka_runs_as_a_single_kraft_node_with_one_replica_of_internal_topics(
    services: dict[str, Any],
) -> None:
    env = _environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_NUM_PARTITIONS"] == "3"


@pytest.mark.parametrize("name", sorted(TRACKER_COMMANDS))
def test_each_tracker_process_runs_its_command_against_healthy_postgres_and_kafka(
    services: dict[str, Any], name: str
) -> None:
    service = services[name]
    assert _command(service) == TRACKER_COMMANDS[name]
    assert "build" in service, f"{name} is not built from the repository's Dockerfile"
    env = _environment(service)
    assert env["MAPPA_DATABASE_URL"] == "postgresql://mappa:mappa@postgres:5432/mappa"
    assert env["MAPPA_KAFKA_BOOTSTRAP"] == "kafka:9092"
    depends_on = service.get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on must name conditions"
    for server in SERVERS:
        assert depends_on.get(server, {}).get("condition") == "service_healthy", (
            f"{name} must wait for a healthy {server}"
        )


def _host_ip(port: Any) -> str | None:
    """The host address a published port binds, or None when it binds every address."""
    if isinstance(port, dict):  # long syntax
        return port.get("host_ip")
    parts = str(port).split(":")
    if len(parts) == 3:  # host_ip:published:target
        return parts[0]
    return None  # "target" or "published:target": all interfaces


def test_every_published_port_binds_loopback_only(services: dict[str, Any]) -> None:
    published = [
        (name, port) for name, service in services.items() for port in service.get("ports", [])
    ]
    assert published, "expected the servers to publish their ports for the host"
    for name, port in published:
        assert _host_ip(port) == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"


def test_tracker_image_is_python_3_11_slim_installing_the_package() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "FROM python:3.11-slim" in dockerfile
    assert "pip install ." in dockerfile
