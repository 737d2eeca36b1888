"""``hasrd export``: the model's encoder and decoder as ONNX graphs, checked with onnxruntime
against the torch model (``hasrd.export``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hasrd.cli.errors import EXIT_FAILED, EXIT_OK, UsageError, debug_mode, one_line
from hasrd.cli.loading import MODEL_HELP, load_model, n_q_option


def cmd_export(args: argparse.Namespace) -> int:
    from hasrd.export import DEFAULT_OPSET, ExportError, export_onnx

    opset = DEFAULT_OPSET if args.opset is None else args.opset
    if not 11 <= opset <= 23:
        raise UsageError(f"--opset {opset}: must be in 11..23")
    if args.exporter == "dynamo" and opset < 18:
        raise UsageError(f"--opset {opset}: the dynamo exporter needs 18 or more")
    codec = load_model(args.model, "cpu")
    if codec.continuous:
        raise UsageError(f"the model {args.model or 'default'} is a continuous codec: the ONNX export covers codebook codecs")
    n_q = n_q_option(codec, args.n_q, None)
    out = Path(args.output)
    try:
        paths = export_onnx(codec, out, n_q=n_q, opset=opset, exporter=args.exporter, overwrite=args.force)
        check = json.loads(paths["manifest"].read_text())["check"]
    except ExportError as exc:
        if debug_mode():
            raise
        print(f"hasrd: error: {one_line(f'{out}: {exc}')}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"hasrd: error: {one_line(f'{out}: {exc.strerror or exc}')}", file=sys.stderr)
        return EXIT_FAILED
    ties = check["codes_different_at_near_ties"]
    print(f"exported {codec.codec_name} {codec.fingerprint()} (encoder n_q={n_q}, decoder n_q 1..{codec.num_codebooks}, "
          f"opset {opset}) -> {paths['encoder']}, {paths['decoder']}, {paths['manifest']}")
    print(f"  check: {check['codes_checked']} codes " + ("identical" if not ties else f"identical but {ties} at near ties")
          + f", decoded audio within {check['decoder_max_abs_diff']:.2g} of torch")
    return EXIT_OK


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="export the model's encoder and decoder to ONNX",
                         description="Write OUT/encoder.onnx (wav -> codes), OUT/decoder.onnx (codes -> wav) and "
                         "OUT/export.json, checked with onnxruntime against the torch model (docs/export.md).")
    exp.add_argument("--model", default=None, metavar="DIR", help=MODEL_HELP)
    exp.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    exp.add_argument("--n-q", type=int, default=None, metavar="N",
                     help="codebooks the exported encoder outputs (default: all); the decoder takes any number")
    exp.add_argument("--format", choices=["onnx"], default="onnx", help="export format (onnx)")
    exp.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 18)")
    exp.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript",
                     help="torch's tracing exporter (default, fast) or the torch.export-based one")
    exp.add_argument("--force", action="store_true", help="replace existing files in OUT")
    exp.set_defaults(func=cmd_export)
