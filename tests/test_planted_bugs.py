"""Tests that catch the survivors of the semantic bugs planted by hand in the library's core
(docs/mutation.md, "Semantic bugs planted by hand (fortieth session, 2026-11-29)").

Each test names the planted bug it catches; each was run against a copy of the library with that bug
planted (and failed there) and against the library itself (and passed).
"""
import pytest
import torch

from pnpdeblur.checkpoints import CheckpointError, load_checkpoint, save_checkpoint


@pytest.mark.parametrize("saved, expected", [("DeepDeblur", "DeepDeblurDiscriminator"), ("IRCNN", "IRCNNBank"),
                                             ("dncnn", "DnCNN")])
def test_a_checkpoint_of_a_similarly_named_architecture_is_refused(tmp_path, saved, expected):
    # planted: load_checkpoint's `header["architecture"] != architecture` loosened to a case-blind
    # substring test. Class names of the library contain others (DeepDeblur in
    # DeepDeblurDiscriminator, IRCNN in IRCNNBank), and the design card says loading the wrong
    # architecture is an error: only the exact name passes
    p = save_checkpoint(tmp_path / "w.safetensors", {"w": torch.zeros(2)}, saved, {}, sidecar=False)
    with pytest.raises(CheckpointError, match=rf"holds a '{saved}' checkpoint, expected '{expected}'$"):
        load_checkpoint(p, expected)
    state, header = load_checkpoint(p, saved)
    assert header["architecture"] == saved and torch.equal(state["w"], torch.zeros(2))
