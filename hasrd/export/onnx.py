"""ONNX export of a codec's encoder and decoder, checked against the torch model.

``export_onnx(codec, out_dir)`` writes

* ``encoder.onnx``: ``wav float32 [batch, 1, samples]`` -> ``codes int64 [batch, n_q, frames]``
  (``frames = ceil(samples / hop)``; ``n_q`` fixed at export, default all codebooks);
* ``decoder.onnx``: ``codes int64 [batch, n, frames]`` (any ``1 <= n <= num_codebooks``) ->
  ``wav float32 [batch, 1, frames * hop]``;
* ``export.json``: what was exported (codec, fingerprint, rates, codebooks, opset, exporter) and
  what the check measured.

Before anything is put in place, both graphs are run with onnxruntime on test signals of two
lengths and two batch sizes: the codes must equal ``codec.encode``'s, except where two codebook
entries are equally near the latent to float32 precision (a near tie, which two correct float32
implementations may break differently; each such code is checked, see ``graphs.code_margins``),
and the decoded audio must be within ``atol`` of ``codec.decode`` (the measured maximum and the
number of near-tie differences go into ``export.json``).
Files are written under temp names and renamed only once the check passed.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codecs.base import Codec
from ..io.atomic import temp_name
from ..version import __version__
from .graphs import TIE_TOLERANCE, ExportError, build_graphs, code_margins, probe_audio

ENCODER_NAME = "encoder.onnx"
DECODER_NAME = "decoder.onnx"
MANIFEST_NAME = "export.json"
DEFAULT_OPSET = 18
DEFAULT_ATOL = 1e-4
EXPORTERS = ("torchscript", "dynamo")
MANIFEST_FORMAT = "hasrd-onnx"


def _session(path: str | os.PathLike, threads: int = 1):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("onnxruntime is not installed (pip install onnxruntime, or scripts/install.sh)") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _export_graph(module, example, path: Path, input_name: str, output_name: str,
                  axes: dict[str, dict[int, str]], opset: int, exporter: str, n_max: int | None) -> None:
    """Export one graph to ``path`` with dynamic axes ``axes`` (input and output names -> {dim: name})."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(
                module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                opset_version=opset, dynamo=False, dynamic_axes=axes, do_constant_folding=True,
            )
            return
        from torch.export import Dim

        dims = {}
        for dim, name in axes[input_name].items():
            if name == "n_q":
                dims[dim] = Dim(name, min=1, max=n_max)
            else:
                dims[dim] = Dim(name, min=1)
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise ExportError("the dynamo exporter needs onnxscript (pip install onnxscript, or scripts/install.sh)") from None
        program = torch.onnx.export(
            module, (example,), input_names=[input_name], output_names=[output_name],
            opset_version=opset, dynamo=True, dynamic_shapes={input_name: dims}, external_data=False,
            verbose=False, report=False,
        )
        program.save(str(path), external_data=False)


