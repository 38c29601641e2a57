"""The Function App: registers the blueprints and nothing else (logic lives in crosscloud/)."""

import azure.functions as func

from blueprints.backup import bp as backup_bp
from blueprints.diagnostics import bp as diagnostics_bp
from blueprints.health import bp as health_bp
from blueprints.objects import bp as objects_bp
from blueprints.restore import bp as restore_bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (health_bp, objects_bp, diagnostics_bp, backup_bp, restore_bp):
    app.register_functions(blueprint)
