"""The local cloud: Azurite (HTTPS + OAuth), a managed-identity endpoint, and a strict moto.

`python -m devstack up | down | serve`. Never deployed (see `.funcignore`).
"""
