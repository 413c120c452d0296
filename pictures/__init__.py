"""What islr draws and tabulates: curves, evaluation pictures, animations, the HTML report.

plots.py         matplotlib set-up and the evaluation's plots
curves.py        curves.png during training, drawn in a process of its own
classtables.py   per-class tables in the terminal, readable from 2 to 250 signs
show.py          `show`: a recording as a skeleton animation
evaluation.py    `evaluate --plots/--errors`: the plots and the misclassified clips
report.py        `report`: one HTML page of a run
"""