def _device(codec: Codec) -> torch.device:
    param = next(codec.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _check(codec: Codec, enc_graph, dec_graph, enc_path: Path, dec_path: Path, n_q: int, atol: float) -> dict:
    """Run both ONNX graphs and the torch model on test signals; raise ExportError on a mismatch."""
    sr, N = codec.sample_rate, codec.num_codebooks
    probes = [probe_audio(1.0, sr, seed=0, batch=2), probe_audio(0.63, sr, seed=1, batch=1)[..., :-37]]
    enc, dec = _session(enc_path), _session(dec_path)
    device = _device(codec)
    frames = codes_total = mismatched = mismatched_frames = 0
    worst = worst_margin = 0.0
    n_list = sorted({1, n_q, N})
    with torch.no_grad():
        for x in probes:
            ref = codec.encode(x.to(device), n_q).cpu()
            mine = enc_graph(x)
            if not torch.equal(mine, ref):
                # the wrapper's distances round differently from the library's (and with the thread
                # count): allowed only where codec.encode's own choice is a near tie for the wrapper
                if float(code_margins(enc_graph, x, ref).max()) > TIE_TOLERANCE:
                    raise ExportError("the export wrapper does not reproduce codec.encode in torch (a hasrd bug)")
            got = enc.run(None, {"wav": x.numpy()})[0]
            if got.shape != tuple(ref.shape) or got.dtype != np.int64:
                raise ExportError(f"encoder.onnx gave codes {got.shape} {got.dtype}, expected {tuple(ref.shape)} int64")
            diff = got != ref.numpy()
            if diff.any():
                # allowed only where two codebook entries are equally near (see code_margins)
                margins = code_margins(enc_graph, x, torch.from_numpy(got))
                worst_margin = max(worst_margin, float(margins.max()))
                if worst_margin > TIE_TOLERANCE:
                    raise ExportError(
                        f"encoder.onnx differs from codec.encode on {int(diff.sum())} of {got.size} codes, "
                        f"not all at near ties (margin {worst_margin:.3g} > {TIE_TOLERANCE:g}; "
                        f"signal of {x.shape[-1]} samples)"
                    )
                mismatched += int(diff.sum())
                mismatched_frames += int(diff.any(axis=1).sum())
            codes_total += got.size
            frames += ref.shape[0] * ref.shape[-1]
            full = codec.encode(x.to(device), N).cpu()
            for n in n_list:
                codes = full[:, :n]
                want = codec.decode(codes.to(device)).float().cpu().numpy()
                y = dec.run(None, {"codes": codes.numpy()})[0]
                if y.shape != want.shape:
                    raise ExportError(f"decoder.onnx gave {y.shape} samples for n_q={n}, expected {want.shape}")
                worst = max(worst, float(np.abs(y - want).max()))
    if not worst <= atol:
        raise ExportError(f"decoder.onnx differs from codec.decode by up to {worst:.3g} (tolerance {atol:g})")
    return {
        "signals": [list(x.shape) for x in probes],
        "codes_identical": mismatched == 0,
        "frames_checked": frames,
        "codes_checked": codes_total,
        "codes_different_at_near_ties": mismatched,
        "frames_with_near_tie_difference": mismatched_frames,
        "tie_tolerance": TIE_TOLERANCE,
        "decoder_n_q_checked": n_list,
        "decoder_max_abs_diff": worst,
        "tolerance": atol,
    }


def export_onnx(
    codec: Codec,
    out_dir: str | os.PathLike,
    n_q: int | None = None,
    opset: int = DEFAULT_OPSET,
    exporter: str = "torchscript",
    atol: float = DEFAULT_ATOL,
    overwrite: bool = True,
) -> dict[str, Path]:
    """Export ``codec`` to ``out_dir/{encoder.onnx, decoder.onnx, export.json}``; see the module doc.

    Args:
        codec: a trained :class:`~hasrd.codecs.Codec` (``hasrd`` or ``hcodec``); it is not changed.
        n_q: codebooks the encoder outputs (default all). The decoder takes any ``n <= num_codebooks``.
        opset: ONNX opset (the dynamo exporter needs 18 or more).
        exporter: ``"torchscript"`` (torch's tracing exporter: fast) or ``"dynamo"``
            (``torch.export``-based).
        atol: largest accepted ``|onnx - torch|`` of the decoded audio in the check.
        overwrite: replace existing files in ``out_dir`` (else ExportError if any exists).

    Returns:
        ``{"encoder": path, "decoder": path, "manifest": path}``.

    Raises:
        ExportError: unsupported codec or option, or the check failed (nothing is written then).
    """
    _check_options(opset, exporter)
    enc_graph, dec_graph = build_graphs(codec, n_q)
    n_q = enc_graph.n_q
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError("is a file, not a folder")
    paths = {"encoder": out / ENCODER_NAME, "decoder": out / DECODER_NAME, "manifest": out / MANIFEST_NAME}
    if not overwrite:
        present = [p.name for p in paths.values() if p.exists()]
        if present:
            raise ExportError(f"already holds {', '.join(present)}; replace them with overwrite=True (hasrd export --force)")
    out.mkdir(parents=True, exist_ok=True)
    was_training = codec.training
    codec.eval()
    tmps = {k: temp_name(p) for k, p in paths.items()}
    try:
        _export_graphs(codec, enc_graph, dec_graph, tmps["encoder"], tmps["decoder"], opset, exporter)
        check = _check(codec, enc_graph, dec_graph, tmps["encoder"], tmps["decoder"], n_q, atol)
        manifest = _manifest(codec, n_q, opset, exporter, check)
        tmps["manifest"].write_text(json.dumps(manifest, indent=2) + "\n")
        for key in ("encoder", "decoder", "manifest"):  # the manifest last: it marks a finished export
            os.replace(tmps[key], paths[key])
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}") from exc
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()
        codec.train(was_training)
    return paths


def _check_options(opset: int, exporter: str) -> None:
    """Refuse an unknown exporter or an opset it cannot write, and a missing onnx package."""
    if exporter not in EXPORTERS:
        raise ExportError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not 11 <= opset <= 23:
        raise ExportError(f"opset must be an integer in 11..23, got {opset!r}")
    if exporter == "dynamo" and opset < 18:
        raise ExportError("the dynamo exporter needs opset 18 or more")
    try:
        import onnx  # noqa: F401  (torch's exporters serialise with it)
    except ImportError:
        raise ExportError("the ONNX export needs the onnx package (pip install onnx, or scripts/install.sh)") from None


