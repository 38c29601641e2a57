"""Thin trigger adapters: parse the input, call crosscloud, shape the response."""

import logging

# azure-core logs every request's headers at INFO; keep the function logs about our work.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
logging.getLogger("azure.identity").setLevel(logging.WARNING)
