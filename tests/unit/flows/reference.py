"""Independent, deliberately naive references for the flow's numbers.

Plain loops over Python lists with numpy's own aggregates (``np.mean``,
``np.std``, ``np.percentile``, ``np.polyfit``): slow, obvious, and sharing no
code with `flows`, so the tests compare two implementations of each rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def late_flags(times: list[int], lateness_ms: int) -> list[bool]:
    """Event i is late if it is older than (newest before it) - lateness."""
    newest = None
    flags = []
    for t in times:
        flags.append(newest is not None and t < newest - lateness_ms)
        if newest is None or t > newest:
            newest = t
    return flags


def windows_of(t: int, length: int, step: int) -> list[int]:
    """Starts of every window [s, s + length) with s a multiple of step that contains t."""
    first = (t - length) // step + 1
    return [k * step for k in range(first, t // step + 1) if k * step <= t < k * step + length]


def window_aggregates(
    times: list[int], values: list[float], length: int, step: int
) -> dict[int, tuple[int, float, float, float, float]]:
    """Start -> (count, mean, min, max, p99) of every window holding values."""
    groups: dict[int, list[float]] = {}
    for t, v in zip(times, values, strict=True):
        for s in windows_of(t, length, step):
            groups.setdefault(s, []).append(v)
    return {
        s: (len(vs), float(np.mean(vs)), float(np.min(vs)), float(np.max(vs)), float(np.percentile(vs, 99)))
        for s, vs in groups.items()
    }


@dataclass
class RefEpisode:
    start_ms: int
    peak_ms: int
    value: float
    z: float
    mean: float
    std: float
    level: int
    flagged: int
    alerted: int = 0
    """Level of the alert raised so far; 0: never confirmed, so the flow never emitted it."""


def zscore_reference(
    times: list[int],
    values: list[float],
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
) -> tuple[list[float], list[int], list[int], list[RefEpisode]]:
    """Per reading: z, its level (0/1/2) and the alert it raised (0/1/2); and every episode as it ended.

    An episode's alert is raised at its first critical reading or its `confirm`-th flagged
    reading, whichever comes first, at its peak's level; later only by a higher new peak.
    With `detrend`, the baseline is a least-squares line in event time (``np.linalg.lstsq``)
    and the spread the standard error of predicting one reading from it.
    """
    accepted: list[tuple[int, float, int]] = []  # (time, value, newest time when taken)
    newest = -(2**62)
    zs: list[float] = []
    levels: list[int] = []
    raised: list[int] = []
    episodes: list[RefEpisode] = []
    ep: RefEpisode | None = None
    normals = 0
    recent: list[tuple[int, float]] = []
    for t, x in zip(times, values, strict=True):
        newest = max(newest, t)
        first = 0
        if window_s is not None:
            horizon = newest - round(window_s * 1000)
            first = next((i for i, a in enumerate(accepted) if a[2] > horizon), len(accepted))
        kept = accepted[max(first, len(accepted) - window) :]
        base = [a[1] for a in kept]
        n = len(base)
        if detrend and n >= 3:
            mean, std = line_prediction([(a[0] - t) / 1000 for a in kept], base)
            z = (x - mean) / max(std, min_std)
        elif detrend:
            mean, std, z = 0.0, 0.0, 0.0
        elif n >= 2:
            mean = float(np.mean(base))
            std = float(np.std(base, ddof=1))
            z = (x - mean) / max(std, min_std)
        else:
            mean, std, z = (base[0] if base else 0.0), 0.0, 0.0
        level = 0
        if n >= warmup:
            level = 2 if abs(z) >= critical_z else 1 if abs(z) >= warning_z else 0
        alert = 0
        if level:
            if ep is None:
                ep = RefEpisode(t, t, x, z, mean, std, level, 1)
                episodes.append(ep)
                recent = [(t, x)]
            else:
                ep.flagged += 1
                recent.append((t, x))
                if abs(z) > abs(ep.z):
                    if ep.alerted and level > ep.level:
                        alert = level
                    ep.peak_ms, ep.value, ep.z, ep.mean, ep.std, ep.level = t, x, z, mean, std, level
            if not ep.alerted and (level == 2 or ep.flagged >= confirm):
                alert = ep.level
            ep.alerted = max(ep.alerted, alert)
            normals = 0
            if ep.flagged >= max_episode:
                seed = recent[-window:]
                running = -(2**62)
                accepted = []
                for tt, xx in seed:
                    running = max(running, tt)
                    accepted.append((tt, xx, running))
                ep = None
                normals = 0
        else:
            accepted.append((t, x, newest))
            if ep is not None:
                normals += 1
                if normals >= cooldown:
                    if ep.flagged == 1:  # an isolated exceedance joins, capped at the warning threshold
                        capped = ep.mean + math.copysign(warning_z * max(ep.std, min_std), ep.z)
                        accepted.append((ep.peak_ms, capped, newest))
                    ep = None
                    normals = 0
        zs.append(z)
        levels.append(level)
        raised.append(alert)
    return zs, levels, raised, episodes


def line_prediction(u: list[float], x: list[float]) -> tuple[float, float]:
    """The least-squares line of x on u (seconds before the reading) at u = 0, and its prediction error."""
    n = len(x)
    ua, xa = np.array(u), np.array(x)
    spread = float(np.sum((ua - ua.mean()) ** 2))
    if spread <= 1e-6:  # one instant: no slope
        return float(xa.mean()), float(np.sqrt(np.sum((xa - xa.mean()) ** 2) / (n - 2) * (1 + 1 / n)))
    design = np.column_stack([np.ones(n), ua])
    coef = np.linalg.lstsq(design, xa, rcond=None)[0]
    resid = xa - design @ coef
    s2 = float(resid @ resid) / (n - 2)
    return float(coef[0]), math.sqrt(s2 * (1 + 1 / n + ua.mean() ** 2 / spread))


def trend_reference(
    times: list[int], values: list[float], span_ms: int, bucket_ms: int
) -> tuple[float, float, int]:
    """(slope per minute, R², points) over the readings whose bucket starts after newest - span."""
    newest = max(times)
    sel = [(t, v) for t, v in zip(times, values, strict=True) if t - t % bucket_ms > newest - span_ms]
    u = np.array([(t - sel[0][0]) / 60_000 for t, _ in sel])
    x = np.array([v for _, v in sel])
    slope = float(np.polyfit(u, x, 1)[0])
    if np.ptp(x) == 0:
        return slope, 1.0, len(sel)
    r = float(np.corrcoef(u, x)[0, 1])
    return slope, r * r, len(sel)
