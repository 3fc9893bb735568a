"""The measurement table in memory: input checks, per-object rows, and :func:`regionprops_table`.

:func:`build_table` turns per-object accumulators (:mod:`vemkit.measure._accumulate`) into the
DataFrame both :func:`regionprops_table` and :func:`vemkit.measure.regionprops_blockwise` return,
measuring object shapes (:mod:`vemkit.measure._shape`) where asked. Not for: reading volumes block by
block (:mod:`vemkit.measure._blockwise_table`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._inputs import as_volume_array
from .._progress import progress_bar
from .._voxel import check_voxel_size
from ._accumulate import MAX, MIN, SUM, block_stats, contact_field, distance_field
from ._shape import measure_object

#: Every property group :func:`regionprops_table` can measure (``label`` is always there).
PROPERTIES = ("volume", "surface", "centroid", "axes", "bbox", "intensity")

#: Measured unless told otherwise; ``intensity`` only when an image is given.
DEFAULT_PROPERTIES = PROPERTIES

# --------------------------------------------------------------------------------------------------
# input checks


def shape_of(array):
    """The shape of an array-like as a tuple of ints."""
    return tuple(int(s) for s in getattr(array, "shape", np.shape(array)))


def _source(array, name: str, lazy: bool):
    """(sliceable array, voxel size it carries): Volumes give their dask data, paths are opened."""
    if not lazy and isinstance(array, (str, Path)):
        array = np.asarray(array)  # the in-memory table takes arrays, not paths: reported as not 3D
    array, carried, _ = as_volume_array(array, name)
    if not lazy and not isinstance(array, np.ndarray):
        array = np.asarray(array.compute() if hasattr(array, "compute") else array)
    return array, carried


def _check_labels_dtype(dtype, name="labels"):
    dtype = np.dtype(dtype)
    if dtype != bool and not np.issubdtype(dtype, np.integer):
        raise ValueError(
            f"{name} must be integer instance labels (0 = background), got dtype {dtype}; "
            "threshold or label a probability map first (vemkit.instances)"
        )


def prepare(labels, image, other_labels, voxel_size, properties, lazy):
    """Checked inputs of a table: ``(labels, image, others, voxel size, properties)``; arrays stay lazy
    when ``lazy``, else they are read into numpy."""
    labels, carried = _source(labels, "labels", lazy)
    _check_labels_dtype(labels.dtype)
    if voxel_size is None and carried is None:
        raise ValueError(
            "voxel_size is missing: measurements are in nm and need voxel_size=(z, y, x) in nm "
            "(vemkit never assumes isotropic 1 nm voxels)"
        )
    vs = check_voxel_size(voxel_size if voxel_size is not None else carried)
    shape = shape_of(labels)
    if image is not None:
        image, _ = _source(image, "image", lazy)
        if shape_of(image) != shape:
            raise ValueError(f"image has shape {shape_of(image)}; expected the labels' shape {shape}")
        dt = np.dtype(image.dtype)
        if not (np.issubdtype(dt, np.number) or dt == bool) or np.issubdtype(dt, np.complexfloating):
            raise ValueError(f"image must hold numbers, got dtype {dt}")
    others = {}
    if other_labels is not None:
        items = other_labels.items() if isinstance(other_labels, dict) else [("other", other_labels)]
        for oname, arr in items:
            oname = str(oname)
            if not oname.isidentifier():
                raise ValueError(f"other_labels names must be simple names (letters, digits, _), got {oname!r}")
            arr, _ = _source(arr, f"other_labels[{oname!r}]", lazy)
            if shape_of(arr) != shape:
                raise ValueError(
                    f"other_labels[{oname!r}] has shape {shape_of(arr)}; expected the labels' shape {shape}"
                )
            _check_labels_dtype(arr.dtype, f"other_labels[{oname!r}]")
            others[oname] = arr
    if isinstance(properties, str):
        properties = (properties,)
    properties = tuple(properties)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown:
        raise ValueError(f"properties {unknown} unknown; choose from {', '.join(PROPERTIES)}")
    return labels, image, others, vs, properties



def _object_rows(labels_src, labels, counts, lo, hi, vs, surface, skeleton, n_workers, progress, shapes=None):
    """One dict of shape columns per object: from pass 1 where it had them (``shapes``), otherwise
    from the object's bounding box read from ``labels_src``."""
    from concurrent.futures import ThreadPoolExecutor


    rows = [None] * len(labels)
    todo = []
    for i, label in enumerate(labels):
        entries = (shapes or {}).get(int(label), [])
        if len(entries) == 1 and entries[0][0] == "done" and entries[0][1] == counts[i]:
            rows[i] = entries[0][2]
        else:
            todo.append(i)

    def work(i):
        entries = (shapes or {}).get(int(labels[i]), [])
        if entries and all(e[0] == "piece" for e in entries) and sum(e[1] for e in entries) == counts[i]:
            obj = np.zeros(tuple(int(v) for v in hi[i] - lo[i]), dtype=bool)
            for _, _, corner, piece in entries:
                at = tuple(slice(int(c - l), int(c - l) + s) for c, l, s in zip(corner, lo[i], piece.shape))
                obj[at] |= piece
        else:
            box = tuple(slice(int(a), int(b)) for a, b in zip(lo[i], hi[i]))
            obj = np.asarray(labels_src[box]) == np.asarray(labels[i]).astype(labels_src.dtype)
        return measure_object(obj, vs, surface, skeleton)

    with ThreadPoolExecutor(n_workers) as pool:
        for i, row in zip(todo, progress_bar(pool.map(work, todo), total=len(todo), desc="measure objects",
                                             unit="object", disable=not progress or not todo)):
            rows[i] = row
    return rows


