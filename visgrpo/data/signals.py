"""What the teacher-forced forward pass is asked for (:class:`SignalRequest`) and what it
returns (:class:`Signals`).

The contract between :mod:`visgrpo.attention.forward`, which produces the signals, and the
credit methods of :mod:`visgrpo.credit`, which read them (docs/architecture.md, "Data flow
of one RL step"). Both import it from here, so neither imports the other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from visgrpo.data.perturb import Perturbation


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
        masked_logp: the image perturbation whose log-probs go to ``Signals.masked_logp``
            (VPPO, PAPO): one more forward, without grad, on perturbed ``pixel_values``.
    """

    image_attention_layers: frozenset[int] = frozenset()
    response_attention_layers: frozenset[int] = frozenset()
    grad_attention_layers: frozenset[int] = frozenset()
    hidden_states: bool = False
    entropies: bool = False
    own_attention_layers: frozenset[int] = frozenset()
    masked_logp: Perturbation | None = None

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
            _one_perturbation(self.masked_logp, other.masked_logp),
        )


def _one_perturbation(a: Perturbation | None, b: Perturbation | None) -> Perturbation | None:
    if a is not None and b is not None and a != b:
        raise ValueError(f"SignalRequest.masked_logp: two credit methods ask for different perturbations "
                         f"({a} and {b}); give them the same mask settings")
    return a if a is not None else b


@dataclass
class Signals:
    """Per-token signals of one forward pass plus the batch's rewards and evidence.

    :func:`visgrpo.attention.forward.policy_forward` returns one, every tensor as computed
    (with autograd where the caller's context has it; ``rewards`` and the evidence fields
    None until the RL step fills them in with :func:`dataclasses.replace`). The credit
    signals, which shape rewards and advantages, are constants: :meth:`detached` is the one
    place they are cut from the graph. The auxiliary losses read the signals as computed.

    Attributes:
        response_mask: [B, T] bool, real response tokens.
        group_ids: [B] long, prompt group of each response (None when the forward's batch
            has none).
        rewards: [B] float outcome rewards (None as the forward returns them).
        image_mask: [B, N] bool, valid image-token slots.
        entropies: [B, T] float32 entropies of softmax(logits / temperature) (0 at padding),
            or None.
        hidden: [B, T, D] last-layer hidden states at the rows ``P + t - 1`` that predict
            the response tokens, or None.
        own_hidden: [B, T, D] last-layer hidden states at the tokens' own positions
            ``P + t``, or None.
        image_hidden_mean: [B, D] mean last-layer hidden state of the image tokens, or None.
        image_attention: layer -> [B, T, N] attention of response rows on image tokens
            (head mean; with autograd for grad layers in the loss forward).
        response_attention: layer -> [B, T, T] response x response attention (head mean).
        own_image_attention: layer -> [B, T, N] attention of the query at token t's own
            position ``P + t`` on image tokens (head mean; 0 at padding).
        evidence_mask: [B, N] float coverage in [0, 1], or None.
        evidence_target: [B, N] float smoothed target summing to 1 per sample, or None.
        region_labels: [B, N] long, 0 background, k = 1-based box index, or None.
        logp: [B, T] float32 log-probs of the response tokens (0 at padding): detached in
            the credit signals, WITH autograd in the loss forward's; or None.
        masked_logp: [B, T] log-probs of the response tokens on the perturbed image
            (``SignalRequest.masked_logp``; 0 at padding; without autograd unless the
            perturbation asks for it: PAPO's recompute option), or None.
    """

    response_mask: Tensor
    group_ids: Tensor | None
    rewards: Tensor | None
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
    logp: Tensor | None = None
    masked_logp: Tensor | None = None

    def detached(self) -> Signals:
        """A copy whose tensors (and the attention maps of every layer) are cut from the
        autograd graph: the credit signals, constants to the rewards and advantages they
        shape. The only place signals are detached.
        """
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.detach()
            elif isinstance(value, dict):
                value = {layer: attn.detach() for layer, attn in value.items()}
            values[f.name] = value
        return Signals(**values)

    def layer_maps(self, kind: str, layers: Iterable[int]) -> list[Tensor]:
        """The maps of ``layers`` in ``image_attention``, ``response_attention`` or
        ``own_image_attention`` (clear error).
        """
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
        the queries at the tokens' own positions (``own_image_attention``).
        """
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

