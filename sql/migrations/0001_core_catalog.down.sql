-- Undo 0001: remove pyembed entirely. The vector extension stays: other schemas may use it.
DROP SCHEMA IF EXISTS pyembed_store CASCADE;
DROP SCHEMA IF EXISTS pyembed CASCADE;
