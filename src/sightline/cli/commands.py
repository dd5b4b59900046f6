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


def require_reason(reason: str | None, as_json: bool) -> str:
    """A stripped, non-empty case reference of at most 500 characters, or exit 2 saying why."""
    text = (reason or "").strip()
    if not text:
        fail("--reason is required: the case reference or purpose, recorded in the audit log", as_json=as_json)
    if len(text) > 500:
        fail("--reason must be at most 500 characters", as_json=as_json)
    return text


def _is_text(name: str) -> bool:
    """True when ``name`` is real text (no undecodable bytes smuggled in as surrogates by the file system or
    the command line): only such names can be stored as a person's name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def cli_audit(
    store: Any,
    action: str,
    *,
    target: str | None = None,
    reason: str | None = None,
    outcome: str = "ok",
    details: dict[str, Any] | None = None,
) -> None:
    """Record one audit entry for this command (actor ``cli:<OS user>``, client ``host:<hostname>``).

    No biometric data in ``details`` (the audit log refuses it): ids, names of lists, counts."""
    from sightline.cli.governance import cli_actor, cli_client
    from sightline.governance.audit import AuditLog

    AuditLog(store).record(
        cli_actor(), action, target=target, reason=reason, client=cli_client(), outcome=outcome, details=details
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
    reason: str | None = None,
) -> None:
    """Enroll ``paths``; every enrolled person is audited as ``person.enroll`` (``person.create`` first when
    new, ``watchlist.create`` when the watchlist was made for it) with ``reason`` (required)."""
    from sightline.gallery import GalleryError
    from sightline.imaging import find_photos

    why = require_reason(reason, as_json)
    for p in paths:
        if not p.exists():
            fail(f"{p}: no such file or folder", as_json=as_json)
    folders = [p for p in paths if p.is_dir()]
    files = [p for p in paths if not p.is_dir()]
    if files and person is None:
        fail("single photos need --person NAME (or pass a folder of PERSON_NAME/ subfolders)", as_json=as_json)
    if folders and person is not None:
        fail("--person applies to single photos; a folder's subfolders name the persons", as_json=as_json)
    if person is not None and not _is_text(person):
        fail(f"--person {printable(person)!r} is not valid UTF-8 text: give the name as text", as_json=as_json)
    for folder in folders:
        bad = sorted(printable(d.name) for d in folder.iterdir() if d.is_dir() and not _is_text(d.name))
        if bad:
            fail(
                f"{printable(str(folder))}: person folder name(s) {', '.join(map(repr, bad))} are not valid UTF-8 "
                "(a person's name must be text): rename them",
                as_json=as_json,
            )
    gallery = state.gallery()
    multi = "largest" if largest else "skip"
    reports = []
    t0 = time.perf_counter()
    try:
        existed = gallery.store.get_watchlist(watchlist) is not None
        wl = gallery.ensure_watchlist(watchlist)
        if not existed:
            cli_audit(gallery.store, "watchlist.create", target=f"watchlist:{wl.id}", details={"name": wl.name})
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
        cli_audit(gallery.store, "person.enroll", reason=why, outcome="failed", details={"error": str(exc)[:200]})
        fail(str(exc), as_json=as_json)
    seconds = time.perf_counter() - t0
    for result in (res for r in reports for res in r.results):
        if result.person_id is None:
            continue
        target = f"person:{result.person_id}"
        if result.created:
            cli_audit(gallery.store, "person.create", target=target, reason=why, details={"watchlists": [watchlist]})
        cli_audit(
            gallery.store,
            "person.enroll",
            target=target,
            reason=why,
            details={"watchlist": watchlist, "accepted": len(result.template_ids), "skipped": len(result.skipped)},
        )
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


def search_cmd(
    state: CliState, photo: Path, watchlist: str | None, top: int, as_json: bool, reason: str | None = None
) -> None:
    """1:N search of every face in ``photo``, audited as ``search.photo`` with ``reason`` (required)."""
    from sightline.gallery import GalleryError

    why = require_reason(reason, as_json)
    img = _load(state, photo, as_json)
    gallery = state.gallery()
    details: dict[str, Any] = {"watchlist": watchlist, "top_k": top}
    try:
        results = gallery.search(img, watchlist=watchlist, top_k=top)
    except GalleryError as exc:
        cli_audit(
            gallery.store, "search.photo", reason=why, outcome="failed", details={**details, "error": str(exc)[:200]}
        )
        fail(str(exc), as_json=as_json)
    cli_audit(
        gallery.store,
        "search.photo",
        reason=why,
        details={**details, "faces": len(results), "matches": sum(1 for r in results if r.best_match is not None)},
    )
    from sightline.gallery.tuning import list_counts, score_meaning

    cal = state.engine().calibration
    persons, size = list_counts(gallery, watchlist)
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
                        "est_stranger_alert_rate": (m := score_meaning(cal, c.similarity, max(1, size))).est_fpir,
                        "meaning_for_list": m.text,
                    }
                    for c in res.candidates
                ],
            }
        )
    data = {
        "photo": str(photo),
        "watchlist": watchlist,
        "list_persons": persons,
        "list_templates": size,
        "model": state.engine().model,
        "faces": faces,
    }

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
                f"against this list ({persons:,} persons, {size:,} photos)",
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
                    c["meaning_for_list"],
                )
            if not f["candidates"]:
                t.add_row("-", "(gallery is empty)", "", "", "", "")
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


def check_templates_option(templates: str, as_json: bool) -> None:
    """Exit with a usage error unless ``--templates`` names a template mode (per-photo or fused)."""
    from sightline.gallery.tuning import TuningError, check_templates

    try:
        check_templates(templates)
    except TuningError as exc:
        fail(f"--{exc}", as_json=as_json)


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


def watchlist_show_cmd(state: CliState, name: str, as_json: bool, *, templates: str = "per-photo") -> None:
    from sightline.gallery import GalleryError
    from sightline.gallery.tuning import (
        TuningError,
        fused_calibrations,
        list_counts,
        list_photo_counts,
        score_meaning,
    )

    check_templates_option(templates, as_json)
    g = state.gallery()
    try:
        w = g.get_watchlist(name)
        members = g.list_persons(watchlist=name)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)

    cal = state.engine().calibration
    thr = w.threshold if w.threshold is not None else cal.default_threshold
    n_templates = list_counts(g, w.name)[1]
    per_k_default: dict[str, float] = {}
    if templates == "fused":
        # one fused template per person (the live matcher's fused mode)
        mix = list_photo_counts(g, w.name) or {1: 1}
        try:
            fused = fused_calibrations(g)
        except TuningError as exc:
            fail(str(exc), as_json=as_json)
        if w.threshold is None:
            # no list threshold: each person is matched at the default FMR on their photo count's curve,
            # so a stranger passes some person's threshold with chance 1 - (1 - FMR)^persons
            per_k_default = {str(k): fused.for_k(k).default_threshold for k in sorted(mix)}
            persons, fmr = sum(mix.values()), cal.default_fmr
            rate = 1.0 - (1.0 - fmr) ** persons
            for_list = (
                f"about {rate:.2g} of strangers score above the threshold of some person on this list "
                f"({persons:,} fused templates, each at FMR {fmr:g} on its photo count's curve)"
            )
        else:
            meaning = score_meaning(fused, thr, 0, templates="fused", photos_per_person=mix)
            for_list, rate = meaning.text, meaning.est_fpir
    else:
        for_list, rate = cal.describe_for_list(thr, max(1, n_templates)), cal.est_fpir(thr, max(1, n_templates))
    data = {
        "name": w.name,
        "description": w.description,
        "threshold": thr,
        "threshold_meaning": cal.describe(thr),
        "templates": templates,
        "list_templates": n_templates,
        "threshold_meaning_for_list": for_list,
        "est_stranger_alert_rate": rate,
        "is_default_threshold": w.threshold is None,
        "threshold_tuned_for": w.threshold_templates,
        **({"default_threshold_by_photos": per_k_default} if per_k_default else {}),
        "members": [
            {"id": p.id, "name": p.name, "external_id": p.external_id, "templates": p.template_count} for p in members
        ],
    }

    def render() -> None:
        title = f"[bold]{escape(w.name)}[/]" + (f" — {escape(w.description)}" if w.description else "")
        source = "model default, FMR 1e-3" if w.threshold is None else "set for this list"
        if w.threshold_templates is not None:
            source = f"tuned for {w.threshold_templates} templates"
        console.print(title)
        console.print(f"threshold {thr:.3f} ({source}): {data['threshold_meaning']}")
        if w.threshold_templates is not None and w.threshold_templates != templates:
            console.print(
                f"  [yellow]warning:[/] tuned for {w.threshold_templates} templates, described here for {templates}: "
                f"run live watch with templates={w.threshold_templates} or tune again"
            )
        if per_k_default:
            ks = ", ".join(f"{v:.4f} for {k} photo(s)" for k, v in per_k_default.items())
            console.print(f"  fused templates: the default is set per person by photo count ({ks})")
        console.print(f"  for this list ({len(members):,} persons, {templates}): {data['threshold_meaning_for_list']}")
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
    gallery = state.gallery()
    try:
        w = gallery.create_watchlist(name, description, threshold)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    cli_audit(
        gallery.store, "watchlist.create", target=f"watchlist:{w.id}", details={"name": w.name, "threshold": threshold}
    )
    emit(
        as_json,
        {"name": w.name, "threshold": w.threshold, "description": w.description},
        lambda: console.print(f"created watchlist [bold]{escape(w.name)}[/]"),
    )


def watchlist_delete_cmd(state: CliState, name: str, as_json: bool) -> None:
    from sightline.gallery import GalleryError

    gallery = state.gallery()
    try:
        wl = gallery.get_watchlist(name)
        gallery.delete_watchlist(name)
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    cli_audit(gallery.store, "watchlist.delete", target=f"watchlist:{wl.id}", details={"name": wl.name})
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


def person_delete_cmd(state: CliState, ref: str, as_json: bool, reason: str | None = None) -> None:
    """Erase a person and everything about them (``sightline.governance.subject.erase_subject``: freed pages
    zeroed, audited as ``subject.erase`` with the counts removed); ``reason`` is required."""
    from sightline.cli.governance import cli_actor, cli_client
    from sightline.gallery import GalleryError
    from sightline.governance.audit import AuditLog
    from sightline.governance.subject import erase_subject

    why = require_reason(reason, as_json)
    p = _person(state, ref, as_json)
    gallery = state.gallery()
    try:
        report = erase_subject(
            gallery.store,
            p.id,
            audit=AuditLog(gallery.store),
            actor=cli_actor(),
            reason=why,
            client=cli_client(),
            gallery=gallery,
        )
    except GalleryError as exc:
        fail(str(exc), as_json=as_json)
    data = {"deleted": p.id, "name": p.name, **report.to_json()}
    removed = ", ".join(
        f"{data[k]} {k}" for k in ("templates", "crops", "memberships", "alerts", "sightings", "deliveries")
    )
    emit(as_json, data, lambda: console.print(f"deleted {escape(p.name)} (id {p.id}): {removed}"))


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


def eval_calibrate_cmd(
    state: CliState, embeddings: Path, out: Path, model: str, as_json: bool, *, fused_k: int | None = None
) -> None:
    import json

    from sightline.eval.calibration import build_calibration, build_fused_calibration
    from sightline.eval.embed import EmbeddedSet

    if fused_k is not None and fused_k < 2:
        fail(f"--fused-k must be >= 2 (photos averaged per template), got {fused_k}", as_json=as_json)
    try:
        es = EmbeddedSet.load(embeddings)
    except (OSError, KeyError, ValueError) as exc:
        fail(f"{embeddings}: {exc}", as_json=as_json)
    try:
        if fused_k is None:
            doc = build_calibration(es.embeddings, es.names, model=model, source=str(embeddings))
        else:
            doc = build_fused_calibration(es.embeddings, es.names, k=fused_k, model=model, source=str(embeddings))
    except ValueError as exc:
        fail(f"{embeddings}: {exc}", as_json=as_json)
    try:
        out.write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        fail(f"cannot write {out}: {exc}", as_json=as_json)
    summary = {
        k: doc[k]
        for k in (
            "model",
            "template",
            "fused_k",
            "n_templates",
            "n_impostor_pairs",
            "n_genuine_pairs",
            "default_threshold",
            "threshold_at_fmr",
            "fnmr_at_fmr",
        )
        if k in doc
    }
    emit(as_json, summary, lambda: console.print(summary))


# ---- open-set watchlist evaluation -------------------------------------------------------------


def _engine_for_model(state: CliState, model: str, backend: str | None, as_json: bool):
    """The eval engine for ``--model``: passed through as ``EngineConfig.model`` where the engine has
    that field; without it only the engine's own model ("dlib") exists."""
    from pydantic import ValidationError

    from sightline.config import EngineConfig

    overrides: dict[str, object] = {"backend": backend} if backend else {}
    if "model" in EngineConfig.model_fields:
        overrides["model"] = model
    elif model != "dlib":
        fail(f"--model {model!r} is not available in this build (only 'dlib')", as_json=as_json)
    if backend not in (None, "auto", "dlib", "onnx"):
        fail(f"--backend must be dlib or onnx, got {backend!r}", as_json=as_json)
    try:
        EngineConfig.model_validate({**state.settings.engine.model_dump(), **overrides})
    except ValidationError as exc:
        fail(f"--model {model!r}: {exc.errors()[0]['msg']}", as_json=as_json)
    return state.engine(flip_average=True, **overrides)


