"""Thin trigger adapters: parse the input, call crosscloud, shape the response."""

from crosscloud.logs import guard_sdk_loggers

guard_sdk_loggers()
