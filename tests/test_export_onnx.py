"""tools/export_onnx.py: DETR with a dynamic image size, the padding mask and
post-processing in one ONNX graph that onnxruntime runs like PyTorch."""
import os.path as osp

import pytest
import torch
from helpers.configs import tiny_config
from helpers.detector import write_tiny_detector
from helpers.tools import load_tool
from helpers.weights import perturb

from detr_plugin.deploy import DETRExportWrapper
from mmdet_reference import build_plugin_model
from mmdet_reference import make_batch

onnx = pytest.importorskip('onnx')
onnxruntime = pytest.importorskip('onnxruntime')
tool = load_tool('export_onnx')


def write_checkpoint(config: str, tmp_path) -> str:
    """``tmp_path/model.pth``: the config's model as built (random)."""
    checkpoint = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=build_plugin_model(config).state_dict()),
               checkpoint)
    return checkpoint


def test_wrapper_computes_what_predict_computes_on_a_padded_batch():
    torch.manual_seed(0)
    model = build_plugin_model(tiny_config(num_classes=3)).eval()
    shapes = [(96, 160), (160, 128)]
    inputs, samples = make_batch(shapes, [0, 0], num_classes=3)
    mask = torch.ones(2, 160, 160, dtype=torch.bool)
    for i, (h, w) in enumerate(shapes):
        mask[i, :h, :w] = False
    with torch.no_grad():
        expected = model.predict(inputs, samples, rescale=False)
        boxes, scores, labels = DETRExportWrapper(model)(inputs, mask)
    assert boxes.shape == (2, 10, 4) and labels.dtype == torch.long
    for i, sample in enumerate(expected):
        pred = sample.pred_instances
        assert torch.allclose(boxes[i], pred.bboxes, atol=1e-4)
        assert torch.allclose(scores[i], pred.scores, atol=1e-6)
        assert torch.equal(labels[i], pred.labels)


def test_export_runs_in_onnxruntime_like_pytorch(tmp_path):
    # with dropout in the config: both sides must run in eval mode
    config, checkpoint, _ = write_tiny_detector(tmp_path, dropout=0.5)
    out = str(tmp_path / 'onnx' / 'detr.onnx')
    report = tool.main([config, checkpoint, out, '--shape', '96', '128',
                        '--check-shapes', '160', '224', '224', '192'])
    # traced at 96 x 128, run at two other sizes alone and padded together
    assert set(report) == {'160x224', '224x192', '160x224+224x192 padded'}
    for case, diff in report.items():
        assert diff['boxes'] <= 1e-4, (case, diff)  # pixels
        assert diff['scores'] <= 1e-4, (case, diff)
        assert diff['label_mismatches'] == 0, (case, diff)

    graph = onnx.load(out).graph
    dims = {i.name: [d.dim_param or d.dim_value
                     for d in i.type.tensor_type.shape.dim]
            for i in list(graph.input) + list(graph.output)}
    assert dims['image'] == ['batch', 3, 'height', 'width']
    assert dims['mask'] == ['batch', 'height', 'width']
    assert dims['boxes'][0] == 'batch' and dims['boxes'][-1] == 4
    session = onnxruntime.InferenceSession(
        out, providers=['CPUExecutionProvider'])
    boxes, scores, labels = session.run(None, dict(
        image=torch.randn(3, 3, 64, 96).numpy(),
        mask=torch.zeros(3, 64, 96, dtype=torch.bool).numpy()))
    assert boxes.shape == (3, 10, 4) and scores.shape == labels.shape == \
        (3, 10)
    assert (boxes[..., 0::2] <= 96).all() and (boxes[..., 1::2] <= 64).all()


@pytest.mark.parametrize('config', ['demo/conditional-detr_r18_shapes.py',
                                    'demo/dino_r18_shapes.py',
                                    'demo/dfine_r18vd_shapes.py'])
def test_successors_export_and_say_what_size_they_take(tmp_path, config,
                                                       capsys):
    """Conditional DETR exports with a dynamic size; DINO and D-FINE
    (multi-level, the level shapes traced as constants) for the traced size
    only, which the tool says -- and padded inputs of that size run like
    PyTorch."""
    from helpers.configs import CONFIG_DIR
    torch.manual_seed(0)
    model = build_plugin_model(osp.join(CONFIG_DIR, config)).eval()
    checkpoint = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(
                        classes=('circle', 'square', 'triangle')))),
               checkpoint)
    out = str(tmp_path / 'model.onnx')
    report = tool.main([osp.join(CONFIG_DIR, config), checkpoint, out,
                        '--shape', '64', '64', '--check-shapes', '64', '64',
                        '48', '64'])
    printed = capsys.readouterr().out
    fixed = not config.startswith('demo/conditional')  # multi-level
    assert ('padded to exactly 64x64' in printed) == fixed
    assert set(report) == ({'64x64 padded to 64x64', '48x64 padded to 64x64',
                            '64x64+48x64 padded to 64x64'} if fixed else
                           {'64x64', '48x64', '64x64+48x64 padded'})
    for case, diff in report.items():
        assert diff['boxes'] <= 1e-4 and diff['scores'] <= 1e-4, case
        assert diff['label_mismatches'] == 0, case


