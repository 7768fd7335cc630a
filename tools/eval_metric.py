"""Evaluate predictions dumped by ``tools/test.py --out R.pkl`` again, with
the config's ``test_evaluator``, without running code from the file.

    python tools/eval_metric.py CONFIG R.pkl [--cfg-options k=v ...]

mmdet's ``tools/analysis_tools/eval_metric.py`` reads the file with
``pickle.load``: a pickle payload in it runs. Here it is read by
:class:`ResultsUnpickler`, which rebuilds only what mmdet's
``DumpDetResults`` writes -- containers, numbers, strings, bytes, numpy
arrays and torch tensors -- and refuses any other global, naming it.
"""
import argparse
import io
import os.path as osp
import pickle
import sys

import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # cli
from detr_plugin.checkpoint import safe_load  # noqa: E402
import cli  # noqa: E402


def _storage_from_bytes(data: bytes):
    """A tensor storage pickled as ``torch.save`` bytes, read safely."""
    return safe_load(io.BytesIO(data), 'a tensor of the results', allowed=[])


# numpy's array and scalar builders, under numpy 1's and numpy 2's path
NUMPY_BUILDERS = {f.__name__: f for f in (np.zeros(1).__reduce__()[0],
                                          np.float64(0).__reduce__()[0])}


class ResultsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` of a results dump: tensors, numpy arrays and
    builtin containers; any other global is refused."""

    GLOBALS = {
        ('torch._utils', '_rebuild_tensor_v2'):
            torch._utils._rebuild_tensor_v2,
        ('torch.storage', '_load_from_bytes'): _storage_from_bytes,
        ('collections', 'OrderedDict'): __import__('collections').OrderedDict,
        ('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
        # bytes pickled by protocol 2 (numpy's array data): text -> bytes
        ('_codecs', 'encode'): __import__('codecs').encode,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.GLOBALS:
            return self.GLOBALS[(module, name)]
        if module in ('numpy.core.multiarray', 'numpy._core.multiarray') \
                and name in NUMPY_BUILDERS:
            return NUMPY_BUILDERS[name]
        if module == 'numpy.dtypes' and name.endswith('DType'):
            return getattr(np.dtypes, name)
        raise pickle.UnpicklingError(
            f'{module}.{name} is not what a results dump holds; unpickling '
            'it could run arbitrary code')


def load_results(path: str) -> list:
    """The dumped predictions, or one error naming the file."""
    try:
        with open(path, 'rb') as f:
            return ResultsUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise SystemExit(f'error: refusing to read {path}: {e}.') from None
    except (EOFError, OSError, ValueError) as e:
        raise SystemExit(f'error: cannot read {path} as a results dump '
                         f'({type(e).__name__}: {e}).') from None


def main(argv=None) -> dict:
    from mmengine.config import DictAction
    from mmengine.evaluator import Evaluator
    from mmengine.registry import init_default_scope

    from detr_plugin.registry import DATASETS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('results', help='the .pkl of tools/test.py --out')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args(argv)
    args.work_dir, args.launcher, args.local_rank = None, 'none', 0
    cfg = cli.load_config(args)
    cli.check_config_arguments(cfg)
    predictions = load_results(args.results)
    init_default_scope(cfg.get('default_scope', 'detr_plugin'))
    dataset = DATASETS.build(dict(cfg.test_dataloader.dataset,
                                  lazy_init=True))
    evaluator = Evaluator(cfg.test_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    metrics = evaluator.offline_evaluate(predictions)
    print(metrics)
    return metrics


if __name__ == '__main__':
    with cli.one_line_errors():
        main()
