"""Benchmarks: the commands and scripts that print BENCHMARKS.md's figures.

speed.py        `bench`: training and inference speed
tutorial.py     `bench --tutorial`: the same training fed the series' way (its DataLoader)
prepare.py      `prepare` against one pandas DataFrame per file (make bench-prepare)
scale.py        training throughput at two data sizes, interleaved
drawing.py      what drawing curves.png costs a training run
sharing.py      two trainings at once against one alone, per OpenMP wait policy
video_path.py   `bench-video`: extraction and `live` on this machine
fewshot.py      k clips a sign of one signer: the personal preset's accuracy (python -m bench.fewshot)
"""
