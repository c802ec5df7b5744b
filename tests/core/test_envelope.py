"""The ingress's quick read of a body agrees with the full parse, on every shape."""

from __future__ import annotations

import orjson
import pytest

from app.core.envelope import Envelope, EnvelopeError, Head, read_head
from tests.helpers import PAYLOADS

REAL = (PAYLOADS / "issues.labeled.json").read_bytes()


@pytest.mark.parametrize(
    ("body", "head"),
    [
        pytest.param(REAL, Head("labeled", None, "Codertocat/Hello-World"), id="real-payload"),
        pytest.param(
            b'{"action":"opened","installation":{"id":7},"repository":{"full_name":"o/r"}}',
            Head("opened", 7, "o/r"),
            id="all-three",
        ),
        pytest.param(b"{}", Head(None, None, None), id="empty-object"),
        pytest.param(b'{"zen": "Keep it logically awesome."}', Head(None, None, None), id="ping"),
        # odd shapes: a field of another type than GitHub sends is not read, never an error
        pytest.param(b'{"action": 3}', Head(None, None, None), id="action-not-a-string"),
        pytest.param(b'{"installation": "7"}', Head(None, None, None), id="installation-string"),
        pytest.param(b'{"installation": {"id": true}}', Head(None, None, None), id="id-bool"),
        pytest.param(b'{"installation": {"id": "7"}}', Head(None, None, None), id="id-string"),
        pytest.param(b'{"repository": null}', Head(None, None, None), id="repository-null"),
        pytest.param(b'{"repository": []}', Head(None, None, None), id="repository-array"),
        pytest.param(
            b'{"repository": {"full_name": 1}, "action": "x"}', Head("x", None, None), id="name-int"
        ),
    ],
)
def test_read_head(body: bytes, head: Head) -> None:
    assert read_head(body) == head
    env = Envelope.parse("d", "e", body)
    assert (env.action, env.installation_id, env.repository) == (
        head.action,
        head.installation_id,
        head.repository,
    )


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'{"a": [1, 2,]}', id="bad-inside-a-skipped-field"),
        pytest.param(b'{"a": tru}', id="bad-literal"),
        pytest.param(b"{} trailing", id="trailing-bytes"),
        pytest.param(b'{"a": "\xff"}', id="invalid-utf8-in-a-skipped-string"),
        pytest.param(b"[1, 2]", id="an-array"),
        pytest.param(b'"a string"', id="a-string"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}", id="nested-too-deep"),
    ],
)
def test_read_head_refuses_what_is_not_a_json_object(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        read_head(body)
    with pytest.raises(EnvelopeError):
        Envelope.parse("d", "e", body)


def test_every_stored_payload_reads_the_same_both_ways() -> None:
    for path in sorted(PAYLOADS.glob("*.json")):
        body = path.read_bytes()
        if not isinstance(orjson.loads(body), dict):
            continue
        env = Envelope.parse("d", "e", body)
        assert read_head(body) == Head(env.action, env.installation_id, env.repository), path
