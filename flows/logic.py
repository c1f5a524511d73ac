"""The per-key state machines of the dataflow (Bytewax `StatefulBatchLogic`s).

* `DeviceLogic`, one per device: event-time windows, z-score detectors and the
  trend of its three metrics, and its latest reading.
* `ActivityLogic`, one for the site: activity windows and the leaderboard.
* `CountersLogic`, one for the pipeline: absolute counters.

They glue the pure modules (`watermark`, `windows`, `stats`, `zscore`, `trend`,
`activity`) to Bytewax: they turn results into the typed records of
`sinks.records`, and tell Bytewax when to wake them for windows that close by
the clock alone. Each batch of a key yields one output item (its records and
its late-event count), so downstream steps touch one item per key per batch.

Recovery pickles each key's state by step id: the state classes are small
plain classes, and renaming a step or moving a class is a migration.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import numpy as np
from bytewax.operators import StatefulBatchLogic

from flows.activity import ActivitySummary, ActivityWindows
from flows.clock import Clock, wall_time_of
from flows.decode import METRICS, ActivityBlock, IotBlock
from flows.settings import FlowSettings, window_name
from flows.stats import summarize_blocks
from flows.trend import RollingTrend
from flows.watermark import Watermark
from flows.windows import ClosedWindow, PaneWindows, WindowSpec
from flows.zscore import Episode, ZScoreDetector, update_rows
from sinks.records import (
    ActivityWindow,
    Alert,
    PageTotal,
    PipelineCounters,
    TrendState,
    WindowStats,
)
from sinks.writer import SinkRecord
from sources.models import Metric, SensorReading

ACTIVITY_KEY = "activity"
PIPELINE_KEY = "pipeline"
_Times = TypeVar("_Times", int, np.ndarray)


@dataclass(frozen=True, slots=True)
class LateCount:
    """Late events of one key: its running total and how many this batch added."""

    key: str
    total: int
    delta: int


@dataclass(frozen=True, slots=True)
class CounterDelta:
    """A contribution to the pipeline counters."""

    events_in: int = 0
    dead_letters: int = 0
    late_events: int = 0
    newest_ms: int | None = None


@dataclass(frozen=True, slots=True)
class KeyOutput:
    """Everything one key produced from one batch (or wake-up)."""

    records: tuple[SinkRecord, ...] = ()
    late: LateCount | None = None


_NOTHING: tuple[list[KeyOutput], bool] = ([], StatefulBatchLogic.RETAIN)


def alert_id(device_id: str, metric: str, start_ms: int) -> str:
    """Deterministic id of an episode: a replay produces the same id, so the sink overwrites."""
    return f"{device_id}:{metric}:{start_ms}"


@dataclass(frozen=True, slots=True)
class IotParams:
    """The per-device analytics' configuration (not state)."""

    windows: tuple[WindowSpec, ...]
    lateness_ms: int
    zscore: tuple[tuple[str, float | int | None], ...]
    """Keyword arguments of `ZScoreDetector`."""
    trend_span_s: float
    trend_report_ms: int
    """Event time between two reports of a device's trend (the tumbling window's length)."""
    trend_min_points: int
    trend_min_t: float
    trend_min_slopes: tuple[float, ...]

    @classmethod
    def from_settings(cls, settings: FlowSettings) -> IotParams:
        """Read the configuration from the flow's settings."""
        return cls(
            windows=(
                WindowSpec(window_name(settings.tumbling_ms), settings.tumbling_ms, settings.tumbling_ms),
                WindowSpec(window_name(settings.sliding_ms), settings.sliding_ms, settings.slide_ms),
            ),
            lateness_ms=settings.lateness_ms,
            zscore=(
                ("window", settings.zscore_window),
                ("window_s", settings.zscore_window_s),
                ("warning_z", settings.zscore_warning),
                ("critical_z", settings.zscore_critical),
                ("warmup", settings.zscore_warmup),
                ("cooldown", settings.zscore_cooldown),
                ("max_episode", settings.zscore_max_episode),
                ("min_std", settings.zscore_min_std),
                ("confirm", settings.zscore_confirm),
            ),
            trend_span_s=settings.trend_span_s,
            trend_report_ms=settings.tumbling_ms,
            trend_min_points=settings.trend_min_points,
            trend_min_t=settings.trend_min_t,
            trend_min_slopes=tuple(settings.trend_min_slope(m) for m in METRICS),
        )

    def trend_report_interval(self, device_id: str, t_ms: _Times) -> _Times:
        """Which report interval event time `t_ms` (or each of an array) falls in for this device.

        Each device's intervals are shifted by a stable phase of its own: with one shared
        grid every device's fit lands in the same batch when event time crosses a boundary,
        a burst that delays everything else in that batch (the latest readings' freshness).
        """
        phase = zlib.crc32(device_id.encode()) % self.trend_report_ms
        return (t_ms + phase) // self.trend_report_ms

    def new_state(self, device_id: str) -> DeviceState:
        """A device's state before its first reading."""
        return DeviceState(
            device_id=device_id,
            watermark=Watermark(self.lateness_ms),
            windows=PaneWindows(self.windows, len(METRICS)),
            detectors=[ZScoreDetector(**dict(self.zscore)) for _ in METRICS],  # type: ignore[arg-type]
            trend=RollingTrend(
                span_s=self.trend_span_s,
                series=len(METRICS),
                min_points=self.trend_min_points,
                min_t=self.trend_min_t,
                min_slope_per_min=self.trend_min_slopes,
            ),
        )


