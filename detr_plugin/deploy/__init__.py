"""Deployment: the detector as a tensor-in, tensor-out module for ONNX."""
from .onnx_export import (DETRExportWrapper, compare_with_pytorch,
                          export_onnx, has_fixed_input_size, run_onnx)

__all__ = [
    'DETRExportWrapper', 'compare_with_pytorch', 'export_onnx',
    'has_fixed_input_size', 'run_onnx'
]
