"""What the default threshold means for a watchlist: a quick open-set check on LFW embeddings.

Not the full NIST FRVT 1:N protocol (that is `sightline eval watchlist`, a later issue): one
random 252-person watchlist (seed 0) of LFW identities with >= 2 photos, one enrolled photo each;
every photo of the other identities is a non-mated probe, the enrolled people's other photos are
mated probes. Prints, per false-match rate per comparison, the share of non-mated probes that
match someone (FPIR) and of mated probes identified correctly at rank 1 above the threshold.

    sightline eval embed ../shared/data/lfw/lfw-deepfunneled --out lfw.npz
    .venv/bin/python benchmarks/watchlist_fpir.py lfw.npz
"""

from __future__ import annotations

import json
import sys

import numpy as np

from sightline.vision.calibration import load_builtin

WATCHLIST_SIZE = 252


def main(path: str) -> None:
    with np.load(path) as z:
        names, emb = z["names"], z["embeddings"]
    rng = np.random.default_rng(0)
    ids, counts = np.unique(names, return_counts=True)
    listed = rng.choice(ids[counts >= 2], WATCHLIST_SIZE, replace=False)
    enrolled = np.array([np.flatnonzero(names == n)[0] for n in listed])
    is_listed = np.isin(names, listed)
    mated = np.setdiff1d(np.flatnonzero(is_listed), enrolled)
    non_mated = np.flatnonzero(~is_listed)
    gallery = emb[enrolled]
    best_non = (emb[non_mated] @ gallery.T).max(axis=1)
    s_mated = emb[mated] @ gallery.T
    truth = np.searchsorted(listed[np.argsort(listed)], names[mated])
    truth = np.argsort(listed)[truth]
    cal = load_builtin("dlib_resnet_v1")
    rows = []
    for fmr in (1e-3, 1e-4, 4e-5, 1e-5):
        thr = cal.threshold_for_fmr(fmr)
        hit = (s_mated.argmax(axis=1) == truth) & (s_mated.max(axis=1) >= thr)
        rows.append(
            {
                "fmr_per_comparison": fmr,
                "threshold": round(thr, 4),
                "fpir": round(float((best_non >= thr).mean()), 4),
                "tpir_rank1": round(float(hit.mean()), 4),
            }
        )
    print(
        json.dumps(
            {
                "watchlist_size": WATCHLIST_SIZE,
                "non_mated_probes": len(non_mated),
                "mated_probes": len(mated),
                "rows": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
