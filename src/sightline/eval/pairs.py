"""Read an LFW View-2 ``pairs.txt``: matched and mismatched image pairs, split into folds.

Syntax (the official file's, see LFW's README): the first line is the fold count, optionally followed
by the pairs per class per fold (``10`` or ``10<TAB>300``, tabs or spaces); then matched lines
``Name<TAB>i<TAB>j`` and mismatched lines ``Name1<TAB>i<TAB>Name2<TAB>j``, with 1-based image numbers.
Image ``i`` of ``Name`` is ``ROOT/Name/Name_{i:04d}.jpg``.

Folds are consecutive blocks of lines, as in the file:

- header ``K<TAB>N``: the standard grouping, fold f is lines ``2*N*f .. 2*N*(f+1)`` (N matched then
  N mismatched); the file must hold exactly ``2*K*N`` pairs.
- header ``K`` alone (folds of unequal sizes, as in this project's identity-disjoint split of LFW):
  each fold lists its matched lines then its mismatched lines, so a new fold starts wherever a matched
  line follows a mismatched one; exactly K folds must result. A fold with no mismatched pair would
  merge with the next one and is reported as a fold-count error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


class PairsFormatError(ValueError):
    """A pairs file that does not follow the View-2 syntax; the message names the file and line."""


def image_relpath(name: str, number: int) -> str:
    """The LFW path of image ``number`` (1-based) of ``name``, relative to the dataset root."""
    return f"{name}/{name}_{number:04d}.jpg"


@dataclass(frozen=True, eq=False)
class LfwPairs:
    """P pairs as numpy columns, in file order.

    name_a, name_b: (P,) str identities (equal for matched pairs).
    num_a, num_b:   (P,) int64 1-based image numbers.
    is_same:        (P,) bool, True for a matched pair.
    folds:          (P,) int64 fold index, 0-based, non-decreasing.
    pairs_per_fold: N from a ``K<TAB>N`` header, else None.
    """

    name_a: npt.NDArray[np.str_]
    num_a: npt.NDArray[np.int64]
    name_b: npt.NDArray[np.str_]
    num_b: npt.NDArray[np.int64]
    is_same: npt.NDArray[np.bool_]
    folds: npt.NDArray[np.int64]
    pairs_per_fold: int | None = None

    def __post_init__(self) -> None:
        n = len(self.is_same)
        for col in ("name_a", "num_a", "name_b", "num_b", "folds"):
            if len(getattr(self, col)) != n:
                raise ValueError(f"{col} has {len(getattr(self, col))} rows but is_same has {n}")
        for col in ("name_a", "num_a", "name_b", "num_b", "is_same", "folds"):
            getattr(self, col).setflags(write=False)

    def __len__(self) -> int:
        return len(self.is_same)

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1 if len(self.folds) else 0

    def path_pairs(self) -> list[tuple[str, str]]:
        """(path_a, path_b) per pair, relative to the dataset root (``Name/Name_0001.jpg``)."""
        return [
            (image_relpath(a, int(i)), image_relpath(b, int(j)))
            for a, i, b, j in zip(self.name_a, self.num_a, self.name_b, self.num_b, strict=True)
        ]

    def image_paths(self) -> list[str]:
        """Every distinct image of the pairs, relative to the dataset root, sorted."""
        return sorted({p for pair in self.path_pairs() for p in pair})


def _header(line: str, where: str) -> tuple[int, int | None]:
    parts = line.split()
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise PairsFormatError(
            f"{where}: the first line must be the fold count, optionally followed by the pairs per fold "
            f"('10' or '10<TAB>300'), got {line!r}"
        )
    n_folds = int(parts[0])
    per_fold = int(parts[1]) if len(parts) == 2 else None
    if n_folds < 1 or per_fold == 0:
        raise PairsFormatError(f"{where}: fold count and pairs per fold must be positive, got {line!r}")
    return n_folds, per_fold


def _number(token: str, where: str, line: str) -> int:
    if not token.isdigit() or int(token) < 1:
        raise PairsFormatError(f"{where}: image numbers are integers >= 1, got {token!r} in {line!r}")
    return int(token)


def read_pairs(path: str | Path) -> LfwPairs:
    """Parse a View-2 pairs file (see the module docstring). Raises PairsFormatError naming the line."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    numbered = [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]
    if not numbered:
        raise PairsFormatError(f"{path}: empty pairs file")
    n_folds, per_fold = _header(numbered[0][1], f"{path}:{numbered[0][0]}")

    name_a: list[str] = []
    num_a: list[int] = []
    name_b: list[str] = []
    num_b: list[int] = []
    same: list[bool] = []
    folds: list[int] = []
    fold = 0
    for lineno, line in numbered[1:]:
        where = f"{path}:{lineno}"
        parts = line.split()
        if len(parts) == 3:
            a, i, j = parts[0], _number(parts[1], where, line), _number(parts[2], where, line)
            b, is_same = a, True
        elif len(parts) == 4:
            a, i, b, j = parts[0], _number(parts[1], where, line), parts[2], _number(parts[3], where, line)
            is_same = False
        else:
            raise PairsFormatError(
                f"{where}: expected 'Name i j' (matched) or 'Name1 i Name2 j' (mismatched), got {line!r}"
            )
        k = len(same)
        if per_fold is not None:
            fold = k // (2 * per_fold)
        elif is_same and k and not same[-1]:
            fold += 1
        name_a.append(a)
        num_a.append(i)
        name_b.append(b)
        num_b.append(j)
        same.append(is_same)
        folds.append(fold)

    n_found = folds[-1] + 1 if folds else 0
    if per_fold is not None and len(same) != 2 * n_folds * per_fold:
        raise PairsFormatError(
            f"{path}: the header promises {n_folds} folds of {per_fold} matched + {per_fold} mismatched "
            f"pairs ({2 * n_folds * per_fold} lines) but the file has {len(same)} pairs"
        )
    if per_fold is None and n_found != n_folds:
        raise PairsFormatError(
            f"{path}: the header says {n_folds} folds but the file has {n_found} blocks of "
            "matched-then-mismatched lines"
        )
    pairs = LfwPairs(
        np.array(name_a, dtype=np.str_),
        np.array(num_a, dtype=np.int64),
        np.array(name_b, dtype=np.str_),
        np.array(num_b, dtype=np.int64),
        np.array(same, dtype=bool),
        np.array(folds, dtype=np.int64),
        per_fold,
    )
    logger.debug("read %d pairs in %d folds from %s", len(pairs), n_folds, path)
    return pairs
