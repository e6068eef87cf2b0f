"""Synthetic card transactions and delayed fraud labels, modelled on the Fraud Detection Handbook
(FDH) simulator and extended with a target fraud rate, a country/currency map, terminal types,
channels, tokenised cards and label events that arrive days after the transaction.

Everything for one calendar day is drawn from RNGs seeded by ``(seed, stream, day)``, and
compromised terminals/customers are drawn per *absolute* day as well. A day's data therefore does
not depend on where the simulation window starts: simulating day by day gives the same bytes as
one long run, and labels of transactions before a window can be regenerated exactly.

Pure domain code: no Dagster, Kafka or Spark imports (the producer asset turns ``iter_days`` into
Kafka messages).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.special import ndtr

from fraud_platform.domain.hashing import tokenise_pan
from fraud_platform.domain.json_lines import US_PER_DAY, ascii_rows, finite_floats, iso_utc, json_strings
from fraud_platform.domain.schema import CHANNELS, COUNTRY_CURRENCY, FX_TO_EUR, MERCHANT_CATEGORIES, SCHEMA_VERSION

if TYPE_CHECKING:
    from fraud_platform.settings import PlatformSettings

__all__ = [
    "AMOUNT_FRAUD_THRESHOLD_EUR", "CUSTOMER_COMPROMISE_DAYS", "TERMINAL_COMPROMISE_DAYS", "DayEvents",
    "SimulationConfig", "TransactionSimulator", "card_number", "country_at", "encode_labels",
    "encode_transactions", "luhn_complete",
]

GRID_SIZE = 100.0
# FDH constants.
TIME_OF_DAY_MEAN_S = 43_200.0
TIME_OF_DAY_STD_S = 20_000.0
AMOUNT_FRAUD_THRESHOLD_EUR = 220.0
TERMINAL_COMPROMISE_DAYS = 28
CUSTOMER_COMPROMISE_DAYS = 14
CUSTOMER_FRAUD_SHARE = 1 / 3
CUSTOMER_FRAUD_AMOUNT_FACTOR = 5.0
# FDH defaults (2 terminals / 3 customers a day for 10 000 terminals / 5 000 customers) as
# per-entity daily probabilities, so small test populations keep the FDH fraud rate.
FDH_TERMINAL_COMPROMISE_RATE = 2 / 10_000
FDH_CUSTOMER_COMPROMISE_RATE = 3 / 5_000

# A stylised map: each 10x10 cell of the 100x100 grid belongs to a country (row 0 = north).
# 69% of the area, hence of the traffic, is in the euro zone; borders make cross-border spend.
COUNTRY_MAP = """
CA GB GB NO NO SE SE DK DK PL
CA GB GB NL NL DE DE DK PL PL
US GB FR BE NL DE DE DE DE CZ
US FR FR BE BE DE DE DE DE CZ
US FR FR FR FR DE DE DE DE HU
US FR FR FR FR CH DE DE IT HU
PT FR FR FR FR CH CH IT IT IT
PT PT ES ES FR FR IT IT IT JP
PT ES ES ES ES IT IT IT IT JP
PT ES ES ES ES ES IT IT IT JP
"""
COUNTRIES_ORDER: tuple[str, ...] = tuple(COUNTRY_CURRENCY)
CURRENCIES_ORDER: tuple[str, ...] = tuple(FX_TO_EUR)
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "HUF"})

TERMINAL_TYPES = ("physical", "online", "atm")
TERMINAL_TYPE_WEIGHTS = (0.72, 0.20, 0.08)
# Merchant category mix per terminal type (ISO 18245 codes, weights).
TERMINAL_MCC_WEIGHTS: dict[str, dict[str, float]] = {
    "physical": {
        "5411": 0.25, "5812": 0.20, "5541": 0.10, "5999": 0.10, "5311": 0.08,
        "5912": 0.07, "4111": 0.07, "5732": 0.05, "7011": 0.05, "5944": 0.03,
    },
    "online": {"5816": 0.30, "5999": 0.15, "5732": 0.15, "4722": 0.12, "7011": 0.10, "4814": 0.10, "5311": 0.08},
    "atm": {"6011": 1.0},
}
MCC_ORDER: tuple[str, ...] = tuple(MERCHANT_CATEGORIES)
CONTACTLESS_LIMIT_EUR = 50.0  # EU contactless limit without PIN
CONTACTLESS_SHARE = 0.7
ECOMMERCE_SHARE = 0.9  # of online terminal traffic; the rest is mail/telephone order
CHARGEBACK_SHARE_BY_SCENARIO = {1: 0.6, 2: 0.4, 3: 0.8, 4: 0.8}  # card holders notice stolen-card spend
# Optional concept drift (``SimulationConfig.drift_start``): cards compromised from that day on are
# used the new way (scenario 4) - bursts of card-not-present style spend at night, at terminals
# anywhere (not the holder's neighbourhood), at 1.5-3x the holder's mean amount - instead of
# scenario 3's 5x amounts on a third of the holder's own spend. Fraudsters adapting to a model
# that has learned "5x amounts" is the kind of new pattern the FDH feedback classifier exists for.
DRIFT_TX_PER_DAY = 2.0  # Poisson mean of fraudulent transactions per drifted card and day
DRIFT_HOURS = (0.0, 6.0)  # uniform time of day (UTC hours) of the drifted frauds
DRIFT_AMOUNT_FACTOR = (1.5, 3.0)  # uniform multiple of the holder's mean amount
LABEL_DELAYS = ("uniform", "fixed")

# RNG stream tags: one independent stream per purpose so adding draws to one never shifts another.
_PROFILE_STREAM, _TX_STREAM, _LABEL_STREAM, _TERMINAL_COMPROMISE_STREAM, _CUSTOMER_COMPROMISE_STREAM, _DRIFT_STREAM = range(6)

_CH = {name: CHANNELS.index(name) for name in CHANNELS}


def _platform_tokenisation_key() -> str:
    from fraud_platform.security import tokenisation_key

    return tokenisation_key()


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate: the window ``[start, start + days)`` and the population/fraud knobs.

    ``fraud_rate=None`` keeps the FDH compromise intensities (about 0.9 % fraud); a number sets the
    daily compromise counts so the expected overall fraud rate matches it. Production callers
    pass ``PlatformSettings.tokenisation_key`` (see :meth:`from_settings`).

    ``label_delay="uniform"`` makes each fraud known 1..``label_delay_days`` days after it;
    ``"fixed"`` exactly ``label_delay_days`` after (FDH's delay period: nothing of the last week is
    known except what investigators confirm). ``drift_start`` (a date, default none) switches card
    compromises to scenario 4 from that day on (see ``DRIFT_TX_PER_DAY``); ``fraud_rate``
    calibration and ``expected_rate`` ignore it.
    """

    start: date
    days: int
    n_customers: int = 5000
    n_terminals: int = 10000
    seed: int = 42
    fraud_rate: float | None = None
    label_delay_days: int = 7
    radius: float = 5.0
    label_delay: str = "uniform"
    drift_start: date | None = None
    tokenisation_key: str = field(default_factory=_platform_tokenisation_key, repr=False)  # a secret

    def __post_init__(self) -> None:
        if self.days < 1 or self.n_customers < 1 or self.n_terminals < 1:
            raise ValueError("days, n_customers and n_terminals must be >= 1")
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.fraud_rate is not None and not 0 < self.fraud_rate < 1:
            raise ValueError("fraud_rate must be in (0, 1) or None")
        if self.label_delay_days < 1:
            raise ValueError("label_delay_days must be >= 1 (a label is never known instantly)")
        if not self.radius > 0:
            raise ValueError("radius must be > 0")
        if self.label_delay not in LABEL_DELAYS:
            raise ValueError(f"label_delay must be one of {LABEL_DELAYS}, not {self.label_delay!r}")

    @classmethod
    def from_settings(cls, settings: "PlatformSettings", start: date, days: int, **overrides) -> "SimulationConfig":
        """Config using the platform's tokenisation key (``PlatformSettings``), never a literal."""
        return cls(start=start, days=days, tokenisation_key=settings.tokenisation_key.get_secret_value(), **overrides)

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days)


