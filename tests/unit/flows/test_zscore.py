import math
import pickle

import numpy as np
import pytest

from flows.zscore import Score, ZScoreDetector, update_rows
from sinks.records import Severity
from tests.unit.flows.reference import line_prediction, zscore_reference

T0 = 1_700_000_000_000
LEVELS = {Severity.NONE: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def _series(n, seed, anomalies=0, shift_at=None):
    rng = np.random.default_rng(seed)
    times = T0 + np.cumsum(rng.integers(200, 1800, n)).astype(np.int64)
    values = 20 + np.sin(np.arange(n) / 40) + rng.normal(0, 0.25, n)
    if anomalies:
        idx = rng.choice(np.arange(50, n), anomalies, replace=False)
        values[idx] += rng.choice([-1, 1], anomalies) * rng.uniform(2, 6, anomalies)
    if shift_at is not None:
        values[shift_at:] += 8.0
    return times, values


def _run_one_by_one(det, times, values):
    return [det.update(int(t), float(v)) for t, v in zip(times, values, strict=True)]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"window": 50, "warmup": 10},
        {"window": 80, "window_s": 40.0, "warmup": 5, "cooldown": 1, "max_episode": 6},
        {"window": 20, "warmup": 20, "warning_z": 2.0, "critical_z": 2.5, "cooldown": 5, "max_episode": 4},
        {"window": 50, "warmup": 10, "confirm": 1},
        {"window": 60, "warmup": 10, "warning_z": 2.0, "critical_z": 4.0, "confirm": 3, "max_episode": 5},
        {"window": 8, "warmup": 3},
        {"detrend": False, "window": 300},
        {"detrend": False, "window": 50, "warmup": 10},
        {"detrend": False, "window": 80, "window_s": 40.0, "warmup": 5, "cooldown": 1, "max_episode": 6},
    ],
)
def test_scores_match_the_naive_reference(kwargs):
    times, values = _series(2500, seed=8, anomalies=40, shift_at=1800)
    det = ZScoreDetector(**kwargs)
    got, flags = [], []
    for t, v in zip(times, values, strict=True):
        got.append(det.update(int(t), float(v)))
        flags.append(det.flag)
    zs, levels, raised, _ = zscore_reference(times.tolist(), values.tolist(), **kwargs)
    assert [LEVELS[s.severity] for s in got] == raised
    assert [LEVELS[f] for f in flags] == levels
    assert sum(raised) > 0 and sum(levels) > sum(raised), (
        "further flagged readings of an episode raise nothing"
    )
    np.testing.assert_allclose([s.z for s in got], zs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"window": 40, "window_s": 15.0, "warmup": 8, "max_episode": 5},
        {"detrend": False, "window": 300},
        {"detrend": False, "window": 40, "window_s": 15.0, "warmup": 8, "max_episode": 5},
    ],
)
def test_blocks_of_any_size_give_bit_identical_results(kwargs):
    times, values = _series(3000, seed=9, anomalies=60, shift_at=2000)
    times[::7] -= 2500  # out-of-order event times too
    single = ZScoreDetector(**kwargs)
    one = _run_one_by_one(single, times, values)
    blocked = ZScoreDetector(**kwargs)
    rng = np.random.default_rng(10)
    z, levels, alerts = [], [], []
    i = 0
    while i < len(times):
        k = int(rng.choice([1, 2, 5, 17, 64, 333, 1200]))
        out = blocked.update_many(times[i : i + k], values[i : i + k])
        z += out.z.tolist()
        levels += [out.severity(j) for j in range(len(out.z))]
        alerts += out.alerts
        i += k
    assert [s.z for s in one] == z
    assert [s.severity for s in one] == levels
    assert single.flag == blocked.flag
    assert alerts and pickle.dumps(blocked.episode) == pickle.dumps(single.episode)


