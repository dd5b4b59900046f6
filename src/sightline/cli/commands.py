"""Command bodies: parse nothing (main.py does), call the services, render the answer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from sightline.cli.output import console, emit, err_console, fail, printable

if TYPE_CHECKING:
    from sightline.cli.main import CliState


def _progress(as_json: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=as_json or not err_console.is_terminal,
        transient=True,
    )


def _load(state: CliState, photo: Path, as_json: bool):
    from sightline.imaging import ImageError, load_image

    try:
        return load_image(photo, limits=state.settings.imaging)
    except ImageError as exc:
        fail(str(exc), as_json=as_json)
    except OSError as exc:
        fail(f"{photo}: {exc.strerror or exc}", as_json=as_json)


# ---- enroll ----------------------------------------------------------------------------------


def enroll_cmd(
    state: CliState,
    paths: list[Path],
    watchlist: str,
    person: str | None,
    external_id: str | None,
    largest: bool,
    as_json: bool,
) -> None:
    from sightline.gallery import GalleryError
    from sightline.imaging import find_photos

    for p in paths:
        if not p.exists():
            fail(f"{p}: no such file or folder", as_json=as_json)
    folders = [p for p in paths if p.is_dir()]
    files = [p for p in paths if not p.is_dir()]
    if files and person is None:
        fail("single photos need --person NAME (or pass a folder of PERSON_NAME/ subfolders)", as_json=as_json)
    if folders and person is not None:
        fail("--person applies to single photos; a folder's subfolders name the persons", as_json=as_json)
    gallery = state.gallery()
    multi = "largest" if largest else "skip"
    reports = []
    t0 = time.perf_counter()
    try:
        gallery.ensure_watchlist(watchlist)
        with _progress(as_json) as prog:
            if files:
                assert person is not None
                task = prog.add_task(f"enrolling {person}", total=len(files))
                reports.append(
                    gallery.enroll_person(
                        person,
                        files,
                        watchlist=watchlist,
                        external_id=external_id,
                        multi_face=multi,
                        progress=lambda done, total: prog.update(task, completed=done, total=total),
                    )
                )
            for folder in folders:
                n = len(find_photos([folder]))
                task = prog.add_task(f"enrolling {folder.name}/", total=n)
                reports.append(
                    gallery.enroll_folder(
                        folder,
                        watchlist=watchlist,
                        multi_face=multi,
                        progress=lambda done, total, t=task: prog.update(t, completed=done, total=total),
                    )
                )
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    seconds = time.perf_counter() - t0
    persons = sum(r.persons_enrolled for r in reports)
    templates = sum(r.templates_added for r in reports)
    skipped = [s for r in reports for s in r.skipped]
    data = {
        "watchlist": watchlist,
        "persons_enrolled": persons,
        "templates_added": templates,
        "skipped": [{"photo": s.name, "reason": s.reason, "code": s.code} for s in skipped],
        "seconds": round(seconds, 3),
    }

    def render() -> None:
        console.print(
            f"enrolled [bold]{persons}[/] person(s), [bold]{templates}[/] photo(s) into watchlist "
            f"[bold]{escape(watchlist)}[/]; skipped {len(skipped)} in {seconds:.1f} s"
        )
        if skipped:
            t = Table("skipped photo", "reason", title="Skipped")
            for s in skipped:
                t.add_row(escape(printable(s.name)), escape(printable(s.reason)))
            console.print(t)

    emit(as_json, data, render)


# ---- search / verify / detect ----------------------------------------------------------------


def search_cmd(state: CliState, photo: Path, watchlist: str | None, top: int, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    img = _load(state, photo, as_json)
    gallery = state.gallery()
    try:
        results = gallery.search(img, watchlist=watchlist, top_k=top)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    cal = state.engine().calibration
    faces: list[dict[str, Any]] = []
    for i, res in enumerate(results):
        faces.append(
            {
                "face": i,
                "xyxy": [round(v, 1) for v in res.face.xyxy],
                "quality": round(res.face.quality.score, 3),
                "candidates": [
                    {
                        "person_id": c.person_id,
                        "name": c.name,
                        "external_id": c.external_id,
                        "similarity": round(c.similarity, 4),
                        "threshold": round(c.threshold, 4),
                        "match": c.is_match,
                        "est_false_match_rate": c.est_fmr,
                        "meaning": cal.describe(c.similarity),
                    }
                    for c in res.candidates
                ],
            }
        )
    data = {"photo": str(photo), "watchlist": watchlist, "model": state.engine().model, "faces": faces}

    def render() -> None:
        if not faces:
            console.print(f"{escape(printable(str(photo)))}: no face found")
            return
        for f in faces:
            t = Table(
                "rank",
                "person",
                "similarity",
                "decision",
                "what the score means",
                title=f"face {f['face']} at {f['xyxy']} (quality {f['quality']:.2f})",
            )
            for rank, c in enumerate(f["candidates"], 1):
                decision = "[bold green]MATCH[/]" if c["match"] else "no match"
                t.add_row(
                    str(rank),
                    escape(c["name"]),
                    f"{c['similarity']:.3f} (thr {c['threshold']:.3f})",
                    decision,
                    c["meaning"],
                )
            if not f["candidates"]:
                t.add_row("-", "(gallery is empty)", "", "", "")
            console.print(t)

    emit(as_json, data, render)


def verify_cmd(state: CliState, a: Path, b: Path, threshold: float | None, as_json: bool) -> None:
    import typer

    from sightline.gallery import NoFaceError

    photos = [_load(state, p, as_json) for p in (a, b)]
    try:
        result = state.gallery().verify(*photos)
    except NoFaceError as exc:
        fail(str(exc), as_json=as_json)
    engine = state.engine()
    cal = engine.calibration
    sim = result.similarity
    thr = result.threshold if threshold is None else threshold
    same = sim >= thr
    data = {
        "photo_a": str(a),
        "photo_b": str(b),
        "similarity": round(sim, 4),
        "threshold": round(thr, 4),
        "threshold_source": "model default (FMR 1e-3)" if threshold is None else "--threshold",
        "same_person": same,
        "est_false_match_rate": cal.est_fmr(sim),
        "meaning": cal.describe(sim),
        "model": engine.model,
    }

    def render() -> None:
        verdict = "[bold green]same person[/]" if same else "[bold]different people[/]"
        console.print(f"{verdict}: similarity {sim:.3f}, threshold {thr:.3f} ({data['threshold_source']})")
        console.print(f"  {data['meaning']}")

    emit(as_json, data, render)
    if not same:
        raise typer.Exit(1)


def detect_cmd(state: CliState, photo: Path, draw: Path | None, as_json: bool) -> None:
    engine = state.engine()
    img = _load(state, photo, as_json)
    faces = engine.analyze(img.rgb, embed=False)
    data = {
        "photo": str(photo),
        "size": list(img.size),
        "detector": engine.config.detector,
        "faces": [
            {
                "xyxy": [round(v, 1) for v in f.xyxy],
                "kps": [[round(float(x), 1), round(float(y), 1)] for x, y in f.kps],
                "det_score": round(f.det_score, 3),
                "quality": {
                    "score": round(f.quality.score, 3),
                    "size_px": round(f.quality.size_px, 1),
                    "sharpness": round(f.quality.sharpness, 3),
                    "frontal": round(f.quality.frontal, 3),
                },
            }
            for f in faces
        ],
    }
    if draw is not None:
        from sightline.cli.drawing import draw_faces

        try:
            draw_faces(img.rgb, faces, draw)
        except (OSError, ValueError) as exc:
            fail(f"cannot write {draw}: {exc}", as_json=as_json)
        data["drawn"] = str(draw)

    def render() -> None:
        t = Table(
            "#",
            "box (x1,y1,x2,y2)",
            "score",
            "size px",
            "sharp",
            "frontal",
            "quality",
            title=f"{photo}: {len(faces)} face(s)",
        )
        for i, f in enumerate(data["faces"]):
            q = f["quality"]
            t.add_row(
                str(i),
                str(f["xyxy"]),
                f"{f['det_score']:.2f}",
                f"{q['size_px']:.0f}",
                f"{q['sharpness']:.2f}",
                f"{q['frontal']:.2f}",
                f"{q['score']:.2f}",
            )
        console.print(t)
        if draw is not None:
            console.print(f"drawn to {draw}")

    emit(as_json, data, render)


# ---- watchlists and persons ------------------------------------------------------------------


def watchlist_list_cmd(state: CliState, as_json: bool) -> None:
    g = state.gallery()
    rows = g.list_watchlists()
    default = state.engine().calibration.default_threshold
    data = [
        {
            "name": w.name,
            "description": w.description,
            "threshold": w.threshold,
            "effective_threshold": w.threshold if w.threshold is not None else default,
            "members": w.member_count,
        }
        for w in rows
    ]

    def render() -> None:
        t = Table("watchlist", "members", "threshold", "description")
        for w in data:
            thr = f"{w['effective_threshold']:.3f}" + ("" if w["threshold"] is not None else " (default)")
            t.add_row(escape(w["name"]), str(w["members"]), thr, escape(w["description"] or ""))
        console.print(t)

    emit(as_json, data, render)


def watchlist_show_cmd(state: CliState, name: str, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    g = state.gallery()
    try:
        w = g.get_watchlist(name)
        members = g.list_persons(watchlist=name)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    cal = state.engine().calibration
    thr = w.threshold if w.threshold is not None else cal.default_threshold
    data = {
        "name": w.name,
        "description": w.description,
        "threshold": thr,
        "threshold_meaning": cal.describe(thr),
        "is_default_threshold": w.threshold is None,
        "members": [
            {"id": p.id, "name": p.name, "external_id": p.external_id, "templates": p.template_count} for p in members
        ],
    }

    def render() -> None:
        title = f"[bold]{escape(w.name)}[/]" + (f" — {escape(w.description)}" if w.description else "")
        source = "model default, FMR 1e-3" if w.threshold is None else "set for this list"
        console.print(title)
        console.print(f"threshold {thr:.3f} ({source}): {data['threshold_meaning']}")
        t = Table("id", "person", "external id", "photos")
        for m in data["members"]:
            t.add_row(str(m["id"]), escape(m["name"]), escape(m["external_id"] or ""), str(m["templates"]))
        console.print(t)

    emit(as_json, data, render)


def watchlist_create_cmd(
    state: CliState, name: str, description: str, threshold: float | None, fmr: float | None, as_json: bool
) -> None:
    from sightline.gallery import GalleryError

    if threshold is not None and fmr is not None:
        fail("give --threshold or --fmr, not both", as_json=as_json)
    if fmr is not None:
        try:
            threshold = state.engine().calibration.threshold_for_fmr(fmr)
        except ValueError as exc:
            fail(str(exc), as_json=as_json)
    try:
        w = state.gallery().create_watchlist(name, description, threshold)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    emit(
        as_json,
        {"name": w.name, "threshold": w.threshold, "description": w.description},
        lambda: console.print(f"created watchlist [bold]{escape(w.name)}[/]"),
    )


def watchlist_delete_cmd(state: CliState, name: str, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    try:
        state.gallery().delete_watchlist(name)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    emit(as_json, {"deleted": name}, lambda: console.print(f"deleted watchlist {escape(name)}"))


def person_list_cmd(state: CliState, watchlist: str | None, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    try:
        rows = state.gallery().list_persons(watchlist=watchlist)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    data = [{"id": p.id, "name": p.name, "external_id": p.external_id, "templates": p.template_count} for p in rows]

    def render() -> None:
        t = Table("id", "person", "external id", "photos")
        for p in data:
            t.add_row(str(p["id"]), escape(p["name"]), escape(p["external_id"] or ""), str(p["templates"]))
        console.print(t)

    emit(as_json, data, render)


def _person(state: CliState, ref: str, as_json: bool):
    from sightline.gallery import GalleryError

    try:
        return state.gallery().get_person(int(ref) if ref.isdigit() else ref)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)


def person_show_cmd(state: CliState, ref: str, as_json: bool) -> None:
    p = _person(state, ref, as_json)
    emit(as_json, p, lambda: console.print(p))


def person_delete_cmd(state: CliState, ref: str, as_json: bool) -> None:
    p = _person(state, ref, as_json)
    state.gallery().delete_person(p.id)
    emit(as_json, {"deleted": p.id, "name": p.name}, lambda: console.print(f"deleted {escape(p.name)} (id {p.id})"))


# ---- eval --------------------------------------------------------------------------------------


def _eval_engine(state: CliState, backend: str | None, flip: bool = True):
    if backend not in (None, "auto", "dlib", "onnx"):
        fail(f"--backend must be dlib or onnx, got {backend!r}")
    return state.engine(flip_average=flip, **({"backend": backend} if backend else {}))


def _check_subject(subject: str) -> None:
    if subject not in ("largest", "central"):
        fail(f"--subject must be largest or central, got {subject!r}")


def eval_embed_cmd(
    state: CliState,
    root: Path,
    out: Path,
    backend: str | None,
    subject: str,
    limit: int | None,
    full_scan: bool,
    as_json: bool,
) -> None:
    from sightline.eval.embed import dataset_files, embed_files

    _check_subject(subject)
    if not root.is_dir():
        fail(f"{root}: not a folder", as_json=as_json)
    engine = _eval_engine(state, backend)
    files = dataset_files(root)[:limit]
    with _progress(as_json) as prog:
        task = prog.add_task("embedding", total=len(files))
        res = embed_files(
            engine,
            root,
            files,
            subject=subject,  # type: ignore[arg-type]
            imaging=state.settings.imaging,
            progress=lambda n: prog.update(task, completed=n),
            subject_mode=not full_scan,
        )
    res.save(out)
    data = {
        "out": str(out),
        "images": len(files),
        "no_face": res.missing,
        "unreadable": len(res.errors),
        "seconds": round(res.seconds, 2),
        "photos_per_second": round(len(files) / max(res.seconds, 1e-9), 2),
        "backend": engine.backend,
        "provider": engine.provider,
        "model": engine.model,
        "flip_average": engine.config.flip_average,
        "subject": subject,
        "scan": "full" if full_scan else "coarse-to-fine",
    }
    emit(as_json, data, lambda: console.print(data))


def eval_lfw_cmd(
    state: CliState,
    root: Path,
    pairs_file: Path,
    backend: str | None,
    subject: str,
    flip: bool,
    full_scan: bool,
    as_json: bool,
) -> None:
    import numpy as np

    from sightline.eval.embed import embed_files
    from sightline.eval.lfw import evaluate_lfw
    from sightline.eval.pairs import read_pairs

    _check_subject(subject)
    try:
        pairs = read_pairs(pairs_file)
    except (OSError, ValueError) as exc:
        fail(f"{pairs_file}: {exc}", as_json=as_json)
    rel = pairs.image_paths()
    path_pairs = pairs.path_pairs()
    missing_files = [r for r in rel if not (root / r).is_file()]
    if missing_files:
        fail(
            f"{len(missing_files)} image(s) of the pairs are not under {root}, e.g. {missing_files[0]}", as_json=as_json
        )
    engine = _eval_engine(state, backend, flip)
    with _progress(as_json) as prog:
        task = prog.add_task("embedding", total=len(rel))
        res = embed_files(
            engine,
            root,
            [root / r for r in rel],
            subject=subject,  # type: ignore[arg-type]
            imaging=state.settings.imaging,
            progress=lambda n: prog.update(task, completed=n),
            subject_mode=not full_scan,
        )
    index = {r: i for i, r in enumerate(rel)}
    a = np.array([index[x] for x, _ in path_pairs])
    b = np.array([index[y] for _, y in path_pairs])
    scores = np.einsum("ij,ij->i", res.embeddings[a], res.embeddings[b])
    result = evaluate_lfw(scores, pairs.is_same, pairs.folds, images_without_face=res.missing)
    data = {
        "protocol": "LFW 10-fold (threshold chosen on 9 folds, tested on the 10th)",
        **result.to_dict(),
        "images": len(rel),
        "seconds": round(res.seconds, 1),
        "photos_per_second": round(len(rel) / max(res.seconds, 1e-9), 2),
        "backend": engine.backend,
        "provider": engine.provider,
        "flip_average": flip,
        "subject": subject,
        "scan": "full" if full_scan else "coarse-to-fine",
        "detector": engine.config.detector,
        "upsample": engine.config.upsample,
    }

    def render() -> None:
        console.print(
            f"LFW accuracy {100 * result.accuracy_mean:.2f}% ± {100 * result.accuracy_std:.2f}% "
            f"over {result.n_folds} folds, {result.n_pairs} pairs"
        )
        console.print(data)

    emit(as_json, data, render)


def eval_calibrate_cmd(state: CliState, embeddings: Path, out: Path, model: str, as_json: bool) -> None:
    import json

    from sightline.eval.calibration import build_calibration
    from sightline.eval.embed import EmbeddedSet

    try:
        es = EmbeddedSet.load(embeddings)
    except (OSError, KeyError, ValueError) as exc:
        fail(f"{embeddings}: {exc}", as_json=as_json)
    doc = build_calibration(es.embeddings, es.names, model=model, source=str(embeddings))
    out.write_text(json.dumps(doc, indent=1) + "\n")
    summary = {
        k: doc[k]
        for k in (
            "model",
            "n_impostor_pairs",
            "n_genuine_pairs",
            "default_threshold",
            "threshold_at_fmr",
            "fnmr_at_fmr",
        )
        if k in doc
    }
    emit(as_json, summary, lambda: console.print(summary))
