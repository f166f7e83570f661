"""Where a dataset's documents come from, by `source.type`."""

from __future__ import annotations

from typing import Iterator

from cpt.errors import UserError

SOURCE_TYPES = ("synthetic",)


def documents(source: dict, key: str) -> Iterator[str]:
    kind = source.get("type")
    if kind == "synthetic":
        from cpt.data.synthetic import SyntheticSpec, documents as synthetic_documents

        try:
            spec = SyntheticSpec(str(source["language"]), tuple(float(w) for w in source["topic_weights"]),
                                 int(source.get("split", 0)))
        except KeyError as e:
            raise UserError(f"{key}.{e.args[0]}: required for a synthetic source") from None
        if spec.language not in ("en", "de"):
            raise UserError(f"{key}.language={spec.language}: allowed en, de")
        return synthetic_documents(spec)
    raise UserError(f"{key}.type={kind}: allowed {', '.join(SOURCE_TYPES)}")
