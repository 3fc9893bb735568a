"""Every vemkit progress bar: a live bar where someone watches, one line per finished step where nobody does.

:func:`progress_bar` is the one way vemkit shows progress. In a notebook open in a front end (JupyterLab,
Notebook 7, VS Code, Colab) it is ``tqdm.auto``'s widget bar; in a terminal it is tqdm's text bar. In a run
that nobody watches live, a bar would be stored frozen at its first frame ("0% | 0/3"): a notebook executed
by papermill, nbconvert or ``vemkit tour`` (nbclient runs every cell with ``allow_stdin=False``, which the
kernel records), or a command whose output goes to a pipe or a file. There it prints one line when the step
ends ("measure objects: 3 done in 0.4 s") and, for a step longer than a minute, a line a minute
("predict: 40% (8/20) after 60 s"), so a log never looks stuck.

``$VEMKIT_PROGRESS`` overrides the choice: ``bars``, ``lines`` or ``off``.

Not for: logging, timing measurements (see ``time.perf_counter``) or progress of work outside vemkit.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["HEADLESS_ENV", "progress_bar", "progress_mode", "headless"]

_MODES = ("bars", "lines", "off")
#: Seconds between the intermediate lines of a long step in ``lines`` mode.
HEARTBEAT_S = 60.0


def _kernel():
    """The running IPython kernel, or None outside one (a terminal, a script, a plain IPython shell)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - a broken IPython
        return None
    ip = get_ipython()
    return getattr(ip, "kernel", None) if ip is not None else None


#: Environment variable that settles :func:`headless`: ``1`` (the tour, tests) or ``0`` (a live session).
HEADLESS_ENV = "VEMKIT_HEADLESS"


def headless() -> bool:
    """Whether nobody watches this run live: a notebook executed by nbclient (papermill, nbconvert,
    ``vemkit tour``) or Python outside a kernel. ``$VEMKIT_HEADLESS`` (``1`` or ``0``) settles it;
    ``$VEMKIT_PROGRESS`` does not change the answer.

    Examples
    --------
    >>> headless()  # a doctest runs outside a kernel
    True
    >>> os.environ[HEADLESS_ENV] = "0"; headless()
    False
    >>> del os.environ[HEADLESS_ENV]
    """
    said = os.environ.get(HEADLESS_ENV, "").strip().lower()
    if said in ("1", "true", "yes"):
        return True
    if said in ("0", "false", "no"):
        return False
    kernel = _kernel()
    return kernel is None or not getattr(kernel, "_allow_stdin", True)


def progress_mode() -> str:
    """How progress shows now: ``"bars"`` (someone watches live), ``"lines"`` (a stored or piped run) or ``"off"``.

    Examples
    --------
    >>> import os
    >>> os.environ["VEMKIT_PROGRESS"] = "lines"
    >>> progress_mode()
    'lines'
    >>> del os.environ["VEMKIT_PROGRESS"]
    """
    forced = os.environ.get("VEMKIT_PROGRESS", "").strip().lower()
    if forced in _MODES:
        return forced
    kernel = _kernel()
    if kernel is not None:  # see headless()
        # a front end sends execute requests with allow_stdin=True; nbclient (papermill, nbconvert,
        # vemkit tour) sends allow_stdin=False: nobody sees a widget there, only the stored output
        return "bars" if getattr(kernel, "_allow_stdin", True) else "lines"
    stream = sys.stderr
    try:
        return "bars" if stream is not None and stream.isatty() else "lines"
    except (AttributeError, ValueError):  # a closed or odd stream
        return "lines"


