"""Raw Kafka batches in, validated blocks and dead letters out: the flow's edge.

`Decoder.decode` takes the `flows.kafka_input.KafkaBatch` items of one input
batch (each the raw values of one poll of one partition) and returns

* one `IotBlock` per device and Kafka batch: the device's valid readings as
  arrays, in arrival order (the analytics work on arrays, and one item per
  device per batch is what crosses the workers);
* one `ActivityBlock` per activity Kafka batch (its events, in partition order);
* a `DeadLetter` for every message that could not be used: never an exception.

Every block carries its partition's ``at_end`` flag: whether the consumer had
read all the partition held. A stream's watermark advances with the clock only
while that flag is set (`flows.watermark`). When a partition reaches its end,
devices of that partition that last heard "not at end" and are not in the batch
get an empty block saying "at end" (a *marker*), so the windows of a silent
device still close; the decoder remembers, per partition, which devices it
told "not at end" since the process started.

The wire rules are those of `sources.models` and nowhere else. Readings take a
fast path that *proves* validity: a msgspec struct generated at import from
`SensorReading`'s own fields (names, types, bounds, defaults; strict types and
no unknown fields, like the model), and device ids known because the model's
rule for the id accepted them before. A message the fast path cannot prove
valid (bad JSON, a wrong type, anything odd) goes through
``SensorReading.model_validate_json`` itself, which has the last word and the
error message. So the fast path can only be slower, never more permissive: a
property test feeds both mangled readings and compares. If the model ever gains
a rule the generator does not understand (a validator, a new constraint), the
fast path switches itself off rather than guess.

Values are decoded one by one, not joined into one JSON array: a crafted value
(``{...},{...}``) could otherwise shift every later message onto its
neighbour's position.
"""

from __future__ import annotations

import itertools
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any

import annotated_types
import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from flows.activity import EVENT_TYPES
from flows.clock import Clock
from flows.kafka_input import KafkaBatch
from sources.models import ActivityEvent, DeadLetter, EventType, Metric, SensorReading

METRICS: tuple[Metric, ...] = tuple(Metric)
"""Row order of every (metric, readings) array in the flow."""
_TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
_TYPE_CODE_BY_VALUE = {t.value: i for i, t in enumerate(EVENT_TYPES)}
_MAX_KNOWN_IDS = 1_000_000
_NO_TIMES = np.zeros(0, dtype=np.int64)
_NO_TIMES.flags.writeable = False
_NO_VALUES = np.zeros((3, 0), dtype=np.float64)
_NO_VALUES.flags.writeable = False


@dataclass(frozen=True, slots=True)
class IotBlock:
    """One device's valid readings from one Kafka batch, in arrival order (none: a marker)."""

    device_id: str
    times: np.ndarray
    """Event times, int64 UTC epoch ms, shape (m,)."""
    values: np.ndarray
    """float64, shape (3, m): temperature °C, humidity %, pressure hPa (`METRICS` order)."""
    at_end: bool = True
    """The device's partition had nothing more pending after this block (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ActivityBlock:
    """One activity partition's valid events from one input batch, in partition order."""

    partition: int
    times: np.ndarray
    """Event times, int64 UTC epoch ms."""
    types: np.ndarray
    """int8 codes into `EVENT_TYPES`."""
    amounts: np.ndarray
    """float64 purchase amounts; 0 for other events."""
    users: tuple[str, ...]
    pages: tuple[str, ...]
    at_end: bool = True
    """The partition had nothing more pending after this block (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class Decoded:
    """Everything one input batch turned into."""

    iot: list[IotBlock]
    activity: list[ActivityBlock]
    dead: list[DeadLetter]
    events_in: int
    """Messages read, good or bad."""
    newest_ms: int | None
    """Newest event time among the valid events."""


class FutureEventError(ValueError):
    """An event stamped too far ahead of the flow's clock: a broken device clock."""


