"""The backup triggers (timer, POST /api/backup) and `python -m crosscloud backup`, with the
engine replaced by a recorder: what is tested here is the adapters (status, flags, logs)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from blueprints import backup as backup_bp
from crosscloud import backup, cli
from crosscloud.backup.lease import LeaseHeld
from crosscloud.backup.report import BackupReport, Failure, ProgressBar, render_bar
from crosscloud.errors import SettingError

ROOT = Path(__file__).resolve().parents[2]


def make_report(**changes: object) -> BackupReport:
    report = BackupReport(run_id="r1", source="src", destination="dst", started="t0", finished="t1",
                          complete=True, copied=2, bytes_copied=10)
    for name, value in changes.items():
        setattr(report, name, value)
    return report


@pytest.fixture
def calls(monkeypatch):
    """Replace the engine; `calls.result` is what it returns (or raises)."""

    class Calls(list):
        result: object = make_report()

    recorded = Calls()

    def fake_run(settings=None, *, dry_run=False, progress=None, max_seconds=None):  # noqa: ANN001, ANN202
        recorded.append({"dry_run": dry_run, "max_seconds": max_seconds, "progress": progress})
        if isinstance(recorded.result, Exception):
            raise recorded.result
        return recorded.result

    monkeypatch.setattr(backup, "run_configured", fake_run)
    return recorded


def post(query: str = "") -> func.HttpResponse:
    params = dict(p.split("=", 1) for p in query.split("&") if p)
    return backup_bp.backup_now(func.HttpRequest("POST", f"http://localhost/api/backup?{query}", body=b"",
                                                 params=params))


def test_post_runs_a_backup_within_the_http_budget(calls):
    response = post()
    assert response.status_code == 200
    assert json.loads(response.get_body())["run_id"] == "r1"
    assert calls == [{"dry_run": False, "max_seconds": backup.HTTP_TIME_BUDGET_S, "progress": None}]


def test_post_dry_run_flag(calls):
    assert post("dry_run=true").status_code == 200
    assert calls[0]["dry_run"] is True


def test_post_bad_flag_is_a_400_and_runs_nothing(calls):
    response = post("dry_run=maybe")
    assert response.status_code == 400
    assert json.loads(response.get_body())["error"]["code"] == "invalid_dry_run"
    assert calls == []


@pytest.mark.parametrize("changes", [{"failed_count": 1, "failed": [Failure("k", "why")]},
                                     {"complete": False, "stop_reason": "time budget of 200 s reached"}])
def test_post_partial_run_is_207_with_the_report(calls, changes):
    calls.result = make_report(**changes)
    response = post()
    assert response.status_code == 207
    assert json.loads(response.get_body())["run_id"] == "r1"


def test_post_while_another_run_holds_the_lease_is_409(calls):
    calls.result = LeaseHeld("another backup run (x) holds the lease until 2026-01-01T00:00:00Z")
    response = post()
    assert response.status_code == 409
    assert response.headers["Retry-After"] == "60"
    assert json.loads(response.get_body())["error"]["code"] == "backup_running"


def test_post_with_a_missing_setting_names_it(calls):
    calls.result = SettingError("app setting AWS_ROLE_ARN is not set")
    response = post()
    assert response.status_code == 500
    assert "AWS_ROLE_ARN" in json.loads(response.get_body())["error"]["message"]


def test_timer_past_due_is_logged_and_still_runs(calls, caplog):
    backup_bp.backup_timer(TimerRequest(past_due=True))
    assert "past due" in caplog.text
    assert calls[0]["max_seconds"] is None  # the timer has the whole function timeout


def test_timer_skips_quietly_when_another_run_holds_the_lease(calls, caplog):
    calls.result = LeaseHeld("another backup run (x) holds the lease")
    backup_bp.backup_timer(TimerRequest(past_due=False))
    assert "backup skipped" in caplog.text


def test_timer_fails_the_invocation_when_objects_failed(calls):
    calls.result = make_report(failed_count=2)
    with pytest.raises(RuntimeError, match="2 failed object"):
        backup_bp.backup_timer(TimerRequest(past_due=False))


def test_timer_binding_reads_the_schedule_from_the_app_setting():
    script = ("import json, function_app\n"
              "print(json.dumps({f.get_function_name(): f.get_bindings_dict() for f in "
              "function_app.app.get_functions()}, default=str))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "S3_", "BACKUP_"))}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    functions = json.loads(out.strip().splitlines()[-1])
    (timer,) = functions["backup_timer"]["bindings"]
    assert timer["schedule"] == "%BACKUP_SCHEDULE%"
    assert timer["useMonitor"] is True
    assert timer["runOnStartup"] is False
    http = functions["backup_now"]["bindings"][0]
    assert http["route"] == "backup"
    assert "ADMIN" in http["authLevel"].upper()


def test_cli_prints_a_summary_and_exits_0(calls, capsys):
    assert cli.main(["backup"]) == 0
    out = capsys.readouterr().out
    assert "backup r1: complete" in out
    assert "copied 2 (10 B)" in out
    assert calls[0]["progress"] is None  # stderr is not a terminal under pytest


def test_cli_json_and_exit_1_on_failures(calls, capsys):
    calls.result = make_report(failed_count=1, failed=[Failure("k", "why")])
    assert cli.main(["backup", "--dry-run", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["failed"] == [{"key": "k", "reason": "why"}]
    assert calls[0]["dry_run"] is True


def test_cli_lease_held_is_one_line_and_exit_1(calls, capsys):
    calls.result = LeaseHeld("another backup run (x) holds the lease")
    assert cli.main(["backup"]) == 1
    assert capsys.readouterr().err.strip() == "crosscloud: another backup run (x) holds the lease"


def test_progress_bar_draws_in_place():
    out = io.StringIO()
    bar = ProgressBar(out)
    bar({"listed": 10, "done": 5, "bytes_moved": 512, "bytes_planned": 1024}, 1.0)
    bar({"listed": 10, "done": 10, "bytes_moved": 1024, "bytes_planned": 1024}, 2.0)
    bar.close()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("[" + "#" * 14 + "." * 14 + "] 5/10 objects")
    assert frames[1].startswith("[" + "#" * 28 + "] 10/10 objects  1.0 KiB/1.0 KiB")
    assert out.getvalue().endswith("\n")
    assert "MiB/s" in render_bar({"listed": 0, "done": 0, "bytes_moved": 0, "bytes_planned": 0}, 0.0)
    still_listing = {"listed": 10, "done": 5, "bytes_moved": 0, "bytes_planned": 0, "listing": 1}
    assert "] 5/10+ objects" in render_bar(still_listing, 1.0)


def test_report_logger_is_silenced_only_by_the_cli(calls):
    logging.getLogger(backup.REPORT_LOGGER).setLevel(logging.NOTSET)
    cli.main(["backup"])
    assert logging.getLogger(backup.REPORT_LOGGER).level == logging.CRITICAL
    logging.getLogger(backup.REPORT_LOGGER).setLevel(logging.NOTSET)
