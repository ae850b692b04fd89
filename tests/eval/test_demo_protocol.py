"""The demo evaluates an encoder with the clip geometry and input normalisation it was pretrained with."""

import pytest

from vidssl.config import save_yaml
from vidssl.eval.demo import DEMO_SETTINGS, demo_protocol
from vidssl.methods import METHODS


@pytest.mark.parametrize("method, mean, std", [("brave", 0.0, 1.0), ("fgkvmem", 0.45, 0.225), ("byol", 0.45, 0.225)])
def test_demo_protocol_follows_the_method(tmp_path, method, mean, std):
    save_yaml({"method": {"name": method, "num_frames": 8, "stride": 2, "canvas": 64, "crop_size": 48}},
              tmp_path / "config.yaml")
    protocol = demo_protocol(DEMO_SETTINGS["full"], tmp_path)
    assert (protocol.num_frames, protocol.stride, protocol.canvas, protocol.crop_size) == (8, 2, (64, 64), 48)
    assert protocol.mean == (mean,) * 3 and protocol.std == (std,) * 3
    assert (METHODS[method].input_mean, METHODS[method].input_std) == (mean, std)
