"""The Redis writer: coalesce the dataflow's records, then write them in one pipelined round trip.

It keeps quix-streams' sink split: `RedisWriter.setup` connects, `add` buffers
records (coalesced in `PendingWrites`), `flush` writes everything buffered with
one pipelined round trip over a pooled connection and clears the buffer only when
Redis took it. Policy around failures (circuit breaker, backpressure) belongs to
`sinks.redis_sink`; this module only says whether a write worked.

Every key and encoding comes from `sinks.layout`. Every write is idempotent, so a
replayed batch (after a crash, or a retry after a partly applied pipeline)
leaves Redis as one write would:

* windows: the member at the window's start is replaced, never added beside;
* alerts: a member with the same ``alert_id`` is replaced (an episode's update
  with a higher peak, or a replay), then the set is trimmed to the newest N;
* latest readings and trends: written unless Redis holds a newer one in event
  time, so "latest" never goes back after a replay;
* totals and counters: absolute values (ZADD / HSET, never INCR).

Window series are trimmed to the retention behind each series' newest window
start: event time, not the wall clock, so replaying history trims the same way.
The conditional writes run as small Lua scripts (atomic per key), sent by
EVALSHA inside the same pipeline.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain
from typing import Any

import redis
import structlog
from redis.backoff import ExponentialBackoff
from redis.exceptions import NoScriptError
from redis.retry import Retry

from sinks.layout import (
    LATEST_TIME_FIELD,
    TREND_TIME_FIELD,
    Layout,
    SinkStatus,
    Update,
    UpdateKind,
    alert_member_prefix,
    encode_activity,
    encode_alert,
    encode_counters,
    encode_latest,
    encode_page_total,
    encode_sink_status,
    encode_trend,
    encode_update,
    encode_window_stats,
)
from sinks.records import (
    ActivityWindow,
    Alert,
    CircuitState,
    Metric,
    PageTotal,
    PipelineCounters,
    TrendState,
    WindowStats,
)
from sinks.settings import SinkSettings
from sources.models import SensorReading

log = structlog.get_logger(__name__)

SinkRecord = WindowStats | Alert | TrendState | ActivityWindow | PageTotal | PipelineCounters | SensorReading
"""What the sink accepts. A `SensorReading` means "the latest reading of its device"."""

Command = tuple[Any, ...]
"""One Redis command as its arguments, e.g. ``("HSET", key, field, value)``."""


def wall_clock_ms() -> int:
    """The system's wall-clock time in UTC epoch ms."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A server-side script, called by its SHA-1 (EVALSHA)."""

    name: str
    text: str

    @property
    def sha(self) -> str:
        """SHA-1 of the text, as Redis names the script."""
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


PUT_LATEST = LuaScript(
    "put_latest",
    """
-- KEYS[1]: the latest hash. ARGV[1]: the JSON field of a value holding its event time (ms);
-- then (device id, event time ms, value) triples. A value replaces the stored one unless
-- that one is newer, so a replay never moves "latest" back in event time.
local field = ARGV[1]
local written = 0
for i = 2, #ARGV, 3 do
  local stored = redis.call('HGET', KEYS[1], ARGV[i])
  local newer = false
  if stored then
    local ok, value = pcall(cjson.decode, stored)
    if ok and type(value) == 'table' and tonumber(value[field]) then
      newer = tonumber(value[field]) > tonumber(ARGV[i + 1])
    end
  end
  if not newer then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    written = written + 1
  end
end
return written
""",
)

PUT_SERIES = LuaScript(
    "put_series",
    """
-- KEYS: sorted sets of windows scored by window start (ms). ARGV[1]: retention (ms); then,
-- key by key, the number n of its windows and n (window start, member) pairs. A member
-- replaces whatever its key holds at its start (a replayed or re-emitted window); then the
-- key's windows starting at or before its newest start minus the retention are trimmed
-- (event time, so replayed history trims the same).
local retention = tonumber(ARGV[1])
local at = 2
for k = 1, #KEYS do
  local key = KEYS[k]
  local stop = at + 2 * tonumber(ARGV[at])
  for i = at + 1, stop, 2 do
    redis.call('ZREMRANGEBYSCORE', key, ARGV[i], ARGV[i])
    redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
  end
  at = stop + 1
  local newest = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.0f', newest - retention))
end
return #KEYS
""",
)

