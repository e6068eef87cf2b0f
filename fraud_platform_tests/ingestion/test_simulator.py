"""Behaviour of the transaction simulator: determinism, contract-valid events, calibrated fraud,
the FDH scenarios and delayed labels that compose across windows."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import orjson
import pandas as pd
import pytest

from fraud_platform.domain.hashing import tokenise_pan
from fraud_platform.domain.schema import (
    CHANNELS,
    COUNTRY_CURRENCY,
    FX_TO_EUR,
    LABEL_FIELDS,
    MERCHANT_CATEGORIES,
    TRANSACTION_FIELDS,
    LabelEvent,
    TransactionEvent,
)
from fraud_platform.domain.simulator import (
    AMOUNT_FRAUD_THRESHOLD_EUR,
    DayEvents,
    SimulationConfig,
    TransactionSimulator,
    card_number,
    encode_labels,
    encode_transactions,
)
from fraud_platform.domain.validation import LabelValidator, TransactionValidator, looks_like_pan

START = date(2025, 3, 1)  # in the past, so the validators' future-timestamp rule never interferes
SMALL = dict(n_customers=400, n_terminals=800)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), timezone.utc)


def _amount_eur(df: pd.DataFrame) -> pd.Series:
    return df["amount"] * df["currency"].map(FX_TO_EUR)


@pytest.fixture(scope="module")
def sample() -> TransactionSimulator:
    """A mid-sized simulation with plenty of fraud, shared by the field-level tests."""
    return TransactionSimulator(SimulationConfig(start=START, days=8, n_customers=1500, n_terminals=3000, fraud_rate=0.03))


@pytest.fixture(scope="module")
def sample_transactions(sample: TransactionSimulator) -> pd.DataFrame:
    return sample.transactions()


# -- determinism ----------------------------------------------------------------------------------
def _all_bytes(sim: TransactionSimulator) -> list[DayEvents]:
    return list(sim.iter_days())


def test_same_seed_gives_identical_bytes() -> None:
    config = SimulationConfig(start=START, days=3, fraud_rate=0.02, **SMALL)
    first, second = _all_bytes(TransactionSimulator(config)), _all_bytes(TransactionSimulator(config))
    assert sum(len(d.transactions) for d in first) > 1000 and sum(len(d.labels) for d in first) > 0
    assert first == second


def test_day_by_day_run_equals_one_multi_day_run() -> None:
    multi = _all_bytes(TransactionSimulator(SimulationConfig(start=START, days=4, fraud_rate=0.02, **SMALL)))
    single = [
        day
        for i in range(4)
        for day in TransactionSimulator(SimulationConfig(start=START + timedelta(days=i), days=1, fraud_rate=0.02, **SMALL)).iter_days()
    ]
    assert [d.day for d in multi] == [START + timedelta(days=i) for i in range(4)]
    assert single == multi


def test_different_seed_gives_different_data() -> None:
    a = TransactionSimulator(SimulationConfig(start=START, days=1, seed=1, **SMALL))
    b = TransactionSimulator(SimulationConfig(start=START, days=1, seed=2, **SMALL))
    assert a.transactions_for_day(START)["transaction_id"].isin(b.transactions_for_day(START)["transaction_id"]).sum() == 0
    assert not a.customers["card_token"].equals(b.customers["card_token"])
    assert not a.terminals[["x", "y"]].equals(b.terminals[["x", "y"]])


# -- the event contract ---------------------------------------------------------------------------
def test_every_encoded_transaction_passes_the_validator_and_round_trips(
    sample: TransactionSimulator, sample_transactions: pd.DataFrame
) -> None:
    validator = TransactionValidator()
    messages = encode_transactions(sample_transactions)
    assert len(messages) == len(sample_transactions) > 20_000
    for (key, value), row in zip(messages, sample_transactions.itertuples(index=False)):
        event = validator.parse(value)
        assert isinstance(event, TransactionEvent), event
        assert key == row.card_token.encode()
        assert set(orjson.loads(value)) == set(TRANSACTION_FIELDS)  # no ground truth leaks into events
        assert (event.transaction_id, event.customer_id, event.terminal_id) == (row.transaction_id, row.customer_id, row.terminal_id)
        assert event.event_time == row.event_time.to_pydatetime()
        assert float(event.amount) == row.amount
        assert (event.currency, event.merchant_category, event.channel, event.country) == (
            row.currency, row.merchant_category, row.channel, row.country,
        )


def test_every_encoded_label_passes_the_validator(sample: TransactionSimulator) -> None:
    labels = sample.labels()
    assert len(labels) > 200
    validator = LabelValidator()
    for (key, value), row in zip(encode_labels(labels), labels.itertuples(index=False)):
        event = validator.parse(value)
        assert isinstance(event, LabelEvent), event
        assert set(orjson.loads(value)) == set(LABEL_FIELDS)
        assert key == row.transaction_id.encode()
        assert event.is_fraud is True and event.fraud_scenario == row.fraud_scenario in (1, 2, 3)
        assert event.label_type in ("chargeback", "confirmed_fraud")
        assert event.known_at == row.known_at.to_pydatetime()


def test_encoding_escapes_text_that_needs_it() -> None:
    df = pd.DataFrame(
        {
            "transaction_id": ['tx-"quoted"\\x'], "event_time": [pd.Timestamp("2025-03-01 12:00:00.5", tz="UTC")],
            "customer_id": ["C\u00e9"], "card_token": ["tok_abcdefgh"], "terminal_id": ["T1"], "amount": [12.5],
            "currency": ["EUR"], "merchant_category": ["5411"], "channel": ["ecommerce"], "country": ["FR"],
        }
    )
    [(key, value)] = encode_transactions(df)
    event = TransactionValidator().parse(value)
    assert isinstance(event, TransactionEvent), event
    assert event.transaction_id == 'tx-"quoted"\\x' and event.customer_id == "C\u00e9"
    assert event.event_time == datetime(2025, 3, 1, 12, 0, 0, 500_000, tzinfo=timezone.utc)
    assert key == b"tok_abcdefgh"


def test_transactions_are_sorted_with_utc_times_inside_their_day(sample: TransactionSimulator) -> None:
    day = START + timedelta(days=2)
    df = sample.transactions_for_day(day)
    assert str(df["event_time"].dt.tz) == "UTC"
    assert df["event_time"].is_monotonic_increasing
    assert (df["event_time"] >= _midnight(day)).all() and (df["event_time"] < _midnight(day + timedelta(days=1))).all()
    hours = df["event_time"].dt.hour
    assert hours.between(9, 14).mean() > hours.between(0, 5).mean() * 2  # daytime peak (Normal around noon)
    assert df["transaction_id"].str.fullmatch(r"tx-[0-9a-f]{24}").all()
    assert df["transaction_id"].is_unique


def test_fields_are_consistent_with_terminal_and_country(sample: TransactionSimulator, sample_transactions: pd.DataFrame) -> None:
    df = sample_transactions
    assert (df["currency"] == df["country"].map(COUNTRY_CURRENCY)).all()
    assert df["customer_id"].str.fullmatch(r"C\d{6}").all() and df["terminal_id"].str.fullmatch(r"T\d{7}").all()
    assert set(df["merchant_category"]) <= set(MERCHANT_CATEGORIES) and set(df["channel"]) == set(CHANNELS)
    # Channel follows the terminal type: ATMs -> atm, online -> ecommerce/moto, physical -> card present/contactless.
    terminals = sample.terminals.set_index("terminal_id")
    kind = df["terminal_id"].map(terminals["terminal_type"])
    assert ((kind == "atm") == (df["channel"] == "atm")).all()
    assert ((kind == "atm") == (df["merchant_category"] == "6011")).all()
    assert df.loc[kind == "online", "channel"].isin(["ecommerce", "moto"]).all()
    assert df.loc[kind == "physical", "channel"].isin(["card_present", "contactless"]).all()
    assert (_amount_eur(df)[df["channel"] == "contactless"] <= 50).all()
    # Each terminal has one country and one merchant category.
    assert (df.groupby("terminal_id")[["country", "merchant_category"]].nunique() == 1).all().all()
    # Amounts are in the local minor unit: whole yen and forint, cents elsewhere; never zero.
    zero_decimals = df["currency"].isin(["JPY", "HUF"])
    assert (df.loc[zero_decimals, "amount"] % 1 == 0).all()
    assert np.allclose(df.loc[~zero_decimals, "amount"] * 100, np.round(df.loc[~zero_decimals, "amount"] * 100))
    assert (df["amount"] > 0).all()
    # Mostly euro-zone traffic, every currency in use, some cross-border spend near borders.
    assert 0.6 < (df["currency"] == "EUR").mean() < 0.8
    assert set(df["currency"]) == set(COUNTRY_CURRENCY.values())
    home = df["customer_id"].map(sample.customers.set_index("customer_id")["home_country"])
    assert 0.01 < (home != df["country"]).mean() < 0.3


def test_customers_only_use_terminals_within_the_radius(sample: TransactionSimulator, sample_transactions: pd.DataFrame) -> None:
    customers = sample.customers.set_index("customer_id")
    terminals = sample.terminals.set_index("terminal_id")
    df = sample_transactions
    dx = df["customer_id"].map(customers["x"]).to_numpy() - df["terminal_id"].map(terminals["x"]).to_numpy()
    dy = df["customer_id"].map(customers["y"]).to_numpy() - df["terminal_id"].map(terminals["y"]).to_numpy()
    assert (np.hypot(dx, dy) <= sample.config.radius).all()


# -- card data -----------------------------------------------------------------------------------
def test_no_raw_pan_anywhere_in_the_output(sample: TransactionSimulator) -> None:
    config = sample.config
    pans = [card_number(config.seed, i) for i in range(config.n_customers)]
    assert all(looks_like_pan(pan) and len(pan) == 16 for pan in pans)
    assert sample.customers["card_token"].tolist() == [tokenise_pan(pan, config.tokenisation_key) for pan in pans]
    assert "pan" not in " ".join(sample.customers.columns)
    days = list(TransactionSimulator(SimulationConfig(start=START, days=2, n_customers=config.n_customers,
                                                      n_terminals=config.n_terminals, fraud_rate=0.03)).iter_days())
    stream = b"\n".join(k + b" " + v for d in days for k, v in d.transactions + d.labels)
    found = set(re.findall(rb"(?<![0-9a-f])\d{13,19}(?![0-9a-f])", stream))
    assert not {p for p in found if looks_like_pan(p.decode())}
    assert not any(pan.encode() in stream for pan in pans)


def test_card_tokens_depend_on_the_tokenisation_key() -> None:
    a = TransactionSimulator(SimulationConfig(start=START, days=1, **SMALL))
    b = TransactionSimulator(SimulationConfig(start=START, days=1, tokenisation_key="another-key", **SMALL))
    assert not set(a.customers["card_token"]) & set(b.customers["card_token"])
    assert a.customers["card_token"].is_unique


# -- fraud ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0.005, 0.02])
def test_fraud_rate_lands_near_the_target(target: float) -> None:
    sim = TransactionSimulator(SimulationConfig(start=START, days=14, fraud_rate=target))
    # The calibration itself is exact in expectation ...
    assert sim.expected_rate == pytest.approx(target, rel=1e-6)
    # ... and ~140k simulated transactions land close to it (compromise counts are Poisson draws).
    df = sim.transactions()
    assert len(df) > 100_000
    assert df["is_fraud"].mean() == pytest.approx(target, rel=0.25)


def test_default_config_follows_fdh() -> None:
    sim = TransactionSimulator(SimulationConfig(start=START, days=10))
    assert (sim.terminal_compromises_per_day, sim.customer_compromises_per_day) == pytest.approx((2, 3))
    assert 0.008 < sim.expected_rate < 0.01
    df = sim.transactions()
    assert 9_000 < len(df) / 10 < 11_000  # 5000 customers x U(0,4) tx/day
    assert 0.005 < df["is_fraud"].mean() < 0.013
    customers = sim.customers
    assert customers["mean_amount"].between(5, 100).all() and customers["mean_nb_tx_per_day"].between(0, 4).all()
    assert np.allclose(customers["std_amount"], customers["mean_amount"] / 2)


def test_unreachable_fraud_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="not reachable"):
        TransactionSimulator(SimulationConfig(start=START, days=1, fraud_rate=1e-5, **SMALL))


def test_all_three_scenarios_with_plausible_shares(sample_transactions: pd.DataFrame) -> None:
    df = sample_transactions
    assert ((df["fraud_scenario"] > 0) == (df["is_fraud"] == 1)).all()
    shares = df.loc[df["is_fraud"] == 1, "fraud_scenario"].value_counts(normalize=True)
    assert set(shares.index) == {1, 2, 3}
    assert shares[2] > shares[3] > shares[1] > 0.005  # FDH mix: compromised terminals dominate
    assert shares[3] > 0.15


def test_amount_scenario_is_exactly_the_eur_threshold(sample_transactions: pd.DataFrame) -> None:
    df = sample_transactions
    above = _amount_eur(df) > AMOUNT_FRAUD_THRESHOLD_EUR
    assert above.sum() > 50
    assert (df.loc[above, "is_fraud"] == 1).all()
    assert above[df["fraud_scenario"] == 1].all()
    assert (df.loc[above & ~df["fraud_scenario"].isin([2, 3]), "fraud_scenario"] == 1).all()
    # The threshold is on the EUR value, not the local number (e.g. 300 SEK is about 26 EUR).
    local_only = (df["amount"] > AMOUNT_FRAUD_THRESHOLD_EUR) & ~above
    assert local_only.any() and (df.loc[local_only, "fraud_scenario"] != 1).all()


def _compromised_within(fetch, day: date, days: range) -> set[str]:
    return {entity for k in days for entity in fetch(day - timedelta(days=k))}


def test_compromised_terminals_stay_fraudulent_for_28_days_and_cards_for_14() -> None:
    sim = TransactionSimulator(SimulationConfig(start=START, days=20, n_customers=2000, n_terminals=2000, fraud_rate=0.03))
    expired_terminal_tx = expired_card_tx = 0
    card_tx, card_fraud = 0, 0
    for day in sim.days():
        df = sim.transactions_for_day(day)
        active_terminals = _compromised_within(sim.compromised_terminals, day, range(28))
        active_cards = _compromised_within(sim.compromised_customers, day, range(14))
        at_active_terminal = df["terminal_id"].isin(active_terminals)
        # Every transaction at a terminal compromised in the last 28 days (day 0..27) is fraud ...
        assert (df.loc[at_active_terminal, "is_fraud"] == 1).all()
        assert df.loc[at_active_terminal, "fraud_scenario"].isin([2, 3]).all()
        assert at_active_terminal[df["fraud_scenario"] == 2].all()
        # ... and on day 28 the compromise is over.
        expired = _compromised_within(sim.compromised_terminals, day, range(28, 31)) - active_terminals
        at_expired = df["terminal_id"].isin(expired)
        assert not (df.loc[at_expired, "fraud_scenario"] == 2).any()
        expired_terminal_tx += int(at_expired.sum())
        # Stolen cards: a third of the spend for 14 days, at five times the usual amount.
        of_active_card = df["customer_id"].isin(active_cards)
        assert of_active_card[df["fraud_scenario"] == 3].all()
        card_tx += int(of_active_card.sum())
        card_fraud += int((df.loc[of_active_card, "fraud_scenario"] == 3).sum())
        expired_cards = _compromised_within(sim.compromised_customers, day, range(14, 17)) - active_cards
        of_expired_card = df["customer_id"].isin(expired_cards)
        assert not (df.loc[of_expired_card, "fraud_scenario"] == 3).any()
        expired_card_tx += int(of_expired_card.sum())
    assert expired_terminal_tx > 20 and expired_card_tx > 20  # the boundary checks were not vacuous
    assert card_tx > 300 and 0.25 < card_fraud / card_tx < 0.42


def test_stolen_card_spend_is_inflated(sample_transactions: pd.DataFrame) -> None:
    df = sample_transactions.assign(amount_eur=_amount_eur(sample_transactions))
    stolen = df[df["fraud_scenario"] == 3]
    usual = df[(df["is_fraud"] == 0) & df["customer_id"].isin(stolen["customer_id"])]
    ratio = stolen.groupby("customer_id")["amount_eur"].median() / usual.groupby("customer_id")["amount_eur"].median()
    assert ratio.median() == pytest.approx(5, rel=0.3)


# -- labels ---------------------------------------------------------------------------------------
def test_labels_compose_across_consecutive_windows_without_loss_or_duplicates() -> None:
    config = SimulationConfig(start=START, days=12, fraud_rate=0.02, **SMALL)
    whole = TransactionSimulator(config)
    window_end = _midnight(config.end)
    # Windows from fresh simulators, as separate producer runs would do; one bound is exactly a
    # label's known_at (a window is half-open, so that label belongs to the next one).
    exact = whole.labels_for_window(_midnight(START + timedelta(days=8)), window_end)["known_at"].iloc[0].to_pydatetime()
    bounds = [_midnight(START), _midnight(START) + timedelta(days=3, hours=5), _midnight(START + timedelta(days=7)), exact, window_end]
    parts = [TransactionSimulator(config).labels_for_window(a, b) for a, b in zip(bounds, bounds[1:])]
    labels = pd.concat(parts, ignore_index=True)
    assert labels["transaction_id"].is_unique
    pd.testing.assert_frame_equal(labels, whole.labels_for_window(bounds[0], window_end))
    for (a, b), part in zip(zip(bounds, bounds[1:]), parts):
        assert ((part["known_at"] >= a) & (part["known_at"] < b)).all()

    # Ground truth: the fraud transactions of the window and of the label_delay_days before it.
    history = [START + timedelta(days=k) for k in range(-config.label_delay_days, config.days)]
    truth = pd.concat([whole.transactions_for_day(d) for d in history], ignore_index=True)
    fraud = truth[truth["is_fraud"] == 1].set_index("transaction_id")
    assert set(labels["transaction_id"]) <= set(fraud.index)
    joined = labels.join(fraud[["event_time", "fraud_scenario"]], on="transaction_id", rsuffix="_tx")
    delay = joined["known_at"] - joined["event_time"]
    assert (delay >= pd.Timedelta(days=1)).all() and (delay <= pd.Timedelta(days=config.label_delay_days)).all()
    assert (joined["fraud_scenario"] == joined["fraud_scenario_tx"]).all()
    # Every fraud whose label must be known inside the window is labelled exactly once.
    due = fraud[(fraud["event_time"] >= _midnight(START)) & (fraud["event_time"] < window_end - pd.Timedelta(days=config.label_delay_days))]
    assert len(due) > 50 and set(due.index) <= set(labels["transaction_id"])
    # Frauds from before the window whose label arrives inside it are included.
    assert (joined["event_time"] < _midnight(START)).any()
    assert set(labels["label_type"]) == {"chargeback", "confirmed_fraud"}


def test_iter_days_emits_each_days_labels_in_known_at_order() -> None:
    sim = TransactionSimulator(SimulationConfig(start=START, days=5, fraud_rate=0.02, label_delay_days=3, **SMALL))
    seen = []
    for day in sim.iter_days():
        known = [datetime.fromisoformat(orjson.loads(v)["known_at"]) for _, v in day.labels]
        times = [datetime.fromisoformat(orjson.loads(v)["event_time"]) for _, v in day.transactions]
        assert known == sorted(known) and times == sorted(times)
        assert all(_midnight(day.day) <= k < _midnight(day.day + timedelta(days=1)) for k in known)
        seen += [k for k, _ in day.labels]
    assert len(seen) == len(set(seen)) > 0
    assert seen == [tx.encode() for tx in sim.labels()["transaction_id"]]


def test_invalid_configs_are_refused() -> None:
    for bad in (dict(days=0), dict(fraud_rate=1.5), dict(label_delay_days=0), dict(radius=0), dict(seed=-1)):
        with pytest.raises(ValueError):
            SimulationConfig(**{"start": START, "days": 1, **bad})


def test_from_settings_uses_the_platform_tokenisation_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from fraud_platform.settings import PlatformSettings

    monkeypatch.setenv("FRAUD_TOKENISATION_KEY", "prod-like-key")
    config = SimulationConfig.from_settings(PlatformSettings.from_env(), start=START, days=1, **SMALL)
    assert config.tokenisation_key == "prod-like-key"
    pan = card_number(config.seed, 0)
    assert TransactionSimulator(config).customers["card_token"][0] == tokenise_pan(pan, "prod-like-key")



def test_fixed_label_delay_is_fdh_delay_period_and_keeps_the_label_types() -> None:
    uniform = TransactionSimulator(SimulationConfig(start=START, days=6, fraud_rate=0.03, **SMALL))
    fixed = TransactionSimulator(SimulationConfig(start=START, days=6, fraud_rate=0.03, label_delay="fixed", **SMALL))
    tx = fixed.transactions()[["transaction_id", "event_time"]]
    window = (START, START + timedelta(days=20))
    a = uniform.labels_for_window(*window).set_index("transaction_id")
    b = fixed.labels_for_window(*window).merge(tx, on="transaction_id").set_index("transaction_id")
    assert len(b) > 50 and set(a.index) >= set(b.index)
    assert ((b["known_at"] - b["event_time"]) == pd.Timedelta(days=7)).all()
    assert (a.loc[b.index, "label_type"] == b["label_type"]).all()
    assert ((a.loc[b.index, "known_at"] - b["event_time"]) < pd.Timedelta(days=7)).mean() > 0.9
    with pytest.raises(ValueError):
        SimulationConfig(start=START, days=1, label_delay="gamma", **SMALL)


def test_drift_changes_nothing_before_it_and_replaces_card_compromises_after() -> None:
    drift = START + timedelta(days=2)
    base = TransactionSimulator(SimulationConfig(start=START, days=17, fraud_rate=0.03, **SMALL)).transactions()
    drifted_sim = TransactionSimulator(SimulationConfig(start=START, days=17, fraud_rate=0.03, drift_start=drift, **SMALL))
    drifted = drifted_sim.transactions()
    before = lambda df: df[df["event_time"] < pd.Timestamp(drift, tz="UTC")]  # noqa: E731
    pd.testing.assert_frame_equal(before(base), before(drifted))
    new = drifted[drifted["fraud_scenario"] == 4]
    assert len(new) > 20 and (new["event_time"] >= pd.Timestamp(drift, tz="UTC")).all()
    assert (new["event_time"].dt.hour < 6).all() and (new["is_fraud"] == 1).all()
    # Cards compromised after the drift no longer get scenario 3 (only those compromised before it).
    late = drifted[drifted["event_time"] >= pd.Timestamp(drift + timedelta(days=14), tz="UTC")]
    assert (late["fraud_scenario"] != 3).all() and (late["fraud_scenario"] == 4).any()
    labels = drifted_sim.labels_for_window(START, START + timedelta(days=25))
    assert set(new["transaction_id"]) <= set(labels["transaction_id"])