@pytest.mark.parametrize("detrend", [True, False])
@pytest.mark.parametrize("cooldown", [1, 3])
def test_isolated_spikes_in_long_blocks_score_as_one_by_one(cooldown, detrend):
    # The steady-state path scores a spike's cooldown readings and its capped re-entry in one
    # run; a spike whose cooldown holds another flagged reading must fall back to the general way.
    times, values = _series(4000, seed=12)
    rng = np.random.default_rng(13)
    spikes = rng.choice(np.arange(400, 3900), 60, replace=False)
    values[spikes] += rng.choice([-1, 1], 60) * rng.uniform(2.5, 6, 60)
    values[spikes[:10] + 2] += 4.0  # a second exceedance inside the cooldown
    single = ZScoreDetector(window=300, cooldown=cooldown, detrend=detrend)
    one = _run_one_by_one(single, times, values)
    blocked = ZScoreDetector(window=300, cooldown=cooldown, detrend=detrend)
    out = blocked.update_many(times, values)
    assert [s.z for s in one] == out.z.tolist()
    assert [LEVELS[s.severity] for s in one] == out.raised.tolist()
    assert single.baseline_size == blocked.baseline_size
    # Same state to the bit (the arrays' spare capacity aside), so a restore continues alike.
    state_one, state_blocked = single.__getstate__(), blocked.__getstate__()
    assert pickle.dumps({**state_one, "_cap": 0}) == pickle.dumps({**state_blocked, "_cap": 0})


def test_episodes_match_the_reference_with_their_peaks():
    times, values = _series(2000, seed=11, anomalies=30)
    det = ZScoreDetector(window=100, warmup=20)
    alerts = det.update_many(times, values).alerts
    latest = {ep.start_ms: ep for ep in alerts}
    _, _, _, episodes = zscore_reference(times.tolist(), values.tolist(), window=100, warmup=20)
    confirmed = [e for e in episodes if e.alerted]
    assert 0 < len(confirmed) < len(episodes), "some episodes were never confirmed"
    assert sorted(latest) == [e.start_ms for e in confirmed]
    for ref in confirmed:
        ep = latest[ref.start_ms]
        assert (ep.peak_ms, ep.value, LEVELS[ep.severity], ep.flagged >= 1) == (
            ref.peak_ms,
            ref.value,
            ref.level,
            True,
        )
        assert ep.z == pytest.approx(ref.z, rel=1e-9)
        assert ep.mean == pytest.approx(ref.mean, rel=1e-10)  # a fitted value: a few digits go
        assert ep.std == pytest.approx(ref.std, rel=1e-9)


def test_zscore_is_zero_when_flat():
    det = ZScoreDetector(warmup=5)
    scores = [det.update(T0 + i, 21.0) for i in range(100)]
    assert all(s == Score(0.0, Severity.NONE) for s in scores)


def test_a_flat_series_that_moves_is_critical():
    det = ZScoreDetector(warmup=5, min_std=1e-6)
    for i in range(50):
        det.update(T0 + i, 1013.25)
    z, severity = det.update(T0 + 50, 1013.35)
    assert severity is Severity.CRITICAL
    assert z == pytest.approx(0.1 / 1e-6, rel=1e-6)


def test_nothing_is_flagged_during_warm_up():
    det = ZScoreDetector(warmup=30, detrend=False)  # the flat mean, so 1e6 stays an outlier after it joins
    rng = np.random.default_rng(12)
    scores = [det.update(T0 + i, float(v)) for i, v in enumerate(rng.normal(0, 1, 29))]
    assert det.update(T0 + 29, 1e6).severity is Severity.NONE  # 29 readings in the baseline
    assert all(s.severity is Severity.NONE for s in scores)
    assert det.update(T0 + 30, 1e6).severity is Severity.CRITICAL  # the 1e6 joined: 30 now


def test_single_reading_scores_zero():
    assert ZScoreDetector().update(T0, 5.0) == Score(0.0, Severity.NONE)


