"""bench.sharing: the samples/s it reads from a training's output."""

import subprocess

import pytest

from bench import sharing


def test_samples_per_second_is_the_median_after_the_first_epoch():
    """Epoch 1 (start-up) is left out and the median of the rest is taken."""
    output = "\n".join(
        f"epoch   {e}  train loss 1.0  val loss 1.0  val acc 50.00%  1.0s  {r} samples/s"
        for e, r in [(1, "100"), (2, "1,200"), (3, "1,000"), (4, "1,100")]
    )
    process = subprocess.Popen(["printf", "%s", output], stdout=subprocess.PIPE, text=True)
    assert sharing.samples_per_second(process) == 1100.0


def test_a_failed_training_ends_the_bench_with_its_output():
    """A run that prints no epoch stops the bench with its last lines, not a wrong figure."""
    process = subprocess.Popen(["sh", "-c", "echo boom; exit 1"], stdout=subprocess.PIPE, text=True)
    with pytest.raises(SystemExit, match="boom"):
        sharing.samples_per_second(process)
