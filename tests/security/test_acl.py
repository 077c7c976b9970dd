"""Every privilege in pyembed's schemas is a decision: the ACLs of all functions, tables, views
and schemas (stores included) equal the allow-list below, PUBLIC has nothing, and the owner role
owns everything. A new function or table without a grant decision fails here."""

from __future__ import annotations

import psycopg
import pytest

from tests.helpers import run_worker

# What each group role may do. Stores (pyembed_store.<collection>_v<N>), chunk views and the
# stores' search functions appear once as <store>, <chunks> and <nearest>.
READER = "pyembed_reader"
WRITER = "pyembed_writer"
WORKER = "pyembed_worker"
EVERYONE = (READER, WORKER)  # writers are readers too

TABLES: dict[str, dict[str, str]] = {
    "pyembed.collections": {READER: "r", WORKER: "r"},
    "pyembed.models": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.model_versions": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.model_artifacts": {WORKER: "r", WRITER: "ar"},
    "pyembed.queue": {WORKER: "arwd"},
    "pyembed.failed_items": {WORKER: "ard", WRITER: "r"},
    "pyembed.workers": {WORKER: "arw"},
    "pyembed.query_log": {READER: "r", WORKER: "r", WRITER: "d"},
    "pyembed.query_results": {READER: "r", WORKER: "r"},
    "pyembed.feedback": {READER: "r", WORKER: "r"},
    "pyembed.index_builds": {READER: "r", WORKER: "arw", WRITER: "aw"},
    "pyembed.similarity_boosts": {READER: "r", WORKER: "r", WRITER: "awd"},
    "pyembed.text_search_stats": {},
    "pyembed.deployments": {READER: "r", WORKER: "r"},
    "pyembed.eval_sets": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_queries": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_judgments": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_runs": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_metrics": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_query_values": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.eval_comparisons": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.training_runs": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.training_metrics": {READER: "r", WORKER: "r", WRITER: "aw"},
    "pyembed.learning_policies": {READER: "r", WORKER: "r"},
    "pyembed.learning_status": {WRITER: "r"},
    "pyembed.canaries": {READER: "r", WORKER: "r"},
    "pyembed.canary_status": {WRITER: "r"},
    "pyembed.online_metrics": {WRITER: "r"},
    "pyembed.search_outcomes": {WRITER: "r"},
    "pyembed.settings": {READER: "r", WORKER: "r"},
    "pyembed.collection_status": {READER: "r", WORKER: "r"},
    "pyembed.worker_status": {READER: "r", WORKER: "r"},
    "pyembed.model_version_status": {READER: "r", WORKER: "r"},
    "pyembed.eval_results": {READER: "r", WORKER: "r"},
    "pyembed.eval_latest": {READER: "r", WORKER: "r"},
    "pyembed.eval_vs_parent": {READER: "r", WORKER: "r"},
    "pyembed.eval_leaderboard": {READER: "r", WORKER: "r"},
    "pyembed_store.<store>": {READER: "r", WORKER: "arwd"},
    "pyembed_store.<chunks>": {READER: "r"},
}