def _model_name(option: str) -> str:
    """The descriptor model behind a ``--model`` option for a precomputed npz: the shipped
    calibration named ``{option}_...`` ("dlib" -> dlib_resnet_v1), else the option itself."""
    from sightline.vision.calibration import builtin_models

    names = builtin_models()
    if option in names:
        return option
    match = [n for n in names if n.startswith(f"{option}_")]
    return match[0] if len(match) == 1 else option


def _cached_or_embed(state: CliState, engine, root: Path, cache: Path | None, as_json: bool):
    """Embed ``root`` (identity folders), or reuse ``cache`` when it holds exactly these files."""
    import numpy as np

    from sightline.eval.embed import EmbeddedSet, dataset_files, embed_files

    files = dataset_files(root)
    rel = np.array([str(p.relative_to(root)) for p in files])
    if cache is not None and cache.is_file():
        try:
            es = EmbeddedSet.load(cache)
        except (OSError, KeyError, ValueError) as exc:
            err_console.print(f"cache {escape(str(cache))} unreadable ({escape(str(exc))}): embedding again")
        else:
            if len(es.paths) == len(rel) and bool((es.paths == rel).all()):
                return es, True
            err_console.print(f"cache {escape(str(cache))} holds other files than {escape(str(root))}: embedding again")
    with _progress(as_json) as prog:
        task = prog.add_task(f"embedding ({engine.model})", total=len(files))
        es = embed_files(
            engine,
            root,
            files,
            imaging=state.settings.imaging,
            progress=lambda n: prog.update(task, completed=n),
        )
    if cache is not None:
        es.save(cache)
    return es, False


