"""Schemathesis over the live server's OpenAPI schema: every operation, generated requests.

Schemathesis reads ``/openapi.json`` from the running server and, for every operation, builds a
Hypothesis strategy of requests from its parameters and request bodies: valid ones (positive)
and ones that break the schema (negative). The property is the suite's: no 5xx, every error a
JSON body, and the server still answers a valid request correctly afterwards.

(Schemathesis' own pytest plugin does not run under pytest 9, so each operation's strategy is
driven by ``hypothesis.given`` here.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis.errors import Unsatisfiable

from tests.fuzz.conftest import EXAMPLES, FUZZ_SETTINGS, Answer, FuzzClient, assert_no_server_error
from tests.service.conftest import ServerProcess

PER_OPERATION = max(3, EXAMPLES // 5)  # times ~15 operations and 2 modes


@pytest.fixture(scope="session")
def operations(fuzz_server: ServerProcess) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda mode: mode.value)
def test_every_operation_answers_without_server_errors(operations, fuzz_client: FuzzClient, mode) -> None:
    assert len(operations) >= 10  # the schema documents every route
    attacked: list[str] = []

    for operation in operations:
        @settings(FUZZ_SETTINGS, max_examples=PER_OPERATION)
        @given(case=operation.as_strategy(generation_mode=mode))
        def attack(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            headers = {key.lower(): value[0] if isinstance(value, list) else value
                       for key, value in response.headers.items()}
            assert_no_server_error(Answer(response.status_code, headers, response.content))

        try:
            attack()
        except Unsatisfiable:  # negative mode: an operation with no parameter or body to break
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            continue
        attacked.append(operation.label)
        fuzz_client.connection.close()  # idle while schemathesis ran: past the keep-alive timeout
        fuzz_client.check_still_correct()
    assert any("infer" in label for label in attacked) and any("predict" in label for label in attacked)
