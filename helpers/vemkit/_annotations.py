"""The sparse annotation store: a zarr array on disk that every painted stroke is written into at once.

Values: 0 = unlabelled (ignored by every loss and metric), 1 = background, 2.. = classes, so class
``k`` of a semantic mask is annotated as ``k + 1``. The store's attributes record the class names,
their colours, the image shape and voxel size. Every edit is written through to disk as it is made
(a kernel restart or a closed tab loses nothing); undo keeps the previous values of the last edits in
memory. Not for: the widget that paints (:mod:`vemkit._annotator`), masks to scribbles (:mod:`vemkit._scribbles`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._omezarr import remove_tree
from ._outputs import check_output
from ._volume import Volume
from ._voxel import check_voxel_size

__all__ = ["Annotations", "open_annotations", "DEFAULT_COLORS", "DamagedChunkError"]

ATTR_KEY = "vemkit_annotations"

#: Display colours (RGB 0-255): value 1 = background, then one per class.
DEFAULT_COLORS = [
    (66, 133, 244),   # background: blue
    (234, 67, 53),    # class 1: red
    (52, 168, 83),    # green
    (251, 188, 5),    # yellow
    (171, 71, 188),   # purple
    (0, 172, 193),    # cyan
    (255, 112, 67),   # orange
    (158, 157, 36),   # olive
]

_PLANES = {"xy": 0, "xz": 1, "yz": 2}  # axis held fixed by each plane


class Annotations:
    """A sparse annotation volume on disk (zarr), edited stroke by stroke.

    Use :func:`open_annotations` to create or open one.

    Attributes
    ----------
    path : Path
        The zarr store.
    array : zarr.Array of shape (Z, Y, X), uint8
        0 = unlabelled, 1 = ``classes[0]`` (background), 2 = ``classes[1]`` ...
    classes : list of str
        Class names, background first.
    colors : list of tuple
        RGB colour of each class, in the same order.
    """

    def __init__(self, path, array):
        self.path = Path(path)
        self.array = array
        meta = dict(array.attrs.get(ATTR_KEY, {}))
        self.classes = list(meta.get("classes", ["background", "foreground"]))
        self.colors = [tuple(c) for c in meta.get("colors", DEFAULT_COLORS[: len(self.classes)])]
        vs = meta.get("voxel_size")
        self.voxel_size = tuple(vs) if vs else None
        self._undo: list[tuple[tuple[slice, ...], np.ndarray]] = []
        self.max_undo = 200

    # ------------------------------------------------------------------ basics
    @property
    def shape(self):
        return tuple(int(s) for s in self.array.shape)

    @property
    def n_values(self) -> int:
        """Largest valid value (number of classes incl. background)."""
        return len(self.classes)

    def __repr__(self):
        return f"Annotations({str(self.path)!r}, shape={self.shape}, classes={self.classes})"

    def value_of(self, label) -> int:
        """The stored value of a class given by name or value (``"background"`` is 1)."""
        if isinstance(label, str):
            if label not in self.classes:
                raise ValueError(f"unknown class {label!r}; this store's classes are {self.classes}")
            return self.classes.index(label) + 1
        value = int(label)
        if not 0 <= value <= self.n_values:
            raise ValueError(
                f"label {label!r} is beyond the declared classes: values are 0 (unlabelled/erase), "
                + ", ".join(f"{i + 1} ({c})" for i, c in enumerate(self.classes))
            )
        return value

    def read(self, slices) -> np.ndarray:
        """``array[slices]`` (a tuple of one slice per axis) in memory.

        Raises
        ------
        DamagedChunkError
            When a chunk in the region cannot be decoded (a torn or truncated file): the message names
            every damaged chunk file in the region; reads that do not touch it still work.
        """
        slices = tuple(slices)
        try:
            return np.asarray(self.array[slices])
        except (IndexError, TypeError):
            raise
        except Exception as err:
            damaged = self._damaged_chunks(slices)
            if not damaged:
                raise
            names = ", ".join(str(p) for p in damaged[:5]) + (f" and {len(damaged) - 5} more" if len(damaged) > 5 else "")
            raise DamagedChunkError(
                f"annotation store {str(self.path)!r}: {len(damaged)} chunk(s) cannot be read ({names}: "
                f"{type(err).__name__}: {err}), probably a torn or truncated write. The rest of the store is "
                "readable (e.g. other sections with .section(z)). Restore the file(s) from a backup, or delete "
                "them: their voxels then read as unlabelled (0) and can be painted again",
                damaged,
            ) from None

    def _damaged_chunks(self, slices):
        """Chunk files within ``slices`` that fail to decode on their own."""
        import itertools

        ranges = []
        for sl, n, c in zip(slices, self.shape, self.array.chunks):
            start, stop, _ = sl.indices(n) if isinstance(sl, slice) else (int(sl), int(sl) + 1, 1)
            ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
        damaged = []
        for coords in itertools.product(*ranges):
            region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(coords, self.array.chunks, self.shape))
            try:
                self.array[region]
            except Exception:
                damaged.append(_chunk_file(self.array, self.path, coords))
        return damaged

    def _iter_blocks(self):
        cz = self.array.chunks[0]
        for z0 in range(0, self.shape[0], cz):
            yield self.read((slice(z0, z0 + cz), slice(None), slice(None)))

    def to_numpy(self) -> np.ndarray:
        """The whole annotation volume in memory (uint8)."""
        return self.read(tuple(slice(None) for _ in self.shape))

    def section(self, index: int, plane: str = "xy") -> np.ndarray:
        """One plane of the annotations: ``plane`` is ``"xy"`` (index = z), ``"xz"`` (y) or ``"yz"`` (x)."""
        return self.read(_plane_slices(plane, index, self.shape)).squeeze(axis=_PLANES[plane])

    def counts(self) -> dict:
        """Number of annotated voxels per class name."""
        counts = np.zeros(self.n_values + 1, np.int64)
        for block in self._iter_blocks():
            counts += np.bincount(block.ravel(), minlength=self.n_values + 1)[: self.n_values + 1]
        return {name: int(counts[i + 1]) for i, name in enumerate(self.classes)}

    def annotated_sections(self) -> list[int]:
        """The z indices that hold any annotation."""
        out = []
        for z in range(self.shape[0]):
            if np.any(self.read((slice(z, z + 1), slice(None), slice(None)))):
                out.append(z)
        return out

    def labelled_voxels(self):
        """Coordinates and values of every annotated voxel, read chunk row by chunk row.

        Returns
        -------
        coords : ndarray of shape (N, 3), int64
        values : ndarray of shape (N,), uint8
        """
        coords, values = [], []
        cz = self.array.chunks[0]
        for z0 in range(0, self.shape[0], cz):
            block = self.read((slice(z0, z0 + cz), slice(None), slice(None)))
            idx = np.nonzero(block)
            if idx[0].size:
                coords.append(np.stack([idx[0] + z0, idx[1], idx[2]], axis=1))
                values.append(block[idx])
        if not coords:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.uint8)
        return np.concatenate(coords).astype(np.int64), np.concatenate(values)

    # ------------------------------------------------------------------ edits
    def _write(self, slices, new_values, where=None):
        """Write ``new_values`` (or only where ``where``) into ``slices``, recording undo."""
        old = self.read(slices)
        updated = old.copy()
        if where is None:
            updated[...] = new_values
        else:
            updated[where] = new_values if np.isscalar(new_values) else new_values[where]
        if np.array_equal(updated, old):
            return 0
        self._undo.append((slices, old))
        if len(self._undo) > self.max_undo:
            self._undo.pop(0)
        self.array[slices] = updated
        return int(np.count_nonzero(updated != old))

    def add_stroke(self, points, label, *, radius: float = 3.0, index: int | None = None, plane: str = "xy"):
        """Paint a brush stroke (a polyline of discs) into one plane and write it to disk.

        Parameters
        ----------
        points : sequence of (row, col)
            Stroke points in the plane's pixel coordinates: (y, x) for ``"xy"``, (z, x) for ``"xz"``,
            (z, y) for ``"yz"``. Fractional positions are fine.
        label : int or str
            Class value (1 = background, 2.. = classes) or name; 0 erases.
        radius : float
            Brush radius in pixels.
        index : int
            The plane's position: z for ``"xy"``, y for ``"xz"``, x for ``"yz"``.
        plane : {"xy", "xz", "yz"}

        Returns
        -------
        int
            Number of voxels changed.

        Examples
        --------
        >>> import tempfile, os
        >>> ann = open_annotations(os.path.join(tempfile.mkdtemp(), "a.zarr"), shape=(2, 32, 32),
        ...                        classes=["background", "mitochondria"])
        >>> ann.add_stroke([(5, 5), (5, 20)], "mitochondria", radius=1, index=0) > 0
        True
        >>> int(ann.section(0)[5, 12])
        2
        """
        value = self.value_of(label)
        if index is None:
            raise ValueError("add_stroke needs index= (the z of an xy stroke, y of xz, x of yz)")
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if pts.size == 0:
            return 0
        if not np.all(np.isfinite(pts)):
            raise ValueError("stroke points must be finite numbers")
        if radius <= 0:
            raise ValueError(f"radius must be positive, got {radius}")
        plane_shape = _plane_shape(plane, self.shape)
        fixed = _PLANES[plane]
        if not 0 <= index < self.shape[fixed]:
            raise ValueError(f"index {index} is outside the volume along {'zyx'[fixed]} (0..{self.shape[fixed] - 1})")
        r0 = max(int(np.floor(pts[:, 0].min() - radius)), 0)
        r1 = min(int(np.ceil(pts[:, 0].max() + radius)) + 1, plane_shape[0])
        c0 = max(int(np.floor(pts[:, 1].min() - radius)), 0)
        c1 = min(int(np.ceil(pts[:, 1].max() + radius)) + 1, plane_shape[1])
        if r0 >= r1 or c0 >= c1:
            return 0
        mask = _polyline_mask(pts - (r0, c0), radius, (r1 - r0, c1 - c0))
        slices = _plane_slices(plane, index, self.shape, (slice(r0, r1), slice(c0, c1)))
        return self._write(slices, value, where=mask.reshape(_region_shape(slices, self.shape)))

    def erase_stroke(self, points, *, radius: float = 3.0, index: int | None = None, plane: str = "xy"):
        """Erase (set to unlabelled) along a stroke; see :meth:`add_stroke`."""
        return self.add_stroke(points, 0, radius=radius, index=index, plane=plane)

    def add_mask(self, mask, label, *, offset=(0, 0, 0), z: int | None = None):
        """Set the annotation to ``label`` wherever ``mask`` is true.

        Parameters
        ----------
        mask : ndarray of bool, 2D (a section: give ``z``) or 3D (placed at ``offset``)
        label : int or str
            Class value or name; 0 erases.
        offset : (z, y, x)
            Position of a 3D mask's first voxel.
        z : int, optional
            Section for a 2D mask.
        """
        value = self.value_of(label)
        mask = np.asarray(mask).astype(bool)
        if mask.ndim == 2:
            if z is None:
                raise ValueError("a 2D mask needs z= (the section it belongs to)")
            mask, offset = mask[None], (z, 0, 0)
        if mask.ndim != 3:
            raise ValueError(f"mask must be 2D (with z=) or 3D, got shape {mask.shape}")
        end = [o + s for o, s in zip(offset, mask.shape)]
        if any(o < 0 for o in offset) or any(e > s for e, s in zip(end, self.shape)):
            raise ValueError(f"mask of shape {mask.shape} at offset {tuple(offset)} does not fit the annotations {self.shape}")
        slices = tuple(slice(o, e) for o, e in zip(offset, end))
        return self._write(slices, value, where=mask)

    def set_labels(self, labels, *, offset=(0, 0, 0), keep_existing: bool = False):
        """Write a whole labelled block (0 = leave unlabelled); values must be valid for this store."""
        labels = np.asarray(labels)
        if labels.ndim == 2:
            labels = labels[None]
        if labels.size and (labels.min() < 0 or labels.max() > self.n_values):
            raise ValueError(
                f"labels hold values {int(labels.min())}..{int(labels.max())}; this store takes 0..{self.n_values} "
                f"(0 unlabelled, 1 {self.classes[0]}, ...)"
            )
        end = [o + s for o, s in zip(offset, labels.shape)]
        if any(e > s for e, s in zip(end, self.shape)):
            raise ValueError(f"labels of shape {labels.shape} at {tuple(offset)} do not fit the annotations {self.shape}")
        slices = tuple(slice(o, e) for o, e in zip(offset, end))
        where = labels > 0
        if keep_existing:
            where &= self.read(slices) == 0
        return self._write(slices, labels.astype(np.uint8), where=where)

    def undo(self) -> bool:
        """Revert the last edit; returns False when there is nothing to undo."""
        if not self._undo:
            return False
        slices, old = self._undo.pop()
        self.array[slices] = old
        return True

    def clear(self):
        """Erase every annotation (cannot be undone beyond the last edits)."""
        for z0 in range(0, self.shape[0], self.array.chunks[0]):
            self.array[z0 : z0 + self.array.chunks[0]] = 0
        self._undo.clear()

    def import_labels(self, source, *, mapping: dict | None = None, key: str | None = None, keep_existing=False):
        """Import labels from a file or array (label TIFF, napari labels layer file, ilastik export).

        Parameters
        ----------
        source : str, Path or ndarray
            A label image of the annotations' shape. Files are read with :func:`vemkit.io.open_volume`
            (TIFF, PNG folder, zarr, ``.npy`` napari saves, HDF5 such as ilastik's
            ``exported_data`` or ``.../labels`` exports).
        mapping : dict, optional
            File value -> annotation value (e.g. ``{1: 1, 2: 2}``); values not in it become unlabelled.
            Default: the file's values are taken as annotation values (0 = unlabelled, as in
            ilastik's label export and napari's labels layers).
        keep_existing : bool
            Do not overwrite voxels that are already annotated.
        """
        labels = _read_label_source(source, key, self.shape)
        if mapping is not None:
            lut_size = int(max(max(mapping), labels.max() if labels.size else 0)) + 1
            lut = np.zeros(lut_size, np.int64)
            for k, v in mapping.items():
                lut[int(k)] = self.value_of(v)
            labels = lut[labels.astype(np.int64)]
        return self.set_labels(labels, keep_existing=keep_existing)


# ---------------------------------------------------------------------------------------- helpers


class DamagedChunkError(ValueError):
    """A chunk of an annotation store cannot be decoded (a torn or truncated write); ``chunks`` lists
    the damaged chunk files. The other chunks stay readable."""

    def __init__(self, message, chunks):
        super().__init__(message)
        self.chunks = chunks


def _chunk_file(array, path, coords):
    try:
        key = array.metadata.chunk_key_encoding.encode_chunk_key(coords)
    except AttributeError:  # zarr v2 metadata
        key = ".".join(str(c) for c in coords)
    return Path(path) / key


def _plane_shape(plane, shape):
    if plane not in _PLANES:
        raise ValueError(f"plane must be 'xy', 'xz' or 'yz', got {plane!r}")
    fixed = _PLANES[plane]
    return tuple(s for i, s in enumerate(shape) if i != fixed)


def _plane_slices(plane, index, shape, inplane=(slice(None), slice(None))):
    fixed = _PLANES.get(plane)
    if fixed is None:
        raise ValueError(f"plane must be 'xy', 'xz' or 'yz', got {plane!r}")
    out = list(inplane)
    out.insert(fixed, slice(int(index), int(index) + 1))
    return tuple(out)


def _region_shape(slices, shape):
    return tuple(len(range(*s.indices(n))) for s, n in zip(slices, shape))


def _polyline_mask(points, radius, shape):
    """Pixels within ``radius`` of the polyline through ``points`` (row, col) in a box of ``shape``.

    Each segment is measured only inside its own bounding box (plus the radius), so the cost grows
    with the stroke's length, not with (segments x the whole stroke's box).
    """
    points = np.asarray(points, np.float64)
    if len(points) == 1:
        points = np.vstack([points, points])
    mask = np.zeros(shape, bool)
    r2 = radius * radius
    for (ar, ac), (br, bc) in zip(points[:-1], points[1:]):
        r0 = max(int(np.floor(min(ar, br) - radius)), 0)
        r1 = min(int(np.ceil(max(ar, br) + radius)) + 1, shape[0])
        c0 = max(int(np.floor(min(ac, bc) - radius)), 0)
        c1 = min(int(np.ceil(max(ac, bc) + radius)) + 1, shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.mgrid[r0:r1, c0:c1].astype(np.float32)
        dr, dc = br - ar, bc - ac
        length2 = dr * dr + dc * dc
        t = 0.0 if length2 == 0 else np.clip(((rr - ar) * dr + (cc - ac) * dc) / length2, 0, 1)
        d2 = (rr - (ar + t * dr)) ** 2 + (cc - (ac + t * dc)) ** 2
        mask[r0:r1, c0:c1] |= d2 <= r2
    return mask


def _read_label_source(source, key, shape):
    if isinstance(source, (str, Path)):
        path = str(source)
        if path.endswith(".npy"):
            labels = np.load(path)
        else:
            from .io import open_volume

            vol = open_volume(path, key=key, warn_missing_voxel_size=False)
            labels = np.asarray(vol.data)
    else:
        labels = np.asarray(source)
    if labels.ndim == 4 and labels.shape[-1] == 1:  # ilastik exports carry a trailing channel axis
        labels = labels[..., 0]
    if labels.ndim == 2:
        labels = labels[None]
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"imported labels have shape {tuple(labels.shape)}; the annotations have shape {tuple(shape)}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"imported labels have dtype {labels.dtype}; expected integer labels")
    return labels


def open_annotations(
    path,
    *,
    image=None,
    shape=None,
    classes=None,
    colors=None,
    voxel_size=None,
    chunks=None,
    overwrite: bool = False,
) -> Annotations:
    """Open an annotation store, creating it if it does not exist. An existing store is never replaced
    unless ``overwrite=True``.

    Parameters
    ----------
    path : str or Path
        The zarr store, e.g. ``"annotations.zarr"``.
    image : Volume or array, optional
        The image being annotated: gives ``shape`` and ``voxel_size`` of a new store, and is checked
        against an existing one.
    shape : tuple of 3 int, optional
        (Z, Y, X) of a new store (when no ``image``).
    classes : list of str, optional
        Class names, background first (default ``["background", "foreground"]``); value 1 is
        ``classes[0]``. For an existing store, must match (or extend) what it holds.
    colors : list of (r, g, b), optional
        Display colours per class.
    voxel_size : tuple of 3 float, optional
    chunks : tuple of 3 int, optional
        Chunk shape of a new store (default one section deep, 256 x 256).
    overwrite : bool
        Replace an existing store by an empty one (asked for explicitly: annotations are precious).

    Returns
    -------
    Annotations

    Raises
    ------
    ValueError
        Shape of an existing store differs from the image's; classes conflict; bad input.
    """
    path = Path(path)
    if image is not None:
        shape, voxel_size = _shape_of_image(image, shape, voxel_size)
    classes = _check_classes(classes)
    if path.exists() and overwrite:
        _replace_store(path, image)
    if path.exists():
        return _open_existing(path, shape, classes, colors)
    if shape is None:
        raise ValueError(f"no annotations at {str(path)!r} yet: give image= or shape= to create them")
    return _create(path, shape, classes, colors, voxel_size, chunks)


def _replace_store(path: Path, image) -> None:
    """Delete the annotation store at ``path`` for ``overwrite=True``: only a store vemkit wrote (never the
    image, a folder holding it, or anything else)."""
    check_output(path, [image] if image is not None else [], overwrite=True, what="annotations", exists_ok=True)
    is_store = False
    if path.is_dir():
        import zarr

        try:
            is_store = ATTR_KEY in zarr.open_array(str(path), mode="r").attrs
        except Exception:  # noqa: BLE001 - not a zarr array at all: not a store vemkit wrote
            is_store = False
    if not is_store:
        raise FileExistsError(
            f"{str(path)!r} exists and is not a vemkit annotation store; overwrite=True only replaces "
            "annotations vemkit wrote: choose another path"
        )
    remove_tree(path)


def _shape_of_image(image, shape, voxel_size):
    """``(shape, voxel_size)`` of a new store from the image annotated (2D is one section)."""
    img_shape = tuple(int(s) for s in image.shape)
    if len(img_shape) == 2:
        img_shape = (1, *img_shape)
    if len(img_shape) != 3:
        raise ValueError(f"image must be 3D (z, y, x) or 2D, got shape {img_shape}")
    if shape is not None and tuple(shape) != img_shape:
        raise ValueError(f"shape {tuple(shape)} differs from the image's {img_shape}")
    if voxel_size is None and isinstance(image, Volume):
        voxel_size = image.voxel_size
    return img_shape, voxel_size


def _check_classes(classes):
    """Class names as strings (None stays None): at least two, unique, at most 254."""
    if classes is None:
        return None
    classes = [str(c) for c in classes]
    if len(classes) < 2:
        raise ValueError("classes needs at least two names: background first, then the classes to find")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class names must be unique, got {classes}")
    if len(classes) > 254:
        raise ValueError("at most 254 classes")
    return classes


def _open_existing(path, shape, classes, colors):
    """The store at ``path``, checked against ``shape``; ``classes`` may add classes at the end."""
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r+")
    except Exception as err:
        raise ValueError(f"{str(path)!r} exists but is not a zarr array of annotations: {err}") from err
    ann = Annotations(path, array)
    if ATTR_KEY not in array.attrs:
        raise ValueError(f"{str(path)!r} is a zarr array but not a vemkit annotation store; choose another path")
    if shape is not None and tuple(shape) != ann.shape:
        raise ValueError(
            f"the annotations at {str(path)!r} have shape {ann.shape}, the image {tuple(shape)}; "
            "they belong to another image (open another path, or overwrite=True to start afresh)"
        )
    if classes is not None and classes != ann.classes:
        if classes[: len(ann.classes)] != ann.classes:
            raise ValueError(
                f"the annotations at {str(path)!r} have classes {ann.classes}; got {classes}. "
                "Classes can be added at the end, never renamed or reordered."
            )
        meta = dict(array.attrs[ATTR_KEY])
        meta["classes"] = classes
        meta["colors"] = [list(c) for c in (colors or _colors_for(classes, ann.colors))]
        array.attrs[ATTR_KEY] = meta
        ann = Annotations(path, array)
    return ann


def _create(path, shape, classes, colors, voxel_size, chunks):
    """A new, empty store at ``path``."""
    import zarr

    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be three positive integers (z, y, x), got {shape}")
    classes = classes or ["background", "foreground"]
    colors = [tuple(int(v) for v in c) for c in (colors or _colors_for(classes, []))]
    if len(colors) != len(classes):
        raise ValueError(f"{len(colors)} colours for {len(classes)} classes")
    chunks = tuple(chunks) if chunks else (1, min(256, shape[1]), min(256, shape[2]))
    array = zarr.create_array(str(path), shape=shape, chunks=chunks, dtype=np.uint8, fill_value=0,
                              dimension_names=["z", "y", "x"])
    array.attrs[ATTR_KEY] = {
        "version": 1,
        "classes": classes,
        "colors": [list(c) for c in colors],
        "voxel_size": list(check_voxel_size(voxel_size)) if voxel_size is not None else None,
        "convention": "0 = unlabelled, 1 = classes[0] (background), k + 1 = classes[k]",
    }
    return Annotations(path, array)


def _colors_for(classes, existing):
    out = list(existing) + [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(existing), len(classes))]
    return out[: len(classes)]
