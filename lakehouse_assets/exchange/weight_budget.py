"""One request-weight budget per REST host, shared by every run and process on this machine.

Why: Binance limits REST requests per IP, not per client, by *request weight* per fixed minute
(``exchangeInfo`` ``rateLimits``: ``REQUEST_WEIGHT`` 6000/min on spot, 2400/min on USD-M and
COIN-M futures). ccxt's limiter and the Dagster pool ``binance_api`` each see one process or one
step, while Dagster runs every run (and, with the multiprocess executor, every step) in its own
process. Several gap-fill or funding runs at once can therefore overrun the minute together, and
the exchange answers 429, then bans the IP (418) for minutes to days. So:

* Every request first takes its weight from a small state file per REST host (``host_port.json``
  under the state directory), under an exclusive ``fcntl`` lock, so all processes of the machine
  see one count. When the window's estimate plus the request would pass ``fraction`` of the host's
  limit, the process sleeps until the next window instead of sending.
* The estimate is what our processes took this window plus what the server says on top of that:
  every answer's ``X-MBX-USED-WEIGHT-<n><unit>`` header (``-1M`` on spot and futures; the bare
  legacy ``X-MBX-USED-WEIGHT`` counts as one minute) is compared with our own count at the time that
  request was taken, and the difference (other clients on the IP, weights we under-estimate,
  requests of a previous process) is kept as ``external`` for the window. A server near its limit
  therefore stops every process, even one that has sent nothing yet.
* A 429/418 with ``Retry-After`` blocks every process until then, not only the one that got it. A
  block longer than ``max_block_seconds`` raises :class:`WeightBudgetBlocked` (a 418 ban of hours is
  better reported than slept through).
* The window is the server's fixed clock window (floor of UTC time), as Binance counts; a small
  ``margin_seconds`` after the boundary absorbs clock skew, and ``fraction`` (0.8 by default) leaves
  headroom for requests in flight across a boundary.

Weights of the endpoints the lakehouse calls are Binance's documented IP weights
(:func:`request_weight`); an unknown endpoint counts 1 and the server's header corrects the rest.
Pure module: no Dagster, no ccxt; the ccxt client (``exchange/client.py``) calls
:meth:`WeightBudget.acquire` before and :meth:`WeightBudget.observe` after each HTTP request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from lakehouse_assets.http_transfer import retry_after_seconds
from lakehouse_assets.instruments import MARKETS
from lakehouse_assets.redact import redact_url

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_LIMITS",
    "DEFAULT_LIMITS_TEXT",
    "BudgetConfig",
    "Ticket",
    "WeightBudget",
    "WeightBudgetBlocked",
    "default_state_dir",
    "host_key",
    "parse_retry_after",
    "parse_used_weights",
    "parse_weight_limits",
    "request_weight",
    "used_weight",
]

logger = logging.getLogger("lakehouse.rest")

#: REQUEST_WEIGHT per minute and IP, from each market's exchangeInfo ``rateLimits`` (2025).
DEFAULT_LIMITS: Final[Mapping[str, int]] = {"spot": 6000, "um": 2400, "cm": 2400}
DEFAULT_LIMITS_TEXT: Final = ",".join(f"{m}={n}" for m, n in DEFAULT_LIMITS.items())
DEFAULT_FRACTION: Final = 0.8
MAX_LIMIT: Final = 1_000_000
#: Statuses by which Binance says "too much weight": 429 warns, 418 bans the IP.
THROTTLED: Final = frozenset({418, 429})

_UNIT_SECONDS: Final = {"S": 1, "M": 60, "H": 3600, "D": 86400}
_USED_WEIGHT_RE: Final = re.compile(r"x-mbx-used-weight(?:-(\d+)([smhd]))?", re.IGNORECASE)


# --------------------------------------------------------------------------- headers and weights


def parse_used_weights(headers: Mapping[str, Any] | None) -> dict[int, int]:
    """``X-MBX-USED-WEIGHT-<n><S|M|H|D>`` headers as {window seconds: used weight}; case-insensitive.

    The bare ``X-MBX-USED-WEIGHT`` (older spot answers) is the one-minute figure; a value that is
    not a whole number is ignored rather than guessed.
    """
    found: dict[int, int] = {}
    for name, value in (headers or {}).items():
        match = _USED_WEIGHT_RE.fullmatch(str(name).strip())
        if not match:
            continue
        seconds = 60 if match.group(1) is None else int(match.group(1)) * _UNIT_SECONDS[match.group(2).upper()]
        text = str(value).strip()
        if not text.isdigit() or seconds <= 0:
            continue
        if match.group(1) is None and seconds in found:
            continue  # the explicit -1M header wins over the legacy bare one
        found[seconds] = int(text)
    return found


def used_weight(headers: Mapping[str, Any] | None, window_seconds: int) -> int | None:
    """The server's used weight for a window of ``window_seconds``, None when the answer does not say."""
    return parse_used_weights(headers).get(window_seconds)


