import shutil

import pytest

from hasrd.eval.data import DEFAULT_EVAL_DIR

CLIPS = ("cmu_cards_001", "cmu_cards_003")  # the two shortest utterances (1.1 s, 1.5 s)


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory):
    """Two short real clips of the bundled set with their transcripts, in a folder of their own."""
    d = tmp_path_factory.mktemp("clips")
    texts = dict(line.rstrip("\n").split("\t", 1)
                 for line in (DEFAULT_EVAL_DIR / "transcripts.tsv").read_text().splitlines() if line)
    with open(d / "transcripts.tsv", "w") as fh:
        for name in CLIPS:
            shutil.copy(DEFAULT_EVAL_DIR / f"{name}.wav", d / f"{name}.wav")
            fh.write(f"{name}.wav\t{texts[name + '.wav']}\n")
    return d


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny debug HASRD codec (untrained), written with save_pretrained."""
    from pathlib import Path

    from hasrd.codecs import build_codec
    from hasrd.config import load_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "codec_configs" / "debug" / "hasrd_tiny.yaml")
    d = tmp_path_factory.mktemp("models") / "tiny"
    build_codec(cfg["model"]).eval().save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def speech():
    """A real 16 kHz utterance (1.96 s) as float32."""
    from hasrd.io.audio import load_audio

    audio, sr = load_audio(DEFAULT_EVAL_DIR / "cmu_cards_002.wav", sample_rate=16000)
    assert sr == 16000
    return audio[0]
