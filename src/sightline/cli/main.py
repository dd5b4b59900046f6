"""The ``sightline`` command.

Global options pick the data directory and the engine; every command takes ``--json``.
Exit codes: 0 done (a batch may still report skipped photos), 1 the answer is "no" (verify:
different people), 2 bad input or usage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sightline.cli.governance import register as governance_register
from sightline.cli.models import ModelOpt, apply_model, models_app
from sightline.cli.output import emit, emit_json, fail

if TYPE_CHECKING:
    from sightline.config import Settings
    from sightline.gallery import Gallery
    from sightline.vision.engine import FaceEngine

app = typer.Typer(
    name="sightline",
    help="Accountable face identification: enroll people into watchlists, search photos, measure accuracy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
watchlist_app = typer.Typer(help="Create, list, show and delete watchlists.", no_args_is_help=True)
person_app = typer.Typer(help="List, show and delete enrolled persons.", no_args_is_help=True)
eval_app = typer.Typer(help="Accuracy protocols on public benchmarks.", no_args_is_help=True)
bench_app = typer.Typer(help="Speed benchmarks (print JSON).", no_args_is_help=True)
camera_app = typer.Typer(help="Cameras kept in the gallery database (used by `watch --all`).", no_args_is_help=True)
app.add_typer(watchlist_app, name="watchlist")
app.add_typer(person_app, name="person")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")
app.add_typer(camera_app, name="camera")
app.add_typer(models_app, name="models")  # sightline.cli.models (faceres install, fusion)
governance_register(app)  # sightline.cli.governance: audit, retention, subject, key

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document instead of tables.")]
ReasonOpt = Annotated[
    str,
    typer.Option(
        "--reason",
        help="Case reference or purpose (required; recorded in the audit log with your user and host).",
    ),
]
EvalBackendOpt = Annotated[str | None, typer.Option("--backend", help="dlib or onnx (default: the global --backend).")]
SubjectOpt = Annotated[
    str,
    typer.Option(
        help="Which face is the subject where several are found: central (the most central of those at least "
        "80% as large as the largest; measured better on LFW) or largest."
    ),
]
FullScanOpt = Annotated[
    bool,
    typer.Option(
        "--full-scan",
        help="Scan every photo at the configured upsampling instead of coarse to fine as enrollment does.",
    ),
]


@dataclass
class CliState:
    """Built once per invocation from the global options; services are created on first use."""

    settings: Settings
    _engine: FaceEngine | None = field(default=None, repr=False)
    _gallery: Gallery | None = field(default=None, repr=False)

    def engine(self, **overrides: object) -> FaceEngine:
        """The engine of the global options, built once; with ``overrides`` (EngineConfig fields,
        already validated by the caller) a separate engine built from them."""
        from sightline.vision.engine import FaceEngine

        if overrides:
            return FaceEngine.from_config(self.settings.engine.model_copy(update=overrides))
        if self._engine is None:
            self._engine = FaceEngine.from_config(self.settings.engine)
        return self._engine

    def gallery(self) -> Gallery:
        from sightline.gallery import Gallery

        if self._gallery is None:
            self._gallery = Gallery.open(self.settings.data_dir, self.engine(), self.settings.imaging)
        return self._gallery


def _state(ctx: typer.Context) -> CliState:
    return ctx.find_root().obj


@app.callback()
def _main(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option(envvar="SIGHTLINE_DATA_DIR", help="Gallery directory (default: ~/.local/share/sightline)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="Network runtime: auto (onnx when available), dlib (reference) or onnx.")
    ] = "auto",
    detector: Annotated[str, typer.Option(help="Face detector: hog (fast) or mmod (CNN, more poses).")] = "hog",
    upsample: Annotated[
        int, typer.Option(min=0, max=3, help="Upsample the image N times to find smaller faces (4x time each).")
    ] = 1,
    threads: Annotated[int, typer.Option(min=0, max=256, help="CPU threads for the onnx backend (0 = all).")] = 0,
    model: ModelOpt = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-v, -vv).")] = 0,
    key_file: Annotated[
        Path | None,
        typer.Option(
            "--key-file",
            envvar="SIGHTLINE_KEY_FILE",
            help="Encryption key file, e.g. on another mount than the data directory (created 0600 when missing). "
            "Default: SIGHTLINE_KEY, then $CREDENTIALS_DIRECTORY/sightline.key, then <data-dir>/sightline.key.",
        ),
    ] = None,
) -> None:
    from pydantic import ValidationError

    from sightline.config import EngineConfig, Settings, default_data_dir

    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        engine = EngineConfig(backend=backend, detector=detector, upsample=upsample, threads=threads)
    except ValidationError as exc:
        fail("; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    if key_file is not None:
        key_file = _export_key_file(ctx, key_file)
    ctx.obj = CliState(Settings(data_dir=data_dir or default_data_dir(), engine=engine, key_file=key_file))
    apply_model(ctx.obj, model)


def _export_key_file(ctx: typer.Context, key_file: Path) -> Path:
    """Make ``--key-file`` the key file of every store this command opens (as ``SIGHTLINE_KEY_FILE``, which
    child processes inherit too); the variable is put back when the command ends."""
    import os

    from sightline.governance.crypto import KEY_FILE_ENV

    path = key_file.expanduser().absolute()
    before = os.environ.get(KEY_FILE_ENV)
    os.environ[KEY_FILE_ENV] = str(path)

    def restore() -> None:
        if before is None:
            os.environ.pop(KEY_FILE_ENV, None)
        else:
            os.environ[KEY_FILE_ENV] = before

    ctx.call_on_close(restore)
    return path


def main() -> None:
    app()


# ---------------------------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------------------------


@app.command()
def enroll(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Photos, or folders of PERSON_NAME/*.jpg.")],
    watchlist: Annotated[str, typer.Option(help="Watchlist to add the persons to (created if new).")],
    reason: ReasonOpt,
    person: Annotated[
        str | None, typer.Option(help="Person name for single photos (required when PATHS are files).")
    ] = None,
    external_id: Annotated[str | None, typer.Option(help="Your reference for this person.")] = None,
    largest: Annotated[
        bool, typer.Option("--largest", help="For photos with several faces, enroll the largest one.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Enroll people from photos. A folder enrolls each subfolder as one person. Audited with --reason."""
    from sightline.cli.commands import enroll_cmd

    enroll_cmd(_state(ctx), paths, watchlist, person, external_id, largest, as_json, reason=reason)


