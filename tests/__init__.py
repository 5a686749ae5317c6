"""fibod's tests: a package, so every test imports `tests.reference` alike."""