@dataclass(frozen=True)
class DayEvents:
    """One simulated day as Kafka ``(key, value)`` pairs in event-time order.

    Transactions are keyed by card token (per-card ordering within a partition); labels by
    transaction id. ``labels`` are those whose ``known_at`` falls on ``day``.
    """

    day: date
    transactions: list[tuple[bytes, bytes]]
    labels: list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class _Day:
    """A simulated day as positional arrays; strings are only materialised on demand."""

    event_us: np.ndarray  # int64 microseconds since the epoch, sorted
    transaction_id: np.ndarray  # object (str)
    customer: np.ndarray  # int index into customers
    terminal: np.ndarray  # int index into terminals
    amount: np.ndarray  # float64, local currency, rounded to its minor unit
    channel: np.ndarray  # int8 index into CHANNELS
    fraud_scenario: np.ndarray  # int8, 0 = genuine


@dataclass(frozen=True)
class _Labels:
    """Fraud labels generated for the transactions of one day (not yet filtered by known_at)."""

    transaction_id: np.ndarray
    known_us: np.ndarray
    label_type: np.ndarray  # object (str)
    fraud_scenario: np.ndarray


class _LRU(OrderedDict):
    """Tiny bounded memo: consecutive days reuse compromise draws, days and label candidates."""

    def __init__(self, maxsize: int) -> None:
        super().__init__()
        self.maxsize = maxsize

    def get_or_compute(self, key, compute: Callable[[], object]):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = self[key] = compute()
        if len(self) > self.maxsize:
            self.popitem(last=False)
        return value


