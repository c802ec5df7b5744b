"""The GraphQL judge: GitHub's schema accepts valid Projects v2 documents with their
variables, and says what is wrong with the others; the fake routes POST /graphql to it."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.contract.contract import Contract, ContractViolation, Descriptions
from tests.contract.graphql import Schema
from tests.fakes.github import FakeGitHub

ADD_ITEM = """
mutation AddItem($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) {
    item { id }
  }
}
"""
SET_FIELD = """
mutation SetField($project: ID!, $item: ID!, $field: ID!, $value: ProjectV2FieldValue!) {
  updateProjectV2ItemFieldValue(
    input: {projectId: $project, itemId: $item, fieldId: $field, value: $value}
  ) {
    projectV2Item { id }
  }
}
"""
IDS = {"project": "PVT_1", "item": "PVTI_1", "field": "PVTSSF_1"}


@pytest.fixture
def schema(github_descriptions: Descriptions) -> Schema:
    return github_descriptions.graphql


@pytest.mark.parametrize(
    "payload",
    [
        {"query": ADD_ITEM, "variables": {"project": "PVT_1", "content": "I_1"}},
        {"query": SET_FIELD, "variables": {**IDS, "value": {"singleSelectOptionId": "47fc9ee4"}}},
        {"query": SET_FIELD, "variables": {**IDS, "value": {"number": 3}}, "operationName": None},
    ],
)
def test_valid_projects_v2_mutations_pass(schema: Schema, payload: dict[str, Any]) -> None:
    assert schema.check_request(payload) == []


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (
            {
                "query": ADD_ITEM.replace("item { id }", "item { identifier }"),
                "variables": {"project": "PVT_1", "content": "I_1"},
            },
            "Cannot query field 'identifier' on type 'ProjectV2Item'.",
        ),
        (
            {
                "query": ADD_ITEM.replace("$project: ID!", "$project: Int!"),
                "variables": {"project": 1, "content": "I_1"},
            },
            "Variable '$project' of type 'Int!' used in position expecting type 'ID!'.",
        ),
        (
            {"query": SET_FIELD, "variables": {**IDS, "value": {"number": "high"}}},
            "Variable '$value' has invalid value at .number: "
            "Float cannot represent non numeric value: 'high'",
        ),
        (
            {"query": SET_FIELD, "variables": {**IDS, "value": {"text": "x"}, "extra": 1}},
            "variable $extra is not declared",
        ),
        (
            {"query": ADD_ITEM, "variables": {"project": "PVT_1"}},
            "Variable '$content' has invalid value: Expected a value of non-null type 'ID!'",
        ),
        ({"query": "mutation {"}, "syntax: Syntax Error: Expected Name, found <EOF>."),
    ],
)
def test_invalid_documents_and_variables_are_reported(
    schema: Schema, payload: dict[str, Any], problem: str
) -> None:
    problems = schema.check_request(payload)
    assert any(p.startswith(problem) for p in problems), problems


@pytest.mark.parametrize(("prefix", "endpoint"), [("", "/graphql"), ("/api/v3", "/api/graphql")])
def test_the_fake_routes_graphql_through_the_schema(
    github_descriptions: Descriptions, prefix: str, endpoint: str
) -> None:
    contract = Contract(github_descriptions)
    fake = FakeGitHub(path_prefix=prefix, contract=contract)
    fake.tokens["ghs_test"] = (1, time.time() + 60)
    client = httpx.Client(
        transport=fake.transport(),
        base_url="https://ghe.example" if prefix else "https://api.github.com",
        headers={"authorization": "bearer ghs_test"},
    )
    add = {"query": ADD_ITEM, "variables": {"project": "PVT_1", "content": "I_1"}}

    fake.answer_graphql({"addProjectV2ItemById": {"item": {"id": "PVTI_1"}}})
    answer = client.post(endpoint, json=add)
    assert answer.json() == {"data": {"addProjectV2ItemById": {"item": {"id": "PVTI_1"}}}}
    assert fake.effects == ["graphql:AddItem"]

    # a wrong document, and an answer of the wrong shape, both fail
    with pytest.raises(ContractViolation, match="Cannot query field 'idd'"):
        client.post(endpoint, json={**add, "query": ADD_ITEM.replace("{ id }", "{ idd }")})
    fake.answer_graphql({"addProjectV2ItemById": {"item": {"id": None}}})
    with pytest.raises(
        ContractViolation, match=r"Cannot return null for non-nullable field ProjectV2Item\.id"
    ):
        client.post(endpoint, json=add)
    assert len(contract.violations) == 2
    assert all(v.startswith(f"POST {endpoint}: GraphQL: ") for v in contract.violations)
