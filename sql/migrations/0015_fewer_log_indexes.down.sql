-- 0015 down: the two indexes of the log again.
CREATE INDEX query_log_by_time ON pyembed.query_log (created_at);
CREATE INDEX query_log_by_searcher ON pyembed.query_log (searched_by, tenant);
