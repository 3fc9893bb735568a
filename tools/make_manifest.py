"""Regenerate the shared-data entries of data_manifest.json from ../shared/data/*/sources.json.

The file list (URL pinned to a commit, SHA-256, size) of each shared dataset is copied verbatim from
its sources.json; everything else in the manifest (external datasets, layouts, licences) is kept. A
shared dataset without an entry is reported: its entry's description is written by hand first.
``helpers/vemkit/data_manifest.json`` is a symlink to the project's file, so one run updates both.
Run from the project root: ``python tools/make_manifest.py [--shared ../shared/data]``.
"""

import argparse
import json
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--manifest", default="data_manifest.json")
    args = parser.parse_args()
    manifest_path = Path(args.manifest)
    manifest = json.loads(manifest_path.read_text())
    for name, entry in manifest["datasets"].items():
        src = Path(args.shared) / name / "sources.json"
        if not src.exists():
            continue
        sources = json.loads(src.read_text())
        entry["source"] = {"repository": sources["repository"], "commit": sources["commit"]}
        entry["files"] = [
            {"path": f["repo_path"], "url": f["url"], "sha256": f["sha256"], "size": f["bytes"]}
            for f in sorted(sources["files"], key=lambda f: f["repo_path"])
        ]
        print(f"{name}: {len(entry['files'])} files, {sum(f['size'] for f in entry['files'])} bytes")
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    for src in sorted(Path(args.shared).glob("*/sources.json")):
        if src.parent.name not in manifest["datasets"]:
            print(f"{src.parent.name}: in {args.shared} but not in the manifest; add its entry (title, modality, "
                  "voxel size and its source, licence, citation, volumes) by hand, then run this again")


if __name__ == "__main__":
    main()
