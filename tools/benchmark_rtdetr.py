"""Time this package's RT-DETRv2 and D-FINE against transformers' ports,
side by side.

    python tools/benchmark_rtdetr.py [--model rtdetrv2_r18vd|rtdetrv2_r50vd|
        dfine_s|dfine_l] [--repeats N] [--json out.json] [--only ITEM ...]

mmdet has neither: the reference is transformers'
``RTDetrV2ForObjectDetection`` / ``DFineForObjectDetection`` (a test
dependency), built at the official size from its config (random weights, no
download) and converted to ours with ``--from hf``'s layout
(``configs/rtdetr/`` and ``configs/dfine/`` give our model). Before any timing
both must compute the same detection scores and, for RT-DETRv2, the same losses
(same denoising noise: the same seed; transformers' D-FINE loss is not the
official one, see docs/family.md#d-fine-and-deim). Then, alternating the two (A
B A B ...) after a warm-up, medians of: ``inference`` (batch 1 at 640 x 640,
the top-300 detections: ours ``predict``, theirs the forward and the same
top-k), ``train_step`` (forward, backward and an AdamW step, batch 2 at 640 x
640 with 7 and 3 boxes; their backbone BatchNorms train for R18vd as the
official and ours), ``amp_train_step`` (ours as ``tools/train.py --amp``
trains: bf16 autocast where the CPU has it natively, else float32; theirs
float32) and ``head_loss`` (the matching and every loss term of given decoder
outputs: ours ``bbox_head.loss``, theirs its loss function). A speedup is
transformers' median over ours.
"""
import argparse
import copy
import json
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import amp_dtype, interleaved_medians, total_loss  # noqa
from mmdet_reference import (REPO_CONFIG_DIR, build_plugin_model,  # noqa
                             load_config, make_batch)

SIZE = 640
CONFIGS = dict(rtdetrv2_r18vd='rtdetr/rtdetrv2_r18vd_4xb4-120e_coco.py',
               rtdetrv2_r50vd='rtdetr/rtdetrv2_r50vd_4xb4-72e_coco.py',
               dfine_s='dfine/dfine_hgnetv2-s_8xb4-132e_coco.py',
               dfine_l='dfine/dfine_hgnetv2-l_8xb4-80e_coco.py')
# HGNetV2 B0 / B4 in transformers' terms: stem, each stage's in / mid / out
# channels and blocks, convs per block, learnable affines
HGNETV2 = dict(
    dfine_s=([3, 16, 16], [16, 64, 256, 512], [16, 32, 64, 128],
             [64, 256, 512, 1024], [1, 1, 2, 1], 3, True),
    dfine_l=([3, 32, 48], [48, 128, 512, 1024], [48, 96, 192, 384],
             [128, 512, 1024, 2048], [1, 1, 3, 1], 6, False))
ITEMS = ('inference', 'train_step', 'amp_train_step', 'head_loss')


def hf_model(name: str):
    """transformers' model at the official size of ``name``."""
    import transformers
    if name.startswith('dfine'):
        return hf_dfine(name)
    backbone = {} if name == 'rtdetrv2_r50vd' else dict(
        hidden_sizes=[64, 128, 256, 512], depths=[2, 2, 2, 2],
        layer_type='basic')
    size = {} if name == 'rtdetrv2_r50vd' else dict(
        encoder_in_channels=[128, 256, 512], hidden_expansion=0.5,
        decoder_layers=3, freeze_backbone_batch_norms=False)
    config = transformers.RTDetrV2Config(
        backbone_config=transformers.RTDetrResNetConfig(
            out_indices=[2, 3, 4], **backbone),
        num_labels=80, eval_size=None, anchor_image_size=None, **size)
    return transformers.RTDetrV2ForObjectDetection(config)


