"""Schemathesis against the live server's /openapi.json: generated valid and invalid requests
for every operation; no answer may be a 5xx, invalid requests must be refused, and every
answer must match the schema (status codes, content types, bodies, headers). Bounded
examples keep it under a minute."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from serve_support import classifier_folder, live_server, smollm_folder
from serve_support import settings as serve_settings

from verticalize.serve.security import add_key


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema")
    key = add_key(tmp / "keys", "fuzzer", "user")
    serve = serve_settings(tmp, api_keys_file=str(tmp / "keys"), max_texts=4)
    with live_server(classifier_folder(), serve) as (url, _):
        yield url, key


@pytest.fixture(scope="module")
def api_schema(served):
    return schemathesis.openapi.from_url(served[0] + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_answers_match_the_schema(case, served):
    url, key = served
    # limits that depend on settings or on the served task (serve.max_texts, token length,
    # chat on a classifier) answer schema-valid requests with a 400 that names them
    case.call_and_validate(
        base_url=url, headers={"x-api-key": key}, excluded_checks=[positive_data_acceptance]
    )


@pytest.fixture(scope="module")
def gen_served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("schema-gen")
    key = add_key(tmp / "keys", "fuzzer", "user")  # not admin: no model reloads
    serve = serve_settings(tmp, api_keys_file=str(tmp / "keys"), max_new_tokens=2)
    with live_server(smollm_folder(), serve) as (url, _):
        yield url, key


@pytest.fixture(scope="module")
def gen_schema(gen_served):
    return schemathesis.openapi.from_url(gen_served[0] + "/openapi.json")


generation = schemathesis.pytest.from_fixture("gen_schema")


@pytest.mark.slow
@generation.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_generation_routes_give_no_server_errors(case, gen_served):
    """Chat templates, sampling values and stop strings from the fuzzer, on a real model."""
    url, key = gen_served
    case.call_and_validate(
        base_url=url, headers={"x-api-key": key}, excluded_checks=[positive_data_acceptance]
    )
