"""Getting rows into stores: the worker, its batch pipeline, leases, dead letters, auto-indexing."""
