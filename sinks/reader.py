"""The dashboard's only way to read Redis: typed records, one round trip per read.

Every read is a *query*: a small frozen dataclass that queues its commands on a
non-transactional pipeline and decodes the replies into the records of
`sinks.records`, going through `sinks.layout` for every key and encoding.
Reads of many keys of one kind (every device's series, every trend hash) go as
one small read-only Lua script call (`ReadScript`) instead of a command per key:
redis-py's asyncio pipeline spends tens of microseconds of Python per command
(packing, a timeout per reply), which at 100 devices (600 keys) was about half
of a dashboard refresh.
`AsyncReader` (the dashboard's server) and `Reader` (scripts, tests) execute a
query in one round trip. A Redis failure comes back as an `Unavailable` value,
never as an exception: callers have to handle it (mypy sees the union), so a
dashboard callback cannot crash on a Redis outage. A member that fails to decode
is skipped and reported to ``on_bad_member``, so one corrupt entry cannot blank a
whole page.

Queries::

    PingQuery()                             -> bool
    LatestQuery()                           -> {device id: SensorReading}
    SeriesQuery(window, device, metric, ..) -> [WindowStats], oldest first
    TrendsQuery(devices)                    -> {(device id, metric): TrendState}
    DevicesQuery(window, since, points)     -> DeviceData (series + trends of many devices)
    AlertsQuery(limit, severity, ...)       -> [Alert], newest first
    ActivityQuery(window, ...)              -> [ActivityWindow], oldest first
    LeaderboardQuery(limit)                 -> [PageTotal], most purchases first
    StatsQuery()                            -> PipelineStats
    SnapshotQuery(...)                      -> Snapshot (everything a dashboard tick shows)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio
import redis.asyncio.retry
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry
from typing_extensions import override

from sinks.layout import (
    Layout,
    PipelineStats,
    Update,
    check_component,
    decode_activity,
    decode_alert,
    decode_latest,
    decode_stats,
    decode_trend,
    decode_update,
    decode_window_stats,
)
from sinks.records import ActivityWindow, Alert, Metric, PageTotal, Severity, TrendState, WindowStats
from sources.models import SensorReading

log = structlog.get_logger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
R = TypeVar("R")
A = TypeVar("A")

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, OSError)
"""What a lost, refused or timed-out Redis connection raises."""

DECODE_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, TypeError)
"""What a decoder of `sinks.layout` raises on a malformed member (JSON and pydantic errors included)."""

ALERT_SCAN_LIMIT = 1000
"""Most alerts a filtered alert query looks at: the writer keeps the newest 1000 (DESIGN.md)."""

Pipeline = Any
"""A redis-py pipeline, sync or asyncio: both queue the same command methods."""


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Redis could not answer; `reason` says why (exception type and message, no secrets)."""

    reason: str

    @classmethod
    def from_error(cls, exc: BaseException) -> Unavailable:
        """Describe a Redis client exception."""
        return cls(f"{type(exc).__name__}: {exc}")


BadMemberHook = Callable[[str, Exception], None]
"""Called with the key and the error of every member that failed to decode."""


def log_bad_member(key: str, error: Exception) -> None:
    """The default `BadMemberHook`: a warning in the log."""
    log.warning("undecodable redis member skipped", key=key, error=f"{type(error).__name__}: {error}")


