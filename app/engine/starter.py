"""Starting a configured instance's workflows from anywhere, steps included.

DBOS does not let a workflow start another from inside a step (it asserts), and the
executor runs every action in a step; so the engines enqueue through a DBOS client, as from
outside. One client per engine, made on first use and closed with the engine.
"""

from __future__ import annotations

import threading
from typing import Any

from dbos import DBOSClient, DBOSConfiguredInstance, EnqueueOptions


class Starter:
    def __init__(self) -> None:
        self._client: DBOSClient | None = None
        self._lock = threading.Lock()
        self.system_database_url = ""
        self.version = ""

    def bind(self, system_database_url: str, version: str) -> None:
        self.close()  # a client of an earlier launch talks to that launch's database
        self.system_database_url = system_database_url
        self.version = version

    def client(self) -> DBOSClient:
        with self._lock:
            if self._client is None:
                self._client = DBOSClient(
                    system_database_url=self.system_database_url, application_name="nightshift"
                )
            return self._client

    def enqueue(
        self,
        instance: DBOSConfiguredInstance,
        workflow: str,
        queue: str,
        workflow_id: str,
        *args: Any,
        partition: str | None = None,
    ) -> str:
        """Enqueue `instance`'s workflow under `workflow_id` (a second enqueue of the same id
        returns the first workflow: idempotent), in `partition` of the queue if given."""
        options: EnqueueOptions = {
            "workflow_name": workflow,
            "queue_name": queue,
            "workflow_id": workflow_id,
            "app_version": self.version,
            "class_name": type(instance).__qualname__,
            "instance_name": instance.config_name,
        }
        if partition is not None:
            options["queue_partition_key"] = partition
        self.client().enqueue(options, *args)
        return workflow_id

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.destroy()
                self._client = None
