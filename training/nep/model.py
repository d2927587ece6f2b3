"""GPUMD's neuroevolution potential (NEP3, NEP4, optional ZBL): the model's evaluation.

Contract: ``NEPEvaluator(model)`` of a :class:`~training.nep.nep_file.NEPModel`; ``species`` are the
model's elements, ``cutoff`` (Å) its largest cut-off, and ``evaluate(types, i, j, d, *, xp)`` takes a
FULL pair list (every ordered pair ``i -> j`` within ``cutoff``, ``d = r_j + shift - r_i`` [p, 3] Å,
types [n] indices into ``species``) and returns site energies ``U_i`` [n] (eV) and ``dE/dd`` [p, 3]
(eV/Å). Only ``U_{i_p}`` depends on ``d_p``, so ``dE/dd_p = dU_{i_p}/dd_p``: forces, the virial and
GPUMD's many-body per-atom virials follow from the pair gradients (pair ``p`` to atom ``j_p``,
``W_a = -sum_{p: j_p = a} d_p (x) dE/dd_p``), exactly as NEP_CPU's ``find_force_*_small_box``.
``md_gpu.forcefields.nep.NEPForceField`` puts this contract on the MD engine's force contract and runs it
by the fused kernel of :mod:`.fused` (the same arithmetic per atom, checked against this code);
``training.nep_fit`` fits the parameters with this code.
Array code on an ``xp`` namespace (NumPy or CuPy); Python loops only over type pairs, ``l`` and ``n``.

``evaluate`` is four steps, each a method that ``training.nep_fit`` calls too: :meth:`~NEPEvaluator.pair_geometry`
(the pairs within each cut-off, Chebyshev basis and harmonics: independent of the parameters),
:meth:`~NEPEvaluator.descriptors` (``g_n``, ``s_{nlm}``, ``q``), :meth:`~NEPEvaluator.network` (``U_i``,
``dU/dq``) and :meth:`~NEPEvaluator.angular_pullback` (``dU/ds`` from ``dU/dq``), then the chain rule back
to the pairs. ``descriptors``, ``network`` and ``angular_pullback`` are polynomial or holomorphic in
their inputs and run on complex arrays (the fit's complex step).

Model (Fan et al., PRB 104, 104309 (2021); JCP 157, 114801 (2022); Song et al. 2024 for NEP4):

* pair cut-off ``rc = (rc_t(i) + rc_t(j)) / 2`` (radial or angular; one value for all types unless the
  file has typewise cut-offs); ``f_c(r) = (1 + cos(pi r / rc)) / 2`` for ``r < rc``, else 0;
* basis ``f_k(r) = (T_k(x) + 1) / 2 f_c(r)``, ``x = 2 (r / rc - 1)^2 - 1`` (Chebyshev ``T_k``), and
  radial functions ``g_n(r) = sum_k c^{t_i t_j}_{n k} f_k(r)``;
* radial descriptor ``q_n = sum_j g_n(r_ij)``;
* angular: ``s_{n l m} = sum_j g_n(r_ij) Y_{lm}(u_ij)`` with ``u = d / r`` and the unnormalised real
  harmonics ``Y_l0 = Z_l0(u_z)``, ``Y_lm = Z_lm(u_z) (Re, Im)(u_x + i u_y)^m`` where ``Z_lm`` is
  ``d^m P_l / dz^m`` scaled to coprime integer coefficients (GPUMD's tables); then
  ``q_{nl} = sum_m C_lm s_{nlm}^2`` with ``C_lm = (2 - delta_m0) (2l+1)/(4 pi) (l-m)!/(l+m)! a_lm^2``
  (``a_lm`` = that scale), the 4-body ``q_222`` (cubic in ``s_{n2m}``) and 5-body ``q_1111``
  (quartic in ``s_{n1m}``) invariants, with NEP_CPU's coefficients ``C4B``, ``C5B``;
* ``U_i = sum_h w1_h tanh(sum_d w0_hd q_d s_d - b0_h) - b1`` (``s_d`` = descriptor scaler; NEP4: one
  set of weights per type of ``i``, NEP3: shared);
* ZBL (``nep*_zbl``): each ordered pair within the largest angular cut-off adds ``phi(r) / 2`` to
  ``U_i``, with the universal screened Coulomb ``phi = k_e Z_i Z_j / r sum_a c_a exp(-b_a r / a)``,
  ``a = 0.46848 / (Z_i^0.23 + Z_j^0.23)`` (Ziegler, Biersack, Littmark 1985), switched off
  between r1 = rc_inner and r2 = rc_outer by ``(1 + cos(pi (r - r1) / (r2 - r1))) / 2`` (with a
  typewise factor ``f``: r1 = 0, r2 = min(f (R_i + R_j), rc_outer)); flexible ZBL reads r1, r2 and
  the four (c, b) per type pair from the file.

The derivatives are written out by the chain rule above (not GPUMD's expanded force kernels);
``tests/test_nep_peer.py`` checks energies, forces and stresses against NEP_CPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import factorial, gcd, pi

import numpy as np
from ase.data import atomic_numbers

from common.arrays import array_module

from .nep_file import COVALENT_RADIUS, NEPModel

# 4-body (l = 2, 2, 2) and 5-body (l = 1, 1, 1, 1) invariant coefficients of NEP3 (NEP_CPU nep_utilities.h)
C4B = (-0.007499480826664, -0.134990654879954, 0.067495327439977, 0.404971964639861, -0.809943929279723)
C5B = (0.026596810706114, 0.053193621412227, 0.026596810706114)
ZBL_UNIVERSAL = ((0.18175, 3.1998), (0.50986, 0.94229), (0.28022, 0.4029), (0.02817, 0.20162))
ZBL_INV_A = 2.134563  # 1 / 0.46848 Å^-1, as rounded in GPUMD
K_COULOMB = 14.399645  # e^2 / (4 pi eps0), eV Å


def _legendre(l: int) -> list:
    """Coefficients (ascending powers) of P_l as Fractions (Bonnet's recursion)."""
    p0, p1 = [Fraction(1)], [Fraction(0), Fraction(1)]
    if l == 0:
        return p0
    for k in range(1, l):
        nxt = [Fraction(0)] * (k + 2)
        for a, c in enumerate(p1):
            nxt[a + 1] += Fraction(2 * k + 1, k + 1) * c
        for a, c in enumerate(p0):
            nxt[a] -= Fraction(k, k + 1) * c
        p0, p1 = p1, nxt
    return p1


def harmonic_tables(l_max: int):
    """``Z [n_lm, l_max+1]`` (z-polynomial of each harmonic, ascending powers), ``m [n_lm]``,
    ``part [n_lm]`` (0: Re, 1: Im), ``ell [n_lm]`` and ``weight [n_lm]`` (``C_lm`` of q_l incl. the
    factor 2 for m > 0), in GPUMD's order: for l = 1..l_max: (m=0), (m=1 Re, Im), ..., (m=l Re, Im)."""
    rows, ms, parts, ells, weights = [], [], [], [], []
    for l in range(1, l_max + 1):
        p = _legendre(l)
        for m in range(l + 1):
            dp = p
            for _ in range(m):
                dp = [c * a for a, c in enumerate(dp)][1:]
            lcm = 1
            for c in dp:
                lcm = lcm * c.denominator // gcd(lcm, c.denominator)
            ints = [int(c * lcm) for c in dp]
            g = 0
            for c in ints:
                g = gcd(g, abs(c))
            z = [c // g for c in ints]  # positive leading coefficient, as d^m P_l / dz^m has
            scale = float(dp[-1] / z[-1])
            c_lm = (2 * l + 1) / (4 * pi) * factorial(l - m) / factorial(l + m) * scale * scale
            row = np.zeros(l_max + 1)
            row[:len(z)] = z
            for part in ((0,) if m == 0 else (0, 1)):
                rows.append(row)
                ms.append(m)
                parts.append(part)
                ells.append(l)
                weights.append(c_lm if m == 0 else 2.0 * c_lm)
    return (np.array(rows).reshape(-1, l_max + 1), np.array(ms, int), np.array(parts, int),
            np.array(ells, int), np.array(weights))


def _scatter(index, values, n: int, xp):
    """``out[a] = sum_{p: index_p = a} values[p]`` for values [p, k] -> [n, k] (one bincount; complex
    values as two)."""
    if xp.iscomplexobj(values):
        return _scatter(index, values.real, n, xp) + 1j * _scatter(index, values.imag, n, xp)
    k = values.shape[1]
    flat = (index[:, None] * k + xp.arange(k)[None, :]).ravel()
    return xp.bincount(flat, weights=values.ravel(), minlength=n * k).reshape(n, k)


def _chebyshev_basis(r, rc, n_basis: int, xp):
    """``f_k(r)`` and ``df_k/dr`` [p, n_basis] for pair distances r [p] (Å) and cut-offs rc [p] (Å)."""
    fc = 0.5 + 0.5 * xp.cos(pi * r / rc)
    fcp = -0.5 * pi / rc * xp.sin(pi * r / rc)
    y = r / rc - 1.0
    x = 2.0 * y * y - 1.0
    dxdr_half = 2.0 * y / rc  # (dx/dr) / 2
    t = [xp.ones_like(r), x]
    u = [xp.ones_like(r), 2.0 * x]  # Chebyshev of the 2nd kind: dT_k/dx = k U_{k-1}
    for _ in range(2, n_basis):
        t.append(2.0 * x * t[-1] - t[-2])
        u.append(2.0 * x * u[-1] - u[-2])
    fn, fnp = [], []
    for k in range(n_basis):
        half = 0.5 * (t[k] + 1.0)
        dhalf = k * u[k - 1] * dxdr_half if k > 0 else 0.0 * r
        fn.append(half * fc)
        fnp.append(dhalf * fc + half * fcp)
    return xp.stack(fn, axis=1), xp.stack(fnp, axis=1)


@dataclass
class PairTerms:
    """The pairs of one descriptor part (radial or angular) and their basis functions; they depend on the
    pair vectors only, not on the parameters.

    sel [p'] indices into the pair list of the pairs within the part's cut-off; centre [p'] their atom
    i; type_pair [p'] ``t_i * T + t_j``; r [p'] (Å); u [p', 3] unit vectors; f, fp [p', K] basis
    ``f_k(r)`` and ``df_k/dr`` (1/Å); angular part only: y [p', n_lm] harmonics ``Y_lm(u)``, dy
    [p', n_lm, 3] their u-derivatives (None for the radial part).
    """

    sel: object
    centre: object
    type_pair: object
    r: object
    u: object
    f: object
    fp: object
    y: object = None
    dy: object = None


@dataclass
class PairGeometry:
    """Everything the descriptors take from a full pair list: radial, angular :class:`PairTerms`;
    i [p], d [p, 3] (Å) the pair list; r [p] distances; ti, tj [p] types; n_atoms."""

    radial: PairTerms
    angular: PairTerms
    i: object
    d: object
    r: object
    ti: object
    tj: object
    n_atoms: int


@dataclass
class Descriptors:
    """q [n, dim] raw descriptors (module docstring order: radial, then the angular blocks); s [n, na,
    n_lm] the angular sums ``s_{nlm}``; g_r, gp_r [p_r, n_max_r+1] and g_a, gp_a [p_a, n_max_a+1] the
    radial functions ``g_n(r)`` and ``dg_n/dr`` of the radial and angular pairs (gp None when the
    geometry has no fp)."""

    q: object
    s: object
    g_r: object
    gp_r: object
    g_a: object
    gp_a: object


class NEPEvaluator:
    """The evaluation of a NEP potential (:class:`.nep_file.NEPModel`, module docstring); the arrays of
    the model are copied to each array namespace once, on first use."""

    def __init__(self, model: NEPModel):
        self.model = model
        self.species = tuple(model.species)
        self.cutoff = model.rc_max
        self.l_max = model.l_max_3body
        self.harmonics = harmonic_tables(max(self.l_max, 1))
        self.z_numbers = np.array([atomic_numbers[s] for s in self.species], dtype=float)
        self._cache = {}

    def _tables(self, xp):
        key = xp.__name__
        if key not in self._cache:
            m = self.model
            t = m.n_types
            self._cache[key] = {
                "rc_r": xp.asarray(m.rc_radial), "rc_a": xp.asarray(m.rc_angular),
                # [T*T, n, k] radial/angular coefficients of each (t_i, t_j)
                "c_r": [xp.asarray(m.c_radial[:, :, a, b]) for a in range(t) for b in range(t)],
                "c_a": [xp.asarray(m.c_angular[:, :, a, b]) for a in range(t) for b in range(t)],
                "w0": xp.asarray(m.w0), "b0": xp.asarray(m.b0), "w1": xp.asarray(m.w1),
                "scaler": xp.asarray(m.q_scaler), "z": xp.asarray(self.z_numbers),
                "radius": xp.asarray([COVALENT_RADIUS[int(z) - 1] for z in self.z_numbers]),
                "Z": xp.asarray(self.harmonics[0]), "weight": xp.asarray(self.harmonics[4]),
                "l_index": xp.asarray(self.harmonics[3] - 1),
                "l_blocks": [xp.asarray(np.nonzero(self.harmonics[3] == l)[0]) for l in range(1, self.l_max + 1)],
            }
        return self._cache[key]

    # ---------------------------------------------------------------- radial functions g_n(r)
    @staticmethod
    def _radial_functions(coeffs, tp, fn, fnp, n_out: int, xp):
        """``g_n`` and ``dg_n/dr`` [p, n_out] (``dg_n/dr`` None without ``fnp``) of pairs of type-pair index
        ``tp`` [p] from the basis values ``fn``, ``fnp`` [p, K] and ``coeffs`` [T*T] of [n_out, K]."""
        g = xp.zeros((fn.shape[0], n_out), dtype=fn.dtype)
        gp = None if fnp is None else xp.zeros((fn.shape[0], n_out), dtype=fnp.dtype)
        for k, c in enumerate(coeffs):
            sel = xp.nonzero(tp == k)[0]
            if sel.shape[0]:
                g[sel] = fn[sel] @ c.T
                if gp is not None:
                    gp[sel] = fnp[sel] @ c.T
        return g, gp

    # ---------------------------------------------------------------- harmonics Y_lm(u) and dY/du
    def _harmonics(self, u, xp):
        """Y [p, n_lm] and dY/du [p, n_lm, 3] of unit vectors u [p, 3] (polynomials in u)."""
        z_tab, ms, parts = self.harmonics[0], self.harmonics[1], self.harmonics[2]
        zt = self._tables(xp)["Z"]
        ux, uy, uz = u[:, 0], u[:, 1], u[:, 2]
        lmax = z_tab.shape[1] - 1
        zpow = [xp.ones_like(uz)]
        for _ in range(lmax):
            zpow.append(zpow[-1] * uz)
        zpow = xp.stack(zpow, axis=1)  # [p, l_max+1]
        dzpow = xp.zeros_like(zpow)
        dzpow[:, 1:] = zpow[:, :-1] * xp.arange(1, lmax + 1)[None, :]
        zf = zpow @ zt.T  # Z_lm(u_z) [p, n_lm]
        dzf = dzpow @ zt.T
        re, im = [xp.ones_like(ux)], [xp.zeros_like(ux)]  # (u_x + i u_y)^m
        for _ in range(lmax):
            re.append(re[-1] * ux - im[-1] * uy)
            im.append(re[-2] * uy + im[-1] * ux)
        re, im = xp.stack(re, axis=1), xp.stack(im, axis=1)
        msel = xp.asarray(ms)
        mm1 = xp.asarray(np.maximum(ms - 1, 0))
        is_im = xp.asarray(parts == 1)
        cm = xp.where(is_im[None, :], im[:, msel], re[:, msel])  # Re or Im of (u_x + i u_y)^m
        # d/du_x (u_x + i u_y)^m = m w^{m-1}; d/du_y = i m w^{m-1}
        mf = xp.asarray(ms.astype(float))[None, :]
        dcx = mf * xp.where(is_im[None, :], im[:, mm1], re[:, mm1])
        dcy = mf * xp.where(is_im[None, :], re[:, mm1], -im[:, mm1])
        y = zf * cm
        dy = xp.stack([zf * dcx, zf * dcy, dzf * cm], axis=2)
        return y, dy

    # ---------------------------------------------------------------- descriptor q_i
    def _pair_terms(self, rc_types, ti, tj, i, r, d, n_basis: int, angular: bool, xp) -> PairTerms:
        """The pairs within the mean cut-off of ``rc_types`` [T] and their basis (and harmonics)."""
        rc = 0.5 * (rc_types[ti] + rc_types[tj])
        sel = xp.nonzero(r < rc)[0]
        rs = r[sel]
        u = d[sel] / rs[:, None]
        f, fp = _chebyshev_basis(rs, rc[sel], n_basis, xp)
        y, dy = self._harmonics(u, xp) if angular else (None, None)
        return PairTerms(sel=sel, centre=i[sel], type_pair=(ti * self.model.n_types + tj)[sel], r=rs, u=u,
                         f=f, fp=fp, y=y, dy=dy)

    def pair_geometry(self, types, i, j, d, *, xp=None) -> PairGeometry:
        """The parameter-free part of the descriptors of a full pair list (module docstring): which pairs
        fall within the radial and angular cut-offs, their basis functions and harmonics."""
        xp = xp or array_module(d)
        m, tab = self.model, self._tables(xp)
        r = xp.sqrt((d * d).sum(axis=1))
        ti, tj = types[i], types[j]
        return PairGeometry(
            radial=self._pair_terms(tab["rc_r"], ti, tj, i, r, d, m.basis_size[0] + 1, False, xp),
            angular=self._pair_terms(tab["rc_a"], ti, tj, i, r, d, m.basis_size[1] + 1, True, xp),
            i=i, d=d, r=r, ti=ti, tj=tj, n_atoms=int(types.shape[0]))

    def descriptors(self, geom: PairGeometry, *, xp=None) -> Descriptors:
        """Descriptors q [n, dim] (raw, before the scaler) of a :class:`PairGeometry`. Polynomial in its
        basis values and harmonics and linear in the c coefficients, so a geometry with complex ``f`` and
        ``y`` (the complex step of ``training.nep_fit``) gives complex descriptors."""
        xp = xp or array_module(geom.d)
        m, tab = self.model, self._tables(xp)
        n_atoms, na = geom.n_atoms, m.n_max[1] + 1
        rad, ang = geom.radial, geom.angular
        g_r, gp_r = self._radial_functions(tab["c_r"], rad.type_pair, rad.f, rad.fp, m.n_max[0] + 1, xp)
        g_a, gp_a = self._radial_functions(tab["c_a"], ang.type_pair, ang.f, ang.fp, na, xp)
        q_rad = _scatter(rad.centre, g_r, n_atoms, xp)
        n_lm = ang.y.shape[1]
        s = _scatter(ang.centre, (g_a[:, :, None] * ang.y[:, None, :]).reshape(-1, na * n_lm), n_atoms, xp).reshape(
            n_atoms, na, n_lm)
        blocks = []
        w = tab["weight"]
        for sel in tab["l_blocks"]:  # q_{nl} = sum_m C_lm s_{nlm}^2, l = 1..l_max
            blocks.append((w[sel] * s[:, :, sel] ** 2).sum(axis=2))  # [n, na]
        if m.has_q_222:
            s3, s4, s5, s6, s7 = (s[:, :, k] for k in range(3, 8))
            blocks.append(C4B[0] * s3 ** 3 + C4B[1] * s3 * (s4 * s4 + s5 * s5) + C4B[2] * s3 * (s6 * s6 + s7 * s7)
                          + C4B[3] * s6 * (s5 * s5 - s4 * s4) + C4B[4] * s4 * s5 * s7)
        if m.has_q_1111:
            s0, s12 = s[:, :, 0] ** 2, s[:, :, 1] ** 2 + s[:, :, 2] ** 2
            blocks.append(C5B[0] * s0 * s0 + C5B[1] * s0 * s12 + C5B[2] * s12 * s12)
        q = xp.concatenate([q_rad] + blocks, axis=1) if blocks else q_rad
        return Descriptors(q=q, s=s, g_r=g_r, gp_r=gp_r, g_a=g_a, gp_a=gp_a)

    def angular_pullback(self, s, dq_ang, xp):
        """``dX/ds`` [n, na, n_lm] from ``dX/dq`` of the angular blocks ``dq_ang`` [n, num_l, na] (linear in
        ``dq_ang``; ``s`` [n, na, n_lm] from :meth:`descriptors`), for any scalar X of the descriptors."""
        m, tab = self.model, self._tables(xp)
        dus = xp.zeros_like(s)
        if self.l_max:
            dus = dus + 2.0 * tab["weight"][None, None, :] * s * xp.transpose(dq_ang[:, tab["l_index"], :], (0, 2, 1))
        block = self.l_max
        if m.has_q_222:
            f = dq_ang[:, block, :]
            s3, s4, s5, s6, s7 = (s[:, :, k] for k in range(3, 8))
            grads = {3: 3 * C4B[0] * s3 * s3 + C4B[1] * (s4 * s4 + s5 * s5) + C4B[2] * (s6 * s6 + s7 * s7),
                     4: 2 * C4B[1] * s3 * s4 - 2 * C4B[3] * s6 * s4 + C4B[4] * s5 * s7,
                     5: 2 * C4B[1] * s3 * s5 + 2 * C4B[3] * s6 * s5 + C4B[4] * s4 * s7,
                     6: 2 * C4B[2] * s3 * s6 + C4B[3] * (s5 * s5 - s4 * s4),
                     7: 2 * C4B[2] * s3 * s7 + C4B[4] * s4 * s5}
            for k, gk in grads.items():
                dus[:, :, k] += f * gk
            block += 1
        if m.has_q_1111:
            f = dq_ang[:, block, :]
            s0, s1, s2 = s[:, :, 0], s[:, :, 1], s[:, :, 2]
            s12 = s1 * s1 + s2 * s2
            dus[:, :, 0] += f * (4 * C5B[0] * s0 ** 3 + 2 * C5B[1] * s0 * s12)
            common = 2 * C5B[1] * s0 * s0 + 4 * C5B[2] * s12
            dus[:, :, 1] += f * common * s1
            dus[:, :, 2] += f * common * s2
        return dus

    # ---------------------------------------------------------------- evaluate
    def evaluate(self, types, i, j, d, *, xp=None):
        """Site energies [n] (eV) and dE/dd [p, 3] (eV/Å) on a full pair list (module docstring)."""
        xp = xp or array_module(d)
        return self.evaluate_geometry(self.pair_geometry(types, i, j, d, xp=xp), types, xp=xp)

    def evaluate_geometry(self, geom: PairGeometry, types, *, xp=None):
        """:meth:`evaluate` from the :class:`PairGeometry` of the pair list (a fit keeps it across
        parameter changes)."""
        xp = xp or array_module(geom.d)
        m = self.model
        n_atoms = geom.n_atoms
        nr, na = m.n_max[0] + 1, m.n_max[1] + 1
        desc = self.descriptors(geom, xp=xp)
        rad, ang = geom.radial, geom.angular
        de_dd = xp.zeros_like(geom.d)

        # network: U_i and dU_i/dq_i (unscaled q)
        energies, fp, _ = self.network(desc.q, types, xp)
        fp_rad = fp[:, :nr]
        dus = self.angular_pullback(desc.s, fp[:, nr:].reshape(n_atoms, m.num_l, na), xp)  # dU/ds

        # back to the pairs
        de_dd[rad.sel] += ((fp_rad[rad.centre] * desc.gp_r).sum(axis=1))[:, None] * rad.u
        if ang.sel.shape[0] and m.num_l:
            gsp = dus[ang.centre]  # [pa, na, n_lm]
            du_dy = xp.einsum("pnl,pn->pl", gsp, desc.g_a)  # dU/dY [pa, n_lm]
            du_dr = (xp.einsum("pnl,pn->pl", gsp, desc.gp_a) * ang.y).sum(axis=1)  # through g_n(r) [pa]
            du_du = xp.einsum("pl,plc->pc", du_dy, ang.dy)  # [pa, 3]
            tangential = (du_du - (du_du * ang.u).sum(axis=1)[:, None] * ang.u) / ang.r[:, None]
            de_dd[ang.sel] += du_dr[:, None] * ang.u + tangential

        if m.zbl is not None:
            energies, de_dd = self._zbl(types, geom.i, geom.ti, geom.tj, geom.r, geom.d, energies, de_dd, xp)
        return energies, de_dd

    def network(self, q, types, xp):
        """Site energies [n] (eV), dU/dq [n, dim] for raw descriptors q [n, dim], and the hidden layer:
        ``[(atoms [a], tanh values [a, N1]) per weight set]`` (NEP3: one set for all atoms; NEP4: per type)."""
        tab = self._tables(xp)
        qs = q * tab["scaler"][None, :]
        energies = xp.zeros(q.shape[0], dtype=q.dtype)
        fp = xp.zeros_like(q)
        hidden = []
        sets = [(0, None)] if self.model.version == 3 else [(t, t) for t in range(self.model.n_types)]
        for k, t in sets:
            atoms = xp.arange(q.shape[0]) if t is None else xp.nonzero(types == t)[0]
            if atoms.shape[0] == 0:
                hidden.append((atoms, None))
                continue
            h = xp.tanh(qs[atoms] @ tab["w0"][k].T - tab["b0"][k][None, :])  # [a, N1]
            energies[atoms] = h @ tab["w1"][k] - self.model.b1
            fp[atoms] = ((1.0 - h * h) * tab["w1"][k][None, :]) @ tab["w0"][k]
            hidden.append((atoms, h))
        return energies, fp * tab["scaler"][None, :], hidden

    def _zbl(self, types, i, ti, tj, r, d, energies, de_dd, xp):
        """Add the ZBL core: ``phi(r)/2`` per ordered pair within the largest angular cut-off."""
        m, tab = self.model, self._tables(xp)
        sel = xp.nonzero(r < float(m.rc_angular.max()))[0]
        rs, a, b = r[sel], ti[sel], tj[sel]
        za, zb = tab["z"][a], tab["z"][b]
        inv_a = (za ** 0.23 + zb ** 0.23) * ZBL_INV_A
        if m.zbl == (0.0, 0.0):  # flexible: r1, r2, then (c, b) x 4 per type pair
            t1, t2 = xp.minimum(a, b), xp.maximum(a, b)
            para = xp.asarray(m.zbl_flexible)[t1 * m.n_types - (t1 * (t1 - 1)) // 2 + (t2 - t1)]
            r1, r2 = para[:, 0], para[:, 1]
            screen = [(para[:, 2 + 2 * k], para[:, 3 + 2 * k]) for k in range(4)]
        else:
            r1, r2 = m.zbl
            screen = ZBL_UNIVERSAL
            if m.zbl_factor is not None:  # typewise: from 0 to min(f (R_i + R_j), rc_outer)
                radius = tab["radius"]
                r1, r2 = 0.0, xp.minimum(m.zbl_factor * (radius[a] + radius[b]), r2)
        x = rs * inv_a
        phi, dphi = 0.0 * rs, 0.0 * rs
        for c, e in screen:
            term = c * xp.exp(-e * x)
            phi, dphi = phi + term, dphi - e * term
        zz = K_COULOMB * za * zb
        f = zz * phi / rs
        fp = zz * dphi * inv_a / rs - f / rs
        width = r2 - r1
        arg = xp.clip((rs - r1) / width, 0.0, 1.0)
        fc = xp.where(rs < r2, 0.5 + 0.5 * xp.cos(pi * arg), 0.0)
        fcp = xp.where((rs >= r1) & (rs < r2), -0.5 * pi / width * xp.sin(pi * arg), 0.0)
        energy = f * fc
        denergy = fp * fc + f * fcp
        energies = energies + 0.5 * xp.bincount(i[sel], weights=energy, minlength=energies.shape[0])
        de_dd[sel] += (0.5 * denergy / rs)[:, None] * d[sel]
        return energies, de_dd