def parse_retry_after(headers: Mapping[str, Any] | None, *, now: float) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date), None when absent or unreadable."""
    value = None
    for name, text in (headers or {}).items():
        if str(name).lower() == "retry-after":
            value = str(text)
    return retry_after_seconds(value, now=now)


def _futures_klines_weight(limit: int) -> int:
    # Binance USD-M/COIN-M klines: limit [1,100) 1, [100,500) 2, [500,1000] 5, > 1000 10.
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def request_weight(url: str) -> int:
    """Binance's IP weight of one GET, from its URL (path suffix and ``limit``); 1 when unknown."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    query = dict(urllib.parse.parse_qsl(parts.query))
    if path.endswith(("/fapi/v1/klines", "/dapi/v1/klines")):
        limit = query.get("limit", "500")
        return _futures_klines_weight(int(limit) if limit.isdigit() else 500)
    if path.endswith("/api/v3/klines"):
        return 2
    if path.endswith("/api/v3/exchangeInfo"):
        return 20
    return 1  # ping, time, futures exchangeInfo, fundingRate, fundingInfo, anything else


def host_key(url: str) -> str:
    """``host_port`` of a URL, file-name safe and free of credentials: one budget per REST host."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "unknown").lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return re.sub(r"[^a-z0-9.\-]", "_", host) + f"_{port}"


def parse_weight_limits(text: str) -> dict[str, int]:
    """``spot=6000,um=2400,cm=2400`` (any subset; unlisted markets keep their default) -> {market: limit}."""
    limits = dict(DEFAULT_LIMITS)
    problems = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        market, sep, value = (s.strip() for s in part.partition("="))
        if not sep or market not in MARKETS:
            problems.append(f"{part!r} is not market=limit with market one of {', '.join(MARKETS)}")
        elif not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
            problems.append(f"{part!r}: {value!r} is not a whole number between 1 and {MAX_LIMIT}")
        else:
            limits[market] = int(value)
    if problems:
        raise ValueError("; ".join(problems) + f"; expected e.g. {DEFAULT_LIMITS_TEXT!r}")
    return limits


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the budget files live when LAKEHOUSE_STATE_DIR is unset.

    Under ``$DAGSTER_HOME`` (every run and step process of one Dagster instance shares it), else a
    per-user directory in the system temp dir (notebooks, scripts).
    """
    env = os.environ if environ is None else environ
    home = (env.get("DAGSTER_HOME") or "").strip()
    if home:
        return Path(home) / "lakehouse_state"
    return Path(tempfile.gettempdir()) / f"lakehouse-state-{os.getuid()}"


# --------------------------------------------------------------------------- the budget


