"""Compare faceres preprocessing variants on a fixed LFW dev subset (issue 7); prints JSON.

Cheap screening, faceres alone (and fused with the dlib part of an existing fusion npz), before any
full re-embedding. Subset: the images of pairs.txt folds 1-2 plus random images (seed 0) up to
``--images``; faces are detected once (the enrollment pipeline's subject face, as ``eval embed``)
and each variant re-crops and re-embeds them. Reported per variant:

- ``pairs``: folds 1-2 of pairs.txt: 2-fold cross-validated accuracy (threshold chosen on one fold,
  applied to the other), AUC, TAR at FAR 1e-2;
- ``all_pairs``: every pair of subset images (genuine = same identity): AUC, FNMR at FMR 1e-3 / 1e-4;
- ``fusion_*``: the same for the z-score average with the dlib part (impostor mean/sd from the subset).

Variants (input normalisation / resize / crop; ``imagenet_pil_aa_grow40`` is what ships):
``imagenet`` = BGR minus (103.939, 116.779, 123.68) (keras ``imagenet_utils.preprocess_input``, which
HSE_FaceRec_tf's MobileNet training and ``facial_analysis.py`` use), ``vggface2`` = BGR minus
(91.4953, 103.8827, 131.0912) (HSE's ``facerec_test.py`` uses them for ``vgg2_resnet.pb`` only),
``rgb255`` = Human's input; ``pil_aa`` = Pillow bilinear (antialiased), ``noaa`` = 2-tap bilinear
without antialiasing (like ``cv2.resize``); ``grow40`` = box grown 40%, moved up 10% of its height,
``hse10px`` = box plus 10 px each side, clamped (``facial_analysis.py``). Forms: the engine's
mirror average of raw outputs, no mirror, L2 before averaging, and descriptor centering (the mean
descriptor of the subset images outside folds 1-2 subtracted, raw or after L2).

``--centering``: instead, on a whole fusion npz (its L2-normalised parts, no re-embedding): faceres,
dlib and fusion with and without centering (mean part descriptor subtracted, then L2), centre
fitted on all images and, for faceres, cross-fitted (per fold, from the identities not in it); fusion
also on every pair of images (FNMR at FMR 1e-3 .. 1e-5, as the calibration files report).

Usage (dev data only)::

    nice .venv/bin/python benchmarks/faceres_preprocessing.py --lfw ../shared/data/lfw \
        --npz out/fusion/lfw_fusion.npz > docs/results/fusion_faceres_preprocessing.json
    nice .venv/bin/python benchmarks/faceres_preprocessing.py --lfw ../shared/data/lfw \
        --npz out/fusion/lfw_fusion.npz --centering > docs/results/fusion_faceres_centering.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from sightline.eval.lfw import best_threshold, roc_auc, tar_at_far
from sightline.eval.pairs import read_pairs
from sightline.vision.embed import faceres

logger = logging.getLogger(__name__)

IMAGENET_BGR = (103.939, 116.779, 123.68)
VGGFACE2_BGR = (91.4953, 103.8827, 131.0912)


def select_images(root: Path, pairs_path: Path, n_images: int, seed: int = 0) -> tuple[list[str], object]:
    pairs = read_pairs(pairs_path)
    keep = pairs.folds < 2
    fold_paths = sorted({p for ab in np.array(pairs.path_pairs())[keep] for p in ab})
    every = sorted(str(p.relative_to(root)) for p in root.glob("*/*.jpg"))
    rest = sorted(set(every) - set(fold_paths))
    rng = np.random.default_rng(seed)
    extra = list(rng.choice(rest, size=max(0, n_images - len(fold_paths)), replace=False))
    return sorted(fold_paths + [str(x) for x in extra]), pairs


def detect_boxes(root: Path, rel: list[str], cache: Path) -> np.ndarray:
    """(N, 4) subject boxes (NaN where no face), cached in ``cache``."""
    if cache.exists():
        z = np.load(cache)
        if list(z["paths"]) == rel:
            return z["boxes"]
    from sightline.imaging import load_image
    from sightline.vision.engine import FaceEngine, pick_subject

    engine = FaceEngine.from_config()
    boxes = np.full((len(rel), 4), np.nan, np.float32)
    for i, p in enumerate(rel):
        img = load_image(root / p)
        faces = engine.analyze(img.rgb, embed=False, fallback=True, subject=True)
        face = pick_subject(faces, img.rgb.shape, "central")
        if face is not None and face.chip is not None:
            boxes[i] = face.xyxy
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, paths=np.array(rel), boxes=boxes)
    return boxes


def resize_bilinear_noaa(img: np.ndarray, size: int) -> np.ndarray:
    """cv2.resize(INTER_LINEAR)-like: half-pixel centres, 2-tap bilinear, no antialiasing."""
    h, w = img.shape[:2]

    def grid(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = (np.arange(size) + 0.5) * n_in / size - 0.5
        x = np.clip(x, 0, n_in - 1)
        x0 = np.floor(x).astype(int)
        x1 = np.minimum(x0 + 1, n_in - 1)
        return x0, x1, (x - x0)

    y0, y1, fy = grid(h)
    x0, x1, fx = grid(w)
    f = img.astype(np.float32)
    top = f[y0][:, x0] * (1 - fx)[None, :, None] + f[y0][:, x1] * fx[None, :, None]
    bot = f[y1][:, x0] * (1 - fx)[None, :, None] + f[y1][:, x1] * fx[None, :, None]
    out = top * (1 - fy)[:, None, None] + bot * fy[:, None, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_crops(root: Path, rel: list[str], boxes: np.ndarray, crop: str, resize: str) -> np.ndarray:
    """(N, 224, 224, 3) uint8 RGB crops; zeros where no box."""
    from PIL import Image as PILImage

    from sightline.imaging import load_image

    out = np.zeros((len(rel), 224, 224, 3), np.uint8)
    for i, p in enumerate(rel):
        if not np.isfinite(boxes[i]).all():
            continue
        rgb = load_image(root / p).rgb
        if crop == "grow40_up10" and resize == "pil_aa":
            out[i] = faceres.crops(rgb, boxes[i][None])[0]
            continue
        if crop == "grow40_up10":
            cb = faceres.crop_boxes(boxes[i][None])[0]
        elif crop == "hse_10px":  # facial_analysis.py: box + 10 px each side, clamped to the image
            x1, y1, x2, y2 = boxes[i]
            h_img, w_img = rgb.shape[:2]
            cb = np.array([max(0, x1 - 10), max(0, y1 - 10), min(w_img, x2 + 10), min(h_img, y2 + 10)])
        else:
            raise ValueError(crop)
        box = tuple(round(float(v)) for v in cb)
        pil = PILImage.fromarray(rgb).crop(box)
        if resize == "pil_aa":
            out[i] = np.asarray(pil.resize((224, 224), PILImage.BILINEAR))
        else:
            out[i] = resize_bilinear_noaa(np.asarray(pil), 224)
    return out


def run_net(emb: faceres.FaceresEmbedder, crops: np.ndarray, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """Raw (N, 1024) outputs of the crops and of their mirror images under input ``norm``."""
    mean = {"imagenet": IMAGENET_BGR, "vggface2": VGGFACE2_BGR}

    def prep(x: np.ndarray) -> np.ndarray:
        if norm == "rgb255":
            return np.ascontiguousarray(x, dtype=np.float32)
        return np.ascontiguousarray(x[..., ::-1], dtype=np.float32) - np.array(mean[norm], np.float32)

    def fwd(arr: np.ndarray) -> np.ndarray:
        res = [emb._session.run({"input_1": prep(arr[i : i + 32])})[0] for i in range(0, len(arr), 32)]
        return np.concatenate(res).astype(np.float32)

    return fwd(crops), fwd(np.ascontiguousarray(crops[:, :, ::-1]))


def l2n(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / n


def metrics(emb: np.ndarray, names: np.ndarray, pair_idx: tuple, valid: np.ndarray) -> dict[str, float]:
    a, b, same, fold = pair_idx
    s = np.einsum("ij,ij->i", emb[a], emb[b])
    # 2-fold cross-validated accuracy on folds 1-2
    accs = []
    for k in (0, 1):
        thr, _ = best_threshold(s[fold != k], same[fold != k])
        pred = np.where(np.isnan(s[fold == k]), False, s[fold == k] >= thr)
        accs.append(float((pred == same[fold == k]).mean()))
    res = {
        "pairs_acc_2fold": float(np.mean(accs)),
        "pairs_auc": roc_auc(s, same),
        "pairs_tar_far1e-2": tar_at_far(s, same, 1e-2).tar,
    }
    e = emb[valid]
    nm = names[valid]
    sim = e @ e.T
    iu = np.triu_indices(len(e), 1)
    sc = sim[iu]
    g = nm[iu[0]] == nm[iu[1]]
    imp = np.sort(sc[~g])[::-1]
    gen = sc[g]
    for far in (1e-3, 1e-4):
        thr = imp[math.floor(far * len(imp))]
        res[f"all_fnmr_fmr{far:g}"] = float((gen <= thr).mean())
    res["all_auc"] = roc_auc(sc, g)
    res["all_genuine"], res["all_impostor"] = int(g.sum()), int((~g).sum())
    res["impostor_mean_sd"] = (float(sc[~g].mean()), float(sc[~g].std()))
    return res


def _imp_stats(e: np.ndarray, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
    """Cosine mean/std of random pairs of distinct rows (as ``fusion.random_pair_stats``)."""
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(e), n)
    j = rng.integers(0, len(e) - 1, n)
    j = j + (j >= i)
    s = np.einsum("ij,ij->i", e[i], e[j])
    return float(s.mean()), float(s.std())


def centering(npz: Path, pairs_path: Path) -> dict[str, object]:
    """The ``--centering`` analysis (module docstring) on a whole fusion npz."""
    from sightline.eval.lfw import evaluate_lfw, pair_scores

    z = np.load(npz)
    paths, names = z["paths"], z["names"]
    a = z["part_dlib_resnet_v1"].astype(np.float64)
    b = z["part_faceres_hse_v1"].astype(np.float64)
    if np.isnan(a).any() or np.isnan(b).any():
        raise SystemExit(f"{npz}: has images without a face; this analysis expects none")
    pairs = read_pairs(pairs_path)

    def lfw(scores: np.ndarray) -> dict[str, float]:
        r = evaluate_lfw(scores, pairs.is_same, pairs.folds)
        tar = {f"tar_at_far_{t.far_target:g}": t.tar for t in r.tar_at_far}
        return {"accuracy_mean": r.accuracy_mean, "auc": r.auc, **tar}

    def all_pairs(e: np.ndarray) -> dict[str, float]:
        e = e.astype(np.float32)
        iu = np.triu_indices(len(e), 1)
        sc = (e @ e.T)[iu]
        g = names[iu[0]] == names[iu[1]]
        imp = np.sort(sc[~g])[::-1]
        gen = sc[g]
        return {f"fnmr_at_fmr_{f:g}": float((gen <= imp[math.floor(f * len(imp))]).mean()) for f in (1e-3, 1e-4, 1e-5)}

    def fused(pa: np.ndarray, pb: np.ndarray) -> tuple[np.ndarray, dict[str, object]]:
        (ma, sa), (mb, sb) = _imp_stats(pa), _imp_stats(pb)
        return l2n(np.concatenate([pa / math.sqrt(sa), pb / math.sqrt(sb)], axis=1)), {"mu": (ma, mb), "sd": (sa, sb)}

    ca, cb = l2n(a - a.mean(axis=0)), l2n(b - b.mean(axis=0))
    out: dict[str, object] = {"npz": str(npz), "images": len(paths), "pairs": len(pairs)}
    for key, e in (("dlib", a), ("dlib_centred", ca), ("faceres", b), ("faceres_centred", cb)):
        out[key] = lfw(pair_scores(e, paths, pairs))
    # cross-fitted faceres centre: fold k's pairs are scored with a centre from the other identities
    index = {str(p): i for i, p in enumerate(paths)}
    pp = np.array(pairs.path_pairs())
    scores = np.empty(len(pairs))
    for k in np.unique(pairs.folds):
        m = pairs.folds == k
        held = np.isin(names, list(set(pairs.name_a[m]) | set(pairs.name_b[m])))
        c = l2n(b - b[~held].mean(axis=0))
        ia = np.array([index[x] for x, _ in pp[m]])
        ib = np.array([index[y] for _, y in pp[m]])
        scores[m] = np.einsum("ij,ij->i", c[ia], c[ib])
    out["faceres_centred_crossfit"] = lfw(scores)
    for key, (pa, pb) in (
        ("fusion", (a, b)),
        ("fusion_faceres_centred", (a, cb)),
        ("fusion_both_centred", (ca, cb)),
    ):
        e, stats = fused(pa, pb)
        out[key] = {**lfw(pair_scores(e, paths, pairs)), "all_pairs": all_pairs(e), **stats}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lfw", type=Path, required=True, help="LFW dev folder (lfw-deepfunneled/, pairs.txt)")
    ap.add_argument("--npz", type=Path, required=True, help="fusion npz with part_dlib_resnet_v1 (same detections)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/h7c/boxes.npz"))
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="", help="comma-separated variant names to run (default: all)")
    ap.add_argument("--centering", action="store_true", help="the whole-npz centering analysis instead")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    if args.centering:
        print(json.dumps(centering(args.npz, args.lfw / "pairs.txt"), indent=1, default=float))
        return 0
    root = args.lfw / "lfw-deepfunneled"
    rel, pairs = select_images(root, args.lfw / "pairs.txt", args.images)
    t0 = time.perf_counter()
    boxes = detect_boxes(root, rel, args.cache)
    logger.info(
        "boxes: %d images, %d without a face, %.0f s",
        len(rel),
        (~np.isfinite(boxes[:, 0])).sum(),
        time.perf_counter() - t0,
    )
    names = np.array([p.split("/")[0] for p in rel])
    valid = np.isfinite(boxes[:, 0])
    index = {p: i for i, p in enumerate(rel)}
    keep = pairs.folds < 2
    pp = np.array(pairs.path_pairs())[keep]
    pair_idx = (
        np.array([index[x] for x, _ in pp]),
        np.array([index[y] for _, y in pp]),
        pairs.is_same[keep],
        pairs.folds[keep],
    )
    z = np.load(args.npz)
    zi = {str(p): i for i, p in enumerate(z["paths"])}
    dlib = z["part_dlib_resnet_v1"][[zi[p] for p in rel]].astype(np.float32)
    dlib[~valid] = np.nan
    emb = faceres.FaceresEmbedder(threads=args.threads)
    variants = [
        ("imagenet_pil_aa_grow40", "imagenet", "grow40_up10", "pil_aa"),  # shipped
        ("vggface2_pil_aa_grow40", "vggface2", "grow40_up10", "pil_aa"),
        ("rgb255_pil_aa_grow40", "rgb255", "grow40_up10", "pil_aa"),
        ("imagenet_noaa_grow40", "imagenet", "grow40_up10", "noaa"),
        ("imagenet_noaa_hse10px", "imagenet", "hse_10px", "noaa"),
        ("vggface2_noaa_grow40", "vggface2", "grow40_up10", "noaa"),
    ]
    if args.variants:
        variants = [v for v in variants if v[0] in args.variants.split(",")]
    # images outside folds 1-2 (the random fill): where a centering mean may be measured
    fit = valid.copy()
    fit[np.unique(np.concatenate(pair_idx[:2]))] = False
    results: dict[str, object] = {
        "images": len(rel),
        "no_face": int((~valid).sum()),
        "pairs_folds_1_2": int(keep.sum()),
        "centering_fit_images": int(fit.sum()),
        "dlib_alone": metrics(dlib, names, pair_idx, valid),
    }
    crops_cache: dict[tuple[str, str], np.ndarray] = {}
    for name, norm, crop, resize in variants:
        t0 = time.perf_counter()
        key = (crop, resize)
        if key not in crops_cache:
            crops_cache[key] = make_crops(root, rel, boxes, crop, resize)
        raw, raw_m = run_net(emb, crops_cache[key], norm)
        forms = {"mirror_raw_avg": l2n(raw + raw_m)}
        if name.startswith("imagenet_pil") or name.startswith("vggface2_pil"):
            forms["no_mirror"] = l2n(raw)
            forms["mirror_l2_then_avg"] = l2n(l2n(raw) + l2n(raw_m))
            avg = (raw + raw_m) / 2
            forms["centered_raw"] = l2n(avg - avg[fit].mean(axis=0))
            unit = l2n(avg)
            forms["centered_unit"] = l2n(unit - unit[fit].mean(axis=0))
        for form, e in forms.items():
            e[~valid] = np.nan
            r = metrics(e, names, pair_idx, valid)
            sd_a = results["dlib_alone"]["impostor_mean_sd"][1]  # type: ignore[index]
            sd_b = r["impostor_mean_sd"][1]
            fused = np.concatenate([dlib / math.sqrt(sd_a), e / math.sqrt(sd_b)], axis=1)
            fused = l2n(fused)  # plain cosine = increasing affine map of the z-average (fusion.py)
            r["fusion"] = metrics(fused, names, pair_idx, valid)
            results[f"{name}/{form}"] = r
        logger.info("%s: %.0f s", name, time.perf_counter() - t0)
    print(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
