"""Infrastructure tests of the multi-host rehearsal (make cluster-test; root)."""
