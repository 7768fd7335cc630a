"""Our D-FINE and DEIM-D-FINE against the official code, on CPU:

    .venv/bin/python tools/parity_dfine_official.py \
        --official-root /tmp/research/dfine_src \
        --deim-root /tmp/research/deim_src

(``git archive HEAD src`` of Peterande/D-FINE, ``git archive HEAD engine``
of ShihuaHuang95/DEIM, extracted; no ``--deim-root``: D-FINE only). A tiny
official model (HGNetV2-B0, width 32, 3 layers of (3, 6, 3) points, 20
queries, 10 denoising, 5 classes; DEIM: SiLU FFN and MLPs), redrawn by
tests/helpers/weights.py ``perturb`` (1 / points, up, reg_scale kept), is
made ours by ``dfine_official_to_plugin``; compared: each layer's logits,
boxes, corners, the references, pre boxes, proposals (the denoising noise
drawn alike), every term of the official criterion (VFL; DEIM: MAL) and the
gradients of their sum, eval top-k. rel: max |diff| / max |theirs|
(gradients: at least 5e-2, zero ones being float noise). Exit 1 if an
output's abs or a loss's or gradient's rel exceeds 1e-4 (backbone gradients:
abs 3e-3, sums over every pixel through train-mode BatchNorms).
"""
import argparse
import importlib.util
import os.path as osp
import re
import sys

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [REPO, osp.join(REPO, 'tests')]
from helpers.weights import perturb  # noqa: E402
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from detr_plugin.checkpoint.dfine import dfine_official_to_plugin  # noqa
from detr_plugin.registry import MODELS  # noqa: E402

C, SIZE, WIDTH, LAYERS, QUERIES, TOL = 5, 64, 32, 3, 20, 1e-4
POINTS = (3, 6, 3)
BOXES = ([[4, 6, 30, 40], [20, 10, 60, 34], [33, 40, 51, 62]],
         [[10, 12, 50, 58]])
LABELS = ([1, 4, 0], [2])
# source folder, packages imported without their __init__ (beside misc and
# the backbones'), the detector's package, the backbones'
TREES = dict(dfine=('src', ('nn', 'zoo'), 'zoo.dfine', 'nn.backbone'),
             deim=('engine', (), 'deim', 'backbone'))


def import_official(root: str, tree: str):
    """The detector's package (model, criterion, postprocessor) and
    HGNetv2 of an official source tree."""
    (src, folders, zoo, backbone), pkg = TREES[tree], f'{tree}_official'

    def module(name: str, **attrs):
        sys.modules[name] = type(sys)(name)  # a module
        return vars(sys.modules[name]).update(attrs) or sys.modules[name]
    for sub in ('', 'misc', backbone) + folders:
        module(f'{pkg}.{sub}'.rstrip('.'),
               __path__=[osp.join(root, src, *sub.split('.'))])
    module(f'{pkg}.core', register=lambda *a, **k: (lambda cls: cls))
    module(f'{pkg}.misc.dist_utils', get_world_size=lambda: 1,
           is_dist_available_and_initialized=lambda: False)
    if 'torchvision' not in sys.modules and \
            importlib.util.find_spec('torchvision') is None:  # stand-ins
        module('torchvision', ops=module(
            'torchvision.ops', box_convert=lambda b, **fmt: torch.cat(
                (b[..., :2] - 0.5 * b[..., 2:], b[..., :2] + 0.5 * b[..., 2:]),
                -1), boxes=module('torchvision.ops.boxes', box_area=lambda b: (
                    b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))))
    off = importlib.import_module(f'{pkg}.{zoo}')
    off.HGNetv2 = importlib.import_module(f'{pkg}.{backbone}.hgnetv2').HGNetv2
    return off


def official_model(off, deim: bool) -> torch.nn.Module:
    """B0 (BNs training), width 32, 3 layers; redrawn, constants kept."""
    torch.manual_seed(0)
    model = (off.DEIM if deim else off.DFINE)(
        off.HGNetv2('B0', use_lab=True, return_idx=[1, 2, 3], freeze_at=-1,
                    freeze_norm=False, pretrained=False),
        off.HybridEncoder(in_channels=[256, 512, 1024], hidden_dim=WIDTH,
                          nhead=2, dim_feedforward=64, expansion=0.5,
                          depth_mult=0.34),
        off.DFINETransformer(
            num_classes=C, hidden_dim=WIDTH, feat_channels=[WIDTH] * 3,
            num_queries=QUERIES, num_layers=LAYERS, nhead=2,
            dim_feedforward=64, num_points=list(POINTS), num_denoising=10,
            eval_spatial_size=None, reg_max=32, reg_scale=4.,
            **dict(activation='silu', mlp_act='silu') if deim else {}))
    perturb(model)
    scale = torch.tensor([1. / p for p in POINTS for _ in range(p)])
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith('num_points_scale'):
                buffer.copy_(scale)
        assert model.decoder.up is model.decoder.decoder.up
        model.decoder.up.fill_(0.5), model.decoder.reg_scale.fill_(4.)
        model.decoder.denoising_class_embed.weight[C].zero_()  # padding
    return model


