"""Rolling z-score anomaly detection for one series, one reading at a time or in blocks.

Each reading is scored against the baseline of the *accepted* readings before
it: the last ``window`` of them (and, if ``window_s`` is set, only those from
the last ``window_s`` seconds of event time). By default (``detrend=True``) the
baseline is the least-squares line through those readings against their event
times, and the reading is scored by its residual from that line::

    expected = a + b * t                      (the window's least-squares fit)
    s² = Σ residual² / (n - 2)                 (the baseline's residual variance)
    se = s * sqrt(1 + 1/n + (t - t̄)² / Σ(tᵢ - t̄)²)
    z  = (value - expected) / max(se, min_std)

``se`` is the standard error of predicting one new reading from the fit (the
textbook prediction interval), so an extrapolation from a few readings, or far
from their centre, is trusted less. Signals move: a cycle, a drift. Against a
flat baseline (``detrend=False``: ``expected`` is the window's mean, ``se`` its
standard deviation) the slope of the last ``window`` readings both shifts the
mean away from the present value and inflates the spread, so moderate spikes on
a slope hide and, on a steep one, the noise flags; the local line takes the
slope out of both. (What is left is the curvature over the window, which grows
with the window's length squared: the window should be short against the
signal's cycles, long enough for a stable spread; see docs/DESIGN.md.)

|z| >= ``warning_z`` flags a reading (``critical_z`` makes it critical), once the
baseline holds ``warmup`` readings. The design choices, each against a failure
mode of the naive rolling z-score:

* **Flagged readings stay out of the baseline**, so a burst of anomalies does not
  inflate the fit's spread or tilt it and hide the rest of the burst (or the next one).
* **Episodes, not alert storms**: consecutive flagged readings form one episode,
  which ends after ``cooldown`` normal readings. An alert is raised once the
  episode is *confirmed*, and again only if it escalates from warning to
  critical; the flow keeps one alert per episode (id = its start) and updates it
  while the peak |z| grows, so a replay produces the same alert.
* **Warnings are confirmed, criticals are not**: one reading past the warning
  threshold is what the noise itself produces about once in 370 readings (more
  where the baseline's model is off), so a warning-level episode raises
  its alert only at its ``confirm``-th flagged reading; a reading past the
  critical threshold raises it at once. Each reading's own level (`flag`,
  `Scores.level`) is reported regardless, and an unconfirmed episode's readings
  stay out of the baseline just the same. ``confirm=1`` alerts on every episode.
* **Level shifts are learnt**: if an episode reaches ``max_episode`` flagged
  readings the series has moved; the baseline restarts from those readings
  instead of flagging the new normal forever.
* **Isolated exceedances are not thrown away**: a one-reading episode is, more
  often than not, the tail of the noise (heavy tails, seasonal peaks). Leaving
  all of them out would bias the spread low and flag ever more, so when such an
  episode ends it joins the baseline *capped* at the warning threshold (the
  expected value plus ``warning_z`` prediction errors, at its own time): its
  magnitude never leaks in. Bursts and shifts (two or more flagged readings)
  stay out entirely.
* **Flat baselines**: the standard error is floored at ``min_std``, so a
  constant series scores 0 while it stays constant and a large |z| when it moves.

What an `Episode` (so an alert) reports at its peak: ``mean`` is the value
expected at the peak's time (the fitted line there; the window's mean with
``detrend=False``) and ``std`` the prediction's standard error before the floor,
so ``z == (value - mean) / std`` in both models.

Speed and reproducibility: the fit needs five sums over the window (of t, t², x,
t·x and x², with t in seconds from an anchor and x less a shift, both re-centred
now and then); they are prefix sums over the accepted readings, extended with
``numpy.cumsum`` (a strictly sequential float accumulation), so a block of
readings is scored with a handful of array operations, and the result is
bit-identical whether the readings come one by one or in blocks of any size
(`update_rows` scores several series at once, identically again): the scalar
path does the same IEEE operations in the same order. The sums are re-centred
every few thousand accepted readings, at the same reading however the input was
blocked, to keep cancellation error negligible. A series in its steady state (a
full baseline, no time limit) takes a pared-down path (`_steady_run`) with the
same arithmetic; runs are capped at a few hundred readings, since a flagged
reading makes the rest of its run wasted work. A run's cost is mostly the number
of numpy calls, not its length (noise flags a reading every couple of hundred):
a block's summed rows are computed once per centring and sliced by its runs, and
the steady fit shares a call between rows wherever the operation is the same.
Pure numpy, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from sinks.records import Severity

_NO_TIME = -(2**62)
_SEVERITIES = (Severity.NONE, Severity.WARNING, Severity.CRITICAL)
_SCALAR_RUN = 16
_MAX_RUN = 512
_FIT_CHUNK = 512
"""Readings fitted per numpy pass of a steady run (= `_MAX_RUN`: one pass). Measured: each pass costs
some 20 numpy calls, more than fitting a few hundred readings past a flag that are then scored again."""
_SUMS = 5
"""Rows of the prefix sums: t, x, t², t·x, x² (t in s from `_t0`, x less `_shift`): in this order, the
fit takes pairs of rows in one numpy call."""
_MIN_SPREAD_S2 = 1e-6
"""Σ(tᵢ - t̄)² (s²) below which the baseline's times are taken as one instant: no slope is fitted."""
_Flagged = tuple[float, float, float, int]
"""A flagged reading's z, expected value - shift, standard error (before the floor) and level."""


