"""Model versions: registry, files, loading, encoding, blue/green switches, in-backend embedding."""
