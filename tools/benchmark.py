"""Time this package's DETR against mmdet 3.3.0's DETR, side by side.

Both R50 models (``--model``: DETR by default, or a successor) are built
from their configs with identical weights; before
any timing the script checks that they compute the same losses and
detections. Each measurement alternates the two implementations (A B A B ...)
on the same inputs after a warm-up and reports medians; a speedup is mmdet's
median time over ours, a memory ratio ours over mmdet's.

    python tools/benchmark.py [--model detr|conditional_detr|dab_detr]
        [--json out.json] [--device cpu|cuda] [--scaling] [--only ITEM ...]
        [--repeats N]

ITEMs: head_loss transformer_train inference train_step amp_train_step
(all by default) and scaling (the growth tables; also added by --scaling);
for the multi-level models also sampling: deformable attention's bilinear
sampling of the encoder at 512 x 640 (mmcv's PyTorch path against ours, with
gradients and without; checked equal first).
"""
import argparse
import contextlib
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

import torch

from mmcv.ops.multi_scale_deform_attn import \
    multi_scale_deformable_attn_pytorch

from detr_plugin.engine import cpu_autocast
from mmdet_reference import (REPO_CONFIG_DIR, R50_CONFIGS,
                             build_r50_pair, layer_references,
                             load_config,
                             same_proposal_ranking,
                             train_without_dropout)
from detr_plugin.models.deformable_attention import (sample_levels_cpu,
                                                     sample_levels_grid)
from detr_plugin.models.folded_backbone import no_tf32
from mmdet_reference import make_batch

TRAIN_SHAPES = [(512, 640), (480, 640)]  # train_step: batch 2
TEST_SHAPE = (800, 1333)  # inference: the COCO test size
AMP_LOSS_TOLERANCE = 0.005  # autocast vs fp32 first-step losses, relative


def synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def interleaved_medians(fns: Dict[str, Callable[[], None]], repeats: int,
                        warmup: int, device: str) -> Dict[str, float]:
    """Median seconds of each function, run alternately after a warm-up."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def total_loss(losses: dict) -> torch.Tensor:
    return sum(v for k, v in losses.items() if 'loss' in k)


def to_device(batch, device):
    inputs, samples = batch
    return inputs.to(device), [s.to(device) for s in samples]


# --------------------------------------------------------------- parity gate
def check_parity(theirs, ours, device: str) -> None:
    """Refuse to time models that compute different things (in float32:
    TF32 off on a GPU, whose rounding exceeds the tolerances)."""
    with no_tf32():
        _check_parity(theirs, ours, device)


def _check_parity(theirs, ours, device: str) -> None:
    inputs, samples = to_device(
        make_batch(TRAIN_SHAPES, [7, 3], seed=11), device)
    # training mode without dropout (two-stage and denoising losses exist
    # only in training), the same denoising noise (seeded), the same
    # proposal order
    train_without_dropout(theirs), train_without_dropout(ours)
    with torch.no_grad(), same_proposal_ranking(theirs, ours):
        torch.manual_seed(0)
        their_losses = theirs.loss(inputs, samples)
        torch.manual_seed(0)
        our_losses = ours.loss(inputs, samples)
    theirs.eval(), ours.eval()
    with torch.no_grad(), same_proposal_ranking(theirs, ours):
        their_pred = theirs.predict(inputs, copy.deepcopy(samples))
        our_pred = ours.predict(inputs, copy.deepcopy(samples))
    for key, value in their_losses.items():
        if abs(float(our_losses[key]) - float(value)) > \
                1e-3 * max(abs(float(value)), 1e-6):
            sys.exit(f'parity check failed: {key} {float(our_losses[key])} '
                     f'vs mmdet {float(value)}')
    for t, o in zip(their_pred, our_pred):
        if (t.pred_instances.scores -
                o.pred_instances.scores).abs().max() > 1e-4:
            sys.exit('parity check failed: detection scores differ')
    theirs.train(), ours.train()
    print('parity check passed: same losses and detection scores')


# ------------------------------------------------------------- measurements
def head_loss_inputs(variant: str, batch: int, num_queries: int,
                     num_gts: int, samples, gen: torch.Generator) -> dict:
    """Keyword inputs of a head's ``loss`` (mmdet's and ours take the same
    names): random decoder outputs of 6 layers and what the variant's head
    also takes -- reference points (Conditional: ``(B, Q, 2)``; DAB:
    anchors per layer; Deformable/DINO: a box per layer), DINO's 900
    matching queries plus denoising groups of 20 boxes (as many as fit in
    100 positives) and its proposals' scores and boxes."""
    def rand(*shape):
        return torch.rand(*shape, generator=gen) * 0.8 + 0.1
    num_dn = 0
    extra = {}
    if variant == 'dino':
        groups = max(100 // num_gts, 1)
        num_dn = 2 * groups * num_gts
        extra = dict(enc_outputs_class=torch.randn(batch, num_queries, 80,
                                                   generator=gen),
                     enc_outputs_coord=rand(batch, num_queries, 4),
                     dn_meta=dict(num_denoising_queries=num_dn,
                                  num_denoising_groups=groups))
    total = num_dn + num_queries
    hidden = torch.randn(6, batch, total, 256, generator=gen)
    if variant == 'conditional_detr':
        extra['references'] = rand(batch, total, 2)
    elif variant == 'dab_detr':
        extra['references'] = rand(6, batch, total, 4)
    elif variant.startswith(('deformable_detr', 'dino')):
        extra['references'] = [rand(batch, total, 4) for _ in range(6)]
    if variant.startswith('deformable_detr') and 'twostage' in variant:
        extra.update(enc_outputs_class=torch.randn(batch, 5000, 80,
                                                   generator=gen),
                     enc_outputs_coord=rand(batch, 5000, 4))
    elif variant.startswith('deformable_detr'):
        extra.update(enc_outputs_class=None, enc_outputs_coord=None)
    return dict(hidden_states=hidden, batch_data_samples=samples, **extra)


def bench_head_loss(theirs, ours, device, repeats, num_gts=20, batch=8,
                    num_queries=None):
    """Decoder outputs -> total loss (matching included) -> backward, with
    the model's number of queries unless given."""
    num_queries = num_queries or ours.num_queries
    _, samples = to_device(
        make_batch([(800, 1066)] * batch, [num_gts] * batch, seed=3), device)
    inputs = head_loss_inputs(VARIANT, batch, num_queries, num_gts, samples,
                              torch.Generator().manual_seed(0))
    inputs = {k: to_device_tree(v, device) for k, v in inputs.items()}

    # our heads take the references as a list per layer
    our_inputs = dict(inputs) if 'references' not in inputs else dict(
        inputs, references=layer_references(inputs['references'], 6))

    def run(head, inputs):
        def step():
            hidden = inputs['hidden_states'].detach().requires_grad_()
            total_loss(head.loss(**dict(inputs, hidden_states=hidden))
                       ).backward()
        return step

    return interleaved_medians(
        {'mmdet': run(theirs.bbox_head, inputs),
         'plugin': run(ours.bbox_head, our_inputs)}, repeats, 1, device)


def to_device_tree(value, device):
    """Tensors (also in lists) to ``device``; anything else as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list) and value and \
            isinstance(value[0], torch.Tensor):
        return [v.to(device) for v in value]
    return value


def transformer_inputs(batch: int, tokens_hw, device):
    gen = torch.Generator().manual_seed(1)
    feat = torch.randn(batch, 2048, *tokens_hw, generator=gen).to(device)
    stride = 32
    shape = (tokens_hw[0] * stride, tokens_hw[1] * stride)
    _, samples = to_device(make_batch([shape] * batch, [0] * batch), device)
    return feat, samples


def mmdet_transformer(model, feat, samples):
    return model.forward_transformer(model.neck((feat, )),
                                     samples)['hidden_states']


def plugin_transformer(model, feat, samples):
    return model.forward_transformer((feat, ), samples)['hidden_states']


def bench_transformer_train(theirs, ours, device, repeats):
    """Input projection + encoder + decoder, forward and backward, train."""
    feat, samples = transformer_inputs(2, (25, 42), device)  # 1050 tokens

    def step(fn):
        return lambda: fn(feat, samples).sum().backward()

    return interleaved_medians(
        {'mmdet': step(lambda f, s: mmdet_transformer(theirs, f, s)),
         'plugin': step(lambda f, s: plugin_transformer(ours, f, s))},
        repeats, 1, device)


def bench_inference(theirs, ours, device, repeats, shape=TEST_SHAPE):
    inputs, samples = to_device(make_batch([shape] * 2, [0, 0]), device)
    theirs.eval(), ours.eval()

    def run(model):
        def step():
            with torch.no_grad():
                model.predict(inputs, copy.deepcopy(samples))
        return step

    result = interleaved_medians({'mmdet': run(theirs), 'plugin': run(ours)},
                                 repeats, 1, device)
    theirs.train(), ours.train()
    return result


def bench_train_step(theirs, ours, device, repeats, amp=False):
    """Forward, backward and an AdamW step on a batch of two images; with
    ``amp`` ours as ``tools/train.py --amp`` trains: fp16 autocast with a
    loss scaler on a GPU, bf16 autocast on a CPU."""
    inputs, samples = to_device(make_batch(TRAIN_SHAPES, [7, 3]), device)
    runs = {}
    for name, model in (('mmdet', theirs), ('plugin', ours)):
        model = copy.deepcopy(model).train()
        optim = torch.optim.AdamW(model.parameters(), lr=1e-6)
        use_amp = amp and name == 'plugin'
        dtype = getattr(torch, amp_dtype(device).split()[0])
        scaler = torch.amp.GradScaler(
            device, enabled=use_amp and dtype == torch.float16)

        def step(model=model, optim=optim, use_amp=use_amp, scaler=scaler):
            autocast = torch.autocast(device, dtype=dtype) \
                if use_amp else contextlib.nullcontext()
            with autocast:
                loss = total_loss(model.loss(inputs, samples))
            optim.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()
        runs[name] = step
    return interleaved_medians(runs, repeats, 1, device)


def amp_dtype(device: str) -> str:
    """What ``amp_train_step`` runs in, as ``tools/train.py --amp``: fp16
    (loss-scaled) on a GPU, bf16 on a CPU with native bf16, else fp32."""
    if device == 'cuda':
        return 'float16'
    if cpu_autocast.native_bf16():
        return 'bfloat16'
    return 'float32 (no native bf16 on this CPU: --amp trains in fp32)'


@contextlib.contextmanager
def replayed_choices(model):
    """Record the model's discrete choices -- the two-stage proposal ranking
    and the Hungarian matches -- until the yielded function is called, then
    make it take the recorded ones again, in order. An untrained model's
    proposals and queries are near-tied by the hundred (DINO: 900), so
    rounding alone picks others, and a loss gap would measure that
    tie-breaking instead of the precision's error."""
    recorded, replaying = dict(assign=[], proposal_score=[]), []
    assigner = model.bbox_head.assigner

    def choice(name, compute):
        def choose(*args):
            if replaying:
                return recorded[name].pop(0)
            recorded[name].append(compute(*args))
            return recorded[name][-1]
        return choose

    assigner.assign = choice('assign', type(assigner).assign.__get__(
        assigner))
    if getattr(model, 'as_two_stage', False):
        model.proposal_score = choice('proposal_score',
                                      type(model).proposal_score)
    try:
        yield lambda: replaying.append(True)
    finally:
        del assigner.assign
        vars(model).pop('proposal_score', None)


def first_step_loss_gap(ours, device, dtype=torch.bfloat16) -> float:
    """Largest relative difference of the losses of one batch, autocast in
    ``dtype`` vs fp32 (TF32 off), with the same discrete choices
    (:func:`replayed_choices`), in eval mode (dropout would make them differ
    at random) and with the same seed before each (DINO's denoising
    noise)."""
    inputs, samples = to_device(make_batch(TRAIN_SHAPES, [7, 3]), device)
    return autocast_loss_gap(copy.deepcopy(ours).eval(), inputs, samples,
                             device, dtype)


def autocast_loss_gap(model, inputs, samples, device: str,
                      dtype=torch.bfloat16) -> float:
    """:func:`first_step_loss_gap` of ``model`` (eval mode) on a batch."""
    return max(gap for _, _, gap in autocast_loss_gaps(
        model, inputs, samples, device, dtype).values())


def autocast_loss_gaps(model, inputs, samples, device: str,
                       dtype=torch.bfloat16) -> Dict[str, tuple]:
    """``{term: (fp32 value, autocast value, relative gap)}`` of every loss
    term of ``model`` (eval mode) on a batch, at the same choices."""
    with torch.no_grad(), replayed_choices(model) as replay, no_tf32():
        torch.manual_seed(0)
        fp32 = model.loss(inputs, samples)
        replay()
        torch.manual_seed(0)
        with torch.autocast(device, dtype=dtype):
            mixed = model.loss(inputs, samples)
    return {k: (float(v), float(mixed[k]),
                abs(float(mixed[k]) - float(v)) / max(abs(float(v)), 1e-6))
            for k, v in fp32.items() if 'loss' in k}


# ------------------------------------------------------------------ memory
def transformer_peak_memory(impl: str, tokens_hw, device: str) -> int:
    """Peak extra bytes of one inference pass of the transformer part.

    On CUDA from the allocator's statistics; on CPU from the process's peak
    resident memory (VmHWM, reset through /proc/self/clear_refs) in a fresh
    subprocess whose allocator returns large blocks to the system at once.
    """
    if device == 'cpu':
        out = subprocess.run(
            [sys.executable, __file__, '--memory-probe', impl,
             '--tokens', f'{tokens_hw[0]}x{tokens_hw[1]}', '--model',
             VARIANT],
            check=True, capture_output=True, text=True,
            # a fixed mmap threshold makes glibc return every large tensor's
            # memory at once, so the resident peak tracks live tensors
            env=dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536'))
        return int(out.stdout.strip().splitlines()[-1])
    theirs, ours = MODELS
    feat, samples = transformer_inputs(2, tokens_hw, device)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    with torch.no_grad():
        if impl == 'mmdet':
            mmdet_transformer(theirs.eval(), feat, samples)
        else:
            plugin_transformer(ours.eval(), feat, samples)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def bench_sampling(device: str, repeats: int, train: bool,
                   shape=TRAIN_SHAPES[0]) -> Dict[str, float]:
    """Deformable DETR's encoder sampling (batch 2, 8 heads x 32 channels,
    strides 8-64, 4 points): mmcv's ``multi_scale_deformable_attn_pytorch``
    against ours, forward + backward (``train``) or forward without
    gradients, after checking that both give the same output."""
    shapes = torch.tensor([(-(-shape[0] // s), -(-shape[1] // s))
                           for s in (8, 16, 32, 64)], device=device)
    level_shapes = shapes.tolist()
    tokens = int(shapes.prod(1).sum())
    gen = torch.Generator(device).manual_seed(0)
    value = torch.randn(2, tokens, 8, 32, generator=gen, device=device)
    locations = torch.rand(2, tokens, 8, 4, 4, 2, generator=gen,
                           device=device)
    weights = torch.rand(2, tokens, 8, 4, 4, generator=gen,
                         device=device).softmax(-1)
    sample = sample_levels_grid if train else sample_levels_cpu
    ours = (lambda v, s, loc, w: sample(v, level_shapes, loc, w))
    impls = dict(mmdet=multi_scale_deformable_attn_pytorch, plugin=ours)
    with torch.no_grad():
        gap = (impls['mmdet'](value, shapes, locations, weights) -
               ours(value, shapes, locations, weights)).abs().max()
    if gap > 1e-4:
        sys.exit(f'sampling differs from mmcv\'s by {gap:.2e}: not timed')

    def run(fn):
        def step():
            if not train:
                with torch.no_grad():
                    return fn(value, shapes, locations, weights)
            inputs = [t.clone().requires_grad_()
                      for t in (value, locations, weights)]
            out = fn(inputs[0], shapes, inputs[1], inputs[2])
            out.backward(torch.ones_like(out))
        return step
    return interleaved_medians({k: run(f) for k, f in impls.items()},
                               repeats, 1, device)


def _vm_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def memory_probe(impl: str, tokens: str) -> None:
    """Subprocess entry: print the transformer's peak extra bytes."""
    torch.set_num_threads(1)
    theirs, ours = build_r50_pair(VARIANT)
    model = (theirs if impl == 'mmdet' else ours).eval()
    feat, samples = transformer_inputs(
        2, tuple(int(t) for t in tokens.split('x')), 'cpu')
    with torch.no_grad():  # warm-up, then measure a second pass
        run = (lambda: mmdet_transformer(model, feat, samples)) \
            if impl == 'mmdet' else \
            (lambda: plugin_transformer(model, feat, samples))
        run()
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak resident set size
        base = _vm_kib('VmRSS:')
        run()
        print((_vm_kib('VmHWM:') - base) * 1024)


# -------------------------------------------------------------------- main
MODELS = ()
VARIANT = 'detr'
ITEMS = ('head_loss', 'transformer_train', 'inference', 'train_step',
         'amp_train_step', 'sampling', 'scaling')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='detr', choices=sorted(R50_CONFIGS),
                        help='the DETR variant to compare with mmdet\'s')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--json', help='write the results to this file')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--scaling', action='store_true',
                        help='also print how cost grows with boxes/tokens')
    parser.add_argument('--only', nargs='+', choices=ITEMS,
                        help='run only these items')
    parser.add_argument('--memory-probe', help=argparse.SUPPRESS)
    parser.add_argument('--tokens', help=argparse.SUPPRESS)
    args = parser.parse_args()
    # before minutes of measuring
    if args.repeats < 1:
        parser.error('--repeats takes 1 or more (a median of the timings)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: this torch sees no CUDA device')
    if args.json and not os.path.isdir(os.path.dirname(
            os.path.abspath(args.json))):
        parser.error(f'--json {args.json}: its folder does not exist')
    multi_level = 'num_feature_levels' in load_config(os.path.join(
        REPO_CONFIG_DIR, R50_CONFIGS[args.model])).model
    # sampling: deformable attention's; the transformer-only items feed one
    # 2048-channel map through the neck: single-level models only
    unmeasured = {'transformer_train', 'scaling'} if multi_level else \
        {'sampling'}
    wanted = set(args.only or ITEMS[:-1]) | ({'scaling'} if args.scaling
                                             else set())
    if args.only and not wanted - unmeasured:
        parser.error(f'--only {" ".join(args.only)}: not measured for '
                     f'{args.model} (sampling: multi-level models only; '
                     'transformer_train, scaling: single-level only)')
    global MODELS, VARIANT
    VARIANT = args.model
    if args.memory_probe:
        return memory_probe(args.memory_probe, args.tokens)

    torch.manual_seed(0)
    theirs, ours = build_r50_pair(VARIANT)
    theirs, ours = theirs.to(args.device), ours.to(args.device)
    MODELS = (theirs, ours)
    check_parity(theirs, ours, args.device)
    if multi_level and wanted & unmeasured:
        print(f'not measured for {VARIANT} (multi-level): '
              f'{sorted(wanted & unmeasured)}')
    wanted -= unmeasured
    want = wanted.__contains__
    results = dict(model=VARIANT, device=args.device,
                   threads=torch.get_num_threads(),
                   torch=torch.__version__)
    if args.device == 'cuda':
        results['gpu'] = torch.cuda.get_device_name()
    rows = []

    def record(name, medians):
        speedup = medians['mmdet'] / medians['plugin']
        results[f'{name}_speedup'] = round(speedup, 3)
        results[f'{name}_seconds'] = {k: round(v, 4)
                                      for k, v in medians.items()}
        rows.append((name, medians['mmdet'], medians['plugin'], speedup))
        print(f'{name:>20}: mmdet {medians["mmdet"]:.4f} s, plugin '
              f'{medians["plugin"]:.4f} s, speedup {speedup:.2f}x',
              flush=True)

    dev, rep = args.device, args.repeats
    if want('head_loss'):
        record('head_loss', bench_head_loss(theirs, ours, dev, rep))
    if want('transformer_train'):
        record('transformer_train',
               bench_transformer_train(theirs, ours, dev, rep))
    if want('inference'):
        record('inference', bench_inference(theirs, ours, dev, rep))
    if want('inference') and not multi_level:
        mem = {impl: transformer_peak_memory(impl, (25, 42), dev)
               for impl in ('mmdet', 'plugin')}
        results['transformer_infer_memory_bytes'] = mem
        results['transformer_infer_memory_ratio'] = round(
            mem['plugin'] / mem['mmdet'], 3)
        print(f'{"transformer memory":>20}: mmdet {mem["mmdet"] / 2**20:.0f}'
              f' MiB, plugin {mem["plugin"] / 2**20:.0f} MiB, ratio '
              f'{results["transformer_infer_memory_ratio"]:.2f}')
    if want('train_step'):
        record('train_step', bench_train_step(theirs, ours, dev, rep))
    mixed = amp_dtype(dev) in ('float16', 'bfloat16')
    if want('amp_train_step'):
        results['amp_dtype'] = amp_dtype(dev)
        print(f'{"amp dtype":>20}: {results["amp_dtype"]}')
        record('amp_train_step',
               bench_train_step(theirs, ours, dev, rep, amp=mixed))
    if want('amp_train_step') and mixed:
        name = amp_dtype(dev)
        results['amp_first_step_loss_rel_gap'] = round(first_step_loss_gap(
            ours, dev, getattr(torch, name)), 5)
        print(f'{name + " loss gap":>20}: '
              f'{results["amp_first_step_loss_rel_gap"]:.2%} of fp32')
        if results['amp_first_step_loss_rel_gap'] > AMP_LOSS_TOLERANCE:
            sys.exit(f'{name} check failed: a first-step loss term differs '
                     f'from fp32 by more than {AMP_LOSS_TOLERANCE:.1%}')
    if want('sampling'):
        record('sampling_train', bench_sampling(dev, rep, train=True))
        record('sampling_infer', bench_sampling(dev, rep, train=False))
    if want('scaling'):
        results['scaling'] = scaling_tables(theirs, ours, dev, rep)
    print('\n| measurement | speedup (mmdet time / ours) |\n|---|---|')
    for name, _, _, speedup in rows:
        print(f'| {name} | {speedup:.2f}x |')
    if 'transformer_infer_memory_ratio' in results:
        print(f'| transformer_infer_memory_ratio (ours / mmdet) | '
              f'{results["transformer_infer_memory_ratio"]:.2f} |')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'wrote {args.json}')


def scaling_tables(theirs, ours, device, repeats) -> dict:
    """Head-loss time against boxes, inference/memory against tokens."""
    tables = dict(head_loss=[], inference=[])
    print('\nhead loss (batch 8) vs GT boxes per image')
    print('| boxes | queries | mmdet s | plugin s | speedup |\n'
          '|---|---|---|---|---|')
    for boxes, queries in ((1, 100), (10, 100), (50, 100), (100, 100),
                           (300, 300)):
        med = bench_head_loss(theirs, ours, device, max(2, repeats // 2),
                              num_gts=boxes, num_queries=queries)
        tables['head_loss'].append(dict(boxes=boxes, queries=queries, **med))
        print(f'| {boxes} | {queries} | {med["mmdet"]:.3f} | '
              f'{med["plugin"]:.3f} | {med["mmdet"] / med["plugin"]:.2f}x |',
              flush=True)
    print('\ninference (batch 2) and transformer memory vs tokens')
    print('| tokens | time speedup | mmdet MiB | plugin MiB | memory ratio |\n'
          '|---|---|---|---|---|')
    for tokens_hw in ((15, 20), (20, 30), (25, 42), (42, 50)):
        shape = (tokens_hw[0] * 32, tokens_hw[1] * 32)
        med = bench_inference(theirs, ours, device, max(2, repeats // 2),
                              shape=shape)
        mem = {impl: transformer_peak_memory(impl, tokens_hw, device)
               for impl in ('mmdet', 'plugin')}
        tokens = tokens_hw[0] * tokens_hw[1]
        tables['inference'].append(dict(tokens=tokens, seconds=med,
                                        memory_bytes=mem))
        print(f'| {tokens} | {med["mmdet"] / med["plugin"]:.2f}x | '
              f'{mem["mmdet"] / 2**20:.0f} | {mem["plugin"] / 2**20:.0f} | '
              f'{mem["plugin"] / mem["mmdet"]:.2f} |', flush=True)
    return tables


if __name__ == '__main__':
    if 'OMP_NUM_THREADS' not in os.environ:
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 16)))
    main()
