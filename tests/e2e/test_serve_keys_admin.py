"""`devstack serve`: keys, the admin API and timers in error, as the Functions host has them (issue 10)."""

from __future__ import annotations

import json
import os
import time

import pytest
import requests

from tests.e2e.conftest import start_serve, stop

pytestmark = pytest.mark.e2e


def _get(served, path: str, key: str | None = None, **params: str) -> requests.Response:
    headers = {"x-functions-key": key} if key is not None else {}
    return requests.get(f"{served.url}{path}", headers=headers, params=params, timeout=60)


def test_each_function_has_its_own_key(served):
    """Host secret manager: a function key grants function level for its own function only."""
    keys = served.keys
    assert keys["DEVSTACK_FUNCTION_KEY_LIST_OBJECTS"] != keys["DEVSTACK_FUNCTION_KEY_GET_OBJECT"]
    assert _get(served, "/api/objects", keys["DEVSTACK_FUNCTION_KEY_LIST_OBJECTS"], limit="1").status_code == 200
    refused = _get(served, "/api/objects", keys["DEVSTACK_FUNCTION_KEY_GET_OBJECT"], limit="1")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


def test_the_host_key_opens_every_function_level_route_and_no_admin_one(served):
    """Host keys grant function level for every function; admin level needs the master key."""
    host_key = served.keys["DEVSTACK_HOST_KEY"]
    assert served.keys["DEVSTACK_FUNCTION_KEY"] == host_key  # the older name of the same key
    assert _get(served, "/api/objects", host_key, limit="1").status_code == 200
    assert _get(served, "/api/objects/s3/no-such-key", host_key).status_code == 404  # reached get_object
    assert _get(served, "/api/diagnostics", host_key).status_code == 401
    own = served.keys["DEVSTACK_FUNCTION_KEY_DIAGNOSTICS"]
    assert _get(served, "/api/diagnostics", own).status_code == 401  # its own key is function level


def test_the_master_key_opens_function_and_admin_levels(served):
    master = served.keys["DEVSTACK_MASTER_KEY"]
    assert _get(served, "/api/objects", master, limit="1").status_code == 200
    assert _get(served, "/api/diagnostics", master).status_code in (200, 503)  # the doctor answered


def test_the_header_key_takes_precedence_over_code(served):
    """AuthenticationLevelHandler: `x-functions-key` is used when present, `?code=` only otherwise."""
    good, bad = served.keys["DEVSTACK_HOST_KEY"], "not-a-key"
    assert _get(served, "/api/objects", bad, limit="1", code=good).status_code == 401
    assert _get(served, "/api/objects", None, limit="1", code=good).status_code == 200
    assert _get(served, "/api/health", bad).status_code == 200  # anonymous needs no key, even a wrong one


@pytest.mark.parametrize(("body", "headers", "status"), [
    (None, {}, 400), (b"", {"Content-Type": "application/json"}, 400),
    (b"not json", {"Content-Type": "application/json"}, 400), (b'["input"]', {"Content-Type": "application/json"}, 400),
    (b'{"input": ""}', {"Content-Type": "text/plain"}, 415),
])
def test_admin_invoke_needs_a_json_body(served, body, headers, status):
    """FunctionsController.Invoke binds `[FromBody] FunctionInvocation`; no body is a 400."""
    response = requests.post(f"{served.url}/admin/functions/backup_timer", data=body, timeout=10,
                             headers={"x-functions-key": served.keys["DEVSTACK_MASTER_KEY"], **headers})
    assert response.status_code == status
    assert response.json()["error"]["code"] in ("invalid_body", "unsupported_media_type")


def test_admin_invoke_needs_the_master_key(served):
    for key in (served.keys["DEVSTACK_HOST_KEY"], served.keys["DEVSTACK_FUNCTION_KEY_BACKUP_TIMER"]):
        response = requests.post(f"{served.url}/admin/functions/backup_timer", json={"input": ""}, timeout=10,
                                 headers={"x-functions-key": key})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    response = requests.post(f"{served.url}/admin/functions/no_such_function", json={"input": ""}, timeout=10,
                             headers={"x-functions-key": served.keys["DEVSTACK_MASTER_KEY"]})
    assert response.status_code == 404


