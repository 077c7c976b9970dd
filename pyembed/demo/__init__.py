"""The demo: the whole loop on the embedded database, narrated, over the standard library's docs."""
