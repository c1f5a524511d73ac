"""The activity simulator behaves like shoppers: sessions, a converting funnel, hits and a long tail."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict

import pytest

from sources.activity import ActivityConfig, ActivitySimulator, Funnel
from sources.clock import simulated_times
from sources.models import ActivityEvent, EventType

T0 = 1_700_000_000_000


def simulate(config: ActivityConfig | None = None, seed: int = 1, count: int = 40_000) -> list[ActivityEvent]:
    sim = ActivitySimulator(config or ActivityConfig(), seed)
    return list(sim.run(simulated_times(T0, 50.0, count)))


@pytest.fixture(scope="module")
def events() -> list[ActivityEvent]:
    return simulate()


def within(observed: float, p: float, n: int) -> bool:
    """Observed proportion within 4 binomial standard deviations of p."""
    return abs(observed - p) <= 4 * math.sqrt(p * (1 - p) / n)


def test_same_seed_gives_the_same_events_and_another_seed_does_not():
    assert simulate(seed=3, count=2000) == simulate(seed=3, count=2000)
    assert simulate(seed=3, count=2000) != simulate(seed=4, count=2000)


def test_funnel_conversion_matches_its_step_probabilities(events):
    funnel = Funnel()
    n = Counter(e.type for e in events)
    views, clicks, carts = n[EventType.PAGE_VIEW], n[EventType.CLICK], n[EventType.ADD_TO_CART]
    assert within(clicks / views, funnel.click_after_view, views)
    assert within(carts / clicks, funnel.cart_after_click, clicks)
    assert within(n[EventType.PURCHASE] / carts, funnel.purchase_after_cart, carts)
    # Realistic: a few percent of page views end in a purchase.
    assert 0.01 < n[EventType.PURCHASE] / views < 0.04


def test_a_different_funnel_converts_differently():
    funnel = Funnel(click_after_view=0.7, cart_after_click=0.5, purchase_after_cart=0.8)
    n = Counter(e.type for e in simulate(ActivityConfig(funnel=funnel), count=20_000))
    assert within(n[EventType.CLICK] / n[EventType.PAGE_VIEW], 0.7, n[EventType.PAGE_VIEW])
    assert within(n[EventType.PURCHASE] / n[EventType.ADD_TO_CART], 0.8, n[EventType.ADD_TO_CART])


def test_sessions_walk_the_funnel_in_order_on_the_page_last_viewed(events):
    sessions: dict[str, list[ActivityEvent]] = defaultdict(list)
    for e in events:
        sessions[e.session_id].append(e)
    previous_step = {
        EventType.CLICK: EventType.PAGE_VIEW,
        EventType.ADD_TO_CART: EventType.CLICK,
        EventType.PURCHASE: EventType.ADD_TO_CART,
    }
    for session in sessions.values():
        assert session[0].type is EventType.PAGE_VIEW
        assert len({e.user_id for e in session}) == 1
        for before, after in itertools.pairwise(session):
            if after.type is not EventType.PAGE_VIEW:
                assert before.type is previous_step[after.type]
                assert after.page == before.page
            assert after.event_time >= before.event_time
    assert statistics.fmean(len(s) for s in sessions.values()) > 2


def test_a_user_has_one_session_at_a_time(events):
    spans: dict[str, list[tuple[int, int]]] = defaultdict(list)
    first_last: dict[str, list[int]] = {}
    for i, e in enumerate(events):
        first_last.setdefault(e.session_id, [i, i])[1] = i
    user_of = {e.session_id: e.user_id for e in events}
    for session, (first, last) in first_last.items():
        spans[user_of[session]].append((first, last))
    for user_spans in spans.values():
        user_spans.sort()
        assert all(a[1] < b[0] for a, b in itertools.pairwise(user_spans))


def test_event_ids_are_unique(events):
    assert len({e.event_id for e in events}) == len(events)


def test_page_popularity_has_a_zipf_head_and_a_long_tail(events):
    config = ActivityConfig()
    views = Counter(e.page for e in events if e.type is EventType.PAGE_VIEW)
    total = sum(views.values())
    harmonic = sum(1 / rank**config.zipf_exponent for rank in range(1, config.pages + 1))
    ranked = [count for _, count in views.most_common()]
    for rank in (1, 2, 3):
        assert within(ranked[rank - 1] / total, 1 / rank**config.zipf_exponent / harmonic, total)
    top_decile = sum(ranked[: config.pages // 10]) / total
    assert top_decile > 0.5  # a tenth of the pages draws most of the traffic
    assert len(views) > 0.9 * config.pages  # and the tail is still visited


def test_the_hit_is_not_simply_the_first_product():
    sim = ActivitySimulator(ActivityConfig(), seed=1)
    shares = sim.page_shares()
    assert max(shares, key=shares.__getitem__) == sim.pages_by_popularity[0] != "/products/0001"
    assert math.fsum(shares.values()) == pytest.approx(1.0)


def test_purchases_carry_price_times_a_small_quantity(events):
    sim = ActivitySimulator(ActivityConfig(), seed=1)
    quantities = Counter()
    for e in events:
        if e.type is EventType.PURCHASE:
            assert e.amount is not None
            quantity = e.amount / sim.prices[e.page]
            assert quantity == pytest.approx(round(quantity), abs=0.01)
            quantities[round(quantity)] += 1
        else:
            assert e.amount is None
    n = sum(quantities.values())
    assert set(quantities) <= {1, 2, 3}
    assert within(quantities[1] / n, 0.80, n)


def test_prices_are_log_normal_around_the_median():
    sim = ActivitySimulator(ActivityConfig(pages=4000, price_median=40.0, price_sigma=0.8), seed=2)
    logs = [math.log(p) for p in sim.prices.values()]
    assert statistics.median(sim.prices.values()) == pytest.approx(40.0, rel=0.08)
    assert statistics.stdev(logs) == pytest.approx(0.8, rel=0.08)
    assert max(sim.prices.values()) > 5 * 40.0  # a heavy right tail


def test_every_event_is_valid_on_the_wire(events):
    for e in events[:5000]:
        assert ActivityEvent.from_json(e.to_json()) == e


def test_as_many_sessions_as_users_still_works():
    events = simulate(ActivityConfig(users=5, sessions=5), count=2000)
    assert {e.user_id for e in events} == {f"user-{i:05d}" for i in range(5)}


@pytest.mark.parametrize(
    "bad",
    [
        {"users": 10, "sessions": 11},
        {"pages": 0},
        {"zipf_exponent": 0.0},
        {"price_median": -1.0},
        {"quantity_weights": ()},
    ],
)
def test_an_impossible_config_is_refused(bad):
    with pytest.raises(ValueError):
        ActivityConfig(**bad)


def test_funnel_probabilities_must_leave_room_for_each_other():
    with pytest.raises(ValueError):
        Funnel(click_after_view=0.8, exit_after_view=0.3)
