"""Tests against the real stack (Kafka, Redis, nginx), started by scripts/up.sh."""