def progress_bar(iterable=None, *, total=None, desc: str = "", unit: str = "it", unit_scale: bool = False,
             initial: int = 0, disable: bool = False):
    """A progress bar over ``iterable`` (or a manual one of ``total`` steps) that suits where it runs.

    Parameters
    ----------
    iterable : iterable, optional
        Items to go through; without it, advance the bar with ``bar.update(n)``.
    total : int, optional
        Number of steps (default ``len(iterable)`` when it has one).
    desc : str
        What is being done ("measure objects").
    unit : str
        What a step is ("it", "file", "vox").
    unit_scale : bool
        Show large counts as 1.2M (as tqdm's ``unit_scale``).
    initial : int
        Steps already done (a resumed job).
    disable : bool
        Show nothing (a function's ``progress=False``).

    Returns
    -------
    tqdm.tqdm or LineProgress
        Iterable, a context manager, with ``update(n)``, ``set_postfix(**values)`` and ``close()``.

    Examples
    --------
    >>> import contextlib, io, os
    >>> os.environ["VEMKIT_PROGRESS"] = "lines"
    >>> log = io.StringIO()
    >>> with contextlib.redirect_stderr(log):  # outside a notebook the line goes to stderr, as tqdm's bars
    ...     total = sum(progress_bar(range(3), desc="count", unit="number"))
    >>> print(log.getvalue().strip())  # doctest: +ELLIPSIS
    count: 3 numbers done in ... s
    >>> with progress_bar(total=2, desc="quiet", disable=True) as bar:
    ...     bar.update(2)
    >>> del os.environ["VEMKIT_PROGRESS"]
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    mode = "off" if disable else progress_mode()
    if mode == "bars":
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, unit_scale=unit_scale, initial=initial,
                        silent=mode == "off")


def _stream():
    """stdout inside a kernel (a stored notebook shows it plainly), stderr elsewhere (stdout may carry data)."""
    return sys.stdout if _kernel() is not None else sys.stderr


def _count(n, unit_scale):
    if not unit_scale:
        return f"{int(n)}"
    for factor, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{suffix}"
    return f"{n:g}"


class LineProgress:
    """The quiet bar of :func:`progress_bar`: one line when the step ends (and one a minute while it runs).

    Same use as a tqdm bar: iterate over it, or ``update(n)`` and ``close()`` (or use it in ``with``).
    ``silent=True`` prints nothing at all (``progress=False``).
    """

    def __init__(self, iterable=None, *, total=None, desc="", unit="it", unit_scale=False, initial=0,
                 silent=False):
        self.iterable = iterable
        self.total = total
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self.n = initial
        self.initial = initial
        self.silent = silent
        self.postfix = {}
        self.closed = False
        self._t0 = time.perf_counter()
        self._last_line = self._t0

    def __iter__(self):
        try:
            for item in self.iterable:
                self.update(1)  # counted when produced: a zip() over the bar may never ask for the next one
                yield item
        finally:
            self.close()

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n=1):
        """Count ``n`` more steps done."""
        self.n += n
        if self.silent:
            return
        now = time.perf_counter()
        if now - self._last_line >= HEARTBEAT_S:
            self._last_line = now
            done = f"{_count(self.n, self.unit_scale)}/{_count(self.total, self.unit_scale)}" if self.total else \
                _count(self.n, self.unit_scale)
            share = f"{100 * self.n / self.total:.0f}% " if self.total else ""
            self._print(f"{self.desc}: {share}({done} {self._units()}) after {now - self._t0:.0f} s")

    def set_postfix(self, ordered_dict=None, refresh=True, **values):
        """Values shown after the count in the final line (e.g. the last loss)."""
        self.postfix = {**(ordered_dict or {}), **values}

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or ""

    def refresh(self):
        pass

    def close(self):
        """Print the final line (once)."""
        if self.closed:
            return
        self.closed = True
        if self.silent:
            return
        seconds = time.perf_counter() - self._t0
        done = _count(self.n - self.initial, self.unit_scale)
        of = f" of {_count(self.total, self.unit_scale)}" if self.total is not None and self.n != self.total else ""
        resumed = f" (+{_count(self.initial, self.unit_scale)} done before)" if self.initial else ""
        extra = "; " + ", ".join(f"{k} {v}" for k, v in self.postfix.items()) if self.postfix else ""
        self._print(f"{self.desc}: {done}{of} {self._units()} done in {seconds:.1f} s{resumed}{extra}")

    def _units(self):
        return self.unit if self.unit in ("vox",) else f"{self.unit}s" if self.unit != "it" else "steps"

    def _print(self, text):
        stream = _stream()
        if stream is not None:
            print(text.lstrip(": ") if not self.desc else text, file=stream, flush=True)
