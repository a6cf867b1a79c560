"""``RLVRModule``: GRPO-family RL of a VLM with visually grounded credit assignment.

One training step (docs/architecture.md, "One RL step"):

1. the rollout engine samples ``G`` responses per prompt (no grad);
2. the reward head scores them; DAPO dynamic sampling drops groups of equal rewards and
   draws more prompts until the batch is full (at most ``max_sampling_tries`` rounds);
3. a no-grad teacher-forced pass gives the rollout log-probs and every detached signal the
   credit methods asked for (entropies, hidden states, probe attention); a no-grad pass of
   the reference (adapters disabled) gives ``ref_logp`` when the KL is on;
4. the credit methods add rewards (SAYO), the objective's advantage is computed per group,
   and the credit methods reshape it per token (VGPO, AT-RL);
5. for ``ppo_epochs`` passes over micro-batches of whole groups: a forward with grad (probe
   attention with autograd where EASE needs it), objective + auxiliary losses, backward;
   one optimiser step per pass. A non-finite loss skips the step and is logged.

When ``ppo_epochs == 1`` the rollout policy is the current policy, so step 3's pass is
folded into step 5 (``fused``): each micro-batch is forwarded once, with grad; its
detached signals feed the credit methods and ``old_logp = logp.detach()`` (ratio exactly
1: the on-policy gradient). Groups are whole inside micro-batches, so advantages are the
same as in the two-pass path; only VGPO's batch min-max then runs per micro-batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from visgrpo.credit import ComposedCredit, CreditMethod, SignalRequest
from visgrpo.credit.diagnostics import batch_diagnostics
from visgrpo.lightning.base import PolicyModule
from visgrpo.lightning.batching import group_micro_batches
from visgrpo.lightning.data import PromptBatch
from visgrpo.lightning.steps import collect_rollouts, reduce_metrics, signals_of
from visgrpo.models.loading import PolicyConfig
from visgrpo.models.reference import ReferencePolicy
from visgrpo.objectives import compute_advantages, get_preset, global_normaliser, policy_objective
from visgrpo.objectives._common import masked_mean
from visgrpo.rewards import RewardSpec
from visgrpo.rollout import SamplingConfig


class RLVRModule(PolicyModule):
    """RL with verifiable rewards for Qwen-VL policies.

    Args:
        policy: how to load the policy (hub id or local dir, dtype, LoRA, QLoRA, ...).
        objective: preset name (``grpo``, ``dapo``, ``dr_grpo``, ``gspo``, ``sapo``).
        objective_overrides: ``ObjectiveConfig`` fields to change (e.g. ``{kl_coef: 0.001}``).
        credit: credit methods (``class_path``/``init_args``), composed in order; empty = none.
        rewards: reward components of the reward head (default accuracy 1.0 + format 0.1).
        sampling: rollout sampling parameters (``num_generations`` = G).
        rollout_engine: ``hf`` (default) or ``vllm`` (CUDA only).
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps.
        max_grad_norm: gradient clipping norm (0 = off).
        micro_batch_size: responses per forward/backward (groups are kept whole).
        ppo_epochs: optimisation passes over each rollout batch.
        fused: fold the rollout log-prob pass into the training pass (default: ``ppo_epochs == 1``).
        logprob_chunk_size: rows per chunk of the full-vocabulary log-softmax.
        attention_chunk_size: query rows per chunk of the attention probe.
        diagnostics_layer: layer of the attention diagnostics (evidence ratio, forgetting curve).
        seed: base seed; step ``s`` draws its randomness from ``seed`` and ``s`` (resume-exact).
    """

    def __init__(
        self,
        policy: PolicyConfig,
        objective: str = "dapo",
        objective_overrides: dict | None = None,
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
    ) -> None:
        objective_config = get_preset(objective, **(objective_overrides or {}))  # fail before loading
        super().__init__(
            policy, rewards, sampling, rollout_engine, learning_rate, weight_decay, warmup_steps,
            logprob_chunk_size, attention_chunk_size, diagnostics_layer, seed,
        )
        self.save_hyperparameters(ignore=["credit"])  # after LightningModule.__init__, so they are logged
        self.automatic_optimization = False
        self.objective = objective_config
        self.credit = ComposedCredit(list(credit or []))
        if ppo_epochs < 1 or micro_batch_size < 1:
            raise ValueError(f"ppo_epochs ({ppo_epochs}) and micro_batch_size ({micro_batch_size}) must be >= 1")
        self.fused = (ppo_epochs == 1) if fused is None else fused
        if self.fused and ppo_epochs != 1:
            raise ValueError("fused=True needs ppo_epochs == 1 (the rollout policy must be the current one)")
        self.reference = ReferencePolicy(self.policy) if self.objective.kl_coef > 0 else None
        self.signal_request = self.credit.signal_request(self.num_layers).union(self.eval_request)
        self.grad_layers = self.signal_request.grad_attention_layers
        self.last_rollout = None
        self.last_rewards: Tensor | None = None
        self.last_metrics: dict[str, float] = {}

    def on_fit_start(self) -> None:
        # The credit methods are objects (not saved as hyper-parameters): log their settings.
        credit = repr(self.credit.methods) if self.credit.methods else "none"
        for logger in self.loggers:
            logger.log_hyperparams({"credit": credit})

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

    def _credit_advantages(self, rollout, rewards: Tensor, signals, metrics: dict) -> Tensor:
        """Credit rewards -> group advantage -> per-token credit reshaping; [B, T]."""
        extra, m = self.credit.extra_rewards(signals)
        metrics.update(m)
        total = rewards if extra is None else rewards + extra.to(rewards)
        metrics["reward/total"] = total.mean()
        adv, m = compute_advantages(self.objective.advantage, total, rollout.group_ids, eps=self.objective.adv_eps)
        metrics.update({f"adv/{k}": v for k, v in m.items()})
        adv_tok = adv[:, None].expand(rollout.response_mask.shape).to(torch.float32)  # [B, T]
        adv_tok, m = self.credit.token_advantages(adv_tok, signals)
        metrics.update(m)
        return adv_tok

    def _aux_normaliser(self, rollout, rewards: Tensor):
        """The credit methods' auxiliary-loss normalisers over the FULL batch (all ranks), so
        the loss does not depend on micro-batching or the number of ranks."""
        norm = self.credit.auxiliary_normaliser(rewards, rollout.evidence_target)
        if norm is None or self.trainer.world_size == 1:
            return norm
        reduce = self.trainer.strategy.reduce
        return {k: reduce(torch.as_tensor(v, device=self.device, dtype=torch.float32), reduce_op="sum")
                for k, v in norm.items()}

    def _aux_loss(self, out, rollout, rewards: Tensor, normaliser, metrics: dict) -> Tensor:
        zero = torch.zeros((), device=out.logp.device)
        if not self.grad_layers:
            return zero
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

    def _fused_pass(self, rollout, rewards, micro, normaliser, aux_norm, log: list[dict]) -> bool:
        skipped = False
        for idx in micro:
            mb, r, m = rollout.select(idx), rewards[idx], {}
            out = self.forward_signals(self.policy, mb, self.signal_request)
            signals = signals_of(out, mb, r, detach=True)
            adv = self._credit_advantages(mb, r, signals, m)
            ref = self._reference_logp(mb)
            loss, lm = policy_objective(self.objective, out.logp, out.logp.detach(), adv, mb.response_mask, ref, normaliser)
            m.update({f"policy/{k}": v for k, v in lm.items()})
            m["policy/entropy"] = masked_mean(out.entropy, mb.response_mask)
            m.update(batch_diagnostics(signals, layer=self.diagnostics_layer))
            skipped |= self._backward(loss + self._aux_loss(out, mb, r, aux_norm, m), m)
            log.append(m)
        return skipped

    @torch.no_grad()
    def _prepare(self, rollout, rewards, micro, log: list[dict]) -> list[dict]:
        prepared = []
        for idx in micro:
            mb, r, m = rollout.select(idx), rewards[idx], {}
            out = self.forward_signals(self.policy, mb, self.signal_request)
            signals = signals_of(out, mb, r, detach=True)
            prepared.append(
                {"old_logp": out.logp, "adv": self._credit_advantages(mb, r, signals, m), "ref": self._reference_logp(mb)}
            )
            m["policy/entropy"] = masked_mean(out.entropy, mb.response_mask)
            m.update(batch_diagnostics(signals, layer=self.diagnostics_layer))
            log.append(m)
        return prepared

    def _epoch_pass(self, rollout, rewards, prepared, micro, normaliser, aux_norm, log: list[dict]) -> bool:
        skipped = False
        request = SignalRequest(image_attention_layers=self.grad_layers, grad_attention_layers=self.grad_layers)
        for k, idx in enumerate(micro):
            mb, r, m, p = rollout.select(idx), rewards[idx], {}, prepared[k]
            out = self.forward_signals(self.policy, mb, request)
            loss, lm = policy_objective(self.objective, out.logp, p["old_logp"], p["adv"], mb.response_mask, p["ref"], normaliser)
            m.update({f"policy/{k}": v for k, v in lm.items()})
            skipped |= self._backward(loss + self._aux_loss(out, mb, r, aux_norm, m), m)
            log.append(m)
        return skipped

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

    # ----------------------------------------------------------------- training
    def _log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Write the step's metrics to the loggers every ``log_every_n_steps`` RL steps.

        They go to the loggers directly: Lightning's ``self.log`` costs about a millisecond
        per key and step (result collection, device moves), which was 10-15% of a tiny-model
        step. Only the progress-bar reward goes through ``self.log``; the full dict stays in
        ``self.last_metrics`` for callbacks.
        """
        self.last_metrics = metrics
        self.log("reward", metrics.get("reward/outcome", 0.0), prog_bar=True, on_step=True, batch_size=1)
        if step % max(int(self.trainer.log_every_n_steps), 1) == 0:
            for logger in self.loggers:
                logger.log_metrics(metrics, step=step)

    def training_step(self, batch: PromptBatch, batch_idx: int) -> None:
        step = self.global_step  # before this RL step's optimiser step(s)
        torch.manual_seed(self.hparams.seed * 1_000_003 + step)
        opt = self.optimizers()
        rollout, rewards, metrics = collect_rollouts(self, batch)
        if rollout is None:  # every group had equal rewards in every round: an empty step
            self._optimizer_step(True, [])
            self._log_step(step, {**metrics, "train/skipped_empty": 1.0})
            return
        self.last_rollout, self.last_rewards = rollout, rewards
        micro = group_micro_batches(rollout.group_ids, self.hparams.micro_batch_size)
        normaliser = self._global_normaliser(rollout.response_mask)
        aux_norm = self._aux_normaliser(rollout, rewards)
        log: list[dict] = []
        self.policy.train()
        skipped = 0
        if self.fused:
            skipped += self._optimizer_step(self._fused_pass(rollout, rewards, micro, normaliser, aux_norm, log), log)
        else:
            prepared = self._prepare(rollout, rewards, micro, log)
            for _ in range(self.hparams.ppo_epochs):  # one optimiser step per pass
                failed = self._epoch_pass(rollout, rewards, prepared, micro, normaliser, aux_norm, log)
                skipped += self._optimizer_step(failed, log)
        metrics.update(reduce_metrics(log))
        metrics["train/nonfinite_skipped"] = float(skipped)
        metrics["train/lr"] = opt.param_groups[0]["lr"]
        self._log_step(step, metrics)