SHARED_HELPERS = {
    "schema_revision",
    "_comparison",
    "collection",
    "store_table",
    "_qualified_source",
    "_key_columns",
    "_pk_sql",
    "_pk_match_sql",
    "_text_sql",
    "_has_column",
    "_distance_operator",
    "_distance",
    "_storage",
    "_rerank",
    "_store_kind",
    "_binary_sql",
    "_index_key",
    "_store_name",
    "_search_function",
    "_as_store_type",
    "max_results",
    "max_query_lexemes",
    "max_text_candidates",
    "embedding_version",
    "_work_channel",
    "_similarity",
    "_sees_every_row",
    "_collection_counts",
    "_filter_sql",
    "_filter_clause",
    "_filter_column",
    "_base_type",
    "_nearest_sql",
    "_filtered_sql",
}
READER_FUNCTIONS = {
    "_local_model_parts",
    "_query_lexemes",
    "_nearest_function",
    "pyembed_store.<nearest>",
    "pyembed_store.<search>",
    "search",
    "hybrid_search",
    "search_domain_aware",
    "log_search",
    "record_feedback",
    "cosine_similarity",
    "weighted_cosine_similarity",
    "domain_boost",
    "domain_aware_similarity",
    "_check_search",
    "_nearest",
    "_nearest_hits",
    "_log_search",
    "_text_search_config",
    "_text_stats",
    "_lexeme_tsquery",
    "_text_matches",
    "_document_frequency",
    "embed",
    "_model_call",
    "rerank",
    "_reranked_search",
    "_check_rerank",
    "_reranker_version",
    "_open_canary",
    "canary_version",
    "_interleave",
    "_canary_search",
}
WRITER_FUNCTIONS = {
    "source_rows",
    "build_index",
    "drop_index",
    "create_collection",
    "_register_collection",
    "_adopt_embeddings",
    "_capture_changes",
    "_capture_truncate",
    "alter_collection",
    "_alter_collection",
    "drop_collection",
    "_unregister_collection",
    "enqueue_all",
    "_enqueue_keys",
    "prune_query_log",
    "_retention",
    "begin_switch",
    "_begin_switch",
    "switch_backlog",
    "finish_switch",
    "abort_switch",
    "rollback",
    "_rollback",
    "retire_version",
    "store_embeddings",
    "store_chunks",
    "source_texts",
    "judge",
    "row_labels",
    "auto_index_due",
    "set_learning_policy",
    "drop_learning_policy",
    "start_canary",
    "end_canary",
    "record_online_check",
    "_sign_test",
    "_normal_p",
}
WORKER_FUNCTIONS = {
    "source_rows",
    "source_vectors",
    "stored_hashes",
    "apply_chunks",
    "auto_index_due",
    "build_index",
}
# Run only by pyembed's owner, from its SECURITY DEFINER functions and the migrations.
OWNER_ONLY = {
    "_caller",
    "_change_sql",
    "_current_tenant",
    "_may_see_search",
    "_template_columns",
    "_unsafe_columns",
    "_lock_collection",
    "_create_store",
    "_create_view",
    "_fit_store",
    "_enqueue_sql",
    "_capture_target",
    "_check_index_settings",
    "_check_settings",
    "_check_train_options",
    "_drop_store",
    "_create_text_search",
    "_deployments_append_only",
    "_grant_store",
    "_grant_view",
    "_grant_nearest",
    "_compile_nearest",
    "_compile_search",
    "_store_versions",
    "_collection_deleted",
    "_model_version_deleted",
    "_close_canary",
    "_endpoint_settings_fixed",
}

ACLS = """
SELECT 'table' AS kind, CASE WHEN n.nspname = 'pyembed_store' AND cl.relname ~ '_v[0-9]+$'
                             THEN 'pyembed_store.<store>'
                             WHEN n.nspname = 'pyembed_store' AND cl.relname ~ '_chunks$'
                             THEN 'pyembed_store.<chunks>'
                             ELSE n.nspname || '.' || cl.relname END AS name,
       cl.relowner::regrole::text AS owner,
       coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC') AS grantee, a.privilege_type
FROM pg_class AS cl JOIN pg_namespace AS n ON n.oid = cl.relnamespace
LEFT JOIN LATERAL aclexplode(coalesce(cl.relacl, acldefault('r', cl.relowner))) AS a ON true
WHERE n.nspname IN ('pyembed', 'pyembed_store') AND cl.relkind IN ('r', 'p', 'v', 'm')
UNION ALL
SELECT 'function', CASE WHEN p.pronamespace = 'pyembed_store'::regnamespace
                         AND p.proname ~ '_v[0-9]+_nearest$'
                         THEN 'pyembed_store.<nearest>'
                         WHEN p.pronamespace = 'pyembed_store'::regnamespace
                         AND p.proname ~ '_v[0-9]+_search$'
                         THEN 'pyembed_store.<search>' ELSE p.proname END,
       p.proowner::regrole::text,
       coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC'), a.privilege_type
FROM pg_proc AS p
LEFT JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) AS a ON true
WHERE p.pronamespace IN ('pyembed'::regnamespace, 'pyembed_store'::regnamespace)
UNION ALL
SELECT 'schema', n.nspname, n.nspowner::regrole::text,
       coalesce(nullif(a.grantee, 0)::regrole::text, 'PUBLIC'), a.privilege_type
FROM pg_namespace AS n
LEFT JOIN LATERAL aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) AS a ON true
WHERE n.nspname IN ('pyembed', 'pyembed_store')
"""

