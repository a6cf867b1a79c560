"""EvidenceDataModule: prompts from evidence datasets, in a seeded, resumable order.

Processor: pass ``model_path`` (the CLI links it to the policy's ``name_or_path`` with
``link_arguments``) or call :meth:`EvidenceDataModule.set_processor`; failing both,
``setup`` takes ``trainer.lightning_module.processor``. The processor decides the prompt
text (chat template), the expanded prompt length and the fingerprint the dataset's
evidence masks must have been built for.

Order and resume: each epoch is a permutation of the (filtered) train rows drawn from
``seed + epoch``; a global step takes ``batch_size * world_size`` consecutive rows and rank
r the r-th slice of ``batch_size`` (so 2 ranks x 2 prompts see what 1 rank x 4 prompts
sees). The position is the number of steps the *training loop consumed* (counted in
``on_after_batch_transfer``, so Lightning's prefetching does not move it); it is saved in
the checkpoint both as the DataModule's ``state_dict`` and as the train loader's (the
loader is a stateful iterable, so Lightning restores it before iterating), and
``--ckpt_path last`` continues with the next unseen batch. :meth:`sample_prompts` draws
from a second, independent seeded stream (DAPO resampling) whose cursor is saved too.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from visgrpo.data.batch import PromptBatch
from visgrpo.data.geometry import processor_geometry
from visgrpo.data.images import DEFAULT_MAX_PIXELS
from visgrpo.data.io import load_dataset_dir
from visgrpo.data.schema import DERIVED_FEATURES, FingerprintMismatch, check_fingerprint
from visgrpo.lightning.data import PromptCollator
from visgrpo.lightning.errors import ConfigError
from visgrpo.models.loading import load_processor
from visgrpo.rollout.prompts import (
    DEFAULT_PROMPT_TEMPLATE,
    IMAGE_COLUMNS,
    build_messages,
    expanded_length,
    image_sizes,
    prompt_text,
)

EXTRA_STREAM_OFFSET = 0x5EED  # seed offset of the sample_prompts stream
EPOCH_STRIDE = 1_000_003


def _perm(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


class EpochOrder:
    """Seeded per-epoch permutation cut into per-rank batches, with a consumed-step cursor."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.consumed = 0, 0
        if len(self) == 0:
            raise ValueError(
                f"{n} train prompts cannot fill one step of {batch_size} x {world_size} ranks"
            )

    def __len__(self) -> int:
        return self.n // (self.batch_size * self.world_size)

    def batches(self):
        """Index lists of the remaining steps of the current epoch (next epoch if it is done)."""
        if self.consumed >= len(self):
            self.epoch, self.consumed = self.epoch + 1, 0
        perm = _perm(self.n, self.seed + EPOCH_STRIDE * self.epoch)
        step_size = self.batch_size * self.world_size
        for step in range(self.consumed, len(self)):
            start = step * step_size + self.rank * self.batch_size
            yield perm[start : start + self.batch_size]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed, "seed": self.seed, "n": self.n}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state.get("n", self.n) != self.n or state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"data state is for {state.get('n')} prompts / seed {state.get('seed')}, "
                f"this run has {self.n} / {self.seed}: the dataset or filters changed since the checkpoint"
            )
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


class ResumableLoader:
    """Stateful iterable over prompt batches (Lightning saves/restores ``state_dict``).

    Not a ``DataLoader`` subclass, so Lightning does not swap in a distributed sampler:
    sharding is done by :class:`EpochOrder`.
    """

    def __init__(self, dataset, order: EpochOrder, collate, num_workers: int = 0):
        self.dataset, self.order, self.collate, self.num_workers = (
            dataset,
            order,
            collate,
            num_workers,
        )
        self.count_on_yield = True  # without a trainer, a yielded batch counts as consumed

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        loader = DataLoader(
            self.dataset,
            batch_sampler=list(self.order.batches()),
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )
        for batch in loader:
            if self.count_on_yield:
                self.order.consumed += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return self.order.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.order.load_state_dict(state)


def undecoded_images(ds):
    """``ds`` with its image columns read as ``{"bytes", "path"}``: the collator decodes them
    (:func:`visgrpo.rollout.prompts.row_images`: pixel limit first, then one orientation and
    colour rule) instead of ``datasets``' decoder.
    """
    import datasets

    for col in IMAGE_COLUMNS:
        feat = ds.features.get(col)
        if isinstance(feat, datasets.Image):
            ds = ds.cast_column(col, datasets.Image(decode=False))
        elif isinstance(feat, (datasets.Sequence, list)):
            ds = ds.cast_column(col, datasets.Sequence(datasets.Image(decode=False)))
    return ds


