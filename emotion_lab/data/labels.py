"""Labels to class ids: one ``ClassLabel`` for every split, with the class names.

- A ``ClassLabel`` is used as it is: its names are the classes.
- Strings: the classes are the sorted set of the training labels (``class_encode_column``), or
  ``data.label_names`` in that order; every split is cast to the same ``ClassLabel``.
- Integers are class ids: ``data.label_names[i]`` names id i, else the names are "0".."k-1"
  with k = the largest training id + 1.

Missing labels, a single class, and an evaluation label that training never had are refused
in one line that names the label and how many rows have it.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from emotion_lab.config import DataConfig
from emotion_lab.errors import DataError

log = logging.getLogger(__name__)

_STRING_TYPES = ("string", "large_string")
_INT_TYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")


def column(ds: datasets.Dataset, name: str) -> pa.ChunkedArray:
    """One column as Arrow, without going through Python objects."""
    return ds.with_format("arrow", columns=[name])[:][name]


def label_ids(ds: datasets.Dataset, label_column: str) -> np.ndarray:
    """The class ids of a ClassLabel column as a numpy array."""
    return column(ds, label_column).to_numpy()


def _value_counts(values: pa.ChunkedArray) -> dict:
    counts = pc.value_counts(values)
    return dict(
        zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
    )


def _check_present(values: pa.ChunkedArray, where: str, label_column: str) -> None:
    missing = values.null_count
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        missing += pc.sum(pc.equal(pc.utf8_trim_whitespace(values), "")).as_py() or 0
    if missing:
        raise DataError(
            f"{where}: {missing} rows have no label in column {label_column!r}; fill or drop them."
        )


def _check_known(
    values: pa.ChunkedArray, known: list, where: str, label_column: str, why: str
) -> None:
    """Every label of the split is one of ``known``; else name the first other one."""
    unknown = pc.invert(pc.is_in(values, value_set=pa.array(known, type=values.type)))
    if pc.any(unknown).as_py():
        counts = _value_counts(pc.filter(values, unknown))
        label, n = max(counts.items(), key=lambda item: item[1])
        others = f" (and {len(counts) - 1} more)" if len(counts) > 1 else ""
        raise DataError(
            f"{where}: label {label!r} in column {label_column!r} ({n} rows){others} {why}."
        )


def _names_of_ints(values: pa.ChunkedArray, cfg: DataConfig, where: str) -> list[str]:
    if cfg.label_names is not None:
        return list(cfg.label_names)
    low, high = pc.min_max(values).values()
    if low.as_py() < 0:
        raise DataError(
            f"{where}: integer labels are class ids 0..k-1, but column {cfg.label_column!r} "
            f"has {low.as_py()}; write the labels as names, or as ids from 0."
        )
    return [str(i) for i in range(high.as_py() + 1)]


def _is_string(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in _STRING_TYPES


def _is_int(feature: object) -> bool:
    return isinstance(feature, datasets.Value) and feature.dtype in _INT_TYPES


def encode_labels(
    splits: dict[str, datasets.Dataset], origins: dict[str, str], cfg: DataConfig, train: str
) -> tuple[dict[str, datasets.Dataset], list[str]]:
    """Every split with ``data.label_column`` as one ClassLabel, and the class names.

    ``train`` names the split the classes come from; ``origins`` says where each split was read.
    """
    col = cfg.label_column
    feature = splits[train].features[col]
    where = origins[train]
    encoded = dict(splits)
    if isinstance(feature, datasets.ClassLabel):
        names = list(feature.names)
        if cfg.label_names is not None and list(cfg.label_names) != names:
            raise DataError(
                f"{where}: column {col!r} already names its classes {names}; "
                "leave data.label_names unset."
            )
    elif _is_string(feature) and cfg.label_names is None:
        _check_present(column(splits[train], col), where, col)
        # class_encode_column stringifies any other type row by row: large_string is cast first.
        as_string = splits[train].cast_column(col, datasets.Value("string"))
        encoded[train] = as_string.class_encode_column(col)
        names = list(encoded[train].features[col].names)
    elif _is_string(feature):
        names = list(cfg.label_names)  # type: ignore[arg-type]
    elif _is_int(feature):
        values = column(splits[train], col)
        _check_present(values, where, col)
        names = _names_of_ints(values, cfg, where)
    else:
        _check_present(column(splits[train], col), where, col)
        raise DataError(
            f"{where}: column {col!r} is {feature}; labels must be strings, integer class ids "
            "or a ClassLabel."
        )
    target = datasets.ClassLabel(names=names)
    encoded = {name: _cast(ds, target, origins[name], cfg) for name, ds in encoded.items()}
    _check_classes(encoded, origins, names, col, train)
    return encoded, names


def _cast(
    ds: datasets.Dataset, target: datasets.ClassLabel, where: str, cfg: DataConfig
) -> datasets.Dataset:
    """The split's labels as ``target``'s ids, refusing a label it does not know."""
    col = cfg.label_column
    feature = ds.features[col]
    values = column(ds, col)
    if isinstance(feature, datasets.ClassLabel):
        if feature.names != target.names:
            raise DataError(
                f"{where}: column {col!r} has the classes {feature.names}, the training split "
                f"{target.names}."
            )
        # -1 often marks an unlabeled row (GLUE test sets).
        why = f"is outside the class ids 0..{target.num_classes - 1}"
        _check_known(values, list(range(target.num_classes)), where, col, why)
        return ds
    _check_present(values, where, col)
    if _is_string(feature):
        why = (
            "is not in data.label_names"
            if cfg.label_names is not None
            else "never occurs in the training data"
        )
        _check_known(values, target.names, where, col, why)
    elif _is_int(feature):
        why = f"is not a class id 0..{target.num_classes - 1}" + (
            " of data.label_names" if cfg.label_names is not None else ""
        )
        _check_known(values, list(range(target.num_classes)), where, col, why)
    else:
        raise DataError(f"{where}: column {col!r} is {feature}, the training split's are labels.")
    return ds.cast_column(col, target)


def _check_classes(
    splits: dict[str, datasets.Dataset],
    origins: dict[str, str],
    names: list[str],
    col: str,
    train: str,
) -> None:
    """At least two training classes, and no evaluation label that training never had."""
    counts = {
        split: np.bincount(label_ids(ds, col), minlength=len(names)) for split, ds in splits.items()
    }
    seen = counts[train] > 0
    if seen.sum() < 2:
        only = [names[i] for i in np.flatnonzero(seen)]
        raise DataError(
            f"{origins[train]}: column {col!r} holds a single class {only}; a classifier needs "
            "at least two."
        )
    for split, n in counts.items():
        unseen = np.flatnonzero((n > 0) & ~seen)
        if len(unseen):
            i = unseen[0]
            raise DataError(
                f"{origins[split]}: label {names[i]!r} in column {col!r} ({n[i]} rows) never "
                "occurs in the training data."
            )
    if not seen.all():
        missing = [names[i] for i in np.flatnonzero(~seen)]
        log.warning(
            "Classes with no training rows (the model keeps an output for each): %s", missing
        )