def hf_dfine(name: str):
    """transformers' D-FINE S or L (its BatchNorms train for S as the
    official's, frozen for L; transformers cannot freeze L's stem alone,
    ours does, as the official)."""
    import transformers
    stem, in_, mid, out, blocks, layers, lab = HGNETV2[name]
    backbone = transformers.HGNetV2Config(
        stem_channels=stem, stage_in_channels=in_, stage_mid_channels=mid,
        stage_out_channels=out, hidden_sizes=out, stage_num_blocks=blocks,
        stage_numb_of_layers=[layers] * 4, use_learnable_affine_block=lab,
        stage_downsample=[False, True, True, True],
        stage_light_block=[False, False, True, True],
        stage_kernel_size=[3, 3, 5, 5], out_indices=[2, 3, 4])
    size = dict(depth_mult=0.34, hidden_expansion=0.5, decoder_layers=3,
                freeze_backbone_batch_norms=False) if name == 'dfine_s' \
        else {}
    config = transformers.DFineConfig(
        backbone_config=backbone, num_labels=80, encoder_in_channels=out[1:],
        decoder_n_points=[3, 6, 3], eval_size=None, anchor_image_size=None,
        **size)
    return transformers.DFineForObjectDetection(config)


def hf_labels(samples):
    """Our data samples' boxes as transformers' labels (normalized
    cxcywh)."""
    labels = []
    for sample in samples:
        height, width = sample.img_shape
        boxes = sample.gt_instances.bboxes / torch.tensor([width, height] * 2)
        labels.append(dict(
            class_labels=sample.gt_instances.labels,
            boxes=torch.cat(((boxes[:, :2] + boxes[:, 2:]) / 2,
                             boxes[:, 2:] - boxes[:, :2]), 1)))
    return labels


def hf_detect(model, inputs, k=300):
    """transformers' forward and the same top-k over queries x classes."""
    out = model(pixel_values=inputs)
    scores, index = out.logits.sigmoid().flatten(1).topk(k, 1)
    boxes = out.pred_boxes.gather(1, (index // out.logits.size(-1))[
        ..., None].expand(-1, -1, 4))
    return scores, boxes


def check_parity(theirs, ours) -> None:
    """Refuse to time models that compute different things."""
    inputs, samples = make_batch([(SIZE, SIZE)] * 2, [7, 3], seed=11)
    theirs.train(), ours.train()
    with torch.no_grad():
        torch.manual_seed(0)
        their_loss = float(theirs(pixel_values=inputs,
                                  labels=hf_labels(samples)).loss)
        torch.manual_seed(0)
        our_loss = float(total_loss(ours.loss(inputs, samples)))
    theirs.eval(), ours.eval()
    with torch.no_grad():
        their_scores = hf_detect(theirs, inputs)[0]
        our_scores = torch.stack([s.pred_instances.scores for s in
                                  ours.predict(inputs, samples)])
    dfine = type(ours).__name__ == 'DFINE'  # transformers' loss differs
    if not dfine and abs(our_loss - their_loss) > 1e-3 * abs(their_loss):
        sys.exit(f'parity check failed: loss {our_loss} vs {their_loss}')
    if (our_scores - their_scores).abs().max() > 1e-4:
        sys.exit('parity check failed: detection scores differ')
    print(f'parity check passed: loss {our_loss:.4f} (transformers '
          f'{their_loss:.4f}{", not compared" if dfine else ""}), same '
          f'detection scores')


def bench_inference(theirs, ours, repeats):
    inputs, samples = make_batch([(SIZE, SIZE)], [0])
    theirs.eval(), ours.eval()

    def ours_step():
        with torch.no_grad():
            ours.predict(inputs, copy.deepcopy(samples))

    def theirs_step():
        with torch.no_grad():
            hf_detect(theirs, inputs)
    return interleaved_medians(dict(transformers=theirs_step,
                                    plugin=ours_step), repeats, 1, 'cpu')


def bench_train_step(theirs, ours, repeats, amp=False):
    """With ``amp``: ours under the autocast ``tools/train.py --amp`` uses
    on this CPU (bf16 where native), theirs in float32."""
    inputs, samples = make_batch([(SIZE, SIZE)] * 2, [7, 3])
    labels = hf_labels(samples)
    dtype = getattr(torch, amp_dtype('cpu').split()[0])
    runs = {}
    for name, model in (('transformers', theirs), ('plugin', ours)):
        model = copy.deepcopy(model).train()
        optim = torch.optim.AdamW(model.parameters(), lr=1e-6)

        def step(model=model, optim=optim, name=name):
            with torch.autocast('cpu', dtype=dtype, enabled=amp and
                                name == 'plugin' and dtype != torch.float32):
                loss = model(pixel_values=inputs, labels=labels).loss \
                    if name == 'transformers' else \
                    total_loss(model.loss(inputs, samples))
            optim.zero_grad()
            loss.backward()
            optim.step()
        runs[name] = step
    return interleaved_medians(runs, repeats, 1, 'cpu')


