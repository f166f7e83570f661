"""The short forms of `shift=files`, turned into the ordinary `shift.datasets` list.

Two datasets (conf/shift/files.yaml interpolates these into datasets 0 and 1):

    python run.py shift=files shift.upstream='data/en/*.jsonl' shift.downstream='data/de/*.jsonl'

Any number of datasets, in chain order (each entry a file, directory, glob, or a list of them):

    python run.py shift=files 'shift.paths=[data/pile,data/sp1,data/sp2]' 'shift.names=[pile,sp1,sp2]'

Works on the plain dict of the composed config, before the schema is built (cpt/config/schema.py).
"""

from __future__ import annotations

from cpt.errors import UserError


def expand_shift(data: dict) -> dict:
    shift = data.get("shift")
    if not isinstance(shift, dict):
        return data
    paths, names = shift.get("paths"), shift.get("names")
    if paths is None:
        if names is not None:
            raise UserError("shift.names: only used with shift.paths=[...] (the list form of shift=files)")
        if "upstream" in shift:  # shift=files in its two-dataset form
            for k, what in (("upstream", "D0, trained first"), ("downstream", "D1, trained next")):
                if shift.get(k) in (None, "", []):
                    raise UserError(f"shift.{k}: required with shift=files: the files, directories or globs "
                                    f"of {what} (or shift.paths=[...] for any number of datasets)")
        return data
    if not isinstance(paths, list) or len(paths) < 2:
        raise UserError(f"shift.paths={paths!r}: allowed a list of at least 2 entries, one per dataset "
                        "(each a file, directory or glob, or a list of them)")
    if shift.get("upstream") is not None or shift.get("downstream") is not None:
        raise UserError("shift.paths: give either shift.paths=[...] or shift.upstream/shift.downstream, not both")
    names = [f"d{i}" for i in range(len(paths))] if names is None else names
    if not isinstance(names, list) or len(names) != len(paths):
        raise UserError(f"shift.names={names!r}: allowed a list of {len(paths)} names, one per shift.paths entry")
    for key in ("tokens", "val_tokens"):
        if shift.get(key) is None:
            raise UserError(f"shift.{key}: required with shift.paths (the budget of every dataset)")
    datasets = [
        {"name": str(n), "tokens": shift["tokens"], "val_tokens": shift["val_tokens"],
         "source": {"type": "files", "paths": p, "text_field": shift.get("text_field", "text")}}
        for n, p in zip(names, paths)
    ]
    return {**data, "shift": {**shift, "datasets": datasets}}
