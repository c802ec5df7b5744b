"""REST requests, and the fake's answers, checked against one GitHub OpenAPI description.

The description (OpenAPI 3.0) is loaded once; path templates are indexed by their first
segment, and each schema is compiled on first use into an `openapi-schema-validator`
validator whose `$ref`s resolve lazily inside the one big document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
from jsonschema import _keywords
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import extend
from openapi_schema_validator import OAS30ReadValidator as _OAS30Read
from openapi_schema_validator import OAS30Validator as _OAS30
from openapi_schema_validator import OAS30WriteValidator as _OAS30Write
from openapi_schema_validator import oas30_format_checker
from referencing import Registry, Resource, Specification


def _nullable_enum(
    validator: Validator, enums: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterable[ValidationError]:
    """OpenAPI 3.0's `nullable: true` admits null even when an `enum` lists no null (GitHub
    describes a check run's `conclusion` that way and sends null until it completes);
    openapi-schema-validator 0.9 checks the enum regardless."""
    if instance is None and schema.get("nullable") is True:
        return
    errors: Iterable[ValidationError] | None = _keywords.enum(  # type: ignore[func-returns-value]
        validator, enums, instance, schema
    )
    yield from errors or ()


def _extend(base: Any) -> Any:
    return extend(base, {"enum": _nullable_enum})  # type: ignore[no-untyped-call]


OAS30Validator = _extend(_OAS30)
OAS30ReadValidator = _extend(_OAS30Read)
OAS30WriteValidator = _extend(_OAS30Write)

_URI = "urn:github-openapi"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Operation:
    template: str
    method: str
    spec: Mapping[str, Any]
    path_params: Mapping[str, str]

    @property
    def pointer(self) -> str:
        return pointer("paths", self.template, self.method.lower())


class Description:
    """One of GitHub's REST descriptions (api.github.com, or a GHES release)."""

    def __init__(self, file: Path) -> None:
        self.doc: dict[str, Any] = orjson.loads(file.read_bytes())
        self.name = file.name.removesuffix(".json")
        # GitHub Enterprise Server's API lives under /api/v3; the paths are written without it
        self.base_path = re.sub(r"^[^:/]*://[^/]*", "", self.doc["servers"][0]["url"]).rstrip("/")
        resource: Resource[Any] = Specification.OPAQUE.create_resource(self.doc)
        self._registry: Registry[Any] = Registry().with_resource(_URI, resource)
        self._validators: dict[tuple[str, str], Any] = {}
        # per first segment, most specific first: /issues/comments before /issues/{number};
        # after them, templates with a parameter that may span segments (`x-multi-segment`:
        # contents/{path}, git/ref/{ref}), the most literal segments first
        self._index: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for path in sorted(self.doc["paths"], key=_specificity):
            self._index.setdefault(_first_segment(path), []).append((path, _regex(path)))
        for path in sorted(self.doc["paths"], key=lambda p: -_specificity(p).count(0)):
            if spanning := self._multi_segment(path):
                compiled = (path, _regex(path, spanning))
                self._index.setdefault("+" + _first_segment(path), []).append(compiled)

    # lookups --------------------------------------------------------------------------------

    def resolve(self, node: Any, at: str) -> tuple[Any, str]:
        """Follow local `$ref`s from `node` (found at pointer `at`): the target and its pointer."""
        while isinstance(node, Mapping) and "$ref" in node:
            at = node["$ref"].removeprefix("#")
            node = self.at(at)
        return node, at

    def at(self, json_pointer: str) -> Any:
        node: Any = self.doc
        for part in json_pointer.lstrip("/").split("/"):
            key = part.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        return node

    def api_path(self, raw_path: str) -> str:
        if self.base_path and raw_path.startswith(self.base_path + "/"):
            return raw_path[len(self.base_path) :]
        return raw_path

    def operation(self, method: str, raw_path: str) -> Operation | str:
        """The documented operation for a request, or what is wrong with its path and method."""
        path = self.api_path(raw_path)
        first = _first_segment(path)
        candidates = self._index.get(first, []) + self._index.get("+" + first, [])
        matches = ((t, found) for t, regex in candidates if (found := regex.fullmatch(path)))
        template, match = next(matches, (None, None))
        if template is None or match is None:
            return "no documented path matches"
        item = self.doc["paths"][template]
        spec = item.get(method.lower())
        if spec is None:
            documented = ", ".join(m.upper() for m in _METHODS if m in item)
            return f"{template} is documented for {documented} only"
        names = re.findall(r"\{([^}]+)\}", template)
        params = {name: unquote(value) for name, value in zip(names, match.groups(), strict=True)}
        return Operation(template, method.upper(), spec, params)

    def webhook_events(self) -> dict[str, set[str]]:
        """Documented webhook events with their actions (`x-webhooks`: `event/action` ids)."""
        events: dict[str, set[str]] = {}
        for hook in self.doc.get("x-webhooks", {}).values():
            event, _, action = hook["post"]["operationId"].partition("/")
            actions = [action.replace("-", "_")] if action else []
            events.setdefault(event.replace("-", "_"), set()).update(actions)
        return events

    # checks ---------------------------------------------------------------------------------

    def check_request(
        self,
        method: str,
        raw_path: str,
        query: Iterable[tuple[str, str]],
        content_type: str,
        body: bytes,
        *,
        installation: bool = False,
    ) -> list[str]:
        """What is wrong with a request (`installation`: sent with an installation token)."""
        op = self.operation(method, raw_path)
        if isinstance(op, str):
            return [op]
        problems: list[str] = []
        if installation and op.spec.get("x-github", {}).get("enabledForGitHubApps") is False:
            problems.append("not available with a GitHub App installation token")
        sent: dict[str, list[str]] = {}
        for key, value in query:
            sent.setdefault(key, []).append(value)
        documented: set[str] = set()
        for param, schema_at in self._parameters(op):
            where, name = param["in"], param["name"]
            if where == "path":
                if name not in op.path_params:
                    problems.append(f"{op.template} has no {{{name}}}")  # the description's slip
                else:
                    path_value = op.path_params[name]
                    problems += self._check_value(f"path parameter {name}", [path_value], schema_at)
            elif where == "query":
                documented.add(name)
                if name in sent:
                    problems += self._check_value(f"query parameter {name}", sent[name], schema_at)
                elif param.get("required"):
                    problems.append(f"required query parameter {name} is missing")
        problems += [
            f"query parameter {name} is not documented" for name in sent.keys() - documented
        ]
        return problems + self._check_body(op, content_type, body)

    def check_response(
        self, method: str, raw_path: str, status: int, content_type: str, body: bytes
    ) -> list[str]:
        op = self.operation(method, raw_path)
        if isinstance(op, str):
            return []  # the request is reported already
        responses = op.spec.get("responses", {})
        key = next(
            (k for k in (str(status), f"{status // 100}XX", "default") if k in responses), None
        )
        if key is None:
            if status >= 300:
                return []  # an error this operation does not document (a programmed failure)
            return [f"answered {status}; documented: {', '.join(responses)}"]
        response, at = self.resolve(responses[key], f"{op.pointer}/responses/{key}")
        content = response.get("content") or {}
        if not body:
            return [f"answered {status} without the documented body"] if content else []
        media = _media_type(content, content_type)
        if media is None:
            documented = ", ".join(content) or "no body"
            return [f"answered {status} with {content_type or 'an untyped body'}; {documented}"]
        schema_at = at + pointer("content", media, "schema")
        return self._check_json(f"response {status}", body, schema_at, OAS30ReadValidator)

    def validate(self, what: str, instance: Any, schema_at: str, kind: Any) -> list[str]:
        """What is wrong with `instance` under the schema at `schema_at` (`kind`: a validator)."""
        key = (kind.__name__, schema_at)
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = kind(
                {"$ref": f"{_URI}#{schema_at}"},
                registry=self._registry,
                format_checker=oas30_format_checker,
            )
        return [_describe(what, best_match([error])) for error in validator.iter_errors(instance)]

    # helpers --------------------------------------------------------------------------------

    def _multi_segment(self, template: str) -> set[str]:
        item = self.doc["paths"][template]
        owners = [item, *(item[m] for m in _METHODS if m in item)]
        params = (self.resolve(raw, "")[0] for o in owners for raw in o.get("parameters", []))
        return {p["name"] for p in params if p.get("in") == "path" and p.get("x-multi-segment")}

    def _parameters(self, op: Operation) -> list[tuple[Mapping[str, Any], str]]:
        """(parameter, pointer to its schema); the operation's override its path item's."""
        found: dict[tuple[str, str], tuple[Mapping[str, Any], str]] = {}
        item_at = pointer("paths", op.template)
        for owner, at in ((self.at(item_at), item_at), (op.spec, op.pointer)):
            for index, raw in enumerate(owner.get("parameters", [])):
                param, param_at = self.resolve(raw, f"{at}/parameters/{index}")
                if "schema" in param:
                    found[(param["in"], param["name"])] = (param, param_at + "/schema")
        return list(found.values())

    def _check_value(self, what: str, values: list[str], schema_at: str) -> list[str]:
        schema, _ = self.resolve(self.at(schema_at), schema_at)
        value = values if schema.get("type") == "array" else values[-1]
        coerced = _coerce(value, schema)
        if coerced is None:
            return [f"{what}: {value!r} is not {schema.get('type')}"]
        return self.validate(what, coerced, schema_at, OAS30Validator)

    def _check_body(self, op: Operation, content_type: str, body: bytes) -> list[str]:
        declared = op.spec.get("requestBody")
        if declared is None:
            return ["sent a request body; none is documented"] if body else []
        request_body, at = self.resolve(declared, op.pointer + "/requestBody")
        if not body:
            return (
                ["the documented request body is required"] if request_body.get("required") else []
            )
        content = request_body.get("content", {})
        media = _media_type(content, content_type)
        if media is None:
            return [f"sent {content_type or 'an untyped body'}; documented: {', '.join(content)}"]
        schema_at = at + pointer("content", media, "schema")
        return self._check_json("request body", body, schema_at, OAS30WriteValidator)

    def _check_json(self, what: str, body: bytes, schema_at: str, kind: Any) -> list[str]:
        try:
            instance = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return [f"{what} is not JSON: {exc}"]
        return self.validate(what, instance, schema_at, kind)


