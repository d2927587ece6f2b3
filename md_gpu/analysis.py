"""From a run's thermo table to a stress-strain curve and tensile properties, with statistics over seeds.

Units: strain dimensionless (engineering, relative to the cell at the start of
the deformation stage); 3D stress in GPa (virial + kinetic over the cell
volume); for a 2D sheet (vacuum along z) the 2D stress is
``sigma_2D [N/m] = sigma_3D [GPa] x Lz [Å] x 0.1``, and a GPa value "at the
phase's effective thickness t" is ``sigma_2D / (0.1 t [Å])``.

* Young's modulus: slope of a straight-line fit (with intercept) of stress on
  strain over ``[0, h]``. ``window="fixed"``: ``h = fit_window[1]`` (the old rule).
  ``window="auto"`` (:func:`choose_fit_window`): ``h`` minimises the total error of the slope,
  its standard error plus the bias a curvature ``c`` of the curve gives it (``c h``, with the
  uncertainty of ``c``), searched between a lower bound (``min_window``, at least
  :data:`MIN_FIT_ROWS` rows: noise cannot pick a tiny window) and an upper bound
  (``fit_window[1]`` and half the strain at the smoothed peak stress); that total is the error
  reported.
* Standard errors of fitted slopes (:func:`linear_fit`): the ordinary least-squares error
  times ``sqrt(g)``, ``g = 1 + 2 sum_k rho_k`` the statistical inefficiency of the
  residuals (autocorrelation ``rho_k`` summed while positive): MD stress samples a few
  thermo rows apart are correlated, and the plain OLS error would be too small.
* Poisson's ratio: minus the slope of transverse strain on axial strain, with its standard
  error. The transverse strain is the mean over the transverse axes given (one for a sheet; for
  a bulk cell pulled along a cube axis of a cubic crystal the two are equivalent, and their mean
  halves the variance of the cell's length fluctuations). ``window="fixed"``: over the modulus'
  window. ``window="auto"``: its own window, by the same bias-variance rule on the transverse
  curve with the modulus' upper bound: the transverse strain is smoother in strain than the
  stress (a 256-atom Cu cell: a 2-3 % stress window, 0.3-0.4 standard error on nu), and a
  longer window costs it less bias.
* Ultimate tensile strength: the maximum stress; failure strain: the strain at
  that maximum.
* Sustained stress drops (:func:`sustained_drop`): the running mean of the stress over a
  strain window (not one noisy row) falls below ``(1 - drop)`` x its running maximum
  past ``min_strain``; the tensile protocol confirms a fracture from the structure and
  reports an unconfirmed drop as yield.
* Statistics over seeds (:func:`mean_sem`): ``{"mean", "sem", "n"}``, ``sem`` = sample standard
  deviation / sqrt(n); ``sem`` is None (JSON null) when n = 1: one run has no spread, and 0 would
  read as an exact number; NaN with ``mean`` NaN when n = 0. Given the runs that blew up, the
  statistic also counts ``attempted`` (runs planned), ``failed`` (finished without a number) and
  ``blown_up`` (left out), as in docs/properties.md.
* Statistics within one run: :class:`BlockSums` accumulates per-step samples in
  consecutive blocks; :func:`mean_sem_blocks` gives the mean and standard error
  of the block means (sample std / sqrt(blocks)).
"""
from __future__ import annotations

import numpy as np

from .backend import to_numpy
from .cell_control import axis_index
from .errors import MDRunError
from .units import GPA_A_TO_N_PER_M

VOIGT_COLUMN = {0: "stress_xx_GPa", 1: "stress_yy_GPa", 2: "stress_zz_GPa"}
CELL_COLUMN = {0: "cell_xx_A", 1: "cell_yy_A", 2: "cell_zz_A"}


