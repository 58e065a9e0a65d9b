"""The diagnostic measures against hand-built cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from plasticity_dist.study.errors import ConfigError
from plasticity_dist.train.callbacks.diagnostic_measures import (
    attention_entropy, dormant_scores, duplicate_ratio, effective_rank, feature_moments, gradient_scores,
    moment_drift, saturated_ratio, spectral_norm, srank, top_hessian_eigenvalue, weight_spectrum,
)
from plasticity_dist.train.callbacks.diagnostics import heldout_batch, layer_of
from plasticity_dist.train.callbacks.mitigations import seeded_generator
from runs import build_tiny_data


def test_dormant_scores_find_the_dead_units_of_a_layer():
    hidden = torch.randn(4, 16, 10, generator=torch.Generator().manual_seed(0))
    hidden[..., [2, 7]] = 0.0  # dead
    hidden[..., 5] *= 0.01  # nearly dead: score ~0.01 of the mean
    scores = dormant_scores(hidden)
    assert torch.nonzero(scores <= 0.1).flatten().tolist() == [2, 5, 7]
    assert scores.mean().item() == pytest.approx(1.0)


def test_gradient_scores_find_the_units_that_stopped_learning():
    norms = torch.tensor([1.0, 1.0, 0.0, 2.0, 0.05])
    scores = gradient_scores(norms)
    assert torch.nonzero(scores <= 0.1).flatten().tolist() == [2, 4]
    assert scores.mean().item() == pytest.approx(1.0)


def test_saturated_ratio_counts_units_stuck_in_gelus_flat_region():
    pre = torch.randn(2, 50, 8, generator=torch.Generator().manual_seed(0))
    pre[..., 1] = -5.0  # always flat
    pre[..., 3] = -5.0
    pre[0, 0, 3] = 0.5  # one input in 100 leaves the flat region: still saturated at share 0.99
    pre[..., 6] = -5.0
    pre[0, :5, 6] = 1.0  # five in 100: not saturated
    assert saturated_ratio(pre, share=0.99) == pytest.approx(2 / 8)
    assert saturated_ratio(pre, share=0.95) == pytest.approx(3 / 8)


def test_duplicate_ratio_finds_copied_and_scaled_units_but_not_dead_ones():
    hidden = torch.randn(3, 40, 6, generator=torch.Generator().manual_seed(1))
    hidden[..., 4] = 2.0 * hidden[..., 0] + 1.0  # a scaled copy: correlation 1
    hidden[..., 5] = 0.0  # dead: varies with nothing
    assert duplicate_ratio(hidden, threshold=0.95) == pytest.approx(2 / 6)
    hidden[..., 4] = -hidden[..., 0]  # anti-correlated is not a duplicate
    assert duplicate_ratio(hidden, threshold=0.95) == 0.0


def test_moment_drift_is_zero_unchanged_and_the_shift_in_units_of_the_spread():
    features = torch.randn(4000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    start = feature_moments(features)
    assert moment_drift(start, start) == 0.0
    shifted = feature_moments(features + 2.0)  # every mean moves by 2 spreads of 1
    assert moment_drift(shifted, start) == pytest.approx(2.0, rel=0.05)
    widened = feature_moments(features * 3.0)  # spread 1 -> 3: W2 = |3 - 1| per feature, means ~0
    assert moment_drift(widened, start) == pytest.approx(2.0, rel=0.05)


def test_spectral_norm_and_stable_rank_of_a_rank_one_and_an_orthogonal_layer():
    rank_one = torch.outer(torch.tensor([1.0, 2.0, 2.0]), torch.tensor([0.0, 3.0, 4.0, 0.0]))  # 3 * 5
    assert weight_spectrum(rank_one) == pytest.approx((15.0, 1.0))
    assert weight_spectrum(2.0 * torch.eye(5)) == pytest.approx((2.0, 5.0))
    assert weight_spectrum(torch.zeros(3, 3)) == (0.0, 0.0)


@pytest.mark.parametrize("shape", [(7, 3), (3, 7)])
def test_spectral_norm_is_the_largest_singular_value_on_either_side(shape):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(4))
    assert spectral_norm(weight) == pytest.approx(torch.linalg.svdvals(weight.double())[0].item(), rel=1e-12)


def test_top_hessian_eigenvalue_of_a_quadratic_loss():
    hessian = torch.diag(torch.tensor([1.0, -7.0, 3.0], dtype=torch.float64))
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    hessian = rotation @ hessian @ rotation.T
    weights = torch.randn(3, dtype=torch.float64, requires_grad=True)
    loss = 0.5 * weights @ hessian @ weights
    found = top_hessian_eigenvalue(loss, [weights], iterations=60, generator=torch.Generator().manual_seed(0))
    assert found == pytest.approx(-7.0, rel=1e-6)  # the largest in magnitude, with its sign


def test_srank_of_a_matrix_of_known_rank():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(200, 3, generator=generator) @ torch.randn(3, 24, generator=generator)
    assert srank(features) == 3
    assert srank(torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0])), delta=0.15) == 3  # 0.4, 0.7, 0.9 >= 0.85
    assert srank(torch.zeros(5, 5)) == 0


def test_effective_rank_counts_equal_directions():
    assert effective_rank(torch.eye(6) * 3.0) == pytest.approx(6.0)
    assert effective_rank(torch.outer(torch.ones(8), torch.arange(1.0, 5.0))) == pytest.approx(1.0)


def test_attention_entropy_of_uniform_causal_attention_is_mean_log_prefix_length():
    seq = 300  # more than one query chunk
    q = torch.zeros(2, 3, seq, 8)
    k = torch.randn(2, 3, seq, 8)
    expected = sum(math.log(i + 1) for i in range(seq)) / seq
    assert attention_entropy(q, k) == pytest.approx(expected, rel=1e-5)


def test_attention_entropy_is_zero_when_every_query_looks_at_one_key():
    seq = 6
    k = torch.eye(seq)[None, None] * 1e4
    q = torch.eye(seq)[None, None]
    assert attention_entropy(q, k) == pytest.approx(0.0, abs=1e-6)


def test_layer_of_parameter_names():
    assert layer_of("blocks.11.mlp.up.weight") == 11
    assert layer_of("tok_emb.weight") is None


def test_seeded_generators_repeat_and_differ():
    draw = lambda *parts: torch.randn(4, generator=seeded_generator(*parts))
    assert torch.equal(draw(0, 10, 1), draw(0, 10, 1))
    assert not torch.equal(draw(0, 10, 1), draw(0, 10, 2))


def test_heldout_batch_takes_rows_in_turn_from_each_validation_split(tmp_path):
    root = build_tiny_data(tmp_path, languages=("en", "zh"), tokens=4000)
    batch = heldout_batch([str(root / "en"), str(root / "zh"), str(root / "en")], seq_len=32, size=5)
    assert batch.shape == (5, 32)
    en, zh = (heldout_batch([str(root / lang)], seq_len=32, size=3) for lang in ("en", "zh"))
    assert torch.equal(batch[0], en[0]) and torch.equal(batch[1], zh[0]) and torch.equal(batch[4], en[2])


def test_heldout_batch_without_a_validation_split_names_the_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere/val does not exist"):
        heldout_batch([str(tmp_path / "nowhere")], seq_len=32, size=4)