def build_table(stats, labels_src, vs, properties, has_image, others, skeleton, shape, n_workers, progress,
                shapes=None):
    """The measurement table (a DataFrame) from the combined accumulators ``stats``; shapes are
    measured from ``shapes`` (pass 1 of the blockwise table) or read from ``labels_src``."""
    import pandas as pd

    columns = ["label", "n_voxels", "volume_nm3", "volume_um3", "equivalent_diameter_nm", "surface_area_nm2",
               "sphericity", "centroid_z_nm", "centroid_y_nm", "centroid_x_nm", "axis_major_length_nm",
               "axis_intermediate_length_nm", "axis_minor_length_nm", "elongation", "bbox_z0", "bbox_y0",
               "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1", "n_sections", "touches_border", "mean_intensity",
               "std_intensity", "min_intensity", "max_intensity", "skeleton_length_nm", "n_branches"]
    for name in others:
        columns += [f"distance_to_{name}_nm", f"contact_area_{name}_nm2"]
    if stats is None:
        stats = {key: np.zeros(0) for key in ("label", *SUM, *MIN, *MAX)}
        for name in others:
            stats["sum:contact_" + name] = stats["min:distance_" + name] = np.zeros(0)
    vs_arr = np.asarray(vs, dtype=np.float64)
    n = stats["count"]
    data = {"label": stats["label"].astype(np.int64)}
    volume = n * float(np.prod(vs_arr))
    if "volume" in properties or "surface" in properties:
        data["n_voxels"] = n.astype(np.int64)
        data["volume_nm3"] = volume
        data["volume_um3"] = volume * 1e-9
        data["equivalent_diameter_nm"] = np.cbrt(6 * volume / np.pi)
    mean = np.stack([stats["sz"], stats["sy"], stats["sx"]], axis=1) / n[:, None] if len(n) else np.zeros((0, 3))
    if "centroid" in properties:
        for k, axis in enumerate("zyx"):
            data[f"centroid_{axis}_nm"] = mean[:, k] * vs_arr[k]
    if "axes" in properties:
        second = np.empty((len(n), 3, 3))
        keys = {(0, 0): "szz", (1, 1): "syy", (2, 2): "sxx", (0, 1): "szy", (0, 2): "szx", (1, 2): "syx"}
        for (i, j), key in keys.items():
            second[:, i, j] = second[:, j, i] = stats[key] / n - mean[:, i] * mean[:, j]
        cov = second * np.outer(vs_arr, vs_arr)[None] + np.diag(vs_arr**2 / 12)[None]
        eig = np.clip(np.linalg.eigvalsh(cov), 0, None) if len(n) else np.zeros((0, 3))
        lengths = 2 * np.sqrt(5 * eig)
        data["axis_major_length_nm"] = lengths[:, 2]
        data["axis_intermediate_length_nm"] = lengths[:, 1]
        data["axis_minor_length_nm"] = lengths[:, 0]
        data["elongation"] = lengths[:, 2] / lengths[:, 0]
    lo = np.stack([stats["z0"], stats["y0"], stats["x0"]], axis=1).astype(np.int64)
    hi = np.stack([stats["z1"], stats["y1"], stats["x1"]], axis=1).astype(np.int64)
    if "bbox" in properties:
        for k, axis in enumerate("zyx"):
            data[f"bbox_{axis}0"] = lo[:, k]
        for k, axis in enumerate("zyx"):
            data[f"bbox_{axis}1"] = hi[:, k]
        data["n_sections"] = hi[:, 0] - lo[:, 0]
        data["touches_border"] = (lo == 0).any(axis=1) | (hi == np.asarray(shape)[None]).any(axis=1)
    if has_image and "intensity" in properties:
        m = stats["isum"] / n
        data["mean_intensity"] = m
        data["std_intensity"] = np.sqrt(np.clip(stats["isq"] / n - m * m, 0, None))
        data["min_intensity"] = stats["imin"]
        data["max_intensity"] = stats["imax"]
    for name in others:
        d = stats["min:distance_" + name].copy()
        d[~np.isfinite(d)] = np.nan
        data[f"distance_to_{name}_nm"] = d
        data[f"contact_area_{name}_nm2"] = stats["sum:contact_" + name]
    surface = "surface" in properties
    if (surface or skeleton) and len(n):
        rows = _object_rows(labels_src, data["label"], n, lo, hi, vs, surface, skeleton, n_workers, progress,
                            shapes)
        for key in rows[0]:
            data[key] = np.asarray([r[key] for r in rows])
        if surface:
            area = data["surface_area_nm2"]
            with np.errstate(divide="ignore", invalid="ignore"):
                data["sphericity"] = np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area
    elif surface:
        data["surface_area_nm2"] = data["sphericity"] = np.zeros(0)
    if skeleton and not len(n):
        data["skeleton_length_nm"], data["n_branches"] = np.zeros(0), np.zeros(0, np.int64)
    df = pd.DataFrame({c: data[c] for c in columns if c in data})
    df.attrs["voxel_size_nm"] = [float(v) for v in vs]
    return df


