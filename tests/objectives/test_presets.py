"""Presets and ``policy_objective``: documented settings, validation, loss composition."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import torch

from visgrpo.objectives import (
    PRESETS,
    ObjectiveConfig,
    ObjectiveOverrides,
    aggregate,
    get_preset,
    global_normaliser,
    kl_penalty,
    policy_objective,
    ppo_clip_loss,
)


def test_presets_have_documented_settings():
    g = get_preset("grpo")
    assert (g.advantage, g.policy_loss, g.eps_low, g.eps_high) == ("grpo", "ppo_clip", 0.2, 0.2)
    assert (g.aggregation, g.kl_estimator, g.kl_coef) == ("seq_mean_token_mean", "k3", 0.04)
    assert not g.dynamic_sampling and not g.overlong_shaping
    d = get_preset("dapo")
    assert (d.advantage, d.policy_loss, d.eps_low, d.eps_high) == ("grpo", "ppo_clip", 0.2, 0.28)
    assert (d.aggregation, d.kl_coef) == ("token_mean", 0.0)
    assert d.dynamic_sampling and d.overlong_shaping
    r = get_preset("dr_grpo")
    assert (r.advantage, r.aggregation, r.kl_coef) == ("dr_grpo", "seq_mean_token_sum_norm", 0.0)
    assert r.length_norm == float(r.max_response_length)
    s = get_preset("gspo")
    assert (s.policy_loss, s.gspo_eps_low, s.gspo_eps_high) == ("gspo", 3e-4, 4e-4)
    assert (s.aggregation, s.kl_coef) == ("seq_mean_token_mean", 0.0)
    assert s.loss_kwargs() == {"eps_low": 3e-4, "eps_high": 4e-4}
    p = get_preset("sapo")
    assert (p.policy_loss, p.sapo_tau_pos, p.sapo_tau_neg) == ("sapo", 1.0, 1.05)
    assert (p.aggregation, p.kl_coef) == ("token_mean", 0.0)
    assert PRESETS.names() == ["dapo", "dr_grpo", "grpo", "gspo", "sapo"]


def test_overrides_and_unknowns():
    cfg = get_preset("dapo", eps_high=0.3, kl_coef=0.001)
    assert cfg.eps_high == 0.3 and cfg.kl_coef == 0.001 and cfg.aggregation == "token_mean"
    with pytest.raises(KeyError, match="dapo, dr_grpo, grpo, gspo, sapo"):
        get_preset("ppo")
    with pytest.raises(ValueError, match="epsilon_high"):
        get_preset("grpo", epsilon_high=0.3)
    with pytest.raises(ValueError, match="ObjectiveConfig.aggregation='mean'.*token_mean"):
        get_preset("grpo", aggregation="mean")


def test_objective_overrides_mirror_the_config_and_keep_unset_fields():
    config_types = typing.get_type_hints(ObjectiveConfig)
    override_types = typing.get_type_hints(ObjectiveOverrides)
    assert list(override_types) == [f.name for f in dataclasses.fields(ObjectiveConfig)]
    for name, hint in config_types.items():
        assert override_types[name] == (hint | None), name  # same type, None = keep the preset's
        assert getattr(ObjectiveOverrides(), name) is None
    over = ObjectiveOverrides(kl_coef=0.001, dynamic_sampling=False)
    assert over.changes() == {"kl_coef": 0.001, "dynamic_sampling": False}  # False is a change
    cfg = get_preset("dapo", **over.changes())
    assert (cfg.kl_coef, cfg.dynamic_sampling, cfg.eps_high, cfg.overlong_shaping) == (0.001, False, 0.28, True)
    assert get_preset("grpo", **ObjectiveOverrides().changes()) == get_preset("grpo")
    with pytest.raises(TypeError, match="bogus"):
        ObjectiveOverrides(bogus=1)


@pytest.mark.parametrize(
    "field,value",
    [
        ("eps_low", 1.0),
        ("eps_high", -0.1),
        ("clip_ratio_c", 0.5),
        ("sapo_tau_neg", 0.0),
        ("kl_coef", -1.0),
        ("max_sampling_tries", 0),
        ("overlong_cache_length", 0),
        ("overlong_cache_length", 2048),
        ("advantage", "gae"),
        ("kl_estimator", "k4"),
        ("adv_eps", 0.0),
    ],
)
def test_bad_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"ObjectiveConfig.{field}"):
        ObjectiveConfig(**{field: value})


def _batch():
    gen = torch.Generator().manual_seed(0)
    B, T = 4, 5
    logp = (-1 + 0.2 * torch.randn(B, T, generator=gen, dtype=torch.float64)).requires_grad_(True)
    old = logp.detach() + 0.1 * torch.randn(B, T, generator=gen, dtype=torch.float64)
    ref = logp.detach() + 0.3 * torch.randn(B, T, generator=gen, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 0.25, -1.0], dtype=torch.float64)
    mask = torch.arange(T)[None, :] < torch.tensor([5, 2, 3, 1])[:, None]
    return logp, old, ref, adv, mask


def test_policy_objective_composes_loss_and_kl():
    logp, old, ref, adv, mask = _batch()
    cfg = get_preset("grpo")
    loss, m = policy_objective(cfg, logp, old, adv, mask, ref_logp=ref)
    pg_mat, _ = ppo_clip_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.2)
    kl_mat, _ = kl_penalty("k3", logp, ref, mask)
    pg, _ = aggregate("seq_mean_token_mean", pg_mat, mask)
    kl, _ = aggregate("seq_mean_token_mean", kl_mat, mask)
    # loss = pg + 0.04 * kl, both aggregated seq_mean_token_mean
    torch.testing.assert_close(loss, pg + 0.04 * kl)
    assert m["pg_loss"].item() == pytest.approx(pg.item())
    assert m["kl"].item() == pytest.approx(kl.item())
    assert m["kl_loss"].item() == pytest.approx(0.04 * kl.item())
    assert math.isfinite(m["clip_frac"].item())
    loss.backward()
    assert logp.grad is not None and torch.isfinite(logp.grad).all()


def test_kl_requirements():
    logp, old, ref, adv, mask = _batch()
    with pytest.raises(ValueError, match="ref_logp"):
        policy_objective(get_preset("grpo"), logp, old, adv, mask)
    # kl_coef 0: no reference needed; with one, KL is only a metric (loss unchanged)
    cfg = get_preset("dapo")
    loss0, m0 = policy_objective(cfg, logp, old, adv, mask)
    loss1, m1 = policy_objective(cfg, logp, old, adv, mask, ref_logp=ref)
    assert "kl" not in m0 and m1["kl"].item() > 0
    torch.testing.assert_close(loss0, loss1)


@pytest.mark.parametrize("preset", ["grpo", "dapo", "dr_grpo", "gspo", "sapo"])
def test_microbatched_objective_equals_full_batch(preset):
    logp, old, ref, adv, mask = _batch()
    cfg = get_preset(preset, max_response_length=8, overlong_cache_length=2)
    full, _ = policy_objective(cfg, logp, old, adv, mask, ref_logp=ref)
    (g_full,) = torch.autograd.grad(full, logp)
    norm = global_normaliser(cfg.aggregation, mask)
    total = 0.0
    for rows in (slice(0, 1), slice(1, 4)):
        part, _ = policy_objective(
            cfg, logp[rows], old[rows], adv[rows], mask[rows], ref_logp=ref[rows], normaliser=norm
        )
        total = total + part
    (g_parts,) = torch.autograd.grad(total, logp)
    torch.testing.assert_close(total, full)
    torch.testing.assert_close(g_parts, g_full)


def test_per_token_advantages_accepted():
    logp, old, ref, adv, mask = _batch()
    adv_tok = adv[:, None].expand(-1, 5).contiguous()  # [B, T], same values
    for preset in ("grpo", "gspo", "sapo"):
        cfg = get_preset(preset)
        a, _ = policy_objective(cfg, logp, old, adv, mask, ref_logp=ref)
        b, _ = policy_objective(cfg, logp, old, adv_tok, mask, ref_logp=ref)
        torch.testing.assert_close(a, b)


def test_overrides_from_a_plain_mapping():
    from visgrpo.objectives.presets import ObjectiveOverrides

    assert ObjectiveOverrides.from_mapping({"kl_coef": 0.1}).changes() == {"kl_coef": 0.1}
    with pytest.raises(ValueError, match="unknown key.*kl_coeff"):
        ObjectiveOverrides.from_mapping({"kl_coeff": 0.1})
