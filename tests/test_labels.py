"""Attribute labels of datasets (labels.csv, CelebA attributes, synthetic faces) and labelled batches."""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from twingan.data.datasets import BadImageWarning, CelebADataset, FolderDataset, GetchuDataset
from twingan.data.labels import LABELS_FILE, label_matrix, labels_source, read_labels_csv
from twingan.data.synthetic import (
    SYNTHETIC_ATTRIBUTES,
    attribute_values,
    generate_dataset,
    params_for_index,
)
from twingan.errors import DatasetError
from twingan.models.attributes import AttributeSchema
from twingan.training.data_stream import EpochPermutations, StepBatch, StepBatches, batch_iterator

SCHEMA = AttributeSchema({"hair": ["black", "blonde", "blue"], "eyes": ["blue", "green"]})


def write_flat(path: Path, value: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


@pytest.fixture
def labelled_folder(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    for i, name in enumerate(["a.png", "b.png", "sub/c.png", "d.png"]):
        write_flat(root / name, 10 * i)
    (root / LABELS_FILE).write_text(
        "\ufefffile, hair ,eyes,pose\n"       # a BOM, spaces around a name and a column that is no group
        "a.png,blonde,green,front\n"
        "\n"                                  # blank lines are skipped
        "./sub/c.png,blue,,side\n"            # empty cell: unknown; './' is dropped
        "b.png,,blue,\n"
        "gone.png,black,blue,front\n",        # a file that is not in the dataset: ignored
        encoding="utf-8",
    )
    return root


def test_labels_csv_gives_one_row_per_image_and_unknown_for_the_rest(
    labelled_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dataset = FolderDataset(labelled_folder)
    assert [p.relative_to(labelled_folder).as_posix() for p in dataset.paths] == ["a.png", "b.png", "d.png", "sub/c.png"]
    with caplog.at_level(logging.WARNING, logger="twingan.data.labels"):
        labels = label_matrix(dataset, SCHEMA)
    assert labels.dtype == np.int64 and labels.shape == (4, 2)
    assert labels.tolist() == [[1, 1], [-1, 0], [-1, -1], [2, -1]]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 4 images have no row" in warnings[0] and "d.png" in warnings[0]
    assert labels_source(dataset) == str(labelled_folder / LABELS_FILE)
    # A schema given as a plain mapping works too; a group without a column is unknown for every image.
    wider = label_matrix(dataset, {"hair": ["black", "blonde", "blue"], "mouth": ["smile", "open"]})
    assert wider[:, 0].tolist() == [1, -1, -1, 2] and (wider[:, 1] == -1).all()
    # The getchu kind reads the same file.
    assert label_matrix(GetchuDataset(labelled_folder), SCHEMA).tolist() == labels.tolist()


def test_no_labels_file_means_all_unknown(tmp_path: Path) -> None:
    write_flat(tmp_path / "x.png", 0)
    dataset = FolderDataset(tmp_path)
    assert label_matrix(dataset, SCHEMA).tolist() == [[-1, -1]]
    assert labels_source(dataset) is None
    assert label_matrix(dataset, {}).shape == (1, 0)


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("", None, "empty labels file"),
        ("name,hair\na.png,black\n", 1, "no 'file' column"),
        ("file,hair,hair\na.png,black,black\n", 1, "'hair' appears twice"),
        ("file,colour,pose\na.png,black,front\n", 1, "none of the attribute groups hair, eyes"),
        ("file,hair\na.png,black\nb.png,blonde\na.png,blue\n", 4, "listed again (first on line 2)"),
        ("file,hair,eyes\na.png,black,blue\n\nb.png,red,blue\n", 4, "hair='red'"),
        ("file,hair\na.png,black,blue\n", 2, "3 cells but the header has 2 columns"),
        ("file,hair\n,black\n", 2, "'file' cell is empty"),
        ("file,hair\n/data/a.png,black\n", 2, "is absolute"),
        ('file,hair\na.png,black\n"b.png,black\n', 3, "not a valid CSV file"),
    ],
    ids=["empty", "no-file-column", "repeated-column", "no-group", "duplicate-file", "bad-value", "extra-cell",
         "empty-file", "absolute", "unclosed-quote"],
)
def test_bad_labels_files_are_errors_naming_file_and_line(tmp_path: Path, text: str, line: int | None, words: str) -> None:
    path = tmp_path / LABELS_FILE
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        read_labels_csv(path, SCHEMA)
    message = str(info.value)
    assert str(path) in message and words in message
    if line is not None:
        assert f"line {line}:" in message


def test_a_bad_value_lists_the_allowed_values(tmp_path: Path) -> None:
    write_flat(tmp_path / "a.png", 0)
    (tmp_path / LABELS_FILE).write_text("file,eyes\na.png,Green\n")
    with pytest.raises(DatasetError, match=r"labels.csv, line 2: eyes='Green' .*allowed: blue, green"):
        label_matrix(FolderDataset(tmp_path), SCHEMA)


def make_celeba(root: Path) -> None:
    """Five images; hair columns: one true, none, two true, one true, one true (another column)."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(5)]
    for i, name in enumerate(names):
        Image.fromarray(np.full((12, 10, 3), 40 * i, np.uint8)).save(images / name)
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in names))
    columns = ["Black_Hair", "Blond_Hair", "Brown_Hair", "Smiling"]
    rows = [[1, -1, -1, 1], [-1, -1, -1, -1], [1, 1, -1, 1], [-1, -1, 1, -1], [-1, 1, -1, -1]]
    (root / "list_attr_celeba.txt").write_text(
        "5\n" + " ".join(columns) + "\n" + "".join(f"{n} " + " ".join(f"{v:2d}" for v in r) + "\n" for n, r in zip(names, rows))
    )


def test_celeba_labels_come_from_the_single_true_column(tmp_path: Path) -> None:
    make_celeba(tmp_path)
    dataset = CelebADataset(tmp_path, "train")
    schema = AttributeSchema({"hair": ["Black_Hair", "Blond_Hair", "Brown_Hair"], "smile": ["Smiling"]})
    labels = label_matrix(dataset, schema)
    # one true -> its index; none true -> -1; several true -> -1
    assert labels[:, 0].tolist() == [0, -1, -1, 2, 1]
    assert labels[:, 1].tolist() == [0, -1, 0, -1, -1]
    assert "list_attr_celeba.txt" in labels_source(dataset)
    with pytest.raises(DatasetError, match=r"Red_Hair is not column\(s\) of .*list_attr_celeba.txt.*available: Black_Hair, "):
        label_matrix(dataset, {"hair": ["Black_Hair", "Red_Hair"]})
    (tmp_path / "list_attr_celeba.txt").unlink()
    bare = CelebADataset(tmp_path, "train")
    assert (label_matrix(bare, schema) == -1).all() and labels_source(bare) is None


@pytest.fixture
def colour_coded_folder(tmp_path: Path) -> Path:
    """Eight images whose grey level encodes their label (id i -> level 20 i), two of them unreadable."""
    root = tmp_path / "coded"
    rows = []
    for i in range(8):
        name = f"{i:02d}.png"
        write_flat(root / name, 20 * i)
        rows.append(f"{name},v{i}\n")
    (root / "02.png").write_bytes(b"not a picture")
    (root / "05.png").write_bytes((root / "05.png").read_bytes()[:30])  # truncated
    (root / LABELS_FILE).write_text("file,id\n" + "".join(rows))
    return root


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.filterwarnings("ignore::twingan.data.datasets.BadImageWarning")
def test_labels_follow_the_image_that_replaced_a_bad_file(colour_coded_folder: Path, workers: int) -> None:
    schema = AttributeSchema({"id": [f"v{i}" for i in range(8)]})
    dataset = FolderDataset(colour_coded_folder, resolution=4)
    labels = label_matrix(dataset, schema)
    assert labels[:, 0].tolist() == list(range(8))
    orders = [EpochPermutations(len(dataset), seed=3, domain=0)]
    stream = batch_iterator([dataset], orders, start=0, batch_size=4, resolution=4, num_workers=workers,
                            labels=[labels])
    substituted = 0
    for step in range(6):  # three epochs
        item = next(stream)
        assert isinstance(item, StepBatch)
        images, batch_labels = item
        assert images[0].shape == (4, 3, 4, 4) and images[0].dtype == torch.uint8
        assert batch_labels[0].dtype == torch.int64 and batch_labels[0].shape == (4, 1)
        decoded = images[0][:, 0, 0, 0].long() // 20  # the reference: the id painted into the pixels
        assert batch_labels[0][:, 0].tolist() == decoded.tolist()
        assert not {2, 5} & set(decoded.tolist())
        requested = [orders[0].index(step * 4 + j) for j in range(4)]
        substituted += sum(r in (2, 5) for r in requested)
    assert substituted > 0  # the bad files were asked for; their replacements' labels came along
    assert set(dataset.bad_files) == {str(colour_coded_folder / "02.png"), str(colour_coded_folder / "05.png")}


def test_load_with_index_reports_the_substitute(colour_coded_folder: Path) -> None:
    dataset = FolderDataset(colour_coded_folder, resolution=4)
    with pytest.warns(BadImageWarning):
        image, index = dataset.load_with_index(2)
    assert index == 3 and int(image[0, 0, 0]) == 60
    with pytest.warns(BadImageWarning):
        assert dataset.load_with_index(5)[1] == 6
    assert dataset.load_with_index(7)[1] == 7
    assert torch.equal(dataset[2], image)


def test_batches_without_labels_are_unchanged_and_a_domain_may_lack_labels(colour_coded_folder: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    for i in range(5):
        write_flat(other / f"{i}.png", 100 + i)
    datasets = [FolderDataset(colour_coded_folder), FolderDataset(other)]
    orders = [EpochPermutations(len(ds), seed=1, domain=d) for d, ds in enumerate(datasets)]
    labels = [label_matrix(datasets[0], {"id": [f"v{i}" for i in range(8)]}), None]
    with pytest.warns(BadImageWarning):
        plain = [next(it) for it in [batch_iterator(datasets, orders, 8, 3, 4, 0)] for _ in range(3)]
        with_labels = [next(it) for it in [batch_iterator(datasets, orders, 8, 3, 4, 0, labels=labels)] for _ in range(3)]
    for a, b in zip(plain, with_labels):
        assert isinstance(a, StepBatch) and len(a.images) == 2 and a.labels == [None, None]
        assert all(t.dtype == torch.uint8 and t.shape == (3, 3, 4, 4) for t in a.images)
        assert all(torch.equal(x, y) for x, y in zip(a.images, b.images))
        assert b.labels[1] is None and b.labels[0].shape == (3, 1)
    with pytest.raises(ValueError, match="2 label matrices for 1 domains"):
        StepBatches(datasets[:1], orders[:1], 0, 2, labels=labels)
    with pytest.raises(ValueError, match=r"shape \(8, groups\)"):
        StepBatches(datasets, orders, 0, 2, labels=[np.zeros((7, 1), np.int64), None])


def test_synthetic_labels_csv_holds_the_face_parameters(synthetic_root: Path) -> None:
    for stream, style in (("train_photo", "photo"), ("train_anime", "anime")):
        path = synthetic_root / "train" / style / LABELS_FILE
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        assert list(rows[0]) == ["file", "hair", "eyes", "mouth", "glasses"]
        assert len(rows) == 24
        for i, row in enumerate(rows):
            params = params_for_index(0, stream, i)
            assert row == {"file": f"{i:05d}.png", "hair": params.hair_colour, "eyes": params.eye_colour,
                           "mouth": params.mouth, "glasses": "yes" if params.glasses else "no"}
        dataset = FolderDataset(synthetic_root / "train" / style)
        assert len(dataset) == 24  # the CSV is not taken for an image
        labels = label_matrix(dataset, SYNTHETIC_ATTRIBUTES)
        assert (labels[:, 0] >= 0).all() and (labels >= 0).all()
        expected = [[SYNTHETIC_ATTRIBUTES[g].index(v) for g, v in attribute_values(params_for_index(0, stream, i)).items()]
                    for i in range(24)]
        assert labels.tolist() == expected


def test_a_complete_synthetic_folder_gains_missing_labels_without_redrawing(tmp_path: Path) -> None:
    generate_dataset(tmp_path, n_train=3, n_test=1, size=16, seed=2, progress=False)
    path = tmp_path / "train" / "anime" / LABELS_FILE
    text = path.read_text()
    images = sorted(tmp_path.rglob("*.png"))
    stamps = [p.stat().st_mtime_ns for p in images]
    path.unlink()
    summary = generate_dataset(tmp_path, n_train=3, n_test=1, size=16, seed=2, progress=False)
    assert summary.already_complete and summary.rendered == 0
    assert path.read_text() == text
    assert [p.stat().st_mtime_ns for p in images] == stamps
