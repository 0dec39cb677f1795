"""Grouped stratified splits: stratified, seeded, reproducible, duplicates and patients never straddle."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict

import pytest

from hemotune.data.splits import SplitItem, check_fractions, group_items, grouped_stratified_split

FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def _key(i: int) -> str:
    return hashlib.md5(str(i).encode()).hexdigest()


def _items(counts: dict[str, int]) -> list[SplitItem]:
    out, i = [], 0
    for label, n in counts.items():
        for _ in range(n):
            out.append(SplitItem(_key(i), label))
            i += 1
    return out


def test_singletons_are_stratified_exactly() -> None:
    counts = {"a": 100, "b": 40, "c": 20}
    items = _items(counts)
    splits = grouped_stratified_split(items, FRACTIONS, seed=0)
    got = Counter((it.label, s) for it, s in zip(items, splits, strict=True))
    for label, n in counts.items():
        for split, frac in FRACTIONS.items():
            assert abs(got[(label, split)] - frac * n) <= 1, (label, split, got)


def test_same_seed_same_split_other_seed_other_split_and_order_free() -> None:
    items = _items({"a": 50, "b": 30})
    first = grouped_stratified_split(items, FRACTIONS, seed=3)
    assert grouped_stratified_split(items, FRACTIONS, seed=3) == first
    assert grouped_stratified_split(items, FRACTIONS, seed=4) != first
    shuffled = items[:]
    random.Random(0).shuffle(shuffled)
    again = dict(
        zip((it.key for it in shuffled), grouped_stratified_split(shuffled, FRACTIONS, seed=3), strict=True)
    )
    assert again == dict(zip((it.key for it in items), first, strict=True))


def test_duplicates_and_patients_never_straddle() -> None:
    items = _items({"a": 60, "b": 40})
    # 10 duplicate pairs (same key) and 12 patients with 2-5 images each.
    items += [SplitItem(items[i].key, items[i].label) for i in range(0, 100, 10)]
    rng = random.Random(1)
    with_patients = []
    for idx, it in enumerate(items):
        patient = f"p{rng.randrange(12)}" if idx % 3 == 0 else ""
        with_patients.append(SplitItem(it.key, it.label, (patient,) if patient else ()))
    for seed in range(5):
        splits = grouped_stratified_split(with_patients, FRACTIONS, seed=seed)
        by_key: dict[str, set[str]] = defaultdict(set)
        by_patient: dict[str, set[str]] = defaultdict(set)
        for it, s in zip(with_patients, splits, strict=True):
            by_key[it.key].add(s)
            for g in it.groups:
                by_patient[g].add(s)
        assert all(len(v) == 1 for v in by_key.values())
        assert all(len(v) == 1 for v in by_patient.values())
        fractions = Counter(splits)
        assert abs(fractions["train"] / len(splits) - 0.7) < 0.12


def test_group_items_joins_transitively() -> None:
    items = [
        SplitItem("k1", "a", ("p1",)),
        SplitItem("k2", "a", ("p2",)),
        SplitItem("k1", "a", ("p2",)),
        SplitItem("k3", "a"),
    ]
    groups = sorted(sorted(g) for g in group_items(items))
    assert groups == [[0, 1, 2], [3]]


def test_fraction_checks() -> None:
    assert check_fractions(FRACTIONS) == []
    assert check_fractions({"train": 0.8, "val": 0.2, "test": 0.0}) == []
    assert any("must be 1" in p for p in check_fractions({"train": 0.7, "val": 0.2, "test": 0.2}))
    assert any("val_fraction" in p for p in check_fractions({"train": 1.0, "val": 0.0, "test": 0.0}))
    with pytest.raises(ValueError):
        grouped_stratified_split(_items({"a": 3}), {"train": 0.5, "val": 0.1, "test": 0.1}, seed=0)


def test_zero_test_fraction_gives_two_splits() -> None:
    items = _items({"a": 20, "b": 10})
    splits = grouped_stratified_split(items, {"train": 0.8, "val": 0.2, "test": 0.0}, seed=0)
    assert set(splits) == {"train", "val"}
