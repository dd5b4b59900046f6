"""VectorIndex: exact search, best template per person, filters, adds and removes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sightline.gallery import SearchHit, VectorIndex


def unit(*rows: list[float]) -> np.ndarray:
    a = np.asarray(rows, np.float32)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def brute_force(mat, tids, pids, q, k, allowed=None):
    """Reference: per person the best template, sorted by (-similarity, person id)."""
    best: dict[int, tuple[float, int]] = {}
    for v, t, p in zip(mat, tids, pids, strict=True):
        if allowed is not None and p not in allowed:
            continue
        s = float(np.dot(q, v))
        if p not in best or s > best[p][0] or (s == best[p][0] and t < best[p][1]):
            best[p] = (s, t)
    order = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:k]
    return [(p, t) for p, (_, t) in order], [s for _, (s, _) in order]


def test_empty_index_gives_an_empty_list_per_query():
    idx = VectorIndex(4)
    assert idx.search(unit([1, 0, 0, 0], [0, 1, 0, 0]), k=3) == [[], []]
    assert len(idx) == 0 and idx.person_count == 0


def test_person_is_matched_by_best_template():
    idx = VectorIndex(3)
    # person 7 has a far and a near template; person 8 one medium template
    idx.add([1, 2, 3], [7, 7, 8], unit([0, 1, 0], [1, 0.1, 0], [1, 1, 0]))
    (hits,) = idx.search(unit([1, 0, 0]), k=5)
    assert [(h.person_id, h.template_id) for h in hits] == [(7, 2), (8, 3)]
    assert hits[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert hits[1].similarity == pytest.approx(1 / np.sqrt(2), abs=1e-6)


@pytest.mark.parametrize(
    ("k", "person_filter", "expected"),
    [
        (1, None, [10]),
        (2, None, [10, 20]),
        (9, None, [10, 20, 30]),
        (9, {20, 30}, [20, 30]),
        (1, {30}, [30]),
        (9, {99}, []),
        (9, set(), []),
    ],
)
def test_top_k_and_person_filter(k, person_filter, expected):
    idx = VectorIndex(2)
    idx.add([1, 2, 3], [30, 10, 20], unit([0, 1], [1, 0], [1, 1]))
    (hits,) = idx.search(unit([1, 0.01]), k=k, person_filter=person_filter)
    assert [h.person_id for h in hits] == expected
    sims = [h.similarity for h in hits]
    assert sims == sorted(sims, reverse=True)


def test_ties_break_on_lower_person_id():
    idx = VectorIndex(2)
    idx.add([1, 2, 3], [5, 3, 4], unit([1, 0], [1, 0], [1, 0]))
    (hits,) = idx.search(unit([1, 0]), k=2)
    assert [h.person_id for h in hits] == [3, 4]


def test_remove_templates_and_persons():
    idx = VectorIndex(2)
    idx.add([1, 2, 3, 4], [1, 1, 2, 3], unit([1, 0], [0, 1], [1, 1], [-1, 0]))
    assert idx.remove_templates([1, 99]) == 1
    (hits,) = idx.search(unit([1, 0]), k=5)
    assert (hits[0].person_id, hits[0].template_id) == (2, 3)
    assert {h.person_id: h.template_id for h in hits}[1] == 2  # person 1 falls back to template 2
    assert idx.remove_persons({1, 3}) == 2
    assert [h.person_id for h in idx.search(unit([1, 0]), k=5)[0]] == [2]
    assert len(idx) == 1 and idx.person_count == 1
    idx.clear()
    assert idx.search(unit([1, 0]), k=5) == [[]]


def test_adding_a_known_template_id_replaces_it_even_before_a_search():
    idx = VectorIndex(2)
    idx.add([1], [1], unit([1, 0]))
    idx.add([2], [2], unit([0, 1]))  # still pending (not merged)
    idx.add([1, 2], [3, 3], unit([0, 1], [1, 0]))
    assert len(idx) == 2
    (hits,) = idx.search(unit([1, 0]), k=5)
    assert hits == [SearchHit(3, 2, pytest.approx(1.0))]


@pytest.mark.parametrize(
    ("tids", "pids", "vecs", "message"),
    [
        ([1], [1], np.ones((1, 3)), "shape"),
        ([1, 2], [1], np.ones((2, 2)), "same length"),
        ([1, 1], [1, 2], np.ones((2, 2)), "unique"),
    ],
)
def test_add_rejects_bad_input(tids, pids, vecs, message):
    with pytest.raises(ValueError, match=message):
        VectorIndex(2).add(tids, pids, vecs)


@pytest.mark.parametrize(("queries", "k"), [(np.ones((1, 3)), 1), (np.ones((1, 2)), 0)])
def test_search_rejects_bad_input(queries, k):
    idx = VectorIndex(2)
    idx.add([1], [1], unit([1, 0]))
    with pytest.raises(ValueError):
        idx.search(queries, k=k)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    persons=st.integers(1, 8),
    q=st.integers(1, 3),
    k=st.integers(1, 10),
    use_filter=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_matches_brute_force(n, persons, q, k, use_filter, seed):
    rng = np.random.default_rng(seed)
    mat = rng.normal(size=(n, 8)).astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    tids = rng.permutation(1000)[:n] + 1
    pids = rng.integers(1, persons + 1, n)
    queries = rng.normal(size=(q, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    allowed = set(rng.integers(1, persons + 1, 3).tolist()) if use_filter else None
    idx = VectorIndex(8)
    half = n // 2  # two chunks exercise the pending merge
    idx.add(tids[:half], pids[:half], mat[:half])
    idx.add(tids[half:], pids[half:], mat[half:])
    got = idx.search(queries, k, allowed)
    for qi in range(q):
        ids, sims = brute_force(mat, tids, pids, queries[qi], k, allowed)
        assert [(h.person_id, h.template_id) for h in got[qi]] == ids
        np.testing.assert_allclose([h.similarity for h in got[qi]], sims, atol=1e-5)
