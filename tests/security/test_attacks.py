"""The attacks of a hostile reader, writer, worker and tenant: each one worked before pyembed's
security model was enforced, and each one must fail now."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pyembed import errors
from pyembed.db import database
from pyembed.models import backend_settings, canaries, registry
from pyembed.training import learner
from tests.conftest import PACKAGE
from tests.helpers import run_worker
from tests.security.conftest import Connect, Role, as_tenant, note_vector


def _store_rows(db: psycopg.Connection, store: str = "notes_v1") -> int:
    row = db.execute(f"SELECT count(*) FROM pyembed_store.{store}").fetchone()  # noqa: S608
    assert row is not None
    return int(row[0])


def _collection_id(db: psycopg.Connection, name: str = "notes") -> int:
    row = db.execute("SELECT id FROM pyembed.collections WHERE name = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0])


# -- 1. trigger spoofing: capture functions fired by a table that is not the source ----------


def test_reader_cannot_attach_capture_triggers(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    reader = make_role("pyembed_reader")
    tenants.execute(f'GRANT CREATE ON SCHEMA public TO "{reader}"')
    victim = _collection_id(tenants)
    with connect_as(reader) as conn:
        conn.execute("CREATE TABLE mine (id int PRIMARY KEY)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "CREATE TRIGGER t AFTER TRUNCATE ON mine FOR EACH STATEMENT "
                f"EXECUTE FUNCTION pyembed._capture_truncate('{victim}')"
            )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pyembed._enqueue_keys(%s, '[[1]]', NULL, 0::smallint)", (victim,))
    assert _store_rows(tenants) == 4


def test_capture_functions_refuse_a_table_that_is_not_the_source(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    writer = make_role("pyembed_writer")  # may attach them: it must, to create collections
    tenants.execute(f'GRANT CREATE ON SCHEMA public TO "{writer}"')
    victim = _collection_id(tenants)
    with connect_as(writer) as conn:
        conn.execute("CREATE TABLE mine (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO mine SELECT g, 'x' FROM generate_series(1, 100) AS g")
        conn.execute(
            "CREATE TRIGGER t AFTER TRUNCATE ON mine FOR EACH STATEMENT "
            f"EXECUTE FUNCTION pyembed._capture_truncate('{victim}')"
        )
        conn.execute(
            "CREATE TRIGGER d AFTER DELETE ON mine REFERENCING OLD TABLE AS old_rows "
            f"FOR EACH STATEMENT EXECUTE FUNCTION pyembed._capture_changes('{victim}')"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="whose source is"):
            conn.execute("TRUNCATE mine")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="whose source is"):
            conn.execute("DELETE FROM mine")
    assert _store_rows(tenants) == 4
    assert tenants.execute("SELECT count(*) FROM pyembed.queue").fetchone() == (0,)


# -- 2. a collection manager becoming superuser -------------------------------------------------


NEAREST_ARGS = (
    "(vector, integer, integer, integer, boolean, "
    "OUT pks jsonb[], OUT chunk_seqs integer[], OUT chunks text[], "
    "OUT distances double precision[], OUT found_chunks bigint)"
)
SEARCH_ARGS = (
    "(query vector, k integer, filter jsonb, ef_search integer, probes integer, log boolean, "
    "query_text text) RETURNS TABLE (query_id bigint, rank integer, pk jsonb, chunk text, "
    "distance double precision, similarity double precision)"
)


def test_writer_owns_no_store_and_cannot_trigger_one(
    db: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    writer = make_role("pyembed_writer")
    db.execute(f'GRANT CREATE ON SCHEMA public TO "{writer}"')
    with connect_as(writer) as conn:
        conn.execute("CREATE TABLE mine (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO mine VALUES (1, 'hello')")
        conn.execute("SELECT pyembed.create_collection('mine', 'mine', ARRAY['body'])")
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'pyembed_store' "
            "AND tablename = 'mine_v1'"
        ).fetchone()
        assert owner == ("pyembed_owner",)
        conn.execute(
            "CREATE FUNCTION public.escalate() RETURNS trigger LANGUAGE plpgsql AS "
            f'$$ BEGIN ALTER ROLE "{writer}" SUPERUSER; RETURN NULL; END $$'
        )
        for ddl in (
            "CREATE TRIGGER x AFTER INSERT ON pyembed_store.mine_v1 "
            "FOR EACH STATEMENT EXECUTE FUNCTION public.escalate()",
            "ALTER TABLE pyembed_store.mine_v1 OWNER TO CURRENT_USER",
            "CREATE TABLE pyembed_store.mine_v99 (id int)",
            "CREATE TABLE pyembed.mine (id int)",
            # The store's search function: what every search of the collection runs.
            f"CREATE OR REPLACE FUNCTION pyembed_store.mine_v1_nearest{NEAREST_ARGS} "
            "LANGUAGE sql AS $$ SELECT '{}'::jsonb[], '{}'::int[], '{}'::text[], '{}'::float8[], "
            "0::bigint $$",
            f"ALTER FUNCTION pyembed_store.mine_v1_nearest{NEAREST_ARGS} OWNER TO CURRENT_USER",
            "CREATE FUNCTION pyembed_store.mine_v99_nearest() RETURNS int LANGUAGE sql "
            "AS $$ SELECT 1 $$",
            # ... and the whole search, which the log's writer takes calls from.
            f"CREATE OR REPLACE FUNCTION pyembed_store.mine_v1_search{SEARCH_ARGS} "
            "LANGUAGE sql AS $$ SELECT 1::bigint, 1, '[1]'::jsonb, '', 0::float8, 1::float8 $$",
            "ALTER FUNCTION pyembed_store.mine_v1_search(vector, integer, jsonb, integer, "
            "integer, boolean, text) OWNER TO CURRENT_USER",
            "CREATE FUNCTION pyembed_store.x_v1_search() RETURNS int LANGUAGE sql "
            "AS $$ SELECT 1 $$",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(ddl)
    run_worker(db_dsn)  # the worker writes the store: nothing of the writer's runs
    row = db.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (writer,)).fetchone()
    assert row == (False,)


def test_writer_changes_collections_only_through_the_api(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    old = tenants.execute(
        "SELECT query_id FROM pyembed.search('notes', %s, 2)", (note_vector(tenants, 1),)
    ).fetchone()
    assert old is not None
    tenants.execute("UPDATE pyembed.query_log SET created_at = now() - interval '2 days'")
    with connect_as(make_role("pyembed_writer")) as conn:
        for statement in (
            "UPDATE pyembed.query_log SET result_pks = '{}'",
            "UPDATE pyembed.collections SET pk_types = ARRAY['int); SELECT 1; --']",
            "UPDATE pyembed.collections SET settings = '[1, 2]'",
            "INSERT INTO pyembed.queue (collection_id, pk, operation) "
            "SELECT id, '[1]', 'delete' FROM pyembed.collections",
            "INSERT INTO pyembed.deployments (collection_id, action) "
            "SELECT id, 'promote' FROM pyembed.collections",
            "DELETE FROM pyembed_store.notes_v1",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        # A search's results are a view of its log row: no one writes them but the log's writer.
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="view"):
            conn.execute("DELETE FROM pyembed.query_results")
        conn.execute(
            "SELECT pyembed.alter_collection('notes', settings => '{\"log_queries\": false}')"
        )
        conn.execute("SELECT pyembed.prune_query_log('1 day')")  # the API writers do get
    # A pruned search's results go with it, though the writer may not delete them itself.
    left = "SELECT count(*) FROM pyembed.query_results WHERE query_id = %s"
    assert tenants.execute(left, old).fetchone() == (0,)
    settings = tenants.execute("SELECT settings FROM pyembed.collections").fetchone()
    assert settings == ({"tenant_setting": "app.tenant", "log_queries": False},)


# -- 3. shadowing pg_catalog through a writable schema on the search path -----------------------


def test_functions_in_a_writable_public_schema_never_run_as_pyembed(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    tenants.execute("GRANT CREATE ON SCHEMA public TO PUBLIC")  # the default before PostgreSQL 15
    tenants.execute("CREATE TABLE public.ran_as (who text, fn text)")
    tenants.execute("GRANT INSERT ON public.ran_as TO PUBLIC")
    attacker = make_role()
    app = make_role()
    tenants.execute(f'GRANT INSERT, UPDATE, DELETE, SELECT ON notes TO "{app}"')
    tenants.execute(f'CREATE POLICY app_all ON notes TO "{app}" USING (true)')
    with connect_as(attacker) as conn:
        # Better matches than pg_catalog's variadic versions, so found first on a path with public.
        for name, args in (
            ("format", "text, text"),
            ("format", "text, text, text"),
            ("jsonb_build_array", "integer"),
            ("concat_ws", "text, text"),
            ("jsonb_build_object", "text, text"),
            ("nullif", "text, text"),
        ):
            returns = "jsonb" if name.startswith("jsonb") else "text"
            body = (
                f"INSERT INTO public.ran_as VALUES (current_user, '{name}'); "  # noqa: S608
                f"SELECT NULL::{returns}"
            )
            conn.execute(
                f"CREATE FUNCTION public.{name}({args}) RETURNS {returns} "
                f"LANGUAGE sql AS $$ {body} $$"
            )
    with connect_as(app) as conn:
        conn.execute("INSERT INTO notes VALUES (9, 'a', 'new note')")
        conn.execute("UPDATE notes SET body = 'changed' WHERE id = 9")
        conn.execute("DELETE FROM notes WHERE id = 9")
    run_worker(db_dsn)
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a").execute(
            "SELECT * FROM pyembed.search('notes', %s)", (note_vector(tenants, 1),)
        )
        conn.execute(
            "SELECT * FROM pyembed.hybrid_search('notes', 'revenue', %s)",
            (note_vector(tenants, 1),),
        )
    assert tenants.execute("SELECT * FROM public.ran_as").fetchall() == []


# -- 4. tenants reading each other --------------------------------------------------------------


def test_tenants_see_only_their_own_chunks(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a")
        rows = conn.execute("SELECT id, chunk FROM pyembed_store.notes_v1 ORDER BY id").fetchall()
        assert [r[0] for r in rows] == [1, 2]
        as_tenant(conn, "nobody")
        assert conn.execute("SELECT count(*) FROM pyembed_store.notes_v1").fetchone() == (0,)
        status = conn.execute("SELECT source_rows, embedded_rows FROM pyembed.collection_status")
        assert status.fetchall() == [(0, 0)]


def test_a_filter_neither_widens_a_tenant_nor_reads_a_column_it_may_not(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    tenants.execute("ALTER TABLE notes ADD COLUMN salary integer")
    tenants.execute("UPDATE notes SET salary = id * 1000")
    query = note_vector(tenants, 3)
    search = "SELECT (pk->>0)::int FROM pyembed.search('notes', %s, 10, filter => %s)"
    widening = [
        {"tenant": "b"},
        {"$or": [{"tenant": "b"}, {"id": {"$gte": 0}}]},
        {"$not": {"tenant": "a"}},
        {"tenant": {"$in": ["a", "b"]}},
    ]
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a")
        for filter in widening:
            found = {r[0] for r in conn.execute(search, (query, Jsonb(filter))).fetchall()}
            assert found <= {1, 2}, filter
        # A filter reads the columns it names, with the searcher's privileges: one it may not
        # read is refused, never used to probe the values.
        tenants.execute("REVOKE SELECT ON notes FROM pyembed_reader")
        tenants.execute("GRANT SELECT (id, tenant, body) ON notes TO pyembed_reader")
        assert {r[0] for r in conn.execute(search, (query, Jsonb({"id": 1}))).fetchall()} == {1}
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="notes"):
            conn.execute(search, (query, Jsonb({"salary": {"$gt": 1500}})))


def test_document_frequencies_count_only_the_rows_a_tenant_sees(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    # "forecast" is in tenant b's note only: tenant a must not learn that it exists (BM25 weighs
    # words by how many chunks hold them; the text index would count every tenant's).
    frequency = "SELECT pyembed._document_frequency(pyembed.collection('notes'), %s::tsquery, 10)"
    assert tenants.execute(frequency, ("forecast",)).fetchone() == (1,)  # the owner sees all
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a")
        assert conn.execute(frequency, ("forecast",)).fetchone() == (0,)
        assert conn.execute(frequency, ("quarter",)).fetchone() == (1,)
        found = conn.execute(
            "SELECT pk FROM pyembed.hybrid_search('notes', 'quarterly forecast', %s, 4, "
            "dense_weight => 0)",
            (note_vector(tenants, 3),),
        ).fetchall()
        assert found == [([1],)]


def test_status_lists_only_collections_whose_source_the_reader_may_read(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    tenants.execute("CREATE TABLE payroll (id int PRIMARY KEY, body text)")
    tenants.execute("INSERT INTO payroll VALUES (1, 'salaries')")
    tenants.execute("SELECT pyembed.create_collection('payroll', 'payroll', ARRAY['body'])")
    with connect_as(make_role("pyembed_reader")) as conn:
        listed = conn.execute("SELECT collection FROM pyembed.collection_status").fetchall()
        assert listed == [("notes",)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pyembed.search('payroll', %s)", (note_vector(tenants, 1),))


def test_the_query_log_is_private_to_each_searcher_and_tenant(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    app = make_role("pyembed_reader")  # one login serving both tenants, as most apps do
    other = make_role("pyembed_reader")
    query = note_vector(tenants, 1)
    with connect_as(app) as conn:
        ids = {}
        for tenant in ("a", "b"):
            ids[tenant] = (
                as_tenant(conn, tenant)
                .execute(
                    "SELECT DISTINCT query_id FROM pyembed.search('notes', %s, query_text => %s)",
                    (query, f"secret of {tenant}"),
                )
                .fetchone()[0]
            )  # type: ignore[index]
        for tenant, mine in (("a", "secret of a"), ("b", "secret of b")):
            as_tenant(conn, tenant)
            assert conn.execute("SELECT query_text FROM pyembed.query_log").fetchall() == [(mine,)]
            visible = conn.execute("SELECT DISTINCT query_id FROM pyembed.query_results").fetchall()
            assert visible == [(ids[tenant],)]
        # Feedback only on a search this tenant may see.
        as_tenant(conn, "a").execute("SELECT pyembed.record_feedback(%s, '[1]')", (ids["a"],))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="may see"):
            conn.execute("SELECT pyembed.record_feedback(%s, '[3]')", (ids["b"],))
    with connect_as(other) as conn:
        as_tenant(conn, "a")
        assert conn.execute("SELECT count(*) FROM pyembed.query_log").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pyembed.feedback").fetchone() == (0,)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("SELECT pyembed.record_feedback(%s, '[1]')", (ids["a"],))
    logged = tenants.execute("SELECT searched_by, tenant FROM pyembed.query_log ORDER BY id")
    assert logged.fetchall() == [(app, "a"), (app, "b")]
    recorded = tenants.execute("SELECT recorded_by FROM pyembed.feedback").fetchall()
    assert recorded == [(app,)]


def test_a_store_search_function_called_directly_answers_and_logs_as_its_caller(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    reader = make_role("pyembed_reader")
    with connect_as(reader) as conn:
        found = (
            as_tenant(conn, "b")
            .execute(
                "SELECT pk FROM pyembed_store.notes_v1_search(%s, 4, NULL, NULL, NULL, NULL, "
                "'direct')",
                (note_vector(tenants, 1),),
            )
            .fetchall()
        )
    assert sorted(pk for (pk,) in found) == [[3], [4]]  # tenant b's rows only
    logged = tenants.execute(
        "SELECT searched_by, tenant, result_count FROM pyembed.query_log "
        "WHERE query_text = 'direct'"
    )
    assert logged.fetchall() == [(reader, "b", 2)]


def test_no_one_writes_the_log_or_bm25_statistics_directly(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    collection = _collection_id(tenants)
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a").execute(
            "SELECT * FROM pyembed.hybrid_search('notes', 'revenue', %s)",
            (note_vector(tenants, 1),),
        )
        query_id = conn.execute("SELECT max(id) FROM pyembed.query_log").fetchone()[0]  # type: ignore[index]
        for statement, params in (
            (
                "INSERT INTO pyembed.query_log (collection_id, k, result_count, latency_ms, "
                "searched_by) VALUES (%s, 1, 0, 0, 'someone_else')",
                (collection,),
            ),
            (
                "INSERT INTO pyembed.feedback (query_id, pk, recorded_by) VALUES (%s, '[3]', 'x')",
                (query_id,),
            ),
            (
                "UPDATE pyembed.query_log SET result_pks = ARRAY['[3]'::jsonb] WHERE id = %s",
                (query_id,),
            ),
            ("UPDATE pyembed.text_search_stats SET documents = 1", None),
            ("UPDATE pyembed.query_log SET query_text = 'forged'", None),
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement, params)
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="view"):
            conn.execute(
                "INSERT INTO pyembed.query_results VALUES (%s, 99, '[3]', 0, 0)", (query_id,)
            )
        # The log's writer answers to pyembed's search functions only, in both its forms.
        for forged in (
            "SELECT pyembed._log_search(c, NULL, %s, 'forged', 1, '{}', "
            '\'[{"pk": [3], "chunk_seq": 0, "distance": 0}]\', now()) '
            "FROM pyembed.collections AS c",
            "SELECT pyembed._log_search(c, NULL, %s, 'forged', 1, '{}', ARRAY['[3]'::jsonb], "
            "ARRAY[0], ARRAY[0::float8], now()) FROM pyembed.collections AS c",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="search functions only"):
                conn.execute(forged, (note_vector(tenants, 3),))
        # A standby's search may be logged, but only with rows this tenant can see.
        logged = conn.execute(
            "SELECT pyembed.log_search('notes', %s, '[[3], [1]]')", (note_vector(tenants, 1),)
        ).fetchone()[0]  # type: ignore[index]
    ranks = tenants.execute("SELECT pk FROM pyembed.query_results WHERE query_id = %s", (logged,))
    assert ranks.fetchall() == [([1],)]


# -- 5. steering code inside the server process -------------------------------------------------


def test_in_backend_embedding_settings_are_admin_only(
    db: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    for group in ("pyembed_reader", "pyembed_writer", "pyembed_worker"):
        with (
            connect_as(make_role(group)) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(
                "INSERT INTO pyembed.settings VALUES ('embed_url', 'http://169.254.169.254')"
            )
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO pyembed.settings (name, value) "
            "VALUES ('embed_url', 'http://user:pw@evil/')"
        )
    backend_settings.configure(db, {"embed_url": "http://embedder:8001", "embed_mode": None})
    assert backend_settings.current(db) == {"embed_url": "http://embedder:8001"}
    # Model files reach a reader's backend only through pyembed, and only in local mode.
    version = db.execute(
        "INSERT INTO pyembed.model_versions (model_id, version, status) "
        "SELECT model_id, 7, 'uploading' FROM pyembed.model_versions WHERE id = 1 RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    db.execute(
        "INSERT INTO pyembed.model_artifacts VALUES (%s, 'config.json', 0, '\\x7b7d')", (version,)
    )
    db.execute(
        "UPDATE pyembed.model_versions SET status = 'ready', artifact_size = 2, "
        "artifact_sha256 = repeat('0', 64) WHERE id = %s",
        (version,),
    )
    with connect_as(make_role("pyembed_reader")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pyembed.model_artifacts")
        parts = "SELECT path FROM pyembed._local_model_parts(%s)"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="local embedding mode"):
            conn.execute(parts, (version,))
        backend_settings.configure(db, {"embed_mode": "local"})
        assert conn.execute(parts, (version,)).fetchall() == [("config.json",)]


# -- 6. a worker that row-level security blinds -------------------------------------------------


def test_a_worker_under_rls_never_deletes_what_it_cannot_see(
    db: psycopg.Connection, make_role: Role, db_dsn: str
) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, tenant text, body text)")
    db.execute("INSERT INTO docs SELECT g, 't', 'text ' || g FROM generate_series(1, 60) AS g")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    assert _store_rows(db, "docs_v1") == 60
    db.execute("ALTER TABLE docs ENABLE ROW LEVEL SECURITY")
    db.execute(
        "CREATE POLICY by_tenant ON docs USING (tenant = current_setting('app.tenant', true))"
    )
    worker = make_role("pyembed_worker")
    db.execute("GRANT SELECT ON docs TO pyembed_worker")
    db.execute("UPDATE docs SET body = body || ' (edited)'")  # queues every row again
    db.execute("DELETE FROM docs WHERE id = 60")  # really gone: its embeddings must go
    stats = run_worker(db_dsn.replace("postgres@", f"{worker}@"), max_attempts=1)
    assert stats.failures == 59
    assert _store_rows(db, "docs_v1") == 59
    failed = db.execute("SELECT DISTINCT last_error FROM pyembed.failed_items").fetchall()
    assert len(failed) == 1 and "BYPASSRLS" in failed[0][0] and worker in failed[0][0]
    status = db.execute("SELECT failed, embedded_rows FROM pyembed.collection_status").fetchone()
    assert status == (59, 59)
    # The fix the message names works.
    db.execute(f'ALTER ROLE "{worker}" BYPASSRLS')
    db.execute("SELECT pyembed.enqueue_all('docs')")
    db.execute("DELETE FROM pyembed.failed_items")
    stats = run_worker(db_dsn.replace("postgres@", f"{worker}@"))
    assert (stats.rows, stats.failures) == (59, 0)


def test_backfill_by_a_role_that_rls_blinds_is_refused(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    writer = make_role("pyembed_writer")
    with (
        connect_as(writer) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"),
    ):
        conn.execute("SELECT pyembed.enqueue_all('notes')")


# -- 7. read-only transactions ------------------------------------------------------------------


def test_a_search_in_a_read_only_transaction_answers_unlogged(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect
) -> None:
    with connect_as(make_role("pyembed_reader")) as conn:
        as_tenant(conn, "a")
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            rows = conn.execute(
                "SELECT query_id, pk FROM pyembed.search('notes', %s, 2)",
                (note_vector(tenants, 1),),
            ).fetchall()
            hybrid = conn.execute(
                "SELECT query_id FROM pyembed.hybrid_search('notes', 'revenue', %s, 2)",
                (note_vector(tenants, 1),),
            ).fetchall()
    assert [r[1] for r in rows] == [[1], [2]] and {r[0] for r in rows} == {None}
    assert hybrid and {r[0] for r in hybrid} == {None}


# -- 9. settings and arguments validated where they are written ---------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("[1, 2]", "settings must be a JSON object"),
        ('{"log_queries": "maybe"}', "log_queries"),
        ('{"query_log_retention": "soon"}', "query_log_retention"),
        ('{"query_log_retention": "-1 day"}', "query_log_retention"),
        ('{"text_search_config": "klingon"}', "does not exist"),
        ('{"gate_metric": "best"}', "gate_metric"),
        ('{"tenant_setting": "x; DROP TABLE notes"}', "tenant_setting"),
        ('{"colour": "blue"}', "unknown collection setting"),
    ],
)
def test_bad_settings_are_refused(tenants: psycopg.Connection, settings: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message):
        tenants.execute("SELECT pyembed.alter_collection('notes', settings => %s)", (settings,))
    tenants.execute("SELECT pyembed.prune_query_log()")  # still works for every collection


def test_bad_templates_weights_vectors_and_filters_fail_clearly(
    tenants: psycopg.Connection, db_dsn: str
) -> None:
    tenants.execute('CREATE TABLE odd (id int PRIMARY KEY, "my-col" text, n int, tag text)')
    tenants.execute("INSERT INTO odd VALUES (1, 'x', 1, 'a'), (2, 'y', 2, 'b')")
    with pytest.raises(psycopg.Error, match="placeholder"):
        tenants.execute("SELECT pyembed.create_collection('odd', 'odd', template => '{my-col}')")
    tenants.execute("SELECT pyembed.create_collection('odd', 'odd', ARRAY['my-col'])")
    query = note_vector(tenants, 1)
    with pytest.raises(psycopg.Error, match="cannot rank"):
        tenants.execute(
            "SELECT * FROM pyembed.hybrid_search('notes', 'revenue', %s, dense_weight => 'NaN')",
            (query,),
        )
    with pytest.raises(psycopg.Error, match="all zeros"):
        tenants.execute(
            "SELECT * FROM pyembed.search('notes', %s)", (np.zeros(384, dtype=np.float32),)
        )
    tenants.execute("SELECT pyembed.enqueue_all('odd')")
    run_worker(db_dsn)
    typed = tenants.execute(
        "SELECT pk FROM pyembed.search('odd', %s, filter => %s)", (query, Jsonb({"n": "1"}))
    ).fetchall()
    assert typed == [([1],)]  # "1" means 1 on an integer column, not "no match"
    with pytest.raises(psycopg.Error, match="not a valid integer"):
        tenants.execute(
            "SELECT * FROM pyembed.search('odd', %s, filter => %s)", (query, Jsonb({"n": "one"}))
        )


def test_unsafe_key_and_text_types_are_refused(db: psycopg.Connection) -> None:
    db.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
    db.execute("CREATE TABLE moods (id int PRIMARY KEY, m mood)")
    with pytest.raises(psycopg.Error, match="built-in type"):
        db.execute("SELECT pyembed.create_collection('moods', 'moods', ARRAY['m'])")


def test_learning_policies_are_set_only_by_writers_through_the_api(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    reader, writer, worker_role = (
        make_role("pyembed_reader"),
        make_role("pyembed_writer"),
        make_role("pyembed_worker"),
    )
    for role in (reader, worker_role):
        conn = connect_as(role)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pyembed.set_learning_policy('notes', 1)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM pyembed.learning_status")  # feedback of every tenant
        # A learner trains, registers and promotes: a reader or worker is told it may not.
        dsn = db_dsn.replace("postgres@", f"{role}@")
        with pytest.raises(errors.PermissionDenied, match="pyembed_writer") as caught:
            learner.Learner(database.Database(dsn)).check_role()
        assert f"GRANT pyembed_writer TO {role}" in (caught.value.hint or "")
    as_writer = connect_as(writer)
    as_writer.execute(
        "SELECT pyembed.set_learning_policy('notes', 5, train_options => '{\"epochs\": 1}')"
    )
    # Only through the function, which checks every value: never the table itself.
    for statement in (
        "UPDATE pyembed.learning_policies SET train_options = '{\"teacher_version_id\": 1}'",
        "DELETE FROM pyembed.learning_policies",
        "INSERT INTO pyembed.learning_policies (collection_id) VALUES (1)",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_writer.execute(statement)
    assert connect_as(reader).execute(
        "SELECT min_feedback, updated_by FROM pyembed.learning_policies"
    ).fetchone() == (5, writer)
    assert as_writer.execute(
        "SELECT collection, min_feedback FROM pyembed.learning_status"
    ).fetchone() == ("notes", 5)


def test_a_canary_serves_each_tenant_its_own_rows_and_only_writers_steer_it(
    tenants: psycopg.Connection, make_role: Role, connect_as: Connect, db_dsn: str
) -> None:
    admin = database.Database(db_dsn)
    v2 = registry.register(admin, "all-MiniLM-L6-v2", PACKAGE).id
    canaries.start(admin, "notes", v2, canaries.Settings(min_searches=5))
    reader, worker_role = make_role("pyembed_reader"), make_role("pyembed_worker")
    query = note_vector(tenants, 1)
    as_reader = as_tenant(connect_as(reader), "b")
    assert as_reader.execute("SELECT pyembed.canary_version('notes')").fetchone() == (v2,)
    rows = as_reader.execute(
        "SELECT query_id, pk FROM pyembed.search('notes', %s, candidate_query => %s)",
        (query, query),
    ).fetchall()
    # Both versions rank as the caller: tenant b's rows only, from either team.
    assert {pk[0] for _, pk in rows} == {3, 4}
    logged = tenants.execute(
        "SELECT searched_by, tenant, canary_id IS NOT NULL, cardinality(result_teams) "
        "FROM pyembed.query_log WHERE id = %s",
        (rows[0][0],),
    ).fetchone()
    assert logged == (reader, "b", True, 2)
    for role in (reader, worker_role):
        conn = connect_as(role)
        for statement in (
            f"SELECT pyembed.start_canary('notes', {v2})",
            "SELECT pyembed.end_canary('notes', 'promoted')",
            f"SELECT pyembed.record_online_check('notes', {v2}, 1, '{{}}')",
            "SELECT * FROM pyembed.canary_status",  # clicks of every tenant
            "SELECT * FROM pyembed.online_metrics",
            "SELECT * FROM pyembed.search_outcomes",
            "UPDATE pyembed.canaries SET share = 0.99",
            "DELETE FROM pyembed.canaries",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    # Nobody credits a team by hand: the log takes teams only from the canary search itself.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_reader.execute("UPDATE pyembed.query_log SET result_teams = '{1,1}'")
    writer = connect_as(make_role("pyembed_writer"))
    assert writer.execute("SELECT searches FROM pyembed.canary_status").fetchone() == (1,)
    writer.execute("SELECT pyembed.end_canary('notes', 'aborted', 'attack test over')")
    assert tenants.execute("SELECT decision FROM pyembed.canaries").fetchone() == ("aborted",)
