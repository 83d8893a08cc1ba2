"""The per-device speed settings: train.precision=auto and train.channels_last=auto, resolved once per device."""
import pytest
import torch

import twingan.utils.device as device_lib
from twingan.errors import ConfigError
from twingan.training.config import compose_config
from twingan.training.trainer import Trainer

from helpers import tiny_run_overrides

CPU = torch.device("cpu")


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(native, expected, monkeypatch):
    monkeypatch.setattr(device_lib, "cpu_has_native_bf16", lambda: native)
    assert device_lib.resolve_precision("auto", CPU) == expected
    assert device_lib.resolve_precision("auto", torch.device("cuda")) == "fp32"  # not measured on a GPU yet
    assert device_lib.resolve_precision("bf16", CPU) == "bf16"  # an explicit bf16 runs on any CPU


def test_fp16_on_the_cpu_and_unknown_values_are_refused():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        device_lib.resolve_precision("fp16", CPU)
    with pytest.raises(ConfigError, match="not one of auto, fp32, bf16, fp16"):
        device_lib.resolve_precision("fp8", CPU)
    with pytest.raises(ConfigError, match="channels_last must be auto, true or false"):
        device_lib.resolve_channels_last("yes", CPU)


def test_channels_last_auto_is_on_for_the_cpu_off_for_cuda():
    assert device_lib.resolve_channels_last("auto", CPU) is True
    assert device_lib.resolve_channels_last("auto", torch.device("cuda")) is False
    assert device_lib.resolve_channels_last(False, CPU) is False


def test_the_trainer_resolves_the_defaults_and_names_the_key_when_refusing(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setattr(device_lib, "cpu_has_native_bf16", lambda: True)
    base = tiny_run_overrides(synthetic_root, tmp_path / "run", "device=cpu")
    trainer = Trainer(compose_config(base))
    assert trainer.precision == "bf16" and trainer.channels_last
    assert trainer.model.encoder.blocks["4"].conv0.conv.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ConfigError, match=r"^train\.precision fp16 needs a CUDA device"):
        Trainer(compose_config(base + ["train.precision=fp16"]))
