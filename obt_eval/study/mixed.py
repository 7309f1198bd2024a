"""A fast crossed linear mixed model (REML) for listening tests: raters × utterances, intercepts and slopes.

Why not statsmodels ``MixedLM`` directly: it is group-based, so crossed raters × utterances go through
variance components over one all-encompassing group and take about half a second per fit; the
false-positive simulation needs hundreds of fits. This module fits the same model — independent
variance components, i.e. lme4's ``(1 | rater) + (0 + system | rater) + …`` — with the profiled REML
deviance of Bates et al. (2015, lme4 §3), computed from cross-products so each evaluation costs one
small Cholesky factorisation. Tests check it against statsmodels.

Inference on a fixed effect uses a t distribution with Satterthwaite degrees of freedom (as lmerTest),
because Wald z tests are liberal with ~20 raters (reference/listening-tests.md §3.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg, optimize, stats
from threadpoolctl import threadpool_limits


@dataclass
class LmmFit:
    """Estimates of one REML fit; ``df`` is Satterthwaite's (or the containment fallback)."""

    beta: np.ndarray
    cov_beta: np.ndarray
    names: list[str]
    variances: dict[str, float]
    residual_variance: float
    converged: bool
    n: int
    df: dict[str, float] = field(default_factory=dict)
    df_method: str = "satterthwaite"

    def test(self, name: str) -> tuple[float, float, float, float, tuple[float, float]]:
        """(estimate, se, df, two-sided p, 95% CI) of one coefficient."""
        j = self.names.index(name)
        est = float(self.beta[j])
        se = float(math.sqrt(max(self.cov_beta[j, j], 0.0)))
        df = self.df.get(name, float("nan"))
        if not np.isfinite(df):
            df = float(self.n - len(self.names))
        p = float(2 * stats.t.sf(abs(est) / se, df)) if se > 0 else float("nan")
        half = float(stats.t.ppf(0.975, df) * se)
        return est, se, df, p, (est - half, est + half)


class _Crossed:
    """Sufficient statistics of y = Xβ + Zb + ε, b_k ~ N(0, τ_k I), ε ~ N(0, σ² I)."""

    def __init__(self, y: np.ndarray, X: np.ndarray, Z: np.ndarray, comp: np.ndarray, n_comp: int):
        self.n, self.p = X.shape
        self.comp = comp
        self.n_comp = n_comp
        self.ZtZ = Z.T @ Z
        self.ZtX = Z.T @ X
        self.Zty = Z.T @ y
        self.XtX = X.T @ X
        self.Xty = X.T @ y
        self.yty = float(y @ y)
        self.eye = np.eye(Z.shape[1])

    def solve(self, theta: np.ndarray):
        """Penalised least squares at relative SDs θ: returns r², log|L|², log|R_X|², X'V⁻¹X·σ², β."""
        lam = theta[self.comp]
        L = linalg.cholesky(lam[:, None] * self.ZtZ * lam[None, :] + self.eye, lower=True, check_finite=False)
        RZX = linalg.solve_triangular(L, lam[:, None] * self.ZtX, lower=True, check_finite=False)
        cu = linalg.solve_triangular(L, lam * self.Zty, lower=True, check_finite=False)
        schur = self.XtX - RZX.T @ RZX
        RX = linalg.cholesky(schur, lower=True, check_finite=False)
        cb = linalg.solve_triangular(RX, self.Xty - RZX.T @ cu, lower=True, check_finite=False)
        beta = linalg.solve_triangular(RX.T, cb, lower=False, check_finite=False)
        r2 = max(self.yty - cu @ cu - cb @ cb, 1e-12)
        return r2, 2 * np.log(np.diag(L)).sum(), 2 * np.log(np.diag(RX)).sum(), schur, beta

    def profiled_deviance(self, theta: np.ndarray) -> float:
        try:
            r2, ld, ldx, _, _ = self.solve(theta)
        except (linalg.LinAlgError, ValueError):
            return 1e300
        dof = self.n - self.p
        return float(ld + ldx + dof * (1 + math.log(2 * math.pi * r2 / dof)))

    def deviance(self, variances: np.ndarray, sigma2: float) -> float:
        """The REML deviance at given (not profiled) variances — for the Hessian behind Satterthwaite."""
        theta = np.sqrt(np.maximum(variances, 0) / sigma2)
        r2, ld, ldx, _, _ = self.solve(theta)
        return float(ld + ldx + (self.n - self.p) * math.log(2 * math.pi * sigma2) + r2 / sigma2)

    def cov_beta(self, variances: np.ndarray, sigma2: float) -> np.ndarray:
        theta = np.sqrt(np.maximum(variances, 0) / sigma2)
        _, _, _, schur, _ = self.solve(theta)
        return sigma2 * linalg.inv(schur)


