"""The `pyembed` command line: thin wrappers over pyembed's public functions (entry: main.main)."""