def our_model(official, deim: bool) -> torch.nn.Module:
    attention = dict(embed_dims=WIDTH, num_heads=2)
    ffn = dict(embed_dims=WIDTH, feedforward_channels=64, ffn_drop=0.)
    decoder = dict(num_layers=LAYERS, layer_cfg=dict(attn_cfgs=[
        dict(type='MultiheadAttention', **attention),
        dict(type='DFINEDeformableAttention', num_points=POINTS, **attention)
    ], ffn_cfgs=ffn))
    head = dict(type='DFINEHead', num_classes=C, embed_dims=WIDTH)
    if deim:
        ffn['act_cfg'], decoder['mlp_act'] = dict(type='SiLU'), 'silu'
        head.update(mlp_act='silu', loss_cls=dict(  # the head reads
            type='MatchabilityAwareLoss', gamma=1.5,  # use_sigmoid
            use_sigmoid=True, loss_weight=1.0))  # (else C + 1 logits)
    init_default_scope('detr_plugin')
    model = MODELS.build(dict(
        type='DFINE', num_queries=QUERIES,
        backbone=dict(type='HGNetV2', arch='B0', use_lab=True),
        neck=dict(type='DFINEHybridEncoder', in_channels=[256, 512, 1024],
                  hidden_dim=WIDTH, num_heads=2, dim_feedforward=64,
                  expansion=0.5, depth_mult=0.34),
        decoder_in_channels=[WIDTH] * 3, decoder=decoder, bbox_head=head,
        dn_cfg=dict(label_noise_scale=0.5, box_noise_scale=1.0,
                    group_cfg=dict(dynamic=True, num_dn_queries=10)),
        train_cfg=dict(assigner=dict(type='HungarianAssigner', match_costs=[
            dict(type='FocalLossCost', weight=2.0, eps=1e-8),
            dict(type='BBoxL1Cost', weight=5.0),
            dict(type='IoUCost', iou_mode='giou', weight=2.0)])),
        test_cfg=dict(max_per_img=QUERIES)))
    model.load_state_dict(dfine_official_to_plugin(official.state_dict()))
    return model


def official_name(ours: str, cls: str) -> str:
    layer, pre, kind, term = re.fullmatch(
        r'(?:d(\d)\.|(pre)[._])?(enc_|dn_)?loss_(\w+)', ours).groups()
    name = dict(cls=cls, bbox='loss_bbox', iou='loss_giou', fgl='loss_fgl',
                ddf='loss_ddf')[term]
    return f'{name}_enc_0' if kind == 'enc_' else \
        f'{name}_dn_{"pre" if pre else layer or LAYERS - 1}' if kind else \
        f'{name}_pre' if pre else f'{name}_aux_{layer}' if layer else name


