"""Credit interface: layer specs, requests, composition (EASE + AT-RL), registry, CLI."""

from __future__ import annotations

import pytest
import torch

from visgrpo.credit import (
    CREDIT_METHODS,
    ATRLCredit,
    ComposedCredit,
    CreditMethod,
    EASECredit,
    SAYOCredit,
    build_credit,
    resolve_layers,
    top_fraction_mask,
)
from visgrpo.data.signals import SignalRequest, Signals


def test_resolve_layers():
    assert resolve_layers("last", 28) == (27,)
    assert resolve_layers(-1, 28) == (27,) and resolve_layers(-28, 28) == (0,)
    # middle third of 28 layers: floor(28/3) = 9 .. floor(56/3) - 1 = 17
    assert resolve_layers("middle_third", 28) == tuple(range(9, 18))
    assert resolve_layers("two_thirds", 28) == (18,)  # floor(2 * 28 / 3)
    assert resolve_layers("two_thirds", 36) == (24,)
    assert resolve_layers("middle_third", 2) == (0,) and resolve_layers("two_thirds", 1) == (0,)
    assert resolve_layers([3, "last", -1], 8) == (3, 7)
    assert resolve_layers("5", 8) == (5,)
    with pytest.raises(ValueError, match="out of range"):
        resolve_layers(28, 28)
    with pytest.raises(ValueError, match="last, middle_third, two_thirds"):
        resolve_layers("penultimate", 28)


def test_signal_request_union_and_validation():
    a = SignalRequest(image_attention_layers={1, 2}, hidden_states=True)
    b = SignalRequest(image_attention_layers=frozenset({2, 5}), grad_attention_layers=[4], entropies=True)
    u = a.union(b)
    assert u.image_attention_layers == frozenset({1, 2, 5}) and u.grad_attention_layers == frozenset({4})
    assert u.hidden_states and u.entropies and not u.response_attention_layers
    assert a.union(None) is a
    with pytest.raises(ValueError, match="resolved"):
        SignalRequest(image_attention_layers={-1})


def test_top_fraction_mask_counts_and_ties():
    scores = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0, 9.0]])
    mask = torch.tensor([[True, True, True, True, True, False]])
    sel, k = top_fraction_mask(scores, mask, 0.5)
    # n = 5 real -> k = ceil(2.5) = 3; ties broken by position; the masked 9.0 never chosen.
    assert k.tolist() == [3] and sel[0].tolist() == [True, True, True, False, False, False]


def test_unknown_method_lists_the_valid_ones():
    assert {"atrl", "ease", "none", "sayo", "vgpo"} <= set(CREDIT_METHODS.names())
    with pytest.raises(KeyError, match=f"valid: {', '.join(CREDIT_METHODS.names())}"):
        build_credit("vgpoo")


def test_build_credit_forms():
    assert build_credit(None).methods == [] and build_credit("none").methods == []
    c = build_credit("ease, atrl")
    assert [type(m) for m in c.methods] == [EASECredit, ATRLCredit]
    c2 = build_credit([SAYOCredit(rho=0.2), "vgpo", c])
    assert [m.name for m in c2.methods] == ["sayo", "vgpo", "ease", "atrl"]
    assert c2.methods[0].rho == 0.2


def test_string_layer_needs_signal_request_first():
    with pytest.raises(RuntimeError, match="signal_request"):
        SAYOCredit().resolve("last")
    assert SAYOCredit(layer=2).resolve(2) == (2,)


def _signals(num_layers=6):
    torch.manual_seed(0)
    B, T, N = 2, 40, 5
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 30:] = False
    maps = {i: torch.rand(B, T, N).softmax(-1).requires_grad_(True) for i in range(num_layers)}
    ra = torch.rand(B, T, T).tril()
    ra = ra / ra.sum(-1, keepdim=True)
    target = torch.rand(B, N).softmax(-1)
    return Signals(mask, torch.tensor([0, 0]), torch.tensor([1.0, 1.0]), torch.ones(B, N, dtype=torch.bool),
                   entropies=torch.rand(B, T), image_attention=maps,
                   response_attention={i: ra for i in range(num_layers)}, evidence_target=target,
                   own_image_attention={i: m.detach().roll(-1, 1) for i, m in maps.items()},
                   evidence_mask=(target > 0.2).float())


