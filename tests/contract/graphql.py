"""GraphQL documents, their variables, and the fake's answers, checked against GitHub's schema."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphql import (
    GraphQLError,
    GraphQLResolveInfo,
    build_schema,
    execute,
    get_operation_ast,
    parse,
    validate,
)
from graphql.execution.values import get_variable_values


class Schema:
    """GitHub's GraphQL schema (`@octokit/graphql-schema`'s `schema.graphql`)."""

    def __init__(self, file: Path) -> None:
        # GitHub's SDL defines two EnterpriseOwnerInfo fields twice (identically), and
        # graphql-core 3.3 also rejects deprecated implementations of non-deprecated
        # interface fields, which GitHub has: build it as GitHub serves it, unchecked.
        self.schema = build_schema(file.read_text(), assume_valid=True, assume_valid_sdl=True)

    def check_request(self, payload: Any) -> list[str]:
        """What is wrong with a POST /graphql body: the document, then the variables' values."""
        if not isinstance(payload, Mapping) or not isinstance(payload.get("query"), str):
            return ['the body is not {"query": ..., "variables": ...}']
        try:
            document = parse(payload["query"])
        except GraphQLError as error:
            return [f"syntax: {error.message}"]
        problems = [_describe(error) for error in validate(self.schema, document)]
        if problems:
            return problems
        operation = get_operation_ast(document, payload.get("operationName"))
        if operation is None:
            return [f"no operation to run (operationName {payload.get('operationName')!r})"]
        variables = payload.get("variables") or {}
        if not isinstance(variables, dict):
            return ["variables is not an object"]
        definitions = operation.variable_definitions or ()
        declared = {v.variable.name.value for v in definitions}
        problems += [
            f"variable ${name} is not declared" for name in sorted(set(variables) - declared)
        ]
        coerced = get_variable_values(self.schema, definitions, variables)
        if isinstance(coerced, list):
            problems += [_describe(error) for error in coerced]
        return problems

    def check_response(self, payload: Any, answer: Any) -> list[str]:
        """Whether an answer's `data` has the shape the schema gives the document's result."""
        if not isinstance(answer, Mapping) or not isinstance(answer.get("data"), Mapping):
            return []  # errors only: nothing to check against the schema
        if self.check_request(payload):
            return []  # reported already
        result = execute(
            self.schema,
            parse(payload["query"]),
            root_value=answer["data"],
            variable_values=payload.get("variables") or {},
            operation_name=payload.get("operationName"),
            field_resolver=_from_answer,
        )
        return [f"data: {_describe(error)}" for error in result.errors or []]  # type: ignore[union-attr]


def _from_answer(source: Any, info: GraphQLResolveInfo[Any], **_: Any) -> Any:
    """Each field is read from the answer by its response key (an alias, or the field name)."""
    return source.get(info.path.key) if isinstance(source, Mapping) else None


def _describe(error: GraphQLError) -> str:
    where = ", ".join(f"{loc.line}:{loc.column}" for loc in error.locations or [])
    path = ".".join(str(key) for key in error.path or [])
    return error.message + (f" (at {path})" if path else "") + (f" [{where}]" if where else "")
