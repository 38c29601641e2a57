"""The health function, called as the Functions worker would (func.HttpRequest)."""

import json

import azure.functions as func

from blueprints.health import health


def test_health_is_ok_and_reveals_nothing(monkeypatch):
    monkeypatch.setenv("AWS_ROLE_ARN", "not-even-valid")  # health must not read settings
    response = health(func.HttpRequest("GET", "http://localhost/api/health", body=b""))
    assert response.status_code == 200
    body = json.loads(response.get_body())
    assert body["status"] == "ok"
    assert set(body) == {"status", "version"}


def test_app_indexes_without_settings(monkeypatch):
    for name in ("AZURE_STORAGE_CONTAINER_URL", "AWS_ROLE_ARN", "S3_BUCKET", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    import importlib

    import function_app

    app = importlib.reload(function_app).app
    names = {f.get_function_name() for f in app.get_functions()}
    assert {"health", "list_objects", "get_object"} <= names
    levels = {f.get_function_name(): str(f.get_trigger().auth_level).lower() for f in app.get_functions()
              if type(f.get_trigger()).__name__ == "HttpTrigger"}
    assert "anonymous" in levels["health"]
    assert "function" in levels["list_objects"]
    assert "function" in levels["get_object"]
