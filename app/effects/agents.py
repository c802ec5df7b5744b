"""Adapters between the executor's ports and the effects that carry them out: messages to
agents through their roster transports, and project card moves."""

from __future__ import annotations

from typing import Any

from app.core.actions import MoveCard, SendToAgent
from app.core.assignment import Message
from app.effects.projects import ProjectBoard
from app.effects.repo_config import ConfigSource
from app.effects.store import Store
from app.effects.transports import Transports


class AgentMessages:
    """The executor's AgentMessenger: finds the agent in the repository's roster as the last
    dispatch pass read it, and sends through its transport."""

    def __init__(self, store: Store, transports: Transports) -> None:
        self.store = store
        self.transports = transports

    def deliver(self, installation_id: int | None, action: SendToAgent) -> tuple[str, str]:
        agent = self.store.roster_agent(action.repo, action.agent)
        if agent is None:
            return "unknown_agent", f"{action.agent} is not in {action.repo}'s roster"
        message = Message.model_validate(action.message)
        sent = self.transports.send(
            installation_id, action.repo, action.number, agent, message, action.key
        )
        return sent.outcome, sent.detail

    def describe(self, action: SendToAgent) -> dict[str, Any]:
        agent = self.store.roster_agent(action.repo, action.agent)
        if agent is None:
            return {"agent": action.agent, "error": "not in the roster"}
        message = Message.model_validate(action.message)
        return self.transports.request_for(action.repo, action.number, agent, message, action.key)


class ProjectCards:
    """The executor's CardMover: the repository's configured project, through GraphQL."""

    def __init__(self, board: ProjectBoard, configs: ConfigSource) -> None:
        self.board = board
        self.configs = configs

    def move_card(self, installation_id: int, action: MoveCard) -> tuple[str, str]:
        project = self.configs.load(installation_id, action.repo).config.project
        result = self.board.move(
            installation_id, action.repo, action.number, project, action.column
        )
        return result.outcome, result.detail
