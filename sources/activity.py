"""The website activity simulator: users in sessions moving down a shopping funnel.

A fixed number of sessions is open at any time; each event advances one of
them, chosen at random, by one step of the funnel::

    page_view -> click -> add_to_cart -> purchase
        ^          |           |            |
        +----------+-----------+------------+   (browse on)      any step -> exit

Clicks, carts and purchases happen on the page last viewed. Page views follow a
Zipf law over the catalogue (a few hits, a long tail), each product has a
log-normal price, and a purchase is price times a small quantity. A session that
exits is replaced by a new one of an idle user.

Like the IoT simulator it is driven by event time (`ActivitySimulator.emit`)
and deterministic for a seed and a sequence of event times.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from sources.models import ActivityEvent, EventType


@dataclass(frozen=True, slots=True)
class Funnel:
    """Step probabilities after each event type; what is left over is another page view.

    The defaults give an e-commerce-like funnel: 40 % of page views lead to a click,
    15 % of clicks to a cart, 35 % of carts to a purchase (about 2 % of views buy).
    """

    click_after_view: float = 0.40
    cart_after_click: float = 0.15
    purchase_after_cart: float = 0.35
    exit_after_view: float = 0.25
    exit_after_click: float = 0.20
    exit_after_cart: float = 0.15
    exit_after_purchase: float = 0.60

    def __post_init__(self) -> None:
        pairs = [
            (self.click_after_view, self.exit_after_view),
            (self.cart_after_click, self.exit_after_click),
            (self.purchase_after_cart, self.exit_after_cart),
            (0.0, self.exit_after_purchase),
        ]
        for forward, leave in pairs:
            if forward < 0 or leave < 0 or forward + leave > 1:
                raise ValueError("funnel probabilities must be >= 0 and sum to at most 1 per step")

    def next_step(self, after: EventType) -> tuple[EventType | None, float, float]:
        """(the funnel's next type or None, its probability, the exit probability) after `after`."""
        if after is EventType.PAGE_VIEW:
            return EventType.CLICK, self.click_after_view, self.exit_after_view
        if after is EventType.CLICK:
            return EventType.ADD_TO_CART, self.cart_after_click, self.exit_after_click
        if after is EventType.ADD_TO_CART:
            return EventType.PURCHASE, self.purchase_after_cart, self.exit_after_cart
        return None, 0.0, self.exit_after_purchase


@dataclass(frozen=True, slots=True)
class ActivityConfig:
    """Shape of the simulation (the producer builds it from `ProducerSettings`)."""

    users: int = 1000
    sessions: int = 100
    """Sessions open at once; at most `users` (a user has one session at a time)."""
    pages: int = 200
    zipf_exponent: float = 1.1
    funnel: Funnel = field(default_factory=Funnel)
    price_median: float = 25.0
    """Median product price in the shop's currency."""
    price_sigma: float = 0.8
    """Log-normal shape of prices: 0.8 puts the 95th percentile near 3.7 times the median."""
    quantity_weights: tuple[float, ...] = (0.80, 0.15, 0.05)
    """Probability of buying 1, 2, 3, ... of a product."""

    def __post_init__(self) -> None:
        if min(self.users, self.sessions, self.pages) < 1:
            raise ValueError("users, sessions and pages must be at least 1")
        if self.sessions > self.users:
            raise ValueError("sessions must not exceed users: a user has one session at a time")
        if self.zipf_exponent <= 0 or self.price_median <= 0 or self.price_sigma < 0:
            raise ValueError("zipf_exponent and price_median must be positive, price_sigma not negative")
        if not self.quantity_weights or min(self.quantity_weights) < 0 or sum(self.quantity_weights) <= 0:
            raise ValueError("quantity_weights need at least one positive weight and none negative")


class _Session:
    __slots__ = ("events", "last", "page", "session_id", "user")

    def __init__(self, user: int, session_id: str) -> None:
        self.user = user
        self.session_id = session_id
        self.page = ""
        self.last: EventType | None = None
        self.events = 0


def zipf_shares(pages: int, exponent: float) -> list[float]:
    """Expected share of page views of the pages ranked 1..`pages` by popularity."""
    weights = [1.0 / rank**exponent for rank in range(1, pages + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


class ActivitySimulator:
    """Sessions of users browsing and buying; deterministic for a seed and event times.

    Example:
        >>> from sources.clock import simulated_times
        >>> sim = ActivitySimulator(ActivityConfig(users=20, sessions=5), seed=1)
        >>> events = list(sim.run(simulated_times(1_700_000_000_000, rate=50.0, count=10)))
        >>> events[0].type.value
        'page_view'
    """

    def __init__(self, config: ActivityConfig, seed: int) -> None:
        """Draw the catalogue (popularity order, prices) from `seed`."""
        self.config = config
        state = np.random.SeedSequence(entropy=seed).generate_state(4, dtype=np.uint32)
        self._rng = random.Random(int.from_bytes(state.tobytes(), "little"))
        width = max(4, len(str(config.pages)))
        catalogue = [f"/products/{i:0{width}d}" for i in range(1, config.pages + 1)]
        # Popularity is not catalogue order: shuffle which product is the hit.
        self.pages_by_popularity: list[str] = self._rng.sample(catalogue, len(catalogue))
        self._page_cum_weights = list(itertools.accumulate(zipf_shares(config.pages, config.zipf_exponent)))
        mu = math.log(config.price_median)
        self.prices: dict[str, float] = {
            page: round(max(0.5, self._rng.lognormvariate(mu, config.price_sigma)), 2) for page in catalogue
        }
        self._quantities = list(range(1, len(config.quantity_weights) + 1))
        self._quantity_cum_weights = list(itertools.accumulate(config.quantity_weights))
        self._user_width = max(5, len(str(config.users - 1)))
        self._sessions: list[_Session | None] = [None] * config.sessions
        self._busy_users: set[int] = set()
        self._session_seq = 0

    def page_shares(self) -> dict[str, float]:
        """Expected share of page views of every page (the popularity the simulator draws from)."""
        shares = zipf_shares(self.config.pages, self.config.zipf_exponent)
        return dict(zip(self.pages_by_popularity, shares, strict=True))

    def run(self, times: Iterable[int]) -> Iterator[ActivityEvent]:
        """One event per event time."""
        for t_ms in times:
            yield self.emit(t_ms)

    def emit(self, t_ms: int) -> ActivityEvent:
        """The next event, at event time `t_ms` (UTC epoch ms), of a randomly chosen open session."""
        rng = self._rng
        slot = rng.randrange(len(self._sessions))
        session = self._sessions[slot]
        kind = EventType.PAGE_VIEW
        if session is None:
            session = self._open(slot, t_ms)
        elif session.last is not None:
            forward, p_forward, p_exit = self.config.funnel.next_step(session.last)
            r = rng.random()
            if r < p_forward and forward is not None:
                kind = forward
            elif r < p_forward + p_exit:
                self._busy_users.discard(session.user)
                session = self._open(slot, t_ms)
        if kind is EventType.PAGE_VIEW:
            session.page = rng.choices(self.pages_by_popularity, cum_weights=self._page_cum_weights)[0]
        amount = None
        if kind is EventType.PURCHASE:
            quantity = rng.choices(self._quantities, cum_weights=self._quantity_cum_weights)[0]
            amount = round(self.prices[session.page] * quantity, 2)
        event = ActivityEvent(
            event_id=f"{session.session_id}-{session.events}",
            user_id=f"user-{session.user:0{self._user_width}d}",
            session_id=session.session_id,
            type=kind,
            page=session.page,
            event_time=t_ms,
            amount=amount,
        )
        session.last = kind
        session.events += 1
        return event

    def _open(self, slot: int, t_ms: int) -> _Session:
        users = self.config.users
        user = self._rng.randrange(users)
        while user in self._busy_users:
            user = self._rng.randrange(users)
        self._busy_users.add(user)
        # Event time plus a sequence number: unique within a run, and runs started at
        # different times (a restarted live producer) don't reuse ids.
        session = _Session(user, f"s-{t_ms:x}-{self._session_seq:x}")
        self._session_seq += 1
        self._sessions[slot] = session
        return session
