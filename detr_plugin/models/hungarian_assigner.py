"""One-to-one matching of queries to ground-truth boxes (DETR paper, eq. 1).

The costs of every decoder layer and every image are built in one batched
pass, moved to the host once, and solved per (layer, image) by
``scipy.optimize.linear_sum_assignment`` (large matrices on a thread pool).
mmdet's assigner instead moves one cost matrix per layer per image and adds
``nonzero``/``unique``/``.item()`` device syncs around each.
"""
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..registry import TASK_UTILS
from .box_precision import float32_box_math, fp16_autocast
from .match_costs import BatchedTargets

DETR_MATCH_COSTS = (
    dict(type='ClassificationCost', weight=1.),
    dict(type='BBoxL1Cost', weight=5.),
    dict(type='IoUCost', iou_mode='giou', weight=2.),
)


# Below this many cost entries per matrix a thread pool costs more than it
# saves (DETR's usual 100 x 20: 0.9 ms serial, 3.4 ms on 2 threads); at
# 300 x 300 two threads halve the time (1.0 s -> 0.52 s for 48 matrices).
PARALLEL_MIN_ENTRIES = 10_000
# Costs computed in one batched pass; larger batches go in chunks of images.
COST_CHUNK_ENTRIES = 1 << 20


def _solve_all(costs: List[np.ndarray]) -> List[Tuple[np.ndarray, ...]]:
    """``linear_sum_assignment`` of each matrix; large ones on as many
    threads as torch uses (scipy releases the GIL while it solves)."""
    threads = min(torch.get_num_threads(), len(costs))
    if threads < 2 or not costs or \
            max(c.size for c in costs) < PARALLEL_MIN_ENTRIES:
        return [linear_sum_assignment(c) for c in costs]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(linear_sum_assignment, costs))


