"""Runs queue-triggered functions the way the Functions host's queue listener does.

What it copies (Azure Functions docs, "Azure Queue storage trigger", host.json settings;
WebJobs `QueueListener` / `QueueProcessor`):
- settings from host.json `extensions.queues`, overridable per app setting
  `AzureFunctionsJobHost__extensions__queues__<name>` as the host allows; defaults
  batchSize 16, newBatchThreshold batchSize/2, maxDequeueCount 5, visibilityTimeout 0,
  maxPollingInterval 1 min; messages base64-encoded (the host's default messageEncoding);
- polling: a batch of up to batchSize messages, the next batch once the messages in flight
  drop to newBatchThreshold; an empty queue backs off (randomised, doubling from 100 ms up
  to maxPollingInterval), a message found resets it;
- a message is taken invisible for 10 minutes and kept invisible while its function runs
  (renewed at half that); success deletes it; a failure makes it visible again after
  visibilityTimeout, or, once its dequeue count reached maxDequeueCount, copies it to
  `<queue>-poison` and deletes it; a message seen with a dequeue count above
  maxDequeueCount (its host died mid-run every time) goes to the poison queue unrun;
- a queue whose name ends in `-poison` has no poison queue: a failure leaves its message
  invisible until the message lease ends;
- connections: `<name>` as a connection string, else the identity-based
  `<name>__queueServiceUri` (or `__serviceUri`) with `<name>__clientId` for a
  user-assigned managed identity.
`DEVSTACK_QUEUE_LEASE_SECONDS` (devstack only, not a host setting) shortens the host's fixed
10-minute message lease so tests can watch a killed host's message come back.
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import AzureError, ResourceExistsError

log = logging.getLogger("devstack.queues")
OVERRIDE = "AzureFunctionsJobHost__extensions__queues__"
MESSAGE_LEASE_S = 600.0  # the host's fixed visibility while a function runs
MIN_POLL_S = 0.1
POISON = "-poison"


class FunctionLike(Protocol):
    name: str
    bindings: tuple[dict[str, Any], ...]
    user_function: Callable[..., Any]


def timespan(value: Any) -> float:
    """A host.json TimeSpan (`[d.]hh:mm:ss[.fff]`) in seconds; plain numbers are seconds."""
    text = str(value).strip()
    match = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if not match:
        return float(text)
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    batch_size: int = 16
    new_batch_threshold: int = 8
    max_dequeue_count: int = 5
    visibility_timeout_s: float = 0.0
    max_polling_interval_s: float = 60.0
    message_lease_s: float = MESSAGE_LEASE_S

    @classmethod
    def from_host(cls, host_json: Mapping[str, Any], settings: Mapping[str, str]) -> QueueOptions:
        raw = {k.lower(): v for k, v in host_json.get("extensions", {}).get("queues", {}).items()}
        for key, value in settings.items():
            if key.startswith(OVERRIDE):
                raw[key[len(OVERRIDE):].lower()] = value
        batch = int(raw.get("batchsize", 16))
        return cls(
            batch_size=batch,
            new_batch_threshold=int(raw.get("newbatchthreshold", batch // 2)),
            max_dequeue_count=int(raw.get("maxdequeuecount", 5)),
            visibility_timeout_s=timespan(raw.get("visibilitytimeout", "00:00:00")),
            max_polling_interval_s=timespan(raw.get("maxpollinginterval", "00:01:00")),
            message_lease_s=float(settings.get("DEVSTACK_QUEUE_LEASE_SECONDS", MESSAGE_LEASE_S)),
        )


def resolve(value: str, settings: Mapping[str, str]) -> str:
    """`%NAME%` binding expressions, from the app settings (as the host resolves them)."""
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in settings:
            raise KeyError(f"the app setting {match.group(1)} (used as %{match.group(1)}%) is not set")
        return settings[match.group(1)]
    return re.sub(r"%([^%]+)%", one, value)


def queue_client(connection: str, queue: str, settings: Mapping[str, str]) -> Any:
    """A QueueClient for a binding's `connection`, as the host resolves connection settings."""
    from azure.identity import ManagedIdentityCredential
    from azure.storage.queue import BinaryBase64DecodePolicy, BinaryBase64EncodePolicy, QueueClient

    codec = {"message_encode_policy": BinaryBase64EncodePolicy(),
             "message_decode_policy": BinaryBase64DecodePolicy()}
    if settings.get(connection):
        return QueueClient.from_connection_string(settings[connection], queue, **codec)
    uri = settings.get(f"{connection}__queueServiceUri") or settings.get(f"{connection}__serviceUri")
    if not uri:
        raise KeyError(f"connection {connection!r}: neither {connection} nor {connection}__queueServiceUri is set")
    client_id = settings.get(f"{connection}__clientId")
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return QueueClient(uri, queue, credential=credential, **codec)


