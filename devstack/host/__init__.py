"""The Functions host as `python -m devstack serve` emulates it, one behaviour per module.

kestrel (request target -> path and query), routing (ASP.NET Core route templates), keys
(master, host and function keys), timers (binding expressions, NCRONTAB), metadata (the
worker's indexing of function_app), dispatch (route, authorise, invoke), server (HTTP/1.1).
"""