@dataclass(frozen=True)
class BudgetConfig:
    """How much weight the processes of this machine may use per REST host and window."""

    state_dir: Path
    limits: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    fraction: float = DEFAULT_FRACTION
    window_seconds: int = 60
    max_block_seconds: float = 120.0
    margin_seconds: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.fraction <= 1):
            raise ValueError(f"weight budget fraction must be > 0 and <= 1, got {self.fraction!r}")
        if not isinstance(self.window_seconds, int) or self.window_seconds < 1:
            raise ValueError(f"window_seconds must be a whole number >= 1, got {self.window_seconds!r}")
        bad = {m: n for m, n in self.limits.items() if m not in MARKETS or not 1 <= n <= MAX_LIMIT}
        if bad:
            raise ValueError(f"weight limits must be market: 1..{MAX_LIMIT} with market in {MARKETS}, got {bad}")
        if self.max_block_seconds < 0 or self.margin_seconds < 0:
            raise ValueError("max_block_seconds and margin_seconds must be >= 0")

    def budget(self, market: str) -> int:
        """Weight our processes may use per window on this market's host."""
        return max(1, math.floor(self.limits.get(market, DEFAULT_LIMITS[market]) * self.fraction))


@dataclass(frozen=True)
class Ticket:
    """One request's share of a window: ``mark`` is the window's count right after it was taken."""

    key: str
    window: int
    mark: int
    weight: int


class WeightBudgetBlocked(RuntimeError):
    """The host told a request of this machine to stop for longer than we are willing to sleep."""

    def __init__(self, host: str, status: int | None, seconds: float, max_block_seconds: float, until: float) -> None:
        self.host = host
        self.status = status
        self.seconds = seconds
        self.until = datetime.fromtimestamp(until, UTC)
        what = {418: "HTTP 418 (IP banned)", 429: "HTTP 429 (too many requests)"}.get(status or 0, "a rate limit")
        super().__init__(
            f"{host}: a request from this machine got {what} with Retry-After; every process waits until "
            f"{self.until:%Y-%m-%d %H:%M:%S} UTC ({seconds:.0f} s), longer than the {max_block_seconds:.0f} s "
            "this run may wait. Lower the `binance_api` pool limit or LAKEHOUSE_REST_WEIGHT_BUDGET, or wait."
        )


@dataclass
class _State:
    window: int = 0
    acquired: int = 0
    external: int = 0
    server_used: int | None = None
    blocked_until: float = 0.0
    blocked_status: int | None = None

    def roll(self, window: int) -> None:
        if window != self.window:
            self.window, self.acquired, self.external, self.server_used = window, 0, 0, None


