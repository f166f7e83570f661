"""A Hugging Face dataset split, streamed (``streaming=True``), as an iterator of documents.

`path` is a hub id (``monology/pile-uncopyrighted``) or a packaged builder (``"json"``,
``"parquet"``, ``"text"``) reading local `data_files`. A split is read in shards (a streamed
dataset's shards are its files, in order) so workers can read parts of it in parallel. Failures
inside `datasets` become one UserError line: an unreachable hub (pointing at ``shift=files``),
a missing dataset/split/config, an unreadable file; anything else keeps its traceback.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterator

from cpt.data.readers.records import DEFAULT_TEXT_FIELD, non_empty, text_of
from cpt.errors import UserError, short_reason
from cpt.hub import is_unreachable, unreachable_reason

LOCAL_COPIES = "shift=files shift.upstream=... shift.downstream=... reads local copies instead"


def iter_hf_documents(
    path: str,
    name: str | None,
    split: str,
    text_field: str = DEFAULT_TEXT_FIELD,
    key: str = "data",
    data_files: Any = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[str]:
    """Stream the non-empty documents of a Hugging Face dataset split (``streaming=True``).

    `shard` = (index, count) reads only that contiguous part of the split (a streamed dataset's
    shards are its files, in order), so shards 0..count-1 together are the whole split.

    `path` is a hub id (``monology/pile-uncopyrighted``) or a packaged builder (``"json"``,
    ``"parquet"``, ``"text"``) reading `data_files` locally. The dataset is opened now, so a
    missing dataset or an unreachable hub fails at the call; records are checked while
    iterating. Raises UserError when the hub cannot be reached, the dataset/split/config/files
    do not exist, a record lacks `text_field` or holds a non-string there, or the split holds
    no document.
    """
    label = _hf_label(path, name)
    dataset = open_hf_dataset(path, name, split, key, data_files)
    if shard is not None:
        index, count = shard
        dataset = dataset.shard(num_shards=count, index=index, contiguous=True)
        label = f"{label} shard {index + 1}/{count}"
    features = getattr(dataset, "features", None)
    if features is not None and text_field not in features:
        columns = ", ".join(repr(c) for c in list(features)[:30]) or "none"
        raise UserError(
            f"{key}: Hugging Face dataset {label} split '{split}' has no column '{text_field}' "
            f"(its columns: {columns}); the text field must name the column holding the document text"
        )
    source = f"Hugging Face dataset {label} split '{split}'"
    return non_empty(_hf_records(dataset, source, label, split, text_field, key), source, key)


def _hf_label(path: str, name: str | None) -> str:
    return path if name is None else f"{path} (config {name})"


def hf_num_shards(path: str, name: str | None, split: str, key: str = "data", data_files: Any = None) -> int:
    """How many shards (files, for the hub's file-based datasets) the streamed split has."""
    return int(open_hf_dataset(path, name, split, key, data_files).n_shards)


def open_hf_dataset(path: str, name: str | None, split: str, key: str = "data", data_files: Any = None):
    """The streamed split, opened once per process (resolving a hub dataset's files is slow)."""
    frozen = json.dumps(data_files, sort_keys=True) if data_files is not None else None
    return _open_hf_cached(path, name, split, key, frozen)


@functools.lru_cache(maxsize=16)
def _open_hf_cached(path: str, name: str | None, split: str, key: str, data_files_json: str | None):
    label = _hf_label(path, name)
    data_files = json.loads(data_files_json) if data_files_json is not None else None
    try:
        import datasets
    except ImportError as e:
        raise UserError(
            f"{key}: reading the Hugging Face dataset {label} needs the 'datasets' package "
            "(pip install 'cpt[hf]'); or read local copies with shift=files "
            "shift.upstream=... shift.downstream=..."
        ) from e
    reason = unreachable_reason() if data_files is None and not Path(path).exists() else ""
    if reason:  # a hub dataset: fail now, not after the library's retries
        raise UserError(f"{key}: cannot load Hugging Face dataset {label}: the hub is unreachable from this "
                        f"machine ({reason}); {LOCAL_COPIES}")
    try:
        return datasets.load_dataset(path, name, split=split, streaming=True, data_files=data_files)
    except Exception as e:
        raise _hf_user_error(e, label, split, key) from e


def _hf_records(
    dataset: Any, source: str, label: str, split: str, text_field: str, key: str
) -> Iterator[str]:
    index = 0
    iterator = None
    while True:
        try:
            if iterator is None:
                iterator = iter(dataset)
            record = next(iterator)
        except StopIteration:
            return
        except Exception as e:
            raise _hf_user_error(e, label, split, key, reading=True) from e
        index += 1
        yield text_of(record, source, f"record {index}", text_field, key)


def _offline_reason(error: BaseException) -> str:
    try:
        from datasets import config

        if config.HF_HUB_OFFLINE:
            return "offline mode is on: HF_HUB_OFFLINE"
    except ImportError:  # pragma: no cover
        pass
    return short_reason(error, limit=100)


def _hf_user_error(
    error: Exception, label: str, split: str, key: str, reading: bool = False
) -> Exception:
    """The UserError for a failure inside `datasets`, or `error` itself when it is not the user's."""
    if is_unreachable(error):
        return UserError(
            f"{key}: cannot load Hugging Face dataset {label}: the hub is unreachable from this "
            f"machine ({_offline_reason(error)}); {LOCAL_COPIES}"
        )
    if reading:
        import pyarrow as pa
        from datasets.exceptions import DatasetGenerationError

        if isinstance(error, (OSError, DatasetGenerationError, pa.ArrowException)):
            return UserError(
                f"{key}: Hugging Face dataset {label} split '{split}' cannot be read ({short_reason(error)})"
            )
    if isinstance(error, FileNotFoundError):
        return UserError(
            f"{key}: Hugging Face dataset {label} was not found ({short_reason(error)}); give a hub "
            "dataset id you can access, or a builder ('json', 'parquet', 'text') with existing data files"
        )
    if isinstance(error, ValueError) and not reading:
        # datasets reports a bad split, config name or data_files spec as ValueError.
        return UserError(f"{key}: cannot load Hugging Face dataset {label} split '{split}': {short_reason(error)}")
    return error
