"""Endpoint models attacked: a writer who wants the worker's API key, or another secret of its
environment, sent to a server of the writer's choosing; a reader looking for keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database
from pyembed.models import endpoint_client, endpoint_model, endpoint_registry, loading
from tests import fake_endpoint
from tests.conftest import dsn_for
from tests.helpers import run_worker
from tests.security.conftest import Connect, Role

KEY = "sk-worker-secret"


def test_a_writer_cannot_make_the_worker_send_its_key_elsewhere(
    db: psycopg.Connection,
    db_dsn: str,
    pg_port: int,
    make_role: Role,
    connect_as: Connect,
    clean_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROVIDER_API_KEY", KEY)
    provider, attacker = fake_endpoint.Endpoint(), fake_endpoint.Endpoint()
    with fake_endpoint.running(provider) as good, fake_endpoint.running(attacker) as evil:
        endpoint_registry.allow_origins(database.Database(db_dsn), [good])  # as the admin
        writer = make_role("pyembed_writer")
        writer_dsn = dsn_for(pg_port, db.info.dbname).replace("postgres@", f"{writer}@")
        writer_db = database.Database(writer_dsn)
        spec = endpoint_client.EndpointSpec(
            base_url=good, model="m", dimensions=8, api_key_env="PROVIDER_API_KEY"
        )
        version = endpoint_registry.register_endpoint(writer_db, "hosted", spec).id
        db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")  # the app's table
        db.execute("INSERT INTO docs VALUES (1, 'secret plans')")
        db.execute(f'GRANT SELECT ON docs TO "{writer}"')
        db.execute(
            "SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'], model => 'hosted')"
        )
        run_worker(db_dsn)  # embedded through the allowed server
        with connect_as(writer) as conn:
            # The list of servers is the admin's alone.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    "UPDATE pyembed.settings SET value = value || %s "
                    "WHERE name = 'endpoint_origins'",
                    (f" {evil}",),
                )
            with pytest.raises(errors.PermissionDenied, match="settings"):
                endpoint_registry.allow_origins(writer_db, [evil])
            # Registering at the writer's server is refused before anything is sent...
            forged = dataclasses.replace(spec, base_url=evil)
            with pytest.raises(errors.ConfigError, match="not in the admin's list"):
                endpoint_registry.register_endpoint(writer_db, "mine", forged)
            # ... and so is a version row written by hand with a correct hash: the worker loads
            # it, checks the server against the admin's list, and sends nothing.
            row = conn.execute(
                "INSERT INTO pyembed.model_versions (model_id, version, status, runtime, "
                "artifact_source, endpoint, artifact_sha256, artifact_size) "
                "SELECT model_id, 99, 'ready', 'endpoint', 'endpoint', %s, %s, 0 "
                "FROM pyembed.model_versions WHERE id = %s RETURNING id",
                (
                    Jsonb(endpoint_model.spec_to_json(forged, 512)),
                    endpoint_model.spec_sha256(forged),
                    version,
                ),
            ).fetchone()
            assert row is not None
            conn.execute("SELECT pyembed.begin_switch('docs', %s)", (row[0],))
            # Pointing the served version at the writer's server, or at another secret, is
            # refused by the table, hash or no hash.
            for change in [{"base_url": evil}, {"api_key_env": "AWS_SECRET_KEY"}]:
                with pytest.raises(psycopg.errors.InsufficientPrivilege, match="cannot change"):
                    conn.execute(
                        "UPDATE pyembed.model_versions SET endpoint = endpoint || %s, "
                        "artifact_sha256 = %s WHERE id = %s",
                        (
                            Jsonb(change),
                            endpoint_model.spec_sha256(dataclasses.replace(spec, **change)),
                            version,
                        ),
                    )
        run_worker(db_dsn, max_attempts=1)
        failed = db.execute(
            "SELECT model_version_id, last_error FROM pyembed.failed_items"
        ).fetchall()
        assert [v for v, _ in failed] == [row[0]]
        assert "not in the admin's list" in failed[0][1]
        assert attacker.requests == []  # not the key, not the text
        assert {r["auth"] for r in provider.requests} == {f"Bearer {KEY}"}
        # Readers see the settings, never a key.
        with connect_as(make_role("pyembed_reader")) as reader:
            seen = reader.execute("SELECT endpoint::text FROM pyembed.model_versions").fetchall()
        assert seen and all(KEY not in text for (text,) in seen if text)
        with pytest.raises(errors.ConfigError, match="does not name a key"):
            dataclasses.replace(spec, api_key_env="PGPASSWORD")
    loading._models.clear()