def test_admin_invoke_answers_202_and_runs_the_timer_in_the_background(devstack_env, tmp_path, azure_admin,
                                                                         aws_admin, prefix):
    """FunctionsController.Invoke: 202 Accepted at once, the function runs afterwards (Task.Run)."""
    azure_admin.upload_blob(f"{prefix}one.txt", b"1", overwrite=True)
    dest = f"{devstack_env['BACKUP_S3_PREFIX']}{prefix}"
    env = {**os.environ, "BACKUP_SOURCE_PREFIX": prefix, "BACKUP_S3_PREFIX": dest}
    proc, served = start_serve(tmp_path / "serve.log", env)
    try:
        response = requests.post(f"{served.url}/admin/functions/BACKUP_TIMER", json={"input": ""}, timeout=10,
                                 headers={"x-functions-key": served.keys["DEVSTACK_MASTER_KEY"]})
        assert response.status_code == 202
        assert "Executed 'Functions.backup_timer'" not in served.log_text()  # not waited for
        deadline = time.monotonic() + 120
        while "Executed 'Functions.backup_timer'" not in served.log_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "Executed 'Functions.backup_timer' (Succeeded" in served.log_text()
    finally:
        stop(proc)
    copied = aws_admin.list_objects_v2(Bucket=devstack_env["BACKUP_S3_BUCKET"], Prefix=dest)
    assert f"{dest}{prefix}one.txt" in {o["Key"] for o in copied.get("Contents", [])}


@pytest.mark.parametrize(("schedule", "reason"), [
    (None, "'%BACKUP_SCHEDULE%' does not resolve to a value."),
    ("every night", "The schedule expression 'every night' was not recognized as a valid cron expression or "
                    "timespan string."),
    ("0 0 25 * * *", "The schedule expression '0 0 25 * * *' was not recognized"),
])
def test_a_bad_schedule_puts_the_timer_in_error_and_the_rest_keeps_working(devstack_env, tmp_path, schedule, reason):
    """The host resolves `%BACKUP_SCHEDULE%` and parses it (NCRONTAB, else TimeSpan) at start-up;
    a failure is logged as "The 'backup_timer' function is in error: ...", the function is not
    run (admin invoke 404, its status lists the error), and every other function still works."""
    state = tmp_path / "state"
    state.mkdir()
    from devstack import envfile

    values = envfile.read()
    env = {k: v for k, v in os.environ.items() if k != "BACKUP_SCHEDULE"}
    if schedule is None:
        values.pop("BACKUP_SCHEDULE")
    else:
        values["BACKUP_SCHEDULE"] = schedule
    envfile.write(values, state / "env")
    proc, served = start_serve(tmp_path / "serve.log", {**env, "DEVSTACK_DIR": str(state)})
    try:
        log = served.log_text()
        assert f"The 'backup_timer' function is in error: Error indexing method 'Functions.backup_timer'. {reason}" \
            in log
        master = {"x-functions-key": served.keys["DEVSTACK_MASTER_KEY"]}
        response = requests.post(f"{served.url}/admin/functions/backup_timer", json={"input": ""}, headers=master,
                                 timeout=10)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "function_in_error"
        status = requests.get(f"{served.url}/admin/functions/backup_timer/status", headers=master, timeout=10)
        assert reason in json.dumps(status.json()["errors"])
        assert "Executing 'Functions.backup_timer'" not in served.log_text()
        listing = requests.get(f"{served.url}/api/objects", params={"limit": "1"}, timeout=30,
                               headers={"x-functions-key": served.keys["DEVSTACK_HOST_KEY"]})
        assert listing.status_code == 200
        assert requests.get(f"{served.url}/api/health", timeout=10).status_code == 200
    finally:
        stop(proc)


def test_a_valid_schedule_is_indexed_and_its_next_runs_logged(served):
    """The host logs the next 5 occurrences of each timer schedule at start-up."""
    assert "The next 5 occurrences of the 'backup_timer' schedule (Cron: '0 0 2 * * *') will be:" in \
        served.log_text()
    assert "in error" not in served.log_text()
