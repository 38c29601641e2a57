"""Logging guard rails for the app's entry points (functions and CLI).

The SDKs log request headers at DEBUG, and botocore's DEBUG lines include the
`X-Amz-Security-Token` of temporary credentials. Capping those loggers at INFO means
turning the root logger up to DEBUG while troubleshooting never writes a credential.
"""

from __future__ import annotations

import logging

SDK_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "azure", "msal")


def guard_sdk_loggers() -> None:
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)
    # azure-core logs every request's (redacted) headers at INFO: noise in function logs.
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
    logging.getLogger("azure.identity").setLevel(logging.WARNING)
