"""The fem stage's tensile runs, timed and compared: two finished ``runs/fem`` folders side by side.

    .venv/bin/python benchmarks/fem_stage.py BEFORE/runs/fem AFTER/runs/fem

Prints, for each tensile run (the main run and every sweep point; ``points/*.json``): displacement dofs,
accepted load steps and wall seconds in each folder, the largest change of its stress curve relative to
its peak and whether its staggered iteration counts are the same; then the throughput of each folder,

    dofs per second = sum over runs of (displacement dofs x accepted load steps) / sum of their wall seconds

(a run's wall time includes its meshing; a run that took an equal sample's result counts its steps at
the cost of its meshing); then, for every key of ``fem_results.json`` that holds numbers, the largest
relative difference ``|a - b| / max(|a|, |b|)`` over all its occurrences (timings and solver counts
left out), and the keys whose other values (flags, strings, list lengths) differ.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# what measures the run rather than the result
TIMING_KEYS = {"wall_s", "files", "properties"}


def runs(folder: Path) -> dict[str, dict]:
    """``{label: tensile run result}`` of the main run and every sweep point of a ``runs/fem`` folder."""
    out = {"tensile": json.loads((folder / "fem_results.json").read_text())["tensile"]}
    for path in sorted((folder / "points").glob("*.json")):
        result = json.loads(path.read_text())["result"]
        out[result["label"]] = result
    return out


def throughput(results: dict[str, dict]) -> tuple[int, float]:
    """``(dof-steps, wall seconds)`` summed over the runs."""
    dof_steps = sum(r["n_dofs_displacement"] * len(r["curve"]["strain"]) for r in results.values())
    return dof_steps, sum(r["wall_s"] for r in results.values())


def curve_change(a: dict, b: dict) -> tuple[float, str]:
    """Largest stress difference of two runs' curves over the first run's peak (NaN when their strain
    steps differ), and whether their staggered iteration counts are the same ('same' or 'differ')."""
    ca, cb = a["curve"], b["curve"]
    if ca["strain"] != cb["strain"]:
        return float("nan"), "differ"
    change = max(abs(x - y) for x, y in zip(ca["stress"], cb["stress"])) / a["strength_N_per_m"]
    return change, "same" if ca["iterations"] == cb["iterations"] else "differ"


def leaves(node, path=()):
    """``(path, value)`` of every leaf of a JSON tree; lists of numbers are leaves."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in TIMING_KEYS:
                yield from leaves(value, path + (key,))
    elif isinstance(node, list) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node):
        for i, value in enumerate(node):
            yield from leaves(value, path + (i,))
    else:
        yield path, node


def key_of(path: tuple) -> str:
    """The dotted key of a leaf with list indices dropped (``studies.rows.strength_N_per_m``)."""
    return ".".join(str(p) for p in path if not isinstance(p, int))


def differences(a: dict, b: dict) -> tuple[dict[str, float], dict[str, int]]:
    """``({key: largest relative difference of its numbers}, {key: count of other values that differ})``."""
    la, lb = dict(leaves(a)), dict(leaves(b))
    rel, other = {}, {}
    for path in sorted(set(la) | set(lb), key=str):
        x, y, key = la.get(path), lb.get(path), key_of(path)
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        lists = all(isinstance(v, list) for v in (x, y)) and len(x) == len(y)
        if numbers or lists:
            pairs = zip(x, y) if lists else [(x, y)]
            worst = max((abs(p - q) / max(abs(p), abs(q)) if p != q else 0.0 for p, q in pairs), default=0.0)
            rel[key] = max(rel.get(key, 0.0), worst)
        elif x != y:
            other[key] = other.get(key, 0) + 1
    return rel, other


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path, help="runs/fem of the first run")
    p.add_argument("after", type=Path, help="runs/fem of the second run")
    args = p.parse_args(argv)
    before, after = runs(args.before), runs(args.after)
    print(f"{'run':24s} {'dofs':>7s} {'steps':>11s} {'wall_s':>17s} {'d_stress/peak':>13s} {'iterations':>10s}  "
          "reused from")
    for label in sorted(set(before) | set(after)):
        a, b = before.get(label), after.get(label)
        steps = "/".join(str(len(r["curve"]["strain"])) if r else "-" for r in (a, b))
        wall = "/".join(f"{r['wall_s']:.1f}" if r else "-" for r in (a, b))
        change, same = curve_change(a, b) if a and b else (float("nan"), "-")
        print(f"{label:24s} {(a or b)['n_dofs_displacement']:7d} {steps:>11s} {wall:>17s} {change:13.2e} {same:>10s}  "
              f"{(b or {}).get('reused_from') or ''}")
    for name, results in (("before", before), ("after", after)):
        dof_steps, wall = throughput(results)
        print(f"{name}: {len(results)} runs, {dof_steps} dof-steps in {wall:.1f} s of run wall time: "
              f"{dof_steps / wall:.4g} dofs per second")
    rel, other = differences(json.loads((args.before / "fem_results.json").read_text()),
                             json.loads((args.after / "fem_results.json").read_text()))
    print("largest relative difference per key of fem_results.json:")
    for key, value in sorted(rel.items(), key=lambda kv: -kv[1]):
        if value > 0:
            print(f"  {value:9.2e}  {key}")
    print(f"  {sum(1 for v in rel.values() if v == 0)} keys with numbers are identical")
    for key, count in other.items():
        print(f"  differs ({count}x): {key}")


if __name__ == "__main__":
    main()
