"""The shape of a text ID column, learned without keeping an ID, and fresh IDs of that shape.

A regenerated ID should look like the source's (`N14228` -> `N83017`, not `syn-000000001`), so
joins, validators and eyeballs that expect the format keep working. What is learned from the
training rows is a pattern per ID length held by at least `k` rows: per position, the one
character (nearly) every such row holds there (a prefix, a dash), or the characters held there
by at least `k` rows each, or, where too few are, the character classes (digits, upper, lower)
held there by at least `k` rows. No ID is stored, and no character of fewer than `k` rows
shapes the pattern.

Fresh IDs are a bijection of the row number, so they are unique within an export, shard by
shard, with no state shared between shards. They are not checked against real IDs (the model
keeps none); `collision_chance` bounds how often one equals a training ID by chance: the
training IDs of a length over that length's pattern count. A dense key (row numbers as text)
has a high chance by nature; a fresh ID equal to a real one still carries no data of its row.
"""

from __future__ import annotations

import math
import string
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

CLASSES = (string.digits, string.ascii_uppercase, string.ascii_lowercase)
MAX_LENGTH = 128  # longer text is no key anyone types: no pattern, the fallback format
PERIOD = 1024  # row slots per cycle shared out between lengths, by their training rows
_INDEXED_MAX = 2**31  # positions the row number fills (so index * multiplier fits int64)
_GOLDEN = (math.sqrt(5) - 1) / 2
# A position where one character is held by at least this share of the rows (and by `k`) is
# that character: a prefix such as `N` stays one even when a few rows differ there.
DOMINANT_SHARE = 0.9
# A length whose training IDs fill more than this share of its pattern (a dense key, such as
# row numbers) takes whole character classes where it would take the characters seen, so
# fewer fresh IDs equal real ones; the chance that remains is stated (`collision_chance`).
DENSE_SHARE = 0.01


@dataclass(frozen=True)
class IdPattern:
    """One ID length: the characters each position may hold, and its training rows' count."""

    alphabets: tuple[str, ...]
    rows: int

    @property
    def capacity(self) -> float:
        return float(np.prod([float(len(a)) for a in self.alphabets]))


