-- requires: 0011
-- pyembed.embed(text, model): the query text's embedding, computed for SQL. Installed only where
-- plpython3u exists. Two modes, chosen by the admin in pyembed.settings (never by a session's
-- SET: the settings steer code inside the server process, and readers call this function):
--   embed_mode = 'http' (default): ask the embedding server (`pyembed serve`) at embed_url
--       (default http://127.0.0.1:8001), waiting at most embed_timeout_ms (default 10000):
--       backends stay light and share one model;
--   embed_mode = 'local': load the model inside this backend (python_path names where the
--       pyembed package and its dependencies are installed); no server needed, but every
--       connection that embeds holds a copy of the model in memory.
-- e.g. INSERT INTO pyembed.settings (name, value) VALUES ('embed_url', 'http://embedder:8001')
--      ON CONFLICT (name) DO UPDATE SET value = excluded.value;   -- as the admin
-- pyembed.rerank (087) asks the same way. VOLATILE: the answer depends on a server and on which
-- version a name points at right now.
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_language WHERE lanname = 'plpython3u') THEN
        RETURN;
    END IF;
    -- The one function in plpython3u: a request to a model endpoint (/v1/embeddings or
    -- /v1/rerank, the JSON `pyembed serve` speaks) answered by the embedding server or, in local
    -- mode, by pyembed inside this backend. `caller` names the SQL function in errors.
    EXECUTE $fn$
CREATE OR REPLACE FUNCTION pyembed._model_call(caller text, path text, request text)
RETURNS text
LANGUAGE plpython3u
VOLATILE
PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $py$
import json

def setting(name, default):
    plan = SD.get("setting")
    if plan is None:
        plan = SD["setting"] = plpy.prepare(
            "SELECT value FROM pyembed.settings WHERE name = $1", ["text"])
    rows = plpy.execute(plan, [name])
    return rows[0]["value"] if rows else default

if path not in ("/v1/embeddings", "/v1/rerank"):
    plpy.error("%s is not a model endpoint" % path, hint="/v1/embeddings or /v1/rerank")
if setting("embed_mode", "http") == "local":
    import sys
    for folder in reversed(setting("python_path", "").split(":")):
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        from pyembed.models import in_backend
    except ImportError as exc:
        plpy.error("%s (local mode) cannot import pyembed: %s" % (caller, exc),
                   hint="set python_path in pyembed.settings to the site-packages that hold "
                        "pyembed and sentence-transformers, or embed_mode 'http'")
    return json.dumps(in_backend.answer(plpy, GD, path, json.loads(request)))

import socket
import urllib.error
import urllib.request

url = setting("embed_url", "http://127.0.0.1:8001").rstrip("/") + path
timeout = float(setting("embed_timeout_ms", "10000")) / 1000
call = urllib.request.Request(url, data=request.encode(),
                              headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(call, timeout=timeout) as response:
        return response.read().decode()
except urllib.error.HTTPError as exc:
    try:
        reason = json.loads(exc.read())["error"]["message"]
    except Exception:
        reason = str(exc)
    plpy.error("%s: the embedding server at %s refused: %s" % (caller, url, reason))
except (urllib.error.URLError, socket.timeout, OSError) as exc:
    reason = getattr(exc, "reason", exc)
    plpy.error("%s: cannot reach the embedding server at %s (%s)" % (caller, url, reason),
               hint="start it with `pyembed serve`, point embed_url in pyembed.settings at "
                    "it, or set embed_mode 'local' there", sqlstate="08001")
$py$
$fn$;
    EXECUTE $fn$
CREATE OR REPLACE FUNCTION pyembed.embed(input text, model text)
RETURNS @extschema:vector@.vector
LANGUAGE plpgsql
VOLATILE
PARALLEL UNSAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF input IS NULL THEN
        RETURN NULL;
    END IF;
    IF model IS NULL OR model = '' THEN
        RAISE EXCEPTION 'pyembed.embed needs a model' USING ERRCODE = 'null_value_not_allowed',
            HINT = 'pass a collection or a registered model name';
    END IF;
    RETURN (pyembed._model_call(
                'pyembed.embed', '/v1/embeddings',
                jsonb_build_object('model', model, 'input', jsonb_build_array(input),
                                   'input_type', 'query')::text)::jsonb
            -> 'data' -> 0 ->> 'embedding')::@extschema:vector@.vector;
END
$$
$fn$;
    EXECUTE 'COMMENT ON FUNCTION pyembed.embed(text, text) IS '
            '''the embedding of a query text by a collection''''s active model or a registered model''';
END
$do$;

-- The files of a model version for pyembed.embed in local mode, in order. SECURITY DEFINER:
-- readers run pyembed.embed but may not read model files; this hands them over only while the
-- admin has chosen local mode, and only for a ready version.
CREATE OR REPLACE FUNCTION pyembed._local_model_parts(version_id bigint)
RETURNS TABLE (path text, data bytea)
LANGUAGE plpgsql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (SELECT s.value FROM pyembed.settings AS s WHERE s.name = 'embed_mode') IS DISTINCT FROM 'local' THEN
        RAISE EXCEPTION 'model files are handed to backends only in local embedding mode'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'the admin sets embed_mode to local in pyembed.settings';
    END IF;
    IF NOT EXISTS (SELECT FROM pyembed.model_versions AS v
                   WHERE v.id = _local_model_parts.version_id AND v.status = 'ready') THEN
        RAISE EXCEPTION 'model version % is not ready', version_id USING ERRCODE = 'undefined_object';
    END IF;
    RETURN QUERY SELECT a.path, a.data FROM pyembed.model_artifacts AS a
                 WHERE a.version_id = _local_model_parts.version_id ORDER BY a.path, a.part;
END
$$;
