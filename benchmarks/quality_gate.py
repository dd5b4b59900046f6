"""Effect of the alert quality gate (``WatchConfig.min_alert_quality``) on live-video FNIR / FPIR.

    .venv/bin/python benchmarks/quality_gate.py --lfw-npz out/openset/lfw.npz > docs/results/quality_gate.json

Prints one JSON document. Everything goes through the real pieces: a real SQLite gallery (enrollment
as ``sightline enroll`` does it), the list's threshold tuned by ``sightline.gallery.tuning`` for
``--false-alerts-per-1000`` at the list's size, and ``WatchlistMatcher.match(embeddings, qualities)``
at each gate. Faces come from decoding the clips (PyAV) and ``FaceEngine.analyze`` on every
``--every``-th frame (no tracker: each analysed face is one decision, as if every frame were a best shot).

Two scenarios, each with ``--strangers`` LFW identities (one photo each, seeded) added to the list so
its size, and so its threshold, is realistic:

- ``hamilton``: ../shared/data/face-videos/short_hamilton_clip.mp4. List: Lin-Manuel Miranda and Alex
  Lacamoire (face-recognition-examples portraits) + the LFW fillers. Faces in the two shots of Lin-
  Manuel (0-1.52 s, 3.59-7.89 s; cut times found from frame differences) are mated; faces after the
  cut to the audience (7.89 s on: the Obamas and others, none of them listed) are non-mated. The shot
  1.52-3.59 s is not labelled and left out.
- ``generated``: a slideshow made by ``sightline.eval.clips.make_face_clip`` (the test clips' maker),
  one second per photo, each photo in three versions: as is, blurred (Gaussian, radius 4 px) and
  small (shrunk 5x onto a grey canvas). Mated photos: the face-recognition-examples probes of listed
  people (knn_examples/test/obama1, johnsnow_test1 = Kit Harington, alex_lacamoire1, portraits/obama-240p);
  list: the knn_examples/train persons + fillers. Non-mated: ``--probe-strangers`` LFW photos of
  identities neither listed nor fillers.

Figures per gate, per face: ``fnir`` (mated faces not matched to their own person), ``fpir``
(non-mated faces matched to anyone), ``wrong_person`` (mated faces matched to someone else); per
appearance (a shot of the Hamilton clip / a photo version of the slideshow): ``missed`` (no face of
the appearance matched correctly) and ``false_alerts`` (a non-mated appearance with any match).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FRE = SHARED / "face-recognition-examples"
HAMILTON = SHARED / "face-videos" / "short_hamilton_clip.mp4"
LFW = SHARED / "lfw" / "lfw-deepfunneled"
#: Shot boundaries of the Hamilton clip, seconds (frame differences > 25 grey levels).
HAMILTON_LIN = ((0.0, 1.519), (3.588, 7.892))
HAMILTON_AUDIENCE = (7.892, 1e9)
GATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)

logger = logging.getLogger("quality_gate")


@dataclass
class FaceObs:
    """One analysed face: its appearance (shot / photo version), true person (None: not listed), quality."""

    scenario: str
    appearance: str
    truth: str | None
    quality: float
    size_px: float
    embedding: np.ndarray


def _frames(path: Path, every: int):
    import av

    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % every == 0:
                yield float(f.time or 0.0), f.to_ndarray(format="rgb24")


def _variants(photo: Path, out: Path) -> dict[str, Path]:
    from PIL import Image, ImageFilter

    img = Image.open(photo).convert("RGB")
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{photo.parent.name}_{photo.stem}"
    paths = {"as_is": out / f"{stem}_as_is.png", "blur": out / f"{stem}_blur.png", "small": out / f"{stem}_small.png"}
    img.save(paths["as_is"])
    img.filter(ImageFilter.GaussianBlur(4)).save(paths["blur"])
    w, h = img.size
    canvas = Image.new("RGB", (w, h), (128, 128, 128))
    small = img.resize((max(1, w // 5), max(1, h // 5)), Image.BILINEAR)
    canvas.paste(small, ((w - small.width) // 2, (h - small.height) // 2))
    canvas.save(paths["small"])
    return paths


def _lfw_pick(npz: Path, n_fillers: int, n_probes: int, seed: int, exclude: set[str]) -> tuple[list[Path], list[Path]]:
    """Fillers: the first photo of ``n_fillers`` LFW identities; probes: one photo each of
    ``n_probes`` other identities (seeded, names in ``exclude`` left out)."""
    with np.load(npz, allow_pickle=False) as z:
        names, paths = z["names"].astype(str), z["paths"].astype(str)
    uniq = sorted(set(names) - exclude)
    order = np.random.default_rng(seed).permutation(len(uniq))
    first = {}
    for nm, p in zip(names, paths, strict=True):
        first.setdefault(nm, p)
    chosen = [uniq[i] for i in order[: n_fillers + n_probes]]
    fill = [LFW / first[nm] for nm in chosen[:n_fillers]]
    probes = [LFW / first[nm] for nm in chosen[n_fillers:]]
    return fill, probes


def _analyze_clip(engine, path: Path, every: int, label, scenario: str) -> list[FaceObs]:
    obs = []
    for t, rgb in _frames(path, every):
        lab = label(t)
        if lab is None:
            continue
        appearance, truth, only_largest = lab
        faces = engine.analyze(rgb, fallback=False)
        for f in faces[:1] if only_largest else faces:
            if f.embedding is None:
                continue
            obs.append(FaceObs(scenario, appearance, truth, f.quality.score, f.quality.size_px, f.embedding))
    return obs


def _gallery(engine, root: Path, listed: dict[str, list[Path]], fillers: list[Path], alerts_per_1000: float):
    from sightline.gallery import Gallery
    from sightline.gallery.tuning import tune_watchlist

    g = Gallery.open(root, engine)
    g.ensure_watchlist("list")
    for name, photos in listed.items():
        g.enroll_person(name, photos, watchlist="list", multi_face="largest")
    for p in fillers:
        g.enroll_person(f"lfw:{p.parent.name}", [p], watchlist="list", multi_face="largest")
    tuned = tune_watchlist(g, "list", alerts_per_1000)
    return g, tuned


def _figures(obs: list[FaceObs], gallery, gate: float) -> dict[str, object]:
    from sightline.video.matcher import WatchlistMatcher

    m = WatchlistMatcher(gallery, min_alert_quality=gate)
    matches = m.match(np.stack([o.embedding for o in obs]), [o.quality for o in obs])
    mated = [(o, mt) for o, mt in zip(obs, matches, strict=True) if o.truth is not None]
    non = [(o, mt) for o, mt in zip(obs, matches, strict=True) if o.truth is None]
    hit = [mt is not None and mt.name == o.truth for o, mt in mated]
    wrong = [mt is not None and mt.name != o.truth for o, mt in mated]
    fp = [mt is not None for _, mt in non]
    apps_m = sorted({o.appearance for o, _ in mated})
    apps_n = sorted({o.appearance for o, _ in non})
    missed = [a for a in apps_m if not any(h for (o, _), h in zip(mated, hit, strict=True) if o.appearance == a)]
    alerted = [a for a in apps_n if any(f for (o, _), f in zip(non, fp, strict=True) if o.appearance == a)]
    return {
        "gate": gate,
        "mated_faces": len(mated),
        "nonmated_faces": len(non),
        "gated_faces": m.gated,
        "fnir": round(1 - float(np.mean(hit)), 4) if mated else None,
        "wrong_person": round(float(np.mean(wrong)), 4) if mated else None,
        "fpir": round(float(np.mean(fp)), 4) if non else None,
        "mated_appearances": len(apps_m),
        "missed_appearances": missed,
        "nonmated_appearances": len(apps_n),
        "false_alert_appearances": alerted,
    }


def _impostor_by_quality(obs: list[FaceObs], gallery) -> dict[str, object]:
    """Top similarity of non-mated faces over the list, split at quality 0.2: do poor faces score
    higher against strangers (the case for a gate)?"""
    _, _pids, mat = gallery.store.load_descriptors(gallery.engine.model)
    non = [o for o in obs if o.truth is None]
    if not non or mat is None:
        return {}
    top = (np.stack([o.embedding for o in non]) @ mat.T).max(axis=1)
    q = np.array([o.quality for o in non])
    out = {}
    for label, sel in (("quality<0.2", q < 0.2), ("quality>=0.2", q >= 0.2)):
        if sel.any():
            out[label] = {
                "faces": int(sel.sum()),
                "mean": round(float(top[sel].mean()), 4),
                "max": round(float(top[sel].max()), 4),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw-npz", type=Path, required=True, help="npz of `sightline eval embed` on LFW (names, paths)")
    ap.add_argument("--strangers", type=int, default=300, help="LFW identities added to each list")
    ap.add_argument("--probe-strangers", type=int, default=30, help="LFW non-mated photos in the generated clip")
    ap.add_argument("--false-alerts-per-1000", type=float, default=10.0, help="the lists' tuning target")
    ap.add_argument("--every", type=int, default=2, help="analyse every N-th frame")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from sightline.eval.clips import make_face_clip
    from sightline.vision.engine import FaceEngine

    t0 = time.perf_counter()
    engine = FaceEngine.from_config()
    out: dict[str, object] = {
        "command": "benchmarks/quality_gate.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": engine.model,
        "backend": engine.backend,
    }
    with tempfile.TemporaryDirectory(prefix="quality_gate_") as tmp:
        tmpd = Path(tmp)
        fillers, lfw_probes = _lfw_pick(args.lfw_npz, args.strangers, args.probe_strangers, args.seed, set())

        # -- hamilton ------------------------------------------------------------------------------
        ham_list = {
            "lin_manuel_miranda": [FRE / "portraits" / "lin-manuel-miranda.png"],
            "alex_lacamoire": [FRE / "portraits" / "alex-lacamoire.png"],
        }
        g1, tuned1 = _gallery(engine, tmpd / "g1", ham_list, fillers, args.false_alerts_per_1000)

        def ham_label(t: float):
            for k, (a, b) in enumerate(HAMILTON_LIN):
                if a <= t < b:
                    return f"lin_shot{k + 1}", "lin_manuel_miranda", True
            if t >= HAMILTON_AUDIENCE[0]:
                return "audience", None, False
            return None

        ham = _analyze_clip(engine, HAMILTON, args.every, ham_label, "hamilton")

        # -- generated slideshow ---------------------------------------------------------------------
        train = FRE / "knn_examples" / "train"
        gen_list = {d.name: sorted(d.iterdir()) for d in sorted(train.iterdir()) if d.is_dir()}
        g2, tuned2 = _gallery(engine, tmpd / "g2", gen_list, fillers, args.false_alerts_per_1000)
        mated_probes = {
            FRE / "knn_examples" / "test" / "obama1.jpg": "obama",
            FRE / "knn_examples" / "test" / "johnsnow_test1.jpg": "kit_harington",
            FRE / "knn_examples" / "test" / "alex_lacamoire1.jpg": "alex_lacamoire",
            FRE / "portraits" / "obama-240p.jpg": "obama",
        }
        segs: list[tuple[Path | None, float]] = []
        truth_of: dict[Path, tuple[str, str | None]] = {}
        for photo, who in [*mated_probes.items(), *((p, None) for p in lfw_probes)]:
            for variant, vp in _variants(photo, tmpd / "photos").items():
                segs.append((vp, 1.0))
                truth_of[vp] = (f"{photo.parent.name}/{photo.stem}:{variant}", who)
        clip = make_face_clip(tmpd / "gen.mp4", segs, size=(640, 360), fps=10)

        def gen_label(t: float):
            p = clip.photo_at(t + 1e-3)
            if p is None:
                return None
            app, who = truth_of[p]
            return app, who, True

        gen = _analyze_clip(engine, clip.path, args.every, gen_label, "generated")

        scen = {}
        for name, obs, g, tuned in (("hamilton", ham, g1, tuned1), ("generated", gen, g2, tuned2)):
            q_m = [o.quality for o in obs if o.truth is not None]
            q_n = [o.quality for o in obs if o.truth is None]
            cal = engine.calibration
            thresholds = {
                f"tuned ({tuned.max_false_alerts_per_1000:g} per 1000 at {tuned.list_size})": tuned.threshold,
                "model default (FMR 1e-3)": float(cal.default_threshold),
                "FMR 1e-2": float(cal.threshold_for_fmr(1e-2)),
            }
            wl = g.get_watchlist("list")
            runs = []
            for label, thr in thresholds.items():
                g.store.update_watchlist(wl.id, description="", threshold=thr)
                runs.append(
                    {"threshold": label, "value": round(thr, 4), "gates": [_figures(obs, g, gate) for gate in GATES]}
                )
            scen[name] = {
                "list_size": tuned.list_size,
                "quality_mated_faces_p10_p50_p90": np.round(np.percentile(q_m, [10, 50, 90]), 3).tolist()
                if q_m
                else None,
                "quality_nonmated_faces_p10_p50_p90": np.round(np.percentile(q_n, [10, 50, 90]), 3).tolist()
                if q_n
                else None,
                "impostor_top_score_by_quality": _impostor_by_quality(obs, g),
                "runs": runs,
            }
            g.close()
        out["scenarios"] = scen
    out["seconds"] = round(time.perf_counter() - t0, 1)
    sys.stdout.write(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
