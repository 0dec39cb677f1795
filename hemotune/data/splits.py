"""Seeded, stratified, group-aware train/val/test splits.

An image never sits in two splits together with anything it must stay with:
exact duplicates (same content hash) and images of the same patient form one
*group*, and whole groups are assigned. Within each class, groups are shuffled
with a seeded ``numpy`` PCG64 generator over a content-defined order (the
smallest content hash of the group), then given greedily to the split furthest
below its target count for that class, biggest groups first. The result
depends only on file contents, labels, group ids, fractions and the seed: not
on file names, listing order or the machine.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitItem:
    """One image to split: a stable key (its content hash), its label, optional group ids."""

    key: str
    label: str
    groups: tuple[str, ...] = ()


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def group_items(items: Sequence[SplitItem]) -> list[list[int]]:
    """Indices of ``items`` joined into groups: same key (duplicates) or any shared group id."""
    uf = _UnionFind(len(items))
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        for token in (f"key:{item.key}", *(f"group:{g}" for g in item.groups)):
            if token in first:
                uf.union(first[token], i)
            else:
                first[token] = i
    members: dict[int, list[int]] = defaultdict(list)
    for i in range(len(items)):
        members[uf.find(i)].append(i)
    return list(members.values())


def check_fractions(fractions: Mapping[str, float]) -> list[str]:
    """Problems with split fractions (each in [0, 1], train and val > 0, sum 1)."""
    problems = []
    for name in SPLITS:
        value = fractions.get(name, 0.0)
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name}_fraction must be in [0, 1], got {value}")
    if fractions.get("train", 0.0) <= 0.0 or fractions.get("val", 0.0) <= 0.0:
        problems.append("train_fraction and val_fraction must both be > 0")
    total = sum(fractions.get(name, 0.0) for name in SPLITS)
    if abs(total - 1.0) > 1e-6:
        problems.append(
            "train_fraction + val_fraction + test_fraction must be 1, got "
            + " + ".join(str(fractions.get(n, 0.0)) for n in SPLITS)
            + f" = {total:g}"
        )
    return problems


def grouped_stratified_split(
    items: Sequence[SplitItem], fractions: Mapping[str, float], seed: int
) -> list[str]:
    """The split name (``train``/``val``/``test``) of every item, in order.

    Items of one group always share a split; a group counts towards the class
    of each of its members. With singleton groups the per-class counts equal
    the rounded targets exactly.
    """
    problems = check_fractions(fractions)
    if problems:
        raise ValueError("; ".join(problems))
    active = [s for s in SPLITS if fractions.get(s, 0.0) > 0.0]
    groups = group_items(items)
    class_totals = Counter(item.label for item in items)
    targets = {c: {s: fractions[s] * n for s in active} for c, n in class_totals.items()}
    counts: dict[str, Counter[str]] = {c: Counter() for c in class_totals}

    def majority(group: list[int]) -> str:
        labels = Counter(items[i].label for i in group)
        return min(labels, key=lambda c: (-labels[c], c))

    by_class: dict[str, list[list[int]]] = defaultdict(list)
    for group in groups:
        by_class[majority(group)].append(group)
    rng = np.random.Generator(np.random.PCG64(seed))
    assignment = [""] * len(items)
    for label in sorted(by_class):
        ordered = sorted(by_class[label], key=lambda g: min(items[i].key for i in g))
        order = rng.permutation(len(ordered))
        shuffled = [ordered[i] for i in order]
        # Biggest groups first (stable sort keeps the seeded order among equal sizes).
        shuffled.sort(key=len, reverse=True)
        for group in shuffled:
            deficits = {s: targets[label][s] - counts[label][s] for s in active}
            split = max(active, key=lambda s: (deficits[s], -active.index(s)))
            for i in group:
                assignment[i] = split
                counts[items[i].label][split] += 1
    return assignment


def split_counts(labels: Sequence[str], splits: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{split: {class: count}}`` for every split present, classes sorted."""
    out: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        chosen = Counter(lab for lab, s in zip(labels, splits, strict=True) if s == split)
        if chosen:
            out[split] = {c: chosen[c] for c in sorted(chosen)}
    return out
