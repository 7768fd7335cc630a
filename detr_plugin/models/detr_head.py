"""DETR's prediction head, set-prediction loss and post-processing.

Per query: a linear classifier over ``num_classes + 1`` (the last class is
"no object") and a 3-layer MLP regressing a normalized (cx, cy, w, h) box
through a sigmoid. The loss (paper eq. 2) is computed for every decoder layer
after one Hungarian matching of all layers: cross-entropy with the no-object
class down-weighted to 0.1, L1 x 5 and GIoU x 2, the box losses divided by the
number of ground-truth boxes averaged over processes and clamped at 1.

DETR's successors change two things, both options here: a sigmoid focal
classifier over ``num_classes`` (no no-object class; mmdet's ``FocalLoss``,
matched with ``FocalLossCost``), and boxes predicted relative to reference
points (the MLP's output is added to ``inverse_sigmoid(reference)`` before the
sigmoid: Conditional DETR's 2-D centres, DAB-DETR's per-layer 4-D anchors).
"""
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule, bias_init_with_prob
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..registry import MODELS, TASK_UTILS, registered_class
from .box_precision import float32_box_math
from .hungarian_assigner import QueryMatches
from .match_costs import BatchedTargets


@float32_box_math
def refine(box_deltas: Tensor, references: Optional[Tensor],
           eps: float = 1e-5) -> Tensor:
    """Boxes ``(..., 4)`` from the box MLP's output: ``sigmoid(deltas)``, or
    with ``references`` ``(..., R)`` (broadcast) ``sigmoid(deltas +
    inverse_sigmoid(references))`` on the first ``R`` coordinates; in
    float32 under any autocast (:mod:`.box_precision`)."""
    if references is None:
        return box_deltas.sigmoid()
    size = references.size(-1)
    return torch.cat((box_deltas[..., :size] +
                      inverse_sigmoid(references, eps),
                      box_deltas[..., size:]), -1).sigmoid()


def mean_over_processes(value: float, device: torch.device
                        ) -> Union[float, Tensor]:
    """``value`` averaged over the processes, as mmdet's ``reduce_mean``;
    a Python float in a single process, where a tensor of it would be a
    host-to-device copy (a synchronization on a GPU) per loss."""
    if dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        return reduce_mean(torch.tensor(float(value), device=device))
    return float(value)


def at_least_one(value: Union[float, Tensor]) -> Union[float, Tensor]:
    """``max(value, 1)``, a normalizer that never divides by zero."""
    return value.clamp(min=1) if torch.is_tensor(value) else max(value, 1.)


def same_width(references: Sequence[Tensor]) -> bool:
    """Whether every layer's references have the same ``R`` (Deformable
    DETR's first layer may start from 2-D points and refine to boxes)."""
    return len({r.size(-1) for r in references}) == 1


def stack_references(references: Optional[Sequence[Tensor]]
                     ) -> Optional[Tensor]:
    """Per-layer ``(B, Q, R)`` references as one ``(L, B, Q, R)`` tensor."""
    return None if references is None else torch.stack(list(references))


def default_use_sigmoid(loss_cfg: dict) -> bool:
    """The ``use_sigmoid`` default of the loss class a config names (mmdet's
    CrossEntropyLoss: False, FocalLoss and this package's: True), for a
    config that does not set it."""
    cls = registered_class(MODELS, loss_cfg.get('type'))
    param = inspect.signature(cls).parameters.get('use_sigmoid') \
        if cls is not None else None
    return param is not None and param.default is True


class MLP(nn.Module):
    """``num_layers`` linear layers with ReLU between them (DETR's box MLP;
    ``act='silu'``: SiLU, as DEIM's)."""

    def __init__(self, in_dims: int, hidden_dims: int, out_dims: int,
                 num_layers: int, act: str = 'relu') -> None:
        super().__init__()
        dims = [in_dims] + [hidden_dims] * (num_layers - 1) + [out_dims]
        self.layers = nn.ModuleList(
            nn.Linear(d_in, d_out) for d_in, d_out in zip(dims, dims[1:]))
        self.act = dict(relu=F.relu, silu=F.silu)[act]

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


# The head's branches compute in float32 under autocast: the box MLP's
# output is each layer's refinement (added to the reference in logit
# space, and passed on to the next layer), the classifier's feeds the focal
# loss and the proposals' ranking. In bf16 both rounded away what a trained
# model refines: on the DINO demo's checkpoint the largest loss-term gap to
# fp32 fell from 4.3 % to 0.7 % with them in float32 (docs/speed.md).
class BoxMLP(MLP):
    """:class:`MLP` in float32 under autocast (a head's box branch)."""
    forward = float32_box_math(MLP.forward)


