"""How well an automatic judge ranked the systems the way the raters did: rank correlation over systems.

Spearman's rho and Kendall's tau-b between the per-system predicted score and the per-system human MOS,
over the systems both have. With fewer than three systems a rank correlation says nothing: None, with
the reason.
"""

from __future__ import annotations

from collections.abc import Mapping


def rank_agreement(predicted: Mapping[str, float | None], human: Mapping[str, float | None]) -> dict:
    from scipy.stats import kendalltau, spearmanr

    systems = sorted(s for s in predicted if s in human and predicted[s] is not None and human[s] is not None)
    out: dict = {"systems": systems, "n_systems": len(systems), "spearman": None, "spearman_p": None,
                 "kendall": None, "kendall_p": None}
    if len(systems) < 3:
        out["reason"] = "fewer than three systems with both a predicted and a human score"
        return out
    x = [float(predicted[s]) for s in systems]
    y = [float(human[s]) for s in systems]
    rho, p_rho = spearmanr(x, y)
    tau, p_tau = kendalltau(x, y)
    out.update(spearman=round(float(rho), 4), spearman_p=round(float(p_rho), 4),
               kendall=round(float(tau), 4), kendall_p=round(float(p_tau), 4))
    return out
