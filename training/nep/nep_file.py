"""Read and write GPUMD's ``nep.txt`` (NEP3 and NEP4 potential models, optional ZBL).

Contract: :func:`read_nep` ``(path) -> NEPModel`` and :func:`write_nep` ``(model, path)``;
``write -> read -> write`` gives the same text. Anything this code cannot evaluate exactly as
GPUMD would (dipole, polarizability, charge and van der Waals models, NEP5, the higher-order
``l_max`` flags ``has_q_112`` ...) is refused with a
:class:`NEPFileError` that names the file, the line number and what is wrong, as are malformed
lines and a parameter count that does not match the header (:mod:`.errors`; md_gpu's loader,
``md_gpu.forcefields.nep.NEPForceField.read``, raises the same message as an ``MDSetupError``).

Layout (one keyword line each, then one number per line; GPUMD ``src/force/nep.cu``
``read_nep_potential`` and NEP_CPU ``NEP::init_from_file`` read the same):

    nep4 2 C H                     # model, number of types, element of each type
    zbl 1.0 2.0 [0.7]              # only for nep3_zbl / nep4_zbl; "zbl 0 0" = flexible ZBL;
                                   # a third value = typewise ZBL cut-off factor
    cutoff 6 4 100 100             # rc_radial rc_angular MN_radial MN_angular (Å, counts), or
                                   # rc_r(t0) rc_a(t0) rc_r(t1) rc_a(t1) ... MN_r MN_a (typewise),
                                   # or rc_radial rc_angular alone (files of older GPUMD versions)
    n_max 4 4                      # n_max_radial n_max_angular
    basis_size 8 8                 # basis_size_radial basis_size_angular
    l_max 4 2 0                    # l_max_3body, 4-body flag (0 or 2), 5-body flag (0 or 1)
    ANN 30 0                       # neurons of the hidden layer, 0 (no second layer)
    <ANN parameters>               # per type t (NEP3: one shared set): w0 [N1, dim] row-major,
                                   # b0 [N1], w1 [N1]; then the output bias b1
    <descriptor parameters>        # c_radial [n_max_r+1, basis_r+1, T, T], then c_angular
    <q_scaler [dim]>
    <flexible ZBL [T(T+1)/2, 10]>  # only with "zbl 0 0"

``dim = (n_max_radial + 1) + (n_max_angular + 1) * (l_max_3body + [4-body] + [5-body])``.
References: Fan et al., Phys. Rev. B 104, 104309 (2021) (NEP); Fan et al., J. Chem. Phys. 157,
114801 (2022) (NEP3); Song et al., Nat. Commun. 15, 10208 (2024) (NEP4: one ANN per type).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from common.atomic import atomic_write

from .errors import NEPFileError

MODELS = {"nep3": (3, False), "nep3_zbl": (3, True), "nep4": (4, False), "nep4_zbl": (4, True)}
NOT_POTENTIALS = ("dipole", "polarizability", "charge", "vdw")
ELEMENTS = tuple(chemical_symbols[1:95])  # H ... Pu, the elements NEP knows
MAX_L = 8  # spherical harmonics up to l = 8
# Radii (Å) of H ... Pu for the typewise ZBL cut-off, GPUMD's table (NEP_CPU nep_utilities.h COVALENT_RADIUS)
COVALENT_RADIUS = (
    0.426667, 0.613333, 1.6, 1.25333, 1.02667, 1.0, 0.946667, 0.84, 0.853333, 0.893333,
    1.86667, 1.66667, 1.50667, 1.38667, 1.46667, 1.36, 1.32, 1.28, 2.34667, 2.05333,
    1.77333, 1.62667, 1.61333, 1.46667, 1.42667, 1.38667, 1.33333, 1.32, 1.34667, 1.45333,
    1.49333, 1.45333, 1.53333, 1.46667, 1.52, 1.56, 2.52, 2.22667, 1.96, 1.85333,
    1.76, 1.65333, 1.53333, 1.50667, 1.50667, 1.44, 1.53333, 1.64, 1.70667, 1.68,
    1.68, 1.64, 1.76, 1.74667, 2.78667, 2.34667, 2.16, 1.96, 2.10667, 2.09333,
    2.08, 2.06667, 2.01333, 2.02667, 2.01333, 2.0, 1.98667, 1.98667, 1.97333, 2.04,
    1.94667, 1.82667, 1.74667, 1.64, 1.57333, 1.54667, 1.48, 1.49333, 1.50667, 1.76,
    1.73333, 1.73333, 1.81333, 1.74667, 1.84, 1.89333, 2.68, 2.41333, 2.22667, 2.10667,
    2.02667, 2.04, 2.05333, 2.06667,
)


@dataclass
class NEPModel:
    """A NEP potential as stored in ``nep.txt`` (see the module docstring for the layout).

    version 3 or 4; species [T] element symbols; zbl None, ``(rc_inner, rc_outer)`` (Å) or
    ``(0.0, 0.0)`` for flexible ZBL with ``zbl_flexible`` [T(T+1)/2, 10]; zbl_factor None or the typewise
    factor ``f``: then a pair's ZBL switches off between 0 and ``min(f (R_i + R_j), rc_outer)`` with
    GPUMD's radii ``COVALENT_RADIUS`` (Å); rc_radial, rc_angular [T]
    (Å, pair cut-off = mean of the two types'); typewise: write the cut-offs per type;
    max_neighbors (MN_radial, MN_angular) or None (older files), kept for writing; n_max, basis_size (radial, angular);
    l_max (l_max_3body, flag_4body, flag_5body) as written; w0 [A, N1, dim], b0 [A, N1], w1 [A, N1]
    with A = 1 (NEP3) or T (NEP4); b1 (eV); c_radial [n_max_r+1, basis_r+1, T, T]; c_angular
    [n_max_a+1, basis_a+1, T, T]; q_scaler [dim].
    """

    version: int
    species: tuple
    rc_radial: np.ndarray
    rc_angular: np.ndarray
    n_max: tuple
    basis_size: tuple
    l_max: tuple
    w0: np.ndarray
    b0: np.ndarray
    w1: np.ndarray
    b1: float
    c_radial: np.ndarray
    c_angular: np.ndarray
    q_scaler: np.ndarray
    zbl: tuple | None = None
    zbl_flexible: np.ndarray | None = None
    zbl_factor: float | None = None
    typewise: bool = False
    max_neighbors: tuple = (1000, 1000)
    path: str = field(default="", compare=False)

    @property
    def n_types(self) -> int:
        return len(self.species)

    @property
    def l_max_3body(self) -> int:
        return self.l_max[0]

    @property
    def has_q_222(self) -> bool:
        return bool(self.l_max[1])

    @property
    def has_q_1111(self) -> bool:
        return bool(self.l_max[2])

    @property
    def num_l(self) -> int:
        """Angular blocks of the descriptor: l = 1..l_max_3body, then 4-body, then 5-body."""
        return self.l_max[0] + int(self.has_q_222) + int(self.has_q_1111)

    @property
    def dim(self) -> int:
        return (self.n_max[0] + 1) + (self.n_max[1] + 1) * self.num_l

    @property
    def num_neurons(self) -> int:
        return self.w0.shape[1]

    @staticmethod
    def counts(version, n_types, n_max, basis_size, num_l, num_neurons) -> tuple[int, int]:
        """(ANN parameters, descriptor parameters) of a header: GPUMD's count."""
        dim = (n_max[0] + 1) + (n_max[1] + 1) * num_l
        ann = (dim + 2) * num_neurons * (1 if version == 3 else n_types) + 1
        desc = n_types * n_types * ((n_max[0] + 1) * (basis_size[0] + 1) + (n_max[1] + 1) * (basis_size[1] + 1))
        return ann, desc

    @property
    def rc_max(self) -> float:
        """Largest pair cut-off (Å): the range the neighbour list must cover."""
        return float(max(self.rc_radial.max(), self.rc_angular.max()))


class _Lines:
    """The non-empty lines of a file as (line number, tokens), with errors that name the line."""

    def __init__(self, path: Path):
        self.path = path
        self.rows = [(k + 1, line.split()) for k, line in enumerate(path.read_text().splitlines()) if line.split()]
        self.pos = 0

    def error(self, lineno, message) -> NEPFileError:
        where = f"line {lineno}" if lineno else "end of file"
        return NEPFileError(f"{self.path}, {where}: {message}")

    def next(self, what: str):
        if self.pos >= len(self.rows):
            raise self.error(None, f"the file ends where {what} was expected")
        row = self.rows[self.pos]
        self.pos += 1
        return row

    def keyword(self, key: str, sizes: tuple, usage: str):
        lineno, tokens = self.next(f"the '{key}' line")
        if tokens[0] != key:
            raise self.error(lineno, f"expected the '{key}' line ({usage}), got '{tokens[0]}'")
        if len(tokens) - 1 not in sizes:
            raise self.error(lineno, f"'{key}' takes {' or '.join(map(str, sizes))} values ({usage}), "
                                     f"got {len(tokens) - 1}")
        return lineno, tokens

    def number(self, lineno, token: str, kind=float, what: str = "value"):
        try:
            value = kind(token)
        except ValueError:
            raise self.error(lineno, f"cannot read {what} '{token}' as {'an integer' if kind is int else 'a number'}") \
                from None
        if not np.isfinite(value):
            raise self.error(lineno, f"{what} '{token}' is not finite")
        return value

    def values(self, count: int, what: str) -> np.ndarray:
        out = np.empty(count)
        for k in range(count):
            if self.pos >= len(self.rows):
                raise self.error(None, f"the file holds {k} of the {count} {what} its header describes "
                                       "(too few parameters for this header)")
            lineno, tokens = self.rows[self.pos]
            self.pos += 1
            if len(tokens) != 1:
                raise self.error(lineno, f"each line of the {what} must hold one number, got {len(tokens)} tokens")
            out[k] = self.number(lineno, tokens[0], float, what[:-1] if what.endswith("s") else what)
        return out


def read_nep(path) -> NEPModel:
    """Read a ``nep.txt`` (NEP3/NEP4 potential, optional ZBL); raises :class:`NEPFileError`."""
    path = Path(path)
    if not path.is_file():
        raise NEPFileError(f"NEP potential file {path} does not exist")
    f = _Lines(path)
    lineno, tokens = f.next("the model line (e.g. 'nep4 2 C H')")
    model = tokens[0]
    if model not in MODELS:
        kind = next((k for k in NOT_POTENTIALS if k in model), None)
        if kind is not None:
            raise f.error(lineno, f"'{model}' is a {kind} model; only the potential models "
                                  f"{', '.join(MODELS)} are supported")
        raise f.error(lineno, f"unsupported NEP model '{model}'; expected one of {', '.join(MODELS)}")
    version, has_zbl = MODELS[model]
    if len(tokens) < 3:
        raise f.error(lineno, f"'{model}' must be followed by the number of types and their elements")
    n_types = f.number(lineno, tokens[1], int, "number of types")
    if n_types < 1 or len(tokens) != 2 + n_types:
        raise f.error(lineno, f"the model line names {n_types} types, so it needs {n_types} element symbols, "
                              f"got {len(tokens) - 2}")
    species = tuple(tokens[2:])
    for s in species:
        if s not in ELEMENTS:
            raise f.error(lineno, f"'{s}' is not an element symbol from H to Pu")
    if len(set(species)) != n_types:
        raise f.error(lineno, f"element symbols repeat: {' '.join(species)}")

    zbl, zbl_factor = None, None
    if has_zbl:
        lineno, tokens = f.keyword("zbl", (2, 3), "rc_inner rc_outer [typewise factor]")
        zbl = tuple(f.number(lineno, t, float, "ZBL cutoff") for t in tokens[1:3])
        if zbl != (0.0, 0.0) and not 0.0 <= zbl[0] < zbl[1]:
            raise f.error(lineno, "the ZBL cutoffs must satisfy 0 <= rc_inner < rc_outer (or be '0 0' for flexible ZBL)")
        if len(tokens) == 4:
            zbl_factor = f.number(lineno, tokens[3], float, "ZBL factor")
            if zbl == (0.0, 0.0) or not zbl_factor > 0:
                raise f.error(lineno, "the typewise ZBL factor must be > 0 and goes with universal ZBL cutoffs, "
                                      "not with flexible ZBL ('zbl 0 0')")

    lineno, tokens = f.keyword("cutoff", (2, 4, 2 * n_types + 2),
                               "rc_radial rc_angular MN_radial MN_angular, or rc_radial rc_angular per type "
                               "then MN_radial MN_angular, or (older GPUMD) rc_radial rc_angular")
    typewise = len(tokens) not in (3, 5)
    rc_tokens, mn_tokens = (tokens[1:], []) if len(tokens) == 3 else (tokens[1:-2], tokens[-2:])
    rc = np.array([f.number(lineno, t, float, "cutoff") for t in rc_tokens]).reshape(-1, 2)
    rc = np.broadcast_to(rc, (n_types, 2)).copy()
    max_neighbors = tuple(f.number(lineno, t, float, "neighbour count") for t in mn_tokens)
    max_neighbors = tuple(int(m) if m == int(m) else m for m in max_neighbors) or None
    if not np.all((rc[:, 1] > 0) & (rc[:, 1] <= rc[:, 0]) & (rc[:, 0] <= 100)):
        raise f.error(lineno, "the cutoffs must satisfy 0 < rc_angular <= rc_radial <= 100 Å")

    lineno, tokens = f.keyword("n_max", (2,), "n_max_radial n_max_angular")
    n_max = tuple(f.number(lineno, t, int, "n_max") for t in tokens[1:])
    if not all(0 <= n <= 19 for n in n_max):
        raise f.error(lineno, f"n_max must lie in 0..19, got {n_max}")
    lineno, tokens = f.keyword("basis_size", (2,), "basis_size_radial basis_size_angular")
    basis_size = tuple(f.number(lineno, t, int, "basis_size") for t in tokens[1:])
    if not all(0 <= k <= 16 for k in basis_size):
        raise f.error(lineno, f"basis_size must lie in 0..16, got {basis_size}")
    lineno, tokens = f.keyword("l_max", (3, 4, 5, 6, 7), "l_max_3body l_max_4body l_max_5body")
    flags = [f.number(lineno, t, int, "l_max") for t in tokens[1:]]
    if any(flags[3:]):
        raise f.error(lineno, "the higher-order terms after l_max_5body (has_q_112, has_q_123, has_q_233, "
                              "has_q_134) are not supported; only 'l_max L 0|2 0|1'")
    l_max = tuple(flags[:3])
    if not 0 <= l_max[0] <= MAX_L:
        raise f.error(lineno, f"l_max_3body must lie in 0..{MAX_L}, got {l_max[0]}")
    if l_max[1] not in (0, 2) or l_max[2] not in (0, 1):
        raise f.error(lineno, f"l_max_4body must be 0 or 2 and l_max_5body 0 or 1, got {l_max[1]} {l_max[2]}")
    if (l_max[1] or l_max[2]) and l_max[0] < 2:
        raise f.error(lineno, "the 4- and 5-body terms need l_max_3body >= 2")
    lineno, tokens = f.keyword("ANN", (2,), "num_neurons 0")
    neurons = f.number(lineno, tokens[1], int, "number of neurons")
    if neurons < 1:
        raise f.error(lineno, f"the number of neurons must be >= 1, got {neurons}")
    if tokens[2] != "0":
        raise f.error(lineno, "a second hidden layer is not supported; the line must be 'ANN num_neurons 0'")

    num_l = l_max[0] + int(bool(l_max[1])) + int(bool(l_max[2]))
    dim = (n_max[0] + 1) + (n_max[1] + 1) * num_l
    n_ann, n_desc = NEPModel.counts(version, n_types, n_max, basis_size, num_l, neurons)
    n_zbl = 10 * n_types * (n_types + 1) // 2 if zbl == (0.0, 0.0) else 0
    expected = n_ann + n_desc + dim + n_zbl
    left = len(f.rows) - f.pos
    if left != expected:
        lineno = f.rows[f.pos + expected][0] if left > expected else None
        msg = (f"the header describes {expected} values ({n_ann} ANN + {n_desc} descriptor parameters + "
               f"{dim} descriptor scalers" + (f" + {n_zbl} flexible ZBL parameters" if n_zbl else "")
               + f"), the file holds {left}: wrong parameter count")
        if left < expected:
            raise f.error(None, msg)
        raise f.error(lineno, msg + " (first surplus value here)")
    ann = f.values(n_ann, "ANN parameters")
    n_sets = 1 if version == 3 else n_types
    per_set = ann[:-1].reshape(n_sets, neurons * (dim + 2))
    w0 = per_set[:, :neurons * dim].reshape(n_sets, neurons, dim)
    b0 = per_set[:, neurons * dim:neurons * (dim + 1)]
    w1 = per_set[:, neurons * (dim + 1):]
    desc = f.values(n_desc, "descriptor parameters")
    n_rad = n_types * n_types * (n_max[0] + 1) * (basis_size[0] + 1)
    c_radial = desc[:n_rad].reshape(n_max[0] + 1, basis_size[0] + 1, n_types, n_types)
    c_angular = desc[n_rad:].reshape(n_max[1] + 1, basis_size[1] + 1, n_types, n_types)
    q_scaler = f.values(dim, "descriptor scalers")
    zbl_flexible = f.values(n_zbl, "flexible ZBL parameters").reshape(-1, 10) if n_zbl else None
    return NEPModel(version=version, species=species, rc_radial=rc[:, 0].copy(), rc_angular=rc[:, 1].copy(),
                    n_max=n_max, basis_size=basis_size, l_max=l_max, w0=w0.copy(), b0=b0.copy(), w1=w1.copy(),
                    b1=float(ann[-1]), c_radial=c_radial.copy(), c_angular=c_angular.copy(), q_scaler=q_scaler,
                    zbl=zbl, zbl_flexible=zbl_flexible, zbl_factor=zbl_factor, typewise=typewise, max_neighbors=max_neighbors,
                    path=str(path))


def _num(x) -> str:
    """Shortest text that reads back to the same float (integers without a decimal point)."""
    x = float(x)
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


def write_nep(model: NEPModel, path) -> Path:
    """Write ``model`` (atomically) as a ``nep.txt`` that GPUMD, NEP_CPU and :func:`read_nep` read; returns the path."""
    path = Path(path)
    lines = [f"nep{model.version}{'_zbl' if model.zbl is not None else ''} {model.n_types} {' '.join(model.species)}"]
    if model.zbl is not None:
        factor = "" if model.zbl_factor is None else f" {_num(model.zbl_factor)}"
        lines.append(f"zbl {_num(model.zbl[0])} {_num(model.zbl[1])}{factor}")
    if model.typewise:
        rc = " ".join(f"{_num(a)} {_num(b)}" for a, b in zip(model.rc_radial, model.rc_angular))
    else:
        rc = f"{_num(model.rc_radial[0])} {_num(model.rc_angular[0])}"
    mn = "" if model.max_neighbors is None else f" {_num(model.max_neighbors[0])} {_num(model.max_neighbors[1])}"
    lines.append(f"cutoff {rc}{mn}")
    lines.append(f"n_max {model.n_max[0]} {model.n_max[1]}")
    lines.append(f"basis_size {model.basis_size[0]} {model.basis_size[1]}")
    lines.append("l_max " + " ".join(str(v) for v in model.l_max))
    lines.append(f"ANN {model.num_neurons} 0")
    ann = np.concatenate([np.concatenate([model.w0.reshape(model.w0.shape[0], -1), model.b0, model.w1], axis=1).ravel(),
                          [model.b1]])
    body = [ann, model.c_radial.ravel(), model.c_angular.ravel(), model.q_scaler]
    if model.zbl_flexible is not None:
        body.append(model.zbl_flexible.ravel())
    lines.extend(_num(v) for v in np.concatenate(body))
    text = "\n".join(lines) + "\n"
    return atomic_write(path, lambda handle: handle.write(text))


def random_nep(species, *, version: int = 4, seed: int = 0, rc=(5.0, 4.0), n_max=(4, 4), basis_size=(6, 6),
               l_max=(4, 2, 1), neurons: int = 10, zbl=None, zbl_factor=None, typewise_rc=None) -> NEPModel:
    """A NEP with random parameters (for tests and benchmarks, not physics).

    species [T]; rc (rc_radial, rc_angular) Å, or typewise_rc [T, 2]; zbl None or (rc_inner, rc_outer),
    or (0, 0) for flexible ZBL (each type pair: switch from 0.7 to 1.5 Å, screening amplitudes in
    [0.05, 0.5], exponents in [0.2, 3], drawn after the other parameters); zbl_factor None or the
    typewise ZBL factor.
    Weights are scaled so that site energies stay O(1) eV and the descriptor scalers make each
    descriptor component O(1) in a solid of ~2 Å bonds.
    """
    rng = np.random.default_rng(seed)
    t = len(species)
    num_l = l_max[0] + int(bool(l_max[1])) + int(bool(l_max[2]))
    dim = (n_max[0] + 1) + (n_max[1] + 1) * num_l
    n_sets = 1 if version == 3 else t
    if typewise_rc is None:
        rcs, typewise = np.tile(np.asarray(rc, float), (t, 1)), False
    else:
        rcs, typewise = np.asarray(typewise_rc, float), True
    model = NEPModel(
        version=version, species=tuple(species), rc_radial=rcs[:, 0].copy(), rc_angular=rcs[:, 1].copy(),
        n_max=tuple(n_max), basis_size=tuple(basis_size), l_max=tuple(l_max),
        w0=rng.normal(0, 1.0 / np.sqrt(dim), (n_sets, neurons, dim)), b0=rng.normal(0, 0.5, (n_sets, neurons)),
        w1=rng.normal(0, 1.0 / np.sqrt(neurons), (n_sets, neurons)), b1=float(rng.normal(0, 0.1)),
        c_radial=rng.normal(0, 0.5, (n_max[0] + 1, basis_size[0] + 1, t, t)),
        c_angular=rng.normal(0, 0.5, (n_max[1] + 1, basis_size[1] + 1, t, t)),
        q_scaler=rng.uniform(0.2, 1.0, dim), zbl=None if zbl is None else tuple(map(float, zbl)), zbl_factor=zbl_factor,
        typewise=typewise)
    if model.zbl == (0.0, 0.0):
        para = np.zeros((t * (t + 1) // 2, 10))
        para[:, 0], para[:, 1] = 0.7, 1.5
        para[:, 2::2] = rng.uniform(0.05, 0.5, (len(para), 4))
        para[:, 3::2] = rng.uniform(0.2, 3.0, (len(para), 4))
        model.zbl_flexible = para
    return model
