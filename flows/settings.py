"""Settings of the dataflow process (``python -m bytewax.run flows.main``).

Window geometry, event-time lateness, the anomaly detector, the trend fit and
the input batch size. Built once in `flows.main` and passed down; everything
below works in integer epoch milliseconds, so the ``*_ms`` properties convert.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from config.settings import KafkaConnection
from sinks.settings import SinkSettings
from sources.models import Metric


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def window_name(length_ms: int) -> str:
    """Short, key-safe name of a window length: ``10s``, ``60s`` or ``250ms``."""
    return f"{length_ms // 1000}s" if length_ms % 1000 == 0 else f"{length_ms}ms"


class FlowSettings(KafkaConnection, SinkSettings):
    """What the dataflow computes, how it reads its input and where it writes (Redis sink settings)."""

    kafka_start_from: Literal["earliest", "latest"] = Field(
        "earliest",
        description=(
            "Where a first start reads each partition from: earliest (the whole topic) or latest (only new "
            "events). After that, recovery snapshots hold the offsets and this is not used."
        ),
    )
    kafka_stop_at_end: bool = Field(
        False,
        description="Stop at the end of every partition (batch runs, tests, benchmarks) instead of tailing.",
    )
    kafka_statistics_interval_ms: int = Field(
        1000,
        ge=0,
        description="How often librdkafka reports statistics (Bytewax's consumer-lag gauge); 0: never.",
    )
    kafka_consumer_queue_kbytes: int = Field(
        65_536,
        ge=1,
        le=2_097_151,
        description=(
            "Most data the Kafka consumer prefetches per partition, KiB (librdkafka "
            "queued.max.messages.kbytes; one fetch is capped to it too): bounds the flow's memory."
        ),
    )
    kafka_idle_poll_ms: float = Field(
        5.0,
        gt=0,
        le=1000,
        description=(
            "After a poll of a Kafka partition found nothing, wait this long before polling it again, ms: "
            "at most this much is added to an event's time to the dashboard; shorter costs more CPU idling."
        ),
    )
    flow_metrics_host: str = Field(
        "127.0.0.1",
        description="Address the dataflow's Prometheus metrics listen on (0.0.0.0 in containers).",
    )
    flow_metrics_port: int = Field(
        9100,
        ge=0,
        le=65535,
        description="Port of the dataflow's Prometheus metrics; 0 turns them off. One per process.",
    )

    kafka_batch_size: int = Field(
        5000,
        ge=1,
        le=100_000,
        description=(
            "Most messages read from one Kafka partition per poll. The analytics cost is mostly per "
            "device per batch, so a backlog is worked off in big batches; live traffic polls what has come."
        ),
    )
    tumbling_window_s: float = Field(
        10.0, gt=0, le=86_400, description="Length of the IoT tumbling window, seconds."
    )
    sliding_window_s: float = Field(
        60.0, gt=0, le=86_400, description="Length of the IoT sliding window, seconds."
    )
    sliding_slide_s: float = Field(
        10.0, gt=0, le=86_400, description="Step between the starts of two IoT sliding windows, seconds."
    )
    activity_window_s: float = Field(
        10.0, gt=0, le=86_400, description="Length of the website-activity tumbling window, seconds."
    )
    allowed_lateness_s: float = Field(
        5.0,
        ge=0,
        le=86_400,
        description=(
            "How far behind the newest event time of its key (device, or activity partition) an event may "
            "arrive and still count, seconds; older events are counted as late and left out."
        ),
    )
    max_future_skew_s: float = Field(
        300.0,
        gt=0,
        description="Events stamped further than this ahead of the flow's clock are dead-lettered, seconds.",
    )
    zscore_window: int = Field(
        60,
        ge=3,
        le=100_000,
        description=(
            "Anomaly baseline: at most this many previous accepted readings, through which a least-squares "
            "line in event time gives each reading's expected value and its standard error. Keep its time "
            "span short against the signal's cycles (60 readings: 30 s at 2 Hz)."
        ),
    )
    zscore_window_s: float | None = Field(
        None,
        gt=0,
        description="Anomaly baseline: only readings from the last this many seconds (unset: no time limit).",
    )
    zscore_warning: float = Field(3.0, gt=0, description="|z| at or above which a reading is a warning.")
    zscore_critical: float = Field(5.0, gt=0, description="|z| at or above which a reading is critical.")
    zscore_warmup: int = Field(
        30, ge=2, description="Readings the baseline needs before the detector may raise an alert."
    )
    zscore_cooldown: int = Field(
        3, ge=1, description="Consecutive normal readings that end an anomaly episode."
    )
    zscore_max_episode: int = Field(
        30,
        ge=2,
        description=(
            "Flagged readings after which an episode is taken as a level shift: the baseline restarts "
            "from the new level."
        ),
    )
    zscore_confirm: int = Field(
        2,
        ge=1,
        description=(
            "Flagged readings (at or beyond the warning threshold) an anomaly episode needs before it raises "
            "a warning alert; a reading at the critical threshold raises its alert at once. 1: alert on the "
            "first flagged reading."
        ),
    )
    zscore_min_std: float = Field(
        1e-9, gt=0, description="Floor of the baseline's standard error (a flat baseline is not 0)."
    )
    trend_span_s: float = Field(300.0, gt=0, description="Time span of the rolling trend fit, seconds.")
    trend_min_points: int = Field(10, ge=3, description="Readings a trend needs before it is not stable.")
    trend_min_t: float = Field(
        3.0,
        ge=0,
        description=(
            "|t| statistic of the slope needed to call a trend (a slope the fit doesn't support is stable)."
        ),
    )
    trend_min_slope_temperature: float = Field(
        0.02, ge=0, description="Smallest temperature slope called rising or falling, °C per minute."
    )
    trend_min_slope_humidity: float = Field(
        0.05, ge=0, description="Smallest humidity slope called rising or falling, % per minute."
    )
    trend_min_slope_pressure: float = Field(
        0.02, ge=0, description="Smallest pressure slope called rising or falling, hPa per minute."
    )

    @field_validator("tumbling_window_s", "sliding_window_s", "sliding_slide_s", "activity_window_s")
    @classmethod
    def _whole_ms(cls, value: float) -> float:
        if abs(value * 1000 - round(value * 1000)) > 1e-6:
            raise ValueError("must be a whole number of milliseconds")
        return value

    @field_validator("sliding_slide_s")
    @classmethod
    def _slide_within_window(cls, value: float, info: ValidationInfo) -> float:
        window = info.data.get("sliding_window_s")
        if window is not None and value > window:
            raise ValueError(f"must not exceed PIPELINE_SLIDING_WINDOW_S={window} (windows would leave gaps)")
        return value

    @field_validator("zscore_critical")
    @classmethod
    def _critical_above_warning(cls, value: float, info: ValidationInfo) -> float:
        warning = info.data.get("zscore_warning")
        if warning is not None and value <= warning:
            raise ValueError(f"must be greater than PIPELINE_ZSCORE_WARNING={warning}")
        return value

    @field_validator("zscore_confirm")
    @classmethod
    def _confirm_within_episode(cls, value: int, info: ValidationInfo) -> int:
        max_episode = info.data.get("zscore_max_episode")
        if max_episode is not None and value > max_episode:
            raise ValueError(f"must not exceed PIPELINE_ZSCORE_MAX_EPISODE={max_episode}")
        return value

    @property
    def tumbling_ms(self) -> int:
        """Tumbling window length, ms."""
        return _ms(self.tumbling_window_s)

    @property
    def sliding_ms(self) -> int:
        """Sliding window length, ms."""
        return _ms(self.sliding_window_s)

    @property
    def slide_ms(self) -> int:
        """Sliding window step, ms."""
        return _ms(self.sliding_slide_s)

    @property
    def activity_ms(self) -> int:
        """Activity window length, ms."""
        return _ms(self.activity_window_s)

    @property
    def lateness_ms(self) -> int:
        """Allowed lateness, ms."""
        return _ms(self.allowed_lateness_s)

    @property
    def max_future_ms(self) -> int:
        """Largest accepted lead of an event over the clock, ms."""
        return _ms(self.max_future_skew_s)

    @property
    def trend_span_ms(self) -> int:
        """Trend span, ms."""
        return _ms(self.trend_span_s)

    def trend_min_slope(self, metric: Metric) -> float:
        """Smallest slope of `metric` called a trend, units per minute."""
        return float(getattr(self, f"trend_min_slope_{metric.value}"))
