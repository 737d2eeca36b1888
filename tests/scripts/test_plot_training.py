"""scripts/plot_training.py: the codec panels, the generic panels of an LM/enhancer run, a missing file."""
import json

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def plot():
    return load_script("plot_training")


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _axes_lines(monkeypatch, plot, argv):
    """Run the script and return {panel title: [line labels]} of the figure it saved."""
    import matplotlib.figure

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *a, **k):
        seen.update({ax.get_title(): [ln.get_label() for ln in ax.get_lines()] for ax in fig.axes})
        return real(fig, *a, **k)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    assert plot.main(argv) == 0
    return seen


def test_a_token_lm_run_gets_its_own_losses_and_validation(plot, tmp_path, monkeypatch):
    rows = [{"step": s, "loss/total": 5 - s / 100, "loss/ce_q1": 4.0} for s in (25, 50, 75)]
    rows += [{"step": 50, "val/loss": 4.9, "val/loss_se": 5.0}]
    out = tmp_path / "lm.png"
    panels = _axes_lines(monkeypatch, plot, [str(_write(tmp_path / "m.jsonl", rows)), "-o", str(out)])
    assert out.stat().st_size > 0
    assert sorted(panels["training losses"]) == ["ce_q1", "total"]
    assert sorted(panels["validation"]) == ["loss", "loss_se"]


def test_a_codec_run_keeps_the_codec_panels(plot, tmp_path, monkeypatch):
    rows = [{"step": s, "loss/mel": 1.0, "loss/vq": 0.1, "codebook/q0/perplexity": 0.5} for s in (10, 20)]
    rows += [{"step": 20, "val/mel": 0.9}]
    panels = _axes_lines(monkeypatch, plot, [str(_write(tmp_path / "m.jsonl", rows)), "-o", str(tmp_path / "c.png")])
    assert "mel L1 (log10)" in panels["training losses"]
    assert panels["codebook perplexity / K (batch)"] == ["q0"]


def test_a_missing_file_is_one_line_and_exit_1(plot, tmp_path, capsys):
    assert plot.main([str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]
    assert not (tmp_path / "x.png").exists()