def luhn_complete(body: str) -> str:
    """``body`` plus its Luhn check digit: a syntactically valid card number."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled positions, counted from the (future) check digit
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def card_number(seed: int, customer_index: int) -> str:
    """The synthetic 16-digit card number of a customer (unique per customer, Luhn-valid).

    Only ever passed to ``tokenise_pan``; exposed so tests can prove it never reaches the output.
    """
    return luhn_complete(f"4{seed % 10_000:04d}{customer_index:010d}")


_COUNTRY_GRID = np.array(
    [[COUNTRIES_ORDER.index(code) for code in line.split()] for line in COUNTRY_MAP.strip().splitlines()], dtype=np.int16
)


def country_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index into ``COUNTRIES_ORDER`` of the map cell containing each point."""
    grid = _COUNTRY_GRID
    n_rows, n_cols = grid.shape
    row = np.clip((n_rows - 1 - np.floor(np.asarray(y) / GRID_SIZE * n_rows)).astype(int), 0, n_rows - 1)
    col = np.clip(np.floor(np.asarray(x) / GRID_SIZE * n_cols).astype(int), 0, n_cols - 1)
    return grid[row, col]


def _utc(value: datetime | date) -> datetime:
    """Aware UTC datetime; a date means its midnight and a naive datetime is read as UTC."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _epoch_us(value: datetime) -> int:
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _ordinal_epoch_us(ordinal: int) -> int:
    return (ordinal - date(1970, 1, 1).toordinal()) * US_PER_DAY


_HEX_DIGITS = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _hex_ids(rng: np.random.Generator, n: int, prefix: str) -> np.ndarray:
    """``prefix`` + 24 hex chars (96 random bits) per id: collision-free in practice."""
    raw = np.frombuffer(rng.bytes(12 * n), dtype=np.uint8).reshape(n, 12)
    head = len(prefix)
    chars = np.empty((n, head + 25), dtype=np.uint8)
    chars[:, :head] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    chars[:, head : head + 24 : 2] = _HEX_DIGITS[raw >> 4]
    chars[:, head + 1 : head + 24 : 2] = _HEX_DIGITS[raw & 15]
    chars[:, -1] = ord("\n")
    return np.array(ascii_rows(chars), dtype=object)


def _utc_timestamps(epoch_us: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(epoch_us, dtype="datetime64[us]").astype("datetime64[ns]")).tz_localize("UTC")


class TransactionSimulator:
    """Builds customer and terminal profiles once, then simulates any day on demand."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, _PROFILE_STREAM])
        self._build_customers(rng)
        self._build_terminals(rng)
        self._link_customers_to_terminals()
        self.terminal_compromises_per_day, self.customer_compromises_per_day = self._compromise_intensities()
        self._compromised_cache: _LRU = _LRU(2 * (TERMINAL_COMPROMISE_DAYS + CUSTOMER_COMPROMISE_DAYS))
        self._day_cache: _LRU = _LRU(2)
        # Label candidates are ~1 % of a day's rows: keep the whole window's (plus the look-back).
        self._label_cache: _LRU = _LRU(config.days + config.label_delay_days + 3)

    # -- profiles -------------------------------------------------------------------------------
    def _build_customers(self, rng: np.random.Generator) -> None:
        n = self.config.n_customers
        xy = rng.uniform(0, GRID_SIZE, size=(n, 2))
        mean_amount = rng.uniform(5, 100, size=n)
        self._cust_xy = xy
        self._cust_mean = mean_amount
        self._cust_std = mean_amount / 2
        self._cust_tx_per_day = rng.uniform(0, 4, size=n)
        self._customer_ids = np.array([f"C{i:06d}" for i in range(n)], dtype=object)
        # Tokenised at once: the raw card number never leaves this expression.
        key = self.config.tokenisation_key
        self._card_tokens = np.array([tokenise_pan(card_number(self.config.seed, i), key) for i in range(n)], dtype=object)

    def _build_terminals(self, rng: np.random.Generator) -> None:
        n = self.config.n_terminals
        xy = rng.uniform(0, GRID_SIZE, size=(n, 2))
        kind = rng.choice(len(TERMINAL_TYPES), size=n, p=TERMINAL_TYPE_WEIGHTS)
        mcc = np.empty(n, dtype=np.int16)
        for k, name in enumerate(TERMINAL_TYPES):
            weights = TERMINAL_MCC_WEIGHTS[name]
            codes = np.array([MCC_ORDER.index(code) for code in weights], dtype=np.int16)
            p = np.fromiter(weights.values(), dtype=float)
            mask = kind == k
            mcc[mask] = rng.choice(codes, size=int(mask.sum()), p=p / p.sum())
        country = country_at(xy[:, 0], xy[:, 1])
        currency_of_country = np.array([CURRENCIES_ORDER.index(COUNTRY_CURRENCY[c]) for c in COUNTRIES_ORDER])
        currency = currency_of_country[country]
        self._term_xy = xy
        self._term_kind = kind
        self._term_mcc = mcc
        self._term_country = country
        self._term_currency = currency
        fx = np.array([FX_TO_EUR[c] for c in CURRENCIES_ORDER])
        scale = np.array([1.0 if c in ZERO_DECIMAL_CURRENCIES else 100.0 for c in CURRENCIES_ORDER])
        self._term_fx = fx[currency]
        self._term_minor_units = scale[currency]  # minor units per major unit
        self._terminal_ids = np.array([f"T{i:07d}" for i in range(n)], dtype=object)

    def _link_customers_to_terminals(self) -> None:
        """FDH: a customer only uses terminals within ``radius``; stored as CSR for vector picks."""
        tree = cKDTree(self._term_xy)
        nearby = tree.query_ball_point(self._cust_xy, r=self.config.radius, return_sorted=True)
        lengths = np.fromiter((len(ids) for ids in nearby), dtype=np.int64, count=len(nearby))
        self._nearby_len = lengths
        self._nearby_offset = np.concatenate(([0], np.cumsum(lengths)[:-1]))
        self._nearby_flat = np.fromiter((t for ids in nearby for t in ids), dtype=np.int64, count=int(lengths.sum()))
        # Customers without a terminal in reach cannot spend (as in FDH).
        self._cust_rate = np.where(lengths > 0, self._cust_tx_per_day, 0.0)

    @property
    def customers(self) -> pd.DataFrame:
        """Customer profiles (no PAN: only its token)."""
        return pd.DataFrame(
            {
                "customer_id": self._customer_ids,
                "x": self._cust_xy[:, 0],
                "y": self._cust_xy[:, 1],
                "mean_amount": self._cust_mean,
                "std_amount": self._cust_std,
                "mean_nb_tx_per_day": self._cust_tx_per_day,
                "home_country": np.array(COUNTRIES_ORDER, dtype=object)[country_at(self._cust_xy[:, 0], self._cust_xy[:, 1])],
                "card_token": self._card_tokens,
                "nb_terminals": self._nearby_len,
            }
        )

    @property
    def terminals(self) -> pd.DataFrame:
        """Terminal profiles: location, country/currency, merchant category and type."""
        return pd.DataFrame(
            {
                "terminal_id": self._terminal_ids,
                "x": self._term_xy[:, 0],
                "y": self._term_xy[:, 1],
                "country": np.array(COUNTRIES_ORDER, dtype=object)[self._term_country],
                "currency": np.array(CURRENCIES_ORDER, dtype=object)[self._term_currency],
                "merchant_category": np.array(MCC_ORDER, dtype=object)[self._term_mcc],
                "terminal_type": np.array(TERMINAL_TYPES, dtype=object)[self._term_kind],
            }
        )

    # -- fraud calibration ----------------------------------------------------------------------
    def _amount_fraud_share(self) -> float:
        """Expected share of transactions above the scenario-1 threshold (normal tail per customer)."""
        weights = self._cust_rate
        if weights.sum() == 0:
            return 0.0
        tail = 1.0 - ndtr((AMOUNT_FRAUD_THRESHOLD_EUR - self._cust_mean) / self._cust_std)
        return float((weights * tail).sum() / weights.sum())

    def expected_fraud_rate(self, terminal_rate: float, customer_rate: float) -> float:
        """Steady-state fraud share for per-entity daily compromise probabilities.

        Terminal and customer compromises are uniform random picks, independent of amounts, so the
        three scenarios combine as independent events.
        """
        p_amount = self._amount_fraud_share()
        p_terminal = 1 - (1 - min(terminal_rate, 1.0)) ** TERMINAL_COMPROMISE_DAYS
        p_customer = 1 - (1 - min(customer_rate, 1.0)) ** CUSTOMER_COMPROMISE_DAYS
        return 1 - (1 - p_amount) * (1 - p_terminal) * (1 - CUSTOMER_FRAUD_SHARE * p_customer)

    @property
    def expected_rate(self) -> float:
        """Steady-state fraud share this simulator is calibrated to (the target, or the FDH rate)."""
        return self.expected_fraud_rate(
            self.terminal_compromises_per_day / self.config.n_terminals,
            self.customer_compromises_per_day / self.config.n_customers,
        )

    def _compromise_intensities(self) -> tuple[float, float]:
        """Expected terminals/customers compromised per day: FDH defaults, or solved for ``fraud_rate``.

        The FDH 2:3 terminal:customer mix is kept and scaled by one factor found by bisection.
        """
        n_t, n_c = self.config.n_terminals, self.config.n_customers
        target = self.config.fraud_rate
        if target is None:
            return FDH_TERMINAL_COMPROMISE_RATE * n_t, FDH_CUSTOMER_COMPROMISE_RATE * n_c

        def rate(factor: float) -> float:
            return self.expected_fraud_rate(factor * FDH_TERMINAL_COMPROMISE_RATE, factor * FDH_CUSTOMER_COMPROMISE_RATE)

        high = 1.0 / FDH_CUSTOMER_COMPROMISE_RATE
        floor, ceiling = rate(0.0), rate(high)
        if not floor <= target <= ceiling:
            raise ValueError(
                f"fraud_rate {target} is not reachable: amounts alone give {floor:.4%} and the compromise "
                f"scenarios top out at {ceiling:.2%} for this population"
            )
        low = 0.0
        for _ in range(100):
            mid = (low + high) / 2
            low, high = (mid, high) if rate(mid) < target else (low, mid)
        factor = (low + high) / 2
        return factor * FDH_TERMINAL_COMPROMISE_RATE * n_t, factor * FDH_CUSTOMER_COMPROMISE_RATE * n_c

    # -- per-day simulation ---------------------------------------------------------------------
    def _rng(self, stream: int, ordinal: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, stream, ordinal])

    def _compromise_spec(self, stream: int) -> tuple[int, float, int]:
        """(population, expected new compromises per day, days a compromise lasts) of a stream."""
        if stream == _TERMINAL_COMPROMISE_STREAM:
            return self.config.n_terminals, self.terminal_compromises_per_day, TERMINAL_COMPROMISE_DAYS
        return self.config.n_customers, self.customer_compromises_per_day, CUSTOMER_COMPROMISE_DAYS

    def _compromised_on(self, stream: int, ordinal: int) -> np.ndarray:
        """Entities newly compromised on day ``ordinal``: Poisson count, uniform pick, from (seed, day)."""

        def draw() -> np.ndarray:
            rng = self._rng(stream, ordinal)
            population, expected, _ = self._compromise_spec(stream)
            count = min(int(rng.poisson(expected)), population)
            return np.sort(rng.choice(population, size=count, replace=False))

        return self._compromised_cache.get_or_compute((stream, ordinal), draw)

    def _compromised_mask(self, stream: int, ordinal: int, since: int | None = None, before: int | None = None) -> np.ndarray:
        """Entities under compromise on day ``ordinal``: those picked on any of the last N days
        (only picks on days ``since <= day < before`` when given)."""
        population, _, duration = self._compromise_spec(stream)
        first, last = ordinal - duration + 1, ordinal
        first = first if since is None else max(first, since)
        last = last if before is None else min(last, before - 1)
        mask = np.zeros(population, dtype=bool)
        for day in range(first, last + 1):
            mask[self._compromised_on(stream, day)] = True
        return mask

    @property
    def _drift_ordinal(self) -> int | None:
        start = self.config.drift_start
        return None if start is None else start.toordinal()

    def compromised_terminals(self, day: date) -> list[str]:
        """Terminals compromised on ``day``: all their transactions for 28 days are fraud."""
        return self._terminal_ids[self._compromised_on(_TERMINAL_COMPROMISE_STREAM, day.toordinal())].tolist()

    def compromised_customers(self, day: date) -> list[str]:
        """Customers whose card is compromised on ``day``: a third of their spend for 14 days is fraud."""
        return self._customer_ids[self._compromised_on(_CUSTOMER_COMPROMISE_STREAM, day.toordinal())].tolist()

    def _day(self, ordinal: int) -> _Day:
        def simulate() -> _Day:
            day = self._simulate_day(ordinal)
            # Draw the day's labels now, so a later labels() call never re-simulates the window.
            self._label_cache.get_or_compute(ordinal, lambda: self._draw_labels(ordinal, day))
            return day

        return self._day_cache.get_or_compute(ordinal, simulate)

    def _simulate_day(self, ordinal: int) -> _Day:
        rng = self._rng(_TX_STREAM, ordinal)
        counts = rng.poisson(self._cust_rate)
        customer = np.repeat(np.arange(self.config.n_customers), counts)
        n = customer.size

        # Time of day ~ Normal(noon, 20000 s) restricted to the day (redrawn, so no spikes at midnight).
        seconds = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, size=n)
        outside = (seconds < 0) | (seconds >= 86_400)
        while outside.any():
            seconds[outside] = rng.normal(TIME_OF_DAY_MEAN_S, TIME_OF_DAY_STD_S, size=int(outside.sum()))
            outside = (seconds < 0) | (seconds >= 86_400)

        pick = (rng.random(n) * self._nearby_len[customer]).astype(np.int64)
        terminal = self._nearby_flat[self._nearby_offset[customer] + pick]

        mean = self._cust_mean[customer]
        amount_eur = rng.normal(mean, self._cust_std[customer])
        negative = amount_eur < 0
        amount_eur[negative] = rng.uniform(0, 2 * mean[negative])

        # Scenario 3: a third of a compromised card's transactions, at five times the amount.
        # (With drift, only cards compromised before it; the draw is made either way.)
        card_fraud = self._compromised_mask(_CUSTOMER_COMPROMISE_STREAM, ordinal, before=self._drift_ordinal)[customer] & (
            rng.random(n) < CUSTOMER_FRAUD_SHARE
        )
        amount_eur[card_fraud] *= CUSTOMER_FRAUD_AMOUNT_FACTOR
        amount, charged_eur = self._local_amounts(amount_eur, terminal)
        channel = self._channels(terminal, charged_eur, rng.random(n))

        # Later scenarios take precedence, as in FDH (amount, then terminal, then card).
        scenario = np.zeros(n, dtype=np.int8)
        scenario[charged_eur > AMOUNT_FRAUD_THRESHOLD_EUR] = 1
        scenario[self._compromised_mask(_TERMINAL_COMPROMISE_STREAM, ordinal)[terminal]] = 2
        scenario[card_fraud] = 3

        event_us = _ordinal_epoch_us(ordinal) + (seconds * 1e6).astype(np.int64)
        transaction_id = _hex_ids(rng, n, "tx-")
        if self._drift_ordinal is not None and ordinal >= self._drift_ordinal:
            extra = self._drifted_frauds(ordinal)
            event_us, transaction_id, customer, terminal, amount, channel, scenario = (
                np.concatenate([mine, theirs]) for mine, theirs in
                zip((event_us, transaction_id, customer, terminal, amount, channel, scenario), extra)
            )
        order = np.argsort(event_us, kind="stable")
        return _Day(
            event_us=event_us[order],
            transaction_id=transaction_id,  # random ids: assigned in event order, as without drift
            customer=customer[order],
            terminal=terminal[order],
            amount=amount[order],
            channel=channel[order],
            fraud_scenario=scenario[order],
        )

    def _local_amounts(self, amount_eur: np.ndarray, terminal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(amount in the terminal's currency rounded to its minor unit, at least one unit; that amount in EUR)."""
        minor = self._term_minor_units[terminal]
        fx = self._term_fx[terminal]
        amount = np.maximum(np.round(amount_eur / fx * minor), 1.0) / minor
        return amount, amount * fx  # EUR: what the processed zone will compute from the event

    def _channels(self, terminal: np.ndarray, charged_eur: np.ndarray, u: np.ndarray) -> np.ndarray:
        kind = self._term_kind[terminal]
        return np.where(
            kind == TERMINAL_TYPES.index("atm"),
            _CH["atm"],
            np.where(
                kind == TERMINAL_TYPES.index("online"),
                np.where(u < ECOMMERCE_SHARE, _CH["ecommerce"], _CH["moto"]),
                np.where((charged_eur <= CONTACTLESS_LIMIT_EUR) & (u < CONTACTLESS_SHARE), _CH["contactless"], _CH["card_present"]),
            ),
        ).astype(np.int8)

    def _drifted_frauds(self, ordinal: int) -> tuple[np.ndarray, ...]:
        """Scenario 4 transactions of the cards compromised since the drift, from their own (seed, day)
        stream (so the genuine traffic is the same bytes with or without drift)."""
        rng = self._rng(_DRIFT_STREAM, ordinal)
        drifted = np.flatnonzero(self._compromised_mask(_CUSTOMER_COMPROMISE_STREAM, ordinal, since=self._drift_ordinal))
        drifted = drifted[self._cust_rate[drifted] > 0]
        customer = np.repeat(drifted, rng.poisson(DRIFT_TX_PER_DAY, size=drifted.size))
        m = customer.size
        seconds = rng.uniform(DRIFT_HOURS[0] * 3600, DRIFT_HOURS[1] * 3600, size=m)
        terminal = rng.integers(0, self.config.n_terminals, size=m)
        amount_eur = self._cust_mean[customer] * rng.uniform(*DRIFT_AMOUNT_FACTOR, size=m)
        amount, charged_eur = self._local_amounts(amount_eur, terminal)
        channel = self._channels(terminal, charged_eur, rng.random(m))
        event_us = _ordinal_epoch_us(ordinal) + (seconds * 1e6).astype(np.int64)
        ids = _hex_ids(rng, m, "tx-")
        return event_us, ids, customer, terminal, amount, channel, np.full(m, 4, dtype=np.int8)

    def _draw_labels(self, ordinal: int, day: _Day) -> _Labels:
        """Labels for the frauds of one day, drawn from their own (seed, day) stream."""
        fraud = np.flatnonzero(day.fraud_scenario)
        rng = self._rng(_LABEL_STREAM, ordinal)
        delay = rng.integers(US_PER_DAY, self.config.label_delay_days * US_PER_DAY, size=fraud.size, endpoint=True)
        if self.config.label_delay == "fixed":  # drawn anyway, so the label types stay the same draws
            delay = np.full(fraud.size, self.config.label_delay_days * US_PER_DAY, dtype=np.int64)
        scenario = day.fraud_scenario[fraud]
        chargeback_share = np.array([0.0] + [CHARGEBACK_SHARE_BY_SCENARIO[s] for s in (1, 2, 3, 4)])[scenario]
        label_type = np.where(rng.random(fraud.size) < chargeback_share, "chargeback", "confirmed_fraud").astype(object)
        return _Labels(day.transaction_id[fraud], day.event_us[fraud] + delay, label_type, scenario)

    def _labels_of_day(self, ordinal: int) -> _Labels:
        return self._label_cache.get_or_compute(ordinal, lambda: self._draw_labels(ordinal, self._day(ordinal)))

    # -- public frames --------------------------------------------------------------------------
    def transactions_for_day(self, day: date) -> pd.DataFrame:
        """All transactions of ``day`` in event-time order, with ground truth ``is_fraud`` and
        ``fraud_scenario`` columns (truth for tests/ML; never part of the emitted events)."""
        d = self._day(day.toordinal())
        t = d.terminal
        return pd.DataFrame(
            {
                "transaction_id": d.transaction_id.copy(),  # the cached day must not be mutable via the frame
                "event_time": _utc_timestamps(d.event_us),
                "customer_id": self._customer_ids[d.customer],
                "card_token": self._card_tokens[d.customer],
                "terminal_id": self._terminal_ids[t],
                "amount": d.amount.copy(),
                "currency": np.array(CURRENCIES_ORDER, dtype=object)[self._term_currency[t]],
                "merchant_category": np.array(MCC_ORDER, dtype=object)[self._term_mcc[t]],
                "channel": np.array(CHANNELS, dtype=object)[d.channel],
                "country": np.array(COUNTRIES_ORDER, dtype=object)[self._term_country[t]],
                "schema_version": np.full(d.amount.size, SCHEMA_VERSION, dtype=np.int32),
                "is_fraud": (d.fraud_scenario > 0).astype(np.int32),
                "fraud_scenario": d.fraud_scenario.astype(np.int32),
            },
            copy=False,  # fresh arrays: skip pandas block consolidation
        )

    def days(self) -> list[date]:
        return [self.config.start + timedelta(days=i) for i in range(self.config.days)]

    def transactions(self) -> pd.DataFrame:
        """Every transaction of the configured window (convenience for tests, bench and ML fixtures)."""
        return pd.concat([self.transactions_for_day(day) for day in self.days()], ignore_index=True)

    def labels_for_window(self, start: datetime | date, end: datetime | date) -> pd.DataFrame:
        """Labels whose ``known_at`` is in ``[start, end)``, sorted by it.

        Frauds up to ``label_delay_days`` before ``start`` are regenerated, so consecutive windows
        together emit every label exactly once. Naive datetimes are read as UTC, dates as midnight.
        """
        start, end = _utc(start), _utc(end)
        start_us, end_us = _epoch_us(start), _epoch_us(end)
        # A label is known 1..label_delay_days after its transaction: only these days can contribute.
        first = start.date().toordinal() - self.config.label_delay_days
        last = (end - timedelta(days=1)).date().toordinal()
        parts = [self._labels_of_day(o) for o in range(first, last + 1)]
        if parts:
            known = np.concatenate([p.known_us for p in parts])
            keep = np.flatnonzero((known >= start_us) & (known < end_us))
            keep = keep[np.argsort(known[keep], kind="stable")]
            ids = np.concatenate([p.transaction_id for p in parts])[keep]
            types = np.concatenate([p.label_type for p in parts])[keep]
            scenarios = np.concatenate([p.fraud_scenario for p in parts])[keep].astype(np.int32)
            known = known[keep]
        else:
            ids, types = np.array([], dtype=object), np.array([], dtype=object)
            scenarios, known = np.array([], dtype=np.int32), np.array([], dtype=np.int64)
        return pd.DataFrame(
            {
                "transaction_id": ids,
                "is_fraud": np.ones(ids.size, dtype=bool),
                "label_type": types,
                "known_at": _utc_timestamps(known),
                "fraud_scenario": scenarios,
            },
            copy=False,  # fresh arrays: skip pandas block consolidation
        )

    def labels(self) -> pd.DataFrame:
        """Labels that become known inside the configured window."""
        return self.labels_for_window(self.config.start, self.config.end)

    def iter_days(self) -> Iterator[DayEvents]:
        """Kafka-ready messages per day of the window, for the producer."""
        for day in self.days():
            yield DayEvents(
                day=day,
                transactions=encode_transactions(self.transactions_for_day(day)),
                labels=encode_labels(self.labels_for_window(day, day + timedelta(days=1))),
            )


# -- JSON encoding ---------------------------------------------------------------------------------
_TRANSACTION_JSON = (
    '{"transaction_id":"%s","event_time":"%s","customer_id":"%s","card_token":"%s","terminal_id":"%s",'
    '"amount":%r,"currency":"%s","merchant_category":"%s","channel":"%s","country":"%s","schema_version":%d}'
)
_LABEL_JSON = '{"transaction_id":"%s","is_fraud":%s,"label_type":"%s","known_at":"%s","fraud_scenario":%s}'


def encode_transactions(df: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """``(card_token, TransactionEvent JSON)`` pairs; truth columns are dropped.

    One ``%`` template per row over pre-rendered columns: several times faster than a JSON library
    on dicts, which is what lets the producer keep up with the benchmark target.
    """
    amounts = finite_floats(df["amount"])
    versions = df["schema_version"].tolist() if "schema_version" in df else [SCHEMA_VERSION] * len(df)
    rows = zip(
        json_strings(df["transaction_id"]), iso_utc(df["event_time"]), json_strings(df["customer_id"]),
        json_strings(df["card_token"]), json_strings(df["terminal_id"]), amounts,
        json_strings(df["currency"]), json_strings(df["merchant_category"]), json_strings(df["channel"]),
        json_strings(df["country"]), versions,
    )
    return [(key.encode(), (_TRANSACTION_JSON % row).encode()) for key, row in zip(df["card_token"].tolist(), rows)]


def encode_labels(df: pd.DataFrame) -> list[tuple[bytes, bytes]]:
    """``(transaction_id, LabelEvent JSON)`` pairs."""
    flags = ["true" if flag else "false" for flag in df["is_fraud"].tolist()]
    scenarios = ["null" if pd.isna(s) else str(int(s)) for s in df["fraud_scenario"].tolist()]
    rows = zip(json_strings(df["transaction_id"]), flags, json_strings(df["label_type"]), iso_utc(df["known_at"]), scenarios)
    return [(key.encode(), (_LABEL_JSON % row).encode()) for key, row in zip(df["transaction_id"].tolist(), rows)]