@pytest.mark.parametrize("detrend", [True, False])
def test_a_burst_is_one_episode_with_its_peak_and_does_not_pollute_the_baseline(detrend):
    rng = np.random.default_rng(13)
    values = rng.normal(10, 0.5, 400) + np.arange(400) * 0.002 * detrend  # a gentle slope for the line
    values[300:306] = [14.0, 16.0, 19.0, 15.0, 14.5, 13.0]
    det = ZScoreDetector(window=200, warmup=30, detrend=detrend)
    times = T0 + np.arange(400, dtype=np.int64) * 1000
    out = det.update_many(times, values)
    burst = [ep for ep in out.alerts if ep.start_ms >= T0 + 300_000]
    assert {ep.start_ms for ep in burst} == {T0 + 300_000}, "one episode for the burst, one alert id"
    peak = burst[-1]
    assert (peak.value, peak.peak_ms, peak.severity) == (19.0, T0 + 302_000, Severity.CRITICAL)
    # Every burst reading was scored against the clean baseline, not one inflated by the burst.
    clean = values[100:300]
    for i, v in zip(range(300, 306), values[300:306], strict=True):
        if detrend:
            expected, se = line_prediction(((times[100:300] - times[i]) / 1000).tolist(), clean.tolist())
        else:
            expected, se = clean.mean(), clean.std(ddof=1)
        assert out.z[i] == pytest.approx((v - expected) / se, rel=1e-9)
    assert det.baseline_size == 200 and det.episode is None


def test_a_level_shift_is_learnt_after_max_episode_readings():
    rng = np.random.default_rng(14)
    values = np.concatenate([rng.normal(0, 1, 300), rng.normal(50, 1, 300)])
    det = ZScoreDetector(window=100, warmup=20, max_episode=10)
    out = det.update_many(T0 + np.arange(600, dtype=np.int64), values)
    flagged = np.flatnonzero(out.level)
    assert flagged.min() == 300 and flagged[:10].tolist() == list(range(300, 310))
    assert (flagged >= 310).sum() <= 3, "after ten readings the new level is normal (bar noise)"
    assert len({ep.start_ms for ep in out.alerts if ep.start_ms < T0 + 310}) == 1


def test_time_limited_baseline_forgets_old_readings():
    det = ZScoreDetector(window=1000, window_s=10.0, warmup=5)
    for i in range(50):
        det.update(T0 + i * 1000, float(i % 2))
    assert det.baseline_size == 10
    det.update(T0 + 100_000, 0.5)
    assert det.baseline_size == 1


def test_non_finite_values_are_ignored():
    det = ZScoreDetector(warmup=2)
    det.update(T0, 1.0)
    det.update(T0 + 1, 2.0)
    z, severity = det.update(T0 + 2, math.nan)
    assert math.isnan(z) and severity is Severity.NONE
    assert det.update(T0 + 3, math.inf).severity is Severity.NONE
    assert det.baseline_size == 2


def test_a_restored_detector_continues_exactly():
    times, values = _series(1500, seed=15, anomalies=25)
    a = ZScoreDetector(window=120, warmup=10)
    a.update_many(times[:700], values[:700])
    b = pickle.loads(pickle.dumps(a))
    assert (
        a.update_many(times[700:], values[700:]).z.tolist()
        == b.update_many(times[700:], values[700:]).z.tolist()
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 1},
        {"warmup": 1},
        {"cooldown": 0},
        {"warning_z": 5, "critical_z": 3},
        {"min_std": 0},
        {"window_s": -1},
        {"confirm": 0},
        {"confirm": 31, "max_episode": 30},
        {"window": 2},  # a line through two readings leaves no residual to scale by
    ],
)
def test_bad_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        ZScoreDetector(**kwargs)


def test_rows_scored_together_equal_each_detector_alone():
    rng = np.random.default_rng(25)
    times = T0 + np.cumsum(rng.integers(100, 900, 6000)).astype(np.int64)
    values = rng.normal(0, 1, (3, 6000)) * np.array([[0.3], [2.0], [0.5]]) + np.array(
        [[20.0], [45.0], [1013.0]]
    )
    values[0, 3000:3010] += 5
    values[1, 2000:2003] += 20
    values[2, 4000:] += 4
    together = [ZScoreDetector(window=100, warmup=20, max_episode=10) for _ in range(3)]
    alone = [ZScoreDetector(window=100, warmup=20, max_episode=10) for _ in range(3)]
    got: list[list] = [[], [], []]
    want: list[list] = [[], [], []]
    for i in range(0, 6000, 73):
        for r, alerts in enumerate(update_rows(together, times[i : i + 73], values[:, i : i + 73])):
            got[r] += alerts
        for r, det in enumerate(alone):
            want[r] += det.update_many(times[i : i + 73], values[r, i : i + 73]).alerts
    assert got == want and all(got)
    assert [pickle.dumps(d) for d in together] == [pickle.dumps(d) for d in alone]


