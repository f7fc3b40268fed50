"""Reading weight files: safetensors (single or sharded), torch state dicts, and errors naming the file."""

import json

import pytest
import torch
from safetensors.torch import save_file

from vlp.weights import WeightFileError, read_safetensors, read_torch, read_weights


def test_safetensors_with_prefixes_and_metadata(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"a.x": torch.ones(2), "b.y": torch.zeros(3)}, str(path), metadata={"k": "v"})
    tensors, metadata = read_safetensors(path, ("a.",))
    assert list(tensors) == ["a.x"] and metadata == {"k": "v"}
    assert set(read_weights(path)) == {"a.x", "b.y"}


def test_sharded_index_and_torch_state_dict(tmp_path):
    save_file({"a.x": torch.ones(2)}, str(tmp_path / "s1.safetensors"))
    save_file({"b.y": torch.zeros(3)}, str(tmp_path / "s2.safetensors"))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a.x": "s1.safetensors", "b.y": "s2.safetensors"}}))
    assert set(read_weights(index)) == {"a.x", "b.y"}
    assert set(read_weights(index, ("b.",))) == {"b.y"}
    torch.save({"a.x": torch.ones(1), "c": torch.ones(1)}, tmp_path / "pytorch_model.bin")
    assert set(read_weights(tmp_path / "pytorch_model.bin", ("a.",))) == {"a.x"}


def test_missing_and_broken_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint weights not found: .*absent.safetensors"):
        read_weights(tmp_path / "absent.safetensors", what="checkpoint weights")
    path = tmp_path / "model.safetensors"
    save_file({"a": torch.ones(100)}, str(path))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(WeightFileError, match="model.safetensors is broken"):
        read_safetensors(path)
    (tmp_path / "trainer.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightFileError, match="trainer.pt is broken"):
        read_torch(tmp_path / "trainer.pt")
