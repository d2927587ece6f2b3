"""A two-stage toy pipeline with the product's stage contract, for the runner tests.

Stage ``a`` squares the numbers of ``data/numbers.txt`` over ``ctx.map`` tasks
(one file per task, written on whichever rank ran it); stage ``b`` reads ``a``'s
output and scales it. ``fail_on`` makes one task raise, to test error handling.
"""
from __future__ import annotations

import json
import os
import time

from common.atomic import write_json
from multiscale.stages import Pipeline, Stage

SETTINGS_A = {
    "power": (int, 2, "exponent applied to each number"),
    "fail_on": (int, -1, "index of a task that raises (-1: none)"),
    "sleep_s": (float, 0.0, "pause per task (s), to interrupt a run in the middle"),
    "nested": {"label": (str, "toy", "a label copied to the output")},
}
SETTINGS_B = {"scale": (float, 2.0, "factor applied to stage a's results")}


def _task(item):
    index, value, power, fail_on, sleep_s, out_dir = item
    if index == fail_on:
        raise RuntimeError(f"task {index} was told to fail")
    time.sleep(sleep_s)
    result = value ** power
    with open(os.path.join(out_dir, f"task_{index:03d}.txt"), "w") as handle:
        handle.write(f"{result}\n")
    return result


def run_a(settings, ctx):
    numbers = [float(x) for x in (ctx.case_dir / "data" / "numbers.txt").read_text().split()]
    items = [(i, v, settings["power"], settings["fail_on"], settings["sleep_s"], str(ctx.out_dir))
             for i, v in enumerate(numbers)]
    results = ctx.map(_task, items)
    if ctx.is_root:
        write_json(ctx.out_dir / "a.json", {"results": results, "label": settings["nested"]["label"]})
    return {"n": len(results), "sum": sum(results)}


def run_b(settings, ctx):
    a = json.loads((ctx.stage_dir("a") / "a.json").read_text())
    scaled = [settings["scale"] * r for r in a["results"]]
    if ctx.is_root:
        write_json(ctx.out_dir / "b.json", {"scaled": scaled})
    return {"total": sum(scaled)}


TOY = Pipeline((
    Stage("a", "toy_stages", "SETTINGS_A", "run_a", case_inputs=("data/*",)),
    Stage("b", "toy_stages", "SETTINGS_B", "run_b", after=("a",)),
    Stage("c", "toy_stages_not_written", "SETTINGS_C", "run_c", after=("b",)),
))

CASE_YAML = """\
name: toy
systems:
  alpha: {kind: phase}
a:
  power: 2
b:
  scale: 3.0
"""


def make_case(path, numbers=(1, 2, 3, 4, 5), yaml_text=CASE_YAML):
    """Write a toy case directory and return its path."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "data" / "numbers.txt").write_text(" ".join(str(n) for n in numbers) + "\n")
    (path / "case.yaml").write_text(yaml_text)
    return path
