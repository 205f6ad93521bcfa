"""Multi-touch attribution: which channels earned the conversions and the revenue.

Input is a set of journeys (:class:`Journeys`): each a path of touchpoints (channels, in time order) ending in
some conversions with a value, or in nulls (journeys that did not convert). Rows may be single journeys or
aggregated paths (a path with its conversion and null counts), as Google Analytics and the ChannelAttribution
package export them.

Models, each returning conversions and value per channel (:class:`Attribution`):

- :func:`first_touch`, :func:`last_touch`, :func:`linear`: the whole credit to the first / last touch, or
  shared equally by every touch (a channel touched twice gets two shares).
- :func:`time_decay`: a touch's weight halves every ``half_life_days`` before the conversion (needs touch
  times: ``Journeys.ages``, days between the touch and the journey's end).
- :func:`position_based`: 40 % first, 40 % last, 20 % shared by the touches between (configurable); a path of
  two touches splits in the ratio first:last, a path of one gives it everything.
- :func:`markov`: the removal effect on an absorbing Markov chain of order k (states are the last k channels;
  a path's first k-1 states are its shorter prefixes), solved exactly with linear algebra (no simulation).
  Removing a channel sends every state that contains it to "null"; a channel's share of the conversions is its
  removal effect over the sum of all removal effects (ChannelAttribution's definition). Value is attributed the
  same way from the expected value of the chain, where a conversion leaving a state is worth the mean value of
  the conversions that left it.
- :func:`shapley`: the Shapley value of the game v(S) = conversions (value) of the journeys whose set of
  channels is a subset of S. That game is a sum of unanimity games, one per channel set T with weight
  w(T) = conversions of the journeys whose channel set is exactly T, so the Shapley value is exact in closed
  form: each journey's conversions are shared equally by its distinct channels, for any number of channels.
  :func:`shapley_by_subsets` computes the same by enumerating all 2^n coalitions (the textbook formula; kept
  for checking and for the conversion-rate game ``characteristic="rate"``, which has no closed form) and refuses
  more than :data:`SHAPLEY_MAX_CHANNELS` channels: 2^20 coalitions take about a second and 8 MiB per array;
  every further channel doubles both.

A lookback window (:meth:`Journeys.lookback`) drops touches older than N days before the journey's end;
journeys left without a touch cannot be credited to any channel and are reported as unattributed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from omnijourney.core.errors import Invalid

SEPARATOR = " > "
SHAPLEY_MAX_CHANNELS = 20
MODELS = ("first_touch", "last_touch", "linear", "time_decay", "position_based", "markov", "shapley")


@dataclass(frozen=True)
class Journeys:
    """Journeys in columnar form: the touches of journey i are ``touches[offsets[i]:offsets[i + 1]]``.

    ``touches`` holds channel codes (indexes into ``channels``); ``ages`` (optional) the days between each touch
    and its journey's end (the conversion, or the end of observation for a journey that did not convert).
    """

    channels: tuple[str, ...]
    offsets: np.ndarray  # int64, len n + 1
    touches: np.ndarray  # int64 channel codes
    conversions: np.ndarray  # float64, len n
    value: np.ndarray  # float64, len n
    nulls: np.ndarray  # float64, len n
    ages: np.ndarray | None = None  # float64 per touch

    def __post_init__(self) -> None:
        n = len(self.offsets) - 1
        if n < 0 or self.offsets[0] != 0 or self.offsets[-1] != len(self.touches):
            raise Invalid("offsets do not cover the touches", field="offsets")
        for name in ("conversions", "value", "nulls"):
            arr = getattr(self, name)
            if len(arr) != n:
                raise Invalid(f"{name} has {len(arr)} entries for {n} journeys", field=name)
            if len(arr) and (not np.all(np.isfinite(arr)) or arr.min() < 0):
                raise Invalid(f"{name} must be finite and not negative", field=name)
        if self.ages is not None and len(self.ages) != len(self.touches):
            raise Invalid(f"ages has {len(self.ages)} entries for {len(self.touches)} touches", field="ages")
        if len(self.touches) and (self.touches.min() < 0 or self.touches.max() >= len(self.channels)):
            raise Invalid("a touch refers to no channel", field="touches")

    # -- construction -------------------------------------------------------------------------------------------

    @classmethod
    def from_codes(cls, channels: Sequence[str], lengths: Sequence[int] | np.ndarray,
                   touches: Sequence[int] | np.ndarray, conversions: Sequence[float] | np.ndarray,
                   value: Sequence[float] | np.ndarray | None = None, nulls: Sequence[float] | np.ndarray | None = None,
                   ages: Sequence[float] | np.ndarray | None = None) -> Journeys:
        """Journeys from arrays: ``lengths[i]`` touches per journey, ``touches`` their channel codes, flattened."""
        lengths = np.asarray(lengths, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        n = len(lengths)
        conv = np.asarray(conversions, dtype=np.float64)
        return cls(tuple(channels), offsets, np.asarray(touches, dtype=np.int64), conv,
                   np.zeros(n) if value is None else np.asarray(value, dtype=np.float64),
                   np.zeros(n) if nulls is None else np.asarray(nulls, dtype=np.float64),
                   None if ages is None else np.asarray(ages, dtype=np.float64))

    @classmethod
    def from_paths(cls, paths: Iterable[str | Sequence[str]], conversions: Iterable[float],
                   value: Iterable[float] | None = None, nulls: Iterable[float] | None = None,
                   ages: Iterable[Sequence[float]] | None = None) -> Journeys:
        """Journeys from paths, each a sequence of channel names or one string joined by ``" > "``.

        ``ages``, if given, holds per path the days between each touch and the journey's end.
        """
        codes: dict[str, int] = {}
        flat: list[int] = []
        lengths: list[int] = []
        for path in paths:
            names = [c.strip() for c in path.split(">")] if isinstance(path, str) else list(path)
            for name in names:
                code = codes.get(name)
                if code is None:
                    code = codes[name] = len(codes)
                flat.append(code)
            lengths.append(len(names))
        conv = np.fromiter(conversions, dtype=np.float64, count=len(lengths))
        val = None if value is None else np.fromiter(value, dtype=np.float64, count=len(lengths))
        nul = None if nulls is None else np.fromiter(nulls, dtype=np.float64, count=len(lengths))
        age = None
        if ages is not None:
            age_list = [list(a) for a in ages]
            if [len(a) for a in age_list] != lengths:
                raise Invalid("ages must have one entry per touch of each path", field="ages")
            age = np.fromiter((x for a in age_list for x in a), dtype=np.float64, count=len(flat))
        return cls.from_codes(tuple(codes), lengths, flat, conv, val, nul, age)

    @classmethod
    def from_touches(cls, journey: Sequence[Any] | np.ndarray, channel: Sequence[str] | np.ndarray,
                     time: Sequence[Any] | np.ndarray, *, journeys: Sequence[Any] | np.ndarray,
                     conversions: Sequence[float] | np.ndarray, value: Sequence[float] | np.ndarray | None = None,
                     end: Sequence[Any] | np.ndarray | None = None) -> Journeys:
        """Journeys from touches in long form (one row per touch, in any order), as a query returns them.

        ``journey``/``channel``/``time`` are per touch; ``journeys`` lists each journey's id once, with its
        ``conversions`` (0 for a journey that did not convert: it then counts as one null), ``value`` and
        ``end`` (the conversion's time, or the end of observation; default: the journey's last touch). Times are
        ``datetime64`` (or numbers of days). Touches of unknown journeys are refused.
        """
        ids = np.asarray(journeys)
        jid_sorted = np.argsort(ids, kind="stable")
        touch_j = np.asarray(journey)
        pos = np.searchsorted(ids[jid_sorted], touch_j)
        pos = np.minimum(pos, len(ids) - 1) if len(ids) else pos
        if len(touch_j) and (len(ids) == 0 or not np.array_equal(ids[jid_sorted][pos], touch_j)):
            raise Invalid("a touch belongs to no listed journey", field="journey")
        jidx = jid_sorted[pos] if len(touch_j) else np.zeros(0, dtype=np.int64)
        t = _as_days(time)
        order = np.lexsort((t, jidx))
        names, codes = np.unique(np.asarray(channel, dtype=object).astype(str), return_inverse=True)
        conv = np.asarray(conversions, dtype=np.float64)
        end_days = _as_days(end) if end is not None else None
        if end_days is None:
            end_days = np.full(len(ids), -np.inf)
            np.maximum.at(end_days, jidx, t)
        ages = np.maximum(end_days[jidx[order]] - t[order], 0.0)
        return cls.from_codes(tuple(str(n) for n in names), np.bincount(jidx, minlength=len(ids)),
                              codes.reshape(-1)[order], conv, value, (conv == 0).astype(np.float64), ages)

    # -- views --------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def journey_of_touch(self) -> np.ndarray:
        """For each touch, the index of its journey."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def position_of_touch(self) -> np.ndarray:
        """For each touch, its 0-based position in its journey."""
        return np.arange(len(self.touches), dtype=np.int64) - np.repeat(self.offsets[:-1], self.lengths)

    def path(self, i: int) -> tuple[str, ...]:
        return tuple(self.channels[c] for c in self.touches[self.offsets[i]:self.offsets[i + 1]])

    def select(self, keep: np.ndarray) -> Journeys:
        """The journeys where ``keep`` (a boolean mask over journeys) is true."""
        lengths = self.lengths[keep]
        touch_keep = np.repeat(keep, self.lengths)
        return Journeys.from_codes(self.channels, lengths, self.touches[touch_keep], self.conversions[keep],
                                   self.value[keep], self.nulls[keep],
                                   None if self.ages is None else self.ages[touch_keep])

    def lookback(self, days: float) -> tuple[Journeys, Journeys]:
        """(kept, unattributed): touches older than ``days`` before their journey's end dropped.

        Journeys with no touch left are returned apart: no channel can be credited with them.
        """
        if self.ages is None:
            raise Invalid("a lookback window needs touch times (days before the conversion)", field="lookback_days")
        if not days > 0:
            raise Invalid("the lookback window must be more than 0 days", field="lookback_days")
        touch_keep = self.ages <= days
        lengths = np.bincount(self.journey_of_touch()[touch_keep], minlength=len(self)).astype(np.int64)
        trimmed = Journeys.from_codes(self.channels, lengths, self.touches[touch_keep], self.conversions,
                                      self.value, self.nulls, self.ages[touch_keep])
        nonempty = lengths > 0
        return trimmed.select(nonempty), trimmed.select(~nonempty)

    def aggregated(self) -> Journeys:
        """Identical paths merged into one row (conversions, value and nulls summed); touch times are dropped."""
        if len(self) == 0:
            return Journeys.from_codes(self.channels, [], [], [], [], [])
        # Each path as a fixed-width row of codes (+1, 0 pads), hashed by np.unique over rows.
        lengths = self.lengths
        width = int(lengths.max())
        grid = np.zeros((len(self), width), dtype=np.int64 if len(self.channels) >= 2**15 else np.int16)
        grid[self.journey_of_touch(), self.position_of_touch()] = self.touches + 1
        uniq, inverse = np.unique(grid, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        m = len(uniq)
        new_lengths = np.count_nonzero(uniq, axis=1)
        return Journeys.from_codes(self.channels, new_lengths, uniq[uniq > 0].astype(np.int64) - 1,
                                   np.bincount(inverse, self.conversions, m), np.bincount(inverse, self.value, m),
                                   np.bincount(inverse, self.nulls, m))


def _as_days(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Times as float days: datetime64 values (any unit) or plain numbers taken as days."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ms]").astype(np.int64) / 86_400_000.0
    if arr.dtype == object:
        return np.asarray(arr.astype("datetime64[ms]").astype(np.int64) / 86_400_000.0)
    return arr.astype(np.float64)


@dataclass
class Attribution:
    """One model's result: conversions and value credited to each channel (same order as ``channels``)."""

    model: str
    channels: tuple[str, ...]
    conversions: np.ndarray
    value: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)
    touched: np.ndarray | None = None  # which channels the journeys touched (None: all)

    def as_dict(self, digits: int = 6) -> dict[str, Any]:
        """{channel: {"conversions": x, "value": y}} for the channels touched, most conversions first."""
        shown = [i for i in range(len(self.channels)) if self.touched is None or self.touched[i]]
        order = sorted(shown, key=lambda i: (-self.conversions[i], self.channels[i]))
        return {self.channels[i]: {"conversions": round(float(self.conversions[i]), digits),
                                   "value": round(float(self.value[i]), digits)} for i in order}

    def credit(self, channel: str) -> tuple[float, float]:
        """(conversions, value) credited to ``channel`` (0, 0 for a channel never touched)."""
        try:
            i = self.channels.index(channel)
        except ValueError:
            return 0.0, 0.0
        return float(self.conversions[i]), float(self.value[i])