def test_check_shapes_fit_a_fixed_size_graph(tmp_path, capsys):
    """DINO's graph takes the traced size only: check shapes larger than
    it failed after the file was written (PyTorch's size error), and so did
    the defaults (800 x 1216 ...) with a smaller --shape. Larger ones are
    refused before the export; the defaults follow --shape."""
    from helpers.configs import CONFIG_DIR
    config = osp.join(CONFIG_DIR, 'demo', 'dino_r18_shapes.py')
    checkpoint = write_checkpoint(config, tmp_path)
    out = tmp_path / 'model.onnx'
    with pytest.raises(SystemExit, match=(
            r'--check-shapes 96 96 48 64 do not fit in --shape 64 64: the '
            r'DINO graph takes images padded to exactly that size')):
        tool.main([config, checkpoint, str(out), '--shape', '64', '64',
                   '--check-shapes', '96', '96', '48', '64'])
    assert not out.exists()
    report = tool.main([config, checkpoint, str(out), '--shape', '64', '64'])
    assert set(report) == {'64x64 padded to 64x64', '49x42 padded to 64x64',
                           '64x64+49x42 padded to 64x64'}
    for value in (['--shape', '0', '64'], ['--check-shapes', '8', '8', '-1',
                                           '8']):
        with pytest.raises(SystemExit):  # argparse: exit status 2
            tool.parse_args([config, checkpoint, str(out), *value])
    assert 'take sizes of 1 pixel or more' in capsys.readouterr().err


def test_two_stage_deformable_exports_and_panoptic_is_refused(tmp_path):
    """Two-stage Deformable DETR has no query embedding (its queries are
    proposals): it read one and failed with an AttributeError. A panoptic
    model is refused, naming what the export does not cover."""
    from helpers.configs import CONFIG_DIR, tiny_panoptic_config
    config = osp.join(CONFIG_DIR, 'deformable_detr',
                      'deformable-detr-refine-twostage_r50_16xb2-50e_coco.py')
    torch.manual_seed(0)
    checkpoint = write_checkpoint(config, tmp_path)
    # 340 positions at 128 x 128 (strides 8-64) for its 300 proposals
    report = tool.main([config, checkpoint, str(tmp_path / 'model.onnx'),
                        '--shape', '128', '128', '--check-shapes', '128',
                        '128', '96', '128'])
    assert len(report) == 3
    for case, diff in report.items():
        assert diff['boxes'] <= 1e-4 and diff['scores'] <= 1e-4, case
        assert diff['label_mismatches'] == 0, case
    with pytest.raises(ValueError, match='DETRPanoptic predicts masks .* '
                       'export a detector config'):
        DETRExportWrapper(build_plugin_model(tiny_panoptic_config()))


def test_the_tool_refuses_a_panoptic_config_in_one_line(tmp_path):
    """The wrapper's refusal was the end of a traceback; now it is the
    tool's last line, before anything is written."""
    from helpers.configs import CONFIG_DIR
    config = osp.join(CONFIG_DIR, 'demo', 'detr_r18_shapes-panoptic.py')
    checkpoint = write_checkpoint(config, tmp_path)
    out = tmp_path / 'model.onnx'
    with pytest.raises(SystemExit, match=(
            rf'^error: {config}: DETRPanoptic predicts masks and panoptic '
            'maps, which the ONNX export does not cover')):
        tool.main([config, checkpoint, str(out), '--shape', '64', '64'])
    assert not out.exists()


def test_rtdetr_exports_with_discrete_sampling_and_fused_repvgg(tmp_path):
    """RT-DETRv2 with the official ``discrete`` sampling: a graph without
    ``GridSample`` (one gather per point), its RepVGG blocks fused, that
    onnxruntime runs like PyTorch on a batch of two."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', 'configs',
                                   'demo', 'rtdetrv2_r18vd_shapes.py'))
    cfg.model.decoder.layer_cfg.attn_cfgs[1].sampling = 'discrete'
    config = str(tmp_path / 'rtdetr.py')
    cfg.dump(config)
    out = str(tmp_path / 'rtdetr.onnx')
    # weights redrawn: at the initial ones many sampling locations fall
    # exactly on a cell boundary, where float rounding (onnxruntime's or
    # torch's) decides the cell
    checkpoint = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=perturb(build_plugin_model(config))
                    .state_dict()), checkpoint)
    report = tool.main([config, checkpoint, out,
                        '--shape', '64', '64', '--check-shapes', '64', '64',
                        '64', '64', '--latency', '2'])
    ops = {node.op_type for node in onnx.load(out).graph.node}
    assert 'GridSample' not in ops and 'GatherElements' in ops
    # --latency: medians of both runtimes (timed by the tool, not asserted)
    assert set(report.pop('latency_seconds')) == {'onnxruntime', 'pytorch'}
    assert len(report) == 2  # one image, and a batch of two
    for diff in report.values():
        assert diff['boxes'] <= 1e-3 and diff['scores'] <= 1e-4
        assert diff['label_mismatches'] == 0
