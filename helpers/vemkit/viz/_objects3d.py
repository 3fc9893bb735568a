"""3D view of chosen objects of an instance label volume: their surfaces as a static mplot3d figure
(:func:`objects_3d`), meshed as :func:`vemkit.measure.regionprops_table` meshes them.

Not for: volume rendering or interactive 3D.
"""

from __future__ import annotations

import math

import numpy as np

from .._display import as_display_array, compute
from .._geometry import PAD, object_field, object_mesh
from ._common import _label_colours, _voxel_text, figure


def _object_boxes(labels, ids):
    """Bounding box (tuple of slices) of each id in an in-memory label volume; None where absent."""
    wanted = np.isin(labels, ids)
    coords = np.nonzero(wanted)
    values = labels[coords]
    boxes = {}
    for i in ids:
        hit = values == i
        if not hit.any():
            boxes[i] = None
            continue
        boxes[i] = tuple(slice(int(c[hit].min()), int(c[hit].max()) + 1) for c in coords)
    return boxes


def objects_3d(
    labels,
    ids=None,
    *,
    voxel_size=None,
    max_objects: int = 12,
    alpha: float = 1.0,
    title=None,
    figsize=(6.4, 5.6),
    elev: float = 25.0,
    azim: float = -60.0,
    show_ids: bool = True,
    max_faces: int = 100_000,
):
    """3D view of chosen objects of an instance label volume: their surfaces, as a static figure.

    Each object is drawn as the mesh whose area :func:`vemkit.measure.regionprops_table` reports
    (marching cubes of a smoothed field through its outline, sections interpolated by shape), in
    physical proportions, shaded, in the colour its id has in :func:`orthoslices` overlays. The
    figure is a plain matplotlib figure (mplot3d), so it shows without any widget front end
    (papermill, nbconvert, CI) and saves with ``fig.savefig``.

    Parameters
    ----------
    labels : Volume or array of shape (Z, Y, X), integer
        Instance labels (0 = background). Loaded into memory: pass a crop of a large volume.
    ids : int or sequence of int, optional
        The objects to draw (default: the ``max_objects`` largest).
    voxel_size : sequence of 3 float, optional
        Voxel size ``(z, y, x)`` in nm; overrides the volume's own. Without either, voxels are drawn
        as cubes and the axes count voxels.
    max_objects : int
        How many of the largest objects to draw when ``ids`` is not given.
    alpha : float
        Opacity of the surfaces.
    title : str, optional
        Title (default: how many objects and the voxel size).
    figsize : (float, float)
        Figure size in inches.
    elev, azim : float
        Viewing angles in degrees (see :meth:`mpl_toolkits.mplot3d.axes3d.Axes3D.view_init`).
    show_ids : bool
        A legend of the ids and their colours, and each id written above its object (touching
        objects, such as the pieces of one mitochondrion that a watershed cut, stay countable).
    max_faces : int
        Triangles drawn at most, all objects together: larger meshes are computed on a coarser grid
        (``step_size`` of marching cubes), which keeps drawing fast.

    Returns
    -------
    matplotlib.figure.Figure
        One 3D axes with one surface per object (``fig.axes[0].collections``).

    Raises
    ------
    ValueError
        Labels that are not 3D integers, an id that is not in the labels, or no object at all.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((8, 40, 40), np.uint8)
    >>> labels[2:6, 5:15, 5:30] = 1
    >>> labels[1:7, 20:35, 20:30] = 4
    >>> fig = objects_3d(labels, [1, 4], voxel_size=(40, 8, 8))
    >>> len(fig.axes[0].collections)
    2
    >>> fig.savefig("objects.png")  # doctest: +SKIP
    """

    arr, vs, _ = as_display_array(labels, "labels", voxel_size=voxel_size)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be integer instance labels (0 = background), got dtype {arr.dtype}")
    draw_vs = tuple(float(v) for v in vs) if vs is not None else (1.0, 1.0, 1.0)
    arr = compute(arr)[0]
    ids, boxes = _chosen_objects(arr, ids, max_objects)
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha!r}")
    meshes = _object_meshes(arr, boxes, draw_vs, max(1000, int(max_faces) // len(ids)))

    fig = figure(figsize)
    ax = fig.add_subplot(projection="3d")
    colours = _label_colours(ids)
    for (i, verts, faces), colour in zip(meshes, colours):
        z, y, x = verts[:, 0], verts[:, 1], verts[:, 2]
        ax.plot_trisurf(x, y, z, triangles=faces, color=colour, shade=True, linewidth=0, antialiased=False,
                        alpha=alpha)
    _physical_axes(ax, np.concatenate([v for _, v, _ in meshes]), "nm" if vs is not None else "voxels")
    ax.view_init(elev=elev, azim=azim)
    if show_ids:
        from matplotlib.patches import Patch

        _label_objects(ax, meshes)

        handles = [Patch(color=c, label=str(i)) for i, c in zip(ids, colours)]
        ax.legend(handles=handles, title="id", fontsize=7, title_fontsize=7, loc="upper left",
                  ncols=max(1, math.ceil(len(ids) / 12)), frameon=False)
    head = title if title is not None else f"{len(ids)} object{'s' if len(ids) != 1 else ''}"
    ax.set_title(f"{head}\n{_voxel_text(vs)}", fontsize=9)
    return fig


def _chosen_objects(labels, ids, max_objects):
    """The ids to draw (those given, else the ``max_objects`` largest) and their bounding boxes."""
    if ids is None:
        if isinstance(max_objects, bool) or not isinstance(max_objects, (int, np.integer)) or max_objects < 1:
            raise ValueError(f"max_objects must be a positive integer, got {max_objects!r}")
        found, counts = np.unique(labels[labels > 0], return_counts=True)
        if not len(found):
            raise ValueError("labels hold no object (every voxel is 0): nothing to draw")
        ids = found[np.argsort(-counts, kind="stable")][: int(max_objects)]
    ids = [int(i) for i in np.atleast_1d(np.asarray(ids))]
    if not ids:
        raise ValueError("ids is empty: give at least one object id")
    boxes = _object_boxes(labels, ids)
    missing = [i for i in ids if boxes[i] is None or i == 0]
    if missing:
        raise ValueError(f"ids {missing} are not objects of the labels (0 is background)")
    return ids, boxes


def _object_meshes(labels, boxes, draw_vs, budget):
    """``[(id, vertices in nm (z, y, x), faces)]`` of each ``{id: box}``, at most about ``budget`` faces each."""
    meshes = []
    for i, box in boxes.items():
        field = object_field(labels[box] == i, draw_vs)
        verts, faces = object_mesh(field, draw_vs)
        if len(faces) > budget:  # a coarser grid: faces shrink with the square of the step
            step = min(int(math.ceil(math.sqrt(len(faces) / budget))), max(2, min(field.shape) - 1))
            while step > 1:
                try:
                    verts, faces = object_mesh(field, draw_vs, step_size=step)
                    break
                except RuntimeError:  # the coarse grid stepped over a thin object's surface: a finer one
                    step -= 1
        origin = np.array([(s.start - p) * v for s, p, v in zip(box, PAD, draw_vs)])
        meshes.append((i, verts + origin, faces))
    return meshes


def _label_objects(ax, meshes):
    """Each object's id just above its highest point, on a pale box so it reads on any surface."""
    for i, verts, _ in meshes:
        z, y, x = verts[np.argmax(verts[:, 0])]
        ax.text(x, y, z, str(i), fontsize=7, ha="center", va="bottom", zorder=10, gid=f"id {i}",
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0})


def _physical_axes(ax, vertices, unit):
    """Limits, box aspect (physical proportions) and axis labels of a 3D axes around ``vertices``."""
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    ranges = np.maximum(hi - lo, 1e-9)
    ax.set_xlim(lo[2], hi[2])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[0], hi[0])
    ax.set_box_aspect((ranges[2], ranges[1], ranges[0]))  # physical proportions
    ax.set_xlabel(f"x ({unit})", fontsize=8)
    ax.set_ylabel(f"y ({unit})", fontsize=8)
    ax.set_zlabel(f"z ({unit})", fontsize=8)
    ax.tick_params(labelsize=7)
