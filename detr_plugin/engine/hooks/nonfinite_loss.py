"""Stop (or skip) a training step whose loss or gradient is not finite.

mmengine's ``train_step`` steps the optimizer before any hook sees the loss;
every optimizer wrapper (plain, AMP, CPU autocast, accumulation) and DDP call
``Optimizer.step``, so a step pre-hook there drops all gradients when their
norm is not finite (a NaN loss makes it so) and the optimizer skips the step.
"""
import math
from typing import Dict, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ...registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN or infinite loss or gradient."""


def nonfinite_terms(outputs: Optional[Dict]) -> Dict[str, float]:
    """``{name: value}`` of the non-finite entries of a train step's
    ``log_vars`` (scalar tensors, as mmengine's ``parse_losses`` makes; the
    loss terms still require grad, so read by ``item()``: ``float()`` of
    such a tensor warns)."""
    values = {name: value.item() if isinstance(value, torch.Tensor) else value
              for name, value in (outputs or {}).items()}
    return {name: float(value) for name, value in values.items()
            if isinstance(value, (int, float)) and not math.isfinite(value)}


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Never step on a NaN/inf gradient; stop or skip and say where.

    Args:
        action: ``'error'``: stop with :class:`NonFiniteLossError` naming the
            iteration and loss terms (weights, optimizer state and
            checkpoints stay those of the last finite step); ``'skip'``:
            skip the step and warn with the count so far.
        max_consecutive_skips: with ``'skip'``, stop after this many skipped
            steps in a row (the run has diverged).
    """

    priority = 'ABOVE_NORMAL'  # before the logger, LR scheduler, checkpoint

    def __init__(self, action: str = 'error',
                 max_consecutive_skips: int = 10) -> None:
        if action not in ('error', 'skip'):
            raise ValueError(f"action must be 'error' or 'skip', got "
                             f'{action!r}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.num_skipped = self.consecutive = 0
        self._skipped_norm = None  # grad norm of the step just skipped
        self._handles = []

    def _check_gradients(self, optimizer, args, kwargs) -> None:
        grads = [p.grad for group in optimizer.param_groups
                 for p in group['params'] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            self._skipped_norm = norm.item()
            # torch optimizers skip parameters without a gradient
            optimizer.zero_grad(set_to_none=True)

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper  # an OptimWrapper or OptimWrapperDict
        for w in getattr(wrapper, 'optim_wrappers', {'': wrapper}).values():
            self._handles.append(
                w.optimizer.register_step_pre_hook(self._check_gradients))

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.num_skipped:
            print_log(f'{self.num_skipped} training step(s) were skipped '
                      'for a non-finite loss or gradient', logger='current',
                      level=30)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Record the batch's images (``'train_batch_images'`` in the
        message hub) for the matcher to name one with a non-finite cost."""
        runner.message_hub.update_info('train_batch_images', [
            f'{s.metainfo.get("img_path")} (img_id {s.metainfo.get("img_id")})'
            for s in (data_batch or {}).get('data_samples') or []],
            resumed=False)  # not saved in checkpoints

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad = nonfinite_terms(outputs)
        skipped_norm, self._skipped_norm = self._skipped_norm, None
        if not bad and skipped_norm is None:
            self.consecutive = 0
            return
        where = (f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
                 f'batch {batch_idx + 1})')
        first = next((k for k in bad if k != 'loss'), 'loss')
        what = (f'non-finite loss at {where}: ' + ', '.join(
            f'{k}={v}' for k, v in bad.items()) + f' (first term: {first})'
            if bad else f'non-finite gradient norm ({skipped_norm}) at '
            f'{where} with finite loss terms (with several processes, '
            "another process's loss may be the cause)")
        stepped = skipped_norm is None
        if self.action == 'error':
            raise NonFiniteLossError(
                f'{what}. The run stops; ' + (
                    'the gradients were finite, so are the weights' if
                    stepped else 'this step was not applied, so the '
                    'weights and checkpoints are those of the last finite '
                    'step') + '. Causes: a too-high learning rate (lower it, '
                'keep clip_grad), fp16 overflow (--amp), bad boxes (python '
                'tools/check_dataset.py CONFIG). To skip such steps: '
                '--cfg-options default_hooks.nonfinite_loss.action=skip')
        self.num_skipped += 1
        self.consecutive += 1
        print_log(f'{what}; ' + (
            'the gradients were finite and the step was applied '
            f'({self.num_skipped} non-finite steps so far)' if stepped else
            f'skipped this step ({self.num_skipped} skipped so far)'),
            logger='current', level=30)
        if self.consecutive >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f'{self.consecutive} consecutive training steps had a '
                f'non-finite loss or gradient (the last at {where}): the run '
                'has diverged. Lower the learning rate or check the data '
                '(python tools/check_dataset.py CONFIG).')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to save weights that are not finite."""
        for name, value in checkpoint.get('state_dict', {}).items():
            if torch.is_tensor(value) and value.is_floating_point() \
                    and not value.isfinite().all():
                raise NonFiniteLossError(
                    f'refusing to save a checkpoint at iteration '
                    f'{runner.iter}: {name} holds NaN or infinite values; '
                    'the last saved checkpoint is the last finite one.')
