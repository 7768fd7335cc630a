"""Stop (or skip) a training step whose loss or gradient is not finite.

mmengine's ``train_step`` steps the optimizer before any hook sees the loss;
every optimizer wrapper (plain, AMP, CPU autocast, accumulation) and DDP call
``Optimizer.step``, so a step pre-hook there drops all gradients when their
norm is not finite (a NaN loss makes it so) and the optimizer skips the step.
A loss scaler (fp16) calls ``Optimizer.step`` only for finite gradients: a
step it skipped is one the pre-hook did not see.
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

    Without a loss scaler (fp32, bf16) a non-finite loss or gradient is a
    fault: the step is not applied and the run stops naming the iteration
    and the first bad loss term (``action='error'``), or the step is
    skipped with a warning (``'skip'``).

    Under a loss scaler (fp16 ``--amp``: mmengine's ``AmpOptimWrapper`` on a
    GPU, ``CPUAutocastOptimWrapper(dtype='float16')``) an overflowing step
    is normal: the scaler skips it and halves its scale. Such steps are
    counted and logged with the new scale, whatever ``action`` says. The run
    stops only when the scale falls below ``min_loss_scale`` (the gradients
    overflow fp16 even unscaled: no scale fixes that) or after
    ``max_consecutive_skips`` steps in a row with a non-finite *loss* (the
    forward overflows, which the scale does not change).

    Args:
        action: ``'error'`` or ``'skip'``, without a loss scaler.
        max_consecutive_skips: stop after this many skipped steps in a row
            (with ``'skip'``; under a loss scaler, steps with a non-finite
            loss).
        min_loss_scale: under a loss scaler, stop when its scale falls
            below this.
    """

    priority = 'ABOVE_NORMAL'  # before the logger, LR scheduler, checkpoint

    def __init__(self, action: str = 'error',
                 max_consecutive_skips: int = 10,
                 min_loss_scale: float = 1.) -> None:
        if action not in ('error', 'skip'):
            raise ValueError(f"action must be 'error' or 'skip', got "
                             f'{action!r}')
        self.action = action
        self.max_consecutive_skips = max_consecutive_skips
        self.min_loss_scale = min_loss_scale
        self.num_skipped = self.consecutive = 0
        self._skipped_norm = None  # grad norm of the step just skipped
        self._stepped = False  # whether an optimizer stepped this iteration
        self._handles, self._wrappers, self._scalers = [], [], []

    def _check_gradients(self, optimizer, args, kwargs) -> None:
        self._stepped = True
        if self._scalers:  # a scaler steps only on finite gradients
            return
        grads = [p.grad for group in optimizer.param_groups
                 for p in group['params'] if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            self._skipped_norm = norm.item()
            # torch optimizers skip parameters without a gradient
            optimizer.zero_grad(set_to_none=True)

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper  # an OptimWrapper or OptimWrapperDict
        self._wrappers = list(getattr(wrapper, 'optim_wrappers',
                                      {'': wrapper}).values())
        self._scalers = [w.loss_scaler for w in self._wrappers
                         if getattr(w, 'loss_scaler', None) is not None
                         and w.loss_scaler.is_enabled()]
        for w in self._wrappers:
            self._handles.append(
                w.optimizer.register_step_pre_hook(self._check_gradients))

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.num_skipped:
            print_log(f'{self.num_skipped} training step(s) were skipped '
                      'for a non-finite loss or gradient' + (
                          f' (fp16 loss scale now {self._scale():g})'
                          if self._scalers else ''),
                      logger='current', level=30)

    def _scale(self) -> float:
        return min(float(scaler.get_scale()) for scaler in self._scalers)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        self._stepped = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        bad = nonfinite_terms(outputs)
        skipped_norm, self._skipped_norm = self._skipped_norm, None
        where = (f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
                 f'batch {batch_idx + 1})')
        if self._scalers:
            return self._after_scaled_iter(bad, where)
        if not bad and skipped_norm is None:
            self.consecutive = 0
            return
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
                'keep clip_grad), bad boxes (python tools/check_dataset.py '
                'CONFIG). To skip such steps: --cfg-options '
                'default_hooks.nonfinite_loss.action=skip')
        self.num_skipped += 1
        self.consecutive += 1
        print_log(f'{what}; ' + (
            'the gradients were finite and the step was applied '
            f'({self.num_skipped} non-finite steps so far)' if stepped else
            f'skipped this step ({self.num_skipped} skipped so far)'),
            logger='current', level=30)
        self._stop_after_consecutive(where)

    def _after_scaled_iter(self, bad: Dict[str, float], where: str) -> None:
        """Count the steps the loss scaler skipped (read its scale only
        then: a synchronization on a GPU)."""
        stepped = self._stepped or not all(
            w.should_update() for w in self._wrappers)  # accumulating
        if stepped and not bad:
            self.consecutive = 0
            return
        self.num_skipped += 1
        self.consecutive = self.consecutive + 1 if bad else 0
        scale = self._scale()
        print_log(
            f'fp16 overflow at {where}: ' + (', '.join(
                f'{k}={v}' for k, v in bad.items()) if bad else
                'non-finite gradients') + '; the loss scaler skipped the '
            f'step and lowered its scale to {scale:g} ({self.num_skipped} '
            'skipped so far)', logger='current', level=30)
        if scale < self.min_loss_scale:
            raise NonFiniteLossError(
                f'the fp16 loss scale fell to {scale:g} (below '
                f'min_loss_scale={self.min_loss_scale:g}) at {where}: the '
                'gradients overflow fp16 even unscaled, so no loss scale '
                'fixes them. The skipped steps were not applied: the weights '
                'and checkpoints are those of the last finite step. Train '
                'with --amp --amp-dtype bfloat16 (GPUs that have it) or '
                'without --amp.')
        if bad:
            self._stop_after_consecutive(where)

    def _stop_after_consecutive(self, where: str) -> None:
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
