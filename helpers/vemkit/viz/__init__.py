"""Look at volumes: orthogonal slices, section grids, intensity histograms and an interactive viewer.

Every view computes only what it shows (three slices, ``n`` sections, a bounded random sample), so it
is safe on lazy volumes of any size, and draws physical aspect ratios from the voxel size
``(z, y, x)`` in nm: a 50 x 4 x 4 nm volume looks stretched in z exactly as much as it is. The
interactive viewer (:func:`show`) also carries a static PNG of its current view, so a notebook run
without a widget front end (papermill, nbconvert HTML, CI, GitHub's renderer) still shows a figure.

:func:`error_map` turns a prediction and the ground truth into an overlay of hits, false positives and
misses, which ``overlay_names=ERROR_NAMES`` explains in a colour legend.

:func:`objects_3d` draws the surfaces of chosen objects of an instance label volume in 3D, as a static
matplotlib figure.

Not for: painting annotations (see :mod:`vemkit.annotate`), volume rendering, or choosing a
matplotlib backend. Figures are built with :class:`matplotlib.figure.Figure`, never through ``pyplot``, so they
are not registered with a backend, never display twice and are freed when dropped; display one in a
notebook by making it the last expression of a cell, or write it with ``fig.savefig(path)``.
"""

from ._common import figure
from ._compare import ERROR_NAMES, error_map
from ._grids import channel_grid, section_grid
from ._histogram import histogram
from ._objects3d import objects_3d
from ._ortho import orthoslices
from ._viewer import OrthoViewer, show

__all__ = ["orthoslices", "section_grid", "histogram", "channel_grid", "objects_3d", "show", "OrthoViewer", "figure", "error_map", "ERROR_NAMES"]
