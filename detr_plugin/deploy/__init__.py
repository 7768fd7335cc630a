"""Deployment: the detector as a tensor-in, tensor-out module for ONNX."""
from .onnx_export import (DETRExportWrapper, export_onnx,  # noqa: F401
                          has_fixed_input_size)
