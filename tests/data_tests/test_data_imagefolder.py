"""Image folders: layouts, class maps, merged sources, leak-free splits, the cache, and every bad input."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from imagefolder_helpers import duplicate, make_folder, make_image, truncate

from hemotune.data.imagefolder import load_prepared, read_split_table
from hemotune.errors import DataError, UsageError
from hemotune.trainers.image_classification import ImageClassificationTrainer

TRAINER = ImageClassificationTrainer()


def prepare(tmp_path: Path, root: Path, params: dict | None = None, **options):
    dataset = {"path": str(root), "cache_imgsz": 32, **options}
    return TRAINER.prepare_data(dataset, params or {}, tmp_path / "cache")


def rows_of(prepared) -> list[dict[str, str]]:
    return read_split_table(prepared.path)


def issues(prepared) -> list[dict]:
    return json.loads(Path(prepared.report_path).read_text())["issues"]


# ----------------------------------------------------------------------------- layouts and splits


def test_all_layout_split_is_stratified_recorded_and_cached(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 40, "b": 20, "c": 10})
    prepared = prepare(tmp_path, root)
    assert prepared.summary["classes"] == ["a", "b", "c"]
    counts = prepared.summary["counts"]
    assert counts["train"] == {"a": 28, "b": 14, "c": 7}
    assert counts["val"]["a"] == 6 and counts["test"]["a"] == 6
    rows = rows_of(prepared)
    assert len(rows) == 70 and {"index", "path", "md5", "class", "split"} <= set(rows[0])
    _, splits = load_prepared(prepared.path)
    assert splits["train"].images.shape == (49, 32, 32, 3) and splits["train"].masks.shape == (49, 32, 32)
    assert (prepared.path / "segmentation_example.png").is_file()
    report = json.loads(Path(prepared.report_path).read_text())
    assert report["counts"]["splits"] == counts
    # Same input -> same fingerprint and the same cache entry, without rebuilding.
    stamp = (prepared.path / "images.npy").stat().st_mtime_ns
    again = prepare(tmp_path, root)
    assert again.fingerprint == prepared.fingerprint and again.path == prepared.path
    assert (again.path / "images.npy").stat().st_mtime_ns == stamp


def test_same_seed_same_split_other_seed_different(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 30, "b": 30})
    one = {r["md5"]: r["split"] for r in rows_of(prepare(tmp_path, root, split_seed=1))}
    same = {r["md5"]: r["split"] for r in rows_of(prepare(tmp_path, root, split_seed=1))}
    other = {r["md5"]: r["split"] for r in rows_of(prepare(tmp_path, root, split_seed=2))}
    assert one == same
    assert one != other


def test_split_does_not_depend_on_file_names_or_location(tmp_path: Path) -> None:
    first = tmp_path / "one"
    files = make_folder(first, {"a": 20, "b": 12})
    second = tmp_path / "two"
    for name, paths in files.items():
        for i, p in enumerate(reversed(paths)):
            duplicate(p, second / "all" / name / f"renamed_{i}.png")
    a = {r["md5"]: r["split"] for r in rows_of(prepare(tmp_path, first))}
    b = {r["md5"]: r["split"] for r in rows_of(prepare(tmp_path, second))}
    assert a == b


def test_duplicates_never_straddle_splits(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = make_folder(root, {"a": 30, "b": 30})
    for i in range(0, 30, 3):  # 10 duplicate pairs, and one triple
        duplicate(files["a"][i], root / "all" / "a" / f"copy_{i}.png")
    duplicate(files["b"][0], root / "all" / "b" / "copy_b1.png")
    duplicate(files["b"][0], root / "all" / "b" / "copy_b2.png")
    for seed in range(4):
        prepared = prepare(tmp_path, root, split_seed=seed)
        by_md5: dict[str, set[str]] = defaultdict(set)
        for r in rows_of(prepared):
            by_md5[r["md5"]].add(r["split"])
        assert all(len(s) == 1 for s in by_md5.values())
        report = json.loads(Path(prepared.report_path).read_text())
        assert report["counts"]["duplicate_groups"] == 11


def test_patient_metadata_gives_a_patient_level_split(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = make_folder(root, {"a": 36, "b": 24})
    meta = tmp_path / "patients.csv"
    with meta.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "pid"])
        for name, paths in files.items():
            for i, p in enumerate(paths):
                writer.writerow([p.relative_to(root).as_posix(), f"{name}-{i // 4}"])  # 4 images per patient
    prepared = prepare(
        tmp_path, root, metadata_csv=str(meta), metadata_path_column="file", metadata_group_column="pid"
    )
    by_patient: dict[str, set[str]] = defaultdict(set)
    for r in rows_of(prepared):
        assert r["group"]
        by_patient[r["group"]].add(r["split"])
    assert len(by_patient) == 15
    assert all(len(s) == 1 for s in by_patient.values())
    counts = prepared.summary["counts"]
    assert abs(counts["train"]["a"] / 36 - 0.7) < 0.15


def test_missing_patient_id_is_fatal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    files = make_folder(root, {"a": 4, "b": 4})
    meta = tmp_path / "patients.csv"
    meta.write_text("path,patient_id\n" + f"{files['a'][0].relative_to(root).as_posix()},p1\n")
    with pytest.raises(DataError, match=r"patients\.csv.*no 'patient_id' for 7 images"):
        prepare(tmp_path, root, metadata_csv=str(meta))
    with pytest.raises(DataError, match="no column 'subject'"):
        prepare(tmp_path, root, metadata_csv=str(meta), metadata_group_column="subject")


def test_given_split_folders_are_used_and_cross_split_duplicates_dropped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    train = make_folder(root, {"a": 6, "b": 6}, split="train")
    make_folder(root, {"a": 3, "b": 2}, split="valid", seed=1)
    leaked = duplicate(train["a"][0], root / "valid" / "a" / "leak.png")
    prepared = prepare(tmp_path, root)
    assert prepared.summary["counts"] == {"train": {"a": 6, "b": 6}, "val": {"a": 3, "b": 2}}
    dropped = [i for i in issues(prepared) if i["path"] == str(leaked)]
    assert dropped and dropped[0]["action"] == "dropped" and "duplicate" in dropped[0]["problem"]


def test_class_map_and_merged_sources(tmp_path: Path) -> None:
    main = tmp_path / "data" / "leuk"
    make_folder(main, {"Benign": 6, "Early": 4, "Pre": 4, "Pro": 4})
    other = tmp_path / "data" / "second"
    make_folder(other, {"normal": 5, "cancer": 5}, split="", seed=7)
    prepared = prepare(
        tmp_path,
        main,
        class_map={"Benign": "Normal", "Early": "Cancer", "Pre": "Cancer", "Pro": "Cancer"},
        sources=[{"path": "second", "class_map": {"normal": "Normal", "cancer": "Cancer"}}],
    )
    assert prepared.summary["classes"] == ["Cancer", "Normal"]
    total = {c: sum(s.get(c, 0) for s in prepared.summary["counts"].values()) for c in ("Cancer", "Normal")}
    assert total == {"Cancer": 17, "Normal": 11}
    rows = rows_of(prepared)
    assert {r["source"] for r in rows} == {"0", "1"}
    assert {r["source_class"] for r in rows if r["class"] == "Cancer"} == {"Early", "Pre", "Pro", "cancer"}
    # A class map given as text works the same.
    text = prepare(tmp_path, main, class_map="Benign:Normal,Early:Cancer,Pre:Cancer,Pro:Cancer")
    assert text.summary["classes"] == ["Cancer", "Normal"]


def test_max_images_per_class_is_a_seeded_subset(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 30, "b": 8})
    prepared = prepare(tmp_path, root, max_images_per_class=10)
    total = {c: sum(s.get(c, 0) for s in prepared.summary["counts"].values()) for c in ("a", "b")}
    assert total == {"a": 10, "b": 8}
    assert prepare(tmp_path, root, max_images_per_class=10).fingerprint == prepared.fingerprint


# ----------------------------------------------------------------------------- bad input


def test_corrupt_truncated_and_non_image_files_are_dropped_and_reported(tmp_path: Path) -> None:
    # Ultralytics replaces PIL.Image.open with a wrapper that tries to install pi-heif on an
    # unidentifiable file: preparing must not go through it.
    from hemotune.offline import configure_ultralytics

    configure_ultralytics()
    import ultralytics.utils.patches  # noqa: F401

    root = tmp_path / "ds"
    files = make_folder(root, {"a": 8, "b": 8})
    jpeg = make_image(root / "all" / "a" / "cut.jpg", 0, seed=99, size=64)
    truncate(jpeg, 0.6)
    corrupt = root / "all" / "b" / "garbage.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    notes = root / "all" / "b" / "notes.txt"
    notes.write_text("scanner settings")
    prepared = prepare(tmp_path, root)
    found = {i["path"]: i for i in issues(prepared)}
    assert "truncated" in found[str(jpeg)]["problem"] and found[str(jpeg)]["action"] == "dropped"
    assert found[str(corrupt)]["action"] == "dropped"
    assert "not an image" in found[str(notes)]["problem"]
    assert len(rows_of(prepared)) == 16
    assert files  # the good images are all kept
    with pytest.raises(DataError, match=r"cut\.jpg: corrupt or truncated image"):
        prepare(tmp_path, root, bad_images="error")


def test_empty_class_folder_is_fatal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 4, "b": 4})
    (root / "all" / "c").mkdir()
    with pytest.raises(DataError, match=r"empty class folder .*all/c"):
        prepare(tmp_path, root)


def test_class_without_readable_images_is_fatal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 4})
    (root / "all" / "b").mkdir()
    (root / "all" / "b" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"class 'b' has no readable image: .*all/b"):
        prepare(tmp_path, root)


def test_class_in_val_but_not_in_train_is_fatal(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"a": 4, "b": 4}, split="train")
    make_folder(root, {"a": 2, "b": 2, "c": 2}, split="val")
    with pytest.raises(DataError, match=r"class 'c' is in the val split but not in train: .*val/c"):
        prepare(tmp_path, root)


def test_unmapped_class_is_fatal_unless_dropped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_folder(root, {"Benign": 4, "Early": 4, "Pro": 4})
    partial = {"Benign": "Normal", "Early": "Cancer"}
    with pytest.raises(DataError, match=r"class_map leaves class 'Pro' unmapped \(folder .*all/Pro\)"):
        prepare(tmp_path, root, class_map=partial)
    prepared = prepare(tmp_path, root, class_map=partial, drop_unmapped=True)
    assert prepared.summary["classes"] == ["Cancer", "Normal"]
    assert sum(1 for i in issues(prepared) if "not in class_map" in i["problem"]) == 4
    with pytest.raises(DataError, match="class_map names classes not found there: Bening"):
        prepare(tmp_path, root, class_map={"Bening": "Normal", "Benign": "Normal", "Early": "C", "Pro": "C"})


def test_missing_folder_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset path does not exist: .*nowhere"):
        prepare(tmp_path, tmp_path / "nowhere")
    root = tmp_path / "ds"
    make_folder(root, {"a": 4, "b": 4})
    with pytest.raises(DataError, match="must be 1"):
        prepare(tmp_path, root, train_fraction=0.9)
    with pytest.raises(UsageError, match="imgsz 64 is larger than the dataset's cache_imgsz 32"):
        prepare(tmp_path, root, params={"imgsz": 64})
    with pytest.raises(DataError, match="positive_class 'x' is not a class"):
        prepare(tmp_path, root, params={"positive_class": "x"})
    with pytest.raises(UsageError, match=r"pretrained weights file not found.*never downloads"):
        prepare(tmp_path, root, params={"pretrained": "resnet18.a1_in1k"})


# ----------------------------------------------------------------------------- real data


def test_pbc8_prepares_with_a_stratified_recorded_split(pbc8_dir: Path, cache_dir: Path) -> None:
    dataset = {
        "path": str(pbc8_dir),
        "format": "imagefolder",
        "layout": "all",
        "cache_imgsz": 32,
        "train_fraction": 0.7,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "split_seed": 0,
    }
    prepared = TRAINER.prepare_data(dataset, {"imgsz": 32}, cache_dir)
    counts = prepared.summary["counts"]
    manifest = list(csv.DictReader((pbc8_dir / "manifest.csv").open()))
    per_class = defaultdict(int)
    for row in manifest:
        per_class[row["class"]] += 1
    assert prepared.summary["classes"] == sorted(per_class)
    for cls, n in per_class.items():
        assert sum(counts[s][cls] for s in ("train", "val", "test")) == n
        assert abs(counts["train"][cls] - 0.7 * n) <= 1
        assert abs(counts["val"][cls] - 0.15 * n) <= 1
    rows = rows_of(prepared)
    md5 = {r["path"]: r["md5"] for r in rows}
    assert all(md5[m["path"]] == m["md5"] for m in manifest)
    # Nothing dropped; a few platelet images have no stained cell the segmentation finds (kept whole).
    assert all(i["action"] == "kept" and "segmentation" in i["problem"] for i in issues(prepared))
    assert len(issues(prepared)) < 20


def test_all_leukemia_binary_with_duplicates_in_one_split(leukemia_dir: Path, cache_dir: Path) -> None:
    dataset = {
        "path": str(leukemia_dir),
        "layout": "all",
        "cache_imgsz": 32,
        "class_map": {"Benign": "Normal", "Early": "Cancer", "Pre": "Cancer", "Pro": "Cancer"},
    }
    prepared = TRAINER.prepare_data(dataset, {"positive_class": "Cancer"}, cache_dir)
    assert prepared.summary["classes"] == ["Cancer", "Normal"]
    counts = prepared.summary["counts"]
    assert sum(counts[s]["Normal"] for s in counts) == 387
    assert sum(counts[s]["Cancer"] for s in counts) == 756 + 739 + 617
    manifest = list(csv.DictReader((leukemia_dir / "manifest.csv").open()))
    dup_md5 = {m for m, n in _count(r["md5"] for r in manifest).items() if n > 1}
    assert dup_md5, "the shared copy of all_leukemia is expected to hold duplicates"
    by_md5: dict[str, set[str]] = defaultdict(set)
    for r in rows_of(prepared):
        by_md5[r["md5"]].add(r["split"])
    assert all(len(by_md5[m]) == 1 for m in dup_md5)
    report = json.loads(Path(prepared.report_path).read_text())
    assert report["counts"]["duplicate_groups"] == len(dup_md5)
    _, splits = load_prepared(prepared.path)
    assert np.asarray(splits["val"].images).dtype == np.uint8


def _count(values) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for v in values:
        out[v] += 1
    return out
