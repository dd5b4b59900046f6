"""ONNX Runtime sessions: thread count and execution-provider selection, reporting what really runs.

Provider order when ``providers`` is None: TensorRT, then CUDA (each only when listed by
``onnxruntime.get_available_providers()``, i.e. onnxruntime-gpu is installed, *and* a session
actually initialises on it - a GPU build on a machine without a GPU falls through), then CPU. The
provider that a session really uses is ``session.get_providers()[0]``; ``make_session`` returns it
so that embedders and detectors can report it (``provider`` attribute).

Threads: ``threads=0`` means one intra-op thread per CPU this process may run on; ``threads=1`` is
the fairest setting when several cameras share a machine (one session per worker process).
Spinning threads are turned off: on a shared, small machine a spin-waiting pool burns cores that
other stages need, for a latency gain of well under a millisecond per call.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
GPU_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
#: listed by onnxruntime but run no model nodes themselves (reporting them would mislead)
NOT_COMPUTE = ("AzureExecutionProvider",)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int) -> int:
    if threads < 0:
        raise ValueError(f"threads must be >= 0 (0 = all cores), got {threads}")
    return threads or cpu_count()


@dataclass(frozen=True)
class Session:
    """An InferenceSession with the provider it actually runs on and the thread count asked for."""

    session: Any
    provider: str
    threads: int

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return self.session.run(None, feeds)


def _options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # errors only: provider fallbacks are logged by us
    return so


def provider_candidates(providers: Sequence[str] | None) -> list[str]:
    """The providers to try, best first: the caller's list, in its order up to CPU (unavailable
    ones dropped, with a warning), or the GPU ones that are available; CPU always last."""
    avail = available_providers()
    if providers is None:
        wanted = [p for p in GPU_PREFERENCE if p in avail]
    else:
        wanted = []
        for p in providers:
            if p == CPU:
                break  # the CPU provider runs everything: later entries would never be reached
            if p in NOT_COMPUTE:
                logger.warning("onnxruntime provider %s runs no model nodes; ignored", p)
            elif p in avail:
                wanted.append(p)
            else:
                logger.warning("onnxruntime provider %s is not available (have: %s)", p, ", ".join(avail))
    return [*wanted, CPU]


def _provider_entry(name: str) -> str | tuple[str, dict[str, str]]:
    if name == "TensorrtExecutionProvider":
        from sightline.config import default_cache_dir

        # engines are built per input shape (minutes the first time): keep them across runs
        return name, {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(default_cache_dir() / "onnx" / "trt"),
        }
    return name


def make_session(model: bytes | str, *, threads: int = 0, providers: Sequence[str] | None = None) -> Session:
    """An InferenceSession on the first provider that initialises; ``model`` is ONNX bytes or a path.

    Each candidate is tried with the ones after it as fallbacks for nodes it cannot run (TensorRT,
    then CUDA, then CPU); a candidate that raises, or whose session reports another provider first,
    is skipped with a warning.
    """
    import onnxruntime as ort

    n = resolve_threads(threads)
    candidates = provider_candidates(providers)
    last_error: Exception | None = None
    for i, prov in enumerate(candidates):
        chain = [_provider_entry(p) for p in candidates[i:]]
        try:
            sess = ort.InferenceSession(model, sess_options=_options(n), providers=chain)
        except Exception as exc:  # a GPU provider that is listed but cannot start (no device, no libs)
            logger.warning("onnxruntime provider %s failed to initialise: %s", prov, exc)
            last_error = exc
            continue
        actual = sess.get_providers()[0]
        if actual != prov:
            logger.warning("onnxruntime provider %s is not usable here; %s answered", prov, actual)
            if prov != CPU:
                continue
        logger.info("onnxruntime session on %s, %d intra-op threads", actual, n)
        return Session(sess, actual, n)
    raise RuntimeError(f"no onnxruntime provider could start: {last_error}")
