"""checkpoint_blocks (recompute each block in backward): the same outputs and gradients."""

import pytest
import torch

from querylearn.models.nextitnet import ModelConfig
from querylearn.models.user_encoder import UserEncoder


@pytest.mark.parametrize("padding", ["parity", "exact"])
@pytest.mark.parametrize("all_positions", [False, True])
def test_checkpointed_blocks_equal_plain_forward_and_gradients(padding, all_positions):
    torch.manual_seed(0)
    model = UserEncoder(11, ModelConfig(channels=8, dilations=(1, 2, 1), padding=padding))
    model.add_task("T1", 5)
    ids = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 2, 9, 9, 4, 1], [7, 8, 3, 2, 1, 10]])
    masks = model.task_masks("T1", 4.0)
    params = [p for p in model.parameters() if p.requires_grad]
    results = []
    for checkpoint_blocks in (False, True):
        h = model.encode(ids, masks, all_positions=all_positions, checkpoint_blocks=checkpoint_blocks)
        weights = torch.linspace(-1, 1, h.numel()).reshape(h.shape)
        grads = torch.autograd.grad((h * weights).sum(), params, retain_graph=True, allow_unused=True)
        results.append((h.detach(), grads))
    (h0, g0), (h1, g1) = results
    assert torch.allclose(h0, h1, atol=1e-6)
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-6)


def test_mmap_threshold_option():
    from querylearn.config_loader import load_config
    from querylearn.continual.allocator import set_mmap_threshold
    from querylearn.continual.config import TrainConfig
    from querylearn.errors import ConfigError

    assert set_mmap_threshold(0) is False  # 0 leaves the allocator alone
    assert load_config(TrainConfig, None, {}).mmap_threshold_mb == 0  # glibc default
    with pytest.raises(ConfigError, match="mmap_threshold_mb"):
        load_config(TrainConfig, None, {"mmap_threshold_mb": -1})
