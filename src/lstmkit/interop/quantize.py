"""int8 dynamic quantization of an exported lstmkit ONNX model, for inference with onnxruntime.

``quantize_onnx(src, dst)`` stores the weights as int8 and has onnxruntime quantize the
activations on the fly (onnxruntime.quantization.quantize_dynamic): the LSTM operator becomes
onnxruntime's DynamicQuantizeLSTM (weight storage shrinks about 4x). In the Scan route (proj_size)
only the input projection becomes MatMulInteger: the recurrent weights inside the Scan body stay
float32. benchmarks/streaming.py --int8 prints the deviation from the float32 export and the
per-step latency next to it.

Why reduce_range=True by default: on x86 CPUs without VNNI (AVX2 only, as this machine),
onnxruntime multiplies uint8 activations by int8 weights with an instruction that adds pairs
of products in int16 and saturates. With full-range (8-bit) weights the sums overflow and the
outputs go wrong: a 2-layer bidirectional 16→32 LSTM deviated by 0.08 on outputs of ±0.5,
while rounding the weights and inputs alone predicts 0.006. 7-bit weights (reduce_range) cannot
saturate and gave 0.0045. Pass reduce_range=False only for CPUs with VNNI.

The result runs on onnxruntime only (DynamicQuantizeLSTM is a com.microsoft operator).
"""
from __future__ import annotations

import logging
import os
from typing import Union

PathLike = Union[str, os.PathLike]


def quantize_onnx(src: PathLike, dst: PathLike, *, per_channel: bool = False, reduce_range: bool = True) -> None:
    """Write an int8 dynamically quantized copy of the ONNX file src (from export_onnx) to dst.

    Args:
        src, dst: input and output .onnx paths.
        per_channel: one scale per weight row instead of one per matrix (default False).
        reduce_range: 7-bit weights, which AVX2 integer kernels cannot saturate (default True;
            see the module docstring).

    Example:
        >>> from lstmkit.interop import export_onnx, quantize_onnx    # doctest: +SKIP
        >>> export_onnx(lstm, "lstm.onnx"); quantize_onnx("lstm.onnx", "lstm.int8.onnx")  # doctest: +SKIP
    """
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise ImportError("int8 quantization needs onnxruntime: pip install 'lstmkit[onnx]'") from None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing suggestion meant for CNNs
    try:
        quantize_dynamic(os.fspath(src), os.fspath(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         reduce_range=reduce_range)
    finally:
        root.setLevel(level)
