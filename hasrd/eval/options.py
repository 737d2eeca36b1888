"""What one evaluation run takes and gives: its options, its result, its one error, and the keys
its rows are made of (shared by the scoring loop and the report)."""
from __future__ import annotations

from dataclasses import dataclass, field

#: Manifest fields copied into every row of their utterance (the report groups by them).
GROUP_KEYS = ("snr", "noise")

METRIC_KEYS = ("pesq_wb", "pesq_nb", "stoi", "estoi", "si_sdr", "mel_distance", "f0_cents", "vuv_error",
               "dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808", "mos_hook", "spk_sim")


@dataclass
class EvalOptions:
    """Everything one evaluation run needs (the command line maps onto it one to one)."""

    output: str
    models: list[str] = field(default_factory=list)
    data: str | None = None
    transcripts: str | None = None
    n_q: list[int] = field(default_factory=lambda: [1, 2, 4, 8])
    bound: bool = False  # also the decoder on the unquantised latent (systems.UnquantisedSystem)
    baselines: list[str] = field(default_factory=list)
    enhancers: list[str] = field(default_factory=list)
    asr: str = "pocketsphinx"
    speaker: str = "resemblyzer"
    mos: str = "dnsmos"
    mos_hook: str | None = None
    probes: bool = True
    jobs: int = 2
    max_delay_ms: float = 100.0
    limit: int | None = None
    save_audio: bool = False
    progress: bool = True


@dataclass
class EvalResult:
    rows: list[dict]
    systems: list[dict]
    probes: dict
    skipped: list[str]
    notes: list[str]
    utterances: list[dict]


class EvalError(RuntimeError):
    """The run cannot start (unreadable data, unloadable model, malformed spec)."""
