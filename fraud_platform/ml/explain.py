"""Why a transaction got its score: per-decision feature contributions taken from the model itself,
turned into sentences an analyst can read.

Contributions are exact, not approximated by a surrogate: for XGBoost they are TreeSHAP values
(``pred_contribs=True``), for a linear model ``coef * x``. Either way, contributions plus the bias
add up to the model's margin (log-odds) for that row, which the tests check. For the training
pipeline (imblearn ``Pipeline``: optional SMOTE, then XGBoost) the classifier step is explained on
the input as the pipeline would transform it at predict time (samplers only act during ``fit``).

Pure: no Dagster, Spark or web framework, so the decision API, the streaming scorer and the alert
store all use this one module::

    reasons = explain(model, features_frame, k=3)   # list (per row) of list[Reason], strongest first
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np
import pandas as pd

from fraud_platform.domain.features import DEFAULT_CONFIG


@dataclass(frozen=True)
class Reason:
    """One feature's push on a score: ``contribution`` is in log-odds (> 0 raises the fraud score)."""

    feature: str
    value: float
    contribution: float
    text: str

    @property
    def direction(self) -> str:
        return "raises" if self.contribution > 0 else "lowers"

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature, "value": self.value, "contribution": self.contribution,
                "direction": self.direction, "text": self.text}


@dataclass(frozen=True)
class Contributions:
    """Per-row, per-feature contributions (n x f) and the bias (n): ``values.sum(1) + bias`` = margin."""

    features: list[str]
    values: np.ndarray
    bias: np.ndarray

    @property
    def margin(self) -> np.ndarray:
        return self.values.sum(axis=1) + self.bias


# --------------------------------------------------------------------------------------------
# The model's own contributions
# --------------------------------------------------------------------------------------------


def classifier_and_input(model: Any, X: pd.DataFrame | np.ndarray) -> tuple[Any, np.ndarray]:
    """The final estimator of ``model`` and ``X`` as that estimator sees it at predict time.

    A (sklearn or imblearn) pipeline applies its transformers; samplers such as SMOTE have no
    ``transform`` and do nothing at predict time, exactly as ``Pipeline.predict_proba`` behaves.
    """
    values = np.asarray(X, dtype="float64")
    steps = getattr(model, "steps", None)
    if steps is None:
        return model, values
    for _, step in steps[:-1]:
        if step is not None and step != "passthrough" and hasattr(step, "transform"):
            values = np.asarray(step.transform(values), dtype="float64")
    return steps[-1][1], values


def booster_of(estimator: Any):
    """The ``xgboost.Booster`` behind an XGBoost estimator (or the booster itself), else None."""
    try:
        import xgboost
    except ImportError:  # pragma: no cover - xgboost is a platform dependency
        return None
    if isinstance(estimator, xgboost.Booster):
        return estimator
    if isinstance(estimator, xgboost.XGBModel):
        return estimator.get_booster()
    return None


def contributions(model: Any, X: pd.DataFrame | np.ndarray, features: list[str] | None = None,
                  nthread: int = -1) -> Contributions:
    """Exact per-feature contributions of ``model`` for the rows of ``X`` (columns = model features;
    pass ``features`` with a numpy ``X``). ``nthread=1`` suits a few rows (a request): OpenMP
    threads only contend there."""
    features = [str(c) for c in (X.columns if features is None else features)]
    estimator, values = classifier_and_input(model, X)
    booster = booster_of(estimator)
    if booster is not None:
        import xgboost

        names = booster.feature_names if booster.feature_names and len(booster.feature_names) == values.shape[1] else None
        raw = booster.predict(xgboost.DMatrix(values, feature_names=names, nthread=nthread), pred_contribs=True)
        raw = np.asarray(raw, dtype="float64").reshape(len(values), -1)
        return Contributions(features if values.shape[1] == len(features) else list(names or []), raw[:, :-1], raw[:, -1])
    if _is_lightgbm(estimator):  # TreeSHAP in LightGBM itself, in raw-score (log-odds) units
        raw = np.asarray(estimator.booster_.predict(values, pred_contrib=True), dtype="float64").reshape(len(values), -1)
        return Contributions(features, raw[:, :-1], raw[:, -1])
    if _is_forest(estimator):
        per_feature, bias = _forest_path_contributions(estimator, values)
        return Contributions(features, per_feature, bias)
    coef = getattr(estimator, "coef_", None)
    if coef is not None and np.ndim(coef) == 2 and coef.shape[0] == 1:  # binary linear model
        intercept = np.asarray(getattr(estimator, "intercept_", [0.0]), dtype="float64")[0]
        return Contributions(features, values * coef[0], np.full(len(values), intercept))
    raise TypeError(f"cannot explain a {type(estimator).__name__}: expected XGBoost, LightGBM, a random forest "
                    "or a binary linear classifier")


