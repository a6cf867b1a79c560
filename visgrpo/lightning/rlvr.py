"""``RLVRModule``: GRPO-family RL of a VLM with visually grounded credit assignment.

One training step is one rollout batch (:meth:`RLVRModule.training_step`;
docs/architecture.md, "One RL step"):

1. rollout: the engine samples ``G`` responses per prompt (no grad);
2. rewards: the reward head scores them (plus DAPO's overlong shaping); DAPO dynamic
   sampling drops groups of equal rewards and draws more prompts until the batch is full;
3. plan (:meth:`RLVRModule.plan`): the batch is cut into mini-batches of
   ``mini_batch_size`` prompts (verl's ``ppo_mini_batch_size``; default the whole batch),
   each into micro-batches of whole groups; each mini-batch's loss normalisers (objective
   and auxiliary losses) are summed over its rows and all ranks (per optimiser step, as
   verl / EasyR1); the credit methods' batch statistics (VGPO's and VPPO's min-max) are
   taken once over the WHOLE rollout batch and all ranks, never per mini-batch;
4. advantages and credit from the rollout policy, per micro-batch, from one
   teacher-forced forward with every detached signal the credit methods asked for
   (credit rewards, group advantage, per-token reshaping with the statistics of step 3;
   ``ref_logp`` from the reference when the KL is on);
5. loss: for each of the ``ppo_epochs`` passes, for each mini-batch: the objective plus
   the credit methods' auxiliary losses over its micro-batches (gradients accumulate),
   then one optimiser step; a non-finite loss skips that step; the learning-rate schedule
   steps once per rollout batch (as verl);
6. log: metrics averaged over micro-batches, ``train/optimizer_steps`` per rollout batch.

Steps 4 and 5 are one function, :meth:`RLVRModule._micro_step`. With one optimiser step
per rollout batch (``ppo_epochs == 1``, no ``mini_batch_size``) the rollout policy is the
current policy, so they share one forward with grad (``fused``: ``old_logp =
logp.detach()``, ratio exactly 1). Otherwise a no-grad pass runs step 4 for every
micro-batch before the first update (``old_logp``, advantages, ``ref_logp`` of the rollout
policy) and every update runs step 5, its forward requesting what the auxiliary losses
need (:meth:`CreditMethod.loss_request`).

Every RL step takes ``ppo_epochs * ceil(prompts / mini-batch prompts)`` optimiser steps
(``global_step`` counts them; a short or empty batch fills them with empty steps).
Checkpoints fall between rollout batches; a run stopped inside one resumes at its start
and redoes it exactly (docs/architecture.md, "Mini-batches").
"""

from __future__ import annotations

from functools import partial

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from visgrpo.credit import ComposedCredit, CreditMethod
from visgrpo.credit.diagnostics import batch_diagnostics
from visgrpo.credit.mechanism import target_methods, target_request
from visgrpo.data.batch import PromptBatch, RolloutBatch
from visgrpo.data.signals import SignalRequest
from visgrpo.lightning.base import PolicyModule
from visgrpo.lightning.batching import Prepared, StepPlan, group_micro_batches, group_mini_batches
from visgrpo.lightning.errors import ConfigError, check_hyperparameters, check_length_norm
from visgrpo.lightning.steps import (
    batch_statistics,
    collect_rollouts,
    reduce_metrics,
    score,
    signals_of,
)
from visgrpo.models.loading import PolicyConfig
from visgrpo.models.reference import ReferencePolicy
from visgrpo.objectives import compute_advantages, get_preset, global_normaliser, policy_objective
from visgrpo.objectives._common import masked_mean
from visgrpo.objectives.presets import ObjectiveOverrides, PresetName
from visgrpo.rewards import RewardSpec
from visgrpo.rollout import SamplingConfig


