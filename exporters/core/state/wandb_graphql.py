"""Reads from WandB's public GraphQL API over plain HTTPS: the read path of the WandB store.

Why not ``wandb.Api``: in wandb 0.31 every ``Api`` request goes through the Go ``wandb-core``
child process, which for the network exporter's reads (64 validator configs of ~70 KB each per
refresh, 1,000 miner configs) cost more CPU than the whole refresh in Python
(benchmarks/bench_network.py: ~270 ms per validator refresh in wandb-core), plus a ``Run``
object and a directory per run on the Python side. The protocol is small and documented by the
client itself: ``POST <base>/graphql`` with HTTP Basic auth ``api:<key>`` and a JSON body
``{"query", "variables"}``; a ``Viewer`` query checks the key (what ``wandb.Api()`` does first).

Like wandb-core, a request that fails with 429/5xx or a connection error is retried with
backoff until ``timeout`` seconds have passed since it started; errors become
:class:`~exporters.core.state.base.StoreUnavailable` with a bounded reason (``auth``,
``rejected``, ``timeout``, ``unavailable``). Writes still go through ``wandb.init`` (the SDK's
own protocol).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import orjson

from exporters.core.state.base import StoreUnavailable

VIEWER_QUERY = "query Viewer { viewer { id entity username } }"
_NO_ANSWER = "wandb read failed (timeout): no answer in time"
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def loads(text: str | bytes) -> Any:
    """orjson, with the stdlib as fallback for what orjson refuses (NaN/Infinity tokens)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class GraphQLClient:
    """One endpoint, one key; ``execute`` returns the response's ``data``."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout: float,
        *,
        user_agent: str = "opencompute-exporters",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = base_url.rstrip("/") + "/graphql"
        token = base64.b64encode(f"api:{api_key}".encode()).decode()
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Authorization": f"Basic {token}",
            "User-Agent": user_agent,
        }
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        body = orjson.dumps({"query": query, "variables": variables or {}})
        deadline = self._clock() + self.timeout
        delay = 0.25
        while True:
            left = deadline - self._clock()
            try:
                return self._once(body, max(left, 0.1))
            except _Retry as retry:
                if self._clock() + delay >= deadline:
                    message = f"wandb read failed (timeout): still {retry} after {self.timeout:g}s"
                    raise StoreUnavailable(message, reason="timeout") from None
                self._sleep(delay)
                delay = min(delay * 2, 4.0)

    def _once(self, body: bytes, timeout: float) -> Any:
        request = urllib.request.Request(self.url, data=body, method="POST", headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            if status in (401, 403):
                raise StoreUnavailable(f"wandb read failed (auth): HTTP {status}", reason="auth") from exc
            if status in _RETRY_STATUSES:
                raise _Retry(f"HTTP {status}") from exc
            raise StoreUnavailable(f"wandb read failed (rejected): HTTP {status}", reason="rejected") from exc
        except TimeoutError as exc:
            raise StoreUnavailable(_NO_ANSWER, reason="timeout") from exc
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError):
                raise StoreUnavailable(_NO_ANSWER, reason="timeout") from exc
            raise _Retry(f"unreachable ({type(reason).__name__})") from exc
        try:
            payload = loads(raw)
        except ValueError as exc:
            raise StoreUnavailable("wandb read failed (unavailable): not JSON", reason="unavailable") from exc
        if not isinstance(payload, dict):
            raise StoreUnavailable("wandb read failed (unavailable): not a JSON object", reason="unavailable")
        errors = payload.get("errors")
        if errors and payload.get("data") is None:
            first = errors[0] if isinstance(errors, list) else None
            first = first.get("message", "") if isinstance(first, dict) else ""
            raise StoreUnavailable(f"wandb read failed (rejected): {str(first)[:200]}", reason="rejected")
        return payload.get("data")


class _Retry(Exception):
    """A transient failure: retried until the request's deadline."""