def _is_lightgbm(estimator: Any) -> bool:
    return type(estimator).__module__.startswith("lightgbm") and hasattr(estimator, "booster_")


def _is_forest(estimator: Any) -> bool:
    return hasattr(estimator, "estimators_") and hasattr(estimator, "predict_proba") and hasattr(estimator.estimators_[0], "tree_")


def _forest_path_contributions(forest: Any, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Path decomposition of a forest's fraud probability (Saabas): along each tree's decision path,
    the change in the node's fraud share is credited to the feature split on. Per row, the bias (the
    root's share) plus the contributions equal the tree's leaf share, so averaged over the trees
    they sum exactly to ``predict_proba``. A forest has no margin, so its units are probability."""
    n_rows, n_features = values.shape
    total = np.zeros((n_rows, n_features))
    bias = 0.0
    positive = list(forest.classes_).index(1)
    rows = values.astype(np.float32)  # sklearn trees split on float32: convert once, not per tree
    for tree in forest.estimators_:
        structure = tree.tree_
        counts = structure.value[:, 0, :]
        share = counts[:, positive] / np.maximum(counts.sum(axis=1), 1e-300)
        parent = np.full(structure.node_count, -1)
        for children in (structure.children_left, structure.children_right):
            inner = np.flatnonzero(children >= 0)
            parent[children[inner]] = inner
        moved = np.flatnonzero(parent >= 0)
        credit = np.zeros((structure.node_count, n_features))
        credit[moved, structure.feature[parent[moved]]] = share[moved] - share[parent[moved]]
        total += np.asarray(tree.decision_path(rows) @ credit)
        bias += share[0]
    trees = len(forest.estimators_)
    return total / trees, np.full(n_rows, bias / trees)


class TreeShapTable:
    """XGBoost's TreeSHAP (``pred_contribs``) for a few rows at a time, in numpy.

    ``pred_contribs`` costs ~0.3 ms a row plus ~0.2 ms of DMatrix set-up per call: more than the
    rest of a decision together. Path-dependent TreeSHAP splits over the trees' root-to-leaf paths:
    a path with ``m`` distinct features, each with its zero fraction ``z`` (share of the training
    cover following the path's splits on that feature) and one fraction ``o`` (1 if the row
    follows them all, else 0), adds to feature ``i``
    ``leaf * (o_i - z_i) * sum_S |S|!(m-|S|-1)!/m! * prod_{j in S} o_j * prod_{j not in S, j != i} z_j``.
    Only ``o`` depends on the row and it is a bit per path feature, so every path's contributions
    are tabulated once per bit pattern (``paths x 2^m x m`` numbers, built when the model loads);
    explaining a row is then a comparison per path feature, a table look-up and one ``bincount``.
    Exact (the same sums as XGBoost, in float64); :meth:`of` checks it against ``pred_contribs``
    on probe rows and returns None when a model does not fit (DART, categorical splits, multi-class,
    a table over ``max_entries``), so callers fall back to XGBoost itself.
    """

    def __init__(self, n_features: int, features: np.ndarray, low: np.ndarray, high: np.ndarray, missing: np.ndarray,
                 table: np.ndarray, bias: float, leaves: np.ndarray, base_margin: np.float32 | None) -> None:
        """``features``/``low``/``high``/``missing``: (paths, width), padded with feature -1; ``table``:
        (paths, 2^width, width) contributions by the path's bit pattern of followed features;
        ``leaves``: each path's leaf value (float32, trees in order); ``base_margin``: XGBoost's
        starting margin when the objective is binary logistic (else no scores from here)."""
        self.n_features, self.bias, self.base_margin = n_features, bias, base_margin
        self._leaves = np.asarray(leaves, dtype=np.float32)
        self._complete = (1 << (features >= 0).sum(axis=1)) - 1  # the bits of a path the row follows to its leaf
        self.scores = False  # set by :meth:`of` once its probabilities are XGBoost's own
        paths, width = features.shape
        real = features.ravel() >= 0
        path_of = np.repeat(np.arange(paths), width)[real]
        slot = np.tile(np.arange(width), paths)[real]
        # Elements in path order (each path contiguous: its bits sum with one reduceat) ...
        self._feature, self._low, self._high = features.ravel()[real], low.ravel()[real], high.ravel()[real]
        self._missing = missing.ravel()[real]
        self._bit = (1 << slot).astype(np.int64)
        self._path_starts = np.flatnonzero(np.r_[True, path_of[1:] != path_of[:-1]])
        # ... and in feature order (each feature contiguous: its contributions sum with one reduceat).
        order = np.argsort(self._feature, kind="stable")
        self._by_feature_path = path_of[order]
        # The table without its padding: a path of m features keeps its 2^m x m cells (most paths
        # are shorter than the longest), so the cells a row reads stay in the CPU caches: a row
        # reads one cell row per path, and the padded table (MBs) made a lone request's reads
        # cache misses. Cell of (path, bit pattern, slot) = offset[path] + pattern * m + slot.
        m = (features >= 0).sum(axis=1)
        sizes = (1 << m) * m
        offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        self._path_width = m.astype(np.int64)
        self._by_feature_cell = offsets[path_of[order]] + slot[order]
        present = self._feature[order]
        self._feature_starts = np.flatnonzero(np.r_[True, present[1:] != present[:-1]])
        self._present = present[self._feature_starts]
        self._table = np.concatenate([table[p, :1 << m[p], :m[p]].ravel() for p in range(paths)]) if paths else np.zeros(0)

    @classmethod
    def of(cls, booster, probe: np.ndarray, max_entries: int = 8_000_000) -> "TreeShapTable | None":
        """The table of ``booster`` if it reproduces XGBoost's contributions on ``probe`` rows, else
        None (never raises: the model is then served and explained by XGBoost itself)."""
        try:
            return cls._of(booster, probe, max_entries)
        except Exception:  # an unforeseen model layout costs speed, never the model
            return None

    @classmethod
    def _of(cls, booster, probe: np.ndarray, max_entries: int) -> "TreeShapTable | None":
        import json

        import xgboost

        model = json.loads(booster.save_raw("json"))["learner"]
        gbm = model["gradient_booster"]
        params = model["learner_model_param"]
        if gbm.get("name") != "gbtree" or int(params.get("num_class", "0")) > 1 or int(params.get("num_target", "1")) > 1:
            return None
        n_features = int(params["num_feature"])
        per_tree = [_leaf_paths(tree) for tree in gbm["model"]["trees"]]
        if any(paths is None for paths in per_tree):
            return None
        paths = [path for tree_paths in per_tree for path in tree_paths if path[1]]  # a lone leaf adds to the bias only
        stumps = any(not path[1] for tree_paths in per_tree for path in tree_paths)
        width = max(1, max(len(p[1]) for p in paths))
        if width > 8 or len(paths) * (1 << width) * width > max_entries:
            return None
        table = np.zeros((len(paths), 1 << width, width))
        features = np.full((len(paths), width), -1, dtype=np.int64)  # -1: padding
        low = np.full((len(paths), width), -np.inf, dtype=np.float32)
        high = np.full((len(paths), width), np.inf, dtype=np.float32)
        missing = np.zeros((len(paths), width), dtype=bool)
        for m in sorted({len(p[1]) for p in paths}):
            rows = [i for i, p in enumerate(paths) if len(p[1]) == m]
            leaf = np.array([paths[i][0] for i in rows])
            z = np.array([[e[1] for e in paths[i][1]] for i in rows]).reshape(len(rows), m)
            for k in range(m):
                features[rows, k] = [paths[i][1][k][0] for i in rows]
                low[rows, k] = [paths[i][1][k][2] for i in rows]
                high[rows, k] = [paths[i][1][k][3] for i in rows]
                missing[rows, k] = [paths[i][1][k][4] for i in rows]
            weights = np.array([math.factorial(s) * math.factorial(m - 1 - s) / math.factorial(m) for s in range(m)]) if m else np.zeros(0)
            for pattern in range(1 << m):  # padding bits are never set
                o = np.array([(pattern >> k) & 1 for k in range(m)], dtype=float)
                for i in range(m):
                    poly = np.zeros((len(rows), m))
                    poly[:, 0] = 1.0
                    for j in range(m):
                        if j != i:  # multiply by (z_j + o_j t)
                            poly[:, 1:] = poly[:, 1:] * z[:, [j]] + poly[:, :-1] * o[j]
                            poly[:, 0] *= z[:, j]
                    table[rows, pattern, i] = leaf * (o[i] - z[:, i]) * (poly @ weights)
        probe = np.atleast_2d(np.asarray(probe, dtype="float64"))
        names = booster.feature_names if booster.feature_names and len(booster.feature_names) == probe.shape[1] else None
        reference = np.asarray(booster.predict(xgboost.DMatrix(probe, feature_names=names), pred_contribs=True), dtype="float64")
        logistic = model["objective"].get("name") == "binary:logistic" and not stumps
        base = float(str(params["base_score"]).strip("[]")) if logistic else 0.5
        explainer = cls(n_features, features, low, high, missing, table, float(reference[0, -1]),
                        np.array([p[0] for p in paths]), np.float32(-np.log(1 / base - 1)) if logistic else None)
        (values, bias), scores = explainer.explain(probe)
        margin = np.asarray(booster.predict(xgboost.DMatrix(probe, feature_names=names), output_margin=True), dtype="float64")
        if (probe.shape[1] != n_features or not np.allclose(values, reference[:, :-1], rtol=1e-5, atol=1e-5)
                or not np.allclose(values.sum(axis=1) + bias, margin, rtol=1e-5, atol=1e-5)):
            return None
        # Scores too when they are XGBoost's own: the same float32 leaf sums in tree order, so the
        # margins are bit-identical and the probabilities within a float32 rounding.
        explainer.scores = scores is not None and bool(np.allclose(scores, booster.inplace_predict(probe), rtol=0, atol=1e-7))
        return explainer

    def __call__(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contributions n x features, bias n) for float rows ``X``."""
        return self.explain(X)[0]

    CHUNK = 8  # rows per pass: larger passes outgrow the CPU caches (32 rows cost 2x per row)

    def explain(self, X: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
        """((contributions, bias), fraud probabilities or None) for float rows ``X``: the score from
        the same pass (each tree's leaf is that of the path whose bits are all set)."""
        X = np.atleast_2d(X).astype(np.float32)  # XGBoost compares float32 values with float32 splits
        if len(X) <= self.CHUNK:
            return self._explain(X)
        parts = [self._explain(X[start:start + self.CHUNK]) for start in range(0, len(X), self.CHUNK)]
        scores = None if parts[0][1] is None else np.concatenate([part[1] for part in parts])
        return (np.concatenate([part[0][0] for part in parts]), np.concatenate([part[0][1] for part in parts])), scores

    def _explain(self, X: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray | None]:
        values = np.take(X, self._feature, axis=1)
        follows = (values >= self._low) & (values < self._high)
        if np.isnan(X).any():  # a row's few values checked, not every path element
            follows |= np.isnan(values) & self._missing
        bits = np.add.reduceat(follows * self._bit, self._path_starts, axis=1)  # (n, paths)
        # (scaled per path, before the gather over every path element)
        cells = self._by_feature_cell + np.take(bits * self._path_width, self._by_feature_path, axis=1)
        out = np.zeros((len(X), self.n_features))
        out[:, self._present] = np.add.reduceat(np.take(self._table, cells), self._feature_starts, axis=1)
        scores = None
        if self.base_margin is not None:
            terms = np.empty((len(X), bits.shape[1] + 1), dtype=np.float32)
            terms[:, 0] = self.base_margin
            terms[:, 1:] = np.where(bits == self._complete, self._leaves, np.float32(0))  # x + 0 is exact: order kept
            margins = np.cumsum(terms, axis=1, dtype=np.float32)[:, -1]
            scores = (np.float32(1) / (np.float32(1) + np.exp(-margins))).astype("float64")
        return (out, np.full(len(X), self.bias)), scores


def _leaf_paths(tree: dict) -> list | None:
    """Each leaf as ``(value, [(feature, zero fraction, low, high, follows missing)])`` with one
    entry per distinct feature on its path (the row follows it when ``low <= x < high``); None for
    a tree with categorical splits."""
    if any(tree.get("split_type", [])):
        return None
    left, right, split = tree["left_children"], tree["right_children"], tree["split_indices"]
    condition, default_left, cover = tree["split_conditions"], tree["default_left"], tree["sum_hessian"]
    out = []
    stack = [(0, {})]
    while stack:
        node, conditions = stack.pop()
        if left[node] == -1:
            out.append((float(condition[node]), [(f, *c) for f, c in conditions.items()]))
            continue
        f, threshold = int(split[node]), np.float32(condition[node])
        for child, goes_left in ((left[node], True), (right[node], False)):
            z, low, high, miss = conditions.get(f, (1.0, np.float32(-np.inf), np.float32(np.inf), True))
            z *= cover[child] / cover[node]
            low, high = (low, min(high, threshold)) if goes_left else (max(low, threshold), high)
            stack.append((child, {**conditions, f: (z, low, high, miss and bool(default_left[node]) == goes_left)}))
    return out


def margin(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The model's raw score for ``X`` (log-odds; a forest's fraud probability), computed by the model
    itself: what contributions plus bias sum to."""
    estimator, values = classifier_and_input(model, X)
    booster = booster_of(estimator)
    if booster is not None:
        import xgboost

        names = booster.feature_names if booster.feature_names and len(booster.feature_names) == values.shape[1] else None
        return np.asarray(booster.predict(xgboost.DMatrix(values, feature_names=names), output_margin=True), dtype="float64")
    if _is_lightgbm(estimator):
        return np.asarray(estimator.booster_.predict(values, raw_score=True), dtype="float64")
    if _is_forest(estimator):
        return np.asarray(estimator.predict_proba(values)[:, list(estimator.classes_).index(1)], dtype="float64")
    return np.asarray(estimator.decision_function(values), dtype="float64")


def explain(model: Any, features_frame: pd.DataFrame, k: int = 3) -> list[list[Reason]]:
    """Top-``k`` reasons per row, strongest absolute contribution first.

    ``features_frame`` holds exactly the model's feature columns in the model's order (e.g.
    ``frame[champion.features]``); any ``transaction_id`` column must be dropped first.
    """
    if len(features_frame) == 0:
        return []
    contrib = contributions(model, features_frame)
    return top_reasons(contrib, features_frame.to_numpy(dtype="float64"), k)


def top_reasons(contrib: Contributions, values: np.ndarray, k: int = 3) -> list[list[Reason]]:
    """Reasons from already computed contributions (the API computes them on its fast path)."""
    k = max(0, min(k, len(contrib.features)))
    if k == 0:
        return [[] for _ in range(len(values))]
    order = np.argsort(-np.abs(contrib.values), axis=1, kind="stable")[:, :k]
    out = []
    for row, picked in enumerate(order):
        out.append([
            Reason(contrib.features[j], float(values[row, j]), float(contrib.values[row, j]),
                   reason_text(contrib.features[j], float(values[row, j])))
            for j in picked
        ])
    return out


# --------------------------------------------------------------------------------------------
# Readable reasons (docs/features.md is the source of each phrase)
# --------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _days(n: int) -> str:
    return "day" if n == 1 else f"{n} days"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


_DELAY = DEFAULT_CONFIG.terminal_delay_days
_BASELINE = DEFAULT_CONFIG.customer_baseline_days
_AGE = DEFAULT_CONFIG.terminal_fraud_age_days
_NEW_TERMINAL = DEFAULT_CONFIG.new_terminal_days


def _delayed(n: int) -> str:
    """FDH's delayed terminal window: the ``n`` full days ending ``delay`` days ago."""
    return f"days {_DELAY + 1}-{_DELAY + n} ago" if n > 1 else f"the day {_DELAY + 1} days ago"


def _terminal(kind: str, n: int, window: str, v: float) -> str:
    if kind == "tx_count":
        return f"terminal had {_num(v)} transactions in {window}"
    if kind == "fraud_count":
        return f"terminal had {_num(v)} confirmed frauds in {window}"
    return f"terminal fraud rate {v:.1%} in {window}"


# (pattern, phrase builder(match, value)); the first match wins. Patterns follow
# FeatureConfig.feature_columns(), so changed window lengths still read correctly.
_PHRASES: list[tuple[re.Pattern, Callable[[re.Match, float], str]]] = [
    (re.compile(r"amount_eur"), lambda m, v: f"amount {_num(v)} EUR"),
    (re.compile(r"hour"), lambda m, v: f"at {int(v):02d}h UTC"),
    (re.compile(r"is_night"), lambda m, v: "night-time transaction (22:00-06:00 UTC)" if v else "daytime transaction"),
    (re.compile(r"is_weekend"), lambda m, v: "weekend transaction" if v else "weekday transaction"),
    (re.compile(r"customer_tx_count_(\d+)d"),
     lambda m, v: f"customer made {_num(v)} transactions in the last {_days(int(m[1]))}"),
    (re.compile(r"customer_mean_amount_(\d+)d"),
     lambda m, v: f"customer's {m[1]}-day mean amount {_num(v)} EUR"),
    (re.compile(r"customer_amount_to_mean_(\d+)d"),
     lambda m, v: f"amount {v:.1f}x this customer's {m[1]}-day mean"),
    (re.compile(r"customer_amount_to_baseline"),
     lambda m, v: f"amount {v:.1f}x this customer's usual spend (days {_BASELINE[0] + 1}-{_BASELINE[1]} ago)"),
    (re.compile(r"customer_mean_(\d+)d_to_baseline"),
     lambda m, v: f"customer's {m[1]}-day mean spend {v:.1f}x their usual (days {_BASELINE[0] + 1}-{_BASELINE[1]} ago)"),
    (re.compile(r"customer_seconds_since_prev"),
     lambda m, v: f"{_duration(v)} since the customer's previous transaction"),
    (re.compile(r"customer_new_terminal"),
     lambda m, v: f"customer's first use of this terminal in {_NEW_TERMINAL} days" if v
     else f"customer used this terminal in the last {_NEW_TERMINAL} days"),
    (re.compile(r"terminal_(tx_count|fraud_count|fraud_rate)_recent_(\d+)d"),
     lambda m, v: _terminal(m[1], int(m[2]), f"the last {_days(int(m[2]))}", v)),
    (re.compile(r"terminal_(tx_count|fraud_count|fraud_rate)_(\d+)d"),
     lambda m, v: _terminal(m[1], int(m[2]), _delayed(int(m[2])), v)),
    (re.compile(r"terminal_days_since_(last|first)_fraud"),
     lambda m, v: f"no known fraud at this terminal in the last {_AGE} days" if v > _AGE
     else f"terminal's {'latest' if m[1] == 'last' else 'earliest'} known fraud was {_num(v)} days ago"),
]


def reason_text(feature: str, value: float) -> str:
    """A sentence for one feature value, ending with the feature's column name for traceability."""
    found = _phrase_of(feature)
    if found is None:
        return f"{feature} = {_num(value)} [{feature}]"
    phrase, match = found
    return f"{phrase(match, value)} [{feature}]"


@lru_cache(maxsize=1024)
def _phrase_of(feature: str) -> tuple[Callable[[re.Match, float], str], re.Match] | None:
    for pattern, phrase in _PHRASES:
        match = pattern.fullmatch(feature)
        if match:
            return phrase, match
    return None
