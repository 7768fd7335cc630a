"""Fixtures shared by the tests; their helpers are the ``helpers`` package."""
import os
import os.path as osp
import sys

import pytest
import torch

sys.path.insert(0, osp.dirname(__file__))  # the ``helpers`` package
# the tools' shared modules (cli, mmdet_reference, synthetic_shapes, ...)
sys.path.insert(0, osp.join(osp.dirname(osp.dirname(__file__)), 'tools'))
from helpers.configs import BALLOON_ENV, BALLOON_ROOT  # noqa: E402
from helpers.data import make_shapes  # noqa: E402

# Two cores: keep intra-op threads fixed so timings and numerics are stable.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cuda: needs a GPU (bash tools/run_tests.sh --cuda runs '
        'these; skipped where torch sees no CUDA)')


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs CUDA: torch sees no GPU here')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='module')
def shapes(tmp_path_factory) -> str:
    """A test module's synthetic shapes set (6 train, 2 val images of 64 x 64,
    every training image with boxes); tests copy it before breaking it."""
    return make_shapes(str(tmp_path_factory.mktemp('data') / 'shapes'))


@pytest.fixture
def balloon_root() -> str:
    """The real balloon set (61 train / 13 val images, 1 class), or a skip
    that names the variable to set."""
    if not osp.isdir(BALLOON_ROOT):
        pytest.skip(f'the balloon set is not at {BALLOON_ROOT}: set '
                    f'{BALLOON_ENV} to its folder')
    return BALLOON_ROOT