def stress_strain_curve(thermo: dict, first_row: int, axis, transverse=None, *, sheet: bool) -> dict:
    """Curve of the deformation stage that starts at thermo row ``first_row``.

    transverse: None, one axis or a sequence of axes (their strains are averaged).
    Returns arrays: ``strain``, ``transverse_strain`` (zeros if ``transverse`` is None),
    ``stress_GPa`` (3D, along ``axis``), ``temperature_K``, ``time_fs`` and, for a
    sheet, ``stress_N_per_m`` (2D).
    """
    a = axis_index(axis)
    rows = slice(first_row, None)
    length = np.asarray(thermo[CELL_COLUMN[a]])[rows]
    curve = {"strain": length / length[0] - 1.0,
             "stress_GPa": np.asarray(thermo[VOIGT_COLUMN[a]])[rows],
             "temperature_K": np.asarray(thermo["temperature_K"])[rows],
             "time_fs": np.asarray(thermo["time_fs"])[rows]}
    axes = [transverse] if isinstance(transverse, str) else list(transverse or [])
    if axes:
        lengths = [np.asarray(thermo[CELL_COLUMN[axis_index(t)]])[rows] for t in axes]
        curve["transverse_strain"] = np.mean([lt / lt[0] - 1.0 for lt in lengths], axis=0)
    else:
        curve["transverse_strain"] = np.zeros_like(length)
    if sheet:
        curve["stress_N_per_m"] = curve["stress_GPa"] * np.asarray(thermo["cell_zz_A"])[rows] * GPA_A_TO_N_PER_M
    return curve


MIN_FIT_ROWS = 20         # fewest thermo rows in an automatic fit window
MIN_FIT_WINDOW = 0.005    # smallest automatic fit window (strain)
WINDOWS = ("auto", "fixed")


def inefficiency(residuals) -> float:
    """Statistical inefficiency ``g = 1 + 2 sum_k rho_k`` (>= 1) of a series [n], ``rho_k`` its
    autocorrelation at lag k summed from k = 1 while positive (initial positive sequence, k < n / 4).
    ``n / g`` is the number of effectively independent samples."""
    r = np.asarray(residuals, dtype=float)
    r = r - r.mean()
    var = float(np.dot(r, r))
    if r.size < 4 or var <= 0:
        return 1.0
    g = 1.0
    for k in range(1, r.size // 4):
        rho = float(np.dot(r[:-k], r[k:])) / var
        if rho <= 0:
            break
        g += 2.0 * rho
    return g


def linear_fit(x, y, *, g_min: float = 1.0) -> dict:
    """Straight line ``y = slope x + intercept`` by least squares; ``{"slope", "intercept", "sem", "g"}``.

    x [n], y [n] (n >= 3); sem: standard error of the slope, OLS times ``sqrt(g)``, ``g`` the
    :func:`inefficiency` of the residuals, at least ``g_min`` (a short window cannot see a
    correlation longer than itself: pass the inefficiency of a longer stretch of the series)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    res = y - (slope * x + intercept)
    sxx = float(np.sum((x - x.mean()) ** 2))
    g = max(inefficiency(res), float(g_min))
    ols = np.sqrt(np.sum(res ** 2) / max(x.size - 2, 1) / sxx) if sxx > 0 else np.inf
    return {"slope": float(slope), "intercept": float(intercept), "sem": float(ols * np.sqrt(g)), "g": g}


def running_mean(values, rows: int) -> np.ndarray:
    """Trailing mean of ``values`` [n] over the last ``rows`` entries (fewer at the start) [n]."""
    v = np.asarray(values, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(v)])
    k = np.arange(1, v.size + 1)
    lo = np.maximum(k - int(rows), 0)
    return (c[k] - c[lo]) / (k - lo)


def rows_per_strain(strain, window_strain: float) -> int:
    """Thermo rows that span ``window_strain`` on a curve sampled at ``strain`` [n] (>= 1)."""
    strain = np.asarray(strain, dtype=float)
    step = (strain[-1] - strain[0]) / max(strain.size - 1, 1) if strain.size > 1 else 0.0
    return max(int(np.ceil(window_strain / step)), 1) if step > 0 else 1


def sustained_drop(strain, stress, *, window_strain: float = 0.005, drop: float = 0.5,
                   min_strain: float = 0.02, noise_sigmas: float = 0.0):
    """First row [index] where the stress has dropped for good, or None.

    strain [n], stress [n] (any unit). The running mean of the stress over the rows spanning
    ``window_strain`` falls below ``(1 - drop)`` x its running maximum (> 0) at a strain >=
    ``min_strain``, and (``noise_sigmas`` > 0) by more than ``noise_sigmas`` standard errors of
    that mean below the maximum (the scatter of the curve about its centred running mean over four
    windows, which keeps the slow wander of a small cell's stress, with its :func:`inefficiency`
    up to the window): at small stresses a relative drop can be noise. One noisy row moves the
    mean by 1/rows of its size, so only a drop that lasts a good part of the window counts (the
    rule of :class:`md_gpu.simulation.FailureDetector` with ``failure_drop = 1 - drop`` and
    ``failure_window`` the rows of ``window_strain``)."""
    strain = np.asarray(strain, dtype=float)
    stress = np.asarray(stress, dtype=float)
    rows = rows_per_strain(strain, window_strain)
    smooth = running_mean(stress, rows)
    peak = np.maximum.accumulate(smooth)
    ok = (strain >= min_strain) & (peak > 0) & (smooth < (1.0 - drop) * peak)
    wide = 4 * rows
    if noise_sigmas > 0 and stress.size > 2 * wide + 2:
        centred = np.convolve(stress, np.ones(wide) / wide, mode="same")
        res = (stress - centred)[wide:-wide]
        se = float(np.std(res)) * np.sqrt(min(inefficiency(res), rows) / rows)
        ok &= (peak - smooth) > noise_sigmas * se
    hit = np.flatnonzero(ok)
    return int(hit[0]) if hit.size else None


def curvature(x, y) -> tuple[float, float, float]:
    """``(c, sem(c), g)`` of ``y = a + b x + c x^2`` (least squares), the error with ``g``, the
    :func:`inefficiency` of the residuals. x [n], y [n], n >= 4.

    MD stress wanders on the time scale of the barostat (a 256-atom cell's volume fluctuates by
    ~0.4 % at 300 K), which puts wiggles of a few tenths of a GPa into a curve: a curvature
    read from it is uncertain, and its error counts as much as its value."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    coef, cov = np.polyfit(x, y, 2, cov="unscaled")
    res = y - np.polyval(coef, x)
    g = inefficiency(res)
    var = float(np.sum(res ** 2)) / max(x.size - 3, 1) * g
    return float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0) * var)), g