@dataclass
class QueryMatches:
    """Matched (query, box) pairs of all layers and images, flattened.

    Every attribute is a ``(M,)`` long tensor on the predictions' device:
    pair ``i`` matches query ``query_idx[i]`` of image ``batch_idx[i]`` at
    decoder layer ``layer_idx[i]`` to that image's box ``gt_idx[i]``. Each
    layer has ``num_per_layer = sum_b min(Q, num_gts[b])`` pairs.
    """
    layer_idx: Tensor
    batch_idx: Tensor
    query_idx: Tensor
    gt_idx: Tensor
    num_per_layer: int

    def layer(self, index: int = -1) -> 'QueryMatches':
        """The pairs of layer ``index`` (sorted by layer: a slice)."""
        index %= max(len(self.layer_idx) // max(self.num_per_layer, 1), 1)
        rows = slice(index * self.num_per_layer,
                     (index + 1) * self.num_per_layer)
        return QueryMatches(self.layer_idx[rows], self.batch_idx[rows],
                            self.query_idx[rows], self.gt_idx[rows],
                            self.num_per_layer)


@TASK_UTILS.register_module()
class HungarianAssigner:
    """Minimum-cost bipartite matching over a weighted sum of match costs.

    Args:
        match_costs: configs of the costs (``TASK_UTILS``) that are summed;
            DETR's classification, L1 and GIoU costs by default.
    """

    def __init__(self,
                 match_costs: Union[dict, Sequence[dict]] = DETR_MATCH_COSTS
                 ) -> None:
        if isinstance(match_costs, dict):
            match_costs = [match_costs]
        self.match_costs = [TASK_UTILS.build(cfg) for cfg in match_costs]
        self._warned_too_many_gts = False

    @torch.no_grad()
    @float32_box_math
    def cost_matrices(self, cls_logits: Tensor, box_preds: Tensor,
                      targets: BatchedTargets) -> np.ndarray:
        """Total matching cost on the host, computed in float32.

        Args:
            cls_logits: ``(L, B, Q, C + 1)`` logits of every decoder layer.
            box_preds: ``(L, B, Q, 4)`` normalized cxcywh boxes.
            targets: the batch's padded ground truth.

        Returns:
            ``(B, L, Q, G)`` float32 numpy array.
        """
        num_layers, batch, num_queries = cls_logits.shape[:3]
        # (L, B, Q, ·) -> (B, L*Q, ·): one batched op covers every layer.
        logits = cls_logits.transpose(0, 1).reshape(
            batch, num_layers * num_queries, -1)
        boxes = box_preds.transpose(0, 1).reshape(
            batch, num_layers * num_queries, 4)
        # Images in chunks of about COST_CHUNK_ENTRIES costs: the GIoU's
        # (B, N, G, 2) intermediates of a large batch overflow the caches
        # (300 boxes x 300 queries: 0.16 s in one pass, 0.06 s per image).
        per_image = num_layers * num_queries * targets.labels.size(1)
        step = max(1, COST_CHUNK_ENTRIES // max(per_image, 1))
        cost = torch.cat([
            sum(c(logits[i:i + step], boxes[i:i + step],
                  targets.slice(slice(i, i + step)))
                for c in self.match_costs) for i in range(0, batch, step)])
        cost = cost.view(batch, num_layers, num_queries, -1)
        return cost.float().cpu().numpy()  # the one device-to-host copy

    def assign(self, cls_logits: Tensor, box_preds: Tensor,
               targets: BatchedTargets) -> QueryMatches:
        """Match every layer's queries of every image to that image's boxes.

        Args:
            cls_logits: ``(L, B, Q, C + 1)``.
            box_preds: ``(L, B, Q, 4)`` normalized cxcywh.
            targets: the batch's padded ground truth.

        Returns:
            The matched pairs; ``min(Q, num_gts[b])`` per layer and image.
        """
        num_layers, _, num_queries = cls_logits.shape[:3]
        device = cls_logits.device
        self._warn_if_more_gts_than_queries(targets.num_gts, num_queries)
        if sum(targets.num_gts) == 0:
            empty = torch.zeros(0, dtype=torch.long, device=device)
            return QueryMatches(empty, empty, empty, empty, 0)
        cost = self.cost_matrices(cls_logits, box_preds, targets)
        jobs = []  # (layer, image, cost matrix) for each image with boxes
        for img, num_gts in enumerate(targets.num_gts):
            if num_gts == 0:
                continue
            img_cost = cost[img, :, :, :num_gts]
            if not np.isfinite(img_cost).all():
                img_cost = self._finite_costs(img_cost, img, targets)
            jobs.extend((layer, img, img_cost[layer])
                        for layer in range(num_layers))
        solutions = _solve_all([job[2] for job in jobs])
        pairs: List[np.ndarray] = [  # rows of (layer, image, query, gt)
            np.stack([np.full_like(rows, layer), np.full_like(rows, img),
                      rows, cols])
            for (layer, img, _), (rows, cols) in zip(jobs, solutions)]
        # Sorted by layer so each layer's pairs are contiguous.
        pairs_np = np.concatenate(pairs, axis=1)
        pairs_np = pairs_np[:, np.argsort(pairs_np[0], kind='stable')]
        index = torch.from_numpy(pairs_np).to(device)  # one host-to-device
        return QueryMatches(index[0], index[1], index[2], index[3],
                            pairs_np.shape[1] // num_layers)

    @staticmethod
    def _finite_costs(cost: np.ndarray, img: int,
                      targets: BatchedTargets) -> np.ndarray:
        """``(L, Q, G)`` costs of image ``img`` that hold NaN or inf. Under
        fp16 autocast a loss scaler is in charge (``--amp`` on a GPU): an
        overflowing step is normal there, so the pairs are matched on
        finite stand-ins, the loss comes out non-finite and the scaler skips
        the step (``NonFiniteLossHook`` counts it). Otherwise the
        predictions diverged: raise, naming the image."""
        if fp16_autocast():
            return np.nan_to_num(cost, nan=1e8, posinf=1e8, neginf=-1e8)
        layer = int(np.argwhere(~np.isfinite(cost))[0, 0])
        raise FloatingPointError(
            f'Non-finite matching cost for image {targets.images[img]} ('
            f'{img} of the batch) at decoder layer {layer}: the predictions '
            'contain NaN or inf (diverged training?). Fix: lower the '
            'learning rate, keep clip_grad, check the data (python '
            'tools/check_dataset.py CONFIG).')

    def _warn_if_more_gts_than_queries(self, num_gts: Sequence[int],
                                       num_queries: int) -> None:
        most = max(num_gts, default=0)
        if most > num_queries and not self._warned_too_many_gts:
            self._warned_too_many_gts = True
            warnings.warn(
                f'An image has {most} ground-truth boxes but the model has '
                f'only {num_queries} queries: {num_queries} boxes of it are '
                f'matched and the rest are ignored. Raise num_queries above '
                f'the largest box count of your dataset.')