class UnknownTopicError(ValueError):
    """A message from a topic the flow does not read."""


class EmptyMessageError(ValueError):
    """A message without a value (a tombstone)."""


class ConsumerError(RuntimeError):
    """An error the Kafka consumer reported for a partition."""


# --- the fast path's rules, read from the model -----------------------------


@dataclass(frozen=True, slots=True)
class _FastPath:
    """A msgspec decoder that checks what `SensorReading` checks, derived from its fields."""

    decoder: msgspec.json.Decoder[Any]
    id_check: TypeAdapter[str]
    """The model's own rule for the id field (length, pattern), applied to an id alone."""
    fields: tuple[Callable[[Any], Any], ...]
    """Getters of id, event time, temperature, humidity, pressure of a decoded struct."""
    stand_in: Any
    """Takes a failed message's place so the columns stay uniform; its id is never valid."""


def _meta(metadata: Sequence[object]) -> msgspec.Meta | None:
    bounds: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge):
            bounds["ge"] = item.ge
        elif isinstance(item, annotated_types.Gt):
            bounds["gt"] = item.gt
        elif isinstance(item, annotated_types.Le):
            bounds["le"] = item.le
        elif isinstance(item, annotated_types.Lt):
            bounds["lt"] = item.lt
        else:
            raise TypeError(f"no fast path for constraint {item!r}")
    return msgspec.Meta(**bounds) if bounds else None


def _fast_path(model: type[BaseModel] = SensorReading) -> _FastPath | None:
    """Translate `SensorReading` into a msgspec struct; None (no fast path) if anything is unexpected.

    msgspec, like the model in strict mode, refuses strings for numbers, bools for
    ints, floats for ints, unknown fields, and numbers out of range or not finite.
    The id is checked apart (`id_check`): msgspec patterns are Python regexes,
    which do not match exactly what pydantic's do.
    """
    decorators = model.__pydantic_decorators__
    config = model.model_config
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.model_validators
        or decorators.root_validators
        or not config.get("strict")
        or config.get("extra") != "forbid"
        or config.get("allow_inf_nan", True)
    ):
        return None
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    ids: list[tuple[str, TypeAdapter[str]]] = []
    numbers: dict[Any, list[str]] = {int: [], float: []}
    try:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if typing.get_origin(annotation) is typing.Literal and not info.metadata:
                kind: Any = annotation
            elif annotation is str and info.is_required():
                kind = str
                ids.append((name, TypeAdapter(Annotated[str, info], config=ConfigDict(strict=True))))
            elif annotation in (int, float):
                meta = _meta(info.metadata)
                kind = annotation if meta is None else Annotated[annotation, meta]
                numbers[annotation].append(name)
            else:
                return None
            fields.append((name, kind) if info.is_required() else (name, kind, info.default))
    except TypeError:
        return None
    if len(ids) != 1 or len(numbers[int]) != 1 or tuple(numbers[float]) != tuple(m.value for m in METRICS):
        return None
    # gc=False: the fields are scalars, so a struct can never be part of a reference cycle, and
    # a batch's thousands of structs then do not drive the garbage collector.
    struct = msgspec.defstruct(
        "FastSensorReading", fields, kw_only=True, forbid_unknown_fields=True, gc=False
    )
    id_field, id_check = ids[0]
    order = (id_field, numbers[int][0], *numbers[float])
    stand_in = struct(**{name: "" if name == id_field else 0 for name in order})
    return _FastPath(msgspec.json.Decoder(struct), id_check, tuple(map(attrgetter, order)), stand_in)


_FAST = _fast_path()
_DECODE_ERRORS = (msgspec.DecodeError, TypeError, ValueError)  # ValueError: bad UTF-8 in a key


def _stage_of(error: BaseException) -> str:
    if isinstance(error, ValidationError) and all(e["type"] == "json_invalid" for e in error.errors()):
        return "decode"
    return "validate"


