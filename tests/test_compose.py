"""docker-compose.yml parses, names files that exist and only pyembed commands that exist."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pyembed.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict[str, object]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_services_are_wired() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    assert {"postgres", "migrate", "worker", "server"} <= set(services)
    for name, service in services.items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            assert (context / build["dockerfile"]).is_file(), name
        if service.get("image", "").startswith("pyembed:"):
            assert service["environment"]["PYEMBED_DSN"].startswith("postgresql://")
            command = service["command"]
            assert command[0] in main.commands, f"{name}: pyembed {command[0]} is unknown"
            group = main.commands[command[0]]
            if len(command) > 1 and hasattr(group, "commands"):
                assert command[1] in group.commands, f"{name}: pyembed {command[:2]} is unknown"


def test_postgres_image_has_plpython_and_pgvector() -> None:
    dockerfile = (ROOT / "docker" / "postgres.Dockerfile").read_text()
    assert "pgvector/pgvector" in dockerfile
    assert "postgresql-plpython3-" in dockerfile


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="needs the docker compose plugin")
def test_docker_compose_config_accepts_the_file() -> None:
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, check=True)


def test_only_the_migration_and_role_setup_log_in_as_the_superuser() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    for name in ("worker", "server"):
        assert services[name]["environment"]["PYEMBED_DSN"].startswith(
            "postgresql://pyembed_worker_login:"
        ), name
    assert "IN ROLE pyembed_worker" in " ".join(services["roles"]["command"])
