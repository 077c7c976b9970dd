"""Searching from Python: the retrieval client and the ANN indexes of stores."""