def _steady(det, n=200, seed=26):
    values = np.random.default_rng(seed).normal(0, 1, n)
    det.update_many(T0 + np.arange(n, dtype=np.int64), values)
    return n


def test_an_episode_raises_an_alert_when_it_starts_and_again_only_when_it_turns_critical():
    det = ZScoreDetector(window=200, warmup=30, confirm=1)
    n = _steady(det)
    raised = [
        det.update(T0 + n + i, v).severity for i, v in enumerate([4.0, 4.5, 9.0, 9.5, 0.1, 0.0, -0.1, 4.2])
    ]
    assert raised == [
        Severity.WARNING,  # the episode starts
        Severity.NONE,  # still the same episode
        Severity.CRITICAL,  # it escalates
        Severity.NONE,
        Severity.NONE,
        Severity.NONE,
        Severity.NONE,  # three normal readings ended it
        Severity.WARNING,  # a new episode
    ]
    assert det.flag is Severity.WARNING


def test_an_isolated_exceedance_joins_the_baseline_capped_and_a_burst_does_not():
    det = ZScoreDetector(window=1000, warmup=30, cooldown=2, detrend=False)  # flat: checked by hand
    n = _steady(det)
    det.update(T0 + n, 50.0)
    spike = det.episode
    for i in range(2):
        det.update(T0 + n + 1 + i, 0.0)
    assert det.baseline_size == n + 2 + 1, "the spike joined, after the episode ended"
    burst = ZScoreDetector(window=1000, warmup=30, cooldown=2)
    _steady(burst)
    for i, v in enumerate([50.0, 60.0, 0.0, 0.0]):
        burst.update(T0 + n + i, v)
    assert burst.baseline_size == n + 2, "a burst stays out"
    # Capped at the warning threshold: what the next reading is scored against.
    assert spike is not None
    capped = spike.mean + 3.0 * spike.std
    base = [*np.random.default_rng(26).normal(0, 1, n).tolist(), 0.0, 0.0, capped]
    z, _ = det.update(T0 + n + 3, 1.0)
    assert z == pytest.approx((1.0 - np.mean(base)) / np.std(base, ddof=1), rel=1e-9)


def test_rows_raise_the_same_alerts_however_the_batches_are_cut():
    # Regression: a joint scoring path made baselines depend on batch boundaries, so a
    # restart or a sink stall changed alerts' figures (found by the live pipeline tests).
    from flows.logic import IotParams
    from flows.settings import FlowSettings
    from sources.clock import simulated_times
    from sources.iot import IotConfig, IotSimulator

    params = dict(IotParams.from_settings(FlowSettings()).zscore)
    sim = IotSimulator(IotConfig(devices=10), seed=9)
    readings = [r.reading for r in sim.run(simulated_times(1_795_709_000_000, 20.0, 60_000))]
    rng = np.random.default_rng(1)
    for device in sorted({r.device_id for r in readings}):
        rows = [r for r in readings if r.device_id == device]
        t = np.array([r.event_time for r in rows], dtype=np.int64)
        x = np.array([[r.temperature for r in rows], [r.humidity for r in rows], [r.pressure for r in rows]])

        def alerts(cuts: list[int], t=t, x=x) -> dict:
            detectors = [ZScoreDetector(**params) for _ in range(3)]
            out, i = {}, 0
            for n in cuts:
                for row, episodes in enumerate(update_rows(detectors, t[i : i + n], x[:, i : i + n])):
                    out.update({(row, e.start_ms): e for e in episodes})
                i += n
            return out

        whole = alerts([len(t)])
        for _ in range(5):
            cuts: list[int] = []
            while sum(cuts) < len(t):
                cuts.append(int(rng.integers(1, 800)))
            assert alerts(cuts) == whole, device