def eval_watchlist_cmd(
    state: CliState,
    root: Path | None,
    embeddings: Path | None,
    models: list[str],
    enroll_per_person: int,
    set_aside: int | None,
    min_photos: int | None,
    seed: int,
    template: str,
    cache: Path | None,
    plot: Path | None,
    backend: str | None,
    as_json: bool,
) -> None:
    import numpy as np

    from sightline.eval.det import plot_det
    from sightline.eval.embed import EmbeddedSet
    from sightline.eval.watchlist import TEMPLATE_MODES, evaluate, make_split
    from sightline.vision.calibration import FusedCalibrations, load_builtin

    if (root is None) == (embeddings is None):
        fail("give --root DIR (identity folders) or --embeddings FILE.npz, exactly one", as_json=as_json)
    if root is not None and not root.is_dir():
        fail(f"{root}: not a folder", as_json=as_json)
    if template not in (*TEMPLATE_MODES, "both"):
        fail(f"--template must be per-photo, fused or both, got {template!r}", as_json=as_json)
    modes = TEMPLATE_MODES if template == "both" else (template,)
    models = models or ["dlib"]
    if len(set(models)) != len(models):
        fail("--model given twice", as_json=as_json)
    if embeddings is not None and len(models) > 1:
        fail("--embeddings holds one model's descriptors: give at most one --model", as_json=as_json)

    sets: list[tuple[str, str, EmbeddedSet, dict[str, object]]] = []  # (label, model name, set, provenance)
    if embeddings is not None:
        try:
            es = EmbeddedSet.load(embeddings)
        except (OSError, KeyError, ValueError) as exc:
            fail(f"{embeddings}: {exc}", as_json=as_json)
        sets.append((models[0], _model_name(models[0]), es, {"embeddings": str(embeddings)}))
    else:
        assert root is not None
        for m in models:
            engine = _engine_for_model(state, m, backend, as_json)
            path = cache if cache is None or len(models) == 1 else cache.with_suffix(f".{m}.npz")
            es, hit = _cached_or_embed(state, engine, root, path, as_json)
            prov: dict[str, object] = {
                "root": str(root),
                "cache": str(path) if path else None,
                "cache_hit": hit,
                "backend": engine.backend,
                "flip_average": engine.config.flip_average,
                "embed_seconds": round(es.seconds, 1),
            }
            sets.append((m, engine.model, es, prov))

    results = []
    curves = {}
    for label, model_name, es, prov in sets:
        if len(es.embeddings) == 0:
            fail("the dataset holds no photos", as_json=as_json)
        try:
            split = make_split(
                es.names,
                ~np.isnan(es.embeddings[:, 0]),
                enroll_per_person=enroll_per_person,
                min_photos=min_photos,
                set_aside=set_aside,
                seed=seed,
            )
        except ValueError as exc:
            fail(str(exc), as_json=as_json)
        try:
            cal = load_builtin(model_name)
        except (FileNotFoundError, ValueError):
            cal = None
        for mode in modes:
            mode_cal = cal
            if mode == "fused" and cal is not None and enroll_per_person >= 2:
                # every listed person has K = enroll_per_person photos fused: check the K curve's estimate
                try:
                    mode_cal = FusedCalibrations.builtin(model_name, cal).for_k(enroll_per_person)
                except (FileNotFoundError, ValueError):
                    mode_cal = None
            r = evaluate(es.embeddings, split, model=model_name, template=mode, calibration=mode_cal)  # type: ignore[arg-type]
            results.append(
                {"model_option": label, **r.to_dict(), "images": len(es.names), "no_face": es.missing, **prov}
            )
            curves[f"{label} {mode} (K={enroll_per_person})"] = r.det
    data: dict[str, object] = {
        "protocol": "NIST FRVT 1:N open-set identification; FNIR = mate not at rank 1 with score >= threshold",
        "results": results,
    }
    if plot is not None:
        try:
            plot_det(curves, str(plot), title=f"DET, {(root or embeddings).name}, K={enroll_per_person}")  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:
            fail(f"cannot write {plot}: {exc}", as_json=as_json)
        data["plot"] = str(plot)

    def render() -> None:
        first = results[0]["split"]
        console.print(f"split: {first['rule']}")  # type: ignore[index]
        console.print("FNIR@x%: listed people missed (mate not at rank 1 at or above the threshold) at FPIR x%")
        t = Table("model", "templates", "listed", "mated", "strangers", "FNIR@1%", "FNIR@.1%", "rank1", "rank5")
        for r in results:
            sp, op, rk = r["split"], r["fnir_at_fpir"], r["rank"]

            def pct(x: object) -> str:
                return "n/a" if x is None else f"{100 * float(x):.2f}%"  # type: ignore[arg-type]

            t.add_row(
                escape(str(r["model_option"])),
                str(r["template"]),
                str(sp["enrolled_persons"]),  # type: ignore[index]
                str(sp["mated_probes"]),  # type: ignore[index]
                str(sp["nonmated_probes"]),  # type: ignore[index]
                pct(op["0.01"]["fnir"]),  # type: ignore[index]
                pct(op["0.001"]["fnir"]),  # type: ignore[index]
                pct(rk["rank1"]),  # type: ignore[index]
                pct(rk["rank5"]),  # type: ignore[index]
            )
        console.print(t)
        if plot is not None:
            console.print(f"DET curve written to {escape(str(plot))}")

    emit(as_json, data, render)


