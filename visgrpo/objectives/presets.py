"""Objective presets over the three axes (advantage, policy loss, aggregation) + KL.

``ObjectiveConfig`` holds every knob; ``PRESETS`` names the published settings
(docs/methods.md, Base objectives); ``policy_objective`` turns log-probs and advantages into the scalar
loss. Presets:

- ``grpo`` (arXiv 2402.03300): grpo advantage, ppo_clip 0.2/0.2, seq_mean_token_mean,
  KL k3 with beta 0.04.
- ``dapo`` (arXiv 2503.14476): grpo advantage, ppo_clip 0.2/0.28 (clip-higher), token_mean,
  no KL, dynamic sampling on, overlong shaping on.
- ``dr_grpo`` (arXiv 2503.20783; our reading of its sec. 3.1): dr_grpo advantage (no std),
  ppo_clip 0.2/0.2, seq_mean_token_sum_norm with the constant ``max_response_length``, no KL.
- ``gspo`` (arXiv 2507.18071): grpo advantage, gspo sequence ratio with eps 3e-4/4e-4,
  seq_mean_token_mean, no KL.
- ``sapo`` (arXiv 2511.20347): grpo advantage, sapo soft gate tau 1.0/1.05, token_mean, no KL.

Our defaults where the papers are silent for this setting: no dual clip in any preset
(``clip_ratio_c=None``; set e.g. 3.0 to enable); ``max_response_length`` 1024 and
``overlong_cache_length`` 256 (DAPO used 20480/4096, the same 0.2-0.25 ratio at VLM scale);
``max_sampling_tries`` 10. ``ObjectiveOverrides`` changes some fields of a preset (the
typed ``objective_overrides`` of the training module).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from visgrpo.objectives.advantages import ADVANTAGES
from visgrpo.objectives.aggregation import AGGREGATIONS, aggregate
from visgrpo.objectives.kl import KL_ESTIMATORS, kl_penalty
from visgrpo.objectives.policy_loss import POLICY_LOSSES
from visgrpo.registry import Registry

# The registered names when this module is imported, as CLI choices (``--help`` lists them).
AdvantageName = Literal[tuple(ADVANTAGES.names())]
PolicyLossName = Literal[tuple(POLICY_LOSSES.names())]
AggregationName = Literal[tuple(AGGREGATIONS.names())]
KLEstimatorName = Literal[tuple(KL_ESTIMATORS.names())]


@dataclass(frozen=True)
class ObjectiveConfig:
    """All settings of the policy objective; validated on construction.

    Attributes:
        advantage: group advantage, a name in ``ADVANTAGES`` (grpo: mean/std; dr_grpo: mean only).
        adv_eps: epsilon added to the group std (grpo).
        policy_loss: surrogate, a name in ``POLICY_LOSSES`` (ppo_clip, gspo, sapo).
        eps_low: ppo_clip lower range: the ratio is clipped at ``1 - eps_low``.
        eps_high: ppo_clip upper range: the ratio is clipped at ``1 + eps_high`` (DAPO's clip-higher 0.28).
        clip_ratio_c: dual-clip constant (> 1) for ppo_clip, or None (off).
        gspo_eps_low: GSPO sequence-ratio clip, lower side.
        gspo_eps_high: GSPO sequence-ratio clip, upper side.
        sapo_tau_pos: SAPO soft-gate temperature for positive advantages.
        sapo_tau_neg: SAPO soft-gate temperature for negative advantages.
        aggregation: how token losses become one scalar, a name in ``AGGREGATIONS``.
        loss_length_norm: Dr.GRPO token-sum divisor (seq_mean_token_sum_norm); None: ``max_response_length``.
        kl_coef: KL weight beta (>= 0); 0 disables the KL term and the reference forward.
        kl_estimator: KL estimator, a name in ``KL_ESTIMATORS`` (k1, k2, k3).
        dynamic_sampling: drop all-equal-reward groups and sample more prompts (DAPO).
        dynamic_sampling_atol: reward spread counted as all-equal.
        max_sampling_tries: maximum dynamic-sampling rounds per batch.
        overlong_shaping: add DAPO's overlong penalty to the rewards (its ``L_max`` is the
            generation cap ``sampling.max_new_tokens``).
        max_response_length: Dr.GRPO's constant ``L_max``, the divisor of
            seq_mean_token_sum_norm when ``loss_length_norm`` is None; not the generation
            cap (``sampling.max_new_tokens``), which the training module requires it to
            be at least.
        overlong_cache_length: ``L_c`` of the overlong penalty (capped to the generation cap).
    """

    advantage: AdvantageName = "grpo"
    adv_eps: float = 1e-6
    policy_loss: PolicyLossName = "ppo_clip"
    eps_low: float = 0.2
    eps_high: float = 0.2
    clip_ratio_c: float | None = None
    gspo_eps_low: float = 3e-4
    gspo_eps_high: float = 4e-4
    sapo_tau_pos: float = 1.0
    sapo_tau_neg: float = 1.05
    aggregation: AggregationName = "seq_mean_token_mean"
    loss_length_norm: float | None = None
    kl_coef: float = 0.0
    kl_estimator: KLEstimatorName = "k3"
    dynamic_sampling: bool = False
    dynamic_sampling_atol: float = 1e-6
    max_sampling_tries: int = 10
    overlong_shaping: bool = False
    max_response_length: int = 1024
    overlong_cache_length: int = 256

    def __post_init__(self) -> None:
        for field, reg in (
            ("advantage", ADVANTAGES),
            ("policy_loss", POLICY_LOSSES),
            ("aggregation", AGGREGATIONS),
            ("kl_estimator", KL_ESTIMATORS),
        ):
            value = getattr(self, field)
            if value not in reg:
                raise ValueError(
                    f"ObjectiveConfig.{field}={value!r} unknown; valid: {', '.join(reg.names())}"
                )

        def bad(field: str, rule: str) -> ValueError:
            return ValueError(f"ObjectiveConfig.{field}={getattr(self, field)!r}: {rule}")

        if not self.adv_eps > 0:
            raise bad("adv_eps", "must be > 0")
        for low, high in (("eps_low", "eps_high"), ("gspo_eps_low", "gspo_eps_high")):
            if not 0 <= getattr(self, low) < 1:
                raise bad(low, "must be in [0, 1)")
            if not getattr(self, high) >= 0:
                raise bad(high, "must be >= 0")
        if self.clip_ratio_c is not None and not self.clip_ratio_c > 1:
            raise bad("clip_ratio_c", "must be > 1 or None")
        for tau in ("sapo_tau_pos", "sapo_tau_neg"):
            if not getattr(self, tau) > 0:
                raise bad(tau, "must be > 0")
        if self.loss_length_norm is not None and not self.loss_length_norm > 0:
            raise bad("loss_length_norm", "must be > 0 or None")
        if not self.kl_coef >= 0:
            raise bad("kl_coef", "must be >= 0")
        if not self.dynamic_sampling_atol >= 0:
            raise bad("dynamic_sampling_atol", "must be >= 0")
        if not (isinstance(self.max_sampling_tries, int) and self.max_sampling_tries >= 1):
            raise bad("max_sampling_tries", "must be an integer >= 1")
        if not (isinstance(self.max_response_length, int) and self.max_response_length >= 1):
            raise bad("max_response_length", "must be an integer >= 1")
        if not 0 < self.overlong_cache_length <= self.max_response_length:
            raise bad("overlong_cache_length", "must be in (0, max_response_length]")

    @property
    def length_norm(self) -> float:
        """The Dr.GRPO constant actually used (``loss_length_norm`` or max response length)."""
        if self.loss_length_norm is not None:
            return float(self.loss_length_norm)
        return float(self.max_response_length)

    def loss_kwargs(self) -> dict[str, float | None]:
        """Keyword arguments of the configured policy loss."""
        if self.policy_loss == "ppo_clip":
            return {
                "eps_low": self.eps_low,
                "eps_high": self.eps_high,
                "clip_ratio_c": self.clip_ratio_c,
            }
        if self.policy_loss == "gspo":
            return {"eps_low": self.gspo_eps_low, "eps_high": self.gspo_eps_high}
        if self.policy_loss == "sapo":
            return {"tau_pos": self.sapo_tau_pos, "tau_neg": self.sapo_tau_neg}
        return {}


@dataclass(frozen=True)
class ObjectiveOverrides:
    """Changes to an objective preset, typed so that the CLI lists and checks them.

    Every field of :class:`ObjectiveConfig` (same meaning, same validation once applied);
    None, the default, keeps the preset's value. (``clip_ratio_c`` and ``loss_length_norm``
    are None in every preset, so None never needs to be written for them.) In a config::

        objective_overrides: {kl_coef: 0.001, max_sampling_tries: 2}
    """

    advantage: AdvantageName | None = None
    adv_eps: float | None = None
    policy_loss: PolicyLossName | None = None
    eps_low: float | None = None
    eps_high: float | None = None
    clip_ratio_c: float | None = None
    gspo_eps_low: float | None = None
    gspo_eps_high: float | None = None
    sapo_tau_pos: float | None = None
    sapo_tau_neg: float | None = None
    aggregation: AggregationName | None = None
    loss_length_norm: float | None = None
    kl_coef: float | None = None
    kl_estimator: KLEstimatorName | None = None
    dynamic_sampling: bool | None = None
    dynamic_sampling_atol: float | None = None
    max_sampling_tries: int | None = None
    overlong_shaping: bool | None = None
    max_response_length: int | None = None
    overlong_cache_length: int | None = None

    @classmethod
    def from_mapping(cls, mapping: dict) -> ObjectiveOverrides:
        """Build from a plain mapping; an unknown key is refused naming it and the valid ones."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(mapping) - set(names))
        if unknown:
            raise ValueError(f"objective_overrides: unknown key(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**mapping)

    def changes(self) -> dict[str, object]:
        """The fields that are set (not None), as ``get_preset`` keyword arguments."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# The CLI's help for each override is ObjectiveConfig's (one text per field, kept in one place).
ObjectiveOverrides.__doc__ = (
    ObjectiveOverrides.__doc__.rstrip() + "\n\n    Attributes:" + ObjectiveConfig.__doc__.split("Attributes:", 1)[1]
)


PRESETS: Registry[Callable[[], ObjectiveConfig]] = Registry("objective preset")
PRESETS.add("grpo", lambda: ObjectiveConfig(kl_coef=0.04, kl_estimator="k3"))
PRESETS.add(
    "dapo",
    lambda: ObjectiveConfig(
        eps_high=0.28,
        aggregation="token_mean",
        dynamic_sampling=True,
        overlong_shaping=True,
    ),
)
PRESETS.add(
    "dr_grpo",
    lambda: ObjectiveConfig(advantage="dr_grpo", aggregation="seq_mean_token_sum_norm"),
)
PRESETS.add("gspo", lambda: ObjectiveConfig(policy_loss="gspo"))
PRESETS.add("sapo", lambda: ObjectiveConfig(policy_loss="sapo", aggregation="token_mean"))

#: The preset names as a CLI choice (``model.init_args.objective``; ``--help`` lists them).
PresetName = Literal[tuple(PRESETS.names())]


def get_preset(name: str, **overrides: object) -> ObjectiveConfig:
    """The preset ``name`` with ``overrides`` applied (re-validated).

    Raises:
        KeyError: unknown preset, listing the valid ones.
        ValueError: unknown override field (listing the valid fields) or a bad value.
    """
    cfg = PRESETS.get(name)()
    fields = {f.name for f in dataclasses.fields(ObjectiveConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(
            f"unknown ObjectiveConfig field(s) {unknown}; valid: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(cfg, **overrides)


def policy_objective(
    cfg: ObjectiveConfig,
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    response_mask: Tensor,
    ref_logp: Tensor | None = None,
    normaliser: float | Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Scalar loss = aggregate(policy loss) + kl_coef * aggregate(KL), same aggregation.

    Args:
        cfg: the objective settings.
        logp, old_logp: [B, T]. advantages: [B] or [B, T]. response_mask: [B, T] bool.
        ref_logp: [B, T] reference log-probs; required when ``cfg.kl_coef > 0``. With
            ``kl_coef == 0`` it is only used for the ``kl`` metric (no gradient).
        normaliser: global normaliser of the full batch (``global_normaliser``) when the
            batch is split into micro-batches; None -> this batch's own.

    Returns:
        (loss 0-dim, metrics: loss, pg_loss, kl (if a reference is given), kl_loss, and the
        policy loss's metrics: ratio stats, clip fractions, ...).

    Raises:
        ValueError: ``kl_coef > 0`` without ``ref_logp``.
    """
    if cfg.kl_coef > 0 and ref_logp is None:
        raise ValueError(f"ref_logp is required when kl_coef={cfg.kl_coef} > 0")
    loss_fn = POLICY_LOSSES.get(cfg.policy_loss)
    loss_mat, metrics = loss_fn(logp, old_logp, advantages, response_mask, **cfg.loss_kwargs())
    pg_loss, agg_m = aggregate(
        cfg.aggregation, loss_mat, response_mask, normaliser, cfg.length_norm
    )
    loss = pg_loss
    metrics["pg_loss"] = pg_loss.detach()
    metrics["normaliser"] = agg_m["normaliser"]
    if ref_logp is not None:
        if cfg.kl_coef > 0:
            kl_mat, kl_m = kl_penalty(cfg.kl_estimator, logp, ref_logp, response_mask)
            kl, _ = aggregate(cfg.aggregation, kl_mat, response_mask, normaliser, cfg.length_norm)
            loss = pg_loss + cfg.kl_coef * kl
        else:
            with torch.no_grad():
                kl_mat, kl_m = kl_penalty(cfg.kl_estimator, logp, ref_logp, response_mask)
                kl, _ = aggregate(
                    cfg.aggregation, kl_mat, response_mask, normaliser, cfg.length_norm
                )
        metrics["kl"] = kl.detach()
        metrics["kl_mean"] = kl_m["kl_mean"]
        metrics["kl_loss"] = (cfg.kl_coef * kl).detach()
    metrics["loss"] = loss.detach()
    return loss, metrics
