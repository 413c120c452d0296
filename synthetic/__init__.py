"""The synthetic signers: the embedded default data set, and sets of any size for benchmarks.

lexicon.py    the made-up signs: where each hand goes, its shape, its movement
skeleton.py   the synthetic body: face outline, pose points, a hand model
clips.py      signers and their clips: how one person performs the signs
synth.py      writes a set (`synth`, and the default set on first use)
raw_sets.py   sets of any size in the raw Kaggle layout
"""
