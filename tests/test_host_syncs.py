"""A training step waits for the host only where it must (issue 27): the
padding mask is built on the device, level shapes travel as Python ints,
per-layer rows are split by known counts, host numbers go to the device in
one copy per batch and the logged loss terms come back in one. Counted per
step -- forward, losses, backward and the logging of every term -- by
:class:`helpers.syncs.HostSyncCounter` on a CPU (what would synchronize on a
GPU) and by ``torch.cuda.set_sync_debug_mode`` on a GPU."""
import pytest
import torch
from helpers.configs import tiny_variant_config
from helpers.syncs import HostSyncCounter, count_cuda_syncs

from mmdet_reference import build_plugin_model
from mmdet_reference import make_batch

# at most, per training step (DETR: matching's two copies, the targets'
# one, mmdet's GIoU eps twice, the logged terms' one)
BUDGET = dict(detr=10, dino=20)


def training_step(model, inputs, samples):
    """Forward, losses, backward, and the logged terms read as mmengine's
    message hub reads them (``float`` of each)."""
    torch.manual_seed(0)
    loss, log_vars = model.parse_losses(model.loss(inputs, samples))
    loss.backward()
    return [float(value) for value in log_vars.values()]


def tiny_model_and_batch(variant, device='cpu'):
    torch.manual_seed(0)
    model = build_plugin_model(tiny_variant_config(variant)).to(device)
    inputs, samples = make_batch([(64, 80), (72, 64)], [3, 1], num_classes=3)
    model.train()
    training_step(model, inputs.to(device),  # the first builds caches
                  [s.to(device) for s in samples])
    return model, inputs.to(device), [s.to(device) for s in samples]


@pytest.mark.parametrize('variant', list(BUDGET))
def test_host_syncs_per_training_step(variant):
    model, inputs, samples = tiny_model_and_batch(variant)
    with HostSyncCounter() as syncs:
        logged = training_step(model, inputs, samples)
    assert len(logged) > 8  # every layer's terms were read
    assert syncs.total <= BUDGET[variant], syncs.by_call
    # the logged terms: one read, not one per term
    assert syncs.by_call['tolist'] == 1
    assert syncs.by_call['item'] == syncs.by_call['__float__'] == 0


@pytest.mark.cuda
@pytest.mark.parametrize('variant', list(BUDGET))
def test_cuda_syncs_per_training_step(variant):
    model, inputs, samples = tiny_model_and_batch(variant, 'cuda')
    with count_cuda_syncs() as syncs:
        training_step(model, inputs, samples)
    assert len(syncs) <= BUDGET[variant], syncs
