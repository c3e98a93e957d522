"""`make demo`: the autopilot end to end on the bundled adult table.

Holds back 20 % of the rows (seeded), runs ``automl fit`` on the rest with a short time limit,
prints the leaderboard and where the model was saved, then ``automl predict`` on a few of the
held-back rows and the test score on all of them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

DATA = Path(__file__).resolve().parent.parent / "data" / "adult.csv.gz"


def run(cmd: list[str]) -> None:
    print("\n$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output", default="runs/demo")
    ap.add_argument("--time-limit", type=float, default=60)
    a = ap.parse_args(argv)
    from sklearn.model_selection import train_test_split

    out = Path(a.output)
    work = out.parent / (out.name + "-data")
    work.mkdir(parents=True, exist_ok=True)
    df = pd.read_csv(DATA)
    train, test = train_test_split(df, test_size=0.2, random_state=0, stratify=df["class"])
    train.to_csv(work / "train.csv", index=False)
    test.drop(columns=["class"]).head(5).to_csv(work / "new_rows.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    print(
        f"adult: {len(train)} training rows, {len(test)} held back "
        "(data/PROVENANCE.csv says where it comes from)"
    )
    exe = str(Path(sys.executable).parent / "automl")
    run(
        [
            exe,
            "fit",
            str(work / "train.csv"),
            "--target",
            "class",
            "--time-limit",
            str(a.time_limit),
            "--output",
            str(out),
            "--test-data",
            str(work / "test.csv"),
            "--overwrite",
        ]
    )
    run(
        [
            exe,
            "predict",
            str(out),
            str(work / "new_rows.csv"),
            "--output",
            str(work / "predictions.csv"),
            "--no-ray",
        ]
    )
    preds = pd.read_csv(work / "predictions.csv")
    shown = pd.read_csv(work / "new_rows.csv")[["age", "education", "occupation", "hours-per-week"]]
    print(
        pd.concat(
            [shown, preds, test["class"].head(5).reset_index(drop=True).rename("actual")], axis=1
        ).to_string(index=False)
    )
    print(f"\nnext: automl leaderboard {out}   |   automl serve {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