# -- rule-based models ------------------------------------------------------------------------------------------


def _credit(model: str, j: Journeys, weights: np.ndarray, details: dict | None = None) -> Attribution:
    """Sum per channel each touch's weight (its share of its journey) times its journey's conversions and value."""
    jid = j.journey_of_touch()
    c = len(j.channels)
    conv = np.bincount(j.touches, weights=weights * j.conversions[jid], minlength=c)
    val = np.bincount(j.touches, weights=weights * j.value[jid], minlength=c)
    return Attribution(model, j.channels, conv, val, details or {}, _touched(j))


def _touched(j: Journeys) -> np.ndarray:
    return np.bincount(j.touches, minlength=len(j.channels)) > 0


def first_touch(j: Journeys) -> Attribution:
    """Everything to the first touch of each journey."""
    return _credit("first_touch", j, (j.position_of_touch() == 0).astype(np.float64))


def last_touch(j: Journeys) -> Attribution:
    """Everything to the last touch of each journey."""
    last = j.position_of_touch() == np.repeat(j.lengths, j.lengths) - 1
    return _credit("last_touch", j, last.astype(np.float64))


def linear(j: Journeys) -> Attribution:
    """An equal share to every touch."""
    return _credit("linear", j, 1.0 / np.repeat(j.lengths, j.lengths))


