"""Recipe of ``graphene_l08.mtp``: a level-8 MTP fitted to the embedded graphene AIMD set (for md_gpu tests).

Run from the repository root::

    OMP_NUM_THREADS=1 .venv/bin/python tests/data/md/make_graphene_l08.py [--max-iter 80]

Data: ``cases/graphene_borophene/data/graphene.extxyz.gz`` (216 frames of 60-atom graphene,
tblite GFN1-xTB NVT at 300/900/1500 K, strains 0-30 % along x, y, xy); every 6th frame is held
out for validation. Template ``training/mtp/templates/08.mtp`` (cut-off 5 Å), MLIP-2 default
weights, seed 0, θ optimised on 60 evenly spaced frames, linear coefficients on all training
frames. Writes ``graphene_l08.mtp`` and ``graphene_l08.fit.json`` (metrics) beside this file.
"""
import argparse
import json
from pathlib import Path

from ase.io import read

from training.fit import FitWeights, fit, frame_types_of, load_template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
DATA = ROOT / "cases" / "graphene_borophene" / "data" / "graphene.extxyz.gz"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-iter", type=int, default=80)
    parser.add_argument("--theta-frames", type=int, default=60)
    parser.add_argument("--forces-weight", type=float, default=0.01, help="w_F (MLIP-2 default 0.01)")
    parser.add_argument("--checkpoint", default="/tmp/graphene_l08.fit.npz")
    parser.add_argument("--out", default=str(HERE / "graphene_l08.mtp"))
    args = parser.parse_args(argv)
    frames = read(DATA, index=":")
    valid = frames[::6]
    train = [a for k, a in enumerate(frames) if k % 6]
    types, species = frame_types_of(train, ["C"])
    vtypes, _ = frame_types_of(valid, ["C"])
    spec, _ = load_template(ROOT / "training" / "mtp" / "templates" / "08.mtp", species_count=1)
    result = fit(spec, train, types, max_iter=args.max_iter, seed=0,
                 weights=FitWeights(energy=1.0, forces=args.forces_weight, stress=0.001), theta_frames=args.theta_frames,
                 valid_frames=valid, valid_types=vtypes, checkpoint=args.checkpoint, resume=True,
                 species=species, source=str(DATA))
    out = result.write(args.out)
    Path(out).with_suffix(".fit.json").write_text(json.dumps(
        {"data": str(DATA.relative_to(ROOT)), "template": "training/mtp/templates/08.mtp",
         "train_frames": len(train), "valid_frames": len(valid), "max_iter": args.max_iter,
         "weights": {"energy": 1.0, "forces": args.forces_weight, "stress": 0.001},
         "theta_frames": args.theta_frames, "seconds": result.seconds, "metrics": result.metrics},
        indent=2, default=float) + "\n")
    print(json.dumps(result.metrics, indent=2, default=float))


if __name__ == "__main__":
    main()
