-- Undo 0010: the in-database embedding functions (plpython3u itself stays: others may use it).
DROP FUNCTION IF EXISTS pyembed.embed(text, text);