class DecodeMemo:
    """Records decoded by earlier reads, by key and exact member bytes; emptied when full.

    A dashboard re-reads mostly unchanged members (trends, the latest readings,
    alerts, every window at a full refresh); decoding one costs ~10 us (JSON and
    a record, pydantic for readings), a lookup about one. The decoders are pure
    and the records immutable, so a hit is exactly what decoding again gives.
    Members that fail to decode are not kept (they are reported on every read).
    Size it to hold what the reads see (with room for rewritten members): then it
    is emptied rarely, and emptying costs one read's decoding.
    """

    __slots__ = ("_items", "capacity", "hits", "misses")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._items: dict[tuple[str, Any], Any] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str, raw: Any) -> Any:
        """The record held for member `raw` of `key`, or None (then `put` it once decoded)."""
        item = self._items.get((key, raw))
        if item is None:
            self.misses += 1
        else:
            self.hits += 1
        return item

    def held(self, key: str, raws: Sequence[Any]) -> list[Any]:
        """`get` of each member of `raws`, in one pass (None where not held)."""
        get = self._items.get
        found = [get((key, raw)) for raw in raws]
        missing = 0
        for item in found:  # not list.count(None): that calls each record's __eq__
            if item is None:
                missing += 1
        self.hits += len(found) - missing
        self.misses += missing
        return found

    def put(self, key: str, raw: Any, item: Any) -> None:
        """Hold `item`, decoded from member `raw` of `key`."""
        if len(self._items) >= self.capacity:
            # Simpler and cheaper per lookup than an LRU; the next read decodes again what it needs.
            self._items.clear()
        self._items[key, raw] = item


class Decoding:
    """Decodes replies member by member, skipping (and reporting) the ones that fail."""

    __slots__ = ("_hook", "_memo", "bad")

    def __init__(self, hook: BadMemberHook, memo: DecodeMemo | None = None) -> None:
        self._hook = hook
        self._memo = memo
        self.bad = 0

    def one(self, key: str, decode: Callable[[A], R], raw: A) -> R | None:
        """``decode(raw)``, or None (reported) when it raises a decoding error.

        The memo serves members given as bytes or tuples of them (hash fields, as a flat tuple).
        """
        memo = self._memo if isinstance(raw, bytes | tuple) else None
        if memo is not None:
            held: R | None = memo.get(key, raw)
            if held is not None:
                return held
        return self._decode(key, decode, raw, memo)

    def _decode(self, key: str, decode: Callable[[A], R], raw: A, memo: DecodeMemo | None) -> R | None:
        try:
            item = decode(raw)
        except DECODE_ERRORS as exc:
            self.bad += 1
            self._hook(key, exc)
            return None
        if memo is not None:
            memo.put(key, raw, item)
        return item

    def each(self, key: str, raws: Sequence[A], decode: Callable[[A], R]) -> list[R]:
        """Decode every member of `raws` that decodes, in order."""
        memo = self._memo if raws and isinstance(raws[0], bytes | tuple) else None
        if memo is None:
            return [item for raw in raws if (item := self._decode(key, decode, raw, None)) is not None]
        out = []
        # One lookup pass, then decode only the misses: a full refresh re-reads thousands of members.
        for raw, held in zip(raws, memo.held(key, raws), strict=True):
            item = held if held is not None else self._decode(key, decode, raw, memo)
            if item is not None:
                out.append(item)
        return out


class Query(Protocol[T_co]):
    """A read: queues its commands, then decodes exactly the replies it queued."""

    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        """Queue this query's commands on `pipe`."""
        ...

    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> T_co:
        """Consume this query's replies from `replies` and build the result."""
        ...


def _bound(value: int | None, default: str) -> int | str:
    return default if value is None else value


@dataclass(frozen=True, slots=True)
class ReadScript:
    """A read-only Lua script run over many keys in one command; its keys come from `Layout`.

    Sent with EVAL (Redis caches the compiled script by its SHA-1), so a reader
    needs no SCRIPT LOAD round trip and survives a Redis restart or SCRIPT FLUSH.
    """

    text: str
    args_per_key: int
    """How many ARGV entries each key takes."""

    def queue(self, pipe: Pipeline, keys: Sequence[str], args: Sequence[Any] = ()) -> int:
        """Queue calls over `keys` (with their `args`, `args_per_key` each); returns the calls queued.

        Keys go in chunks of `MAX_KEYS_PER_SCRIPT`, so one call never holds
        Redis for long; the replies of the calls, in order, are one list per key.
        """
        n = self.args_per_key
        calls = 0
        for start in range(0, len(keys), MAX_KEYS_PER_SCRIPT):
            chunk = keys[start : start + MAX_KEYS_PER_SCRIPT]
            pipe.eval(self.text, len(chunk), *chunk, *args[start * n : (start + len(chunk)) * n])
            calls += 1
        return calls

    @staticmethod
    def replies(replies: Iterator[Any], calls: int) -> Iterator[Any]:
        """The per-key replies of `calls` queued calls, in key order."""
        for _ in range(calls):
            yield from next(replies)