@dataclass(slots=True)
class DeviceState:
    """Everything kept about one device (pickled into recovery snapshots)."""

    device_id: str
    watermark: Watermark
    windows: PaneWindows
    detectors: list[ZScoreDetector]
    """One per metric, in `METRICS` order."""
    trend: RollingTrend
    latest: tuple[int, float, float, float] | None = None
    """Newest reading: event time and the metrics in `METRICS` order."""
    late_events: int = 0
    trend_reported: int | None = None
    """Report interval (of `IotParams.trend_report_ms`) of the newest reading at the last report."""
    trend_dirty: bool = False
    """Readings were added to the trend since it was last reported."""


class DeviceLogic(StatefulBatchLogic[IotBlock, KeyOutput, bytes]):
    """One device's analytics: windows, anomalies, trend, latest reading."""

    def __init__(self, params: IotParams, clock: Clock, snapshot: bytes | None) -> None:
        self.params = params
        self.clock = clock
        self.state: DeviceState | None = None
        if snapshot is not None:
            self.state = pickle.loads(snapshot)  # noqa: S301 - our own snapshot, from Bytewax's recovery store
            self.state.watermark.resume(clock.now_ms())

    def on_batch(self, values: list[IotBlock]) -> tuple[Iterable[KeyOutput], bool]:
        """Take the device's blocks of this batch (an empty one: its partition's word on ``at_end``)."""
        if self.state is None:
            self.state = self.params.new_state(values[0].device_id)
        st = self.state
        if len(values) == 1:
            times, readings = values[0].times, values[0].values
        else:
            times = np.concatenate([b.times for b in values])
            readings = np.concatenate([b.values for b in values], axis=1)
        now = self.clock.now_ms()
        if times.shape[0] == 0:
            st.watermark.caught_up(values[-1].at_end, now)
            closed = self._close(st.watermark.tick(now))
            return ([KeyOutput(tuple(closed))] if closed else []), StatefulBatchLogic.RETAIN
        late = st.watermark.observe(times, now)
        n_late = int(np.count_nonzero(late))
        records: list[SinkRecord] = []
        late_count = None
        if n_late:
            st.late_events += n_late
            late_count = LateCount(st.device_id, st.late_events, n_late)
            keep = ~late
            on_time, on_time_values = times[keep], readings[:, keep]
        else:
            on_time, on_time_values = times, readings
        if on_time.shape[0]:
            st.windows.add(on_time, on_time_values)
            self._detect(on_time, on_time_values, records)
            st.trend.update_many(on_time, on_time_values)
            st.trend_dirty = True
            # A fit per 10 s of event time, not per batch: a fit costs as much as a block of
            # readings, a 5-minute trend barely moves in 10 s, and a quiet device reports on waking.
            interval = self.params.trend_report_interval(st.device_id, st.trend.newest_ms or 0)
            if interval != st.trend_reported:
                st.trend_reported = interval
                records.extend(self._trends())
        newest = int(np.argmax(times))
        if st.latest is None or int(times[newest]) > st.latest[0]:
            temperature, humidity, pressure = readings[:, newest].tolist()
            st.latest = (int(times[newest]), temperature, humidity, pressure)
            records.append(self._latest())
        st.watermark.caught_up(values[-1].at_end, now)
        records.extend(self._close(st.watermark.value_ms))
        return [KeyOutput(tuple(records), late_count)], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[KeyOutput], bool]:
        """The clock alone may have closed windows of an idle device."""
        st = self.state
        if st is None:
            return _NOTHING
        closed = self._close(st.watermark.tick(self.clock.now_ms()))
        if st.trend_dirty:
            # Gone quiet: report the trend with every reading in it.
            closed.extend(self._trends())
        return ([KeyOutput(tuple(closed))] if closed else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[KeyOutput], bool]:
        """End of input: report the open windows as they stand (kept open for a later execution)."""
        st = self.state
        if st is None:
            return _NOTHING
        pending: list[SinkRecord] = self._window_records(st.windows.pending())
        if st.trend_dirty:
            pending.extend(self._trends())
        return ([KeyOutput(tuple(pending))] if pending else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """When the clock alone will close the next window (real time, for Bytewax)."""
        st = self.state
        if st is None:
            return None
        end = st.windows.next_close_ms()
        due = None if end is None else st.watermark.due_at_ms(end)
        return None if due is None else wall_time_of(self.clock, due)

    def snapshot(self) -> bytes:
        """The state, pickled: an immutable copy in one pass (Bytewax stores it as it is)."""
        assert self.state is not None
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    # --- records --------------------------------------------------------------

    def _detect(self, times: np.ndarray, values: np.ndarray, out: list[SinkRecord]) -> None:
        st = self.state
        assert st is not None
        for metric, alerts in zip(METRICS, update_rows(st.detectors, times, values), strict=True):
            if alerts:
                # An episode may start and grow within one batch: its latest version is enough.
                latest: dict[int, Episode] = {ep.start_ms: ep for ep in alerts}
                out.extend(
                    Alert(
                        alert_id=alert_id(st.device_id, metric.value, ep.start_ms),
                        device_id=st.device_id,
                        metric=metric,
                        value=ep.value,
                        mean=ep.mean,
                        std=ep.std,
                        z=ep.z,
                        severity=ep.severity,
                        event_time_ms=ep.peak_ms,
                        started_ms=ep.start_ms,
                    )
                    for ep in latest.values()
                )

    def _trends(self) -> list[TrendState]:
        st = self.state
        assert st is not None
        st.trend_dirty = False
        return [
            TrendState(
                device_id=st.device_id,
                metric=metric,
                slope_per_min=fit.slope_per_min,
                direction=fit.direction,
                r2=fit.r2,
                points=fit.points,
                updated_ms=fit.newest_ms,
            )
            for metric, fit in zip(METRICS, st.trend.fit(), strict=True)
        ]

    def _latest(self) -> SensorReading:
        st = self.state
        assert st is not None and st.latest is not None
        t, *vals = st.latest
        value = dict(zip(METRICS, vals, strict=True))
        # Built from values the model validated at the edge: no second validation.
        return SensorReading.model_construct(
            device_id=st.device_id,
            event_time=t,
            temperature=value[Metric.TEMPERATURE],
            humidity=value[Metric.HUMIDITY],
            pressure=value[Metric.PRESSURE],
        )

    def _close(self, watermark_ms: int) -> list[SinkRecord]:
        st = self.state
        assert st is not None
        return self._window_records(st.windows.close(watermark_ms))

    def _window_records(self, windows: list[ClosedWindow]) -> list[SinkRecord]:
        st = self.state
        assert st is not None
        if not windows:
            return []
        device = st.device_id
        records: list[SinkRecord] = []
        # All windows at once: a backlog closes dozens per batch (see `summarize_blocks`).
        for w, rows in zip(windows, summarize_blocks([w.values for w in windows]), strict=True):
            name, start, end = w.spec.name, w.start_ms, w.end_ms
            records.extend(
                # Positional, in `WindowStats`' field order: window, device, metric, bounds, aggregates.
                WindowStats(name, device, metric, start, end, *aggregates)
                for metric, aggregates in zip(METRICS, rows, strict=True)
            )
        return records


class ActivityLogic(StatefulBatchLogic[ActivityBlock, KeyOutput, bytes]):
    """The site's activity windows and leaderboard (one key)."""

    def __init__(
        self,
        window_ms: int,
        lateness_ms: int,
        clock: Clock,
        snapshot: bytes | None,
        partitions: int = 1,
    ) -> None:
        self.clock = clock
        self.name = window_name(window_ms)
        if snapshot is None:
            self.state = ActivityWindows(
                length_ms=window_ms, lateness_ms=lateness_ms, expected_partitions=partitions
            )
        else:
            self.state = pickle.loads(snapshot)  # noqa: S301 - our own snapshot, from Bytewax's recovery store
            self.state.resume(clock.now_ms())

    def on_batch(self, values: list[ActivityBlock]) -> tuple[Iterable[KeyOutput], bool]:
        """Take this batch's blocks, one per partition."""
        now = self.clock.now_ms()
        pages: dict[str, int] = {}
        n_late = 0
        for b in values:
            update = self.state.add(b.partition, b.times, b.types, b.amounts, b.users, b.pages, now, b.at_end)
            n_late += update.late
            pages.update(update.pages)
        records: list[SinkRecord] = [PageTotal(page, total) for page, total in pages.items()]
        records.extend(self._windows(self.state.close(now)))
        late = LateCount(ACTIVITY_KEY, self.state.late_events, n_late) if n_late else None
        return [KeyOutput(tuple(records), late)], StatefulBatchLogic.RETAIN

    def on_notify(self) -> tuple[Iterable[KeyOutput], bool]:
        """Idle partitions may have let windows close."""
        closed = self._windows(self.state.close(self.clock.now_ms()))
        return ([KeyOutput(tuple(closed))] if closed else []), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[KeyOutput], bool]:
        """End of input: report the open windows as they stand."""
        pending = self._windows(self.state.pending())
        return ([KeyOutput(tuple(pending))] if pending else []), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        """When the clock alone will close the oldest open window."""
        due = self.state.next_close_due_ms()
        return None if due is None else wall_time_of(self.clock, due)

    def snapshot(self) -> bytes:
        """The state, pickled (an immutable copy in one pass)."""
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    def _windows(self, summaries: Iterable[ActivitySummary]) -> list[SinkRecord]:
        return [
            ActivityWindow(
                window=self.name,
                start_ms=s.start_ms,
                end_ms=s.end_ms,
                counts=s.counts,
                events_per_s=s.events_per_s,
                revenue=s.revenue,
                distinct_users=s.distinct_users,
            )
            for s in summaries
        ]