def test_composed_ease_plus_atrl_applies_both():
    sig = _signals()
    ease, atrl = EASECredit(), ATRLCredit()
    composed = ComposedCredit([ease, atrl])
    req = composed.signal_request(6)
    assert req == ease.signal_request(6).union(atrl.signal_request(6))
    adv = torch.full((2, 40), 0.5)
    out, m = composed.token_advantages(adv, sig)
    ref, _ = atrl.token_advantages(adv, sig)
    torch.testing.assert_close(out, ref)
    assert not torch.allclose(out, adv)  # AT-RL reshaped them
    loss, m2 = composed.auxiliary_loss(sig)
    ref_loss, _ = ease.auxiliary_loss(sig)
    assert loss.item() == pytest.approx(ref_loss.item()) and loss.item() > 0
    assert "atrl/anchor_share" in m and "ease/kl" in m2
    norm = composed.auxiliary_normaliser(sig.rewards, sig.evidence_target)
    assert list(norm) == ["ease"] and int(norm["ease"]) == 2
    extra, _ = composed.extra_rewards(sig)
    assert extra is None


def test_composed_sums_extra_rewards_with_distinct_prefixes():
    sig = _signals()
    one = ComposedCredit([SAYOCredit()])
    two = ComposedCredit([SAYOCredit(), SAYOCredit()])
    one.signal_request(6)
    two.signal_request(6)
    r1, _ = one.extra_rewards(sig)
    r2, m2 = two.extra_rewards(sig)
    torch.testing.assert_close(r2, 2 * r1)
    assert {"sayo/reward", "sayo2/reward"} <= set(m2)


def test_base_class_binds_the_depth_before_the_subclass_request():
    class Probe(CreditMethod):  # declares its layer spec only; no num_layers plumbing
        name = "probe"

        def __init__(self, layer="middle_third"):
            super().__init__()
            self.layer = layer

        def request(self):
            return SignalRequest(image_attention_layers=self.resolve(self.layer))

    m = Probe()
    assert m.signal_request(9) == SignalRequest(image_attention_layers={3, 4, 5})  # floor(9/3)..floor(18/3)-1
    assert m.num_layers == 9 and m.resolve("last") == (8,)
    composed = ComposedCredit([Probe("last"), Probe(1)])
    assert composed.signal_request(4).image_attention_layers == {1, 3}
    assert [p.num_layers for p in composed.methods] == [4, 4]


def test_base_method_is_identity():
    sig = _signals()
    m = CreditMethod()
    adv = torch.randn(2, 40)
    assert m.signal_request(6) == SignalRequest()
    assert m.extra_rewards(sig) == (None, {}) and m.auxiliary_loss(sig) == (None, {})
    assert m.token_advantages(adv, sig)[0] is adv
    with pytest.raises(TypeError, match="not a CreditMethod"):
        ComposedCredit(["ease"])


def test_lightning_cli_style_class_path_instantiation():
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--credit", type=list[CreditMethod])
    cfg = parser.parse_args([
        '--credit=[{"class_path": "visgrpo.credit.EASECredit", "init_args": {"lambda_attn": 0.01}},'
        ' {"class_path": "visgrpo.credit.ATRLCredit", "init_args": {"layers": [3, "last"]}}]'
    ])
    methods = (parser.instantiate(cfg).credit if hasattr(parser, "instantiate")
               else parser.instantiate_classes(cfg).credit)
    assert isinstance(methods[0], EASECredit) and methods[0].lambda_attn == 0.01
    assert ComposedCredit(methods).signal_request(8).image_attention_layers == frozenset({3, 7})
