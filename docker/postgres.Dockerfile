# PostgreSQL with pgvector (the official pgvector image) plus Debian's plpython3u,
# so pyembed.embed() and text search can run inside the database.
ARG PG_MAJOR=17
FROM pgvector/pgvector:pg${PG_MAJOR}
ARG PG_MAJOR
RUN apt-get update \
 && apt-get install -y --no-install-recommends "postgresql-plpython3-${PG_MAJOR}" \
 && rm -rf /var/lib/apt/lists/*
