"""Credit-method interface: what the forward pass must produce, what it produced, and the
three hooks through which a method changes training.

A credit method (docs/methods.md, SAYO to EASE) sees the detached signals of one teacher-forced
forward pass (:class:`Signals`) and may

* add a per-response reward before the group advantage (SAYO, ``extra_rewards``),
* reshape the per-token advantage (VGPO, AT-RL, ``token_advantages``),
* add an auxiliary loss computed on attention WITH autograd (EASE, ``auxiliary_loss``).

Methods compose through :class:`ComposedCredit` (e.g. EASE + AT-RL). Each method declares
the signals it needs with :meth:`CreditMethod.signal_request` so the forward pass probes
only those layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

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


def _frozen(value: Iterable[int] | None) -> frozenset[int]:
    return frozenset(int(v) for v in (value or ()))


@dataclass(frozen=True)
class SignalRequest:
    """What the teacher-forced forward pass must produce (resolved non-negative layers).

    Attributes:
        image_attention_layers: layers whose response-row x image-column attention
            (head mean, detached) goes to ``Signals.image_attention``.
        response_attention_layers: layers whose response x response attention (head mean,
            detached) goes to ``Signals.response_attention`` (AT-RL's graph).
        grad_attention_layers: layers whose image attention is computed WITH autograd in
            the loss forward (EASE); also stored in ``Signals.image_attention``.
        hidden_states: last-layer hidden states at response rows + image-token mean (VGPO).
        entropies: token entropies of the sampling distribution (SAYO).
        own_attention_layers: layers whose image attention is also needed with token t's
            OWN position ``P + t`` as the query (``Signals.own_image_attention``, detached;
            SAYO's authors' pairing), besides the row ``P + t - 1`` that predicts t.
    """

    image_attention_layers: frozenset[int] = frozenset()
    response_attention_layers: frozenset[int] = frozenset()
    grad_attention_layers: frozenset[int] = frozenset()
    hidden_states: bool = False
    entropies: bool = False
    own_attention_layers: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        for name in (
            "image_attention_layers",
            "response_attention_layers",
            "grad_attention_layers",
            "own_attention_layers",
        ):
            layers = _frozen(getattr(self, name))
            if any(i < 0 for i in layers):
                raise ValueError(f"SignalRequest.{name}: layers must be resolved (>= 0), got {sorted(layers)}")
            object.__setattr__(self, name, layers)

    def union(self, other: SignalRequest | None) -> SignalRequest:
        """The request producing everything ``self`` or ``other`` asks for."""
        if other is None:
            return self
        return SignalRequest(
            self.image_attention_layers | other.image_attention_layers,
            self.response_attention_layers | other.response_attention_layers,
            self.grad_attention_layers | other.grad_attention_layers,
            self.hidden_states or other.hidden_states,
            self.entropies or other.entropies,
            self.own_attention_layers | other.own_attention_layers,
        )


@dataclass
class Signals:
    """Per-token signals of one forward pass plus the batch's rewards and evidence.

    Attributes:
        response_mask: [B, T] bool, real response tokens.
        group_ids: [B] long, prompt group of each response.
        rewards: [B] float outcome rewards.
        image_mask: [B, N] bool, valid image-token slots.
        entropies: [B, T] token entropies (0 at padding) or None.
        hidden: [B, T, D] last-layer hidden states at the rows ``P + t - 1`` that predict
            the response tokens, or None.
        own_hidden: [B, T, D] last-layer hidden states at the tokens' own positions
            ``P + t``, or None.
        image_hidden_mean: [B, D] mean last-layer hidden state of the image tokens, or None.
        image_attention: layer -> [B, T, N] attention of response rows on image tokens
            (head mean; with autograd for grad layers in the loss forward).
        response_attention: layer -> [B, T, T] response x response attention (head mean).
        own_image_attention: layer -> [B, T, N] attention of the query at token t's own
            position ``P + t`` on image tokens (head mean, detached; 0 at padding).
        evidence_mask: [B, N] float coverage in [0, 1], or None.
        evidence_target: [B, N] float smoothed target summing to 1 per sample, or None.
        region_labels: [B, N] long, 0 background, k = 1-based box index, or None.
    """

    response_mask: Tensor
    group_ids: Tensor
    rewards: Tensor
    image_mask: Tensor
    entropies: Tensor | None = None
    hidden: Tensor | None = None
    image_hidden_mean: Tensor | None = None
    image_attention: dict[int, Tensor] = field(default_factory=dict)
    response_attention: dict[int, Tensor] = field(default_factory=dict)
    own_hidden: Tensor | None = None
    own_image_attention: dict[int, Tensor] = field(default_factory=dict)
    evidence_mask: Tensor | None = None
    evidence_target: Tensor | None = None
    region_labels: Tensor | None = None

    def layer_maps(self, kind: str, layers: Iterable[int]) -> list[Tensor]:
        """The maps of ``layers`` in ``image_attention``, ``response_attention`` or
        ``own_image_attention`` (clear error)."""
        store = getattr(self, kind)
        out = []
        for i in layers:
            if i not in store:
                raise KeyError(
                    f"Signals.{kind} has no layer {i} (has {sorted(store)}); was it in the "
                    f"SignalRequest given to the forward pass?"
                )
            out.append(store[i])
        if not out:
            raise ValueError(f"Signals.{kind}: no layers requested")
        return out

    def mean_image_attention(self, layers: Iterable[int], own: bool = False) -> Tensor:
        """[B, T, N] image attention averaged over ``layers`` (keeps autograd); ``own``:
        the queries at the tokens' own positions (``own_image_attention``)."""
        maps = self.layer_maps("own_image_attention" if own else "image_attention", layers)
        return maps[0] if len(maps) == 1 else torch.stack(maps).mean(0)

    def mean_response_attention(self, layers: Iterable[int]) -> Tensor:
        """[B, T, T] response x response attention averaged over ``layers``."""
        maps = self.layer_maps("response_attention", layers)
        return maps[0] if len(maps) == 1 else torch.stack(maps).mean(0)

    def require(self, *names: str, method: str) -> None:
        """Raise a clear error when a field ``method`` needs is None."""
        missing = [n for n in names if getattr(self, n) is None]
        if missing:
            raise ValueError(f"credit method {method!r} needs Signals.{', '.join(missing)} (None given)")


def top_fraction_mask(scores: Tensor, mask: Tensor, frac: float, rounding: str = "ceil") -> tuple[Tensor, Tensor]:
    """Select the top ``frac`` of the masked entries of each row by ``scores``.

    ``rounding="ceil"``: ``k = ceil(frac * n - 1e-6)`` per row (n = real entries; the
    tolerance keeps float error in ``frac * n``, e.g. ``0.15 * 20 = 3.0000000000000004``,
    from adding one), so every row with ``n >= 1`` and ``frac > 0`` gets at least one entry.
    ``rounding="floor"``: ``k = max(1, floor(frac * n))`` for ``n >= 1`` (as
    ``max(1, int(n * frac))`` in the SAYO and VGPO authors' code). Ties are broken by
    position (earlier first; stable sort). Vectorised: one sort per call.

    Args:
        scores: [B, T] float.
        mask: [B, T] bool, entries eligible for selection.
        frac: fraction in [0, 1].
        rounding: ``"ceil"`` or ``"floor"``.

    Returns:
        (selected [B, T] bool, k [B] long).
    """
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {frac}")
    mask = mask.bool()
    n = mask.sum(-1)  # [B]
    if rounding == "ceil":
        k = torch.ceil(n.double() * frac - 1e-6).clamp_min(0).long()  # [B]
    elif rounding == "floor":
        k = torch.floor(n.double() * frac).long().clamp_min(1).minimum(n)  # [B]
    else:
        raise ValueError(f"unknown rounding {rounding!r}; valid: ceil, floor")
    masked = scores.detach().masked_fill(~mask, -math.inf)  # [B, T]
    order = masked.sort(dim=-1, descending=True, stable=True).indices  # [B, T]
    ar = torch.arange(scores.shape[-1], device=scores.device).expand_as(order)  # [B, T]
    rank = torch.empty_like(order).scatter_(-1, order, ar)  # [B, T] rank of each entry
    return mask & (rank < k[:, None]), k


class CreditMethod:
    """Base class of the credit methods; every hook defaults to the identity / None.

    Subclasses take their hyper-parameters as typed ``__init__`` arguments (LightningCLI
    ``class_path`` / ``init_args``) and set ``name`` (the registry name, used as the
    metric prefix). Layer specs are resolved by :meth:`signal_request`, which the training
    module calls once with the decoder depth before any other hook.
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
        """The signals this method needs from a model with ``num_layers`` decoder layers."""
        self.num_layers = int(num_layers)
        return SignalRequest()

    def extra_rewards(self, signals: Signals) -> tuple[Tensor | None, Metrics]:
        """Per-response reward [B] added to the outcome reward (None = nothing)."""
        return None, {}

    def token_advantages(self, advantages: Tensor, signals: Signals) -> tuple[Tensor, Metrics]:
        """Reshape the per-token advantages [B, T] (identity by default)."""
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

    def auxiliary_normaliser(self, rewards: Tensor, evidence_target: Tensor | None = None) -> Tensor | None:
        """Global normaliser of :meth:`auxiliary_loss` computed on the FULL batch (or None).

        Sum it over ranks and pass it to every micro-batch's :meth:`auxiliary_loss`.
        """
        return None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "num_layers")
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

    def signal_request(self, num_layers: int) -> SignalRequest:
        self.num_layers = int(num_layers)
        req = SignalRequest()
        for m in self.methods:
            req = req.union(m.signal_request(num_layers))
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

    def token_advantages(self, advantages: Tensor, signals: Signals) -> tuple[Tensor, Metrics]:
        metrics: Metrics = {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            advantages, mm = m.token_advantages(advantages, signals)  # [B, T]
            metrics.update(self._prefixed(prefix, mm))
        return advantages, metrics

    def auxiliary_loss(self, signals: Signals, normaliser=None) -> tuple[Tensor | None, Metrics]:
        """Sum of the members' losses; ``normaliser`` is a scalar (every member) or a dict
        keyed by member prefix (as returned by :meth:`auxiliary_normaliser`)."""
        total, metrics = None, {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            norm = normaliser.get(prefix) if isinstance(normaliser, dict) else normaliser
            loss, mm = m.auxiliary_loss(signals, norm)
            metrics.update(self._prefixed(prefix, mm))
            if loss is not None:
                total = loss if total is None else total + loss
        return total, metrics

    def auxiliary_normaliser(self, rewards: Tensor, evidence_target: Tensor | None = None) -> dict | None:
        out = {}
        for prefix, m in zip(self.prefixes, self.methods, strict=True):
            norm = m.auxiliary_normaliser(rewards, evidence_target)
            if norm is not None:
                out[prefix] = norm
        return out or None

    def __repr__(self) -> str:
        return f"ComposedCredit({self.methods!r})"


#: name -> CreditMethod subclass (``none``, ``sayo``, ``vgpo``, ``atrl``, ``ease``).
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