def _hand_baseline(n=200, seed=26):
    """The steady baseline `_steady` feeds: its mean and standard deviation, by hand."""
    values = np.random.default_rng(seed).normal(0, 1, n)
    return float(values.mean()), float(values.std(ddof=1))


def test_a_single_warning_reading_raises_no_alert_but_is_flagged():
    det = ZScoreDetector(window=1000, warmup=30, detrend=False)  # confirm=2 by default; flat: by hand
    n = _steady(det)
    mean, std = _hand_baseline()
    z, severity = det.update(T0 + n, 4.0)
    assert z == pytest.approx((4.0 - mean) / std, rel=1e-12) and 3.0 <= z < 5.0
    assert (severity, det.flag, det.alerted) == (Severity.NONE, Severity.WARNING, Severity.NONE)
    out = det.update_many(T0 + n + 1 + np.arange(3, dtype=np.int64), np.zeros(3))
    assert out.alerts == [] and not out.raised.any() and det.episode is None


def test_a_second_flagged_reading_confirms_a_warning_episode_with_its_peak_so_far():
    det = ZScoreDetector(window=1000, warmup=30)
    n = _steady(det)
    out = det.update_many(T0 + n + np.arange(4, dtype=np.int64), np.array([4.2, 0.0, 0.1, 3.8]))
    # 4.2 starts the episode (unconfirmed), two normal readings don't end it (cooldown 3),
    # 3.8 is its second flagged reading: the alert is raised there, carrying the 4.2 peak.
    assert out.raised.tolist() == [0, 0, 0, 1] and out.level.tolist() == [1, 0, 0, 1]
    (alert,) = out.alerts
    assert (alert.start_ms, alert.peak_ms, alert.value, alert.severity, alert.flagged) == (
        T0 + n,
        T0 + n,
        4.2,
        Severity.WARNING,
        2,
    )


def test_flagged_readings_of_separate_episodes_do_not_confirm_each_other():
    det = ZScoreDetector(window=1000, warmup=30)
    n = _steady(det)
    out = det.update_many(T0 + n + np.arange(5, dtype=np.int64), np.array([4.0, 0.0, 0.1, -0.1, 4.0]))
    assert out.level.tolist() == [1, 0, 0, 0, 1] and not out.raised.any() and out.alerts == []


def test_a_critical_reading_alerts_at_once_and_a_confirmed_warning_escalates():
    det = ZScoreDetector(window=1000, warmup=30)
    n = _steady(det)
    raised = [det.update(T0 + n + i, v).severity for i, v in enumerate([9.0, 0.0, 0.0, 0.0])]
    assert raised == [Severity.CRITICAL, Severity.NONE, Severity.NONE, Severity.NONE]
    raised = [det.update(T0 + n + 4 + i, v).severity for i, v in enumerate([3.9, 4.1, 9.5, 4.0])]
    assert raised == [Severity.NONE, Severity.WARNING, Severity.CRITICAL, Severity.NONE]
    assert det.alerted is Severity.CRITICAL


def test_a_snapshot_from_before_confirmation_keeps_alerting_every_episode():
    det = ZScoreDetector(window=200, warmup=30, confirm=1)
    n = _steady(det)
    det.update(T0 + n, 4.0)  # an alerted warning episode in progress
    state = det.__getstate__()
    del state["confirm"], state["_ep_alerted"]  # what an older version pickled
    old = ZScoreDetector.__new__(ZScoreDetector)
    old.__setstate__(state)
    assert (old.confirm, old.alerted) == (1, Severity.WARNING)
    assert old.update(T0 + n + 1, 4.5).severity is Severity.NONE, "already alerted: no second alert"


def test_a_two_reading_window_is_allowed_for_the_flat_mean():
    assert ZScoreDetector(window=2, warmup=2, detrend=False).update(T0, 1.0).z == 0.0


