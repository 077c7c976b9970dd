"""The whole life of a collection an endpoint embeds: text searches logged and clicked, a local
model trained from that log and evaluated beside the endpoint, then a blue/green switch to it
under live text searches, none failing (PostgreSQL 15 with plpython3u, `pyembed serve`)."""

from __future__ import annotations

import json
import os
import sysconfig
import threading
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

import pyembed
from pyembed.db import database, host
from pyembed.models import endpoint_client, endpoint_registry, switches
from pyembed.serve import http_api
from pyembed.training import options, runs
from tests import fake_endpoint, plpython_fixtures
from tests.helpers import run_worker, serving
from tests.training_fixtures import DOCS, TOPICS


def test_an_endpoint_collection_is_searched_evaluated_and_switched_to_a_local_model(
    pg15: str, pg15_api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYEMBED_TRAINING_DIR", str(tmp_path))
    db = database.Database(pg15)
    # The provider: another `pyembed serve`, hosting the packaged model as a hosted API would.
    with serving(http_api.create_app(db)) as provider:
        endpoint_registry.allow_origins(db, [provider])
        hosted = endpoint_registry.register_endpoint(
            db,
            "hosted-minilm",
            endpoint_client.EndpointSpec(
                base_url=f"{provider}/v1",
                model="all-MiniLM-L6-v2",
                dimensions=384,
                send_input_type=True,
                batch_size=16,
                requests_per_minute=6000,
            ),
            max_input_tokens=256,
        )
        with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
            conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
            conn.cursor().executemany("INSERT INTO notes VALUES (%s, %s)", DOCS)
            conn.execute(
                "SELECT pyembed.create_collection('notes', 'notes', ARRAY['body'], "
                "model => 'hosted-minilm')"
            )
            run_worker(pg15)
            # Searched by text (pyembed.embed asks `pyembed serve`, which asks the endpoint),
            # logged, clicked: the lowest-ranked result about the topic.
            for i in range(40):
                rows = conn.execute(
                    "SELECT query_id, pk FROM pyembed.search('notes', %s, 5)",
                    (f"looking for {TOPICS[i % 8]} ({i})",),
                ).fetchall()
                clicked = [pk for _, pk in rows if pk[0] % 8 == i % 8][-1:] or [rows[-1][1]]
                conn.execute(
                    "SELECT pyembed.record_feedback(%s, %s)", (rows[0][0], json.dumps(clicked[0]))
                )
            logged = conn.execute(
                "SELECT count(*), min(model_version_id), max(model_version_id) "
                "FROM pyembed.query_log WHERE collection_id = "
                "(SELECT id FROM pyembed.collections WHERE name = 'notes')"
            ).fetchone()
            assert logged == (40, hosted.id, hosted.id)
        # A local model trained from the endpoint collection's log, evaluated beside it.
        result = runs.train(
            db,
            "notes",
            options=options.TrainOptions(batch_size=8, epochs=1, save_steps=2, base_version_id=1),
        )
        with psycopg.connect(pg15) as conn:
            measured = conn.execute(
                "SELECT model_version_id FROM pyembed.eval_runs WHERE eval_set_id = %s "
                "ORDER BY model_version_id",
                (result.eval_set_id,),
            ).fetchall()
        assert [v for (v,) in measured] == sorted({1, hosted.id, result.version_id})
        # The switch, under text searches that must neither fail nor come back empty.
        stop, failures, sizes = threading.Event(), [], []

        def search_loop() -> None:
            with plpython_fixtures.connect(pg15, embed_url=pg15_api) as conn:
                while not stop.is_set():
                    try:
                        found = conn.execute(
                            "SELECT pk FROM pyembed.search('notes', 'apple pie', 3)"
                        ).fetchall()
                        sizes.append(len(found))
                    except psycopg.Error as exc:
                        failures.append(exc)

        searcher = threading.Thread(target=search_loop)
        searcher.start()
        try:
            switches.promote(db, "notes", result.version_id, allow_other_model=True)
            flipped = len(sizes)
            deadline = time.monotonic() + 60
            while len(sizes) < flipped + 10 and searcher.is_alive():
                assert time.monotonic() < deadline, "the searches stopped coming back"
                time.sleep(0.05)
        finally:
            stop.set()
            searcher.join()
    assert failures == [] and len(sizes) > 10 and set(sizes) == {3}
    with psycopg.connect(pg15) as conn:
        served = conn.execute(
            "SELECT DISTINCT model_version_id FROM pyembed.query_log ORDER BY 1"
        ).fetchall()
        active = conn.execute(
            "SELECT active_version_id FROM pyembed.collections WHERE name = 'notes'"
        ).fetchone()
    assert active == (result.version_id,)
    assert {hosted.id, result.version_id} <= {v for (v,) in served}


def test_local_mode_embeds_queries_through_the_endpoint_in_the_backend(pg15: str) -> None:
    paths = [sysconfig.get_paths()["purelib"], str(Path(pyembed.__file__).resolve().parents[1])]
    if os.geteuid() == 0:  # the server runs as its own OS user: let it reach the packages
        for path in paths:
            host.open_parents(Path(path))
    fake = fake_endpoint.Endpoint()
    db = database.Database(pg15)
    with fake_endpoint.running(fake) as url:
        endpoint_registry.allow_origins(db, [url])
        endpoint_registry.register_endpoint(
            db,
            "fake-hosted",
            endpoint_client.EndpointSpec(
                base_url=url, model="fake", dimensions=fake_endpoint.DIMS, send_input_type=True
            ),
        )
        local = {"embed_mode": "local", "python_path": ":".join(paths)}
        with plpython_fixtures.connect(pg15, **local) as conn:
            found = conn.execute("SELECT pyembed.embed('apple pie', 'fake-hosted')").fetchone()
            assert found is not None
            np.testing.assert_allclose(
                found[0].to_numpy(), fake_endpoint.vector("apple pie"), atol=1e-6
            )
            assert fake.requests[-1]["body"]["input_type"] == "query"
        fake.faults = ["401"]
        with (
            plpython_fixtures.connect(pg15, **local) as conn,
            pytest.raises(
                psycopg.Error, match=r"pyembed\.embed: endpoint 'fake' answered HTTP 401"
            ),
        ):
            conn.execute("SELECT pyembed.embed('apple pie', 'fake-hosted')")
        endpoint_registry.allow_origins(db, [], [url])
        with (
            plpython_fixtures.connect(pg15, **local) as conn,
            pytest.raises(psycopg.Error, match="not in the admin's list") as refused,
        ):
            conn.execute("SELECT pyembed.embed('apple pie', 'fake-hosted')")
        assert "pyembed models allow-endpoint" in (refused.value.diag.message_hint or "")
    plpython_fixtures.connect(pg15).close()  # back to http mode for the module's other test
