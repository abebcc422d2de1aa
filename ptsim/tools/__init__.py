"""Command-line tools that build the data the project ships (profile tables, traces)."""
