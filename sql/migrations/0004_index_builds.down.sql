-- Undo 0004. The indexes themselves stay: they belong to the store tables.
DROP TABLE pyembed.index_builds;