@dataclass(frozen=True)
class IdFormat:
    """Patterns of a text ID column; `salt` varies the IDs between models."""

    patterns: tuple[IdPattern, ...]
    salt: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"patterns": [asdict(p) for p in self.patterns], "salt": self.salt}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> IdFormat:
        patterns = tuple(
            IdPattern(tuple(p["alphabets"]), int(p["rows"])) for p in state["patterns"]
        )
        return cls(patterns, int(state["salt"]))

    @property
    def collision_chance(self) -> float:
        """How often a fresh ID equals a training ID, at most, were they spread evenly over
        their patterns (training IDs of a length / that length's possible IDs, weighted)."""
        total = sum(p.rows for p in self.patterns)
        return sum(p.rows / total * min(1.0, p.rows / p.capacity) for p in self.patterns)

    def generate(self, start: int, n: int) -> np.ndarray:
        """IDs of rows `start` .. `start + n - 1`: unique for distinct row numbers."""
        rows = np.arange(start, start + n, dtype=np.int64)
        out = np.empty(n, dtype=object)
        slots = np.asarray(_slots([p.rows for p in self.patterns]))
        owner, rank = _interleave(slots, self.salt)
        which = owner[rows % PERIOD]
        index = (rows // PERIOD) * slots[which] + rank[rows % PERIOD]
        longest = max(range(len(self.patterns)), key=lambda p: len(self.patterns[p].alphabets))
        overflow = np.zeros(n, dtype=bool)
        for p, pattern in enumerate(self.patterns):
            mine = which == p
            cap = _indexed_capacity(pattern.alphabets)
            overflow |= mine & (index >= cap)
            fits = mine & (index < cap)
            out[fits] = _render(pattern.alphabets, index[fits], rows[fits], self.salt)
        if overflow.any():  # more rows than a length holds: the longest pattern, plus digits
            base = self.patterns[longest].alphabets
            cap = _indexed_capacity(base)
            heads = _render(base, rows[overflow] % cap, rows[overflow], self.salt)
            tails = (rows[overflow] // cap).astype(str)
            out[overflow] = np.char.add(heads.astype(str), tails).astype(object)
        return out


def fit_id_format(values: pd.Series, k: int, salt: int = 0) -> IdFormat | None:
    """The pattern of each ID length held by at least `k` of `values`; None when no length
    is (the caller then numbers the IDs)."""
    text = values.dropna().astype(str).to_numpy(dtype=str)
    if len(text) == 0:
        return None
    lengths = np.char.str_len(text)
    width = text.dtype.itemsize // 4
    chars = np.ascontiguousarray(text).view(np.uint32).reshape(len(text), width)
    patterns = []
    for length, count in zip(*np.unique(lengths, return_counts=True), strict=True):
        if count < k or not 0 < length <= MAX_LENGTH:
            continue
        block = chars[lengths == length, :length]
        pattern = IdPattern(tuple(_alphabet(col, k) for col in block.T), int(count))
        if pattern.rows > DENSE_SHARE * pattern.capacity:  # whole classes: fewer real hits
            pattern = IdPattern(
                tuple(_alphabet(col, k, wide=True) for col in block.T), pattern.rows
            )
        patterns.append(pattern)
    return IdFormat(tuple(patterns), salt) if patterns else None


def _alphabet(codepoints: np.ndarray, k: int, wide: bool = False) -> str:
    """What one position may hold: its one character when (nearly) every row holds the same
    there (`DOMINANT_SHARE`); else the characters held there by at least `k` rows each (so a
    month's first digit stays 0 or 1); else (or when `wide`), where no two are, each class
    (digits, upper, lower) held there by at least `k` rows, in full."""
    uniq, counts = np.unique(codepoints, return_counts=True)
    top = int(np.argmax(counts))
    if counts[top] >= max(k, DOMINANT_SHARE * len(codepoints)):
        return chr(int(uniq[top]))
    held = {chr(int(u)): int(c) for u, c in zip(uniq, counts, strict=True)}
    common = {ch for ch, c in held.items() if c >= k}
    if len(common) >= 2 and not wide:
        return "".join(sorted(common))
    allowed = set(common)
    for chars in CLASSES:
        if sum(held.get(ch, 0) for ch in chars) >= k:
            allowed |= set(chars)
    return "".join(sorted(allowed if len(allowed) >= 2 else set(string.digits)))


def _slots(weights: list[int]) -> list[int]:
    """`PERIOD` slots shared in proportion to `weights` (largest remainders; may hold 0s)."""
    total = sum(weights)
    exact = [PERIOD * w / total for w in weights]
    slots = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - slots[i], reverse=True)
    for i in order[: PERIOD - sum(slots)]:
        slots[i] += 1
    return slots


def _interleave(slots: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Per slot of a cycle: the pattern it goes to (patterns' shares scattered over the
    cycle, not in blocks) and how many earlier slots of the cycle went to that pattern, so
    the first rows of a pattern take its first indices."""
    scattered = (np.arange(PERIOD) * _odd_multiplier(PERIOD) + salt) % PERIOD
    owner = np.searchsorted(np.cumsum(slots), scattered, side="right")
    rank = np.zeros(PERIOD, dtype=np.int64)
    for p in range(len(slots)):
        mine = owner == p
        rank[mine] = np.arange(int(mine.sum()))
    return owner, rank


def _indexed_positions(alphabets: tuple[str, ...]) -> list[int]:
    """The rightmost varying positions whose combinations stay under `_INDEXED_MAX`: the row
    number fills them; the others are filled from a hash of the row number."""
    chosen, cap = [], 1
    for pos in reversed(range(len(alphabets))):
        size = len(alphabets[pos])
        if size > 1 and cap * size <= _INDEXED_MAX:
            chosen.append(pos)
            cap *= size
    return chosen


def _indexed_capacity(alphabets: tuple[str, ...]) -> int:
    return math.prod(len(alphabets[p]) for p in _indexed_positions(alphabets))


def _odd_multiplier(cap: int) -> int:
    """A multiplier coprime to `cap` near its golden section: `j * a % cap` is a bijection that
    scatters consecutive rows."""
    a = max(1, int(cap * _GOLDEN)) | 1
    while math.gcd(a, cap) != 1:
        a += 2
    return a


def _render(alphabets: tuple[str, ...], index: np.ndarray, rows: np.ndarray, salt: int) -> Any:
    """The IDs of distinct `index` values (< the indexed capacity), as an object array."""
    n, length = len(index), len(alphabets)
    if n == 0:
        return np.empty(0, dtype=object)
    cap = _indexed_capacity(alphabets)
    shift = (salt + int(cap * (1 - _GOLDEN))) % cap  # row 0 is not the first ID, 000...
    code = (index * _odd_multiplier(cap) + shift) % cap
    indexed = set(_indexed_positions(alphabets))
    grid = np.empty((n, length), dtype="<U1")
    for pos in reversed(range(length)):
        table = np.array(list(alphabets[pos]), dtype="<U1")
        if len(table) == 1:
            grid[:, pos] = table[0]
        elif pos in indexed:
            grid[:, pos] = table[code % len(table)]
            code = code // len(table)
        else:
            grid[:, pos] = table[_mix(rows, salt * MAX_LENGTH + pos) % np.uint64(len(table))]
    return grid.view(f"<U{length}").ravel().astype(object)


def _mix(rows: np.ndarray, key: int) -> np.ndarray:
    """splitmix64 of (row, key): a fixed pseudo-random number per row and position."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64((key * 0x9E3779B97F4A7C15) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))
