"""EvidenceDataModule: prompts, length filter, fingerprint check, seeded order and resume."""

from __future__ import annotations

import itertools
import warnings

import datasets
import pytest
import torch
from PIL import Image

from visgrpo.data.batch import PromptBatch
from visgrpo.data.geometry import processor_geometry
from visgrpo.data.io import save_dataset
from visgrpo.data.schema import BASE_FEATURES, DERIVED_FEATURES, FingerprintMismatch
from visgrpo.lightning.datamodule import EpochOrder, EvidenceDataModule

N_ROWS = 10
BIG = {1, 4, 7}  # rows with a 224x224 image (64 tokens); the others are 56x56 (4 tokens)
QUESTION = "What colour is the circle ?"


def _side(i: int) -> int:
    return 224 if i in BIG else 56


def write_dataset(path, fingerprint: dict | None, evidence: bool = False):
    """10 rows; with ``evidence`` the derived columns for the tiny qwen2_5_vl processor."""
    rows = {k: [] for k in BASE_FEATURES}
    for i in range(N_ROWS):
        s = _side(i)
        rows["id"].append(f"s{i}")
        rows["image"].append(Image.new("RGB", (s, s), (20 * i, 0, 0)))
        rows["question"].append(QUESTION)
        rows["answer"].append("red")
        rows["answer_type"].append("text")
        rows["boxes"].append([[0.0, 0.0, s / 2, s / 2]])
        rows["box_labels"].append(["circle"])
        rows["source"].append("test")
        rows["width"].append(s)
        rows["height"].append(s)
    features = dict(BASE_FEATURES)
    if evidence:
        features.update(DERIVED_FEATURES)
        for name in DERIVED_FEATURES:
            rows[name] = []
        for i in range(N_ROWS):
            g = _side(i) // 14  # patches per side; merged tokens = (g/2)^2
            n = (g // 2) ** 2
            rows["grid_thw"].append([[1, g, g]])
            rows["evidence_mask"].append([1.0] + [0.0] * (n - 1))
            rows["evidence_target"].append([1.0] + [0.0] * (n - 1))
            rows["region_labels"].append([1] + [0] * (n - 1))
    ds = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
    meta = {"processor": fingerprint} if fingerprint else {}
    return save_dataset(ds, path, meta=meta)


@pytest.fixture(scope="module")
def model_dir(tiny_model_dirs):
    return tiny_model_dirs["qwen2_5_vl"]


@pytest.fixture(scope="module")
def fingerprint(model_dir):
    from transformers import AutoProcessor

    return processor_geometry(AutoProcessor.from_pretrained(model_dir)).fingerprint()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, fingerprint):
    return write_dataset(tmp_path_factory.mktemp("ds") / "train", fingerprint, evidence=True)


def _dm(data_dir, model_dir, **kw) -> EvidenceDataModule:
    kw.setdefault("batch_size", 2)
    return EvidenceDataModule(train_path=str(data_dir), model_path=model_dir, **kw)


def _ids(loader, steps=None) -> list[list[str]]:
    return [[s["id"] for s in batch.samples] for batch in itertools.islice(loader, steps)]