class CountersLogic(StatefulBatchLogic[CounterDelta, PipelineCounters, PipelineCounters]):
    """Absolute pipeline counters, kept in one key so they are exact and recovered with the flow."""

    def __init__(self, state: PipelineCounters | None) -> None:
        self.state = state if state is not None else PipelineCounters(0, 0, 0, None)

    def on_batch(self, values: list[CounterDelta]) -> tuple[Iterable[PipelineCounters], bool]:
        """Add this batch's contributions; emit the new totals."""
        c = self.state
        events_in, dead, late, newest = c.events_in, c.dead_letters, c.late_events, c.last_event_ms
        for d in values:
            events_in += d.events_in
            dead += d.dead_letters
            late += d.late_events
            if d.newest_ms is not None and (newest is None or d.newest_ms > newest):
                newest = d.newest_ms
        new = PipelineCounters(events_in, dead, late, newest)
        if new == c:
            return [], StatefulBatchLogic.RETAIN
        self.state = new
        return [new], StatefulBatchLogic.RETAIN

    def snapshot(self) -> PipelineCounters:
        """The totals (immutable)."""
        return self.state


def device_builder(params: IotParams, clock: Clock) -> Callable[[bytes | None], DeviceLogic]:
    """Builder of `DeviceLogic` for `bytewax.operators.stateful_batch`."""
    return lambda state: DeviceLogic(params, clock, state)


def activity_builder(
    window_ms: int, lateness_ms: int, clock: Clock, partitions: int = 1
) -> Callable[[bytes | None], ActivityLogic]:
    """Builder of `ActivityLogic` for `bytewax.operators.stateful_batch` (`partitions`: of the topic)."""
    return lambda state: ActivityLogic(window_ms, lateness_ms, clock, state, partitions)
