"""Rule breaks: synthetic rows that break a logical rule every real training row keeps.

The rules are found here, in the real training rows (`synth.data.rules`, with the job's
`rules` settings), independently of any model, so synthetic rows from any tool are held to
them. A rule found in train may still not be a law of the population: the holdout's own share
of breaking rows is the yardstick, and the gate bounds the excess over it.

Column names and counts only: a rule is shown as `internet_service -> online_security`, never
with its values.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from synth.config import RulesSpec
from synth.data.rules import resolve_rules, rule_breaks, rule_groups, support_floor
from synth.data.schema import TableSchema


class RuleGroup(BaseModel):
    rule: str
    """The rule's columns: `a -> b` (a value of a fixes b) or `a <= b`."""
    kind: str
    rules: int
    """How many value pairs (one for an ordering)."""
    synthetic_breaks: int
    holdout_breaks: int


class RuleBreaks(BaseModel):
    n_rules: int
    min_support: int
    """The fewest training rows a rule's premise held on."""
    rule_breaks: float
    """Share of synthetic rows breaking at least one rule."""
    holdout_rule_breaks: float
    """Share of fresh holdout rows breaking at least one rule."""
    groups: list[RuleGroup]


def rule_break_share(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    k: int,
    spec: RulesSpec | None = None,
) -> RuleBreaks:
    """Find the rules in `train`, then count the synthetic and holdout rows breaking them."""
    spec = spec or RulesSpec()
    rules = resolve_rules(
        train,
        schema,
        k=k,
        discover=spec.discover,
        min_support=spec.min_support,
        min_support_fraction=spec.min_support_fraction,
        add=spec.add,
        drop=spec.drop,
    )
    syn_rows, syn_counts = rule_breaks(synthetic, rules, schema)
    ho_rows, ho_counts = rule_breaks(holdout, rules, schema)
    syn_groups = rule_groups(rules, syn_counts)
    ho_groups = rule_groups(rules, ho_counts)
    groups = [
        RuleGroup(
            rule=s["rule"],
            kind=s["kind"],
            rules=s["rules"],
            synthetic_breaks=s["breaks"],
            holdout_breaks=h["breaks"],
        )
        for s, h in zip(syn_groups, ho_groups, strict=True)
    ]
    return RuleBreaks(
        n_rules=len(rules),
        min_support=support_floor(len(train), k, spec.min_support, spec.min_support_fraction),
        rule_breaks=float(syn_rows.mean()) if len(syn_rows) else 0.0,
        holdout_rule_breaks=float(ho_rows.mean()) if len(ho_rows) else 0.0,
        groups=groups,
    )