def watchlist_tune_cmd(
    state: CliState,
    name: str,
    max_false_alerts_per_1000: float,
    list_size: int | None,
    dry_run: bool,
    as_json: bool,
    *,
    templates: str = "per-photo",
) -> None:
    from sightline.gallery import GalleryError
    from sightline.gallery.tuning import TuningError, tune_watchlist

    check_templates_option(templates, as_json)
    gallery = state.gallery()
    try:
        r = tune_watchlist(
            gallery,
            name,
            max_false_alerts_per_1000,
            list_size=list_size,
            dry_run=dry_run,
            templates=templates,  # type: ignore[arg-type]
        )
        if not dry_run:
            cli_audit(
                gallery.store,
                "watchlist.update",
                target=f"watchlist:{gallery.get_watchlist(name).id}",
                details={
                    "threshold": r.threshold,
                    "previous_threshold": r.previous_threshold,
                    "max_false_alerts_per_1000": r.max_false_alerts_per_1000,
                    "templates": r.templates,
                },
            )
    except (GalleryError, TuningError) as exc:
        fail(str(exc), as_json=as_json)

    def render() -> None:
        prev = "model default" if r.previous_threshold is None else f"{r.previous_threshold:.4f}"
        verb = "would set" if dry_run else "set"
        console.print(
            f"watchlist [bold]{escape(r.watchlist)}[/]: {verb} threshold [bold]{r.threshold:.4f}[/] (was {prev}; "
            f"model default {r.default_threshold:.4f})"
        )
        if r.templates == "fused":
            mix = ", ".join(f"{c:,} with {k}" for k, c in (r.photos_per_person or {}).items())
            console.print(
                f"  for at most {r.max_false_alerts_per_1000:g} false alerts per 1,000 strangers on a list of "
                f"{r.list_size:,} persons matched by fused templates (photos per person: {mix}): "
                f"{r.fmr_per_comparison:.2g} false matches per person on average"
            )
        else:
            console.print(
                f"  for at most {r.max_false_alerts_per_1000:g} false alerts per 1,000 strangers on a list of "
                f"{r.list_size:,} persons ({r.comparisons:,} photos): {r.fmr_per_comparison:.2g} false matches per "
                "comparison"
            )
        console.print(f"  estimate: {r.method}; tune again when the list grows")

    emit(as_json, r, render)