def worker_count(n_workers):
    """``n_workers`` checked, or the default: up to 4 threads."""
    if n_workers is None:
        return max(1, min(4, os.cpu_count() or 1))
    if isinstance(n_workers, bool) or int(n_workers) < 1:
        raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
    return int(n_workers)


def regionprops_table(labels, image=None, *, voxel_size=None, properties=DEFAULT_PROPERTIES,
                      skeleton: bool = False, other_labels=None, n_workers: int | None = None,
                      progress: bool = True):
    """Measure every object of an instance label volume in physical units (one row per object).

    Parameters
    ----------
    labels : array-like or Volume of shape (Z, Y, X), integer
        Instance labels: 0 = background, each positive id one object. Loaded into memory (use
        :func:`regionprops_blockwise` for large volumes).
    image : array-like or Volume of shape (Z, Y, X), optional
        Grey values for the intensity columns.
    voxel_size : sequence of 3 float, optional
        ``(z, y, x)`` in nm (a Volume's own is used if omitted); required.
    properties : sequence of str
        Groups of columns among ``"volume"``, ``"surface"``, ``"centroid"``, ``"axes"``, ``"bbox"``,
        ``"intensity"`` (see the module's description for each column). Default: all.
    skeleton : bool
        Add ``skeleton_length_nm`` and ``n_branches`` (needs the ``skan`` package; slower).
    other_labels : array-like or dict of str to array-like, optional
        Other structures (nonzero = present), e.g. membranes or the nucleus, of the labels' shape:
        adds ``distance_to_<name>_nm`` and ``contact_area_<name>_nm2`` (a single array is named
        ``other``).
    n_workers : int, optional
        Threads for the per-object measurements (default: up to 4).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per object, sorted by label; ``df.attrs["voxel_size_nm"]`` holds the voxel size.

    Raises
    ------
    ValueError
        Labels that are not 3D integers, a missing voxel size, an image or other labels of another
        shape, or an unknown property; the message names the argument.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((10, 40, 40), np.uint8)
    >>> labels[2:6, 10:20, 10:30] = 1                 # a box of 4 x 10 x 20 voxels
    >>> df = regionprops_table(labels, voxel_size=(40, 8, 8), progress=False)
    >>> int(df.label[0]), float(df.volume_nm3[0]), round(float(df.volume_um3[0]), 6), int(df.n_sections[0])
    (1, 2048000.0, 0.002048, 4)
    >>> float(df.centroid_z_nm[0]), float(df.centroid_x_nm[0])
    (140.0, 156.0)
    >>> df.attrs["voxel_size_nm"]
    [40.0, 8.0, 8.0]
    """
    labels, image, others, vs, properties = prepare(labels, image, other_labels, voxel_size, properties,
                                                    lazy=False)
    shape = labels.shape
    sums, mins = {}, {}
    everything = tuple(slice(0, n) for n in shape)
    for name, other in others.items():
        sums["contact_" + name] = contact_field(labels, other, everything, vs)
        mins["distance_" + name] = distance_field(other, everything, vs, None)
    stats = block_stats(labels, (0, 0, 0), image if "intensity" in properties else None, sums, mins)
    return build_table(stats, labels, vs, properties, image is not None, others, skeleton, shape,
                       worker_count(n_workers), progress)
