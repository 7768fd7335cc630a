"""Our RT-DETRv2 against the official rtdetrv2_pytorch code, on CPU:

    .venv/bin/python tools/parity_rtdetr_official.py \
        --official-root /tmp/official_rtdetr/rtdetrv2_pytorch

(``git archive HEAD rtdetrv2_pytorch`` of lyuwenyu/RT-DETR, extracted). A
tiny official model, redrawn as tests/helpers/weights.py ``perturb``, is
made ours by ``--from rtdetr``; compared: each layer's outputs, every loss and
gradient (look-forward-twice on both sides), eval top-k. rel: max |diff| /
max |theirs| (gradients: at least 1e-2, zero ones being float noise). Exit 1
if an output's abs or a loss's or gradient's rel exceeds 1e-4.
"""
import argparse
import importlib.util
import os.path as osp
import re
import sys
import tempfile

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path[:0] = [REPO, osp.join(REPO, 'tools')]
from mmdet.structures import DetDataSample  # noqa: E402
from mmdet.structures.bbox import bbox_xyxy_to_cxcywh  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from detr_plugin.checkpoint.rtdetr import rtdetr_official_to_plugin  # noqa
from detr_plugin.registry import MODELS  # noqa: E402

PKG = 'rtdetrv2_official'  # the official src/, as a package
C, SIZE, WIDTH, LAYERS, QUERIES, TOL = 5, 128, 32, 2, 30, 1e-4
BOXES = ([[8, 12, 60, 80], [40, 20, 120, 68], [66, 80, 102, 124]],
         [[20, 24, 100, 116]])
LABELS = ([1, 4, 0], [2])


def import_official(root: str):
    """Its ``zoo.rtdetr`` package (the RT-DETR modules) and PResNet."""
    def module(name: str, **attrs):
        sys.modules[name] = type(sys)(name)  # a module
        return vars(sys.modules[name]).update(attrs) or sys.modules[name]
    for sub in ('', 'nn', 'nn.backbone', 'zoo', 'misc'):
        module(f'{PKG}.{sub}'.rstrip('.'),
               __path__=[osp.join(root, 'src', *sub.split('.'))])
    module(f'{PKG}.core', register=lambda *a, **k: (lambda cls: cls))
    module(f'{PKG}.misc.dist_utils', get_world_size=lambda: 1,
           is_dist_available_and_initialized=lambda: False)
    if importlib.util.find_spec('torchvision') is None:  # cxcywh -> xyxy
        module('torchvision', ops=module(
            'torchvision.ops', box_convert=lambda b, **fmt: torch.cat(
                (b[..., :2] - 0.5 * b[..., 2:], b[..., :2] + 0.5 * b[..., 2:]),
                -1), boxes=module('torchvision.ops.boxes', box_area=lambda b: (
                    b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))))
    off = importlib.import_module(f'{PKG}.zoo.rtdetr')
    off.PResNet = importlib.import_module(f'{PKG}.nn.backbone.presnet').PResNet
    return off


def official_model(off) -> torch.nn.Module:
    """R18 (fixed widths, BNs training), width 32, 2 layers; redrawn."""
    torch.manual_seed(0)
    model = off.RTDETR(
        off.PResNet(18, return_idx=[1, 2, 3], freeze_norm=False),
        off.HybridEncoder(in_channels=[128, 256, 512], hidden_dim=WIDTH,
                          nhead=2, dim_feedforward=64, expansion=0.5),
        off.RTDETRTransformerv2(
            num_classes=C, hidden_dim=WIDTH, num_queries=QUERIES, nhead=2,
            feat_channels=[WIDTH] * 3, num_layers=LAYERS, dim_feedforward=64,
            num_denoising=20, eval_spatial_size=None))
    with torch.no_grad():  # all but 1 / points and the batch counts
        for name, tensor in model.state_dict(keep_vars=True).items():
            noise = torch.randn(tensor.shape)  # seeded above
            if name.endswith('running_var'):
                tensor.copy_(1 + 0.5 * noise.abs())
            elif tensor.dim() > 1:
                tensor.copy_(noise * tensor[0].numel() ** -0.5)
            elif not name.endswith(('_scale', 'num_batches_tracked')):
                tensor.add_(0.1 * noise)
        model.decoder.denoising_class_embed.weight[C].zero_()  # padding
    return model


