"""Reading issue and pull-request text with a markdown parser (markdown-it-py), not regexes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")
_CRITERIA_HEADINGS = ("acceptance criteria", "acceptance criterion", "definition of done")


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    checked: bool


@dataclass(frozen=True)
class ListItem:
    """A list item's first paragraph: its markdown source and its inline code spans."""

    text: str
    code: tuple[str, ...] = ()


def checklist(text: str | None) -> list[ChecklistItem]:
    """The task-list items (`- [ ] ...`, `- [x] ...`) of a markdown text, in order."""
    items: list[ChecklistItem] = []
    waiting = False  # inside a list item, before its first inline text (one pass: linear)
    for token in _PARSER.parse(text or ""):
        if token.type == "list_item_open":
            waiting = True
        elif token.type == "inline" and waiting:
            waiting = False
            item = _checkbox(token.content)
            if item is not None:
                items.append(item)
    return items


def _checkbox(content: str) -> ChecklistItem | None:
    if content[:3].lower() in ("[ ]", "[x]") and (len(content) == 3 or content[3] == " "):
        return ChecklistItem(content[3:].strip(), content[1].lower() == "x")
    return None


def title_key(title: str) -> str:
    """A heading's title as headings are compared: lowercase, no trailing colon."""
    return title.strip().lower().rstrip(":").strip()


def section_items(text: str | None, heading: Callable[[str], bool]) -> list[ListItem] | None:
    """The list items (nested ones too) of the first section whose heading matches.

    `heading` gets each title through `title_key`. The section runs to the next heading of
    the same or a higher level, so its subsections belong to it. None when no heading
    matches; an empty list when the section has no list.
    """
    tokens = _PARSER.parse(text or "")
    level: int | None = None  # the matched heading's level, once inside its section
    items: list[ListItem] = []
    waiting = False
    for index, token in enumerate(tokens):
        if token.type == "heading_open":
            this = int(token.tag[1:])
            if level is not None and this <= level:
                break
            title = tokens[index + 1].content if index + 1 < len(tokens) else ""
            if level is None and heading(title_key(title)):
                level = this
        elif level is None:
            continue
        elif token.type == "list_item_open":
            waiting = True
        elif token.type == "inline" and waiting:
            waiting = False
            spans = tuple(
                child.content.strip()
                for child in token.children or ()
                if child.type == "code_inline" and child.content.strip()
            )
            items.append(ListItem(token.content.strip(), spans))
    return items if level is not None else None


def acceptance_criteria(text: str | None) -> list[str]:
    """The acceptance criteria of an issue, as markdown source, in order.

    The checklist items of an "Acceptance criteria" (or "Definition of done") section, or
    its plain list items when it has no checklist (so notes nested under a checklist item
    are not criteria); when there is no such section, or it has no list, every checklist
    item of the text.
    """
    items = section_items(text, lambda title: title.startswith(_CRITERIA_HEADINGS))
    if items:
        boxes = [box for box in map(_checkbox, (item.text for item in items)) if box]
        found = [box.text for box in boxes] if boxes else [item.text for item in items]
        return [criterion for criterion in found if criterion]
    return [item.text for item in checklist(text) if item.text]


def prose(text: str | None) -> list[str]:
    """The plain text of each paragraph, heading and table cell, in order.

    Code spans, code blocks and HTML (comments included) are left out, so what is quoted as
    code is never read as prose; link texts stay in, their targets do not.
    """
    found: list[str] = []
    for token in _PARSER.parse(text or ""):
        if token.type != "inline":
            continue
        parts: list[str] = []
        for child in token.children or ():
            if child.type == "text":
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append("\n")
            elif child.type in ("code_inline", "html_inline", "image"):
                parts.append(" ")
        found.append("".join(parts))
    return found


def section_titles(text: str | None) -> list[str]:
    """The headings of a markdown text, as plain text."""
    tokens = _PARSER.parse(text or "")
    return [
        tokens[index + 1].content.strip()
        for index, token in enumerate(tokens)
        if token.type == "heading_open" and index + 1 < len(tokens)
    ]


def has_acceptance_criteria(text: str | None) -> bool:
    """True when the text has a checklist or an "Acceptance criteria" section."""
    if checklist(text):
        return True
    return any(
        title.lower().rstrip(":").startswith(_CRITERIA_HEADINGS) for title in section_titles(text)
    )


def words(text: str | None) -> set[str]:
    """The words and inline-code spans of a text, punctuation trimmed: what might be a path."""
    found: set[str] = set()
    for token in _PARSER.parse(text or ""):
        for child in token.children or ():
            if child.type == "code_inline":
                found.add(child.content.strip())
            elif child.type == "text":
                found.update(w.strip("()[]{}<>,.;:!?'\"*") for w in child.content.split())
        if token.type in ("fence", "code_block"):
            found.update(w.strip("()[]{}<>,;:'\"") for w in token.content.split())
    return {w for w in found if w}