def choose_fit_window(strain, stress, *, max_window: float = 0.05, min_window: float = MIN_FIT_WINDOW,
                      smooth_strain: float = 0.005, h_max: float | None = None) -> dict:
    """``{"h", "sem", "bias_per_strain", "h_max"}``: upper strain ``h`` of the automatic fit window
    ``[0, h]`` (see the module docstring), the total error of the slope there (stress unit),
    ``sqrt(c^2 + sem(c)^2)``, the upper bound used and the inefficiency ``g`` of the stress over
    ``[0, h_max]`` (used as the least ``g`` of every window: a window shorter than the noise's
    correlation would report too small an error).

    Why this rule: a straight line fitted over ``[0, h]`` to ``E eps + c eps^2`` has the slope
    ``E + c h`` (uniform sampling), a bias that grows with ``h``, while its standard error falls
    as ``h^-3/2``. ``c`` and its error come from a quadratic fit over the widest allowed window
    ``[0, h_max]`` (the best determined curvature), and ``h`` minimises the total error
    ``sqrt(sem(h)^2 + (c^2 + sem(c)^2) h^2)`` (bias and variance; a curvature that the noise
    cannot resolve still counts as a possible bias), which is the error reported. A fixed 1 %
    window on a 256-atom Cu cell at 300 K and 2e10 1/s has a standard error of 10-20 GPa on
    45 GPa. Bounds: ``h_max = min(max_window, strain at the smoothed peak / 2)`` (the curve's
    lower half; a metal's yield or a brittle fracture lies above), ``h_min = max(min_window,
    strain of the MIN_FIT_ROWS-th row)``, clipped to ``h_max``: noise cannot pick a tiny window.
    ``h_max`` given: that upper bound instead (a curve with no peak of its own, such as the transverse
    strain, is fitted up to the bound of its stress curve)."""
    strain = np.asarray(strain, dtype=float)
    stress = np.asarray(stress, dtype=float)
    if h_max is None:
        smooth = running_mean(stress, rows_per_strain(strain, smooth_strain))
        h_max = min(float(max_window), 0.5 * float(strain[int(np.argmax(smooth))]))
    first_rows = strain[min(MIN_FIT_ROWS, strain.size) - 1]
    h_min = min(max(float(min_window), float(first_rows)), float(max_window))
    h_max = max(h_max, h_min)
    inside = strain <= h_max
    c, c_sem, g = curvature(strain[inside], stress[inside]) if inside.sum() >= 4 else (0.0, 0.0, 1.0)
    bias = float(np.hypot(c, c_sem))
    best = None
    for h in np.linspace(h_min, h_max, 25) if h_max > h_min else [h_min]:
        window = (strain >= 0) & (strain <= h)
        if window.sum() < 3:
            continue
        total = float(np.hypot(linear_fit(strain[window], stress[window], g_min=g)["sem"], bias * h))
        if best is None or total < best[1]:
            best = (float(h), total)
    h, total = best if best is not None else (h_min, float("nan"))
    return {"h": h, "sem": total, "bias_per_strain": bias, "h_max": h_max, "g": g}