_LETTERS = {"SELECT": "r", "INSERT": "a", "UPDATE": "w", "DELETE": "d"}


def _granted(conn: psycopg.Connection) -> tuple[dict[tuple[str, str], set[str]], set[str]]:
    """(kind, name) -> {"grantee:privilege"} for grantees other than the owner; and the owners."""
    granted: dict[tuple[str, str], set[str]] = {}
    owners: dict[tuple[str, str], str] = {}
    for kind, name, owner, grantee, privilege in conn.execute(ACLS):
        granted.setdefault((kind, name), set())
        owners[(kind, name)] = owner
        if grantee != owner and privilege is not None:
            granted[(kind, name)].add(f"{grantee}:{privilege}")
    return granted, {f"{k}:{n}:{o}" for (k, n), o in owners.items()}


@pytest.fixture
def populated(db: psycopg.Connection, db_dsn: str) -> psycopg.Connection:
    """A database with a collection, its store and view, so run-time objects are covered too."""
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO docs VALUES (1, 'a note')")
    db.execute("SELECT pyembed.create_collection('docs', 'docs', ARRAY['body'])")
    run_worker(db_dsn)
    return db


def test_table_and_view_privileges_are_the_allow_list(populated: psycopg.Connection) -> None:
    granted, _ = _granted(populated)
    actual = {name: privs for (kind, name), privs in granted.items() if kind == "table"}
    expected = {
        name: {
            f"{role}:{p}"
            for role, letters in roles.items()
            for p, letter in _LETTERS.items()
            if letter in letters
        }
        for name, roles in TABLES.items()
    }
    assert actual == expected


def test_function_privileges_are_the_allow_list(populated: psycopg.Connection) -> None:
    granted, _ = _granted(populated)
    actual = {name: privs for (kind, name), privs in granted.items() if kind == "function"}
    decided = SHARED_HELPERS | READER_FUNCTIONS | WRITER_FUNCTIONS | WORKER_FUNCTIONS | OWNER_ONLY
    undecided = set(actual) - decided
    assert not undecided, f"functions with no privilege decision in 090_grants.sql: {undecided}"
    for name, privs in actual.items():
        expected = set()
        if name in SHARED_HELPERS:
            expected |= {f"{READER}:EXECUTE", f"{WORKER}:EXECUTE"}
        if name in READER_FUNCTIONS:
            expected.add(f"{READER}:EXECUTE")
        if name in WRITER_FUNCTIONS:
            expected.add(f"{WRITER}:EXECUTE")
        if name in WORKER_FUNCTIONS:
            expected.add(f"{WORKER}:EXECUTE")
        assert privs == expected, name


def test_public_has_nothing_and_the_owner_role_owns_everything(
    populated: psycopg.Connection,
) -> None:
    granted, owners = _granted(populated)
    public = {
        obj: privs for obj, privs in granted.items() if any(p.startswith("PUBLIC:") for p in privs)
    }
    assert public == {}
    not_owned = {o for o in owners if not o.endswith(":pyembed_owner")}
    # pyembed.embed (plpython3u, untrusted) stays with the superuser that created it.
    assert {o for o in not_owned if not o.startswith("function:embed:")} == set()
    schemas = {obj: privs for obj, privs in granted.items() if obj[0] == "schema"}
    usage = {f"{r}:USAGE" for r in (READER, WRITER, WORKER)}
    assert schemas == {("schema", "pyembed"): usage, ("schema", "pyembed_store"): usage}
    for role in (READER, WRITER, WORKER):
        row = populated.execute(
            "SELECT rolsuper, rolcanlogin, rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        assert row == (False, False, False), role
