"""How much of the fused score each model should get: sweep dlib's share of the fusion z-score.

For each share s (dlib s, faceres 1 - s) it scores, from one fusion npz (the parts kept by
`sightline --model fusion eval embed`), two things on the LFW dev side:

- all pairs of the npz's images (41 M impostor pairs, 84 k genuine): the false non-match rate at
  FMR 1e-3 / 1e-4 / 1e-5 — the criterion used to choose the share (the default threshold sits at
  FMR 1e-3, watchlist thresholds lower);
- the pairs.txt 10-fold protocol (accuracy, AUC, TAR at FAR 1e-3 / 1e-2), reported, not optimised.

    .venv/bin/python benchmarks/fusion_share.py --npz out/fusion/lfw_fusion.npz \
        --pairs ../shared/data/lfw/pairs.txt > docs/results/fusion_share.json

The all-pairs figures come from `sightline.eval.calibration.build_calibration` on the templates fused
with each share, so they follow the shipped calibration files' threshold convention exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import numpy as np

from sightline.eval.calibration import build_calibration
from sightline.eval.lfw import evaluate_lfw, pair_scores
from sightline.eval.pairs import read_pairs
from sightline.vision.embed import fusion


def all_pairs_fnmr(a: np.ndarray, b: np.ndarray, names: np.ndarray, params: fusion.FusionParams) -> dict[str, float]:
    """FNMR at FMR 1e-3/1e-4/1e-5 over every pair of rows of the templates fused with ``params``: the
    same computation (and threshold convention) as the shipped calibration files."""
    doc = build_calibration(fusion.fuse(a, b, params), names, model=params.model, source="fusion_share")
    fnmr = doc["fnmr_at_fmr"]
    assert isinstance(fnmr, dict)
    return {
        **{f"fnmr_at_fmr_{float(k):g}": v for k, v in fnmr.items() if float(k) in (1e-3, 1e-4, 1e-5)},
        "genuine_pairs": doc["n_genuine_pairs"],
        "impostor_pairs": doc["n_impostor_pairs"],
    }


def _with_share(params: fusion.FusionParams, share: float) -> fusion.FusionParams:
    """``params`` with dlib's share ``share`` (1.0, dlib alone, kept just inside the allowed open range)."""
    share = min(max(share, 1e-9), 1 - 1e-9)
    return dataclasses.replace(params, share=(share, 1.0 - share))


def sweep(
    a_all: np.ndarray, b_all: np.ndarray, names: np.ndarray, paths: np.ndarray, pairs, shares: list[float]
) -> tuple[fusion.FusionParams, list[dict]]:
    """One row per dlib share (1.0: dlib alone, 0.0: faceres alone) from the two parts of the same images:
    all-pairs FNMR (the criterion) and the pairs.txt protocol (reported). Impostor mean / spread of each
    part fitted on these images (no labels)."""
    ok = ~(np.isnan(a_all).any(1) | np.isnan(b_all).any(1))
    params = fusion.fit(a_all[ok], b_all[ok])
    y, folds = np.asarray(pairs.is_same, bool), np.asarray(pairs.folds)
    za = (pair_scores(a_all, paths, pairs) - params.mu[0]) / params.sd[0]
    zb = (pair_scores(b_all, paths, pairs) - params.mu[1]) / params.sd[1]
    rows = []
    for share in shares:
        r = evaluate_lfw(share * za + (1 - share) * zb, y, folds)
        rows.append(
            {
                "share_dlib": share,
                "all_pairs": all_pairs_fnmr(a_all[ok], b_all[ok], names[ok], _with_share(params, share)),
                "pairs_txt": {
                    "accuracy": r.accuracy_mean,
                    "accuracy_se": r.accuracy_se,
                    "auc": r.auc,
                    "tar_at_far": {f"{t.far:g}": t.tar for t in r.tar_at_far},
                },
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return params, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--shares", default="1.0,0.9,0.8,0.7,0.6,0.5")
    args = ap.parse_args(argv)
    d = np.load(args.npz)
    a_all = d[f"part_{fusion.PARTS[0]}"].astype(np.float32)
    b_all = d[f"part_{fusion.PARTS[1]}"].astype(np.float32)
    shares = [float(x) for x in args.shares.split(",")]
    params, rows = sweep(a_all, b_all, d["names"], d["paths"], read_pairs(args.pairs), shares)
    best = min(rows, key=lambda r: r["all_pairs"]["fnmr_at_fmr_0.001"])
    print(
        json.dumps(
            {
                "npz": args.npz,
                "images": int((~(np.isnan(a_all).any(1) | np.isnan(b_all).any(1))).sum()),
                "mu": params.mu,
                "sd": params.sd,
                "criterion": "lowest all-pairs FNMR at FMR 1e-3",
                "best_share_dlib": best["share_dlib"],
                "rows": rows,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