def time_decay(j: Journeys, half_life_days: float = 7.0) -> Attribution:
    """Shares proportional to 2^(-age / half_life): a touch a half-life earlier counts half as much."""
    if j.ages is None:
        raise Invalid("time decay needs touch times (days before the conversion)", field="ages")
    if not half_life_days > 0:
        raise Invalid("the half-life must be more than 0 days", field="half_life_days")
    # relative to each journey's most recent touch, so that weights never underflow to 0 for old journeys
    jid = j.journey_of_touch()
    newest = np.full(len(j), np.inf)
    np.minimum.at(newest, jid, j.ages)
    raw = np.exp2(-(j.ages - newest[jid]) / half_life_days)
    total = np.bincount(jid, weights=raw, minlength=len(j))
    return _credit("time_decay", j, raw / total[jid], {"half_life_days": half_life_days})


def position_based(j: Journeys, first: float = 0.4, last: float = 0.4) -> Attribution:
    """``first`` to the first touch, ``last`` to the last, the rest shared by the touches between.

    Two touches share in the ratio first:last (half each by default); one touch takes everything.
    """
    if first < 0 or last < 0 or first + last > 1 + 1e-12:
        raise Invalid("position-based shares must be >= 0 with first + last <= 1", field="position")
    pos = j.position_of_touch()
    length = np.repeat(j.lengths, j.lengths)
    middle = (1.0 - first - last) / np.maximum(length - 2, 1)
    w = np.where(pos == 0, first, np.where(pos == length - 1, last, middle))
    two_first = first / (first + last) if first + last > 0 else 0.5
    w = np.where(length == 2, np.where(pos == 0, two_first, 1.0 - two_first), w)
    w = np.where(length == 1, 1.0, w)
    return _credit("position_based", j, w, {"first": first, "middle": 1.0 - first - last, "last": last})


