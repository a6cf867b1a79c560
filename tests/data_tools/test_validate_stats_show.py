"""validate (clean vs corrupted records), stats (counts, tokens, PNG), show (PNG)."""

from __future__ import annotations

import json

import datasets
import numpy as np

from data_tools.cli import main
from visgrpo.data.io import load_dataset_dir, save_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_validate_clean_dataset(masked_dir, synth_dir, tmp_path):
    rep = tmp_path / "ok.json"
    assert main(["validate", str(masked_dir), "--report", str(rep)]) == 0
    doc = json.loads(rep.read_text())
    assert doc["ok"] and [s["rows"] for s in doc["splits"]] == [32, 4]
    assert main(["validate", str(synth_dir / "train"), "--report", str(rep)]) == 0  # no masks yet


def test_validate_catches_corrupted_records(masked_dir, tmp_path):
    ds, meta = load_dataset_dir(masked_dir / "train")
    ds = ds.cast_column("image", datasets.Image(decode=False)).select(range(7))
    rows = ds.to_list()
    rows[0]["image"] = {"bytes": b"not a png", "path": None}
    rows[1]["boxes"][0] = [50.0, 50.0, 40.0, 60.0]  # inverted
    rows[2]["evidence_target"] = [2 * v for v in rows[2]["evidence_target"]]  # sums to 2
    rows[3]["grid_thw"] = [[1, 16, 18]]
    rows[4]["region_labels"] = rows[4]["region_labels"][:-1]
    rows[5]["answer_type"] = "essay"
    bad = tmp_path / "bad"
    save_dataset(datasets.Dataset.from_list(rows, features=ds.features), bad, meta=meta)
    rep = tmp_path / "bad.json"
    assert main(["validate", str(bad), "--report", str(rep)]) == 1
    doc = json.loads(rep.read_text())["splits"][0]
    fields = sorted(r["reason"].split(":")[0] for r in doc["reasons"])
    assert doc["processed"] == 7 and doc["skipped"] == 6
    assert fields == ["answer_type", "boxes[0]", "evidence_target", "grid_thw", "image", "region_labels"]
    ids = {r["reason"].split(":")[0]: r["examples"][0] for r in doc["reasons"]}
    assert ids["image"] == f"bad:id={rows[0]['id']}"
    # derived columns with a fingerprint for another processor: every grid is wrong
    other = tmp_path / "other"
    save_dataset(datasets.Dataset.from_list(rows[6:], features=ds.features), other,
                 meta={"processor": {**meta["processor"], "min_pixels": 100000}})
    # min_pixels 100000 upscales 224 -> ceil(224 * sqrt(100000 / 224^2) / 28) * 28 = 336 px
    assert main(["validate", str(other), "--report", str(rep)]) == 1
    assert "grid_thw" in json.loads(rep.read_text())["splits"][0]["reasons"][0]["reason"]
    # no fingerprint at all: a dataset-level error
    save_dataset(datasets.Dataset.from_list(rows[6:], features=ds.features), tmp_path / "nofp")
    assert main(["validate", str(tmp_path / "nofp"), "--report", str(rep)]) == 1
    assert "fingerprint" in json.loads(rep.read_text())["splits"][0]["dataset_errors"][0]


def test_stats_counts_and_png(masked_dir, synth_dir, tmp_path, capsys):
    png, js = tmp_path / "h.png", tmp_path / "s.json"
    assert main(["stats", str(masked_dir), "--png", str(png), "--json", str(js)]) == 0
    assert png.read_bytes()[:8] == PNG_MAGIC
    doc = json.loads(js.read_text())
    train, _ = load_dataset_dir(masked_dir / "train")
    tr = doc["train"]
    assert tr["records"] == 32 and sum(tr["by_answer_type"].values()) == 32
    assert tr["by_answer_type"]["number"] == list(train["answer_type"]).count("number")
    # 224 x 224 with Qwen2.5-VL: 8 x 8 = 64 tokens per image
    assert tr["tokens_per_image"] == {"images": 32, "min": 64, "median": 64.0, "mean": 64.0, "max": 64}
    share = np.mean([np.sum(m) / 64 for m in train["evidence_mask"]])
    assert abs(tr["evidence_coverage"]["mean"] - share) < 1e-6
    assert sum(tr["evidence_coverage"]["counts"]) == 32
    assert "tokens per image: min 64" in capsys.readouterr().out
    # without masks, --processor gives the token counts (Qwen3-VL: 224 -> 256 = 8 x 8 of 32 px)
    assert main(["stats", str(synth_dir / "validation"), "--processor", "qwen3_vl", "--json", str(js)]) == 0
    v = json.loads(js.read_text())["validation"]
    assert v["tokens_per_image"]["max"] == 64 and "evidence_coverage" not in v


def test_show_writes_png(masked_dir, synth_dir, tmp_path):
    out = tmp_path / "one.png"
    assert main(["show", str(masked_dir / "train"), "--index", "3", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 5000
    out2 = tmp_path / "raw.png"
    assert main(["show", str(synth_dir / "validation"), "--index", "-1", "--out", str(out2),
                 "--processor", "qwen3_vl"]) == 0
    assert out2.read_bytes()[:8] == PNG_MAGIC
    assert main(["show", str(synth_dir / "validation"), "--index", "99", "--out", str(out2)]) == 2


def test_show_multi_image_record(tmp_path):
    from PIL import Image

    from data_tools.show import render

    row = {"id": "m", "question": "q", "answer": "a",
           "images": [Image.new("RGB", (224, 224)), Image.new("RGB", (224, 112))],
           "boxes": [[0, 0, 28, 28], [10, 10, 50, 50]], "box_image": [1, 0],
           "grid_thw": [[1, 16, 16], [1, 8, 16]], "evidence_target": list(np.full(96, 1 / 96))}
    out = render(row, tmp_path / "multi.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
