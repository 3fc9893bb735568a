"""Looking at measurement tables: :func:`save_table`, :func:`plot_distributions`, :func:`table_view`.

Not for: measuring (:func:`vemkit.measure.regionprops_table`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..viz import figure  # a figure that shows itself in notebooks without pyplot


def save_table(df, path, *, overwrite: bool = False) -> Path:
    """Write a measurement table as CSV (``.csv``), TSV (``.tsv``) or Parquet (``.parquet``, ``.pq``).

    Parquet keeps the column types and ``df.attrs`` (the voxel size); CSV is for spreadsheets.

    Parameters
    ----------
    df : pandas.DataFrame
    path : str or Path
        The file; its extension picks the format.
    overwrite : bool
        Replace an existing file; by default an existing file is an error.

    Returns
    -------
    Path

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "mito.csv")
    >>> _ = save_table(pd.DataFrame({"label": [1, 2], "volume_nm3": [1e6, 2e6]}), path)
    >>> pd.read_csv(path).volume_nm3.tolist()
    [1000000.0, 2000000.0]
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".parquet", ".pq"):
        raise ValueError(f"path must end in .csv, .tsv, .parquet or .pq, got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass overwrite=True or choose another path")
    tmp = path.with_name(path.name + ".part")
    try:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif suffix == ".tsv":
            df.to_csv(tmp, index=False, sep="\t")
        else:
            df.to_parquet(tmp, index=False)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def plot_distributions(df, columns, by=None, *, bins: int = 30, ncols: int | None = None):
    """Histograms of measurement columns, or violins per group when ``by`` is given.

    Parameters
    ----------
    df : pandas.DataFrame
        A measurement table.
    columns : str or sequence of str
        Numeric columns to plot, one panel each (NaNs are left out).
    by : str, optional
        A column whose values group the rows (e.g. ``"condition"`` or ``"class"``): one violin per
        group (groups of fewer than two distinct values are drawn as points).
    bins : int
        Histogram bins.
    ncols : int, optional
        Panels per row (default: up to 3, so that a grid fits a notebook's width of about 9 inches
        with readable ticks).

    Returns
    -------
    matplotlib.figure.Figure
        Built without pyplot, so it never opens a window by itself (display it in a notebook, or
        ``fig.savefig(path)``).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"volume_um3": [0.1, 0.2, 0.15, 0.3], "cell": ["a", "a", "b", "b"]})
    >>> fig = plot_distributions(df, ["volume_um3"], by="cell")
    >>> len(fig.axes), fig.axes[0].get_ylabel()
    (1, 'volume_um3')
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if isinstance(columns, str):
        columns = [columns]
    columns = list(columns)
    if not columns:
        raise ValueError("columns must name at least one column")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"columns {missing} are not in the table; it has {', '.join(map(str, df.columns))}")
    for c in columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise ValueError(f"column {c!r} is not numeric (dtype {df[c].dtype})")
    if by is not None and by not in df.columns:
        raise ValueError(f"by={by!r} is not a column of the table")
    fig, axes = _panel_grid(len(columns), ncols)
    for ax, column in zip(axes, columns):
        if by is None:
            values = df[column].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            ax.hist(values, bins=bins, color="tab:blue", alpha=0.8)
            ax.set_xlabel(column)
            ax.set_ylabel("objects")
            continue
        groups = [(g, sub[column].to_numpy(dtype=float)) for g, sub in df.groupby(by, sort=True)]
        for i, (_, values) in enumerate(groups):
            values = values[np.isfinite(values)]
            if len(np.unique(values)) >= 2:
                ax.violinplot([values], positions=[i], showmedians=True)
            elif len(values):
                ax.scatter(np.full(len(values), i), values, color="tab:blue", s=12)
        ax.set_xticks(range(len(groups)), [str(g) for g, _ in groups])
        ax.set_xlabel(str(by))
        ax.set_ylabel(column)
    return fig


def _panel_grid(n, ncols):
    """A figure of ``n`` panels of about 3 x 2.4 inches, ``ncols`` (default up to 3) per row, with
    few, short tick labels (they never run into each other)."""
    from matplotlib.ticker import MaxNLocator

    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, (int, np.integer)) or ncols < 1):
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    ncols = min(int(ncols) if ncols else 3, n)
    nrows = -(-n // ncols)
    fig = figure((3.0 * ncols, 2.4 * nrows + 0.2), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.remove()
    for ax in axes[:n]:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.tick_params(labelsize=8)
    return fig, list(axes[:n])


_SORT_SCRIPT = """<script>
(function () {
  var table = document.getElementById("%(id)s");
  if (!table || !table.tHead) { return; }
  var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
  Array.prototype.forEach.call(heads, function (head, column) {
    head.style.cursor = "pointer";
    head.title = "click to sort";
    head.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var ascending = head.getAttribute("data-order") !== "ascending";
      rows.sort(function (a, b) {
        var x = a.cells[column].textContent.trim(), y = b.cells[column].textContent.trim();
        var u = parseFloat(x), v = parseFloat(y);
        var order = (isNaN(u) || isNaN(v)) ? x.localeCompare(y) : u - v;
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("data-order"); });
      head.setAttribute("data-order", ascending ? "ascending" : "descending");
    });
  });
})();
</script>"""


class TableView:
    """A measurement table shown as a sortable HTML table in notebooks and as text elsewhere.

    Made by :func:`table_view`. ``view.data`` is the (sorted, truncated) DataFrame shown;
    ``view.to_html()`` the HTML, which sorts by a column when its header is clicked (a few lines of
    JavaScript; where scripts do not run, e.g. GitHub's notebook renderer or an untrusted notebook,
    it is a plain table in the initial order).
    """

    _counter = 0

    def __init__(self, data, n_rows, precision, caption):
        self.data = data
        self.n_rows = n_rows
        self.precision = precision
        self.caption = caption
        TableView._counter += 1
        self._id = f"vemkit-table-{id(self):x}-{TableView._counter}"

    def _summary(self):
        shown = len(self.data)
        rows = f"{self.n_rows} rows" if shown == self.n_rows else f"first {shown} of {self.n_rows} rows"
        return f"{rows} × {self.data.shape[1]} columns"

    def to_html(self) -> str:
        """The table as HTML with its sorting script (column headers sort on click)."""
        import html

        body = self.data.to_html(index=False, table_id=self._id, classes="vemkit-table", na_rep="",
                                 float_format=lambda v: f"{v:.{self.precision}g}", border=0)
        caption = html.escape(self.caption + " · " if self.caption else "")
        note = (f'<div style="font-size:smaller;color:#666">{caption}{html.escape(self._summary())}; '
                "click a column header to sort</div>")
        return (f'<div style="max-height:420px;overflow:auto">{body}</div>{note}'
                + _SORT_SCRIPT % {"id": self._id})

    def _repr_html_(self):
        return self.to_html()

    def __repr__(self):
        import pandas as pd

        with pd.option_context("display.max_rows", len(self.data) + 1, "display.max_columns", None,
                               "display.width", 120, "display.precision", self.precision):
            text = self.data.to_string(index=False)
        head = f"{self.caption}: " if self.caption else ""
        return f"{text}\n[{head}{self._summary()}]"


def table_view(df, columns=None, *, sort_by=None, ascending: bool = True, max_rows: int = 200,
               precision: int = 4, caption: str | None = None) -> TableView:
    """A table view of a measurement table: sortable HTML in a notebook, text elsewhere.

    Parameters
    ----------
    df : pandas.DataFrame
        A measurement table (e.g. from :func:`regionprops_table`).
    columns : sequence of str, optional
        Columns to show, in this order (default: all).
    sort_by : str, optional
        Column to sort by first; in the notebook, clicking a header sorts again.
    ascending : bool
        Sort order of ``sort_by``.
    max_rows : int
        Rows shown at most (the first after sorting); the view says how many there are.
    precision : int
        Significant digits of floating-point numbers.
    caption : str, optional
        A line under the table.

    Returns
    -------
    TableView
        Shows itself as the last expression of a notebook cell (static HTML, no widget front end
        needed); ``view.data`` is the DataFrame shown.

    Raises
    ------
    ValueError
        If ``df`` is not a DataFrame, a column or ``sort_by`` is not in it, or ``max_rows`` or
        ``precision`` is not a positive integer.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"label": [1, 2, 3], "volume_um3": [0.25, 0.0125, 0.5]})
    >>> view = table_view(df, sort_by="volume_um3", ascending=False, max_rows=2)
    >>> view.data.label.tolist()
    [3, 1]
    >>> print(repr(view))
     label  volume_um3
         3        0.50
         1        0.25
    [first 2 of 3 rows × 2 columns]
    >>> "<table" in view._repr_html_()
    True
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if columns is not None:
        columns = [columns] if isinstance(columns, str) else list(columns)
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"columns {missing} are not in the table; it has {', '.join(map(str, df.columns))}")
    if sort_by is not None and sort_by not in df.columns:
        raise ValueError(f"sort_by={sort_by!r} is not a column of the table")
    for name, value in (("max_rows", max_rows), ("precision", precision)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    data = df.sort_values(sort_by, ascending=ascending, kind="stable") if sort_by is not None else df
    if columns is not None:
        data = data[columns]
    return TableView(data.head(int(max_rows)).reset_index(drop=True), len(df), int(precision), caption)