@functools.lru_cache(maxsize=8192)
def _series_key(layout: Layout, window: str, device_id: str, metric: Metric) -> str:
    # Building a key validates its components (a regex each): cached, as a refresh names ~600 keys.
    return layout.window_series(window, device_id, metric)


@functools.lru_cache(maxsize=8192)
def _trend_key(layout: Layout, device_id: str, metric: Metric) -> str:
    return layout.trend(device_id, metric)


METRICS = tuple(Metric)
"""Every metric, in order (iterating the enum itself is slow on a hot path)."""

MAX_KEYS_PER_SCRIPT = 300
"""Most keys one script call reads (a 300-key call runs in well under a millisecond)."""

NEWEST_MEMBERS = ReadScript(
    """
-- KEYS: sorted sets. ARGV, two per key: the lowest score to read ('-inf' for any) and the most
-- members to read. Returns, per key, its highest-scored members in that range, highest first.
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZREVRANGEBYSCORE', key, '+inf', ARGV[2 * i - 1], 'LIMIT', 0, ARGV[2 * i])
end
return out
""",
    args_per_key=2,
)

HASHES = ReadScript(
    """
-- KEYS: hashes. Returns, per key, its fields and values as a flat list (empty when missing).
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGETALL', key)
end
return out
""",
    args_per_key=0,
)


