"""Cross-lingual consistency of a codebook: fit on language A, measure on language B.

Measures (reference/metrics-and-data.md §2.5): transfer PNMI/purity (B's phones vs B's units from
A's codebook) beside B's own-codebook PNMI when given; unit-usage overlap (Jensen-Shannon
divergence of p(unit), units used by one language only); and for the phones both languages share,
the JSD of p(unit | phone) and how often the most likely unit is the same.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from obt_eval.errors import BadInputError
from obt_eval.metrics.unit_quality import purity_with_baseline


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JSD in bits (0 = same distribution, 1 = disjoint support)."""
    p = np.asarray(p, float) / np.sum(p)
    q = np.asarray(q, float) / np.sum(q)
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def unit_usage_overlap(units_a: np.ndarray, units_b: np.ndarray, k: int) -> dict:
    """How alike the two languages use the codebook: JSD of p(unit) and units used by only one."""
    ca = np.bincount(np.asarray(units_a), minlength=k)
    cb = np.bincount(np.asarray(units_b), minlength=k)
    if ca.sum() == 0 or cb.sum() == 0:
        raise BadInputError("both languages need unit frames to compare unit usage")
    return {
        "usage_jsd": jensen_shannon(ca, cb),
        "units_only_a": int(((ca > 0) & (cb == 0)).sum()),
        "units_only_b": int(((cb > 0) & (ca == 0)).sum()),
        "units_shared": int(((ca > 0) & (cb > 0)).sum()),
    }


def shared_phone_agreement(phones_a, units_a, phones_b, units_b, k: int, *, min_frames: int = 5) -> dict:
    """For phones both languages have (>= min_frames frames each): mean JSD of p(unit | phone),
    weighted by frames, and the share of phones whose most frequent unit is the same."""
    ta = pd.DataFrame({"phone": np.asarray(phones_a, str), "unit": np.asarray(units_a)})
    tb = pd.DataFrame({"phone": np.asarray(phones_b, str), "unit": np.asarray(units_b)})
    na, nb = ta["phone"].value_counts(), tb["phone"].value_counts()
    shared = sorted(set(na[na >= min_frames].index) & set(nb[nb >= min_frames].index))
    if not shared:
        return {"shared_phones": 0, "shared_phone_jsd": None, "argmax_agreement": None}
    jsds, weights, agree = [], [], 0
    for ph in shared:
        ha = np.bincount(ta.loc[ta["phone"] == ph, "unit"], minlength=k)
        hb = np.bincount(tb.loc[tb["phone"] == ph, "unit"], minlength=k)
        jsds.append(jensen_shannon(ha, hb))
        weights.append(ha.sum() + hb.sum())
        agree += int(ha.argmax() == hb.argmax())
    return {
        "shared_phones": len(shared),
        "shared_phone_jsd": float(np.average(jsds, weights=weights)),
        "argmax_agreement": agree / len(shared),
    }


def crosslingual_consistency(
    phones_a: np.ndarray,
    units_a: np.ndarray,
    phones_b: np.ndarray,
    units_b_transfer: np.ndarray,
    k: int,
    *,
    own_pnmi_b: float | None = None,
    seed: int = 0,
) -> dict:
    """All cross-lingual numbers for a codebook fitted on A: frame-level phones/units of A and of B
    (B's frames assigned with A's codebook). `own_pnmi_b` (B's PNMI with its own codebook) adds the
    transfer drop."""
    transfer = purity_with_baseline(phones_b, units_b_transfer, seed=seed)
    out = {
        "transfer_pnmi": transfer["pnmi"],
        "transfer_phone_purity": transfer["phone_purity"],
        "transfer_cluster_purity": transfer["cluster_purity"],
        "transfer_shuffled_pnmi": transfer["shuffled_pnmi"],
        "source_pnmi": purity_with_baseline(phones_a, units_a, seed=seed)["pnmi"],
    }
    if own_pnmi_b is not None:
        out["own_pnmi_b"] = own_pnmi_b
        out["transfer_pnmi_drop"] = own_pnmi_b - transfer["pnmi"]
    out.update(unit_usage_overlap(units_a, units_b_transfer, k))
    out.update(shared_phone_agreement(phones_a, units_a, phones_b, units_b_transfer, k))
    return out


def assign_with_codebook(features: Mapping[str, np.ndarray], codebook: np.ndarray) -> dict[str, np.ndarray]:
    """Units for each utterance of `features` under a codebook fitted elsewhere (nearest centroid)."""
    from obt_eval.units.kmeans import predict

    return {uid: predict(f, codebook)[0] for uid, f in features.items() if len(f)}