class ClassifierLinear(nn.Linear):
    """``nn.Linear`` in float32 under autocast (a head's classifier)."""
    forward = float32_box_math(nn.Linear.forward)


@MODELS.register_module()
class DETRHead(BaseModule):
    """Classifier + box MLP over decoder outputs, with DETR's loss.

    Args:
        num_classes: object classes, excluding no-object.
        embed_dims: decoder width ``D``.
        num_reg_fcs: hidden layers of the box MLP (DETR: 2, so 3 linears).
        loss_cls: mmdet ``CrossEntropyLoss`` config, a softmax over
            ``num_classes + 1`` whose ``bg_cls_weight`` is the no-object
            class weight (DETR's ``eos_coef``, 0.1); or mmdet ``FocalLoss``
            with ``use_sigmoid=True``: ``num_classes`` sigmoids, normalized
            by the matched queries only.
        loss_bbox: mmdet ``L1Loss`` config (weight 5).
        loss_iou: mmdet ``GIoULoss`` config (weight 2).
        sync_cls_avg_factor: average the classification normalizer over
            processes too, so that N processes of one image each compute the
            same gradient as one process of N images.
        train_cfg: ``dict(assigner=...)``, a ``HungarianAssigner`` config.
        test_cfg: ``max_per_img`` (top-k detections: of the queries'
            best class with softmax, of all query-class pairs with sigmoid)
            and ``score_thr`` (drop detections scoring below it).
        reference_eps: ``eps`` of ``inverse_sigmoid`` on the references
            (mmdet: 1e-5 for Conditional DETR, 1e-3 for DAB-DETR).
    """

    def __init__(self,
                 num_classes: int,
                 embed_dims: int = 256,
                 num_reg_fcs: int = 2,
                 loss_cls: dict = dict(
                     type='CrossEntropyLoss',
                     bg_cls_weight=0.1,
                     use_sigmoid=False,
                     loss_weight=1.0,
                     class_weight=1.0),
                 loss_bbox: dict = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='GIoULoss', loss_weight=2.0),
                 sync_cls_avg_factor: bool = True,
                 train_cfg: dict = dict(
                     assigner=dict(type='HungarianAssigner')),
                 test_cfg: dict = dict(max_per_img=100),
                 reference_eps: float = 1e-5,
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        loss_cls = dict(loss_cls)
        self.use_sigmoid = bool(loss_cls.get('use_sigmoid',
                                             default_use_sigmoid(loss_cls)))
        if self.use_sigmoid:  # no no-object class, no class weights
            self.bg_cls_weight = 0.
            self.cls_out_channels = num_classes
        else:
            class_weight = float(loss_cls.get('class_weight', 1.0))
            self.bg_cls_weight = float(loss_cls.pop('bg_cls_weight', 0.1))
            weights = torch.full((num_classes + 1, ), class_weight)
            weights[num_classes] = self.bg_cls_weight
            # given per query (weight=) instead of to mmdet's loss, which
            # would copy its list to the device at every call
            self.register_buffer('class_weights', weights, persistent=False)
            self.cls_out_channels = num_classes + 1
            loss_cls.pop('class_weight', None)
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.sync_cls_avg_factor = sync_cls_avg_factor
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg or {}
        if train_cfg:
            self.assigner = TASK_UTILS.build(train_cfg['assigner'])
        self.reference_eps = reference_eps
        self.fc_cls = ClassifierLinear(embed_dims, self.cls_out_channels)
        self.reg_mlp = BoxMLP(embed_dims, embed_dims, 4, num_reg_fcs + 1)

    def init_weights(self) -> None:
        """A sigmoid classifier starts at probability 0.01 (focal loss's
        prior, as mmdet's successors of DETR)."""
        super().init_weights()
        if self.use_sigmoid:
            nn.init.constant_(self.fc_cls.bias, bias_init_with_prob(0.01))

    def forward(self, hidden_states: Tensor,
                references: Optional[Sequence[Tensor]] = None,
                first_layer: int = 0) -> Tuple[Tensor, Tensor]:
        """Predict classes and boxes for every layer's queries.

        Args:
            hidden_states: ``(L, B, Q, D)`` decoder outputs.
            references: None (DETR), or per layer the normalized reference
                points its boxes are relative to, ``(B, Q, R)`` each, ``R`` =
                2 (cx, cy) or 4 (the form every variant hands the head).
            first_layer: the decoder layer of ``hidden_states[0]`` (whose
                branches predict, where each layer has its own).

        Returns:
            ``cls_logits`` ``(L, B, Q, C + 1)`` (softmax) or ``(L, B, Q, C)``
            (sigmoid) and ``box_preds`` ``(L, B, Q, 4)``, normalized (cx, cy,
            w, h) in [0, 1].
        """
        return self.classify(hidden_states, first_layer), \
            self.forward_boxes(hidden_states, references, first_layer)

    # One classifier and box MLP for every layer; DeformableDETRHead has a
    # pair per layer (shared unless refined).
    def cls_branch(self, layer: int) -> nn.Module:
        """The classifier of decoder layer ``layer``."""
        return self.fc_cls

    def reg_branch(self, layer: int) -> nn.Module:
        """The box MLP of decoder layer ``layer``."""
        return self.reg_mlp

    @property
    def shares_branches(self) -> bool:
        """Whether every layer has the same classifier and box MLP (then
        one call covers all layers)."""
        return True

    def _per_layer(self, branch_of, hidden_states: Tensor,
                   first_layer: int) -> Tensor:
        """``branch_of(layer)`` applied to each layer's ``(B, Q, D)``
        outputs, stacked ``(L, B, Q, ·)``."""
        if self.shares_branches:
            return branch_of(first_layer)(hidden_states)
        return torch.stack([branch_of(first_layer + i)(hidden)
                            for i, hidden in enumerate(hidden_states)])

    def classify(self, hidden_states: Tensor, first_layer: int = 0) -> Tensor:
        """Class logits ``(L, B, Q, C[+1])`` of ``(L, B, Q, D)`` outputs."""
        return self._per_layer(self.cls_branch, hidden_states, first_layer)

    def forward_boxes(self, hidden_states: Tensor,
                      references: Optional[Sequence[Tensor]] = None,
                      first_layer: int = 0) -> Tensor:
        """Normalized (cx, cy, w, h) boxes ``(L, B, Q, 4)`` of outputs ``(L,
        B, Q, D)``, relative to each layer's ``references`` ``(B, Q, R)``
        when given."""
        deltas = self._per_layer(self.reg_branch, hidden_states, first_layer)
        return refine(deltas, stack_references(references),
                      self.reference_eps) \
            if references is None or same_width(references) else \
            torch.stack([refine(d, r, self.reference_eps)
                         for d, r in zip(deltas, references)])

    def boxes_at(self, hidden_states: Tensor,
                 references: Optional[Sequence[Tensor]],
                 matches: QueryMatches, query_offset: int = 0) -> Tensor:
        """Boxes ``(M, 4)`` of the matched rows -- (layer, image, query +
        ``query_offset``) of each pair -- of ``(L, B, Q, D)`` outputs,
        ``references`` as :meth:`forward`'s. The pairs come sorted by
        layer, ``matches.num_per_layer`` each: a layer's rows are a slice
        (no count of them on the host)."""
        queries = matches.query_idx + query_offset
        if self.shares_branches and (references is None or
                                     same_width(references)):
            idx = (matches.layer_idx, matches.batch_idx, queries)
            rows = stack_references(references)
            return refine(self.reg_branch(0)(hidden_states[idx]),
                          None if rows is None else rows[idx],
                          self.reference_eps)
        count, boxes = matches.num_per_layer, []
        for layer, hidden in enumerate(hidden_states):
            rows = slice(layer * count, (layer + 1) * count)
            idx = (matches.batch_idx[rows], queries[rows])
            boxes.append(refine(
                self.reg_branch(layer)(hidden[idx]),
                None if references is None else references[layer][idx],
                self.reference_eps))
        return torch.cat(boxes)

    def matched_boxes(self, box_preds: Tensor, hidden_states: Tensor,
                      references: Optional[Sequence[Tensor]],
                      matches: QueryMatches, query_offset: int = 0) -> Tensor:
        """``box_preds`` ``(L, B, Q, 4)``, computed without gradient, with
        the rows that the box losses read -- the matched queries' --
        recomputed with gradient from the outputs' rows ``query_offset``
        further on (the outputs may hold other queries first). The matching
        has no gradient, so the other rows' box gradient is zero: computing
        it anyway made the box MLP's backward multiply ``L*B*Q`` rows
        (28,800 for DINO's head_loss benchmark) where the matched ``M``
        (960) give the same gradients."""
        idx = (matches.layer_idx, matches.batch_idx, matches.query_idx)
        rows = self.boxes_at(hidden_states, references, matches, query_offset)
        return box_preds.index_put(idx, rows.to(box_preds.dtype))

    # ------------------------------------------------------------ training
    def loss(self, hidden_states: Tensor, batch_data_samples,
             references: Optional[Sequence[Tensor]] = None) -> dict:
        """Forward, matching and loss (:meth:`loss_by_feat`'s keys)."""
        targets = BatchedTargets.from_samples(batch_data_samples,
                                              hidden_states.device)
        return self.matched_losses(hidden_states, references, targets)[0]

    def matched_losses(self, hidden_states: Tensor,
                       references: Optional[Sequence[Tensor]],
                       targets: BatchedTargets, first_query: int = 0
                       ) -> Tuple[Dict[str, Tensor], Tensor]:
        """:meth:`loss_by_feat`'s dict for the queries from ``first_query``
        on (those before are DINO's denoising queries), and every query's
        class logits ``(L, B, Q, C[+1])``. The boxes are predicted without
        gradient for the matching and get it through
        :meth:`matched_boxes`."""
        cls_logits = self.classify(hidden_states)
        references_of_matching = references
        if first_query and references is not None:
            references_of_matching = [r[:, first_query:] for r in references]
        with torch.no_grad():
            box_preds = self.forward_boxes(hidden_states[:, :, first_query:],
                                           references_of_matching)
        matches = self.assigner.assign(cls_logits[:, :, first_query:],
                                       box_preds, targets)
        box_preds = self.matched_boxes(box_preds, hidden_states, references,
                                       matches, query_offset=first_query)
        return self.loss_dict(cls_logits[:, :, first_query:], box_preds,
                              targets, matches), cls_logits

    def loss_by_feat(self, cls_logits: Tensor, box_preds: Tensor,
                     batch_gt_instances: Sequence[InstanceData],
                     batch_img_metas: Sequence[dict]) -> Dict[str, Tensor]:
        """DETR's set loss for every decoder layer.

        Args:
            cls_logits: ``(L, B, Q, C + 1)`` or ``(L, B, Q, C)`` (sigmoid).
            box_preds: ``(L, B, Q, 4)`` normalized cxcywh.
            batch_gt_instances: per image ``bboxes`` ``(G_b, 4)`` xyxy pixels
                and ``labels`` ``(G_b,)``.
            batch_img_metas: per image ``img_shape`` ``(h, w)``.

        Returns:
            ``loss_cls``, ``loss_bbox``, ``loss_iou`` of the last layer,
            ``d{i}.loss_*`` of layer ``i`` for the others, and the
            gradient-free ``class_error`` (%, top-1 error of the last layer's
            matched queries) and, with the softmax classifier,
            ``cardinality_error`` (mean over images of |non-no-object
            predictions - boxes|).
        """
        targets = BatchedTargets.from_instances(
            batch_gt_instances, batch_img_metas, cls_logits.device)
        matches = self.assigner.assign(cls_logits, box_preds, targets)
        return self.loss_dict(cls_logits, box_preds, targets, matches)

    def loss_dict(self, cls_logits: Tensor, box_preds: Tensor,
                  targets: BatchedTargets,
                  matches: QueryMatches) -> Dict[str, Tensor]:
        """:meth:`loss_by_feat`'s dict, the matches given."""
        losses = self.named_losses(
            *self.set_losses(cls_logits, box_preds, targets, matches))
        losses.update(self._logged_errors(cls_logits[-1], targets, matches))
        return losses

    @float32_box_math
    def set_losses(self, cls_logits: Tensor, box_preds: Tensor,
                   targets: BatchedTargets, matches: QueryMatches
                   ) -> Tuple[Tensor, Tensor, Tensor]:
        """``(L,)`` classification, L1 and GIoU losses of each layer's
        predictions ``(L, B, Q, ·)`` given their matches to ``targets``, in
        float32 under any autocast."""
        loss_cls = self._classification_loss(cls_logits, targets, matches)
        loss_bbox, loss_iou = self._box_losses(box_preds, targets, matches,
                                               cls_logits.size(0))
        return loss_cls, loss_bbox, loss_iou

    @staticmethod
    def named_losses(loss_cls: Tensor, loss_bbox: Tensor, loss_iou: Tensor,
                     kind: str = 'loss') -> Dict[str, Tensor]:
        """``{kind}_cls``, ``{kind}_bbox``, ``{kind}_iou`` of the last layer
        and ``d{i}.{kind}_*`` of the others (mmdet's names)."""
        losses = {}
        for layer in range(len(loss_cls)):
            prefix = '' if layer == len(loss_cls) - 1 else f'd{layer}.'
            for name, value in (('cls', loss_cls), ('bbox', loss_bbox),
                                ('iou', loss_iou)):
                losses[f'{prefix}{kind}_{name}'] = value[layer]
        return losses

    def _class_targets(self, cls_logits: Tensor, targets: BatchedTargets,
                       matches: QueryMatches) -> Tensor:
        """``(L, B, Q)`` class targets; no-object (C) where unmatched."""
        labels = torch.full(cls_logits.shape[:3], self.num_classes,
                            dtype=torch.long, device=cls_logits.device)
        labels[matches.layer_idx, matches.batch_idx, matches.query_idx] = \
            targets.labels[matches.batch_idx, matches.gt_idx]
        return labels

    def _classification_loss(self, cls_logits: Tensor,
                             targets: BatchedTargets,
                             matches: QueryMatches) -> Tensor:
        """``(L,)`` per layer: the weighted cross-entropy's weighted mean, or
        the focal loss over the matched queries."""
        num_layers, batch, num_queries = cls_logits.shape[:3]
        labels = self._class_targets(cls_logits, targets, matches)
        labels = labels.reshape(-1)
        per_query = self.loss_cls(
            cls_logits.reshape(-1, self.cls_out_channels).float(), labels,
            # softmax: the class weight of each query's target
            weight=None if self.use_sigmoid else self.class_weights[labels],
            reduction_override='none')  # (N,) softmax, (N, C) sigmoid
        # Sum of class weights over a layer's queries, as the official
        # weighted mean divides by (sigmoid: the matched queries); known on
        # the host.
        num_pos = matches.num_per_layer
        avg_factor = num_pos + (batch * num_queries - num_pos) * \
            self.bg_cls_weight
        if self.sync_cls_avg_factor:
            avg_factor = mean_over_processes(avg_factor, cls_logits.device)
        return per_query.reshape(num_layers, -1).sum(1) / \
            at_least_one(avg_factor)

    def _box_losses(self, box_preds: Tensor, targets: BatchedTargets,
                    matches: QueryMatches,
                    num_layers: int) -> Tuple[Tensor, Tensor]:
        """``(L,)`` L1 and GIoU losses over matched pairs / number of boxes."""
        num_boxes = at_least_one(mean_over_processes(matches.num_per_layer,
                                                     box_preds.device))
        pred = box_preds[matches.layer_idx, matches.batch_idx,
                         matches.query_idx].float()  # (M, 4)
        if pred.numel() == 0:
            zero = box_preds.sum() * 0  # keeps every output in the graph
            return zero.expand(num_layers), zero.expand(num_layers)
        target = targets.boxes_cxcywh[matches.batch_idx, matches.gt_idx]
        per_pair_l1 = self.loss_bbox(
            pred, target, reduction_override='none').sum(-1)  # (M,)
        # GIoU in pixels, like mmdet (its eps is absolute, in pixel units).
        factors = targets.img_factors[matches.batch_idx]
        per_pair_giou = self.loss_iou(
            bbox_cxcywh_to_xyxy(pred) * factors,
            bbox_cxcywh_to_xyxy(target) * factors,
            reduction_override='none')  # (M,)
        zeros = pred.new_zeros(num_layers)
        loss_bbox = zeros.index_add(0, matches.layer_idx, per_pair_l1)
        loss_iou = zeros.index_add(0, matches.layer_idx, per_pair_giou)
        return loss_bbox / num_boxes, loss_iou / num_boxes

    @torch.no_grad()
    def _logged_errors(self, last_logits: Tensor, targets: BatchedTargets,
                       matches: QueryMatches) -> Dict[str, Tensor]:
        """DETR's ``class_error`` and ``cardinality_error`` (no gradient)."""
        if matches.num_per_layer:
            # pairs are sorted by layer: the last layer's come last
            last = slice(-matches.num_per_layer, None)
            batch_idx = matches.batch_idx[last]
            predicted = last_logits[batch_idx,
                                    matches.query_idx[last]].argmax(-1)
            correct = predicted == targets.labels[batch_idx,
                                                  matches.gt_idx[last]]
            class_error = 100 - 100 * correct.float().mean()
        else:  # as official DETR: no matched query counts as 100% error
            class_error = last_logits.new_tensor(100.)
        if self.use_sigmoid:  # no no-object class to count against
            return dict(class_error=class_error)
        num_pred = (last_logits.argmax(-1) != self.num_classes).sum(1)
        cardinality_error = (num_pred - targets.num_gts_tensor).abs().mean()
        return dict(class_error=class_error,
                    cardinality_error=cardinality_error)

    # ----------------------------------------------------------- inference
    def decode(self, cls_logits: Tensor, box_preds: Tensor,
               sizes: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """The top-k detections: softmax, queries by their best object-class
        probability; sigmoid, (query, class) pairs by probability.

        Args:
            cls_logits: ``(B, Q, C + 1)`` or ``(B, Q, C)`` (sigmoid).
            box_preds: ``(B, Q, 4)`` normalized cxcywh.
            sizes: ``(B, 1, 4)`` ``(w, h, w, h)`` of each image in pixels.

        Returns:
            ``boxes`` ``(B, k, 4)`` xyxy pixels clamped to the image,
            ``scores`` ``(B, k)`` descending, ``labels`` ``(B, k)`` and the
            query behind each, ``(B, k)``, with ``k = max_per_img`` at most
            the number of candidates.
        """
        max_per_img = self.test_cfg.get('max_per_img', 100)
        if self.use_sigmoid:
            probs = cls_logits.float().sigmoid().flatten(1)  # (B, Q * C)
            scores, pairs = probs.topk(min(max_per_img, probs.size(1)), 1)
            labels = pairs % self.num_classes
            index = torch.div(pairs, self.num_classes, rounding_mode='floor')
        else:
            probs = cls_logits.float().softmax(-1)[..., :-1]  # (B, Q, C)
            scores, labels = probs.max(-1)  # (B, Q)
            scores, index = scores.topk(min(max_per_img, scores.size(1)),
                                        dim=1)  # (B, k)
            labels = labels.gather(1, index)
        boxes = box_preds.float().gather(
            1, index[..., None].expand(-1, -1, 4))
        boxes = torch.minimum(
            (bbox_cxcywh_to_xyxy(boxes) * sizes).clamp(min=0), sizes)
        return boxes, scores, labels, index

    def predict(self, hidden_states: Tensor, batch_data_samples,
                rescale: bool = True,
                references: Optional[Sequence[Tensor]] = None
                ) -> List[InstanceData]:
        """Detections from the last decoder layer (its own branches); see
        :meth:`predict_by_feat`."""
        cls_logits, box_preds = self(
            hidden_states[-1:], None if references is None else
            references[-1:], first_layer=len(hidden_states) - 1)
        return self.predict_by_feat(
            cls_logits, box_preds,
            [s.metainfo for s in batch_data_samples], rescale=rescale)

    def predict_by_feat(self, cls_logits: Tensor, box_preds: Tensor,
                        batch_img_metas: Sequence[dict],
                        rescale: bool = True) -> List[InstanceData]:
        """Top-k queries by their best object-class probability.

        Args:
            cls_logits: ``(L, B, Q, C + 1)`` (or ``C``, sigmoid); only the
                last layer is used.
            box_preds: ``(L, B, Q, 4)`` normalized cxcywh.
            batch_img_metas: per image ``img_shape`` and, with ``rescale``,
                ``scale_factor`` (w, h) of the resize from the original.
            rescale: return boxes in original-image pixels.

        Returns:
            Per image ``InstanceData`` with ``bboxes`` ``(k, 4)`` xyxy pixels,
            ``scores`` ``(k,)``, ``labels`` ``(k,)`` and ``query_index``
            ``(k,)`` (the query behind each), by descending score.
        """
        sizes = torch.tensor(
            [[m['img_shape'][1], m['img_shape'][0]] * 2
             for m in batch_img_metas],
            dtype=torch.float32, device=box_preds.device)[:, None, :]
        boxes, scores, labels, queries = self.decode(
            cls_logits[-1], box_preds[-1], sizes)
        if rescale:
            scale = torch.tensor(
                [list(m['scale_factor']) * 2 for m in batch_img_metas],
                dtype=boxes.dtype, device=boxes.device)[:, None, :]
            boxes = boxes / scale
        score_thr = self.test_cfg.get('score_thr', 0.)
        results = []
        for img in range(len(batch_img_metas)):
            keep = scores[img] >= score_thr if score_thr > 0 else slice(None)
            results.append(InstanceData(bboxes=boxes[img][keep],
                                        scores=scores[img][keep],
                                        labels=labels[img][keep],
                                        query_index=queries[img][keep]))
        return results
