"""Interop and deployment: weights in and out, ONNX export, streaming (step-by-step) inference.

    >>> import lstmkit as lk
    >>> from lstmkit.interop import from_torch, to_torch, from_keras, to_keras, export_onnx, StreamingLSTM

- converters: torch.nn.LSTM ⇄ lk.LSTM, Keras LSTM weights ⇄ lk.LSTM (no Keras needed).
- onnx_export: lk.LSTM → ONNX (the LSTM operator where it fits, a Scan graph otherwise);
  needs the ``onnx`` extra (``pip install lstmkit[onnx]``), imported only when called.
- streaming: StreamingLSTM.step(x_t, state) -> (y_t, state) for batch-1, low-latency use.
- quantize: quantize_onnx(src, dst): int8 dynamic quantization of an exported file (onnxruntime).
"""
from .converters import from_keras, from_torch, to_keras, to_torch
from .onnx_export import EXPORT_SUPPORT, ExportError, export_onnx, export_route
from .quantize import quantize_onnx
from .streaming import StreamingLSTM

__all__ = [
    "EXPORT_SUPPORT", "ExportError", "StreamingLSTM", "export_onnx", "export_route", "from_keras",
    "from_torch", "quantize_onnx", "to_keras", "to_torch",
]
