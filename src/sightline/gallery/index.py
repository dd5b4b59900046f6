"""Exact in-memory vector search over face templates (numpy).

The index holds an (N, D) float32 matrix of L2-normalised descriptors with the template id and
person id of each row. A search is one matrix multiply ``queries @ matrix.T`` followed by a
per-person maximum, so a person with several templates is matched by their best one.

Trade-offs: exact search costs O(Q * N * D) multiply-adds per call (measured: about 7 ms for one
query over 100k templates at D=128 on 2 shared CPU cores, 16 ms for 8 queries), needs no training
and never misses a match; an approximate index only pays off far beyond the gallery sizes this
system targets. Memory: N * D * 4 bytes (51 MB for 100k templates at D=128). Rows are kept sorted by person id
(re-sorted lazily after adds) so that the per-person maximum is one ``np.maximum.reduceat``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection

import numpy as np
import numpy.typing as npt

from sightline.gallery.records import SearchHit
from sightline.types import F32

logger = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]


class VectorIndex:
    """Templates of one descriptor model, searchable by cosine similarity.

    Thread-safe: every method takes an internal lock. Adds are buffered and merged on the next
    search, so enrolling many persons one by one costs O(N) in total, not O(N^2).
    """

    def __init__(self, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        self.dim = dim
        self._lock = threading.Lock()
        self._matrix: F32 = np.zeros((0, dim), np.float32)
        self._tids: I64 = np.zeros(0, np.int64)
        self._pids: I64 = np.zeros(0, np.int64)
        self._pending: list[tuple[I64, I64, F32]] = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._tids) + sum(len(t) for t, _, _ in self._pending)

    @property
    def person_count(self) -> int:
        """Distinct persons with at least one template in the index."""
        with self._lock:
            self._merge()
            return int(np.unique(self._pids).size)

    def add(self, template_ids: npt.ArrayLike, person_ids: npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Add templates: ids are (N,) ints, ``vectors`` (N, D) float32 L2-normalised (not re-normalised).

        A template id already in the index is replaced.
        """
        tids = np.array(template_ids, dtype=np.int64).reshape(-1)
        pids = np.array(person_ids, dtype=np.int64).reshape(-1)
        vecs = np.array(vectors, dtype=np.float32)
        if vecs.ndim == 1:
            vecs = vecs.reshape(1, -1)
        if vecs.ndim != 2 or vecs.shape[1] != self.dim:
            raise ValueError(f"vectors must have shape (N, {self.dim}), got {vecs.shape}")
        if not (len(tids) == len(pids) == len(vecs)):
            raise ValueError(
                f"template_ids ({len(tids)}), person_ids ({len(pids)}) and vectors ({len(vecs)}) "
                "must have the same length"
            )
        if len(np.unique(tids)) != len(tids):
            raise ValueError("template_ids must be unique")
        if len(tids) == 0:
            return
        with self._lock:
            self._drop(np.isin(self._tids, tids))
            self._pending = [(t[k], p[k], v[k]) for t, p, v in self._pending if (k := ~np.isin(t, tids)).any()]
            self._pending.append((tids, pids, np.ascontiguousarray(vecs)))

    def remove_templates(self, template_ids: Collection[int]) -> int:
        """Remove templates by id; unknown ids are ignored. Returns the number removed."""
        ids = np.fromiter(template_ids, dtype=np.int64, count=len(template_ids))
        with self._lock:
            self._merge()
            return self._drop(np.isin(self._tids, ids))

    def remove_persons(self, person_ids: Collection[int]) -> int:
        """Remove every template of the given persons. Returns the number of templates removed."""
        ids = np.fromiter(person_ids, dtype=np.int64, count=len(person_ids))
        with self._lock:
            self._merge()
            return self._drop(np.isin(self._pids, ids))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self._matrix = np.zeros((0, self.dim), np.float32)
            self._tids = np.zeros(0, np.int64)
            self._pids = np.zeros(0, np.int64)

    def search(
        self, queries: npt.ArrayLike, k: int, person_filter: Collection[int] | None = None
    ) -> list[list[SearchHit]]:
        """The k most similar persons for each query, by each person's best template.

        queries:       (Q, D) float32, L2-normalised (a single (D,) vector is taken as Q=1).
        k:             persons per query, >= 1.
        person_filter: only these persons are searched; None searches everyone.
        Returns Q lists of at most k hits, similarity descending (ties: lower person id first).
        An empty index (or filter) gives Q empty lists.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (Q, {self.dim}), got {q.shape}")
        with self._lock:
            self._merge()
            matrix, tids, pids = self._matrix, self._tids, self._pids
        # The arrays are replaced, never written in place, so the snapshot above is safe to use
        # without the lock.
        if person_filter is not None:
            rows = np.flatnonzero(np.isin(pids, np.fromiter(person_filter, np.int64, len(person_filter))))
            matrix, tids, pids = matrix[rows], tids[rows], pids[rows]
        if len(q) == 0:
            return []
        if len(tids) == 0:
            return [[] for _ in range(len(q))]

        sims = q @ matrix.T  # (Q, N), the one matrix multiply
        starts = np.flatnonzero(np.r_[True, pids[1:] != pids[:-1]])  # first row of each person
        ends = np.r_[starts[1:], len(pids)]
        persons = pids[starts]  # (P,) ascending
        best = np.maximum.reduceat(sims, starts, axis=1)  # (Q, P)
        kk = min(k, len(persons))
        out: list[list[SearchHit]] = []
        for qi in range(len(q)):
            row = best[qi]
            if kk < len(row):
                cand = np.argpartition(-row, kk - 1)[:kk]
                # Include ties at the cut so the person-id tie-break below is deterministic.
                cand = np.flatnonzero(row >= row[cand].min())
            else:
                cand = np.arange(len(row))
            order = cand[np.lexsort((persons[cand], -row[cand]))][:kk]
            hits = []
            for g in order:
                s, e = starts[g], ends[g]
                r = s + int(np.argmax(sims[qi, s:e]))
                hits.append(SearchHit(int(persons[g]), int(tids[r]), float(sims[qi, r])))
            out.append(hits)
        return out

    # -- internals (call with the lock held) --------------------------------------------------------

    def _merge(self) -> None:
        if not self._pending:
            return
        tids = np.concatenate([self._tids, *(t for t, _, _ in self._pending)])
        pids = np.concatenate([self._pids, *(p for _, p, _ in self._pending)])
        mat = np.concatenate([self._matrix, *(v for _, _, v in self._pending)], axis=0)
        self._pending.clear()
        order = np.lexsort((tids, pids))
        self._tids, self._pids = tids[order], pids[order]
        self._matrix = np.ascontiguousarray(mat[order])

    def _drop(self, mask: npt.NDArray[np.bool_]) -> int:
        n = int(mask.sum())
        if n:
            keep = ~mask
            self._tids, self._pids = self._tids[keep], self._pids[keep]
            self._matrix = np.ascontiguousarray(self._matrix[keep])
        return n
