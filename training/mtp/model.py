r"""The moment tensor potential (MTP) of MLIP-2, evaluated on a pair list with NumPy or CuPy.

Model: Shapeev, Multiscale Model. Simul. 14, 1153 (2016); MLIP-2 conventions: Novikov et al., Mach.
Learn.: Sci. Technol. 2, 025002 (2021).  For a pair p = (i -> j) with d = r_j - r_i, r = |d|, u = d / r:

* radial functions  f_μ(r) = Σ_x c[t_i, t_j, μ, x] Q_x(r)  (``radial_coeffs`` [S, S, M, X]; the radial
  basis Q_x, the angular monomials and the product plan are in :mod:`training.mtp.basis`);
* basic moments  M_b(i) = Σ_j f_μb(r_ij) u_x^a u_y^b u_z^c  for each row (μ, a, b, c) of
  ``alpha_index_basic``; products  M_k += mult * M_i * M_j  for each row (i, j, mult, k) of
  ``alpha_index_times``, in the order of the table;
* site energy  E_i = species_coeffs[t_i] + Σ_k moment_coeffs[k] * B_k(i),  B_k = M[alpha_moment_mapping[k]].

Data flow of ``MTP.evaluate(types, i, j, d)`` (the MD hot path):

1. the full pair list is laid out as a padded [n_atoms, k_max] table (padding pairs sit at r = max_dist,
   where every radial function and its derivative vanish); steps 2-6 run on blocks of centre atoms
   (all atoms at once on a GPU, ``_CPU_BLOCK`` = 64 on NumPy, where it keeps the per-wave arrays in cache);
2. radial functions R [n, k, M] and angular monomials A [n, k, L] (all u_x^a u_y^b u_z^c with
   a + b + c <= the largest order used) per padded pair;
3. all basic moments at once as a batched matrix product Mfull [n, M, L] = R^T A;
4. products, level by level ("waves" of ``alpha_index_times`` whose inputs are ready), as a gather,
   a multiply and a sparse sum (entries ``mult``), on moments stored as rows [K_all, n], in reused buffers;
5. reverse pass through the waves: G = dE_i/dM [n, M, L];
6. dE/dd per pair from G with two more batched products (no [pairs, 3, moments] array is formed).

Everything is array code on the namespace ``xp`` (NumPy or CuPy; inferred from ``d`` when not given);
the only Python loops run over waves, Chebyshev orders, polynomial degrees and blocks of atoms, never
over single atoms or pairs.  On CuPy, ``evaluate`` (the MD hot path) runs instead as one fused CUDA
kernel with MLIP's per-atom loops (:mod:`training.mtp.fused`); ``basis`` and ``basis_values`` stay array
code on both.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from common.arrays import array_module

from .basis import MomentPlan, monomials, radial_basis
from .errors import MTPFormatError, MTPSpeciesError
from .mtp_file import LEGACY_SPECIES_TAG_PREFIX, format_mtp, parse_mtp, species_tag, tag_species

LEVELS = tuple(range(2, 21, 2))
_CPU_BLOCK = 64  # centre atoms per block of MTP.evaluate on NumPy (cache blocking; benchmarks/mtp_eval.py)


@dataclass
class _Padded:
    """A full pair list laid out as [n_atoms, k_max] (``slot`` = position of each pair in it).

    d [n, k, 3] Å (padding: (max_dist, 0, 0)); pair_type [n, k]: t_i * S + t_j;
    order [p]: the pairs sorted by i; flat [p]: padded position of pair order[q].
    """

    d: object
    pair_type: object
    order: object
    flat: object


class MTP:
    """An MLIP moment tensor potential: basis definition, coefficients, species and evaluation.

    Attributes (all from the ``.mtp`` file): ``species_count`` S, ``min_dist``, ``max_dist`` (Å),
    ``scaling``, ``radial_basis_size`` X, ``radial_funcs_count`` M, ``radial_coeffs`` [S, S, M, X],
    ``alpha_moments_count``, ``alpha_index_basic`` [Nb, 4], ``alpha_index_times`` [Nt, 4],
    ``alpha_moment_mapping`` [K], ``species_coeffs`` [S] (eV), ``moment_coeffs`` [K] (eV),
    ``version``, ``potential_name``, ``potential_tag``.  Change coefficients in place freely; change the
    basis tables only through a new ``MTP``.  A legacy species tag (``species=C,B``, our first form) is
    rewritten as ``species:C,B`` when read, so the file is written back in the form every reader accepts.
    """

    def __init__(self, fields: dict):
        f = dict(fields)
        self.version = f.get("version", "1.1.0")
        self.potential_name = f.get("potential_name", "MTP1m")
        self.scaling = float(f.get("scaling", 1.0))
        self.species_count = int(f["species_count"])
        self.potential_tag = str(f.get("potential_tag", "") or "")
        if self.potential_tag.strip().startswith(LEGACY_SPECIES_TAG_PREFIX):
            legacy = tag_species(self.potential_tag)
            try:
                self.potential_tag = species_tag(legacy) if legacy else ""
            except ValueError as exc:
                raise MTPFormatError(f"potential_tag {self.potential_tag!r}: {exc}") from None
        self.radial_basis_type = f.get("radial_basis_type", "RBChebyshev")
        self.min_dist, self.max_dist = float(f["min_dist"]), float(f["max_dist"])
        self.radial_basis_size = int(f["radial_basis_size"])
        self.radial_funcs_count = int(f["radial_funcs_count"])
        self.alpha_moments_count = int(f["alpha_moments_count"])
        self.alpha_index_basic = np.asarray(f["alpha_index_basic"], dtype=np.int64).reshape(-1, 4)
        self.alpha_index_times = np.asarray(f["alpha_index_times"], dtype=np.int64).reshape(-1, 4)
        self.alpha_moment_mapping = np.asarray(f["alpha_moment_mapping"], dtype=np.int64)
        s, m, x, k = self.species_count, self.radial_funcs_count, self.radial_basis_size, len(self.alpha_moment_mapping)
        self.radial_coeffs = (np.zeros((s, s, m, x)) if f.get("radial_coeffs") is None
                              else np.array(f["radial_coeffs"], dtype=float).reshape(s, s, m, x))
        self.species_coeffs = np.zeros(s) if f.get("species_coeffs") is None else np.array(f["species_coeffs"], float)
        self.moment_coeffs = np.zeros(k) if f.get("moment_coeffs") is None else np.array(f["moment_coeffs"], float)
        self._plans: dict = {}

    # ------------------------------------------------------------------ files and construction
    @classmethod
    def read(cls, path) -> "MTP":
        """Read an MLIP ``.mtp`` file (any level, any number of species).  Raises MTPFormatError."""
        return cls(parse_mtp(path))

    def fields(self) -> dict:
        """The ``.mtp`` fields as a dict (see ``mtp_file``)."""
        return {k: getattr(self, k) for k in (
            "version", "potential_name", "scaling", "species_count", "potential_tag", "radial_basis_type",
            "min_dist", "max_dist", "radial_basis_size", "radial_funcs_count", "radial_coeffs",
            "alpha_moments_count", "alpha_index_basic", "alpha_index_times", "alpha_moment_mapping",
            "species_coeffs", "moment_coeffs")}

    def write(self, path) -> None:
        """Write MLIP's ``.mtp`` text; reading it back gives identical numbers."""
        Path(path).write_text(format_mtp(self.fields()), encoding="utf-8")

    @classmethod
    def untrained(cls, level: int, species_count: int, *, min_dist: float = 0.5, max_dist: float = 5.0,
                  radial_basis_size: int = 8, species: Sequence[str] | None = None,
                  seed: int | None = None) -> "MTP":
        """An untrained MTP of MLIP level ``level`` (2, 4, …, 20) for ``species_count`` species.

        The basis (``alpha_*`` tables, ``radial_funcs_count``) is MLIP's own template of that level
        (``training/mtp/templates/NN.mtp``).  Coefficients: ``radial_coeffs`` are drawn uniformly from
        [-0.1, 0.1] with ``numpy.random.default_rng(seed)`` (MLIP also starts from random radial
        coefficients when its template has none, but from its own generator and distribution);
        ``species_coeffs`` and ``moment_coeffs`` are zero (a linear fit sets them); ``scaling`` = 1.
        ``species`` (element symbols, one per type) is recorded in ``potential_tag``.
        """
        if level not in LEVELS:
            raise ValueError(f"MTP level {level!r} does not exist; MLIP's levels are {list(LEVELS)}")
        if species is not None and len(species) != species_count:
            raise ValueError(f"species={list(species)} has {len(species)} symbols, species_count = {species_count}")
        if not 0 <= min_dist < max_dist:
            raise ValueError(f"need 0 <= min_dist < max_dist, got min_dist={min_dist}, max_dist={max_dist}")
        template = resources.files("training.mtp").joinpath("templates", f"{level:02d}.mtp")
        with resources.as_file(template) as path:
            fields = parse_mtp(path)
        fields.update(species_count=int(species_count), min_dist=float(min_dist), max_dist=float(max_dist),
                      radial_basis_size=int(radial_basis_size), scaling=1.0)
        shape = (species_count, species_count, fields["radial_funcs_count"], radial_basis_size)
        fields["radial_coeffs"] = np.random.default_rng(seed).uniform(-0.1, 0.1, size=shape)
        mtp = cls(fields)
        mtp.species = species
        return mtp

    # ------------------------------------------------------------------ species and sizes
    @property
    def cutoff(self) -> float:
        """Cut-off radius (Å) = ``max_dist``."""
        return self.max_dist

    @property
    def species(self) -> list[str] | None:
        """Element symbols of types 0..S-1, stored in ``potential_tag`` as ``species:Cu,Ag`` (the legacy
        ``species=Cu,Ag`` is read too); or None."""
        return tag_species(self.potential_tag)

    @species.setter
    def species(self, symbols: Sequence[str] | None) -> None:
        if symbols is None:
            if self.species is not None:
                self.potential_tag = ""
            return
        symbols = [str(s) for s in symbols]
        if len(symbols) != self.species_count:
            raise MTPSpeciesError(f"species={symbols} has {len(symbols)} symbols but species_count = "
                                  f"{self.species_count}")
        try:
            self.potential_tag = species_tag(symbols)
        except ValueError as exc:
            raise MTPSpeciesError(str(exc)) from None

    @property
    def level(self) -> int | None:
        """MLIP level, when the basis equals a template's (else None)."""
        for level in LEVELS:
            try:
                ref = parse_mtp(resources.files("training.mtp").joinpath("templates", f"{level:02d}.mtp"))
            except (MTPFormatError, OSError):
                continue
            if (np.array_equal(ref["alpha_index_times"], self.alpha_index_times)
                    and np.array_equal(ref["alpha_index_basic"], self.alpha_index_basic)
                    and np.array_equal(ref["alpha_moment_mapping"], self.alpha_moment_mapping)):
                return level
        return None

    @property
    def basis_size(self) -> int:
        """K: the number of basis functions (= ``moment_coeffs`` entries, the linear parameters)."""
        return len(self.alpha_moment_mapping)

    def _plan(self, xp) -> MomentPlan:
        key = xp.__name__
        if key not in self._plans:
            self._plans[key] = MomentPlan(self.alpha_index_basic, self.alpha_index_times,
                                          self.alpha_moments_count, self.radial_funcs_count, xp)
        return self._plans[key]

    # ------------------------------------------------------------------ evaluation
    def _pad(self, types, i, j, d, xp) -> _Padded:
        """The pair list (i, j, d) of atoms of ``types`` [n] as a padded [n, k_max] table (``_Padded``)."""
        n, p = len(types), len(i)
        order = xp.argsort(i, kind="stable") if xp is np else xp.argsort(i)
        i_s = i[order]
        counts = xp.bincount(i, minlength=n)
        k_max = max(int(counts.max()) if n else 0, 1)
        start = xp.cumsum(counts) - counts
        flat = i_s * k_max + (xp.arange(p) - start[i_s])
        padded = xp.zeros((n * k_max, 3))
        padded[:, 0] = self.max_dist
        padded[flat] = d[order]
        pair_type = xp.repeat(types * self.species_count, k_max)
        pair_type[flat] += types[j[order]]
        return _Padded(padded.reshape(n, k_max, 3), pair_type.reshape(n, k_max), order, flat)

    def _radial(self, r, pair_type, xp):
        """R, dR/dr [n, k, M] for distances r [n, k] (Å); zero at and beyond ``max_dist``.

        The Chebyshev recurrence runs on rows [X, n*k] (contiguous), then one matrix product with the
        coefficients gives [M, n*k]; the result is returned as an [n, k, M] view of it.
        """
        size, count = self.radial_basis_size, self.radial_funcs_count
        r = r.reshape(-1)
        t, dt = radial_basis(r, min_dist=self.min_dist, max_dist=self.max_dist, scaling=self.scaling, size=size,
                             xp=xp)
        coeffs = xp.asarray(self.radial_coeffs.reshape(-1, size))  # [S*S*M, X]
        if self.species_count == 1:
            radial, dradial = coeffs @ t, coeffs @ dt  # [M, n*k]
        else:  # every pair with the coefficients of every species pair (one product), then pick its own
            pick = pair_type.reshape(1, 1, -1)
            radial, dradial = (xp.take_along_axis((coeffs @ v).reshape(-1, count, len(r)), pick, axis=0)[0]
                               for v in (t, dt))
        shape = tuple(pair_type.shape) + (count,)
        return radial.T.reshape(shape), dradial.T.reshape(shape)

    def _geometry(self, pad: _Padded, types, xp):
        """(r [n, k] Å, u [n, k, 3], monomials A [n, k, L], R and dR/dr [n, k, M]) of the padded pairs."""
        plan = self._plan(xp)
        d = pad.d
        r = xp.sqrt(xp.einsum("nkc,nkc->nk", d, d))
        u = d / xp.where(r > 0, r, 1.0)[..., None]
        # monomials stored as [n, L, k] so each step multiplies contiguous rows; returned as an [n, k, L] view
        n, k_max = r.shape
        mono = monomials(*(u[:, None, :, c] for c in range(3)), plan.degree, xp.empty((n, plan.n_mono, k_max)))
        mono = mono.transpose(0, 2, 1)
        radial, dradial = self._radial(r, pad.pair_type, xp)
        return r, u, mono, radial, dradial

    def _moments(self, radial, mono, xp):
        """All moments as rows [K_all, n] (``MomentPlan.moments``)."""
        return self._plan(xp).moments(radial, mono)

    def _moment_gradient(self, moments, xp):
        """dE_i/dM_k as rows [K_all, n] for E = Σ moment_coeffs * M[mapping]."""
        return self._plan(xp).moment_gradient(moments, self.alpha_moment_mapping, self.moment_coeffs)

    def _inputs(self, types, i, j, d, xp):
        """(xp, types, i, j, d) as int64/float64 arrays of ``xp`` (default: the module of ``d``), checked."""
        xp = array_module(d) if xp is None else xp
        types, i, j, d = (xp.asarray(types, dtype=xp.int64), xp.asarray(i, dtype=xp.int64),
                          xp.asarray(j, dtype=xp.int64), xp.asarray(d, dtype=xp.float64))
        self._check_inputs(types, i, j, d, xp)
        return xp, types, i, j, d

    def _forward(self, types, i, j, d, xp):
        """Shared first half of ``basis`` and ``basis_values``: checked arrays, padded pairs, geometry, moments."""
        xp, types, i, j, d = self._inputs(types, i, j, d, xp)
        pad = self._pad(types, i, j, d, xp)
        geometry = self._geometry(pad, types, xp)
        return xp, types, d, self._plan(xp), pad, geometry, self._moments(geometry[3], geometry[2], xp)

    def _check_inputs(self, types, i, j, d, xp):
        if d.ndim != 2 or d.shape[1] != 3 or i.shape != (d.shape[0],) or j.shape != i.shape:
            raise ValueError(f"pair list shapes must be i [p], j [p], d [p, 3]; got {i.shape}, {j.shape}, {d.shape}")
        if len(types) and (int(types.min()) < 0 or int(types.max()) >= self.species_count):
            raise MTPSpeciesError(f"type indices must be in 0..{self.species_count - 1} (species_count of the "
                                  f"potential); got {int(types.min())}..{int(types.max())}")

    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies and the gradient of the total energy with respect to each pair vector.

        Parameters
        ----------
        types : int [n]      0-based MTP species index of each atom.
        i, j : int [p]       FULL neighbour list (both i->j and j->i), pairs in any order.
        d : float [p, 3]     r_j + image shift - r_i (Å); pairs at |d| >= cutoff contribute nothing.
        xp : module          numpy or cupy; default: the module of ``d``.

        Returns
        -------
        site_energies : [n] eV
        dE_dd : [p, 3] eV/Å, dE_total/dd_p (only site energy i depends on d_p).

        On CuPy this is one fused CUDA kernel (:mod:`training.mtp.fused`); on NumPy, array code.
        """
        xp, types, i, j, d = self._inputs(types, i, j, d, xp)
        if xp is not np:
            from .fused import evaluate as fused_evaluate

            return fused_evaluate(self, types, i, j, d, xp=xp)
        return self._evaluate_arrays(types, i, j, d, xp)

    def _evaluate_arrays(self, types, i, j, d, xp):
        """``evaluate`` as array code on ``xp`` (checked inputs); the NumPy path, and the reference the
        fused kernel is tested and benchmarked against."""
        pad = self._pad(types, i, j, d, xp)
        n, k_max = pad.pair_type.shape
        # blocks of centre atoms (site energy i depends only on the pairs of i): on the CPU, blocks of
        # _CPU_BLOCK atoms keep the per-wave arrays [products, atoms] in cache; on a GPU, one block
        block = n if xp is not np else _CPU_BLOCK
        energies, grad_pad = xp.empty(n), xp.empty((n, k_max, 3))
        for start in range(0, n, max(block, 1)):
            rows = slice(start, start + block)
            part = _Padded(pad.d[rows], pad.pair_type[rows], None, None)
            geometry = self._geometry(part, types[rows], xp)
            moments = self._moments(geometry[3], geometry[2], xp)
            energies[rows] = self._site_energies(types[rows], moments, xp)
            grad_pad[rows] = self._pair_gradient(geometry, moments, xp)
        de_dd = xp.empty_like(d)
        de_dd[pad.order] = grad_pad.reshape(-1, 3)[pad.flat]
        return energies, de_dd

    def _site_energies(self, types, moments, xp):
        """E_i = species_coeffs[t_i] + moment_coeffs @ B(i) [n] (eV) from moments rows [K_all, n]."""
        coeffs = xp.asarray(self.moment_coeffs)
        return xp.asarray(self.species_coeffs)[types] + coeffs @ moments[xp.asarray(self.alpha_moment_mapping)]

    def _pair_gradient(self, geometry, moments, xp):
        """dE_i/dd for every padded pair [n, k, 3] (eV/Å) of the atoms whose ``_geometry`` and moments are given."""
        plan = self._plan(xp)
        r, u, mono, radial, dradial = geometry
        n = r.shape[0]
        grad = self._moment_gradient(moments, xp)
        g_full = xp.zeros((n, plan.n_radial * plan.n_mono))
        g_full[:, plan.basic_flat] = grad[: plan.n_basic].T
        g_full = g_full.reshape(n, plan.n_radial, plan.n_mono)  # dE_i / dMfull [n, M, L]
        # d(R_μ A_l)/dd = R'_μ A_l u + R_μ (∂A_l/∂u_c - deg_l A_l u_c) / r, where ∂A_l/∂u_c = e_c A_{l - e_c};
        # the sum over l of G ∂A_l/∂u_c is rewritten as a sum over A_l of G at l + e_c (``up``).
        g_pad = xp.concatenate([g_full, xp.zeros((n, plan.n_radial, 1))], axis=2)
        g_cat = xp.concatenate([g_full, g_full * plan.mono_degree] + [g_pad[:, :, plan.up[c]] * plan.up_factor[c]
                                                                      for c in range(3)], axis=1)  # [n, 5M, L]
        h = xp.matmul(mono, g_cat.transpose(0, 2, 1)).reshape(n, -1, 5, plan.n_radial)  # [n, k, 5, M]
        s_radial = xp.einsum("nkm,nkm->nk", h[:, :, 0], dradial)
        s = xp.einsum("nkbm,nkm->nkb", h[:, :, 1:], radial)  # [n, k, 4]: Σ deg G A, then the ∂A/∂u_c terms
        inv_r = 1.0 / xp.where(r > 0, r, 1.0)
        return u * (s_radial - s[..., 0] * inv_r)[..., None] + s[..., 1:] * inv_r[..., None]

    def basis_values(self, types, i, j, d, *, xp=None):
        """Basis values B [n, K] only (``basis`` without derivatives; memory O(K_all * n)).

        Same inputs as ``evaluate``; ``E_i = species_coeffs[t_i] + B[i] @ moment_coeffs`` (eV).
        """
        xp, _, _, _, _, _, moments = self._forward(types, i, j, d, xp)
        return moments[xp.asarray(self.alpha_moment_mapping)].T

    def basis(self, types, i, j, d, *, xp=None):
        """Basis values and their derivatives for linear fitting.

        ``E_i = species_coeffs[t_i] + B[i] @ moment_coeffs``.  Same inputs as ``evaluate``.  Returns B [n, K]
        (dimensionless products of moments, eV per unit coefficient) and dB_dd [p, 3, K] (1/Å): derivative of
        B[i_p] with respect to d_p.  Memory is O(K_all * pairs * 3): meant for the small cells of fitting
        sets, not for MD.
        """
        xp, types, d, plan, pad, (r, u, mono, radial, dradial), moments = self._forward(types, i, j, d, xp)
        n = len(types)
        k_max = r.shape[1]
        n_pairs = n * k_max
        # derivative of each basic moment of atom i with respect to d of each of its pairs: [Nb, n*k, 3]
        mu = plan.basic_flat // plan.n_mono
        mono_b = plan.basic_flat % plan.n_mono
        inv_r = (1.0 / xp.where(r > 0, r, 1.0)).reshape(-1, 1, 1)
        rad, drad = radial.reshape(n_pairs, -1)[:, mu], dradial.reshape(n_pairs, -1)[:, mu]  # [N, Nb]
        a = mono.reshape(n_pairs, -1)
        a_b = a[:, mono_b]
        uu = u.reshape(n_pairs, 3, 1)
        exps = plan.exps[mono_b]  # [Nb, 3]
        down = plan.down[:, mono_b]  # [3, Nb]: A_{l - e_c}, multiplied by e_c = 0 where l has no c
        a_down = xp.stack([a[:, down[c]] * exps[:, c] for c in range(3)], axis=1)  # [N, 3, Nb]
        deg = plan.mono_degree[mono_b]
        dmom = (drad * a_b)[:, None, :] * uu + rad[:, None, :] * (a_down - deg * a_b[:, None, :] * uu) * inv_r
        derivs = xp.zeros((plan.n_moments, n_pairs * 3))
        derivs[: plan.n_basic] = dmom.reshape(n_pairs * 3, -1).T
        centre = xp.repeat(xp.arange(n), k_max * 3)
        mom_c = moments[:, centre]  # moments of the centre atom of each (pair, component): [K_all, N*3]
        for w in plan.waves:
            prod = derivs[w.first] * mom_c[w.second] + mom_c[w.first] * derivs[w.second]
            derivs[w.targets] = w.gather @ prod
        mapping = xp.asarray(self.alpha_moment_mapping)
        b = moments[mapping].T
        db = derivs[mapping].reshape(len(mapping), n_pairs, 3)[:, pad.flat].transpose(1, 2, 0)
        db_dd = xp.empty((len(d), 3, len(mapping)))
        db_dd[pad.order] = db
        return b, db_dd