# --- the decoder ------------------------------------------------------------


class _WorkerCache:
    """A worker's memory: device ids the model accepted, and which devices heard "not at end"."""

    __slots__ = ("device_code", "device_ids", "unsettled")

    def __init__(self) -> None:
        self.device_code: dict[str, int] = {}
        self.device_ids: list[str] = []
        self.unsettled: dict[int, set[str]] = {}
        """IoT partition -> devices whose last block said "not at end"."""

    def code(self, device_id: str) -> int:
        """Code of a device id the model accepted (codes only live for one batch's grouping)."""
        code = self.device_code.get(device_id)
        if code is None:
            code = len(self.device_ids)
            self.device_ids.append(device_id)
            self.device_code[device_id] = code
        return code


class Decoder:
    """Decodes input batches; keeps, per worker thread, a cache of device ids the model has accepted."""

    def __init__(self, *, iot_topic: str, activity_topic: str, max_future_ms: int, clock: Clock) -> None:
        """Configure the decoder.

        Args:
            iot_topic: Topic of `SensorReading` values.
            activity_topic: Topic of `ActivityEvent` values.
            max_future_ms: Largest accepted lead of an event time over `clock`, ms.
            clock: The flow's clock (for the future check and ``failed_at``).
        """
        self.iot_topic = iot_topic
        self.activity_topic = activity_topic
        self.max_future_ms = max_future_ms
        self.clock = clock
        # Bytewax runs the workers of a process as threads sharing this decoder: each keeps its own
        # cache (a partition is read by one worker, and the cache's updates are not atomic).
        self._local = threading.local()

    def _cache(self) -> _WorkerCache:
        cache: _WorkerCache | None = getattr(self._local, "cache", None)
        if cache is None or len(cache.device_ids) > _MAX_KNOWN_IDS:
            # A bounded cache: ids are re-learnt (one check each) after a flood of new ones.
            unsettled = cache.unsettled if cache is not None else {}
            cache = self._local.cache = _WorkerCache()
            cache.unsettled = unsettled
        return cache

    def decode(self, batches: Sequence[KafkaBatch]) -> Decoded:
        """Decode each Kafka batch of its topic; see the module docstring."""
        now = self.clock.now_ms()
        cache = self._cache()
        dead: list[DeadLetter] = []
        iot_blocks: list[IotBlock] = []
        activity_blocks: list[ActivityBlock] = []
        newest: int | None = None
        events_in = 0
        for batch in batches:
            events_in += len(batch)
            for fault in batch.faults:
                dead.append(
                    _dead(
                        batch.topic, batch.partition, fault.offset, fault.key, fault.value,
                        "consume", ConsumerError(fault.error), now,
                    )
                )  # fmt: skip
            top: int | None = None
            if batch.topic == self.iot_topic:
                blocks, top = self._decode_iot(batch, cache, dead, now)
                iot_blocks.extend(blocks)
            elif batch.topic == self.activity_topic:
                block, top = self._decode_activity(batch, dead, now)
                activity_blocks.append(block)
            else:
                error = UnknownTopicError(f"unexpected topic {batch.topic!r}")
                for i, value in enumerate(batch.values):
                    dead.append(_dead_at(batch, i, value, "route", error, now))
            if top is not None:
                newest = top if newest is None else max(newest, top)
        return Decoded(iot_blocks, activity_blocks, dead, events_in, newest)

    # --- IoT ------------------------------------------------------------------

    def _decode_iot(
        self, batch: KafkaBatch, cache: _WorkerCache, dead: list[DeadLetter], now: int
    ) -> tuple[list[IotBlock], int | None]:
        blocks: list[IotBlock] = []
        newest: int | None = None
        if batch.values:
            blocks, newest = self._iot_blocks(batch, cache, dead, now)
        unsettled = cache.unsettled.setdefault(batch.partition, set())
        if batch.at_end:
            # The partition is at its end: devices told otherwise before, and silent now, hear it.
            if unsettled:
                unsettled.difference_update(b.device_id for b in blocks)
                blocks.extend(IotBlock(d, _NO_TIMES, _NO_VALUES, True) for d in sorted(unsettled))
                unsettled.clear()
        else:
            unsettled.update(b.device_id for b in blocks)
        return blocks, newest

    def _iot_blocks(
        self, batch: KafkaBatch, cache: _WorkerCache, dead: list[DeadLetter], now: int
    ) -> tuple[list[IotBlock], int | None]:
        values = batch.values
        n = len(values)
        times = np.zeros(n, dtype=np.int64)
        columns = np.zeros((len(METRICS), n), dtype=np.float64)
        codes = np.full(n, -1, dtype=np.int64)
        if _FAST is not None:
            ok = self._fast(values, cache, times, columns, codes)
        else:
            ok = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~ok).tolist():
            self._slow(batch, i, cache, times, columns, codes, dead, now)
        valid = codes >= 0
        future = valid & (times > now + self.max_future_ms)
        if future.any():
            for i in np.flatnonzero(future).tolist():
                error = FutureEventError(
                    f"event_time {int(times[i])} is {int(times[i]) - now} ms ahead of the clock "
                    f"(at most {self.max_future_ms} ms allowed)"
                )
                dead.append(_dead_at(batch, i, values[i], "validate", error, now))
            valid &= ~future
        if not valid.any():
            return [], None
        if not valid.all():
            times, columns, codes = times[valid], columns[:, valid], codes[valid]
        return self._group(times, columns, codes, cache, batch.at_end), int(times.max())

    def _fast(
        self,
        values: list[bytes | None],
        cache: _WorkerCache,
        times: np.ndarray,
        columns: np.ndarray,
        codes: np.ndarray,
    ) -> np.ndarray:
        """Fill the arrays for messages proven valid; return which were."""
        fast = _FAST
        assert fast is not None
        n = len(values)
        decode = fast.decoder.decode
        structs: list[Any] = []
        failed: list[int] = []
        while len(structs) < n:
            try:
                # extend() keeps what it decoded before a failure: one exception per bad message.
                structs.extend(map(decode, values[len(structs) :]))  # type: ignore[arg-type]
            except _DECODE_ERRORS:
                failed.append(len(structs))
                structs.append(fast.stand_in)
        ok = np.ones(n, dtype=bool)
        ok[failed] = False
        # A column at a time (a C-level map each): twice as fast as transposing with zip(*...).
        id_of, time_of, *metric_of = fast.fields
        ids = list(map(id_of, structs))
        known = cache.device_code
        codes[:] = np.fromiter(map(known.get, ids, repeat(-1)), dtype=np.int64, count=n)
        unknown = np.flatnonzero((codes < 0) & ok).tolist()
        if unknown:
            # New ids: the model's rule for the id alone; valid ones join the cache.
            added = False
            for new in {ids[i] for i in unknown}:
                try:
                    fast.id_check.validate_python(new)
                except ValidationError:
                    continue
                cache.code(new)
                added = True
            if added:
                codes[:] = np.fromiter(map(known.get, ids, repeat(-1)), dtype=np.int64, count=n)
        ok &= codes >= 0
        times[:] = np.fromiter(map(time_of, structs), dtype=np.int64, count=n)
        for row, value_of in enumerate(metric_of):
            columns[row] = np.fromiter(map(value_of, structs), dtype=np.float64, count=n)
        codes[~ok] = -1
        return ok

    def _slow(
        self,
        batch: KafkaBatch,
        i: int,
        cache: _WorkerCache,
        times: np.ndarray,
        columns: np.ndarray,
        codes: np.ndarray,
        dead: list[DeadLetter],
        now: int,
    ) -> None:
        """Validate one message with the model itself; fill its slot or dead-letter it."""
        codes[i] = -1
        value = batch.values[i]
        if value is None:
            error = EmptyMessageError("message has no value (tombstone)")
            dead.append(_dead_at(batch, i, value, "decode", error, now))
            return
        try:
            reading = SensorReading.model_validate_json(value)
        except ValidationError as exc:
            dead.append(_dead_at(batch, i, value, _stage_of(exc), exc, now))
            return
        times[i] = reading.event_time
        for row, metric in enumerate(METRICS):
            columns[row, i] = reading.value(metric)
        codes[i] = cache.code(reading.device_id)

    def _group(
        self, times: np.ndarray, columns: np.ndarray, codes: np.ndarray, cache: _WorkerCache, at_end: bool
    ) -> list[IotBlock]:
        ids = cache.device_ids
        first = int(codes[0])
        if (codes == first).all():
            return [IotBlock(ids[first], times, columns, at_end)]
        order = np.argsort(codes, kind="stable")
        ordered = codes[order]
        heads = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))).tolist()
        bounds = [*heads, codes.shape[0]]
        blocks = []
        for a, b in itertools.pairwise(bounds):
            idx = order[a:b]
            blocks.append(IotBlock(ids[int(ordered[a])], times[idx], columns[:, idx], at_end))
        return blocks

    # --- activity -------------------------------------------------------------

    def _decode_activity(
        self, batch: KafkaBatch, dead: list[DeadLetter], now: int
    ) -> tuple[ActivityBlock, int | None]:
        # One model validation per event: the model has a cross-field rule and free-text ids, so
        # there is no shortcut that would provably agree with it. Activity is the low-volume stream.
        events: list[ActivityEvent] = []
        limit = now + self.max_future_ms
        for i, value in enumerate(batch.values):
            if value is None:
                empty = EmptyMessageError("message has no value (tombstone)")
                dead.append(_dead_at(batch, i, value, "decode", empty, now))
                continue
            try:
                event = ActivityEvent.model_validate_json(value)
            except ValidationError as exc:
                dead.append(_dead_at(batch, i, value, _stage_of(exc), exc, now))
                continue
            if event.event_time > limit:
                error = FutureEventError(
                    f"event_time {event.event_time} is {event.event_time - now} ms ahead of the clock "
                    f"(at most {self.max_future_ms} ms allowed)"
                )
                dead.append(_dead_at(batch, i, value, "validate", error, now))
                continue
            events.append(event)
        # A block even without events: the partition has been heard from, and at_end travels with it.
        n = len(events)
        times = np.fromiter((e.event_time for e in events), dtype=np.int64, count=n)
        block = ActivityBlock(
            partition=batch.partition,
            times=times,
            types=np.fromiter((_TYPE_CODE[e.type] for e in events), dtype=np.int8, count=n),
            amounts=np.fromiter((e.amount or 0.0 for e in events), dtype=np.float64, count=n),
            users=tuple(e.user_id for e in events),
            pages=tuple(e.page for e in events),
            at_end=batch.at_end,
        )
        return block, (int(times.max()) if n else None)


def type_code(event_type: EventType | str) -> int:
    """Code of an event type in `EVENT_TYPES`."""
    return _TYPE_CODE_BY_VALUE[EventType(event_type).value]


def _dead_at(
    batch: KafkaBatch, i: int, value: bytes | None, stage: str, error: BaseException, now: int
) -> DeadLetter:
    """The dead letter of message `i` of `batch`."""
    return _dead(batch.topic, batch.partition, batch.offsets[i], batch.keys[i], value, stage, error, now)


def _dead(
    topic: str,
    partition: int,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    stage: str,
    error: BaseException,
    now: int,
) -> DeadLetter:
    return DeadLetter.capture(
        value=value,
        key=key,
        topic=topic,
        partition=partition,
        offset=offset,
        stage=stage,
        error=error,
        failed_at=now,
    )