class EvidenceDataModule(pl.LightningDataModule):
    """Prompts (images, question, answer, evidence) for RLVR training, validation and test.

    Args:
        train_path: dataset directory written by the data tools (``load_dataset_dir``).
        val_path: held-out split for validation (greedy decoding); ``None`` = no validation.
        test_path: split for ``visgrpo test``.
        model_path: model directory / hub id whose processor is used (or use ``set_processor``).
        batch_size: prompts per optimiser step and rank (each gets G responses).
        val_batch_size: prompts per validation/test batch (default: ``batch_size``).
        num_workers: DataLoader worker processes.
        system_prompt: system turn; ``None`` keeps the chat template's default.
        prompt_template: ``str.format`` template of the user text with ``{question}``
            (other string/number columns may be used too).
        max_prompt_tokens: drop prompts whose length, image tokens included, exceeds this.
        require_evidence: the datasets must carry evidence masks built for this processor
            (fingerprint check; a mismatch is an error). Otherwise masks built for another
            processor are dropped with a warning.
        seed: seed of the prompt order and of the ``sample_prompts`` stream.
        limit_train: use only the first rows of the (filtered) train split.
        limit_val: likewise for validation and test.
        max_image_pixels: refuse (one line naming the record) images with more pixels than
            this, checked from the header before decoding, so memory stays bounded;
            ``None``: no limit.
    """

    def __init__(
        self,
        train_path: str,
        val_path: str | None = None,
        test_path: str | None = None,
        model_path: str | None = None,
        batch_size: int = 4,
        val_batch_size: int | None = None,
        num_workers: int = 0,
        system_prompt: str | None = None,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        max_prompt_tokens: int | None = None,
        require_evidence: bool = False,
        seed: int = 0,
        limit_train: int | None = None,
        limit_val: int | None = None,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__()
        if "{question}" not in prompt_template:
            raise ValueError(
                f"prompt_template must contain '{{question}}', got {prompt_template!r}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.train_path, self.val_path, self.test_path = train_path, val_path, test_path
        self.model_path = model_path
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.system_prompt = num_workers, system_prompt
        self.prompt_template, self.max_prompt_tokens = prompt_template, max_prompt_tokens
        self.require_evidence, self.seed = require_evidence, seed
        self.limit_train, self.limit_val = limit_train, limit_val
        if max_image_pixels is not None and max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1 or None, got {max_image_pixels}")
        self.max_image_pixels = max_image_pixels
        self._processor = None
        self.datasets: dict[str, Any] = {}
        self.filter_stats: dict[str, dict[str, int]] = {}
        self._order: EpochOrder | None = None
        self._loader: ResumableLoader | None = None
        self._pending_state: dict | None = None
        self._stream = {"epoch": 0, "cursor": 0}

    # ------------------------------------------------------------ processor
    def set_processor(self, processor) -> None:
        """Use ``processor`` (e.g. the policy's, already loaded) instead of ``model_path``."""
        self._processor = processor

    @property
    def processor(self):
        if self._processor is None:
            if self.model_path:
                self._processor = load_processor(self.model_path)
            else:
                module = self.trainer.lightning_module if self.trainer is not None else None
                if getattr(module, "processor", None) is None:
                    raise RuntimeError(
                        "EvidenceDataModule has no processor: set model_path, call set_processor(), "
                        "or attach it to a module with a .processor"
                    )
                self._processor = module.processor
        return self._processor

    @property
    def collate(self) -> PromptCollator:
        p = self.processor
        return PromptCollator(
            p,
            processor_geometry(p),
            self.prompt_template,
            self.system_prompt,
            self.max_image_pixels,
        )

    # ----------------------------------------------------------------- data
    def _rank_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return int(self.trainer.global_rank), int(self.trainer.world_size)

    def _load(self, path: str, limit: int | None, key: str = "data.train_path"):
        """The dataset at ``path`` (config key ``key``, named by user errors)."""
        try:
            ds, meta = load_dataset_dir(path)
        except FileNotFoundError as err:
            raise ConfigError(key, f"{err}; build it with `visgrpo-data synth|convert` and `masks`") from err
        ds = undecoded_images(ds)
        geom = processor_geometry(self.processor)
        derived = [c for c in DERIVED_FEATURES if c in ds.column_names and c != "grid_thw"]
        if self.require_evidence:
            try:
                check_fingerprint(meta.get("processor"), geom.fingerprint(), where=str(path),
                                  processor=self.model_path)
            except FingerprintMismatch as err:
                raise FingerprintMismatch(f"{key}: {err}") from err
            if len(derived) < 3:
                raise ConfigError(key, f"{path}: data.require_evidence is set but the dataset has no evidence "
                                  "masks; run `visgrpo-data masks` on it")
        elif derived or "grid_thw" in ds.column_names:
            try:
                check_fingerprint(meta.get("processor"), geom.fingerprint(), where=str(path),
                                  processor=self.model_path)
            except ValueError as err:
                warnings.warn(f"{err}; ignoring its evidence columns", stacklevel=2)
                ds = ds.remove_columns([c for c in DERIVED_FEATURES if c in ds.column_names])
        keep, dropped = self._fits(ds, path)
        if dropped:
            ds = ds.select(keep)
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        self.filter_stats[str(path)] = {"kept": len(keep), "filtered": dropped}
        return ds

    def _fits(self, ds, path) -> tuple[list[int], int]:
        """Indices of rows whose expanded prompt fits ``max_prompt_tokens``, and the drop count."""
        if self.max_prompt_tokens is None:
            return list(range(len(ds))), 0
        p, geom = self.processor, processor_geometry(self.processor)
        text_cols = ds.select_columns([c for c in ds.column_names if c not in IMAGE_COLUMNS])
        keep = []
        for i, row in enumerate(text_cols):
            sizes = image_sizes(row)
            text = prompt_text(
                p, build_messages(row, len(sizes), self.prompt_template, self.system_prompt)
            )
            if expanded_length(p, text, sizes, geom) <= self.max_prompt_tokens:
                keep.append(i)
        dropped = len(ds) - len(keep)
        if dropped:
            warnings.warn(
                f"{path}: filtered {dropped} of {len(ds)} prompts longer than max_prompt_tokens="
                f"{self.max_prompt_tokens} (image tokens included)",
                stacklevel=2,
            )
        if not keep:
            raise ValueError(f"{path}: no prompt fits max_prompt_tokens={self.max_prompt_tokens}")
        return keep, dropped

    def setup(self, stage: str | None = None) -> None:
        if "train" not in self.datasets and stage in (None, "fit"):
            self.datasets["train"] = self._load(self.train_path, self.limit_train, "data.train_path")
        for split, path in (("val", self.val_path), ("test", self.test_path)):
            if path and split not in self.datasets and stage in (None, "fit", "validate", "test"):
                self.datasets[split] = self._load(path, self.limit_val, f"data.{split}_path")

    # ---------------------------------------------------------- dataloaders
    def train_dataloader(self) -> ResumableLoader:
        if "train" not in self.datasets:
            self.setup("fit")
        rank, world = self._rank_world()
        self._order = EpochOrder(
            len(self.datasets["train"]), self.batch_size, self.seed, rank, world
        )
        if self._pending_state is not None:
            self._order.load_state_dict(self._pending_state["order"])
        self._loader = ResumableLoader(
            self.datasets["train"], self._order, self.collate, self.num_workers
        )
        self._loader.count_on_yield = self.trainer is None
        return self._loader

    def _eval_loader(self, split: str):
        if split not in self.datasets:
            return []
        return DataLoader(
            self.datasets[split],
            batch_size=self.val_batch_size,
            shuffle=False,
            collate_fn=self.collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self):
        return self._eval_loader("val")

    def test_dataloader(self):
        if not self.test_path:
            raise ConfigError("data.test_path", "`visgrpo test` needs a test split; set it to a dataset directory")
        return self._eval_loader("test")

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        if isinstance(batch, PromptBatch):
            return batch  # images and text only
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.trainer is not None and self.trainer.training and self._order is not None:
            self._order.consumed += 1
        return batch

    # ------------------------------------------------------ extra prompts
    def sample_prompts(self, n: int) -> PromptBatch:
        """``n`` more train prompts from an independent seeded stream (DAPO resampling)."""
        if "train" not in self.datasets:
            self.setup("fit")
        ds = self.datasets["train"]
        rank, world = self._rank_world()
        per_rank = len(ds) // world
        if per_rank == 0:
            raise ValueError(f"{len(ds)} train prompts cannot be shared by {world} ranks")
        idx = []
        while len(idx) < n:
            if self._stream["cursor"] >= per_rank:
                self._stream = {"epoch": self._stream["epoch"] + 1, "cursor": 0}
            perm = _perm(
                len(ds), self.seed + EXTRA_STREAM_OFFSET + EPOCH_STRIDE * self._stream["epoch"]
            )
            take = min(n - len(idx), per_rank - self._stream["cursor"])
            c = self._stream["cursor"]
            idx += [perm[(c + k) * world + rank] for k in range(take)]
            self._stream["cursor"] += take
        return self.collate([ds[i] for i in idx])

    def fixed_prompts(self, n: int) -> PromptBatch:
        """The first ``n`` validation prompts (train if there is no validation split): the
        fixed images of the attention-overlay callback.
        """
        if not self.datasets:
            self.setup("fit")
        ds = self.datasets.get("val") or self.datasets["train"]
        return self.collate([ds[i] for i in range(min(n, len(ds)))])

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        order = (
            self._order.state_dict()
            if self._order is not None
            else (self._pending_state or {}).get("order")
        )
        return (
            {"order": order, "stream": dict(self._stream)}
            if order is not None
            else {"stream": dict(self._stream)}
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._stream = dict(state_dict.get("stream", {"epoch": 0, "cursor": 0}))
        if state_dict.get("order") is not None:
            self._pending_state = {"order": dict(state_dict["order"])}
            if self._order is not None:
                self._order.load_state_dict(state_dict["order"])
