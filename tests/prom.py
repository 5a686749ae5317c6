"""Read Prometheus text the way Prometheus does, for tests: name+labels -> value."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

#: One sample's key: its name and its labels, sorted.
Key = tuple[str, tuple[tuple[str, str], ...]]


def parse(text: str) -> dict[Key, float]:
    """Parse an exposition into its samples."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    """Return one sample's value; fail naming it when absent."""
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels} among {len(samples)}"
    return samples[key]


def total(samples: dict[Key, float], name: str, **labels: str) -> float:
    """Sum every sample of name whose labels include these (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))
