"""Shared fixtures. The whole suite runs on SQLite, and on PostgreSQL when
NIGHTSHIFT_TEST_DATABASE_URL names a server database (each test gets a fresh database)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.effects.store import Store, sqlalchemy_url
from app.settings import Settings
from tests.contract.contract import Contract, Descriptions, MissingDescriptions, load
from tests.fakes.github import FakeGitHub

SECRET = "test-webhook-secret"
POSTGRES = os.environ.get("NIGHTSHIFT_TEST_DATABASE_URL", "")


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    if not POSTGRES:
        yield f"sqlite:///{tmp_path}/nightshift.db"
        return
    name = f"ns_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(sqlalchemy_url(POSTGRES), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = POSTGRES.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store(database_url)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def github_descriptions() -> Descriptions:
    """GitHub's published API descriptions, loaded once (tests/contract)."""
    try:
        return load()
    except MissingDescriptions as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture
def github_contract(github_descriptions: Descriptions) -> Iterator[Contract]:
    """Give it to every FakeGitHub (`contract=`): what disagrees with GitHub's descriptions
    fails the test, here at teardown if it was not raised to the test already."""
    contract = Contract(github_descriptions)
    yield contract
    if contract.violations:
        pytest.fail(contract.report(), pytrace=False)


@pytest.fixture
def fake_github(github_contract: Contract) -> FakeGitHub:
    return FakeGitHub(contract=github_contract)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake_github: FakeGitHub) -> Settings:
    return Settings(
        _env_file=None,
        webhook_secret=(SECRET,),
        database_url=database_url,
        cache_dir=tmp_path / "cache",
        app_id=fake_github.app_id,
        private_key=fake_github.private_key,
        write_interval_seconds=0,
        schedule_reports=False,  # tests of the report start it themselves
    )