class QueueListener:
    """One queue-triggered function: polls its queue and runs it, `batch + threshold` at once."""

    def __init__(self, function: FunctionLike, trigger: dict[str, Any], options: QueueOptions,
                 settings: Mapping[str, str], stop: threading.Event):
        self.function, self.options, self.stop = function, options, stop
        self.param = trigger["name"]
        self.queue_name = resolve(trigger["queueName"], settings).lower()
        connection = trigger.get("connection") or "AzureWebJobsStorage"
        self.queue = queue_client(connection, self.queue_name, settings)
        self.poison = None if self.queue_name.endswith(POISON) else \
            queue_client(connection, self.queue_name + POISON, settings)
        self.pool = ThreadPoolExecutor(options.batch_size + options.new_batch_threshold,
                                       f"queue-{function.name}")
        self._in_flight = 0
        self._lock = threading.Condition()

    def run(self) -> None:
        delay = MIN_POLL_S
        while not self.stop.is_set():
            with self._lock:  # the next batch once the messages in flight drop to the threshold
                self._lock.wait_for(lambda: self._in_flight <= self.options.new_batch_threshold
                                    or self.stop.is_set())
            try:
                batch = list(self.queue.receive_messages(
                    max_messages=self.options.batch_size, visibility_timeout=int(self.options.message_lease_s)))
            except AzureError as exc:
                log.warning("%s: polling %s failed (%s)", self.function.name, self.queue_name, type(exc).__name__)
                batch = []
            if not batch:
                delay = min(delay * 2 * random.uniform(0.8, 1.2), self.options.max_polling_interval_s)  # noqa: S311
                self.stop.wait(delay)
                continue
            delay = MIN_POLL_S
            for message in batch:
                with self._lock:
                    self._in_flight += 1
                self.pool.submit(self._process, message)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def _process(self, message: Any) -> None:
        try:
            if message.dequeue_count > self.options.max_dequeue_count and self.poison is not None:
                log.warning("%s: message %s dequeued %d times (its host died each time): to %s", self.function.name,
                            message.id, message.dequeue_count, self.queue_name + POISON)
                self._to_poison(message, message.pop_receipt)
                return
            self._invoke(message)
        except Exception:
            log.exception("%s: handling message %s failed", self.function.name, message.id)
        finally:
            with self._lock:
                self._in_flight -= 1
                self._lock.notify_all()

    def _invoke(self, message: Any) -> None:
        import azure.functions.queue as fq

        state = {"receipt": message.pop_receipt}
        done = threading.Event()
        renewer = threading.Thread(target=self._keep_invisible, args=(message, state, done), daemon=True)
        renewer.start()
        argument = fq.QueueMessage(id=message.id, body=message.content, dequeue_count=message.dequeue_count,
                                   expiration_time=message.expires_on, insertion_time=message.inserted_on,
                                   time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)
        started = time.perf_counter()
        log.info("Executing 'Functions.%s' (Reason='New queue message detected on '%s'.', Id=%s, "
                 "DequeueCount=%d)", self.function.name, self.queue_name, message.id, message.dequeue_count)
        try:
            self.function.user_function(**{self.param: argument})
            ok = True
        except Exception:
            log.exception("Function 'Functions.%s' raised (Id=%s)", self.function.name, message.id)
            ok = False
        done.set()
        renewer.join()
        log.info("Executed 'Functions.%s' (%s, Id=%s, Duration=%.0fms)", self.function.name,
                 "Succeeded" if ok else "Failed", message.id, (time.perf_counter() - started) * 1000)
        receipt = state["receipt"]
        if ok:
            self.queue.delete_message(message.id, receipt)
        elif self.poison is None:
            return  # no poison queue: stays invisible until its lease ends
        elif message.dequeue_count >= self.options.max_dequeue_count:
            log.warning("%s: message %s failed %d times: moved to %s", self.function.name, message.id,
                        message.dequeue_count, self.queue_name + POISON)
            self._to_poison(message, receipt)
        else:
            self.queue.update_message(message.id, receipt, visibility_timeout=int(self.options.visibility_timeout_s))

    def _keep_invisible(self, message: Any, state: dict[str, str], done: threading.Event) -> None:
        while not done.wait(self.options.message_lease_s / 2):
            try:
                updated = self.queue.update_message(message.id, state["receipt"],
                                                    visibility_timeout=int(self.options.message_lease_s))
                state["receipt"] = updated.pop_receipt
            except AzureError as exc:
                log.warning("%s: could not extend message %s (%s)", self.function.name, message.id,
                            type(exc).__name__)

    def _to_poison(self, message: Any, receipt: str) -> None:
        assert self.poison is not None
        with contextlib.suppress(ResourceExistsError):
            self.poison.create_queue()
        self.poison.send_message(message.content)
        self.queue.delete_message(message.id, receipt)


def start(functions: Iterable[FunctionLike], host_json: Mapping[str, Any], settings: Mapping[str, str],
          stop: threading.Event) -> dict[str, str]:
    """Start a listener thread for every function whose trigger is `queueTrigger`.

    Returns {function name: error} for functions that could not start (the host puts such a
    function in error and runs the rest).
    """
    options = QueueOptions.from_host(host_json, settings)
    errors: dict[str, str] = {}
    for function in functions:
        trigger = next((b for b in function.bindings if str(b.get("type", "")).lower() == "queuetrigger"), None)
        if trigger is None:
            continue
        try:
            listener = QueueListener(function, trigger, options, settings, stop)
        except (KeyError, ValueError) as exc:
            errors[function.name] = str(exc)
            log.error("function %s is in error: %s", function.name, exc)
            continue
        threading.Thread(target=listener.run, name=f"listener-{function.name}", daemon=True).start()
        log.info("%s: listening to queue %s", function.name, listener.queue_name)
    return errors