def _pairs(flat: Sequence[bytes]) -> dict[bytes | str, bytes | str]:
    """A hash from HGETALL's flat field, value list (what a Lua script returns)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _decode_trend(flat: Sequence[bytes], device_id: str, metric: Metric) -> TrendState:
    return decode_trend(_pairs(flat), device_id=device_id, metric=metric)


# --- single queries ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PingQuery(Query[bool]):
    """Is Redis answering?"""

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        pipe.ping()

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> bool:
        return bool(next(replies))


@dataclass(frozen=True, slots=True)
class LatestQuery(Query[dict[str, SensorReading]]):
    """The latest reading of every device, by device id (sorted)."""

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        pipe.hgetall(layout.latest())

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> dict[str, SensorReading]:
        fields: dict[bytes, bytes] = next(replies)
        key = layout.latest()
        readings = {}
        for raw_device, raw in sorted(fields.items()):
            reading = dec.one(key, decode_latest, raw)
            if reading is not None:
                readings[raw_device.decode()] = reading
        return readings


@dataclass(frozen=True, slots=True)
class SeriesQuery(Query[list[WindowStats]]):
    """The newest `limit` windows of one device and metric whose start lies in [start_ms, end_ms].

    The result is oldest first. Bounds are inclusive epoch ms; None is unbounded.
    """

    window: str
    device_id: str
    metric: Metric
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = 60

    def __post_init__(self) -> None:
        check_component(self.window, "window")
        check_component(self.device_id, "device id")
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        key = layout.window_series(self.window, self.device_id, self.metric)
        # Newest first with LIMIT, so "the last N" costs O(log n + N) whatever the retention.
        pipe.zrevrangebyscore(
            key, _bound(self.end_ms, "+inf"), _bound(self.start_ms, "-inf"), start=0, num=self.limit
        )

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> list[WindowStats]:
        members: list[bytes] = next(replies)
        key = layout.window_series(self.window, self.device_id, self.metric)
        return dec.each(
            key,
            members[::-1],
            lambda raw: decode_window_stats(raw, self.window, self.device_id, self.metric),
        )


@dataclass(frozen=True, slots=True)
class TrendsQuery(Query[dict[tuple[str, Metric], TrendState]]):
    """The trend of every metric of each device; (device, metric) pairs without one are absent."""

    device_ids: tuple[str, ...]

    def __post_init__(self) -> None:
        for device_id in self.device_ids:
            check_component(device_id, "device id")

    def _keys(self, layout: Layout) -> list[str]:
        return [_trend_key(layout, d, m) for d in self.device_ids for m in METRICS]

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        HASHES.queue(pipe, self._keys(layout))

    @override
    def decode(
        self, replies: Iterator[Any], layout: Layout, dec: Decoding
    ) -> dict[tuple[str, Metric], TrendState]:
        keys = self._keys(layout)
        calls = -(-len(keys) // MAX_KEYS_PER_SCRIPT)
        trends = {}
        hashes = ReadScript.replies(replies, calls)
        for key, (device_id, metric), flat in zip(
            keys, ((d, m) for d in self.device_ids for m in METRICS), hashes, strict=True
        ):
            if not flat:
                continue
            trend = dec.one(key, partial(_decode_trend, device_id=device_id, metric=metric), tuple(flat))
            if trend is not None:
                trends[device_id, metric] = trend
        return trends


@dataclass(frozen=True, slots=True)
class DeviceData:
    """Window series and trends of several devices."""

    series: dict[tuple[str, Metric], list[WindowStats]]
    """(device, metric) -> windows, oldest first; every requested pair is present."""
    trends: dict[tuple[str, Metric], TrendState]
    """(device, metric) -> trend; pairs without a trend yet are absent."""


@dataclass(frozen=True, slots=True)
class DevicesQuery(Query[DeviceData]):
    """Every metric's newest windows and trend for each device of `since`.

    `since` maps a device to the start (ms) of the newest window the caller
    already holds, or None for a full read: that window is read again (a rewrite
    of it is picked up) with everything newer, at most `points` per metric.
    All series go in one script call (`NEWEST_MEMBERS`), all trends in another.
    """

    window: str
    since: tuple[tuple[str, int | None], ...]
    points: int = 60
    _trends: TrendsQuery = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_component(self.window, "window")
        if self.points < 1:
            raise ValueError(f"points must be >= 1, got {self.points}")
        object.__setattr__(self, "_trends", TrendsQuery(tuple(device_id for device_id, _ in self.since)))

    def _keys(self, layout: Layout) -> list[str]:
        return [_series_key(layout, self.window, d, m) for d, _ in self.since for m in METRICS]

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        args: list[int | str] = []
        for _, start_ms in self.since:
            bound = _bound(start_ms, "-inf")
            for _ in METRICS:
                args += (bound, self.points)
        NEWEST_MEMBERS.queue(pipe, self._keys(layout), args)
        self._trends.queue(pipe, layout)

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> DeviceData:
        keys = self._keys(layout)
        calls = -(-len(keys) // MAX_KEYS_PER_SCRIPT)
        members = ReadScript.replies(replies, calls)
        series: dict[tuple[str, Metric], list[WindowStats]] = {}
        for key, (device_id, metric), newest_first in zip(
            keys, ((d, m) for d, _ in self.since for m in METRICS), members, strict=True
        ):
            series[device_id, metric] = dec.each(
                key,
                newest_first[::-1],
                partial(decode_window_stats, window=self.window, device_id=device_id, metric=metric),
            )
        return DeviceData(series, self._trends.decode(replies, layout, dec))


@dataclass(frozen=True, slots=True)
class AlertsQuery(Query[list[Alert]]):
    """The newest alerts, optionally only at or after `since_ms` and of one severity or device."""

    limit: int = 50
    severity: Severity | None = None
    device_id: str | None = None
    since_ms: int | None = None

    def __post_init__(self) -> None:
        if self.device_id is not None:
            check_component(self.device_id, "device id")
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @property
    def _filtered(self) -> bool:
        return self.severity is not None or self.device_id is not None

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        # Members are JSON, so Redis can't filter by field: a filtered query reads the
        # whole (bounded) set and filters here.
        num = ALERT_SCAN_LIMIT if self._filtered else self.limit
        pipe.zrevrangebyscore(layout.alerts(), "+inf", _bound(self.since_ms, "-inf"), start=0, num=num)

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> list[Alert]:
        alerts = dec.each(layout.alerts(), next(replies), decode_alert)
        if self.severity is not None:
            alerts = [a for a in alerts if a.severity is self.severity]
        if self.device_id is not None:
            alerts = [a for a in alerts if a.device_id == self.device_id]
        return alerts[: self.limit]


@dataclass(frozen=True, slots=True)
class ActivityQuery(Query[list[ActivityWindow]]):
    """The newest `limit` activity windows whose start lies in [start_ms, end_ms], oldest first."""

    window: str = "10s"
    start_ms: int | None = None
    end_ms: int | None = None
    limit: int = 60

    def __post_init__(self) -> None:
        check_component(self.window, "window")
        if self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        pipe.zrevrangebyscore(
            layout.activity_series(self.window),
            _bound(self.end_ms, "+inf"),
            _bound(self.start_ms, "-inf"),
            start=0,
            num=self.limit,
        )

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> list[ActivityWindow]:
        members: list[bytes] = next(replies)
        return dec.each(
            layout.activity_series(self.window), members[::-1], lambda raw: decode_activity(raw, self.window)
        )


@dataclass(frozen=True, slots=True)
class LeaderboardQuery(Query[list[PageTotal]]):
    """The `limit` pages with the most purchases, most first (ties by page name, descending)."""

    limit: int = 10

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        pipe.zrevrange(layout.leaderboard(), 0, self.limit - 1, withscores=True)

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> list[PageTotal]:
        pairs: list[tuple[bytes, float]] = next(replies)
        return dec.each(layout.leaderboard(), pairs, _page_total)


@dataclass(frozen=True, slots=True)
class StatsQuery(Query[PipelineStats]):
    """The pipeline's counters and sink state."""

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        pipe.hgetall(layout.stats())

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> PipelineStats:
        fields = next(replies)
        stats = dec.one(layout.stats(), decode_stats, fields)
        return stats if stats is not None else decode_stats({})


