"""Property-based fuzzing of the whole HTTP API from its own OpenAPI schema (schemathesis + hypothesis):
whatever the input, the server answers 2xx/4xx, never 5xx. Requests carry a supervisor's bearer token
(the role allowed on most routes) so the fuzzing reaches the handlers, not only the role checks."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

#: Examples per operation (x ~50 operations).
EXAMPLES = 8


@pytest.mark.slow
def test_no_server_errors_on_any_operation(make_server):
    srv = make_server()
    headers = srv.bearer("supervisor")
    schema = schemathesis.openapi.from_asgi("/openapi.json", srv.app)
    failures = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 40
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error], headers=headers)

        try:
            fuzz()
        except Exception as e:  # collect every failing operation, not only the first
            failures.append(f"{op.method.upper()} {op.path}: {str(e)[:400]}")
    assert failures == []
