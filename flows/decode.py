"""Raw Kafka messages in, validated blocks and dead letters out: the flow's edge.

`Decoder.decode` takes one input batch of messages from both topics and returns

* one `IotBlock` per device: the device's valid readings of the batch as
  arrays, in arrival order (the analytics work on arrays, and one item per
  device per batch is what crosses the workers);
* one `ActivityBlock` per activity partition (its events, in partition order);
* a `DeadLetter` for every message that could not be used: never an exception.

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
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter
from typing import Annotated, Any, Protocol

import annotated_types
import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from flows.activity import EVENT_TYPES
from flows.clock import Clock
from sources.models import ActivityEvent, DeadLetter, EventType, Metric, SensorReading

METRICS: tuple[Metric, ...] = tuple(Metric)
"""Row order of every (metric, readings) array in the flow."""
_TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
_TYPE_CODE_BY_VALUE = {t.value: i for i, t in enumerate(EVENT_TYPES)}
_MAX_KNOWN_IDS = 1_000_000
_topic_of = attrgetter("topic")
_value_of = attrgetter("value")


class Message(Protocol):
    """What the decoder reads of a message (`bytewax.connectors.kafka.KafkaSourceMessage`)."""

    @property
    def key(self) -> bytes | None: ...  # noqa: D102
    @property
    def value(self) -> bytes | None: ...  # noqa: D102
    @property
    def topic(self) -> str | None: ...  # noqa: D102
    @property
    def partition(self) -> int | None: ...  # noqa: D102
    @property
    def offset(self) -> int | None: ...  # noqa: D102


@dataclass(frozen=True, slots=True)
class IotBlock:
    """One device's valid readings from one input batch, in arrival order."""

    device_id: str
    times: np.ndarray
    """Event times, int64 UTC epoch ms, shape (m,)."""
    values: np.ndarray
    """float64, shape (3, m): temperature °C, humidity %, pressure hPa (`METRICS` order)."""


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


# --- the fast path's rules, read from the model -----------------------------


@dataclass(frozen=True, slots=True)
class _FastPath:
    """A msgspec decoder that checks what `SensorReading` checks, derived from its fields."""

    decoder: msgspec.json.Decoder[Any]
    id_check: TypeAdapter[str]
    """The model's own rule for the id field (length, pattern), applied to an id alone."""
    id_of: Callable[[Any], str]
    """The device id of a decoded struct."""
    time_of: Callable[[Any], int]
    """The event time of a decoded struct."""
    metrics_of: tuple[Callable[[Any], float], ...]
    """Each metric of a decoded struct, in `METRICS` order."""
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
    return _FastPath(
        msgspec.json.Decoder(struct),
        id_check,
        attrgetter(id_field),
        attrgetter(numbers[int][0]),
        tuple(attrgetter(name) for name in numbers[float]),
        stand_in,
    )


_FAST = _fast_path()
_DECODE_ERRORS = (msgspec.DecodeError, TypeError, ValueError)  # ValueError: bad UTF-8 in a key


def _stage_of(error: BaseException) -> str:
    if isinstance(error, ValidationError) and all(e["type"] == "json_invalid" for e in error.errors()):
        return "decode"
    return "validate"


# --- the decoder ------------------------------------------------------------


