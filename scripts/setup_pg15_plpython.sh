#!/usr/bin/env bash
# Debian's PostgreSQL 15 with plpython3u and pgvector, for the tests of text embedding inside SQL.
# postgresql-plpython3-15 and postgresql-server-dev-15 come from Debian, pinned to the installed
# server's version; pgvector is built from Debian's source package (trixie, through a deb-src
# entry that exists only while this script runs). Idempotent: a second run changes nothing.
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
if [ ! -x "$PG_BIN/postgres" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
fi
version=$(dpkg-query -W -f='${Version}' postgresql-15)
missing=()
for package in postgresql-plpython3-15 postgresql-server-dev-15; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package=$version")
done
command -v dpkg-source >/dev/null || missing+=(dpkg-dev)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -f /usr/share/postgresql/15/extension/vector.control ]; then
    sources=/etc/apt/sources.list.d/pyembed-pgvector-src.sources
    work=$(mktemp -d)
    chown _apt "$work" 2>/dev/null || true  # apt downloads as _apt
    cleanup() {
        rm -f "$sources"
        rm -rf "$work"
        apt-get update -qq >/dev/null 2>&1 || true
    }
    trap cleanup EXIT
    cat >"$sources" <<'SOURCES'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -qq
    (cd "$work" && apt-get source -qq pgvector >/dev/null)
    make -s -C "$work"/pgvector-*/ PG_CONFIG="$PG_BIN/pg_config" >/dev/null
    make -s -C "$work"/pgvector-*/ PG_CONFIG="$PG_BIN/pg_config" install >/dev/null
fi
echo "PostgreSQL $version with plpython3u and pgvector $(sed -n "s/^default_version = '\(.*\)'/\1/p" /usr/share/postgresql/15/extension/vector.control)"