def test_prompt_batch_contents(data_dir, model_dir):
    dm = _dm(data_dir, model_dir, system_prompt="Be brief .")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, PromptBatch) and len(batch) == 2
    s, text = batch.samples[0], batch.prompts[0]
    assert "image" not in s and s["family"] == "qwen2_5_vl"
    side = 224 if s["id"] in {f"s{i}" for i in BIG} else 56
    assert s["resized_hw"] == [(side, side)] and s["grid_thw"] == [[1, side // 14, side // 14]]
    assert text.startswith("<|im_start|>system\nBe brief .<|im_end|>")
    assert "<|vision_start|><|image_pad|><|vision_end|>" + QUESTION + "\nThink inside" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert batch.messages[0][1]["content"][0] == {"type": "image"}
    assert batch.images[0][0].size == (side, side)


def test_over_long_prompts_filtered_with_count(data_dir, model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    probe = _dm(data_dir, model_dir)
    small = next(
        b for b in probe.train_dataloader() if b.samples[0]["id"] not in {f"s{i}" for i in BIG}
    )
    # reference length from the processor itself: 56x56 image -> 4 image tokens
    n_small = processor(text=[small.prompts[0]], images=small.images[0], return_tensors="pt")[
        "input_ids"
    ].shape[1]
    n_big = n_small - 4 + 64  # same text, 224x224 image -> 8x8 = 64 tokens
    dm = _dm(data_dir, model_dir, max_prompt_tokens=n_big - 1)
    with pytest.warns(UserWarning, match="filtered 3 of 10 prompts"):
        dm.setup("fit")
    assert dm.filter_stats[str(data_dir)] == {"kept": 7, "filtered": 3}
    ids = {i for step in _ids(dm.train_dataloader()) for i in step}
    assert not ids & {f"s{i}" for i in BIG} and len(ids) == 6  # 7 kept, 3 steps of 2
    dm = _dm(data_dir, model_dir, max_prompt_tokens=n_big)  # exactly fits: nothing dropped
    dm.setup("fit")
    assert dm.filter_stats[str(data_dir)]["filtered"] == 0


def test_fingerprint_mismatch(tmp_path, model_dir, fingerprint):
    other = dict(fingerprint, max_pixels=fingerprint["max_pixels"] * 4)
    path = write_dataset(tmp_path / "other", other, evidence=True)
    with pytest.raises(FingerprintMismatch, match=rf"{tmp_path / 'other'}.*max_pixels"):
        _dm(path, model_dir, require_evidence=True).setup("fit")
    dm = _dm(path, model_dir)  # not required: the masks are dropped with a warning
    with pytest.warns(UserWarning, match="ignoring its evidence columns"):
        dm.setup("fit")
    assert "evidence_mask" not in dm.datasets["train"].column_names
    with pytest.raises(FingerprintMismatch, match="no processor fingerprint"):
        _dm(write_dataset(tmp_path / "none", None), model_dir, require_evidence=True).setup("fit")


def test_order_is_seeded_permutation_per_epoch(data_dir, model_dir):
    a, b, c = (_dm(data_dir, model_dir, seed=s).train_dataloader() for s in (0, 0, 1))
    epoch_a1, epoch_b1, epoch_c1 = _ids(a), _ids(b), _ids(c)
    assert epoch_a1 == epoch_b1 and epoch_a1 != epoch_c1
    assert len(epoch_a1) == 5 and sorted(sum(epoch_a1, [])) == sorted(
        f"s{i}" for i in range(N_ROWS)
    )
    epoch_a2 = _ids(a)  # next epoch: another permutation of the same rows
    assert epoch_a2 != epoch_a1 and sorted(sum(epoch_a2, [])) == sorted(sum(epoch_a1, []))


def test_state_dict_resumes_at_next_batch(data_dir, model_dir):
    full = _ids(_dm(data_dir, model_dir, seed=3).train_dataloader())
    dm = _dm(data_dir, model_dir, seed=3)
    assert _ids(dm.train_dataloader(), steps=2) == full[:2]
    dm.sample_prompts(3)
    state = dm.state_dict()
    assert state["order"]["consumed"] == 2 and state["stream"]["cursor"] == 3
    resumed = _dm(data_dir, model_dir, seed=3)
    resumed.load_state_dict(state)  # before the loader exists, as in Trainer.fit(ckpt_path=...)
    assert _ids(resumed.train_dataloader()) == full[2:]
    # the extra stream continues too, and it does not move the train order
    fresh = _dm(data_dir, model_dir, seed=3)
    expect = [s["id"] for s in fresh.sample_prompts(5).samples]
    assert [s["id"] for s in resumed.sample_prompts(2).samples] == expect[3:]


def test_ranks_split_each_global_step():
    # 8 rows, 2 prompts per rank, 2 ranks: a global step takes 4 rows of the permutation,
    # rank 0 the first two, rank 1 the next two; 1 rank x 4 prompts sees the same rows.
    one = list(EpochOrder(8, 4, seed=0).batches())
    r0 = list(EpochOrder(8, 2, seed=0, rank=0, world_size=2).batches())
    r1 = list(EpochOrder(8, 2, seed=0, rank=1, world_size=2).batches())
    assert len(one) == len(r0) == 2
    assert [a + b for a, b in zip(r0, r1, strict=True)] == one


def test_evidence_reaches_the_rollout_batch(data_dir, model_dir):
    from transformers import AutoModelForImageTextToText

    from visgrpo.rollout import HFRolloutEngine, SamplingConfig

    dm = _dm(data_dir, model_dir, require_evidence=True, seed=0)
    batch = next(iter(dm.train_dataloader()))
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    rb = HFRolloutEngine().generate(
        model, dm.processor, batch, SamplingConfig(max_new_tokens=2, num_generations=2)
    )
    n = [len(s["evidence_mask"]) for s in batch.samples]  # 4 or 64 tokens per prompt
    assert rb.image_mask.shape == (4, max(n)) and rb.image_mask.sum(-1).tolist() == [
        n[0],
        n[0],
        n[1],
        n[1],
    ]
    for b in range(4):
        k = n[b // 2]
        assert rb.evidence_target[b, :k].tolist() == [1.0] + [0.0] * (k - 1)
        assert rb.region_labels[b, 0] == 1 and rb.evidence_mask[b, k:].sum() == 0


def _odd_images_dataset(path):
    """Two 56x56 rows the training decode must convert: a 16-bit gradient PNG (mode I;16)
    and an RGBA PNG whose left half is transparent.
    """
    import io

    import numpy as np

    grad = np.tile(np.linspace(0, 65535, 56).round().astype(np.uint16), (56, 1))  # [56, 56]
    rgba = np.zeros((56, 56, 4), np.uint8)
    rgba[:, 28:] = (200, 10, 10, 255)  # right half opaque red, left half transparent black
    rows = {k: [] for k in BASE_FEATURES}
    for i, im in enumerate([Image.fromarray(grad), Image.fromarray(rgba, "RGBA")]):
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        for k, v in dict(id=f"odd{i}", image={"bytes": buf.getvalue(), "path": f"{i}.png"},
                         question=QUESTION, answer="red", answer_type="text",
                         boxes=[[0.0, 0.0, 28.0, 28.0]], box_labels=["x"], source="test",
                         width=56, height=56).items():  # fmt: skip
            rows[k].append(v)
    ds = datasets.Dataset.from_dict(rows, features=datasets.Features(dict(BASE_FEATURES)))
    return save_dataset(ds, path), grad


def test_training_decode_scales_16bit_and_composites_alpha(tmp_path, model_dir):
    import numpy as np

    path, grad = _odd_images_dataset(tmp_path / "odd")
    dm = _dm(path, model_dir, batch_size=2)
    dm.setup("fit")
    batch = dm.collate([dm.datasets["train"][0], dm.datasets["train"][1]])
    g = np.asarray(batch.images[0][0]).astype(float)  # [56, 56, 3]
    assert batch.images[0][0].mode == "RGB"
    assert np.abs(g[..., 0] - grad * 255.0 / 65535.0).max() <= 0.5  # scaled, not saturated
    assert (g == 255).mean() < 0.05 and abs(g.mean() - 127.5) < 1
    a = np.asarray(batch.images[1][0])
    assert (a[:, :28] == 255).all() and (a[:, 28:] == (200, 10, 10)).all()  # alpha on white


def test_max_image_pixels_refuses_naming_the_record(data_dir, model_dir):
    with pytest.raises(ValueError, match="max_image_pixels"):
        _dm(data_dir, model_dir, max_image_pixels=0)
    dm = _dm(data_dir, model_dir, max_image_pixels=56 * 56)  # the 224x224 rows are too large
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert len(dm.collate([ds[0]]).images[0][0].getdata()) == 56 * 56
    with pytest.raises(ValueError, match=r"record 's1': field 'image': image is 224x224 = 50,176 "
                       r"pixels, above the limit of 3,136"):  # fmt: skip
        dm.collate([ds[1]])


class _Recorder:
    """A LightningModule that records the prompt ids of each training step."""

    @staticmethod
    def build():
        import lightning.pytorch as pl

        class Recorder(pl.LightningModule):
            def __init__(self):
                super().__init__()
                self.w = torch.nn.Parameter(torch.zeros(1))
                self.seen: list[list[str]] = []

            def training_step(self, batch, batch_idx):
                self.seen.append([s["id"] for s in batch.samples])
                return (self.w**2).sum() + self.w.sum()

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=0.1)

        return Recorder()


@pytest.mark.slow
def test_trainer_resume_continues_data_order(tmp_path, data_dir, model_dir):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint

    def trainer(max_steps, root):
        ckpt = ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=1)
        return pl.Trainer(
            max_steps=max_steps,
            default_root_dir=root,
            callbacks=[ckpt],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
            devices=1,
        )

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        straight = _Recorder.build()
        trainer(7, tmp_path / "a").fit(straight, datamodule=_dm(data_dir, model_dir, seed=4))
        first = _Recorder.build()
        trainer(3, tmp_path / "b").fit(first, datamodule=_dm(data_dir, model_dir, seed=4))
        second = _Recorder.build()
        trainer(7, tmp_path / "b").fit(
            second,
            datamodule=_dm(data_dir, model_dir, seed=4),
            ckpt_path=str(tmp_path / "b" / "last.ckpt"),
        )
    # 7 steps cross the 5-step epoch boundary; the interrupted run sees the same prompts
    assert len(straight.seen) == 7
    assert first.seen + second.seen == straight.seen