PUT_ALERTS = LuaScript(
    "put_alerts",
    """
-- KEYS[1]: the alerts sorted set (score = episode start, event time ms). ARGV[1]: how many to keep;
-- then (score, member prefix, member) triples. A stored member starting with an alert's
-- prefix (its id) is the same episode: it is replaced. Then only the newest N are kept.
local key = KEYS[1]
local prefixes = {}  -- prefix length -> set of prefixes of that length
for i = 2, #ARGV, 3 do
  local p = ARGV[i + 1]
  prefixes[#p] = prefixes[#p] or {}
  prefixes[#p][p] = true
end
for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  for len, set in pairs(prefixes) do
    if set[string.sub(member, 1, len)] then
      redis.call('ZREM', key, member)
      break
    end
  end
end
for i = 2, #ARGV, 3 do
  redis.call('ZADD', key, ARGV[i], ARGV[i + 2])
end
return redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(ARGV[1]) - 1)
""",
)

PUT_HASHES_IF_NEWER = LuaScript(
    "put_hashes_if_newer",
    """
-- KEYS: hashes. ARGV[1]: their time field; then, key by key, the new content's time (ms),
-- the number n of its fields and n field/value pairs. A hash is written unless it holds
-- newer content, so a replay never moves it back in event time.
local field = ARGV[1]
local at = 2
local written = 0
for k = 1, #KEYS do
  local time, n = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local stored = tonumber(redis.call('HGET', KEYS[k], field))
  if not (stored and stored > time) then
    redis.call('HSET', KEYS[k], unpack(ARGV, at + 2, at + 1 + 2 * n))
    written = written + 1
  end
  at = at + 2 + 2 * n
end
return written
""",
)

SCRIPTS = (PUT_LATEST, PUT_SERIES, PUT_ALERTS, PUT_HASHES_IF_NEWER)

MAX_ITEMS_PER_SCRIPT_CALL = 1000
"""Windows or trends per script call: a script blocks Redis while it runs, so draining a
large backlog is split into several calls (still in the one pipeline)."""


class PendingWrites:
    """Records waiting for Redis, coalesced to what writing them in order would leave there.

    Latest readings and trends keep the newest per key by event time (ties: the
    later one); windows, alerts, page totals and counters keep the last per
    identity (a window's key and start, an alert's id, a page). So the buffer
    grows with distinct windows and alerts only, not with repeated state.
    """

    __slots__ = ("activity", "alerts", "counters", "latest", "totals", "trends", "windows")

    def __init__(self) -> None:
        """Create an empty buffer."""
        self.latest: dict[str, SensorReading] = {}
        self.windows: dict[tuple[str, str, Metric, int], WindowStats] = {}
        self.trends: dict[tuple[str, Metric], TrendState] = {}
        self.alerts: dict[str, Alert] = {}
        self.activity: dict[tuple[str, int], ActivityWindow] = {}
        self.totals: dict[str, PageTotal] = {}
        self.counters: PipelineCounters | None = None

    def add(self, item: SinkRecord) -> None:
        """Merge one record; raises `TypeError` for anything that is not a `SinkRecord`."""
        match item:
            case WindowStats():
                self.windows[(item.window, item.device_id, item.metric, item.start_ms)] = item
            case SensorReading():
                held = self.latest.get(item.device_id)
                if held is None or item.event_time >= held.event_time:
                    self.latest[item.device_id] = item
            case TrendState():
                key = (item.device_id, item.metric)
                held_trend = self.trends.get(key)
                if held_trend is None or item.updated_ms >= held_trend.updated_ms:
                    self.trends[key] = item
            case Alert():
                self.alerts[item.alert_id] = item
            case ActivityWindow():
                self.activity[(item.window, item.start_ms)] = item
            case PageTotal():
                self.totals[item.page] = item
            case PipelineCounters():
                self.counters = item
            case _:
                raise TypeError(
                    f"the Redis sink cannot write a {type(item).__name__}; it takes WindowStats, Alert, "
                    "TrendState, ActivityWindow, PageTotal, PipelineCounters and SensorReading"
                )

    def records(self) -> list[SinkRecord]:
        """Every buffered record, e.g. for a recovery snapshot.

        Each identity holds one record, so adding them to an empty buffer, in any
        order, gives a buffer equal to this one.
        """
        held: list[SinkRecord] = [
            *self.latest.values(),
            *self.windows.values(),
            *self.trends.values(),
            *self.alerts.values(),
            *self.activity.values(),
            *self.totals.values(),
        ]
        if self.counters is not None:
            held.append(self.counters)
        return held

    def counts(self) -> dict[UpdateKind, int]:
        """Buffered records per kind (kinds with none left out)."""
        counts = {
            UpdateKind.LATEST: len(self.latest),
            UpdateKind.WINDOWS: len(self.windows),
            UpdateKind.TRENDS: len(self.trends),
            UpdateKind.ALERTS: len(self.alerts),
            UpdateKind.ACTIVITY: len(self.activity),
            UpdateKind.LEADERBOARD: len(self.totals),
            UpdateKind.STATS: int(self.counters is not None),
        }
        return {kind: n for kind, n in counts.items() if n}

    def __len__(self) -> int:
        return (
            len(self.latest)
            + len(self.windows)
            + len(self.trends)
            + len(self.alerts)
            + len(self.activity)
            + len(self.totals)
            + int(self.counters is not None)
        )


