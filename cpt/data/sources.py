"""Where a dataset's documents come from, by `source.type`, cut into independently readable units.

Source dicts (their contents identify the data; `shift.datasets.<i>.source` in the config):

- `synthetic`: {language, topic_weights, split} — generated, seeded, offline (cpt/data/synthetic.py).
- `files`: {paths, text_field} — `paths` is a file, directory or glob, or a list of them, of
  .jsonl/.json/.txt/.parquet (+ .gz/.zst); `text_field` names the JSON field / parquet column.
- `hf`: {path, name, split, text_field, data_files} — a Hugging Face dataset streamed by id
  (`path`), config (`name`) and split; or a packaged builder (`json`, `parquet`, `text`) reading
  `data_files`, which is how tests run the hub path on local files of the hub's format.

A source is read as a list of **units** that can be tokenized independently, in parallel, and
resumed one by one: one unit per file for `files`, one per shard of the streamed split for `hf`
(a hub dataset's shards are its files, e.g. the Pile's 30 `train/NN.jsonl.zst`), and one for
`synthetic`. Reading the units in order gives the source's documents in order.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Iterator

from cpt.errors import UserError

SOURCE_TYPES = ("synthetic", "files", "hf")
# type -> (required keys, optional keys with their defaults)
_KEYS = {
    "synthetic": (("language", "topic_weights"), {"split": 0}),
    "files": (("paths",), {"text_field": "text"}),
    "hf": (("path",), {"name": None, "split": "train", "text_field": "text", "data_files": None}),
}


def check_source(source, key: str) -> dict:
    """The source with its optional keys filled in; one UserError line for a malformed one."""
    if not isinstance(source, dict):
        raise UserError(f"{key}={source!r}: expected a mapping with a 'type' ({', '.join(SOURCE_TYPES)})")
    kind = source.get("type")
    if kind not in _KEYS:
        raise UserError(f"{key}.type={kind}: allowed {', '.join(SOURCE_TYPES)}")
    required, optional = _KEYS[kind]
    for k in required:
        if source.get(k) in (None, "", []):
            hint = (" (with shift=files: shift.upstream=<files, dirs or globs> shift.downstream=<...>)"
                    if kind == "files" else "")
            raise UserError(f"{key}.{k}: required for a {kind} source{hint}")
    unknown = sorted(set(source) - {"type", *required, *optional})
    if unknown:
        raise UserError(f"{key}.{unknown[0]}: unknown key of a {kind} source; allowed: "
                        f"{', '.join(sorted({'type', *required, *optional}))}")
    if kind == "synthetic" and source["language"] not in ("en", "de"):
        raise UserError(f"{key}.language={source['language']}: allowed en, de")
    return {**optional, **source}


@dataclass(frozen=True)
class Unit:
    """One independently readable piece of a source (picklable: it crosses to worker processes)."""

    kind: str  # synthetic | file | hf
    label: str  # for messages and the progress bar
    key: str  # the config key named in errors
    args: dict = field(default_factory=dict, hash=False, compare=False)

    def documents(self) -> Iterator[str]:
        a = self.args
        if self.kind == "synthetic":
            from cpt.data.synthetic import SyntheticSpec, documents

            return documents(SyntheticSpec(a["language"], tuple(a["topic_weights"]), a["split"]))
        if self.kind == "file":
            from cpt.data.readers.files import iter_documents

            return iter_documents(a["path"], a["text_field"], self.key)
        from cpt.data.readers.hf import iter_hf_documents

        return iter_hf_documents(a["path"], a["name"], a["split"], a["text_field"], self.key,
                                 data_files=a["data_files"], shard=(a["index"], a["count"]))

    def identity(self) -> dict:
        """What determines this unit's documents (a file: its path, size and modification time)."""
        if self.kind == "file":
            st = os.stat(self.args["path"])
            return {**self.args, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return dict(self.args)


def units(source: dict, key: str) -> list[Unit]:
    """The source's units in reading order (globs resolved, the hub dataset opened: bad paths,
    missing files and an unreachable hub fail here, with one line)."""
    s = check_source(source, key)
    kind = s["type"]
    if kind == "synthetic":
        args = {"language": s["language"], "topic_weights": [float(w) for w in s["topic_weights"]],
                "split": int(s["split"])}
        return [Unit("synthetic", f"synthetic {s['language']} split {s['split']}", key, args)]
    if kind == "files":
        from cpt.data.readers.file_list import expand_files

        files = expand_files(s["paths"], f"{key}.paths")
        return [Unit("file", str(p), f"{key}.paths", {"path": str(p), "text_field": str(s["text_field"])})
                for p in files]
    from cpt.data.readers.hf import hf_num_shards

    data_files = s["data_files"]
    count = hf_num_shards(s["path"], s["name"], s["split"], key, data_files)
    base = {"path": s["path"], "name": s["name"], "split": s["split"], "text_field": s["text_field"],
            "data_files": data_files, "count": count}
    return [Unit("hf", f"{s['path']} shard {i + 1}/{count}", key, {**base, "index": i}) for i in range(count)]


def documents(source: dict, key: str) -> Iterator[str]:
    """All documents of a source, in order (lazily: the BPE trainer reads only the first ones)."""
    return itertools.chain.from_iterable(u.documents() for u in units(source, key))


def source_identity(source: dict, key: str = "source") -> dict:
    """What determines a source's documents, for cache keys: the source itself, plus for local
    files a fingerprint of every matched file (path, size, mtime), so adding, removing or
    rewriting a file is never mistaken for the data a cache entry was built from."""
    s = check_source(source, key)
    if s["type"] != "files":
        return dict(source)
    ids = [u.identity() for u in units(s, key)]
    digest = hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()[:16]
    return {**s, "files": len(ids), "files_sha": digest}
