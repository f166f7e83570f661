"""Corpus readers: a user's files on disk, or a Hugging Face dataset, as an iterator of documents.

This package only turns storage into document strings; tokenizing, splitting and training live
elsewhere. Every problem a user can fix raises `cpt.errors.UserError` with one line naming the
config key, the file (or dataset id) and what is allowed. Entry points: `file_list.expand_files`
(a `files` source's entries -> files), `files.iter_documents` (one file -> documents),
`hf.iter_hf_documents` and `hf.hf_num_shards` (a streamed Hugging Face split).
"""
