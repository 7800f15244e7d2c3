"""Run bookkeeping that stays small over a three-day run: which time points something
happened at (one bit each), and the light-dose ledger's comparator counted from it."""

from __future__ import annotations

import sys

import numpy as np

from acquire_vf._frames import Frame, FrameId
from acquire_vf._stats import Thinned, TimePoints
from acquire_vf.acquisition._dose import DoseLedger
from acquire_vf.config import demo_variant


def test_time_points_mark_count_and_combine() -> None:
    a, b = TimePoints(), TimePoints()
    for t in (0, 7, 8, 1000):
        a.add(0, t)
    a.add(0, 7)  # twice: once
    b.add(0, 3)
    b.add(1, 5)
    assert a.count() == 4 and (0, 1000) in a and (0, 999) not in a and (1, 0) not in a
    assert np.flatnonzero(a.mask(0)).tolist() == [0, 7, 8, 1000]
    both = a.union(b)
    assert both.count() == 6 and sorted(both) == [0, 1] and (1, 5) in both
    assert a.count() == 4  # union leaves its operands alone


def test_a_million_time_points_keep_about_125_kb() -> None:
    tp = TimePoints()
    for t in range(1_000_000):
        tp.add(0, t)
    assert tp.count() == 1_000_000
    size = sum(sys.getsizeof(b) for b in tp._bits.values())
    assert size < 250_000, size  # a set of (t, p) tuples held about 100 MB


def test_the_ledger_counts_planes_and_zscans_as_sets_did() -> None:
    """Two positions x two z planes, a z-scan every 3 time points, focus checked at some:
    the comparator's planes, z-scans and the z-scans that checking made unnecessary, against
    the same counted with sets of tuples."""
    profile = demo_variant({"autofocus": {"zscan_every": 3}})
    ledger = DoseLedger(profile)
    rng = np.random.default_rng(1)
    planes = {(t, p, z) for t in range(40) for p in (0, 1) for z in (0, 1)
              if rng.random() < 0.8}
    for t, p, z in sorted(planes):
        ledger.taken(Frame(id=FrameId(t, p, z, "AGP"), pixels=np.zeros((2, 2), np.uint16),
                           seq=0, elapsed_ms=0.0))
    checked_pairs = {(t, p) for t in range(0, 40, 2) for p in (0, 1)}
    checked = TimePoints()
    for t, p in checked_pairs:
        checked.add(p, t)
    rep = ledger.report(checked)
    due = {(t, p) for t, p, _ in planes if t % 3 == 0}
    proto = rep["comparator_protocol"]
    assert proto["planes"] == len(planes) and proto["zscans"] == len(due)
    focus_dose = ledger.dose[profile.autofocus.zscan_channel or profile.channels[0].name]
    assert rep["saved_by_cause"]["virtual_refocus"] == round(
        len(due & checked_pairs) * profile.autofocus.zscan_planes * focus_dose, 2)


def test_a_thinned_record_keeps_an_even_sample_of_a_run_of_any_length() -> None:
    """At most ``cap`` rows, evenly spaced from the first, for runs far longer than the cap;
    ``total`` counts every row; a run shorter than the cap keeps every row."""
    short = Thinned(10)
    for i in range(9):
        short.append(i)
    assert list(short) == list(range(9)) and short.total == 9 and short.stride == 1
    for n, cap in ((100_000, 2_000), (3_000, 2_000), (12_345, 64)):
        rec = Thinned(cap)
        for i in range(n):
            rec.append({"t": i})
        ts = [r["t"] for r in rec]
        assert len(rec) < cap and rec.total == n
        assert ts[0] == 0 and len(ts) >= cap // 2 - 1  # never fewer than half the cap
        gaps = set(np.diff(ts))
        assert gaps == {rec.stride}  # even: every stride-th row, none missing between
        assert n - 1 - ts[-1] < 2 * rec.stride  # it reaches the end of the run
