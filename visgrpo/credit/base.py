"""Credit-method interface: what the forward pass must produce, what it produced, and the
three hooks through which a method changes training.

A credit method (docs/methods.md) sees the detached signals of one teacher-forced
forward pass (:class:`Signals`) and may

* add a per-response reward before the group advantage (SAYO, ``extra_rewards``),
* reshape the per-token advantage (VGPO, AT-RL, ``token_advantages``); statistics taken
  over the whole rollout batch (VGPO's min-max) are declared in ``batch_reductions`` and
  computed per micro-batch by ``batch_statistics``, so micro-batching does not change them,
* add an auxiliary loss computed on attention WITH autograd (EASE, ``auxiliary_loss``).

Each method also declares the validation metrics of its own target
(:meth:`CreditMethod.target_metrics`). Methods compose through :class:`ComposedCredit`
(e.g. EASE + AT-RL). Each method declares
the signals it needs with :meth:`CreditMethod.request` (the base class binds the decoder
depth first, so layer specs resolve there) and the forward pass probes only those layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from visgrpo.data.signals import SignalRequest, Signals
from visgrpo.registry import Registry

Metrics = dict[str, "float | Tensor"]

_NAMED_LAYERS = ("last", "middle_third", "two_thirds", "all")


def resolve_layers(spec: int | str | Sequence[int | str], num_layers: int) -> tuple[int, ...]:
    """Resolve a layer specification to sorted, distinct, non-negative decoder-layer indices.

    Args:
        spec: an int (negative counts from the end: -1 = last), one of ``"last"``,
            ``"middle_third"`` (layers ``floor(L/3) .. floor(2L/3) - 1``, at least one),
            ``"two_thirds"`` (the single layer ``floor(2L/3)``, EASE's choice, capped at
            ``L - 1``), ``"all"``, or a list/tuple of those (union).
        num_layers: number of decoder layers L.

    Returns:
        Sorted tuple of indices in ``[0, L)``.

    Raises:
        ValueError: unknown name or out-of-range index.
    """
    L = int(num_layers)
    if L < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if isinstance(spec, (list, tuple, set, frozenset)):
        out: set[int] = set()
        for s in spec:
            out.update(resolve_layers(s, L))
        if not out:
            raise ValueError("empty layer specification")
        return tuple(sorted(out))
    if isinstance(spec, bool):
        raise ValueError(f"layer spec must be an int or a name, got {spec!r}")
    if isinstance(spec, str) and spec.lstrip("-").isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        idx = spec + L if spec < 0 else spec
        if not 0 <= idx < L:
            raise ValueError(f"layer {spec} out of range for {L} decoder layers")
        return (idx,)
    if spec == "last":
        return (L - 1,)
    if spec == "middle_third":
        lo, hi = L // 3, (2 * L) // 3
        return tuple(range(lo, max(hi, lo + 1)))
    if spec == "two_thirds":
        return (min((2 * L) // 3, L - 1),)
    if spec == "all":
        return tuple(range(L))
    raise ValueError(f"unknown layer spec {spec!r}; valid: an int or one of {', '.join(_NAMED_LAYERS)}")


def top_fraction_mask(scores: Tensor, mask: Tensor, frac: float, rounding: str = "ceil") -> tuple[Tensor, Tensor]:
    """Select the top ``frac`` of the masked entries of each row by ``scores``.

    ``rounding="ceil"``: ``k = ceil(frac * n - 1e-6)`` per row (n = real entries; the
    tolerance keeps float error in ``frac * n``, e.g. ``0.15 * 20 = 3.0000000000000004``,
    from adding one), so every row with ``n >= 1`` and ``frac > 0`` gets at least one entry.
    ``rounding="floor"``: ``k = max(1, floor(frac * n))`` for ``n >= 1`` (as
    ``max(1, int(n * frac))`` in the SAYO and VGPO authors' code).
    ``rounding="ceil_float32"``: ``k = ceil(n * frac)`` in float32, as VPPO's authors'
    ``torch.ceil(response_mask.sum(1) * top_p)`` (a long tensor times a Python float is
    float32): round-off there can add one token (``ceil(10 * 0.3) = 4``). Ties are broken by
    position (earlier first; stable sort). Vectorised: one sort per call.

    Args:
        scores: [B, T] float.
        mask: [B, T] bool, entries eligible for selection.
        frac: fraction in [0, 1].
        rounding: ``"ceil"``, ``"floor"`` or ``"ceil_float32"``.

    Returns:
        (selected [B, T] bool, k [B] long).
    """
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {frac}")
    mask = mask.bool()
    n = mask.sum(-1)  # [B]
    if rounding == "ceil":
        k = torch.ceil(n.double() * frac - 1e-6).clamp_min(0).long()  # [B]
    elif rounding == "ceil_float32":
        k = torch.ceil(n.float() * frac).long().minimum(n)  # [B]
    elif rounding == "floor":
        k = torch.floor(n.double() * frac).long().clamp_min(1).minimum(n)  # [B]
    else:
        raise ValueError(f"unknown rounding {rounding!r}; valid: ceil, floor, ceil_float32")
    masked = scores.detach().masked_fill(~mask, -math.inf)  # [B, T]
    order = masked.sort(dim=-1, descending=True, stable=True).indices  # [B, T]
    ar = torch.arange(scores.shape[-1], device=scores.device).expand_as(order)  # [B, T]
    rank = torch.empty_like(order).scatter_(-1, order, ar)  # [B, T] rank of each entry
    return mask & (rank < k[:, None]), k


class CreditMethod:
    """Base class of the credit methods; every hook defaults to the identity / None.

    Subclasses take their hyper-parameters as typed ``__init__`` arguments (LightningCLI
    ``class_path`` / ``init_args``), set ``name`` (the registry name, used as the metric
    prefix) and declare their signals in :meth:`request`, resolving their layer specs with
    :meth:`resolve`. The training module calls :meth:`signal_request` once with the decoder
    depth before any other hook; it stores ``num_layers`` and asks :meth:`request`.
    """

    name = "credit"

    def __init__(self) -> None:
        self.num_layers: int | None = None

    def resolve(self, spec, num_layers: int | None = None) -> tuple[int, ...]:
        """Resolve ``spec`` with ``num_layers`` or the depth given to :meth:`signal_request`."""
        L = num_layers if num_layers is not None else getattr(self, "num_layers", None)
        if L is None:
            if isinstance(spec, int) and spec >= 0:
                return (spec,)
            raise RuntimeError(
                f"credit method {self.name!r}: call signal_request(num_layers) before using "
                f"layer spec {spec!r}"
            )
        return resolve_layers(spec, L)

    def signal_request(self, num_layers: int) -> SignalRequest:
        """The signals this method needs from a model with ``num_layers`` decoder layers.

        Binds the depth (so :meth:`resolve` works in every later hook), then returns
        :meth:`request`. Subclasses override :meth:`request`, not this method.
        """
        self.num_layers = int(num_layers)
        return self.request()

    def request(self) -> SignalRequest:
        """The signals this method needs; layer specs resolved with :meth:`resolve`
        (``num_layers`` is bound). Default: nothing.
        """
        return SignalRequest()

    def set_progress(self, rollout_batches: int) -> None:
        """Called at the start of every RL step with the number of rollout batches trained
        so far (restored on resume): for settings on a schedule (PAPO's annealing).
        """

    def extra_rewards(self, signals: Signals) -> tuple[Tensor | None, Metrics]:
        """Per-response reward [B] added to the outcome reward (None = nothing)."""
        return None, {}

    def loss_request(self, num_layers: int) -> SignalRequest:
        """The signals :meth:`auxiliary_loss` needs from the loss forward (every training
        forward requests them, also in later PPO epochs). Default: the grad attention layers
        of :meth:`signal_request`; a loss that needs other signals overrides this.
        """
        grad = self.signal_request(num_layers).grad_attention_layers
        return SignalRequest(image_attention_layers=grad, grad_attention_layers=grad)

    @property
    def batch_reductions(self) -> dict[str, str]:
        """Statistics the method takes over the whole rollout batch: name -> how the partial
        values of micro-batches (and DDP ranks) combine, ``"min"``, ``"max"`` or ``"sum"``.
        Empty (default): every statistic lives in a response or a group, and groups are
        whole inside micro-batches.
        """
        return {}

    def batch_statistics(self, signals: Signals) -> dict[str, Tensor]:
        """Partial values (scalars) of :attr:`batch_reductions` over the rows of ``signals``.

        The training module combines them over every micro-batch (and rank) and passes the
        result to :meth:`token_advantages`, so the result does not depend on micro-batching.
        """
        return {}

    def token_advantages(
        self, advantages: Tensor, signals: Signals, batch_stats: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, Metrics]:
        """Reshape the per-token advantages [B, T] (identity by default).

        ``batch_stats``: the combined :meth:`batch_statistics` of the whole batch; only
        passed to methods with :attr:`batch_reductions` (None: ``signals`` are the batch).
        """
        return advantages, {}

    def auxiliary_loss(
        self, signals: Signals, normaliser: float | Tensor | None = None
    ) -> tuple[Tensor | None, Metrics]:
        """Scalar loss added to the objective, from signals WITH autograd (None = nothing).

        Args:
            signals: signals of the loss forward (grad attention layers keep their graph).
            normaliser: global count the method divides by (see
                :meth:`auxiliary_normaliser`), so micro-batching does not change the loss.
        """
        return None, {}

    def auxiliary_normaliser(
        self, rewards: Tensor, evidence_target: Tensor | None = None, response_mask: Tensor | None = None
    ) -> Tensor | None:
        """Global normaliser of :meth:`auxiliary_loss` computed on the FULL batch (or None).

        Sum it over ranks and pass it to every micro-batch's :meth:`auxiliary_loss`.
        ``response_mask`` [B, T] serves token-mean losses (VPPO, PAPO).
        """
        return None

    def target_metrics(self, signals: Signals) -> Metrics | None:
        """The validation metrics of this method's target: what it is meant to move, measured
        at its own layers and tokens with its own settings (issue 14), from detached
        ``signals`` of any batch (held-out validation included). Every run logs them as
        ``val/<name>/<metric>`` for every method that declares a target (a default instance
        when the method is not trained, so a baseline reports the same quantities;
        :mod:`visgrpo.credit.mechanism`). The signals it needs must be in :meth:`request`.

        Returns:
            ``{metric: scalar}`` (empty when the batch lacks what it needs), or None: the
            method declares no target of its own (default).
        """
        return None

    @classmethod
    def declares_target(cls) -> bool:
        """Whether the class overrides :meth:`target_metrics`."""
        return cls.target_metrics is not CreditMethod.target_metrics

    def settings(self) -> dict:
        """The method's hyper-parameters as set (its public attributes, depth excluded): what
        the run logs as its effective credit config.
        """
        return {k: v for k, v in vars(self).items() if k != "num_layers" and not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


class ComposedCredit(CreditMethod):
    """Several credit methods applied together (in list order).

    Requests are united, extra rewards summed, token advantages reshaped by each method in
    turn, auxiliary losses summed; metrics are prefixed ``<method name>/``.

    Args:
        methods: the credit methods (an empty list is the plain objective).
    """

    name = "composed"

    def __init__(self, methods: list[CreditMethod] | None = None) -> None:
        super().__init__()
        self.methods = list(methods or [])
        self.prefixes: list[str] = []
        for m in self.methods:
            if not isinstance(m, CreditMethod):
                raise TypeError(f"ComposedCredit: {m!r} is not a CreditMethod")
            prefix, n = m.name, 2
            while prefix in self.prefixes:
                prefix, n = f"{m.name}{n}", n + 1
            self.prefixes.append(prefix)

    def set_progress(self, rollout_batches: int) -> None:
        for m in self.methods:
            m.set_progress(rollout_batches)

    def request(self) -> SignalRequest:
        req = SignalRequest()
        for m in self.methods:
            req = req.union(m.signal_request(self.num_layers))
        return req

    @staticmethod
    def _prefixed(prefix: str, metrics: Metrics) -> Metrics:
        return {f"{prefix}/{k}": v for k, v in metrics.items()}

    def extra_rewards(self, signals: Signals) -> tuple[Tensor | None, Metrics]:
        total, metrics = None, {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            r, mm = m.extra_rewards(signals)
            metrics.update(self._prefixed(prefix, mm))
            if r is not None:
                total = r if total is None else total + r  # [B]
        return total, metrics

    def loss_request(self, num_layers: int) -> SignalRequest:
        req = SignalRequest()
        for m in self.methods:
            req = req.union(m.loss_request(num_layers))
        return req

    @property
    def batch_reductions(self) -> dict[str, str]:
        """The members' reductions, keyed ``<prefix>/<name>``."""
        return {f"{p}/{k}": op for p, m in zip(self.prefixes, self.methods, strict=True)
                for k, op in m.batch_reductions.items()}

    def batch_statistics(self, signals: Signals) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            out.update(self._prefixed(prefix, m.batch_statistics(signals)))
        return out

    def token_advantages(
        self, advantages: Tensor, signals: Signals, batch_stats: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, Metrics]:
        metrics: Metrics = {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            if m.batch_reductions and batch_stats is not None:
                own = {k: batch_stats[f"{prefix}/{k}"] for k in m.batch_reductions}
                advantages, mm = m.token_advantages(advantages, signals, own)  # [B, T]
            else:
                advantages, mm = m.token_advantages(advantages, signals)  # [B, T]
            metrics.update(self._prefixed(prefix, mm))
        return advantages, metrics

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor | None, Metrics]:
        """Sum of the members' losses; ``normaliser`` is a scalar (every member) or a dict
        keyed by member prefix (as returned by :meth:`auxiliary_normaliser`).
        """
        total, metrics = None, {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            norm = normaliser.get(prefix) if isinstance(normaliser, dict) else normaliser
            loss, mm = m.auxiliary_loss(signals, norm)
            metrics.update(self._prefixed(prefix, mm))
            if loss is not None:
                total = loss if total is None else total + loss
        return total, metrics

    def auxiliary_normaliser(
        self, rewards: Tensor, evidence_target: Tensor | None = None, response_mask: Tensor | None = None
    ) -> dict | None:
        out = {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            norm = m.auxiliary_normaliser(rewards, evidence_target, response_mask)
            if norm is not None:
                out[prefix] = norm
        return out or None

    def __repr__(self) -> str:
        return f"ComposedCredit({self.methods!r})"


#: name -> CreditMethod subclass; every module of the package registers its method here.
CREDIT_METHODS: Registry[type[CreditMethod]] = Registry("credit method")


def build_credit(names_or_methods: str | CreditMethod | Sequence[str | CreditMethod] | None) -> ComposedCredit:
    """A :class:`ComposedCredit` from registry names (default settings) and/or instances.

    ``"ease,atrl"`` and ``["ease", "atrl"]`` are the same; ``"none"`` / ``None`` / ``[]`` is
    the plain objective. An unknown name raises ``KeyError`` listing the valid ones.
    """
    if names_or_methods is None:
        return ComposedCredit([])
    if isinstance(names_or_methods, (str, CreditMethod)):
        names_or_methods = [names_or_methods]
    methods: list[CreditMethod] = []
    for item in names_or_methods:
        if isinstance(item, CreditMethod):
            methods.extend(item.methods if isinstance(item, ComposedCredit) else [item])
            continue
        for name in (n.strip() for n in str(item).split(",")):
            if name and name != "none":
                methods.append(CREDIT_METHODS.get(name)())
            elif name == "none":
                CREDIT_METHODS.get(name)  # validates registration
    return ComposedCredit(methods)
