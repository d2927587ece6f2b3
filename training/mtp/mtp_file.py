"""MLIP ``.mtp`` potential files <-> a plain dict of fields.

Data flow: ``parse_mtp(path) -> dict`` (numbers as Python/NumPy values, checked for consistency) and
``format_mtp(fields) -> str`` (MLIP's layout).  ``MTP.read``/``MTP.write`` in ``model.py`` call these.

Fields (names as in the file; MLIP-2 "MTP1m" format, version 1.1.0):

* ``version`` str, ``potential_name`` str, ``scaling`` float (1.0 when absent), ``species_count`` S,
  ``potential_tag`` str (we store the element symbols there as ``species:Cu,Ag,Au``, see below),
* ``radial_basis_type`` ("RBChebyshev"), ``min_dist``, ``max_dist`` (Å), ``radial_basis_size`` X,
  ``radial_funcs_count`` M, ``radial_coeffs`` float [S, S, M, X] or None (an untrained template),
* ``alpha_moments_count``, ``alpha_index_basic`` int [Nb, 4] (mu, a, b, c),
  ``alpha_index_times`` int [Nt, 4] (i, j, multiplicity, k), ``alpha_moment_mapping`` int [K],
* ``species_coeffs`` float [S] (eV) or None, ``moment_coeffs`` float [K] (eV) or None.

Species in ``potential_tag``: the element symbols of types 0..S-1 are written as ``species:Cu,Ag,Au``
(:func:`species_tag`, read back by :func:`tag_species`).  Every MLIP reader accepts this line: MLIP-2's
own loader (``MTP::Load``, which LAMMPS-MLIP links) reads the key and discards the rest of the line;
readers that read token by token see one token without spaces; motep splits each ``key = value`` line at
*every* ``=`` and needs exactly two parts, so the value may hold no ``=`` (our first form,
``species=Cu,Ag``, which we still read, broke motep).  :func:`format_mtp` refuses a tag with ``=`` or a
line break for the same reason.

Numbers are written with 16 significant digits (MLIP's ``%.15e``) when that reads back to the same
double, else with 17, so a written file always reads back to identical numbers and an MLIP file that
was read is written back unchanged.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import MTPFormatError

_BRACES = re.compile(r"^\{(.*)\}$", re.S)

#: ``potential_tag`` prefix of the species list we write (``species:C,B``) ...
SPECIES_TAG_PREFIX = "species:"
#: ... and of the one we wrote first (``species=C,B``): still read, never written (motep cannot read it).
LEGACY_SPECIES_TAG_PREFIX = "species="
#: An element symbol (or label) in the tag: no spaces, commas, ``=``, ``:`` or braces.
_SYMBOL = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def species_tag(symbols) -> str:
    """The ``potential_tag`` text that records ``symbols`` (element symbols of types 0..S-1), e.g.
    ``species:C,B``.  Raises ValueError for a symbol that is not a letter followed by letters, digits
    or ``_`` (anything else could break a reader)."""
    symbols = [str(s) for s in symbols]
    bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
    if bad or not symbols:
        raise ValueError(f"species {symbols}: each must be a letter followed by letters, digits or '_' "
                         f"(bad: {bad})")
    return SPECIES_TAG_PREFIX + ",".join(symbols)


def tag_species(tag: str) -> list[str] | None:
    """Element symbols recorded in a ``potential_tag`` (``species:C,B`` or the legacy ``species=C,B``);
    None when the tag records none (MLIP's own files leave it empty)."""
    tag = (tag or "").strip()
    for prefix in (SPECIES_TAG_PREFIX, LEGACY_SPECIES_TAG_PREFIX):
        if tag.startswith(prefix):
            symbols = [s.strip() for s in tag[len(prefix):].split(",")]
            return symbols if all(symbols) else None
    return None


#: key -> kind; ``count:NAME`` keys are checked against the length of list NAME.
_SCALARS = {
    "version": str, "potential_name": str, "scaling": float, "species_count": int, "potential_tag": str,
    "radial_basis_type": str, "min_dist": float, "max_dist": float, "radial_basis_size": int,
    "radial_funcs_count": int, "alpha_moments_count": int, "alpha_index_basic_count": int,
    "alpha_index_times_count": int, "alpha_scalar_moments": int,
}
_LISTS = {
    "alpha_index_basic": (int, 4), "alpha_index_times": (int, 4), "alpha_moment_mapping": (int, None),
    "species_coeffs": (float, None), "moment_coeffs": (float, None),
}
_REQUIRED = ["species_count", "radial_basis_type", "min_dist", "max_dist", "radial_basis_size",
             "radial_funcs_count", "alpha_moments_count", "alpha_index_basic", "alpha_index_times",
             "alpha_moment_mapping"]


def _number_list(text: str, kind, width, where: str):
    inner = text.replace("{", " ").replace("}", " ").replace(",", " ").split()
    try:
        values = [kind(v) for v in inner]
    except ValueError:
        raise MTPFormatError(f"{where}: not a list of {kind.__name__} numbers: {text[:80]!r}") from None
    if width is not None:
        if len(values) % width:
            raise MTPFormatError(f"{where}: expected groups of {width} numbers, got {len(values)} numbers")
        return np.array(values, dtype=kind).reshape(-1, width)
    return np.array(values, dtype=kind)


def parse_mtp(path) -> dict:
    """Read an MLIP ``.mtp`` file into a dict of fields (see the module docstring).

    Raises MTPFormatError naming the file and line for an unknown key, a value that does not parse, a
    count that disagrees with its list, or an index outside its table.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MTPFormatError(f"{path}: no such .mtp file") from None
    except UnicodeDecodeError as exc:
        raise MTPFormatError(f"{path}: not a text file (byte {exc.object[exc.start]:#04x} at offset {exc.start} "
                             "is not UTF-8); an MLIP .mtp potential is plain text") from None
    except OSError as exc:
        raise MTPFormatError(f"{path}: cannot read the .mtp file ({exc.strerror or exc})") from None
    fields: dict = {"scaling": 1.0, "potential_tag": "", "radial_coeffs": None,
                    "species_coeffs": None, "moment_coeffs": None}
    where_of: dict = {}
    first = next((k for k, line in enumerate(lines) if line.strip()), None)
    if first is None or lines[first].strip() != "MTP":
        raise MTPFormatError(f"{path}: line {1 if first is None else first + 1}: the file must start with "
                             "'MTP' (an MLIP moment tensor potential)")
    k = first + 1
    while k < len(lines):
        line = lines[k].strip()
        where = f"{path}: line {k + 1}"
        k += 1
        if not line:
            continue
        if line == "radial_coeffs":
            k = _parse_radial_coeffs(lines, k, fields, path)
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            raise MTPFormatError(f"{where}: expected 'key = value', found {line[:80]!r}")
        where_of[key] = where
        if key in _SCALARS:
            kind = _SCALARS[key]
            try:
                fields[key] = kind(value) if kind is not str else value
            except ValueError:
                raise MTPFormatError(f"{where}: {key} = {value!r} is not a valid {kind.__name__}") from None
        elif key in _LISTS:
            kind, width = _LISTS[key]
            if value.startswith("{") and value.count("{") > value.count("}"):
                raise MTPFormatError(f"{where}: {key}: the list is not closed by '}}' (the file was cut short?); "
                                     "copy it again or rerun the fit that wrote it")
            if not _BRACES.match(value):
                raise MTPFormatError(f"{where}: {key} must be a list in braces {{...}}, found {value[:60]!r}")
            fields[key] = _number_list(value, kind, width, f"{where}: {key}")
        else:
            raise MTPFormatError(f"{where}: unknown key {key!r} in an .mtp file")
    for key in _REQUIRED:
        if key not in fields:
            raise MTPFormatError(f"{path}: required key {key!r} is missing (the file ends at line {len(lines)}: "
                                 "cut short?)")
    _check_complete(fields, path, len(lines))
    _check(fields, path, where_of)
    return fields


def _check_complete(f: dict, path: Path, n_lines: int) -> None:
    """A trained potential (its ``radial_coeffs`` are written) has ``species_coeffs`` and ``moment_coeffs``
    after them; only an untrained template (MLIP's, no coefficients at all) lacks all three. A file with some
    but not all was cut short: reading it as a template would silently zero the potential."""
    have = [key for key in ("radial_coeffs", "species_coeffs", "moment_coeffs") if f[key] is not None]
    if have and len(have) < 3:
        missing = [key for key in ("species_coeffs", "moment_coeffs") if f[key] is None]
        raise MTPFormatError(f"{path}: the file ends at line {n_lines} without {' and '.join(missing)}, which a "
                             f"trained potential has after {have[-1]}: it was cut short (an interrupted copy or "
                             "write?); copy it again or rerun the fit that wrote it")


def _parse_radial_coeffs(lines: list[str], k: int, fields: dict, path: Path) -> int:
    """Parse the ``radial_coeffs`` block starting at line index k; return the index after it."""
    for key in ("species_count", "radial_funcs_count", "radial_basis_size"):
        if key not in fields:
            raise MTPFormatError(f"{path}: line {k}: radial_coeffs comes before {key}")
    s, m, x = fields["species_count"], fields["radial_funcs_count"], fields["radial_basis_size"]
    coeffs = np.full((s, s, m, x), np.nan)
    seen = set()
    while k < len(lines):
        head = lines[k].strip()
        match = re.fullmatch(r"(\d+)-(\d+)", head)
        if not match:
            break
        a, b = int(match.group(1)), int(match.group(2))
        if a >= s or b >= s:
            raise MTPFormatError(f"{path}: line {k + 1}: species pair {head} outside species_count = {s}")
        for mu in range(m):
            row = k + 2 + mu
            if row > len(lines):
                raise MTPFormatError(f"{path}: line {row}: file ends inside radial_coeffs {head}")
            text = lines[row - 1].strip()
            if not text.startswith("{"):
                raise MTPFormatError(f"{path}: line {row}: radial_coeffs {head} has {mu} rows, radial_funcs_count = {m} "
                                     f"needs {m}; found {text[:60]!r}")
            values = _number_list(text, float, None, f"{path}: line {row}: radial_coeffs {head}")
            if values.size != x:
                raise MTPFormatError(f"{path}: line {row}: radial_coeffs {head} needs radial_basis_size = {x} "
                                     f"numbers, found {values.size}")
            coeffs[a, b, mu] = values
        seen.add((a, b))
        k += 1 + m
    if len(seen) != s * s:
        missing = sorted({(a, b) for a in range(s) for b in range(s)} - seen)
        raise MTPFormatError(f"{path}: line {k}: radial_coeffs lack species pairs {missing[:4]}")
    fields["radial_coeffs"] = coeffs
    return k


def _check(f: dict, path: Path, where_of: dict) -> None:
    def fail(key, what):
        raise MTPFormatError(f"{where_of.get(key, str(path))}: {key}: {what}")

    for key in ("scaling", "min_dist", "max_dist", "radial_coeffs", "species_coeffs", "moment_coeffs"):
        if f[key] is not None and not np.all(np.isfinite(f[key])):
            fail(key, "holds a number that is not finite (nan or inf): a fit that diverged? refit it")
    if f["radial_basis_type"] != "RBChebyshev":
        fail("radial_basis_type", f"only RBChebyshev is supported, got {f['radial_basis_type']!r}")
    if not 0 <= f["min_dist"] < f["max_dist"]:
        fail("max_dist", f"need 0 <= min_dist < max_dist, got {f['min_dist']} and {f['max_dist']}")
    if f["species_count"] < 1 or f["radial_basis_size"] < 2 or f["radial_funcs_count"] < 1:
        fail("species_count", "species_count, radial_funcs_count must be >= 1 and radial_basis_size >= 2")
    basic, times, mapping = f["alpha_index_basic"], f["alpha_index_times"], f["alpha_moment_mapping"]
    for key, table in (("alpha_index_basic", basic), ("alpha_index_times", times)):
        count = f.get(key + "_count")
        if count is not None and count != len(table):
            fail(key, f"{key}_count = {count} but the list has {len(table)} entries")
    count = f.get("alpha_scalar_moments")
    if count is not None and count != len(mapping):
        fail("alpha_moment_mapping", f"alpha_scalar_moments = {count} but the list has {len(mapping)} entries")
    n_moments = f["alpha_moments_count"]
    if len(basic) > n_moments:
        fail("alpha_index_basic", f"{len(basic)} entries but alpha_moments_count = {n_moments}")
    if len(basic) and (basic.min() < 0 or basic[:, 0].max() >= f["radial_funcs_count"]):
        fail("alpha_index_basic", "a radial function index is outside 0 .. radial_funcs_count-1")
    if len(times):
        if times[:, [0, 1, 3]].min() < 0 or times[:, [0, 1, 3]].max() >= n_moments:
            fail("alpha_index_times", f"a moment index is outside 0 .. {n_moments - 1}")
        if np.any(times[:, 3] < len(basic)) or np.any(np.maximum(times[:, 0], times[:, 1]) >= times[:, 3]):
            fail("alpha_index_times", "each product must build a non-basic moment from earlier moments")
    if len(mapping) and (mapping.min() < 0 or mapping.max() >= n_moments):
        fail("alpha_moment_mapping", f"an index is outside 0 .. {n_moments - 1}")
    if f["species_coeffs"] is not None and len(f["species_coeffs"]) != f["species_count"]:
        fail("species_coeffs", f"{len(f['species_coeffs'])} values but species_count = {f['species_count']}")
    if f["moment_coeffs"] is not None and len(f["moment_coeffs"]) != len(mapping):
        fail("moment_coeffs", f"{len(f['moment_coeffs'])} values but {len(mapping)} scalar moments")


def _float(x: float) -> str:
    text = f"{x:.15e}"
    return text if float(text) == x else f"{x:.16e}"


def _floats(values) -> str:
    return "{" + ", ".join(_float(float(v)) for v in values) + "}"


def _ints(table) -> str:
    table = np.asarray(table)
    if table.ndim == 1:
        return "{" + ", ".join(str(int(v)) for v in table) + "}"
    return "{" + ", ".join(_ints(row) for row in table) + "}"


def format_mtp(f: dict) -> str:
    """MLIP's text of an ``.mtp`` file from a dict of fields (see the module docstring)."""
    tag = str(f.get("potential_tag", "") or "")
    if "=" in tag or "\n" in tag or "\r" in tag:
        raise MTPFormatError(f"potential_tag {tag!r}: a tag with '=' or a line break cannot be read by every MLIP "
                             "reader (motep splits at each '='); record species with species_tag(), e.g. "
                             "'species:C,B'")
    out = ["MTP", f"version = {f.get('version', '1.1.0')}", f"potential_name = {f.get('potential_name', 'MTP1m')}"]
    out.append(f"scaling = {_float(float(f.get('scaling', 1.0)))}")
    out += [f"species_count = {f['species_count']}", f"potential_tag = {tag}",
            f"radial_basis_type = {f['radial_basis_type']}",
            f"\tmin_dist = {_float(float(f['min_dist']))}", f"\tmax_dist = {_float(float(f['max_dist']))}",
            f"\tradial_basis_size = {f['radial_basis_size']}", f"\tradial_funcs_count = {f['radial_funcs_count']}"]
    coeffs = f.get("radial_coeffs")
    if coeffs is not None:
        out.append("\tradial_coeffs")
        s = f["species_count"]
        for a in range(s):
            for b in range(s):
                out.append(f"\t\t{a}-{b}")
                out += ["\t\t\t" + _floats(row) for row in coeffs[a, b]]
    basic, times, mapping = f["alpha_index_basic"], f["alpha_index_times"], f["alpha_moment_mapping"]
    out += [f"alpha_moments_count = {f['alpha_moments_count']}",
            f"alpha_index_basic_count = {len(basic)}", f"alpha_index_basic = {_ints(basic)}",
            f"alpha_index_times_count = {len(times)}", f"alpha_index_times = {_ints(times)}",
            f"alpha_scalar_moments = {len(mapping)}", f"alpha_moment_mapping = {_ints(mapping)}"]
    if f.get("species_coeffs") is not None:
        out.append(f"species_coeffs = {_floats(f['species_coeffs'])}")
    if f.get("moment_coeffs") is not None:
        out.append(f"moment_coeffs = {_floats(f['moment_coeffs'])}")
    return "\n".join(out) + "\n"
