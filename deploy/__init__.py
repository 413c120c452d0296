"""Taking a trained model elsewhere: one file that runs without islr.

export.py   `export`: TorchScript or ONNX with the preprocessing inside, checked against PyTorch
"""