def build_commands(
    pending: PendingWrites, layout: Layout, settings: SinkSettings, status: SinkStatus
) -> list[Command]:
    """The Redis commands that write `pending`, the sink's status and one `Update` (pure).

    Args:
        pending: What to write.
        layout: Key names.
        settings: Retention and alert cap.
        status: The sink's own status for the stats hash; its ``last_write_ms`` also
            stamps the `Update`.

    Returns:
        Commands to send in one pipeline; the scripts among them run by EVALSHA.
    """
    cmds: list[Command] = []
    latest = [(r.device_id, r.event_time, encode_latest(r)) for r in pending.latest.values()]
    for chunk in _chunks({layout.latest(): latest}):
        [(key, triples)] = chunk.items()
        cmds.append(("EVALSHA", PUT_LATEST.sha, 1, key, LATEST_TIME_FIELD, *chain.from_iterable(triples)))

    series: dict[str, list[Any]] = {}
    for ws in pending.windows.values():
        key = _window_series_key(layout, ws.window, ws.device_id, ws.metric)
        series.setdefault(key, []).append((ws.start_ms, encode_window_stats(ws)))
    for aw in pending.activity.values():
        series.setdefault(layout.activity_series(aw.window), []).append((aw.start_ms, encode_activity(aw)))
    for chunk in _chunks(series):  # several keys per call
        series_args: list[Any] = [settings.sink_retention_ms]
        for pairs in chunk.values():
            series_args.append(len(pairs))
            series_args += chain.from_iterable(pairs)
        cmds.append(("EVALSHA", PUT_SERIES.sha, len(chunk), *chunk, *series_args))

    alerts = [(a.order_ms, alert_member_prefix(a.alert_id), encode_alert(a)) for a in pending.alerts.values()]
    for chunk in _chunks({layout.alerts(): alerts}):
        [(key, triples)] = chunk.items()
        cmds.append(
            ("EVALSHA", PUT_ALERTS.sha, 1, key, settings.sink_alerts_kept, *chain.from_iterable(triples))
        )

    trends = {_trend_key(layout, t.device_id, t.metric): [t] for t in pending.trends.values()}
    for chunk_of_trends in _chunks(trends):
        trend_args: list[Any] = [TREND_TIME_FIELD]
        for (trend,) in chunk_of_trends.values():
            fields = encode_trend(trend)
            trend_args += (trend.updated_ms, len(fields))
            trend_args += chain.from_iterable(fields.items())
        cmds.append(("EVALSHA", PUT_HASHES_IF_NEWER.sha, len(chunk_of_trends), *chunk_of_trends, *trend_args))

    if pending.totals:
        scored: list[Any] = []
        for total in pending.totals.values():
            page, purchases = encode_page_total(total)
            scored += (purchases, page)
        cmds.append(("ZADD", layout.leaderboard(), *scored))

    stats = encode_sink_status(status)
    if pending.counters is not None:
        stats |= encode_counters(pending.counters)
    cmds.append(("HSET", layout.stats(), *chain.from_iterable(stats.items())))

    kinds = (*pending.counts(), UpdateKind.STATS)
    update = Update(kinds=tuple(dict.fromkeys(kinds)), at_ms=status.last_write_ms)
    cmds.append(("PUBLISH", layout.updates_channel(), encode_update(update)))
    return cmds


# Key names are cached: a device's keys recur in every batch, and building one checks its parts.
_window_series_key = lru_cache(maxsize=65_536)(Layout.window_series)
_trend_key = lru_cache(maxsize=65_536)(Layout.trend)


def _chunks(by_key: dict[str, list[Any]]) -> Iterator[dict[str, list[Any]]]:
    """Split {key: items} into pieces of at most `MAX_ITEMS_PER_SCRIPT_CALL` items; none when empty.

    A key with more items than that is split over several pieces.
    """
    chunk: dict[str, list[Any]] = {}
    size = 0
    for key, items in by_key.items():
        if not items:
            continue
        for start in range(0, len(items), MAX_ITEMS_PER_SCRIPT_CALL):
            part = (
                items
                if len(items) <= MAX_ITEMS_PER_SCRIPT_CALL
                else items[start : start + MAX_ITEMS_PER_SCRIPT_CALL]
            )
            if size + len(part) > MAX_ITEMS_PER_SCRIPT_CALL and chunk:
                yield chunk
                chunk, size = {}, 0
            chunk[key] = part
            size += len(part)
    if chunk:
        yield chunk