@app.command()
def search(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="Photo to search with; every face in it is searched.")],
    reason: ReasonOpt,
    watchlist: Annotated[str | None, typer.Option(help="Search this watchlist (default: everyone).")] = None,
    top: Annotated[int, typer.Option(min=1, max=100, help="Candidates per face.")] = 5,
    as_json: JsonOpt = False,
) -> None:
    """1:N search: each face in PHOTO -> the closest enrolled persons, with what each score means. Audited
    with --reason."""
    from sightline.cli.commands import search_cmd

    search_cmd(_state(ctx), photo, watchlist, top, as_json, reason=reason)


@app.command()
def verify(
    ctx: typer.Context,
    photo_a: Annotated[Path, typer.Argument(help="First photo (its largest face).")],
    photo_b: Annotated[Path, typer.Argument(help="Second photo (its largest face).")],
    threshold: Annotated[
        float | None, typer.Option(min=-1, max=1, help="Similarity threshold (default: the model's, FMR 1e-3).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """1:1 verification: are the largest faces of two photos the same person? Exit 1 when not."""
    from sightline.cli.commands import verify_cmd

    verify_cmd(_state(ctx), photo_a, photo_b, threshold, as_json)


@app.command()
def detect(
    ctx: typer.Context,
    photo: Annotated[Path, typer.Argument(help="Photo to look for faces in.")],
    draw: Annotated[Path | None, typer.Option(help="Write a copy with boxes and landmarks (PNG/JPEG).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Faces in a photo: boxes, landmarks, detector score and quality."""
    from sightline.cli.commands import detect_cmd

    detect_cmd(_state(ctx), photo, draw, as_json)


# ---------------------------------------------------------------------------------------------
# Watchlists and persons
# ---------------------------------------------------------------------------------------------


@watchlist_app.command("list")
def watchlist_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every watchlist with its threshold and member count."""
    from sightline.cli.commands import watchlist_list_cmd

    watchlist_list_cmd(_state(ctx), as_json)


@watchlist_app.command("show")
def watchlist_show(
    ctx: typer.Context,
    name: str,
    templates: Annotated[
        str,
        typer.Option(
            help="How live watch scores the list (WatchConfig.templates): per-photo or fused; the threshold's "
            "meaning for the list follows it.",
        ),
    ] = "per-photo",
    as_json: JsonOpt = False,
) -> None:
    """One watchlist and its members."""
    from sightline.cli.commands import watchlist_show_cmd

    watchlist_show_cmd(_state(ctx), name, as_json, templates=templates)


@watchlist_app.command("create")
def watchlist_create(
    ctx: typer.Context,
    name: str,
    description: Annotated[str, typer.Option(help="What the list is for.")] = "",
    threshold: Annotated[
        float | None, typer.Option(min=-1, max=1, help="Similarity threshold (default: the model's, FMR 1e-3).")
    ] = None,
    fmr: Annotated[
        float | None,
        typer.Option(min=1e-9, max=0.5, help="Or: the false-match rate per comparison to set the threshold for."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a watchlist; its threshold is stated as a false-match rate or a similarity."""
    from sightline.cli.commands import watchlist_create_cmd

    watchlist_create_cmd(_state(ctx), name, description, threshold, fmr, as_json)


@watchlist_app.command("tune")
def watchlist_tune(
    ctx: typer.Context,
    name: str,
    max_false_alerts_per_1000: Annotated[
        float,
        typer.Option(
            "--max-false-alerts-per-1000",
            min=0.001,
            max=999,
            help="Strangers in 1,000 allowed to raise an alert on this list (its size taken into account).",
        ),
    ],
    list_size: Annotated[
        int | None, typer.Option(min=1, help="Plan for this many persons (default: the current members).")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the threshold without storing it.")] = False,
    templates: Annotated[
        str,
        typer.Option(
            help="How live watch scores the list (WatchConfig.templates): per-photo (best photo) or fused (one "
            "mean template per person, tuned with the fused-template calibrations).",
        ),
    ] = "per-photo",
    as_json: JsonOpt = False,
) -> None:
    """Set a watchlist's threshold from a target false-alert rate for the list's size."""
    from sightline.cli.commands import watchlist_tune_cmd

    watchlist_tune_cmd(_state(ctx), name, max_false_alerts_per_1000, list_size, dry_run, as_json, templates=templates)


@watchlist_app.command("delete")
def watchlist_delete(ctx: typer.Context, name: str, as_json: JsonOpt = False) -> None:
    """Delete a watchlist (its persons stay enrolled)."""
    from sightline.cli.commands import watchlist_delete_cmd

    watchlist_delete_cmd(_state(ctx), name, as_json)


@person_app.command("list")
def person_list(
    ctx: typer.Context,
    watchlist: Annotated[str | None, typer.Option(help="Only members of this watchlist.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Enrolled persons with their template counts."""
    from sightline.cli.commands import person_list_cmd

    person_list_cmd(_state(ctx), watchlist, as_json)


@person_app.command("show")
def person_show(ctx: typer.Context, person: str, as_json: JsonOpt = False) -> None:
    """One person (by id or name): templates and watchlists."""
    from sightline.cli.commands import person_show_cmd

    person_show_cmd(_state(ctx), person, as_json)


@person_app.command("delete")
def person_delete(ctx: typer.Context, person: str, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Erase a person: templates, crops, memberships, alerts and sightings (audited as subject.erase)."""
    from sightline.cli.commands import person_delete_cmd

    person_delete_cmd(_state(ctx), person, as_json, reason=reason)


# ---------------------------------------------------------------------------------------------
# Live video
# ---------------------------------------------------------------------------------------------


@app.command()
def watch(
    ctx: typer.Context,
    sources: Annotated[
        list[str] | None,
        typer.Argument(help="rtsp://, http(s)://, video files, /dev/videoN, or ids of stored cameras."),
    ] = None,
    watchlist: Annotated[
        list[str] | None,
        typer.Option("--watchlist", help="Match only this watchlist (repeatable; default: every watchlist)."),
    ] = None,
    all_cameras: Annotated[
        bool, typer.Option("--all", help="Also watch every camera stored with `camera add`.")
    ] = False,
    analysis_fps: Annotated[
        float | None, typer.Option(min=0.1, max=60, help="Frames analysed per second per camera (default 5).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: until Ctrl-C / SIGTERM).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON line per alert; stats as JSON lines on stderr.")
    ] = False,
    templates: Annotated[
        str,
        typer.Option(
            help="WatchConfig.templates: per-photo (a person scores by their best photo) or fused (one mean "
            "template per person; tune lists with `watchlist tune --templates fused`).",
        ),
    ] = "per-photo",
) -> None:
    """Watch cameras live: print watchlist alerts as they happen, per-camera stats on stderr."""
    from sightline.cli.watch import watch_cmd

    watch_cmd(_state(ctx), sources or [], watchlist, all_cameras, analysis_fps, duration, as_json, templates=templates)


@camera_app.command("add")
def camera_add(
    ctx: typer.Context,
    camera_id: Annotated[str, typer.Argument(metavar="ID", help="Camera name: letters, digits, _ . : -")],
    url: Annotated[str, typer.Argument(help="rtsp://, http(s)://, a video file or /dev/videoN.")],
    transport: Annotated[str, typer.Option(help="RTSP transport: tcp or udp.")] = "tcp",
    loop: Annotated[bool, typer.Option("--loop", help="Files: start again at the end.")] = False,
    keep_unmatched: Annotated[
        bool, typer.Option("--keep-unmatched", help="Store crops of faces that match no watchlist (off: privacy).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Store a camera in the gallery database."""
    from sightline.cli.watch import camera_add_cmd

    if transport not in ("tcp", "udp"):
        fail(f"--transport must be tcp or udp, got {transport!r}", as_json=as_json)
    camera_add_cmd(_state(ctx), camera_id, url, transport, loop, keep_unmatched, as_json)  # type: ignore[arg-type]


@camera_app.command("list")
def camera_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The stored cameras."""
    from sightline.cli.watch import camera_list_cmd

    camera_list_cmd(_state(ctx), as_json)


@camera_app.command("remove")
def camera_remove(
    ctx: typer.Context, camera_id: Annotated[str, typer.Argument(metavar="ID")], as_json: JsonOpt = False
) -> None:
    """Delete a stored camera (its past alerts and sightings stay)."""
    from sightline.cli.watch import camera_remove_cmd

    camera_remove_cmd(_state(ctx), camera_id, as_json)


# ---------------------------------------------------------------------------------------------
# Evaluation and benchmarks
# ---------------------------------------------------------------------------------------------


@eval_app.command("embed")
def eval_embed(
    ctx: typer.Context,
    root: Annotated[Path, typer.Argument(help="Identity-folder dataset: ROOT/NAME/*.jpg.")],
    out: Annotated[Path, typer.Option(help="Where to write the .npz.")],
    backend: EvalBackendOpt = None,
    subject: SubjectOpt = "central",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N images (sorted).")] = None,
    full_scan: FullScanOpt = False,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed every image of a dataset with the enrollment pipeline into an npz."""
    from sightline.cli.commands import eval_embed_cmd

    apply_model(_state(ctx), model, as_json)
    eval_embed_cmd(_state(ctx), root, out, backend, subject, limit, full_scan, as_json)


@eval_app.command("lfw")
def eval_lfw(
    ctx: typer.Context,
    root: Annotated[Path, typer.Option(help="LFW images: ROOT/NAME/NAME_NNNN.jpg.")],
    pairs: Annotated[Path, typer.Option(help="pairs.txt (first line '10' or '10<TAB>300').")],
    backend: EvalBackendOpt = None,
    subject: SubjectOpt = "central",
    flip: Annotated[bool, typer.Option(help="Mirror-average descriptors.")] = True,
    full_scan: FullScanOpt = False,
    model: ModelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The standard LFW 10-fold verification protocol on a pairs file."""
    from sightline.cli.commands import eval_lfw_cmd

    apply_model(_state(ctx), model, as_json)
    eval_lfw_cmd(_state(ctx), root, pairs, backend, subject, flip, full_scan, as_json)


@eval_app.command("lfw-npz")
def eval_lfw_npz(
    ctx: typer.Context,
    embeddings: Annotated[Path, typer.Argument(help="An npz written by `sightline eval embed`.")],
    pairs: Annotated[Path, typer.Option(help="pairs.txt of the same images.")],
    part: Annotated[str | None, typer.Option(help="Score one part of a fusion npz (e.g. dlib_resnet_v1).")] = None,
    fusion_params: Annotated[Path | None, typer.Option(help="Re-fuse the parts with this parameter JSON.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The LFW protocol on already-embedded images (no re-embedding)."""
    from sightline.cli.models import lfw_npz_cmd

    lfw_npz_cmd(_state(ctx), embeddings, pairs, part, fusion_params, as_json)


@eval_app.command("watchlist")
def eval_watchlist(
    ctx: typer.Context,
    root: Annotated[Path | None, typer.Option(help="Identity-folder dataset: ROOT/NAME/*.jpg.")] = None,
    embeddings: Annotated[
        Path | None, typer.Option(help="Or: evaluate an npz written by `sightline eval embed`.")
    ] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Descriptor model (repeatable; default dlib).")
    ] = None,
    enroll_per_person: Annotated[int, typer.Option(min=1, max=50, help="Photos enrolled per listed person.")] = 1,
    set_aside: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=50,
            help="Photos per listed person kept out of the probes (default K; use the "
            "largest K compared so that runs search the same probes).",
        ),
    ] = None,
    min_photos: Annotated[
        int | None, typer.Option(min=2, help="Photos an identity needs to be listed (default set-aside + 1).")
    ] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the enrolled/probe split.")] = 0,
    template: Annotated[
        str, typer.Option(help="Several photos per person: per-photo (best template wins), fused, or both.")
    ] = "per-photo",
    cache: Annotated[
        Path | None, typer.Option(help="npz cache of the embeddings: reused when it holds the same files.")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the DET curve (PNG).")] = None,
    backend: EvalBackendOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Open-set watchlist identification (NIST FRVT 1:N): FNIR at FPIR 1% and 0.1%, rank-1/5, DET curve."""
    from sightline.cli.commands import eval_watchlist_cmd

    eval_watchlist_cmd(
        _state(ctx),
        root,
        embeddings,
        model or [],
        enroll_per_person,
        set_aside,
        min_photos,
        seed,
        template,
        cache,
        plot,
        backend,
        as_json,
    )


@eval_app.command("calibrate")
def eval_calibrate(
    ctx: typer.Context,
    embeddings: Annotated[Path, typer.Argument(help="An npz written by `sightline eval embed`.")],
    out: Annotated[Path, typer.Option(help="Calibration JSON to write.")],
    model: Annotated[str, typer.Option(help="Model name recorded in the file.")] = "dlib_resnet_v1",
    fused_k: Annotated[
        int | None,
        typer.Option(
            "--fused-k",
            help="Calibrate fused templates of K >= 2 photos (first K per identity, file order) instead of "
            "single photos; ship as MODEL.fused_kK.calibration.json.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Impostor-score calibration (threshold per false-match rate) from labelled embeddings."""
    from sightline.cli.commands import eval_calibrate_cmd

    eval_calibrate_cmd(_state(ctx), embeddings, out, model, as_json, fused_k=fused_k)


@bench_app.command("engine")
def bench_engine(
    ctx: typer.Context,
    threads: Annotated[int, typer.Option(min=1, max=256, help="Threads for the onnx backend.")] = 1,
    repeats: Annotated[int, typer.Option(min=1, max=100, help="Timed repetitions per figure.")] = 3,
    as_json: JsonOpt = True,
) -> None:
    """Descriptor and MMOD detection time for the dlib and onnx backends, measured in one run."""
    from sightline.eval.bench_engine import bench_engine as run

    result = run(threads=threads, repeats=repeats, image_dir=None)
    emit(as_json, result, lambda: emit_json(result))


@bench_app.command("streams")
def bench_streams(
    ctx: typer.Context,
    counts: Annotated[
        str, typer.Option(help="Stream counts to try, comma-separated, in order; stops at the first that fails.")
    ] = "1,2,4,6,8,10,12,16",
    seconds: Annotated[float, typer.Option(min=2, max=600, help="Measured seconds per stream count.")] = 15.0,
    analysis_fps: Annotated[float, typer.Option(min=0.1, max=60, help="Frames analysed per second per camera.")] = 5.0,
    detect_width: Annotated[int, typer.Option(min=160, max=3840, help="Detection width, pixels.")] = 640,
    motion_gate: Annotated[
        float, typer.Option(min=0, max=255, help="CameraConfig.motion_gate (0: detect every analysed frame).")
    ] = 0.0,
    detect_mode: Annotated[
        str | None, typer.Option(help="CameraConfig.detect_mode: 'full' or 'roi' (default: the config default).")
    ] = None,
    full_detect_s: Annotated[
        float | None, typer.Option(min=0.01, max=60, help="CameraConfig.full_detect_s (ROI mode), s.")
    ] = None,
    as_json: JsonOpt = True,
) -> None:
    """N concurrent 1280x720 RTSP streams: analysed fps, drops, alert latency and CPU split per N."""
    from sightline.eval.bench_streams import bench_streams as run

    if detect_mode not in (None, "full", "roi"):
        fail(f"--detect-mode must be 'full' or 'roi', got {detect_mode!r}", as_json=as_json)

    try:
        ns = tuple(int(x) for x in counts.split(",") if x.strip())
    except ValueError:
        fail(f"--counts must be integers separated by commas, got {counts!r}", as_json=as_json)
    if not ns or min(ns) < 1:
        fail("--counts must name stream counts >= 1", as_json=as_json)
    result = run(
        counts=ns,
        seconds=seconds,
        analysis_fps=analysis_fps,
        detect_width=detect_width,
        motion_gate=motion_gate,
        detect_mode=detect_mode,
        full_detect_s=full_detect_s,
        model=_state(ctx).settings.engine.model,
    )
    emit(as_json, result, lambda: emit_json(result))


@bench_app.command("streams-cpu")
def bench_streams_cpu(
    ctx: typer.Context,
    variants: Annotated[
        str, typer.Option(help="Worker variants, comma-separated; the first is the recall reference.")
    ] = "full,roi,roi_full1s,roi_busy_stride,full_1280_up0",
    loops: Annotated[int, typer.Option(min=1, max=100, help="Passes over the clip per variant.")] = 4,
    clip: Annotated[
        Path | None, typer.Option(help="A video file to use instead of the generated 4-face grid clip.")
    ] = None,
    as_json: JsonOpt = True,
) -> None:
    """CPU ms per camera (decode, analysis by stage) and the streams the cores carry, per worker variant."""
    from sightline.eval.bench_streams import bench_streams_cpu as run

    try:
        result = run(
            variants=tuple(v.strip() for v in variants.split(",") if v.strip()),
            loops=loops,
            clip=clip,
            model=_state(ctx).settings.engine.model,
        )
    except ValueError as e:
        fail(str(e), as_json=as_json)
    emit(as_json, result, lambda: emit_json(result))


# ---- notifications: `watchlist channel ...` and `notify ...` (sightline.cli.notify) ----------------------
from sightline.cli.notify import channel_app, notify_app  # noqa: E402

watchlist_app.add_typer(channel_app, name="channel")
app.add_typer(notify_app, name="notify")


# ---- server: `serve`, `user ...`, `token ...` (sightline.cli.serve) --------------------------------------
from sightline.cli.serve import token_app, user_app  # noqa: E402

app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free port).")] = 8080,
    cameras: Annotated[bool, typer.Option(help="Start the cameras stored in the database.")] = True,
    metrics_public: Annotated[bool, typer.Option(help="Serve /metrics without authentication.")] = False,
    secure_cookies: Annotated[bool, typer.Option(help="Always mark the session cookie Secure (TLS proxy).")] = False,
    config: Annotated[
        Path | None, typer.Option(help="JSON object of ServerConfig fields (session lifetimes, limits, ...).")
    ] = None,
) -> None:
    """The operator console and HTTP API (OpenAPI at /docs), with the stored cameras running."""
    from sightline.cli.serve import serve_cmd

    serve_cmd(_state(ctx), host, port, cameras, metrics_public, secure_cookies, config_file=config)


if __name__ == "__main__":
    main()