def compare(off, deim: bool) -> list:
    """Rows: quantity, max abs diff, max rel diff, over its limit."""
    rows = []

    def row(name, mine, theirs, by='abs', floor=1e-12, tol=TOL):
        diff = (mine.detach().double() - theirs.detach().double()).abs()
        diff = diff.max().item()
        rel = diff / max(theirs.detach().abs().max().item(), floor)
        rows.append((name, diff, rel, (rel if by == 'rel' else diff) > tol))
    official = official_model(off, deim)
    ours = our_model(official, deim)
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.manual_seed(3))
    samples = [DetDataSample(metainfo=dict(scale_factor=(1., 1.), **{
        f'{k}_shape': (SIZE, SIZE) for k in 'img pad ori batch_input'.split()
    }), gt_instances=InstanceData(bboxes=torch.tensor(boxes).float(),
                                  labels=torch.tensor(labels)))
        for boxes, labels in zip(BOXES, LABELS)]
    targets = [dict(labels=s.gt_instances.labels, boxes=bbox_xyxy_to_cxcywh(
        s.gt_instances.bboxes) / SIZE) for s in samples]
    official.train(), ours.train()
    torch.manual_seed(7)
    out = official(images, targets)
    torch.manual_seed(7)
    head = ours.forward_transformer(ours.extract_feat(images), samples)
    mine = dict(logits=ours.bbox_head.classify_layers(
        head['hidden_states'], head['corners']), boxes=head['boxes'],
        corners=head['corners'])
    pre_logits = ours.bbox_head.cls_branches[0](head['hidden_states'][0])
    dn = head['dn_meta']['num_denoising_queries']
    assert out['dn_meta']['dn_num_split'] == [dn, QUERIES]
    for part, layers, queries, pre in (
            ('', out['aux_outputs'] + [out], slice(dn, None), 'pre_outputs'),
            (' (denoising)', out['dn_outputs'], slice(None, dn),
             'dn_pre_outputs')):
        for i, layer in enumerate(layers):
            for key, value in mine.items():
                row(f'd{i} {key}{part}', value[i, :, queries],
                    layer[f'pred_{key}'])
        row(f'references{part}', head['initial_boxes'][:, queries],
            layers[-1]['ref_points'])
        row(f'pre logits{part}', pre_logits[:, queries],
            out[pre]['pred_logits'])
        row(f'pre boxes{part}', head['pre_boxes'][:, queries],
            out[pre]['pred_boxes'])
    for key, value in (('logits', 'enc_outputs_class'),
                       ('boxes', 'enc_outputs_coord')):
        row(f'proposals {key}', head[value],
            out['enc_aux_outputs'][0][f'pred_{key}'])
    cls = 'loss_mal' if deim else 'loss_vfl'
    criterion = (off.DEIMCriterion if deim else off.DFINECriterion)(
        off.HungarianMatcher(dict(cost_class=2, cost_bbox=5, cost_giou=2),
                             use_focal_loss=True, alpha=0.25, gamma=2.0),
        {cls: 1, 'loss_bbox': 5, 'loss_giou': 2, 'loss_fgl': 0.15,
         'loss_ddf': 1.5}, [cls[5:], 'boxes', 'local'], alpha=0.75,
        gamma=1.5 if deim else 2.0, num_classes=C, reg_max=32)
    their_losses = criterion(out, targets)
    torch.manual_seed(7)
    losses = {k: v for k, v in ours.loss(images, samples).items()
              if 'loss' in k}
    names = {name: official_name(name, cls) for name in losses}
    assert len(set(names.values())) == len(names)
    omitted = set(their_losses) - set(names.values())
    assert set(names.values()) <= set(their_losses) and omitted <= {
        f'loss_ddf_dn_{LAYERS - 1}'}, omitted  # the last layer's, 0
    sum(their_losses[k] for k in names.values()).backward()
    sum(losses.values()).backward()
    for name in sorted(losses):
        row(f'{name} ({names[name]})', losses[name],
            their_losses[names[name]], 'rel')
    for name in omitted:  # ours has no DDF of the teacher with itself
        row(f'(omitted by ours: {name})', torch.zeros(()),
            their_losses[name], 'rel')
    their_grads, grads = ({k: p.grad for k, p in m.named_parameters()
                           if p.grad is not None} for m in (official, ours))
    their_grads = dfine_official_to_plugin(their_grads)
    assert set(grads) == set(their_grads), set(grads) ^ set(their_grads)
    groups = {}
    for name in sorted(grads):
        backbone = name.startswith('backbone.')
        row('', grads[name], their_grads[name], 'abs' if backbone else 'rel',
            floor=5e-2, tol=3e-3 if backbone else TOL)
        groups.setdefault(re.sub(
            r'^((decoder\.layers|bbox_head\.\w+|backbone\.stages)\.\d+|'
            r'bbox_head\.\w+|neck\.\w+|backbone\.\w+|[^.]+)\..*', r'\1',
            name), []).append(rows.pop())
    for group, diffs in groups.items():
        rows.append((f'grad {group}.* ({len(diffs)} tensors)',
                     *map(max, zip(*[d[1:3] for d in diffs])),
                     any(d[3] for d in diffs)))
    official = official_model(off, deim)  # BN statistics moved
    ours = our_model(official, deim)
    official.eval(), ours.eval()
    post = getattr(off, 'DFINEPostProcessor', None) or off.PostProcessor
    with torch.no_grad():
        detections = post(num_classes=C, use_focal_loss=True,
                          num_top_queries=QUERIES)(
            official(images), torch.tensor([[SIZE, SIZE]] * 2))
        results = [s.pred_instances for s in ours.predict(images, samples)]
    for key in ('scores', 'bboxes', 'labels'):  # theirs: 'boxes'
        theirs = torch.stack([d[key.replace('bb', 'b')] for d in detections])
        row(f'eval detections {key}', torch.stack([r[key] for r in results]),
            theirs.clamp(0, SIZE) if key == 'bboxes' else theirs)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-root', required=True,
                        help="D-FINE's tree (with src/)")
    parser.add_argument('--deim-root', help="DEIM's tree (with engine/)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    failed = total = 0
    for tree, root in [('dfine', args.official_root)] + [
            ('deim', args.deim_root)] * bool(args.deim_root):
        rows = compare(import_official(root, tree), tree == 'deim')
        print(f'{f"quantity ({tree})":<52} {"max abs diff":>12} '
              f'{"max rel diff":>12}')
        for name, abs_diff, rel_diff, over in rows:
            print(f'{name:<52} {abs_diff:12.3e} {rel_diff:12.3e}'
                  f'{"  FAIL" * over}')
        failed, total = failed + sum(r[3] for r in rows), total + len(rows)
        print()
    print(f'{failed} of {total} rows over their limits (outputs: abs '
          f'{TOL:g}; losses, gradients: rel {TOL:g}; backbone gradients: '
          'abs 3e-3)')
    return int(bool(failed))


if __name__ == '__main__':
    sys.exit(main())
