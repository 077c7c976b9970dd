-- 0015: a logged search writes two index entries fewer. FROZEN once released.
-- Every search inserts one query_log row, and each index of the log makes that insert cost about
-- as much again as the row itself (at 3,000 rows, two of the four indexes cost a logged search
-- ~0.02 ms client-visible, and WAL that four clients contend for). Two served nothing:
-- pruning deletes per collection (query_log_by_collection leads with it), and only a reader
-- reading its own log filtered on searched_by, after the collection narrowed it.
DROP INDEX pyembed.query_log_by_time;
DROP INDEX pyembed.query_log_by_searcher;