def _slope(n=600, seed=30):
    """A steady rise of 3 units a minute at 2 Hz with noise 0.1: the cycle's slope, in miniature."""
    rng = np.random.default_rng(seed)
    times = T0 + np.arange(n, dtype=np.int64) * 500
    return times, 0.025 * np.arange(n) + rng.normal(0, 0.1, n)


def test_a_steady_slope_is_normal_for_the_line_but_hides_a_spike_from_the_flat_mean():
    times, values = _slope()
    values[500] += 1.5  # 15 noise sigmas
    line = ZScoreDetector(window=60).update_many(times, values)
    flat = ZScoreDetector(window=300, detrend=False).update_many(times, values)
    assert [a.start_ms for a in line.alerts] == [times[500]] and line.level[500] == 2, "the spike, only"
    assert (line.level == 2).sum() == 1 and np.abs(line.z[:500]).mean() < 1.0, "the slope itself is normal"
    # The flat baseline lags the rise by half its window and spreads with it: the spike is under 3.
    assert abs(flat.z[500]) < 3.0 and not flat.level[500]


def test_an_alert_reports_the_expected_value_at_its_peak_and_its_standard_error():
    times, values = _slope()
    values[400] -= 2.0
    (alert,) = ZScoreDetector(window=60).update_many(times, values).alerts
    assert (alert.peak_ms, alert.severity) == (int(times[400]), Severity.CRITICAL)
    (ref,) = [e for e in zscore_reference(times.tolist(), values.tolist(), window=60)[3] if e.alerted]
    assert alert.mean == pytest.approx(ref.mean, rel=1e-12) and alert.std == pytest.approx(ref.std, rel=1e-9)
    assert alert.mean == pytest.approx(0.025 * 400, abs=0.1), "the line's value there, not the window's mean"
    assert alert.z == pytest.approx((alert.value - alert.mean) / alert.std, rel=1e-12)


def test_a_snapshot_from_before_the_local_line_goes_on_with_the_flat_mean():
    times, values = _series(1500, seed=31, anomalies=25)
    flat = ZScoreDetector(window=120, warmup=10, detrend=False)
    flat.update_many(times[:700], values[:700])
    state = flat.__getstate__()
    # What the version without the line pickled: no times, the two value sums' heads.
    p = state.pop("_p")
    for name in ("_tm", "_t0", "_min_n", "detrend"):
        del state[name]
    state.update(_p1=float(p[1]), _p2=float(p[4]))
    old = ZScoreDetector.__new__(ZScoreDetector)
    old.__setstate__(state)
    assert old.detrend is False
    assert old.update_many(times[700:], values[700:]).z.tolist() == (
        flat.update_many(times[700:], values[700:]).z.tolist()
    )


@pytest.mark.parametrize(("spike_every", "burst"), [(12, 1), (12, 2), (150, 1)])
def test_a_long_block_across_re_centrings_scores_as_one_by_one(spike_every, burst):
    # A block's summed rows are computed once per centring and sliced by its runs: they must be
    # recomputed when the sums re-centre (every 16 windows) and when flagged readings that stay
    # out of the baseline (bursts) use up their slack.
    times, values = _series(7000, seed=21)
    rng = np.random.default_rng(22)
    starts = np.arange(100, 6990, spike_every)
    jump = rng.choice([-1, 1], starts.shape[0]) * rng.uniform(2.5, 9, starts.shape[0])
    for j in range(burst):
        values[starts + j] += jump
    single = ZScoreDetector()
    one = _run_one_by_one(single, times, values)
    blocked = ZScoreDetector()
    out = blocked.update_many(times, values)
    assert [s.z for s in one] == out.z.tolist()
    assert [LEVELS[s.severity] for s in one] == out.raised.tolist()
    assert out.level.astype(bool).sum() > starts.shape[0] * burst // 2
    state_one, state_blocked = single.__getstate__(), blocked.__getstate__()
    assert pickle.dumps({**state_one, "_cap": 0}) == pickle.dumps({**state_blocked, "_cap": 0})
