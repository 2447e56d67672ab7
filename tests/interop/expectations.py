"""What the stock-client scenario (``js/client_scenario.mjs``) must observe, on any Mesh server.

One set of expectations for the original ``@prsm/realtime`` server and for ours: the reference run
proves the expectations, the run against our server proves compatibility.
"""

from __future__ import annotations

from typing import Any

__all__ = ["assert_client_scenario"]


def _by_id(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(members, key=lambda member: member["id"])


def assert_client_scenario(result: dict[str, Any]) -> None:
    """Assert every observation of one scenario run."""
    # Connection: both clients online with distinct server-assigned ids.
    a_id, b_id = result["a"]["connectionId"], result["b"]["connectionId"]
    assert result["a"]["status"] == 3 and result["b"]["status"] == 3  # Status.ONLINE
    assert isinstance(a_id, str) and isinstance(b_id, str) and a_id and a_id != b_id
    assert result["undefinedKeys"] == []

    # Commands and error payloads (the stock client resolves with the error object).
    assert result["echo"] == {"hello": "world"}
    assert result["unknownCommand"] == {
        "error": 'Command "no-such-command" not found',
        "code": "ENOTFOUND",
        "name": "CommandError",
    }
    assert result["throws"] == {"error": "boom", "code": "ESERVER", "name": "Error"}

    # Rooms: `present` lists every member as {id, metadata}, the caller included.
    assert result["joinA"] == {"success": True, "present": [{"id": a_id, "metadata": None}]}
    assert result["joinB"]["success"] is True
    assert _by_id(result["joinB"]["present"]) == _by_id(
        [{"id": a_id, "metadata": None}, {"id": b_id, "metadata": None}]
    )

    # Connection metadata: replace, read by self and by another client, then merge.
    assert result["setMetadata"] is True
    assert result["myMetadata"] == {"name": "alice"}
    assert result["otherMetadata"] == {"name": "alice"}
    assert result["mergeMetadata"] is True
    assert result["myMetadataAfterMerge"] == {"name": "alice", "status": "away"}

    # Room metadata set through a server-side command, read through rt/get-room-metadata.
    assert result["setRoomMeta"] is True
    assert result["roomMetadata"] == {"topic": "x"}

    # Room broadcast reaches every member as a plain {command, payload} push.
    assert result["broadcastRoom"] is True
    assert result["roomNewsB"] == {"n": 1}
    assert result["roomNewsA"] == {"n": 1}

    assert result["leaveB"] == {"success": True}

    # close(): offline, ids kept, lifecycle events in order.
    assert result["final"]["a"] == {"connectionId": a_id, "status": 0, "statusName": "offline"}
    assert result["final"]["b"] == {"connectionId": b_id, "status": 0, "statusName": "offline"}
    assert result["events"] == {
        "a": ["connect", "close", "disconnect"],
        "b": ["connect", "close", "disconnect"],
    }
