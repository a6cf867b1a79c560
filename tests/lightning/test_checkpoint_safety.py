"""Every checkpoint the CLI reads is loaded weights-only: a malicious pickle given as
``--ckpt_path`` (a local file or an http URL) is refused with one line, and its payload never
runs (visgrpo/lightning/checkpoint_io.py).
"""

from __future__ import annotations

import functools
import http.server
import pickle
import threading
from pathlib import Path

import pytest
import torch

from visgrpo.cli import main
from visgrpo.lightning.checkpoint_io import WeightsOnlyCheckpointIO, load_weights_only
from visgrpo.lightning.cli import build_cli
from visgrpo.lightning.errors import UnsafeCheckpoint
from visgrpo.models.loading import PolicyConfig

from .conftest import CONFIGS, tracking_args


class Payload:
    """Unpickling this calls ``open(marker, "a")`` (creating the file): code run by the loader."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "a"))


def write_evil(path: Path, marker: Path, fmt: str) -> Path:
    """A checkpoint-shaped file whose unpickling runs :class:`Payload` (``torch.save``'s zip
    format or a bare pickle, as ``torch.load`` reads both).
    """
    obj = {"state_dict": {}, "hyper_parameters": {"x": Payload(marker)}}
    if fmt == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    return path


@pytest.fixture
def http_dir(tmp_path):
    """``(folder, base_url)``: a localhost HTTP server over a folder, in a thread."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_payload_runs_under_a_full_unpickle(tmp_path, fmt):
    # The files below are real exploits: an unrestricted load writes the marker.
    marker = tmp_path / "ran"
    path = write_evil(tmp_path / "evil.ckpt", marker, fmt)
    if fmt == "torch":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
@pytest.mark.parametrize("where", ["file", "url"])
def test_fit_refuses_a_malicious_ckpt_path(in_workspace, http_dir, capsys, fmt, where):
    marker = in_workspace / "PWNED"
    served, base = http_dir
    path = write_evil(served / "evil.ckpt", marker, fmt)
    ckpt = str(path) if where == "file" else f"{base}/evil.ckpt"
    code = main(["fit", "--config", str(CONFIGS / "experiment/tiny_smoke.yaml"), *tracking_args(in_workspace),
                 "--ckpt_path", ckpt])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith(f"error: {ckpt}: not a weights-only checkpoint, refused (loading it could run "
                              "code): ")
    assert "nsupported" in err[-1]  # torch's reason (the global or opcode it refused), not its boilerplate
    assert "Traceback" not in "\n".join(err)
    assert not marker.exists()


def test_url_and_file_load_weights_only_with_the_allow_listed_dataclasses(http_dir):
    served, base = http_dir
    obj = {"state_dict": {"w": torch.arange(3.0)}, "hyper_parameters": {"policy": PolicyConfig("tiny:qwen2_5_vl")}}
    torch.save(obj, served / "good.ckpt")
    for src in (served / "good.ckpt", f"{base}/good.ckpt"):
        out = load_weights_only(src)
        assert torch.equal(out["state_dict"]["w"], torch.arange(3.0))
        assert out["hyper_parameters"]["policy"] == PolicyConfig("tiny:qwen2_5_vl")


def test_checkpoint_io_ignores_weights_only_false(tmp_path):
    marker = tmp_path / "ran"
    path = write_evil(tmp_path / "evil.ckpt", marker, "torch")
    with pytest.raises(UnsafeCheckpoint, match="evil.ckpt: not a weights-only checkpoint"):
        WeightsOnlyCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not marker.exists()


def test_the_cli_trainer_loads_weights_only(in_workspace):
    cli = build_cli(["--config", str(CONFIGS / "experiment/tiny_smoke.yaml"), *tracking_args(in_workspace)],
                    run=False)
    assert isinstance(cli.trainer.strategy.checkpoint_io, WeightsOnlyCheckpointIO)