class RLVRModule(PolicyModule):
    """RL with verifiable rewards for Qwen-VL policies.

    Args:
        policy: how to load the policy (hub id or local dir, dtype, LoRA, QLoRA, ...).
        objective: objective preset (``--help`` lists the registered ones; docs/methods.md).
        objective_overrides: preset fields to change (e.g. ``{kl_coef: 0.001}``); unset keep the preset's.
        credit: credit methods (``class_path``/``init_args``; ``--help`` lists the registered
            classes), composed in order; empty = none.
        rewards: reward components of the reward head (default accuracy 1.0 + format 0.1).
        sampling: rollout sampling parameters (``num_generations`` = G).
        rollout_engine: generation engine registered in ``ROLLOUT_ENGINES`` (``hf``, the default;
            ``vllm`` needs CUDA; an open registry, so a plain name rather than a closed choice).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps.
        max_grad_norm: gradient clipping norm (0 = off).
        micro_batch_size: responses per forward/backward (groups are kept whole; the results
            do not depend on it, see the module docstring).
        mini_batch_size: PROMPTS per optimiser step (verl's ``ppo_mini_batch_size``, EasyR1's
            ``worker.actor.global_batch_size``): a rollout batch of N prompts is updated in
            ``ceil(N / mini_batch_size)`` mini-batches of whole groups, one optimiser step
            each, micro-batches accumulating gradients inside a mini-batch. None (default):
            the whole rollout batch, one optimiser step per epoch. With DDP it counts the
            prompts of all ranks (must be a multiple of the number of ranks).
        ppo_epochs: optimisation passes over each rollout batch (each pass: every mini-batch).
        fused: fold the rollout log-prob pass into the training pass (default: one optimiser
            step per rollout batch, ``ppo_epochs == 1`` and ``mini_batch_size`` None).
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
        objective: PresetName = "dapo",
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
        mini_batch_size: int | None = None,
    ) -> None:
        if isinstance(objective_overrides, dict):  # Python callers may pass a plain mapping
            objective_overrides = ObjectiveOverrides.from_mapping(objective_overrides)
        # Bad values are refused here, before the policy loads, naming the config key.
        check_hyperparameters(max_grad_norm=max_grad_norm, micro_batch_size=micro_batch_size, ppo_epochs=ppo_epochs)
        if mini_batch_size is not None:
            check_hyperparameters(mini_batch_size=mini_batch_size)
        one_update = ppo_epochs == 1 and mini_batch_size is None
        if fused and not one_update:
            raise ConfigError("model.init_args.fused", "fused=True needs ppo_epochs == 1 and mini_batch_size None "
                              "(one optimiser step per rollout batch: the rollout policy must be the current one)")
        try:
            objective_config = get_preset(objective, **(objective_overrides or ObjectiveOverrides()).changes())
        except KeyError as err:
            raise ConfigError("model.init_args.objective", err.args[0]) from err
        except ValueError as err:
            raise ConfigError("model.init_args.objective_overrides", str(err)) from err
        check_length_norm(objective_config, sampling or SamplingConfig())
        super().__init__(
            policy, rewards, sampling, rollout_engine, learning_rate, weight_decay, warmup_steps,
            logprob_chunk_size, attention_chunk_size, diagnostics_layer, seed,
        )
        self.save_hyperparameters(ignore=["credit"])  # after LightningModule.__init__, so they are logged
        self.automatic_optimization = False
        self.objective = objective_config
        self.credit = ComposedCredit(list(credit or []))
        self.fused = one_update if fused is None else fused
        self.reference = ReferencePolicy(self.policy) if self.objective.kl_coef > 0 else None
        self.target_diagnostics = target_diagnostics
        self.set_credit(self.credit)
        self.last_rollout = None
        self.last_rewards: Tensor | None = None
        self.last_metrics: dict[str, float] = {}
        self.rollout_batches = 0  # RL steps done (saved in checkpoints: resume-exact schedules)

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
        prompts = getattr(self.trainer.datamodule, "batch_size", None) if self.trainer.datamodule else None
        if self.mini_prompts is not None and isinstance(prompts, int):  # refuses a size that does not split
            n = self.updates_per_rollout(prompts)
            for cb in self.trainer.checkpoint_callbacks:
                every = getattr(cb, "_every_n_train_steps", 0)
                if every and every % n:
                    rank_zero_warn(f"checkpoints every {every} optimiser steps, but a rollout batch takes {n}: "
                                   f"they are written only when global_step is a multiple of both")

    # ----------------------------------------------------------------- the RL step
    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        step = self.global_step  # before this RL step's optimiser step(s)
        torch.manual_seed(self.hparams.seed * 1_000_003 + step)
        self.perturb_seed = self.hparams.seed * 1_000_003 + step  # masked-image signal (all passes)
        self.credit.set_progress(self.rollout_batches)  # schedules counted in rollout batches (PAPO)
        n_updates = self.updates_per_rollout(len(batch.prompts))
        # 1-2. rollout -> rewards (DAPO: dynamic sampling until the batch is full)
        rollout, rewards, metrics = self.collect_rollouts(batch)
        log: list[dict] = []
        skipped = 0
        if rollout is None:  # every group had equal rewards in every round: an empty step
            for _ in range(n_updates):
                self._optimizer_step(True, [])
            self._end_rollout_batch(step, {**metrics, "train/skipped_empty": 1.0}, log, 0, n_updates)
            return
        self.last_rollout, self.last_rewards = rollout, rewards
        # 3. what the micro-batches share: mini-batches, normalisers, credit batch statistics
        plan = self.plan(rollout, rewards)
        if self.fused:  # 4-5 in one forward per micro-batch: credit -> advantages -> loss
            skipped += self._optimizer_step(self.train_pass(plan, log), log)
        else:  # 4. credit -> advantages with the rollout policy, before any update
            with torch.no_grad():
                prepared = [self._micro_step(plan, idx, log, backward=False)[0] for idx in plan.micro]
            # 5. loss: for each of the ppo_epochs passes, one optimiser step per mini-batch
            # (verl's order: ``for epoch: for mini_batch``, lines 258-262 of VPPO-RL's dp_actor.py)
            for _ in range(self.hparams.ppo_epochs):
                for j in range(len(plan.mini)):
                    skipped += self._optimizer_step(self.train_pass(plan, log, prepared, j), log)
                for _ in range(len(plan.mini), n_updates // self.hparams.ppo_epochs):
                    self._optimizer_step(True, [])  # a short (dynamic-sampling) batch: fewer mini-batches
        self._end_rollout_batch(step, metrics, log, skipped, n_updates)

    def updates_per_rollout(self, prompts: int) -> int:
        """Optimiser steps of one rollout batch of ``prompts`` prompts (per rank):
        ``ppo_epochs * ceil(prompts / mini-batch prompts)``; every RL step takes this many
        (a short or empty batch fills them with empty steps), so ``global_step`` is always
        ``rollout batches x updates_per_rollout``.
        """
        minis = 1 if self.mini_prompts is None else -(-prompts // self.mini_prompts)
        return self.hparams.ppo_epochs * minis

    @property
    def mini_prompts(self) -> int | None:
        """Prompts of one mini-batch on this rank (``mini_batch_size / world_size``), or None."""
        size = self.hparams.get("mini_batch_size")
        if size is None:
            return None
        world = self.trainer.world_size if self._trainer is not None else 1
        if size % world:
            raise ConfigError("model.init_args.mini_batch_size", f"{size} prompts do not split over {world} ranks "
                              "(use a multiple of the number of ranks)")
        return size // world

    def _end_rollout_batch(self, step: int, metrics: dict, log: list[dict], skipped: int, n_updates: int) -> None:
        """Log the RL step, step the learning-rate schedule once per rollout batch (as
        verl / EasyR1, ``lr_scheduler.step()`` after ``update_policy``: fsdp_workers.py line 567
        of VPPO-RL a23c54b) and count the rollout batch.
        """
        metrics.update(reduce_metrics(log))
        metrics["train/nonfinite_skipped"] = float(skipped)
        metrics["train/optimizer_steps"] = float(n_updates)
        metrics["train/lr"] = self.optimizers().param_groups[0]["lr"]  # the rate this rollout batch used
        self.lr_schedulers().step()
        self.rollout_batches += 1
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
        """Mini-batches, their micro-batches and normalisers, and the credit statistics of
        the whole rollout batch.
        """
        self.policy.train()
        micro, mini, norm, aux = [], [], [], []
        for rows in group_mini_batches(rollout.group_ids, self.mini_prompts):
            parts = group_micro_batches(rollout.group_ids[rows], self.hparams.micro_batch_size)
            mini.append(list(range(len(micro), len(micro) + len(parts))))
            micro.extend(rows[p] for p in parts)
            norm.append(self._global_normaliser(rollout.response_mask[rows]))
            target = None if rollout.evidence_target is None else rollout.evidence_target[rows]
            aux.append(self._aux_normaliser(target, rollout.response_mask[rows], rewards[rows]))
        return StepPlan(rollout, rewards, micro, mini, norm, aux, self._batch_statistics(rollout, rewards, micro))

    def train_pass(self, plan: StepPlan, log: list[dict], prepared: list[Prepared] | None = None,
                   mini: int = 0) -> bool:
        """Forward + loss + backward of every micro-batch of mini-batch ``mini``; True if a
        loss was not finite.
        """
        failed = False
        for k in plan.mini[mini]:
            failed |= self._micro_step(plan, plan.micro[k], log, None if prepared is None else prepared[k],
                                       mini=mini)[1]
        return failed

    def _micro_step(
        self, plan: StepPlan, idx: Tensor, log: list[dict], prepared: Prepared | None = None, backward: bool = True,
        mini: int = 0,
    ) -> tuple[Prepared, bool]:
        """One micro-batch: forward; without ``prepared``, credit -> advantages (and
        ``ref_logp``) from its detached signals; with ``backward``, loss and backward.

        Fused: ``prepared=None, backward=True``; the two-pass rollout-policy pass:
        ``prepared=None, backward=False`` (under no_grad); a PPO epoch: ``prepared`` given.
        Returns ``(prepared, loss not finite)``.
        """
        mb, r, m = plan.rollout.select(idx), plan.rewards[idx], {}
        out = self.forward_signals(self.policy, mb, self.signal_request if prepared is None else self.loss_request)
        if prepared is not None and out.masked_logp is None:  # the rollout policy's (PAPO's auxiliary loss)
            out.masked_logp = prepared.masked_logp
        if prepared is None:
            signals = signals_of(out, mb, r).detached()
            adv = self._credit_advantages(mb, r, signals, plan.batch_stats, m)
            prepared = Prepared(None if backward else out.logp, adv, self._reference_logp(mb), out.masked_logp)
            m["policy/entropy"] = masked_mean(signals.entropies, mb.response_mask)
            m.update(batch_diagnostics(signals, layer=self.diagnostics_layer))
        failed = False
        if backward:
            old_logp = out.logp.detach() if prepared.old_logp is None else prepared.old_logp
            loss, lm = policy_objective(
                self.objective, out.logp, old_logp, prepared.adv, mb.response_mask, prepared.ref, plan.normaliser[mini]
            )
            m.update({f"policy/{k}": v for k, v in lm.items()})
            failed = self._backward(loss + self._aux_loss(out, mb, r, plan.aux_normaliser[mini], m), m)
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

    def _aux_normaliser(self, evidence_target: Tensor | None, response_mask: Tensor, rewards: Tensor):
        """The credit methods' auxiliary-loss normalisers over a whole mini-batch (all ranks),
        so the loss does not depend on micro-batching or the number of ranks.
        """
        norm = self.credit.auxiliary_normaliser(rewards, evidence_target, response_mask)
        if norm is None or self.trainer.world_size == 1:
            return norm
        reduce = self.trainer.strategy.reduce
        return {k: reduce(torch.as_tensor(v, device=self.device, dtype=torch.float32), reduce_op="sum")
                for k, v in norm.items()}

    def _aux_loss(self, out, rollout, rewards: Tensor, normaliser, metrics: dict) -> Tensor:
        zero = torch.zeros((), device=out.logp.device)
        aux, m = self.credit.auxiliary_loss(signals_of(out, rollout, rewards), normaliser)
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

    def _batch_statistics(self, rollout: RolloutBatch, rewards: Tensor, micro: list[Tensor]) -> dict | None:
        """The credit methods' batch statistics over the whole rollout batch and all ranks
        (:func:`steps.batch_statistics`).
        """
        forward = partial(self.forward_signals, self.policy, request=self.signal_request)
        return batch_statistics(self.credit, forward, rollout, rewards, micro, self.trainer.world_size)

    def _optimizer_step(self, nonfinite: bool, log: list[dict]) -> bool:
        """Clip and step, unless a loss (on any rank) or the gradient norm is not finite: then
        the gradients are dropped first, so the step changes nothing (AdamW skips parameters
        without a gradient) but still counts (``global_step``, the schedule and the per-step
        seeds advance). Returns whether the step was skipped.
        """
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
        return nonfinite

    # ----------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rollout_batches"] = self.rollout_batches

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Checkpoints from before mini-batches took one optimiser step per rollout batch.
        self.rollout_batches = int(checkpoint.get("rollout_batches", checkpoint.get("global_step", 0)))

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