def pointer(*parts: str) -> str:
    """A JSON pointer to the given keys."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1]


def _specificity(path: str) -> list[int]:
    return [1 if "{" in segment else 0 for segment in path.split("/")]


def _regex(template: str, spanning: set[str] | None = None) -> re.Pattern[str]:
    """Each parameter one segment, except those named in `spanning`."""
    literals = re.split(r"\{[^}]+\}", template)
    names = re.findall(r"\{([^}]+)\}", template)
    groups = ["(.+)" if n in (spanning or ()) else "([^/]+)" for n in names] + [""]
    return re.compile("".join(re.escape(lit) + g for lit, g in zip(literals, groups, strict=True)))


def _media_type(content: Mapping[str, Any], content_type: str) -> str | None:
    sent = content_type.split(";")[0].strip().lower()
    if sent in content:
        return sent
    if sent == "application/json" or sent.endswith("+json"):
        return next((m for m in content if m == "application/json" or m.endswith("+json")), None)
    return None


def _coerce(value: str | list[str], schema: Mapping[str, Any]) -> Any:
    """A path or query string as the type its schema declares (None if it cannot be)."""
    if isinstance(value, list):
        items = [_coerce(v, schema.get("items", {})) for part in value for v in part.split(",")]
        return None if any(item is None for item in items) else items
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return None
    if kind == "boolean":
        return {"true": True, "false": False}.get(value)
    return value


def _describe(what: str, error: ValidationError) -> str:
    where = error.json_path.removeprefix("$")
    message = error.message if len(error.message) <= 300 else error.message[:300] + "..."
    return f"{what}{' at ' + where if where else ''}: {message}"
