"""Attribute labels of a domain dataset, one row per image, for attribute-conditioned training.

A label matrix is int64 (N, G): for each of the dataset's N images (in the
order of ``dataset.paths``) one value index per group of an
:class:`~twingan.models.attributes.AttributeSchema`, -1 where unknown.
:func:`label_matrix` finds the labels by dataset kind:

* ``folder``, ``getchu`` (and ``cat``): a CSV file ``labels.csv`` beside the
  images, in the dataset root::

      file,hair,eyes
      00000.png,black,blue
      sub/00001.png,blonde,

  ``file`` is the image path relative to the root (POSIX slashes); every other
  column is an attribute group, its cells value names of the schema. An empty
  cell is unknown. Columns that are not groups of the schema are ignored; a
  group of the schema without a column is unknown for every image, but a CSV
  with none of the schema's groups is an error. Images without a row are
  unknown in every group (one warning counts them). Rows for files that are not
  in the dataset (another split, deleted files) are ignored.
* ``celeba``: the attribute list ``list_attr_celeba.txt`` already read into
  ``dataset.attributes``. A group's values are CelebA column names, e.g.
  ``hair: [Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair]``; an image's label is
  the index of the single column that is true for it; none or several true is
  unknown.

A dataset without any labels source (no ``labels.csv``; CelebA without its
attribute file) gives an all -1 matrix. Problems in a labels file raise
:class:`~twingan.errors.DatasetError` naming the file, the line and what is
wrong.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence, Union

import numpy as np

from twingan.data.datasets import CelebADataset, ImageDomainDataset, _first_existing
from twingan.errors import DatasetError
from twingan.models.attributes import UNKNOWN, AttributeSchema

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
"""Name of the labels file in the root of a folder-like dataset."""
FILE_COLUMN = "file"

SchemaLike = Union[AttributeSchema, Mapping[str, Sequence[str]]]


def _as_schema(schema: SchemaLike) -> AttributeSchema:
    return schema if isinstance(schema, AttributeSchema) else AttributeSchema(schema)


def _unknown(count: int, schema: AttributeSchema) -> np.ndarray:
    return np.full((count, len(schema)), UNKNOWN, dtype=np.int64)


def _normal_file(name: str) -> str:
    """The POSIX relative path a ``file`` cell names ('./a\\b.png' -> 'a/b.png')."""
    return PurePosixPath(name.strip().replace("\\", "/")).as_posix()


def read_labels_csv(path: Union[str, Path], schema: SchemaLike) -> dict[str, np.ndarray]:
    """Parse a labels CSV: relative POSIX file path -> int64 (G,) label (-1 unknown) in schema order.

    Raises DatasetError naming ``path``, the line and the problem: unreadable
    file, no header or no ``file`` column, a repeated column, none of the
    schema's groups among the columns, a row with more cells than the header,
    an empty or absolute file name, a file listed twice, or a value that is not
    one of its group's values (the message lists the allowed ones).
    """
    path = Path(path)
    schema = _as_schema(schema)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            try:
                rows = _numbered_rows(reader)
            except csv.Error as exc:
                raise DatasetError(f"{path}, line {reader.line_num}: not a valid CSV file ({exc})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read the labels file ({exc})") from exc
    if not rows:
        raise DatasetError(f"{path}: empty labels file; expected a header line '{FILE_COLUMN},<group>,...'")
    header_line, header = rows[0]
    header = [cell.strip() for cell in header]
    seen: dict[str, int] = {}
    for position, name in enumerate(header):
        if name in seen:
            raise DatasetError(f"{path}, line {header_line}: column {name!r} appears twice in the header")
        seen[name] = position
    if FILE_COLUMN not in seen:
        raise DatasetError(
            f"{path}, line {header_line}: the header {','.join(header)!r} has no {FILE_COLUMN!r} column; "
            f"expected '{FILE_COLUMN},{','.join(schema.names)}' (file paths relative to {path.parent})"
        )
    file_column = seen[FILE_COLUMN]
    columns = [seen.get(group) for group in schema.names]  # header position of each group, or None
    if schema and all(c is None for c in columns):
        others = [n for n in header if n != FILE_COLUMN]
        raise DatasetError(
            f"{path}, line {header_line}: none of the attribute groups {', '.join(schema.names)} is a column "
            f"(the columns are {', '.join(others) if others else 'only ' + FILE_COLUMN}); name the columns after "
            "the groups of model.attributes"
        )
    missing = [g for g, c in zip(schema.names, columns) if c is None]
    if missing:
        log.info("%s: no column for attribute group(s) %s; they are unknown for every image", path, ", ".join(missing))
    ignored = [n for n in header if n != FILE_COLUMN and n not in schema.groups]
    if ignored:
        log.info("%s: column(s) %s are not attribute groups of the model; ignored", path, ", ".join(ignored))

    labels: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    for number, row in rows[1:]:
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
            raise DatasetError(
                f"{path}, line {number}: {len(row)} cells but the header has {len(header)} columns"
            )
        cells = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
        name = cells[file_column]
        if not name:
            raise DatasetError(f"{path}, line {number}: the {FILE_COLUMN!r} cell is empty")
        relative = _normal_file(name)
        if relative.startswith("/") or (len(relative) > 1 and relative[1] == ":"):
            raise DatasetError(
                f"{path}, line {number}: file {name!r} is absolute; give paths relative to {path.parent}"
            )
        if relative in first_line:
            raise DatasetError(
                f"{path}, line {number}: file {name!r} is listed again (first on line {first_line[relative]})"
            )
        first_line[relative] = number
        label = np.full(len(schema), UNKNOWN, dtype=np.int64)
        for g, (group, column) in enumerate(zip(schema.names, columns)):
            if column is None or not cells[column]:
                continue
            values = schema.groups[group]
            value = cells[column]
            if value not in values:
                raise DatasetError(
                    f"{path}, line {number}: {group}={value!r} (file {name}) is not a value of group {group!r}; "
                    f"allowed: {', '.join(values)} (or an empty cell for unknown)"
                )
            label[g] = values.index(value)
        labels[relative] = label
    return labels


def _numbered_rows(reader) -> list[tuple[int, list[str]]]:
    """(line number, cells) of every non-blank CSV record; the number is the record's first line."""
    out = []
    line = 1
    for row in reader:
        if any(cell.strip() for cell in row):
            out.append((line, row))
        line = reader.line_num + 1
    return out


