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


def test_show_draws_the_box_and_the_heatmap_where_they_are(tmp_path):
    """What ``show`` draws, read back from the PNG: on a uniform grey 224 x 224 image whose
    evidence target is spread over the 3 x 3 tokens under the box, the lime outline lies on
    the box's edges, and the heatmap is bright on those tokens and dark elsewhere.
    """
    from PIL import Image

    from data_tools.show import render

    box = [56, 84, 140, 168]  # tokens (28 px) x 2..4, y 3..5 of an 8 x 8 token grid
    target = np.zeros((8, 8))
    target[3:6, 2:5] = 1 / 9
    row = {"id": "r", "question": "q", "answer": "a", "image": Image.new("RGB", (224, 224), (128, 128, 128)),
           "boxes": [box], "box_labels": ["x"], "grid_thw": [[1, 16, 16]],
           "evidence_target": target.ravel().tolist()}
    png = np.asarray(Image.open(render(row, tmp_path / "drawn.png")).convert("RGB")).astype(int)
    r, g, b = png[..., 0], png[..., 1], png[..., 2]
    # The image area: the grey darkened by the heatmap's zero colour (inferno(0) ~ black, alpha .45)
    dark = (abs(r - g) < 12) & (abs(g - b) < 20) & (r > 40) & (r < 110)
    rows = np.nonzero(dark.sum(1) > 0.5 * dark.sum(1).max())[0]
    cols = np.nonzero(dark.sum(0) > 0.5 * dark.sum(0).max())[0]
    top, left, bottom, right = rows.min(), cols.min(), rows.max() + 1, cols.max() + 1  # not the title's text
    scale = (right - left) / 224
    assert abs((bottom - top) / 224 - scale) < 0.02 * scale  # square, as drawn
    def at(x: float, y: float) -> tuple[int, int]:  # image pixel -> PNG pixel
        return int(round(top + y * scale)), int(round(left + x * scale))

    lime = (g > 180) & (r < 120) & (b < 120)
    x0, y0, x1, y1 = box
    for x, y in [(x0, (y0 + y1) / 2), (x1, (y0 + y1) / 2), ((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1)]:
        py, px = at(x, y)
        assert lime[py - 2:py + 3, px - 2:px + 3].any(), (x, y)  # on each edge
    py, px = at((x0 + x1) / 2, (y0 + y1) / 2)
    assert not lime[py - 5:py + 6, px - 5:px + 6].any()  # an outline, not a filled box
    ys_l, xs_l = np.nonzero(lime[top:bottom, left:right])
    assert xs_l.min() >= (x0 - 2) * scale and xs_l.max() <= (x1 + 2) * scale  # nothing else in lime
    # heatmap: bright (inferno's top is yellow) on the target's tokens, dark on the others
    brightness = png.sum(-1)
    inside = [brightness[at(28 * tx + 14, 28 * ty + 14)] for ty in range(3, 6) for tx in range(2, 5)]
    outside = [brightness[at(28 * tx + 14, 28 * ty + 14)] for ty in range(8) for tx in range(8)
               if not (3 <= ty < 6 and 2 <= tx < 5)]
    assert min(inside) > max(outside) + 150, (min(inside), max(outside))
    assert max(outside) - min(outside) < 30  # uniform where the target is zero
