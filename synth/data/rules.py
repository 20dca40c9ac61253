"""Logical rules of a table: deterministic relations every training row keeps, found at fit.

Two kinds, both learned from the training rows only (never the holdout):
- `FixedValue`: one column's value fixes another's (`internet_service = No` fixes every add-on
  to "No internet service"). A numeric or datetime column takes part through its missingness
  (`__missing__` / `__present__`), so "one column's missingness is fixed by another's value" is
  the same kind of rule.
- `Ordering`: `lower <= upper` on every training row where both are present (two numeric
  columns, or two datetime columns).

A rule is kept only when it is a fact about many people, not one:
- it holds on every training row;
- its premise holds on at least `support_floor` training rows: max(k, `min_support`,
  `min_support_fraction` of the rows). With the defaults (20 rows, 1%) a premise is never a
  handful of people, and every value a rule names is one the model may emit anyway (held by
  at least `k` training rows);
- it would not hold by chance: if the conclusion held with its overall frequency p, independently
  of the premise, all `support` rows keeping it has probability p**support, which must be below
  `CHANCE` (1e-9: a wide table has thousands of candidates, and correlated columns make
  independence optimistic, so the bar sits far below one test's). This drops "rules" that only
  say a column is nearly constant, and orderings of columns whose ranges barely overlap. An
  ordering whose ranges do not overlap at all holds by construction (the model clips numbers to
  the training range) and is not stored.

A rule found this way is a regularity of the training rows, not a proven law: on Ames housing
(2,051 training rows) 1.3% of fresh holdout rows break one of them; on Telco churn, none do.
The gate therefore bounds the synthetic share of breaking rows in excess of the holdout's.

Rules name columns and category keys (`synth.data.categories.category_key`) only. Logs and
errors name rules by their columns, never by their values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from synth.data.categories import MISSING, category_key, category_keys, numeric_values
from synth.data.schema import ColumnSpec, TableSchema
from synth.errors import ConfigError, did_you_mean

PRESENT = "__present__"  # a numeric or datetime column holding a value
CHANCE = 1e-9  # a rule that would hold this likely by chance alone is not kept
DEFAULT_MIN_SUPPORT = 20
DEFAULT_MIN_SUPPORT_FRACTION = 0.01
_CHANCE_SAMPLE = 2000  # rows used to estimate how often an ordering holds by chance


def _key(value: Any) -> str:
    """A rule value as the category key it is compared by (None: missing)."""
    return category_key(value)


class FixedValue(BaseModel):
    """`if_column == if_value` fixes `then_column` to `then_value` (category keys; a numeric or
    datetime column's value is `__missing__` or `__present__`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["fixes"] = "fixes"
    if_column: str
    if_value: str
    then_column: str
    then_value: str

    @field_validator("if_value", "then_value", mode="before")
    @classmethod
    def _as_key(cls, v: Any) -> str:
        return _key(v)

    @property
    def columns(self) -> tuple[str, str]:
        return (self.if_column, self.then_column)

    def describe(self) -> str:
        return f"{self.if_column} -> {self.then_column}"


class Ordering(BaseModel):
    """`lower <= upper` wherever both are present."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["order"] = "order"
    lower: str
    upper: str

    @property
    def columns(self) -> tuple[str, str]:
        return (self.lower, self.upper)

    def describe(self) -> str:
        return f"{self.lower} <= {self.upper}"


Rule = Annotated[FixedValue | Ordering, Field(discriminator="kind")]


class RuleFilter(BaseModel):
    """Which rules to drop: every field given must match (`{if_column: a, then_column: b}`
    drops every value pair from a to b; `{then_column: b}` every rule fixing b)."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["fixes", "order"] | None = None
    if_column: str | None = None
    if_value: str | None = None
    then_column: str | None = None
    then_value: str | None = None
    lower: str | None = None
    upper: str | None = None

    @field_validator("if_value", "then_value", mode="before")
    @classmethod
    def _as_key(cls, v: Any) -> Any:
        return v if v is None else _key(v)

    def matches(self, rule: FixedValue | Ordering) -> bool:
        given = self.model_dump(exclude_none=True)
        return all(getattr(rule, k, None) == v for k, v in given.items())


def support_floor(n_rows: int, k: int, min_support: int, min_support_fraction: float) -> int:
    """The fewest training rows a rule's premise must hold on."""
    return max(k, min_support, math.ceil(min_support_fraction * n_rows), 1)


# ---- discrete views ------------------------------------------------------------------------
def _view(df: pd.DataFrame, spec: ColumnSpec) -> np.ndarray:
    """The column as keys: category keys (missing as `__missing__`) for a categorical column,
    `__missing__`/`__present__` for a number or datetime."""
    if spec.kind == "categorical":
        return category_keys(df[spec.name]).fillna(MISSING).to_numpy(dtype=object)
    missing = np.isnan(numeric_values(df[spec.name], spec.kind))
    return np.where(missing, MISSING, PRESENT).astype(object)


def _numbers(df: pd.DataFrame, spec: ColumnSpec) -> np.ndarray:
    return numeric_values(df[spec.name], spec.kind)


def _tolerance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float noise (a float32 or Parquet round trip) is not a broken ordering."""
    return 1e-9 * np.maximum(np.maximum(np.abs(a), np.abs(b)), 1.0)


# ---- discovery -----------------------------------------------------------------------------
def discover_rules(
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    k: int,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_support_fraction: float = DEFAULT_MIN_SUPPORT_FRACTION,
) -> list[FixedValue | Ordering]:
    """The rules every training row keeps, with enough support and not by chance."""
    floor = support_floor(len(train), k, min_support, min_support_fraction)
    specs = schema.modelled
    views: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for spec in specs:
        keys = _view(train, spec)
        codes, uniques = pd.factorize(keys)
        counts = np.bincount(codes, minlength=len(uniques))
        if len(uniques) > 1:  # a constant view fixes nothing and is fixed by anything
            views[spec.name] = (codes, np.asarray(uniques, dtype=object), counts)
    rules: list[FixedValue | Ordering] = []
    n = len(train)
    for a, (a_codes, a_keys, a_counts) in views.items():
        premises = np.flatnonzero(a_counts >= floor)
        if not len(premises):
            continue
        for b, (b_codes, b_keys, b_counts) in views.items():
            if b == a:
                continue
            joint = np.bincount(
                a_codes * len(b_keys) + b_codes, minlength=len(a_keys) * len(b_keys)
            ).reshape(len(a_keys), len(b_keys))
            for i in premises:
                held = np.flatnonzero(joint[i])
                if len(held) != 1:
                    continue
                j = held[0]
                if a_counts[i] * math.log(b_counts[j] / n) > math.log(CHANCE):
                    continue  # B = b is so common that A = a keeping it says nothing
                rules.append(
                    FixedValue(if_column=a, if_value=a_keys[i], then_column=b, then_value=b_keys[j])
                )
    for kind in ("numeric", "datetime"):
        cols = [s for s in specs if s.kind == kind]
        values = {s.name: _numbers(train, s) for s in cols}
        for lo in cols:
            for hi in cols:
                if lo.name != hi.name and _ordered(values[lo.name], values[hi.name], floor):
                    rules.append(Ordering(lower=lo.name, upper=hi.name))
    return rules


def _ordered(a: np.ndarray, b: np.ndarray, floor: int) -> bool:
    both = ~np.isnan(a) & ~np.isnan(b)
    m = int(both.sum())
    if m < floor:
        return False
    a, b = a[both], b[both]
    if np.any(a > b + _tolerance(a, b)):
        return False
    if a.max() <= b.min():
        return False  # disjoint ranges: holds by the model's clipping alone
    step = max(1, m // _CHANCE_SAMPLE)
    sorted_b = np.sort(b[::step])
    below = np.searchsorted(sorted_b, a[::step], side="left") / len(sorted_b)
    p = 1.0 - float(below.mean())  # P(a_i <= b_j) for independent rows
    return p < 1.0 and m * math.log(max(p, 1e-300)) <= math.log(CHANCE)


# ---- the configured rule set ---------------------------------------------------------------
def _allowed_keys(train: pd.DataFrame, spec: ColumnSpec, k: int) -> set[str]:
    keys = pd.Series(_view(train, spec)).value_counts()
    return set(keys.index[keys >= k])


def check_rule(
    rule: FixedValue | Ordering, train: pd.DataFrame, schema: TableSchema, k: int
) -> None:
    """A rule from the config must name modelled columns and values the model may emit; the
    error names the rule's columns, never its values."""
    names = {s.name: s for s in schema.modelled}
    for col in rule.columns:
        if col not in names:
            raise ConfigError(
                f"rules.add: {rule.describe()}: {col!r} is not a modelled column"
                + did_you_mean(col, names)
            )
    if isinstance(rule, Ordering):
        kinds = {names[c].kind for c in rule.columns}
        if len(kinds) != 1 or kinds & {"categorical"}:
            raise ConfigError(
                f"rules.add: {rule.describe()}: an ordering needs two numeric or two datetime "
                "columns"
            )
        return
    for col, value in ((rule.if_column, rule.if_value), (rule.then_column, rule.then_value)):
        if value not in _allowed_keys(train, names[col], k):
            raise ConfigError(
                f"rules.add: {rule.describe()}: the value given for {col!r} is held by fewer "
                f"than k={k} training rows (or never), so the model never emits it"
            )


def resolve_rules(
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    k: int,
    discover: bool = True,
    min_support: int = DEFAULT_MIN_SUPPORT,
    min_support_fraction: float = DEFAULT_MIN_SUPPORT_FRACTION,
    add: Sequence[FixedValue | Ordering] = (),
    drop: Sequence[RuleFilter] = (),
) -> list[FixedValue | Ordering]:
    """Discovered rules (if `discover`), less those a `drop` filter matches, plus `add`."""
    found = (
        discover_rules(
            train, schema, k=k, min_support=min_support, min_support_fraction=min_support_fraction
        )
        if discover
        else []
    )
    kept = [r for r in found if not any(f.matches(r) for f in drop)]
    for rule in add:
        check_rule(rule, train, schema, k)
        if rule not in kept:
            kept.append(rule)
    return kept


# ---- checking ------------------------------------------------------------------------------
def rule_breaks(
    df: pd.DataFrame, rules: Sequence[FixedValue | Ordering], schema: TableSchema
) -> tuple[np.ndarray, list[int]]:
    """(rows that break at least one rule, how many rows break each rule)."""
    broken = np.zeros(len(df), dtype=bool)
    counts: list[int] = []
    views: dict[str, np.ndarray] = {}

    def view(name: str) -> np.ndarray:
        if name not in views:
            views[name] = _view(df, schema.column(name))
        return views[name]

    for rule in rules:
        if isinstance(rule, FixedValue):
            bad = (view(rule.if_column) == rule.if_value) & (
                view(rule.then_column) != rule.then_value
            )
        else:
            a = _numbers(df, schema.column(rule.lower))
            b = _numbers(df, schema.column(rule.upper))
            with np.errstate(invalid="ignore"):
                bad = a > b + _tolerance(a, b)  # NaN compares False: missing breaks nothing
        counts.append(int(bad.sum()))
        broken |= bad
    return broken, counts


def rule_groups(
    rules: Iterable[FixedValue | Ordering], counts: Sequence[int] | None = None
) -> list[dict[str, Any]]:
    """Rules grouped by their columns, for schema output and reports: column names and counts
    only, never a value (`internet_service -> online_security`, 1 value pair)."""
    groups: dict[str, dict[str, Any]] = {}
    rules = list(rules)
    for i, rule in enumerate(rules):
        g = groups.setdefault(rule.describe(), {"rule": rule.describe(), "kind": rule.kind})
        g["rules"] = g.get("rules", 0) + 1
        if counts is not None:
            g["breaks"] = g.get("breaks", 0) + int(counts[i])
    return list(groups.values())


def rules_from_state(state: list[dict[str, Any]] | None) -> list[FixedValue | Ordering]:
    """Rules as a model's `synthesizer.json` stores them (none for models saved before rules)."""
    out: list[FixedValue | Ordering] = []
    for raw in state or []:
        out.append(Ordering(**raw) if raw.get("kind") == "order" else FixedValue(**raw))
    return out


# ---- repair before rejection ---------------------------------------------------------------
Cell = tuple[str, str]  # (column, category key)


def equivalences(rules: Sequence[FixedValue | Ordering]) -> list[list[Cell]]:
    """Groups of cells that fix one another both ways (`internet_service = No` and each add-on
    = "No internet service"): a row holds all of a group's cells or none of them."""
    fixed = {(r.if_column, r.if_value, r.then_column, r.then_value) for r in rules
             if isinstance(r, FixedValue)}  # fmt: skip
    parent: dict[Cell, Cell] = {}

    def root(c: Cell) -> Cell:
        while parent.setdefault(c, c) != c:
            c = parent[c]
        return c

    for a, av, b, bv in sorted(fixed):  # not set order: it changes with each process's hash seed
        if (b, bv, a, av) in fixed:
            parent[root((a, av))] = root((b, bv))
    groups: dict[Cell, list[Cell]] = {}
    for cell in parent:
        groups.setdefault(root(cell), []).append(cell)
    return sorted(
        sorted(g)
        for g in groups.values()
        if len(g) > 1 and len({c for c, _ in g}) == len(g)  # one cell per column
    )


def repair(
    columns: dict[str, np.ndarray],
    rules: Sequence[FixedValue | Ordering],
    schema: TableSchema,
    values: Mapping[str, Mapping[str, Any]],
    rng: np.random.Generator,
) -> None:
    """Mend, in place, the broken rules whose fix is clear, so that rejection does not thin out
    the rows a rule governs (a model that breaks the phone rule mostly breaks it on rows without
    phone service: redrawing them all would leave too few such rows).

    - A group of cells that fix one another (`equivalences`) that a row holds only in part is
      completed when the row holds most of its cells; with exactly half, on a coin flip.
      Otherwise the row is left to rejection (it holds a stray cell of the group).
    - A one-way rule `A = a -> B = b` a row breaks gets `B = b`.
    The target column and a number's `__present__` are never set (no value to invent);
    `values` maps each column's category keys to the values the model emits."""
    target = schema.target
    views: dict[str, np.ndarray] = {}  # each column's keys, until a repair changes it

    def view(col: str) -> np.ndarray:
        if col not in views:
            views[col] = _view(pd.DataFrame({col: columns[col]}, copy=False), schema.column(col))
        return views[col]

    def settable(cell: Cell) -> bool:
        col, key = cell
        return col != target and col in columns and key != PRESENT and (
            key == MISSING or key in values.get(col, {})
        )  # fmt: skip

    def assign(cell: Cell, rows: np.ndarray) -> None:
        col, key = cell
        arr = columns[col]
        if key == MISSING:
            arr[rows] = np.datetime64("NaT") if arr.dtype.kind == "M" else (
                np.nan if arr.dtype.kind == "f" else None
            )  # fmt: skip
        else:
            arr[rows] = values[col][key]
        views.pop(col, None)

    groups = equivalences(rules)
    group_of = {cell: i for i, g in enumerate(groups) for cell in g}
    for group in groups:
        if not all(settable(c) for c in group):
            continue
        held = np.stack([view(c) == k for c, k in group], axis=1)
        on = held.sum(axis=1)
        m = len(group)
        broken = (on > 0) & (on < m)
        complete = broken & ((2 * on > m) | ((2 * on == m) & (rng.random(len(on)) < 0.5)))
        rows = np.flatnonzero(complete)
        if len(rows):
            for cell in group:
                assign(cell, rows)
    for rule in rules:
        if not isinstance(rule, FixedValue):
            continue
        premise, conclusion = (rule.if_column, rule.if_value), (rule.then_column, rule.then_value)
        same_group = group_of.get(premise, -1) == group_of.get(conclusion, -2)
        if same_group or not settable(conclusion):
            continue
        bad = (view(rule.if_column) == rule.if_value) & (view(rule.then_column) != rule.then_value)
        rows = np.flatnonzero(bad)
        if len(rows):
            assign(conclusion, rows)