class Score(NamedTuple):
    """The verdict on one reading."""

    z: float
    """Standard score against the baseline before the reading (0 while the baseline has too few
    readings to fit: 3 for the local line, 2 for the flat mean)."""
    severity: Severity
    """The alert this reading raises: WARNING or CRITICAL when it confirms an episode (see
    ``ZScoreDetector(confirm=...)``) or lifts a confirmed one from warning to critical; NONE
    otherwise, including further flagged readings of an episode already alerted (no alert storms)
    and those of an episode not yet confirmed. `ZScoreDetector.flag` is the reading's own level."""


@dataclass(frozen=True, slots=True)
class Episode:
    """An anomaly episode as known so far: what an alert reports."""

    start_ms: int
    """Event time of the episode's first flagged reading: its identity."""
    peak_ms: int
    """Event time of the reading with the largest |z| so far."""
    value: float
    z: float
    mean: float
    """The value the baseline expected at the peak's time: its fitted line there (the window's
    mean with ``detrend=False``)."""
    std: float
    """Standard error of that expectation for one reading (the window's standard deviation with
    ``detrend=False``), before the ``min_std`` floor: ``z == (value - mean) / std``."""
    severity: Severity
    flagged: int
    """Flagged readings in the episode so far."""


class Scores(NamedTuple):
    """Verdicts on a block of readings, plus the alerts it raised or updated."""

    z: np.ndarray
    """float64, one per reading."""
    level: np.ndarray
    """int8 per reading: 0 none, 1 warning, 2 critical."""
    alerts: list[Episode]
    """Each time an episode was confirmed or, once confirmed, its peak grew, in order."""
    raised: np.ndarray
    """int8 per reading: the alert it raised (see `Score.severity`), 0 none, 1 warning, 2 critical."""

    def severity(self, i: int) -> Severity:
        """The alert reading `i` raised (as `Score.severity`)."""
        return _SEVERITIES[int(self.raised[i])]

    def flag(self, i: int) -> Severity:
        """Reading `i`'s own level: beyond the warning or critical threshold, or not."""
        return _SEVERITIES[int(self.level[i])]


class _Baseline(NamedTuple):
    """Baseline statistics before each reading of a block (all assumed accepted)."""

    n: np.ndarray  # int64: readings in each baseline
    mean_c: np.ndarray  # expected value - shift
    std: np.ndarray  # standard error of the prediction
    z: np.ndarray
    p: np.ndarray  # (_SUMS, m): prefix sums after each reading, as they would be stored
    newest: np.ndarray  # running max event time after each reading


