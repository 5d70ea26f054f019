"""Test support: the local dev server and sample builders used by tests, the demo and bench, never by pipelines."""
