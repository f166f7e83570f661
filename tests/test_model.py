"""Model sizes against the published Pythia / 2403.08763 figures, and the architecture flags."""

import pytest
import yaml

from cpt.model.spec import ModelSpec, build_model, flops_per_token, n_params

from conftest import CONF

# Published total parameter counts (Pythia model cards / Biderman et al. 2023, GPT-NeoX-20B
# tokenizer padded to 50304 rows) and 2403.08763's "9.6B parameters including embeddings".
PUBLISHED = {
    "pythia-14m": 14_067_712,
    "pythia-70m": 70_426_624,
    "pythia-160m": 162_322_944,
    "pythia-410m": 405_334_016,
    "neox-10b": 9.6e9,
}
NEOX_TOKENIZER = 50277


def spec(name: str) -> ModelSpec:
    return ModelSpec(**yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text()))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_published(name):
    s = spec(name)
    vocab = s.padded_vocab(NEOX_TOKENIZER)
    model = build_model(s, vocab, device="meta")  # the 10B never touches real memory
    built = sum(p.numel() for p in model.parameters())
    assert built == n_params(s, vocab)
    assert built == pytest.approx(PUBLISHED[name], rel=0.01)


def test_pythia_vocab_padding():
    assert spec("pythia-410m").padded_vocab(NEOX_TOKENIZER) == 50304
    assert spec("neox-10b").padded_vocab(NEOX_TOKENIZER) == 50432


def test_architecture_is_pythia():
    model = build_model(spec("tiny"), 1024)
    cfg = model.config
    assert cfg.model_type == "gpt_neox"
    assert cfg.use_parallel_residual is True
    assert cfg.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()
    assert cfg.hidden_dropout == 0.0 and cfg.attention_dropout == 0.0
    rotary = getattr(cfg, "rotary_pct", None) or cfg.rope_parameters.get("partial_rotary_factor")
    assert rotary == 0.25


def test_flops_per_token_is_6n_plus_attention():
    s = spec("pythia-410m")
    v = 50304
    n_no_embed = n_params(s, v) - v * s.d_model
    assert flops_per_token(s, v) == 6 * n_no_embed + 12 * 24 * 1024 * 2048
