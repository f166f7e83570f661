"""The chain's one tokenizer: chosen by the `tokenizer` key, never by whether the network answers.

- `bpe`: a byte-level BPE trained on D0's training text with Hugging Face `tokenizers`. Bytes are
  its base alphabet, so no text can map to an unknown token; it is cached by D0's identity and
  vocabulary size and reused unchanged for every later dataset (the papers kept one tokenizer).
- `gpt-neox-20b`: the papers' tokenizer, from the hub (a clear error offline).
- anything else: a path to a `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable

from cpt.errors import UserError, short_reason
from cpt.store.atomic import atomic_dir

EOS = "<|endoftext|>"
HUB_IDS = {"gpt-neox-20b": "EleutherAI/gpt-neox-20b"}


def fingerprint(tok) -> str:
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]


def eos_id(tok) -> int:
    i = tok.token_to_id(EOS)
    if i is None:
        raise UserError(f"tokenizer: has no {EOS!r} token; allowed: a tokenizer with it "
                        "(it separates documents; the bpe and gpt-neox-20b tokenizers have it)")
    return i


def train_bpe(docs: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    return tok


def load_tokenizer(choice: str, cache_root: Path, d0_identity: dict, vocab_size: int,
                   d0_docs: Callable[[], Iterable[str]] | None):
    """Return the tokenizer the `tokenizer` key names, training/caching a BPE if needed
    (`d0_docs` None: train nothing, None if the BPE is not there yet)."""
    from tokenizers import Tokenizer

    if choice == "bpe":
        key = hashlib.sha256(json.dumps([d0_identity, vocab_size], sort_keys=True).encode()).hexdigest()[:16]
        path = cache_root / f"bpe-{vocab_size}-{key}"
        if not (path / "tokenizer.json").exists():
            if d0_docs is None:
                return None
            tok = train_bpe(d0_docs(), vocab_size)
            with atomic_dir(path) as tmp:
                tok.save(str(tmp / "tokenizer.json"))
        return Tokenizer.from_file(str(path / "tokenizer.json"))
    if choice in HUB_IDS:
        return _from_hub(HUB_IDS[choice])
    p = Path(choice)
    if p.is_dir():
        p = p / "tokenizer.json"
    if not p.is_file():
        raise UserError(f"tokenizer={choice}: no such file; allowed: bpe, {', '.join(HUB_IDS)}, "
                        "or a path to a tokenizer.json")
    try:
        return Tokenizer.from_file(str(p))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise UserError(f"tokenizer={choice}: not a valid tokenizer.json ({str(e)[:80]}); allowed: a "
                        "tokenizer.json saved by Hugging Face tokenizers") from None


def _from_hub(repo: str):
    from huggingface_hub import hf_hub_download
    from tokenizers import Tokenizer

    from cpt.hub import unreachable_reason

    reason = unreachable_reason()  # then only a copy in the local HF cache will do, found at once
    try:
        return Tokenizer.from_file(hf_hub_download(repo, "tokenizer.json", local_files_only=bool(reason)))
    except Exception as e:
        raise UserError(
            f"tokenizer: cannot fetch {repo} from the Hugging Face hub ({reason or short_reason(e, 100)}); "
            "use tokenizer=<path to a tokenizer.json> or tokenizer=bpe"
        ) from None