def csv_label_matrix(dataset: ImageDomainDataset, schema: SchemaLike, path: Union[str, Path, None] = None) -> np.ndarray:
    """Labels of ``dataset`` from a labels CSV (default ``root/labels.csv``); all -1 without the file."""
    schema = _as_schema(schema)
    path = Path(path) if path is not None else Path(dataset.root) / LABELS_FILE
    out = _unknown(len(dataset), schema)
    if not schema or not path.is_file():
        return out
    table = read_labels_csv(path, schema)
    unlabelled = []
    for index, image in enumerate(dataset.paths):
        try:
            relative = Path(image).relative_to(dataset.root).as_posix()
        except ValueError:
            relative = Path(image).as_posix()
        label = table.get(relative)
        if label is None:
            unlabelled.append(relative)
        else:
            out[index] = label
    if unlabelled:
        log.warning(
            "%s: %d of %d images have no row and are unknown in every attribute group (e.g. %s)",
            path, len(unlabelled), len(dataset), unlabelled[0],
        )
    return out


def celeba_label_matrix(attributes: Mapping[str, np.ndarray] | None, schema: SchemaLike, count: int,
                        source: str = "the CelebA attribute list") -> np.ndarray:
    """Labels from CelebA's boolean attribute columns: per group, the index of the single true column, else -1.

    ``attributes`` maps column names to bool arrays of length ``count``; None
    (no attribute file) gives all -1. A group value that is not a column raises
    DatasetError listing the available columns.
    """
    schema = _as_schema(schema)
    out = _unknown(count, schema)
    if attributes is None or not schema:
        return out
    for g, (group, values) in enumerate(schema.groups.items()):
        absent = [v for v in values if v not in attributes]
        if absent:
            raise DatasetError(
                f"attribute group {group!r}: {', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not "
                f"column(s) of {source}; a CelebA group's values are column names, available: "
                f"{', '.join(attributes)}"
            )
        table = np.stack([np.asarray(attributes[v], dtype=bool) for v in values], axis=1)  # (N, K)
        if table.shape[0] != count:
            raise DatasetError(f"{source}: {table.shape[0]} rows for {count} images")
        single = table.sum(axis=1) == 1
        out[single, g] = np.argmax(table[single], axis=1)
    return out


def _celeba_attribute_file(dataset: ImageDomainDataset) -> Path | None:
    return _first_existing(Path(dataset.root), CelebADataset.ATTRIBUTE_FILES)


def labels_source(dataset: ImageDomainDataset) -> str | None:
    """Where :func:`label_matrix` takes ``dataset``'s labels from (a path, for logs), or None when nowhere."""
    if dataset.kind == "celeba":
        if getattr(dataset, "attributes", None) is None:
            return None
        found = _celeba_attribute_file(dataset)
        return f"CelebA attributes ({found if found is not None else Path(dataset.root)})"
    path = Path(dataset.root) / LABELS_FILE
    return str(path) if path.is_file() else None


def label_matrix(dataset: ImageDomainDataset, schema: SchemaLike) -> np.ndarray:
    """int64 (len(dataset), len(schema)) labels of ``dataset``'s images in ``schema``'s order, -1 unknown.

    CelebA reads ``dataset.attributes``; other kinds read ``labels.csv`` in the
    dataset root. Without a labels source every entry is -1. Raises
    DatasetError for a malformed labels file or values the source cannot give.
    """
    schema = _as_schema(schema)
    if dataset.kind == "celeba":
        found = _celeba_attribute_file(dataset)
        source = str(found) if found is not None else "the CelebA attribute list"
        return celeba_label_matrix(getattr(dataset, "attributes", None), schema, len(dataset), source)
    return csv_label_matrix(dataset, schema)

