"""Corpus readers: every supported format round-trips, and every bad input is a one-line UserError."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from cpt.data.readers import decompress, json_array
from cpt.data.readers.file_list import expand_files
from cpt.data.readers.files import iter_documents
from cpt.data.readers.hf import iter_hf_documents
from cpt.errors import UserError

KEY = "shift.upstream"

DOCS = [
    "The first document.",
    "A second one,\nspanning two lines, with ünïcödé and emoji 🚀.",
    "  leading and trailing spaces are kept  ",
    'quotes " and backslashes \\ survive',
]


def _message(excinfo: pytest.ExceptionInfo, *needles: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert KEY in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def _compress(data: bytes, comp: str | None) -> bytes:
    if comp == "gz":
        return gzip.compress(data)
    if comp == "zst":
        return zstandard.ZstdCompressor().compress(data)
    return data


def _write(path: Path, text: str, comp: str | None = None) -> Path:
    path.write_bytes(_compress(text.encode("utf-8"), comp))
    return path


def _jsonl(records: list) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _txt(docs: list[str]) -> str:
    return "\n\n".join(docs) + "\n"


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("comp", [None, "gz", "zst"])
@pytest.mark.parametrize("kind", ["jsonl", "json-lines", "json-array", "txt"])
def test_text_formats_read_back_exactly(tmp_path: Path, kind: str, comp: str | None) -> None:
    records = [{"text": d, "meta": {"i": i}} for i, d in enumerate(DOCS)]
    # Empty and whitespace documents are dropped, as is a null text.
    records[1:1] = [{"text": ""}, {"text": " \n\t "}, {"text": None}]
    ext, body = {
        "jsonl": ("jsonl", _jsonl(records)),
        "json-lines": ("json", _jsonl(records)),
        "json-array": ("json", json.dumps(records, indent=2, ensure_ascii=False)),
        "txt": ("txt", _txt([d.strip() for d in DOCS])),
    }[kind]
    suffix = f".{ext}" + (f".{comp}" if comp else "")
    path = _write(tmp_path / f"corpus{suffix}", body, comp)
    expected = [d.strip() for d in DOCS] if kind == "txt" else DOCS
    assert list(iter_documents(path, "text", KEY)) == expected


def test_txt_splits_on_blank_lines_of_any_kind(tmp_path: Path) -> None:
    body = "\n\n  one\nline two  \n \t \n\n\n\r\nsecond doc\r\nstill second\r\n\r\n\nthird"
    path = _write(tmp_path / "a.txt", body)
    assert list(iter_documents(path, "text", KEY)) == [
        "  one\nline two  ",
        "second doc\nstill second",
        "third",
    ]


def test_custom_text_field_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + _jsonl([{"content": "x"}, {"content": "y"}]).encode())
    assert list(iter_documents(path, "content", KEY)) == ["x", "y"]


def test_parquet_reads_only_the_text_column(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    table = pa.table(
        {
            "id": list(range(6)),
            "body": [DOCS[0], None, "", DOCS[1], "   ", DOCS[2]],
            "other": ["x"] * 6,
        }
    )
    pq.write_table(table, path, row_group_size=2)
    assert list(iter_documents(path, "body", KEY)) == [DOCS[0], DOCS[1], DOCS[2]]


def test_parquet_large_string_and_dictionary_columns(tmp_path: Path) -> None:
    large = tmp_path / "large.parquet"
    pq.write_table(pa.table({"text": pa.array(DOCS, type=pa.large_string())}), large)
    assert list(iter_documents(large, "text", KEY)) == DOCS
    dictionary = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"text": pa.array(DOCS).dictionary_encode()}), dictionary)
    assert list(iter_documents(dictionary, "text", KEY)) == DOCS


def test_zstd_multi_frame_and_many_chunks(tmp_path: Path, monkeypatch) -> None:
    # The Pile ships concatenated frames; small reads put frame ends inside a read.
    monkeypatch.setattr(decompress, "_READ_BYTES", 97)
    docs = [f"document {i} " + "lorem ipsum " * (i % 50) for i in range(3000)]
    frames = [
        zstandard.ZstdCompressor(level=1).compress(_jsonl([{"text": d} for d in docs[i : i + 700]]).encode())
        for i in range(0, len(docs), 700)
    ]
    path = tmp_path / "pile.jsonl.zst"
    path.write_bytes(b"".join(frames))
    assert path.stat().st_size > 20 * decompress._READ_BYTES
    assert list(iter_documents(path, "text", KEY)) == docs


def test_zstd_streaming_frame_without_content_size(tmp_path: Path) -> None:
    compressor = zstandard.ZstdCompressor().compressobj()
    data = compressor.compress(_jsonl([{"text": d} for d in DOCS]).encode()) + compressor.flush()
    path = tmp_path / "s.jsonl.zst"
    path.write_bytes(data)
    assert list(iter_documents(path, "text", KEY)) == DOCS


def test_json_array_elements_across_buffer_refills(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(json_array, "_JSON_CHUNK_CHARS", 7)
    docs = [f"doc {i} " + "x" * (i * 13) for i in range(40)]
    path = _write(tmp_path / "a.json", json.dumps([{"text": d} for d in docs]))
    assert list(iter_documents(path, "text", KEY)) == docs
    empty_then_more = _write(tmp_path / "b.json", ' [ {"text": "a"} ,\n {"text": "b"} ] \n')
    assert list(iter_documents(empty_then_more, "text", KEY)) == ["a", "b"]


# --------------------------------------------------------------------------- file lists


def test_expand_files_dirs_globs_sorted_deduplicated(tmp_path: Path) -> None:
    (tmp_path / "en" / "sub").mkdir(parents=True)
    (tmp_path / "en" / ".cache").mkdir()
    names = ["en/b.jsonl", "en/a.jsonl.zst", "en/sub/c.txt", "en/sub/d.parquet", "en/README.md",
             "en/.hidden.jsonl", "en/.cache/e.jsonl"]
    for name in names:
        (tmp_path / name).write_text("x")
    en = tmp_path / "en"
    expected = [en / "a.jsonl.zst", en / "b.jsonl", en / "sub" / "c.txt", en / "sub" / "d.parquet"]
    assert expand_files(str(en), KEY) == expected
    assert expand_files([str(en / "sub"), str(en / "*.jsonl*"), str(en / "b.jsonl")], KEY) == expected
    assert expand_files(str(en / "**" / "*.txt"), KEY) == [en / "sub" / "c.txt"]
    assert expand_files(str(tmp_path / "e*"), KEY) == expected  # a matched directory expands
    assert expand_files(en / "b.jsonl", KEY) == [en / "b.jsonl"]  # a PathLike alone


def test_expand_files_relative_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "x.txt").write_text("a")
    monkeypatch.chdir(tmp_path)
    assert expand_files(["x.txt", "./x.txt", "*.txt"], KEY) == [tmp_path / "x.txt"]


def test_expand_files_literal_name_with_glob_characters(tmp_path: Path) -> None:
    path = tmp_path / "part[1].jsonl"
    path.write_text("{}")
    assert expand_files(str(path), KEY) == [path]


def test_expand_files_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.csv").write_text("a,b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        expand_files(str(tmp_path / "missing.jsonl"), KEY)
    _message(e, "missing.jsonl", "does not exist", ".jsonl.zst")
    with pytest.raises(UserError) as e:
        expand_files([str(tmp_path / "nothing" / "*.jsonl")], KEY)
    _message(e, "*.jsonl", "matches no files")
    with pytest.raises(UserError) as e:
        expand_files(str(tmp_path / "notes.csv"), KEY)
    _message(e, "notes.csv", "unsupported", ".jsonl", ".json", ".txt", ".parquet", ".txt.gz", ".json.zst")
    with pytest.raises(UserError) as e:
        expand_files(str(tmp_path / "*.csv"), KEY)
    _message(e, "notes.csv", "unsupported")
    with pytest.raises(UserError) as e:
        expand_files(str(tmp_path / "empty"), KEY)
    _message(e, "empty", "no supported files", ".parquet")
    with pytest.raises(UserError) as e:
        expand_files([], KEY)
    _message(e, "no files")


# --------------------------------------------------------------------------- bad files


def test_unsupported_extension_in_iter_documents(tmp_path: Path) -> None:
    with pytest.raises(UserError) as e:
        iter_documents(tmp_path / "data.csv", "text", KEY)
    _message(e, "data.csv", "supported", ".jsonl.zst")


@pytest.mark.parametrize(
    "name, body",
    [
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n\n"),
        ("empties.jsonl", _jsonl([{"text": ""}, {"text": "  "}])),
        ("empty.json", "[]"),
        ("empty.txt", "\n \n\n"),
        ("empty.jsonl.gz", ""),
        ("empty.txt.zst", ""),
    ],
)
def test_file_without_documents(tmp_path: Path, name: str, body: str) -> None:
    comp = name.rsplit(".", 1)[-1] if name.endswith((".gz", ".zst")) else None
    path = _write(tmp_path / name, body, comp)
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, name, "no documents")


def test_parquet_without_rows(tmp_path: Path) -> None:
    path = tmp_path / "none.parquet"
    pq.write_table(pa.table({"text": pa.array([], type=pa.string())}), path)
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "none.parquet", "no documents")


@pytest.mark.parametrize("ext", ["jsonl", "json", "jsonl.zst"])
def test_record_without_text_field_lists_its_fields(tmp_path: Path, ext: str) -> None:
    comp = "zst" if ext.endswith("zst") else None
    body = _jsonl([{"text": "ok"}, {"content": "x", "meta": 1}])
    path = _write(tmp_path / f"f.{ext}", body, comp)
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, f"f.{ext}", "line 2", "'text'", "'content'", "'meta'")


@pytest.mark.parametrize("chunk", [None, 4])
def test_array_record_without_text_field(tmp_path: Path, monkeypatch, chunk) -> None:
    if chunk:  # line numbers must survive the window sliding
        monkeypatch.setattr(json_array, "_JSON_CHUNK_CHARS", chunk)
    records = [{"text": f"doc {i}"} for i in range(30)] + [{"body": "b"}]
    path = _write(tmp_path / "arr.json", json.dumps(records, indent=1))
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "arr.json", "element 31", "line 92", "'body'", "'text'")


@pytest.mark.parametrize(
    "value, type_name", [(5, "number"), (["a"], "array"), ({"a": 1}, "object"), (True, "boolean")]
)
def test_text_field_not_a_string(tmp_path: Path, value, type_name: str) -> None:
    path = _write(tmp_path / "n.jsonl", _jsonl([{"text": "a"}, {"text": value}]))
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "n.jsonl", "line 2", "'text'", type_name, "not a string")


def test_record_not_an_object(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jsonl", '"just a string"\n')
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "s.jsonl", "line 1", "not an object")


def test_invalid_json_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl.gz", '{"text": "a"}\n\n{"text": "b",}\n', "gz")
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "bad.jsonl.gz", "line 3", "invalid JSON", "one JSON object")


def test_single_pretty_printed_object_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "obj.json", '{\n  "text": "a"\n}\n')
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "obj.json", "line 1", "invalid JSON", "JSON lines or one JSON array")


@pytest.mark.parametrize(
    "body, line, reason",
    [
        ('[{"text": "a"},\n {"text": }]', 2, "invalid JSON"),
        ('[{"text": "a"},\n {"text": "b"}', 2, "ends before the array is closed"),
        ('[{"text": "a"}\n {"text": "b"}]', 2, "expected ','"),
        ('[{"text": "a"},\n]', 2, "trailing comma"),
        ('[{"text": "a"}]\n[]', 2, "extra data"),
        ('[{"text": "a"},\n {"text": "unterminated', 2, "invalid JSON"),
    ],
)
@pytest.mark.parametrize("chunk", [None, 3])
def test_invalid_json_array(tmp_path: Path, monkeypatch, body: str, line: int, reason: str, chunk) -> None:
    if chunk:
        monkeypatch.setattr(json_array, "_JSON_CHUNK_CHARS", chunk)
    path = _write(tmp_path / "arr.json.zst", body, "zst")
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "arr.json.zst", f"line {line}", reason)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("café\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "latin1.txt", "UTF-8")


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "broken.parquet", "not a readable parquet file (")


def test_truncated_parquet(tmp_path: Path) -> None:
    path = tmp_path / "cut.parquet"
    pq.write_table(pa.table({"text": DOCS * 100}), path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "cut.parquet", "parquet")


def test_parquet_missing_and_non_string_column(tmp_path: Path) -> None:
    path = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"content": DOCS, "n": list(range(len(DOCS)))}), path)
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "text", KEY))
    _message(e, "cols.parquet", "'text'", "'content'", "'n'")
    with pytest.raises(UserError) as e:
        list(iter_documents(path, "n", KEY))
    _message(e, "cols.parquet", "'n'", "int64", "not string")


@pytest.mark.parametrize("ext", ["jsonl.gz", "txt.gz"])
def test_corrupt_and_truncated_gzip(tmp_path: Path, ext: str) -> None:
    garbage = tmp_path / f"garbage.{ext}"
    garbage.write_bytes(b"definitely not gzip data")
    with pytest.raises(UserError) as e:
        list(iter_documents(garbage, "text", KEY))
    _message(e, garbage.name, "not a valid gzip file")
    data = gzip.compress(_jsonl([{"text": f"doc {i} " * 20} for i in range(2000)]).encode())
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as e:
        list(iter_documents(cut, "text", KEY))
    _message(e, cut.name, "not a valid gzip file")


@pytest.mark.parametrize("ext", ["jsonl.zst", "txt.zst", "json.zst"])
def test_corrupt_and_truncated_zstd(tmp_path: Path, ext: str) -> None:
    garbage = tmp_path / f"garbage.{ext}"
    garbage.write_bytes(b"definitely not zstd data")
    with pytest.raises(UserError) as e:
        list(iter_documents(garbage, "text", KEY))
    _message(e, garbage.name, "not a valid zstd file")
    data = zstandard.ZstdCompressor().compress(_jsonl([{"text": f"doc {i} " * 20} for i in range(2000)]).encode())
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) - 5])
    with pytest.raises(UserError) as e:
        list(iter_documents(cut, "text", KEY))
    _message(e, cut.name, "not a valid zstd file", "truncated")


# --------------------------------------------------------------------------- Hugging Face path


def test_hf_json_builder_on_local_zst(tmp_path: Path) -> None:
    records = [{"text": d, "meta": {"pile_set_name": "x"}} for d in DOCS] + [{"text": " ", "meta": {"pile_set_name": "x"}}]
    path = _write(tmp_path / "00.jsonl.zst", _jsonl(records), "zst")
    docs = iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(path)])
    assert list(docs) == DOCS


def test_hf_parquet_builder_on_local_files(tmp_path: Path) -> None:
    for i in range(2):
        pq.write_table(pa.table({"text": DOCS[i * 2 : i * 2 + 2], "id": [i, i]}), tmp_path / f"train-{i}.parquet")
    files = [str(tmp_path / f"train-{i}.parquet") for i in range(2)]
    assert list(iter_hf_documents("parquet", None, "train", "text", KEY, data_files=files)) == DOCS


def test_hf_missing_text_field(tmp_path: Path) -> None:
    parquet = tmp_path / "p.parquet"
    pq.write_table(pa.table({"content": DOCS}), parquet)
    with pytest.raises(UserError) as e:
        iter_hf_documents("parquet", None, "train", "text", KEY, data_files=[str(parquet)])
    _message(e, "parquet", "'text'", "'content'")
    jsonl = _write(tmp_path / "j.jsonl", _jsonl([{"body": "a"}]))
    with pytest.raises(UserError) as e:
        list(iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(jsonl)]))
    _message(e, "json", "'text'", "'body'")


def test_hf_non_string_text_and_empty_split(tmp_path: Path) -> None:
    numbers = _write(tmp_path / "n.jsonl", _jsonl([{"text": 1}, {"text": 2}]))
    with pytest.raises(UserError) as e:
        list(iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(numbers)]))
    _message(e, "json", "'text'", "not a string")
    blank = _write(tmp_path / "b.jsonl", _jsonl([{"text": ""}, {"text": "  "}]))
    with pytest.raises(UserError) as e:
        list(iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(blank)]))
    _message(e, "json", "no documents")


def test_hf_bad_split_and_missing_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "j.jsonl", _jsonl([{"text": "a"}]))
    with pytest.raises(UserError) as e:
        iter_hf_documents("json", None, "validation", "text", KEY, data_files=[str(path)])
    _message(e, "json", "validation", "train")
    with pytest.raises(UserError) as e:
        iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(tmp_path / "nope.jsonl")])
    _message(e, "json", "nope.jsonl", "not found")


def test_hf_corrupt_local_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", '{"text": "a"}\n{"text": \n')
    with pytest.raises(UserError) as e:
        list(iter_hf_documents("json", None, "train", "text", KEY, data_files=[str(path)]))
    _message(e, "json", "cannot be read")


def _assert_unreachable(excinfo: pytest.ExceptionInfo, dataset: str) -> None:
    _message(excinfo, dataset, "unreachable from this machine", "shift=files shift.upstream=... shift.downstream=...")


def test_hf_hub_offline_is_one_line(monkeypatch) -> None:
    import datasets
    import huggingface_hub.constants

    # datasets reads the variable at import time, so patch the parsed flag as well.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError) as e:
        iter_hf_documents("monology/pile-uncopyrighted", None, "train", "text", KEY)
    _assert_unreachable(e, "monology/pile-uncopyrighted")
    assert "HF_HUB_OFFLINE" in str(e.value)


@pytest.mark.parametrize("during", ["load", "iteration"])
def test_hf_connection_errors_map_to_unreachable(monkeypatch, during: str) -> None:
    """What datasets raises without offline mode, when the host cannot be resolved (~25 s of
    retries on a real offline machine), simulated here: a builtin ConnectionError whose chain was
    cut (`raise e from None`), or a network error wrapped while streaming."""
    import datasets
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("cpt.data.readers.hf.unreachable_reason", lambda: "")  # past the probe: the hub "answered"

    class Broken:
        features = None

        def __iter__(self):
            try:
                raise LocalEntryNotFoundError("connection lost")
            except LocalEntryNotFoundError as e:
                raise RuntimeError("stream failed") from e

    def fake_load_dataset(*args, **kwargs):
        if during == "load":
            raise ConnectionError("Couldn't reach 'org/data' on the Hub (LocalEntryNotFoundError)") from None
        return Broken()

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(UserError) as e:
        list(iter_hf_documents("org/data", "en", "train", "text", KEY))
    _assert_unreachable(e, "org/data")


def test_hf_other_errors_are_not_swallowed(monkeypatch) -> None:
    import datasets

    def fake_load_dataset(*args, **kwargs):
        raise RuntimeError("a bug, not bad input")

    monkeypatch.setattr("cpt.data.readers.hf.unreachable_reason", lambda: "")
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    with pytest.raises(RuntimeError):
        iter_hf_documents("org/data", None, "train", "text", KEY)


def test_module_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, cpt.data.readers.files, cpt.data.readers.hf; print(int('datasets' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ})
    assert out.stdout.strip() == "0"
