"""Helpers of the tests, one way to do each thing.

* :mod:`.configs`: the repository's paths, the one tiny DETR config
  (``tests/configs/detr_tiny_shapes.py``) for a model or a training run, and
  the overrides that point a config at a COCO-format folder;
* :mod:`.data`: the synthetic shapes set, broken copies of it, COCO
  detections from dumped predictions;
* :mod:`.tools`: ``tools/*`` run in subprocesses or loaded as modules;
* :mod:`.detector`: a tiny detector (config, checkpoint, images) on disk;
* :mod:`.save_stalls`: fault injection (checkpoint saves that stall), imported
  only by the training subprocesses that need it, never by a test module.

The fixtures (the shapes set of a test module, the balloon set) are in
``tests/conftest.py``.
"""
