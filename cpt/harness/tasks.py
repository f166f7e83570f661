"""Embedded multiple-choice tasks: one per synthetic dataset, as lm-eval task files (pure, seeded).

An item is a held-out document prefix (the context) and four continuations of CONT_WORDS words:
the document's own, and three distractors that each swap two different words of the same word
class in it. So every choice has the same words (the same bytes, the same tokens, the same
unigram frequencies) and the same class order; only which word follows which under the
context's topic (the successors of cpt/data/synthetic.py) tells the true continuation apart,
which is what a continual stage on other topics (weak shift) or another language (strong shift)
overwrites. A unigram scorer ties on every item: exactly chance.
The text comes from another split of the dataset's own distribution than training (disjoint).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np

VERSION = 1  # bump when the items change: the task's scores in cache entries are keyed by it
N_ITEMS = 500
CONTEXT_WORDS = 24
CONT_WORDS = 8
N_CHOICES = 4
HELD_OUT_SPLIT = 1_000_003  # a split number no shift uses: text disjoint from every training split


def task_name(dataset: str) -> str:
    return f"cpt-{dataset}"


def items(source: dict, seed: int = 0) -> tuple[list[dict], Counter]:
    """N_ITEMS items from the synthetic `source` ({language, topic_weights, split}) and the word
    counts of the held-out text they come from (what the unigram scorer knows)."""
    from cpt.data.mixture import stable_seed
    from cpt.data.synthetic import SyntheticSpec, documents, language

    spec = SyntheticSpec(source["language"], tuple(source["topic_weights"]),
                         HELD_OUT_SPLIT + int(source.get("split", 0)))
    lang = language(source["language"])
    rng = np.random.default_rng(stable_seed("harness-task", spec, seed, VERSION))
    out, counts = [], Counter()
    for doc in documents(spec):
        words = doc.split()
        counts.update(w.rstrip(".") for w in words)
        item = _item(words, rng, lang.word_class, {w: i for i, w in enumerate(lang.words)})
        if item is not None:
            out.append(item)
        if len(out) == N_ITEMS:
            return out, counts


def _item(words: list[str], rng, word_class, index: dict) -> dict | None:
    """The first window of the document whose continuation has no sentence end and at least
    N_CHOICES - 1 swaps of two different words of one class; the distractors are such swaps."""
    for start in range(CONTEXT_WORDS, len(words) - CONT_WORDS + 1):
        cont = words[start:start + CONT_WORDS]
        if any(w.endswith(".") for w in cont):
            continue
        cls = [word_class[index[w]] for w in cont]
        swaps = [(i, j) for i in range(CONT_WORDS) for j in range(i + 1, CONT_WORDS)
                 if cls[i] == cls[j] and cont[i] != cont[j]]
        if len(swaps) >= N_CHOICES - 1:
            break
    else:
        return None
    choices = [cont]
    for k in rng.choice(len(swaps), size=N_CHOICES - 1, replace=False):
        i, j = swaps[k]
        swapped = list(cont)
        swapped[i], swapped[j] = cont[j], cont[i]
        choices.append(swapped)
    order = rng.permutation(N_CHOICES)  # the answer's position is uniform
    return {"context": " ".join(words[start - CONTEXT_WORDS:start]),
            "choices": [" ".join(choices[k]) for k in order], "gold": int(np.flatnonzero(order == 0)[0])}


def write_task(root: Path, dataset: str, source: dict) -> tuple[Path, dict]:
    """The task's directory under `root` (written once, atomically: YAML + test.jsonl + its
    unigram baseline) and its baseline record. Its name holds a hash of what made it."""
    from cpt.store.atomic import atomic_dir

    digest = hashlib.sha256(json.dumps([source, VERSION], sort_keys=True).encode()).hexdigest()[:10]
    path = Path(root) / f"{task_name(dataset)}-{digest}"
    if not (path / "baseline.json").is_file():
        its, counts = items(source)
        with atomic_dir(path) as tmp:
            (tmp / "test.jsonl").write_text("".join(json.dumps(i) + "\n" for i in its))
            (tmp / "task.yaml").write_text(_yaml(task_name(dataset), path / "test.jsonl", source))
            base = {"unigram_acc": unigram_accuracy(its, counts), "n": len(its), "chance": 1 / N_CHOICES}
            (tmp / "baseline.json").write_text(json.dumps(base))
    return path, json.loads((path / "baseline.json").read_text())


def _yaml(name: str, data: Path, source: dict) -> str:
    return f"""# cpt embedded task (cpt/harness/tasks.py), made from synthetic source {json.dumps(source)}
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {json.dumps(str(Path(data).resolve()))}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
target_delimiter: " "
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: {VERSION}
"""


def unigram_accuracy(its: list[dict], counts: Counter) -> float:
    """Accuracy of the context-free scorer: the choice with the highest sum of log word
    frequencies, add-one smoothed (ties split evenly). Near chance: frequency alone cannot pick it."""
    total = sum(counts.values()) + len(counts) + 1
    score = 0.0
    for it in its:
        s = np.array([sum(math.log((counts[w] + 1) / total) for w in c.split()) for c in it["choices"]])
        best = np.flatnonzero(np.isclose(s, s.max()))
        score += (it["gold"] in best) / len(best)
    return score / len(its)
