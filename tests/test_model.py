import math

import pytest
import torch

from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import PRESETS, get_preset

VOCAB = 257
PADDED_VOCAB = 320  # embedding rows: VOCAB rounded up to a multiple of 64


def hand_count_non_embedding(n_layer: int, d_model: int) -> int:
    """Per block: qkv 3d², proj d², MLP 8d², two LayerNorm weights 2d; plus the final LayerNorm."""
    return n_layer * (12 * d_model**2 + 2 * d_model) + d_model


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_preset_non_embedding_count_is_within_3pct_of_name_and_matches_formula(preset):
    with torch.device("meta"):
        model = GPT(preset.gpt_config(VOCAB, 128))
    counted = model.num_params(non_embedding=True)
    assert counted == hand_count_non_embedding(preset.n_layer, preset.d_model)
    assert abs(counted / preset.nominal_params - 1) <= 0.03
    assert model.num_params(non_embedding=False) == counted + PADDED_VOCAB * preset.d_model + 128 * preset.d_model


def test_study_sizes_and_extrapolation_size_exist():
    for name in ("5M", "12M", "27M", "53M", "106M", "314M", "1B"):
        assert get_preset(name).name == name
    with pytest.raises(KeyError, match="allowed"):
        get_preset("7M")


@pytest.mark.parametrize("name", ["100K", "250K", "600K"])
def test_tiny_presets_run_forward_and_backward_on_cpu(name):
    torch.manual_seed(0)
    model = GPT(get_preset(name).gpt_config(VOCAB, 32))
    idx = torch.randint(0, VOCAB, (2, 32))
    loss = model(idx, targets=torch.roll(idx, -1, dims=1))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_changing_a_future_token_leaves_earlier_logits_unchanged():
    torch.manual_seed(0)
    model = GPT(get_preset("250K").gpt_config(VOCAB, 16)).eval()
    idx = torch.randint(0, VOCAB, (1, 16))
    changed = idx.clone()
    changed[0, 10] = (idx[0, 10] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(idx), model(changed)
    assert torch.equal(before[:, :10], after[:, :10])
    assert not torch.equal(before[:, 10:], after[:, 10:])


def test_untrained_loss_is_near_log_vocab():
    torch.manual_seed(0)
    model = GPT(get_preset("100K").gpt_config(VOCAB, 64))
    idx = torch.randint(0, VOCAB, (4, 64))
    with torch.no_grad():
        loss = model(idx, targets=torch.randint(0, VOCAB, (4, 64)))
    assert abs(loss.item() - math.log(PADDED_VOCAB)) < 0.1  # near uniform over every row, padding included


@pytest.mark.parametrize(("vocab", "rows"), [(257, 320), (320, 320), (600, 640), (32768, 32768), (50257, 50304)])
def test_embedding_rows_are_the_vocabulary_padded_to_a_multiple_of_64(vocab, rows):
    with torch.device("meta"):
        model = GPT(get_preset("100K").gpt_config(vocab, 16))
    assert model.tok_emb.weight.shape[0] == model.lm_head.weight.shape[0] == rows
    assert model.config.vocab_size == vocab


def test_output_projection_is_tied_to_token_embedding():
    model = GPT(get_preset("100K").gpt_config(VOCAB, 16))
    assert model.lm_head.weight is model.tok_emb.weight


def test_bf16_forward_gives_finite_float32_loss():
    torch.manual_seed(0)
    model = GPT(get_preset("100K").gpt_config(VOCAB, 32)).to(torch.bfloat16)
    idx = torch.randint(0, VOCAB, (2, 32))
    loss = model(idx, targets=idx)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