def _page_total(pair: tuple[bytes, float]) -> PageTotal:
    page, purchases = pair
    return PageTotal(page.decode(), int(purchases))


# --- the dashboard's snapshot ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything one dashboard tick shows, read in one round trip."""

    latest: dict[str, SensorReading]
    devices: DeviceData
    alerts: list[Alert]
    """Newest first, the alert table."""
    recent_alerts: list[Alert]
    """Newest first, every alert at or after the query's `recent_since_ms`."""
    activity: list[ActivityWindow]
    leaderboard: list[PageTotal]
    stats: PipelineStats
    bad_members: int = 0
    """Members skipped because they did not decode."""

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot of an empty Redis."""
        return cls({}, DeviceData({}, {}), [], [], [], [], decode_stats({}))


@dataclass(frozen=True, slots=True)
class SnapshotQuery(Query[Snapshot]):
    """One dashboard tick's read: latest readings, device series and trends, alerts, activity, stats."""

    devices: DevicesQuery
    activity: ActivityQuery
    alerts_limit: int = 50
    recent_since_ms: int | None = None
    leaderboard_limit: int = 10
    _parts: tuple[Query[Any], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts: tuple[Query[Any], ...] = (
            LatestQuery(),
            self.devices,
            AlertsQuery(limit=self.alerts_limit),
            AlertsQuery(limit=ALERT_SCAN_LIMIT, since_ms=self.recent_since_ms),
            self.activity,
            LeaderboardQuery(self.leaderboard_limit),
            StatsQuery(),
        )
        object.__setattr__(self, "_parts", parts)

    @override
    def queue(self, pipe: Pipeline, layout: Layout) -> None:
        for part in self._parts:
            part.queue(pipe, layout)

    @override
    def decode(self, replies: Iterator[Any], layout: Layout, dec: Decoding) -> Snapshot:
        before = dec.bad
        latest, devices, alerts, recent, activity, leaderboard, stats = (
            part.decode(replies, layout, dec) for part in self._parts
        )
        return Snapshot(latest, devices, alerts, recent, activity, leaderboard, stats, dec.bad - before)


# --- readers -----------------------------------------------------------------


def _run(
    query: Query[T], layout: Layout, replies: list[Any], hook: BadMemberHook, memo: DecodeMemo | None
) -> T:
    it = iter(replies)
    result = query.decode(it, layout, Decoding(hook, memo))
    assert next(it, None) is None, f"{type(query).__name__} left replies undecoded"
    return result


class AsyncReader:
    """Executes queries on an asyncio Redis client: one pipeline round trip each."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        layout: Layout,
        on_bad_member: BadMemberHook = log_bad_member,
    ) -> None:
        self._client = client
        self.layout = layout
        self._on_bad_member = on_bad_member

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str,
        timeout_s: float = 1.0,
        on_bad_member: BadMemberHook = log_bad_member,
    ) -> AsyncReader:
        """A reader with its own connection pool, failing fast (`timeout_s`, no retries).

        A dashboard retries on its next tick anyway; redis-py's default retries with
        backoff would hold every waiting request for seconds during an outage.
        """
        client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            health_check_interval=10,
        )
        return cls(client, Layout(prefix), on_bad_member)

    async def read(self, query: Query[T], memo: DecodeMemo | None = None) -> T | Unavailable:
        """Run `query` in one round trip; `Unavailable` when Redis does not answer.

        With `memo`, members decoded by earlier reads with the same memo are not decoded again.
        """
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                query.queue(pipe, self.layout)
                replies = await pipe.execute()
        except REDIS_ERRORS as exc:
            return Unavailable.from_error(exc)
        return _run(query, self.layout, replies, self._on_bad_member, memo)

    async def updates(
        self,
        stop: asyncio.Event | None = None,
        retry_s: float = 0.5,
        max_retry_s: float = 5.0,
        poll_s: float = 0.25,
    ) -> AsyncIterator[Update | Unavailable]:
        """Notifications of the pipeline's updates channel, until `stop` is set.

        Yields every `Update` published on `Layout.updates_channel`; when the
        subscription fails it yields an `Unavailable`, waits (doubling from
        `retry_s` to `max_retry_s`) and subscribes again. Undecodable messages are
        skipped and reported like undecodable members.

        Stop it with `stop` (noticed within `poll_s`), not by cancelling the
        consuming task: redis-py's read timeout can swallow a cancellation that
        lands while it expires, leaving the task stuck (Python 3.11 asyncio.timeout).
        """
        stop = stop or asyncio.Event()
        channel = self.layout.updates_channel()
        delay = retry_s
        while not stop.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(channel)
                delay = retry_s
                while not stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=poll_s)
                    if message is None or message.get("type") != "message":
                        continue
                    update = Decoding(self._on_bad_member).one(channel, decode_update, message["data"])
                    if update is not None:
                        yield update
            except REDIS_ERRORS as exc:
                yield Unavailable.from_error(exc)
            finally:
                try:
                    await pubsub.aclose()
                except REDIS_ERRORS:
                    pass  # the connection is already gone; nothing left to release
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_retry_s)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class Reader:
    """Executes queries on a synchronous Redis client (scripts, tests, benchmarks)."""

    def __init__(
        self, client: redis.Redis, layout: Layout, on_bad_member: BadMemberHook = log_bad_member
    ) -> None:
        self._client = client
        self.layout = layout
        self._on_bad_member = on_bad_member

    @classmethod
    def from_url(cls, url: str, prefix: str, timeout_s: float = 1.0) -> Reader:
        """A reader with its own connection pool, failing fast (`timeout_s`, no retries)."""
        client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, Layout(prefix))

    def read(self, query: Query[T], memo: DecodeMemo | None = None) -> T | Unavailable:
        """Run `query` in one round trip; `Unavailable` when Redis does not answer.

        With `memo`, members decoded by earlier reads with the same memo are not decoded again.
        """
        try:
            with self._client.pipeline(transaction=False) as pipe:
                query.queue(pipe, self.layout)
                replies = pipe.execute()
        except REDIS_ERRORS as exc:
            return Unavailable.from_error(exc)
        return _run(query, self.layout, replies, self._on_bad_member, memo)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


__all__ = [
    "ActivityQuery",
    "AlertsQuery",
    "AsyncReader",
    "DecodeMemo",
    "DeviceData",
    "DevicesQuery",
    "LatestQuery",
    "LeaderboardQuery",
    "PingQuery",
    "Query",
    "Reader",
    "SeriesQuery",
    "Snapshot",
    "SnapshotQuery",
    "StatsQuery",
    "TrendsQuery",
    "Unavailable",
]
