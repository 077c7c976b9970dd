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
-- VOLATILE: the answer depends on a server and on which version a name points at right now.
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_language WHERE lanname = 'plpython3u') THEN
        RETURN;
    END IF;
    EXECUTE $fn$
CREATE OR REPLACE FUNCTION pyembed.embed(input text, model text)
RETURNS @extschema:vector@.vector
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

if input is None:
    return None
if not model:
    plpy.error("pyembed.embed needs a model", hint="pass a collection or a registered model name")
if setting("embed_mode", "http") == "local":
    import sys
    for path in reversed(setting("python_path", "").split(":")):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    try:
        from pyembed.models import in_backend
    except ImportError as exc:
        plpy.error("pyembed.embed (local mode) cannot import pyembed: %s" % exc,
                   hint="set python_path in pyembed.settings to the site-packages that hold "
                        "pyembed and sentence-transformers, or embed_mode 'http'")
    return in_backend.embed(plpy, GD, input, model)

import socket
import urllib.error
import urllib.request

url = setting("embed_url", "http://127.0.0.1:8001").rstrip("/") + "/v1/embeddings"
timeout = float(setting("embed_timeout_ms", "10000")) / 1000
request = urllib.request.Request(
    url, data=json.dumps({"model": model, "input": [input], "input_type": "query"}).encode(),
    headers={"content-type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
except urllib.error.HTTPError as exc:
    try:
        reason = json.loads(exc.read())["error"]["message"]
    except Exception:
        reason = str(exc)
    plpy.error("pyembed.embed: the embedding server at %s refused: %s" % (url, reason))
except (urllib.error.URLError, socket.timeout, OSError) as exc:
    reason = getattr(exc, "reason", exc)
    plpy.error("pyembed.embed: cannot reach the embedding server at %s (%s)" % (url, reason),
               hint="start it with `pyembed serve`, point embed_url in pyembed.settings at "
                    "it, or set embed_mode 'local' there", sqlstate="08001")
vector = answer["data"][0]["embedding"]
return "[" + ",".join(repr(float(x)) for x in vector) + "]"
$py$
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