def our_model(official) -> torch.nn.Module:
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/rtdetr/rtdetrv2_r18vd_4xb4-120e_coco.py')).model
    cfg.update(num_queries=QUERIES, decoder_in_channels=[WIDTH] * 3)
    cfg.neck.update(hidden_dim=WIDTH, num_heads=2, dim_feedforward=64)
    layer = cfg.decoder.layer_cfg
    [attn.update(embed_dims=WIDTH, num_heads=2) for attn in layer.attn_cfgs]
    layer.ffn_cfgs.update(embed_dims=WIDTH, feedforward_channels=64)
    cfg.decoder.num_layers, cfg.test_cfg.max_per_img = LAYERS, QUERIES
    cfg.bbox_head.update(num_classes=C, embed_dims=WIDTH)
    cfg.dn_cfg.group_cfg.num_dn_queries = 20
    init_default_scope('detr_plugin')
    model = MODELS.build(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = osp.join(tmp, 'official.pth'), osp.join(tmp, 'ours.pth')
        torch.save(dict(ema=dict(module=official.state_dict())), src)
        importlib.import_module('convert_checkpoint').main(
            ['--from', 'rtdetr', src, dst])
        model.load_state_dict(torch.load(dst)['state_dict'])
    return model


def official_name(ours: str) -> str:
    layer, kind, term = re.fullmatch(
        r'(?:d(\d)\.)?(enc_|dn_)?loss_(cls|bbox|iou)', ours).groups()
    name = dict(cls='loss_vfl', bbox='loss_bbox', iou='loss_giou')[term]
    return f'{name}_enc_0' if kind == 'enc_' else \
        f'{name}_dn_{layer or LAYERS - 1}' if kind == 'dn_' else \
        f'{name}_aux_{layer}' if layer else name


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--official-root', required=True)
    off = import_official(parser.parse_args(argv).official_root)
    ours = our_model(official := official_model(off))
    images = torch.rand(2, 3, SIZE, SIZE, generator=torch.manual_seed(3))
    samples = [DetDataSample(metainfo=dict(scale_factor=(1., 1.), **{
        f'{k}_shape': (SIZE, SIZE) for k in 'img pad ori batch_input'.split()
    }), gt_instances=InstanceData(bboxes=torch.tensor(boxes).float(),
                                  labels=torch.tensor(labels)))
        for boxes, labels in zip(BOXES, LABELS)]
    targets = [dict(labels=s.gt_instances.labels, boxes=bbox_xyxy_to_cxcywh(
        s.gt_instances.bboxes) / SIZE) for s in samples]
    rows = []  # quantity, max abs, max rel, checked by rel

    def row(name, mine, theirs, by_rel=False, floor=1e-12):
        diff = (mine.detach().double() - theirs.detach().double()).abs().max()
        rows.append((name, diff.item(), diff.item() / max(
            theirs.detach().abs().max().item(), floor), by_rel))
    official.train(), ours.train()
    torch.manual_seed(7)
    out = official(images, targets)
    torch.manual_seed(7)
    head = ours.forward_transformer(ours.extract_feat(images), samples)
    logits, boxes = ours.bbox_head(head['hidden_states'], head['references'])
    dn = head['dn_meta']['num_denoising_queries']
    for i, layer in enumerate(out['aux_outputs'] + [out]):
        for key, mine in (('pred_logits', logits), ('pred_boxes', boxes)):
            row(f'd{i} {key[5:]} (denoising)', mine[i, :, :dn],
                out['dn_aux_outputs'][i][key])
            row(f'd{i} {key[5:]}', mine[i, :, dn:], layer[key])
    for key, mine in (('pred_logits', 'enc_outputs_class'),
                      ('pred_boxes', 'enc_outputs_coord')):
        row(f'proposals {key[5:]}', head[mine], out['enc_aux_outputs'][0][key])
    their_losses = off.RTDETRCriterionv2(
        off.HungarianMatcher(dict(cost_class=2, cost_bbox=5, cost_giou=2),
                             use_focal_loss=True, alpha=0.25, gamma=2.0),
        dict(loss_vfl=1, loss_bbox=5, loss_giou=2), ['vfl', 'boxes'],
        alpha=0.75, gamma=2.0, num_classes=C)(out, targets)
    sum(their_losses.values()).backward()
    torch.manual_seed(7)
    losses = {k: v for k, v in ours.loss(images, samples).items()
              if 'loss' in k}
    sum(losses.values()).backward()
    assert sorted(map(official_name, losses)) == sorted(their_losses)
    for name in sorted(losses):
        row(f'{name} ({official_name(name)})', losses[name],
            their_losses[official_name(name)], True)
    their_grads, grads = ({k: p.grad for k, p in m.named_parameters()
                           if p.grad is not None} for m in (official, ours))
    their_grads = rtdetr_official_to_plugin(their_grads)
    assert set(grads) == set(their_grads), set(grads) ^ set(their_grads)
    groups = {}
    for name in sorted(grads):
        row('', grads[name], their_grads[name], True, floor=1e-2)
        groups.setdefault(re.sub(
            r'^((decoder\.layers|bbox_head\.\w+|input_proj)\.\d+|neck\.\w+|'
            r'backbone\.\w+|[^.]+)\..*', r'\1', name), []).append(
                rows.pop()[1:3])
    for group, diffs in groups.items():
        rows.append((f'grad {group}.* ({len(diffs)} tensors)',
                     *map(max, zip(*diffs)), True))
    ours = our_model(official := official_model(off))  # BN stats moved
    official.eval(), ours.eval()
    with torch.no_grad():
        detections = off.RTDETRPostProcessor(
            num_classes=C, use_focal_loss=True, num_top_queries=QUERIES)(
                official(images), torch.tensor([[SIZE, SIZE]] * 2))
        results = [s.pred_instances for s in ours.predict(images, samples)]
    for key in ('scores', 'bboxes', 'labels'):  # theirs: 'boxes'
        theirs = torch.stack([d[key.replace('bb', 'b')] for d in detections])
        row(f'eval detections {key}', torch.stack([r[key] for r in results]),
            theirs.clamp(0, SIZE) if key == 'bboxes' else theirs)
    print(f'{"quantity":<46} {"max abs diff":>12} {"max rel diff":>12}')
    failed = [r[0] for r in rows if (r[2] if r[3] else r[1]) > TOL]
    for name, abs_diff, rel_diff, _ in rows:
        print(f'{name:<46} {abs_diff:12.3e} {rel_diff:12.3e}'
              f'{"  FAIL" * (name in failed)}')
    print(f'{len(failed)} of {len(rows)} rows over {TOL:g}')
    return int(bool(failed))


if __name__ == '__main__':
    sys.exit(main())
