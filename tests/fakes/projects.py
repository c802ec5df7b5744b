"""A fake GitHub Projects (v2), answering GraphQL documents the way GitHub does.

The shared fake GitHub (`FakeGitHub.projects`) hands it each POST /graphql that no test
programmed an answer for (`answer_graphql`). It parses the document with graphql-core and
walks the selection over its model: aliases, variables and their defaults, named and inline
fragments (on types, interfaces and unions), `__typename`, connections (`nodes`, `edges`,
`totalCount`, `pageInfo`, `first`). What GitHub resolves to nothing answers null with a
NOT_FOUND error at that path, as GitHub does; a field the model does not have fails the
whole answer with an error naming it (`fakeNotModelled`), so a new document meets a clear
message rather than a wrong answer. The contract check (tests/contract) holds the documents
and the answers to GitHub's schema.

The model: owners (organizations and users, by login), their projects with fields
(single-select fields have options), items (cards) for issues, and each item's single-select
values. Issues are the shared fake's (`FakeGitHub.issues`): an issue exists when the fake has
it, and its node id is `issue_id(repo, number)`.

Queries: `organization(login)`, `user(login)` (each with `projectV2(number)`),
`repository(owner, name) { issue(number) { projectItems } }`. Mutations:
`addProjectV2ItemById` (an issue already on the project gets its existing item back, as on
GitHub) and `updateProjectV2ItemFieldValue` (single-select values). Effects, as readable
strings in the shared fake's `effects`:

    "octo/repo#12:card+octo-org#3"      the issue was added to project 3 of octo-org
    "octo/repo#12:card->In Review"      its card's single-select value was set

Tests set up projects with `add_project` (or owners alone with `add_owner`), put cards in a
column with `put`, and read where a card is with `column`; an owner in `unreadable` answers
FORBIDDEN for its projects, as GitHub does when the App lacks the Projects permission.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    get_operation_ast,
    parse,
    value_from_ast_untyped,
)

DEFAULT_COLUMNS = ("Todo", "In Progress", "In Review", "Blocked", "Done")
_COLORS = ("GRAY", "BLUE", "YELLOW", "ORANGE", "GREEN", "RED", "PINK", "PURPLE")
NOT_MODELLED = "fakeNotModelled"


# -- the model ----------------------------------------------------------------------------------


@dataclass
class FakeOption:
    id: str
    name: str
    color: str = "GRAY"
    description: str = ""


@dataclass
class FakeField:
    """A project field; `options` is None unless it is a single-select field."""

    id: str
    name: str
    data_type: str = "SINGLE_SELECT"  # TITLE, ASSIGNEES, LABELS, TEXT, NUMBER, ...
    options: list[FakeOption] | None = None

    def option(self, name: str) -> FakeOption | None:
        return next((o for o in self.options or () if o.name == name), None)


@dataclass
class FakeItem:
    """A card: the issue it shows, and its single-select values (field id -> option id)."""

    id: str
    repo: str
    number: int
    values: dict[str, str] = field(default_factory=dict)
    archived: bool = False


@dataclass
class FakeProject:
    id: str
    owner: str
    number: int
    title: str
    fields: list[FakeField] = field(default_factory=list)
    items: list[FakeItem] = field(default_factory=list)
    closed: bool = False
    _ids: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @property
    def label(self) -> str:
        return f"{self.owner}#{self.number}"

    def field_named(self, name: str) -> FakeField:
        found = next((f for f in self.fields if f.name == name), None)
        if found is None:
            raise KeyError(f"project {self.label} has no field {name!r}")
        return found

    def item(self, repo: str, number: int) -> FakeItem | None:
        return next((i for i in self.items if (i.repo, i.number) == (repo, number)), None)

    def add_field(self, name: str, options: tuple[str, ...] | None = None) -> FakeField:
        """A single-select field with `options`, or (None) a text field."""
        if options is None:
            made = FakeField(_node_id("PVTF", self.id, name, next(self._ids)), name, "TEXT")
        else:
            made = FakeField(_node_id("PVTSSF", self.id, name, next(self._ids)), name)
            made.options = []
            for option in options:
                self.add_option(name, option, into=made)
        self.fields.append(made)
        return made

    def add_option(self, field_name: str, name: str, *, into: FakeField | None = None) -> str:
        """A new option (a new id, as GitHub gives one even to a name used before)."""
        target = into or self.field_named(field_name)
        assert target.options is not None, f"{field_name!r} is not a single-select field"
        option_id = _digest(self.id, target.id, name, next(self._ids))[:8]
        color = _COLORS[len(target.options) % len(_COLORS)]
        target.options.append(FakeOption(option_id, name, color))
        return option_id

    def remove_option(self, field_name: str, name: str) -> None:
        """Delete an option; cards in it lose their value, as on GitHub."""
        target = self.field_named(field_name)
        gone = target.option(name)
        assert gone is not None and target.options is not None
        target.options.remove(gone)
        for item in self.items:
            if item.values.get(target.id) == gone.id:
                del item.values[target.id]


class FakeProjects:
    """Owners, their Projects (v2) and the cards on them; answers GraphQL documents."""

    def __init__(self, issues: Mapping[tuple[str, int], Any] | None = None) -> None:
        # the issues that exist, (repo, number) -> anything with a `title` (FakeIssue)
        self.issues: Mapping[tuple[str, int], Any] = issues if issues is not None else {}
        self.owners: dict[str, tuple[str, str]] = {}  # casefolded login -> (login, kind)
        self.projects: list[FakeProject] = []
        # owners whose projects the installation may not read (the App lacks the
        # organization's Projects permission): casefolded logins
        self.unreadable: set[str] = set()

    # test set-up --------------------------------------------------------------------------

    def add_owner(self, login: str, *, user: bool = False) -> None:
        """An organization (or a user) that exists on GitHub, with or without projects."""
        self.owners[login.casefold()] = (login, "User" if user else "Organization")

    def add_project(
        self,
        owner: str,
        number: int,
        *,
        user: bool = False,
        title: str | None = None,
        status_field: str | None = "Status",
        columns: tuple[str, ...] = DEFAULT_COLUMNS,
    ) -> FakeProject:
        """A project with GitHub's default fields: Title, Assignees, `status_field` (a
        single-select field with `columns` as its options; None: no such field), Labels."""
        if owner.casefold() not in self.owners:
            self.add_owner(owner, user=user)
        login, _ = self.owners[owner.casefold()]
        project = FakeProject(
            _node_id("PVT", login.casefold(), number), login, number, title or f"Project {number}"
        )
        for name, data_type in (("Title", "TITLE"), ("Assignees", "ASSIGNEES")):
            project.fields.append(FakeField(_node_id("PVTF", project.id, name), name, data_type))
        if status_field is not None:
            project.add_field(status_field, columns)
        project.fields.append(FakeField(_node_id("PVTF", project.id, "Labels"), "Labels", "LABELS"))
        self.projects.append(project)
        return project

    def project(self, owner: str, number: int) -> FakeProject:
        found = self._project(owner, number)
        if found is None:
            raise KeyError(f"no project {owner}#{number}")
        return found

    def put(
        self,
        owner: str,
        number: int,
        repo: str,
        issue: int,
        column: str | None = None,
        *,
        field: str = "Status",
    ) -> FakeItem:
        """A card for the issue on the project, in `column` (None: no value)."""
        project = self.project(owner, number)
        item = project.item(repo, issue) or self._add_item(project, repo, issue)
        if column is not None:
            status = project.field_named(field)
            option = status.option(column)
            assert option is not None, f"{column!r} is not an option of {field!r}"
            item.values[status.id] = option.id
        return item

    # readable views -----------------------------------------------------------------------

    def card(self, owner: str, number: int, repo: str, issue: int) -> FakeItem | None:
        return self.project(owner, number).item(repo, issue)

    def column(
        self, owner: str, number: int, repo: str, issue: int, *, field: str = "Status"
    ) -> str | None:
        """The option the issue's card has in `field`; None: no value (KeyError: no card)."""
        project = self.project(owner, number)
        item = project.item(repo, issue)
        if item is None:
            raise KeyError(f"{repo}#{issue} has no card on project {project.label}")
        status = project.field_named(field)
        chosen = item.values.get(status.id)
        return next((o.name for o in status.options or () if o.id == chosen), None)

    @staticmethod
    def issue_id(repo: str, number: int) -> str:
        return _node_id("I", repo.casefold(), number)

    # answering ----------------------------------------------------------------------------

    def answer(self, payload: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """GitHub's answer to a POST /graphql body, and the effects it had."""
        try:
            document = parse(str(payload.get("query", "")))
        except GraphQLError as error:
            return {"errors": [{"message": error.message}]}, []
        operation = get_operation_ast(document, payload.get("operationName"))
        if operation is None:
            return {"errors": [{"message": "no operation to run"}]}, []
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        run = _Run(fragments, _variables(operation, payload.get("variables") or {}))
        root: _Object = (
            _Mutation(self, run.effects)
            if operation.operation == OperationType.MUTATION
            else _Query(self)
        )
        try:
            data = run.select(root, operation.selection_set, [])
        except _NotModelled as missing:
            message = f"the fake GitHub does not model {missing}"
            return {"errors": [{"message": message, "extensions": {"code": NOT_MODELLED}}]}, []
        answer: dict[str, Any] = {"data": data}
        if run.errors:
            answer["errors"] = run.errors
        return answer, run.effects

    # the model's operations ---------------------------------------------------------------

    def _owner(self, login: str, kind: str) -> tuple[str, str] | None:
        found = self.owners.get(login.casefold())
        return found if found is not None and found[1] == kind else None

    def _project(self, owner: str, number: int) -> FakeProject | None:
        return next(
            (
                p
                for p in self.projects
                if p.owner.casefold() == owner.casefold() and p.number == number
            ),
            None,
        )

    def _issue(self, repo: str, number: int) -> tuple[str, int] | None:
        return next(
            (k for k in self.issues if k[0].casefold() == repo.casefold() and k[1] == number),
            None,
        )

    def _issue_by_id(self, node_id: str) -> tuple[str, int] | None:
        return next((k for k in self.issues if self.issue_id(*k) == node_id), None)

    def _add_item(self, project: FakeProject, repo: str, number: int) -> FakeItem:
        item = FakeItem(_node_id("PVTI", project.id, repo.casefold(), number), repo, number)
        project.items.append(item)
        return item


# -- walking a selection over the model ---------------------------------------------------------


class _NotModelled(Exception):
    """A field the fake does not have: the whole answer is an error."""


class _NotFound(Exception):
    """GitHub resolves the field to nothing: null, and an error of type `kind` at its path."""

    def __init__(self, message: str, kind: str = "NOT_FOUND") -> None:
        super().__init__(message)
        self.type = kind


class _Object:
    """A GraphQL object of the model: its type, the abstract types it belongs to, its fields."""

    typename: str
    abstract: ClassVar[frozenset[str]] = frozenset({"Node"})

    def get(self, name: str, args: dict[str, Any]) -> Any:
        raise _NotModelled(f"{self.typename}.{name}")

    def is_a(self, type_name: str) -> bool:
        return type_name == self.typename or type_name in self.abstract


class _Run:
    def __init__(
        self, fragments: dict[str, FragmentDefinitionNode], variables: dict[str, Any]
    ) -> None:
        self.fragments = fragments
        self.variables = variables
        self.errors: list[dict[str, Any]] = []
        self.effects: list[str] = []

    def select(
        self, obj: _Object, selection: SelectionSetNode, path: list[str | int]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, nodes in self._collect(obj, selection).items():
            first = nodes[0]
            name = first.name.value
            if name == "__typename":
                out[key] = obj.typename
                continue
            args = {
                a.name.value: value_from_ast_untyped(a.value, self.variables)
                for a in first.arguments or ()
            }
            args = {k: (None if v is Undefined else v) for k, v in args.items()}
            try:
                value = obj.get(name, args)
            except _NotFound as missing:
                error: dict[str, Any] = {
                    "type": missing.type,
                    "path": [*path, key],
                    "message": str(missing),
                }
                if first.loc is not None:
                    token = first.loc.start_token
                    error["locations"] = [{"line": token.line, "column": token.column}]
                self.errors.append(error)
                value = None
            out[key] = self._complete(value, nodes, [*path, key])
        return out

    def _complete(self, value: Any, nodes: list[FieldNode], path: list[str | int]) -> Any:
        if isinstance(value, list):
            return [self._complete(v, nodes, [*path, i]) for i, v in enumerate(value)]
        if isinstance(value, _Object):
            merged = [s for n in nodes if n.selection_set for s in n.selection_set.selections]
            return self.select(value, SelectionSetNode(selections=tuple(merged)), path)
        return value

    def _collect(self, obj: _Object, selection: SelectionSetNode) -> dict[str, list[FieldNode]]:
        """The fields selected on `obj`, by response key, fragments that apply included."""
        fields: dict[str, list[FieldNode]] = {}
        for node in selection.selections:
            if isinstance(node, FieldNode):
                key = node.alias.value if node.alias else node.name.value
                fields.setdefault(key, []).append(node)
                continue
            if isinstance(node, FragmentSpreadNode):
                fragment = self.fragments[node.name.value]
                condition: str | None = fragment.type_condition.name.value
                inner = fragment.selection_set
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition.name.value if node.type_condition else None
                inner = node.selection_set
            else:  # pragma: no cover - graphql-core has no other selections
                continue
            if condition is None or obj.is_a(condition):
                for key, found in self._collect(obj, inner).items():
                    fields.setdefault(key, []).extend(found)
        return fields


def _variables(operation: OperationDefinitionNode, given: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(given)
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in values and definition.default_value is not None:
            values[name] = value_from_ast_untyped(definition.default_value)
    return values


# -- the types ----------------------------------------------------------------------------------


class _Query(_Object):
    typename = "Query"
    abstract = frozenset()

    def __init__(self, model: FakeProjects) -> None:
        self.model = model

    def get(self, name: str, args: dict[str, Any]) -> Any:
        if name in ("organization", "user"):
            kind = "Organization" if name == "organization" else "User"
            found = self.model._owner(str(args["login"]), kind)
            if found is None:
                article = "an" if kind == "Organization" else "a"
                raise _NotFound(
                    f"Could not resolve to {article} {kind} with the login of '{args['login']}'."
                )
            return _Owner(self.model, *found)
        if name == "repository":
            repo = f"{args['owner']}/{args['name']}"
            if not any(r.casefold() == repo.casefold() for r, _ in self.model.issues):
                raise _NotFound(f"Could not resolve to a Repository with the name '{repo}'.")
            return _Repository(self.model, repo)
        return super().get(name, args)


class _Owner(_Object):
    abstract = frozenset({"Node", "ProjectV2Owner", "RepositoryOwner", "ProjectV2Recent"})

    def __init__(self, model: FakeProjects, login: str, kind: str) -> None:
        self.model, self.login, self.kind = model, login, kind
        self.typename = kind  # Organization or User

    def get(self, name: str, args: dict[str, Any]) -> Any:
        if name == "id":
            return _node_id("O" if self.kind == "Organization" else "U", self.login.casefold())
        if name == "login":
            return self.login
        if name == "projectV2":
            if self.login.casefold() in self.model.unreadable:
                raise _NotFound("Resource not accessible by integration", "FORBIDDEN")
            project = self.model._project(self.login, int(args["number"]))
            if project is None:
                raise _NotFound(
                    f"Could not resolve to a ProjectV2 with the number {args['number']}."
                )
            return _ProjectNode(self.model, project)
        return super().get(name, args)


class _ProjectNode(_Object):
    typename = "ProjectV2"
    abstract = frozenset({"Node", "Closable", "Updatable"})

    def __init__(self, model: FakeProjects, project: FakeProject) -> None:
        self.model, self.project = model, project

    def get(self, name: str, args: dict[str, Any]) -> Any:
        project = self.project
        if name in ("id", "number", "title", "closed"):
            return getattr(project, name)
        if name == "url":
            kind = "orgs" if self.model.owners[project.owner.casefold()][1] != "User" else "users"
            return f"https://github.com/{kind}/{project.owner}/projects/{project.number}"
        if name == "field":
            found = next((f for f in project.fields if f.name == args["name"]), None)
            return _FieldNode(self.model, project, found) if found else None
        if name == "fields":
            fields = [_FieldNode(self.model, project, f) for f in project.fields]
            return _Connection("ProjectV2FieldConfiguration", fields, args)
        if name == "items":
            items = [_ItemNode(self.model, project, i) for i in project.items]
            return _Connection("ProjectV2Item", items, args)
        return super().get(name, args)


class _FieldNode(_Object):
    abstract = frozenset({"Node", "ProjectV2FieldCommon", "ProjectV2FieldConfiguration"})

    def __init__(self, model: FakeProjects, project: FakeProject, field: FakeField) -> None:
        self.model, self.project, self.field = model, project, field
        single = field.options is not None
        self.typename = "ProjectV2SingleSelectField" if single else "ProjectV2Field"

    def get(self, name: str, args: dict[str, Any]) -> Any:
        if name in ("id", "name"):
            return getattr(self.field, name)
        if name == "dataType":
            return self.field.data_type
        if name == "project":
            return _ProjectNode(self.model, self.project)
        if name == "options" and self.field.options is not None:
            wanted = {n.casefold() for n in args.get("names") or ()}
            return [
                _OptionNode(o)
                for o in self.field.options
                if not wanted or o.name.casefold() in wanted
            ]
        return super().get(name, args)


class _OptionNode(_Object):
    typename = "ProjectV2SingleSelectFieldOption"
    abstract = frozenset()

    def __init__(self, option: FakeOption) -> None:
        self.option = option

    def get(self, name: str, args: dict[str, Any]) -> Any:
        option = self.option
        answers = {
            "id": option.id,
            "name": option.name,
            "nameHTML": option.name,
            "color": option.color,
            "description": option.description,
            "descriptionHTML": option.description,
        }
        return answers[name] if name in answers else super().get(name, args)


class _Repository(_Object):
    typename = "Repository"
    abstract = frozenset({"Node", "RepositoryInfo", "ProjectV2Recent", "ProjectV2Owner"})

    def __init__(self, model: FakeProjects, repo: str) -> None:
        self.model, self.repo = model, repo

    def get(self, name: str, args: dict[str, Any]) -> Any:
        if name == "id":
            return _node_id("R", self.repo.casefold())
        if name == "name":
            return self.repo.partition("/")[2]
        if name == "nameWithOwner":
            return self.repo
        if name == "issue":
            found = self.model._issue(self.repo, int(args["number"]))
            if found is None:
                raise _NotFound(
                    f"Could not resolve to an Issue with the number of {args['number']}."
                )
            return _IssueNode(self.model, *found)
        return super().get(name, args)


class _IssueNode(_Object):
    typename = "Issue"
    abstract = frozenset({"Node", "ProjectV2ItemContent", "Closable", "Labelable", "Assignable"})

    def __init__(self, model: FakeProjects, repo: str, number: int) -> None:
        self.model, self.repo, self.number = model, repo, number

    def get(self, name: str, args: dict[str, Any]) -> Any:
        if name == "id":
            return self.model.issue_id(self.repo, self.number)
        if name == "number":
            return self.number
        if name == "title":
            return str(getattr(self.model.issues[(self.repo, self.number)], "title", ""))
        if name == "projectItems":
            include_archived = args.get("includeArchived", True) is not False
            nodes = [
                _ItemNode(self.model, project, item)
                for project in self.model.projects
                for item in project.items
                if (item.repo, item.number) == (self.repo, self.number)
                and (include_archived or not item.archived)
            ]
            return _Connection("ProjectV2Item", nodes, args)
        return super().get(name, args)


class _ItemNode(_Object):
    typename = "ProjectV2Item"

    def __init__(self, model: FakeProjects, project: FakeProject, item: FakeItem) -> None:
        self.model, self.project, self.item = model, project, item

    def get(self, name: str, args: dict[str, Any]) -> Any:
        item = self.item
        if name == "id":
            return item.id
        if name == "type":
            return "ISSUE"
        if name == "isArchived":
            return item.archived
        if name == "project":
            return _ProjectNode(self.model, self.project)
        if name == "content":
            return _IssueNode(self.model, item.repo, item.number)
        if name == "fieldValueByName":
            found = next((f for f in self.project.fields if f.name == args["name"]), None)
            if found is None or found.options is None:
                return None  # the fake holds single-select values only
            option = next((o for o in found.options if o.id == item.values.get(found.id)), None)
            return _ValueNode(self.model, self.project, found, item, option) if option else None
        return super().get(name, args)


class _ValueNode(_Object):
    typename = "ProjectV2ItemFieldSingleSelectValue"
    abstract = frozenset({"Node", "ProjectV2ItemFieldValueCommon", "ProjectV2ItemFieldValue"})

    def __init__(
        self,
        model: FakeProjects,
        project: FakeProject,
        field: FakeField,
        item: FakeItem,
        option: FakeOption,
    ) -> None:
        self.model, self.project, self.field, self.item = model, project, field, item
        self.option = option

    def get(self, name: str, args: dict[str, Any]) -> Any:
        option = self.option
        if name == "id":
            return _node_id("PVTFSV", self.item.id, self.field.id)
        if name == "optionId":
            return option.id
        if name in ("name", "nameHTML"):
            return option.name
        if name == "color":
            return option.color
        if name in ("description", "descriptionHTML"):
            return option.description
        if name == "field":
            return _FieldNode(self.model, self.project, self.field)
        if name == "item":
            return _ItemNode(self.model, self.project, self.item)
        return super().get(name, args)


class _Connection(_Object):
    abstract = frozenset()

    def __init__(self, of: str, nodes: Sequence[_Object], args: dict[str, Any]) -> None:
        self.of = of
        self.typename = f"{of}Connection"
        start = int(args["after"]) + 1 if args.get("after") else 0
        first = args.get("first")
        end = len(nodes) if first is None else min(len(nodes), start + int(first))
        self.all, self.start, self.end = nodes, start, end

    def get(self, name: str, args: dict[str, Any]) -> Any:
        page = range(self.start, self.end)
        if name == "nodes":
            return [self.all[i] for i in page]
        if name == "edges":
            return [_Record(f"{self.of}Edge", cursor=str(i), node=self.all[i]) for i in page]
        if name == "totalCount":
            return len(self.all)
        if name == "pageInfo":
            return _Record(
                "PageInfo",
                hasNextPage=self.end < len(self.all),
                hasPreviousPage=self.start > 0,
                startCursor=str(self.start) if page else None,
                endCursor=str(self.end - 1) if page else None,
            )
        return super().get(name, args)


class _Record(_Object):
    """An object whose fields are given: edges, page info, mutation payloads."""

    abstract = frozenset()

    def __init__(self, typename: str, **fields: Any) -> None:
        self.typename, self.fields = typename, fields

    def get(self, name: str, args: dict[str, Any]) -> Any:
        return self.fields[name] if name in self.fields else super().get(name, args)


class _Mutation(_Object):
    typename = "Mutation"
    abstract = frozenset()

    def __init__(self, model: FakeProjects, effects: list[str]) -> None:
        self.model = model
        self.effects = effects

    def get(self, name: str, args: dict[str, Any]) -> Any:
        handlers: dict[str, Callable[[dict[str, Any]], _Object]] = {
            "addProjectV2ItemById": self._add_item,
            "updateProjectV2ItemFieldValue": self._set_value,
        }
        if name not in handlers:
            return super().get(name, args)
        return handlers[name](dict(args.get("input") or {}))

    def _project(self, project_id: Any) -> FakeProject:
        found = next((p for p in self.model.projects if p.id == project_id), None)
        if found is None:
            raise _NotFound(_no_node(project_id))
        return found

    def _add_item(self, given: dict[str, Any]) -> _Object:
        project = self._project(given.get("projectId"))
        content = self.model._issue_by_id(str(given.get("contentId")))
        if content is None:
            raise _NotFound(_no_node(given.get("contentId")))
        item = project.item(*content)
        if item is None:  # GitHub answers an issue already on the project with its item
            item = self.model._add_item(project, *content)
            self.effects.append(f"{content[0]}#{content[1]}:card+{project.label}")
        return _Record(
            "AddProjectV2ItemByIdPayload",
            item=_ItemNode(self.model, project, item),
            clientMutationId=given.get("clientMutationId"),
        )

    def _set_value(self, given: dict[str, Any]) -> _Object:
        project = self._project(given.get("projectId"))
        item = next((i for i in project.items if i.id == given.get("itemId")), None)
        if item is None:
            raise _NotFound(_no_node(given.get("itemId")))
        target = next((f for f in project.fields if f.id == given.get("fieldId")), None)
        if target is None:
            raise _NotFound(_no_node(given.get("fieldId")))
        value = dict(given.get("value") or {})
        if set(value) != {"singleSelectOptionId"} or target.options is None:
            raise _NotModelled(f"updateProjectV2ItemFieldValue with value {sorted(value)}")
        option = next((o for o in target.options if o.id == value["singleSelectOptionId"]), None)
        if option is None:
            raise _NotFound(
                f"The single select option Id '{value['singleSelectOptionId']}' does not "
                f"belong to the field '{target.name}'."
            )
        item.values[target.id] = option.id
        self.effects.append(f"{item.repo}#{item.number}:card->{option.name}")
        return _Record(
            "UpdateProjectV2ItemFieldValuePayload",
            projectV2Item=_ItemNode(self.model, project, item),
            clientMutationId=given.get("clientMutationId"),
        )


def _no_node(node_id: Any) -> str:
    return f"Could not resolve to a node with the global id of '{node_id}'"


def _digest(*key: object) -> str:
    return hashlib.sha1(repr(key).encode(), usedforsecurity=False).hexdigest()


def _node_id(prefix: str, *key: object) -> str:
    return f"{prefix}_{_digest(*key)[:16]}"
