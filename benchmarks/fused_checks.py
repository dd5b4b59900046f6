"""Fused-template calibration checks on the LFW dev npz files; writes docs/results/fused_*.json.

    nice .venv/bin/python benchmarks/fused_checks.py        # from /work/main, ~20 s

1. fused_calibration_trend.json: impostor score at FMR 1e-2..1e-5 per K (K=1: the photo calibration).
2. fused_watchlist_check.json: the open-set protocol (sightline.eval.watchlist, K=2, set-aside 2,
   seeds 0-4): predicted / measured FPIR of a fused list (sightline.eval.calibration.fused_watchlist_check).
3. fused_mixed_k_check.json: a fused list with 1..10 photos per person (mixed_k_watchlist_check, seeds 0-4).
"""

import json

from sightline.eval.calibration import build_fused_calibration, fused_watchlist_check, mixed_k_watchlist_check
from sightline.eval.embed import EmbeddedSet
from sightline.vision.calibration import Calibration, FusedCalibrations, load_builtin

SETS = {"dlib_resnet_v1": "out/lfw_all.npz", "fusion_dlib_faceres_v1": "out/fusion/lfw_fusion_s08.npz"}
FMRS = ("1e-2", "1e-3", "1e-4", "1e-5")
CMD = "nice .venv/bin/python benchmarks/fused_checks.py"
trend, checks, mixed = {}, [], []
for model, npz in SETS.items():
    es = EmbeddedSet.load(npz)
    photo = load_builtin(model)
    fc = FusedCalibrations.builtin(model, photo)
    trend[model] = {
        "1": {
            "templates": "photos",
            "impostors": photo.n_impostor_pairs,
            **{f: photo.threshold_for_fmr(float(f)) for f in FMRS},
        }
    }
    for k, c in fc.by_k.items():
        trend[model][str(k)] = {"impostors": c.n_impostor_pairs, **{f: c.threshold_for_fmr(float(f)) for f in FMRS}}
    # beyond the shipped K: how much the K=5 file under-states for persons with more photos
    for k in range(6, 11):
        doc = build_fused_calibration(es.embeddings, es.names, k=k, model=model, source=npz)
        ck = Calibration.from_json(doc)
        row = {
            "shipped": False,
            "templates": doc["n_templates"],
            "impostors": doc["n_impostor_pairs"],
            **{f: ck.threshold_for_fmr(float(f)) for f in FMRS[:3]},
        }
        for f in ("1e-3", "1e-4"):  # the true per-comparison FMR at the K=5 file's threshold for f
            row[f"fmr_at_k5_threshold_{f}"] = ck.est_fmr(fc.by_k[5].threshold_for_fmr(float(f)))
        trend[model][str(k)] = row
    for seed in range(5):
        r = fused_watchlist_check(
            es.embeddings, es.names, photo=photo, fused=fc, enroll_per_person=2, set_aside=2, seed=seed
        )
        checks.append({**r, "embeddings": npz})
        m = mixed_k_watchlist_check(es.embeddings, es.names, photo=photo, fused=fc, seed=seed)
        mixed.append({**m, "embeddings": npz})


def dump(name, doc):
    with open(f"docs/results/{name}", "w") as f:
        json.dump({"command": CMD, **doc}, f, indent=1)
        f.write("\n")


dump(
    "fused_calibration_trend.json",
    {
        "impostor_score_at_fmr_per_k": trend,
        "note": "threshold_for_fmr of each shipped calibration (K=1: <model>.calibration.json)",
    },
)
dump("fused_watchlist_check.json", {"protocol": "K=2, set-aside 2, seeds 0-4", "results": checks})
dump("fused_mixed_k_check.json", {"results": mixed})
for r in checks:
    for f, x in r["at_measured_operating_points"].items():
        t = r["tuned_for_target"][f]
        print(
            r["model"][:6],
            r["split"]["seed"],
            f,
            "meas {:.4f} new {:.4f} (x{:.2f}) old {:.4f} (x{:.2f}) | tuned new -> {:.4f} old -> {:.4f}".format(
                x["fpir_measured"],
                x["fpir_predicted_fused_cal"],
                x["ratio_fused_cal"],
                x["fpir_predicted_photo_cal"],
                x["ratio_photo_cal"],
                t["fused_cal"]["fpir_measured"],
                t["photo_cal_n_persons"]["fpir_measured"],
            ),
        )
