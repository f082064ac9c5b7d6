"""Alerts: a command (the run's summary JSON on stdin) and/or a webhook (HTTP POST JSON).

A command is a list of arguments run without a shell, unless the alert says ``shell:``.
Its environment is minimal: ``PATH``, ``HOME``, ``LANG``, ``TZ``, the variables the alert
declares (``env:``), and ``ROLECHAIN_ALERT`` (failure, success, recovery),
``ROLECHAIN_JOB``, ``ROLECHAIN_RUN_ID`` and ``ROLECHAIN_STATUS``; the scheduler's own
credentials never reach it. A webhook is POSTed
the same JSON with ``Content-Type: application/json``; a connection error, a timeout, 408,
429 or a 5xx answer is retried ``retries`` times with back-off, any other 4xx is not.
Redirects are never followed (they would carry the headers, tokens included, wherever the
receiver points): a 3xx is a failed delivery, logged with its ``Location``. Alerts are sent
on their own threads so a slow receiver never delays a fire. The body and the header values
(they may hold tokens) are never logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from rolechain.model.schema import Alert
from rolechain.scheduler.logs import EventLog

USER_AGENT = "rolechain-scheduler"
_TAIL = 300


def _tail(data: bytes | str | None) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    return text[-_TAIL:]


PASSED_THROUGH = ("PATH", "HOME", "LANG", "TZ")


def alert_environment(alert: Alert, event: str, payload: Mapping[str, Any]) -> dict[str, str]:
    """An alert command's environment: PATH, HOME, LANG and TZ from ours, the ROLECHAIN_*
    facts of the run, and the variables the alert declares (``env:``). Nothing else of the
    scheduler's environment (its AWS_* keys above all) reaches the command."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(
        ROLECHAIN_ALERT=event,
        ROLECHAIN_JOB=str(payload.get("job", "")),
        ROLECHAIN_RUN_ID=str(payload.get("run_id", "")),
        ROLECHAIN_STATUS=str(payload.get("status", "")),
    )
    env.update(alert.env)
    return env


class AlertSender:
    """Delivers alerts; ``synchronous`` delivers on the caller's thread (tests)."""

    def __init__(
        self,
        log: EventLog,
        *,
        synchronous: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        backoff: float = 1.0,
    ) -> None:
        self.log = log
        self.synchronous = synchronous
        self.sleep = sleep
        self.backoff = backoff
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def send(self, event: str, alert: Alert, payload: Mapping[str, Any]) -> None:
        body = (json.dumps({"event": event, **payload}, default=str) + "\n").encode("utf-8")
        if self.synchronous:
            self._deliver(event, alert, payload, body)
            return
        thread = threading.Thread(
            target=self._deliver,
            args=(event, alert, payload, body),
            name=f"rolechain-alert-{event}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Wait (up to ``timeout`` seconds in all) for alerts still being delivered."""
        end = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))

    def deliver(self, event: str, alert: Alert, payload: Mapping[str, Any]) -> str | None:
        """Deliver on this thread (the scheduler's outbox calls it); why it failed, or
        None once every part (command, webhook) was delivered."""
        body = (json.dumps({"event": event, **payload}, default=str) + "\n").encode("utf-8")
        return self._deliver(event, alert, payload, body)

    def _deliver(
        self, event: str, alert: Alert, payload: Mapping[str, Any], body: bytes
    ) -> str | None:
        fields = {"alert": event, "job": payload.get("job"), "run_id": payload.get("run_id")}
        problems = []
        if alert.command is not None or alert.shell is not None:
            problems.append(self._command(alert, payload, body, fields))
        if alert.webhook is not None:
            problems.append(self._webhook(alert, body, fields))
        failed = [p for p in problems if p]
        return "; ".join(failed) if failed else None

    def _command(
        self, alert: Alert, payload: Mapping[str, Any], body: bytes, fields: dict[str, Any]
    ) -> str | None:
        argv = list(alert.command) if alert.command else ["/bin/sh", "-c", alert.shell or ""]
        env = alert_environment(alert, str(fields["alert"]), payload)
        try:
            done = subprocess.run(
                argv,
                input=body,
                capture_output=True,
                timeout=alert.timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            self.log.error("alert_failed", **fields, via="command",
                           reason=f"did not finish within {alert.timeout}s")  # fmt: skip
            return f"command: did not finish within {alert.timeout}s"
        except OSError as exc:
            self.log.error("alert_failed", **fields, via="command", reason=str(exc))
            return f"command: {exc}"
        if done.returncode != 0:
            self.log.error("alert_failed", **fields, via="command",
                           reason=f"exit {done.returncode}", stderr=_tail(done.stderr))  # fmt: skip
            return f"command: exit {done.returncode}"
        self.log.emit("alert_sent", **fields, via="command")
        return None

    def _webhook(self, alert: Alert, body: bytes, fields: dict[str, Any]) -> str | None:
        assert alert.webhook is not None
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        headers.update(alert.headers)
        reason = ""
        for attempt in range(alert.retries + 1):
            if attempt:
                self.sleep(min(self.backoff * 2 ** (attempt - 1), 30.0))
            answer = post(alert.webhook, body, headers, alert.timeout)
            if answer.status is None:
                reason = answer.reason
                continue
            status = answer.status
            if answer.location is not None:
                # A redirect is a failure: following it would send the headers (tokens)
                # wherever the receiver points, another host included.
                self.log.error("alert_failed", **fields, via="webhook", status=status,
                               attempts=attempt + 1, location=answer.location,
                               reason="redirected; redirects are not followed: "
                               "give the final URL")  # fmt: skip
                return f"webhook: HTTP {status} redirected (not followed)"
            if status >= 300:
                if status not in (408, 429) and status < 500:
                    self.log.error("alert_failed", **fields, via="webhook", status=status,
                                   attempts=attempt + 1, reason="refused")  # fmt: skip
                    return f"webhook: HTTP {status} (refused)"
                reason = f"HTTP {status}"
                continue
            self.log.emit("alert_sent", **fields, via="webhook", status=status,
                          attempts=attempt + 1)  # fmt: skip
            return None
        self.log.error("alert_failed", **fields, via="webhook", attempts=alert.retries + 1,
                       reason=reason)  # fmt: skip
        return f"webhook: {reason}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the 3xx answer comes back as an HTTPError."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class PostAnswer(NamedTuple):
    """One POST's answer: its status (None: no answer, see ``reason``), and for a 3xx the
    ``Location`` it pointed to."""

    status: int | None
    reason: str = ""
    location: str | None = None


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> PostAnswer:
    """POST ``body`` to ``url`` once, without following redirects."""
    request = urllib.request.Request(  # noqa: S310 - the URL pattern is http(s) only
        url, data=body, headers=dict(headers), method="POST"
    )
    try:
        with _OPENER.open(request, timeout=timeout) as answer:
            return PostAnswer(int(answer.status))
    except urllib.error.HTTPError as exc:
        redirect = 300 <= exc.code < 400
        location = (exc.headers.get("Location") or "(none)") if redirect else None
        exc.close()
        return PostAnswer(exc.code, f"HTTP {exc.code}", location)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return PostAnswer(None, str(getattr(exc, "reason", exc)))
