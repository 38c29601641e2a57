"""The health function, called as the Functions worker would (func.HttpRequest)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func

from blueprints.health import health

ROOT = Path(__file__).resolve().parents[2]


def test_health_is_ok_and_reveals_nothing(monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", "not-even-valid")  # health must not read settings
    response = health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["status"] == "ok"
    assert set(body) == {"status", "version"}


def test_app_indexes_without_settings():
    """Indexing (importing function_app) must work with no app setting at all."""
    script = (
        "import json, function_app\n"
        "print(json.dumps({f.get_function_name(): str(getattr(f.get_trigger(), 'auth_level', ''))"
        " for f in function_app.app.get_functions()}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "AZURE_", "S3_", "BACKUP_"))}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout
    levels = json.loads(out.strip().splitlines()[-1])
    assert {"health", "list_objects", "get_object"} <= set(levels)
    assert "ANONYMOUS" in levels["health"].upper()
    assert "FUNCTION" in levels["list_objects"].upper()
    assert "FUNCTION" in levels["get_object"].upper()
