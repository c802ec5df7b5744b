"""Reading issue and pull-request text with a markdown parser (markdown-it-py), not regexes."""

from __future__ import annotations

from dataclasses import dataclass

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark")
_CRITERIA_HEADINGS = ("acceptance criteria", "acceptance criterion", "definition of done")


@dataclass(frozen=True)
class ChecklistItem:
    text: str
    checked: bool


def checklist(text: str | None) -> list[ChecklistItem]:
    """The task-list items (`- [ ] ...`, `- [x] ...`) of a markdown text, in order."""
    items: list[ChecklistItem] = []
    waiting = False  # inside a list item, before its first inline text (one pass: linear)
    for token in _PARSER.parse(text or ""):
        if token.type == "list_item_open":
            waiting = True
        elif token.type == "inline" and waiting:
            waiting = False
            content = token.content
            if content[:3].lower() in ("[ ]", "[x]") and (len(content) == 3 or content[3] == " "):
                items.append(ChecklistItem(content[3:].strip(), content[1].lower() == "x"))
    return items


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