class WeightBudget:
    """The machine-wide budget of one client, with this client's own figures for metadata.

    ``clock`` and ``sleep`` are plain attributes so tests can run windows on a fake clock.
    """

    def __init__(
        self,
        config: BudgetConfig,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self._lock = threading.Lock()
        self.weight = 0  # weight this client took
        self.requests = 0
        self.waits = 0
        self.wait_seconds = 0.0
        self.throttled = 0  # 429/418 answers this client got
        self.server_used_max: int | None = None  # highest used weight a server reported to this client

    # ------------------------------------------------------------------ the two calls

    def acquire(self, url: str, market: str, *, weight: int | None = None) -> Ticket:
        """Take ``weight`` (default: :func:`request_weight`) from the host's window, sleeping first if needed."""
        key = host_key(url)
        weight = request_weight(url) if weight is None else weight
        budget = self.config.budget(market)
        window_seconds = self.config.window_seconds
        while True:
            with self._state(key) as state:
                now = self.clock()
                window = _window_start(now, window_seconds)
                state.roll(window)
                estimate = state.acquired + state.external
                if state.blocked_until > now:
                    wait, reason, status = state.blocked_until - now, "retry_after", state.blocked_status
                elif estimate > 0 and estimate + weight > budget:
                    wait, reason, status = window + window_seconds - now + self.config.margin_seconds, "budget", None
                else:
                    state.acquired += weight
                    ticket = Ticket(key, window, state.acquired, weight)
                    with self._lock:
                        self.weight += weight
                        self.requests += 1
                    return ticket
            if reason == "retry_after" and wait > self.config.max_block_seconds:
                raise WeightBudgetBlocked(_shown(url), status, wait, self.config.max_block_seconds, now + wait)
            if reason == "budget":
                logger.info(
                    "REST weight budget of %s: %d of %d used this window (limit %d); waiting %.1f s for the next one",
                    _shown(url), estimate, budget, self.config.limits.get(market, DEFAULT_LIMITS[market]), wait,
                )
            else:
                logger.warning("REST %s: HTTP %s Retry-After in force for every process; waiting %.1f s",
                               _shown(url), status, wait)
            with self._lock:
                self.waits += 1
                self.wait_seconds += wait
            self.sleep(wait)

    def observe(self, ticket: Ticket, status: int | None, headers: Mapping[str, Any] | None) -> None:
        """Learn from an answer: the server's used weight, and a 429/418's Retry-After for everyone."""
        used = used_weight(headers, self.config.window_seconds)
        throttled = status in THROTTLED
        if used is None and not throttled:
            return
        with self._state(ticket.key) as state:
            now = self.clock()
            window = _window_start(now, self.config.window_seconds)
            state.roll(window)
            if used is not None:
                # What the server counts beyond our own requests up to this one (others on the IP, our
                # under-estimates). A request taken in the previous window is compared with the new count.
                base = ticket.mark if ticket.window == window else state.acquired
                state.external = max(state.external, used - base)
                state.server_used = max(state.server_used or 0, used)
            if throttled:
                retry_after = parse_retry_after(headers, now=now)
                if retry_after is None:
                    retry_after = window + self.config.window_seconds - now + self.config.margin_seconds
                if now + retry_after > state.blocked_until:
                    state.blocked_until, state.blocked_status = now + retry_after, status
        with self._lock:
            if used is not None:
                self.server_used_max = max(self.server_used_max or 0, used)
            self.throttled += throttled

    def report(self) -> dict[str, int | float]:
        """This client's figures, for materialization metadata."""
        with self._lock:
            out: dict[str, int | float] = {
                "rest_weight_used": self.weight,
                "rest_weight_waits": self.waits,
                "rest_weight_wait_seconds": round(self.wait_seconds, 3),
                "rest_rate_limited": self.throttled,
            }
            if self.server_used_max is not None:
                out["rest_server_used_weight_max"] = self.server_used_max
            return out

    # ------------------------------------------------------------------ state file

    @contextlib.contextmanager
    def _state(self, key: str) -> Iterator[_State]:
        directory = Path(self.config.state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{key}.json"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = b""
            while chunk := os.read(fd, 65536):
                raw += chunk
            state = _load(raw, path)
            before = _dump(state)
            yield state
            after = _dump(state)
            if after != before:
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, after)
        finally:
            os.close(fd)  # releases the lock


def _window_start(now: float, window_seconds: int) -> int:
    return int(now // window_seconds) * window_seconds


def _shown(url: str) -> str:
    parts = urllib.parse.urlsplit(redact_url(url))
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else redact_url(url)


def _load(raw: bytes, path: Path) -> _State:
    if not raw.strip():
        return _State()
    try:
        data = json.loads(raw)
        return _State(
            window=int(data["window"]),
            acquired=int(data["acquired"]),
            external=int(data["external"]),
            server_used=None if data.get("server_used") is None else int(data["server_used"]),
            blocked_until=float(data.get("blocked_until") or 0.0),
            blocked_status=None if data.get("blocked_status") is None else int(data["blocked_status"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        # Only a crash in the middle of a write leaves this; the next server answer re-teaches the count.
        logger.warning("REST weight budget file %s is unreadable (%s); starting this window afresh", path, exc)
        return _State()


def _dump(state: _State) -> bytes:
    return json.dumps(state.__dict__, sort_keys=True).encode()