# -- Markov chain ----------------------------------------------------------------------------------------------


_DENSE_KEYS = 50_000_000  # below this many possible keys, compact them with a lookup table instead of sorting


def _compact(key: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys in order, index of each key among them), like np.unique(return_inverse=True).

    Keys lie in [0, bound); for a small bound a lookup table does it in linear time (np.unique sorts: 2.8 s of a
    million journeys' 3.3 million touches).
    """
    if bound <= _DENSE_KEYS:  # a table of one byte per possible key
        seen = np.zeros(bound, dtype=bool)
        seen[key] = True
        uniq = np.flatnonzero(seen)
        return uniq, np.searchsorted(uniq, key)
    uniq, inverse = np.unique(key, return_inverse=True)
    return uniq, inverse.reshape(-1)


def _states(j: Journeys, order: int) -> tuple[np.ndarray, np.ndarray]:
    """(state of each touch, channel tuples of the states as an (S, order) array, -1 padded)."""
    pos = j.position_of_touch()
    c = len(j.channels)
    cols = []
    for m in range(order):  # m-th previous channel, -1 where the path is shorter
        prev = np.full(len(j.touches), -1, dtype=np.int64)
        ok = pos >= m
        idx = np.nonzero(ok)[0]
        prev[idx] = j.touches[idx - m]
        cols.append(prev)
    if order == 1:
        uniq, inverse = _compact(cols[0], c)
        return inverse, uniq.reshape(-1, 1)
    if (c + 1) ** order < 2**62:  # one integer key per tuple: far faster than unique rows
        key = np.zeros(len(j.touches), dtype=np.int64)
        for col in cols:
            key = key * (c + 1) + (col + 1)
        uniq, inverse = _compact(key, (c + 1) ** order)
        tuples = np.empty((len(uniq), order), dtype=np.int64)
        rest = uniq.copy()
        for m in range(order - 1, -1, -1):
            tuples[:, m] = rest % (c + 1) - 1
            rest //= c + 1
        return inverse, tuples
    stacked = np.stack(cols, axis=1)
    uniq, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return inverse.reshape(-1), uniq


def _absorb(q_rows: np.ndarray, q_cols: np.ndarray, q_w: np.ndarray, out: np.ndarray, rhs: np.ndarray,
            keep: np.ndarray, start: int) -> np.ndarray:
    """Absorption from ``start`` for each right-hand side column, on the chain restricted to ``keep`` states.

    States not kept are absorbing with nothing gained (a removed channel leads to "null").
    """
    from scipy.sparse import csc_matrix, identity
    from scipy.sparse.linalg import splu

    idx = np.cumsum(keep) - 1  # new index of each kept state
    ok = keep[q_rows] & keep[q_cols]
    k = int(keep.sum())
    probs = q_w[ok] / out[q_rows[ok]]
    if k <= 400:  # small chains: dense LAPACK is faster than a sparse factorisation
        a = np.eye(k)
        np.subtract.at(a, (idx[q_rows[ok]], idx[q_cols[ok]]), probs)
        x = np.linalg.solve(a, rhs[keep])
    else:
        q = csc_matrix((probs, (idx[q_rows[ok]], idx[q_cols[ok]])), shape=(k, k))
        x = splu((identity(k, format="csc") - q).tocsc()).solve(np.ascontiguousarray(rhs[keep]))
    return x[idx[start]]


def markov(j: Journeys, order: int = 1) -> Attribution:
    """Removal-effect attribution on an absorbing Markov chain of the given order, solved exactly.

    ``details`` holds the removal effects (for conversions and for value), the chain's conversion probability
    and expected value per journey, and its number of states.
    """
    if not (isinstance(order, int) and 1 <= order <= 10):
        raise Invalid("the Markov order must be a whole number from 1 to 10", field="order")
    c = len(j.channels)
    weight = j.conversions + j.nulls
    live = (weight > 0) & (j.lengths > 0)
    if not live.all():
        j = j.select(live)
        weight = weight[live]
    total_conv = float(j.conversions.sum())
    total_value = float(j.value.sum())
    if len(j) == 0 or total_conv == 0:
        zero = np.zeros(c)
        return Attribution("markov", j.channels, zero, zero.copy(),
                           {"order": order, "states": 0, "conversion_probability": 0.0,
                            "removal_effects": {}, "removal_effects_value": {}}, _touched(j))
    state, tuples = _states(j, order)
    s = len(tuples)
    start = s  # the start state; absorbing "conversion" and "null" are kept outside the matrix
    jid = j.journey_of_touch()
    pos = j.position_of_touch()
    lengths = j.lengths
    is_last = pos == np.repeat(lengths, lengths) - 1
    nxt = np.nonzero(~is_last)[0]
    first_idx = j.offsets[:-1]
    last_idx = j.offsets[1:] - 1
    # transitions between transient states (start included) with their weights (journeys through them)
    rows = np.concatenate([state[nxt], np.full(len(j), start)])
    cols = np.concatenate([state[nxt + 1], state[first_idx]])
    w = np.concatenate([weight[jid[nxt]], weight])
    key = rows * (s + 1) + cols
    ukey, inv = _compact(key, (s + 1) ** 2)
    q_w = np.bincount(inv, weights=w)
    q_rows, q_cols = ukey // (s + 1), ukey % (s + 1)
    last_state = state[last_idx]
    to_conv = np.bincount(last_state, weights=j.conversions, minlength=s + 1)
    to_value = np.bincount(last_state, weights=j.value, minlength=s + 1)
    to_null = np.bincount(last_state, weights=j.nulls, minlength=s + 1)
    out = np.bincount(q_rows, weights=q_w, minlength=s + 1) + to_conv + to_null
    rhs = np.stack([to_conv / out, to_value / out], axis=1)  # per step: P(convert now), E[value gained now]

    keep_all = np.ones(s + 1, dtype=bool)
    base_conv, base_value = _absorb(q_rows, q_cols, q_w, out, rhs, keep_all, start)
    # channels touched by each state, as a (channel, state) incidence
    present = np.unique(j.touches)
    removal = np.zeros(c)
    removal_value = np.zeros(c)
    for ch in present:
        keep = np.ones(s + 1, dtype=bool)
        keep[:s] = ~(tuples == ch).any(axis=1)
        conv_without, value_without = _absorb(q_rows, q_cols, q_w, out, rhs, keep, start)
        removal[ch] = 1.0 - conv_without / base_conv if base_conv > 0 else 0.0
        removal_value[ch] = 1.0 - value_without / base_value if base_value > 0 else 0.0
    removal = np.clip(removal, 0.0, None)  # rounding can leave -1e-16 on a channel that changes nothing
    removal_value = np.clip(removal_value, 0.0, None)
    conv_share = removal / removal.sum() if removal.sum() > 0 else removal
    value_share = removal_value / removal_value.sum() if removal_value.sum() > 0 else removal_value
    details = {
        "order": order,
        "states": s,
        "conversion_probability": float(base_conv),
        "value_per_journey": float(base_value),
        "removal_effects": {j.channels[i]: round(float(removal[i]), 6) for i in present},
        "removal_effects_value": {j.channels[i]: round(float(removal_value[i]), 6) for i in present},
    }
    return Attribution("markov", j.channels, conv_share * total_conv, value_share * total_value, details,
                       _touched(j))


# -- Shapley value ---------------------------------------------------------------------------------------------


def _distinct_touches(j: Journeys) -> tuple[np.ndarray, np.ndarray]:
    """(journey, channel) pairs with each channel once per journey."""
    c = max(len(j.channels), 1)
    pairs, _ = _compact(j.journey_of_touch() * c + j.touches, len(j) * c)
    return pairs // c, pairs % c


def shapley(j: Journeys) -> Attribution:
    """Exact Shapley values of v(S) = conversions (value) of the journeys whose channel set lies within S.

    Closed form (see the module docstring): each journey's conversions and value are shared equally by its
    distinct channels; exact for any number of channels, and equal to :func:`shapley_by_subsets`.
    """
    jid, ch = _distinct_touches(j)
    distinct = np.bincount(jid, minlength=len(j)).astype(np.float64)
    share = 1.0 / distinct[jid]
    c = len(j.channels)
    conv = np.bincount(ch, weights=share * j.conversions[jid], minlength=c)
    val = np.bincount(ch, weights=share * j.value[jid], minlength=c)
    return Attribution("shapley", j.channels, conv, val, {"characteristic": "conversions", "method": "closed form"},
                       _touched(j))


def shapley_by_subsets(j: Journeys, characteristic: str = "conversions") -> Attribution:
    """Shapley values by enumerating every coalition of the channels present (at most SHAPLEY_MAX_CHANNELS).

    ``characteristic``: ``"conversions"`` (v(S) = conversions, and value, of the journeys whose channel set is a
    subset of S) or ``"rate"`` (v(S) = conversions per journey among those journeys; the values are then scaled
    so that they add up to the total conversions and value). Above the cap this raises :class:`Invalid`: the
    work and memory double with each channel (2^n coalitions); group rare channels, or use :func:`shapley`,
    which is exact at any size for the conversions game.
    """
    if characteristic not in ("conversions", "rate"):
        raise Invalid("characteristic must be 'conversions' or 'rate'", field="characteristic")
    present = np.unique(j.touches)
    n = len(present)
    c = len(j.channels)
    if n > SHAPLEY_MAX_CHANNELS:
        raise Invalid(f"exact Shapley over {n} channels needs 2^{n} coalitions; the limit is "
                      f"{SHAPLEY_MAX_CHANNELS} channels: group the rare ones", field="channels")
    if n == 0:
        return Attribution("shapley", j.channels, np.zeros(c), np.zeros(c), {"characteristic": characteristic})
    bit = np.zeros(c, dtype=np.int64)
    bit[present] = 1 << np.arange(n, dtype=np.int64)
    masks = np.zeros(len(j), dtype=np.int64)
    nonempty = j.lengths > 0
    masks[nonempty] = np.bitwise_or.reduceat(bit[j.touches], j.offsets[:-1][nonempty])
    size = 1 << n

    def subset_sums(weights: np.ndarray) -> np.ndarray:
        # zeta transform: f(S) = sum over T subset of S of w(T)
        f = np.bincount(masks, weights=weights, minlength=size)
        for i in range(n):
            view = f.reshape(-1, 2, 1 << i)
            view[:, 1, :] += view[:, 0, :]
        return f

    conv_v = subset_sums(j.conversions)
    value_v = subset_sums(j.value)
    if characteristic == "rate":
        journeys_v = subset_sums(j.conversions + j.nulls)
        with np.errstate(invalid="ignore", divide="ignore"):
            conv_v = np.where(journeys_v > 0, conv_v / journeys_v, 0.0)
            value_v = np.where(journeys_v > 0, value_v / journeys_v, 0.0)
    popcount = np.zeros(size, dtype=np.int64)
    for i in range(n):
        popcount.reshape(-1, 2, 1 << i)[:, 1, :] += 1
    # coefficient |S|! (n - |S| - 1)! / n! for a coalition S without the player
    coef = np.array([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)])
    phi_c = np.zeros(n)
    phi_v = np.zeros(n)
    for i in range(n):
        sizes = popcount.reshape(-1, 2, 1 << i)[:, 0, :]
        wgt = coef[sizes]
        cv = conv_v.reshape(-1, 2, 1 << i)
        vv = value_v.reshape(-1, 2, 1 << i)
        phi_c[i] = float((wgt * (cv[:, 1, :] - cv[:, 0, :])).sum())
        phi_v[i] = float((wgt * (vv[:, 1, :] - vv[:, 0, :])).sum())
    if characteristic == "rate":
        phi_c = phi_c / phi_c.sum() * j.conversions.sum() if phi_c.sum() else phi_c
        phi_v = phi_v / phi_v.sum() * j.value.sum() if phi_v.sum() else phi_v
    conv = np.zeros(c)
    val = np.zeros(c)
    conv[present] = phi_c
    val[present] = phi_v
    return Attribution("shapley", j.channels, conv, val, {"characteristic": characteristic, "method": "subsets"},
                       _touched(j))


# -- all models at once ----------------------------------------------------------------------------------------


def _totals(j: Journeys) -> dict[str, float]:
    return {"journeys": len(j), "conversions": round(float(j.conversions.sum()), 6),
            "value": round(float(j.value.sum()), 6), "nulls": round(float(j.nulls.sum()), 6)}


def attribute_all(j: Journeys, *, lookback_days: float | None = None, order: int = 1,
                  half_life_days: float = 7.0, position: tuple[float, float] = (0.4, 0.4)) -> dict[str, Any]:
    """Every model on the same journeys, as a JSON-ready dict: ``models.<name>.channels.<channel>`` holds
    ``conversions`` and ``value``, beside the model's parameters (and the Markov chain's removal effects).

    Time decay is skipped (with the reason) when the journeys carry no touch times.
    """
    out: dict[str, Any] = {"input": _totals(j)}
    if lookback_days is not None:
        j, dropped = j.lookback(lookback_days)
        out["lookback_days"] = lookback_days
        out["unattributed"] = _totals(dropped) | {"reason": "no touch within the lookback window"}
    out["attributed"] = _totals(j)
    models: dict[str, Any] = {
        "first_touch": {"channels": first_touch(j).as_dict()},
        "last_touch": {"channels": last_touch(j).as_dict()},
        "linear": {"channels": linear(j).as_dict()},
    }
    if j.ages is not None:
        models["time_decay"] = {"half_life_days": half_life_days, "channels": time_decay(j, half_life_days).as_dict()}
    else:
        models["time_decay"] = {"skipped": "needs touch times (a days_before column)"}
    pb = position_based(j, *position)
    models["position_based"] = pb.details | {"channels": pb.as_dict()}
    mk = markov(j, order)
    models["markov"] = {k: v for k, v in mk.details.items()} | {"channels": mk.as_dict()}
    models["shapley"] = {"characteristic": "conversions of journeys whose channel set is a subset",
                         "channels": shapley(j).as_dict()}
    out["models"] = models
    return out


def summarise(results: Mapping[str, Attribution]) -> dict[str, dict[str, dict[str, float]]]:
    """{model: {channel: {"conversions", "value"}}} for several results."""
    return {name: a.as_dict() for name, a in results.items()}
