import pytest

from hasrd.config import ConfigError, load_config
from tests.conftest import ROOT

ENHANCE_CONFIGS = sorted((ROOT / "codec_configs" / "enhance").glob("*.yaml"))
LM_CONFIGS = sorted((ROOT / "codec_configs" / "lm").glob("*.yaml"))
STAR_CONFIGS = sorted((ROOT / "codec_configs" / "star").glob("*.yaml"))
CONFIGS = sorted(set((ROOT / "codec_configs").rglob("*.yaml")) - set(ENHANCE_CONFIGS) - set(LM_CONFIGS) - set(STAR_CONFIGS))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_a_codec(path):
    cfg = load_config(path)
    assert cfg["model"]["name"] in ("hasrd", "hcodec", "continuous", "pitch")
    assert cfg["model"]["sample_rate"] == 16000


@pytest.mark.parametrize("path", sorted((ROOT / "codec_configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_has_a_valid_train_section_and_a_known_task(path):
    from hasrd.train import TrainConfig, task_class

    cfg = load_config(path)
    TrainConfig.from_dict(cfg.get("train"))  # unknown keys, types and ranges: refused with the key's name
    assert task_class(cfg.get("task", "codec")).exports


@pytest.mark.parametrize("path", ENHANCE_CONFIGS, ids=lambda p: p.name)
def test_every_enhancer_config_builds_its_network(path):
    from hasrd.enhance import LatentEnhancer

    cfg = load_config(path)
    assert cfg["task"] == "enhance"
    form = cfg["enhance"]["form"]
    shape = {"latent_dim": 64} if form == "continuous" else {"n_q": cfg["enhance"]["n_q"], "codebook_size": 1024}
    assert LatentEnhancer({**cfg["model"], "form": form, **shape}).form == form


@pytest.mark.parametrize("path", LM_CONFIGS, ids=lambda p: p.name)
def test_every_lm_config_builds_its_network(path):
    from hasrd.lm import TokenLM

    cfg = load_config(path)
    assert cfg["task"] == "lm" and 1 <= cfg["lm"]["n_q"] <= 8
    shape = {"n_codebooks": cfg["lm"]["n_q"], "codebook_size": 1024, "cond_dim": 64, "ref_dim": 64,
             "text_dim": cfg["lm"]["text_dim"], "tasks": ["se", "tse", "ss1", "ss2", "vc", "lass"]}
    lm = TokenLM({**cfg["model"], **shape})
    assert lm.K == cfg["lm"]["n_q"] and lm.max_positions == cfg["model"]["max_positions"]


@pytest.mark.parametrize("path", STAR_CONFIGS, ids=lambda p: p.name)
def test_every_star_config_builds_its_network(path):
    from hasrd.star import StarNetwork

    cfg = load_config(path)
    assert cfg["task"] == "star" and cfg["star"]["stage"] == 1
    net = StarNetwork({"stage": 2, "semantic_dim": cfg["star"]["semantic_dim"], "speech_dim": 64, "latent_dim": 16,
                       **cfg["model"]})
    assert net.generator is not None and net.semantic_dim == cfg["star"]["semantic_dim"]


def test_gpu_configs_have_the_promised_rates():
    from hasrd.codecs import bitrate

    base = load_config(ROOT / "codec_configs" / "hasrd_base.yaml")["model"]
    assert base["quantizer"]["n_semantic"] == 1 and base["quantizer"]["n_acoustic"] == 7
    hc = load_config(ROOT / "codec_configs" / "hcodec_25hz.yaml")["model"]
    hop = 1
    for s in hc["acoustic_encoder"]["strides"]:
        hop *= s
    assert 16000 / hop == 25
    assert bitrate(25, [hc["quantizer"]["codebook_size"]] * 8, 8) == 2000


def test_base_inheritance_and_type_replacement():
    cfg = load_config(ROOT / "codec_configs" / "hasrd_wavlm_encoder.yaml")
    enc = cfg["model"]["encoder"]
    assert enc["type"] == "ssl" and "d_model" not in enc  # a changed type replaces the section
    assert cfg["model"]["quantizer"]["n_acoustic"] == 7  # inherited


def test_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: {b: 1, c: [1, 2]}\n")
    cfg = load_config(p, ["a.b=3e-4", "a.d.e=x", "f=[1, 2]"])
    assert cfg == {"a": {"b": 3e-4, "c": [1, 2], "d": {"e": "x"}}, "f": [1, 2]}
    with pytest.raises(ConfigError):
        load_config(p, ["novalue"])
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "loop.yaml")