def _centred_moments(
    s: np.ndarray, n: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(t̄, x̄, Σ(t-t̄)², Σ(t-t̄)(x-x̄), Σ(x-x̄)²) of each column of running sums (Σt, Σx, Σt², Σtx, Σx²)."""
    means = s[0:2] / n  # t̄, x̄
    mu, mx = means
    v = np.empty((3, s.shape[1]), dtype=np.float64)
    np.multiply(s[0:1], means, out=v[0:2])  # Σt·t̄, Σt·x̄
    np.multiply(s[1], mx, out=v[2])  # Σx·x̄
    np.subtract(s[2:5], v, out=v)
    vuu, vux, vxx = v
    return mu, mx, vuu, vux, vxx


class ZScoreDetector:
    """Rolling z-score detector of one series; see the module docstring.

    Example::

        det = ZScoreDetector(window=60, warning_z=3.0, critical_z=5.0, warmup=30)
        z, severity = det.update(1_700_000_000_000, 21.4)
    """

    __slots__ = (
        "_anchored",
        "_cap",
        "_cm",
        "_ep",
        "_ep_alerted",
        "_ep_normals",
        "_ep_recent_t",
        "_ep_recent_x",
        "_flag",
        "_hi",
        "_lo",
        "_min_n",
        "_newest",
        "_p",
        "_recentre_every",
        "_shift",
        "_since_anchor",
        "_t0",
        "_tm",
        "_x",
        "confirm",
        "cooldown",
        "critical_z",
        "detrend",
        "max_episode",
        "min_std",
        "warmup",
        "warning_z",
        "window",
        "window_ms",
    )

    def __init__(
        self,
        *,
        window: int = 60,
        window_s: float | None = None,
        warning_z: float = 3.0,
        critical_z: float = 5.0,
        warmup: int = 30,
        cooldown: int = 3,
        max_episode: int = 30,
        min_std: float = 1e-9,
        confirm: int = 2,
        detrend: bool = True,
    ) -> None:
        """Configure the detector.

        Args:
            window: Most accepted readings in the baseline (>= 2; the local line needs 3).
            window_s: If set, the baseline only holds readings from the last this many seconds
                of event time.
            warning_z: |z| flagging a reading as a warning.
            critical_z: |z| making a flagged reading critical (> ``warning_z``).
            warmup: Baseline readings needed before anything is flagged (>= 2).
            cooldown: Consecutive normal readings that end an episode (>= 1).
            max_episode: Flagged readings after which the episode is taken as a level shift and the
                baseline restarts from them (>= 2).
            min_std: Floor of the standard error (> 0), in the series' unit.
            confirm: Flagged readings an episode needs before it raises a warning alert
                (1 <= confirm <= ``max_episode``); a critical reading raises its alert at once.
            detrend: Score against the baseline's least-squares line in event time (True), or
                against its mean and standard deviation (False).
        """
        if window < 2 or warmup < 2 or cooldown < 1 or max_episode < 2:
            raise ValueError("window, warmup and max_episode must be >= 2 and cooldown >= 1")
        if not 1 <= confirm <= max_episode:
            raise ValueError("need 1 <= confirm <= max_episode")
        if not 0 < warning_z < critical_z:
            raise ValueError("need 0 < warning_z < critical_z")
        if not min_std > 0:
            raise ValueError("min_std must be > 0")
        if window_s is not None and not window_s > 0:
            raise ValueError("window_s must be > 0")
        if detrend and window < 3:
            raise ValueError("a detrended baseline needs window >= 3")
        self.window = window
        self.window_ms = None if window_s is None else round(window_s * 1000)
        self.warning_z = float(warning_z)
        self.critical_z = float(critical_z)
        self.warmup = warmup
        self.cooldown = cooldown
        self.max_episode = max_episode
        self.min_std = float(min_std)
        self.confirm = confirm
        self.detrend = bool(detrend)
        self._min_n = 3 if self.detrend else 2
        """Baseline readings a score needs (a line through 2 points leaves no residual)."""
        # Re-centring costs one pass over the baseline; every few windows keeps its share small
        # and still bounds the growth of the prefix sums (and so their rounding error). The sum
        # of t² grows with the cube of the readings since the anchor while the window's spread of
        # times grows with the cube of its length: the line re-centres every 16 windows.
        self._recentre_every = 16 * window if self.detrend else max(4 * window, 4096)
        self._cap = max(2 * window, 64)
        # Running max of event time when each baseline entry was taken (for the time limit).
        self._cm = np.zeros(self._cap, dtype=np.int64)
        self._tm = np.zeros(self._cap, dtype=np.int64)
        """Each baseline entry's own event time (the fit's regressor)."""
        self._x = np.zeros(self._cap, dtype=np.float64)
        self._p = np.zeros((_SUMS, self._cap + 1), dtype=np.float64)
        """Prefix sums of the rows in `_SUMS`: column i covers entries [0, i)."""
        self._lo = 0
        self._hi = 0
        self._shift = 0.0
        self._t0 = 0
        self._anchored = False
        """The sums are centred on the first reading ever seen (then re-centred as the series moves)."""
        self._since_anchor = 0
        self._newest = _NO_TIME
        self._ep: Episode | None = None
        self._ep_normals = 0
        self._ep_alerted = 0
        """Level of the alert the episode raised so far: 0 while it is not confirmed."""
        self._flag = 0
        self._ep_recent_t: list[int] = []
        self._ep_recent_x: list[float] = []

    def __getstate__(self) -> dict[str, object]:
        # Only the live entries and the prefix sums before them: the rest is rebuilt on restore
        # by the same sequential sums that built it, so nothing changes by a bit.
        state = {name: getattr(self, name) for name in self.__slots__}
        lo, hi = self._lo, self._hi
        state.update(
            _cm=self._cm[lo:hi].copy() if self.window_ms is not None else None,
            _tm=self._tm[lo:hi].copy(),
            _x=self._x[lo:hi].copy(),
            _p=self._p[:, lo].copy(),
            _lo=0,
            _hi=hi - lo,
            _ep_recent_t=list(self._ep_recent_t),
            _ep_recent_x=list(self._ep_recent_x),
        )
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        if "confirm" not in state:
            # A snapshot from before warnings were confirmed: it alerted on every episode.
            ep = state["_ep"]
            alerted = _SEVERITIES.index(ep.severity) if isinstance(ep, Episode) else 0
            state.update(confirm=1, _ep_alerted=alerted)
        if "detrend" not in state:
            # A snapshot from before the local line: it kept no entry times, so it goes on with
            # the flat mean it was built with (its time rows are zero: entries at `_t0`).
            x = state["_x"]
            assert isinstance(x, np.ndarray)
            sums = np.zeros(_SUMS, dtype=np.float64)
            sums[1], sums[4] = float(state.pop("_p1")), float(state.pop("_p2"))  # type: ignore[arg-type]
            newest = int(state["_newest"])  # type: ignore[call-overload]
            state.update(detrend=False, _min_n=2, _t0=newest, _tm=np.full(x.shape[0], newest), _p=sums)
        for name, value in state.items():
            setattr(self, name, value)
        n = self._hi
        head = self._p
        self._x = _grown(self._x, self._cap, np.float64)
        self._tm = _grown(self._tm, self._cap, np.int64)
        self._cm = _grown(
            self._cm if self._cm is not None else np.zeros(n, dtype=np.int64), self._cap, np.int64
        )
        self._p = np.zeros((_SUMS, self._cap + 1), dtype=np.float64)
        self._p[:, 0] = head
        self._p[:, 1 : n + 1] = self._rows(self._tm[:n], self._x[:n])
        np.cumsum(self._p[:, : n + 1], axis=1, out=self._p[:, : n + 1])

    # --- public API -------------------------------------------------------

    @property
    def baseline_size(self) -> int:
        """Readings in the baseline, as of the newest event time seen."""
        lo, hi = self._lo, self._hi
        start = max(lo, hi - self.window)
        if self.window_ms is not None and hi > lo:
            cut = lo + int(np.searchsorted(self._cm[lo:hi], self._newest - self.window_ms, side="right"))
            start = max(start, cut)
        return hi - start

    @property
    def flag(self) -> Severity:
        """The last reading's own level (beyond the warning or critical threshold), alert or not."""
        return _SEVERITIES[self._flag]

    @property
    def episode(self) -> Episode | None:
        """The episode in progress, if any, confirmed (alerted) or not yet."""
        return self._ep

    @property
    def alerted(self) -> Severity:
        """The level of the alert the episode in progress raised so far: NONE while unconfirmed."""
        return _SEVERITIES[self._ep_alerted]

    def update(self, event_time_ms: int, value: float) -> Score:
        """Score one reading, then learn from it.

        A non-finite value is ignored (z is NaN, severity NONE, nothing learned).
        """
        value = float(value)
        if not math.isfinite(value):
            return Score(math.nan, Severity.NONE)
        t = int(event_time_ms)
        if not self._anchored:
            self._anchor(t, value)
        z, level, raised = self._step(t, value, None)
        self._flag = level
        return Score(z, _SEVERITIES[raised])

    def update_many(self, times: np.ndarray, values: np.ndarray) -> Scores:
        """Score a block of readings in arrival order, exactly as `update` would one by one.

        Args:
            times: Event times, int64 ms.
            values: Finite float64 values, same length.
        """
        m = int(values.shape[0])
        if m and not self._anchored:
            self._anchor(int(times[0]), float(values[0]))
        z_out = np.zeros(m, dtype=np.float64)
        level_out = np.zeros(m, dtype=np.int8)
        raised_out = np.zeros(m, dtype=np.int8)
        alerts: list[Episode] = []
        # The summed rows of the block's readings (`_fill_rows`) depend only on the centring
        # (`_t0`, `_shift`): computed once from `rows_at` on, for every steady run until the
        # sums are re-centred, instead of once per run (a flag starts a new run).
        rows: np.ndarray | None = None
        rows_at = rows_end = 0
        rows_key = (0, 0.0)
        i = 0
        while i < m:
            # The cap joins as one more entry: a run must not reach a re-centring with it.
            run = min(m - i, self._recentre_every - self._since_anchor - 1, _MAX_RUN)
            if run > self.cooldown + _SCALAR_RUN and self._after_spike():
                if rows is None or rows_key != (self._t0, self._shift) or i + run > rows_end:
                    rows, rows_at, rows_end, rows_key = self._block_rows(times, values, i)
                part = slice(i, i + run)
                done = self._steady_run(
                    times[part],
                    values[part],
                    z_out[part],
                    rows[:, i - rows_at : i - rows_at + run],
                    spike=True,
                )
                if done is not None:
                    take, flagged = done
                    i = self._after_run(i, take, run, flagged, times, values, level_out, raised_out, alerts)
                    continue
            if m - i <= _SCALAR_RUN or self._run_limit() <= _SCALAR_RUN:
                # A few readings: arrays would cost more than they save.
                z_out[i], level_out[i], raised_out[i] = self._step(int(times[i]), float(values[i]), alerts)
                i += 1
                continue
            # Score a run at once, up to its first flagged reading (which changes the baseline).
            # A run is capped: a flag makes everything scored after it wasted work.
            run = min(m - i, self._recentre_every - self._since_anchor, self._run_limit(), _MAX_RUN)
            done = None
            if self.window_ms is None and self._hi - self._lo >= self.window:
                if rows is None or rows_key != (self._t0, self._shift) or i + run > rows_end:
                    rows, rows_at, rows_end, rows_key = self._block_rows(times, values, i)
                part = slice(i, i + run)
                done = self._steady_run(
                    times[part], values[part], z_out[part], rows[:, i - rows_at : i - rows_at + run]
                )
            if done is None:
                done = self._general_run(times[i : i + run], values[i : i + run], z_out[i : i + run])
            take, flagged = done
            i = self._after_run(i, take, run, flagged, times, values, level_out, raised_out, alerts)
        if m:
            self._flag = int(level_out[-1])
            newest = int(times.max())
            if newest > self._newest:
                self._newest = newest
        return Scores(z_out, level_out, alerts, raised_out)

    # --- internals --------------------------------------------------------

    def _anchor(self, t: int, value: float) -> None:
        """Centre the sums on the first reading ever seen."""
        self._shift = value
        self._t0 = t
        self._anchored = True

    def _block_rows(
        self, times: np.ndarray, values: np.ndarray, i: int
    ) -> tuple[np.ndarray, int, int, tuple[int, float]]:
        """The summed rows of a block's readings from `i` on, as far as the next re-centring can be.

        Returns:
            (rows, first reading, end reading, the centring they hold for).
        """
        # Until the sums are re-centred, each reading taken is accepted or flagged (and flags
        # are rare): a little slack past the accepted readings left saves a second call.
        end = min(values.shape[0], i + self._recentre_every - self._since_anchor + 64)
        return self._rows(times[i:end], values[i:end]), i, end, (self._t0, self._shift)

    def _rows(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The rows summed (`_SUMS`) for each of a block's readings: (5, m)."""
        m = values.shape[0]
        rows = np.empty((_SUMS, m), dtype=np.float64)
        self._fill_rows(rows, times, values)
        return rows

    def _fill_rows(self, rows: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        np.subtract(times, self._t0, out=rows[0], casting="unsafe")
        rows[0] /= 1000.0
        np.subtract(values, self._shift, out=rows[1])
        np.multiply(rows[0:1], rows[0:2], out=rows[2:4])  # t², t·x
        np.multiply(rows[1], rows[1], out=rows[4])

    def _fit_block(
        self, s: np.ndarray, n: float | np.ndarray, ux: np.ndarray, out: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(expected value - shift, standard error, z) of each reading from its baseline's sums `s`.

        `ux` holds the readings' own rows t and x. `_fit_one` does the same IEEE operations in
        the same order on Python floats (numpy calls on pairs of rows, or in place, change
        nothing: each element goes through the same operations).
        """
        mu, mx, vuu, vux, vxx = _centred_moments(s, n)
        if self.detrend:
            d = np.subtract(ux[0], mu)
            ok = vuu > _MIN_SPREAD_S2
            if ok.all():
                b = vux / vuu
                lever = np.multiply(d, d)
                lever /= vuu
            else:
                b = np.divide(vux, vuu, out=np.zeros_like(vux), where=ok)
                lever = np.divide(np.multiply(d, d), vuu, out=np.zeros_like(d), where=ok)
            mean_c = np.multiply(b, d, out=d)
            mean_c += mx
            var = np.multiply(b, vux, out=b)
            np.subtract(vxx, var, out=var)
            var /= n - 2
            lever += 1.0 + 1.0 / n
            var *= lever
        else:
            mean_c = mx
            var = np.divide(vxx, n - 1, out=vxx)
        std = np.sqrt(np.maximum(var, 0.0, out=var), out=var)
        z = np.subtract(ux[1], mean_c, out=out)
        z /= np.maximum(std, self.min_std)
        return mean_c, std, z

    def _fit_steady(
        self, s: np.ndarray, ux: np.ndarray, out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`_fit_block` for a full window (``n == window``), in fewer numpy calls.

        The steady state's hot path: each element goes through `_fit_block`'s IEEE operations in
        the same order (bit-identical); only rows that share an operation share the call, and
        the sums are overwritten as scratch.
        """
        if not self.detrend:
            return self._fit_block(s, float(self.window), ux, out=out)
        n = float(self.window)
        mu, mx, vuu, vux, vxx = _centred_moments(s, n)
        if not vuu.min() > _MIN_SPREAD_S2:  # NaN included, as `ok.all()` in `_fit_block`
            return self._fit_block(s, n, ux, out=out)
        # w = (d, b) with d = t - t̄ and b the slope: w * d gives d² and b·d in one call.
        w = s[0:2]
        np.subtract(ux[0], mu, out=w[0])
        np.divide(vux, vuu, out=w[1])
        dd = np.multiply(w, w[0])
        lever, mean_c = dd
        lever /= vuu
        mean_c += mx
        var = np.multiply(w[1], vux, out=w[1])
        np.subtract(vxx, var, out=var)
        var /= n - 2
        lever += 1.0 + 1.0 / n
        var *= lever
        std = np.sqrt(np.maximum(var, 0.0, out=var), out=var)
        z = np.subtract(ux[1], mean_c, out=out)
        z /= np.maximum(std, self.min_std)
        return mean_c, std, z

    def _fit_one(self, n: int, s: list[float], u: float, xc: float) -> tuple[float, float, float]:
        """`_fit_block` for one reading, with Python floats (bit-identical)."""
        su, sx, suu, sux, sxx = s
        mu = su / n
        mx = sx / n
        vuu = suu - su * mu
        vux = sux - su * mx
        vxx = sxx - sx * mx
        if self.detrend:
            ok = vuu > _MIN_SPREAD_S2
            b = vux / vuu if ok else 0.0
            d = u - mu
            mean_c = mx + b * d
            var = (vxx - b * vux) / (n - 2)
            lever = d * d / vuu if ok else 0.0
            var *= lever + (1.0 + 1.0 / n)
        else:
            mean_c = mx
            var = vxx / (n - 1)
        std = math.sqrt(var) if var > 0.0 else 0.0
        return mean_c, std, (xc - mean_c) / max(std, self.min_std)

    def _after_run(
        self,
        i: int,
        take: int,
        run: int,
        flagged: _Flagged | None,
        times: np.ndarray,
        values: np.ndarray,
        level_out: np.ndarray,
        raised_out: np.ndarray,
        alerts: list[Episode],
    ) -> int:
        """Book a run that accepted `take` readings from `i`, then its flagged reading; return the next i."""
        if take:
            self._normal_readings(take)
        if flagged is None:
            return i + run
        z, mean_c, std, level = flagged
        level_out[i + take] = level
        raised_out[i + take] = self._on_flagged(
            int(times[i + take]), float(values[i + take]), z, mean_c, std, level, alerts
        )
        return i + take + 1

    def _after_spike(self) -> bool:
        """Just flagged an isolated reading, in the steady state: `_steady_run(spike=True)` applies."""
        ep = self._ep
        return (
            ep is not None
            and ep.flagged == 1
            and self._ep_normals == 0
            and self.window_ms is None
            and self._hi - self._lo >= self.window
        )

    def _step(self, t: int, x: float, alerts: list[Episode] | None) -> tuple[float, int, int]:
        """Score and learn one reading with Python floats.

        The same IEEE operations, in the same order, as `_baseline` on a block of
        one: the results are bit-identical, only without the array overhead.
        """
        lo, hi = self._lo, self._hi
        newest = max(self._newest, t)
        start = max(hi - self.window, lo)
        if self.window_ms is not None and hi > lo:
            cut = lo + int(np.searchsorted(self._cm[lo:hi], newest - self.window_ms, side="right"))
            start = max(start, cut)
        count = hi - start
        p = self._p
        head = p[:, hi].tolist()
        tail = p[:, start].tolist()
        u = (t - self._t0) / 1000.0
        xc = x - self._shift
        level = 0
        z = 0.0
        if count >= self._min_n:
            mean_c, std, z = self._fit_one(count, [a - b for a, b in zip(head, tail, strict=True)], u, xc)
            if count >= self.warmup:
                az = abs(z)
                level = 2 if az >= self.critical_z else 1 if az >= self.warning_z else 0
        if level:
            return z, level, self._on_flagged(t, x, z, mean_c, std, level, alerts)
        if hi + 1 > self._cap:
            self._make_room(1)
            hi = self._hi
            p = self._p
        self._cm[hi] = newest
        self._tm[hi] = t
        self._x[hi] = x
        p[:, hi + 1] = (head[0] + u, head[1] + xc, head[2] + u * u, head[3] + u * xc, head[4] + xc * xc)
        self._lo = max(self._lo, hi - count)
        self._hi = hi + 1
        self._newest = newest
        self._since_anchor += 1
        if self._since_anchor >= self._recentre_every:
            self._recentre()
        self._normal_readings(1)
        return z, 0, 0

    def _steady_run(
        self,
        times: np.ndarray,
        values: np.ndarray,
        z_out: np.ndarray,
        rows: np.ndarray,
        spike: bool = False,
    ) -> tuple[int, _Flagged | None] | None:
        """Score a run with a full count-limited baseline; accept it up to its first flagged reading.

        The hot path of a device in its steady state, so it is `_baseline` and `_accept`
        pared down to what a full ``window`` needs (no time limit, every count equal):
        the prefix sums share one array, so each step is one numpy call for all of them,
        and nothing is built that this case does not read. The IEEE operations and their
        order are `_baseline`'s (so `_step`'s): results are bit-identical.

        With ``spike``, right after an isolated flagged reading: the run also covers the
        ``cooldown`` readings that would end its episode, and the capped value that then
        joins the baseline (`_normal_readings`), as one more entry after them. It saves a
        scalar step per cooldown reading; if one of them is flagged after all, nothing is
        changed and None is returned (the caller takes the general way).

        `rows` are the run's readings' summed rows (`_rows`, for the current centring): a block
        computes them once for all its runs (`update_many`).

        Returns:
            (readings accepted, the first flagged reading's (z, expected - shift, std, level) or None).
        """
        window = self.window
        hi = self._hi
        m = values.shape[0] + spike
        # Columns [0, window]: the stored prefix sums at the window's head .. the newest one;
        # then the block's, continued sequentially: column window + j is the prefix before j + 1.
        sums = np.empty((_SUMS, window + 1 + m), dtype=np.float64)
        sums[:, : window + 1] = self._p[:, hi - window : hi + 1]
        block = sums[:, window + 1 :]
        if spike:
            ep = self._ep
            assert ep is not None
            cut = self.cooldown
            cap = ep.mean + math.copysign(self.warning_z * max(ep.std, self.min_std), ep.z)
            scores = np.empty(m, dtype=np.float64)
            # `_admit`'s row of the cap: the same IEEE operations as `_fill_rows`.
            u = (ep.peak_ms - self._t0) / 1000.0
            xc = cap - self._shift
            block[:, :cut] = rows[:, :cut]
            block[:, cut] = (u, xc, u * u, u * xc, xc * xc)
            block[:, cut + 1 :] = rows[:, cut:]
            ux = block[:2].copy()
        else:
            scores = z_out
            block[:] = rows
            ux = rows[:2]
        tail = sums[:, window:]
        np.cumsum(tail, axis=1, out=tail)
        take = m
        flagged: _Flagged | None = None
        check = window >= self.warmup  # else the baseline never holds enough readings to flag
        # The fit goes a chunk at a time: what follows a flagged reading is scored again after it
        # (but a pass costs more in numpy calls than in readings: see `_FIT_CHUNK`).
        c0 = 0
        while c0 < m:
            c1 = min(m, c0 + _FIT_CHUNK if c0 or not spike else max(_FIT_CHUNK, cut + 1))
            s = sums[:, window + c0 : window + c1] - sums[:, c0:c1]
            mean_c, std, z = self._fit_steady(s, ux[:, c0:c1], scores[c0:c1])
            if check:
                above = np.abs(z) >= self.warning_z
                if spike and not c0:
                    above[cut] = False  # the capped value is not a reading
                first = int(above.argmax())
                if above[first]:
                    if spike and c0 + first < cut:
                        return None  # the episode goes on: no cap joins
                    take = c0 + first
                    zf = float(z[first])
                    level = 2 if abs(zf) >= self.critical_z else 1
                    flagged = (zf, float(mean_c[first]), float(std[first]), level)
                    break
            c0 = c1
        if not spike:
            if take:
                self._take_steady(times, values, sums[:, window + 1 : window + 1 + take], take)
            return take, flagged
        z_out[:cut] = scores[:cut]
        z_out[cut:] = scores[cut + 1 :]
        assert ep is not None
        entry = (cut, ep.peak_ms, cap)
        self._end_episode()
        # _step moves the baseline's start along with each cooldown reading, the cap moves nothing.
        back = 1 if take > cut + 1 else 2
        self._take_steady(times, values, sums[:, window + 1 : window + 1 + take], take, back, entry)
        return take - 1, flagged

    def _take_steady(
        self,
        times: np.ndarray,
        values: np.ndarray,
        sums: np.ndarray,
        k: int,
        back: int = 1,
        cap: tuple[int, int, float] | None = None,
    ) -> None:
        """Append `k` scored entries to a full count-limited baseline (`_accept` for `_steady_run`).

        The oldest live entry becomes the one `back` places before the newest's baseline start.
        With `cap` = (position, event time, value), that entry is inserted before the reading at
        that position (so `k` counts it).
        """
        if self._hi + k > self._cap:
            self._make_room(k)
        hi = self._hi
        # The time-limit column (_cm) and the newest event time are only read with a time limit:
        # not kept here (`update_many` brings `_newest` up to date once per block).
        if cap is None:
            self._x[hi : hi + k] = values[:k]
            self._tm[hi : hi + k] = times[:k]
        else:
            j, t, x = cap
            self._x[hi : hi + j] = values[:j]
            self._tm[hi : hi + j] = times[:j]
            self._x[hi + j] = x
            self._tm[hi + j] = t
            self._x[hi + j + 1 : hi + k] = values[j : k - 1]
            self._tm[hi + j + 1 : hi + k] = times[j : k - 1]
        self._p[:, hi + 1 : hi + k + 1] = sums
        self._lo = max(self._lo, hi + k - back - self.window)
        self._hi = hi + k
        self._since_anchor += k
        if self._since_anchor >= self._recentre_every:
            self._recentre()

    def _general_run(
        self, times: np.ndarray, values: np.ndarray, z_out: np.ndarray
    ) -> tuple[int, _Flagged | None]:
        """`_steady_run` for any baseline (growing, or time-limited)."""
        base = self._baseline(times, values)
        levels = self._levels(base)
        hits = np.flatnonzero(levels)
        run = values.shape[0]
        take = int(hits[0]) if hits.shape[0] else run
        z_out[:] = base.z
        if take:
            self._accept(base, times, values, take)
        if take == run:
            return take, None
        return take, (float(base.z[take]), float(base.mean_c[take]), float(base.std[take]), int(levels[take]))

    def _normal_readings(self, k: int) -> None:
        """`k` consecutive normal readings were taken: they may end the episode.

        Callers never pass an isolated episode's end in the middle of `k` (see `_run_limit`).
        """
        ep = self._ep
        if ep is not None:
            self._ep_normals += k
            if self._ep_normals >= self.cooldown:
                self._end_episode()
                if ep.flagged == 1:
                    # An isolated exceedance is the noise's own tail more often than not: leaving it
                    # out would bias the spread low (then flag more). It joins, capped at the threshold.
                    cap = self.warning_z * max(ep.std, self.min_std)
                    self._admit(ep.peak_ms, ep.mean + math.copysign(cap, ep.z))

    def _run_limit(self) -> int:
        """Readings a vector run may take before an isolated episode ends (and the baseline changes)."""
        ep = self._ep
        if ep is not None and ep.flagged == 1:
            return self.cooldown - self._ep_normals
        return self._recentre_every

    def _admit(self, t: int, value: float) -> None:
        """Append a value at event time `t` to the baseline without scoring it (the capped exceedance)."""
        if self._hi + 1 > self._cap:
            self._make_room(1)
        hi = self._hi
        u = (t - self._t0) / 1000.0
        xc = value - self._shift
        self._cm[hi] = self._newest
        self._tm[hi] = t
        self._x[hi] = value
        head = self._p[:, hi].tolist()
        self._p[:, hi + 1] = (head[0] + u, head[1] + xc, head[2] + u * u, head[3] + u * xc, head[4] + xc * xc)
        self._hi = hi + 1
        self._since_anchor += 1
        if self._since_anchor >= self._recentre_every:
            self._recentre()

    def _baseline(self, times: np.ndarray, values: np.ndarray) -> _Baseline:
        """Baseline before each reading of a block, assuming the block's readings are all accepted."""
        lo, hi = self._lo, self._hi
        m = values.shape[0]
        # Prefix sums continued over the block: p[:, j] is the prefix before reading j.
        p = np.empty((_SUMS, m + 1), dtype=np.float64)
        p[:, 0] = self._p[:, hi]
        self._fill_rows(p[:, 1:], times, values)
        ux = p[:2, 1:].copy()
        np.cumsum(p, axis=1, out=p)
        window = self.window
        if self.window_ms is None and hi - lo >= window:
            # Steady state: every reading's baseline is the `window` entries before it.
            if m <= window:
                heads = self._p[:, hi - window : hi - window + m]
            else:
                heads = np.concatenate((self._p[:, hi - window : hi], p[:, : m - window]), axis=1)
            mean_c, std, z = self._fit_block(p[:, :m] - heads, float(window), ux)
            count = np.full(m, window, dtype=np.int64)
            newest = np.maximum.accumulate(times)
            np.maximum(newest, self._newest, out=newest)
            return _Baseline(count, mean_c, std, z, p[:, 1:], newest)
        p_all = np.concatenate((self._p[:, lo:hi], p), axis=1)
        newest = np.maximum.accumulate(np.concatenate((np.array([self._newest], dtype=np.int64), times)))[1:]
        ends = np.arange(hi, hi + m, dtype=np.int64)
        starts = np.maximum(ends - window, lo)
        if self.window_ms is not None:
            # Baseline = entries taken once the running max event time had passed (newest - window).
            # The running max never decreases, so this is a binary search, and with in-order event
            # times it is exactly "the readings of the last window_s seconds".
            taken_newest = np.concatenate((self._cm[lo:hi], newest))
            cut = np.searchsorted(taken_newest, newest - self.window_ms, side="right") + lo
            starts = np.maximum(starts, np.minimum(cut, ends))
        count = ends - starts
        s = p_all[:, ends - lo] - p_all[:, starts - lo]
        mean_c, std, z = self._fit_block(s, np.maximum(count, self._min_n), ux)
        z[count < self._min_n] = 0.0
        return _Baseline(count, mean_c, std, z, p[:, 1:], newest)

    def _levels(self, base: _Baseline) -> np.ndarray:
        az = np.abs(base.z)
        flagged = az >= self.warning_z
        if not flagged.any():
            return np.zeros(az.shape[0], dtype=np.int8)
        ready = base.n >= self.warmup
        return (ready & flagged).astype(np.int8) + (ready & (az >= self.critical_z)).astype(np.int8)

    def _accept(self, base: _Baseline, times: np.ndarray, values: np.ndarray, k: int) -> None:
        """Append the first `k` readings of a scored block to the baseline."""
        if self._hi + k > self._cap:
            self._make_room(k)
        hi = self._hi
        self._cm[hi : hi + k] = base.newest[:k]
        self._tm[hi : hi + k] = times[:k]
        self._x[hi : hi + k] = values[:k]
        self._p[:, hi + 1 : hi + k + 1] = base.p[:, :k]
        # Baselines only lose entries at the front: the last reading's start bounds every later one.
        start = hi + k - 1 - int(base.n[k - 1])
        if start > self._lo:
            self._lo = start
        self._hi = hi + k
        newest = int(base.newest[k - 1])
        if newest > self._newest:
            self._newest = newest
        self._since_anchor += k
        if self._since_anchor >= self._recentre_every:
            self._recentre()

    def _make_room(self, k: int) -> None:
        lo, hi = self._lo, self._hi
        n = hi - lo
        if n + k > self._cap:
            self._cap = max(2 * self._cap, n + k)
            self._cm = _grown(self._cm[lo:hi], self._cap, np.int64)
            self._tm = _grown(self._tm[lo:hi], self._cap, np.int64)
            self._x = _grown(self._x[lo:hi], self._cap, np.float64)
            sums = np.zeros((_SUMS, self._cap + 1), dtype=np.float64)
            sums[:, : n + 1] = self._p[:, lo : hi + 1]
            self._p = sums
        else:
            self._cm[:n] = self._cm[lo:hi]
            self._tm[:n] = self._tm[lo:hi]
            self._x[:n] = self._x[lo:hi]
            self._p[:, : n + 1] = self._p[:, lo : hi + 1]
        self._lo, self._hi = 0, n

    def _recentre(self) -> None:
        """Re-centre the prefix sums on the baseline's current entries (keeps cancellation small)."""
        n = self._hi - self._lo
        self._make_room(0)
        if n:
            # The first live entry: exact, and known identically however the input was blocked.
            self._shift = float(self._x[0])
            self._t0 = int(self._tm[0])
        self._p[:, 0] = 0.0
        self._p[:, 1 : n + 1] = self._rows(self._tm[:n], self._x[:n])
        np.cumsum(self._p[:, : n + 1], axis=1, out=self._p[:, : n + 1])
        self._since_anchor = 0

    def _on_flagged(
        self,
        t: int,
        x: float,
        z: float,
        mean_c: float,
        std: float,
        level: int,
        alerts: list[Episode] | None,
    ) -> int:
        """Take a flagged reading into the episode; return the alert level it raises (0: none)."""
        mean = mean_c + self._shift
        ep = self._ep
        if ep is None:
            grew = True
            ep = Episode(t, t, x, z, mean, std, _SEVERITIES[level], 1)
            self._ep_recent_t = [t]
            self._ep_recent_x = [x]
        else:
            self._ep_recent_t.append(t)
            self._ep_recent_x.append(x)
            grew = abs(z) > abs(ep.z)
            if grew:
                ep = Episode(ep.start_ms, t, x, z, mean, std, _SEVERITIES[level], ep.flagged + 1)
            else:
                ep = Episode(
                    ep.start_ms, ep.peak_ms, ep.value, ep.z, ep.mean, ep.std, ep.severity, ep.flagged + 1
                )
        self._ep = ep
        raised = self._alert_raised(ep, level, grew)
        if raised:
            self._ep_alerted = raised
        if alerts is not None and self._ep_alerted and (raised or grew):
            alerts.append(ep)
        self._ep_normals = 0
        self._newest = max(self._newest, t)
        if ep.flagged >= self.max_episode:
            self._rebaseline()
        return raised

    def _alert_raised(self, ep: Episode, level: int, grew: bool) -> int:
        """The alert policy: the level of the alert a flagged reading of `ep` raises (0: none).

        `ep` already includes the reading (its own `level`; `grew`: it is the new peak). An
        episode not yet alerted raises its alert, at the level of its peak so far, once it is
        confirmed: by a critical reading, or by its ``confirm``-th flagged one. An alerted
        episode raises again only when a new peak lifts it to a higher level.
        """
        if not self._ep_alerted:
            confirmed = level == 2 or ep.flagged >= self.confirm
            return _SEVERITIES.index(ep.severity) if confirmed else 0
        return level if grew and level > self._ep_alerted else 0

    def _rebaseline(self) -> None:
        """The episode lasted: take its readings as the new normal."""
        times = np.array(self._ep_recent_t[-self.window :], dtype=np.int64)
        values = np.array(self._ep_recent_x[-self.window :], dtype=np.float64)
        self._end_episode()
        self._lo = self._hi = 0
        self._p[:, 0] = 0.0
        self._shift = float(values[0])
        self._t0 = int(times[0])
        self._since_anchor = 0
        newest = self._newest
        self._newest = _NO_TIME
        base = self._baseline(times, values)
        self._accept(base, times, values, times.shape[0])
        self._newest = max(self._newest, newest)

    def _end_episode(self) -> None:
        self._ep = None
        self._ep_normals = 0
        self._ep_alerted = 0
        self._ep_recent_t = []
        self._ep_recent_x = []


def _grown(a: np.ndarray, size: int, dtype: type) -> np.ndarray:
    out: np.ndarray = np.zeros(size, dtype=dtype)
    out[: a.shape[0]] = a
    return out


def update_rows(
    detectors: Sequence[ZScoreDetector], times: np.ndarray, values: np.ndarray
) -> list[list[Episode]]:
    """Feed row r of `values` (series, m) to ``detectors[r]``; return each one's alerts.

    One detector at a time. (A joint, all-rows-at-once scoring path used to live here; it
    gave results that depended on where batches were cut — different baselines after a
    restart or a sink stall — so it was removed: correctness first, see the pipeline tests.)
    """
    return [d.update_many(times, values[r]).alerts for r, d in enumerate(detectors)]
