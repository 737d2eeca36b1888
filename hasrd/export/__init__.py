"""Export a trained codec for other runtimes: ONNX encoder and decoder (see ``docs/export.md``).

    from hasrd.export import export_onnx, OnnxCodec
    paths = export_onnx(codec, "out/onnx", n_q=3)      # encoder.onnx, decoder.onnx, export.json
    runner = OnnxCodec("out/onnx")                     # onnxruntime
    codes = runner.encode(wav)                         # float32 [B, 1, T] -> int64 [B, 3, F]
"""
from .graphs import ExportError, build_graphs, plain_copy
from .onnx import DEFAULT_ATOL, DEFAULT_OPSET, EXPORTERS, OnnxCodec, export_onnx

__all__ = ["DEFAULT_ATOL", "DEFAULT_OPSET", "EXPORTERS", "ExportError", "OnnxCodec", "build_graphs",
           "export_onnx", "plain_copy"]