def connection_pool(settings: SinkSettings) -> redis.ConnectionPool:
    """A connection pool whose connections retry transient errors with exponential backoff.

    redis-py's own `Retry` re-sends a command (or a whole pipeline) after a
    connection error or timeout, reconnecting in between; `ExponentialBackoff`
    waits min(cap, base * 2**n) before retry n.
    """
    return redis.ConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.sink_max_connections,
        socket_timeout=settings.sink_socket_timeout_s,
        socket_connect_timeout=settings.sink_socket_connect_timeout_s,
        retry=Retry(
            ExponentialBackoff(cap=settings.sink_backoff_cap_s, base=settings.sink_backoff_base_s),
            settings.sink_retries,
        ),
    )


class RedisWriter:
    """Buffers the dataflow's records and writes them to Redis, one round trip per flush."""

    def __init__(self, settings: SinkSettings, now_ms: Callable[[], int] = wall_clock_ms) -> None:
        """Create a writer; nothing connects before `setup`.

        Args:
            settings: Where Redis is, key prefix, retention, alert cap, timeouts and retries.
            now_ms: Wall clock (UTC epoch ms) for the sink's status and notifications.
        """
        self.settings = settings
        self.layout = Layout(settings.redis_prefix)
        self._now_ms = now_ms
        self._pending = PendingWrites()
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        """The pooled client (after `setup`)."""
        if self._client is None:
            raise RuntimeError("RedisWriter.setup() was not called")
        return self._client

    @property
    def pending(self) -> PendingWrites:
        """What waits to be written."""
        return self._pending

    def setup(self) -> None:
        """Create the connection pool and load the scripts; Redis being down here is not an error.

        The first `flush` then fails like any other while Redis is unreachable, and
        loads the scripts itself once Redis answers.
        """
        self._client = redis.Redis(connection_pool=connection_pool(self.settings))
        try:
            self._load_scripts()
        except redis.RedisError as exc:
            log.warning("redis_unreachable_at_setup", error=str(exc))

    def add(self, records: Iterable[SinkRecord]) -> None:
        """Buffer `records` (coalesced, see `PendingWrites`); no I/O."""
        add = self._pending.add
        for record in records:
            add(record)

    def flush(self, circuit_state: CircuitState = CircuitState.CLOSED) -> dict[UpdateKind, int]:
        """Write everything buffered in one pipelined round trip; clear the buffer only on success.

        Args:
            circuit_state: The breaker's state, reported in the stats hash.

        Returns:
            Records written per kind (empty when nothing was buffered).

        Raises:
            redis.RedisError: Redis did not take the batch (after redis-py's retries); the
                buffer is kept, and writing it again later is safe (idempotent).
        """
        if not self._pending:
            return {}
        status = SinkStatus(last_write_ms=self._now_ms(), circuit_state=circuit_state)
        commands = build_commands(self._pending, self.layout, self.settings, status)
        self._execute(commands)
        written = self._pending.counts()
        self._pending = PendingWrites()
        return written

    def write_status(self, circuit_state: CircuitState) -> None:
        """Write only the sink's status into the stats hash (one round trip).

        Raises:
            redis.RedisError: Redis did not take it.
        """
        status = SinkStatus(last_write_ms=self._now_ms(), circuit_state=circuit_state)
        fields = encode_sink_status(status)
        self.client.hset(self.layout.stats(), mapping=fields)  # type: ignore[arg-type]

    def close(self) -> None:
        """Disconnect the pool (buffered records not flushed stay in `pending`)."""
        if self._client is not None:
            self._client.close()
            self._client.connection_pool.disconnect()
            self._client = None

    def _execute(self, commands: list[Command]) -> None:
        replies = self._pipeline(commands)
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis restarted (or its script cache was flushed) since the scripts were
            # loaded. Every command is idempotent, so sending the batch again is safe.
            log.info("redis_scripts_reloaded")
            self._load_scripts()
            replies = self._pipeline(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply

    def _pipeline(self, commands: list[Command]) -> list[Any]:
        # transaction=False: one round trip without MULTI/EXEC; atomicity where it
        # matters (per key) comes from the scripts.
        with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return pipe.execute(raise_on_error=False)

    def _load_scripts(self) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            for script in SCRIPTS:
                pipe.script_load(script.text)
            shas = pipe.execute()
        for script, sha in zip(SCRIPTS, shas, strict=True):
            if (sha.decode() if isinstance(sha, bytes) else sha) != script.sha:
                raise RuntimeError(f"Redis named script {script.name} {sha!r}, expected {script.sha}")
