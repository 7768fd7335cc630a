"""tools/vis_attention.py and detr_plugin.apis.attention_maps: the decoder's
cross-attention of the top queries and the encoder's self-attention at
reference points, read through the attention modules' keep_weights opt-in."""
import math
import os.path as osp
import re

import pytest
import torch
from helpers.detector import IMAGE_SHAPES, write_tiny_detector
from helpers.tools import load_tool

from detr_plugin.apis import DETRInferencer, attention_maps

vis_attention = load_tool('vis_attention')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    config, checkpoint, images = write_tiny_detector(
        tmp_path_factory.mktemp('tiny_detector'))
    return DETRInferencer(config, checkpoint), osp.join(images, 'a.jpg'), \
        (config, checkpoint)


def test_maps_have_feature_map_shape_and_are_distributions(setup):
    inferencer, image, _ = setup
    maps = attention_maps(inferencer, image, topk=3, num_points=2)
    # a.jpg is 90 x 120 -> resized to 120 x 160 -> stride 32 -> 4 x 5 cells
    h, w = math.ceil(120 / 32), math.ceil(160 / 32)
    assert maps.image.shape == IMAGE_SHAPES['a.jpg'] + (3, )
    assert maps.decoder_maps.shape == (3, h, w)
    assert maps.encoder_maps.shape == (2, h, w)
    assert maps.bboxes.shape == (3, 4) and maps.points.shape == (2, 2)
    assert torch.allclose(maps.decoder_maps.sum((1, 2)), torch.ones(3))
    assert torch.allclose(maps.encoder_maps.sum((1, 2)), torch.ones(2))
    assert len(set(maps.queries.tolist())) == 3
    # default reference points: the centres of the best boxes
    centres = (maps.bboxes[:2, :2] + maps.bboxes[:2, 2:]) / 2
    assert torch.allclose(maps.points, centres)


def test_detections_and_query_indices_agree_with_plain_inference(setup):
    inferencer, image, _ = setup
    maps = attention_maps(inferencer, image, topk=4)
    # the fused attention path
    plain = inferencer.predict(image).pred_instances
    assert torch.allclose(maps.scores, plain.scores[:4], atol=1e-6)
    assert torch.allclose(maps.bboxes, plain.bboxes[:4], atol=1e-4)
    # each detection's score is its query's best class probability
    model = inferencer.model
    data = inferencer.pipeline(image)
    data = model.data_preprocessor(dict(inputs=[data['inputs']],
                                        data_samples=[data['data_samples']]))
    with torch.no_grad():
        hidden = model.forward_transformer(
            model.extract_feat(data['inputs']),
            data['data_samples'])['hidden_states']
        logits, _ = model.bbox_head(hidden[-1:])
    best = logits[-1, 0].softmax(-1)[:, :-1].max(-1).values
    assert torch.allclose(best[maps.queries], maps.scores, atol=1e-6)
    # the opt-in is switched back off and nothing is kept
    for module in (model.decoder.layers[-1].attentions[1],
                   model.encoder.layers[-1].attentions[0]):
        assert module.keep_weights is False and module.attn_weights is None


def test_explicit_points_map_to_their_cells(setup):
    inferencer, image, _ = setup
    h, w = IMAGE_SHAPES['a.jpg']
    maps = attention_maps(inferencer, image, topk=1,
                          points=[(0, 0), (w - 1, h - 1), (w / 2, h / 2)])
    assert maps.cells.tolist() == [[0, 0], [3, 4], [2, 2]]
    assert maps.encoder_maps.shape == (3, 4, 5)
    # different query cells attend differently
    assert not torch.allclose(maps.encoder_maps[0], maps.encoder_maps[1])


def test_tool_writes_a_png(setup, tmp_path):
    _, image, (config, checkpoint) = setup
    out = tmp_path / 'figs' / 'attention.png'
    maps = vis_attention.main([config, checkpoint, image, '--out', str(out),
                               '--topk', '3', '--points', '10,10', '60,45'])
    assert len(maps.bboxes) == 3 and len(maps.points) == 2
    data = out.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 10_000
    import matplotlib.image
    pixels = matplotlib.image.imread(str(out))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_a_model_without_kept_weights_is_refused_clearly():
    from detr_plugin.apis.attention_maps import kept_weights
    from detr_plugin.models import ConditionalAttention
    with pytest.raises(ValueError, match='ConditionalAttention'):
        with kept_weights(ConditionalAttention(32, 4)):
            pass


def test_the_tool_names_its_input_mistakes_in_one_line(setup, tmp_path,
                                                       capsys):
    """A missing image, a folder, a corrupt file, points outside the image
    (clamped silently before), a model without DETR's attention (a
    TypeError's traceback before): one error line each (issue 31)."""
    from mmdet_reference import REPO_CONFIG_DIR, build_plugin_model
    _, image, (config, checkpoint) = setup
    corrupt = tmp_path / 'corrupt.jpg'
    corrupt.write_bytes(b'\xff\xd8 not really')
    conditional = osp.join(REPO_CONFIG_DIR, 'demo',
                           'conditional-detr_r18_shapes.py')
    conditional_weights = str(tmp_path / 'conditional.pth')
    torch.save(dict(state_dict=build_plugin_model(conditional).state_dict()),
               conditional_weights)
    for args, message in (
            ([config, checkpoint, str(tmp_path / 'none.jpg')],
             'no such file'),
            ([config, checkpoint, str(tmp_path)], 'is a folder'),
            ([config, checkpoint, str(corrupt)],
             rf'^error: IMAGE {corrupt} cannot be read as an image'),
            ([config, checkpoint, image, '--points', '10,10', '500,20'],
             r'^error: --points \[\(500\.0, 20\.0\)\] lie outside the 120 x '
             r'90 \(w x h\) image'),
            ([conditional, conditional_weights, image],
             r'^error: .*conditional-detr_r18_shapes\.py: attention maps '
             r'need attentions that keep their weights')):
        with pytest.raises(SystemExit) as stop:
            vis_attention.main(args + ['--out', str(tmp_path / 'x.png')])
        said = str(stop.value.code) + capsys.readouterr().err  # argparse's
        assert re.search(message, said.strip().splitlines()[-1]), said
