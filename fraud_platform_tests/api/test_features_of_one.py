"""The decision API's per-request feature path equals the shared core exactly."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from fraud_platform.domain.features import US_PER_DAY, EntityHistory, features_of_one, features_on_history


def _case(rng: random.Random) -> tuple[EntityHistory, pd.DataFrame, dict]:
    day = 20_000 + rng.randrange(7)
    t = day * US_PER_DAY + rng.choice([0, 1, 3_600_000_000 * rng.randrange(24) + rng.randrange(3_600_000_000)])
    when = lambda: rng.choice([t, t - 1, (day - rng.randrange(40)) * US_PER_DAY, t - rng.randrange(40 * US_PER_DAY)])  # noqa: E731
    terminals = ["T1", "T2", "T3"]
    activity = [("c", when(), rng.randrange(1, 4), rng.randrange(1, 90_000)) for _ in range(rng.randrange(0, 30))]
    pairs = [("c", rng.choice(terminals), when()) for _ in range(rng.randrange(0, 6))]
    term = [("T1", (day - rng.randrange(40)) * US_PER_DAY, rng.randrange(1, 9)) for _ in range(rng.randrange(0, 30))]
    frauds = [("T1", day - rng.randrange(40), when(), rng.randrange(1, 3)) for _ in range(rng.randrange(0, 6))]
    event = pd.DataFrame({"transaction_id": ["q-00000001"], "customer_key": ["c"], "terminal_id": ["T1"],
                          "amount_eur": [round(rng.uniform(0.5, 900), 2)],
                          "event_time": [pd.Timestamp(t, unit="us", tz="UTC")]})
    return EntityHistory.from_rows(activity, pairs, term, frauds), event, {"rows": (activity, pairs, term, frauds), "t": t}


def test_features_of_one_equals_the_core():
    rng = random.Random(12)
    for _ in range(400):
        history, event, raw = _case(rng)
        core = features_on_history(history, event).drop(columns="transaction_id").to_numpy(dtype="float64")[0]
        one = np.asarray(features_of_one(*raw["rows"], raw["t"], float(event["amount_eur"].iat[0]), "T1"), dtype="float64")
        np.testing.assert_array_equal(one, core)