def _export_graphs(codec: Codec, enc_graph, dec_graph, enc_path: Path, dec_path: Path, opset: int, exporter: str) -> None:
    """Export the encoder and the decoder graph (traced on a probe signal and its codes)."""
    N = codec.num_codebooks
    sr, hop = codec.sample_rate, codec.hop_length
    example_wav = probe_audio(0.5, sr, seed=2, batch=2)[..., : int(0.5 * sr) - hop // 3]
    with torch.no_grad():
        example_codes = codec.encode(example_wav.to(_device(codec)), N).cpu()
    _export_graph(
        enc_graph, example_wav, enc_path, "wav", "codes",
        {"wav": {0: "batch", 2: "samples"}, "codes": {0: "batch", 2: "frames"}}, opset, exporter, None,
    )
    dec_axes = {"codes": {0: "batch", 2: "frames"}, "wav": {0: "batch", 2: "samples"}}
    if N > 1:
        dec_axes["codes"][1] = "n_q"
    _export_graph(dec_graph, example_codes, dec_path, "codes", "wav", dec_axes, opset, exporter, N)


def _manifest(codec: Codec, n_q: int, opset: int, exporter: str, check: dict) -> dict:
    """The content of ``export.json``: what was exported and what the check measured."""
    N, hop = codec.num_codebooks, codec.hop_length
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 1,
        "codec": codec.codec_name,
        "fingerprint": codec.fingerprint(),
        "sample_rate": int(codec.sample_rate),
        "hop_length": int(hop),
        "frame_rate": float(codec.frame_rate),
        "num_codebooks": N,
        "num_semantic_codebooks": int(codec.num_semantic_codebooks),
        "codebook_sizes": [int(k) for k in codec.codebook_sizes],
        "n_q": n_q,
        "bitrate": codec.bitrate(n_q),
        "opset": opset,
        "exporter": exporter,
        "torch": torch.__version__,
        "hasrd": __version__,
        "encoder": {
            "file": ENCODER_NAME,
            "input": {"name": "wav", "dtype": "float32", "shape": ["batch", 1, "samples"]},
            "output": {"name": "codes", "dtype": "int64", "shape": ["batch", n_q, "frames"]},
        },
        "decoder": {
            "file": DECODER_NAME,
            "input": {"name": "codes", "dtype": "int64", "shape": ["batch", "n_q" if N > 1 else 1, "frames"],
                      "n_q": [1, N]},
            "output": {"name": "wav", "dtype": "float32", "shape": ["batch", 1, f"frames*{hop}"]},
        },
        "check": check,
    }


class OnnxCodec:
    """Run an exported codec with onnxruntime: ``encode(wav)`` and ``decode(codes)`` on numpy arrays."""

    def __init__(self, directory: str | os.PathLike, threads: int = 1):
        directory = Path(directory)
        try:
            self.manifest: dict[str, Any] = json.loads((directory / MANIFEST_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise ExportError(f"{directory}: not a hasrd ONNX export ({exc})") from None
        if self.manifest.get("format") != MANIFEST_FORMAT:
            raise ExportError(f"{directory}: not a hasrd ONNX export")
        self.encoder = _session(directory / self.manifest["encoder"]["file"], threads)
        self.decoder = _session(directory / self.manifest["decoder"]["file"], threads)
        self.sample_rate = int(self.manifest["sample_rate"])
        self.hop_length = int(self.manifest["hop_length"])
        self.n_q = int(self.manifest["n_q"])
        self.num_codebooks = int(self.manifest["num_codebooks"])

    def encode(self, wav: np.ndarray) -> np.ndarray:
        """``float32 [B, 1, T]`` at :attr:`sample_rate` -> ``int64 [B, n_q, ceil(T / hop)]``."""
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if wav.ndim != 3 or wav.shape[1] != 1:
            raise ValueError(f"expected a waveform [B, 1, T], got {wav.shape}")
        return self.encoder.run(None, {"wav": wav})[0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``int64 [B, n, F]`` (``1 <= n <= num_codebooks``) -> ``float32 [B, 1, F * hop]``."""
        codes = np.ascontiguousarray(codes, dtype=np.int64)
        if codes.ndim != 3 or not 1 <= codes.shape[1] <= self.num_codebooks:
            raise ValueError(f"expected codes [B, n, F] with 1 <= n <= {self.num_codebooks}, got {codes.shape}")
        return self.decoder.run(None, {"codes": codes})[0]