def tensile_properties(strain, stress, transverse_strain=None, *, fit_window=(0.0, 0.01),
                       window: str = "fixed", min_window: float = MIN_FIT_WINDOW) -> dict:
    """Young's modulus (stress unit), Poisson's ratio, UTS (stress unit), failure strain, with the fit.

    strain [m], stress [m] (any unit; the modulus and strength come out in it),
    transverse_strain [m] or None (then no Poisson's ratio). window: "fixed" (fit over
    ``fit_window``) or "auto" (over ``[fit_window[0], h]``, ``h`` from :func:`choose_fit_window`
    with ``fit_window[1]`` as the upper bound). Returns ``youngs_modulus``,
    ``youngs_modulus_sem``, ``fit_window_strain`` (``h``), ``poisson_ratio``, ``poisson_ratio_sem``
    and ``poisson_fit_window_strain`` (with a transverse strain; the module docstring),
    ``ultimate_strength``, ``failure_strain``.
    The errors of the automatic window add the possible curvature bias ``sqrt(c^2 + sem(c)^2) h``
    in quadrature to the statistical error; a fixed window's are statistical.
    """
    if window not in WINDOWS:
        raise MDRunError(f"fit window mode {window!r} is not one of {', '.join(WINDOWS)}")
    strain = np.asarray(strain, dtype=float)
    stress = np.asarray(stress, dtype=float)
    lo, hi = fit_window
    bound = hi_nu = hi
    bias_stress = bias_trans = 0.0
    g_stress = g_trans = 1.0
    if window == "auto" and strain.size >= 3:
        later = strain >= lo
        choice = choose_fit_window(strain[later], stress[later], max_window=hi, min_window=min_window)
        hi, bias_stress, g_stress = choice["h"], choice["bias_per_strain"], choice["g"]
        hi_nu = hi
        if transverse_strain is not None:
            own = choose_fit_window(strain[later], np.asarray(transverse_strain, float)[later], max_window=bound,
                                    min_window=min_window, h_max=choice["h_max"])
            hi_nu, bias_trans, g_trans = own["h"], own["bias_per_strain"], own["g"]
    window_rows = (strain >= lo) & (strain <= hi)
    if window_rows.sum() < 3:
        raise MDRunError(f"only {int(window_rows.sum())} samples between strain {lo} and {hi}: record thermo "
                         "more often (thermo_every) or widen the fit window to fit a Young's modulus")
    fit = linear_fit(strain[window_rows], stress[window_rows], g_min=g_stress)
    out = {"youngs_modulus": fit["slope"],
           "youngs_modulus_sem": float(np.hypot(fit["sem"], bias_stress * float(hi - lo))),
           "fit_window_strain": float(hi)}
    if transverse_strain is not None:
        rows_nu = (strain >= lo) & (strain <= hi_nu)
        nu = linear_fit(strain[rows_nu], np.asarray(transverse_strain, dtype=float)[rows_nu], g_min=g_trans)
        out["poisson_ratio"] = -nu["slope"]
        out["poisson_ratio_sem"] = float(np.hypot(nu["sem"], bias_trans * float(hi_nu - lo)))
        out["poisson_fit_window_strain"] = float(hi_nu)
    peak = int(np.argmax(stress))
    out["ultimate_strength"] = float(stress[peak])
    out["failure_strain"] = float(strain[peak])
    return out