def fit_crossed_lmm(
    y: np.ndarray,
    X: np.ndarray,
    names: list[str],
    components: dict[str, tuple[np.ndarray, np.ndarray | None]],
    satterthwaite: tuple[str, ...] = (),
) -> LmmFit:
    # The matrices are small: threaded BLAS only adds contention (10-50x slower on a busy 2-core box).
    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(y, X, names, components, satterthwaite)


def _fit(
    y: np.ndarray,
    X: np.ndarray,
    names: list[str],
    components: dict[str, tuple[np.ndarray, np.ndarray | None]],
    satterthwaite: tuple[str, ...],
) -> LmmFit:
    """Fit y ~ X + independent random effects by REML.

    ``components`` maps a name to (integer group codes, optional covariate): the covariate makes it a
    random slope (``0 + covariate | group``), None a random intercept. ``satterthwaite`` names the
    fixed effects whose degrees of freedom are computed (each costs a few dozen deviance evaluations).
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    blocks, comp_index = [], []
    for k, (codes, covariate) in enumerate(components.values()):
        codes = np.asarray(codes)
        levels = int(codes.max()) + 1
        Zk = np.zeros((len(y), levels))
        Zk[np.arange(len(y)), codes] = 1.0 if covariate is None else np.asarray(covariate, dtype=float)
        blocks.append(Zk)
        comp_index.append(np.full(levels, k))
    Z = np.hstack(blocks)
    comp = np.concatenate(comp_index)
    model = _Crossed(y, X, Z, comp, len(components))
    K = len(components)
    res = optimize.minimize(
        model.profiled_deviance, np.ones(K), method="L-BFGS-B", bounds=[(0.0, None)] * K,
        options={"maxiter": 500},
    )
    theta = np.asarray(res.x)
    r2, _, _, schur, beta = model.solve(theta)
    sigma2 = r2 / (model.n - model.p)
    variances = sigma2 * theta**2
    fit = LmmFit(
        beta=beta,
        cov_beta=sigma2 * linalg.inv(schur),
        names=list(names),
        variances=dict(zip(components, variances.tolist(), strict=True)),
        residual_variance=float(sigma2),
        converged=bool(res.success) and bool(np.all(np.isfinite(beta))),
        n=model.n,
    )
    for name in satterthwaite:
        fit.df[name] = _satterthwaite_df(model, variances, sigma2, names.index(name))
        if not np.isfinite(fit.df[name]):
            fit.df_method = "containment"
            fit.df[name] = _containment_df(components)
    return fit


def _containment_df(components: dict[str, tuple[np.ndarray, np.ndarray | None]]) -> float:
    """Fallback df: the fewest levels among the grouping factors, minus one (conservative)."""
    return float(min(int(np.asarray(c).max()) + 1 for c, _ in components.values()) - 1)


def _satterthwaite_df(model: _Crossed, variances: np.ndarray, sigma2: float, j: int) -> float:
    """df = 2·Var(β̂_j)² / (gᵀ A g), g = ∂Var(β̂_j)/∂ψ, A = asymptotic covariance of ψ̂ (lmerTest's recipe).

    ψ = (the variance components away from zero, σ²); components estimated at zero are held fixed.
    """
    free = [k for k in range(len(variances)) if variances[k] > 1e-6 * sigma2]
    psi0 = np.concatenate([variances[free], [sigma2]])

    def unpack(psi: np.ndarray) -> tuple[np.ndarray, float]:
        v = variances.copy()
        v[free] = psi[:-1]
        return v, float(psi[-1])

    def dev(psi: np.ndarray) -> float:
        return model.deviance(*unpack(psi))

    def var_j(psi: np.ndarray) -> float:
        return float(model.cov_beta(*unpack(psi))[j, j])

    try:
        m = len(psi0)
        h = 1e-4 * np.maximum(psi0, 1e-3)
        grad = np.empty(m)
        hess = np.empty((m, m))
        f0 = dev(psi0)
        for a in range(m):
            ea = np.zeros(m)
            ea[a] = h[a]
            grad[a] = (var_j(psi0 + ea) - var_j(psi0 - ea)) / (2 * h[a])
            hess[a, a] = (dev(psi0 + ea) - 2 * f0 + dev(psi0 - ea)) / h[a] ** 2
            for b in range(a):
                eb = np.zeros(m)
                eb[b] = h[b]
                hess[a, b] = hess[b, a] = (
                    dev(psi0 + ea + eb) - dev(psi0 + ea - eb) - dev(psi0 - ea + eb) + dev(psi0 - ea - eb)
                ) / (4 * h[a] * h[b])
        cov_psi = 2 * linalg.inv(hess)
        denom = float(grad @ cov_psi @ grad)
        v = var_j(psi0)
        if not (denom > 0 and np.isfinite(denom)):
            return float("nan")
        return float(np.clip(2 * v * v / denom, 1.0, model.n - model.p))
    except (linalg.LinAlgError, ValueError, FloatingPointError):
        return float("nan")
