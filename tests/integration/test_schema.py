"""Fuzz the running service with schemathesis against its own OpenAPI document.

The document is the one the submit app serves at /openapi.yaml, and every
request goes through nginx: that is what clients see, including nginx's
own answers (its 429 is in the document, so the per-address rate limit
cannot fail the run). For every operation, valid requests (positive mode)
and invalid ones (negative mode) are generated; each answer must be what
the document allows: no 5xx (a 500 is documented only for a task that
failed, which fuzzing never makes), documented status codes, content
types, headers and JSON schemas; invalid input refused with a 4xx and
valid input never refused with a 400. Every check runs (`--checks all`),
positive_data_acceptance too: a well-formed id fibod never issued is
unknown (404) whatever the time it seems to carry, because ids carry a
MAC. Tasks the fuzzer submits are cancelled at once, so the workers do
not spend the rest of the session on them.
Bounded: MAX_EXAMPLES per operation and mode, about a minute in all.

schemathesis's own pytest plugin (`from_fixture`) does not run under
pytest 9, so the test drives its strategies with Hypothesis directly.
"""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.integration.faults import record

pytestmark = pytest.mark.integration

#: Examples per operation and mode.
MAX_EXAMPLES = 50


def _takes_input(operation) -> bool:
    """Tell whether an operation has any parameter or body that could be made invalid."""
    parts = (operation.path_parameters, operation.query, operation.headers, operation.cookies)
    return any(len(part) for part in parts) or len(operation.body) > 0


def _fuzz(operation, mode: GenerationMode, base_url: str) -> Counter[str]:
    """Run MAX_EXAMPLES generated requests of one operation; count statuses and cancels."""
    seen: Counter[str] = Counter()
    if mode is GenerationMode.NEGATIVE and not _takes_input(operation):
        return seen  # nothing to make invalid (/metrics, /readyz): Hypothesis finds no case

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, timeout=60)
        seen[str(response.status_code)] += 1
        assert response.status_code < 500 or (
            response.status_code == 500 and response.content[:1] == b"\x02"
        ), (case.as_curl_command(), response.status_code, response.text[:200])
        location = response.headers.get("location", [""])[0]  # names lower-cased, values lists
        if response.status_code == 202 and location:
            # a task the fuzzer made: cancel it, or it keeps the workers busy for minutes
            cancelled = requests.delete(base_url + location, timeout=30)
            assert cancelled.status_code in (200, 409), cancelled.text  # 409: done already
            seen["cancelled"] += cancelled.status_code == 200
        case.validate_response(response)
        if mode is GenerationMode.POSITIVE:
            assert response.status_code != 400, (case.as_curl_command(), response.text[:200])

    check()
    return seen


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_every_answer_matches_the_document(stack, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/openapi.yaml")
    statuses = {
        result.ok().label: _fuzz(result.ok(), mode, stack.base_url)
        for result in schema.get_all_operations()
    }
    assert len(statuses) >= 9, statuses
    if mode is GenerationMode.POSITIVE:
        assert statuses["GET /myapp/fibo"]["cancelled"] > 0, statuses  # the cleanup ran
    record(
        f"test_every_answer_matches_the_document[{mode.value}]",
        statuses={label: dict(c) for label, c in statuses.items()},
    )
