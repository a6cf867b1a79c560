"""``RLVRModule``: GRPO-family RL of a VLM with visually grounded credit assignment.

One training step (:meth:`RLVRModule.training_step`; docs/architecture.md, "One RL step"):

1. rollout: the engine samples ``G`` responses per prompt (no grad);
2. rewards: the reward head scores them (plus DAPO's overlong shaping); DAPO dynamic
   sampling drops groups of equal rewards and draws more prompts until the batch is full
   (at most ``max_sampling_tries`` rounds);
3. the batch is cut into micro-batches of whole groups; what spans the whole batch is
   computed once (:meth:`RLVRModule.plan`): the loss normalisers, the credit methods'
   auxiliary-loss normalisers, and the batch statistics of credit methods that define one
   over the batch (VGPO's focus min-max), all summed / min-maxed over ranks;
4. advantages and credit, per micro-batch, from one teacher-forced forward with every
   detached signal the credit methods asked for: credit rewards (SAYO), the objective's
   group advantage, per-token credit reshaping (VGPO, AT-RL) with the batch statistics of
   step 3; a no-grad pass of the reference (adapters disabled) gives ``ref_logp`` when the
   KL is on;
5. loss: the objective plus the credit methods' auxiliary losses (EASE: attention with
   autograd), backward, one optimiser step per pass; a non-finite loss skips the step;
6. log: metrics averaged over micro-batches.

Steps 4 and 5 are one function, :meth:`RLVRModule._micro_step`. With ``ppo_epochs == 1``
the rollout policy is the current policy, so they share one forward with grad (``fused``,
``old_logp = logp.detach()``: ratio exactly 1, the on-policy gradient). Otherwise a no-grad
pass runs step 4 for every micro-batch (``old_logp``, advantages, ``ref_logp``) and each of
the ``ppo_epochs`` passes runs step 5, its forward requesting what the auxiliary losses need
(:meth:`CreditMethod.loss_request`).

Groups are whole inside micro-batches, and every batch-scope quantity comes from step 3,
so advantages, losses and gradients do not depend on ``micro_batch_size``. The price: when
a credit method has batch statistics and the batch spans several micro-batches (or ranks),
step 3 runs one extra no-grad forward of the batch to gather them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.distributed as dist
from torch import Tensor

from visgrpo.credit import ComposedCredit, CreditMethod
from visgrpo.credit.diagnostics import batch_diagnostics
from visgrpo.credit.mechanism import target_methods, target_request
from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.signals import SignalRequest
from visgrpo.lightning.base import PolicyModule
from visgrpo.lightning.batching import group_micro_batches
from visgrpo.lightning.errors import ConfigError, check_hyperparameters
from visgrpo.lightning.steps import collect_rollouts, reduce_metrics, score, signals_of
from visgrpo.models.loading import PolicyConfig
from visgrpo.models.reference import ReferencePolicy
from visgrpo.objectives import compute_advantages, get_preset, global_normaliser, policy_objective
from visgrpo.objectives._common import masked_mean
from visgrpo.objectives.presets import ObjectiveOverrides
from visgrpo.rewards import RewardSpec
from visgrpo.rollout import SamplingConfig

_REDUCE = {"min": torch.minimum, "max": torch.maximum, "sum": torch.add}


@dataclass
class StepPlan:
    """What every micro-batch of one RL step shares (step 3 of the module docstring).

    Attributes:
        rollout: the step's responses; rewards: [B] outcome rewards.
        micro: index tensors of the micro-batches (whole groups).
        normaliser: the objective's loss normaliser over the global batch.
        aux_normaliser: the credit methods' auxiliary-loss normalisers (global batch).
        batch_stats: the credit methods' batch statistics over the global batch, or None when
            every micro-batch is the whole batch (a method then takes them from its signals).
    """

    rollout: RolloutBatch
    rewards: Tensor
    micro: list[Tensor]
    normaliser: Tensor
    aux_normaliser: dict | Tensor | None
    batch_stats: dict[str, Tensor] | None


@dataclass
class Prepared:
    """What the loss of a micro-batch takes from the rollout policy: ``old_logp`` [b, T]
    (None: on-policy, the loss forward's own ``logp.detach()``), advantages [b, T] and
    ``ref_logp`` [b, T] (None without KL)."""

    old_logp: Tensor | None
    adv: Tensor
    ref: Tensor | None


class RLVRModule(PolicyModule):
    """RL with verifiable rewards for Qwen-VL policies.

    Args:
        policy: how to load the policy (hub id or local dir, dtype, LoRA, QLoRA, ...).
        objective: preset name (``grpo``, ``dapo``, ``dr_grpo``, ``gspo``, ``sapo``).
        objective_overrides: preset fields to change (e.g. ``{kl_coef: 0.001}``); unset keep the preset's.
        credit: credit methods (``class_path``/``init_args``), composed in order; empty = none.
        rewards: reward components of the reward head (default accuracy 1.0 + format 0.1).
        sampling: rollout sampling parameters (``num_generations`` = G).
        rollout_engine: ``hf`` (default) or ``vllm`` (CUDA only).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps.
        max_grad_norm: gradient clipping norm (0 = off).
        micro_batch_size: responses per forward/backward (groups are kept whole; the results
            do not depend on it, see the module docstring).
        ppo_epochs: optimisation passes over each rollout batch.
        fused: fold the rollout log-prob pass into the training pass (default: ``ppo_epochs == 1``).
        logprob_chunk_size: rows per chunk of the full-vocabulary log-softmax.
        attention_chunk_size: query rows per chunk of the attention probe.
        share_prefix: in the teacher-forced forward, run the decoder once per prompt group
            on the prompt and continue each response from its group's KV cache (the same
            outputs and gradients, the prompt's decoder work done once instead of G times;
            visgrpo/attention/shared_prefix.py lists when the plain forward runs instead).
        diagnostics_layer: layer of the attention diagnostics (evidence ratio, forgetting curve).
        target_diagnostics: at validation, also log the evidence ratio at every layer
            (``val/evidence_ratio_L<l>``) and each credit method's target quantity at its own
            layers and tokens (``val/<method>/...``; the trained method with its settings,
            the others with their defaults; visgrpo/credit/mechanism.py).
        seed: base seed; step ``s`` draws its randomness from ``seed`` and ``s`` (resume-exact).
    """

    def __init__(
        self,
        policy: PolicyConfig,
        objective: str = "dapo",
        objective_overrides: ObjectiveOverrides = ObjectiveOverrides(),
        credit: list[CreditMethod] | None = None,
        rewards: list[RewardSpec] | None = None,
        sampling: SamplingConfig | None = None,
        rollout_engine: str = "hf",
        learning_rate: float = 1e-5,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_grad_norm: float = 1.0,
        micro_batch_size: int = 8,
        ppo_epochs: int = 1,
        fused: bool | None = None,
        logprob_chunk_size: int = 1024,
        attention_chunk_size: int = 256,
        diagnostics_layer: int | str = "last",
        seed: int = 0,
        target_diagnostics: bool = True,
        share_prefix: bool = True,
    ) -> None:
        if isinstance(objective_overrides, dict):  # Python callers may pass a plain mapping
            objective_overrides = ObjectiveOverrides.from_mapping(objective_overrides)
        # Bad values are refused here, before the policy loads, naming the config key.
        check_hyperparameters(max_grad_norm=max_grad_norm, micro_batch_size=micro_batch_size, ppo_epochs=ppo_epochs)
        try:
            objective_config = get_preset(objective, **(objective_overrides or ObjectiveOverrides()).changes())
        except KeyError as err:
            raise ConfigError("model.init_args.objective", err.args[0]) from err
        except ValueError as err:
            raise ConfigError("model.init_args.objective_overrides", str(err)) from err
        super().__init__(
            policy, rewards, sampling, rollout_engine, learning_rate, weight_decay, warmup_steps,
            logprob_chunk_size, attention_chunk_size, diagnostics_layer, seed,
        )
        self.save_hyperparameters(ignore=["credit"])  # after LightningModule.__init__, so they are logged
        self.automatic_optimization = False
        self.objective = objective_config
        self.credit = ComposedCredit(list(credit or []))
        self.fused = (ppo_epochs == 1) if fused is None else fused
        if self.fused and ppo_epochs != 1:
            raise ConfigError("model.init_args.fused", "fused=True needs ppo_epochs == 1 (the rollout policy must "
                              "be the current one)")
        self.reference = ReferencePolicy(self.policy) if self.objective.kl_coef > 0 else None
        self.target_diagnostics = target_diagnostics
        self.set_credit(self.credit)
        self.last_rollout = None
        self.last_rewards: Tensor | None = None
        self.last_metrics: dict[str, float] = {}

    def set_credit(self, credit: ComposedCredit) -> None:
        """Use ``credit``: the signals of the credit forward and of the loss forward."""
        self.credit = credit
        self.loss_request = credit.loss_request(self.num_layers)
        self.signal_request = credit.signal_request(self.num_layers).union(self.eval_request).union(self.loss_request)
        if self.target_diagnostics:
            self.target_methods = target_methods(credit.methods, self.num_layers)
            self.validation_request = target_request(self.target_methods, self.num_layers).union(self.eval_request)
        else:
            self.target_methods, self.validation_request = [], self.eval_request

    def on_fit_start(self) -> None:
        # The credit methods are objects (not saved as hyper-parameters): log their settings.
        credit = repr(self.credit.methods) if self.credit.methods else "none"
        for logger in self.loggers:
            logger.log_hyperparams({"credit": credit})

    # ----------------------------------------------------------------- the RL step
    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        step = self.global_step  # before this RL step's optimiser step(s)
        torch.manual_seed(self.hparams.seed * 1_000_003 + step)
        self.perturb_seed = self.hparams.seed * 1_000_003 + step  # masked-image signal (all passes)
        # 1-2. rollout -> rewards (DAPO: dynamic sampling until the batch is full)
        rollout, rewards, metrics = self.collect_rollouts(batch)
        if rollout is None:  # every group had equal rewards in every round: an empty step
            self._optimizer_step(True, [])
            self._log_step(step, {**metrics, "train/skipped_empty": 1.0})
            return
        self.last_rollout, self.last_rewards = rollout, rewards
        # 3. what the micro-batches share: normalisers, credit batch statistics
        plan = self.plan(rollout, rewards)
        log: list[dict] = []
        skipped = 0
        if self.fused:  # 4-5 in one forward per micro-batch: credit -> advantages -> loss
            skipped += self._optimizer_step(self.train_pass(plan, log), log)
        else:  # 4. credit -> advantages with the rollout policy; 5. loss, ppo_epochs passes
            with torch.no_grad():
                prepared = [self._micro_step(plan, idx, log, backward=False)[0] for idx in plan.micro]
            for _ in range(self.hparams.ppo_epochs):  # one optimiser step per pass
                skipped += self._optimizer_step(self.train_pass(plan, log, prepared), log)
        # 6. log
        metrics.update(reduce_metrics(log))
        metrics["train/nonfinite_skipped"] = float(skipped)
        metrics["train/lr"] = self.optimizers().param_groups[0]["lr"]
        self._log_step(step, metrics)

    def collect_rollouts(self, batch: PromptBatch):
        """``(rollout, rewards [B], metrics)`` of the step (:func:`steps.collect_rollouts`)."""
        return collect_rollouts(
            self.engine, self.policy, self.processor, self.sampling,
            partial(score, self.reward_head, self.objective, self.sampling.max_new_tokens),
            self.objective, batch, lambda n: self.trainer.datamodule.sample_prompts(n),
            seed=self.hparams.seed * 1_000_003 + self.global_step * 101, device=self.device,
        )

    def plan(self, rollout: RolloutBatch, rewards: Tensor) -> StepPlan:
        """Micro-batches and everything computed over the whole (global) batch."""
        self.policy.train()
        micro = group_micro_batches(rollout.group_ids, self.hparams.micro_batch_size)
        return StepPlan(
            rollout, rewards, micro, self._global_normaliser(rollout.response_mask),
            self._aux_normaliser(rollout, rewards), self._batch_statistics(rollout, rewards, micro),
        )

    def train_pass(self, plan: StepPlan, log: list[dict], prepared: list[Prepared] | None = None) -> bool:
        """Forward + loss + backward of every micro-batch; True if a loss was not finite."""
        failed = False
        for k, idx in enumerate(plan.micro):
            failed |= self._micro_step(plan, idx, log, None if prepared is None else prepared[k])[1]
        return failed

    def _micro_step(
        self, plan: StepPlan, idx: Tensor, log: list[dict], prepared: Prepared | None = None, backward: bool = True
    ) -> tuple[Prepared, bool]:
        """One micro-batch: forward; without ``prepared``, credit -> advantages (and
        ``ref_logp``) from its detached signals; with ``backward``, loss and backward.

        Fused: ``prepared=None, backward=True``; the two-pass rollout-policy pass:
        ``prepared=None, backward=False`` (under no_grad); a PPO epoch: ``prepared`` given.
        Returns ``(prepared, loss not finite)``.
        """
        mb, r, m = plan.rollout.select(idx), plan.rewards[idx], {}
        out = self.forward_signals(self.policy, mb, self.signal_request if prepared is None else self.loss_request)
        if prepared is None:
            signals = signals_of(out, mb, r, detach=True)
            adv = self._credit_advantages(mb, r, signals, plan.batch_stats, m)
            prepared = Prepared(None if backward else out.logp, adv, self._reference_logp(mb))
            m["policy/entropy"] = masked_mean(out.entropy, mb.response_mask)
            m.update(batch_diagnostics(signals, layer=self.diagnostics_layer))
        failed = False
        if backward:
            old_logp = out.logp.detach() if prepared.old_logp is None else prepared.old_logp
            loss, lm = policy_objective(
                self.objective, out.logp, old_logp, prepared.adv, mb.response_mask, prepared.ref, plan.normaliser
            )
            m.update({f"policy/{k}": v for k, v in lm.items()})
            failed = self._backward(loss + self._aux_loss(out, mb, r, plan.aux_normaliser, m), m)
        log.append(m)
        return prepared, failed

    # ----------------------------------------------------------------- pieces
    def _reference_logp(self, rollout) -> Tensor | None:
        if self.reference is None:
            return None
        with self.reference.model() as ref:
            return self.forward_signals(ref, rollout, SignalRequest()).logp

    def _global_normaliser(self, mask: Tensor) -> Tensor:
        norm = global_normaliser(self.objective.aggregation, mask)
        if self.trainer.world_size > 1:
            norm = self.trainer.strategy.reduce(norm.to(self.device), reduce_op="sum")
        return norm

    def _credit_advantages(self, rollout, rewards: Tensor, signals, batch_stats, metrics: dict) -> Tensor:
        """Credit rewards -> group advantage -> per-token credit reshaping; [B, T]."""
        extra, m = self.credit.extra_rewards(signals)
        metrics.update(m)
        total = rewards if extra is None else rewards + extra.to(rewards)
        metrics["reward/filtered/total"] = total.mean()  # + credit rewards: the advantage input
        adv, m = compute_advantages(self.objective.advantage, total, rollout.group_ids, eps=self.objective.adv_eps)
        metrics.update({f"adv/{k}": v for k, v in m.items()})
        adv_tok = adv[:, None].expand(rollout.response_mask.shape).to(torch.float32)  # [B, T]
        adv_tok, m = self.credit.token_advantages(adv_tok, signals, batch_stats)
        metrics.update(m)
        return adv_tok

    def _aux_normaliser(self, rollout, rewards: Tensor):
        """The credit methods' auxiliary-loss normalisers over the FULL batch (all ranks), so
        the loss does not depend on micro-batching or the number of ranks."""
        norm = self.credit.auxiliary_normaliser(rewards, rollout.evidence_target, rollout.response_mask)
        if norm is None or self.trainer.world_size == 1:
            return norm
        reduce = self.trainer.strategy.reduce
        return {k: reduce(torch.as_tensor(v, device=self.device, dtype=torch.float32), reduce_op="sum")
                for k, v in norm.items()}

    def _aux_loss(self, out, rollout, rewards: Tensor, normaliser, metrics: dict) -> Tensor:
        zero = torch.zeros((), device=out.logp.device)
        aux, m = self.credit.auxiliary_loss(signals_of(out, rollout, rewards, detach=False), normaliser)
        metrics.update(m)
        return zero if aux is None else aux

    def _backward(self, loss: Tensor, metrics: dict) -> bool:
        """Backward of ``loss``; returns True when it is not finite (the step is then skipped).

        The backward runs even then, so DDP's gradient all-reduce stays in step on every rank.
        """
        metrics["loss/total"] = loss.detach()
        # Losses are normalised over the global batch; DDP averages gradients over ranks.
        self.manual_backward(loss * self.trainer.world_size)
        return not bool(torch.isfinite(loss.detach()))

    @torch.no_grad()
    def _batch_statistics(self, rollout: RolloutBatch, rewards: Tensor, micro: list[Tensor]) -> dict | None:
        """The credit methods' batch statistics over the whole batch and all ranks (None
        when no method has one, or one micro-batch on one rank is the whole batch).

        One no-grad forward per micro-batch, combined with each statistic's reduction. The
        scope is the global batch (VGPO's authors min-max per micro-batch; docs/methods.md
        lists this departure).
        """
        reductions = self.credit.batch_reductions
        world = self.trainer.world_size
        if not reductions or (len(micro) == 1 and world == 1):
            return None
        stats: dict[str, Tensor] = {}
        for idx in micro:
            mb = rollout.select(idx)
            out = self.forward_signals(self.policy, mb, self.signal_request)
            part = self.credit.batch_statistics(signals_of(out, mb, rewards[idx], detach=True))
            stats = {k: _REDUCE[reductions[k]](stats[k], v) if k in stats else v for k, v in part.items()}
        if world > 1:
            ops = {"min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX, "sum": dist.ReduceOp.SUM}
            for k, v in stats.items():
                dist.all_reduce(v, op=ops[reductions[k]])
        return stats

    def _optimizer_step(self, nonfinite: bool, log: list[dict]) -> bool:
        """Clip and step, unless a loss (on any rank) or the gradient norm is not finite: then
        the gradients are dropped first, so the step changes nothing (AdamW skips parameters
        without a gradient) but still counts (``global_step``, the schedule and the per-step
        seeds advance). Returns whether the step was skipped."""
        opt = self.optimizers()
        if self.trainer.world_size > 1:
            flag = torch.tensor(float(nonfinite), device=self.device)
            nonfinite = bool(self.trainer.strategy.reduce(flag, reduce_op="sum") > 0)
        if not nonfinite:
            params = [p for p in self.policy.parameters() if p.requires_grad]
            max_norm = self.hparams.max_grad_norm if self.hparams.max_grad_norm > 0 else float("inf")
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)  # grads are all-reduced already
            nonfinite = not bool(torch.isfinite(norm))
            log.append({"train/grad_norm": norm})
        if nonfinite:
            opt.zero_grad(set_to_none=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        self.lr_schedulers().step()
        return nonfinite

    # ----------------------------------------------------------------- logging
    def _log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Write the step's metrics to the loggers every ``log_every_n_steps`` RL steps.

        They go to the loggers directly: Lightning's ``self.log`` costs about a millisecond
        per key and step (result collection, device moves), which was 10-15% of a tiny-model
        step. Only the progress-bar reward goes through ``self.log``; the full dict stays in
        ``self.last_metrics`` for callbacks.
        """
        self.last_metrics = metrics
        self.log("reward", metrics.get("reward/first_round/outcome", 0.0), prog_bar=True, on_step=True, batch_size=1)
        if step % max(int(self.trainer.log_every_n_steps), 1) == 0:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=step)
