"""Random forests stored as plain arrays (``forest.npz``) and rebuilt without unpickling anything.

A scikit-learn tree is a handful of node arrays (children, split feature, threshold, ...) and a value
array; :func:`save_forest` writes them for every tree into one compressed ``.npz`` (numeric arrays
only) and returns the small JSON-ready description that goes into ``config.json``. :func:`load_forest`
reads them with ``allow_pickle=False``, checks every node (children inside the tree and after their
parent, split features in range, finite values) before scikit-learn's C code sees them, and rebuilds
the estimators through ``sklearn.tree._tree.Tree.__setstate__`` (the same dict of arrays that
scikit-learn's own pickles carry). The rebuilt forest is an ordinary scikit-learn estimator
(``predict_proba``, ``feature_importances_``) and predicts exactly what the saved one did.

Why not pickle/joblib: loading a pickle runs whatever code it names. Why not skops: it is an extra
dependency whose safety rests on a list of trusted types; these arrays need neither.

Not for: training or applying forests (:mod:`vemkit.pixel_classifier`).
"""

from __future__ import annotations

import numpy as np

FOREST_FILE = "forest.npz"
FORMAT = "vemkit.forest.npz/1"

_INT_FIELDS = ("left_child", "right_child", "feature", "n_node_samples")
_FLOAT_FIELDS = ("threshold", "impurity", "weighted_n_node_samples")
_TREE_PARAMS = ("criterion", "splitter", "max_depth", "min_samples_split", "min_samples_leaf",
                "min_weight_fraction_leaf", "max_features", "max_leaf_nodes", "min_impurity_decrease",
                "class_weight", "ccp_alpha", "monotonic_cst")


class ForestFileError(ValueError):
    """A ``forest.npz`` that is not a forest vemkit wrote (damaged or crafted)."""


def _kinds():
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

    return {"extra_trees": (ExtraTreesClassifier, ExtraTreeClassifier),
            "random_forest": (RandomForestClassifier, DecisionTreeClassifier)}


def save_forest(forest, path) -> dict:
    """Write the trees of a fitted single-output forest classifier to ``path`` (.npz).

    Returns
    -------
    dict
        ``format``, ``kind``, ``n_features``, ``classes``, ``tree_params`` and ``max_depths``: what
        :func:`load_forest` needs besides the arrays (JSON-ready).
    """
    kind = next((k for k, (cls, _) in _kinds().items() if type(forest) is cls), None)
    if kind is None or getattr(forest, "n_outputs_", 1) != 1:
        raise ValueError(f"only fitted single-output ExtraTrees/RandomForest classifiers are stored, got {forest!r}")
    trees = [est.tree_ for est in forest.estimators_]
    arrays = {"node_offsets": np.cumsum([0] + [t.node_count for t in trees]).astype(np.int64)}
    for name in _INT_FIELDS + _FLOAT_FIELDS + ("missing_go_to_left",):
        arrays[name] = np.concatenate([t.__getstate__()["nodes"][name] for t in trees])
    arrays["values"] = np.concatenate([t.value for t in trees]).astype(np.float64)
    np.savez_compressed(path, **arrays)
    params = forest.estimators_[0].get_params()
    return {
        "format": FORMAT,
        "kind": kind,
        "n_features": int(forest.n_features_in_),
        "classes": [int(c) for c in forest.classes_],
        "tree_params": {k: params[k] for k in _TREE_PARAMS if k in params},
        "max_depths": [int(t.max_depth) for t in trees],
    }


def _check_tree(nodes, values, n_features, n_classes, label):
    n = len(nodes)
    left, right, feature = nodes["left_child"], nodes["right_child"], nodes["feature"]
    leaf = left == -1
    idx = np.arange(n)
    bad = (leaf != (right == -1)) | (~leaf & ((left <= idx) | (right <= idx) | (left >= n) | (right >= n)))
    bad |= ~leaf & ((feature < 0) | (feature >= n_features))
    bad |= ~leaf & ~np.isfinite(nodes["threshold"])
    if n == 0 or bad.any():
        where = int(np.argmax(bad)) if bad.any() else 0
        raise ForestFileError(f"{label}: node {where} of {n} is not a valid tree node (damaged or crafted file)")
    if values.shape != (n, 1, n_classes) or not np.isfinite(values).all():
        raise ForestFileError(f"{label}: values of shape {values.shape} do not fit {n} nodes and {n_classes} classes")


def load_forest(path, meta: dict):
    """Rebuild the forest that :func:`save_forest` wrote to ``path`` with description ``meta``.

    Raises
    ------
    ForestFileError
        When the file or its description is not a forest vemkit wrote (nothing in it is executed).
    """
    from sklearn.tree._tree import NODE_DTYPE, Tree

    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("kind") not in _kinds():
        raise ForestFileError(f"{path}: config.json does not describe a {FORMAT} forest")
    forest_cls, tree_cls = _kinds()[meta["kind"]]
    n_features, classes = int(meta["n_features"]), np.asarray(meta["classes"], dtype=np.int64)
    n_classes = len(classes)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise ForestFileError(f"{path}: not a readable array file ({err})") from None
    offsets = arrays.get("node_offsets")
    needed = ("values", "missing_go_to_left", *_INT_FIELDS, *_FLOAT_FIELDS)
    if offsets is None or any(k not in arrays for k in needed) or len(offsets) != len(meta["max_depths"]) + 1:
        raise ForestFileError(f"{path}: arrays missing or inconsistent with config.json")
    total = int(offsets[-1])
    if any(len(arrays[k]) != total for k in needed) or np.any(np.diff(offsets) <= 0) or offsets[0] != 0:
        raise ForestFileError(f"{path}: node arrays of different lengths")
    nodes_all = np.zeros(total, dtype=NODE_DTYPE)
    for name in NODE_DTYPE.names:
        if name in arrays:
            nodes_all[name] = arrays[name]
    tree_params = dict(meta.get("tree_params", {}))
    estimators = []
    for i, depth in enumerate(meta["max_depths"]):
        a, b = int(offsets[i]), int(offsets[i + 1])
        nodes, values = nodes_all[a:b].copy(), np.ascontiguousarray(arrays["values"][a:b], dtype=np.float64)
        _check_tree(nodes, values, n_features, n_classes, f"{path}: tree {i}")
        tree = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
        tree.__setstate__({"max_depth": int(depth), "node_count": b - a, "nodes": nodes, "values": values})
        est = tree_cls(**tree_params)
        est.tree_, est.n_features_in_, est.n_outputs_ = tree, n_features, 1
        est.classes_, est.n_classes_ = classes.copy(), n_classes
        est.max_features_ = _max_features(tree_params.get("max_features"), n_features)
        estimators.append(est)
    forest = forest_cls(n_estimators=len(estimators), n_jobs=-1)
    forest.estimators_, forest.estimator_ = estimators, tree_cls(**tree_params)
    forest.classes_, forest.n_classes_, forest.n_outputs_, forest.n_features_in_ = classes, n_classes, 1, n_features
    return forest


def _max_features(value, n_features):
    if value == "sqrt":
        return max(1, int(np.sqrt(n_features)))
    if value == "log2":
        return max(1, int(np.log2(n_features)))
    if isinstance(value, float):
        return max(1, int(value * n_features))
    if isinstance(value, int):
        return value
    return n_features
