"""Measuring versions: IR metrics, eval sets, retrieval and intrinsic evaluations, the report."""