def transverse_stress_stats(stress, *, n_blocks: int = 10, min_blocks: int = 4) -> tuple[float, float]:
    """Mean and standard error of the transverse stress [n] over a loading (any unit).

    Block averages (:func:`mean_sem_blocks`) over ``n_blocks`` consecutive blocks, fewer (down to
    ``min_blocks``) when a block would be shorter than twice the correlation length of the
    series (:func:`inefficiency`), so that block means are close to independent."""
    v = np.asarray(stress, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < min_blocks:
        return (float(v.mean()) if v.size else float("nan")), float("nan")
    corr_rows = inefficiency(v)
    blocks = int(np.clip(v.size // max(2.0 * corr_rows, 1.0), min_blocks, n_blocks))
    usable = v[: v.size - v.size % blocks]
    return mean_sem_blocks(usable.reshape(blocks, -1).mean(axis=1))


def mean_sem(values, *, blown_up: int | None = None) -> dict:
    """``{"mean", "sem", "n"}`` over runs: ``values`` holds one entry per run that finished (None or NaN:
    that run gave no number, left out). ``sem`` is the sample standard deviation / sqrt(n); None when
    n = 1 (one run has no spread: never 0, which would read as exact); NaN, with ``mean`` NaN, when n = 0.

    ``blown_up``: the runs of the same group (system, direction) that blew up; when given, the statistic
    also carries :func:`run_counts` ``attempted`` (finished + blown up), ``failed`` (finished without a
    number) and ``blown_up``."""
    values = list(values)
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        out = {"mean": float("nan"), "sem": float("nan"), "n": 0}
    else:
        sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else None
        out = {"mean": float(v.mean()), "sem": sem, "n": int(v.size)}
    if blown_up is not None:
        out.update(run_counts(out["n"], len(values) + int(blown_up), int(blown_up)))
    return out


def run_counts(n: int, attempted: int, blown_up: int) -> dict:
    """``{"attempted", "failed", "blown_up"}`` of a statistic over ``n`` runs out of ``attempted``, of which
    ``blown_up`` blew up: ``failed`` = the runs that finished without giving a number."""
    return {"attempted": int(attempted), "failed": int(attempted) - int(blown_up) - int(n), "blown_up": int(blown_up)}


def summarize(runs: list[dict]) -> dict:
    """Statistics over seeds of the numeric keys that all runs share (e.g. tensile properties)."""
    keys = [k for k in runs[0] if all(k in r for r in runs) and isinstance(runs[0][k], (int, float))]
    return {k: mean_sem([r[k] for r in runs]) for k in keys}


class BlockSums:
    """Sums per-step samples into ``n_blocks`` blocks of consecutive steps (``n_steps`` in all).

    ``add(name=value, ...)`` once per step (values: numbers or arrays of the run's backend, summed
    there); ``means(name)`` [n_blocks, ...] (NumPy) at the end; ``counts`` [n_blocks] samples per block.
    """

    def __init__(self, n_steps: int, n_blocks: int):
        self.n_steps, self.n_blocks, self.k = n_steps, n_blocks, 0
        self.sums: dict = {}
        self.counts = np.zeros(n_blocks)

    def add(self, **samples):
        b = min(self.k * self.n_blocks // self.n_steps, self.n_blocks - 1)
        for name, value in samples.items():
            if name not in self.sums:
                self.sums[name] = [0.0] * self.n_blocks
            self.sums[name][b] = self.sums[name][b] + value
        self.counts[b] += 1
        self.k += 1

    def means(self, name) -> np.ndarray:
        sums = np.array([to_numpy(s) for s in self.sums[name]], dtype=float)
        return sums / self.counts.reshape((-1,) + (1,) * (sums.ndim - 1))


def mean_sem_blocks(values) -> tuple[float, float]:
    """Mean and standard error of block means [b] (sample std / sqrt(b); NaN for one block)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