def bench_amp_train_step(theirs, ours, repeats):
    return bench_train_step(theirs, ours, repeats, amp=True)


def bench_head_loss(theirs, ours, repeats):
    """The loss of stored decoder outputs (their graphs cut): the matching,
    the denoising and proposal terms of every layer, and its backward. Ours
    starts from the decoder's hidden states (its per-layer classifiers and
    box MLPs are in the time), theirs from the logits and boxes."""
    from transformers.loss.loss_d_fine import DFineForObjectDetectionLoss
    from transformers.loss.loss_rt_detr import RTDetrForObjectDetectionLoss
    inputs, samples = make_batch([(SIZE, SIZE)] * 2, [7, 3])
    labels = hf_labels(samples)
    theirs.train(), ours.train()
    with torch.no_grad():
        torch.manual_seed(0)
        out = theirs.model(pixel_values=inputs, labels=labels)
        torch.manual_seed(0)
        head_inputs = ours.forward_transformer(ours.extract_feat(inputs),
                                               samples)
    logits, boxes, enc_logits, enc_boxes = (
        t.detach().requires_grad_() for t in (
            out.intermediate_logits, out.intermediate_reference_points,
            out.enc_topk_logits, out.enc_topk_bboxes))
    leaf = {k: v.detach().requires_grad_() if torch.is_tensor(v) and
            v.is_floating_point() else v for k, v in head_inputs.items()}
    if 'references' in head_inputs:
        leaf['references'] = [r.detach() for r in head_inputs['references']]
    dfine = {}
    if hasattr(out, 'intermediate_predicted_corners'):  # D-FINE
        dfine = dict(predicted_corners=out.intermediate_predicted_corners.
                     detach().requires_grad_(),
                     initial_reference_points=out.initial_reference_points)
    loss_function = DFineForObjectDetectionLoss if dfine else \
        RTDetrForObjectDetectionLoss

    def theirs_step():
        loss = loss_function(
            logits=logits[:, -1], labels=labels, device=inputs.device,
            pred_boxes=boxes[:, -1], config=theirs.config,
            outputs_class=logits, outputs_coord=boxes,
            enc_topk_logits=enc_logits, enc_topk_bboxes=enc_boxes,
            denoising_meta_values=out.denoising_meta_values, **dfine)[0]
        loss.backward()

    def ours_step():
        total_loss(ours.bbox_head.loss(
            batch_data_samples=samples, **leaf)).backward()
    return interleaved_medians(dict(transformers=theirs_step,
                                    plugin=ours_step), repeats, 1, 'cpu')


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='rtdetrv2_r18vd',
                        choices=sorted(CONFIGS))
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--only', nargs='+', choices=ITEMS)
    parser.add_argument('--json', help='write the results to this file')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error('--repeats takes 1 or more')
    from detr_plugin.checkpoint import dfine_hf_to_plugin, rtdetr_hf_to_plugin
    torch.manual_seed(0)
    theirs = hf_model(args.model)
    cfg = load_config(osp.join(REPO_CONFIG_DIR, CONFIGS[args.model]))
    ours = build_plugin_model(cfg)
    convert = dfine_hf_to_plugin if args.model.startswith('dfine') else \
        rtdetr_hf_to_plugin
    ours.load_state_dict(convert(theirs.state_dict()))
    check_parity(theirs, ours)
    results = dict(model=args.model, threads=torch.get_num_threads(),
                   torch=torch.__version__, amp_dtype=amp_dtype('cpu'))
    for item in args.only or ITEMS:
        medians = globals()[f'bench_{item}'](theirs, ours, args.repeats)
        speedup = medians['transformers'] / medians['plugin']
        results[item] = dict(seconds=medians, speedup=round(speedup, 3))
        print(f'{item:>12}: transformers {medians["transformers"]:.4f} s, '
              f'plugin {medians["plugin"]:.4f} s, speedup {speedup:.2f}x',
              flush=True)
    if args.json:
        with open(args.json, 'w') as file:
            json.dump(results, file, indent=2)
    return results


if __name__ == '__main__':
    main()
