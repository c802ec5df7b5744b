"""The parsed delivery: what arrived, from where, about what."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import msgspec
import orjson
from pydantic import BaseModel, ConfigDict, ValidationError


class EnvelopeError(ValueError):
    """The body is not a JSON object."""


@dataclass(frozen=True)
class Envelope:
    """One webhook delivery, routed on GitHub's event-name strings.

    The payload stays a plain mapping: rules read the few fields they use through lenient
    views (below), so an older or Enterprise Server payload that lacks newer fields does
    not break a rule that never looks at them.
    """

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    sender: str | None
    payload: Mapping[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        """`issues.labeled`, or the bare event name when there is no action."""
        return f"{self.event}.{self.action}" if self.action else self.event

    @property
    def issue_number(self) -> int | None:
        """The number of the issue (or pull request, for issue_comment) the delivery is about."""
        issue = self.payload.get("issue")
        return _int_field(issue, "number")

    @classmethod
    def parse(cls, delivery_id: str, event: str, body: bytes | Mapping[str, Any]) -> Envelope:
        if isinstance(body, bytes | bytearray):
            try:
                payload = orjson.loads(body)  # a 12 KB body parses 4x faster than with json
            except orjson.JSONDecodeError as exc:
                raise EnvelopeError(f"body is not valid JSON: {exc}") from None
        else:
            payload = body
        if not isinstance(payload, Mapping):
            raise EnvelopeError("body is not a JSON object")
        action = payload.get("action")
        installation = payload.get("installation")
        repository = payload.get("repository")
        sender = payload.get("sender")
        return cls(
            delivery_id=delivery_id,
            event=event,
            action=_str(action),
            installation_id=_int_field(installation, "id"),
            repository=_str_field(repository, "full_name"),
            sender=_str_field(sender, "login"),
            payload=payload,
        )


@dataclass(frozen=True)
class Head:
    """What the ingress reads of a body: the columns a stored delivery is listed by."""

    action: str | None
    installation_id: int | None
    repository: str | None


class _Installation(msgspec.Struct):
    id: Any = None


class _Repository(msgspec.Struct):
    full_name: Any = None


class _Head(msgspec.Struct):
    action: Any = None
    installation: _Installation | None = None
    repository: _Repository | None = None


_HEAD = msgspec.json.Decoder(_Head)


def read_head(body: bytes) -> Head:
    """The head of a body that must be a JSON object, checked whole without building it:
    a third of the CPU of `Envelope.parse` on a 12 KB body. An odd shape (a field of
    another type than GitHub sends, or nesting deeper than msgspec goes) is read by the
    full parse instead."""
    try:
        head = _HEAD.decode(body)
        if not body.isascii():
            body.decode("utf-8")  # msgspec does not look inside the strings it skips
    except (msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        env = Envelope.parse("", "", body)
        return Head(env.action, env.installation_id, env.repository)
    except msgspec.DecodeError as exc:
        raise EnvelopeError(f"body is not valid JSON: {exc}") from None
    return Head(
        action=_str(head.action),
        installation_id=_int(head.installation.id) if head.installation else None,
        repository=_str(head.repository.full_name) if head.repository else None,
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _int_field(obj: object, key: str) -> int | None:
    return _int(obj.get(key) if isinstance(obj, Mapping) else None)


def _str_field(obj: object, key: str) -> str | None:
    return _str(obj.get(key) if isinstance(obj, Mapping) else None)


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserView(_View):
    login: str
    type: str = "User"


class LabelView(_View):
    name: str


class IssueView(_View):
    """The fields of an issue the rules use; everything else in the payload is ignored."""

    number: int
    title: str = ""
    body: str | None = None
    state: str = "open"
    locked: bool = False
    labels: tuple[LabelView, ...] = ()
    assignees: tuple[UserView, ...] = ()
    user: UserView | None = None
    html_url: str = ""
    created_at: datetime | None = None

    @property
    def label_names(self) -> frozenset[str]:
        return frozenset(label.name for label in self.labels)


class RepoRefView(_View):
    full_name: str = ""


class BranchView(_View):
    ref: str = ""
    sha: str
    repo: RepoRefView | None = None  # null when a fork's repository was deleted


class PullView(_View):
    """The fields of a pull request the rules use."""

    number: int
    title: str = ""
    body: str | None = None
    state: str = "open"
    draft: bool = False
    merged: bool = False
    head: BranchView
    base: BranchView
    user: UserView | None = None
    html_url: str = ""

    def is_fork(self, repository: str) -> bool:
        """From another repository (a deleted fork counts as one)."""
        source = self.head.repo.full_name if self.head.repo is not None else ""
        return source.lower() != repository.lower()


class ViewError(ValueError):
    """The payload lacks a field a rule needs."""


V = TypeVar("V", bound=_View)


def view(model: type[V], payload: Mapping[str, Any], key: str) -> V:
    """Read `payload[key]` through a lenient view, or raise ViewError naming the field."""
    try:
        return model.model_validate(payload.get(key))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in (key, *first["loc"]))
        raise ViewError(f"payload field {where}: {first['msg']}") from None
