"""The `lc2d` command line: one verb per stage (train, import-legacy, export, serve, score, bench)."""
