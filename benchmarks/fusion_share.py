"""How much of the fused score each model should get: sweep dlib's share of the fusion z-score.

For each share s (dlib s, faceres 1 - s) it scores, from one fusion npz (the parts kept by
`sightline --model fusion eval embed`), two things on the LFW dev side:

- all pairs of the npz's images (41 M impostor pairs, 84 k genuine): the false non-match rate at
  FMR 1e-3 / 1e-4 / 1e-5 — the criterion used to choose the share (the default threshold sits at
  FMR 1e-3, watchlist thresholds lower);
- the pairs.txt 10-fold protocol (accuracy, AUC, TAR at FAR 1e-3 / 1e-2), reported, not optimised.

    .venv/bin/python benchmarks/fusion_share.py --npz out/fusion/lfw_fusion.npz \
        --pairs ../shared/data/lfw/pairs.txt > docs/results/fusion_share.json

Memory: one (1024, N) block of scores at a time; ~1 min per share for N = 9,094 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from sightline.eval.lfw import evaluate_lfw, pair_scores
from sightline.eval.pairs import read_pairs
from sightline.vision.embed import fusion


def all_pairs_fnmr(a: np.ndarray, b: np.ndarray, labels: np.ndarray, ka: float, kb: float) -> dict[str, float]:
    """FNMR at FMR 1e-3/1e-4/1e-5 of the score ka * cos_a + kb * cos_b over every pair of rows."""
    n = len(a)
    gen: list[np.ndarray] = []
    top: list[np.ndarray] = []
    keep = 60_000  # > FMR 1e-3 x 41 M impostors
    for i0 in range(0, n, 1024):
        i1 = min(n, i0 + 1024)
        s = ka * (a[i0:i1] @ a.T) + kb * (b[i0:i1] @ b.T)
        upper = np.arange(n)[None, :] > np.arange(i0, i1)[:, None]
        same = labels[i0:i1, None] == labels[None, :]
        gen.append(s[upper & same])
        imp = s[upper & ~same]
        k = min(keep, imp.size)
        top.append(np.partition(imp, imp.size - k)[imp.size - k :])
    g = np.concatenate(gen)
    t = np.sort(np.concatenate(top))[::-1]
    n_imp = n * (n - 1) // 2 - g.size
    out = {}
    for fmr in (1e-3, 1e-4, 1e-5):
        k = int(fmr * n_imp)
        out[f"fnmr_at_fmr_{fmr:g}"] = float((g <= t[k]).mean())
    out["genuine_pairs"] = int(g.size)
    out["impostor_pairs"] = int(n_imp)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--npz", required=True)
    ap.add_argument("--pairs", required=True)
    ap.add_argument("--shares", default="1.0,0.9,0.8,0.7,0.6,0.5")
    args = ap.parse_args(argv)
    d = np.load(args.npz)
    a_all = d[f"part_{fusion.PARTS[0]}"].astype(np.float32)
    b_all = d[f"part_{fusion.PARTS[1]}"].astype(np.float32)
    names, paths = d["names"], d["paths"]
    ok = ~(np.isnan(a_all).any(1) | np.isnan(b_all).any(1))
    _, labels = np.unique(names[ok], return_inverse=True)
    params = fusion.fit(a_all[ok], b_all[ok])  # impostor mean / spread of each part (no labels)
    pairs = read_pairs(args.pairs)
    y, folds = np.asarray(pairs.is_same, bool), np.asarray(pairs.folds)
    za = (pair_scores(a_all, paths, pairs) - params.mu[0]) / params.sd[0]
    zb = (pair_scores(b_all, paths, pairs) - params.mu[1]) / params.sd[1]
    rows = []
    for share in (float(x) for x in args.shares.split(",")):
        ka, kb = share / params.sd[0], (1 - share) / params.sd[1]
        r = evaluate_lfw(share * za + (1 - share) * zb, y, folds)
        rows.append(
            {
                "share_dlib": share,
                "all_pairs": all_pairs_fnmr(a_all[ok], b_all[ok], labels, ka, kb),
                "pairs_txt": {
                    "accuracy": r.accuracy_mean,
                    "accuracy_se": r.accuracy_se,
                    "auc": r.auc,
                    "tar_at_far": {f"{t.far:g}": t.tar for t in r.tar_at_far},
                },
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    best = min(rows, key=lambda r: r["all_pairs"]["fnmr_at_fmr_0.001"])
    print(
        json.dumps(
            {
                "npz": args.npz,
                "images": int(ok.sum()),
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
