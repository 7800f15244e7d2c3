"""What a verification policy would have done, replayed over data that holds the truth.

``acquire-vf replay DATASET --profile P`` on a dataset in which the profile's virtual channels
were exposed physically at every time point plays the physical inputs through the engines and
the verification policy: a virtual channel's recorded frame is used only where the policy
exposes it (sentinels, suspect, physical). Afterwards every virtual frame the policy would
have relied on (its channel not exposed at that plane) is compared with the recorded truth:
the bad ones (outside the acceptance band) are what the policy let through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acquire_vf.acquisition._verify import Verifier
from acquire_vf.fidelity import outside_band, pair_fidelity
from acquire_vf.storage import open_dataset


def policy_report(source: Path, result: Path, verifier: Verifier,
                  saved: dict[str, Any]) -> dict[str, Any]:
    """Per verified channel: virtual frames relied on, bad ones let through (and when);
    with the light the policy saved (the ledger's net saving)."""
    (src,) = open_dataset(source)
    (out,) = open_dataset(result)
    truth = {(r["t"], r["p"], r["z"], r["channel"]): r for r in src.records
             if r.get("role", "physical") == "physical"}
    exposed = {(r["t"], r["p"], r["z"], r["channel"]) for r in out.records
               if r["role"] == "physical"}
    channels: dict[str, Any] = {}
    for c, spec in verifier.channels.items():
        relied = bad = 0
        bad_at: list[dict[str, Any]] = []
        for r in out.records:
            key = (r["t"], r["p"], r["z"], c)
            if r["channel"] != c or r["role"] != "virtual" or key in exposed or key not in truth:
                continue
            fid = pair_fidelity(out.read(r), src.read(truth[key]), spec.low, spec.high)
            relied += 1
            why = outside_band(fid, spec.band)
            if why:
                bad += 1
                if len(bad_at) < 100:
                    bad_at.append({"t": r["t"], "p": r["p"], "why": "; ".join(why)})
        channels[c] = {"virtual_relied_on": relied, "bad_let_through": bad, "bad_at": bad_at,
                       "truth_frames": sum(1 for k in truth if k[3] == c)}
    return {"source": str(source), "light_saved_net": saved.get("saved_net"),
            "light_saved_fraction": saved.get("saved_fraction"), "channels": channels}