class Decoder:
    """Decodes input batches; keeps a cache of device ids the model has accepted."""

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
        self._device_code: dict[str, int] = {}
        self._device_ids: list[str] = []

    def decode(self, messages: Sequence[Any]) -> Decoded:
        """Split a batch by topic and decode each part; see the module docstring."""
        now = self.clock.now_ms()
        events_in = len(messages)
        if len(self._device_ids) > _MAX_KNOWN_IDS:
            # A bounded cache: ids are re-learnt (one check each) after a flood of new ones.
            self._device_code.clear()
            self._device_ids.clear()
        dead: list[DeadLetter] = []
        iot: list[Message] = []
        activity: list[Message] = []
        try:
            topics = set(map(_topic_of, messages))
        except AttributeError:  # a consumer error item among them
            topics = set()
        if topics == {self.iot_topic}:
            # A source batch comes from one partition, so usually from one topic.
            iot, messages = list(messages), ()
        elif topics == {self.activity_topic}:
            activity, messages = list(messages), ()
        for msg in messages:
            topic = getattr(msg, "topic", None)
            if topic == self.iot_topic:
                iot.append(msg)
            elif topic == self.activity_topic:
                activity.append(msg)
            elif hasattr(msg, "err") and hasattr(msg, "msg"):
                # A consumer error passed on by the source (bytewax KafkaError).
                dead.append(_dead(msg.msg, "consume", RuntimeError(str(msg.err)), now))
            else:
                dead.append(_dead(msg, "route", UnknownTopicError(f"unexpected topic {topic!r}"), now))
        newest: int | None = None
        iot_blocks: list[IotBlock] = []
        if iot:
            iot_blocks, iot_newest = self._decode_iot(iot, dead, now)
            newest = iot_newest
        activity_blocks: list[ActivityBlock] = []
        if activity:
            activity_blocks, act_newest = self._decode_activity(activity, dead, now)
            if act_newest is not None:
                newest = act_newest if newest is None else max(newest, act_newest)
        return Decoded(iot_blocks, activity_blocks, dead, events_in, newest)

    # --- IoT ------------------------------------------------------------------

    def _decode_iot(
        self, msgs: list[Message], dead: list[DeadLetter], now: int
    ) -> tuple[list[IotBlock], int | None]:
        n = len(msgs)
        values = list(map(_value_of, msgs))
        times = np.zeros(n, dtype=np.int64)
        columns = np.zeros((len(METRICS), n), dtype=np.float64)
        codes = np.full(n, -1, dtype=np.int64)
        ok = self._fast(values, times, columns, codes) if _FAST is not None else np.zeros(n, dtype=bool)
        for i in np.flatnonzero(~ok).tolist():
            self._slow(msgs[i], i, times, columns, codes, dead, now)
        valid = codes >= 0
        future = valid & (times > now + self.max_future_ms)
        if future.any():
            for i in np.flatnonzero(future).tolist():
                error = FutureEventError(
                    f"event_time {int(times[i])} is {int(times[i]) - now} ms ahead of the clock "
                    f"(at most {self.max_future_ms} ms allowed)"
                )
                dead.append(_dead(msgs[i], "validate", error, now))
            valid &= ~future
        if not valid.any():
            return [], None
        if not valid.all():
            times, columns, codes = times[valid], columns[:, valid], codes[valid]
        return self._group(times, columns, codes), int(times.max())

    def _fast(
        self, values: list[bytes | None], times: np.ndarray, columns: np.ndarray, codes: np.ndarray
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
        # Column by column straight into arrays: no per-message tuples to build and transpose.
        ids = list(map(fast.id_of, structs))
        known = self._device_code
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
                self._code(new)
                added = True
            if added:
                codes[:] = np.fromiter(map(known.get, ids, repeat(-1)), dtype=np.int64, count=n)
        ok &= codes >= 0
        times[:] = np.fromiter(map(fast.time_of, structs), dtype=np.int64, count=n)
        for row, metric_of in enumerate(fast.metrics_of):
            columns[row] = np.fromiter(map(metric_of, structs), dtype=np.float64, count=n)
        codes[~ok] = -1
        return ok

    def _slow(
        self,
        msg: Message,
        i: int,
        times: np.ndarray,
        columns: np.ndarray,
        codes: np.ndarray,
        dead: list[DeadLetter],
        now: int,
    ) -> None:
        """Validate one message with the model itself; fill its slot or dead-letter it."""
        codes[i] = -1
        if msg.value is None:
            dead.append(_dead(msg, "decode", EmptyMessageError("message has no value (tombstone)"), now))
            return
        try:
            reading = SensorReading.model_validate_json(msg.value)
        except ValidationError as exc:
            dead.append(_dead(msg, _stage_of(exc), exc, now))
            return
        times[i] = reading.event_time
        for row, metric in enumerate(METRICS):
            columns[row, i] = reading.value(metric)
        codes[i] = self._code(reading.device_id)

    def _code(self, device_id: str) -> int:
        """Code of a device id the model accepted (codes only live for one batch's grouping)."""
        code = self._device_code.get(device_id)
        if code is None:
            code = len(self._device_ids)
            self._device_ids.append(device_id)
            self._device_code[device_id] = code
        return code

    def _group(self, times: np.ndarray, columns: np.ndarray, codes: np.ndarray) -> list[IotBlock]:
        first = int(codes[0])
        if (codes == first).all():
            return [IotBlock(self._device_ids[first], times, columns)]
        order = np.argsort(codes, kind="stable")
        ordered = codes[order]
        heads = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))).tolist()
        bounds = [*heads, codes.shape[0]]
        blocks = []
        for a, b in itertools.pairwise(bounds):
            idx = order[a:b]
            blocks.append(IotBlock(self._device_ids[int(ordered[a])], times[idx], columns[:, idx]))
        return blocks

    # --- activity -------------------------------------------------------------

    def _decode_activity(
        self, msgs: list[Message], dead: list[DeadLetter], now: int
    ) -> tuple[list[ActivityBlock], int | None]:
        # One model validation per event: the model has a cross-field rule and free-text ids, so
        # there is no shortcut that would provably agree with it. Activity is the low-volume stream.
        by_partition: dict[int, list[ActivityEvent]] = {}
        limit = now + self.max_future_ms
        for msg in msgs:
            if msg.value is None:
                dead.append(_dead(msg, "decode", EmptyMessageError("message has no value (tombstone)"), now))
                continue
            try:
                event = ActivityEvent.model_validate_json(msg.value)
            except ValidationError as exc:
                dead.append(_dead(msg, _stage_of(exc), exc, now))
                continue
            if event.event_time > limit:
                error = FutureEventError(
                    f"event_time {event.event_time} is {event.event_time - now} ms ahead of the clock "
                    f"(at most {self.max_future_ms} ms allowed)"
                )
                dead.append(_dead(msg, "validate", error, now))
                continue
            by_partition.setdefault(msg.partition if msg.partition is not None else -1, []).append(event)
        blocks = []
        newest: int | None = None
        for partition, events in by_partition.items():
            times = np.fromiter((e.event_time for e in events), dtype=np.int64, count=len(events))
            blocks.append(
                ActivityBlock(
                    partition=partition,
                    times=times,
                    types=np.fromiter((_TYPE_CODE[e.type] for e in events), dtype=np.int8, count=len(events)),
                    amounts=np.fromiter(
                        (e.amount or 0.0 for e in events), dtype=np.float64, count=len(events)
                    ),
                    users=tuple(e.user_id for e in events),
                    pages=tuple(e.page for e in events),
                )
            )
            top = int(times.max())
            newest = top if newest is None else max(newest, top)
        return blocks, newest


def type_code(event_type: EventType | str) -> int:
    """Code of an event type in `EVENT_TYPES`."""
    return _TYPE_CODE_BY_VALUE[EventType(event_type).value]


def _dead(msg: Any, stage: str, error: BaseException, now: int) -> DeadLetter:
    return DeadLetter.capture(
        value=getattr(msg, "value", None),
        key=getattr(msg, "key", None),
        topic=str(getattr(msg, "topic", None) or ""),
        partition=getattr(msg, "partition", None),
        offset=getattr(msg, "offset", None),
        stage=stage,
        error=error,
        failed_at=now,
    )
